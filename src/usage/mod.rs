//! Usage you can see: what the usage pages, the dashboard and the request
//! log read. The gateway writes usage events (`gateway::usage`, its sink);
//! this module owns everything after that:
//!
//! - [`partitions`]: events live in one PostgreSQL partition per UTC day,
//!   created ahead and dropped after the retention by the usage job;
//! - [`rollups`]: hourly and daily sums per organization, key, endpoint,
//!   mode, outcome and problem code, kept by statement triggers on the
//!   events in the same transaction as the events themselves (so each event
//!   counts exactly once, whichever instance or job writes it, and a
//!   correction of an event moves its rollups). Pages read these, never the
//!   raw events;
//! - [`log`]: the request log, keyset-paged over the events (never OFFSET);
//! - [`forecast`]: when credits run out at the recent rate;
//! - [`latency`]: the histogram the rollups keep, and percentiles from it.
//!
//! Every time here is UTC: buckets are UTC hours and days, and the pages
//! say so.

pub mod bench;
pub mod forecast;
pub mod latency;
pub mod log;
pub mod outlook;
pub mod partitions;
pub mod rollups;
pub mod warnings;

use crate::api_keys::Mode;
use uuid::Uuid;

/// A time as RFC 3339 in UTC, for exports.
pub fn rfc3339(t: time::OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC).format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// A CSV field, quoted when it holds a comma, a quote or a line break; one
/// that a spreadsheet would read as a formula gets a leading `'`.
pub fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s.to_string() };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// What a usage page or export is narrowed to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub key: Option<Uuid>,
    pub mode: Option<Mode>,
}

/// The outcome classes the charts stack, in order.
pub const OUTCOMES: [&str; 6] = ["2xx", "402", "429", "4xx", "5xx", "unknown"];

/// The nil key id the rollups use for calls without a key.
pub const NO_KEY: Uuid = Uuid::nil();

pub use app::types::group;
