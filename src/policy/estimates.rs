//! Online latency and queue-wait estimates, learned from completed
//! attempts, in the simulator and live alike.

/// The last `window` samples of one quantity, with cached p50 and p95.
///
/// Quantiles are computed lazily, on read, and only when at least
/// `window / 20` new samples (at least 8) arrived since the last
/// computation: estimates are for decisions, a sort per read would dominate
/// run time, and a policy that never reads them pays nothing.
#[derive(Clone, Debug)]
pub struct Window {
    buf: Vec<f64>,
    next: usize,
    window: usize,
    since_refresh: usize,
    refresh_every: usize,
    p50: f64,
    p95: f64,
    scratch: Vec<f64>,
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
            scratch: Vec::new(),
        }
    }

    /// Records one sample.
    pub fn push(&mut self, x: f64) {
        if self.buf.len() < self.window {
            self.buf.push(x);
        } else {
            self.buf[self.next] = x;
            self.next = (self.next + 1) % self.window;
        }
        self.since_refresh += 1;
    }

    fn refresh_if_stale(&mut self) {
        let n = self.buf.len();
        if n < MIN_SAMPLES || (!self.p50.is_nan() && self.since_refresh < self.refresh_every) {
            return;
        }
        self.scratch.clear();
        self.scratch.extend_from_slice(&self.buf);
        // Two selections instead of a sort, the second only in the part
        // right of the median.
        (self.p50, self.p95) = select_percentiles(&mut self.scratch, 50.0, 95.0);
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

/// Percentiles `q1 <= q2` by selection, the second inside the part the
/// first left to its right; reorders `v`.
fn select_percentiles(v: &mut [f64], q1: f64, q2: f64) -> (f64, f64) {
    let first = select_from(v, 0, q1);
    let from = ((v.len() - 1) as f64 * (q1 / 100.0)).floor() as usize;
    (first, select_from(v, from, q2))
}

/// The `q`-th percentile (numpy's linear interpolation) of all of `v`,
/// where everything left of `from` ranks below it (so only `v[from..]` is
/// searched); reorders `v`.
fn select_from(v: &mut [f64], from: usize, q: f64) -> f64 {
    let pos = (v.len() - 1) as f64 * (q / 100.0);
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    let a = *v[from..]
        .select_nth_unstable_by(lo - from, f64::total_cmp)
        .1;
    if hi == lo {
        return a;
    }
    let b = v[lo + 1..].iter().copied().fold(f64::INFINITY, f64::min);
    a + (b - a) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_matches_sorted_percentiles() {
        let data: Vec<f64> = (0..997).map(|i| ((i * 7919) % 1013) as f64).collect();
        let mut sorted = data.clone();
        sorted.sort_by(f64::total_cmp);
        for q in [0.0, 12.5, 50.0, 95.0, 100.0] {
            let want = crate::stats::percentile_sorted(&sorted, q);
            assert_eq!(select_from(&mut data.clone(), 0, q), want, "q = {q}");
        }
    }

    #[test]
    fn paired_selection_matches_sorted_percentiles() {
        for n in [1usize, 2, 3, 20, 997, 1000] {
            let data: Vec<f64> = (0..n).map(|i| ((i * 7919) % 1013) as f64).collect();
            let mut sorted = data.clone();
            sorted.sort_by(f64::total_cmp);
            for (q1, q2) in [(50.0, 95.0), (0.0, 100.0), (95.0, 95.0), (12.5, 50.0)] {
                let want = (
                    crate::stats::percentile_sorted(&sorted, q1),
                    crate::stats::percentile_sorted(&sorted, q2),
                );
                let got = select_percentiles(&mut data.clone(), q1, q2);
                assert_eq!(got, want, "n = {n}, q = {q1}, {q2}");
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
