//! The command line: `serve` (the default), `migrate`, `create-admin`,
//! `seed-demo`, and `db` for the embedded PostgreSQL.

use crate::accounts::{password, users, Email, NewPassword};
use crate::clock::Clock;
use crate::config::Config;
use crate::state::AppState;
use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use std::io::BufRead;

#[derive(Parser, Debug)]
#[command(
    name = "tollgate",
    version,
    about = "Developer portal and metered API gateway"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the portal (the default). Applies migrations first.
    Serve {
        /// Seed demo data (plans, a platform admin, a demo customer) and print the credentials.
        #[arg(long)]
        demo: bool,
    },
    /// Apply pending migrations and exit.
    Migrate,
    /// Check the credit ledger: every transaction balances and every
    /// organization's balances equal the sums of its ledger accounts. Exits
    /// non-zero when they do not.
    CheckLedger,
    /// Rebuild the usage event of every charged call that has none and
    /// correct what differs from the ledger, now (the usage job does it
    /// every few minutes for calls older than five).
    RecoverUsage,
    /// Compare Tollgate's charges and refunds of a period with the payment
    /// processor's, and list every difference. Exits non-zero when there is
    /// one (for a scheduled check).
    Reconcile {
        /// The period's start: a date (2026-11-01, midnight UTC) or an RFC 3339 time.
        #[arg(long)]
        since: String,
        /// The period's end (now when left out).
        #[arg(long)]
        until: Option<String>,
    },
    /// Create a platform admin, or make an existing user one. The password is read
    /// from TOLLGATE_ADMIN_PASSWORD, or else from the first line of standard input.
    CreateAdmin {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "Platform Admin")]
        name: String,
    },
    /// Seed demo data and exit.
    SeedDemo,
    /// Create an API key for the organization a user owns, and print it once.
    CreateApiKey {
        /// The email of a member with the developer role or above.
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "cli")]
        name: String,
        /// live or test
        #[arg(long, default_value = "test")]
        mode: String,
    },
    /// Add (or, negative, remove) purchased credits of a user's organization,
    /// through the ledger, with a reason for the audit log.
    AdjustCredits {
        #[arg(long)]
        email: String,
        #[arg(long, allow_hyphen_values = true)]
        amount: i64,
        #[arg(long)]
        reason: String,
    },
    /// Add a provider route: calls under PREFIX go to UPSTREAM (running
    /// instances pick it up at once). Also at /admin/routes.
    AddRoute {
        /// A path under /v1, such as /v1/chat.
        #[arg(long)]
        prefix: String,
        #[arg(long)]
        upstream: String,
        /// The endpoint's name in usage records.
        #[arg(long)]
        endpoint: String,
        /// The scope keys need (keys holding * have every scope).
        #[arg(long)]
        scope: String,
        /// fixed or metered
        #[arg(long, default_value = "fixed")]
        pricing: String,
        /// Credits per call; the most a call may cost when metered.
        #[arg(long)]
        price: i64,
        /// Metered: credits per 1,000 tokens of usage.total_tokens.
        #[arg(long, default_value_t = 0)]
        rate_per_1k: i64,
        /// Plans that include the route (repeat); none: every plan.
        #[arg(long = "plan")]
        plans: Vec<String>,
        #[arg(long, default_value_t = crate::gateway::routes::DEFAULT_TIMEOUT_MS)]
        timeout_ms: i32,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// The usage benchmark on DATABASE_URL (a database of its own: it loads
    /// millions of events). See end2end/bench/usage.sh.
    BenchUsage {
        #[arg(long, default_value_t = 10_000_000)]
        events: i64,
    },
    /// For the gateway benchmark (end2end/bench/run.sh): organizations with
    /// live keys and purchased credits; prints the keys, one per line.
    BenchKeys {
        #[arg(long, default_value_t = 100)]
        orgs: usize,
        #[arg(long, default_value_t = 10)]
        keys_per_org: usize,
        #[arg(long, default_value_t = 100_000_000)]
        credits: i64,
    },
    /// The embedded PostgreSQL (used when DATABASE_URL is unset).
    Db {
        #[command(subcommand)]
        action: DbAction,
    },
}

