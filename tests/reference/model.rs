//! The from-scratch reference: what SPEC §2-§6 and §9.4 say List and FilterHints answer,
//! computed from the list of accepted updates with no incremental state at all.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};

use eddy::proto::{Filter, FilterType, Flow, FlowKey, PolicyHit, PolicyKind};
use prost::Message;

use crate::semantics;

/// The seven counters of a flow, in proto field order.
pub type Counters = [i64; 7];

/// The de-duplication horizon of SPEC §9.4, in seconds.
const HORIZON: i64 = 360;

/// One accepted update, canonicalised.
#[derive(Clone, Debug)]
struct Accepted {
    key: Vec<u8>,
    bucket: i64,
    counters: Counters,
    source_labels: BTreeSet<String>,
    dest_labels: BTreeSet<String>,
}

/// One expected result row; `key` is the encoded canonical `FlowKey`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Row {
    pub key: Vec<u8>,
    pub start: i64,
    pub end: i64,
    pub counters: Counters,
    pub source_labels: Vec<String>,
    pub dest_labels: Vec<String>,
}

type Fingerprint = (Vec<u8>, i64, i64, Counters, Vec<String>, Vec<String>);

/// The reference state: the clock, the accepted updates and the replay memory of one peer.
pub struct Model {
    pub window: i64,
    pub closed_buckets: i64,
    pub now: i64,
    accepted: Vec<Accepted>,
    seen: HashMap<Fingerprint, i64>,
}

pub fn counters_of(flow: &Flow) -> Counters {
    [
        flow.packets_in,
        flow.packets_out,
        flow.bytes_in,
        flow.bytes_out,
        flow.num_connections_started,
        flow.num_connections_completed,
        flow.num_connections_live,
    ]
}

/// SPEC §3.2: hits ordered by (policy_index, rule_index, tier, kind, namespace, name, action,
/// trigger), an absent trigger first.
fn compare_hits(a: &PolicyHit, b: &PolicyHit) -> Ordering {
    (a.policy_index, a.rule_index, a.tier.as_bytes(), a.kind)
        .cmp(&(b.policy_index, b.rule_index, b.tier.as_bytes(), b.kind))
        .then_with(|| {
            (a.namespace.as_bytes(), a.name.as_bytes(), a.action).cmp(&(
                b.namespace.as_bytes(),
                b.name.as_bytes(),
                b.action,
            ))
        })
        .then_with(|| match (&a.trigger, &b.trigger) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(a), Some(b)) => compare_hits(a, b),
        })
}

/// The canonical key of SPEC §3.1-§3.2: absent trace is the empty trace, hits sorted.
pub fn canonical_key(key: &FlowKey) -> FlowKey {
    let mut key = key.clone();
    let mut trace = key.policies.take().unwrap_or_default();
    trace.enforced_policies.sort_by(compare_hits);
    trace.pending_policies.sort_by(compare_hits);
    key.policies = Some(trace);
    key
}

pub fn decode_key(bytes: &[u8]) -> FlowKey {
    FlowKey::decode(bytes).expect("the model only stores encoded keys")
}

impl Model {
    pub fn new(window: i64, closed_buckets: i64, now: i64) -> Self {
        Model {
            window,
            closed_buckets,
            now,
            accepted: Vec::new(),
            seen: HashMap::new(),
        }
    }

    pub fn bucket_of(&self, t: i64) -> i64 {
        t - t.rem_euclid(self.window)
    }

    /// SPEC §2.2: the oldest retained bucket and the (future) newest one.
    pub fn oldest(&self) -> i64 {
        self.bucket_of(self.now) - self.closed_buckets * self.window
    }

    pub fn newest(&self) -> i64 {
        self.bucket_of(self.now) + self.window
    }

    /// SPEC §2.3: moving the clock retires the buckets that left retention.
    pub fn advance(&mut self, seconds: i64) {
        self.now += seconds;
        let oldest = self.oldest();
        self.accepted.retain(|update| update.bucket >= oldest);
    }

