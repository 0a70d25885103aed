//! The database: one PostgreSQL schema, reached through sqlx. Migrations are
//! forward-only and applied at start-up; a failed migration stops the server.

pub mod embedded;
pub mod text_enum;

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
    let options =
        PgConnectOptions::from_str(&url).context("DATABASE_URL is not a PostgreSQL URL")?;
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

/// Drops database `name` if it exists and creates it empty, on the server of
/// `base_url`; returns the new database's URL.
pub async fn recreate(base_url: &str, name: &str) -> anyhow::Result<String> {
    use sqlx::Connection;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        anyhow::bail!("a database name is lowercase letters, digits and '_'");
    }
    let mut url = url::Url::parse(base_url).context("not a database URL")?;
    let mut conn = sqlx::PgConnection::connect(base_url).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await?;
    url.set_path(&format!("/{name}"));
    Ok(url.to_string())
}
