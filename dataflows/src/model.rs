//! The domain types every view is built from: flow keys made of interned ids, buckets,
//! ticks, and the `Stats` counters that serve as the difference type of the flows view.
//!
//! Invariant: a [`FlowKey`]'s `id` is derived from the canonical key, so two keys with the
//! same `id` are the same flow. Hashing a key hashes only its `id`, which is what shards a
//! flow (all of its buckets) onto one worker.

use std::hash::{Hash, Hasher};

use differential_dataflow::difference::{Abelian, IsZero, Monoid, Multiply, Semigroup};
use serde::{Deserialize, Serialize};

/// A flow's id: derived from its canonical key (SPEC §3.6), it names the key in the views.
pub type FlowId = u64;
/// An interned string: names, namespaces, protocols, policy fields.
pub type Sym = u32;
/// An interned canonical policy trace.
pub type TraceId = u32;
/// An interned, sorted and de-duplicated set of labels.
pub type LabelSetId = u32;
/// The start of an aggregation bucket, in Unix seconds (a multiple of the window).
pub type Bucket = i64;
/// The timely timestamp: processing time, advanced by the controller.
pub type Tick = u64;

/// The aggregation key of a flow (SPEC §3.1), with every string interned.
///
/// Enum fields keep the number that was received, so unknown numbers are echoed (SPEC §1.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FlowKey {
    /// Positive 63-bit id derived from the canonical key (SPEC §3.6). First, so keys sort by id.
    pub id: u64,
    /// Source endpoint name.
    pub source_name: Sym,
    /// Source endpoint namespace.
    pub source_namespace: Sym,
    /// Source endpoint type (enum number).
    pub source_type: i32,
    /// Destination endpoint name.
    pub dest_name: Sym,
    /// Destination endpoint namespace.
    pub dest_namespace: Sym,
    /// Destination endpoint type (enum number).
    pub dest_type: i32,
    /// Destination port.
    pub dest_port: i64,
    /// Destination service name.
    pub dest_service_name: Sym,
    /// Destination service namespace.
    pub dest_service_namespace: Sym,
    /// Destination service port name.
    pub dest_service_port_name: Sym,
    /// Destination service port.
    pub dest_service_port: i64,
    /// L4 protocol.
    pub proto: Sym,
    /// Reporter (enum number).
    pub reporter: i32,
    /// Final action (enum number).
    pub action: i32,
    /// The canonical policy trace.
    pub trace: TraceId,
}

impl FlowKey {
    /// The key's catalog strings: source name and namespace, destination name and
    /// namespace, service name, namespace and port name, protocol.
    pub fn strings(&self) -> [Sym; 8] {
        [
            self.source_name,
            self.source_namespace,
            self.dest_name,
            self.dest_namespace,
            self.dest_service_name,
            self.dest_service_namespace,
            self.dest_service_port_name,
            self.proto,
        ]
    }
}

impl Hash for FlowKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

/// The source and destination label sets of one update.
pub type LabelPair = (LabelSetId, LabelSetId);

/// The counters of a flow, summed over updates; the difference type of the flows view.
///
/// `records` counts contributing updates, so a bucket whose counters are all zero is still
/// present (a zero difference is treated as absent by differential dataflow).
///
/// Sums saturate at `i64::MAX` (and `i64::MIN`) and never wrap (SPEC §12.2). Saturating
/// addition is not associative once a sum has saturated, so a retraction need not restore
/// the counters exactly; what keeps the views exact is this invariant: every update enters
/// with `records` = +1 and counters of at least 0, and the only retraction is expiry, which
/// negates a row's whole accumulated value. A row's `records` therefore sums to 0 exactly
/// when the row is gone, whatever its counters say, and [`IsZero`] decides on `records`
/// alone. Until then every contribution is positive, and a sum of positive counters
/// saturates to the same value in any order.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Stats {
    /// Number of updates that contributed.
    pub records: i64,
    /// Packets received.
    pub packets_in: i64,
    /// Packets sent.
    pub packets_out: i64,
    /// Bytes received.
    pub bytes_in: i64,
    /// Bytes sent.
    pub bytes_out: i64,
    /// Connections started.
    pub connections_started: i64,
    /// Connections completed.
    pub connections_completed: i64,
    /// Connections live.
    pub connections_live: i64,
}

impl Stats {
    /// Every field, in the order they are declared: `records`, then the seven counters.
    pub fn fields(&self) -> [i64; 8] {
        [
            self.records,
            self.packets_in,
            self.packets_out,
            self.bytes_in,
            self.bytes_out,
            self.connections_started,
            self.connections_completed,
            self.connections_live,
        ]
    }

    /// The statistics of these fields, in the order [`Stats::fields`] gives them.
    pub fn from_fields(fields: [i64; 8]) -> Stats {
        let [records, packets_in, packets_out, bytes_in, bytes_out, started, completed, live] =
            fields;
        Stats {
            records,
            packets_in,
            packets_out,
            bytes_in,
            bytes_out,
            connections_started: started,
            connections_completed: completed,
            connections_live: live,
        }
    }

    /// Combines every field of `self` with the same field of `other`.
    fn zip_with(&self, other: &Stats, combine: impl Fn(i64, i64) -> i64) -> Stats {
        let (mine, theirs) = (self.fields(), other.fields());
        Stats::from_fields(std::array::from_fn(|at| combine(mine[at], theirs[at])))
    }

    /// Adds `other` into `self`, saturating instead of overflowing.
    pub fn add(&mut self, other: &Stats) {
        *self = self.zip_with(other, i64::saturating_add);
    }

    /// Applies `change` to every field.
    fn map(&self, change: impl Fn(i64) -> i64) -> Stats {
        self.zip_with(self, |value, _| change(value))
    }

