//! Integer samples (microseconds, nano-dollars) kept for exact percentiles
//! in bounded memory.
//!
//! Up to `cap` samples stay in memory and percentiles are selections, as in
//! [`percentiles_int`]. Beyond that, full chunks are spilled to an unlinked
//! temporary file, and percentiles are found by radix selection: four
//! passes over the samples (two when every sample fits in 32 bits), each
//! fixing the next 16 bits of every wanted order statistic. Memory then
//! stays at `cap` samples however long the run, and the answer is the
//! same, to the bit.
//!
//! Samples are held in 4 bytes each while every one fits (microseconds up
//! to 71 minutes, nano-dollars up to $4.29) and in 8 from the first that
//! does not: half the memory, and half the first touches of fresh pages,
//! which were a tenth of an M/M/c run of a million customers. Spills are
//! written as held, so a long narrow run writes and reads half the bytes.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

use super::{interpolate, percentiles_int};

/// Samples kept in memory per store by default (4 MiB, or 8 when some
/// sample needs 64 bits); runs of up to about a million workflows never
/// touch the disk.
pub const DEFAULT_IN_MEMORY: usize = 1 << 20;

/// The samples held in memory: narrow while every one fits in 32 bits.
#[derive(Debug)]
enum Mem {
    Narrow(Vec<u32>),
    Wide(Vec<u64>),
}

impl Mem {
    fn len(&self) -> usize {
        match self {
            Mem::Narrow(v) => v.len(),
            Mem::Wide(v) => v.len(),
        }
    }

    fn sum(&self) -> u128 {
        match self {
            // Fewer than 2^32 samples under 2^32 each sum within a u64
            // (which vectorises; a u128 sum does not).
            Mem::Narrow(v) => v
                .chunks(u32::MAX as usize)
                .map(|c| u128::from(c.iter().map(|&x| u64::from(x)).sum::<u64>()))
                .sum(),
            Mem::Wide(v) => v.iter().map(|&x| u128::from(x)).sum(),
        }
    }

    fn clear(&mut self) {
        match self {
            Mem::Narrow(v) => v.clear(),
            Mem::Wide(v) => v.clear(),
        }
    }

    /// Feeds the samples to `f` as `u64`s, a bounded chunk at a time.
    fn for_each_chunk(&self, f: &mut dyn FnMut(&[u64])) {
        match self {
            Mem::Narrow(v) => {
                let mut wide = Vec::with_capacity(v.len().min(1 << 16));
                for chunk in v.chunks(1 << 16) {
                    wide.clear();
                    wide.extend(chunk.iter().map(|&x| u64::from(x)));
                    f(&wide);
                }
            }
            Mem::Wide(v) => f(v),
        }
    }
}

/// One metric's samples.
#[derive(Debug)]
pub struct Samples {
    mem: Mem,
    cap: usize,
    spill: Option<File>,
    /// The spill file's runs, in order, one per spill: how many samples,
    /// and whether they were written in 8 bytes each (else 4).
    runs: Vec<(u64, bool)>,
    /// Samples written to `spill` (a failed write is not counted).
    spilled: u64,
    /// Their exact sum.
    spilled_sum: u128,
}

impl Default for Samples {
    fn default() -> Self {
        Samples::new(DEFAULT_IN_MEMORY)
    }
}

/// Sample buffers of stores dropped on this thread, kept for the stores it
/// makes next. A long run's stores take megabytes, which the allocator
/// hands back to the kernel when they are freed, so that every run made
/// them fresh pages again: in runs repeated in one process (a sweep's, a
/// ratchet's, `bench`'s) the kernel's first touches of those pages were a
/// tenth of an M/M/c run. A thread keeps at most [`SPARE_BYTES`].
#[derive(Default)]
struct Spare {
    narrow: Vec<Vec<u32>>,
    wide: Vec<Vec<u64>>,
    bytes: usize,
}

/// Bytes of spare buffers a thread keeps at most.
const SPARE_BYTES: usize = 64 << 20;

