//! The database: one PostgreSQL schema, reached through sqlx. Migrations are
//! forward-only and applied at start-up; a failed migration stops the server.

pub mod embedded;

use crate::config::Config;
use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use std::str::FromStr;
use std::time::Duration;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The database URL: `DATABASE_URL`, or the embedded cluster (started if needed).
pub async fn resolve_url(config: &Config) -> anyhow::Result<String> {
    match &config.database_url {
        Some(url) => Ok(url.clone()),
        None => {
            let pg = embedded::EmbeddedPg::new(&config.data_dir, config.embedded_pg_port)?;
            pg.ensure_running().await
        }
    }
}

pub async fn connect(config: &Config) -> anyhow::Result<PgPool> {
    let url = resolve_url(config).await?;
    let options = PgConnectOptions::from_str(&url).context("DATABASE_URL is not a PostgreSQL URL")?;
    let pool = PgPoolOptions::new()
        .max_connections(config.db_pool_size)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .context("could not connect to PostgreSQL")?;
    Ok(pool)
}

pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .context("database migration failed; the server will not start on a partly migrated schema")
}
