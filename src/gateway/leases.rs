//! Credit leases: an instance takes a block of an organization's live
//! credits into the ledger's `escrow` account (`gateway_lease_take`: one
//! transaction under the organization's row lock, never more than an eighth
//! of its balance or of what its spend cap leaves, and counted against the
//! cap), spends it in memory, and returns the rest (`gateway_lease_close`).
//! The calls it pays for are posted by the [`journal`](super::journal) in
//! batches; while it is in use, this instance renews it.
//!
//! A lease expires [`TTL`] after it was taken or last renewed; any instance
//! then reclaims it (a periodic job, and before taking a lease for the same
//! organization), and the batches of the instance that held it are refused
//! from then on (fenced): those calls answer 503 and are not charged.
//!
//! Below [`MIN_ROOM`] credits of room (balance or spend cap), no lease is
//! taken: the organization's calls take the exact per-call path
//! (`gateway_authorize`), so its last credits are never held in another
//! instance's lease. Test keys always take the exact path.

use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use uuid::Uuid;

/// The most one lease takes.
pub const MAX_LEASE: i64 = 100_000;
/// Below this room (balance, or what the spend cap leaves) calls take the
/// exact path.
pub const MIN_ROOM: i64 = 1_000;
/// How long a lease lives past its last renewal.
pub const TTL: time::Duration = time::Duration::seconds(10);
/// A lease is spent for at most this long, then returned and replaced.
pub const LIFE: time::Duration = time::Duration::seconds(60);
/// A lease unused for this long is returned.
pub const IDLE: Duration = Duration::from_secs(2);
/// After finding no room, an organization's calls take the exact path for
/// this long before a lease is tried again.
const EXACT_FOR: Duration = Duration::from_secs(1);

/// Credits a call reserved from a lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    pub org: Uuid,
    pub lease: Uuid,
    pub amount: i64,
}

/// What the headers of a call paid from a lease show: the balance as of the
/// lease, less what this instance has spent of it since.
#[derive(Clone, Copy, Debug)]
pub struct View {
    pub balance: i64,
    pub spend_cap: Option<i64>,
    pub period_spent: i64,
    pub low_balance_at: i64,
}

struct Lease {
    id: Uuid,
    amount: i64,
    /// Reserved, waiting for the journal, or posted.
    used: i64,
    /// Calls reserved and not yet posted or given back.
    inflight: u32,
    balance_after_take: i64,
    spend_cap: Option<i64>,
    period_spent: i64,
    low_balance_at: i64,
    spend_until: OffsetDateTime,
    /// Renewed until then at the latest (its life and the longest a call
    /// may take), so a reservation lost to a bug cannot hold it for ever.
    renew_until: OffsetDateTime,
    expires_at: OffsetDateTime,
    last_used: Instant,
    /// No more reservations; returned once nothing is in flight.
    closing: bool,
    /// Closed by another instance (reclaimed): nothing more of it is posted.
    fenced: bool,
}

impl Lease {
    fn view(&self) -> View {
        View {
            balance: self.balance_after_take + self.amount - self.used,
            spend_cap: self.spend_cap,
            period_spent: self.period_spent,
            low_balance_at: self.low_balance_at,
        }
    }
}

#[derive(Default)]
struct Slot {
    leases: Vec<Lease>,
    exact_until: Option<Instant>,
}

struct Inner {
    instance: Uuid,
    db: PgPool,
    slots: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<Slot>>>>,
}

/// This instance's leases; cheap to clone.
#[derive(Clone)]
pub struct Leases(Arc<Inner>);

#[derive(sqlx::FromRow)]
struct Taken {
    lease_id: Option<Uuid>,
    amount: Option<i64>,
    balance: Option<i64>,
    spend_cap: Option<i64>,
    period_spent: Option<i64>,
    low_balance_at: Option<i64>,
    lapses_at: Option<OffsetDateTime>,
}

fn ttl() -> sqlx::postgres::types::PgInterval {
    sqlx::postgres::types::PgInterval { months: 0, days: 0, microseconds: TTL.whole_microseconds() as i64 }
}

impl Leases {
    /// Leases taken on `db` (the gateway's pool) for instance `instance`.
    pub fn new(db: PgPool, instance: Uuid) -> Self {
        Leases(Arc::new(Inner { instance, db, slots: Mutex::new(HashMap::new()) }))
    }

    pub fn instance(&self) -> Uuid {
        self.0.instance
    }

    fn slot(&self, org: Uuid) -> Arc<tokio::sync::Mutex<Slot>> {
        self.0.slots.lock().unwrap_or_else(|e| e.into_inner()).entry(org).or_default().clone()
    }

