//! Demo data for the run command: the default plans, a platform admin and a
//! demo customer with an organization. Idempotent: existing accounts are kept.

use crate::accounts::{organizations, password, users, Email};
use sqlx::PgPool;
use time::OffsetDateTime;

pub const ADMIN_EMAIL: &str = "admin@tollgate.local";
pub const ADMIN_PASSWORD: &str = "tollgate-admin-demo";
pub const CUSTOMER_EMAIL: &str = "demo@tollgate.local";
pub const CUSTOMER_PASSWORD: &str = "tollgate-demo-customer";

pub async fn seed(db: &PgPool, now: OffsetDateTime) -> anyhow::Result<()> {
    crate::billing::plans::ensure_defaults(db).await?;
    let admin = Email::parse(ADMIN_EMAIL).map_err(anyhow::Error::msg)?;
    if users::by_email(db, &admin).await?.is_none() {
        let hash = password::hash(ADMIN_PASSWORD.into()).await?;
        let mut conn = db.acquire().await?;
        users::insert(&mut conn, &admin, "Platform Admin", &hash, true, now).await?;
    }
    let customer = Email::parse(CUSTOMER_EMAIL).map_err(anyhow::Error::msg)?;
    if users::by_email(db, &customer).await?.is_none() {
        let hash = password::hash(CUSTOMER_PASSWORD.into()).await?;
        let mut tx = db.begin().await?;
        let id = users::insert(&mut tx, &customer, "Dana Demo", &hash, false, now).await?;
        crate::accounts::verify::mark_verified(&mut tx, id, now).await?;
        organizations::create_with_owner(&mut tx, "Demo Co", id, now).await?;
        tx.commit().await?;
    }
    Ok(())
}

pub fn print_credentials(public_url: &str) {
    println!();
    println!("  Tollgate demo is ready at {public_url}");
    println!("    platform admin: {ADMIN_EMAIL} / {ADMIN_PASSWORD}");
    println!("    demo customer:  {CUSTOMER_EMAIL} / {CUSTOMER_PASSWORD}");
    println!();
}
