//! The signed-in customer's own pages: the dashboard, members, invitations.

use crate::components::{
    login_path_returning_here, use_viewer, Csrf, ErrorView, FormState, Loading,
};
use crate::pages::usage::{group, OutlookPanel, UsageNav, Warnings};
use crate::server_fns::{get_dashboard, get_invitation, get_members};
use crate::types::{role_summary, Dashboard, MembersPage, Viewer, ROLES};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::Redirect;
use leptos_router::hooks::use_params_map;

#[component]
pub fn AccountPage() -> impl IntoView {
    let viewer = use_viewer();
    let dashboard = Resource::new(|| (), |_| get_dashboard());
    view! {
        <Title text="Your account"/>
        <UsageNav/>
        <Suspense fallback=Loading>
            {move || Suspend::new(async move {
                let v = viewer.await;
                let f = FormState::new(&v, "verify_email");
                let Some(user) = v.user else {
                    return view! { <Redirect path=login_path_returning_here()/> }.into_any();
                };
                let org = user.org.clone();
                let unverified = (!user.email_verified).then(|| view! {
                    <section class="panel" data-testid="verify-email">
                        <h2>"Confirm your email address"</h2>
                        <p>"We sent a link to " <strong>{user.email.clone()}</strong> ". Follow it to confirm the address: "
                           "a free trial needs a confirmed address (or a card)."</p>
                        <form method="post" action="/api/resend_verification" class="inline-form">
                            <Csrf token=v.csrf.clone()/>
                            <button type="submit" class="button" data-testid="resend-verification">"Send another link"</button>
                        </form>
                    </section>
                });
                // A member without an organization (removed from it) has no dashboard.
                let d = match org {
                    Some(_) => dashboard.await.ok(),
                    None => None,
                };
                let org = user.org.clone();
                let role = org.as_ref().map(|o| o.role.clone()).unwrap_or_default();
                let manages_members = role == "owner" || role == "admin";
                let uses_keys = role != "billing";
                let sees_billing = role != "developer";
                view! {
                    {f.banner()}
                    {unverified}
                    {d.clone().map(|d| view! { <Warnings outlook=d.outlook.clone()/> })}
                    <section class="panel">
                        <h1>"Welcome, " {user.display_name.clone()}</h1>
                        <dl class="facts">
                            <dt>"Email"</dt><dd>{user.email.clone()}</dd>
                            {org.map(|o| view! {
                                <dt>"Organization"</dt><dd data-testid="org-name">{o.name}</dd>
                                <dt>"Your role"</dt><dd data-testid="org-role">{o.role}</dd>
                            })}
                        </dl>
                    </section>
                    {d.map(|d| view! { <DashboardView dashboard=d/> })}
                    <section class="cards">
                        {uses_keys.then(|| view! {
                            <article class="card">
                                <h2>"API keys"</h2>
                                <p>"Create test and live keys, rotate them, revoke them."</p>
                                <a href="/account/keys">"Manage API keys"</a>
                            </article>
                        })}
                        <article class="card">
                            <h2>"Usage"</h2>
                            <p>"Calls and credits by hour or day, by endpoint and key; export as CSV."</p>
                            <a href="/account/usage">"See usage"</a>
                        </article>
                        {uses_keys.then(|| view! {
                            <article class="card">
                                <h2>"Request log"</h2>
                                <p>"Every call, and the exact body of each refused one with its fix."</p>
                                <a href="/account/logs">"Open the request log"</a>
                            </article>
                        })}
                        {manages_members.then(|| view! {
                            <article class="card">
                                <h2>"Members"</h2>
                                <p>"Invite your team and choose what each person may do."</p>
                                <a href="/account/members">"Manage members"</a>
                            </article>
                        })}
                        {sees_billing.then(|| view! {
                            <article class="card">
                                <h2>"Billing"</h2>
                                <p>"Your plan, its included credits and its billing period."</p>
                                <a href="/billing">"Open billing"</a>
                            </article>
                        })}
                    </section>
                }
                .into_any()
            })}
        </Suspense>
    }
}

