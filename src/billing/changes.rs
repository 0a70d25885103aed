//! Plan changes: upgrades at once with a prorated charge (the preview and
//! the charge come from the same [`quote`]), downgrades and cancellations at
//! the period's end (reversible until then), renewing after expiry, a trial
//! without a card, and plans that need an admin's approval.

use super::payments::{self, Collected, Line, NewInvoice, Purpose};
use super::plans::{Plan, COLUMNS};
use super::policy::prorate;
use super::subscriptions::{add_month, current_in, open_period, transition, Current, Grant, Status, Transition};
use super::{notices, BillingError};
use super::Billing;
use sqlx::PgConnection;
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

const DAY: i64 = 86_400;

/// What an upgrade costs now, line by line, and the included credits it adds
/// for the rest of the period.
#[derive(Clone, Debug, PartialEq)]
pub struct Quote {
    pub lines: Vec<Line>,
    pub total_minor: i64,
    pub credits: i64,
    pub remaining_days: i64,
    pub period_days: i64,
}

/// The prorated difference of moving from `from` to `to` at `now` in the
/// period [start, end), counted in started days (so a preview stays valid
/// for the rest of its day): the new plan's price for the days left, less
/// what the old plan was paid for them.
pub fn quote(from: &Plan, paid_from: bool, to: &Plan, start: OffsetDateTime, end: OffsetDateTime, now: OffsetDateTime) -> Quote {
    let whole = ((end - start).whole_seconds() + DAY / 2) / DAY;
    let whole = whole.max(1);
    let left = ((end - now).whole_seconds().max(0) + DAY - 1) / DAY;
    let left = left.min(whole);
    let mut lines = vec![Line::one(
        format!("{} plan, {left} of {whole} days", to.name),
        prorate(to.price_minor, left, whole),
    )];
    if paid_from && from.price_minor > 0 {
        lines.push(Line::one(
            format!("Unused {} plan, {left} of {whole} days", from.name),
            -prorate(from.price_minor, left, whole),
        ));
    }
    let total_minor = lines.iter().map(|l| l.quantity * l.unit_minor).sum::<i64>().max(0);
    let extra = (to.included_credits - from.included_credits).max(0);
    Quote {
        lines,
        total_minor,
        credits: i64::try_from(i128::from(extra) * i128::from(left) / i128::from(whole)).unwrap_or(0),
        remaining_days: left,
        period_days: whole,
    }
}

pub async fn plan_by_code(conn: &mut PgConnection, code: &str) -> Result<Option<Plan>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM plans WHERE code = $1 AND active"))
        .bind(code)
        .fetch_optional(conn)
        .await
}

/// What choosing a plan does, for the page to say before the customer
/// confirms.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Current,
    Upgrade(Quote),
    /// At the end of the period.
    Downgrade(OffsetDateTime),
    NeedsApproval,
    /// Renewing after expiry: a new period, paid now.
    Renew(i64),
    /// While a request waits for approval: withdraw it and stay on the
    /// plan it would replace.
    Withdraw,
    Unavailable(String),
}

/// Whether the current period is a trial's (also once canceled, or while a
/// plan needing approval is requested from it).
fn in_trial(sub: &Current) -> bool {
    sub.status == Status::Trialing || (sub.trial_end == Some(sub.period_end) && sub.status != Status::Expired)
}

/// Whether the current period's price was paid (a trial's was not).
fn paid(sub: &Current) -> bool {
    !in_trial(sub) && sub.status != Status::Expired
}

