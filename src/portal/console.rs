//! The operator's console's half of the `Admin` port (src/portal/admin.rs
//! holds the rest): the overview, 402 recovery, organizations, credit
//! adjustments, suspension, plans and the audit log. Each method checks for
//! a platform admin first ([`Portal::admin_id`]).

use super::{date, date_time, errors, Portal};
use crate::admin::{audit_log, orgs, overview, recovery};
use crate::billing::format_money;
use crate::billing::ledger::{self, Account, AdjustError};
use crate::billing::plans::{self, PlanError, PlanInput};
use app::backend::{AdjustForm, Caller, FormError, PlanForm, RefundForm};
use app::error::AppError;
use app::types::*;
use time::{Date, Duration, OffsetDateTime};
use uuid::Uuid;

fn invalid(fields: Vec<(&str, String)>) -> FormError {
    FormError {
        message: "Please correct the highlighted fields.".into(),
        fields: fields.into_iter().map(|(f, m)| (f.to_string(), m)).collect(),
    }
}

/// "45 s", "4 min", "2 h 5 min", "3 d 2 h".
pub fn duration_words(secs: i64) -> String {
    match secs {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min", s / 60),
        s if s < 86_400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        s => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

/// Money as typed ("10", "10.5", "10.50", "1,000.00") in minor units.
fn minor_units(typed: &str) -> Option<i64> {
    let cleaned: String = typed.trim().trim_start_matches(['$', '€']).chars().filter(|c| *c != ',').collect();
    let (major, minor) = cleaned.split_once('.').unwrap_or((&cleaned, ""));
    if major.is_empty() || !major.bytes().all(|b| b.is_ascii_digit()) || minor.len() > 2 || !minor.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let major: i64 = major.parse().ok().filter(|m: &i64| *m <= 1_000_000_000)?;
    let minor: i64 = format!("{minor:0<2}").parse().ok()?;
    Some(major * 100 + minor).filter(|m| *m > 0)
}

fn parse_day(raw: &str) -> Option<Date> {
    Date::parse(raw.trim(), time::macros::format_description!("[year]-[month]-[day]")).ok()
}

fn day_text(d: Date) -> String {
    d.format(time::macros::format_description!("[year]-[month]-[day]")).unwrap_or_default()
}

fn audit_row(r: audit_log::Row) -> AuditRow {
    let json = |v: Option<serde_json::Value>| v.map(|v| v.to_string()).unwrap_or_default();
    AuditRow {
        at: date_time(r.at),
        actor: r.actor_email.unwrap_or_else(|| "Tollgate".into()),
        org_id: r.org_id.map(|o| o.to_string()).unwrap_or_default(),
        org_name: r.org_name.unwrap_or_default(),
        action: r.action,
        details: r.details.to_string(),
        before: json(r.before),
        after: json(r.after),
        request_id: r.request_id.unwrap_or_default(),
    }
}

/// The audit filters as typed, read; (field, message) for each that is not.
fn audit_filter(q: &AuditQuery) -> (audit_log::Filter, Option<audit_log::Cursor>, Vec<(String, String)>) {
    let mut errors = Vec::new();
    let mut f = audit_log::Filter::default();
    let actor = q.actor.trim();
    if !actor.is_empty() {
        if actor.contains('@') && actor.len() <= 254 {
            f.actor = Some(actor.to_string());
        } else {
            errors.push(("actor".into(), "An actor is the email address of a user.".into()));
        }
    }
    if !q.org.trim().is_empty() {
        match crate::admin::parse_id(&q.org) {
            Some(id) => f.org = Some(id),
            None => errors.push(("org".into(), "An organization is its id (from its page).".into())),
        }
    }
    if !q.action.trim().is_empty() {
        match crate::audit::Action::parse(q.action.trim()) {
            Some(a) => f.action = Some(a),
            None => errors.push(("action".into(), "Choose one of the actions listed.".into())),
        }
    }
    let mut day = |raw: &str, field: &str, next: bool| -> Option<OffsetDateTime> {
        if raw.trim().is_empty() {
            return None;
        }
        match parse_day(raw) {
            Some(d) => Some(d.midnight().assume_utc() + if next { Duration::days(1) } else { Duration::ZERO }),
            None => {
                errors.push((field.into(), "A date is written 2026-12-01 (UTC).".into()));
                None
            }
        }
    };
    f.from = day(&q.from, "from", false);
    f.to = day(&q.to, "to", true);
    let cursor = match q.after.trim() {
        "" => None,
        c => match audit_log::Cursor::parse(c) {
            Some(c) => Some(c),
            None => {
                errors.push(("after".into(), "This page link is not one of ours; start from the first page.".into()));
                None
            }
        },
    };
    (f, cursor, errors)
}

impl Portal {
    pub(super) async fn console_home(&self, caller: &Caller) -> Result<AdminHome, AppError> {
        self.admin_id(caller)?;
        let db = &self.state.db;
        let o = overview::load(db, self.now()).await.map_err(|e| errors::page(caller, e))?;
        let (users, organizations, unsent_emails, pending_approvals) = overview::counts(db).await.map_err(|e| errors::page(caller, e))?;
        let label = |k: &str| match k {
            "subscriptions" => "Subscriptions and renewals",
            "upgrades" => "Upgrades (prorated)",
            "top_ups" => "Credit top-ups",
            _ => "Other",
        };
        let top = |rows: Vec<(Uuid, String, i64, i64)>| {
            rows.into_iter().map(|(id, name, calls, refused)| TopOrg { id: id.to_string(), name, calls, refused }).collect()
        };
        Ok(AdminHome {
            month: o.month_start.map(|m| format!("{} {}", m.month(), m.year())).unwrap_or_default(),
            revenue: o
                .revenue
                .into_iter()
                .map(|(kind, cur, minor, n)| RevenueLine { kind: label(&kind).into(), amount: format_money(minor, &cur), invoices: n })
                .collect(),
            subscriptions: o.subscriptions,
            days: o.days.iter().map(|d| format!("{} {}", &d.month().to_string()[..3], d.day())).collect(),
            refusals: o.refusals,
            top_usage: top(o.top_usage),
            top_refused: top(o.top_refused),
            pending_approvals,
            users,
            organizations,
            unsent_emails,
        })
    }

    pub(super) async fn console_recovery(&self, caller: &Caller, q: RecoveryQuery) -> Result<RecoveryPage, AppError> {
        self.admin_id(caller)?;
        let now = self.now();
        let today = now.to_offset(time::UtcOffset::UTC).date();
        let mut errors = Vec::new();
        let mut read = |raw: &str, field: &str, default: Date| match raw.trim() {
            "" => default,
            t => parse_day(t).unwrap_or_else(|| {
                errors.push((field.to_string(), "A date is written 2026-12-01 (UTC).".to_string()));
                default
            }),
        };
        let from = read(&q.from, "from", today - Duration::days(29));
        let to = read(&q.to, "to", today);
        if to < from || (to - from) > Duration::days(400) {
            errors.push(("to".into(), "The range ends on or after its start, within 400 days.".into()));
        }
        let mut org = None;
        if !q.org.trim().is_empty() {
            let found = match crate::admin::parse_id(&q.org) {
                Some(id) => orgs::name_of(&self.state.db, id).await.map_err(|e| errors::page(caller, e))?.map(|name| (id, name)),
                None => None,
            };
            match found {
                Some(o) => org = Some(o),
                None => errors.push(("org".into(), "No organization has this id.".into())),
            }
        }
        let mut page = RecoveryPage {
            from: day_text(from),
            to: day_text(to),
            org: org.as_ref().map(|(id, name)| (id.to_string(), name.clone())),
            errors,
            funnels: vec![],
            unrecovered: vec![],
        };
        if !page.errors.is_empty() {
            return Ok(page);
        }
        let r = recovery::load(&self.state.db, from.midnight().assume_utc(), (to + Duration::days(1)).midnight().assume_utc(), org.map(|o| o.0))
            .await
            .map_err(|e| errors::page(caller, e))?;
        let words = |s: Option<i64>| s.map(duration_words).unwrap_or_else(|| "—".into());
        page.funnels = r
            .funnels
            .into_iter()
            .map(|f| FunnelView {
                revenue: if f.revenue.is_empty() {
                    "—".into()
                } else {
                    f.revenue.iter().map(|(c, m)| format_money(*m, c)).collect::<Vec<_>>().join(" + ")
                },
                median: words(f.median_secs),
                p90: words(f.p90_secs),
                code: f.code,
                refused: f.refused,
                visited: f.visited,
                fixed: f.fixed,
                recovered: f.recovered,
                episodes: f.episodes,
            })
            .collect();
        page.unrecovered = r
            .unrecovered
            .into_iter()
            .map(|u| UnrecoveredView { org_id: u.org.to_string(), name: u.name, code: u.code, refused: u.refused, visited: u.visited, last: date_time(u.last_refused) })
            .collect();
        Ok(page)
    }

    pub(super) async fn console_orgs(&self, caller: &Caller, q: String) -> Result<OrgListPage, AppError> {
        self.admin_id(caller)?;
        let q: String = q.trim().chars().take(200).collect();
        let rows = orgs::search(&self.state.db, &q, self.now()).await.map_err(|e| errors::page(caller, e))?;
        Ok(OrgListPage {
            q,
            rows: rows
                .into_iter()
                .map(|r| OrgListRow {
                    id: r.id.to_string(),
                    name: r.name,
                    plan: r.plan.unwrap_or_default(),
                    status: r.status.unwrap_or_default(),
                    included: r.included,
                    purchased: r.purchased,
                    refusals_7d: r.refusals_7d,
                    suspended: r.suspended,
                })
                .collect(),
        })
    }

    pub(super) async fn console_org(&self, caller: &Caller, id: String) -> Result<OrgPage, AppError> {
        self.admin_id(caller)?;
        let org = crate::admin::parse_id(&id).ok_or(AppError::NotFound)?;
        let db = &self.state.db;
        let d = orgs::detail(db, org, self.now()).await.map_err(|e| errors::page(caller, e))?.ok_or(AppError::NotFound)?;
        let filter = audit_log::Filter { org: Some(org), ..Default::default() };
        let (trail, _) = audit_log::page(db, &filter, None, audit_log::PAGE).await.map_err(|e| errors::page(caller, e))?;
        let or_dash = |t: Option<OffsetDateTime>| t.map(date_time).unwrap_or_else(|| "—".into());
        Ok(OrgPage {
            id: d.id.to_string(),
            name: d.name,
            created: date_time(d.created_at),
            suspended: d.suspended_at.map(date_time),
            suspended_reason: d.suspended_reason.unwrap_or_default(),
            subscription: d.subscription.map(|s| {
                (s.plan, s.status, format!("{} – {}", date(s.current_period_start), date(s.current_period_end)), s.next_plan.unwrap_or_default())
            }),
            included: d.balances.included,
            purchased: d.balances.purchased,
            sandbox: d.balances.sandbox,
            members: d.members.into_iter().map(|m| (m.email, m.display_name, m.role, date(m.created_at))).collect(),
            keys: d
                .keys
                .into_iter()
                .map(|k| {
                    let state = if k.revoked_at.is_some() { "revoked" } else { "active" };
                    (k.name, k.mode, format!("{}…{}", k.prefix, k.last4), date(k.created_at), or_dash(k.last_used_at), state.to_string())
                })
                .collect(),
            ledger: d
                .ledger
                .into_iter()
                .map(|l| (date_time(l.created_at), l.kind, l.memo.unwrap_or_default(), l.included, l.purchased, l.sandbox, l.request_id.unwrap_or_default()))
                .collect(),
            refundable: d
                .invoices
                .iter()
                .filter(|i| i.status == "paid" && i.refundable_minor > 0)
                .map(|i| (i.id.to_string(), i.number.clone(), format_money(i.refundable_minor, &i.currency)))
                .collect(),
            invoices: d
                .invoices
                .into_iter()
                .map(|i| {
                    let status = match i.refunded_minor {
                        0 => i.status,
                        r => format!("{} · refunded {}", i.status, format_money(r, &i.currency)),
                    };
                    (i.id.to_string(), i.number, i.purpose, status, format_money(i.total_minor, &i.currency), date(i.created_at))
                })
                .collect(),
            charges: d
                .charges
                .into_iter()
                .map(|c| {
                    let failure = [c.failure_code, c.decline_code].into_iter().flatten().collect::<Vec<_>>().join(" / ");
                    (date_time(c.created_at), format_money(c.amount_minor, &c.currency), c.status, failure)
                })
                .collect(),
            disputes: d
                .disputes
                .into_iter()
                .map(|x| (date_time(x.opened_at), x.invoice.unwrap_or_else(|| "-".into()), format_money(x.amount_minor, &x.currency), x.reason, x.status))
                .collect(),
            usage: d.usage,
            subscription_history: d.subscription_history.into_iter().map(|(at, action, details)| (date_time(at), action, details.to_string())).collect(),
            audit: trail.into_iter().map(audit_row).collect(),
            idempotency_key: Uuid::new_v4().simple().to_string(),
            refund_key: Uuid::new_v4().simple().to_string(),
        })
    }

    pub(super) async fn console_refund(&self, caller: &Caller, form: RefundForm) -> Result<String, FormError> {
        use crate::billing::refunds::{self, RefundStatus};
        let admin = self.form_admin(caller)?;
        let org = crate::admin::parse_id(&form.org_id).ok_or_else(|| FormError::message("That organization no longer exists."))?;
        let invoice = crate::admin::parse_id(&form.invoice_id).ok_or_else(|| FormError::message("Choose an invoice to refund."))?;
        let amount = match form.amount.trim() {
            "" => None,
            typed => Some(minor_units(typed).ok_or_else(|| {
                invalid(vec![("amount", "An amount is money such as 10 or 10.50, or empty for all that is left.".into())])
            })?),
        };
        let key = form.idempotency_key.trim();
        if key.len() < 16 || key.len() > 64 || !key.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(FormError::message("This form expired. Reload the page and send it again."));
        }
        let done = refunds::refund_invoice(&self.state.billing, org, invoice, amount, &form.reason, admin, key, self.now())
            .await
            .map_err(|e| errors::form(caller, e))?;
        let money = format_money(done.amount_minor, &done.currency);
        Ok(match (done.replay, done.status) {
            (true, _) => format!("This refund was sent already ({money}, {}); nothing moved twice.", done.status),
            (false, RefundStatus::Succeeded) => format!("Refunded {money}: the customer is told by email and the invoice shows it."),
            (false, RefundStatus::Pending) => format!("Refund of {money} sent: the processor is working on it; the invoice shows it when it is done."),
            (false, RefundStatus::Failed) => return Err(FormError::message(format!("The processor refused the refund of {money}; the audit log has its reason."))),
        })
    }

    pub(super) async fn console_reconcile(&self, caller: &Caller, query: ReconcileQuery) -> Result<ReconcilePage, AppError> {
        use crate::billing::reconcile;
        self.admin_id(caller)?;
        let now = self.now();
        let today = now.date();
        let month_start = today.replace_day(1).unwrap_or(today);
        let mut errors_found: Vec<(String, String)> = Vec::new();
        let mut day = |field: &str, typed: &str, default: time::Date| -> time::Date {
            if typed.trim().is_empty() {
                return default;
            }
            match reconcile::parse_time(typed) {
                Some(t) => t.date(),
                None => {
                    errors_found.push((field.into(), "A date such as 2026-11-01.".into()));
                    default
                }
            }
        };
        let since = day("since", &query.since, month_start);
        let until = day("until", &query.until, today.next_day().unwrap_or(today));
        if until <= since && errors_found.is_empty() {
            errors_found.push(("until".into(), "The period ends after it starts.".into()));
        }
        let mut page = ReconcilePage {
            since: since.to_string(),
            until: until.to_string(),
            processor: self.state.billing.processor.name().into(),
            charges: 0,
            payments: 0,
            differences: Vec::new(),
            errors: errors_found,
        };
        if !page.errors.is_empty() {
            return Ok(page);
        }
        match reconcile::compare(&self.state.billing, since.midnight().assume_utc(), until.midnight().assume_utc(), now).await {
            Ok(r) => {
                page.charges = r.charges;
                page.payments = r.payments;
                page.differences = r
                    .differences
                    .into_iter()
                    .map(|d| DifferenceView {
                        kind: d.kind.as_str().into(),
                        label: d.kind.label().into(),
                        org_id: d.org.map(|o| o.to_string()),
                        invoice: d.invoice,
                        reference: d.reference,
                        ours: d.ours,
                        theirs: d.theirs,
                    })
                    .collect();
            }
            Err(reconcile::ReconcileError::Db(e)) => return Err(errors::page(caller, e)),
            Err(e) => page.errors.push((String::new(), format!("{e}; try again in a moment."))),
        }
        Ok(page)
    }

    pub(super) async fn console_adjust(&self, caller: &Caller, form: AdjustForm) -> Result<String, FormError> {
        let admin = self.form_admin(caller)?;
        let org = crate::admin::parse_id(&form.org_id).ok_or_else(|| FormError::message("That organization no longer exists."))?;
        let mut fields = Vec::new();
        let account = match form.account.as_str() {
            "included" => Some(Account::Included),
            "purchased" => Some(Account::Purchased),
            _ => {
                fields.push(("account", "Choose included or purchased credits.".to_string()));
                None
            }
        };
        let sign = match form.direction.as_str() {
            "add" => 1,
            "remove" => -1,
            _ => {
                fields.push(("direction", "Choose add or remove.".to_string()));
                0
            }
        };
        let amount = match form.amount.trim().replace(',', "").parse::<i64>() {
            Ok(n) if (1..=1_000_000_000).contains(&n) => n,
            _ => {
                fields.push(("amount", "An amount is a whole number of credits from 1 to 1,000,000,000.".to_string()));
                0
            }
        };
        let reason = form.reason.trim();
        if reason.is_empty() || reason.chars().count() > 500 {
            fields.push(("reason", "Say why (at most 500 characters): the audit log keeps it.".to_string()));
        }
        let key = form.idempotency_key.trim();
        if key.len() < 16 || key.len() > 64 || !key.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(FormError::message("This form expired. Reload the page and send it again."));
        }
        let Some(account) = account.filter(|_| fields.is_empty()) else {
            return Err(invalid(fields));
        };
        let done = ledger::adjust(&self.state.db, org, Some(admin), account, sign * amount, reason, key, self.now()).await;
        let which = if account == Account::Included { "included" } else { "purchased" };
        match done {
            Ok(a) if a.replayed => Ok("This adjustment was made already; nothing moved twice.".into()),
            Ok(a) => {
                let (b, n) = if account == Account::Included { (a.before.included, a.after.included) } else { (a.before.purchased, a.after.purchased) };
                Ok(format!(
                    "{} {} {which} credits: {} → {}.",
                    if sign > 0 { "Added" } else { "Removed" },
                    app::types::group(amount),
                    app::types::group(b),
                    app::types::group(n)
                ))
            }
            Err(AdjustError::BelowZero { available }) => Err(invalid(vec![(
                "amount",
                format!("That would take the {which} balance below zero: {} available.", app::types::group(available)),
            )])),
            Err(AdjustError::Lapsed) => Err(invalid(vec![("account", AdjustError::Lapsed.to_string())])),
            Err(AdjustError::NoMeters) => Err(FormError::message("That organization has no balances.")),
            Err(AdjustError::Db(e)) => Err(FormError::message(errors::internal(caller, e).to_string())),
        }
    }

    pub(super) async fn console_suspend(&self, caller: &Caller, org_id: String, suspend: bool, reason: String) -> Result<String, FormError> {
        let admin = self.form_admin(caller)?;
        let org = crate::admin::parse_id(&org_id).ok_or_else(|| FormError::message("That organization no longer exists."))?;
        match orgs::set_keys_suspended(&self.state.db, admin, org, suspend, &reason, self.now()).await {
            Ok(true) if suspend => Ok("Every key of the organization is suspended: its calls get 403 api_key_suspended.".into()),
            Ok(true) => Ok("The organization's keys work again.".into()),
            Ok(false) => Ok(if suspend { "The keys were suspended already." } else { "The keys were not suspended." }.into()),
            Err(orgs::SuspendError::Reason) => Err(invalid(vec![("reason", "Say why (at most 500 characters): the audit log keeps it.".into())])),
            Err(orgs::SuspendError::NotFound) => Err(FormError::message("That organization no longer exists.")),
            Err(orgs::SuspendError::Db(e)) => Err(FormError::message(errors::internal(caller, e).to_string())),
        }
    }

    pub(super) async fn console_audit(&self, caller: &Caller, q: AuditQuery) -> Result<AuditPage, AppError> {
        self.admin_id(caller)?;
        let (filter, cursor, errors) = audit_filter(&q);
        let actions = crate::audit::Action::ALL.iter().map(|a| a.as_str().to_string()).collect();
        if !errors.is_empty() {
            return Ok(AuditPage { query: q, rows: vec![], next: None, actions, errors });
        }
        let (rows, next) = audit_log::page(&self.state.db, &filter, cursor, audit_log::PAGE).await.map_err(|e| errors::page(caller, e))?;
        Ok(AuditPage { query: q, rows: rows.into_iter().map(audit_row).collect(), next: next.map(|c| c.encode()), actions, errors })
    }

    pub(super) async fn console_audit_csv(&self, caller: &Caller, q: AuditQuery) -> Result<String, AppError> {
        self.admin_id(caller)?;
        let (filter, _, errors) = audit_filter(&q);
        if let Some((field, message)) = errors.first() {
            return Err(AppError::Invalid(format!("{field}: {message}")));
        }
        let (csv, more) = audit_log::export(&self.state.db, &filter).await.map_err(|e| errors::page(caller, e))?;
        if more {
            return Err(AppError::Invalid(format!(
                "More than {} entries match: narrow the filter (a shorter range of dates, an organization or an action) and export again.",
                audit_log::EXPORT_MAX
            )));
        }
        Ok(csv)
    }

    pub(super) async fn console_plans(&self, caller: &Caller) -> Result<PlansAdminPage, AppError> {
        self.admin_id(caller)?;
        let db = &self.state.db;
        let list = plans::list_all(db).await.map_err(|e| errors::page(caller, e))?;
        let counts = plans::subscriber_counts(db).await.map_err(|e| errors::page(caller, e))?;
        Ok(PlansAdminPage {
            plans: list
                .into_iter()
                .map(|p| PlanAdminRow {
                    id: p.id.to_string(),
                    price: format_money(p.price_minor, &p.currency),
                    price_input: format!("{}.{:02}", p.price_minor / 100, p.price_minor % 100),
                    currency: p.currency.trim().to_string(),
                    subscribers: counts.iter().find(|(id, _)| *id == p.id).map(|c| c.1).unwrap_or(0),
                    code: p.code,
                    name: p.name,
                    included_credits: p.included_credits,
                    rate_limit_per_sec: p.rate_limit_per_sec,
                    endpoints: p.endpoints,
                    requires_approval: p.requires_approval,
                    trial_days: p.trial_days,
                    visible: p.active,
                    archived: p.archived_at.is_some(),
                    signup: p.signup,
                })
                .collect(),
            endpoint_choices: plans::endpoint_choices().into_iter().map(String::from).collect(),
        })
    }

    fn plan_form_error(&self, caller: &Caller, e: PlanError) -> FormError {
        match e {
            PlanError::Invalid(fields) => invalid(fields),
            PlanError::NotFound => FormError::message("That plan no longer exists."),
            PlanError::State(why) => FormError::message(why),
            PlanError::Db(e) => FormError::message(errors::internal(caller, e).to_string()),
        }
    }

    pub(super) async fn console_save_plan(&self, caller: &Caller, form: PlanForm) -> Result<String, FormError> {
        let admin = self.form_admin(caller)?;
        let id = match form.plan_id.trim() {
            "" => None,
            raw => Some(crate::admin::parse_id(raw).ok_or_else(|| FormError::message("That plan no longer exists."))?),
        };
        let input = PlanInput {
            id,
            code: form.code,
            name: form.name,
            price: form.price,
            currency: form.currency,
            included_credits: form.included_credits,
            rate_limit_per_sec: form.rate_limit_per_sec,
            endpoints: form.endpoints,
            requires_approval: form.requires_approval,
            trial_days: form.trial_days,
            visible: form.visible,
            signup: form.signup,
        };
        let saved = plans::save(&self.state.db, admin, input, self.now()).await.map_err(|e| self.plan_form_error(caller, e))?;
        Ok(match (id, saved.notified) {
            (None, _) => format!("The {} plan is created.", saved.plan.name),
            (Some(_), 0) => format!("The {} plan is saved.", saved.plan.name),
            (Some(_), n) => format!(
                "The {} plan is saved. Its new terms apply to its {n} subscriber{} from their next period; they were told by email.",
                saved.plan.name,
                if n == 1 { "" } else { "s" }
            ),
        })
    }

    pub(super) async fn console_archive_plan(&self, caller: &Caller, plan_id: String, archive: bool) -> Result<String, FormError> {
        let admin = self.form_admin(caller)?;
        let id = crate::admin::parse_id(&plan_id).ok_or_else(|| FormError::message("That plan no longer exists."))?;
        let plan = plans::set_archived(&self.state.db, admin, id, archive, self.now()).await.map_err(|e| self.plan_form_error(caller, e))?;
        Ok(if archive {
            format!("The {} plan is archived: its subscribers keep it; nobody new is offered it.", plan.name)
        } else {
            format!("The {} plan is offered again.", plan.name)
        })
    }
}

/// `GET /admin/audit.csv`: the audit log's filters as CSV.
pub fn router() -> axum::Router<crate::state::AppState> {
    axum::Router::new().route("/admin/audit.csv", axum::routing::get(audit_csv))
}

async fn audit_csv(
    axum::extract::State(state): axum::extract::State<crate::state::AppState>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
    req: axum::extract::Request,
) -> axum::response::Response {
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    let query = AuditQuery { actor: get("actor"), org: get("org"), action: get("action"), from: get("from"), to: get("to"), after: String::new() };
    super::usage::csv_download(state, req, "audit.csv", "/admin/audit", |backend, caller| async move {
        backend.admin.audit_csv(&caller, query).await
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::duration_words;

    #[test]
    fn durations_read_as_words() {
        assert_eq!(duration_words(45), "45 s");
        assert_eq!(duration_words(240), "4 min");
        assert_eq!(duration_words(7500), "2 h 5 min");
        assert_eq!(duration_words(266_400), "3 d 2 h");
    }
}
