//! The event queue: a min-queue ordered by (time, insertion sequence), so
//! events at equal times pop in the order they were scheduled, never in an
//! order that depends on the queue's internals.
//!
//! A few pending events (M/M/c holds one per server, the research agent
//! at most a few dozen) wait in an array in push order, scanned at a pop;
//! more wait in a binary heap (see `Pending`).
//!
//! The arrival process is a chain (each arrival schedules the next), so at
//! most one arrival is ever pending. It waits in a slot beside the other
//! events instead of among them: one push and one pop fewer per workflow,
//! with the same (time, seq) order.
//!
//! Policy wake-ups (a hedge deadline per qualifying attempt, under `full`
//! a third of all events) carry no payload: they wait in a heap of bare
//! keys beside the other events, 16 bytes an entry instead of 32, and
//! leave the others few. Keys come from one sequence, so the order is
//! exactly that of a single heap.

use std::cmp::Ordering;

use crate::minheap::{self, MinHeap};
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

/// Entries pending at most this many are kept in push order (see [`Pending`]).
const SCAN_MAX: usize = 32;
/// A heap that falls to this many entries goes back to push order.
const SCAN_BACK: usize = 16;

/// The pending events. While there are few (M/M/8 holds 8 or 9), they are
/// an array in push order, with the index of the least kept: a push is an
/// append and a comparison, a pop a scan of the times and a shift. A
/// binary heap's pop is a chain of dependent loads and comparisons, one
/// per level. In push order, the first entry of the least time has the
/// least sequence number among them, so the scan compares times only, as
/// one 8-byte integer with a conditional move, and the order is exactly
/// the heap's. Past [`SCAN_MAX`] entries they become a heap (in place),
/// and at [`SCAN_BACK`] an array again, sorted back into push order.
#[derive(Debug)]
struct Pending<E> {
    v: Vec<Entry<E>>,
    /// The least entry's index: 0 in a heap.
    least: usize,
    heap: bool,
}

impl<E> Default for Pending<E> {
    fn default() -> Self {
        Pending {
            v: Vec::new(),
            least: 0,
            heap: false,
        }
    }
}

/// An entry's time: the high half of its key.
#[inline(always)]
fn time_of(key: u128) -> u64 {
    (key >> 64) as u64
}

impl<E: Copy> Pending<E> {
    #[inline(always)]
    fn peek(&self) -> Option<&Entry<E>> {
        self.v.get(self.least)
    }

    #[inline(always)]
    fn push(&mut self, x: Entry<E>) {
        if self.heap {
            minheap::push(&mut self.v, x);
        } else if self.v.len() < SCAN_MAX {
            // Its sequence number is the greatest: it is least only if its
            // time is.
            if self
                .v
                .get(self.least)
                .is_none_or(|l| time_of(x.key) < time_of(l.key))
            {
                self.least = self.v.len();
            }
            self.v.push(x);
        } else {
            self.v.push(x);
            minheap::heapify(&mut self.v);
            self.heap = true;
            self.least = 0;
        }
    }

    #[inline(always)]
    fn pop(&mut self) -> Option<Entry<E>> {
        if self.heap {
            let x = minheap::pop(&mut self.v);
            if self.v.len() <= SCAN_BACK {
                self.back_to_push_order();
            }
            return x;
        }
        if self.least >= self.v.len() {
            return None;
        }
        let x = self.v.remove(self.least);
        let mut at = 0;
        if let Some(first) = self.v.first() {
            let mut t = time_of(first.key);
            for (i, e) in self.v.iter().enumerate().skip(1) {
                // Strictly less: the first of equal times wins.
                let lt = time_of(e.key) < t;
                t = if lt { time_of(e.key) } else { t };
                at = if lt { i } else { at };
            }
        }
        self.least = at;
        Some(x)
    }

    /// From a heap back to an array in push order.
    #[cold]
    fn back_to_push_order(&mut self) {
        // Push order is sequence order: the key's low half.
        self.v.sort_unstable_by_key(|e| e.key as u64);
        self.least = (0..self.v.len())
            .min_by_key(|&i| self.v[i].key)
            .unwrap_or(0);
        self.heap = false;
    }
}