pub fn change(sub: &Current, to: &Plan, now: OffsetDateTime) -> Change {
    let ended = sub.has_ended(now);
    match sub.status {
        Status::PendingApproval => {
            return match &sub.fallback_plan {
                Some(f) if f.id == to.id => Change::Withdraw,
                Some(f) => Change::Unavailable(format!(
                    "Your request is waiting for approval; plans can change after the decision, or withdraw it by staying on {}.",
                    f.name
                )),
                None => Change::Unavailable("Your subscription is waiting for approval; plans can change after the decision.".into()),
            }
        }
        Status::Unpaid | Status::PastDue => {
            return Change::Unavailable("Pay the failed renewal first: update your card on the payment methods page.".into())
        }
        _ => {}
    }
    // Proration and credits for unused days add amounts of the two plans
    // together: never across currencies.
    if to.id != sub.plan.id
        && sub.plan.price_minor > 0
        && to.price_minor > 0
        && !sub.plan.currency.trim().eq_ignore_ascii_case(to.currency.trim())
    {
        return Change::Unavailable(format!(
            "{} is billed in {} and your plan in {}: a plan in another currency cannot be changed to here. Ask support to move you.",
            to.name,
            to.currency.trim(),
            sub.plan.currency.trim()
        ));
    }
    // Approval comes before any purchase: a plan that needs it is never
    // bought by renewing into it.
    if to.requires_approval && (ended || to.id != sub.plan.id) {
        if ended {
            return Change::Unavailable(format!("Renew another plan first, then ask for {}: it needs our team's approval.", to.name));
        }
        if sub.status == Status::Canceled {
            return Change::Unavailable(format!("Keep your {} plan first, then ask for {}.", sub.plan.name, to.name));
        }
        return Change::NeedsApproval;
    }
    if ended {
        return Change::Renew(to.price_minor);
    }
    if to.id == sub.plan.id {
        return Change::Current;
    }
    if to.price_minor > sub.plan.price_minor || (to.price_minor == sub.plan.price_minor && to.included_credits > sub.plan.included_credits) {
        if in_trial(sub) {
            return Change::Unavailable("Add a card to keep your trial's plan; other upgrades are possible after the trial.".into());
        }
        return Change::Upgrade(quote(&sub.as_paid(&sub.plan), paid(sub), to, sub.period_start, sub.period_end, now));
    }
    Change::Downgrade(sub.period_end)
}

/// What happened when a plan was chosen.
#[derive(Clone, Debug, PartialEq)]
pub enum Changed {
    Upgraded,
    /// The charge has not settled yet; the plan changes when it does.
    Processing,
    /// The card's bank wants the customer to confirm the payment first.
    ConfirmationNeeded,
    DowngradeScheduled(OffsetDateTime),
    ApprovalRequested,
    Renewed,
    /// Already on it; a scheduled cancellation or downgrade was undone.
    Kept,
    /// A request for approval was withdrawn.
    Withdrawn,
}

fn outcome(c: Collected, done: Changed) -> Result<Changed, BillingError> {
    match c {
        Collected::Paid => Ok(done),
        Collected::Pending => Ok(Changed::Processing),
        Collected::ActionRequired(_) => Ok(Changed::ConfirmationNeeded),
        Collected::Failed(r) => Err(BillingError::Refused(r)),
    }
}

async fn has_card(conn: &mut PgConnection, state: &Billing, org: Uuid) -> Result<bool, sqlx::Error> {
    super::cards::has_default(conn, state.processor.name(), org).await
}