    /// Reserves `cost` credits of `org`'s live balance from a lease (taking
    /// one if needed); `None`: take the exact path.
    pub async fn reserve(&self, org: Uuid, cost: i64, now: OffsetDateTime) -> Result<Option<(Reservation, View)>, sqlx::Error> {
        if cost <= 0 {
            return Ok(None);
        }
        let slot = self.slot(org);
        let mut slot = slot.lock().await;
        for lease in slot.leases.iter_mut().filter(|l| !l.closing && !l.fenced) {
            if now >= lease.spend_until {
                lease.closing = true;
                continue;
            }
            if lease.amount - lease.used >= cost {
                lease.used += cost;
                lease.inflight += 1;
                lease.last_used = Instant::now();
                return Ok(Some((Reservation { org, lease: lease.id, amount: cost }, lease.view())));
            }
            // Too little left for this call: returned, and a new one taken.
            lease.closing = true;
        }
        if slot.exact_until.is_some_and(|t| Instant::now() < t) {
            return Ok(None);
        }
        let taken: Taken = sqlx::query_as("SELECT * FROM gateway_lease_take($1, $2, $3, $4, $5, $6)")
            .bind(org)
            .bind(self.0.instance)
            .bind(MAX_LEASE.max(cost))
            .bind(MIN_ROOM.max(cost.saturating_mul(8)))
            .bind(now)
            .bind(ttl())
            .fetch_one(&self.0.db)
            .await?;
        let (Some(id), Some(amount)) = (taken.lease_id, taken.amount) else {
            slot.exact_until = Some(Instant::now() + EXACT_FOR);
            return Ok(None);
        };
        crate::metrics::get().lease("taken", amount);
        let life = now + LIFE;
        let mut lease = Lease {
            id,
            amount,
            used: 0,
            inflight: 0,
            balance_after_take: taken.balance.unwrap_or(0),
            spend_cap: taken.spend_cap,
            period_spent: taken.period_spent.unwrap_or(0),
            low_balance_at: taken.low_balance_at.unwrap_or(0),
            spend_until: taken.lapses_at.map_or(life, |t| t.min(life)),
            renew_until: life + time::Duration::milliseconds(2 * super::routes::MAX_TIMEOUT_MS as i64),
            expires_at: now + TTL,
            last_used: Instant::now(),
            closing: false,
            fenced: false,
        };
        if amount < cost || now >= lease.spend_until {
            lease.closing = true;
            slot.leases.push(lease);
            return Ok(None);
        }
        lease.used = cost;
        lease.inflight = 1;
        let view = lease.view();
        slot.leases.push(lease);
        Ok(Some((Reservation { org, lease: id, amount: cost }, view)))
    }

    async fn with_lease<R>(&self, r: &Reservation, f: impl FnOnce(&mut Lease) -> R) -> Option<R> {
        let slot = self.slot(r.org);
        let mut slot = slot.lock().await;
        slot.leases.iter_mut().find(|l| l.id == r.lease).map(f)
    }

    /// The call will cost `cost` of what it reserved: the rest is free
    /// again. Returns the headers' view.
    pub async fn settle(&self, r: &Reservation, cost: i64) -> Option<View> {
        let cost = cost.clamp(0, r.amount);
        self.with_lease(r, |l| {
            l.used -= r.amount - cost;
            l.view()
        })
        .await
    }

    /// The call's charge of `cost` (after [`settle`](Self::settle)) was
    /// posted (`posted`), or not: fenced, or the journal failed. Either way
    /// the call is over. A lease whose batch did not stand takes no more
    /// calls (returned, or already reclaimed).
    pub async fn done(&self, r: &Reservation, cost: i64, posted: Posted) {
        self.with_lease(r, |l| {
            l.inflight = l.inflight.saturating_sub(1);
            match posted {
                Posted::Yes => {}
                Posted::Fenced => {
                    l.used -= cost.clamp(0, r.amount);
                    l.fenced = true;
                }
                Posted::Failed => l.closing = true,
            }
        })
        .await;
    }

    /// Gives back the whole reservation: the call was not charged.
    pub async fn release(&self, r: &Reservation) {
        self.with_lease(r, |l| {
            l.used -= r.amount;
            l.inflight = l.inflight.saturating_sub(1);
        })
        .await;
    }

    /// No more calls from `org`'s leases (`None`: everyone's); they are
    /// returned once idle. For a changed spend cap or balance.
    pub async fn rotate(&self, org: Option<Uuid>) {
        let slots: Vec<_> = {
            let map = self.0.slots.lock().unwrap_or_else(|e| e.into_inner());
            match org {
                Some(o) => map.get(&o).cloned().into_iter().collect(),
                None => map.values().cloned().collect(),
            }
        };
        for slot in slots {
            let mut slot = slot.lock().await;
            slot.exact_until = None;
            for l in slot.leases.iter_mut() {
                l.closing = true;
            }
        }
    }

