//! Decisions in memory: each instance keeps the keys it has seen, their
//! organizations' subscription state and the plans, and decides a call the
//! way `gateway_check` does ([`decide`], which a property test holds equal
//! to the SQL over generated states) without a round trip.
//!
//! What invalidates an entry is announced by triggers on `tollgate_gateway`
//! (`org:<id>` for a key, an organization, its subscription, cards or
//! meters; `all` for the plans). The bound: a change takes effect on every
//! instance as soon as its listener has the notification, which PostgreSQL
//! sends at commit (milliseconds; the tests hold it under one second).
//! The cache is used only while the listener is connected (a beat every
//! quiet second proves it; [`DEAF`] without one and it reconnects); it is
//! dropped whole when the listener reconnects (notifications may have been
//! missed),
//! and entries older than [`TTL`] are read again. A load that an
//! invalidation overtakes is not kept (an epoch counts invalidations).
//! Unknown keys are never cached, so random keys cannot grow memory; keys
//! and organizations not used for [`IDLE`] are forgotten.

use super::decision::{Decision, Outcome};
use crate::api_keys::Mode;
use crate::gateway::catalogue::Code;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use tokio::sync::oneshot;
use uuid::Uuid;

pub const CHANNEL: &str = "tollgate_gateway";
/// Entries are read again after this long, notification or not.
pub const TTL: Duration = Duration::from_secs(30);
/// Entries not used for this long are forgotten.
pub const IDLE: Duration = Duration::from_secs(600);
/// A listener that hears nothing for this long, its beats included, is
/// taken for dead: the cache is dropped and the connection made again.
pub const DEAF: Duration = Duration::from_secs(3);

