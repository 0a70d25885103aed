//! API keys: create (shown once, with a copy button), list, revoke, rotate.

use crate::components::{use_viewer, Csrf, ErrorView, FormState, Loading};
use crate::server_fns::get_api_keys;
use crate::types::{ApiKeyView, KeysPage, Viewer};
use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn KeysPage() -> impl IntoView {
    let viewer = use_viewer();
    let page = Resource::new(|| (), |_| get_api_keys());
    view! {
        <Title text="API keys"/>
        <Suspense fallback=Loading>
            {move || Suspend::new(async move {
                let v = viewer.await;
                match page.await {
                    Ok(p) => view! { <KeysView page=p viewer=v/> }.into_any(),
                    Err(e) => view! { <ErrorView error=e/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

/// Copies `text` to the clipboard once the island is hydrated; before that
/// the key is still there to select by hand.
#[island]
fn CopyButton(text: String) -> impl IntoView {
    #[cfg(feature = "hydrate")]
    Effect::new(|_| {
        if let Some(body) = document().body() {
            let _ = body.set_attribute("data-hydrated", "true");
        }
    });
    let copied = RwSignal::new(false);
    let on_click = move |_| {
        #[cfg(feature = "hydrate")]
        {
            let _ = window().navigator().clipboard().write_text(&text);
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = &text;
        copied.set(true);
    };
    view! {
        <button type="button" class="button button-small" data-testid="copy-key" on:click=on_click>
            {move || if copied.get() { "Copied" } else { "Copy" }}
        </button>
    }
}

#[component]
fn KeyRow(key: ApiKeyView, csrf: String, manage: bool) -> impl IntoView {
    let active = key.status == "active";
    // A key still working during a rotation's overlap can be revoked too.
    let live = active || key.status == "expiring";
    let rotate = (manage && active).then(|| {
        let c1 = csrf.clone();
        let id1 = key.id.clone();
        view! {
            <form method="post" action="/api/rotate_api_key" class="inline-form">
                <Csrf token=c1/>
                <input type="hidden" name="key_id" value=id1/>
                <select name="overlap_hours" aria-label="How long the old key keeps working" title="How long the old key keeps working after rotation">
                    <option value="0">"overlap: none"</option>
                    <option value="1">"overlap: 1 hour"</option>
                    <option value="24" selected=true>"overlap: 24 hours"</option>
                    <option value="168">"overlap: 7 days"</option>
                </select>
                <button type="submit" class="button button-small">"Rotate"</button>
            </form>
        }
    });
    let revoke = (manage && live).then(|| {
        let c2 = csrf.clone();
        let id2 = key.id.clone();
        view! {
            <form method="post" action="/api/revoke_api_key" class="inline-form">
                <Csrf token=c2/>
                <input type="hidden" name="key_id" value=id2/>
                <button type="submit" class="button button-small button-danger">"Revoke"</button>
            </form>
        }
    });
    let controls = view! { {rotate} {revoke} };
    let display = key.display.clone();
    view! {
        <tr data-key=display>
            <td>{key.name}</td>
            <td><code>{key.display}</code></td>
            <td><span class="badge">{key.mode}</span></td>
            <td>{key.scopes.join(", ")}</td>
            <td>{key.created}</td>
            <td>{key.last_used.unwrap_or_else(|| "never".into())}</td>
            <td>{key.expires.unwrap_or_else(|| "never".into())}</td>
            <td><span class="badge" data-testid="key-status">{key.status}</span></td>
            <td class="actions">{controls}</td>
        </tr>
    }
}

#[component]
fn KeysView(page: KeysPage, viewer: Viewer) -> impl IntoView {
    let f = FormState::new(&viewer, "keys");
    let csrf = viewer.csrf.clone();
    let manage = page.can_manage;
    let new_key = page.new_key.map(|k| {
        let secret = k.secret.clone();
        view! {
            <section class="panel new-key" role="status">
                <h2>"Your new key"</h2>
                <p>"Copy it now and keep it somewhere safe: it is shown only this once."</p>
                <p class="key-line"><code data-testid="new-key">{k.secret}</code> <CopyButton text=secret/></p>
            </section>
        }
    });
    let rows = page
        .keys
        .into_iter()
        .map(|k| view! { <KeyRow key=k csrf=csrf.clone() manage=manage/> })
        .collect_view();
    let create = manage.then(|| {
        let scopes = page
            .scopes
            .iter()
            .enumerate()
            .map(|(i, (s, what))| {
                let name = format!("scopes[{}]", i + 1);
                view! { <label class="check"><input type="checkbox" name=name value=s.clone()/>" " <code>{s.clone()}</code> " — " {what.clone()}</label> }
            })
            .collect_view();
        view! {
            <section class="panel">
                <h2>"Create a key"</h2>
                <form method="post" action="/api/create_api_key" novalidate>
                    <Csrf token=viewer.csrf.clone()/>
                    <div class="field" class:field-invalid=f.has_error("name")>
                        <label for="key-name">"Name"</label>
                        <input id="key-name" name="name" type="text" placeholder="production server" value=f.value("name")/>
                        {f.error("name")}
                    </div>
                    <fieldset class="field">
                        <legend>"Mode"</legend>
                        <label class="check"><input type="radio" name="mode" value="test" checked=true/>" Test — spends the free sandbox balance; accepts Tollgate-Simulate"</label>
                        <label class="check"><input type="radio" name="mode" value="live"/>" Live — spends your credits"</label>
                        {f.error("mode")}
                    </fieldset>
                    <fieldset class="field">
                        <legend>"Scopes"</legend>
                        <label class="check"><input type="checkbox" name="scopes[0]" value="*" checked=true/>" every endpoint (" <code>"*"</code> ")"</label>
                        {scopes}
                        {f.error("scopes")}
                    </fieldset>
                    <div class="field">
                        <label for="key-expiry">"Expires"</label>
                        <select id="key-expiry" name="expires_in_days">
                            <option value="never">"never"</option>
                            <option value="7">"in 7 days"</option>
                            <option value="30">"in 30 days"</option>
                            <option value="90">"in 90 days"</option>
                            <option value="365">"in a year"</option>
                        </select>
                        {f.error("expires_in_days")}
                    </div>
                    <button type="submit" class="button">"Create key"</button>
                </form>
            </section>
        }
    });
    view! {
        <section class="panel">
            <h1>"API keys"</h1>
            <p class="muted">
                "Send a key as " <code>"Authorization: Bearer tg_…"</code> ". Live credits: "
                <strong data-testid="live-credits">{page.live_credits}</strong> " · sandbox credits: "
                <strong data-testid="sandbox-credits">{page.sandbox_credits}</strong>
            </p>
            {f.banner()}
        </section>
        {new_key}
        <section class="panel">
            <div class="table-wrap">
                <table class="table" data-testid="keys">
                    <thead><tr>
                        <th>"Name"</th><th>"Key"</th><th>"Mode"</th><th>"Scopes"</th><th>"Created"</th>
                        <th>"Last used"</th><th>"Expires"</th><th>"Status"</th><th></th>
                    </tr></thead>
                    <tbody>{rows}</tbody>
                </table>
            </div>
            {(!manage).then(|| view! { <p class="muted">"Only developers, admins and owners manage keys."</p> })}
        </section>
        {create}
    }
}
