//! Subscriptions: one current subscription per organization, with a
//! half-open billing period [start, end).

use super::plans::{Plan, COLUMNS};
use sqlx::{PgConnection, PgPool};
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

/// Puts a new organization on the free plan.
pub async fn start_free(
    conn: &mut PgConnection,
    org: Uuid,
    now: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    let (plan, included, name): (Uuid, i64, String) =
        sqlx::query_as("SELECT id, included_credits, name FROM plans WHERE code = 'free'")
            .fetch_one(&mut *conn)
            .await?;
    sqlx::query(
        "INSERT INTO subscriptions (id, org_id, plan_id, status, current_period_start, current_period_end, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $5, $5)",
    )
    .bind(Uuid::now_v7())
    .bind(org)
    .bind(plan)
    .bind(Status::Active)
    .bind(now)
    .bind(add_month(now))
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
}

pub async fn current(db: &PgPool, org: Uuid) -> Result<Option<Current>, sqlx::Error> {
    let row: Option<(Uuid, Status, OffsetDateTime, OffsetDateTime)> = sqlx::query_as(
        "SELECT plan_id, status, current_period_start, current_period_end FROM subscriptions WHERE org_id = $1",
    )
    .bind(org)
    .fetch_optional(db)
    .await?;
    let Some((plan_id, status, period_start, period_end)) = row else {
        return Ok(None);
    };
    let plan: Plan = sqlx::query_as(&format!("SELECT {COLUMNS} FROM plans WHERE id = $1"))
        .bind(plan_id)
        .fetch_one(db)
        .await?;
    Ok(Some(Current {
        plan,
        status,
        period_start,
        period_end,
    }))
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
