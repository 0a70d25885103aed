//! Shared pieces of the shell: the layout, form helpers, and error views.

pub mod chart;
mod form;
mod layout;

pub use form::{Csrf, FormState};
pub use layout::Layout;

use crate::error::AppError;
use crate::types::Viewer;
use leptos::prelude::*;
use leptos_router::components::Redirect;
use leptos_router::hooks::use_location;

/// The viewer, loaded once per page load and shared by every page.
pub type ViewerResource = Resource<Viewer>;

pub fn use_viewer() -> ViewerResource {
    expect_context::<ViewerResource>()
}

/// Sets the HTTP status of the server-rendered response; no-op in the browser.
pub fn set_status(code: u16) {
    #[cfg(feature = "ssr")]
    if let (Some(res), Ok(status)) = (
        use_context::<leptos_axum::ResponseOptions>(),
        http::StatusCode::from_u16(code),
    ) {
        res.set_status(status);
    }
    #[cfg(not(feature = "ssr"))]
    let _ = code;
}

/// The path and query of the current page, for `return_to` links.
pub fn current_path() -> String {
    let loc = use_location();
    let path = loc.pathname.get_untracked();
    let search = loc.search.get_untracked();
    if search.is_empty() {
        path
    } else {
        format!("{path}?{search}")
    }
}

/// A query parameter of the current page ("" when absent).
pub fn query_value(name: &'static str) -> String {
    let q = leptos_router::hooks::use_query_map();
    q.read_untracked().get(name).unwrap_or_default()
}

pub fn login_path_returning_here() -> String {
    format!("/login?return_to={}", encode_component(&current_path()))
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass).
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// What a page shows when its data could not be loaded.
#[component]
pub fn ErrorView(error: AppError) -> impl IntoView {
    match error {
        AppError::NotSignedIn => {
            let path = login_path_returning_here();
            view! { <Redirect path=path/> }.into_any()
        }
        AppError::Forbidden => {
            set_status(403);
            view! {
                <section class="panel error-page">
                    <h1>"No access"</h1>
                    <p>{AppError::Forbidden.to_string()}</p>
                    <p><a href="/account">"Back to your account"</a></p>
                </section>
            }
            .into_any()
        }
        AppError::NotFound => view! { <NotFound/> }.into_any(),
        other => {
            set_status(500);
            view! {
                <section class="panel error-page">
                    <h1>"Something went wrong"</h1>
                    <p>{other.to_string()}</p>
                    <p>"Try again in a moment. If it keeps happening, quote the request id to support."</p>
                </section>
            }
            .into_any()
        }
    }
}

#[component]
pub fn NotFound() -> impl IntoView {
    set_status(404);
    view! {
        <leptos_meta::Title text="Page not found"/>
        <section class="panel error-page">
            <h1>"Page not found"</h1>
            <p>"There is nothing at this address. It may have moved, or the link may be mistyped."</p>
            <p><a href="/">"Home"</a> " · " <a href="/docs">"Documentation"</a></p>
        </section>
    }
}

#[component]
pub fn Loading() -> impl IntoView {
    view! { <p class="loading">"Loading…"</p> }
}
