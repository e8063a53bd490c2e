//! A fixed-size open-addressing table of update fingerprints and their arrival seconds: one
//! cache line touched per lookup, no allocation after creation, cleared in one pass.
//!
//! State: `2^k` slots of (fingerprint, arrival), at most half of them used, so a linear probe
//! ends within a few slots. The slots start few and double as entries arrive, up to twice the
//! capacity, so an idle scope costs little. Fingerprint 0 marks an empty slot; a real 0 is stored as 1 (a
//! one-in-2^64 merge of two fingerprints, the same odds as any other collision).

/// A fingerprint table holding at most `capacity` entries.
#[derive(Debug)]
pub struct FingerprintTable {
    slots: Vec<(u64, i64)>,
    mask: usize,
    len: usize,
    capacity: usize,
}

/// Slots of a new table, before it grows.
const INITIAL_SLOTS: usize = 1024;

fn stored(fingerprint: u64) -> u64 {
    fingerprint.max(1)
}

/// The slot of `slots` holding `fingerprint`, or the empty slot where it would go.
fn slot_in(slots: &[(u64, i64)], mask: usize, fingerprint: u64) -> usize {
    let mut slot = (fingerprint.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20) as usize & mask;
    loop {
        let held = slots[slot].0;
        if held == fingerprint || held == 0 {
            return slot;
        }
        slot = (slot + 1) & mask;
    }
}

impl FingerprintTable {
    /// An empty table for `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let slots = (capacity * 2).min(INITIAL_SLOTS).next_power_of_two();
        FingerprintTable {
            slots: vec![(0, 0); slots],
            mask: slots - 1,
            len: 0,
            capacity,
        }
    }

    /// The slot holding `fingerprint`, or the empty slot where it would go.
    fn slot_of(&self, fingerprint: u64) -> usize {
        slot_in(&self.slots, self.mask, fingerprint)
    }

    /// Doubles the slots and places every entry again.
    fn grow(&mut self) {
        let slots = self.slots.len() * 2;
        let mask = slots - 1;
        let mut grown = vec![(0, 0); slots];
        for &(held, arrived) in self.slots.iter().filter(|(held, _)| *held != 0) {
            let slot = slot_in(&grown, mask, held);
            grown[slot] = (held, arrived);
        }
        self.slots = grown;
        self.mask = mask;
    }

    /// When `fingerprint` last arrived, if the table holds it.
    pub fn arrival(&self, fingerprint: u64) -> Option<i64> {
        let fingerprint = stored(fingerprint);
        let (held, arrived) = self.slots[self.slot_of(fingerprint)];
        (held == fingerprint).then_some(arrived)
    }

    /// Records that `fingerprint` arrived at `now`. Returns false, changing nothing, when the
    /// fingerprint is new and the table is full.
    pub fn record(&mut self, fingerprint: u64, now: i64) -> bool {
        let fingerprint = stored(fingerprint);
        let slot = self.slot_of(fingerprint);
        if self.slots[slot].0 != 0 {
            self.slots[slot].1 = now;
            return true;
        }
        if self.len >= self.capacity {
            return false;
        }
        self.len += 1;
        let slot = if self.len * 2 > self.slots.len() {
            self.grow();
            self.slot_of(fingerprint)
        } else {
            slot
        };
        self.slots[slot] = (fingerprint, now);
        true
    }

    /// Makes `fingerprint`, if held, look as if it arrived at the beginning of time, so it no
    /// longer matches within any horizon. Its slot stays taken until the table is cleared.
    pub fn forget(&mut self, fingerprint: u64) {
        let fingerprint = stored(fingerprint);
        let slot = self.slot_of(fingerprint);
        if self.slots[slot].0 == fingerprint {
            self.slots[slot].1 = i64::MIN;
        }
    }

    /// How many fingerprints the table holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table holds `capacity` fingerprints.
    pub fn is_full(&self) -> bool {
        self.len >= self.capacity
    }

    /// How many held fingerprints arrived after `since`.
    pub fn count_arrived_after(&self, since: i64) -> usize {
        self.slots
            .iter()
            .filter(|(held, arrived)| *held != 0 && *arrived > since)
            .count()
    }

    /// Forgets every fingerprint.
    pub fn clear(&mut self) {
        if self.len > 0 {
            self.slots.fill((0, 0));
            self.len = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_finds_fingerprints_including_zero() {
        let mut table = FingerprintTable::new(4);
        assert!(table.record(0, 10));
        assert!(table.record(u64::MAX, 11));
        assert!(table.record(0, 12));
        assert_eq!(table.arrival(0), Some(12));
        assert_eq!(table.arrival(u64::MAX), Some(11));
        assert_eq!(table.arrival(5), None);
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn a_full_table_refuses_new_fingerprints_but_updates_held_ones() {
        let mut table = FingerprintTable::new(2);
        assert!(table.record(1, 1));
        assert!(table.record(2, 1));
        assert!(table.is_full());
        assert!(!table.record(3, 2));
        assert!(table.record(2, 5));
        assert_eq!(table.arrival(2), Some(5));
        assert_eq!(table.count_arrived_after(1), 1);
        table.clear();
        assert_eq!(table.len(), 0);
        assert_eq!(table.arrival(1), None);
    }

    #[test]
    fn colliding_slots_probe_onwards() {
        let mut table = FingerprintTable::new(5000);
        let fingerprints: Vec<u64> = (1..=5000).map(|i| i << 40).collect();
        for (i, fingerprint) in fingerprints.iter().enumerate() {
            assert!(table.record(*fingerprint, i as i64));
        }
        for (i, fingerprint) in fingerprints.iter().enumerate() {
            assert_eq!(table.arrival(*fingerprint), Some(i as i64));
        }
    }
}