/// Buffers smaller than this are left to the allocator, which reuses them
/// without new pages anyway.
const SPARE_MIN_BYTES: usize = 64 << 10;

thread_local! {
    static SPARE: RefCell<Spare> = RefCell::new(Spare::default());
}

impl Spare {
    /// The largest spare buffer of the kind, or a new empty one.
    fn take<T>(list: impl Fn(&mut Spare) -> &mut Vec<Vec<T>>) -> Vec<T> {
        SPARE
            .try_with(|spare| {
                let mut spare = spare.borrow_mut();
                let buffers = list(&mut spare);
                let largest = (0..buffers.len()).max_by_key(|&i| buffers[i].capacity())?;
                let v = buffers.swap_remove(largest);
                spare.bytes -= v.capacity() * std::mem::size_of::<T>();
                Some(v)
            })
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// Keeps `v`, emptied, if it is large enough to be worth it and the
    /// thread's spare buffers have room for it.
    fn keep<T>(mut v: Vec<T>, list: impl Fn(&mut Spare) -> &mut Vec<Vec<T>>) {
        let bytes = v.capacity() * std::mem::size_of::<T>();
        if bytes < SPARE_MIN_BYTES {
            return;
        }
        v.clear();
        // During the thread's teardown the buffer is simply freed.
        let _ = SPARE.try_with(|spare| {
            let mut spare = spare.borrow_mut();
            if spare.bytes + bytes <= SPARE_BYTES {
                spare.bytes += bytes;
                list(&mut spare).push(v);
            }
        });
    }
}

impl Drop for Samples {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.mem, Mem::Narrow(Vec::new())) {
            Mem::Narrow(v) => Spare::keep(v, |s| &mut s.narrow),
            Mem::Wide(v) => Spare::keep(v, |s| &mut s.wide),
        }
    }
}

impl Samples {
    /// An empty store keeping up to `cap` samples in memory (at least 1).
    pub fn new(cap: usize) -> Samples {
        Samples {
            mem: Mem::Narrow(Spare::take(|s| &mut s.narrow)),
            cap: cap.max(1),
            spill: None,
            runs: Vec::new(),
            spilled: 0,
            spilled_sum: 0,
        }
    }

    /// Records one sample.
    #[inline]
    pub fn push(&mut self, x: u64) {
        match &mut self.mem {
            Mem::Narrow(v) if v.len() < self.cap && x <= u64::from(u32::MAX) => v.push(x as u32),
            Mem::Wide(v) if v.len() < self.cap => v.push(x),
            _ => self.push_cold(x),
        }
    }

    /// A push that spills the memory first, or that widens it: the first
    /// sample past 32 bits moves every sample to 8 bytes.
    #[cold]
    fn push_cold(&mut self, x: u64) {
        if self.mem.len() >= self.cap {
            self.spill_memory();
        }
        if let Mem::Narrow(v) = &mut self.mem {
            if let Ok(x) = u32::try_from(x) {
                v.push(x);
                return;
            }
            let mut wide = Spare::take(|s| &mut s.wide);
            wide.reserve(v.capacity().max(v.len() + 1));
            wide.extend(v.iter().map(|&x| u64::from(x)));
            if let Mem::Narrow(narrow) = std::mem::replace(&mut self.mem, Mem::Wide(wide)) {
                Spare::keep(narrow, |s| &mut s.narrow);
            }
        }
        if let Mem::Wide(v) = &mut self.mem {
            v.push(x);
        }
    }

