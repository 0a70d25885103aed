//! Plans: price, included credits, rate limit, endpoints, approval, and
//! their roles: the plan new sign-ups get (`signup`, exactly one), the trial
//! a plan offers (`trial_days`), whether it is offered (`active`) or archived
//! (offered to nobody, keeping its subscribers). No plan code is written in
//! the code: every role is one of these attributes. Admins edit plans
//! (`/admin/plans`, [`save`]); a new price or credit amount reaches existing
//! subscribers at their next period (each period keeps the terms it was
//! opened on: `subscriptions.period_*`, used by proration and a late
//! renewal payment), a new endpoint list or rate limit applies at once, and
//! subscribers are told by email when the change is saved. The plan row is
//! locked `FOR NO KEY UPDATE`, which sign-ups' foreign-key checks do not
//! wait for.

use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Plan {
    pub id: Uuid,
    pub code: String,
    pub name: String,
    pub price_minor: i64,
    pub currency: String,
    pub included_credits: i64,
    pub rate_limit_per_sec: i32,
    pub requires_approval: bool,
    pub endpoints: Vec<String>,
    pub sort_order: i32,
    pub signup: bool,
    pub trial_days: i32,
    /// Offered to new subscribers.
    pub active: bool,
    pub archived_at: Option<time::OffsetDateTime>,
}

pub const COLUMNS: &str =
    "id, code, name, price_minor, currency::text AS currency, included_credits, rate_limit_per_sec, requires_approval, endpoints, sort_order, signup, trial_days, active, archived_at";

/// The default catalogue (product.md): Free, Pro, Enterprise.
struct Default {
    code: &'static str,
    name: &'static str,
    price_minor: i64,
    included_credits: i64,
    rate_limit_per_sec: i32,
    requires_approval: bool,
    endpoints: &'static [&'static str],
    signup: bool,
    trial_days: i32,
}

const DEFAULTS: [Default; 3] = [
    Default {
        code: "free",
        name: "Free",
        price_minor: 0,
        included_credits: 100,
        rate_limit_per_sec: 5,
        requires_approval: false,
        endpoints: &["ping", "sentiment"],
        signup: true,
        trial_days: 0,
    },
    Default {
        code: "pro",
        name: "Pro",
        price_minor: 2900,
        included_credits: 10_000,
        rate_limit_per_sec: 50,
        requires_approval: false,
        endpoints: &["ping", "sentiment", "summarize"],
        signup: false,
        trial_days: 14,
    },
    Default {
        code: "enterprise",
        name: "Enterprise",
        price_minor: 49_900,
        included_credits: 250_000,
        rate_limit_per_sec: 500,
        requires_approval: true,
        endpoints: &["*"],
        signup: false,
        trial_days: 0,
    },
];

/// Inserts the default catalogue into an installation that has no plans
/// yet. Once there are plans, they are the admins' (renamed, archived or
/// repriced): nothing is added back.
pub async fn ensure_defaults(db: &PgPool) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    // Two instances starting at once: one inserts, the other sees plans.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('tollgate.plans.defaults'))").execute(&mut *tx).await?;
    let any: Option<i32> = sqlx::query_scalar("SELECT 1 FROM plans LIMIT 1").fetch_optional(&mut *tx).await?;
    if any.is_some() {
        return tx.commit().await;
    }
    for (i, d) in DEFAULTS.iter().enumerate() {
        sqlx::query(
            "INSERT INTO plans (id, code, name, price_minor, currency, included_credits, rate_limit_per_sec,
                                requires_approval, endpoints, sort_order, signup, trial_days)
             VALUES ($1, $2, $3, $4, 'USD', $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(Uuid::now_v7())
        .bind(d.code)
        .bind(d.name)
        .bind(d.price_minor)
        .bind(d.included_credits)
        .bind(d.rate_limit_per_sec)
        .bind(d.requires_approval)
        .bind(d.endpoints.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .bind(i as i32)
        .bind(d.signup)
        .bind(d.trial_days)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// The plan new organizations start on.
pub async fn signup_plan(conn: &mut sqlx::PgConnection) -> Result<Plan, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM plans WHERE signup")).fetch_one(conn).await
}

/// Every plan, archived ones last.
pub async fn list_all(db: &PgPool) -> Result<Vec<Plan>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM plans ORDER BY archived_at IS NOT NULL, sort_order, price_minor, code"
    ))
    .fetch_all(db)
    .await
}

