//! The `Statistics` service (SPEC §8): per-policy and per-rule counters from the policy
//! statistics view, grouped, ordered and laid on one shared time axis here.
//!
//! Groups hold only the buckets that have data; each result is encoded (zero-filled to the
//! whole axis, `api::statistics_encoding`) when the response stream asks for it, so a call
//! never holds every series at once (SPEC §12.3).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use eddy_dataflows::filter::IdSet;
use eddy_dataflows::model::{BucketRange, StatKey, StatLevel, Stats, DIRECTION_INGRESS};
use eddy_dataflows::queries::stats::{StatsQuery, StatsRow};
use rustc_hash::FxHashMap;

use crate::api::statistics_encoding::{Cells, ResultShape};
use crate::api::status::ApiError;
use crate::api::timerange::bucket_range;
use crate::catalog::Catalog;
use crate::proto::{Action, PolicyHit, StatisticType, StatisticsGroupBy, StatisticsRequest};
use crate::state::ServerState;
use crate::worker::shared_reads::{ReadKind, SharedReads};
use crate::worker::EngineStopped;

/// What makes two Statistics calls the same engine read: the compiled query. Calls that
/// differ only in the statistic type or grouping of the answer share the rows too.
#[derive(Debug, PartialEq)]
struct StatsKey {
    range: BucketRange,
    level: StatLevel,
    kind: Option<i32>,
    tiers: Option<IdSet>,
    namespaces: Option<IdSet>,
    names: Option<IdSet>,
    action: Option<i32>,
    per_bucket: bool,
}

impl StatsKey {
    fn of(query: &StatsQuery) -> Self {
        StatsKey {
            range: query.range,
            level: query.level,
            kind: query.kind,
            tiers: query.tiers.clone(),
            namespaces: query.namespaces.clone(),
            names: query.names.clone(),
            action: query.action,
            per_bucket: query.per_bucket,
        }
    }
}

/// Every worker's rows for one Statistics read, shared by the calls that asked it.
type SharedRows = Result<Arc<Vec<Vec<StatsRow>>>, EngineStopped>;

/// The `Statistics` service.
#[derive(Clone)]
pub struct StatisticsService {
    state: ServerState,
    reads: Arc<SharedReads<StatsKey, SharedRows>>,
}

impl StatisticsService {
    /// A service over `state`. Identical calls waiting at once share one engine read (see
    /// [`crate::worker::shared_reads`]).
    pub fn new(state: ServerState) -> Self {
        let reads = SharedReads::new(ReadKind::Stats, state.engine.read_slots().clone());
        StatisticsService { state, reads }
    }
}

/// The id set for an exact policy field: `None` for the wildcard "".
fn exact(value: &str, catalog: &Catalog) -> Option<IdSet> {
    (!value.is_empty()).then(|| IdSet::new(catalog.symbols.lookup(value).into_iter().collect()))
}

/// Where a result sorts (SPEC §8.8): tier, kind, namespace, name, action, rule, direction.
type ResultOrder = (String, i32, String, String, i32, i64, i32);

/// A result's identity by ids: kind, tier, namespace, name, action, rule, direction.
type GroupKey = (i32, u32, u32, u32, i32, i64, i32);

/// One result being assembled: its identity and its cells, by slot, where there is data.
struct Group {
    policy: PolicyHit,
    direction: i32,
    cells: BTreeMap<usize, Cells>,
}

/// The (in, out) values a row adds for the requested statistic (SPEC §8.4).
fn values(kind: StatisticType, key: &StatKey, stats: &Stats) -> (i64, i64) {
    match kind {
        StatisticType::PacketCount => (stats.packets_in, stats.packets_out),
        StatisticType::ByteCount => (stats.bytes_in, stats.bytes_out),
        StatisticType::LiveConnectionCount if key.direction == DIRECTION_INGRESS => {
            (stats.connections_live, 0)
        }
        StatisticType::LiveConnectionCount => (0, stats.connections_live),
    }
}

/// Which pair of columns an action fills: allowed, denied, passed; others add nothing.
fn column_pair(action: i32) -> Option<usize> {
    match Action::try_from(action) {
        Ok(Action::Allow) => Some(0),
        Ok(Action::Deny) => Some(2),
        Ok(Action::Pass) => Some(4),
        _ => None,
    }
}