/// Chooses `code` for the organization. `expected_minor` is the amount the
/// customer saw and confirmed: if the charge now differs, nothing happens
/// and the new amount is returned to confirm. `key` names the request.
pub async fn choose(
    state: &Billing,
    org: Uuid,
    user: Uuid,
    code: &str,
    expected_minor: Option<i64>,
    key: &str,
    now: OffsetDateTime,
    wait: Duration,
) -> Result<Changed, BillingError> {
    // The form's key proves a complete form; the invoices below are named
    // by what they buy, so two forms for one purchase pay once.
    if key.len() < 16 || key.len() > 100 || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(BillingError::State("This form is incomplete; reload the page and choose again.".into()));
    }
    let mut tx = state.db.begin().await?;
    let sub = current_in(&mut tx, org, true).await?.ok_or(BillingError::NotFound)?;
    // An offered plan, or the organization's own even if archived since
    // (keeping or renewing it; an archived plan keeps its subscribers).
    let own = [Some(&sub.plan), sub.fallback_plan.as_ref()].into_iter().flatten().find(|p| p.code == code).cloned();
    let to = match plan_by_code(&mut tx, code).await? {
        Some(p) => p,
        None => own.ok_or(BillingError::Invalid(vec![("plan", "Choose one of the plans shown.".into())]))?,
    };
    let change = change(&sub, &to, now);
    let details = serde_json::json!({"from": sub.plan.code, "to": to.code});
    let choice = Choice { state, org, user, sub: &sub, to: &to, details: details.clone(), expected_minor, now, wait };
    match change {
        Change::Unavailable(why) => Err(BillingError::State(why)),
        Change::Withdraw => {
            transition(&mut tx, org, Transition::WithdrawRequest, now).await?;
            let details = serde_json::json!({"withdrawn": sub.plan.code, "stays_on": to.code});
            crate::audit::record(&mut tx, now, Some(user), Some(org), crate::audit::Action::SubscriptionRequestWithdrawn, details).await?;
            tx.commit().await?;
            Ok(Changed::Withdrawn)
        }
        Change::Current => {
            transition(&mut tx, org, Transition::Keep, now).await?;
            crate::audit::record(&mut tx, now, Some(user), Some(org), crate::audit::Action::SubscriptionKept, details).await?;
            tx.commit().await?;
            Ok(Changed::Kept)
        }
        Change::Downgrade(at) => {
            transition(&mut tx, org, Transition::ScheduleDowngrade { plan: to.id }, now).await?;
            crate::audit::record(&mut tx, now, Some(user), Some(org), crate::audit::Action::SubscriptionDowngradeScheduled, details).await?;
            tx.commit().await?;
            Ok(Changed::DowngradeScheduled(at))
        }
        Change::NeedsApproval => {
            if !has_card(&mut tx, state, org).await? {
                return Err(BillingError::NoCard);
            }
            transition(&mut tx, org, Transition::RequestApproval { plan: to.id }, now).await?;
            let org_name: String = sqlx::query_scalar("SELECT name FROM organizations WHERE id = $1")
                .bind(org)
                .fetch_one(&mut *tx)
                .await?;
            notices::approval_requested(&mut tx, state, org, &org_name, &to.name, now).await?;
            crate::audit::record(&mut tx, now, Some(user), Some(org), crate::audit::Action::SubscriptionApprovalRequested, details).await?;
            tx.commit().await?;
            Ok(Changed::ApprovalRequested)
        }
        Change::Renew(price) => renew(tx, &choice, price).await,
        Change::Upgrade(q) => upgrade(tx, &choice, q).await,
    }
}

/// What [`choose`] decided on, for the branches that buy something.
struct Choice<'a> {
    state: &'a Billing,
    org: Uuid,
    user: Uuid,
    sub: &'a Current,
    to: &'a Plan,
    details: serde_json::Value,
    expected_minor: Option<i64>,
    now: OffsetDateTime,
    wait: Duration,
}

type Tx = sqlx::Transaction<'static, sqlx::Postgres>;

/// Renews an ended subscription on `to` (a new month from now), paying
/// `price` when it has one.
async fn renew(mut tx: Tx, c: &Choice<'_>, price: i64) -> Result<Changed, BillingError> {
    let Choice { state, org, user, sub, to, expected_minor, now, wait, .. } = *c;
    let details = c.details.clone();
    // The customer confirms the amount they saw; none, or another,
    // charges nothing.
    if price > 0 && expected_minor != Some(price) {
        return Err(BillingError::PriceChanged(price));
    }
    // One renewal at a time, whatever the plan: a renewal still being
    // charged (another tab, another plan) is waited for, never
    // bought over. The subscription's row lock orders the two tabs.
    let renew_key = format!("renew:{org}:{}:{}", crate::clock::micros(sub.period_end), to.code);
    let in_flight: Option<String> = sqlx::query_scalar(
        "SELECT p.name FROM invoices i JOIN plans p ON p.id = i.plan_id
          WHERE i.org_id = $1 AND i.purpose = 'subscription' AND i.status = 'open' AND i.idempotency_key <> $2
          LIMIT 1",
    )
    .bind(org)
    .bind(&renew_key)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(plan) = in_flight {
        return Err(BillingError::State(format!(
            "A renewal of the {plan} plan is still being charged; wait for its outcome before renewing again."
        )));
    }
    if price == 0 {
        open_period(&mut tx, org, to.id, now, add_month(now), Grant::Full, now).await?;
        crate::audit::record(&mut tx, now, Some(user), Some(org), crate::audit::Action::SubscriptionRenewed, details).await?;
        tx.commit().await?;
        return Ok(Changed::Renewed);
    }
    if !has_card(&mut tx, state, org).await? {
        return Err(BillingError::NoCard);
    }
    let invoice = NewInvoice {
        org,
        purpose: Purpose::Subscription,
        currency: to.currency.trim().to_string(),
        lines: vec![Line::one(format!("{} plan, one month from {}", to.name, now.date()), price)],
        credits: 0,
        plan: Some(to.id),
        period: None,
        // Named by what it buys, not by the form: two tabs renewing
        // the same ended period pay one invoice.
        key: renew_key,
        owed: false,
        created_by: Some(user),
    };
    let (id, _) = payments::create_invoice(&mut tx, &invoice, now).await?;
    crate::audit::record(&mut tx, now, Some(user), Some(org), crate::audit::Action::SubscriptionRenewalStarted, details).await?;
    tx.commit().await?;
    outcome(payments::collect(state, id, now, wait).await?, Changed::Renewed)
}

