//! The state every handler and the portal backend share.

use crate::clock::Clock;
use crate::config::Config;
use axum::extract::FromRef;
use leptos::config::LeptosOptions;
use sqlx::PgPool;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    /// The gateway's pool: commits without waiting for the disk; calls that
    /// move credits wait on `durable` instead (see `gateway::durable`).
    pub gateway_db: PgPool,
    pub durable: crate::gateway::durable::Durability,
    /// Rate-limit tokens this instance has claimed (see `gateway::rate`).
    pub rate: crate::gateway::rate::RateLeases,
    /// Where the gateway sends usage events (written in batches).
    pub usage: crate::gateway::usage::UsageSink,
    /// The active provider routes, kept current by `gateway::routes::follow`.
    pub routes: crate::gateway::routes::RouteTable,
    pub upstreams: crate::gateway::proxy::Upstreams,
    pub config: Arc<Config>,
    pub clock: Clock,
    pub leptos_options: LeptosOptions,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}

impl AppState {
    /// Must be called inside a Tokio runtime: it starts the usage writer.
    pub fn new(db: PgPool, config: Config, clock: Clock) -> Self {
        let leptos_options = LeptosOptions::builder()
            .output_name("tollgate")
            .site_root(config.site_root.clone())
            .site_addr(config.listen_addr)
            .env(match std::env::var("LEPTOS_ENV").as_deref() {
                Ok("DEV") => leptos::config::Env::DEV,
                _ => leptos::config::Env::PROD,
            })
            .build();
        Self {
            usage: crate::gateway::usage::UsageSink::start(db.clone()),
            gateway_db: crate::gateway::durable::async_commit_pool(&db),
            durable: crate::gateway::durable::Durability::start(&db),
            rate: Default::default(),
            routes: Default::default(),
            upstreams: Default::default(),
            db,
            config: Arc::new(config),
            clock,
            leptos_options,
        }
    }
}
