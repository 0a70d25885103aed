//! Subscriptions: one current subscription per organization, with a
//! half-open billing period [start, end).

use super::ledger::{post, Account, Kind, Posting};
use super::payments::Invoice;
use super::plans::{Plan, COLUMNS};
use super::Billing;
use sqlx::{PgConnection, PgPool, Row};
use time::OffsetDateTime;
use uuid::Uuid;

/// The end of a monthly period that starts at `start`: the same day and time
/// next month, clamped to that month's last day (Jan 31 → Feb 28/29).
pub fn add_month(start: OffsetDateTime) -> OffsetDateTime {
    let (year, month) = if start.month() == time::Month::December {
        (start.year() + 1, time::Month::January)
    } else {
        (start.year(), start.month().next())
    };
    let last = month.length(year);
    let day = start.day().min(last);
    let date = time::Date::from_calendar_date(year, month, day).expect("clamped day is valid");
    start.replace_date(date)
}

/// Puts a new organization on the sign-up plan (the plan marked so).
pub async fn start_free(
    conn: &mut PgConnection,
    org: Uuid,
    now: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    let signup = super::plans::signup_plan(&mut *conn).await?;
    let (plan, included, name) = (signup.id, signup.included_credits, signup.name);
    sqlx::query(
        "INSERT INTO subscriptions (id, org_id, plan_id, status, current_period_start, current_period_end, created_at, updated_at,
                                    period_price_minor, period_included_credits)
         VALUES ($1, $2, $3, $4, $5, $6, $5, $5, $7, $8)",
    )
    .bind(Uuid::now_v7())
    .bind(org)
    .bind(plan)
    .bind(Status::Active)
    .bind(now)
    .bind(add_month(now))
    .bind(signup.price_minor)
    .bind(included)
    .execute(&mut *conn)
    .await?;
    super::ledger::open(conn, org, included, &name, now, add_month(now)).await
}

crate::text_enum! {
    /// A subscription's state (product.md): `pending_approval` → `active` ↔
    /// `past_due` → `unpaid`; `active` → `canceled` (at period end) →
    /// `expired`; `trialing` before a first payment.
    pub enum Status {
        PendingApproval = "pending_approval",
        Trialing = "trialing",
        Active = "active",
        PastDue = "past_due",
        Unpaid = "unpaid",
        Canceled = "canceled",
        Expired = "expired",
    }
}

#[derive(Debug, Clone)]
pub struct Current {
    pub plan: Plan,
    pub status: Status,
    pub period_start: OffsetDateTime,
    pub period_end: OffsetDateTime,
    pub trial_end: Option<OffsetDateTime>,
    pub trial_used: bool,
    pub grace_until: Option<OffsetDateTime>,
    /// A downgrade waiting for the period's end.
    pub next_plan: Option<Plan>,
    /// While pending approval: the plan that keeps serving.
    pub fallback_plan: Option<Plan>,
    pub requested_at: Option<OffsetDateTime>,
    pub decision_note: Option<String>,
    /// The price and included credits the current period was opened on.
    pub period_price_minor: i64,
    pub period_included_credits: i64,
}

async fn plan_by_id(conn: &mut PgConnection, id: Uuid) -> Result<Plan, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM plans WHERE id = $1"))
        .bind(id)
        .fetch_one(conn)
        .await
}

/// The (code, name) of the plan that serves the organization now (the one a
/// request for approval would replace, while it waits).
pub async fn serving_plan(db: &PgPool, org: Uuid) -> Result<Option<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT p.code, p.name FROM subscriptions s JOIN plans p ON p.id = coalesce(s.fallback_plan_id, s.plan_id) WHERE s.org_id = $1",
    )
    .bind(org)
    .fetch_optional(db)
    .await
}

pub async fn current(db: &PgPool, org: Uuid) -> Result<Option<Current>, sqlx::Error> {
    let mut conn = db.acquire().await?;
    current_in(&mut conn, org, false).await
}

