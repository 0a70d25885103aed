//! The page frame: header navigation, the one-shot notice banner, the footer.

use super::{use_viewer, Csrf};
use crate::types::Viewer;
use leptos::prelude::*;

#[component]
pub fn Layout(children: Children) -> impl IntoView {
    let viewer = use_viewer();
    view! {
        <header class="site-header">
            <a class="brand" href="/">
                <img class="brand-mark" src="/favicon.svg" alt="" width="22" height="22"/>
                " Tollgate"
            </a>
            // A plain GET form: a results page without JavaScript; the docs
            // script (public/docs.js) adds results as you type.
            <form class="site-search" role="search" method="get" action="/docs/search">
                <label for="site-search-q" class="visually-hidden">"Search the docs"</label>
                <input
                    type="search"
                    id="site-search-q"
                    name="q"
                    placeholder="Search docs"
                    autocomplete="off"
                    aria-controls="site-search-results"
                    aria-autocomplete="list"
                />
                <div id="site-search-results" class="search-suggest" role="listbox" aria-label="Search suggestions" hidden></div>
            </form>
            <input type="checkbox" id="nav-toggle" class="nav-toggle"/>
            <label for="nav-toggle" class="nav-toggle-label" aria-label="Menu">"☰"</label>
            <nav class="site-nav" aria-label="Main">
                <a href="/docs">"Docs"</a>
                <a href="/explorer">"Explorer"</a>
                <a href="/account">"Account"</a>
                <a href="/billing">"Billing"</a>
                <Suspense fallback=|| ()>
                    {move || Suspend::new(async move {
                        let v = viewer.await;
                        view! { <SessionLinks viewer=v/> }
                    })}
                </Suspense>
            </nav>
        </header>
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move {
                let v = viewer.await;
                v.flash
                    .filter(|f| f.form.is_empty())
                    .and_then(|f| f.notice)
                    .map(|n| view! { <p class="banner banner-notice page-notice" role="status">{n}</p> })
            })}
        </Suspense>
        <main class="site-main">{children()}</main>
        <footer class="site-footer">
            <p>"Tollgate — the developer portal and metered gateway for this API."</p>
        </footer>
    }
}

#[component]
fn SessionLinks(viewer: Viewer) -> impl IntoView {
    let admin = viewer.is_admin();
    match viewer.user {
        Some(user) => view! {
            {admin.then(|| view! { <a href="/admin">"Admin"</a> })}
            <span class="nav-spacer"></span>
            {(user.orgs.len() > 1).then(|| {
                let current = user.org.as_ref().map(|o| o.id.clone()).unwrap_or_default();
                let options = user
                    .orgs
                    .iter()
                    .map(|o| view! { <option value=o.id.clone() selected=o.id == current>{o.name.clone()}</option> })
                    .collect_view();
                view! {
                    <form method="post" action="/api/switch_org" class="inline-form org-switcher" data-testid="org-switcher">
                        <Csrf token=viewer.csrf.clone()/>
                        <input type="hidden" name="return_to" value=super::current_path()/>
                        <label for="org-switch" class="visually-hidden">"Organization"</label>
                        <select id="org-switch" name="org_id">{options}</select>
                        <button type="submit" class="link-button">"Switch"</button>
                    </form>
                }
            })}
            <span class="nav-user" title=user.email.clone()>{user.display_name.clone()}</span>
            <form method="post" action="/api/sign_out" class="inline-form">
                <Csrf token=viewer.csrf.clone()/>
                <button type="submit" class="link-button">"Sign out"</button>
            </form>
        }
        .into_any(),
        None => view! {
            <span class="nav-spacer"></span>
            <a href="/login">"Sign in"</a>
            <a href="/signup" class="button button-small">"Sign up"</a>
        }
        .into_any(),
    }
}