#[derive(Subcommand, Debug)]
pub enum DbAction {
    /// Initialise and start it if needed, then print its database URL.
    Url,
    /// Print the URL of its maintenance database (tests create databases there).
    AdminUrl,
    /// Stop it.
    Stop,
    /// Stop it in immediate mode, as a crash would (no checkpoint; it
    /// recovers from its write-ahead log when started again). For the
    /// gateway's fault tests (`end2end/bench/faults.sh`).
    Crash,
    /// Drop and re-create database NAME on the server of DATABASE_URL (else the
    /// embedded one), then print its URL. Used for the browser tests.
    Fresh { name: String },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::from_env()?;
    match cli.command.unwrap_or(Command::Serve { demo: false }) {
        Command::Serve { demo } => {
            let db = crate::db::connect(&config).await?;
            crate::db::migrate(&db).await?;
            crate::billing::plans::ensure_defaults(&db).await?;
            let clock = config.clock();
            if let Some(by) = config.clock_offset {
                tracing::warn!(
                    offset = %by,
                    now = %clock.now(),
                    "TOLLGATE_CLOCK_OFFSET IS SET: THIS SERVER'S CLOCK RUNS {by} AHEAD OF REAL TIME. \
                     RENEWALS, GRACE PERIODS AND TRIALS FOLLOW IT. FOR DEMOS AND TESTS ONLY."
                );
            }
            if demo {
                crate::demo::seed(&db, clock.now()).await?;
                crate::demo::seed_usage(&db, &config, clock.now()).await?;
                crate::demo::print_credentials(config.public_url.as_str());
            }
            crate::startup::serve(AppState::start(db, config, clock)).await
        }
        Command::BenchUsage { events } => {
            let db = crate::db::connect(&config).await?;
            crate::db::migrate(&db).await?;
            crate::usage::bench::run(&db, events).await
        }
        Command::Migrate => {
            let db = crate::db::connect(&config).await?;
            crate::db::migrate(&db).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::RecoverUsage => {
            let db = crate::db::connect(&config).await?;
            let n = crate::gateway::usage::recover(&db, crate::clock::Clock::System.now(), time::Duration::ZERO).await?;
            println!("usage events written or corrected: {n}");
            Ok(())
        }
        Command::CheckLedger => {
            let db = crate::db::connect(&config).await?;
            let audit = crate::billing::ledger::audit(&db).await?;
            println!(
                "ledger: {} organizations, {} unbalanced transactions, {} organizations whose balances differ from their ledger accounts, \
                 {} whose escrow differs from their open leases, {} journal batches whose revenue differs from their usage events",
                audit.organizations, audit.unbalanced, audit.drifting, audit.escrow_drifting, audit.batches_unmatched
            );
            anyhow::ensure!(audit.is_sound(), "the ledger and the balances disagree");
            Ok(())
        }
        Command::BenchKeys { orgs, keys_per_org, credits } => {
            let db = crate::db::connect(&config).await?;
            crate::db::migrate(&db).await?;
            for key in crate::demo::seed_bench_keys(&db, orgs, keys_per_org, credits, Clock::System.now()).await? {
                println!("{key}");
            }
            Ok(())
        }
        Command::Reconcile { since, until } => {
            use crate::billing::reconcile;
            let from = reconcile::parse_time(&since).with_context(|| format!("--since {since:?} is neither a date (2026-11-01) nor an RFC 3339 time"))?;
            let now = config.clock().now();
            let to = match &until {
                Some(u) => reconcile::parse_time(u).with_context(|| format!("--until {u:?} is neither a date nor an RFC 3339 time"))?,
                None => now,
            };
            let db = crate::db::connect(&config).await?;
            crate::db::migrate(&db).await?;
            let state = AppState::start(db, config, Clock::System);
            let report = reconcile::compare(&state.billing, from, to, now).await?;
            println!(
                "{}: {} charges here, {} payments at the processor, {} to {}",
                report.processor, report.charges, report.payments, report.from, report.to
            );
            for d in &report.differences {
                println!(
                    "{}\tinvoice {}\tcharge {}\tpayment {}\there: {}\tprocessor: {}",
                    d.kind.label(),
                    d.invoice.as_deref().unwrap_or("-"),
                    d.charge.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
                    d.reference.as_deref().unwrap_or("-"),
                    d.ours,
                    d.theirs
                );
            }
            println!("{} differences", report.differences.len());
            anyhow::ensure!(report.differences.is_empty(), "Tollgate and the processor disagree");
            Ok(())
        }
        Command::CreateAdmin { email, name } => {
            let db = crate::db::connect(&config).await?;
            crate::db::migrate(&db).await?;
            create_admin(&db, &email, &name).await
        }
        Command::CreateApiKey { email, name, mode } => {
            let db = crate::db::connect(&config).await?;
            crate::db::migrate(&db).await?;
            let (org, user, _) = membership_of(&db, &email).await?;
            let input = crate::api_keys::store::NewKey {
                name,
                mode,
                scopes: vec!["*".into()],
                expires_in_days: None,
            };
            let (_, secret) =
                crate::api_keys::store::create(&db, org, user, input, Clock::System.now())
                    .await
                    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            println!("{}", secret.expose());
            Ok(())
        }
        Command::AddRoute {
            prefix,
            upstream,
            endpoint,
            scope,
            pricing,
            price,
            rate_per_1k,
            plans,
            timeout_ms,
            description,
        } => {
            let db = crate::db::connect(&config).await?;
            crate::db::migrate(&db).await?;
            let input = crate::gateway::routes::NewRoute {
                path_prefix: prefix,
                upstream_url: upstream,
                endpoint,
                scope,
                pricing,
                price: price.to_string(),
                rate_per_1k: rate_per_1k.to_string(),
                plans,
                timeout_ms: timeout_ms.to_string(),
                description,
                ..Default::default()
            };
            match crate::gateway::routes::create(&db, None, input, Clock::System.now()).await {
                Ok(route) => {
                    println!(
                        "{} → {} ({})",
                        route.path_prefix,
                        route.upstream_url,
                        route.price_label()
                    );
                    Ok(())
                }
                Err(crate::gateway::routes::RouteError::Invalid(errors)) => {
                    for (field, message) in errors {
                        eprintln!("{field}: {message}");
                    }
                    anyhow::bail!("the route was not added")
                }
                Err(e) => Err(e.into()),
            }
        }
        Command::AdjustCredits {
            email,
            amount,
            reason,
        } => {
            let db = crate::db::connect(&config).await?;
            crate::db::migrate(&db).await?;
            let (org, user, _) = membership_of(&db, &email).await?;
            let key = uuid::Uuid::now_v7().to_string();
            let purchased = crate::billing::ledger::Account::Purchased;
            crate::billing::ledger::adjust(&db, org, Some(user), purchased, amount, &reason, &key, Clock::System.now())
                .await
                .context("the adjustment was refused")?;
            println!(
                "{}",
                crate::billing::ledger::balances(&db, org).await?.live()
            );
            Ok(())
        }
        Command::SeedDemo => {
            let db = crate::db::connect(&config).await?;
            crate::db::migrate(&db).await?;
            crate::demo::seed(&db, Clock::System.now()).await?;
            crate::demo::seed_usage(&db, &config, Clock::System.now()).await?;
            crate::demo::print_credentials(config.public_url.as_str());
            Ok(())
        }
        Command::Db { action } => {
            let pg =
                crate::db::embedded::EmbeddedPg::new(&config.data_dir, config.embedded_pg_port)?;
            match action {
                DbAction::Url => println!("{}", pg.ensure_running().await?),
                DbAction::AdminUrl => {
                    pg.ensure_running().await?;
                    println!("{}", pg.admin_url());
                }
                DbAction::Stop => pg.stop()?,
                DbAction::Crash => pg.crash()?,
                DbAction::Fresh { name } => {
                    let base = match &config.database_url {
                        Some(url) => url.clone(),
                        None => {
                            pg.ensure_running().await?;
                            pg.admin_url()
                        }
                    };
                    println!("{}", crate::db::recreate(&base, &name).await?);
                }
            }
            Ok(())
        }
    }
}

pub async fn create_admin(db: &sqlx::PgPool, email: &str, name: &str) -> anyhow::Result<()> {
    let email = Email::parse(email).map_err(anyhow::Error::msg)?;
    let now = Clock::System.now();
    if let Some(user) = users::by_email(db, &email).await? {
        let mut tx = db.begin().await?;
        sqlx::query("UPDATE users SET is_platform_admin = true, updated_at = $2 WHERE id = $1")
            .bind(user.id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let details = serde_json::json!({"user_id": user.id});
        crate::audit::record(&mut tx, now, None, None, crate::audit::Action::AdminGranted, details).await?;
        tx.commit().await?;
        println!("{email} is now a platform admin (password unchanged)");
        return Ok(());
    }
    let raw = match std::env::var("TOLLGATE_ADMIN_PASSWORD") {
        Ok(p) => p,
        Err(_) => {
            eprintln!("Password for {email} (one line on standard input):");
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the password")?;
            line.trim_end_matches(['\r', '\n']).to_string()
        }
    };
    let password = match NewPassword::parse(raw) {
        Ok(p) => p,
        Err(e) => bail!("password rejected: {e}"),
    };
    let hash = password::hash(password.expose().to_string()).await?;
    let mut tx = db.begin().await?;
    let id = users::insert(&mut tx, &email, name, &hash, true, now).await?;
    crate::audit::record(
        &mut tx,
        now,
        None,
        None,
        crate::audit::Action::AdminCreated,
        serde_json::json!({"user_id": id}),
    )
    .await?;
    tx.commit().await?;
    println!("created platform admin {email}");
    Ok(())
}

async fn membership_of(
    db: &sqlx::PgPool,
    email: &str,
) -> anyhow::Result<(uuid::Uuid, uuid::Uuid, crate::accounts::Role)> {
    let row: Option<(uuid::Uuid, uuid::Uuid, crate::accounts::Role)> = sqlx::query_as(
        "SELECT m.org_id, u.id, m.role FROM users u JOIN memberships m ON m.user_id = u.id
         WHERE lower(u.email) = lower($1) ORDER BY m.created_at LIMIT 1",
    )
    .bind(email)
    .fetch_optional(db)
    .await?;
    let Some((org, user, role)) = row else {
        bail!("{email} is not a member of any organization");
    };
    Ok((org, user, role))
}
