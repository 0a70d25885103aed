//! Billing notifications: receipts, failed payments, grace ending, access
//! suspended, subscription ended, trial ending, low balance, approval
//! requests and decisions. Each is an email put in the outbox (sent by SMTP
//! when configured) in the transaction of the change it reports, to the
//! organization's owners, admins and billing members. Notices that must go
//! out once per occasion are remembered in `billing_notices`.

use super::format_money;
use super::payments::{Invoice, Purpose};
use super::processor::Refused;
use super::Billing;
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

crate::text_enum! {
    /// What a billing notice is about: the email's kind in the outbox, and
    /// the reason a once-only notice is remembered under (with its
    /// occasion, for those sent once per occasion).
    pub enum Notice {
        Receipt = "receipt",
        PaymentFailed = "payment_failed",
        GraceEnding = "grace_ending",
        Suspended = "suspended",
        SubscriptionEnded = "subscription_ended",
        TrialEnding = "trial_ending",
        ApprovalRequested = "approval_requested",
        ApprovalDecided = "approval_decided",
        PlanTermsChanged = "plan_terms_changed",
        LowBalance = "low_balance",
        IncludedUsed = "included_used",
        SpendCapUsed = "spend_cap_used",
        ConfirmationNeeded = "confirmation_needed",
        Refunded = "refunded",
    }
}

impl Notice {
    /// The reason a once-only notice is remembered under: the notice, and
    /// the occasion when it goes once per occasion.
    fn reason(self, occasion: Option<&str>) -> String {
        match occasion {
            Some(o) => format!("{}:{o}", self.as_str()),
            None => self.as_str().to_string(),
        }
    }
}

async fn recipients(conn: &mut PgConnection, org: Uuid) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT u.email FROM memberships m JOIN users u ON u.id = m.user_id
          WHERE m.org_id = $1 AND m.role IN ('owner', 'admin', 'billing') ORDER BY u.email",
    )
    .bind(org)
    .fetch_all(conn)
    .await
}

async fn send(
    conn: &mut PgConnection,
    org: Uuid,
    kind: Notice,
    subject: &str,
    body: &str,
    now: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    for to in recipients(conn, org).await? {
        crate::email::enqueue(conn, now, &to, subject, body, kind.as_str(), &[]).await?;
    }
    Ok(())
}

/// Sends a notice once per (organization, reason); `false` if sent before.
async fn once(
    conn: &mut PgConnection,
    org: Uuid,
    notice: Notice,
    occasion: Option<&str>,
    now: OffsetDateTime,
) -> Result<bool, sqlx::Error> {
    let reason = notice.reason(occasion);
    let fresh = sqlx::query(
        "INSERT INTO billing_notices (org_id, reason, sent_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(org)
    .bind(&reason)
    .bind(now)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(fresh == 1)
}

/// Records a notice that goes out at most once per `every`: true when this
/// one may go (none was sent within `every` before `now`). The row's lock
/// makes it hold for concurrent requests and several instances.
async fn at_most_every(
    conn: &mut PgConnection,
    org: Uuid,
    notice: Notice,
    every: time::Duration,
    now: OffsetDateTime,
) -> Result<bool, sqlx::Error> {
    let fresh = sqlx::query(
        "INSERT INTO billing_notices (org_id, reason, sent_at) VALUES ($1, $2, $3)
         ON CONFLICT (org_id, reason) DO UPDATE SET sent_at = EXCLUDED.sent_at
          WHERE billing_notices.sent_at <= EXCLUDED.sent_at - $4::interval",
    )
    .bind(org)
    .bind(notice.as_str())
    .bind(now)
    .bind(format!("{} seconds", every.whole_seconds()))
    .execute(conn)
    .await?
    .rows_affected();
    Ok(fresh == 1)
}

/// Lets a once-only notice go out again on its next occasion.
pub async fn forget(conn: &mut PgConnection, org: Uuid, notice: Notice) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM billing_notices WHERE org_id = $1 AND reason = $2")
        .bind(org)
        .bind(notice.as_str())
        .execute(conn)
        .await
        .map(|_| ())
}

fn what(inv: &Invoice) -> &'static str {
    match inv.purpose {
        Purpose::TopUp => "credit top-up",
        Purpose::AutoTopUp => "automatic credit top-up",
        Purpose::Proration => "plan upgrade",
        Purpose::Subscription | Purpose::Renewal => "subscription",
    }
}

pub async fn receipt(conn: &mut PgConnection, state: &Billing, inv: &Invoice, now: OffsetDateTime) -> Result<(), sqlx::Error> {
    let link = state.links.url(&format!("/billing/invoices/{}", inv.id));
    let body = format!(
        "Thank you. We received {} for your {} (invoice {}).\n\nThe invoice: {link}\n",
        format_money(inv.total_minor, &inv.currency),
        what(inv),
        inv.number
    );
    send(conn, inv.org, Notice::Receipt, &format!("Receipt for invoice {}", inv.number), &body, now).await
}

