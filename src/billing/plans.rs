//! Plans: price, included credits, rate limit, endpoints, approval.

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
}

pub const COLUMNS: &str =
    "id, code, name, price_minor, currency, included_credits, rate_limit_per_sec, requires_approval, endpoints, sort_order";

/// The default catalogue (product.md): Free, Pro, Enterprise.
struct Default {
    code: &'static str,
    name: &'static str,
    price_minor: i64,
    included_credits: i64,
    rate_limit_per_sec: i32,
    requires_approval: bool,
    endpoints: &'static [&'static str],
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
    },
    Default {
        code: "pro",
        name: "Pro",
        price_minor: 2900,
        included_credits: 10_000,
        rate_limit_per_sec: 50,
        requires_approval: false,
        endpoints: &["ping", "sentiment", "summarize"],
    },
    Default {
        code: "enterprise",
        name: "Enterprise",
        price_minor: 49_900,
        included_credits: 250_000,
        rate_limit_per_sec: 500,
        requires_approval: true,
        endpoints: &["*"],
    },
];

/// Inserts the default plans that do not exist yet. Plans an admin edited
/// are left as they are.
pub async fn ensure_defaults(db: &PgPool) -> Result<(), sqlx::Error> {
    for (i, d) in DEFAULTS.iter().enumerate() {
        sqlx::query(
            "INSERT INTO plans (id, code, name, price_minor, currency, included_credits, rate_limit_per_sec,
                                requires_approval, endpoints, sort_order)
             VALUES ($1, $2, $3, $4, 'USD', $5, $6, $7, $8, $9)
             ON CONFLICT (code) DO NOTHING",
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
        .execute(db)
        .await?;
    }
    Ok(())
}

pub async fn list_active(db: &PgPool) -> Result<Vec<Plan>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM plans WHERE active ORDER BY sort_order, price_minor"
    ))
    .fetch_all(db)
    .await
}
