//! An open-addressing table of update fingerprints and their arrival seconds: one or two
//! cache lines touched per lookup, no allocation once grown, cleared in one pass.
//!
//! State: slots of 12 bytes (the fingerprint, and the arrival as seconds after the table's
//! first arrival), at most three quarters of them used, so a linear probe ends within a few
//! slots. The slots start few and double as entries arrive, up to a third more than the
//! capacity (not a power of two: a slot is found by multiplying the fingerprint's hash by the
//! slot count), so an idle scope costs little and a full one 16 bytes per fingerprint.
//! Fingerprint 0 marks an empty slot; a real 0 is stored as 1 (a one-in-2^64 merge of two
//! fingerprints, the same odds as any other collision).

/// A fingerprint and its arrival, as a slot stores them.
#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    low: u32,
    high: u32,
    /// Seconds after the table's `base`, saturated; [`FORGOTTEN`] for a forgotten one.
    arrived: i32,
}

impl Slot {
    fn fingerprint(&self) -> u64 {
        u64::from(self.high) << 32 | u64::from(self.low)
    }
}

/// The arrival of a forgotten fingerprint: the beginning of time.
const FORGOTTEN: i32 = i32::MIN;

/// A fingerprint table holding at most `capacity` entries.
#[derive(Debug)]
pub struct FingerprintTable {
    slots: Vec<Slot>,
    /// The second arrivals are counted from: the first arrival since the table was empty.
    base: i64,
    len: usize,
    capacity: usize,
}

/// Slots of a new table, before it grows.
const INITIAL_SLOTS: usize = 1024;

fn stored(fingerprint: u64) -> u64 {
    fingerprint.max(1)
}

/// The slots a table of `capacity` entries grows to: a third more, so at most three quarters
/// are used.
fn full_size(capacity: usize) -> usize {
    capacity + capacity.div_ceil(3)
}

/// The slot of `slots` holding `fingerprint`, or the empty slot where it would go.
fn slot_in(slots: &[Slot], fingerprint: u64) -> usize {
    let hash = fingerprint.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut slot = ((u128::from(hash) * slots.len() as u128) >> 64) as usize;
    loop {
        let held = slots[slot].fingerprint();
        if held == fingerprint || held == 0 {
            return slot;
        }
        slot += 1;
        if slot == slots.len() {
            slot = 0;
        }
    }
}

impl FingerprintTable {
    /// An empty table for `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let slots = full_size(capacity).min(INITIAL_SLOTS);
        FingerprintTable {
            slots: vec![Slot::default(); slots],
            base: 0,
            len: 0,
            capacity,
        }
    }

    /// The slot holding `fingerprint`, or the empty slot where it would go.
    fn slot_of(&self, fingerprint: u64) -> usize {
        slot_in(&self.slots, fingerprint)
    }

    /// Doubles the slots (up to the full size) and places every entry again.
    fn grow(&mut self) {
        let size = (self.slots.len() * 2).min(full_size(self.capacity));
        let mut grown = vec![Slot::default(); size];
        for held in self.slots.iter().filter(|held| held.fingerprint() != 0) {
            let slot = slot_in(&grown, held.fingerprint());
            grown[slot] = *held;
        }
        self.slots = grown;
    }

    /// When `fingerprint` last arrived, if the table holds it.
    pub fn arrival(&self, fingerprint: u64) -> Option<i64> {
        let fingerprint = stored(fingerprint);
        let held = self.slots[self.slot_of(fingerprint)];
        (held.fingerprint() == fingerprint).then(|| match held.arrived {
            FORGOTTEN => i64::MIN,
            arrived => self.base + i64::from(arrived),
        })
    }

    /// `now` as a slot stores it.
    fn offset(&self, now: i64) -> i32 {
        let offset = now.saturating_sub(self.base);
        i32::try_from(offset).unwrap_or(if offset < 0 { FORGOTTEN + 1 } else { i32::MAX })
    }

    /// Records that `fingerprint` arrived at `now`. Returns false, changing nothing, when the
    /// fingerprint is new and the table is full.
    pub fn record(&mut self, fingerprint: u64, now: i64) -> bool {
        let fingerprint = stored(fingerprint);
        if self.len == 0 {
            self.base = now;
        }
        let slot = self.slot_of(fingerprint);
        if self.slots[slot].fingerprint() != 0 {
            self.slots[slot].arrived = self.offset(now);
            return true;
        }
        if self.len >= self.capacity {
            return false;
        }
        self.len += 1;
        let slot = if self.len * 4 > self.slots.len() * 3 {
            self.grow();
            self.slot_of(fingerprint)
        } else {
            slot
        };
        self.slots[slot] = Slot {
            low: fingerprint as u32,
            high: (fingerprint >> 32) as u32,
            arrived: self.offset(now),
        };
        true
    }

    /// Makes `fingerprint`, if held, look as if it arrived at the beginning of time, so it no
    /// longer matches within any horizon. Its slot stays taken until the table is cleared.
    pub fn forget(&mut self, fingerprint: u64) {
        let fingerprint = stored(fingerprint);
        let slot = self.slot_of(fingerprint);
        if self.slots[slot].fingerprint() == fingerprint {
            self.slots[slot].arrived = FORGOTTEN;
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
            .filter(|held| held.fingerprint() != 0 && held.arrived != FORGOTTEN)
            .filter(|held| self.base + i64::from(held.arrived) > since)
            .count()
    }

    /// Forgets every fingerprint.
    pub fn clear(&mut self) {
        if self.len > 0 {
            self.slots.fill(Slot::default());
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

    /// SPEC §9.4: a full table of a million fingerprints takes 16 bytes each, and every one
    /// is found with its arrival.
    #[test]
    fn a_full_table_uses_three_quarters_of_its_twelve_byte_slots() {
        assert_eq!(std::mem::size_of::<Slot>(), 12);
        let capacity = 1_000_000;
        let mut table = FingerprintTable::new(capacity);
        for i in 0..capacity as u64 {
            assert!(table.record(
                i.wrapping_mul(0x2545_F491_4F6C_DD1D),
                1_000 + (i % 360) as i64
            ));
        }
        assert!(table.is_full());
        assert_eq!(table.slots.len(), 1_333_334);
        for i in (0..capacity as u64).step_by(997) {
            assert_eq!(
                table.arrival(i.wrapping_mul(0x2545_F491_4F6C_DD1D)),
                Some(1_000 + (i % 360) as i64)
            );
        }
    }

    #[test]
    fn arrivals_are_kept_across_clock_steps_and_forgetting_wins_over_any_horizon() {
        let mut table = FingerprintTable::new(8);
        assert!(table.record(1, 5_000));
        assert!(table.record(2, 4_990));
        assert!(table.record(3, i64::MAX));
        assert_eq!(table.arrival(1), Some(5_000));
        assert_eq!(table.arrival(2), Some(4_990));
        assert_eq!(
            table.arrival(3),
            Some(5_000 + i64::from(i32::MAX)),
            "saturated"
        );
        table.forget(2);
        assert_eq!(table.arrival(2), Some(i64::MIN));
        assert_eq!(table.count_arrived_after(4_000), 2);
        table.clear();
        assert!(table.record(2, 9_000));
        assert_eq!(table.arrival(2), Some(9_000));
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