pub async fn payment_failed(
    conn: &mut PgConnection,
    state: &Billing,
    inv: &Invoice,
    refused: &Refused,
    next: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    let cards = state.links.url("/billing/payment-methods");
    let retry = match next {
        Some(at) => format!("We will try again on {}. ", at.date()),
        None => String::new(),
    };
    let body = format!(
        "The payment of {} for your {} (invoice {}) did not go through: {}\n\n{retry}Update your card to pay now: {cards}\n",
        format_money(inv.total_minor, &inv.currency),
        what(inv),
        inv.number,
        refused.message()
    );
    send(conn, inv.org, Notice::PaymentFailed, "Your payment did not go through", &body, now).await
}

/// A payment the card's bank wants the customer to confirm, made while
/// they were away (a renewal, an automatic top-up): the link to confirm it.
pub async fn confirmation_needed(conn: &mut PgConnection, state: &Billing, inv: &Invoice, now: OffsetDateTime) -> Result<(), sqlx::Error> {
    let link = state.links.url(&format!("/billing/invoices/{}", inv.id));
    let body = format!(
        "Your bank wants you to confirm the payment of {} for your {} (invoice {}).\n\nConfirm it here: {link}\n\nUntil you do, the payment waits; after a day it is given up and counts as failed.\n",
        format_money(inv.total_minor, &inv.currency),
        what(inv),
        inv.number
    );
    send(conn, inv.org, Notice::ConfirmationNeeded, "Confirm your payment with your bank", &body, now).await
}

/// Money sent back to the customer's card.
pub async fn refunded(conn: &mut PgConnection, state: &Billing, inv: &Invoice, amount_minor: i64, now: OffsetDateTime) -> Result<(), sqlx::Error> {
    let link = state.links.url(&format!("/billing/invoices/{}", inv.id));
    let body = format!(
        "We refunded {} of invoice {} to your card. It can take 5 to 10 days to show on your statement.\n\nThe invoice: {link}\n",
        format_money(amount_minor, &inv.currency),
        inv.number
    );
    send(conn, inv.org, Notice::Refunded, &format!("Refund for invoice {}", inv.number), &body, now).await
}

pub async fn grace_ending(conn: &mut PgConnection, state: &Billing, org: Uuid, until: OffsetDateTime, now: OffsetDateTime) -> Result<(), sqlx::Error> {
    if !once(conn, org, Notice::GraceEnding, None, now).await? {
        return Ok(());
    }
    let body = format!(
        "Your subscription's renewal payment failed, and its grace period ends at {until} (UTC). After that, \
         API calls are refused until the payment succeeds.\n\nUpdate your card: {}\n",
        state.links.url("/billing/payment-methods")
    );
    send(conn, org, Notice::GraceEnding, "Your grace period ends soon", &body, now).await
}

pub async fn suspended(conn: &mut PgConnection, state: &Billing, org: Uuid, now: OffsetDateTime) -> Result<(), sqlx::Error> {
    let body = format!(
        "Your subscription's grace period has ended without a successful payment, so API calls are refused \
         (402 subscription_past_due). Update your card to pay and restore access at once: {}\n",
        state.links.url("/billing/payment-methods")
    );
    send(conn, org, Notice::Suspended, "API access suspended: payment needed", &body, now).await
}

pub async fn ended(conn: &mut PgConnection, state: &Billing, org: Uuid, now: OffsetDateTime) -> Result<(), sqlx::Error> {
    let body = format!(
        "Your subscription has ended, as you asked. Renew it whenever you like: {}\n",
        state.links.url("/billing/plans?renew=1")
    );
    send(conn, org, Notice::SubscriptionEnded, "Your subscription has ended", &body, now).await
}

pub async fn trial_ending(conn: &mut PgConnection, state: &Billing, org: Uuid, end: OffsetDateTime, now: OffsetDateTime) -> Result<(), sqlx::Error> {
    if !once(conn, org, Notice::TrialEnding, Some(&end.unix_timestamp().to_string()), now).await? {
        return Ok(());
    }
    let body = format!(
        "Your trial ends at {end} (UTC). Add a card to keep your plan; without one, calls that need it are refused \
         (402 payment_method_required): {}\n",
        state.links.url("/billing/payment-methods")
    );
    send(conn, org, Notice::TrialEnding, "Your trial ends soon", &body, now).await
}

