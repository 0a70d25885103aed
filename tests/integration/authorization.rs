//! Authorization, proven on every route: the cases come from the portal's
//! router (every page route Leptos registers) and from every registered
//! server function, so a new page or function without a case here fails the
//! suite. Each protected case is called as a signed-out visitor, as the owner
//! of another organization with this organization's ids (as typed, upper
//! case, padded, percent-encoded), as each lower role of the organization,
//! and as a member who is no platform admin. Each is refused, the response
//! holds none of the organization's data, and the organization's rows (and
//! the platform's plans and routes) are the same after as before.

use crate::billing::{add_card, top_up, GOOD};
use crate::helpers::*;
use crate::routes::admin_of;
use axum::http::StatusCode;
use sqlx::PgPool;
use std::collections::BTreeMap;
use uuid::Uuid;

/// Who may use a route or function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Need {
    Anyone,
    /// Signed in.
    User,
    /// A member with one of these roles.
    Member(&'static [&'static str]),
    /// The public catalogue for visitors; within an organization, these roles.
    Catalogue(&'static [&'static str]),
    Admin,
}

const ALL_ROLES: &[&str] = &["owner", "admin", "developer", "billing"];
const BILLING: &[&str] = &["owner", "admin", "billing"];
const DEVELOPERS: &[&str] = &["owner", "admin", "developer"];
const MANAGERS: &[&str] = &["owner", "admin"];

