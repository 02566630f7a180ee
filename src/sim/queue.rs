//! The event queue: a min-heap ordered by (time, insertion sequence), so
//! events at equal times pop in the order they were scheduled, never in an
//! order that depends on the heap's internals.
//!
//! The arrival process is a chain (each arrival schedules the next), so at
//! most one arrival is ever pending. It waits in a slot beside the heap
//! instead of in it: one heap push and one pop fewer per workflow, with
//! the same (time, seq) order.
//!
//! Policy wake-ups (a hedge deadline per qualifying attempt, under `full`
//! a third of all events) carry no payload: they wait in a heap of bare
//! keys beside the main one, 16 bytes an entry instead of 32, and the main
//! heap holds fewer levels for everything else. Keys come from one
//! sequence, so the order is exactly that of a single heap.

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
    /// Keys of pending wake-ups; each pops as `wake`.
    wakes: MinHeap<u128>,
    wake: Option<E>,
    seq: u64,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue {
            heap: MinHeap::default(),
            arrival: None,
            wakes: MinHeap::default(),
            wake: None,
            seq: 0,
        }
    }
}

impl<E: Copy> EventQueue<E> {
    /// An empty queue whose [`push_wake`](Self::push_wake)s pop as `wake`.
    pub fn with_wake(wake: E) -> Self {
        EventQueue {
            wake: Some(wake),
            ..Self::default()
        }
    }

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

    /// Schedules a wake-up (the event given to [`with_wake`](Self::with_wake))
    /// at `time`, ordered exactly as [`push`](Self::push) would order it.
    ///
    /// # Panics
    /// If the queue was not made by `with_wake` (a driver bug).
    #[inline]
    pub fn push_wake(&mut self, time: SimTime) {
        assert!(self.wake.is_some(), "a wake-up needs EventQueue::with_wake");
        let key = self.next_key(time);
        self.wakes.push(key);
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
        if let Some(&w) = self.wakes.peek()
            && self.arrival.as_ref().is_none_or(|a| w < a.key)
            && self.heap.peek().is_none_or(|h| w < h.key)
        {
            self.wakes.pop();
            // Never `None`: `push_wake`, the only way in, asserts the wake
            // event. (An `expect` here instead changed how LLVM inlined the
            // event loop: 2% more instructions on M/M/8 and fork-join.)
            return Some((SimTime((w >> 64) as u64), self.wake?));
        }
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

    /// Drops every pending event (the sequence goes on).
    pub fn clear(&mut self) {
        self.heap = MinHeap::default();
        self.arrival = None;
        self.wakes = MinHeap::default();
    }

    /// Events pending.
    pub fn len(&self) -> usize {
        self.heap.len() + self.arrival.is_some() as usize + self.wakes.len()
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

    /// Model-based check against a BTreeMap shadow keyed by (time, seq):
    /// events, the pending arrival and wake-ups pop in one order.
    #[test]
    fn matches_btreemap_shadow() {
        const WAKE: u64 = u64::MAX;
        let mut rng = keyed(5, Stream::Factory, [0; 4]);
        let mut q = EventQueue::with_wake(WAKE);
        let mut shadow = BTreeMap::new();
        let mut seq = 0u64;
        // Events carry even payloads, arrivals odd ones; one is pending at a time.
        let mut arrival_pending = false;
        let (mut wakes_popped, mut arrivals_popped) = (0, 0);
        for i in 0..100_000u64 {
            // Half the steps pop, so the queue stays short and the pending
            // arrival keeps coming due among the others.
            let roll = rng.next_u32() % 8;
            let t = SimTime((rng.next_u32() % 50) as u64);
            if roll < 2 || shadow.is_empty() {
                seq += 1;
                q.push(t, 2 * i);
                shadow.insert((t, seq), 2 * i);
            } else if roll == 2 && !arrival_pending {
                seq += 1;
                q.push_arrival(t, 2 * i + 1);
                shadow.insert((t, seq), 2 * i + 1);
                arrival_pending = true;
            } else if roll == 3 {
                seq += 1;
                q.push_wake(t);
                shadow.insert((t, seq), WAKE);
            } else {
                let (k, v) = shadow.pop_first().unwrap();
                assert_eq!(q.pop(), Some((k.0, v)));
                if v == WAKE {
                    wakes_popped += 1;
                } else if v % 2 == 1 {
                    arrivals_popped += 1;
                    arrival_pending = false;
                }
            }
            assert_eq!(q.len(), shadow.len());
        }
        // Each kind was interleaved with the others many times.
        assert!(
            wakes_popped > 2_000 && arrivals_popped > 2_000,
            "wake-ups popped {wakes_popped}, arrivals {arrivals_popped}"
        );
        while let Some((k, v)) = shadow.pop_first() {
            assert_eq!(q.pop(), Some((k.0, v)));
        }
        assert!(q.is_empty());
    }

    #[test]
    #[should_panic(expected = "with_wake")]
    fn a_wake_up_needs_a_wake_event() {
        EventQueue::<u8>::default().push_wake(SimTime(1));
    }
}
