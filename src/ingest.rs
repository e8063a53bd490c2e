//! The ingest frontend: turns a `FlowUpdate` into an engine record (SPEC §9.3, §3.2, §3.6),
//! or says why it is skipped. Runs on the `Connect` tasks, in parallel.

pub mod canonical;
pub mod connection;
pub mod counters;
pub mod dedup;
pub mod limits;
pub mod policy_rules;
pub mod threads;
pub mod wire;

use eddy_dataflows::model::{FlowKey, FlowRecord, Stats};

use crate::catalog::Catalog;
use crate::intern::InternerFull;
use crate::proto::{Flow, FlowUpdate};
use crate::retention::Retention;

pub use counters::{IngestCounters, SkipReason};
pub use limits::InputLimits;

/// Why an update was not turned into a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotPrepared {
    /// The update is receipted and skipped, counted under this reason.
    Skipped(SkipReason),
    /// A catalog table has no room for a value the update needs: the update is not receipted
    /// and the call ends (SPEC §12.4).
    Full(InternerFull),
}

impl From<SkipReason> for NotPrepared {
    fn from(reason: SkipReason) -> Self {
        NotPrepared::Skipped(reason)
    }
}

impl From<InternerFull> for NotPrepared {
    fn from(full: InternerFull) -> Self {
        NotPrepared::Full(full)
    }
}

/// What an update is checked against before it is interned.
#[derive(Clone, Copy, Debug)]
pub struct Bounds<'a> {
    /// Window and retention: which start times are accepted.
    pub retention: &'a Retention,
    /// Size limits.
    pub limits: &'a InputLimits,
    /// The current time in Unix seconds.
    pub now: i64,
}

/// Validates, canonicalises and interns one update.
pub fn prepare(
    update: &FlowUpdate,
    catalog: &Catalog,
    bounds: Bounds<'_>,
) -> Result<FlowRecord, NotPrepared> {
    let flow = update.flow.as_ref().ok_or(SkipReason::NoFlow)?;
    let key = flow.key.as_ref().ok_or(SkipReason::NoKey)?;
    if !bounds.limits.admits(flow) {
        return Err(SkipReason::TooLarge.into());
    }
    let retention = bounds.retention;
    let measures = Measures::of(flow);
    measures.validate(retention, bounds.now)?;
    let trace_bytes = canonical::canonical_trace_bytes(key.policies.as_ref());
    let symbols = &catalog.symbols;
    let flow_key = FlowKey {
        id: canonical::flow_id(key, &trace_bytes),
        source_name: symbols.intern(&key.source_name)?,
        source_namespace: symbols.intern(&key.source_namespace)?,
        source_type: key.source_type,
        dest_name: symbols.intern(&key.dest_name)?,
        dest_namespace: symbols.intern(&key.dest_namespace)?,
        dest_type: key.dest_type,
        dest_port: key.dest_port,
        dest_service_name: symbols.intern(&key.dest_service_name)?,
        dest_service_namespace: symbols.intern(&key.dest_service_namespace)?,
        dest_service_port_name: symbols.intern(&key.dest_service_port_name)?,
        dest_service_port: key.dest_service_port,
        proto: symbols.intern(&key.proto)?,
        reporter: key.reporter,
        action: key.action,
        trace: catalog.intern_trace(&trace_bytes, || {
            policy_rules::rules_of_trace(key.policies.as_ref(), symbols)
        })?,
    };
    let source_labels = catalog
        .label_sets
        .intern(&*canonical::label_set(&flow.source_labels))?;
    let dest_labels = catalog
        .label_sets
        .intern(&*canonical::label_set(&flow.dest_labels))?;
    Ok(FlowRecord {
        key: flow_key,
        bucket: retention.bucket_of(flow.start_time),
        labels: (source_labels, dest_labels),
        stats: measures.stats(),
    })
}

/// The numbers of one flow: its interval and its counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Measures {
    /// Start of the interval, in Unix seconds.
    pub start_time: i64,
    /// End of the interval, in Unix seconds.
    pub end_time: i64,
    /// Packets in and out, bytes in and out, connections started, completed and live.
    pub counters: [i64; 7],
}

impl Measures {
    /// The numbers of `flow`.
    pub fn of(flow: &Flow) -> Self {
        Measures {
            start_time: flow.start_time,
            end_time: flow.end_time,
            counters: [
                flow.packets_in,
                flow.packets_out,
                flow.bytes_in,
                flow.bytes_out,
                flow.num_connections_started,
                flow.num_connections_completed,
                flow.num_connections_live,
            ],
        }
    }

    /// Why these numbers are skipped, if they are: a non-positive start, an end before the
    /// start, a negative counter, or a start outside retention at `now`.
    pub fn validate(&self, retention: &Retention, now: i64) -> Result<(), SkipReason> {
        if self.start_time <= 0 {
            return Err(SkipReason::NonPositiveStart);
        }
        if self.end_time < self.start_time {
            return Err(SkipReason::EndBeforeStart);
        }
        if self.counters.iter().any(|counter| *counter < 0) {
            return Err(SkipReason::NegativeCounter);
        }
        if !retention.accepts(self.start_time, now) {
            return Err(SkipReason::OutsideRetention);
        }
        Ok(())
    }

    /// The statistics of one record with these counters.
    pub fn stats(&self) -> Stats {
        let mut fields = [1; 8];
        fields[1..].copy_from_slice(&self.counters);
        Stats::from_fields(fields)
    }
}