impl StatisticsService {
    /// Answers a `List`: its results in order (SPEC §8.8), each as its encoded
    /// `StatisticsResult`.
    pub(crate) async fn list(
        &self,
        request: StatisticsRequest,
    ) -> Result<impl Iterator<Item = Bytes> + Send + 'static, ApiError> {
        let state = &self.state;
        let range = bucket_range(
            request.start_time_gte,
            request.start_time_lt,
            state.now(),
            &state.retention,
        )?;
        let kind = StatisticType::try_from(request.r#type).map_err(|_| {
            ApiError::invalid("type", format!("unknown statistic type {}", request.r#type))
        })?;
        let group_by = StatisticsGroupBy::try_from(request.group_by).map_err(|_| {
            ApiError::invalid("group_by", format!("unknown group_by {}", request.group_by))
        })?;
        let level = match group_by {
            StatisticsGroupBy::Policy => StatLevel::Policy,
            StatisticsGroupBy::PolicyRule => StatLevel::Rule,
        };
        let wanted = request.policy_match.clone().unwrap_or_default();
        let catalog = &state.catalog;
        let query = StatsQuery {
            range,
            level,
            kind: (wanted.kind != 0).then_some(wanted.kind),
            tiers: exact(&wanted.tier, catalog),
            namespaces: exact(&wanted.namespace, catalog),
            names: exact(&wanted.name, catalog),
            action: (wanted.action != 0).then_some(wanted.action),
            per_bucket: request.time_series,
        };
        let window = state.retention.window;
        // The first bucket start at or after `gte`; none when that is past every Unix second
        // (a range that, clamped, selects nothing).
        let first = range
            .gte
            .checked_add((window - range.gte.rem_euclid(window)) % window)
            .unwrap_or(i64::MAX);
        let axis: Vec<i64> = if request.time_series {
            std::iter::successors(Some(first), |bucket| bucket.checked_add(window))
                .take_while(|bucket| *bucket < range.lt)
                .collect()
        } else {
            Vec::new()
        };
        let width = axis.len().max(1);
        // Group by ids first; strings are resolved once per result, not once per row.
        let mut by_id: FxHashMap<GroupKey, Group> = FxHashMap::default();
        let engine = state.engine.clone();
        let rows = self
            .reads
            .read(StatsKey::of(&query), move |_slot| async move {
                engine.stats(query).await.map(Arc::new)
            })
            .await?;
        for &(key, bucket, stats) in rows.iter().flatten() {
            let Some(pair) = column_pair(key.rule.action) else {
                continue;
            };
            let rule = &key.rule;
            let (action, rule_index, direction) = match level {
                StatLevel::Policy => (0, 0, 0),
                StatLevel::Rule => (rule.action, rule.rule_index, key.direction),
            };
            let id = (
                rule.kind,
                rule.tier,
                rule.namespace,
                rule.name,
                action,
                rule_index,
                direction,
            );
            let group = by_id.entry(id).or_insert_with(|| Group {
                policy: PolicyHit {
                    kind: rule.kind,
                    namespace: catalog.symbols.resolve(rule.namespace),
                    name: catalog.symbols.resolve(rule.name),
                    tier: catalog.symbols.resolve(rule.tier),
                    action,
                    rule_index,
                    ..Default::default()
                },
                direction,
                cells: BTreeMap::new(),
            });
            let slot = if request.time_series {
                match usize::try_from((bucket - first) / window) {
                    Ok(slot) if slot < width => slot,
                    _ => continue,
                }
            } else {
                0
            };
            let (inbound, outbound) = values(kind, &key, &stats);
            let cells = group.cells.entry(slot).or_default();
            cells[pair] = cells[pair].saturating_add(inbound);
            cells[pair + 1] = cells[pair + 1].saturating_add(outbound);
        }
        let mut groups: BTreeMap<ResultOrder, Group> = BTreeMap::new();
        for group in by_id.into_values() {
            let policy = &group.policy;
            let order = (
                policy.tier.clone(),
                policy.kind,
                policy.namespace.clone(),
                policy.name.clone(),
                policy.action,
                policy.rule_index,
                group.direction,
            );
            groups.insert(order, group);
        }
        let shape = ResultShape::new(group_by as i32, kind as i32, &axis);
        Ok(groups
            .into_values()
            .map(move |group| shape.encode(&group.policy, group.direction, &group.cells, width)))
    }
}
