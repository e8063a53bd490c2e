//! Where each value of an intern table lies, by id: pages of [`PAGE`] slots in id order, 12
//! bytes a slot.
//!
//! Ids are given in order and never reused, so the ids a table holds are dense where values
//! were interned together and thin out as the collector removes values no retained flow uses.
//! Pages are found by their number in a small hash map (a few thousand pages for a million
//! values), so how far ids have climbed costs nothing. A page is allocated when its first id
//! is placed and freed when its last is removed, so
//! values that churn together (a generation of pods) leave no page behind, and a page held by
//! one long-lived value costs 3 KiB (`eddy_interned_slot_bytes` shows what the pages take). A hash map by id spent 17 bytes a slot at a load factor
//! of 0.45–0.875 (up to 38 bytes a value, measured 36 on the realistic workload).

use std::sync::atomic::AtomicU32;

use rustc_hash::FxHashMap;

/// Slots in one page (3 KiB).
pub const PAGE: usize = 256;

/// Where one value lies in its table's arena, and the collection round it was last interned
/// in (saturated at `u32::MAX`, some 2,000 years of 15-second rounds).
#[derive(Debug)]
pub struct Slot {
    pub start: u32,
    pub len: u32,
    pub touched: AtomicU32,
}

/// The `len` of a slot no value holds: no value is 4 GiB (arena offsets are 32-bit).
const VACANT: u32 = u32::MAX;

impl Slot {
    fn vacant() -> Slot {
        Slot {
            start: 0,
            len: VACANT,
            touched: AtomicU32::new(0),
        }
    }

    fn is_held(&self) -> bool {
        self.len != VACANT
    }

    pub fn range(&self) -> std::ops::Range<usize> {
        self.start as usize..self.start as usize + self.len as usize
    }
}

/// One page of slots and how many of them hold a value.
#[derive(Debug)]
struct Page {
    slots: [Slot; PAGE],
    held: usize,
}

/// The slots of a table by id.
#[derive(Debug, Default)]
pub struct Slots {
    /// Page `n` holds ids `n * PAGE ..`; absent when none of them is held.
    pages: FxHashMap<u32, Box<Page>>,
    len: usize,
}

fn place_of(id: u32) -> (u32, usize) {
    (id / PAGE as u32, id as usize % PAGE)
}

impl Slots {
    /// The slot of `id`, if held.
    pub fn get(&self, id: &u32) -> Option<&Slot> {
        let (page, at) = place_of(*id);
        let slot = &self.pages.get(&page)?.slots[at];
        slot.is_held().then_some(slot)
    }

    /// The slot of `id`, if held, to change.
    pub fn get_mut(&mut self, id: &u32) -> Option<&mut Slot> {
        let (page, at) = place_of(*id);
        let slot = &mut self.pages.get_mut(&page)?.slots[at];
        slot.is_held().then_some(slot)
    }

    /// Whether `id` is held.
    pub fn contains_key(&self, id: &u32) -> bool {
        self.get(id).is_some()
    }

    /// Places `slot` at `id`, replacing and returning the slot held there.
    pub fn insert(&mut self, id: u32, slot: Slot) -> Option<Slot> {
        let (page, at) = place_of(id);
        let page = self.pages.entry(page).or_insert_with(|| {
            Box::new(Page {
                slots: std::array::from_fn(|_| Slot::vacant()),
                held: 0,
            })
        });
        let old = std::mem::replace(&mut page.slots[at], slot);
        if old.is_held() {
            return Some(old);
        }
        page.held += 1;
        self.len += 1;
        None
    }

    /// Removes and returns the slot of `id`, freeing its page when it was the page's last.
    pub fn remove(&mut self, id: &u32) -> Option<Slot> {
        let (number, at) = place_of(*id);
        let page = self.pages.get_mut(&number)?;
        if !page.slots[at].is_held() {
            return None;
        }
        let old = std::mem::replace(&mut page.slots[at], Slot::vacant());
        page.held -= 1;
        self.len -= 1;
        if page.held == 0 {
            self.pages.remove(&number);
        }
        Some(old)
    }

    /// How many ids are held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Every held id with its slot, ascending.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Slot)> {
        let mut numbers: Vec<u32> = self.pages.keys().copied().collect();
        numbers.sort_unstable();
        numbers.into_iter().flat_map(move |number| {
            self.pages[&number]
                .slots
                .iter()
                .enumerate()
                .filter(|(_, slot)| slot.is_held())
                .map(move |(at, slot)| (number * PAGE as u32 + at as u32, slot))
        })
    }

    /// Every held id, ascending.
    pub fn keys(&self) -> impl Iterator<Item = u32> + '_ {
        self.iter().map(|(id, _)| id)
    }

    /// Bytes of the pages allocated and of the map finding them.
    pub fn bytes(&self) -> usize {
        self.pages.len() * std::mem::size_of::<Page>()
            + self.pages.capacity() * (std::mem::size_of::<(u32, Box<Page>)>() + 1)
    }

    /// Frees the page map's room beyond the pages held.
    pub fn shrink_to_fit(&mut self) {
        self.pages.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    fn slot(start: u32) -> Slot {
        Slot {
            start,
            len: 3,
            touched: AtomicU32::new(7),
        }
    }

    #[test]
    fn slots_are_found_by_id_listed_ascending_and_pages_freed_when_empty() {
        let mut slots = Slots::default();
        for id in [5, 0, 2_000, 255, 256] {
            assert!(slots.insert(id, slot(id)).is_none());
        }
        assert_eq!(slots.len(), 5);
        assert_eq!(slots.pages.len(), 3);
        assert_eq!(slots.get(&2_000).map(|slot| slot.start), Some(2_000));
        assert_eq!(
            slots
                .get(&5)
                .map(|slot| slot.touched.load(Ordering::Relaxed)),
            Some(7)
        );
        assert!(slots.get(&6).is_none());
        assert!(slots.get(&u32::MAX).is_none());
        assert_eq!(
            slots.keys().collect::<Vec<_>>(),
            vec![0, 5, 255, 256, 2_000]
        );
        assert_eq!(slots.insert(5, slot(50)).map(|old| old.start), Some(5));
        assert_eq!(slots.len(), 5);
        assert_eq!(slots.remove(&256).map(|old| old.start), Some(256));
        assert!(slots.remove(&256).is_none());
        assert_eq!(slots.pages.len(), 2, "the second page is freed");
        assert!(slots.remove(&2_000).is_some());
        slots.shrink_to_fit();
        assert_eq!(slots.pages.len(), 1);
        assert_eq!(
            slots.bytes(),
            256 * 12 + 8 + slots.pages.capacity() * 17,
            "a page and its place in the map"
        );
        assert!(slots.insert(u32::MAX - 1, slot(7)).is_none());
        assert_eq!(slots.pages.len(), 2, "a far id costs one page");
        assert!(slots.remove(&(u32::MAX - 1)).is_some());
        assert_eq!(slots.keys().collect::<Vec<_>>(), vec![0, 5, 255]);
        if let Some(held) = slots.get_mut(&255) {
            held.start = 99;
        }
        assert_eq!(slots.get(&255).map(|slot| slot.range()), Some(99..102));
    }
}