/// The organization's subscription, locked for update when `lock`.
pub async fn current_in(conn: &mut PgConnection, org: Uuid, lock: bool) -> Result<Option<Current>, sqlx::Error> {
    let sql = format!(
        "SELECT plan_id, status, current_period_start, current_period_end, trial_end, trial_used, grace_until,
                next_plan_id, fallback_plan_id, requested_at, decision_note, period_price_minor, period_included_credits
           FROM subscriptions WHERE org_id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let Some(r) = sqlx::query(&sql).bind(org).fetch_optional(&mut *conn).await? else {
        return Ok(None);
    };
    let plan = plan_by_id(conn, r.get("plan_id")).await?;
    let next_plan = match r.get::<Option<Uuid>, _>("next_plan_id") {
        Some(id) => Some(plan_by_id(conn, id).await?),
        None => None,
    };
    let fallback_plan = match r.get::<Option<Uuid>, _>("fallback_plan_id") {
        Some(id) => Some(plan_by_id(conn, id).await?),
        None => None,
    };
    // The period's own terms; a row from before they were kept has its
    // serving plan's.
    let serving = fallback_plan.as_ref().unwrap_or(&plan);
    let period_price_minor = r.get::<Option<i64>, _>("period_price_minor").unwrap_or(serving.price_minor);
    let period_included_credits = r.get::<Option<i64>, _>("period_included_credits").unwrap_or(serving.included_credits);
    Ok(Some(Current {
        period_price_minor,
        period_included_credits,
        plan,
        status: r.try_get("status")?,
        period_start: r.get("current_period_start"),
        period_end: r.get("current_period_end"),
        trial_end: r.get("trial_end"),
        trial_used: r.get("trial_used"),
        grace_until: r.get("grace_until"),
        next_plan,
        fallback_plan,
        requested_at: r.get("requested_at"),
        decision_note: r.get("decision_note"),
    }))
}

/// Moves the organization's meters to a new period: whatever included
/// credits are left lapse (to `expired`, through the ledger), this period's
/// spending starts at zero, and included credits granted from now on expire
/// at `end`.
pub async fn roll_meters(
    conn: &mut PgConnection,
    org: Uuid,
    start: OffsetDateTime,
    end: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1 FROM org_meters WHERE org_id = $1 FOR UPDATE").bind(org).execute(&mut *conn).await?;
    // The gateway's open leases were counted against the period that ends:
    // their rest comes back first (later batches against them are fenced).
    sqlx::query("SELECT gateway_lease_close(id, 'returned', $2) FROM credit_leases WHERE org_id = $1 AND closed_at IS NULL ORDER BY id")
        .bind(org)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    let included: i64 = sqlx::query_scalar("SELECT included FROM org_meters WHERE org_id = $1")
        .bind(org)
        .fetch_one(&mut *conn)
        .await?;
    if included > 0 {
        let key = format!("expiry:{org}:roll:{start}");
        post(
            conn,
            Posting {
                org,
                kind: Kind::Expiry,
                key: &key,
                entries: &[(Account::Included, -included), (Account::Expired, included)],
                memo: "included credits of the period that ended",
            },
            now,
        )
        .await?;
    }
    sqlx::query("UPDATE org_meters SET period_start = $2, period_spent = 0, included_expires_at = $3 WHERE org_id = $1")
        .bind(org)
        .bind(start)
        .bind(end)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Grants a period's included credits, once per `key`.
async fn grant(conn: &mut PgConnection, org: Uuid, credits: i64, key: &str, memo: &str, now: OffsetDateTime) -> Result<(), sqlx::Error> {
    if credits <= 0 {
        return Ok(());
    }
    post(
        conn,
        Posting {
            org,
            kind: Kind::Grant,
            key,
            entries: &[(Account::Grants, -credits), (Account::Included, credits)],
            memo,
        },
        now,
    )
    .await
    .map(|_| ())
}

/// The key of a period's grant of a plan's included credits: one grant per
/// organization, period and plan, whoever opens or pays the period.
fn grant_key(org: Uuid, start: OffsetDateTime, plan: &str) -> String {
    format!("grant:{org}:{}:{plan}", crate::clock::micros(start))
}

/// The SQL for a subscription's status once a cancellation is undone: back
/// to a trial if the period is the trial's, else active.
pub const UNCANCELED: &str = "CASE WHEN status = 'canceled' THEN (CASE
        WHEN EXISTS (SELECT 1 FROM invoices i WHERE i.org_id = subscriptions.org_id AND i.owed AND i.status = 'failed') THEN 'past_due'
        WHEN trial_end = current_period_end THEN 'trialing' ELSE 'active' END) ELSE status END";

/// A change of a subscription's state, by name. [`transition`] runs it on
/// the row its caller locked, after checking that the state it starts from
/// allows it ([`Transition::allowed_from`]); together with [`open_period`],
/// [`upgraded`], [`renewal_paid`], [`renewal_failed`] and
/// [`suspend_lapsed`], these are the only writes of a subscription's state.
#[derive(Clone, Debug, PartialEq)]
pub enum Transition {
    /// A plan that needs approval is asked for; the current plan keeps
    /// serving until the decision.
    RequestApproval { plan: Uuid },
    /// The customer withdraws the request: back to the plan it would replace.
    WithdrawRequest,
    /// An admin rejects the request (or the period ends undecided, `lapsed`):
    /// back to the plan it would replace, with a note for the customer.
    DeclineRequest { note: String, lapsed: bool },
    /// A cancellation or a scheduled downgrade is undone.
    Keep,
    /// Moves to `plan` at the period's end (undoing a cancellation).
    ScheduleDowngrade { plan: Uuid },
    /// Ends at the period's end.
    Cancel,
    /// The period just opened is a trial until `end`.
    StartTrial { end: OffsetDateTime },
    /// A canceled subscription's period is over.
    Expire,
    /// The note an approval leaves for the customer.
    NoteDecision { note: String },
}

impl Transition {
    pub fn name(&self) -> &'static str {
        match self {
            Transition::RequestApproval { .. } => "request approval",
            Transition::WithdrawRequest => "withdraw the request",
            Transition::DeclineRequest { .. } => "decline the request",
            Transition::Keep => "keep",
            Transition::ScheduleDowngrade { .. } => "schedule a downgrade",
            Transition::Cancel => "cancel",
            Transition::StartTrial { .. } => "start a trial",
            Transition::Expire => "expire",
            Transition::NoteDecision { .. } => "note the decision",
        }
    }

    /// The states this transition may start from.
    pub fn allowed_from(&self, from: Status) -> bool {
        use Status::*;
        match self {
            Transition::RequestApproval { .. } => matches!(from, Active | Trialing),
            Transition::WithdrawRequest | Transition::DeclineRequest { .. } => from == PendingApproval,
            Transition::Keep | Transition::ScheduleDowngrade { .. } => matches!(from, Active | Trialing | Canceled),
            Transition::Cancel => matches!(from, Active | Trialing),
            Transition::StartTrial { .. } | Transition::NoteDecision { .. } => from == Active,
            Transition::Expire => from == Canceled,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TransitionError {
    #[error("cannot {transition} a subscription that is {from}")]
    NotAllowed { transition: &'static str, from: Status },
    #[error("the organization has no subscription")]
    Missing,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<TransitionError> for super::BillingError {
    fn from(e: TransitionError) -> Self {
        match e {
            TransitionError::NotAllowed { .. } => super::BillingError::State("This is not possible in the subscription's state now; reload the page.".into()),
            TransitionError::Missing => super::BillingError::NotFound,
            TransitionError::Db(e) => super::BillingError::Db(e),
        }
    }
}

/// Runs `t` on the organization's subscription (locking its row if the
/// caller has not), or refuses it from the state the row is in.
pub async fn transition(conn: &mut PgConnection, org: Uuid, t: Transition, now: OffsetDateTime) -> Result<(), TransitionError> {
    let from: Status = sqlx::query_scalar("SELECT status FROM subscriptions WHERE org_id = $1 FOR UPDATE")
        .bind(org)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(TransitionError::Missing)?;
    if !t.allowed_from(from) {
        return Err(TransitionError::NotAllowed { transition: t.name(), from });
    }
    let back_to_fallback = "plan_id = coalesce(fallback_plan_id, plan_id), fallback_plan_id = NULL,
        status = CASE WHEN trial_end = current_period_end THEN 'trialing' ELSE 'active' END,
        next_plan_id = held_next_plan_id, held_next_plan_id = NULL";
    let q = match &t {
        Transition::RequestApproval { plan } => sqlx::query(
            "UPDATE subscriptions SET status = 'pending_approval', fallback_plan_id = plan_id, plan_id = $3,
                    requested_at = $2, decision_note = NULL, held_next_plan_id = next_plan_id,
                    next_plan_id = NULL, cancel_at_period_end = false, updated_at = $2
              WHERE org_id = $1",
        )
        .bind(org)
        .bind(now)
        .bind(*plan),
        Transition::WithdrawRequest => {
            return run(conn, &format!("UPDATE subscriptions SET {back_to_fallback}, decision_note = NULL, requested_at = NULL, updated_at = $2 WHERE org_id = $1"), org, now).await;
        }
        Transition::DeclineRequest { note, lapsed } => {
            // A lapsed request is dated by its lapse (the plans page says when).
            let requested = if *lapsed { "requested_at = $2," } else { "" };
            sqlx::query(&format!("UPDATE subscriptions SET {back_to_fallback}, {requested} decision_note = $3, updated_at = $2 WHERE org_id = $1"))
                .bind(org)
                .bind(now)
                .bind(note.clone())
                .execute(&mut *conn)
                .await?;
            return Ok(());
        }
        Transition::Keep => {
            return run(conn, &format!("UPDATE subscriptions SET status = {UNCANCELED}, cancel_at_period_end = false, next_plan_id = NULL, updated_at = $2 WHERE org_id = $1"), org, now).await;
        }
        Transition::ScheduleDowngrade { plan } => {
            sqlx::query(&format!(
                "UPDATE subscriptions SET next_plan_id = $3, cancel_at_period_end = false, status = {UNCANCELED}, updated_at = $2 WHERE org_id = $1"
            ))
            .bind(org)
            .bind(now)
            .bind(*plan)
            .execute(&mut *conn)
            .await?;
            return Ok(());
        }
        Transition::Cancel => sqlx::query(
            "UPDATE subscriptions SET status = 'canceled', cancel_at_period_end = true, next_plan_id = NULL, updated_at = $2 WHERE org_id = $1",
        )
        .bind(org)
        .bind(now),
        Transition::StartTrial { end } => sqlx::query(
            "UPDATE subscriptions SET status = 'trialing', trial_end = $3, trial_used = true, updated_at = $2 WHERE org_id = $1",
        )
        .bind(org)
        .bind(now)
        .bind(*end),
        Transition::Expire => sqlx::query("UPDATE subscriptions SET status = 'expired', updated_at = $2 WHERE org_id = $1").bind(org).bind(now),
        Transition::NoteDecision { note } => {
            sqlx::query("UPDATE subscriptions SET decision_note = $2 WHERE org_id = $1")
                .bind(org)
                .bind(note.clone())
                .execute(&mut *conn)
                .await?;
            return Ok(());
        }
    };
    q.execute(&mut *conn).await?;
    Ok(())
}

async fn run(conn: &mut PgConnection, sql: &str, org: Uuid, now: OffsetDateTime) -> Result<(), TransitionError> {
    sqlx::query(sql).bind(org).bind(now).execute(&mut *conn).await?;
    Ok(())
}

/// Dunning: past-due subscriptions whose grace has ended become unpaid
/// (their live calls get 402 `subscription_past_due`); their organizations.
pub async fn suspend_lapsed(conn: &mut PgConnection, now: OffsetDateTime) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE subscriptions SET status = 'unpaid', updated_at = $1
          WHERE status = 'past_due' AND grace_until <= $1 RETURNING org_id",
    )
    .bind(now)
    .fetch_all(conn)
    .await
}

/// What a period opened gets of its plan's included credits at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    /// All of them: the period is paid (or free, or a trial's).
    Full,
    /// A period not paid yet (its owed invoice is being charged): at most
    /// this many now (what the period before it included, 0 after a
    /// trial); the rest when the invoice is paid (`renewal_paid`).
    UpTo(i64),
}

/// Why a live key is refused for the subscription's money state, as the
/// gateway decides it (`gateway_check`); the table-driven test in
/// tests/integration/subscription_rules.rs runs both on the same states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MoneyRefusal {
    PastDue,
    Expired,
    PaymentMethodRequired,
}

impl MoneyRefusal {
    pub fn code(self) -> crate::catalogue::Code {
        use crate::catalogue::Code;
        match self {
            MoneyRefusal::PastDue => Code::SubscriptionPastDue,
            MoneyRefusal::Expired => Code::SubscriptionExpired,
            MoneyRefusal::PaymentMethodRequired => Code::PaymentMethodRequired,
        }
    }
}

impl Current {
    /// The subscription is over: expired, or canceled and past its period.
    pub fn has_ended(&self, now: OffsetDateTime) -> bool {
        self.status == Status::Expired || (self.status == Status::Canceled && now >= self.period_end)
    }

    /// A failed renewal still serving calls (with a warning) until
    /// `grace_until`.
    pub fn in_grace(&self, now: OffsetDateTime) -> bool {
        self.status == Status::PastDue && self.grace_until.is_some_and(|g| g > now)
    }

    /// The customer may cancel: a paid plan, active or trialing (a past due
    /// one pays first; one already canceled keeps or lets it end).
    pub fn can_cancel(&self) -> bool {
        self.plan.price_minor > 0 && matches!(self.status, Status::Active | Status::Trialing)
    }

    /// Why live keys are refused now, if they are: the money states, in the
    /// gateway's order.
    pub fn live_refusal(&self, now: OffsetDateTime, has_card: bool) -> Option<MoneyRefusal> {
        match self.status {
            Status::Unpaid => Some(MoneyRefusal::PastDue),
            Status::PastDue if !self.in_grace(now) => Some(MoneyRefusal::PastDue),
            _ if self.has_ended(now) => Some(MoneyRefusal::Expired),
            Status::Trialing if now >= self.trial_end.unwrap_or(self.period_end) && !has_card => Some(MoneyRefusal::PaymentMethodRequired),
            _ => None,
        }
    }

    /// `plan` with the terms the current period was opened on (for
    /// proration: what was paid for the days left).
    pub fn as_paid(&self, plan: &Plan) -> Plan {
        let mut p = plan.clone();
        p.price_minor = self.period_price_minor;
        p.included_credits = self.period_included_credits;
        p
    }
}

impl Grant {
    /// For a period that follows a period on `previous`, owed and not paid
    /// yet: the previous period's included credits at most (none after a
    /// trial, which nobody paid for).
    pub fn unpaid(previous: &Current, after_trial: bool) -> Grant {
        Grant::UpTo(if after_trial { 0 } else { previous.period_included_credits })
    }
}

/// The key of the part of a period's grant made before it was paid.
fn provisional_key(org: Uuid, start: OffsetDateTime, plan: &str) -> String {
    format!("{}:unpaid", grant_key(org, start, plan))
}

/// Opens a period [start, end) on `plan`: active, nothing scheduled, the
/// meters rolled, and its included credits granted as `grant_now` says.
pub async fn open_period(
    conn: &mut PgConnection,
    org: Uuid,
    plan: Uuid,
    start: OffsetDateTime,
    end: OffsetDateTime,
    grant_now: Grant,
    now: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    let p = plan_by_id(conn, plan).await?;
    sqlx::query(
        "UPDATE subscriptions SET plan_id = $2, status = 'active', current_period_start = $3, current_period_end = $4,
                cancel_at_period_end = false, grace_until = NULL, next_plan_id = NULL, fallback_plan_id = NULL,
                held_next_plan_id = NULL, updated_at = $5, period_price_minor = $6, period_included_credits = $7
          WHERE org_id = $1",
    )
    .bind(org)
    .bind(plan)
    .bind(start)
    .bind(end)
    .bind(now)
    .bind(p.price_minor)
    .bind(p.included_credits)
    .execute(&mut *conn)
    .await?;
    roll_meters(conn, org, start, end, now).await?;
    match grant_now {
        Grant::Full => {
            let key = grant_key(org, start, &p.code);
            grant(conn, org, p.included_credits, &key, &format!("included credits of the {} plan", p.name), now).await?;
        }
        Grant::UpTo(most) => {
            let key = provisional_key(org, start, &p.code);
            let memo = format!("included credits of the {} plan, while its charge is owed", p.name);
            grant(conn, org, p.included_credits.min(most), &key, &memo, now).await?;
        }
    }
    Ok(())
}

/// A paid upgrade: the new plan at once, and its extra included credits for
/// the rest of the period. A payment that arrives after the subscription has
/// moved on (another period, another plan, ended, waiting for approval) buys
/// nothing: it is recorded for a refund.
pub async fn upgraded(conn: &mut PgConnection, inv: &Invoice, now: OffsetDateTime) -> Result<(), sqlx::Error> {
    let plan = inv.plan.expect("an upgrade names its plan");
    let cur = current_in(conn, inv.org, true).await?;
    let stale = match &cur {
        None => true,
        Some(c) => {
            (inv.period_start.is_some() && inv.period_start != Some(c.period_start))
                || c.plan.id == plan
                || matches!(c.status, Status::Expired | Status::PendingApproval | Status::Unpaid)
        }
    };
    if stale {
        tracing::error!(org = %inv.org, invoice = %inv.number, "an upgrade was paid after the subscription changed; refund it");
        return crate::audit::record(
            conn,
            now,
            None,
            Some(inv.org),
            crate::audit::Action::BillingRefundDue,
            serde_json::json!({"invoice": inv.number, "amount_minor": inv.total_minor, "why": "upgrade paid after the subscription changed"}),
        )
        .await;
    }
    // The rest of the period is on the new plan's terms (its price was
    // prorated, its extra credits are granted below).
    sqlx::query(&format!(
        "UPDATE subscriptions SET plan_id = $2, next_plan_id = NULL, cancel_at_period_end = false,
                status = {UNCANCELED}, updated_at = $3,
                period_price_minor = p.price_minor, period_included_credits = p.included_credits
           FROM plans p
          WHERE org_id = $1 AND p.id = $2"
    ))
    .bind(inv.org)
    .bind(plan)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let key = format!("grant:{}:upgrade:{}", inv.org, inv.id);
    grant(conn, inv.org, inv.credits, &key, &format!("included credits added by upgrade (invoice {})", inv.number), now).await
}

/// A renewal (or approval, or trial's end) paid: active again, and the
/// period's included credits, if the period is still the one it paid for.
pub async fn renewal_paid(conn: &mut PgConnection, _state: &Billing, inv: &Invoice, now: OffsetDateTime) -> Result<(), sqlx::Error> {
    let Some(cur) = current_in(conn, inv.org, true).await? else {
        return Ok(());
    };
    if matches!(cur.status, Status::PastDue | Status::Unpaid | Status::Trialing | Status::Active) {
        // A cancellation scheduled while the renewal was owed stands.
        sqlx::query(
            "UPDATE subscriptions SET status = CASE WHEN cancel_at_period_end THEN 'canceled' ELSE 'active' END,
                    grace_until = NULL, updated_at = $2 WHERE org_id = $1",
        )
            .bind(inv.org)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        super::notices::forget(conn, inv.org, super::notices::Notice::GraceEnding).await?;
    }
    if inv.period_start == Some(cur.period_start) {
        // The rest of the period's included credits: what it was not
        // granted while unpaid.
        let plan = plan_by_id(conn, inv.plan.unwrap_or(cur.plan.id)).await?;
        let early: i64 = sqlx::query_scalar(
            "SELECT coalesce(sum(e.amount), 0)::bigint FROM ledger_transactions t JOIN ledger_entries e ON e.transaction_id = t.id
              WHERE t.idempotency_key = $1 AND e.account = 'included'",
        )
        .bind(provisional_key(inv.org, cur.period_start, &plan.code))
        .fetch_one(&mut *conn)
        .await?;
        // What the period was opened on, whatever the plan says since.
        let included = if plan.id == cur.plan.id { cur.period_included_credits } else { plan.included_credits };
        let key = grant_key(inv.org, cur.period_start, &plan.code);
        let memo = format!("included credits of the {} plan", plan.name);
        grant(conn, inv.org, (included - early).max(0), &key, &memo, now).await?;
    }
    Ok(())
}

/// Whether an owed invoice (a renewal, an approval's first charge) is still
/// being charged or has failed: a debt that holds the subscription in
/// dunning whatever the customer clicks.
pub async fn owes(conn: &mut PgConnection, org: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM invoices WHERE org_id = $1 AND owed AND status IN ('open', 'failed'))")
        .bind(org)
        .fetch_one(conn)
        .await
}