/// Upgrades now, charging the prorated difference `q` the page showed.
async fn upgrade(mut tx: Tx, c: &Choice<'_>, q: Quote) -> Result<Changed, BillingError> {
    let Choice { state, org, user, sub, to, expected_minor, now, wait, .. } = *c;
    let details = c.details.clone();
    if expected_minor != Some(q.total_minor) {
        return Err(BillingError::PriceChanged(q.total_minor));
    }
    if q.total_minor == 0 {
        let inv = payments::Invoice {
            id: Uuid::now_v7(),
            org,
            number: String::new(),
            purpose: Purpose::Proration,
            status: payments::InvoiceStatus::Paid,
            currency: to.currency.clone(),
            total_minor: 0,
            credits: q.credits,
            plan: Some(to.id),
            period_start: None,
            period_end: None,
            owed: false,
        };
        super::subscriptions::upgraded(&mut tx, &inv, now).await?;
        crate::audit::record(&mut tx, now, Some(user), Some(org), crate::audit::Action::SubscriptionUpgraded, details).await?;
        tx.commit().await?;
        return Ok(Changed::Upgraded);
    }
    if !has_card(&mut tx, state, org).await? {
        return Err(BillingError::NoCard);
    }
    // Named by what it buys (this period, from this plan to that one,
    // at this many days left), not by the form: two tabs, a reload or
    // a back button pay one invoice. Another change still being
    // charged waits for its outcome.
    let key = format!(
        "upgrade:{org}:{}:{}:{}:{}",
        crate::clock::micros(sub.period_start),
        sub.plan.code,
        to.code,
        q.remaining_days
    );
    let busy: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM invoices WHERE org_id = $1 AND purpose = 'proration' AND status = 'open'
                           AND idempotency_key <> $2)",
    )
    .bind(org)
    .bind(&key)
    .fetch_one(&mut *tx)
    .await?;
    if busy {
        return Err(BillingError::State("Another plan change is still being charged; wait for its outcome.".into()));
    }
    let invoice = NewInvoice {
        org,
        purpose: Purpose::Proration,
        currency: to.currency.trim().to_string(),
        lines: q.lines,
        credits: q.credits,
        plan: Some(to.id),
        period: Some((sub.period_start, sub.period_end)),
        key,
        owed: false,
        created_by: Some(user),
    };
    let (id, _) = payments::create_invoice(&mut tx, &invoice, now).await?;
    crate::audit::record(&mut tx, now, Some(user), Some(org), crate::audit::Action::SubscriptionUpgradeStarted, details).await?;
    tx.commit().await?;
    outcome(payments::collect(state, id, now, wait).await?, Changed::Upgraded)
}