#[component]
fn DashboardView(dashboard: Dashboard) -> impl IntoView {
    let d = dashboard;
    let last = d.last_refused.clone().map(|r| {
        let href = format!("/account/logs/{}", r.row.request_id);
        let fix = r.fix.clone().map(|f| view! { <a class="button" href=f.href data-testid="last-refused-fix">{f.label}</a> " " });
        let log = d.can_see_log.then(|| view! { <a href=href>"See the call"</a> });
        view! {
            <section class="panel" data-testid="last-refused">
                <h2>"Last refused call"</h2>
                <p>
                    <time datetime=r.row.at.clone()>{r.row.at_label.clone()}</time> ": " {r.row.method.clone()} " "
                    <code>{r.row.endpoint.clone()}</code> " → 402 " <code>{r.row.code.clone()}</code>
                </p>
                {(!r.title.is_empty()).then(|| view! { <p>{r.title.clone()}</p> })}
                <p>{fix} {log}</p>
            </section>
        }
    });
    view! {
        <section class="panel">
            <h2>"Today (UTC)"</h2>
            <dl class="facts">
                <dt>"Calls"</dt><dd data-testid="today-calls">{group(d.today_calls)}</dd>
                <dt>"Refused with 402"</dt><dd data-testid="today-402">{group(d.today_402)}</dd>
            </dl>
            <p><a href="/account/usage">"Usage"</a> {d.can_see_log.then(|| view! { " · " <a href="/account/logs">"Request log"</a> })} " · " <a href="/account/keys">"API keys"</a></p>
        </section>
        <OutlookPanel outlook=d.outlook.clone() back="/account"/>
        {last}
    }
}

