//! Invoices and the charges that collect them. An invoice is what the
//! customer owes (numbered lines summing to its total, in minor units of one
//! currency); a charge is one attempt to collect it on a saved card, with its
//! own idempotency key. Outcomes arrive only as processor events
//! ([`apply_event`]), each applied once, in one transaction with what the
//! payment buys ([`fulfil`]): credits appear only after a charge succeeded.
//!
//! No network call happens inside a transaction: a charge is recorded and
//! committed first, then the processor is asked.

mod charges;
mod fulfilment;
mod invoices;

pub use charges::*;
pub use invoices::*;
use fulfilment::fulfil;