    /// Moves the in-memory samples to the spill file. On an I/O error the
    /// samples stay in memory (results stay exact; only memory grows).
    #[cold]
    fn spill_memory(&mut self) {
        let result = (|| -> io::Result<()> {
            if self.spill.is_none() {
                self.spill = Some(tempfile::tempfile()?);
            }
            let file = self.spill.as_mut().expect("just created");
            let end: u64 = self.runs.iter().map(|&(n, wide)| n * width(wide)).sum();
            file.seek(SeekFrom::Start(end))?;
            // Written as held: 4 bytes a sample while the store is narrow.
            let bytes: Vec<u8> = match &self.mem {
                Mem::Narrow(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                Mem::Wide(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            };
            file.write_all(&bytes)
        })();
        match result {
            Ok(()) => {
                let wide = matches!(self.mem, Mem::Wide(_));
                self.runs.push((self.mem.len() as u64, wide));
                self.spilled += self.mem.len() as u64;
                self.spilled_sum += self.mem.sum();
                self.mem.clear();
            }
            Err(_) => self.cap = usize::MAX,
        }
    }

    /// Samples recorded.
    pub fn len(&self) -> u64 {
        self.spilled + self.mem.len() as u64
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Exact sum of the samples.
    pub fn sum(&self) -> u128 {
        self.spilled_sum + self.mem.sum()
    }

    /// Mean scaled by `unit`; NaN when empty.
    pub fn mean(&self, unit: f64) -> f64 {
        if self.is_empty() {
            f64::NAN
        } else {
            self.sum() as f64 * unit / self.len() as f64
        }
    }

    /// Whether some samples live on disk.
    pub fn spilled(&self) -> bool {
        self.spilled > 0
    }

    /// Percentiles `qs` (numpy's linear interpolation), scaled by `unit`.
    /// May reorder the in-memory samples.
    pub fn percentiles(&mut self, qs: &[f64], unit: f64) -> io::Result<Vec<f64>> {
        percentiles_across(&mut [self], qs, unit)
    }

    /// Whether some sample, in memory or spilled, needed more than 32 bits.
    fn ever_wide(&self) -> bool {
        matches!(self.mem, Mem::Wide(_)) || self.runs.iter().any(|&(_, wide)| wide)
    }

    /// Feeds every sample to `f`, chunk by chunk.
    fn for_each_chunk(&mut self, f: &mut dyn FnMut(&[u64])) -> io::Result<()> {
        if let Some(file) = self.spill.as_mut() {
            file.seek(SeekFrom::Start(0))?;
            let mut bytes = vec![0u8; 1 << 19];
            let mut values = Vec::with_capacity(bytes.len() / 4);
            for &(count, wide) in &self.runs {
                let w = width(wide) as usize;
                let mut left = count;
                while left > 0 {
                    let n = left.min((bytes.len() / w) as u64) as usize;
                    file.read_exact(&mut bytes[..n * w])?;
                    values.clear();
                    if wide {
                        values.extend(
                            bytes[..n * 8]
                                .chunks_exact(8)
                                .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes"))),
                        );
                    } else {
                        values.extend(bytes[..n * 4].chunks_exact(4).map(|b| {
                            u64::from(u32::from_le_bytes(b.try_into().expect("4 bytes")))
                        }));
                    }
                    f(&values);
                    left -= n as u64;
                }
            }
        }
        self.mem.for_each_chunk(f);
        Ok(())
    }
}

/// Bytes a spilled sample takes.
fn width(wide: bool) -> u64 {
    if wide { 8 } else { 4 }
}

/// Percentiles `qs` of the samples of all `stores` together, scaled by
/// `unit`; NaN when they are all empty.
pub fn percentiles_across(
    stores: &mut [&mut Samples],
    qs: &[f64],
    unit: f64,
) -> io::Result<Vec<f64>> {
    let n: u64 = stores.iter().map(|s| s.len()).sum();
    if n == 0 {
        return Ok(vec![f64::NAN; qs.len()]);
    }
    if stores.iter().all(|s| !s.spilled()) {
        // Everything is in memory: selection in place (or on one copy).
        return Ok(match stores {
            [one] => match &mut one.mem {
                Mem::Narrow(v) => percentiles_int(v, qs, unit),
                Mem::Wide(v) => percentiles_int(v, qs, unit),
            },
            _ if stores.iter().all(|s| matches!(s.mem, Mem::Narrow(_))) => {
                let mut all: Vec<u32> = Vec::with_capacity(n as usize);
                for s in stores.iter() {
                    if let Mem::Narrow(v) = &s.mem {
                        all.extend_from_slice(v);
                    }
                }
                percentiles_int(&mut all, qs, unit)
            }
            _ => {
                let mut all: Vec<u64> = Vec::with_capacity(n as usize);
                for s in stores.iter() {
                    s.mem.for_each_chunk(&mut |xs| all.extend_from_slice(xs));
                }
                percentiles_int(&mut all, qs, unit)
            }
        });
    }
    // The order statistics each percentile interpolates between.
    let positions: Vec<f64> = qs.iter().map(|q| (n - 1) as f64 * (q / 100.0)).collect();
    let mut ranks: Vec<u64> = positions
        .iter()
        .flat_map(|p| [p.floor() as u64, p.ceil() as u64])
        .collect();
    ranks.sort_unstable();
    ranks.dedup();
    let values = radix_select(stores, &ranks)?;
    let at = |r: u64| values[ranks.binary_search(&r).expect("rank selected")];
    Ok(positions
        .iter()
        .map(|&pos| {
            let (lo, hi) = (pos.floor() as u64, pos.ceil() as u64);
            interpolate(at(lo), at(hi), pos, unit)
        })
        .collect())
}

/// The values of the given 0-based ranks (sorted, distinct, below the
/// sample count) among all samples of `stores`: four passes, each counting
/// the next 16 bits of the samples that share the bits fixed so far.
fn radix_select(stores: &mut [&mut Samples], ranks: &[u64]) -> io::Result<Vec<u64>> {
    // Per rank: the bits fixed so far and the rank within that prefix.
    let mut prefix = vec![0u64; ranks.len()];
    let mut within = ranks.to_vec();
    // Samples that all fit in 32 bits have their high 32 bits fixed at 0.
    let first = if stores.iter().any(|s| s.ever_wide()) {
        0
    } else {
        2
    };
    for pass in first..4u32 {
        let fixed = 16 * pass; // high bits already known
        let shift = 48 - fixed; // the 16 bits counted in this pass
        // Ranks with the same prefix share one histogram.
        let mut groups: Vec<u64> = prefix.clone();
        groups.sort_unstable();
        groups.dedup();
        let mut hist = vec![vec![0u64; 1 << 16]; groups.len()];
        let mut count = |chunk: &[u64]| {
            for &x in chunk {
                let p = if fixed == 0 { 0 } else { x >> (64 - fixed) };
                if let Some(g) = groups.iter().position(|&q| q == p) {
                    hist[g][((x >> shift) & 0xffff) as usize] += 1;
                }
            }
        };
        for s in stores.iter_mut() {
            s.for_each_chunk(&mut count)?;
        }
        for (i, r) in within.iter_mut().enumerate() {
            let g = groups
                .iter()
                .position(|&q| q == prefix[i])
                .expect("own group");
            let mut below = 0;
            let bucket = hist[g]
                .iter()
                .position(|&c| {
                    below += c;
                    below > *r
                })
                .expect("rank below the sample count");
            *r -= below - hist[g][bucket];
            prefix[i] = (prefix[i] << 16) | bucket as u64;
        }
    }
    Ok(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference(data: &[u64], qs: &[f64]) -> Vec<f64> {
        percentiles_int(&mut data.to_vec(), qs, 1.0)
    }

    proptest! {
        /// Spilled or not, in one store or several, the percentiles are
        /// those of the whole data, to the bit.
        #[test]
        fn spilled_percentiles_are_exact(
            data in proptest::collection::vec(
                prop_oneof![0u64..40, any::<u64>(), (0u64..1000).prop_map(|x| x << 40)],
                1..400,
            ),
            qs in proptest::collection::vec(0.0f64..=100.0, 1..6),
            cap in 1usize..50,
            split in 0usize..400,
        ) {
            // As drawn (mostly wide), and cut to 32 bits: narrow stores,
            // narrow spills and the radix selection's two-pass path.
            let narrow: Vec<u64> = data.iter().map(|&x| x & 0xffff_ffff).collect();
            for data in [data, narrow] {
                let want = reference(&data, &qs);
                let mut one = Samples::new(cap);
                for &x in &data {
                    one.push(x);
                }
                prop_assert_eq!(one.spilled(), data.len() > cap);
                let got = one.percentiles(&qs, 1.0).unwrap();
                prop_assert_eq!(format!("{got:?}"), format!("{want:?}"));
                prop_assert_eq!(one.sum(), data.iter().map(|&x| x as u128).sum::<u128>());

                let split = split.min(data.len());
                let (mut a, mut b) = (Samples::new(cap), Samples::new(cap));
                data[..split].iter().for_each(|&x| a.push(x));
                data[split..].iter().for_each(|&x| b.push(x));
                let got = percentiles_across(&mut [&mut a, &mut b], &qs, 1.0).unwrap();
                prop_assert_eq!(format!("{got:?}"), format!("{want:?}"));
            }
        }
    }

    /// Empties this thread's spare buffers (tests may share a thread).
    fn drain_spare() {
        SPARE.with(|s| *s.borrow_mut() = Spare::default());
    }

    fn spare_bytes() -> (usize, usize) {
        SPARE.with(|s| {
            let s = s.borrow();
            let held = s.narrow.iter().map(|v| v.capacity() * 4).sum::<usize>()
                + s.wide.iter().map(|v| v.capacity() * 8).sum::<usize>();
            (s.bytes, held)
        })
    }

    fn capacity(s: &Samples) -> usize {
        match &s.mem {
            Mem::Narrow(v) => v.capacity(),
            Mem::Wide(v) => v.capacity(),
        }
    }

    /// A dropped store's buffer goes to the next store made on the thread,
    /// empty: the new store's answers are those of its own samples only.
    #[test]
    fn a_dropped_stores_buffer_is_reused_empty() {
        drain_spare();
        let mut first = Samples::new(1 << 20);
        (0..100_000u64).for_each(|x| first.push(x * 3));
        let cap = capacity(&first);
        assert!(cap * 4 >= SPARE_MIN_BYTES);
        drop(first);
        assert_eq!(spare_bytes(), (cap * 4, cap * 4));
        let mut second = Samples::new(1 << 20);
        assert_eq!(capacity(&second), cap, "the spare buffer, not a new one");
        assert_eq!(spare_bytes(), (0, 0));
        assert!(second.is_empty());
        [7u64, 1, 4].iter().for_each(|&x| second.push(x));
        assert_eq!(second.len(), 3);
        assert_eq!(second.sum(), 12);
        assert_eq!(
            second.percentiles(&[0.0, 50.0, 100.0], 1.0).unwrap(),
            vec![1.0, 4.0, 7.0]
        );

        // A store that widens keeps its narrow buffer, and its wide one
        // goes back as wide.
        let narrow_cap = capacity(&second);
        second.push(1 << 40);
        assert_eq!(bytes_per_sample(&second), 8);
        assert_eq!(spare_bytes(), (narrow_cap * 4, narrow_cap * 4));
        let wide_cap = capacity(&second);
        drop(second);
        assert_eq!(spare_bytes().0, narrow_cap * 4 + wide_cap * 8);
        drain_spare();
    }

    /// Small buffers are left to the allocator, and a thread keeps at most
    /// `SPARE_BYTES` of buffers however many large stores it drops.
    #[test]
    fn spare_buffers_are_bounded() {
        drain_spare();
        let mut small = Samples::new(1 << 20);
        (0..100u64).for_each(|x| small.push(x));
        drop(small);
        assert_eq!(spare_bytes(), (0, 0));
        let per_store = 1 << 20; // samples: 4 MiB narrow
        let stores: Vec<Samples> = (0..2 * SPARE_BYTES / (4 * per_store))
            .map(|_| {
                let mut s = Samples::new(per_store);
                (0..per_store as u64).for_each(|x| s.push(x));
                s
            })
            .collect();
        drop(stores);
        let (bytes, held) = spare_bytes();
        assert_eq!(bytes, held);
        assert!(bytes <= SPARE_BYTES, "{bytes} bytes kept");
        assert!(
            bytes > SPARE_BYTES / 2,
            "{bytes} bytes kept: the spare room was used"
        );
        drain_spare();
    }

    fn bytes_per_sample(s: &Samples) -> usize {
        match s.mem {
            Mem::Narrow(_) => 4,
            Mem::Wide(_) => 8,
        }
    }

    /// A store stays at 4 bytes a sample up to 2^32 - 1, widens at the
    /// first larger sample, and its answers are those of the plain data
    /// before and after, in memory and spilled.
    #[test]
    fn narrow_until_a_sample_needs_more() {
        let qs = [0.0, 50.0, 95.0, 100.0];
        for cap in [3, 1000] {
            let mut s = Samples::new(cap);
            let mut data = vec![];
            for x in [7, u64::from(u32::MAX), 0, 12, 5] {
                s.push(x);
                data.push(x);
            }
            assert_eq!(bytes_per_sample(&s), 4, "cap {cap}");
            assert_eq!(s.percentiles(&qs, 1.0).unwrap(), reference(&data, &qs));
            for x in [1 << 32, 3, u64::MAX, 9] {
                s.push(x);
                data.push(x);
            }
            assert_eq!(bytes_per_sample(&s), 8, "cap {cap}");
            if cap == 3 {
                // Spilled as held: three narrow samples, then three wide.
                assert_eq!(s.runs, [(3, false), (3, true)]);
                let file_len = s.spill.as_ref().unwrap().metadata().unwrap().len();
                assert_eq!(file_len, 3 * 4 + 3 * 8);
            }
            assert_eq!(s.len(), data.len() as u64);
            assert_eq!(s.sum(), data.iter().map(|&x| u128::from(x)).sum::<u128>());
            assert_eq!(s.percentiles(&qs, 1.0).unwrap(), reference(&data, &qs));
        }
        // Narrow and wide stores together: the union's percentiles.
        let (mut a, mut b) = (Samples::new(100), Samples::new(100));
        [4, 8, 15].iter().for_each(|&x| a.push(x));
        [16, 1 << 40, 42].iter().for_each(|&x| b.push(x));
        assert_eq!((bytes_per_sample(&a), bytes_per_sample(&b)), (4, 8));
        let want = reference(&[4, 8, 15, 16, 1 << 40, 42], &qs);
        assert_eq!(
            percentiles_across(&mut [&mut a, &mut b], &qs, 1.0).unwrap(),
            want
        );
    }

    #[test]
    fn a_million_samples_in_a_small_memory() {
        // Values spread over 40 bits with many duplicates, in 1,000-sample
        // memory: the result equals in-memory selection.
        let mut rng = crate::rng::keyed(9, crate::rng::Stream::Factory, [0; 4]);
        use rand::Rng;
        let data: Vec<u64> = (0..1_000_000)
            .map(|_| rng.next_u64() >> 24 & !0xff)
            .collect();
        let mut s = Samples::new(1000);
        data.iter().for_each(|&x| s.push(x));
        assert!(s.spilled() && s.mem.len() <= 1000);
        let qs = [0.0, 50.0, 95.0, 99.0, 99.9, 100.0];
        assert_eq!(
            s.percentiles(&qs, 1e-3).unwrap(),
            percentiles_int(&mut data.clone(), &qs, 1e-3)
        );
        let sum: u128 = data.iter().map(|&x| x as u128).sum();
        assert_eq!(s.mean(1.0), sum as f64 / 1e6);
        assert!(Samples::new(4).percentiles(&[50.0], 1.0).unwrap()[0].is_nan());
    }
}