#[component]
pub fn MembersPage() -> impl IntoView {
    let viewer = use_viewer();
    let page = Resource::new(|| (), |_| get_members());
    view! {
        <Title text="Members"/>
        <Suspense fallback=Loading>
            {move || Suspend::new(async move {
                let v = viewer.await;
                match page.await {
                    Ok(p) => view! { <MembersView page=p viewer=v/> }.into_any(),
                    Err(e) => view! { <ErrorView error=e/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn RoleSelect(name: &'static str, selected: String, can_grant_owner: bool) -> impl IntoView {
    let options = ROLES
        .iter()
        .filter(|r| can_grant_owner || **r != "owner")
        .map(|r| {
            let is_selected = *r == selected;
            view! { <option value=*r selected=is_selected>{*r}</option> }
        })
        .collect_view();
    view! { <select name=name aria-label="Role">{options}</select> }
}

#[component]
fn MembersView(page: MembersPage, viewer: Viewer) -> impl IntoView {
    let f = FormState::new(&viewer, "members");
    let csrf = viewer.csrf.clone();
    let manage = page.can_manage;
    let grant_owner = page.can_grant_owner;
    let rows = page
        .members
        .into_iter()
        .map(|m| {
            let csrf = csrf.clone();
            let controls = (manage && !m.is_you).then(|| {
                let csrf2 = csrf.clone();
                let uid = m.user_id.clone();
                view! {
                    <form method="post" action="/api/member_role" class="inline-form">
                        <Csrf token=csrf.clone()/>
                        <input type="hidden" name="user_id" value=m.user_id.clone()/>
                        <RoleSelect name="role" selected=m.role.clone() can_grant_owner=grant_owner/>
                        <button type="submit" class="button button-small">"Change role"</button>
                    </form>
                    <form method="post" action="/api/remove_member" class="inline-form">
                        <Csrf token=csrf2/>
                        <input type="hidden" name="user_id" value=uid/>
                        <button type="submit" class="button button-small button-danger">"Remove"</button>
                    </form>
                }
            });
            view! {
                <tr>
                    <td>{m.display_name}{m.is_you.then_some(" (you)")}</td>
                    <td>{m.email}</td>
                    <td><span class="badge">{m.role}</span></td>
                    <td>{m.joined}</td>
                    <td class="actions">{controls}</td>
                </tr>
            }
        })
        .collect_view();
    let invitations = page.invitations;
    let has_invitations = !invitations.is_empty();
    let invitation_rows = invitations
        .into_iter()
        .map(|i| {
            let revoke = manage.then(|| view! {
                <form method="post" action="/api/revoke_invitation" class="inline-form">
                    <Csrf token=csrf.clone()/>
                    <input type="hidden" name="invitation_id" value=i.id.clone()/>
                    <button type="submit" class="button button-small button-danger">"Revoke"</button>
                </form>
            });
            view! {
                <tr>
                    <td>{i.email}</td>
                    <td><span class="badge">{i.role}</span></td>
                    <td>{i.expires}</td>
                    <td class="actions">{revoke}</td>
                </tr>
            }
        })
        .collect_view();
    let invite_form = manage.then(|| {
        let fs = f.clone();
        view! {
            <section class="panel">
                <h2>"Invite a member"</h2>
                <p class="muted">"They get an email with a link that is valid for 7 days."</p>
                <form method="post" action="/api/invite_member" class="row-form" novalidate>
                    <Csrf token=viewer.csrf.clone()/>
                    <div class="field">
                        <label for="invite-email">"Email"</label>
                        <input id="invite-email" name="email" type="email" value=fs.value("email")
                            aria-invalid=if fs.has_error("email") { "true" } else { "false" }/>
                        {fs.error("email")}
                    </div>
                    <div class="field">
                        <label for="invite-role">"Role"</label>
                        <RoleSelect name="role" selected="developer".to_string() can_grant_owner=grant_owner/>
                        {fs.error("role")}
                    </div>
                    <button type="submit" class="button">"Send invitation"</button>
                </form>
                <ul class="role-help">
                    {ROLES.iter().map(|r| view! { <li><strong>{*r}</strong>": " {role_summary(r)}</li> }).collect_view()}
                </ul>
            </section>
        }
    });
    view! {
        <section class="panel">
            <h1>"Members of " {page.org_name}</h1>
            <p class="muted">"Your role: " <span class="badge">{page.my_role}</span></p>
            {f.banner()}
            <div class="table-wrap">
                <table class="table" data-testid="members">
                    <thead><tr><th>"Name"</th><th>"Email"</th><th>"Role"</th><th>"Joined"</th><th></th></tr></thead>
                    <tbody>{rows}</tbody>
                </table>
            </div>
        </section>
        {has_invitations.then(|| view! {
            <section class="panel">
                <h2>"Open invitations"</h2>
                <div class="table-wrap">
                    <table class="table" data-testid="invitations">
                        <thead><tr><th>"Email"</th><th>"Role"</th><th>"Expires"</th><th></th></tr></thead>
                        <tbody>{invitation_rows}</tbody>
                    </table>
                </div>
            </section>
        })}
        {invite_form}
    }
}

#[component]
pub fn InvitationPage() -> impl IntoView {
    let viewer = use_viewer();
    let params = use_params_map();
    let token = params.read_untracked().get("token").unwrap_or_default();
    let t = token.clone();
    let preview = Resource::new(move || t.clone(), get_invitation);
    view! {
        <Title text="Invitation"/>
        <Suspense fallback=Loading>
            {move || {
                let token = token.clone();
                Suspend::new(async move {
                    let v = viewer.await;
                    let p = match preview.await {
                        Ok(p) => p,
                        Err(e) => return view! { <ErrorView error=e/> }.into_any(),
                    };
                    let f = FormState::new(&v, "invitation");
                    let action = match &v.user {
                        Some(_) => view! {
                            <form method="post" action="/api/accept_invitation">
                                <Csrf token=v.csrf.clone()/>
                                <input type="hidden" name="token" value=token.clone()/>
                                <button type="submit" class="button">"Join " {p.org_name.clone()}</button>
                            </form>
                        }
                        .into_any(),
                        None => {
                            let back = crate::components::encode_component(&format!("/invitations/{token}"));
                            view! {
                                <p>
                                    <a class="button" href=format!("/signup?invitation={token}")>"Create an account"</a>
                                    " or "
                                    <a href=format!("/login?return_to={back}")>"sign in"</a>
                                    " as " {p.email.clone()} " to accept."
                                </p>
                            }
                            .into_any()
                        }
                    };
                    view! {
                        <section class="panel auth-card">
                            <h1>"Join " {p.org_name.clone()}</h1>
                            <p>"You were invited as " <span class="badge">{p.role.clone()}</span> " ("
                                {role_summary(&p.role)} ")"</p>
                            {f.banner()}
                            {action}
                        </section>
                    }
                    .into_any()
                })
            }}
        </Suspense>
    }
}
