//! Descriptive statistics with numpy's conventions, so numbers match what
//! users compute with pandas.

pub mod samples;

use std::cmp::Ordering;

pub use samples::Samples;

/// The `q`-th percentile (0..=100) of sorted data by linear interpolation
/// between closest ranks (numpy's default `method="linear"`). NaN when empty.
pub fn percentile_sorted(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    let pos = (n - 1) as f64 * (q / 100.0);
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    if lo == hi {
        sorted[lo]
    } else {
        sorted[lo] + (sorted[hi] - sorted[lo]) * frac
    }
}

/// Several percentiles of unsorted data (selects on a copy).
pub fn percentiles(data: &[f64], qs: &[f64]) -> Vec<f64> {
    percentiles_select(&mut data.to_vec(), qs)
}

/// Several percentiles of `data`, which it reorders: exactly what
/// [`percentile_sorted`] gives on the sorted data (by `f64::total_cmp`),
/// found by selection instead of a sort.
pub fn percentiles_select(data: &mut [f64], qs: &[f64]) -> Vec<f64> {
    select_percentiles(data, qs, f64::total_cmp, |a, b, pos| {
        let frac = pos.fract();
        if frac == 0.0 { a } else { a + (b - a) * frac }
    })
}

/// Several percentiles of integer data (microseconds, nano-dollars),
/// scaled by `unit`; sorting integers is several times faster than floats.
/// Reorders `data` (selection, not a full sort). `u32` or `u64` data: the
/// answer is the same either way for values that fit both.
pub fn percentiles_int<T: Copy + Ord + Into<u64>>(
    data: &mut [T],
    qs: &[f64],
    unit: f64,
) -> Vec<f64> {
    select_percentiles(data, qs, Ord::cmp, |a, b, pos| {
        interpolate(a.into(), b.into(), pos, unit)
    })
}

/// For each of `qs`, `value(a, b, pos)` of the order statistics `a` (rank
/// floor(pos)) and `b` (rank ceil(pos)) at fractional rank `pos`, the
/// ranks `percentile_sorted` interpolates between; NaN for empty data.
/// Percentiles are selected in ascending order, each in the part right of
/// the previous one, so a list like p50, p95, p99, max costs about 1.6
/// passes over the data instead of a sort.
fn select_percentiles<T: Copy>(
    data: &mut [T],
    qs: &[f64],
    cmp: impl Fn(&T, &T) -> Ordering + Copy,
    value: impl Fn(T, T, f64) -> f64,
) -> Vec<f64> {
    let n = data.len();
    let mut out = vec![f64::NAN; qs.len()];
    if n == 0 {
        return out;
    }
    let mut order: Vec<usize> = (0..qs.len()).collect();
    order.sort_by(|&a, &b| qs[a].total_cmp(&qs[b]));
    // Everything left of `from` ranks below every statistic still to come.
    let mut from = 0;
    for i in order {
        let pos = (n - 1) as f64 * (qs[i] / 100.0);
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        let lo = lo.max(from);
        let a = *data[from..].select_nth_unstable_by(lo - from, cmp).1;
        // After selection everything right of `lo` ranks at or above
        // data[lo], so the next order statistic is the least of that part.
        let b = if hi <= lo {
            a
        } else {
            *data[lo + 1..]
                .iter()
                .min_by(|x, y| cmp(x, y))
                .expect("hi < n")
        };
        from = lo;
        out[i] = value(a, b, pos);
    }
    out
}

/// numpy's linear interpolation at fractional rank `pos` between the order
/// statistics `a` (rank floor(pos)) and `b` (rank ceil(pos)), scaled by `unit`.
fn interpolate(a: u64, b: u64, pos: f64, unit: f64) -> f64 {
    let (fa, fb) = (a as f64 * unit, b as f64 * unit);
    let frac = pos.fract();
    if frac == 0.0 {
        fa
    } else {
        fa + (fb - fa) * frac
    }
}

/// `Some(x)` for a finite `x`, else `None` (written as JSON null).
pub fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// Arithmetic mean; NaN when empty.
pub fn mean(data: &[f64]) -> f64 {
    if data.is_empty() {
        f64::NAN
    } else {
        data.iter().sum::<f64>() / data.len() as f64
    }
}

/// Ranks of `xs`, 1-based, ties sharing their average rank (as
/// `scipy.stats.rankdata` and pandas' `rank()` do).
pub fn ranks(xs: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..xs.len()).collect();
    order.sort_by(|&a, &b| xs[a].total_cmp(&xs[b]));
    let mut r = vec![0.0; xs.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && xs[order[j + 1]] == xs[order[i]] {
            j += 1;
        }
        // Positions i..=j share the mean of ranks i+1..=j+1.
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    r
}

