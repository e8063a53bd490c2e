//! The Statistics read (SPEC §8): the counters of the policy rules that match a query, per
//! bucket or summed over the range, from this worker's shard of the policy statistics view.

use differential_dataflow::trace::cursor::Cursor;

use crate::filter::IdSet;
use crate::model::{Bucket, BucketRange, PolicyRule, StatKey, StatLevel, Stats};
use crate::queries::cursor_over_all;
use crate::traces::PolicyStatsTrace;
use crate::views::policy_stats::PolicyStatsReader;
use crate::views::Views;

/// A validated Statistics query, as every worker receives it.
#[derive(Clone, Debug)]
pub struct StatsQuery {
    /// The selected buckets.
    pub range: BucketRange,
    /// Policy or rule rows.
    pub level: StatLevel,
    /// Required policy kind, if any.
    pub kind: Option<i32>,
    /// Allowed tiers, if constrained.
    pub tiers: Option<IdSet>,
    /// Allowed namespaces, if constrained.
    pub namespaces: Option<IdSet>,
    /// Allowed names, if constrained.
    pub names: Option<IdSet>,
    /// Required hit action, if any (SPEC §8.6).
    pub action: Option<i32>,
    /// One row per bucket (time series) rather than one per key.
    pub per_bucket: bool,
}

impl StatsQuery {
    fn matches(&self, rule: &PolicyRule) -> bool {
        let allows = |set: &Option<IdSet>, id: u32| set.as_ref().is_none_or(|s| s.contains(id));
        rule.level == self.level
            && self.kind.is_none_or(|kind| kind == rule.kind)
            && self.action.is_none_or(|action| action == rule.action)
            && allows(&self.tiers, rule.tier)
            && allows(&self.namespaces, rule.namespace)
            && allows(&self.names, rule.name)
    }
}

/// One row of a Statistics answer: a (rule, direction), a bucket (the range's first selected
/// bucket when not per bucket), and its counters.
pub type StatsRow = (StatKey, Bucket, Stats);

/// Answers `query` from this worker's shard, rows in key then bucket order.
pub fn stats(views: &mut Views, query: &StatsQuery) -> Vec<StatsRow> {
    stats_of(views.reader::<PolicyStatsReader>().trace(), query)
}

fn stats_of(policy_stats: &mut PolicyStatsTrace, query: &StatsQuery) -> Vec<StatsRow> {
    let (mut cursor, storage) = cursor_over_all(policy_stats);
    let mut rows = Vec::new();
    while let Some(key) = cursor.get_key(&storage) {
        if query.matches(&key.rule) {
            let mut total: Option<Stats> = None;
            while let Some(bucket) = cursor.get_val(&storage) {
                if query.range.contains(*bucket) {
                    let mut stats = Stats::default();
                    cursor.map_times(&storage, |_, diff| stats.add(diff));
                    if stats.records > 0 {
                        if query.per_bucket {
                            rows.push((*key, *bucket, stats));
                        } else {
                            total.get_or_insert_with(Stats::default).add(&stats);
                        }
                    }
                }
                cursor.step_val(&storage);
            }
            if let Some(total) = total {
                rows.push((*key, query.range.gte, total));
            }
        }
        cursor.step_key(&storage);
    }
    rows
}
