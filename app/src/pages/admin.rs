//! The platform admin console (operators of this Tollgate, not customers).

use crate::components::{ErrorView, Loading};
use crate::server_fns::{get_admin_outbox, get_admin_overview};
use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn AdminPage() -> impl IntoView {
    let overview = Resource::new(|| (), |_| get_admin_overview());
    view! {
        <Title text="Admin"/>
        <Suspense fallback=Loading>
            {move || Suspend::new(async move {
                match overview.await {
                    Ok(o) => view! {
                        <section class="panel">
                            <h1>"Admin console"</h1>
                            <dl class="facts">
                                <dt>"Users"</dt><dd>{o.users}</dd>
                                <dt>"Organizations"</dt><dd>{o.organizations}</dd>
                                <dt>"Platform admins"</dt><dd>{o.platform_admins}</dd>
                                <dt>"Emails not yet sent"</dt><dd>{o.unsent_emails}</dd>
                            </dl>
                            <p><a href="/admin/outbox">"Email outbox"</a></p>
                            <p class="muted">
                                "Approvals, organizations, credit adjustments, the plan editor and the audit "
                                "log arrive with the billing issues; they are not built yet."
                            </p>
                        </section>
                    }
                    .into_any(),
                    Err(e) => view! { <ErrorView error=e/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
pub fn OutboxPage() -> impl IntoView {
    let outbox = Resource::new(|| (), |_| get_admin_outbox());
    view! {
        <Title text="Email outbox"/>
        <Suspense fallback=Loading>
            {move || Suspend::new(async move {
                match outbox.await {
                    Ok(entries) => {
                        let empty = entries.is_empty();
                        let items = entries
                            .into_iter()
                            .map(|e| {
                                let kind = e.kind.clone();
                                view! {
                                <article class="card outbox-entry" data-kind=kind>
                                    <header>
                                        <strong>{e.subject}</strong>
                                        <span class="muted">" to " <span class="outbox-to">{e.to}</span></span>
                                    </header>
                                    <p class="muted">
                                        {e.created} " · " {e.kind} " · "
                                        {e.sent.map(|s| format!("sent {s}")).unwrap_or_else(|| "not sent (no SMTP configured, or pending)".into())}
                                    </p>
                                    {e.last_error.map(|err| view! { <p class="field-error">{err}</p> })}
                                    <pre class="outbox-body">{e.body}</pre>
                                </article>
                                }
                            })
                            .collect_view();
                        view! {
                            <section>
                                <h1>"Email outbox"</h1>
                                <p class="muted">"Every email Tollgate sends, newest first."</p>
                                {empty.then(|| view! { <p>"No emails yet."</p> })}
                                {items}
                            </section>
                        }
                        .into_any()
                    }
                    Err(e) => view! { <ErrorView error=e/> }.into_any(),
                }
            })}
        </Suspense>
    }
}