/// A key as a decision needs it.
#[derive(Clone, Debug, sqlx::FromRow, PartialEq)]
pub struct KeyRow {
    pub key_id: Uuid,
    pub org_id: Uuid,
    pub mode: Mode,
    pub scopes: Vec<String>,
    pub expires_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

/// An organization's subscription, its plans, whether it has a card, and
/// its meters as last read (what a free call's headers show).
#[derive(Clone, Debug, sqlx::FromRow, PartialEq, Default)]
pub struct OrgRow {
    pub keys_suspended_at: Option<OffsetDateTime>,
    /// None: no subscription.
    pub status: Option<String>,
    pub current_period_end: Option<OffsetDateTime>,
    pub grace_until: Option<OffsetDateTime>,
    pub trial_end: Option<OffsetDateTime>,
    pub plan_code: Option<String>,
    pub plan_rate: Option<i32>,
    pub plan_endpoints: Option<Vec<String>>,
    pub fb_code: Option<String>,
    pub fb_rate: Option<i32>,
    pub fb_endpoints: Option<Vec<String>>,
    pub has_card: bool,
    pub has_meters: bool,
    pub included: Option<i64>,
    pub included_expires_at: Option<OffsetDateTime>,
    pub purchased: Option<i64>,
    pub sandbox: Option<i64>,
    pub spend_cap: Option<i64>,
    pub period_spent: Option<i64>,
    pub low_balance_at: Option<i64>,
}

#[derive(Clone, Debug, sqlx::FromRow, PartialEq)]
pub struct PlanRow {
    pub code: String,
    pub active: bool,
    pub price_minor: i64,
    pub sort_order: i32,
    pub endpoints: Vec<String>,
}

pub const KEY_SQL: &str = "SELECT id AS key_id, org_id, mode, scopes, expires_at, revoked_at FROM api_keys WHERE token_hash = $1";
pub const ORG_SQL: &str = "
    SELECT o.keys_suspended_at, sub.status, sub.current_period_end, sub.grace_until, sub.trial_end,
           p.code AS plan_code, p.rate_limit_per_sec AS plan_rate, p.endpoints AS plan_endpoints,
           fp.code AS fb_code, fp.rate_limit_per_sec AS fb_rate, fp.endpoints AS fb_endpoints,
           EXISTS (SELECT 1 FROM payment_methods pm WHERE pm.org_id = o.id AND pm.removed_at IS NULL) AS has_card,
           m.org_id IS NOT NULL AS has_meters, m.included, m.included_expires_at, m.purchased, m.sandbox,
           m.spend_cap, m.period_spent, m.low_balance_at
      FROM organizations o
      LEFT JOIN subscriptions sub ON sub.org_id = o.id
      LEFT JOIN plans p ON p.id = sub.plan_id
      LEFT JOIN plans fp ON fp.id = sub.fallback_plan_id
      LEFT JOIN org_meters m ON m.org_id = o.id
     WHERE o.id = $1";
/// In the order `gateway_check` suggests a plan.
pub const PLANS_SQL: &str =
    "SELECT code, active, price_minor, sort_order, endpoints FROM plans ORDER BY price_minor, sort_order, code COLLATE \"C\"";

fn includes(endpoints: &[String], endpoint: &str) -> bool {
    endpoints.iter().any(|e| e == "*" || e == endpoint)
}

fn route_includes(route_plans: &[String], code: &str) -> bool {
    route_plans.is_empty() || route_plans.iter().any(|p| p == code)
}

/// The decision `gateway_check` makes, from the same rows: `key` is the
/// key's row (None: no such key), `org` its organization's, `plans` every
/// plan in [`PLANS_SQL`]'s order.
pub fn decide(
    key: Option<&KeyRow>,
    org: &OrgRow,
    plans: &[PlanRow],
    endpoint: &str,
    scope: &str,
    route_plans: Option<&[String]>,
    now: OffsetDateTime,
) -> Decision {
    let mut d = Decision {
        outcome: Outcome::Refused(Code::InvalidApiKey),
        key_id: None,
        org_id: None,
        mode: None,
        plan_code: None,
        rate_per_sec: None,
        rate_remaining: None,
        retry_after_ms: None,
        balance: None,
        charged: Some(0),
        suggested_plan: None,
        in_grace_until: None,
        spend_cap: None,
        period_spent: None,
        low_balance_at: None,
        lease: None,
    };
    let Some(k) = key else { return d };
    d.key_id = Some(k.key_id);
    d.org_id = Some(k.org_id);
    d.mode = Some(k.mode);
    let refuse = |mut d: Decision, code: Code| {
        d.outcome = Outcome::Refused(code);
        d
    };
    if k.revoked_at.is_some_and(|t| t <= now) {
        return refuse(d, Code::ApiKeyRevoked);
    }
    if k.expires_at.is_some_and(|t| t <= now) {
        return refuse(d, Code::ApiKeyExpired);
    }
    if org.keys_suspended_at.is_some_and(|t| t <= now) {
        return refuse(d, Code::ApiKeySuspended);
    }
    if !k.scopes.iter().any(|s| s == "*" || s == scope) {
        return refuse(d, Code::ScopeForbidden);
    }
    let (Some(status), Some(code)) = (org.status.as_deref(), org.plan_code.as_deref()) else {
        return refuse(d, Code::SubscriptionExpired);
    };
    d.plan_code = Some(code.to_string());
    d.rate_per_sec = org.plan_rate;
    let empty = Vec::new();
    let (mut included_ok, fallback_ok) = match route_plans {
        Some(rp) => (
            route_includes(rp, code),
            org.fb_code.as_deref().is_some_and(|fb| route_includes(rp, fb)),
        ),
        None => (
            includes(org.plan_endpoints.as_ref().unwrap_or(&empty), endpoint),
            org.fb_code.is_some() && includes(org.fb_endpoints.as_ref().unwrap_or(&empty), endpoint),
        ),
    };
    if status == "pending_approval" {
        if fallback_ok {
            d.plan_code = org.fb_code.clone();
            d.rate_per_sec = org.fb_rate;
        } else if included_ok || org.fb_code.is_none() {
            return refuse(d, Code::SubscriptionPendingApproval);
        }
        included_ok = fallback_ok;
    }
    if k.mode == Mode::Live {
        match status {
            "unpaid" => return refuse(d, Code::SubscriptionPastDue),
            "past_due" => match org.grace_until {
                Some(g) if g > now => d.in_grace_until = Some(g),
                _ => return refuse(d, Code::SubscriptionPastDue),
            },
            "expired" => return refuse(d, Code::SubscriptionExpired),
            "canceled" if org.current_period_end.is_some_and(|end| now >= end) => {
                return refuse(d, Code::SubscriptionExpired)
            }
            "trialing"
                if org.trial_end.or(org.current_period_end).is_some_and(|end| now >= end) && !org.has_card =>
            {
                return refuse(d, Code::PaymentMethodRequired)
            }
            _ => {}
        }
    }
    if !included_ok {
        d.suggested_plan = plans
            .iter()
            .filter(|p| p.active)
            .find(|p| match route_plans {
                Some(rp) => route_includes(rp, &p.code),
                None => includes(&p.endpoints, endpoint),
            })
            .map(|p| p.code.clone());
        return refuse(d, Code::PlanUpgradeRequired);
    }
    if org.has_meters {
        d.balance = Some(match k.mode {
            Mode::Live => {
                let lapsed = org.included_expires_at.is_some_and(|t| t <= now);
                (if lapsed { 0 } else { org.included.unwrap_or(0) }) + org.purchased.unwrap_or(0)
            }
            Mode::Test => org.sandbox.unwrap_or(0),
        });
        d.spend_cap = org.spend_cap;
        d.period_spent = org.period_spent;
        d.low_balance_at = org.low_balance_at;
    }
    d.outcome = Outcome::Ok;
    d
}

struct Entry<T> {
    value: Arc<T>,
    loaded: Instant,
    used: AtomicU64,
}

impl<T> Entry<T> {
    fn new(value: T, epoch_start: Instant) -> Self {
        let loaded = Instant::now();
        Entry { value: Arc::new(value), loaded, used: AtomicU64::new(loaded.duration_since(epoch_start).as_secs()) }
    }
}

#[derive(Default)]
struct Maps {
    keys: HashMap<Vec<u8>, Entry<KeyRow>>,
    orgs: HashMap<Uuid, Entry<OrgRow>>,
    plans: Option<(Arc<Vec<PlanRow>>, Instant)>,
}

struct Inner {
    /// The listener is connected: entries can be trusted.
    live: AtomicBool,
    /// Counts invalidations; a load started before one is not kept.
    epoch: AtomicU64,
    maps: RwLock<Maps>,
    started: Instant,
    syncs: Mutex<HashMap<String, oneshot::Sender<()>>>,
    /// Told about every organization whose entry was invalidated.
    watchers: Mutex<Vec<tokio::sync::mpsc::UnboundedSender<Option<Uuid>>>>,
}

/// This instance's decisions in memory; cheap to clone.
#[derive(Clone)]
pub struct DecisionCache(Arc<Inner>);

impl Default for DecisionCache {
    fn default() -> Self {
        DecisionCache(Arc::new(Inner {
            live: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            maps: RwLock::new(Maps::default()),
            started: Instant::now(),
            syncs: Mutex::new(HashMap::new()),
            watchers: Mutex::new(Vec::new()),
        }))
    }
}

/// How a decision was had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Memory,
    Loaded,
    Database,
}

