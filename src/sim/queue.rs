//! The event queue: a min-heap ordered by (time, insertion sequence), so
//! events at equal times pop in the order they were scheduled, never in an
//! order that depends on the heap's internals.
//!
//! The arrival process is a chain (each arrival schedules the next), so at
//! most one arrival is ever pending. It waits in a slot beside the heap
//! instead of in it: one heap push and one pop fewer per workflow, with
//! the same (time, seq) order.

use std::cmp::Ordering;

use crate::minheap::MinHeap;
use crate::units::SimTime;

/// `key` packs (time, seq) into one integer: one comparison per sift step.
#[derive(Clone, Copy, Debug)]
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
        self.key.cmp(&o.key)
    }
}

/// A deterministic min-queue of timed events.
#[derive(Debug)]
pub struct EventQueue<E> {
    heap: MinHeap<Entry<E>>,
    arrival: Option<Entry<E>>,
    seq: u64,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue {
            heap: MinHeap::default(),
            arrival: None,
            seq: 0,
        }
    }
}

impl<E: Copy> EventQueue<E> {
    /// Schedules `event` at `time`.
    #[inline]
    pub fn push(&mut self, time: SimTime, event: E) {
        let key = self.next_key(time);
        self.heap.push(Entry { key, event });
    }

    /// Schedules the next arrival, ordered exactly as [`push`](Self::push)
    /// would order it. At most one arrival may be pending.
    ///
    /// # Panics
    /// If an arrival is already pending (a driver bug).
    #[inline]
    pub fn push_arrival(&mut self, time: SimTime, event: E) {
        assert!(self.arrival.is_none(), "one pending arrival at a time");
        let key = self.next_key(time);
        self.arrival = Some(Entry { key, event });
    }

    #[inline]
    fn next_key(&mut self, time: SimTime) -> u128 {
        self.seq += 1;
        time.with_seq(self.seq)
    }

    /// The earliest event (FIFO among equal times). Always inlined: a run
    /// that records its workflows (`simulate`, a sweep's runs) made it a
    /// call of its own.
    #[inline(always)]
    pub fn pop(&mut self) -> Option<(SimTime, E)> {
        let arrival_first = match (&self.arrival, self.heap.peek()) {
            (Some(a), Some(h)) => a.key < h.key,
            (a, _) => a.is_some(),
        };
        let e = if arrival_first {
            self.arrival.take()
        } else {
            self.heap.pop()
        }?;
        Some((SimTime((e.key >> 64) as u64), e.event))
    }

    /// Events pending.
    pub fn len(&self) -> usize {
        self.heap.len() + self.arrival.is_some() as usize
    }

    /// True when nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
        // Arrivals carry odd payloads; one is pending at a time.
        let mut arrival_pending = false;
        for i in 0..100_000u64 {
            let roll = rng.next_u32() % 6;
            if roll < 3 || shadow.is_empty() {
                let t = SimTime((rng.next_u32() % 50) as u64);
                seq += 1;
                let v = 2 * i;
                q.push(t, v);
                shadow.insert((t, seq), v);
            } else if roll == 3 && !arrival_pending {
                let t = SimTime((rng.next_u32() % 50) as u64);
                seq += 1;
                let v = 2 * i + 1;
                q.push_arrival(t, v);
                shadow.insert((t, seq), v);
                arrival_pending = true;
            } else {
                let (k, v) = shadow.pop_first().unwrap();
                assert_eq!(q.pop(), Some((k.0, v)));
                arrival_pending &= v % 2 == 0;
            }
            assert_eq!(q.len(), shadow.len());
        }
        while let Some((k, v)) = shadow.pop_first() {
            assert_eq!(q.pop(), Some((k.0, v)));
        }
        assert!(q.is_empty());
    }
}
