//! What a node replays after a reconnect: one record per recent flush (its time, the random
//! state it was generated from, how many of its updates were sent), from which the identical
//! updates are regenerated. Memory is a few words per flush, not a copy of every update.

use std::collections::VecDeque;

use rand::rngs::SmallRng;

use crate::proto::FlowUpdate;
use crate::synth::Cluster;

struct FlushRecord {
    seq: u64,
    time: i64,
    rng: SmallRng,
    sent: usize,
}

/// The flushes of the last `span` seconds, oldest first.
pub struct History {
    span: i64,
    records: VecDeque<FlushRecord>,
}

impl History {
    /// An empty history keeping `span` seconds.
    pub fn new(span: i64) -> History {
        History {
            span,
            records: VecDeque::new(),
        }
    }

    /// The oldest flow time a replay at `now` still covers.
    pub fn cutoff(&self, now: i64) -> i64 {
        now.saturating_sub(self.span)
    }

    /// Remembers flush `seq` at `time`, generated from `rng`, if it is recent enough to be
    /// replayed; `seq` must grow from one call to the next.
    pub fn record(&mut self, seq: u64, time: i64, rng: SmallRng, now: i64) {
        if time >= self.cutoff(now) {
            self.records.push_back(FlushRecord {
                seq,
                time,
                rng,
                sent: 0,
            });
        }
    }

    /// Counts one sent update of flush `seq`; returns false when that flush is not kept
    /// (too old), so the caller must keep its own copy until the receipt.
    pub fn sent(&mut self, seq: u64) -> bool {
        match self.records.binary_search_by_key(&seq, |r| r.seq) {
            Ok(at) => {
                self.records[at].sent += 1;
                true
            }
            Err(_) => false,
        }
    }

    /// Every update sent from a flush of the last `span` seconds, regenerated, oldest first.
    pub fn replay(&mut self, cluster: &Cluster, node: usize, now: i64) -> Vec<(u64, FlowUpdate)> {
        let cutoff = self.cutoff(now);
        while self.records.front().is_some_and(|r| r.time < cutoff) {
            self.records.pop_front();
        }
        let mut updates = Vec::new();
        for record in &self.records {
            let mut rng = record.rng.clone();
            let flows = cluster.report(node, record.time, &mut rng);
            updates.extend(
                flows
                    .into_iter()
                    .take(record.sent)
                    .map(|flow| (record.seq, FlowUpdate { flow: Some(flow) })),
            );
        }
        updates
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn a_replay_regenerates_exactly_what_was_sent_recently() {
        let cluster = Cluster::generate(1, 1, 5);
        let mut rng = SmallRng::seed_from_u64(9);
        let mut history = History::new(300);
        let now = 1_700_000_000;
        let mut sent = Vec::new();
        for (seq, time) in [(0, now - 400), (1, now - 20), (2, now - 5)] {
            history.record(seq, time, rng.clone(), now);
            let flows = cluster.report(0, time, &mut rng);
            let count = if seq == 2 { 3 } else { flows.len() };
            for flow in flows.into_iter().take(count) {
                let kept = history.sent(seq);
                assert_eq!(kept, seq != 0, "the flush 400 s ago is not kept");
                if kept {
                    sent.push(FlowUpdate { flow: Some(flow) });
                }
            }
        }
        let replayed: Vec<FlowUpdate> = history
            .replay(&cluster, 0, now)
            .into_iter()
            .map(|(_, u)| u)
            .collect();
        assert_eq!(replayed, sent);
        assert_eq!(
            history.replay(&cluster, 0, now + 300).len(),
            0,
            "all aged out"
        );
    }
}
