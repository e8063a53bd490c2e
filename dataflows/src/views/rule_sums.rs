//! The policy statistics view's state on one worker besides its arrangement: every trace's
//! distinct rules, each rule numbered densely while a trace holds it ([`TraceRules`]), and
//! the open tick's counters summed per (rule, direction, bucket) in a table indexed by those
//! numbers ([`RuleSums`]). An update costs one lookup of its trace and one addition per
//! distinct rule of it: no rule is hashed per update. A trace's rule numbers are held in its
//! map entry and a rule's first sum of a tick in its slot, so neither is a further pointer
//! to follow (the feed runs once per update: its memory reads are most of its cost).

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use differential_dataflow::difference::{IsZero, Semigroup};
use rustc_hash::FxHasher;
use smallvec::SmallVec;

use crate::model::{Bucket, PolicyRule, Stats, TraceId};

/// A rule's number on this worker, while some trace holds the rule.
pub type RuleNumber = u32;

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// A trace's distinct rules, held in its map entry up to a realistic trace's count (a
/// policy-level and a rule-level row for each of up to three hits) and on the heap beyond it,
/// so an update finds its rules with the trace's lookup alone.
type TraceRuleNumbers = SmallVec<[RuleNumber; 6]>;

/// A held rule and how many traces hold it.
#[derive(Debug)]
struct HeldRule {
    rule: PolicyRule,
    traces: u32,
}

/// The distinct rules of every trace the catalog holds, on one worker.
///
/// Invariant: a record's trace reaches [`TraceRules::rules_of`] only after its trace's rules
/// were inserted: batches are handed to the engine one at a time under the catalog's handover
/// lock, each taking the rules queued so far, so the rules of a trace travel (to every worker)
/// in the first batch handed over after the trace was interned, no later than any record of
/// it, and a worker inserts a batch's rules before its records. A trace's rules are removed
/// only once no retained flow uses the trace.
#[derive(Debug, Default)]
pub struct TraceRules {
    /// Each trace's distinct rules, by number.
    traces: FxMap<TraceId, TraceRuleNumbers>,
    /// The rule of each number; a number no trace holds is in `free`.
    rules: Vec<HeldRule>,
    /// The number of each held rule.
    numbers: FxMap<PolicyRule, RuleNumber>,
    /// Numbers no trace holds, to be given again.
    free: Vec<RuleNumber>,
}

impl TraceRules {
    /// Adds the rules of newly interned traces (each rule once per trace).
    pub fn insert(&mut self, rules: &[(TraceId, PolicyRule)]) {
        for (trace, rule) in rules {
            let held = self.traces.entry(*trace).or_default();
            if held
                .iter()
                .any(|number| self.rules[*number as usize].rule == *rule)
            {
                continue;
            }
            let number = match self.numbers.entry(*rule) {
                Entry::Occupied(known) => *known.get(),
                Entry::Vacant(room) => {
                    let held_rule = HeldRule {
                        rule: *rule,
                        traces: 0,
                    };
                    let number = match self.free.pop() {
                        Some(number) => {
                            self.rules[number as usize] = held_rule;
                            number
                        }
                        None => {
                            self.rules.push(held_rule);
                            RuleNumber::try_from(self.rules.len() - 1)
                                .expect("fewer distinct rules than u32 numbers: the catalog's table limit bounds them")
                        }
                    };
                    *room.insert(number)
                }
            };
            self.rules[number as usize].traces += 1;
            held.push(number);
        }
    }

    /// Removes the rules of traces the catalog retired. A rule no trace holds any more gives
    /// up its number: sums held under it must have been taken first ([`RuleSums::take`]).
    pub fn retract(&mut self, rules: &[(TraceId, PolicyRule)]) {
        for (trace, rule) in rules {
            let Some(&number) = self.numbers.get(rule) else {
                continue;
            };
            let Some(held) = self.traces.get_mut(trace) else {
                continue;
            };
            let Some(at) = held.iter().position(|kept| *kept == number) else {
                continue;
            };
            held.remove(at);
            if held.is_empty() {
                self.traces.remove(trace);
            }
            let released = &mut self.rules[number as usize];
            released.traces -= 1;
            if released.traces == 0 {
                self.numbers.remove(rule);
                self.free.push(number);
            }
        }
    }

    /// The numbers of the distinct rules of `trace` (none if this worker holds no rules of it).
    pub fn rules_of(&self, trace: TraceId) -> &[RuleNumber] {
        self.traces.get(&trace).map_or(&[], SmallVec::as_slice)
    }

    /// The rule numbered `number`.
    pub fn rule(&self, number: RuleNumber) -> &PolicyRule {
        &self.rules[number as usize].rule
    }

    /// How many traces have rules here.
    pub fn len(&self) -> usize {
        self.traces.len()
    }

    /// Whether no trace has rules here.
    pub fn is_empty(&self) -> bool {
        self.traces.is_empty()
    }

    /// How many rules have numbers (some trace holds them).
    pub fn rules_held(&self) -> usize {
        self.numbers.len()
    }
}

/// The open tick's counters per (rule number, direction, bucket).
///
/// Bounded by the rules held times the (direction, bucket) pairs a tick's updates fall in:
/// each rule's slot keeps its room from one tick to the next.
#[derive(Debug, Default)]
pub struct RuleSums {
    /// Per rule number, the open tick's sums by direction and bucket.
    sums: Vec<RuleSlot>,
    /// The numbers whose slot holds sums.
    touched: Vec<RuleNumber>,
}