/// Sends a once-only notice (one per organization and notice until
/// [`forget`] arms it again); `false` if it was sent before.
pub async fn send_once(conn: &mut PgConnection, org: Uuid, notice: Notice, subject: &str, body: &str, now: OffsetDateTime) -> Result<bool, sqlx::Error> {
    if !once(conn, org, notice, None, now).await? {
        return Ok(false);
    }
    send(conn, org, notice, subject, body, now).await?;
    Ok(true)
}

/// Tells every platform admin that `org` asks for `plan`: at most once per
/// organization a day, however often the request is withdrawn and made
/// again (the approvals page always lists what waits).
pub async fn approval_requested(conn: &mut PgConnection, state: &Billing, org: Uuid, org_name: &str, plan: &str, now: OffsetDateTime) -> Result<(), sqlx::Error> {
    if !at_most_every(conn, org, Notice::ApprovalRequested, time::Duration::days(1), now).await? {
        return Ok(());
    }
    let admins: Vec<String> = sqlx::query_scalar("SELECT email FROM users WHERE is_platform_admin ORDER BY email")
        .fetch_all(&mut *conn)
        .await?;
    let body = format!(
        "{org_name} asks for the {plan} plan. Approve or reject it: {}\n",
        state.links.url("/admin/approvals")
    );
    for to in admins {
        crate::email::enqueue(conn, now, &to, "A subscription waits for approval", &body, Notice::ApprovalRequested.as_str(), &[]).await?;
    }
    Ok(())
}

pub async fn approval_decided(
    conn: &mut PgConnection,
    state: &Billing,
    org: Uuid,
    plan: &str,
    approved: bool,
    note: &str,
    now: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    let note = if note.is_empty() { String::new() } else { format!("\n\nA note from our team: {note}") };
    let (subject, body) = if approved {
        (
            format!("Your {plan} plan is approved"),
            format!("Your {plan} plan is approved and active; its calls work now.{note}\n\n{}\n", state.links.url("/billing")),
        )
    } else {
        (
            format!("Your {plan} plan request was declined"),
            format!("Your request for the {plan} plan was declined; your plan is as it was before.{note}\n\n{}\n", state.links.url("/billing")),
        )
    };
    send(conn, org, Notice::ApprovalDecided, &subject, &body, now).await
}

/// Tells every organization on `before`'s plan (or moving to it at its
/// period's end) what changed: a new price or included credits apply from
/// its next period, new endpoints or a new rate limit at once. Returns how
/// many organizations were told.
pub async fn plan_terms_changed(
    conn: &mut PgConnection,
    before: &super::plans::Plan,
    after: &super::plans::Plan,
    now: OffsetDateTime,
) -> Result<usize, sqlx::Error> {
    let orgs: Vec<(Uuid, OffsetDateTime)> = sqlx::query_as(
        "SELECT org_id, current_period_end FROM subscriptions
          WHERE (plan_id = $1 OR next_plan_id = $1) AND status <> 'expired' ORDER BY org_id",
    )
    .bind(before.id)
    .fetch_all(&mut *conn)
    .await?;
    let terms = |p: &super::plans::Plan| {
        format!("{} a month with {} included credits", format_money(p.price_minor, &p.currency), app::types::group(p.included_credits))
    };
    let access = |p: &super::plans::Plan| format!("the endpoints {} at {} requests a second", p.endpoints.join(", "), p.rate_limit_per_sec);
    let money = before.price_minor != after.price_minor || before.currency.trim() != after.currency.trim() || before.included_credits != after.included_credits;
    let now_part = before.endpoints != after.endpoints || before.rate_limit_per_sec != after.rate_limit_per_sec;
    let mut told = 0;
    for (org, next) in orgs {
        if !once(conn, org, Notice::PlanTermsChanged, Some(&format!("{}:{}", after.id, now.unix_timestamp_nanos())), now).await? {
            continue;
        }
        let mut body = String::new();
        if money {
            body.push_str(&format!(
                "The {} plan changes from your next period, which starts on {} {}, {} (UTC): it will be {} (it is {} now). \
                 Your current period keeps what you paid for. ",
                after.name,
                next.month(),
                next.day(),
                next.year(),
                terms(after),
                terms(before)
            ));
        }
        if now_part {
            body.push_str(&format!("From now on the {} plan includes {} (before: {}). ", after.name, access(after), access(before)));
        }
        body.push_str("To choose another plan, open the plans page of your billing settings.");
        let subject = if money {
            format!("Your {} plan changes at your next period", after.name)
        } else {
            format!("Your {} plan has changed", after.name)
        };
        send(conn, org, Notice::PlanTermsChanged, &subject, &body, now).await?;
        told += 1;
    }
    Ok(told)
}

#[cfg(test)]
mod tests {
    use super::Notice;

    #[test]
    fn every_notice_reads_back() {
        for n in Notice::ALL {
            assert_eq!(Notice::parse(n.as_str()), Some(*n));
        }
    }
}
