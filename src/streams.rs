//! Live flow streams (SPEC §7): one hub task owns every subscription, emits each closed
//! bucket's rows at every epoch end, and routes each row only to the subscriptions whose
//! filter matches it, so the cost of an epoch grows with the rows delivered.

pub mod admission;
pub mod backfill;
pub mod encoded;
pub mod hub;
pub mod index;
pub mod limits;
pub mod outbound;
pub mod slots;
pub mod views;

pub use hub::StreamHub;
pub use limits::{StreamCounters, StreamLimits};
