//! A tier's queue of waiting calls: a priority queue that pops in exactly
//! `BinaryHeap`'s order, built for queues of thousands.
//!
//! A binary heap of 5,000 calls pops through thirteen levels, each a load
//! the next depends on, most of them from the second-level cache: with a
//! thousand workflows queued at once that chain was an eighth of the
//! research agent's time under `full`. Here most pops read the next entry
//! of a sorted run instead. Pushes wait in a small heap, which a pop also
//! looks at, and are merged into the run in a batch when that heap has
//! grown to an eighth of the run (plus a few), so that each push moves a
//! handful of the run's entries and each pop is one or two comparisons.
//! While no push waits in the heap, a push below everything in the run (a
//! first-come queue's order) goes straight to the run's end.

use std::collections::BinaryHeap;

/// Pushes held apart from the run before a merge: this many, plus one per
/// `1 << FRESH_SHIFT` entries of the run.
const FRESH_MIN: usize = 32;
const FRESH_SHIFT: u32 = 3;

/// A max-queue, like [`BinaryHeap`]: [`pop`](Self::pop) returns the
/// greatest entry by `Ord`. Entries are expected to be distinct (the
/// policy's keys end in a push sequence number); equal ones come out in
/// some order.
#[derive(Clone, Debug)]
pub(super) struct TierQueue<T> {
    /// `run[head..]` holds entries in descending order, the next to pop
    /// first; `run[..head]` were popped and are dropped at a merge or when
    /// the run empties.
    run: Vec<T>,
    head: usize,
    /// Pushes since the last merge that did not go to the run's end.
    fresh: BinaryHeap<T>,
}

impl<T: Ord + Copy> TierQueue<T> {
    /// An empty queue.
    pub fn new() -> Self {
        TierQueue {
            run: Vec::new(),
            head: 0,
            fresh: BinaryHeap::new(),
        }
    }

    /// Entries held.
    #[inline]
    pub fn len(&self) -> usize {
        self.run.len() - self.head + self.fresh.len()
    }

