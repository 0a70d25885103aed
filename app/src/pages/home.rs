use crate::components::use_viewer;
use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn HomePage() -> impl IntoView {
    let viewer = use_viewer();
    view! {
        <Title text="Home"/>
        <section class="hero">
            <h1>"Build on our API, pay only for what you use"</h1>
            <p class="lead">
                "Read the docs, try calls in the browser, manage your keys and fix every billing "
                "question yourself. When a call cannot be served because of money, the API says "
                "exactly why and links to the one page that fixes it."
            </p>
            <p class="hero-actions">
                <a class="button" href="/docs/quickstart">"Read the quickstart"</a>
                <Suspense fallback=|| ()>
                    {move || Suspend::new(async move {
                        if viewer.await.user.is_some() {
                            view! { <a class="button button-secondary" href="/account">"Your account"</a> }.into_any()
                        } else {
                            view! { <a class="button button-secondary" href="/signup">"Create a free account"</a> }.into_any()
                        }
                    })}
                </Suspense>
            </p>
        </section>
        <section class="cards">
            <article class="card">
                <h2>"Docs"</h2>
                <p>"Guides and a reference for every endpoint and every error code."</p>
                <a href="/docs">"Open the docs"</a>
            </article>
            <article class="card">
                <h2>"Plans"</h2>
                <p>"Start free with included credits; upgrade or top up whenever you need."</p>
                <a href="/billing/plans">"Compare plans"</a>
            </article>
            <article class="card">
                <h2>"Your team"</h2>
                <p>"Invite colleagues as admins, developers or billing managers."</p>
                <a href="/account/members">"Manage members"</a>
            </article>
        </section>
    }
}
