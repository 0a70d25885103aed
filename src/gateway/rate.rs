//! The rate limit for calls that move no credits, in leases.
//!
//! The limiter itself is the organization's GCRA state in PostgreSQL
//! (`org_meters.rate_tat` for live keys, `sandbox_rate_tat` for test keys, so
//! sandbox traffic never spends the live limit), shared by every instance. Calls that move credits
//! are counted there one by one, under the same lock as their reservation.
//! Calls that move none (a ping) would queue on that lock just to be counted,
//! so an instance claims them in blocks (`gateway_rate_lease`): up to a
//! fiftieth of the plan's rate per second (at most 200, at least 1) at once,
//! spent in memory within one second.
//!
//! The bound: tokens are claimed in PostgreSQL before they are spent, and
//! spent within a second of the claim, so over any one-second window each
//! instance can admit at most one block (a fiftieth of the rate) more than the
//! plan's share it claimed, and at most one block less (what it leaves unspent
//! when its lease lapses). Plans of up to 50 calls a second lease one token at
//! a time, which is exact.

use crate::api_keys::Mode;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

#[derive(Default)]
struct Lease {
    tokens: i32,
    /// What the shared limiter had left when this lease was taken.
    shared_remaining: i32,
    until: Option<OffsetDateTime>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admit {
    /// `remaining`: about how many more calls the limiter allows right now.
    Yes {
        remaining: i32,
    },
    No {
        retry_after_ms: i64,
    },
}

#[derive(Clone, Default)]
pub struct RateLeases(Arc<Mutex<HashMap<(Uuid, Mode), Arc<tokio::sync::Mutex<Lease>>>>>);

/// How many tokens an instance claims at once for a plan of `rate` per second.
pub fn block(rate: i32) -> i32 {
    (rate / 50).clamp(1, 200)
}

impl RateLeases {
    /// Forgets the leases that have lapsed, so organizations that stopped
    /// calling take no memory.
    pub fn prune(&self, now: OffsetDateTime) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, slot| match slot.try_lock() {
                Ok(lease) => lease.until.is_some_and(|u| now < u),
                // In use right now.
                Err(_) => true,
            });
    }

    /// How many organizations this instance holds a lease for.
    pub fn organizations(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub async fn take(
        &self,
        db: &PgPool,
        org: Uuid,
        mode: Mode,
        rate: i32,
        now: OffsetDateTime,
    ) -> Result<Admit, sqlx::Error> {
        let slot = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((org, mode))
            .or_default()
            .clone();
        // One claim per organization at a time; the others wait for its tokens.
        let mut lease = slot.lock().await;
        if lease.tokens > 0 && lease.until.is_some_and(|u| now < u) {
            lease.tokens -= 1;
            return Ok(Admit::Yes {
                remaining: lease.tokens + lease.shared_remaining,
            });
        }
        let (granted, remaining, retry_after_ms): (i32, i32, Option<i64>) =
            sqlx::query_as("SELECT * FROM gateway_rate_lease($1, $2, $3, $4, $5)")
                .bind(org)
                .bind(mode.as_str())
                .bind(rate)
                .bind(block(rate))
                .bind(now)
                .fetch_one(db)
                .await?;
        crate::metrics::get().rate_claim(granted > 0);
        if granted <= 0 {
            *lease = Lease::default();
            return Ok(Admit::No {
                retry_after_ms: retry_after_ms.unwrap_or(1000).max(1),
            });
        }
        *lease = Lease {
            tokens: granted - 1,
            shared_remaining: remaining,
            until: Some(now + Duration::SECOND),
        };
        Ok(Admit::Yes {
            remaining: lease.tokens + remaining,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn blocks_grow_with_the_rate_and_stay_bounded() {
        assert_eq!(super::block(5), 1);
        assert_eq!(super::block(50), 1);
        assert_eq!(super::block(1000), 20);
        assert_eq!(super::block(1_000_000), 200);
    }
}
