//! Tollgate's portal UI: a Leptos app rendered on the server, with islands:
//! only `#[island]` components (the explorer, the keys page's copy button)
//! are hydrated in the browser, and only their pages load the wasm. It
//! reaches the server only through the ports in [`backend`] (compiled with
//! the `ssr` feature), so nothing server-side can leak into the wasm bundle.
#![recursion_limit = "256"]

#[cfg(feature = "ssr")]
pub mod backend;
pub mod card;
pub mod components;
pub mod error;
pub mod pages;
pub mod server_fns;
pub mod types;

use components::{Layout, NotFound, ViewerResource};
use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::{
    components::{Route, Router, Routes},
    path, SsrMode,
};
use pages::{account, admin, auth, billing, console, docs, explorer, home, keys, usage};

/// The Content-Security-Policy of a portal page: scripts only from this
/// origin or carrying this page's nonce (Leptos puts it on its own inline
/// scripts), WebAssembly compiled from them, nothing framed, no plugins.
/// A page that takes cards or payments with a processor's browser library
/// also lets `processor` (its origins) load scripts, frame and be talked
/// to.
pub fn page_csp(nonce: &str, processor: &[String]) -> String {
    let extra: String = processor.iter().map(|o| format!(" {o}")).collect();
    let frames = if processor.is_empty() { String::new() } else { format!("frame-src{extra}; ") };
    format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'{extra}; \
         style-src 'self'; img-src 'self' data:; connect-src 'self'{extra}; {frames}object-src 'none'; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// The origins of the payment processor's browser library (Stripe.js), for
/// the pages that load it; empty with the sandbox.
#[derive(Clone, Debug, Default)]
pub struct ProcessorOrigins(pub Vec<String>);

/// Whether a page may load the payment processor's browser library: the
/// payment-methods page (cards) and an invoice's page (confirming a payment
/// with the bank).
pub fn takes_payments(path: &str) -> bool {
    let path = path.trim_end_matches('/');
    path == "/billing/payment-methods"
        || path.strip_prefix("/billing/invoices/").is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

/// Whether a page holds an island and so loads the wasm bundle: the
/// explorer and the keys page (its copy button). Every other page is plain
/// server-rendered HTML with forms; the docs script (`/docs.js`, a few KB)
/// adds copy buttons and search-as-you-type where JavaScript runs.
pub fn needs_script(path: &str) -> bool {
    matches!(path.trim_end_matches('/'), "/explorer" | "/account/keys")
}

/// The HTML document around the app.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    #[cfg(feature = "ssr")]
    let islands = use_context::<http::request::Parts>()
        .map(|p| needs_script(p.uri.path()))
        .unwrap_or(false);
    #[cfg(not(feature = "ssr"))]
    let islands = true;
    let nonce = leptos::nonce::use_nonce().map(|n| n.to_string());
    #[cfg(feature = "ssr")]
    if let (Some(res), Some(nonce)) = (
        use_context::<leptos_axum::ResponseOptions>(),
        leptos::nonce::use_nonce(),
    ) {
        let payments = use_context::<http::request::Parts>().is_some_and(|p| takes_payments(p.uri.path()));
        let processor = match payments {
            true => use_context::<ProcessorOrigins>().unwrap_or_default().0,
            false => Vec::new(),
        };
        if let Ok(v) = http::HeaderValue::from_str(&page_csp(&nonce.to_string(), &processor)) {
            res.insert_header(http::header::CONTENT_SECURITY_POLICY, v);
        }
    }
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="color-scheme" content="light dark"/>
                <link rel="icon" href="/favicon.svg" type="image/svg+xml"/>
                <AutoReload options=options.clone()/>
                {islands.then(|| view! { <HydrationScripts options islands=true/> })}
                <script src="/docs.js" defer nonce=nonce></script>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    // One look-up of the viewer per page load, shared by every component.
    let viewer: ViewerResource = Resource::new(
        || (),
        |_| async { server_fns::get_viewer().await.unwrap_or_default() },
    );
    provide_context(viewer);

    // Async rendering: each page is sent complete, so it reads without
    // JavaScript and its status code (404, 403, redirects) is exact.
    let ssr = SsrMode::Async;
    view! {
        <Stylesheet id="leptos" href="/pkg/tollgate.css"/>
        <Title formatter=|text: String| if text.is_empty() { "Tollgate".to_string() } else { format!("{text} · Tollgate") }/>
        <Router>
            <Layout>
                <Routes fallback=NotFound>
                    <Route path=path!("/") view=home::HomePage ssr=ssr.clone()/>
                    <Route path=path!("/signup") view=auth::SignUpPage ssr=ssr.clone()/>
                    <Route path=path!("/login") view=auth::SignInPage ssr=ssr.clone()/>
                    <Route path=path!("/password/forgot") view=auth::ForgotPasswordPage ssr=ssr.clone()/>
                    <Route path=path!("/password/reset") view=auth::ResetPasswordPage ssr=ssr.clone()/>
                    <Route path=path!("/verify-email") view=auth::VerifyEmailPage ssr=ssr.clone()/>
                    <Route path=path!("/account") view=account::AccountPage ssr=ssr.clone()/>
                    <Route path=path!("/account/members") view=account::MembersPage ssr=ssr.clone()/>
                    <Route path=path!("/account/usage") view=usage::UsagePage ssr=ssr.clone()/>
                    <Route path=path!("/account/logs") view=usage::LogsPage ssr=ssr.clone()/>
                    <Route path=path!("/account/logs/:id") view=usage::LogEntryPage ssr=ssr.clone()/>
                    <Route path=path!("/account/keys") view=keys::KeysPage ssr=ssr.clone()/>
                    <Route path=path!("/invitations/:token") view=account::InvitationPage ssr=ssr.clone()/>
                    <Route path=path!("/billing") view=billing::BillingPage ssr=ssr.clone()/>
                    <Route path=path!("/billing/plans") view=billing::PlansPage ssr=ssr.clone()/>
                    <Route path=path!("/billing/top-up") view=billing::TopUpPage ssr=ssr.clone()/>
                    <Route path=path!("/billing/payment-methods") view=billing::PaymentMethodsPage ssr=ssr.clone()/>
                    <Route path=path!("/billing/limits") view=billing::LimitsPage ssr=ssr.clone()/>
                    <Route path=path!("/billing/invoices") view=billing::InvoicesPage ssr=ssr.clone()/>
                    <Route path=path!("/billing/invoices/:id") view=billing::InvoicePage ssr=ssr.clone()/>
                    <Route path=path!("/admin") view=console::AdminPage ssr=ssr.clone()/>
                    <Route path=path!("/admin/recovery") view=console::RecoveryAdminPage ssr=ssr.clone()/>
                    <Route path=path!("/admin/orgs") view=console::OrgsAdminPage ssr=ssr.clone()/>
                    <Route path=path!("/admin/orgs/:id") view=console::OrgAdminPage ssr=ssr.clone()/>
                    <Route path=path!("/admin/plans") view=console::PlansAdminPage ssr=ssr.clone()/>
                    <Route path=path!("/admin/audit") view=console::AuditAdminPage ssr=ssr.clone()/>
                    <Route path=path!("/admin/reconcile") view=console::ReconcileAdminPage ssr=ssr.clone()/>
                    <Route path=path!("/admin/outbox") view=admin::OutboxPage ssr=ssr.clone()/>
                    <Route path=path!("/admin/approvals") view=admin::ApprovalsPage ssr=ssr.clone()/>
                    <Route path=path!("/admin/routes") view=admin::RoutesAdminPage ssr=ssr.clone()/>
                    <Route path=path!("/docs") view=docs::DocsPage ssr=ssr.clone()/>
                    <Route path=path!("/docs/search") view=docs::SearchPage ssr=ssr.clone()/>
                    <Route path=path!("/docs/*slug") view=docs::DocsPage ssr=ssr.clone()/>
                    <Route path=path!("/explorer") view=explorer::ExplorerPage ssr=ssr.clone()/>
                </Routes>
            </Layout>
        </Router>
    }
}

#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_islands();
}
