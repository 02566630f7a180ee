//! Online latency and queue-wait estimates, learned from completed
//! attempts, in the simulator and live alike.

/// The last `window` samples of one quantity, with cached p50 and p95.
///
/// Quantiles are computed lazily, on read, and only when at least
/// `window / 20` new samples (at least 8) arrived since the last
/// computation: estimates are for decisions, a sort per read would dominate
/// run time, and a policy that never reads them pays nothing.
///
/// A computation does not sort the window: it keeps the window sorted as of
/// the last one and merges in what arrived and left since (a few dozen
/// samples against a thousand), so reading a stale window costs a linear
/// merge. Samples are kept as [`order_key`]s, so that all of this compares
/// plain integers (in `f64::total_cmp` order) instead of floats.
#[derive(Clone, Debug)]
pub struct Window {
    /// The samples in arrival order (a ring once full).
    buf: Vec<u64>,
    next: usize,
    window: usize,
    since_refresh: usize,
    refresh_every: usize,
    p50: f64,
    p95: f64,
    /// The window as of the last fold, sorted; valid only while `tracking`.
    sorted: Vec<u64>,
    /// Whether `added` and `evicted` hold every change since the last fold.
    /// A window unread for long stops tracking and is sorted afresh when
    /// read: past a quarter of the window, that is the cheaper way.
    tracking: bool,
    /// Samples that arrived, and samples that left the window, since then.
    added: Vec<u64>,
    evicted: Vec<u64>,
    scratch: Vec<u64>,
}

/// Maps a float to an integer whose order is `f64::total_cmp`'s (the
/// standard transform: flip every bit of a negative, the sign bit of the rest).
pub(crate) fn order_key(x: f64) -> u64 {
    let b = x.to_bits();
    if b >> 63 == 1 { !b } else { b | (1 << 63) }
}

/// The inverse of [`order_key`].
fn from_order_key(k: u64) -> f64 {
    f64::from_bits(if k >> 63 == 1 { k & !(1 << 63) } else { !k })
}

/// Fewer samples than this and the prior is used instead.
pub const MIN_SAMPLES: usize = 20;

