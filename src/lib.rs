//! Tollgate: a self-hostable developer portal with billing self-service, and
//! the metered API gateway behind it.
//!
//! This crate is the server and the domain. The UI lives in the `app` crate
//! and reaches this one only through the ports in `app::backend` (one per
//! area), which [`portal`] implements.

pub mod admin; // the operator's console: organizations, suspension, audit queries, 402 recovery
pub mod accounts; // users, passwords, sessions, sign-in throttling, organizations
pub mod api_keys; // key format, hashing, create/list/revoke/rotate
pub mod audit; // the append-only audit log
pub mod billing; // plans and subscriptions
pub mod catalogue; // the problem codes and built-in endpoints, shared by the gateway, billing and the docs
pub mod cli; // command-line subcommands
pub mod clock; // the injectable clock
pub mod config; // configuration from environment variables
pub mod crypto; // random tokens, hashing, constant-time comparison
pub mod db; // pool, migrations, the embedded PostgreSQL
pub mod demo; // demo data for the run command
pub mod docs; // markdown documentation from content/
pub mod email; // the outbox and the SMTP sender
pub mod gateway; // the metered /v1 pipeline, problem bodies, usage events
pub mod http; // request ids, the anti-forgery guard, health endpoints
pub mod jobs; // background jobs, one module each, instance-safe
pub mod metrics; // Prometheus text at /metrics: decisions, latencies, jobs, pools
pub mod portal; // the UI's ports, one file per area
pub mod sample_api; // the built-in upstream and the OpenAPI document
pub mod shutdown; // the shutdown signal every background loop watches
pub mod startup; // router assembly and serving
pub mod state; // shared application state
pub mod telemetry; // tracing set-up
pub mod usage; // usage rollups, partitions, the request log, the forecast