impl DecisionCache {
    /// Starts the listener on `db`'s database; the cache is used once it
    /// is connected.
    pub fn start(db: &PgPool) -> Self {
        let cache = DecisionCache::default();
        tokio::spawn(listen(db.clone(), cache.clone()));
        cache
    }

    pub fn is_live(&self) -> bool {
        self.0.live.load(Ordering::Acquire)
    }

    /// Sends `Some(org)` for each organization invalidated, `None` when
    /// everything was (the leases follow cap changes this way).
    pub fn watch(&self) -> tokio::sync::mpsc::UnboundedReceiver<Option<Uuid>> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.0.watchers.lock().unwrap_or_else(|e| e.into_inner()).push(tx);
        rx
    }

    fn tell(&self, org: Option<Uuid>) {
        self.0
            .watchers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|w| w.send(org).is_ok());
    }

    /// How many keys and organizations are held.
    pub fn size(&self) -> (usize, usize) {
        let m = self.0.maps.read().unwrap_or_else(|e| e.into_inner());
        (m.keys.len(), m.orgs.len())
    }

    fn invalidate(&self, org: Option<Uuid>) {
        self.0.epoch.fetch_add(1, Ordering::AcqRel);
        {
            let mut m = self.0.maps.write().unwrap_or_else(|e| e.into_inner());
            match org {
                Some(org) => {
                    m.orgs.remove(&org);
                    m.keys.retain(|_, k| k.value.org_id != org);
                }
                None => *m = Maps::default(),
            }
        }
        crate::metrics::get().cache("invalidated");
        self.tell(org);
    }

    /// Forgets what has not been used for [`IDLE`].
    pub fn prune(&self) {
        let now = self.0.started.elapsed().as_secs();
        let idle = IDLE.as_secs();
        let mut m = self.0.maps.write().unwrap_or_else(|e| e.into_inner());
        m.keys.retain(|_, e| now.saturating_sub(e.used.load(Ordering::Relaxed)) < idle);
        m.orgs.retain(|_, e| now.saturating_sub(e.used.load(Ordering::Relaxed)) < idle);
    }

    /// Waits until every notification committed before this call has been
    /// applied (a round trip through the channel; for tests, which change
    /// the database and call at once).
    pub async fn sync(&self, db: &PgPool) -> bool {
        if !self.is_live() {
            return true;
        }
        let token = Uuid::new_v4().simple().to_string();
        let (tx, rx) = oneshot::channel();
        self.0.syncs.lock().unwrap_or_else(|e| e.into_inner()).insert(token.clone(), tx);
        if sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(format!("sync:{token}"))
            .execute(db)
            .await
            .is_err()
        {
            return false;
        }
        tokio::time::timeout(Duration::from_secs(5), rx).await.is_ok()
    }

    /// The decision for a call with key hash `hash`: from memory when the
    /// rows are there and fresh, else read (and kept, a known key only),
    /// or `gateway_check` itself while the listener is not connected.
    pub async fn decide(
        &self,
        db: &PgPool,
        hash: &[u8],
        endpoint: &str,
        scope: &str,
        route_plans: Option<&[String]>,
        now: OffsetDateTime,
    ) -> Result<(Decision, Source), sqlx::Error> {
        if !self.is_live() {
            let d = sqlx::query_as("SELECT * FROM gateway_check($1, $2, $3, $4, $5)")
                .bind(hash)
                .bind(endpoint)
                .bind(scope)
                .bind(now)
                .bind(route_plans)
                .fetch_one(db)
                .await?;
            return Ok((d, Source::Database));
        }
        let tick = self.0.started.elapsed().as_secs();
        let found = {
            let m = self.0.maps.read().unwrap_or_else(|e| e.into_inner());
            let key = m.keys.get(hash).filter(|e| e.loaded.elapsed() < TTL);
            let org = key.and_then(|k| m.orgs.get(&k.value.org_id)).filter(|e| e.loaded.elapsed() < TTL);
            let plans = m.plans.as_ref().filter(|(_, at)| at.elapsed() < TTL);
            match (key, org, plans) {
                (Some(k), Some(o), Some((p, _))) => {
                    k.used.store(tick, Ordering::Relaxed);
                    o.used.store(tick, Ordering::Relaxed);
                    Some((k.value.clone(), o.value.clone(), p.clone()))
                }
                _ => None,
            }
        };
        if let Some((k, o, p)) = found {
            crate::metrics::get().cache("hit");
            return Ok((decide(Some(&k), &o, &p, endpoint, scope, route_plans, now), Source::Memory));
        }
        crate::metrics::get().cache("miss");
        let epoch = self.0.epoch.load(Ordering::Acquire);
        let Some(key) = sqlx::query_as::<_, KeyRow>(KEY_SQL).bind(hash).fetch_optional(db).await? else {
            // Never cached: random keys cannot grow memory.
            return Ok((decide(None, &OrgRow::default(), &[], endpoint, scope, route_plans, now), Source::Loaded));
        };
        let org: OrgRow = sqlx::query_as(ORG_SQL).bind(key.org_id).fetch_optional(db).await?.unwrap_or_default();
        let plans: Arc<Vec<PlanRow>> = Arc::new(sqlx::query_as(PLANS_SQL).fetch_all(db).await?);
        let d = decide(Some(&key), &org, &plans, endpoint, scope, route_plans, now);
        {
            let mut m = self.0.maps.write().unwrap_or_else(|e| e.into_inner());
            // Kept only if nothing was invalidated meanwhile.
            if self.0.epoch.load(Ordering::Acquire) == epoch && self.is_live() {
                let start = self.0.started;
                m.orgs.insert(key.org_id, Entry::new(org, start));
                m.keys.insert(hash.to_vec(), Entry::new(key, start));
                m.plans = Some((plans, Instant::now()));
            }
        }
        Ok((d, Source::Loaded))
    }

    fn apply(&self, payload: &str) {
        if payload == "beat" {
            return;
        }
        if let Some(token) = payload.strip_prefix("sync:") {
            if let Some(w) = self.0.syncs.lock().unwrap_or_else(|e| e.into_inner()).remove(token) {
                let _ = w.send(());
            }
        } else if let Some(org) = payload.strip_prefix("org:").and_then(|s| Uuid::parse_str(s).ok()) {
            self.invalidate(Some(org));
        } else {
            self.invalidate(None);
        }
    }

    fn set_live(&self, live: bool) {
        // Whatever was cached may have missed notifications: dropped whole.
        self.0.live.store(false, Ordering::Release);
        self.invalidate(None);
        self.0.live.store(live, Ordering::Release);
    }
}