    /// The same counters with every sign flipped: the retraction of `self`.
    pub fn negated(&self) -> Stats {
        self.map(i64::saturating_neg)
    }
}

/// A row is absent exactly when its updates and retractions cancel: see [`Stats`].
impl IsZero for Stats {
    fn is_zero(&self) -> bool {
        self.records == 0
    }
}

impl Semigroup for Stats {
    fn plus_equals(&mut self, rhs: &Self) {
        self.add(rhs);
    }
}

impl Monoid for Stats {
    fn zero() -> Self {
        Stats::default()
    }
}

impl Abelian for Stats {
    fn negate(&mut self) {
        *self = self.negated();
    }
}

/// Scales a count by an update's record count: how presence-only views (labels, hints)
/// derive their `isize` counts from the `Stats`-weighted input.
impl Multiply<Stats> for isize {
    type Output = isize;
    fn multiply(self, rhs: &Stats) -> isize {
        self.saturating_mul(rhs.records as isize)
    }
}

/// Scales counters by a count, saturating: how a flow's counters reach every policy rule it
/// hit.
impl Multiply<isize> for Stats {
    type Output = Stats;
    fn multiply(self, rhs: &isize) -> Stats {
        let factor = *rhs as i64;
        self.map(|value| value.saturating_mul(factor))
    }
}

/// Whether a statistics row describes a whole policy or one of its rules (SPEC §8.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum StatLevel {
    /// One row per (policy, action): rule index 0.
    Policy,
    /// One row per (policy, action, rule index).
    Rule,
}

/// A policy (kind, tier, namespace, name) with an action and rule index, at a level; what a
/// canonical trace contributes to, each distinct one once per flow (SPEC §8.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PolicyRule {
    /// Policy kind (enum number).
    pub kind: i32,
    /// Policy tier.
    pub tier: Sym,
    /// Policy namespace.
    pub namespace: Sym,
    /// Policy name.
    pub name: Sym,
    /// The hit's action (enum number).
    pub action: i32,
    /// The rule index (0 at the policy level).
    pub rule_index: i64,
    /// Policy or rule level.
    pub level: StatLevel,
}

/// The reporter number meaning "source" (SPEC §8.3: such flows are egress).
pub const REPORTER_SRC: i32 = 1;
/// The rule direction number for ingress.
pub const DIRECTION_INGRESS: i32 = 1;
/// The rule direction number for egress.
pub const DIRECTION_EGRESS: i32 = 2;

/// The direction of a flow's hits, from its reporter (SPEC §8.3).
pub fn direction_of(reporter: i32) -> i32 {
    if reporter == REPORTER_SRC {
        DIRECTION_EGRESS
    } else {
        DIRECTION_INGRESS
    }
}

/// The key of the policy statistics view: a rule and the direction of the flows that hit it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StatKey {
    /// The policy rule.
    pub rule: PolicyRule,
    /// Ingress or egress.
    pub direction: i32,
}

/// One validated, interned flow update, as the frontend hands it to the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FlowRecord {
    /// The flow's key.
    pub key: FlowKey,
    /// The bucket holding the update's start time.
    pub bucket: Bucket,
    /// Source and destination label sets.
    pub labels: LabelPair,
    /// The update's counters (`records` is 1 for an insert, -1 for a retraction).
    pub stats: Stats,
}

/// A half-open range of bucket starts `[gte, lt)` (SPEC §2.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketRange {
    /// Smallest bucket start included.
    pub gte: Bucket,
    /// Bucket starts must be below this.
    pub lt: Bucket,
}

impl BucketRange {
    /// Whether the bucket starting at `bucket` is selected.
    pub fn contains(&self, bucket: Bucket) -> bool {
        self.gte <= bucket && bucket < self.lt
    }
}

/// A flow key with fixed fields but its id and namespaces, for unit tests of the flow table
/// and the flow index.
#[cfg(test)]
pub(crate) fn test_key(id: FlowId, source_namespace: Sym, dest_namespace: Sym) -> FlowKey {
    FlowKey {
        id,
        source_name: 1,
        source_namespace,
        source_type: 1,
        dest_name: 3,
        dest_namespace,
        dest_type: 1,
        dest_port: 443,
        dest_service_name: 0,
        dest_service_namespace: 0,
        dest_service_port_name: 0,
        dest_service_port: 0,
        proto: 4,
        reporter: 1,
        action: 1,
        trace: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(packets_in: i64) -> Stats {
        Stats {
            records: 1,
            packets_in,
            ..Stats::default()
        }
    }

    #[test]
    fn sums_saturate_instead_of_wrapping() {
        let mut sum = update(i64::MAX);
        sum.plus_equals(&update(i64::MAX));
        assert_eq!(sum.packets_in, i64::MAX);
        assert_eq!(sum.records, 2);
        assert_eq!(update(i64::MAX).multiply(&3).packets_in, i64::MAX);
        assert_eq!(update(5).multiply(&-1).packets_in, -5);
    }

    #[test]
    fn a_saturated_row_and_its_retraction_cancel_in_any_order() {
        let parts = [update(i64::MAX), update(i64::MAX), update(7)];
        let mut row = Stats::default();
        parts.iter().for_each(|part| row.add(part));
        let retraction = row.negated();
        let mut retraction_first = retraction;
        parts.iter().for_each(|part| retraction_first.add(part));
        let mut retraction_last = row;
        retraction_last.add(&retraction);
        assert!(retraction_first.is_zero());
        assert!(retraction_last.is_zero());
        assert_ne!(
            retraction_first,
            Stats::default(),
            "counters need not cancel"
        );
        assert!(
            !update(0).is_zero(),
            "an update with zero counters is present"
        );
    }
}