/// A renewal's charge failed: past due, with a grace period from the first
/// failure, whatever the subscription became while the charge was under
/// way: a cancellation stays scheduled but the debt holds; a request for
/// approval made meanwhile is withdrawn (the plan it would replace, and a
/// downgrade it held, come back).
pub async fn renewal_failed(conn: &mut PgConnection, state: &Billing, org: Uuid, now: OffsetDateTime) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE subscriptions SET status = 'past_due', grace_until = coalesce(grace_until, $2), updated_at = $3,
                plan_id = CASE WHEN status = 'pending_approval' THEN coalesce(fallback_plan_id, plan_id) ELSE plan_id END,
                next_plan_id = CASE WHEN status = 'pending_approval' THEN held_next_plan_id ELSE next_plan_id END,
                held_next_plan_id = CASE WHEN status = 'pending_approval' THEN NULL ELSE held_next_plan_id END,
                requested_at = CASE WHEN status = 'pending_approval' THEN NULL ELSE requested_at END,
                fallback_plan_id = CASE WHEN status = 'pending_approval' THEN NULL ELSE fallback_plan_id END
          WHERE org_id = $1 AND status IN ('active', 'trialing', 'past_due', 'canceled', 'pending_approval')",
    )
    .bind(org)
    .bind(now + time::Duration::days(state.policy.grace_days))
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::add_month;
    use time::macros::datetime;

    #[test]
    fn months_clamp_to_the_last_day() {
        assert_eq!(
            add_month(datetime!(2026-01-31 10:00 UTC)),
            datetime!(2026-02-28 10:00 UTC)
        );
        assert_eq!(
            add_month(datetime!(2028-01-31 10:00 UTC)),
            datetime!(2028-02-29 10:00 UTC)
        );
        assert_eq!(
            add_month(datetime!(2026-12-15 00:00 UTC)),
            datetime!(2027-01-15 00:00 UTC)
        );
    }
}