/// Spearman's rank correlation: Pearson's correlation of the ranks (ties
/// averaged), as `scipy.stats.spearmanr`. NaN with fewer than two pairs, a
/// NaN among them, or a constant side.
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    assert_eq!(x.len(), y.len(), "paired samples");
    if x.len() < 2 || x.iter().chain(y).any(|v| v.is_nan()) {
        return f64::NAN;
    }
    let (rx, ry) = (ranks(x), ranks(y));
    let (mx, my) = (mean(&rx), mean(&ry));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in rx.iter().zip(&ry) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx == 0.0 || syy == 0.0 {
        return f64::NAN;
    }
    sxy / (sxx * syy).sqrt()
}

/// Whether `a` and `b` are within `margin` of each other, as a fraction of
/// the larger magnitude (margin 0: equal).
pub fn within_margin(a: f64, b: f64, margin: f64) -> bool {
    (a - b).abs() <= margin * a.abs().max(b.abs())
}

/// Kendall's tau-b: concordant minus discordant pairs over the pairs not
/// tied on each side, as `scipy.stats.kendalltau` (its default variant).
/// NaN with fewer than two pairs, a NaN among them, or a constant side.
pub fn kendall_tau_b(x: &[f64], y: &[f64]) -> f64 {
    assert_eq!(x.len(), y.len(), "paired samples");
    if x.len() < 2 || x.iter().chain(y).any(|v| v.is_nan()) {
        return f64::NAN;
    }
    kendall_tau_b_pairs(
        x.len(),
        |i, j| x[i].total_cmp(&x[j]),
        |i, j| y[i].total_cmp(&y[j]),
        |_, _| false,
    )
}

/// Kendall's tau-b over the pairs `(i, j)`, `i < j`, of `n` items, each
/// side given as the order of a pair (`Equal`: a tie), leaving out the
/// pairs `skip` names. NaN when no pair is untied on one side.
pub fn kendall_tau_b_pairs(
    n: usize,
    x: impl Fn(usize, usize) -> std::cmp::Ordering,
    y: impl Fn(usize, usize) -> std::cmp::Ordering,
    skip: impl Fn(usize, usize) -> bool,
) -> f64 {
    // O(n^2): rankings here are of configurations, a few hundred at most.
    let (mut concordant, mut discordant, mut tied_x, mut tied_y) = (0i64, 0i64, 0i64, 0i64);
    for i in 0..n {
        for j in i + 1..n {
            if skip(i, j) {
                continue;
            }
            let (dx, dy) = (x(i, j) as i64, y(i, j) as i64);
            match (dx, dy) {
                (0, 0) => {}
                (0, _) => tied_x += 1,
                (_, 0) => tied_y += 1,
                _ if dx == dy => concordant += 1,
                _ => discordant += 1,
            }
        }
    }
    let nx = (concordant + discordant + tied_x) as f64;
    let ny = (concordant + discordant + tied_y) as f64;
    if nx == 0.0 || ny == 0.0 {
        return f64::NAN;
    }
    (concordant - discordant) as f64 / (nx * ny).sqrt()
}

/// Descriptive statistics of one metric across trials (seeds).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Describe {
    /// Trials.
    pub n: usize,
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation (n - 1 in the denominator, as pandas).
    pub std: f64,
    /// Minimum.
    pub min: f64,
    /// Maximum.
    pub max: f64,
    /// Coefficient of variation, std / mean.
    pub cv: f64,
    /// Lower end of the 95% Student t confidence interval of the mean.
    pub ci95_low: f64,
    /// Upper end.
    pub ci95_high: f64,
}

/// The two-sided 95% Student t quantile with `df` degrees of freedom.
pub fn t975(df: usize) -> f64 {
    use statrs::distribution::{ContinuousCDF, StudentsT};
    StudentsT::new(0.0, 1.0, df as f64)
        .expect("df >= 1")
        .inverse_cdf(0.975)
}

/// Describes `xs` (NaN entries ignored). With fewer than two values the
/// standard deviation and the interval are NaN: one trial says nothing
/// about spread.
pub fn describe(xs: &[f64]) -> Describe {
    let v: Vec<f64> = xs.iter().copied().filter(|x| !x.is_nan()).collect();
    let n = v.len();
    let m = mean(&v);
    let (min, max) = v
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    let (min, max) = if n == 0 {
        (f64::NAN, f64::NAN)
    } else {
        (min, max)
    };
    let std = if n >= 2 {
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    } else {
        f64::NAN
    };
    let half = if n >= 2 {
        t975(n - 1) * std / (n as f64).sqrt()
    } else {
        f64::NAN
    };
    Describe {
        n,
        mean: m,
        std,
        min,
        max,
        cv: std / m,
        ci95_low: m - half,
        ci95_high: m + half,
    }
}

