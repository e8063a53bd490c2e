//! Slots in the stream limit and the per-peer cap (SPEC §7.5, §12.5): a stream takes one
//! when it opens and gives it back exactly once, when its client goes away or when the server
//! ends it, whichever comes first, so a client that never reads cannot keep a slot.
//!
//! State: the count of open streams (shared with the counters) and, when the per-peer cap is
//! on, a count per peer IP address with an entry only for peers holding a slot.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Why a slot was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Every slot of the stream limit is taken.
    Limit(usize),
    /// The peer holds as many streams as the per-peer cap allows.
    Peer(IpAddr, usize),
}

/// The slots of the stream limit and the per-peer cap.
#[derive(Debug)]
pub struct Slots {
    max_streams: usize,
    per_peer: Option<usize>,
    active: Arc<AtomicUsize>,
    held_by_peer: Mutex<HashMap<IpAddr, usize>>,
}

impl Slots {
    /// Slots for at most `max_streams` streams, at most `per_peer` from one peer address;
    /// `active` counts the slots taken.
    pub fn new(max_streams: usize, per_peer: Option<usize>, active: Arc<AtomicUsize>) -> Self {
        Slots {
            max_streams,
            per_peer,
            active,
            held_by_peer: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a slot for a stream from `peer` (unknown: counted in the limit only).
    pub fn take(self: &Arc<Self>, peer: Option<IpAddr>) -> Result<Slot, Refusal> {
        if self.active.fetch_add(1, Ordering::SeqCst) >= self.max_streams {
            self.active.fetch_sub(1, Ordering::SeqCst);
            return Err(Refusal::Limit(self.max_streams));
        }
        let counted_peer = match (self.per_peer, peer) {
            (Some(cap), Some(peer)) => {
                let mut held = self
                    .held_by_peer
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let count = held.entry(peer).or_insert(0);
                if *count >= cap {
                    if *count == 0 {
                        held.remove(&peer);
                    }
                    drop(held);
                    self.active.fetch_sub(1, Ordering::SeqCst);
                    return Err(Refusal::Peer(peer, cap));
                }
                *count += 1;
                Some(peer)
            }
            _ => None,
        };
        Ok(Slot {
            slots: self.clone(),
            peer: counted_peer,
            held: AtomicBool::new(true),
        })
    }

    /// Slots held by `peer` under the per-peer cap (0 when the cap is off).
    pub fn held_by(&self, peer: IpAddr) -> usize {
        self.held_by_peer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&peer)
            .copied()
            .unwrap_or(0)
    }
}

/// One stream's slot; given back by [`Slot::release`], once.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    peer: Option<IpAddr>,
    held: AtomicBool,
}

impl Slot {
    /// Gives the slot back. Returns whether this call did (false if it already was).
    pub fn release(&self) -> bool {
        if !self.held.swap(false, Ordering::SeqCst) {
            return false;
        }
        if let Some(peer) = self.peer {
            let mut held = self
                .slots
                .held_by_peer
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(count) = held.get_mut(&peer) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    held.remove(&peer);
                }
            }
        }
        self.slots.active.fetch_sub(1, Ordering::SeqCst);
        true
    }

    /// Whether the slot was given back.
    pub fn is_released(&self) -> bool {
        !self.held.load(Ordering::SeqCst)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(max: usize, per_peer: Option<usize>) -> Arc<Slots> {
        Arc::new(Slots::new(max, per_peer, Arc::new(AtomicUsize::new(0))))
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn the_limit_holds_and_a_released_slot_is_taken_again() {
        let slots = slots(2, None);
        let first = slots.take(Some(A)).expect("a free slot");
        let _second = slots.take(None).expect("a free slot");
        assert_eq!(
            slots.take(Some(B)).expect_err("the limit is reached"),
            Refusal::Limit(2)
        );
        assert!(first.release());
        assert!(!first.release(), "a slot is given back once");
        assert!(first.is_released());
        assert_eq!(slots.active.load(Ordering::SeqCst), 1);
        let _third = slots.take(Some(B)).expect("the released slot");
        assert_eq!(slots.active.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn the_per_peer_cap_counts_each_address_apart_and_forgets_empty_ones() {
        let slots = slots(10, Some(2));
        let a1 = slots.take(Some(A)).expect("under the cap");
        let a2 = slots.take(Some(A)).expect("under the cap");
        assert_eq!(
            slots.take(Some(A)).expect_err("A is at its cap"),
            Refusal::Peer(A, 2)
        );
        let b1 = slots.take(Some(B)).expect("another peer");
        assert_eq!(slots.held_by(A), 2);
        assert_eq!(slots.active.load(Ordering::SeqCst), 3);
        drop(a1);
        let _a3 = slots.take(Some(A)).expect("a slot A gave back");
        drop(a2);
        drop(b1);
        assert_eq!(slots.held_by(B), 0);
        assert_eq!(slots.held_by_peer.lock().expect("not poisoned").len(), 1);
        assert_eq!(slots.active.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn without_a_cap_peers_are_not_tracked() {
        let slots = slots(10, None);
        let _held: Vec<Slot> = (0..5)
            .map(|_| slots.take(Some(A)).expect("no cap"))
            .collect();
        assert_eq!(slots.held_by(A), 0);
        assert_eq!(slots.active.load(Ordering::SeqCst), 5);
    }
}