/// Cancels at the period's end (reversible until then by choosing the plan
/// again).
pub async fn cancel(state: &Billing, org: Uuid, user: Uuid, now: OffsetDateTime) -> Result<OffsetDateTime, BillingError> {
    let mut tx = state.db.begin().await?;
    let sub = current_in(&mut tx, org, true).await?.ok_or(BillingError::NotFound)?;
    // A renewal still being charged, or one that failed, is a debt that
    // cancelling does not clear.
    if super::subscriptions::owes(&mut tx, org).await? {
        return Err(BillingError::State("A renewal is still owed: pay it first (or wait for its charge), then cancel.".into()));
    }
    match sub.status {
        Status::Active | Status::Trialing if sub.plan.price_minor > 0 => {}
        Status::Canceled => return Err(BillingError::State("Your subscription is already canceled at the end of the period.".into())),
        // A failed renewal is paid (or runs out its grace) first: canceling
        // and keeping again would otherwise make it active unpaid.
        Status::PastDue | Status::Unpaid => {
            return Err(BillingError::State("Pay the failed renewal first: update your card on the payment methods page.".into()))
        }
        _ if sub.plan.price_minor == 0 => return Err(BillingError::State("The free plan has nothing to cancel.".into())),
        _ => return Err(BillingError::State("This subscription cannot be canceled now.".into())),
    }
    transition(&mut tx, org, Transition::Cancel, now).await?;
    crate::audit::record(&mut tx, now, Some(user), Some(org), crate::audit::Action::SubscriptionCanceled, serde_json::json!({"plan": sub.plan.code})).await?;
    tx.commit().await?;
    Ok(sub.period_end)
}