/// One rule's sums for the open tick. A rule's updates in a tick nearly all fall in one
/// (direction, bucket): that sum is held in the slot itself, so adding to it reads no memory
/// beyond the slot; any other pair's sum is in `others`.
#[derive(Debug, Default)]
struct RuleSlot {
    /// The first (direction, bucket) of the tick and its sum, if the slot holds sums.
    first: Option<(i32, Bucket, Stats)>,
    /// The sums of the tick's other (direction, bucket) pairs.
    others: Vec<(i32, Bucket, Stats)>,
}

impl RuleSums {
    /// Adds `stats` to the sums of each rule in `rules` in `direction` and `bucket`.
    pub fn add(&mut self, rules: &[RuleNumber], direction: i32, bucket: Bucket, stats: &Stats) {
        for &number in rules {
            let at = number as usize;
            if at >= self.sums.len() {
                self.sums.resize_with(at + 1, RuleSlot::default);
            }
            let slot = &mut self.sums[at];
            match &mut slot.first {
                Some((held_direction, held_bucket, sum))
                    if *held_direction == direction && *held_bucket == bucket =>
                {
                    sum.plus_equals(stats);
                }
                Some(_) => match slot
                    .others
                    .iter_mut()
                    .find(|(held_direction, held_bucket, _)| {
                        *held_direction == direction && *held_bucket == bucket
                    }) {
                    Some((_, _, sum)) => sum.plus_equals(stats),
                    None => slot.others.push((direction, bucket, *stats)),
                },
                None => {
                    slot.first = Some((direction, bucket, *stats));
                    self.touched.push(number);
                }
            }
        }
    }

    /// Hands each nonzero sum to `emit` as (rule number, direction, bucket, counters), leaving
    /// no sums.
    pub fn take(&mut self, mut emit: impl FnMut(RuleNumber, i32, Bucket, Stats)) {
        for number in self.touched.drain(..) {
            let slot = &mut self.sums[number as usize];
            for (direction, bucket, stats) in
                slot.first.take().into_iter().chain(slot.others.drain(..))
            {
                if !stats.is_zero() {
                    emit(number, direction, bucket, stats);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::StatLevel;

    fn rule(name: u32) -> PolicyRule {
        PolicyRule {
            kind: 1,
            tier: 2,
            namespace: 3,
            name,
            action: 1,
            rule_index: 0,
            level: StatLevel::Policy,
        }
    }

    fn names(rules: &TraceRules, trace: TraceId) -> Vec<u32> {
        rules
            .rules_of(trace)
            .iter()
            .map(|number| rules.rule(*number).name)
            .collect()
    }

    /// SPEC §8.2: a flow counts once per distinct rule of its trace, however often the trace
    /// names the rule.
    #[test]
    fn a_trace_holds_each_distinct_rule_once_and_traces_share_numbers() {
        let mut rules = TraceRules::default();
        rules.insert(&[(1, rule(10)), (1, rule(11)), (1, rule(10)), (2, rule(11))]);
        assert_eq!(names(&rules, 1), vec![10, 11]);
        assert_eq!(names(&rules, 2), vec![11]);
        assert_eq!(rules.rules_of(1)[1], rules.rules_of(2)[0]);
        assert_eq!(rules.rules_held(), 2);
        assert!(rules.rules_of(3).is_empty());
    }

    #[test]
    fn a_rule_keeps_its_number_while_a_trace_holds_it_and_a_freed_number_is_given_again() {
        let mut rules = TraceRules::default();
        rules.insert(&[(1, rule(10)), (1, rule(11)), (2, rule(10))]);
        let ten = rules.rules_of(1)[0];
        rules.retract(&[(1, rule(10))]);
        assert_eq!(names(&rules, 1), vec![11]);
        assert_eq!(rules.rules_of(2), &[ten]);
        rules.retract(&[(2, rule(10)), (2, rule(10))]);
        assert_eq!(rules.len(), 1);
        assert_eq!(rules.rules_held(), 1);
        rules.insert(&[(3, rule(12))]);
        assert_eq!(rules.rules_of(3), &[ten]);
        assert_eq!(rules.rule(ten).name, 12);
        rules.retract(&[(1, rule(11)), (3, rule(12))]);
        assert!(rules.is_empty());
        assert_eq!(rules.rules_held(), 0);
    }

    #[test]
    fn sums_add_per_rule_direction_and_bucket_and_leave_out_zeros() {
        let mut sums = RuleSums::default();
        let stats = |packets_in| Stats {
            records: 1,
            packets_in,
            ..Stats::default()
        };
        sums.add(&[0, 2], 1, 60, &stats(5));
        sums.add(&[2], 1, 60, &stats(7));
        sums.add(&[2], 2, 60, &stats(1));
        sums.add(&[0], 1, 75, &stats(3));
        let mut gone = stats(4);
        gone.records = -1;
        gone.packets_in = -3;
        sums.add(&[0], 1, 75, &gone);
        let mut taken = Vec::new();
        sums.take(|number, direction, bucket, stats| {
            taken.push((number, direction, bucket, stats.records, stats.packets_in));
        });
        taken.sort_unstable();
        assert_eq!(
            taken,
            vec![(0, 1, 60, 1, 5), (2, 1, 60, 2, 12), (2, 2, 60, 1, 1)]
        );
        let mut again = 0;
        sums.take(|_, _, _, _| again += 1);
        assert_eq!(again, 0);
        sums.add(&[2], 2, 90, &stats(6));
        sums.add(&[2], 1, 90, &stats(2));
        sums.add(&[2], 2, 90, &stats(1));
        let mut next_tick = Vec::new();
        sums.take(|number, direction, bucket, stats| {
            next_tick.push((number, direction, bucket, stats.records, stats.packets_in));
        });
        next_tick.sort_unstable();
        assert_eq!(next_tick, vec![(2, 1, 90, 1, 2), (2, 2, 90, 2, 7)]);
    }
}