/// Follows `tollgate_gateway` until the pool closes, reconnecting (and
/// dropping the cache) when the connection is lost.
async fn listen(db: PgPool, cache: DecisionCache) {
    let mut idle_since = Instant::now();
    while !db.is_closed() {
        let mut listener = match PgListener::connect_with(&db).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for gateway changes; deciding in the database");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %e, "cannot listen for gateway changes; deciding in the database");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        cache.set_live(true);
        let mut heard = Instant::now();
        loop {
            // `try_recv` reports a lost connection (`None`) instead of
            // reconnecting quietly. A connection that dies silently is
            // found by the beat: after a quiet second, a notification sent
            // through the database must come back within [`DEAF`].
            match tokio::time::timeout(Duration::from_secs(1), listener.try_recv()).await {
                Ok(Ok(Some(n))) => {
                    heard = Instant::now();
                    cache.apply(n.payload());
                }
                Ok(Ok(None)) | Ok(Err(_)) => break,
                Err(_) => {
                    if heard.elapsed() > DEAF {
                        tracing::warn!("the gateway's change listener hears nothing; reconnecting");
                        break;
                    }
                    let db = db.clone();
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(
                            Duration::from_secs(1),
                            sqlx::query("SELECT pg_notify($1, 'beat')").bind(CHANNEL).execute(&db),
                        )
                        .await;
                    });
                }
            }
            if idle_since.elapsed() > Duration::from_secs(60) {
                cache.prune();
                idle_since = Instant::now();
            }
        }
        cache.set_live(false);
        if !db.is_closed() {
            tracing::warn!("lost the gateway's change listener; reconnecting");
        }
    }
}