/// Indices of the Pareto frontier of `points` (both coordinates minimised):
/// a point is on it if no other point is at least as good on both and
/// strictly better on one. NaN points are never on it. Ascending order.
pub fn pareto_front(points: &[(f64, f64)]) -> Vec<usize> {
    (0..points.len())
        .filter(|&i| {
            let (a, b) = points[i];
            !a.is_nan()
                && !b.is_nan()
                && !points
                    .iter()
                    .any(|&(x, y)| x <= a && y <= b && (x < a || y < b))
        })
        .collect()
}

#[cfg(test)]
mod tests {

    #[test]
    fn ranks_average_ties() {
        assert_eq!(ranks(&[10.0, 30.0, 20.0, 20.0]), vec![1.0, 4.0, 2.5, 2.5]);
        assert_eq!(ranks(&[]), Vec::<f64>::new());
    }

    #[test]
    fn kendall_tau_b_by_hand() {
        // Same order: 1; reversed: -1.
        assert_eq!(kendall_tau_b(&[1.0, 2.0, 3.0], &[10.0, 20.0, 90.0]), 1.0);
        assert_eq!(kendall_tau_b(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), -1.0);
        // One adjacent swap among 4: 5 concordant, 1 discordant of 6 pairs.
        let t = kendall_tau_b(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 4.0]);
        assert!((t - 4.0 / 6.0).abs() < 1e-12, "{t}");
        // Ties: x = [1,2,2,3], y = [1,2,3,3]: 4 concordant, 0 discordant, one
        // pair tied in x only and one in y only: 4 / sqrt(5 * 5) = 0.8
        // (scipy.stats.kendalltau gives 0.8).
        let t = kendall_tau_b(&[1.0, 2.0, 2.0, 3.0], &[1.0, 2.0, 3.0, 3.0]);
        assert!((t - 0.8).abs() < 1e-12, "{t}");
        assert!(
            kendall_tau_b(&[1.0, 1.0], &[1.0, 2.0]).is_nan(),
            "constant side"
        );
        assert!(kendall_tau_b(&[1.0], &[1.0]).is_nan());
        assert!(kendall_tau_b(&[1.0, f64::NAN], &[1.0, 2.0]).is_nan());
    }

    #[test]
    fn spearman_by_hand() {
        // Monotone either way, whatever the spacing.
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[1.0, 10.0, 1000.0]), 1.0);
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[5.0, 4.0, -9.0]), -1.0);
        // x ranks 1..5, y = [5,6,7,8,7] ranks [1,2,3.5,5,3.5]; both mean 3:
        // dx = [-2,-1,0,1,2], dy = [-2,-1,0.5,2,0.5]; sum dx*dy = 4+1+0+2+1 = 8,
        // sum dx^2 = 10, sum dy^2 = 4+1+0.25+4+0.25 = 9.5; rho = 8 / sqrt(95) = 0.8208
        // (scipy.stats.spearmanr gives 0.82078...).
        let rho = spearman(&[1.0, 2.0, 3.0, 4.0, 5.0], &[5.0, 6.0, 7.0, 8.0, 7.0]);
        assert!((rho - 8.0 / 95f64.sqrt()).abs() < 1e-12, "{rho}");
        // A peak in the middle: rises then falls, rho 0.
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[1.0, 3.0, 1.0]), 0.0);
        assert!(spearman(&[1.0, 1.0], &[1.0, 2.0]).is_nan(), "constant side");
        assert!(spearman(&[1.0], &[1.0]).is_nan());
    }
    use super::*;

    #[test]
    fn percentiles_match_numpy_linear() {
        // numpy.percentile([1, 2, 3, 4], [0, 25, 50, 95, 100]) = [1, 1.75, 2.5, 3.85, 4]
        let got = percentiles(&[4.0, 1.0, 3.0, 2.0], &[0.0, 25.0, 50.0, 95.0, 100.0]);
        let want = [1.0, 1.75, 2.5, 3.85, 4.0];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{got:?}");
        }
        // numpy.percentile([10], 99) = 10; empty -> NaN
        assert_eq!(percentile_sorted(&[10.0], 99.0), 10.0);
        assert!(percentile_sorted(&[], 50.0).is_nan());
        // numpy.percentile(range(11), 95) = 9.5
        let r: Vec<f64> = (0..11).map(f64::from).collect();
        assert!((percentile_sorted(&r, 95.0) - 9.5).abs() < 1e-12);
    }

    #[test]
    fn integer_percentiles_agree_with_float_ones() {
        let mut v: Vec<u64> = vec![4000, 1000, 3000, 2000];
        let got = percentiles_int(&mut v, &[0.0, 25.0, 50.0, 95.0, 100.0], 1e-3);
        let want = sorted_percentiles(&[4.0, 1.0, 3.0, 2.0], &[0.0, 25.0, 50.0, 95.0, 100.0]);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-12, "{got:?} vs {want:?}");
        }
        assert!(percentiles_int::<u64>(&mut [], &[50.0], 1.0)[0].is_nan());
        // Against a full sort on pseudo-random data with duplicates.
        let mut r = crate::rng::keyed(2, crate::rng::Stream::Factory, [0; 4]);
        use rand::Rng;
        let data: Vec<u64> = (0..1001).map(|_| (r.next_u32() % 300) as u64).collect();
        let qs = [0.0, 1.0, 33.3, 50.0, 95.0, 99.0, 99.9, 100.0];
        let floats: Vec<f64> = data.iter().map(|&x| x as f64).collect();
        let want = sorted_percentiles(&floats, &qs);
        let got = percentiles_int(&mut data.clone(), &qs, 1.0);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-9, "{got:?} vs {want:?}");
        }
    }

    proptest::proptest! {
        /// Any data, any percentiles in any order: selection agrees with a
        /// full sort.
        #[test]
        fn integer_percentiles_match_a_full_sort(
            data in proptest::collection::vec(0u64..50, 1..200),
            qs in proptest::collection::vec(0.0f64..=100.0, 1..8),
        ) {
            let floats: Vec<f64> = data.iter().map(|&x| x as f64).collect();
            let want = sorted_percentiles(&floats, &qs);
            let got = percentiles_int(&mut data.clone(), &qs, 1.0);
            for (g, w) in got.iter().zip(&want) {
                proptest::prop_assert!((g - w).abs() < 1e-9, "{:?} vs {:?}", got, want);
            }
        }

        /// Float selection gives, bit for bit, what a full sort and
        /// `percentile_sorted` give: any floats (ties, signed zeros,
        /// infinities and NaNs among them), any percentiles in any order.
        #[test]
        fn float_percentiles_match_a_full_sort_bit_for_bit(
            data in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Strategy::prop_map(0u8..6, f64::from),
                    proptest::prelude::any::<f64>(),
                    proptest::prelude::Just(-0.0),
                ],
                1..300,
            ),
            qs in proptest::collection::vec(0.0f64..=100.0, 1..6),
        ) {
            let want = sorted_percentiles(&data, &qs);
            let got = percentiles_select(&mut data.clone(), &qs);
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            proptest::prop_assert_eq!(bits(&got), bits(&want));
        }
    }

    /// The reference: a full sort, then `percentile_sorted` per percentile.
    fn sorted_percentiles(data: &[f64], qs: &[f64]) -> Vec<f64> {
        let mut v = data.to_vec();
        v.sort_by(f64::total_cmp);
        qs.iter().map(|&q| percentile_sorted(&v, q)).collect()
    }

    #[test]
    fn t_interval_matches_hand_computation() {
        // xs = 1..=5: mean 3, s = sqrt(2.5) = 1.5811, t(0.975, 4) = 2.7764451,
        // half width = 2.7764451 * 1.5811388 / sqrt(5) = 1.9632432.
        let d = describe(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!((d.n, d.mean, d.min, d.max), (5, 3.0, 1.0, 5.0));
        assert!((d.std - 2.5f64.sqrt()).abs() < 1e-12);
        assert!((t975(4) - 2.776_445_105).abs() < 1e-8);
        assert!((d.ci95_low - (3.0 - 1.963_243_2)).abs() < 1e-6, "{d:?}");
        assert!((d.ci95_high - (3.0 + 1.963_243_2)).abs() < 1e-6);
        assert!((d.cv - 2.5f64.sqrt() / 3.0).abs() < 1e-12);
        // Two points: t(0.975, 1) = 12.7062.
        let d = describe(&[10.0, 12.0]);
        assert!(
            (d.ci95_high - (11.0 + 12.706_204_7 * 2f64.sqrt() / 2f64.sqrt())).abs() < 1e-5,
            "{d:?}"
        );
        let one = describe(&[7.0]);
        assert_eq!(one.mean, 7.0);
        assert!(one.std.is_nan() && one.ci95_low.is_nan());
    }

    #[test]
    fn pareto_front_of_hand_made_points() {
        // (makespan, cost): 0 and 2 trade off; 1 is dominated by 0; 3 ties 0
        // exactly (neither dominates); 4 is NaN.
        let pts = [
            (1.0, 5.0),
            (2.0, 6.0),
            (3.0, 1.0),
            (1.0, 5.0),
            (f64::NAN, 0.0),
            (3.0, 2.0),
        ];
        assert_eq!(pareto_front(&pts), vec![0, 2, 3]);
        assert!(pareto_front(&[]).is_empty());
    }

    #[test]
    fn mean_of_empty_is_nan() {
        assert!(mean(&[]).is_nan());
        assert_eq!(mean(&[1.0, 2.0, 6.0]), 3.0);
    }
}
