//! Wire types: what the server sends the UI. Plain serde structs, so they
//! compile to wasm; database rows never cross this line.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Who is looking at the page, plus the per-session form token and any
/// one-shot message left by the previous form post.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Viewer {
    pub user: Option<UserView>,
    /// Anti-forgery token every form posts back.
    pub csrf: String,
    pub flash: Option<Flash>,
}

impl Viewer {
    pub fn is_admin(&self) -> bool {
        self.user.as_ref().is_some_and(|u| u.is_platform_admin)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserView {
    pub email: String,
    pub display_name: String,
    pub email_verified: bool,
    pub is_platform_admin: bool,
    pub org: Option<OrgView>,
    /// Every organization the user belongs to (the header's switcher).
    pub orgs: Vec<OrgView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrgView {
    pub id: String,
    pub name: String,
    pub role: String,
}

/// The outcome of the previous form post, shown once.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Flash {
    /// Which form the errors and values belong to (for example "login").
    pub form: String,
    pub notice: Option<String>,
    pub error: Option<String>,
    /// Field name → message shown next to that field.
    pub field_errors: BTreeMap<String, String>,
    /// Field name → the value the user typed (never a password).
    pub values: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberView {
    pub user_id: String,
    pub email: String,
    pub display_name: String,
    pub role: String,
    pub joined: String,
    pub is_you: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InvitationView {
    pub id: String,
    pub email: String,
    pub role: String,
    pub expires: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MembersPage {
    pub org_name: String,
    pub my_role: String,
    /// Whether the viewer may invite, re-role and remove members.
    pub can_manage: bool,
    /// Whether the viewer may grant the owner role.
    pub can_grant_owner: bool,
    pub members: Vec<MemberView>,
    pub invitations: Vec<InvitationView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InvitationPreview {
    pub org_name: String,
    pub email: String,
    pub role: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanView {
    pub code: String,
    pub name: String,
    /// Formatted for display, for example "$29.00".
    pub price: String,
    pub included_credits: i64,
    pub rate_limit_per_sec: i32,
    pub requires_approval: bool,
    pub endpoints: Vec<String>,
    /// Days of the trial the plan offers (0: none).
    pub trial_days: i32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BillingOverview {
    pub org_name: String,
    pub plan: PlanView,
    pub status: String,
    pub period_start: String,
    pub period_end: String,
    pub plans: Vec<PlanView>,
    /// Owners, admins and billing members pay and change plans.
    pub can_manage: bool,
    pub included_credits: i64,
    pub included_expires: String,
    pub purchased_credits: i64,
    pub sandbox_credits: i64,
    /// "$29.00 on 2026-12-21", when a charge is coming.
    pub next_charge: Option<String>,
    pub default_card: Option<CardView>,
    pub banners: Vec<Banner>,
    pub period_spent: i64,
    pub spend_cap: Option<i64>,
    /// The period's included credits used, and the forecast.
    pub outlook: OutlookView,
}

/// A notice at the top of the billing pages: what stands, and the fix.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Banner {
    /// past_due, unpaid, pending_approval, canceled, trial, low_balance, expired, rejected
    pub kind: String,
    pub text: String,
    pub link: Option<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CardView {
    pub id: String,
    pub brand: String,
    pub last4: String,
    pub expiry: String,
    pub is_default: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LineView {
    pub no: i32,
    pub description: String,
    pub quantity: i64,
    pub unit: String,
    pub amount: String,
}

/// What choosing a plan on the plans page does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanAction {
    /// A visitor: sign up first.
    Signup,
    /// The organization's plan.
    Current,
    /// Undo a cancellation or a scheduled downgrade.
    Keep,
    Upgrade,
    /// At the period's end.
    Downgrade,
    /// Ask for a plan that needs approval.
    Approval,
    /// Start again after the subscription ended.
    Renew,
    /// Withdraw a request waiting for approval.
    Withdraw,
    /// Not possible now; the note says why.
    Unavailable,
}

impl PlanAction {
    pub fn as_str(self) -> &'static str {
        match self {
            PlanAction::Signup => "signup",
            PlanAction::Current => "current",
            PlanAction::Keep => "keep",
            PlanAction::Upgrade => "upgrade",
            PlanAction::Downgrade => "downgrade",
            PlanAction::Approval => "approval",
            PlanAction::Renew => "renew",
            PlanAction::Withdraw => "withdraw",
            PlanAction::Unavailable => "unavailable",
        }
    }
}

/// A plan as the plans page offers it to this organization.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanOption {
    pub plan: PlanView,
    pub action: PlanAction,
    /// What choosing it charges now, and its lines (upgrade, renew).
    pub amount: Option<String>,
    pub amount_minor: Option<i64>,
    pub lines: Vec<LineView>,
    /// Why, or when it takes effect.
    pub note: String,
    pub selected: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlansPage {
    pub can_manage: bool,
    pub status: String,
    pub current: String,
    pub options: Vec<PlanOption>,
    pub renew: bool,
    /// The plan a trial can start on, when one can.
    pub trial: Option<PlanView>,
    pub has_card: bool,
    /// A paid plan that can be canceled at the period's end.
    pub can_cancel: bool,
    pub period_end: String,
    /// Names this page's form posts (a double submit charges once).
    pub idempotency_key: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PackView {
    pub credits: i64,
    pub price: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopUpPage {
    pub can_manage: bool,
    pub packs: Vec<PackView>,
    /// The pack chosen (prefilled from `?credits=N`), or 0 for custom.
    pub selected: i64,
    /// A custom amount prefilled (when no pack matches).
    pub custom: Option<i64>,
    pub custom_min: i64,
    pub custom_max: i64,
    pub default_card: Option<CardView>,
    pub balance: i64,
    pub idempotency_key: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PaymentMethodsPage {
    pub can_manage: bool,
    pub cards: Vec<CardView>,
    /// Failed invoices a new card would pay now.
    pub owed: Vec<InvoiceView>,
    pub status: String,
    pub card_form: CardFormView,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LimitsPage {
    pub can_manage: bool,
    pub spend_cap: Option<i64>,
    pub period_spent: i64,
    pub low_balance_at: i64,
    pub auto_top_up: Option<(i64, i64, i32)>,
    pub warn_included_pct: Option<i16>,
    pub warn_spend_cap_pct: Option<i16>,
    pub packs: Vec<PackView>,
    pub has_card: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InvoiceView {
    pub id: String,
    pub number: String,
    pub purpose: String,
    /// paid, open, failed, void
    pub status: String,
    pub total: String,
    pub currency: String,
    pub created: String,
    pub paid: Option<String>,
    /// The decline, in words, with its codes.
    pub failure: Option<String>,
    pub failure_code: Option<String>,
    pub decline_code: Option<String>,
    pub lines: Vec<LineView>,
    pub org_name: String,
    pub refunds: Vec<RefundView>,
    /// What was sent back, when anything was.
    pub refunded: Option<String>,
    /// A payment of it waits for the customer to confirm it with their bank.
    pub awaiting_confirmation: bool,
    /// What the invoice's page needs to let the customer confirm it (filled
    /// on the invoice's own page).
    pub confirm: Option<ConfirmView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RefundView {
    pub amount: String,
    pub reason: String,
    /// pending, succeeded, failed
    pub status: String,
    pub date: String,
}

/// A processor's browser library, to confirm one card or one payment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BrowserLibraryView {
    pub script: String,
    pub publishable_key: String,
    pub client_secret: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfirmView {
    pub charge: String,
    pub library: BrowserLibraryView,
    /// The saved card's reference at the processor.
    pub payment_method: String,
}

/// How the payment-methods page collects a card.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CardFormView {
    /// The sandbox's own form (test card numbers, posted to Tollgate).
    Sandbox,
    /// The processor's browser library collects the card; `sentences` maps
    /// each refusal code to the sentence shown next to the card field (JSON).
    Browser { library: BrowserLibraryView, sentences: String },
    /// The processor cannot be reached: why, in words.
    Unavailable(String),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApprovalView {
    pub org_id: String,
    pub org_name: String,
    pub plan: String,
    pub replaces: Option<String>,
    pub requested: String,
    /// Names the request the admin sees (plan and time): a decision on a
    /// request that has since been withdrawn or replaced is refused.
    pub request: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub id: String,
    pub to: String,
    pub subject: String,
    pub body: String,
    pub kind: String,
    pub created: String,
    pub sent: Option<String>,
    pub last_error: Option<String>,
}

/// A provider route as the admin console lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouteView {
    pub id: String,
    pub path_prefix: String,
    pub upstream_url: String,
    pub endpoint: String,
    pub scope: String,
    /// The price as people read it.
    pub price: String,
    /// "fixed" or "metered", the credits per call (most, when metered) and
    /// per 1,000 tokens, as the edit form shows them.
    pub pricing: String,
    pub credits: i64,
    pub rate_per_1k: i64,
    /// Empty: every plan.
    pub plans: Vec<String>,
    pub timeout_ms: i32,
    pub active: bool,
    pub description: String,
    /// Empty: test keys get the example answer.
    pub test_upstream_url: String,
    pub test_example: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoutesPage {
    pub routes: Vec<RouteView>,
    /// (code, name) of every plan, for the "included in" choice.
    pub plans: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DocLink {
    pub slug: String,
    pub title: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NavSection {
    pub title: String,
    pub links: Vec<DocLink>,
}

/// A heading in a page's table of contents.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TocEntry {
    pub level: u8,
    pub id: String,
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DocPage {
    pub slug: String,
    pub title: String,
    pub summary: Option<String>,
    /// Rendered on the server from `content/` (raw HTML and unsafe links
    /// neutralised, see the root crate's `docs::markdown`) or from the
    /// OpenAPI document, every value escaped.
    pub html: String,
    pub toc: Vec<TocEntry>,
    pub nav: Vec<NavSection>,
    pub prev: Option<DocLink>,
    pub next: Option<DocLink>,
    /// For a signed-in reader: whose key the samples show.
    pub personal_note: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    pub href: String,
    pub title: String,
    pub heading: String,
    /// Escaped text with the matched words in `<mark>`.
    pub snippet_html: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchResults {
    pub query: String,
    pub hits: Vec<SearchHit>,
    pub nav: Vec<NavSection>,
}

/// An endpoint the explorer can call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExplorerEndpoint {
    pub id: String,
    pub method: String,
    /// The path; `{path}` marks the part a provider route passes on.
    pub path: String,
    pub summary: String,
    pub price: String,
    /// JSON Schema of the body, if it takes one (as JSON text).
    pub body_schema: Option<String>,
    pub body_example: Option<String>,
    pub docs: String,
}

/// One of the caller's keys (never its secret).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExplorerKey {
    pub id: String,
    pub label: String,
    pub mode: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExplorerSetup {
    pub endpoints: Vec<ExplorerEndpoint>,
    pub keys: Vec<ExplorerKey>,
    /// Problem codes a test key can simulate.
    pub codes: Vec<String>,
    pub csrf: String,
    pub signed_in: bool,
}

/// The roles an organization member can hold, strongest first.
pub const ROLES: [&str; 4] = ["owner", "admin", "developer", "billing"];

/// What each role may do, in one sentence, for the members page.
pub fn role_summary(role: &str) -> &'static str {
    match role {
        "owner" => "Everything, including granting ownership.",
        "admin" => "Manages members, keys and billing.",
        "developer" => "Manages API keys and reads usage.",
        "billing" => "Manages plans, payment methods and top-ups.",
        _ => "",
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyView {
    pub id: String,
    pub name: String,
    pub mode: String,
    /// "tg_live_AbCd…wxyz": enough to recognise a key, never enough to use it.
    pub display: String,
    pub scopes: Vec<String>,
    pub created: String,
    pub last_used: Option<String>,
    pub expires: Option<String>,
    /// "active", "expiring" (rotated, still in its overlap), "revoked" or "expired".
    pub status: String,
}

/// A key just created, shown once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewKey {
    pub secret: String,
}

/// What an organization has left to spend, in credits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Balances {
    /// Included and purchased credits, spent by live keys.
    pub live: i64,
    /// Spent by test keys.
    pub sandbox: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeysPage {
    pub org_name: String,
    pub can_manage: bool,
    pub keys: Vec<ApiKeyView>,
    /// (scope, what it allows)
    pub scopes: Vec<(String, String)>,
    pub live_credits: i64,
    pub sandbox_credits: i64,
    pub new_key: Option<NewKey>,
}

/// "6,200": credits and counts with thousands separated.
pub fn group(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// `k=v&…` of the pairs whose values are set, values percent-encoded.
fn query_string(pairs: &[(&str, &String)]) -> String {
    pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", crate::components::encode_component(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// What the usage page and its export are asked for (the URL's query).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageQuery {
    /// 24h, 7d, 30d or 90d; empty: 7d.
    pub span: String,
    /// A key id of the organization; empty: every key.
    pub key: String,
    /// live or test; empty: both.
    pub mode: String,
}

impl UsageQuery {
    /// The query string of this selection (empty values left out).
    pub fn to_query(&self) -> String {
        query_string(&[("span", &self.span), ("key", &self.key), ("mode", &self.mode)])
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub value: String,
    pub label: String,
}

/// One bar of the calls chart (and row of its table).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BucketView {
    /// RFC 3339, UTC.
    pub start: String,
    /// "14:00" or "Dec 3", UTC.
    pub label: String,
    /// Calls per outcome, in the order of `UsagePage::outcomes`.
    pub calls: Vec<i64>,
    pub credits_included: i64,
    pub credits_purchased: i64,
    pub credits_sandbox: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EndpointUsageView {
    pub endpoint: String,
    pub calls: i64,
    pub refused_402: i64,
    pub credits: i64,
    pub p50: String,
    pub p95: String,
}

/// Balances, the period's included credits, the forecast and the warnings
/// crossed: the same on the dashboard, the usage page and billing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OutlookView {
    pub included_used: i64,
    pub included_of: i64,
    /// "31 Dec 2026", or empty.
    pub reset_on: String,
    pub included_left: i64,
    pub purchased: i64,
    pub sandbox: i64,
    pub forecast: String,
    /// The credits run out before the period ends at the recent rate.
    pub runs_out: bool,
    pub warnings: Vec<Banner>,
    /// The organization's "included credits used" warning, percent.
    pub warn_included_pct: Option<i16>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UsagePage {
    pub query: UsageQuery,
    pub spans: Vec<Choice>,
    pub keys: Vec<Choice>,
    /// The outcome classes, in chart order.
    pub outcomes: Vec<String>,
    pub buckets: Vec<BucketView>,
    pub total_calls: i64,
    pub total_credits_included: i64,
    pub total_credits_purchased: i64,
    pub total_credits_sandbox: i64,
    pub endpoints: Vec<EndpointUsageView>,
    pub outlook: OutlookView,
    /// "Hour (UTC)" or "Day (UTC)".
    pub bucket_name: String,
    pub can_see_log: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogRowView {
    pub request_id: String,
    /// RFC 3339, UTC.
    pub at: String,
    /// "2026-12-01 10:15:03 UTC".
    pub at_label: String,
    pub method: String,
    pub endpoint: String,
    pub status: i16,
    pub code: String,
    pub credits: i64,
    pub latency: String,
    pub key_prefix: String,
    pub key_revoked: bool,
    pub mode: String,
}

/// The log's filters (the URL's query).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LogQuery {
    /// 2xx, 402, 429, 4xx or 5xx.
    pub class: String,
    pub code: String,
    pub key: String,
    pub endpoint: String,
    pub mode: String,
    /// `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM`, UTC.
    pub from: String,
    pub to: String,
    /// The cursor of the page (from the previous page's "Older" link).
    pub after: String,
}

impl LogQuery {
    /// The query string of the filters, without the cursor.
    pub fn filters_query(&self) -> String {
        query_string(&[
            ("class", &self.class),
            ("code", &self.code),
            ("key", &self.key),
            ("endpoint", &self.endpoint),
            ("mode", &self.mode),
            ("from", &self.from),
            ("to", &self.to),
        ])
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogPage {
    pub query: LogQuery,
    pub rows: Vec<LogRowView>,
    /// The next (older) page's link.
    pub older: Option<String>,
    pub classes: Vec<Choice>,
    pub codes: Vec<Choice>,
    pub keys: Vec<Choice>,
    pub endpoints: Vec<Choice>,
    /// Messages next to filters that could not be read.
    pub errors: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FixLink {
    pub label: String,
    pub href: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogEntryPage {
    pub row: LogRowView,
    /// The problem body as returned, pretty-printed.
    pub body: Option<String>,
    pub title: String,
    pub detail: String,
    pub fixes: Vec<FixLink>,
    pub docs: Option<String>,
    pub credits_included: i64,
    pub credits_purchased: i64,
    pub credits_sandbox: i64,
    pub explorer: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RefusedView {
    pub row: LogRowView,
    pub title: String,
    pub fix: Option<FixLink>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dashboard {
    pub outlook: OutlookView,
    pub today_calls: i64,
    pub today_402: i64,
    pub last_refused: Option<RefusedView>,
    pub can_see_log: bool,
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(super::group(6200), "6,200");
        assert_eq!(super::group(250_000), "250,000");
        assert_eq!(super::group(-1234567), "-1,234,567");
        assert_eq!(super::group(12), "12");
    }
}

// The operator's console (/admin/…).

/// A line of this month's revenue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RevenueLine {
    /// "Subscriptions", "Upgrades", "Top-ups".
    pub kind: String,
    pub amount: String,
    pub invoices: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopOrg {
    pub id: String,
    pub name: String,
    pub calls: i64,
    pub refused: i64,
}

/// `/admin`: money, subscriptions and 402s at a glance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdminHome {
    pub month: String,
    pub revenue: Vec<RevenueLine>,
    /// (plan, status, count)
    pub subscriptions: Vec<(String, String, i64)>,
    /// Day labels of the 402 chart, oldest first ("Nov 2").
    pub days: Vec<String>,
    /// (code, 402s per day)
    pub refusals: Vec<(String, Vec<i64>)>,
    pub top_usage: Vec<TopOrg>,
    pub top_refused: Vec<TopOrg>,
    pub pending_approvals: i64,
    pub users: i64,
    pub organizations: i64,
    pub unsent_emails: i64,
}

/// The reconciliation view's period, as typed (dates, UTC).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReconcileQuery {
    pub since: String,
    pub until: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DifferenceView {
    pub kind: String,
    pub label: String,
    pub org_id: Option<String>,
    pub invoice: Option<String>,
    pub reference: Option<String>,
    pub ours: String,
    pub theirs: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReconcilePage {
    /// The period as shown in the form (dates).
    pub since: String,
    pub until: String,
    pub processor: String,
    pub charges: usize,
    pub payments: usize,
    pub differences: Vec<DifferenceView>,
    /// Field errors of the period, or why the processor could not be asked.
    pub errors: Vec<(String, String)>,
}

/// The recovery view's range, as typed (dates, UTC).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RecoveryQuery {
    pub from: String,
    pub to: String,
    /// One organization's id, or empty for all.
    pub org: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunnelView {
    pub code: String,
    pub refused: i64,
    pub visited: i64,
    pub fixed: i64,
    pub recovered: i64,
    pub episodes: i64,
    /// "4 min", "—".
    pub median: String,
    pub p90: String,
    pub revenue: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UnrecoveredView {
    pub org_id: String,
    pub name: String,
    pub code: String,
    pub refused: i64,
    pub visited: bool,
    pub last: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecoveryPage {
    /// The range shown, as dates (the end is exclusive).
    pub from: String,
    pub to: String,
    /// The organization the funnel is narrowed to: (id, name).
    pub org: Option<(String, String)>,
    /// (field, message) when the range could not be read.
    pub errors: Vec<(String, String)>,
    pub funnels: Vec<FunnelView>,
    pub unrecovered: Vec<UnrecoveredView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrgListRow {
    pub id: String,
    pub name: String,
    pub plan: String,
    pub status: String,
    pub included: i64,
    pub purchased: i64,
    pub refusals_7d: i64,
    pub suspended: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrgListPage {
    pub q: String,
    pub rows: Vec<OrgListRow>,
}

/// One audit entry, as the log and an organization's trail show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRow {
    pub at: String,
    pub actor: String,
    pub org_id: String,
    pub org_name: String,
    pub action: String,
    pub details: String,
    pub before: String,
    pub after: String,
    pub request_id: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrgPage {
    pub id: String,
    pub name: String,
    pub created: String,
    pub suspended: Option<String>,
    pub suspended_reason: String,
    /// (plan, status, period, next plan)
    pub subscription: Option<(String, String, String, String)>,
    pub included: i64,
    pub purchased: i64,
    pub sandbox: i64,
    /// (email, name, role, joined)
    pub members: Vec<(String, String, String, String)>,
    /// (name, mode, shown as, created, last used, state)
    pub keys: Vec<(String, String, String, String, String, String)>,
    /// (when, kind, memo, included, purchased, sandbox, request id)
    pub ledger: Vec<(String, String, String, i64, i64, i64, String)>,
    /// (id, number, purpose, status, total, created)
    pub invoices: Vec<(String, String, String, String, String, String)>,
    /// (when, amount, status, failure)
    pub charges: Vec<(String, String, String, String)>,
    /// (opened, invoice, amount, reason, status)
    pub disputes: Vec<(String, String, String, String, String)>,
    /// (mode, outcome, calls, credits), the last 30 days
    pub usage: Vec<(String, String, i64, i64)>,
    /// (when, action, details) of its subscription, newest first
    pub subscription_history: Vec<(String, String, String)>,
    pub audit: Vec<AuditRow>,
    /// The adjustment form's one-time key.
    pub idempotency_key: String,
    /// Paid invoices that can still be refunded: (id, number, refundable).
    pub refundable: Vec<(String, String, String)>,
    /// The refund form's one-time key.
    pub refund_key: String,
}

/// The audit log's filters, as typed (in the URL).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditQuery {
    pub actor: String,
    pub org: String,
    pub action: String,
    pub from: String,
    pub to: String,
    pub after: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditPage {
    pub query: AuditQuery,
    pub rows: Vec<AuditRow>,
    /// The next page's cursor.
    pub next: Option<String>,
    pub actions: Vec<String>,
    /// (field, message) for filters that could not be read.
    pub errors: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanAdminRow {
    pub id: String,
    pub code: String,
    pub name: String,
    pub price: String,
    /// The price as the form shows it ("29.00").
    pub price_input: String,
    pub currency: String,
    pub included_credits: i64,
    pub rate_limit_per_sec: i32,
    pub endpoints: Vec<String>,
    pub requires_approval: bool,
    pub trial_days: i32,
    pub visible: bool,
    pub archived: bool,
    pub signup: bool,
    pub subscribers: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlansAdminPage {
    pub plans: Vec<PlanAdminRow>,
    pub endpoint_choices: Vec<String>,
}