    /// SPEC §9.3, §2.4, §9.4: validate, place, de-duplicate, then keep the update.
    pub fn ingest(&mut self, flow: &Flow) {
        let Some(key) = flow.key.as_ref() else {
            return;
        };
        let counters = counters_of(flow);
        if flow.start_time <= 0
            || flow.end_time < flow.start_time
            || counters.iter().any(|c| *c < 0)
        {
            return;
        }
        let bucket = self.bucket_of(flow.start_time);
        if bucket < self.oldest() || bucket > self.newest() {
            return;
        }
        let key = canonical_key(key).encode_to_vec();
        let source_labels: BTreeSet<String> = flow.source_labels.iter().cloned().collect();
        let dest_labels: BTreeSet<String> = flow.dest_labels.iter().cloned().collect();
        let fingerprint = (
            key.clone(),
            flow.start_time,
            flow.end_time,
            counters,
            source_labels.iter().cloned().collect(),
            dest_labels.iter().cloned().collect(),
        );
        if self
            .seen
            .get(&fingerprint)
            .is_some_and(|arrived| *arrived > self.now - HORIZON)
        {
            return;
        }
        self.seen.insert(fingerprint, self.now);
        self.accepted.push(Accepted {
            key,
            bucket,
            counters,
            source_labels,
            dest_labels,
        });
    }

    /// Every retained key.
    pub fn retained_keys(&self) -> BTreeSet<Vec<u8>> {
        self.accepted.iter().map(|u| u.key.clone()).collect()
    }

    /// SPEC §2.5: normalise, reject `gte >= lt` (`None`), then clamp to retention.
    pub fn range(&self, gte: i64, lt: i64) -> Option<(i64, i64)> {
        let gte = match gte {
            0 => self.oldest(),
            g if g < 0 => self.now + g,
            g => g,
        };
        let lt = match lt {
            0 => self.now,
            l if l < 0 => self.now + l,
            l => l,
        };
        (gte < lt).then(|| (gte.max(self.oldest()), lt.min(self.newest() + self.window)))
    }

    /// SPEC §2.6, §3.3-§3.5, §4.2: one row per key (and aligned window of `interval`).
    pub fn rows(&self, range: (i64, i64), interval: i64, filter: Option<&Filter>) -> Vec<Row> {
        let mut rows: HashMap<(Vec<u8>, i64), Row> = HashMap::new();
        for update in &self.accepted {
            if update.bucket < range.0 || update.bucket >= range.1 {
                continue;
            }
            if !filter.is_none_or(|f| semantics::matches(f, &decode_key(&update.key))) {
                continue;
            }
            let window = if interval > 0 {
                update.bucket - update.bucket.rem_euclid(interval)
            } else {
                0
            };
            let end = update.bucket + self.window;
            let row = rows
                .entry((update.key.clone(), window))
                .or_insert_with(|| Row {
                    key: update.key.clone(),
                    start: update.bucket,
                    end,
                    counters: [0; 7],
                    source_labels: update.source_labels.iter().cloned().collect(),
                    dest_labels: update.dest_labels.iter().cloned().collect(),
                });
            row.start = row.start.min(update.bucket);
            row.end = row.end.max(end);
            for (sum, value) in row.counters.iter_mut().zip(update.counters) {
                *sum += value;
            }
            row.source_labels
                .retain(|l| update.source_labels.contains(l));
            row.dest_labels.retain(|l| update.dest_labels.contains(l));
        }
        let mut rows: Vec<Row> = rows.into_values().collect();
        rows.sort();
        rows
    }

    /// SPEC §6.2-§6.3: the distinct non-empty values of a field, byte order.
    pub fn hints(
        &self,
        range: (i64, i64),
        field: FilterType,
        filter: Option<&Filter>,
    ) -> Vec<String> {
        let mut values = BTreeSet::new();
        for row in self.rows(range, 0, filter) {
            let key = decode_key(&row.key);
            match field {
                FilterType::SourceName => values.insert(key.source_name),
                FilterType::DestName => values.insert(key.dest_name),
                FilterType::SourceNamespace => values.insert(key.source_namespace),
                FilterType::DestNamespace => values.insert(key.dest_namespace),
                _ => {
                    let trace = key.policies.unwrap_or_default();
                    for hit in trace
                        .enforced_policies
                        .iter()
                        .chain(&trace.pending_policies)
                    {
                        if hit.kind == PolicyKind::Profile as i32 {
                            continue;
                        }
                        let hit = hit.trigger.as_deref().unwrap_or(hit);
                        values.insert(match field {
                            FilterType::PolicyTier => hit.tier.clone(),
                            FilterType::PolicyName => hit.name.clone(),
                            FilterType::PolicyNamespace => hit.namespace.clone(),
                            _ => PolicyKind::try_from(hit.kind)
                                .expect("the generators use known kinds")
                                .as_str_name()
                                .to_string(),
                        });
                    }
                    false
                }
            };
        }
        values.remove("");
        values.into_iter().collect()
    }
}
