//! Online latency and queue-wait estimates, learned from completed
//! attempts, in the simulator and live alike.

/// The last `window` samples of one quantity, with cached p50 and p95.
///
/// Quantiles are computed lazily, on read, and only when at least
/// `window / 20` new samples (at least 8) arrived since the last
/// computation: estimates are for decisions, a sort per read would dominate
/// run time, and a policy that never reads them pays nothing.
///
/// A computation sorts nothing. Every sample is counted in one of
/// 1,024 buckets, ranges of values in order (32 to an octave), so a
/// wanted rank's bucket is found by walking the counts; one scan of the
/// samples' bucket ids then picks out the few samples of the buckets the
/// two quantiles are in, and each rank is selected among them. Samples
/// are kept as order keys, so that all of this compares plain integers
/// (in `f64::total_cmp` order) instead of floats.
#[derive(Clone, Debug)]
pub struct Window {
    /// The samples in arrival order (a ring once full).
    buf: Vec<u64>,
    /// Each sample's bucket as of the last computation, beside it in a ring
    /// of its own: a quarter of the memory to scan (the samples are cold
    /// by the time they are read).
    ids: Vec<u16>,
    next: usize,
    window: usize,
    since_refresh: usize,
    refresh_every: usize,
    p50: f64,
    p95: f64,
    /// Samples held per bucket as of the last computation (allocated by
    /// the first), and per group of [`GROUP`] buckets, so that a walk to a
    /// rank takes at most a few dozen steps.
    counts: Vec<u32>,
    groups: Vec<u32>,
    /// Scratch: where the samples of the buckets each quantile is in are,
    /// and those samples.
    picked: [Vec<u32>; 2],
    values: Vec<u64>,
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

/// A bucket is the order keys that agree in their top 17 bits: for a
/// positive float, its exponent and the top 5 bits of its mantissa.
const BUCKET_SHIFT: u32 = 47;
/// Buckets resolve the 32 octaves from 2^-10 to 2^22 (about 1 us to 70
/// minutes, in ms); the first also holds every smaller value (zero waits,
/// negatives), the last every larger one. A value outside only costs the
/// selection more samples: it stays exact.
const OCTAVES: u64 = 32;
const FIRST_OCTAVE: u64 = 1023 - 10;
const BUCKETS: usize = (OCTAVES * 32) as usize;
// Bucket ids are u16s.
const _: () = assert!(BUCKETS <= 1 << 16);
/// The top-17-bit prefix of the first bucket's lowest resolved value.
const BUCKET_BASE: u64 = (1 << 16) | (FIRST_OCTAVE << 5);
const GROUP: usize = 32;

/// The bucket of an order key: monotone in the key.
#[inline]
fn bucket(key: u64) -> u16 {
    let prefix = key >> BUCKET_SHIFT;
    prefix.saturating_sub(BUCKET_BASE).min(BUCKETS as u64 - 1) as u16
}

/// Where one quantile lies: the ranks it interpolates between, the buckets
/// they are in, and how many samples lie in the buckets before those.
#[derive(Clone, Copy, Debug)]
struct Ranks {
    pos: f64,
    lo: usize,
    hi: usize,
    first: u16,
    last: u16,
    below: usize,
}

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
            ids: Vec::new(),
            counts: Vec::new(),
            groups: Vec::new(),
            picked: [Vec::new(), Vec::new()],
            values: Vec::new(),
        }
    }

    /// Records one sample: one store. Its bucket is counted when the
    /// quantiles are next computed (see `sync`).
    pub fn push(&mut self, x: f64) {
        let x = order_key(x);
        if self.buf.len() < self.window {
            self.buf.push(x);
        } else {
            self.buf[self.next] = x;
            // Not `% window`: a division per sample, twice per attempt end.
            self.next += 1;
            if self.next == self.window {
                self.next = 0;
            }
        }
        self.since_refresh += 1;
    }

    /// Brings the buckets up to the samples: each of the `since_refresh`
    /// samples written since the last computation (the ring positions just
    /// before `next`) leaves the bucket of the sample it replaced and
    /// joins its own. In a batch, over adjacent positions, this costs less
    /// than on every push, whose bucket and count lines were cold.
    fn sync(&mut self) {
        let n = self.buf.len();
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS];
            self.groups = vec![0; BUCKETS / GROUP];
        }
        let written = self.since_refresh;
        if written >= n {
            // Every position was written since: count afresh.
            self.counts.fill(0);
            self.groups.fill(0);
            self.ids.clear();
            for &k in &self.buf {
                let b = bucket(k);
                self.ids.push(b);
                self.counts[usize::from(b)] += 1;
                self.groups[usize::from(b) / GROUP] += 1;
            }
            return;
        }
        // Positions still filling the window come last and in order, so
        // each such one is `ids.len()` when reached.
        let mut pos = (self.next + n - written) % n;
        for _ in 0..written {
            let b = bucket(self.buf[pos]);
            if let Some(id) = self.ids.get_mut(pos) {
                let old = usize::from(std::mem::replace(id, b));
                self.counts[old] -= 1;
                self.groups[old / GROUP] -= 1;
            } else {
                debug_assert_eq!(pos, self.ids.len());
                self.ids.push(b);
            }
            self.counts[usize::from(b)] += 1;
            self.groups[usize::from(b) / GROUP] += 1;
            pos += 1;
            if pos == n {
                pos = 0;
            }
        }
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
        self.sync();
        let n = self.buf.len();
        let wanted = [self.ranks(n, 50.0), self.ranks(n, 95.0)];
        // One scan of the bucket ids finds both quantiles' samples. Few
        // are in those buckets: a chunk of ids is classified whole (a loop
        // the compiler vectorises: bit 0 of a byte for the first quantile's
        // buckets, bit 1 for the second's), and only its hits are visited.
        let (fa, sa) = (wanted[0].first, wanted[0].last - wanted[0].first);
        let (fb, sb) = (wanted[1].first, wanted[1].last - wanted[1].first);
        let [a, b] = &mut self.picked;
        a.clear();
        b.clear();
        const CHUNK: usize = 16;
        for (c, chunk) in self.ids.chunks(CHUNK).enumerate() {
            let mut hits = [0u8; CHUNK];
            for (h, &id) in hits.iter_mut().zip(chunk) {
                *h = u8::from(id.wrapping_sub(fa) <= sa)
                    | (u8::from(id.wrapping_sub(fb) <= sb) << 1);
            }
            let mut hits = u128::from_le_bytes(hits);
            while hits != 0 {
                let byte = hits.trailing_zeros() / 8;
                let i = (c * CHUNK) as u32 + byte;
                let which = (hits >> (byte * 8)) as u8;
                if which & 1 != 0 {
                    a.push(i);
                }
                if which & 2 != 0 {
                    b.push(i);
                }
                hits &= !(0xff << (byte * 8));
            }
        }
        let mut quantiles = [0.0; 2];
        for k in 0..2 {
            self.values.clear();
            let buf = &self.buf;
            self.values
                .extend(self.picked[k].iter().map(|&i| buf[i as usize]));
            quantiles[k] = select(&mut self.values, wanted[k]);
        }
        [self.p50, self.p95] = quantiles;
        self.since_refresh = 0;
    }

    /// Where the `q`-th percentile of `n` samples (numpy's linear
    /// interpolation) lies.
    fn ranks(&self, n: usize, q: f64) -> Ranks {
        let pos = (n - 1) as f64 * (q / 100.0);
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        let (first, below) = self.locate(lo);
        let last = if hi == lo { first } else { self.locate(hi).0 };
        Ranks {
            pos,
            lo,
            hi,
            first,
            last,
            below,
        }
    }

    /// The bucket holding the sample of rank `k` (0-based, below the
    /// number held), and how many samples lie in the buckets before it.
    fn locate(&self, k: usize) -> (u16, usize) {
        let mut below = 0;
        let mut g = 0;
        while below + self.groups[g] as usize <= k {
            below += self.groups[g] as usize;
            g += 1;
        }
        let mut b = g * GROUP;
        while below + self.counts[b] as usize <= k {
            below += self.counts[b] as usize;
            b += 1;
        }
        (b as u16, below)
    }

    /// The `q`-th percentile of the samples held, as a computation finds it
    /// (tests compare it with sorting).
    #[cfg(test)]
    fn percentile(&mut self, q: f64) -> f64 {
        self.refresh();
        match q {
            50.0 => self.p50,
            95.0 => self.p95,
            _ => {
                let r = self.ranks(self.buf.len(), q);
                self.values.clear();
                let buf = &self.buf;
                self.values.extend(
                    self.ids
                        .iter()
                        .zip(buf)
                        .filter(|&(&id, _)| (r.first..=r.last).contains(&id))
                        .map(|(_, &k)| k),
                );
                select(&mut self.values, r)
            }
        }
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

/// The quantile at `r` from `picked`, the samples of its buckets: the
/// sample of rank `lo`, interpolated towards that of rank `hi` (numpy's
/// linear interpolation, as `stats::percentile_sorted` computes it).
fn select(picked: &mut [u64], r: Ranks) -> f64 {
    let (_, &mut at_lo, above) = picked.select_nth_unstable(r.lo - r.below);
    let a = from_order_key(at_lo);
    if r.hi == r.lo {
        return a;
    }
    // Rank hi = lo + 1: the least of what selection left above rank lo.
    let b = from_order_key(*above.iter().min().expect("rank hi is held"));
    a + (b - a) * (r.pos - r.lo as f64)
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

    /// Every percentile a window computes is the one of its samples sorted,
    /// the first and last ranks and samples outside the resolved octaves
    /// (zeros, negatives, hours, infinities) included.
    #[test]
    fn window_percentiles_match_stats() {
        for n in [1usize, 2, 3, 20, 997, 1000] {
            for spread in [1.0 / 7.0, 1e-9, -3.0, 1e7, f64::INFINITY] {
                let data: Vec<f64> = (0..n)
                    .map(|i| ((i * 7919) % 1013) as f64 * spread)
                    .collect();
                let mut sorted = data.clone();
                sorted.sort_by(f64::total_cmp);
                let mut w = Window::new(n);
                for &x in &data {
                    w.push(x);
                }
                for q in [0.0, 12.5, 50.0, 95.0, 100.0] {
                    let want = crate::stats::percentile_sorted(&sorted, q);
                    let got = w.percentile(q);
                    assert!(
                        got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                        "n = {n}, spread = {spread}, q = {q}: {got} against {want}"
                    );
                }
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
                    let x = match burst % 4 {
                        0 => v as f64,
                        // Outside the octaves the buckets resolve, both ends.
                        1 => (v * 37 + k) as f64 * 1e-7 - 1e-5,
                        2 => (v * 37 + k) as f64 * 1e6,
                        _ => (v * 37 + k) as f64 * 0.25,
                    };
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