pub async fn list_active(db: &PgPool) -> Result<Vec<Plan>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM plans WHERE active ORDER BY sort_order, price_minor"
    ))
    .fetch_all(db)
    .await
}

/// How many subscriptions (not expired) each plan has.
pub async fn subscriber_counts(db: &PgPool) -> Result<Vec<(Uuid, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT plan_id, count(*) FROM subscriptions WHERE status <> 'expired' GROUP BY plan_id").fetch_all(db).await
}

/// A plan as an admin typed it; `id` is `None` for a new plan.
#[derive(Debug, Clone, Default)]
pub struct PlanInput {
    pub id: Option<Uuid>,
    pub code: String,
    pub name: String,
    pub price: String,
    pub currency: String,
    pub included_credits: String,
    pub rate_limit_per_sec: String,
    pub endpoints: Vec<String>,
    pub requires_approval: bool,
    pub trial_days: String,
    pub visible: bool,
    pub signup: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("please correct the highlighted fields")]
    Invalid(Vec<(&'static str, String)>),
    #[error("there is no such plan")]
    NotFound,
    #[error("{0}")]
    State(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// "29", "29.5", "29.00" → 2900 minor units; `None` for anything else.
pub fn parse_price(raw: &str) -> Option<i64> {
    let raw = raw.trim().trim_start_matches('$');
    let (major, minor) = raw.split_once('.').unwrap_or((raw, ""));
    if major.is_empty() || major.len() > 9 || minor.len() > 2 || !major.bytes().all(|b| b.is_ascii_digit()) || !minor.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let minor: i64 = format!("{minor:0<2}").parse().ok()?;
    Some(major.parse::<i64>().ok()? * 100 + minor)
}

/// The endpoints a plan can list: the built-in ones, or `*` for all.
pub fn endpoint_choices() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = crate::catalogue::ENDPOINTS.iter().map(|e| e.id).collect();
    v.push("*");
    v
}

struct Checked {
    code: String,
    name: String,
    price_minor: i64,
    currency: String,
    included_credits: i64,
    rate_limit_per_sec: i32,
    endpoints: Vec<String>,
    trial_days: i32,
}

fn check(input: &PlanInput) -> Result<Checked, PlanError> {
    let mut errors: Vec<(&'static str, String)> = Vec::new();
    let code = input.code.trim().to_string();
    let code_ok = code.len() <= 32
        && code.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && code.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if input.id.is_none() && !code_ok {
        errors.push(("code", "A code is 1 to 32 lowercase letters, digits, - or _, starting with a letter.".into()));
    }
    let name = input.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 60 || crate::accounts::organizations::has_hidden_characters(&name) {
        errors.push(("name", "A name is 1 to 60 visible characters.".into()));
    }
    let price_minor = parse_price(&input.price).unwrap_or_else(|| {
        errors.push(("price", "A price is an amount such as 29 or 29.00.".into()));
        0
    });
    let currency = input.currency.trim().to_ascii_uppercase();
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        errors.push(("currency", "A currency is its three-letter code, such as USD.".into()));
    }
    let included_credits = match input.included_credits.trim().parse::<i64>() {
        Ok(n) if (0..=1_000_000_000_000).contains(&n) => n,
        _ => {
            errors.push(("included_credits", "Included credits are a whole number from 0.".into()));
            0
        }
    };
    let rate_limit_per_sec = match input.rate_limit_per_sec.trim().parse::<i32>() {
        Ok(n) if (1..=100_000).contains(&n) => n,
        _ => {
            errors.push(("rate_limit_per_sec", "A rate limit is 1 to 100,000 requests per second.".into()));
            1
        }
    };
    let trial_days = match input.trial_days.trim() {
        "" => 0,
        t => match t.parse::<i32>() {
            Ok(n) if (0..=90).contains(&n) => n,
            _ => {
                errors.push(("trial_days", "Trial days are 0 (no trial) to 90.".into()));
                0
            }
        },
    };
    let choices = endpoint_choices();
    let mut endpoints: Vec<String> = Vec::new();
    for e in &input.endpoints {
        let e = e.trim();
        if !choices.contains(&e) {
            errors.push(("endpoints", format!("\"{e}\" is not an endpoint.")));
        } else if !endpoints.iter().any(|x| x == e) {
            endpoints.push(e.to_string());
        }
    }
    if input.signup && (price_minor != 0 || input.requires_approval || !input.visible) {
        errors.push(("signup", "The sign-up plan is free, offered and needs no approval.".into()));
    }
    if trial_days > 0 && (price_minor == 0 || input.requires_approval) {
        errors.push(("trial_days", "Only a paid plan without approval offers a trial.".into()));
    }
    if !errors.is_empty() {
        return Err(PlanError::Invalid(errors));
    }
    Ok(Checked { code, name, price_minor, currency, included_credits, rate_limit_per_sec, endpoints, trial_days })
}

fn audit_view(p: &Plan) -> serde_json::Value {
    serde_json::json!({
        "code": p.code, "name": p.name, "price_minor": p.price_minor, "currency": p.currency.trim(),
        "included_credits": p.included_credits, "rate_limit_per_sec": p.rate_limit_per_sec,
        "endpoints": p.endpoints, "requires_approval": p.requires_approval, "trial_days": p.trial_days,
        "visible": p.active, "archived": p.archived_at.is_some(), "signup": p.signup,
    })
}

/// What [`save`] did, for the admin's notice.
#[derive(Debug, Clone)]
pub struct Saved {
    pub plan: Plan,
    /// Organizations told of new terms for their next period.
    pub notified: usize,
}

/// Creates or changes a plan, with the audit entry (before and after) in
/// the same transaction. Making a plan the sign-up plan moves the role from
/// the one that had it; the role cannot be dropped without moving it. A
/// change of price, currency or included credits is told, by email, to the
/// organizations on the plan (or moving to it at their period's end): it
/// applies from their next period.
pub async fn save(db: &PgPool, admin: Uuid, input: PlanInput, now: time::OffsetDateTime) -> Result<Saved, PlanError> {
    let c = check(&input)?;
    let mut tx = db.begin().await?;
    // One plan editor at a time: the sign-up role moves atomically.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('tollgate.plans.edit'))").execute(&mut *tx).await?;
    let before: Option<Plan> = match input.id {
        Some(id) => Some(
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM plans WHERE id = $1 FOR NO KEY UPDATE"))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(PlanError::NotFound)?,
        ),
        None => None,
    };
    if let Some(b) = &before {
        if b.signup && !input.signup {
            return Err(PlanError::Invalid(vec![("signup", "Make another plan the sign-up plan first.".into())]));
        }
        if b.archived_at.is_some() && (input.visible || input.signup) {
            return Err(PlanError::Invalid(vec![("visible", "Restore the archived plan before offering it.".into())]));
        }
    }
    if input.signup {
        sqlx::query("UPDATE plans SET signup = false, updated_at = $1 WHERE signup AND id IS DISTINCT FROM $2")
            .bind(now)
            .bind(input.id)
            .execute(&mut *tx)
            .await?;
    }
    let saved = match &before {
        Some(b) => update(&mut tx, b, &c, &input, now).await,
        None => insert(&mut tx, &c, &input, now).await,
    };
    let plan = match saved {
        Ok(p) => p,
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            return Err(PlanError::Invalid(vec![("code", "Another plan has this code.".into())]));
        }
        Err(e) => return Err(e.into()),
    };
    let action = if before.is_some() { crate::audit::Action::PlanUpdated } else { crate::audit::Action::PlanCreated };
    let entry = crate::audit::Entry::new(Some(admin), None, action, serde_json::json!({"plan": plan.code}))
        .change(before.as_ref().map(audit_view).unwrap_or(serde_json::Value::Null), audit_view(&plan));
    crate::audit::write(&mut tx, now, entry).await?;
    let mut notified = 0;
    if let Some(b) = &before {
        if b.price_minor != plan.price_minor || b.currency.trim() != plan.currency.trim() || b.included_credits != plan.included_credits
            || b.endpoints != plan.endpoints || b.rate_limit_per_sec != plan.rate_limit_per_sec
        {
            notified = super::notices::plan_terms_changed(&mut tx, b, &plan, now).await?;
        }
    }
    tx.commit().await?;
    Ok(Saved { plan, notified })
}

/// The plan's new values, over `b`.
async fn update(tx: &mut sqlx::PgConnection, b: &Plan, c: &Checked, input: &PlanInput, now: time::OffsetDateTime) -> Result<Plan, sqlx::Error> {
    sqlx::query_as(&format!(
        "UPDATE plans SET name = $2, price_minor = $3, currency = $4, included_credits = $5, rate_limit_per_sec = $6,
                endpoints = $7, requires_approval = $8, trial_days = $9, active = $10, signup = $11, updated_at = $12
          WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(b.id)
    .bind(&c.name)
    .bind(c.price_minor)
    .bind(&c.currency)
    .bind(c.included_credits)
    .bind(c.rate_limit_per_sec)
    .bind(&c.endpoints)
    .bind(input.requires_approval)
    .bind(c.trial_days)
    .bind(input.visible)
    .bind(input.signup)
    .bind(now)
    .fetch_one(&mut *tx)
    .await
}

/// A new plan, after the others.
async fn insert(tx: &mut sqlx::PgConnection, c: &Checked, input: &PlanInput, now: time::OffsetDateTime) -> Result<Plan, sqlx::Error> {
    sqlx::query_as(&format!(
        "INSERT INTO plans (id, code, name, price_minor, currency, included_credits, rate_limit_per_sec, endpoints,
                            requires_approval, trial_days, active, signup, sort_order, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,
                 (SELECT coalesce(max(sort_order), 0) + 1 FROM plans), $13, $13)
         RETURNING {COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(&c.code)
    .bind(&c.name)
    .bind(c.price_minor)
    .bind(&c.currency)
    .bind(c.included_credits)
    .bind(c.rate_limit_per_sec)
    .bind(&c.endpoints)
    .bind(input.requires_approval)
    .bind(c.trial_days)
    .bind(input.visible)
    .bind(input.signup)
    .bind(now)
    .fetch_one(&mut *tx)
    .await
}

/// Archives a plan (offered to nobody new; its subscribers keep it and
/// renew on it) or restores it (offered again). The sign-up plan cannot be
/// archived.
pub async fn set_archived(db: &PgPool, admin: Uuid, id: Uuid, archive: bool, now: time::OffsetDateTime) -> Result<Plan, PlanError> {
    let mut tx = db.begin().await?;
    let before: Plan = sqlx::query_as(&format!("SELECT {COLUMNS} FROM plans WHERE id = $1 FOR NO KEY UPDATE"))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(PlanError::NotFound)?;
    if archive && before.signup {
        return Err(PlanError::State("The sign-up plan cannot be archived: make another plan the sign-up plan first.".into()));
    }
    if before.archived_at.is_some() == archive {
        return Ok(before);
    }
    let plan: Plan = sqlx::query_as(&format!(
        "UPDATE plans SET archived_at = $2, active = $3, updated_at = $4 WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(archive.then_some(now))
    .bind(!archive)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    let action = if archive { crate::audit::Action::PlanArchived } else { crate::audit::Action::PlanRestored };
    let entry = crate::audit::Entry::new(Some(admin), None, action, serde_json::json!({"plan": plan.code}))
        .change(audit_view(&before), audit_view(&plan));
    crate::audit::write(&mut tx, now, entry).await?;
    tx.commit().await?;
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_are_exact_minor_units() {
        assert_eq!(parse_price("29"), Some(2900));
        assert_eq!(parse_price("29.5"), Some(2950));
        assert_eq!(parse_price("$29.00"), Some(2900));
        assert_eq!(parse_price("0"), Some(0));
        for bad in ["", "-1", "29.001", "1e3", "29,00", ".5", "abc"] {
            assert_eq!(parse_price(bad), None, "{bad}");
        }
    }
}