/// A value a case sends: literal, or one of the organization's ids (in the
/// spelling of the round).
#[derive(Clone, Copy, Debug)]
enum V {
    Lit(&'static str),
    Csrf,
    Org,
    KeyId,
    UserId,
    InvitationId,
    CardId,
    ChargeId,
    InvoiceId,
    RequestId,
    RouteId,
    PlanId,
    Token,
}

use V::*;

/// Every server function: who may call it and what it is sent.
fn function_case(endpoint: &str) -> Option<(Need, Vec<(&'static str, V)>)> {
    Some(match endpoint {
        // Public: reading the docs, the plans and the explorer, signing up
        // and in, resetting a password, reading an invitation.
        "viewer" | "plans" | "explorer_setup" => (Need::Anyone, vec![]),
        "doc" => (Need::Anyone, vec![("slug", Lit("quickstart"))]),
        "search_docs" => (Need::Anyone, vec![("query", Lit("credits"))]),
        "sign_up" | "sign_in" | "password_forgot" | "password_reset" | "verify_email" | "invitation" => (Need::Anyone, vec![]),
        // Signed in, whatever the organization.
        "sign_out" | "resend_verification" => (Need::User, vec![("csrf", Csrf)]),
        "accept_invitation" => (Need::User, vec![("csrf", Csrf), ("token", Token)]),
        "switch_org" => (Need::User, vec![("csrf", Csrf), ("org_id", Org), ("return_to", Lit("/account"))]),
        // Every member: usage and the dashboard, the sandbox.
        "usage" => (Need::Member(ALL_ROLES), vec![("query[span]", Lit("30d")), ("query[key]", KeyId), ("query[mode]", Lit(""))]),
        "dashboard" => (Need::Member(ALL_ROLES), vec![]),
        "refill_sandbox" => (Need::Member(ALL_ROLES), vec![("csrf", Csrf)]),
        // Developers and up: keys and the request log.
        "api_keys" => (Need::Member(DEVELOPERS), vec![]),
        "create_api_key" => (Need::Member(DEVELOPERS), vec![("csrf", Csrf), ("name", Lit("intruder")), ("mode", Lit("live")), ("scopes[0]", Lit("*")), ("expires_in_days", Lit("never"))]),
        "revoke_api_key" => (Need::Member(DEVELOPERS), vec![("csrf", Csrf), ("key_id", KeyId)]),
        "rotate_api_key" => (Need::Member(DEVELOPERS), vec![("csrf", Csrf), ("key_id", KeyId), ("overlap_hours", Lit("0"))]),
        "logs" => (
            Need::Member(DEVELOPERS),
            vec![("query[class]", Lit("")), ("query[code]", Lit("")), ("query[key]", KeyId), ("query[endpoint]", Lit("")), ("query[mode]", Lit("")), ("query[from]", Lit("")), ("query[to]", Lit("")), ("query[after]", Lit(""))],
        ),
        "log_entry" => (Need::Member(DEVELOPERS), vec![("request_id", RequestId)]),
        // Owners, admins and billing members: money.
        "billing" | "billing_payment_methods" | "billing_limits" | "billing_invoices" => (Need::Member(BILLING), vec![]),
        "billing_plans" => (Need::Catalogue(BILLING), vec![("plan", Lit("pro")), ("renew", Lit("false"))]),
        "billing_top_up" => (Need::Member(BILLING), vec![("credits", Lit("1000"))]),
        "billing_invoice" => (Need::Member(BILLING), vec![("id", InvoiceId)]),
        "choose_plan" => (Need::Member(BILLING), vec![("csrf", Csrf), ("plan", Lit("enterprise")), ("idempotency_key", Lit("authz-choose-plan-key-0001")), ("return_to", Lit("/billing"))]),
        "cancel_subscription" => (Need::Member(BILLING), vec![("csrf", Csrf)]),
        "start_trial" => (Need::Member(BILLING), vec![("csrf", Csrf), ("plan", Lit("pro"))]),
        "add_card" => (
            Need::Member(BILLING),
            vec![("csrf", Csrf), ("number", Lit("4242424242424242")), ("exp_month", Lit("12")), ("exp_year", Lit("2031")), ("cvc", Lit("123")), ("name", Lit("Intruder")), ("make_default", Lit("on"))],
        ),
        "set_default_card" | "remove_card" => (Need::Member(BILLING), vec![("csrf", Csrf), ("card_id", CardId)]),
        "save_card" => (Need::Member(BILLING), vec![("csrf", Csrf), ("token", Lit("seti_intruder")), ("make_default", Lit("on"))]),
        "confirm_payment" => (Need::Member(BILLING), vec![("csrf", Csrf), ("charge", ChargeId), ("invoice", InvoiceId)]),
        "top_up" => (Need::Member(BILLING), vec![("csrf", Csrf), ("choice", Lit("1000")), ("idempotency_key", Lit("authz-top-up-key-000000001"))]),
        "save_limits" => (Need::Member(BILLING), vec![("csrf", Csrf), ("spend_cap", Lit("1")), ("low_balance_at", Lit("5"))]),
        // Owners and admins: members.
        "members" => (Need::Member(MANAGERS), vec![]),
        "invite_member" => (Need::Member(MANAGERS), vec![("csrf", Csrf), ("email", Lit("intruder@example.com")), ("role", Lit("owner"))]),
        "member_role" => (Need::Member(MANAGERS), vec![("csrf", Csrf), ("user_id", UserId), ("role", Lit("owner"))]),
        "remove_member" => (Need::Member(MANAGERS), vec![("csrf", Csrf), ("user_id", UserId)]),
        "revoke_invitation" => (Need::Member(MANAGERS), vec![("csrf", Csrf), ("invitation_id", InvitationId)]),
        // Platform admins.
        "admin_home" | "admin_plans" | "admin_outbox" | "admin_routes" | "admin_approvals" => (Need::Admin, vec![]),
        "admin_recovery" => (Need::Admin, vec![("query[from]", Lit("")), ("query[to]", Lit("")), ("query[org]", Org)]),
        "admin_orgs" => (Need::Admin, vec![("q", Org)]),
        "admin_org" => (Need::Admin, vec![("id", Org)]),
        "admin_audit" => (
            Need::Admin,
            vec![("query[actor]", Lit("")), ("query[org]", Org), ("query[action]", Lit("")), ("query[from]", Lit("")), ("query[to]", Lit("")), ("query[after]", Lit(""))],
        ),
        "adjust_credits" => (
            Need::Admin,
            vec![("csrf", Csrf), ("org_id", Org), ("account", Lit("purchased")), ("direction", Lit("add")), ("amount", Lit("1000")), ("reason", Lit("intrusion")), ("idempotency_key", Lit("authzadjust0000000001"))],
        ),
        "refund_invoice" => (
            Need::Admin,
            vec![("csrf", Csrf), ("org_id", Org), ("invoice_id", InvoiceId), ("amount", Lit("1.00")), ("reason", Lit("intrusion")), ("idempotency_key", Lit("authzrefund00000000001"))],
        ),
        "admin_reconcile" => (Need::Admin, vec![("query[since]", Lit("")), ("query[until]", Lit(""))]),
        "set_keys_suspended" => (Need::Admin, vec![("csrf", Csrf), ("org_id", Org), ("suspend", Lit("true")), ("reason", Lit("intrusion"))]),
        "save_plan" => (
            Need::Admin,
            vec![("csrf", Csrf), ("plan_id", PlanId), ("name", Lit("Hacked")), ("price", Lit("0")), ("currency", Lit("USD")), ("included_credits", Lit("999999")), ("rate_limit_per_sec", Lit("500")), ("visible", Lit("on"))],
        ),
        "set_plan_archived" => (Need::Admin, vec![("csrf", Csrf), ("plan_id", PlanId), ("archive", Lit("true"))]),
        "save_route" => (
            Need::Admin,
            vec![("csrf", Csrf), ("route_id", RouteId), ("path_prefix", Lit("/v1/hacked")), ("upstream_url", Lit("http://127.0.0.1:9/")), ("endpoint", Lit("hacked")), ("scope", Lit("hacked")), ("pricing", Lit("fixed")), ("price", Lit("0"))],
        ),
        "set_route_active" => (Need::Admin, vec![("csrf", Csrf), ("route_id", RouteId), ("active", Lit("false"))]),
        "decide_approval" => (Need::Admin, vec![("csrf", Csrf), ("org_id", Org), ("decision", Lit("approve"))]),
        _ => return None,
    })
}

/// Every page route: who may open it, and the path with its parameters.
fn page_case(route: &str) -> Option<(Need, &'static str)> {
    let r = route.replace('{', ":").replace('}', "");
    Some(match r.as_str() {
        "/" | "/signup" | "/login" | "/password/forgot" | "/password/reset" | "/verify-email" | "/docs" | "/docs/search" | "/explorer" => (Need::Anyone, "/"),
        "/docs/:*slug" | "/invitations/:token" => (Need::Anyone, "/"),
        "/account" => (Need::User, "/account"),
        "/account/usage" => (Need::Member(ALL_ROLES), "/account/usage"),
        "/account/keys" => (Need::Member(DEVELOPERS), "/account/keys"),
        "/account/logs" => (Need::Member(DEVELOPERS), "/account/logs"),
        "/account/logs/:id" => (Need::Member(DEVELOPERS), "/account/logs/{request}"),
        "/account/members" => (Need::Member(MANAGERS), "/account/members"),
        "/billing" => (Need::Member(BILLING), "/billing"),
        "/billing/plans" => (Need::Catalogue(BILLING), "/billing/plans"),
        "/billing/top-up" => (Need::Member(BILLING), "/billing/top-up"),
        "/billing/payment-methods" => (Need::Member(BILLING), "/billing/payment-methods"),
        "/billing/limits" => (Need::Member(BILLING), "/billing/limits"),
        "/billing/invoices" => (Need::Member(BILLING), "/billing/invoices"),
        "/billing/invoices/:id" => (Need::Member(BILLING), "/billing/invoices/{invoice}"),
        "/admin" => (Need::Admin, "/admin"),
        "/admin/recovery" => (Need::Admin, "/admin/recovery?org={org}"),
        "/admin/orgs" => (Need::Admin, "/admin/orgs?q={org}"),
        "/admin/orgs/:id" => (Need::Admin, "/admin/orgs/{org}"),
        "/admin/plans" => (Need::Admin, "/admin/plans"),
        "/admin/audit" => (Need::Admin, "/admin/audit?org={org}"),
        "/admin/reconcile" => (Need::Admin, "/admin/reconcile"),
        "/admin/outbox" => (Need::Admin, "/admin/outbox"),
        "/admin/approvals" => (Need::Admin, "/admin/approvals"),
        "/admin/routes" => (Need::Admin, "/admin/routes?edit={route}"),
        _ => return None,
    })
}

/// The portal's plain routes beside the pages: the downloads (GET). The
/// explorer's `/explorer/send` (a JSON POST) has a case of its own below;
/// `/docs/search.json`, the health checks and the processor's webhook are
/// public (the webhook's signature is its guard, tested in billing.rs).
const PLAIN: [(&str, Need); 2] = [("/account/usage.csv", Need::Member(ALL_ROLES)), ("/admin/audit.csv?org={org}", Need::Admin)];

/// The organization under attack, and what identifies its data.
struct Victim {
    org: Uuid,
    key_id: Uuid,
    user_id: Uuid,
    invitation_id: Uuid,
    card_id: Uuid,
    charge_id: Uuid,
    invoice_id: Uuid,
    request_id: String,
    route_id: Uuid,
    plan_id: Uuid,
    token: String,
    /// Text none of its pages may show to anyone outside it.
    markers: Vec<String>,
    /// Text none of its pages may show to a member who may not see them.
    member_markers: Vec<String>,
}

/// The organization's rows, and the platform's plans and routes, as one
/// digest per table.
async fn snapshot(db: &PgPool, org: Uuid) -> BTreeMap<&'static str, String> {
    let tables: [(&str, &str); 17] = [
        ("email_outbox", "SELECT o.* FROM email_outbox o WHERE o.to_address IN (SELECT u.email FROM users u JOIN memberships m ON m.user_id = u.id WHERE m.org_id = $1)"),
        ("organizations", "SELECT * FROM organizations WHERE id = $1"),
        ("memberships", "SELECT * FROM memberships WHERE org_id = $1"),
        ("invitations", "SELECT * FROM invitations WHERE org_id = $1"),
        ("api_keys", "SELECT * FROM api_keys WHERE org_id = $1"),
        ("subscriptions", "SELECT * FROM subscriptions WHERE org_id = $1"),
        ("org_meters", "SELECT * FROM org_meters WHERE org_id = $1"),
        ("ledger", "SELECT * FROM ledger_transactions WHERE org_id = $1"),
        ("invoices", "SELECT * FROM invoices WHERE org_id = $1"),
        ("charges", "SELECT * FROM charges WHERE org_id = $1"),
        ("refunds", "SELECT * FROM refunds WHERE org_id = $1"),
        ("payment_methods", "SELECT * FROM payment_methods WHERE org_id = $1"),
        ("audit_log", "SELECT * FROM audit_log WHERE org_id = $1"),
        ("users", "SELECT u.* FROM users u JOIN memberships m ON m.user_id = u.id WHERE m.org_id = $1"),
        ("plans", "SELECT * FROM plans WHERE $1::uuid IS NOT NULL"),
        ("routes", "SELECT * FROM routes WHERE $1::uuid IS NOT NULL"),
        ("fix_visits", "SELECT * FROM fix_visits WHERE org_id = $1"),
    ];
    let mut out = BTreeMap::new();
    for (name, sql) in tables {
        let digest: Option<String> = sqlx::query_scalar(&format!(
            "SELECT md5(string_agg(row_to_json(t)::text, '|' ORDER BY row_to_json(t)::text)) FROM ({sql}) t"
        ))
        .bind(org)
        .fetch_one(db)
        .await
        .unwrap();
        out.insert(name, digest.unwrap_or_default());
    }
    out
}

/// The spellings of an id an attacker tries.
fn spellings(id: &str) -> Vec<String> {
    let encoded: String = id.bytes().map(|b| format!("%{b:02X}")).collect();
    vec![id.to_string(), id.to_uppercase(), format!("  {id} "), encoded, format!("{{{id}}}"), id.replace('-', "")]
}

/// Rounds per case with an id: one per spelling.
const SPELLINGS: usize = 6;

fn value(v: V, victim: &Victim, csrf: &str, spelling: usize) -> String {
    let id = |s: String| spellings(&s)[spelling].clone();
    match v {
        Lit(s) => s.to_string(),
        Csrf => csrf.to_string(),
        Org => id(victim.org.to_string()),
        KeyId => id(victim.key_id.to_string()),
        UserId => id(victim.user_id.to_string()),
        InvitationId => id(victim.invitation_id.to_string()),
        CardId => id(victim.card_id.to_string()),
        ChargeId => id(victim.charge_id.to_string()),
        InvoiceId => id(victim.invoice_id.to_string()),
        RequestId => id(victim.request_id.clone()),
        RouteId => id(victim.route_id.to_string()),
        PlanId => id(victim.plan_id.to_string()),
        Token => victim.token.clone(),
    }
}

/// A browser of its own (its own address, so sign-in throttles stay apart).
fn browser(app: &TestApp, n: u8) -> TestApp {
    let mut b = app.other_browser();
    b.ip = format!("198.51.100.{}", 100 + n);
    b
}

/// One attacker: who they are, and whether a case's need lets them in.
struct Attacker {
    name: &'static str,
    app: TestApp,
    role: Option<&'static str>,
    email: Option<String>,
    /// A member of another organization: their own data is theirs to see.
    outsider: bool,
}

impl Attacker {
    fn allowed(&self, need: Need) -> bool {
        match need {
            Need::Anyone => true,
            Need::User => self.name != "signed out",
            Need::Member(roles) => self.outsider || self.role.is_some_and(|r| roles.contains(&r)),
            Need::Catalogue(roles) => self.role.is_none_or(|r| roles.contains(&r)),
            Need::Admin => false,
        }
    }