impl Window {
    /// An empty window of `window` samples.
    pub fn new(window: usize) -> Window {
        Window {
            buf: Vec::new(),
            next: 0,
            window,
            since_refresh: 0,
            refresh_every: (window / 20).max(8),
            p50: f64::NAN,
            p95: f64::NAN,
            sorted: Vec::new(),
            tracking: true,
            added: Vec::new(),
            evicted: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Records one sample.
    pub fn push(&mut self, x: f64) {
        let x = order_key(x);
        if self.buf.len() < self.window {
            self.buf.push(x);
        } else {
            if self.tracking {
                self.evicted.push(self.buf[self.next]);
            }
            self.buf[self.next] = x;
            // Not `% window`: a division per sample, twice per attempt end.
            self.next += 1;
            if self.next == self.window {
                self.next = 0;
            }
        }
        self.since_refresh += 1;
        if self.tracking {
            self.added.push(x);
            if self.added.len() > (self.window / 4).max(8) {
                self.tracking = false;
                self.added.clear();
                self.evicted.clear();
            }
        }
    }

    /// Brings `sorted` up to the window: (sorted + added) - evicted, as
    /// sorted multisets. After sorting the two short lists, it walks their
    /// values in order and copies the runs of `sorted` between them whole
    /// (found by scanning forward: a binary search per sample mispredicts
    /// more branches than the scan costs), so a fold costs a scan and a
    /// memcpy of the window plus a few steps per sample that arrived or left.
    fn fold(&mut self) {
        self.added.sort_unstable();
        self.evicted.sort_unstable();
        self.scratch.clear();
        self.scratch.reserve(self.sorted.len() + self.added.len());
        let old = &self.sorted;
        let (mut i, mut a, mut e) = (0, 0, 0);
        loop {
            // At equal values arrivals go first: a sample that arrived and
            // left since the last fold is then found among the arrivals.
            let insert = match (self.added.get(a), self.evicted.get(e)) {
                (Some(&x), Some(&y)) => x <= y,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if insert {
                let x = self.added[a];
                a += 1;
                let mut p = i;
                while p < old.len() && old[p] <= x {
                    p += 1;
                }
                self.scratch.extend_from_slice(&old[i..p]);
                self.scratch.push(x);
                i = p;
            } else {
                let y = self.evicted[e];
                e += 1;
                let mut p = i;
                while p < old.len() && old[p] < y {
                    p += 1;
                }
                if old.get(p) == Some(&y) {
                    self.scratch.extend_from_slice(&old[i..p]);
                    i = p + 1;
                } else {
                    // Not in the old window: it arrived since, and everything
                    // old up to it was copied when it did.
                    let last = self.scratch.pop();
                    debug_assert_eq!(last, Some(y), "an evicted sample was never in the window");
                }
            }
        }
        self.scratch.extend_from_slice(&old[i..]);
        std::mem::swap(&mut self.sorted, &mut self.scratch);
        debug_assert_eq!(self.sorted.len(), self.buf.len());
        debug_assert!(self.sorted.is_sorted());
        self.added.clear();
        self.evicted.clear();
    }

    /// Inlined: most reads find the cached quantiles fresh.
    #[inline]
    fn refresh_if_stale(&mut self) {
        let n = self.buf.len();
        if n < MIN_SAMPLES || (!self.p50.is_nan() && self.since_refresh < self.refresh_every) {
            return;
        }
        self.refresh();
    }

    #[inline(never)]
    fn refresh(&mut self) {
        if self.tracking {
            self.fold();
        } else {
            self.sorted.clear();
            self.sorted.extend_from_slice(&self.buf);
            self.sorted.sort_unstable();
            self.tracking = true;
        }
        self.p50 = sorted_percentile(&self.sorted, 50.0);
        self.p95 = sorted_percentile(&self.sorted, 95.0);
        self.since_refresh = 0;
    }

    /// Samples held.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when no sample was recorded.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The median, or `prior` while fewer than [`MIN_SAMPLES`] were seen.
    pub fn p50_or(&mut self, prior: f64) -> f64 {
        self.refresh_if_stale();
        if self.p50.is_nan() { prior } else { self.p50 }
    }

    /// The 95th percentile, or `prior` while fewer than [`MIN_SAMPLES`] were seen.
    pub fn p95_or(&mut self, prior: f64) -> f64 {
        self.refresh_if_stale();
        if self.p95.is_nan() { prior } else { self.p95 }
    }
}

/// The `q`-th percentile (numpy's linear interpolation) of sorted order
/// keys (not empty).
fn sorted_percentile(v: &[u64], q: f64) -> f64 {
    let pos = (v.len() - 1) as f64 * (q / 100.0);
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    let a = from_order_key(v[lo]);
    if hi == lo {
        return a;
    }
    let b = from_order_key(v[hi]);
    a + (b - a) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// `order_key` sorts as `f64::total_cmp` does and `from_order_key`
        /// gives the float back, bit for bit.
        #[test]
        fn order_keys_sort_like_total_cmp(a in any::<u64>(), b in any::<u64>()) {
            let (x, y) = (f64::from_bits(a), f64::from_bits(b));
            prop_assert_eq!(order_key(x).cmp(&order_key(y)), x.total_cmp(&y));
            prop_assert_eq!(from_order_key(order_key(x)).to_bits(), a);
        }
    }

    #[test]
    fn sorted_percentiles_match_stats() {
        for n in [1usize, 2, 3, 20, 997, 1000] {
            let data: Vec<f64> = (0..n).map(|i| ((i * 7919) % 1013) as f64 / 7.0).collect();
            let mut sorted = data.clone();
            sorted.sort_by(f64::total_cmp);
            let keys: Vec<u64> = sorted.iter().map(|&x| order_key(x)).collect();
            for q in [0.0, 12.5, 50.0, 95.0, 100.0] {
                let want = crate::stats::percentile_sorted(&sorted, q);
                assert_eq!(sorted_percentile(&keys, q), want, "n = {n}, q = {q}");
            }
        }
    }

    /// The window as it was first written: a copy of the last `window`
    /// samples, sorted whenever a read finds the cache stale.
    struct NaiveWindow {
        all: Vec<f64>,
        window: usize,
        since_refresh: usize,
        refresh_every: usize,
        p50: f64,
        p95: f64,
    }

    impl NaiveWindow {
        fn read(&mut self) -> (f64, f64) {
            let held = &self.all[self.all.len().saturating_sub(self.window)..];
            if held.len() >= MIN_SAMPLES
                && (self.p50.is_nan() || self.since_refresh >= self.refresh_every)
            {
                let mut v = held.to_vec();
                v.sort_by(f64::total_cmp);
                self.p50 = crate::stats::percentile_sorted(&v, 50.0);
                self.p95 = crate::stats::percentile_sorted(&v, 95.0);
                self.since_refresh = 0;
            }
            (self.p50, self.p95)
        }
    }

    proptest! {
        /// Merging what arrived and left gives, at every read, exactly what
        /// sorting the window would, with the same staleness, whatever the
        /// window size, ties and read pattern (long unread stretches stop
        /// the tracking and sort afresh).
        #[test]
        fn window_matches_sorting_the_last_samples(
            window in 1usize..90,
            ops in proptest::collection::vec((0u32..40, any::<bool>(), 0u8..12), 1..600),
        ) {
            let mut w = Window::new(window);
            let mut naive = NaiveWindow {
                all: Vec::new(),
                window,
                since_refresh: 0,
                refresh_every: (window / 20).max(8),
                p50: f64::NAN,
                p95: f64::NAN,
            };
            for (v, read, burst) in ops {
                // Bursts of equal values make ties.
                for k in 0..=burst as u32 {
                    let x = if burst % 3 == 0 { v as f64 } else { (v * 37 + k) as f64 * 0.25 };
                    w.push(x);
                    naive.all.push(x);
                    naive.since_refresh += 1;
                }
                if read {
                    let (p50, p95) = naive.read();
                    prop_assert_eq!(w.p50_or(f64::NAN).to_bits(), p50.to_bits());
                    prop_assert_eq!(w.p95_or(f64::NAN).to_bits(), p95.to_bits());
                }
                prop_assert_eq!(w.len(), naive.all.len().min(window));
            }
        }
    }

    #[test]
    fn uses_prior_until_enough_samples_then_tracks_window() {
        let mut w = Window::new(100);
        for i in 0..(MIN_SAMPLES - 1) {
            w.push(i as f64);
        }
        assert_eq!(w.p50_or(-1.0), -1.0);
        w.push(19.0);
        // 0..=19: median 9.5, p95 = 18.05
        assert_eq!(w.p50_or(-1.0), 9.5);
        assert!((w.p95_or(-1.0) - 18.05).abs() < 1e-12);
        // Overwrite the window with 1000s: old samples leave.
        for _ in 0..200 {
            w.push(1000.0);
        }
        assert_eq!(w.len(), 100);
        assert_eq!(w.p50_or(-1.0), 1000.0);
    }
}