    /// Once a second: returns the leases that are idle, exhausted, past
    /// their life or rotated (when nothing of theirs is in flight), renews
    /// those in use that would expire, and forgets fenced ones.
    pub async fn tend(&self, now: OffsetDateTime) {
        let slots: Vec<(Uuid, Arc<tokio::sync::Mutex<Slot>>)> = self
            .0
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        for (org, slot) in slots {
            let (to_close, to_renew) = {
                let mut slot = slot.lock().await;
                for l in slot.leases.iter_mut() {
                    if l.inflight == 0 && (l.last_used.elapsed() >= IDLE || now >= l.spend_until) {
                        l.closing = true;
                    }
                }
                let mut close = Vec::new();
                slot.leases.retain(|l| {
                    if l.inflight == 0 && (l.closing || l.fenced) {
                        if !l.fenced {
                            close.push(l.id);
                        }
                        false
                    } else {
                        true
                    }
                });
                let renew: Vec<Uuid> = slot
                    .leases
                    .iter()
                    .filter(|l| {
                        let in_use = l.inflight > 0 || l.last_used.elapsed() < IDLE;
                        !l.fenced && in_use && now < l.renew_until && l.expires_at - now < TTL / 2
                    })
                    .map(|l| l.id)
                    .collect();
                (close, renew)
            };
            for id in to_close {
                match sqlx::query_scalar::<_, bool>("SELECT gateway_lease_close($1, 'returned', $2)")
                    .bind(id)
                    .bind(now)
                    .fetch_one(&self.0.db)
                    .await
                {
                    Ok(true) => crate::metrics::get().lease("returned", 0),
                    Ok(false) => {}
                    // Reclaimed by whoever runs the job once it expires.
                    Err(e) => tracing::warn!(error = %e, lease = %id, "could not return a lease"),
                }
            }
            for id in to_renew {
                let renewed = sqlx::query_scalar::<_, bool>("SELECT gateway_lease_renew($1, $2, $3, $4)")
                    .bind(id)
                    .bind(self.0.instance)
                    .bind(now)
                    .bind(ttl())
                    .fetch_one(&self.0.db)
                    .await;
                let r = Reservation { org, lease: id, amount: 0 };
                match renewed {
                    Ok(true) => {
                        self.with_lease(&r, |l| l.expires_at = now + TTL).await;
                    }
                    Ok(false) => {
                        self.with_lease(&r, |l| l.fenced = true).await;
                    }
                    Err(e) => tracing::warn!(error = %e, lease = %id, "could not renew a lease"),
                }
            }
            let mut s = slot.lock().await;
            if s.leases.is_empty() && s.exact_until.is_none_or(|t| Instant::now() >= t) {
                drop(s);
                let mut map = self.0.slots.lock().unwrap_or_else(|e| e.into_inner());
                // Only if no call took it meanwhile.
                let idle = map.get(&org).is_some_and(|current| {
                    Arc::strong_count(current) <= 2 && current.try_lock().is_ok_and(|s| s.leases.is_empty())
                });
                if idle {
                    map.remove(&org);
                }
            } else {
                s.exact_until = s.exact_until.filter(|t| Instant::now() < *t);
            }
        }
    }

    /// Returns every lease now (the server is stopping): waits up to
    /// `wait` for the calls in flight.
    pub async fn return_all(&self, now: OffsetDateTime, wait: Duration) {
        self.rotate(None).await;
        let until = Instant::now() + wait;
        loop {
            self.tend(now).await;
            let left = self.0.slots.lock().unwrap_or_else(|e| e.into_inner()).len();
            if left == 0 || Instant::now() >= until {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The headers' view of `org`'s balance from this instance's open
    /// lease, if it holds one.
    pub async fn view(&self, org: Uuid) -> Option<View> {
        let slot = self.0.slots.lock().unwrap_or_else(|e| e.into_inner()).get(&org).cloned()?;
        let slot = slot.lock().await;
        slot.leases.iter().find(|l| !l.closing && !l.fenced).map(|l| l.view())
    }

    /// How many leases this instance holds.
    pub async fn open(&self) -> usize {
        let slots: Vec<_> = self.0.slots.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        let mut n = 0;
        for s in slots {
            n += s.lock().await.leases.len();
        }
        n
    }
}

/// How a call's charge fared in the journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Posted {
    Yes,
    /// The lease was closed by another instance: not charged.
    Fenced,
    /// The database could not be reached in time: answered 503.
    Failed,
}

/// Reclaims every expired lease (any instance's); run periodically.
pub async fn reclaim(db: &PgPool, now: OffsetDateTime) -> Result<i32, sqlx::Error> {
    let n: i32 = sqlx::query_scalar("SELECT gateway_lease_reclaim($1)").bind(now).fetch_one(db).await?;
    if n > 0 {
        crate::metrics::get().lease_n("reclaimed", n as u64);
    }
    Ok(n)
}