    /// What this attacker must never see (their own address aside: the
    /// header shows it).
    fn forbidden_text(&self, victim: &Victim) -> Vec<String> {
        let all = if self.role.is_some() { &victim.member_markers } else { &victim.markers };
        all.iter().filter(|m| Some(m.as_str()) != self.email.as_deref()).cloned().collect()
    }
}

async fn setup(db: &PgPool) -> (TestApp, Victim, Vec<Attacker>) {
    let mut owner = TestApp::new(db.clone()).await;
    owner.sign_up("Zephyrine Quill", "zephyrine@victim.test", PASSWORD).await;
    let org = owner.org_of("zephyrine@victim.test").await;
    sqlx::query("UPDATE organizations SET name = 'Quillworks Victim Co' WHERE id = $1").bind(org).execute(db).await.unwrap();
    let key = owner.create_key("victim server", "live", &["*"], "never").await;
    add_card(&mut owner, GOOD).await;
    top_up(&mut owner, 1000).await;
    let refused = owner.call("POST", "/v1/text/summarize", Some(&key), Some(r#"{"text": "hello there"}"#), &[]).await;
    let request_id = refused.json()["request_id"].as_str().unwrap().to_string();
    owner.state.gateway.usage.flush().await;
    let mut members = Vec::new();
    for (i, role) in ["admin", "developer", "billing"].into_iter().enumerate() {
        let mut m = owner.invite_and_join(&format!("{role}@victim.test"), role, &format!("Victim {role}")).await;
        m.ip = format!("198.51.100.{}", 10 + i);
        members.push((role, m));
    }
    // An invitation still open, for the revoke case.
    let csrf = extract_csrf(&owner.get("/account/members").await.body);
    owner.post_form("/api/invite_member", &[("csrf", &csrf), ("email", "pending@victim.test"), ("role", "developer")]).await;
    let (_, body) = last_email(db, "pending@victim.test").await.unwrap();
    let token = link_path(&body).trim_start_matches("/invitations/").to_string();
    let mut ops = admin_of(&owner).await;
    crate::routes::add_route(
        &mut ops,
        &[("path_prefix", "/v1/victim"), ("upstream_url", "http://127.0.0.1:9/"), ("endpoint", "victim"), ("scope", "victim"), ("pricing", "fixed"), ("price", "1")],
    )
    .await;
    let one = |sql: &'static str| async move { sqlx::query_scalar::<_, Uuid>(sql).bind(org).fetch_one(db).await.unwrap() };
    let key_id = one("SELECT id FROM api_keys WHERE org_id = $1 LIMIT 1").await;
    let user_id = one("SELECT m.user_id FROM memberships m WHERE m.org_id = $1 AND m.role = 'developer'").await;
    let invitation_id = one("SELECT id FROM invitations WHERE org_id = $1 AND accepted_at IS NULL LIMIT 1").await;
    let card_id = one("SELECT id FROM payment_methods WHERE org_id = $1 LIMIT 1").await;
    let charge_id = one("SELECT id FROM charges WHERE org_id = $1 LIMIT 1").await;
    let invoice_id = one("SELECT id FROM invoices WHERE org_id = $1 LIMIT 1").await;
    let route_id = one("SELECT id FROM routes WHERE $1::uuid IS NOT NULL LIMIT 1").await;
    let plan_id = one("SELECT id FROM plans WHERE code = 'pro' AND $1::uuid IS NOT NULL").await;
    let invoice_number: String = sqlx::query_scalar("SELECT number FROM invoices WHERE id = $1").bind(invoice_id).fetch_one(db).await.unwrap();
    let prefix: String = sqlx::query_scalar("SELECT prefix FROM api_keys WHERE id = $1").bind(key_id).fetch_one(db).await.unwrap();
    let member_markers = vec![
        "zephyrine@victim.test".to_string(),
        "pending@victim.test".to_string(),
        prefix.clone(),
        invoice_number.clone(),
        request_id.clone(),
        key.clone(),
        "victim server".to_string(),
    ];
    let mut markers = member_markers.clone();
    // Not its ids: an attacker sends those, and a page may repeat them.
    markers.extend(["Quillworks Victim Co".to_string(), "developer@victim.test".to_string()]);
    let victim = Victim {
        org,
        key_id,
        user_id,
        invitation_id,
        card_id,
        charge_id,
        invoice_id,
        request_id,
        route_id,
        plan_id,
        token,
        markers,
        member_markers,
    };

    let mut attackers = Vec::new();
    let mut anon = browser(&owner, 1);
    anon.get("/login").await;
    attackers.push(Attacker { name: "signed out", app: anon, role: None, email: None, outsider: false });
    let mut stranger = browser(&owner, 2);
    stranger.sign_up("Mallory", "mallory@attacker.test", PASSWORD).await;
    stranger.create_key("mallory's", "live", &["*"], "never").await;
    attackers.push(Attacker { name: "another organization's owner", app: stranger, role: None, email: Some("mallory@attacker.test".into()), outsider: true });
    for (role, m) in members {
        attackers.push(Attacker { name: role, app: m, role: Some(role), email: Some(format!("{role}@victim.test")), outsider: false });
    }
    attackers.push(Attacker { name: "owner (no platform admin)", app: owner.other_browser(), role: Some("owner"), email: Some("zephyrine@victim.test".into()), outsider: false });
    let last = attackers.last_mut().unwrap();
    last.app.ip = "198.51.100.99".into();
    last.app.sign_in("zephyrine@victim.test", PASSWORD).await;
    (owner, victim, attackers)
}

/// Calls a server function as the hydrated page does (not a form post: the
/// answer is the function's result, not a redirect).
async fn read(app: &mut TestApp, path: &str, fields: &[(&str, &str)]) -> TestResponse {
    let body = serde_urlencoded::to_string(fields).unwrap();
    let req = axum::http::Request::post(path)
        .header(axum::http::header::ACCEPT, "application/json")
        .header(axum::http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(axum::http::header::ORIGIN, "http://portal.test")
        .header(axum::http::header::COOKIE, app.cookie_header())
        .header("x-forwarded-for", app.ip.clone())
        .body(axum::body::Body::from(body))
        .unwrap();
    app.send(req).await
}

fn refused_page(res: &TestResponse) -> bool {
    matches!(res.status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND | StatusCode::UNAUTHORIZED)
        || (res.status.is_redirection() && res.location().starts_with("/login"))
}

#[sqlx::test]
async fn every_route_and_server_function_refuses_who_may_not_use_it(db: PgPool) {
    let (owner, victim, mut attackers) = setup(&db).await;
    let before = snapshot(&db, victim.org).await;
    let mut cases = 0usize;
    let mut missing = Vec::new();
    let mut failures = Vec::new();

    // Server functions, as registered.
    let mut functions: Vec<String> = leptos::server_fn::axum::server_fn_paths().map(|(p, _)| p.to_string()).collect();
    functions.sort();
    functions.dedup();
    assert!(functions.len() > 50, "the registry lists the server functions: {functions:?}");
    for path in &functions {
        let endpoint = path.trim_start_matches("/api/");
        let Some((need, fields)) = function_case(endpoint) else {
            missing.push(path.clone());
            continue;
        };
        if need == Need::Anyone {
            continue;
        }
        let has_id = fields.iter().any(|(_, v)| matches!(v, Org | KeyId | UserId | InvitationId | CardId | InvoiceId | RequestId | RouteId | PlanId));
        let rounds = if has_id { SPELLINGS } else { 1 };
        let is_form = fields.iter().any(|(_, v)| matches!(v, Csrf));
        for a in attackers.iter_mut() {
            // Members who may use it are not attackers; the outsider tries
            // everything (with this organization's ids), but signing out
            // would end the outsider's own session.
            if (a.allowed(need) && !a.outsider) || (endpoint == "sign_out" && a.name != "signed out") {
                continue;
            }
            let must_refuse = !a.allowed(need);
            for spelling in 0..rounds {
                let csrf = a.app.csrf().await;
                let values: Vec<(String, String)> = fields.iter().map(|(k, v)| (k.to_string(), value(*v, &victim, &csrf, spelling))).collect();
                let pairs: Vec<(&str, &str)> = values.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let res = if is_form { a.app.post_form(path, &pairs).await } else { read(&mut a.app, path, &pairs).await };
                cases += 1;
                let who = format!("{path} as {} (spelling {spelling})", a.name);
                if !is_form && must_refuse && res.status.is_success() {
                    failures.push(format!("{who}: answered {}", res.status));
                }
                if let Some(m) = a.forbidden_text(&victim).into_iter().find(|m| res.body.contains(m.as_str())) {
                    failures.push(format!("{who}: shows {m}"));
                }
                // The page a form leads to shows its message: none of the
                // organization's data either (to someone outside it).
                // (An invitation's link shows the invitation to whoever holds it.)
                if is_form && a.role.is_none() && endpoint != "accept_invitation" {
                    let after = a.app.get(res.location()).await;
                    if let Some(m) = victim.markers.iter().find(|m| after.body.contains(m.as_str())) {
                        failures.push(format!("{who}: its answer page shows {m}"));
                    }
                }
                let now = snapshot(&db, victim.org).await;
                if now != before {
                    let changed: Vec<&str> = now.iter().filter(|(k, v)| before.get(*k) != Some(v)).map(|(k, _)| *k).collect();
                    failures.push(format!("{who}: changed {changed:?}"));
                    return report(cases, &missing, &failures, Some(changed));
                }
            }
        }
    }

    // Page routes, as the router registers them, and the plain downloads.
    let mut pages: Vec<String> = leptos_axum::generate_route_list(app::App).iter().map(|r| r.path().to_string()).collect();
    pages.sort();
    pages.dedup();
    let mut targets: Vec<(String, Need, &'static str)> = Vec::new();
    for route in &pages {
        match page_case(route) {
            Some((need, target)) => targets.push((route.clone(), need, target)),
            None => missing.push(route.clone()),
        }
    }
    for (path, need) in PLAIN {
        targets.push((path.to_string(), need, path));
    }
    for (route, need, target) in targets {
        if need == Need::Anyone {
            continue;
        }
        let rounds = if target.contains('{') { SPELLINGS } else { 1 };
        for a in attackers.iter_mut() {
            if a.allowed(need) && !a.outsider {
                continue;
            }
            for spelling in 0..rounds {
                let id = |s: String| spellings(&s)[spelling].replace(' ', "%20").replace('{', "%7B").replace('}', "%7D");
                let path = target
                    .replace("{org}", &id(victim.org.to_string()))
                    .replace("{request}", &id(victim.request_id.clone()))
                    .replace("{invoice}", &id(victim.invoice_id.to_string()))
                    .replace("{route}", &id(victim.route_id.to_string()));
                let res = a.app.get(&path).await;
                cases += 1;
                let who = format!("{route} ({path}) as {}", a.name);
                let must_refuse = !a.allowed(need) || (a.outsider && target.contains('{'));
                if must_refuse && !refused_page(&res) {
                    failures.push(format!("{who}: answered {}", res.status));
                }
                if let Some(m) = a.forbidden_text(&victim).into_iter().find(|m| res.body.contains(m.as_str())) {
                    failures.push(format!("{who}: shows {m}"));
                }
            }
        }
    }
    // The explorer's own route: sending with one of this organization's keys
    // by id (developers and up of the organization only).
    for a in attackers.iter_mut() {
        if a.allowed(Need::Member(DEVELOPERS)) && !a.outsider {
            continue;
        }
        for spelling in 0..SPELLINGS {
            let csrf = a.app.csrf().await;
            let body = serde_json::json!({
                "csrf": csrf, "key_id": spellings(&victim.key_id.to_string())[spelling],
                "method": "POST", "path": "/v1/text/sentiment", "body": "{\"text\": \"hi\"}",
            });
            let req = axum::http::Request::post("/explorer/send")
                .header(axum::http::header::CONTENT_TYPE, "application/json")
                .header(axum::http::header::ORIGIN, "http://portal.test")
                .header(axum::http::header::COOKIE, a.app.cookie_header())
                .header("x-forwarded-for", a.app.ip.clone())
                .body(axum::body::Body::from(body.to_string()))
                .unwrap();
            let res = a.app.send(req).await;
            cases += 1;
            let who = format!("/explorer/send as {} (spelling {spelling})", a.name);
            if res.status.is_success() {
                failures.push(format!("{who}: answered {}", res.status));
            }
            if let Some(m) = a.forbidden_text(&victim).into_iter().find(|m| res.body.contains(m.as_str())) {
                failures.push(format!("{who}: shows {m}"));
            }
        }
    }
    owner.state.gateway.usage.flush().await;
    let after = snapshot(&db, victim.org).await;
    if after != before {
        let changed: Vec<&str> = after.iter().filter(|(k, v)| before.get(*k) != Some(v)).map(|(k, _)| *k).collect();
        failures.push(format!("the pages or the explorer changed the organization's rows: {changed:?}"));
    }
    report(cases, &missing, &failures, None)
}

fn report(cases: usize, missing: &[String], failures: &[String], changed: Option<Vec<&str>>) {
    println!("authorization: {cases} cases run");
    eprintln!("authorization: {cases} cases run");
    assert!(missing.is_empty(), "routes or server functions without a case (add one to tests/integration/authorization.rs): {missing:?}");
    assert!(failures.is_empty(), "{} refusals failed{}:\n{}", failures.len(), changed.map(|c| format!(" (stopped at a change of {c:?})")).unwrap_or_default(), failures.join("\n"));
}