    /// True when no entry is held.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.run.len() == self.head && self.fresh.is_empty()
    }

    /// Adds `x`.
    #[inline]
    pub fn push(&mut self, x: T) {
        // (`run` is empty when everything in it was popped.)
        if self.fresh.is_empty() && self.run.last().is_none_or(|&l| x < l) {
            // Rather than grow, drop the popped entries if they are half.
            if self.run.len() == self.run.capacity() && self.head * 2 >= self.run.len() {
                self.compact();
            }
            self.run.push(x);
            return;
        }
        self.fresh.push(x);
        if self.fresh.len() > FRESH_MIN + ((self.run.len() - self.head) >> FRESH_SHIFT) {
            self.merge();
        }
    }

    /// The greatest entry.
    #[inline]
    pub fn peek(&self) -> Option<&T> {
        match (self.run.get(self.head), self.fresh.peek()) {
            (Some(r), Some(f)) => Some(if f > r { f } else { r }),
            (r, f) => r.or(f),
        }
    }

    /// Removes and returns the greatest entry.
    #[inline]
    pub fn pop(&mut self) -> Option<T> {
        match (self.run.get(self.head), self.fresh.peek()) {
            (Some(r), Some(f)) if f > r => self.fresh.pop(),
            (Some(&r), _) => {
                self.head += 1;
                if self.head == self.run.len() {
                    self.run.clear();
                    self.head = 0;
                }
                Some(r)
            }
            (None, _) => self.fresh.pop(),
        }
    }

    /// Drops the popped entries before `head`.
    fn compact(&mut self) {
        self.run.drain(..self.head);
        self.head = 0;
    }

    /// Moves the fresh pushes into the run, in order.
    #[cold]
    #[inline(never)]
    fn merge(&mut self) {
        if self.head * 2 >= self.run.len() {
            self.compact();
        }
        let mut fresh = std::mem::take(&mut self.fresh).into_vec();
        fresh.sort_unstable_by(|a, b| b.cmp(a));
        let (n, m) = (self.run.len(), fresh.len());
        self.run.extend_from_slice(&fresh);
        // From the back: each fresh entry, least first, goes below the run
        // entries still unplaced that are greater, after moving down those
        // that are less. The entries above the greatest fresh one stay put.
        let (mut i, mut k) = (n, n + m);
        for &x in fresh.iter().rev() {
            while i > self.head && self.run[i - 1] < x {
                k -= 1;
                i -= 1;
                self.run[k] = self.run[i];
            }
            k -= 1;
            self.run[k] = x;
        }
        fresh.clear();
        self.fresh = BinaryHeap::from(fresh);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A push (`Some`, with a value) or a pop (`None`).
    fn ops() -> impl Strategy<Value = Vec<Option<u32>>> {
        // Pushes outnumber pops two to one, so queues grow past several
        // merges; values come from small and large ranges, so ties,
        // first-come orders and random orders all occur.
        let value = prop_oneof![0u32..8, 0u32..1_000_000, Just(u32::MAX)];
        let op = prop_oneof![2 => value.prop_map(Some), 1 => Just(None)];
        prop::collection::vec(op, 0..3_000)
    }

    proptest! {
        /// Pops, peeks and lengths are `BinaryHeap`'s, for any sequence
        /// of pushes and pops (entries made distinct by a sequence number,
        /// as the policy's are).
        #[test]
        fn pops_in_binary_heap_order(ops in ops(), ascending in any::<bool>()) {
            let mut q = TierQueue::new();
            let mut reference = BinaryHeap::new();
            for (seq, op) in ops.into_iter().enumerate() {
                match op {
                    Some(v) => {
                        // Ascending values with ascending seq: every push
                        // the least so far (a first-come queue) when
                        // `ascending` holds and the values are sorted.
                        let seq = if ascending { u32::MAX - seq as u32 } else { seq as u32 };
                        q.push((v, seq));
                        reference.push((v, seq));
                    }
                    None => prop_assert_eq!(q.pop(), reference.pop()),
                }
                prop_assert_eq!(q.len(), reference.len());
                prop_assert_eq!(q.is_empty(), reference.is_empty());
                prop_assert_eq!(q.peek(), reference.peek());
            }
            while let Some(x) = reference.pop() {
                prop_assert_eq!(q.pop(), Some(x));
            }
            prop_assert_eq!(q.pop(), None);
        }
    }

    #[test]
    fn first_come_pushes_go_to_the_run_and_memory_stays_bounded() {
        // Each push is below everything held: none waits in the heap.
        let mut q = TierQueue::new();
        let mut next = u64::MAX;
        for round in 0..10_000u64 {
            for _ in 0..3 {
                q.push(next);
                next -= 1;
            }
            for _ in 0..2 {
                assert!(q.pop().is_some());
            }
            assert!(q.fresh.is_empty(), "round {round}");
        }
        assert_eq!(q.len(), 10_000);
        // Popped entries are dropped as the run grows: at most twice what
        // is held, plus the allocation's slack.
        assert!(q.run.capacity() <= 4 * q.len(), "{}", q.run.capacity());
        let mut last = u64::MAX;
        while let Some(x) = q.pop() {
            assert!(x < last);
            last = x;
        }
    }

    #[test]
    fn a_merge_keeps_the_run_sorted() {
        // Descending pushes after ascending ones: all but the first few go
        // through the heap and at least one merge.
        let mut q = TierQueue::new();
        for x in (0..1_000u32).step_by(2) {
            q.push(u32::MAX - x);
        }
        for x in (1..1_000u32).step_by(2) {
            q.push(x);
        }
        // At most 501 pushes were below everything before them: the rest
        // reached the run through merges.
        assert!(q.run.len() - q.head > 501, "{}", q.run.len() - q.head);
        assert!(q.run[q.head..].windows(2).all(|w| w[0] > w[1]));
        let mut out = Vec::new();
        while let Some(x) = q.pop() {
            out.push(x);
        }
        let mut want: Vec<u32> = (0..1_000u32)
            .step_by(2)
            .map(|x| u32::MAX - x)
            .chain((1..1_000).step_by(2))
            .collect();
        want.sort_unstable_by(|a, b| b.cmp(a));
        assert_eq!(out, want);
    }
}
