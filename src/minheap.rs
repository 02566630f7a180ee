//! A binary min-heap of small `Copy` entries, for the simulator's event
//! queue (its wake-ups, and its events when many are pending) and the
//! policy's hedge deadlines. The free functions work on a vector the
//! caller keeps, for a queue that is a heap only part of the time.
//!
//! `std`'s `BinaryHeap` moves an entry with one set of store widths and at
//! once reads it back with another: its push writes the new entry and its
//! sift-up reloads it, its pop swaps the last entry into the root in 8-byte
//! pieces and reloads it in 16-byte ones. Each is a store-forwarding stall
//! (the pop's was 7% of an M/M/8 run's time samples, the hedge deadlines'
//! push 1% of the research agent's under `full`). Here the moving entry
//! stays in registers and is written once, where it lands.

/// A min-heap: [`pop`](Self::pop) returns the least entry by `Ord`.
#[derive(Clone, Debug)]
pub struct MinHeap<T> {
    /// Each entry is at most each of its children (`2i + 1`, `2i + 2`).
    v: Vec<T>,
}

impl<T> Default for MinHeap<T> {
    fn default() -> Self {
        MinHeap { v: Vec::new() }
    }
}

impl<T: Copy + Ord> MinHeap<T> {
    /// An empty heap.
    pub fn new() -> Self {
        Self::default()
    }

    /// Entries held.
    #[inline]
    pub fn len(&self) -> usize {
        self.v.len()
    }

    /// True when no entry is held.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.v.is_empty()
    }

    /// The least entry.
    #[inline]
    pub fn peek(&self) -> Option<&T> {
        self.v.first()
    }

    /// Adds `x`.
    #[inline]
    pub fn push(&mut self, x: T) {
        push(&mut self.v, x);
    }

    /// Removes and returns the least entry. The root's hole moves down to
    /// a leaf, the lesser child moving up at each level (one branch-free
    /// comparison per level); the last entry then sifts up from there. It
    /// belongs near the bottom, so this costs fewer comparisons than
    /// sifting it down from the root. Always inlined: with two copies of the
    /// engine calling it, LLVM stopped inlining it into the event loop.
    #[inline(always)]
    pub fn pop(&mut self) -> Option<T> {
        pop(&mut self.v)
    }
}

/// [`MinHeap::push`] on a heap-ordered vector.
#[inline]
pub fn push<T: Copy + Ord>(v: &mut Vec<T>, x: T) {
    let hole = v.len();
    v.push(x);
    sift_up(v, hole, x);
}

/// [`MinHeap::pop`] on a heap-ordered vector.
#[inline(always)]
pub fn pop<T: Copy + Ord>(v: &mut Vec<T>) -> Option<T> {
    let last = v.pop()?;
    let Some(&top) = v.first() else {
        return Some(last);
    };
    let (mut hole, mut child) = (0, 1);
    while let Some([l, r]) = v.get(child..child + 2) {
        // Which child is less is a coin toss: no branch on it.
        child += (r < l) as usize;
        v[hole] = v[child];
        hole = child;
        child = 2 * hole + 1;
    }
    if child < v.len() {
        v[hole] = v[child];
        hole = child;
    }
    sift_up(v, hole, last);
    Some(top)
}

/// Makes `v` heap-ordered.
pub fn heapify<T: Copy + Ord>(v: &mut [T]) {
    for i in 1..v.len() {
        let x = v[i];
        sift_up(v, i, x);
    }
}

/// Writes `x` at `hole` or above it: greater parents move down into the
/// hole until its place is found.
#[inline]
fn sift_up<T: Copy + Ord>(v: &mut [T], mut hole: usize, x: T) {
    while hole > 0 {
        let parent = (hole - 1) / 2;
        let p = v[parent];
        if p < x {
            break;
        }
        v[hole] = p;
        hole = parent;
    }
    v[hole] = x;
}

impl<T: Copy + Ord> Extend<T> for MinHeap<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, items: I) {
        for x in items {
            self.push(x);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    proptest! {
        /// Any sequence of pushes and pops returns what `std`'s heap
        /// returns; values repeat often, so ties are exercised too.
        #[test]
        fn pops_what_std_pops(ops in prop::collection::vec(prop::option::of(0u8..16), 0..400)) {
            let mut heap = MinHeap::new();
            let mut model = BinaryHeap::new();
            for op in ops {
                match op {
                    Some(x) => {
                        heap.push(x);
                        model.push(Reverse(x));
                    }
                    None => prop_assert_eq!(heap.pop(), model.pop().map(|Reverse(x)| x)),
                }
                prop_assert_eq!(heap.len(), model.len());
                prop_assert_eq!(heap.peek(), model.peek().map(|Reverse(x)| x));
            }
            let mut drained = Vec::new();
            while let Some(x) = heap.pop() {
                drained.push(x);
            }
            prop_assert!(drained.is_sorted());
            prop_assert!(heap.is_empty());
        }
    }

    #[test]
    fn extend_pushes_each() {
        let mut heap = MinHeap::new();
        heap.extend([5, 1, 4, 1, 3]);
        let drained: Vec<i32> = std::iter::from_fn(|| heap.pop()).collect();
        assert_eq!(drained, [1, 1, 3, 4, 5]);
    }
}
