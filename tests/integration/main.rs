//! Integration tests: the real router and a fresh PostgreSQL database per
//! test (`#[sqlx::test]`), over HTTP requests a browser would send.

mod account_holes;
mod billing;
mod console;
mod review_holes;
mod docs;
mod accounts;
mod authorization;
mod gateway;
mod gateway_holes;
mod gateway_memory;
mod helpers;
mod jobs;
mod keys;
mod organizations;
mod pages;
mod ports;
mod routes;
mod sessions;
mod stripe;
mod subscription_rules;
mod throttling;
mod usage;
