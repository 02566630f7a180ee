//! The event queue: a binary heap ordered by (time, insertion sequence), so
//! events at equal times pop in the order they were scheduled, never in an
//! order that depends on the heap's internals.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::units::SimTime;

/// `key` packs (time, seq) into one integer: one comparison per sift step.
#[derive(Debug)]
struct Entry<E> {
    key: u128,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, o: &Self) -> bool {
        self.key == o.key
    }
}
impl<E> Eq for Entry<E> {}
impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<E> Ord for Entry<E> {
    fn cmp(&self, o: &Self) -> Ordering {
        // Reversed for a min-heap.
        o.key.cmp(&self.key)
    }
}

/// A deterministic min-queue of timed events.
#[derive(Debug)]
pub struct EventQueue<E> {
    heap: BinaryHeap<Entry<E>>,
    seq: u64,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl<E> EventQueue<E> {
    /// Schedules `event` at `time`.
    #[inline]
    pub fn push(&mut self, time: SimTime, event: E) {
        self.seq += 1;
        self.heap.push(Entry {
            key: ((time.0 as u128) << 64) | self.seq as u128,
            event,
        });
    }

    /// The earliest event (FIFO among equal times).
    #[inline]
    pub fn pop(&mut self) -> Option<(SimTime, E)> {
        self.heap
            .pop()
            .map(|e| (SimTime((e.key >> 64) as u64), e.event))
    }

    /// Events pending.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Stream, keyed};
    use rand::Rng;
    use std::collections::BTreeMap;

    /// Model-based check against a BTreeMap shadow keyed by (time, seq).
    #[test]
    fn matches_btreemap_shadow() {
        let mut rng = keyed(5, Stream::Factory, [0; 4]);
        let mut q = EventQueue::default();
        let mut shadow = BTreeMap::new();
        let mut seq = 0u64;
        for i in 0..100_000u64 {
            if rng.next_u32() % 3 != 0 || shadow.is_empty() {
                let t = SimTime((rng.next_u32() % 50) as u64);
                seq += 1;
                q.push(t, i);
                shadow.insert((t, seq), i);
            } else {
                let (k, v) = shadow.pop_first().unwrap();
                assert_eq!(q.pop(), Some((k.0, v)));
            }
        }
        while let Some((k, v)) = shadow.pop_first() {
            assert_eq!(q.pop(), Some((k.0, v)));
        }
        assert!(q.is_empty());
    }
}