#[cfg(test)]
mod transition_tests {
    use super::{Status, Transition};
    use uuid::Uuid;

    #[test]
    fn each_transition_starts_only_where_the_rules_allow() {
        use Status::*;
        let all = [PendingApproval, Trialing, Active, PastDue, Unpaid, Canceled, Expired];
        let cases: [(Transition, &[Status]); 9] = [
            (Transition::RequestApproval { plan: Uuid::nil() }, &[Active, Trialing]),
            (Transition::WithdrawRequest, &[PendingApproval]),
            (Transition::DeclineRequest { note: String::new(), lapsed: false }, &[PendingApproval]),
            (Transition::Keep, &[Active, Trialing, Canceled]),
            (Transition::ScheduleDowngrade { plan: Uuid::nil() }, &[Active, Trialing, Canceled]),
            (Transition::Cancel, &[Active, Trialing]),
            (Transition::StartTrial { end: time::OffsetDateTime::UNIX_EPOCH }, &[Active]),
            (Transition::Expire, &[Canceled]),
            (Transition::NoteDecision { note: String::new() }, &[Active]),
        ];
        for (t, allowed) in cases {
            for s in all {
                assert_eq!(t.allowed_from(s), allowed.contains(&s), "{} from {s}", t.name());
            }
        }
    }

    #[test]
    fn only_this_module_writes_a_subscriptions_state() {
        let needle = ["UPDATE ", "subscriptions"].concat();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut stack = vec![root];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") && !p.ends_with("billing/subscriptions.rs") {
                    assert!(!std::fs::read_to_string(&p).unwrap().contains(&needle), "{} writes a subscription", p.display());
                }
            }
        }
    }
}