/// A deterministic min-queue of timed events.
#[derive(Debug)]
pub struct EventQueue<E> {
    pending: Pending<E>,
    arrival: Option<Entry<E>>,
    /// Keys of pending wake-ups; each pops as `wake`.
    wakes: MinHeap<u128>,
    wake: Option<E>,
    seq: u64,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue {
            pending: Pending::default(),
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
        self.pending.push(Entry { key, event });
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
            && self.pending.peek().is_none_or(|h| w < h.key)
        {
            self.wakes.pop();
            // Never `None`: `push_wake`, the only way in, asserts the wake
            // event. (An `expect` here instead changed how LLVM inlined the
            // event loop: 2% more instructions on M/M/8 and fork-join.)
            return Some((SimTime((w >> 64) as u64), self.wake?));
        }
        let arrival_first = match (&self.arrival, self.pending.peek()) {
            (Some(a), Some(h)) => a.key < h.key,
            (a, _) => a.is_some(),
        };
        let e = if arrival_first {
            self.arrival.take()
        } else {
            self.pending.pop()
        }?;
        Some((SimTime((e.key >> 64) as u64), e.event))
    }

    /// Drops every pending event (the sequence goes on).
    pub fn clear(&mut self) {
        self.pending = Pending::default();
        self.arrival = None;
        self.wakes = MinHeap::default();
    }

    /// Events pending.
    pub fn len(&self) -> usize {
        self.pending.v.len() + self.arrival.is_some() as usize + self.wakes.len()
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

    proptest::proptest! {
        /// Bursts of pushes and pops that carry the pending events across
        /// both forms (push-order array and heap) and back, with times from
        /// a narrow range so that ties are common: every pop, peek and
        /// length equals a BTreeMap shadow's.
        #[test]
        fn both_forms_pop_in_key_order(
            bursts in proptest::collection::vec((proptest::bool::ANY, 1usize..48, 0u64..12), 1..40),
        ) {
            let mut q = EventQueue::default();
            let mut shadow = BTreeMap::new();
            let (mut seq, mut base, mut id) = (0u64, 0u64, 0u32);
            for (push, count, spread) in bursts {
                for _ in 0..count {
                    if push {
                        // Times ahead of the last popped, as a simulation's are.
                        let t = SimTime(base + (id as u64 * 7 + spread) % (spread + 1));
                        seq += 1;
                        q.push(t, id);
                        shadow.insert((t, seq), id);
                        id += 1;
                    } else {
                        let want = shadow.pop_first().map(|(k, v)| (k.0, v));
                        proptest::prop_assert_eq!(q.pop(), want);
                        if let Some((t, _)) = want {
                            base = t.0;
                        }
                    }
                    proptest::prop_assert_eq!(q.len(), shadow.len());
                    proptest::prop_assert_eq!(
                        q.pending.peek().map(|e| e.event),
                        shadow.first_key_value().map(|(_, &v)| v)
                    );
                }
            }
            while let Some((k, v)) = shadow.pop_first() {
                proptest::prop_assert_eq!(q.pop(), Some((k.0, v)));
            }
            proptest::prop_assert_eq!(q.pop(), None);
        }
    }

    /// The pending events turn into a heap past `SCAN_MAX` and back into
    /// an array at `SCAN_BACK`, popping in key order throughout (equal
    /// times in push order).
    #[test]
    fn turns_into_a_heap_and_back() {
        let mut q = EventQueue::default();
        let n = 3 * SCAN_MAX as u32;
        // Every time twice, pushed in descending order of time.
        for i in 0..n {
            q.push(SimTime(u64::from(n - i) / 2), i);
        }
        assert!(q.pending.heap, "a heap past SCAN_MAX entries");
        let mut popped = Vec::new();
        while q.pending.v.len() > SCAN_BACK {
            popped.push(q.pop().expect("pending"));
        }
        assert!(!q.pending.heap, "an array again at SCAN_BACK entries");
        // Pushes into the array land in order too.
        for i in n..n + 4 {
            q.push(SimTime(u64::from(n)), i);
        }
        popped.extend(std::iter::from_fn(|| q.pop()));
        let time = |i: u32| {
            if i < n {
                u64::from(n - i) / 2
            } else {
                u64::from(n)
            }
        };
        let mut want: Vec<(SimTime, u32)> = (0..n + 4).map(|i| (SimTime(time(i)), i)).collect();
        want.sort_by_key(|&(t, i)| (t, i));
        assert_eq!(popped, want);
    }

    #[test]
    #[should_panic(expected = "with_wake")]
    fn a_wake_up_needs_a_wake_event() {
        EventQueue::<u8>::default().push_wake(SimTime(1));
    }
}
