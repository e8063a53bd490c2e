//! Eddy's incremental views, built with timely and differential dataflow only.
//!
//! This crate knows nothing of gRPC, tokio or strings: the frontend interns every string to a
//! small id before a record reaches a worker, and turns ids back into strings on the way out.
//! What lives here:
//!
//! - [`model`]: the domain types that flow through the dataflow (keys, buckets, counters).
//! - [`filter`]: a query filter compiled to id sets, evaluated on the workers.
//! - [`keys`]: which worker owns a flow.
//! - [`flow_table`]: the flows a worker owns, each key once and its rows updated in place.
//! - [`flow_rows`]: how the flow table stores a flow's rows, compact while their sums fit.
//! - [`flow_index`]: a worker's flows by namespace, kept by the flow table for filtered reads.
//! - [`views`]: the registry of incremental views, one file per view.
//! - [`inputs`]: every view's input and the one way records enter them.
//! - [`queries`]: Goldmane's reads of a worker's shard of its views (List, FilterHints,
//!   Statistics, expiry), and the views' sizes.
//! - [`tick_batcher`]: the batcher every arrangement sorts its closed ticks with.
//! - [`traces`]: the long differential-dataflow type names of the hints and policy statistics
//!   views.

pub mod filter;
pub mod flow_index;
pub mod flow_rows;
pub mod flow_table;
pub mod inputs;
pub mod keys;
pub mod model;
pub mod queries;
pub mod tick_batcher;
pub mod traces;
pub mod views;