/// Starts a trial of `code` (once per organization, from a free plan).
pub async fn start_trial(state: &Billing, org: Uuid, user: Uuid, code: &str, now: OffsetDateTime) -> Result<OffsetDateTime, BillingError> {
    let mut tx = state.db.begin().await?;
    let to = plan_by_code(&mut tx, code).await?.ok_or(BillingError::Invalid(vec![("plan", "Choose one of the plans shown.".into())]))?;
    let sub = current_in(&mut tx, org, true).await?.ok_or(BillingError::NotFound)?;
    if sub.trial_used {
        return Err(BillingError::State("Your organization has had its trial already.".into()));
    }
    if sub.status != Status::Active || sub.plan.price_minor != 0 || to.price_minor == 0 || to.requires_approval || to.trial_days <= 0 {
        return Err(BillingError::State("A trial starts from the free plan, for a plan that offers one without approval.".into()));
    }
    // A trial needs a verified address or a card, and each verified address
    // and each card gets one trial, whichever organization asks for it.
    let (email, verified): (String, bool) =
        sqlx::query_as("SELECT lower(email), email_verified_at IS NOT NULL FROM users WHERE id = $1")
            .bind(user)
            .fetch_one(&mut *tx)
            .await?;
    // A card counts only with the processor's fingerprint (one trial per card).
    let card: Option<String> = sqlx::query_scalar::<_, Option<String>>(
        "SELECT fingerprint FROM payment_methods WHERE org_id = $1 AND is_default AND removed_at IS NULL AND processor = $2",
    )
    .bind(org)
    .bind(state.processor.name())
    .fetch_optional(&mut *tx)
    .await?
    .flatten();
    if !verified && card.is_none() {
        return Err(BillingError::State(
            "Confirm your email address first (we sent you a link; the account page sends another), or add a card.".into(),
        ));
    }
    let mut claims = Vec::new();
    if verified {
        let mailbox = crate::accounts::verify::mailbox(&email);
        claims.push(format!("email:{}", hex::encode(crate::crypto::sha256(mailbox.as_bytes()))));
    }
    if let Some(fingerprint) = &card {
        claims.push(format!("card:{fingerprint}"));
    }
    for claim in &claims {
        let fresh = sqlx::query("INSERT INTO trial_claims (claim, org_id, claimed_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(claim)
            .bind(org)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if fresh == 0 {
            let what = if claim.starts_with("email:") { "email address" } else { "card" };
            return Err(BillingError::State(format!("This {what} has had a free trial already.")));
        }
    }
    let end = now + time::Duration::days(to.trial_days.into());
    open_period(&mut tx, org, to.id, now, end, Grant::Full, now).await?;
    transition(&mut tx, org, Transition::StartTrial { end }, now).await?;
    crate::audit::record(&mut tx, now, Some(user), Some(org), crate::audit::Action::SubscriptionTrialStarted, serde_json::json!({"plan": to.code})).await?;
    tx.commit().await?;
    Ok(end)
}

/// A platform admin's decision on a subscription waiting for approval.
/// Approval opens the plan's period at once and charges it (owed: a
/// failure goes past due like a renewal); the customer is told either way.
///
/// `request` names the request the admin saw (`request_ref`): one that was
/// withdrawn, or replaced by another since, is refused unchanged.
#[allow(clippy::too_many_arguments)]
pub async fn decide(
    state: &Billing,
    org: Uuid,
    admin: Uuid,
    request: &str,
    approve: bool,
    note: &str,
    now: OffsetDateTime,
) -> Result<Option<Collected>, BillingError> {
    let mut tx = state.db.begin().await?;
    let sub = current_in(&mut tx, org, true).await?.ok_or(BillingError::NotFound)?;
    if sub.status != Status::PendingApproval {
        return Err(BillingError::State("This subscription is not waiting for approval (decided already?).".into()));
    }
    if request_ref(&sub.plan.code, sub.requested_at) != request {
        return Err(BillingError::State(
            "This request changed since the page was loaded (withdrawn or made again); decide on the request as it is now.".into(),
        ));
    }
    let details = serde_json::json!({"plan": sub.plan.code, "note": note});
    notices::approval_decided(&mut tx, state, org, &sub.plan.name, approve, note, now).await?;
    if !approve {
        transition(&mut tx, org, Transition::DeclineRequest { note: note.to_string(), lapsed: false }, now).await?;
        crate::audit::record(&mut tx, now, Some(admin), Some(org), crate::audit::Action::SubscriptionRejected, details).await?;
        tx.commit().await?;
        return Ok(None);
    }
    let plan = sub.plan.clone();
    let end = add_month(now);
    let mut lines = vec![Line::one(format!("{} plan, {} – {}", plan.name, now.date(), end.date()), plan.price_minor)];
    // The plan it replaces is credited for its unused days, if they were
    // paid for (a trial's were not).
    if let Some(old) = sub.fallback_plan.as_ref().map(|p| sub.as_paid(p)).filter(|p| p.price_minor > 0 && sub.trial_end != Some(sub.period_end)) {
        let q = quote(&old, true, &old, sub.period_start, sub.period_end, now);
        let unused = q.lines[0].unit_minor;
        if unused > 0 {
            lines.push(Line::one(format!("Unused {} plan, {} of {} days", old.name, q.remaining_days, q.period_days), -unused.min(plan.price_minor)));
        }
    }
    let total: i64 = lines.iter().map(|l| l.unit_minor).sum();
    // Until its first charge is paid, the approved plan spends at most what
    // the plan it replaces included (none after a trial).
    let grant = match &sub.fallback_plan {
        Some(_) if total > 0 => Grant::unpaid(&sub, sub.trial_end == Some(sub.period_end)),
        _ => Grant::Full,
    };
    open_period(&mut tx, org, plan.id, now, end, grant, now).await?;
    transition(&mut tx, org, Transition::NoteDecision { note: note.to_string() }, now).await?;
    crate::audit::record(&mut tx, now, Some(admin), Some(org), crate::audit::Action::SubscriptionApproved, details).await?;
    if total == 0 {
        tx.commit().await?;
        return Ok(None);
    }
    let invoice = NewInvoice {
        org,
        purpose: Purpose::Renewal,
        currency: plan.currency.trim().to_string(),
        lines,
        credits: 0,
        plan: Some(plan.id),
        period: Some((now, end)),
        key: format!("approval:{org}:{}", crate::clock::micros(now)),
        owed: true,
        created_by: Some(admin),
    };
    let (id, _) = payments::create_invoice(&mut tx, &invoice, now).await?;
    tx.commit().await?;
    match payments::collect(state, id, now, payments::WAIT).await {
        Ok(c) => Ok(Some(c)),
        Err(payments::CollectError::NoCard) => {
            payments::no_card(state, id, now).await?;
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// What names one request for approval: the plan asked for and when.
pub fn request_ref(plan_code: &str, requested_at: Option<OffsetDateTime>) -> String {
    let micros = requested_at.map(|t| t.unix_timestamp_nanos() / 1000).unwrap_or_default();
    format!("{plan_code}@{micros}")
}

/// Subscriptions waiting for approval, oldest request first:
/// (org id, org name, requested plan, plan it replaces, requested at,
/// the request's reference).
pub async fn pending(db: &sqlx::PgPool) -> Result<Vec<(Uuid, String, String, Option<String>, Option<OffsetDateTime>, String)>, sqlx::Error> {
    let rows: Vec<(Uuid, String, String, Option<String>, Option<OffsetDateTime>, String)> = sqlx::query_as(
        "SELECT s.org_id, o.name, p.name, fp.name, s.requested_at, p.code
           FROM subscriptions s JOIN organizations o ON o.id = s.org_id JOIN plans p ON p.id = s.plan_id
           LEFT JOIN plans fp ON fp.id = s.fallback_plan_id
          WHERE s.status = 'pending_approval' ORDER BY s.requested_at NULLS FIRST",
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(org, name, plan, replaces, at, code)| (org, name, plan, replaces, at, request_ref(&code, at)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn plan(name: &str, price: i64, included: i64) -> Plan {
        Plan {
            id: Uuid::now_v7(),
            code: name.to_lowercase(),
            name: name.into(),
            price_minor: price,
            currency: "USD".into(),
            included_credits: included,
            rate_limit_per_sec: 5,
            requires_approval: false,
            endpoints: vec![],
            sort_order: 0,
            signup: false,
            trial_days: 0,
            active: true,
            archived_at: None,
        }
    }

    #[test]
    fn an_upgrade_charges_the_difference_for_the_days_left() {
        let start = datetime!(2026-11-01 00:00 UTC);
        let end = datetime!(2026-12-01 00:00 UTC);
        let free = plan("Free", 0, 100);
        let pro = plan("Pro", 2900, 10_000);
        let team = plan("Team", 9900, 50_000);
        // 15 days left of 30, counting the started day.
        let q = quote(&free, true, &pro, start, end, datetime!(2026-11-16 00:00 UTC));
        assert_eq!((q.remaining_days, q.period_days, q.total_minor), (15, 30, 1450));
        assert_eq!(q.credits, 4950);
        let q = quote(&pro, true, &team, start, end, datetime!(2026-11-16 09:30 UTC));
        assert_eq!(q.remaining_days, 15);
        assert_eq!(q.total_minor, 4950 - 1450);
        assert_eq!(q.lines.iter().map(|l| l.unit_minor).sum::<i64>(), q.total_minor);
        // The same all day long.
        let later = quote(&pro, true, &team, start, end, datetime!(2026-11-16 23:59 UTC));
        assert_eq!(later, q);
    }

    #[test]
    fn a_paid_plan_never_changes_to_a_paid_plan_in_another_currency() {
        let pro = plan("Pro", 2900, 10_000);
        let mut euro = plan("Team EU", 9900, 50_000);
        euro.currency = "EUR".into();
        let mut free_eu = plan("Free EU", 0, 100);
        free_eu.currency = "EUR".into();
        let sub = |p: &Plan| Current {
            plan: p.clone(),
            status: Status::Active,
            period_start: datetime!(2026-11-01 00:00 UTC),
            period_end: datetime!(2026-12-01 00:00 UTC),
            trial_end: None,
            trial_used: false,
            grace_until: None,
            next_plan: None,
            fallback_plan: None,
            requested_at: None,
            decision_note: None,
            period_price_minor: p.price_minor,
            period_included_credits: p.included_credits,
        };
        let now = datetime!(2026-11-16 00:00 UTC);
        assert!(matches!(change(&sub(&pro), &euro, now), Change::Unavailable(why) if why.contains("EUR")));
        assert!(matches!(change(&sub(&euro), &pro, now), Change::Unavailable(_)));
        // Nothing is prorated from or into a free plan: allowed.
        assert!(!matches!(change(&sub(&free_eu), &pro, now), Change::Unavailable(_)));
        assert!(!matches!(change(&sub(&pro), &plan("Team", 9900, 50_000), now), Change::Unavailable(_)));
    }
}
