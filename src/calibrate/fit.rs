//! Maximum-likelihood fits of latency samples: the scenario's families
//! (lognormal, gamma, exponential, constant), each with the scenario's
//! multiplicative tails as mixture components, fitted by EM with
//! right-censored observations (timeouts, cancelled attempts); AIC and the
//! Kolmogorov-Smirnov distance to compare them.

use serde::Serialize;
use statrs::function::erf::erfc;
use statrs::function::gamma::{digamma, gamma_lr, gamma_ur, ln_gamma};

use crate::scenario::{Dist, MAX_FACTOR, MAX_SIGMA};

/// A latency family the scenario schema can express.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// `exp(N(mu, sigma))`.
    Lognormal,
    /// Gamma(shape, scale).
    Gamma,
    /// Exponential(mean).
    Exponential,
    /// Every sample the same.
    Constant,
}

impl Family {
    /// The families tried on samples that vary.
    pub const FITTED: [Family; 3] = [Family::Lognormal, Family::Gamma, Family::Exponential];

    /// Its name in the scenario schema.
    pub fn name(self) -> &'static str {
        match self {
            Family::Lognormal => "lognormal",
            Family::Gamma => "gamma",
            Family::Exponential => "exponential",
            Family::Constant => "constant",
        }
    }

    fn params(self) -> usize {
        match self {
            Family::Lognormal | Family::Gamma => 2,
            Family::Exponential | Family::Constant => 1,
        }
    }
}

/// A fitted body distribution (ms).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Body {
    /// `exp(N(mu, sigma))`.
    Lognormal {
        /// Log-ms location.
        mu: f64,
        /// Log-ms scale.
        sigma: f64,
    },
    /// Gamma.
    Gamma {
        /// k.
        shape: f64,
        /// theta (ms).
        scale: f64,
    },
    /// Exponential.
    Exponential {
        /// Mean (ms).
        mean: f64,
    },
    /// A point mass.
    Constant {
        /// The value (ms).
        ms: f64,
    },
}

/// Weighted observations: (value, weight).
pub type Weighted = [(f64, f64)];

impl Body {
    /// Its family.
    pub fn family(&self) -> Family {
        match self {
            Body::Lognormal { .. } => Family::Lognormal,
            Body::Gamma { .. } => Family::Gamma,
            Body::Exponential { .. } => Family::Exponential,
            Body::Constant { .. } => Family::Constant,
        }
    }

    /// The mean (ms).
    pub fn mean(&self) -> f64 {
        match *self {
            Body::Lognormal { mu, sigma } => (mu + sigma * sigma / 2.0).exp(),
            Body::Gamma { shape, scale } => shape * scale,
            Body::Exponential { mean } => mean,
            Body::Constant { ms } => ms,
        }
    }

    /// The scenario's latency model for it; a lognormal keeps the
    /// scenario's shift of mu per output token (the samples were
    /// normalised by it).
    pub fn to_dist(&self, mu_per_output_token: f64) -> Dist {
        match *self {
            Body::Lognormal { mu, sigma } => Dist::Lognormal {
                mu,
                sigma,
                mu_per_output_token,
            },
            Body::Gamma { shape, scale } => Dist::Gamma {
                shape,
                scale_ms: scale,
            },
            Body::Exponential { mean } => Dist::Exponential { mean_ms: mean },
            Body::Constant { ms } => Dist::Constant { ms },
        }
    }

    /// Its parameters by their scenario names.
    pub fn params_json(&self) -> serde_json::Value {
        serde_json::to_value(self.to_dist(0.0)).expect("dist serializes")
    }

    /// log density at `x` > 0.
    pub fn ln_pdf(&self, x: f64) -> f64 {
        match *self {
            Body::Lognormal { mu, sigma } => {
                let z = (x.ln() - mu) / sigma;
                -0.5 * z * z - x.ln() - sigma.ln() - 0.5 * (2.0 * std::f64::consts::PI).ln()
            }
            Body::Gamma { shape, scale } => {
                (shape - 1.0) * x.ln() - x / scale - ln_gamma(shape) - shape * scale.ln()
            }
            Body::Exponential { mean } => -x / mean - mean.ln(),
            // A point mass has no density; the EM never runs on one.
            Body::Constant { ms } => {
                if (x - ms).abs() <= 1e-9 * ms.max(1.0) {
                    0.0
                } else {
                    f64::NEG_INFINITY
                }
            }
        }
    }

    /// P(X <= x).
    pub fn cdf(&self, x: f64) -> f64 {
        if x <= 0.0 {
            return 0.0;
        }
        // statrs' incomplete gamma functions refuse these (a panic).
        if x == f64::INFINITY {
            return 1.0;
        }
        if x.is_nan() {
            return f64::NAN;
        }
        match *self {
            Body::Lognormal { mu, sigma } => {
                0.5 * erfc(-(x.ln() - mu) / (sigma * std::f64::consts::SQRT_2))
            }
            Body::Gamma { shape, scale } => match x / scale {
                z if z.is_finite() => gamma_lr(shape, z),
                _ => 1.0,
            },
            Body::Exponential { mean } => -(-x / mean).exp_m1(),
            Body::Constant { ms } => (x >= ms) as u8 as f64,
        }
    }

    /// P(X > x), accurate in the upper tail.
    pub fn sf(&self, x: f64) -> f64 {
        if x <= 0.0 {
            return 1.0;
        }
        if x == f64::INFINITY {
            return 0.0;
        }
        if x.is_nan() {
            return f64::NAN;
        }
        match *self {
            Body::Lognormal { mu, sigma } => {
                0.5 * erfc((x.ln() - mu) / (sigma * std::f64::consts::SQRT_2))
            }
            Body::Gamma { shape, scale } => match x / scale {
                z if z.is_finite() => gamma_ur(shape, z),
                _ => 0.0,
            },
            Body::Exponential { mean } => (-x / mean).exp(),
            Body::Constant { ms } => (x < ms) as u8 as f64,
        }
    }

    /// The weighted maximum-likelihood fit of `family` to positive values.
    /// None when the weights are empty or the values cannot carry the
    /// family (a gamma or lognormal on values that do not vary).
    pub fn fit(family: Family, xs: &Weighted) -> Option<Body> {
        let w: f64 = xs.iter().map(|p| p.1).sum();
        if w <= 0.0 || !w.is_finite() {
            return None;
        }
        let stats = Sufficient {
            w,
            x: xs.iter().map(|(x, w)| x * w).sum::<f64>(),
            ln: xs.iter().map(|(x, w)| x.ln() * w).sum::<f64>(),
            ln2: xs.iter().map(|(x, w)| x.ln().powi(2) * w).sum::<f64>(),
        };
        Body::from_sufficient(family, &stats)
    }

    /// One EM step's fit: observed values, plus values known only to
    /// exceed a bound, each replaced by its expected sufficient statistics
    /// under `current` (exact for the lognormal and exponential; for the
    /// gamma, ln of the conditional mean stands in for the conditional
    /// mean of ln).
    pub fn fit_censored(
        family: Family,
        xs: &Weighted,
        censored: &Weighted,
        current: &Body,
    ) -> Option<Body> {
        let mut s = Sufficient {
            w: 0.0,
            x: 0.0,
            ln: 0.0,
            ln2: 0.0,
        };
        for &(x, w) in xs {
            s.add(w, x, x.ln(), x.ln().powi(2));
        }
        for &(c, w) in censored {
            if let Some((ex, eln, eln2)) = current.beyond(c) {
                s.add(w, ex, eln, eln2);
            }
        }
        if s.w <= 0.0 || !s.w.is_finite() {
            return None;
        }
        Body::from_sufficient(family, &s)
    }

    /// E[X], E[ln X] and E[(ln X)^2] given X > c; None where the
    /// body leaves no mass beyond c.
    fn beyond(&self, c: f64) -> Option<(f64, f64, f64)> {
        match *self {
            Body::Lognormal { mu, sigma } => {
                let a = (c.ln() - mu) / sigma;
                let tail = 0.5 * erfc(a / std::f64::consts::SQRT_2);
                if tail < 1e-300 {
                    return None;
                }
                let phi = (-0.5 * a * a).exp() / (2.0 * std::f64::consts::PI).sqrt();
                let lambda = phi / tail;
                let eln = mu + sigma * lambda;
                let eln2 = mu * mu + 2.0 * mu * sigma * lambda + sigma * sigma * (1.0 + a * lambda);
                let ex = (mu + sigma * sigma / 2.0).exp()
                    * (0.5 * erfc((a - sigma) / std::f64::consts::SQRT_2))
                    / tail;
                Some((ex, eln, eln2))
            }
            Body::Exponential { mean } => {
                let ex = c + mean;
                Some((ex, ex.ln(), ex.ln().powi(2)))
            }
            Body::Gamma { shape, scale } => {
                if !(c / scale).is_finite() {
                    return None;
                }
                let tail = gamma_ur(shape, c / scale);
                if tail < 1e-300 {
                    return None;
                }
                let ex = shape * scale * gamma_ur(shape + 1.0, c / scale) / tail;
                Some((ex, ex.ln(), ex.ln().powi(2)))
            }
            Body::Constant { .. } => None,
        }
    }

    fn from_sufficient(family: Family, s: &Sufficient) -> Option<Body> {
        let w = s.w;
        let mean = s.x / w;
        let mean_ln = s.ln / w;
        match family {
            Family::Constant => Some(Body::Constant { ms: mean }),
            Family::Exponential => (mean > 0.0).then_some(Body::Exponential { mean }),
            Family::Lognormal => {
                let var = (s.ln2 / w - mean_ln * mean_ln).max(0.0);
                let sigma = var.sqrt();
                (sigma > 1e-9 && sigma <= MAX_SIGMA)
                    .then_some(Body::Lognormal { mu: mean_ln, sigma })
            }
            Family::Gamma => {
                // The shape solves ln k - digamma(k) = ln(mean) - mean(ln x),
                // whose left side falls from +inf to 0: bisect in log k.
                let s = mean.ln() - mean_ln;
                if s.is_nan() || s <= 1e-12 {
                    return None;
                }
                let g = |k: f64| k.ln() - digamma(k) - s;
                let (mut lo, mut hi) = (1e-4f64.ln(), MAX_FACTOR.ln());
                if g(hi.exp()) > 0.0 {
                    return None;
                }
                for _ in 0..200 {
                    let mid = 0.5 * (lo + hi);
                    if g(mid.exp()) > 0.0 {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
                let shape = (0.5 * (lo + hi)).exp();
                Some(Body::Gamma {
                    shape,
                    scale: mean / shape,
                })
            }
        }
    }
}

/// Weighted sums of x, ln x and (ln x)^2.
struct Sufficient {
    w: f64,
    x: f64,
    ln: f64,
    ln2: f64,
}

impl Sufficient {
    fn add(&mut self, w: f64, x: f64, ln: f64, ln2: f64) {
        self.w += w;
        self.x += w * x;
        self.ln += w * ln;
        self.ln2 += w * ln2;
    }
}

/// The scenario's multiplicative tails, whose multipliers are held and
/// whose probabilities are estimated.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Tails {
    /// The node type's own tail multiplier, if it has one.
    pub node_mult: Option<f64>,
    /// The global heavy tail multiplier, if any.
    pub heavy_mult: Option<f64>,
    /// Starting probabilities (node, heavy).
    pub start: (f64, f64),
}

/// A fitted mixture: body x {1, node tail} x {1, heavy tail}.
#[derive(Clone, Debug, PartialEq)]
pub struct MixtureFit {
    /// The body.
    pub body: Body,
    /// P(node tail) (0 without one).
    pub node_prob: f64,
    /// P(heavy tail) (0 without one).
    pub heavy_prob: f64,
    /// Log-likelihood of every observation (censored ones by survival).
    pub log_likelihood: f64,
    /// Akaike's information criterion.
    pub aic: f64,
    /// Kolmogorov-Smirnov distance of the uncensored values from the mixture.
    pub ks: f64,
    /// EM iterations run.
    pub iterations: usize,
    /// Per uncensored value: the probability it is in the body (no tail).
    pub body_responsibility: Vec<f64>,
}

impl MixtureFit {
    /// The mixture's components: (multiplier, probability).
    pub fn components(&self, tails: &Tails) -> Vec<(f64, f64)> {
        components(tails, self.node_prob, self.heavy_prob)
    }

    /// The mixture's mean (ms).
    pub fn mean(&self, tails: &Tails) -> f64 {
        self.components(tails)
            .iter()
            .map(|(m, p)| m * p)
            .sum::<f64>()
            * self.body.mean()
    }

    /// P(X > x) under the mixture.
    pub fn sf(&self, tails: &Tails, x: f64) -> f64 {
        self.components(tails)
            .iter()
            .map(|(m, p)| p * self.body.sf(x / m))
            .sum()
    }
}

fn components(t: &Tails, pn: f64, ph: f64) -> Vec<(f64, f64)> {
    let node = match t.node_mult {
        Some(m) => vec![(1.0, 1.0 - pn), (m, pn)],
        None => vec![(1.0, 1.0)],
    };
    let heavy = match t.heavy_mult {
        Some(m) => vec![(1.0, 1.0 - ph), (m, ph)],
        None => vec![(1.0, 1.0)],
    };
    let mut out = Vec::with_capacity(4);
    for (mn, qn) in &node {
        for (mh, qh) in &heavy {
            out.push((mn * mh, qn * qh));
        }
    }
    out
}

fn snap(p: f64) -> f64 {
    if p < 1e-9 { 0.0 } else { p }
}

fn log_sum_exp(v: &[f64]) -> f64 {
    let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// The Kolmogorov-Smirnov distance of `sorted` values from `cdf`.
pub fn ks_distance(sorted: &[f64], cdf: impl Fn(f64) -> f64) -> f64 {
    let n = sorted.len() as f64;
    sorted
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let f = cdf(x);
            (f - i as f64 / n).max((i + 1) as f64 / n - f)
        })
        .fold(0.0, f64::max)
}

/// Fits `family` with `tails` by EM to `values` (observed latencies, ms)
/// and `censored` (latencies known only to exceed these, ms: timeouts,
/// cancelled attempts). None when the family cannot be fitted.
pub fn fit_mixture(
    family: Family,
    values: &[f64],
    censored: &[f64],
    tails: &Tails,
) -> Option<MixtureFit> {
    if values.is_empty() {
        return None;
    }
    let unweighted: Vec<(f64, f64)> = values.iter().map(|&x| (x, 1.0)).collect();
    let mut body = Body::fit(family, &unweighted)?;
    let clamp = |p: f64| p.clamp(0.0, 0.999);
    let (mut pn, mut ph) = (
        if tails.node_mult.is_some() {
            clamp(tails.start.0.max(0.01))
        } else {
            0.0
        },
        if tails.heavy_mult.is_some() {
            clamp(tails.start.1.max(0.01))
        } else {
            0.0
        },
    );
    let has_tail = tails.node_mult.is_some() || tails.heavy_mult.is_some();
    let mut ll_prev = f64::NEG_INFINITY;
    let mut iterations = 0;
    let mut resp: Vec<Vec<f64>> = Vec::new();
    let mut resp_censored: Vec<Vec<f64>> = Vec::new();
    let mut ll = f64::NEG_INFINITY;
    let iterate = has_tail || !censored.is_empty();
    let max_iter = if iterate { 500 } else { 1 };
    while iterations < max_iter {
        iterations += 1;
        let comps = components(tails, pn, ph);
        // E step: responsibilities of each component.
        ll = 0.0;
        resp.clear();
        resp_censored.clear();
        let mut weight_node = 0.0;
        let mut weight_heavy = 0.0;
        let mut e_step = |lw: Vec<f64>, ll: &mut f64, resp: &mut Vec<Vec<f64>>| {
            let total = log_sum_exp(&lw);
            *ll += total;
            let r: Vec<f64> = lw.iter().map(|l| (l - total).exp()).collect();
            for (k, rk) in r.iter().enumerate() {
                let (in_node, in_heavy) = component_flags(tails, k);
                weight_node += rk * in_node as u8 as f64;
                weight_heavy += rk * in_heavy as u8 as f64;
            }
            resp.push(r);
        };
        for &x in values {
            let lw = comps
                .iter()
                .map(|(m, p)| p.ln() + body.ln_pdf(x / m) - m.ln())
                .collect();
            e_step(lw, &mut ll, &mut resp);
        }
        for &c in censored {
            let lw = comps
                .iter()
                .map(|(m, p)| p.ln() + body.sf(c / m).ln())
                .collect();
            e_step(lw, &mut ll, &mut resp_censored);
        }
        if !iterate || (ll - ll_prev).abs() <= 1e-10 * ll.abs().max(1.0) {
            break;
        }
        ll_prev = ll;
        // M step: tail probabilities, then the body on de-tailed values.
        let n = (values.len() + censored.len()) as f64;
        if tails.node_mult.is_some() {
            pn = clamp(weight_node / n);
        }
        if tails.heavy_mult.is_some() {
            ph = clamp(weight_heavy / n);
        }
        let weighted: Vec<(f64, f64)> = values
            .iter()
            .zip(&resp)
            .flat_map(|(&x, r)| comps.iter().zip(r).map(move |((m, _), w)| (x / m, *w)))
            .filter(|p| p.1 > 1e-12)
            .collect();
        let weighted_censored: Vec<(f64, f64)> = censored
            .iter()
            .zip(&resp_censored)
            .flat_map(|(&c, r)| comps.iter().zip(r).map(move |((m, _), w)| (c / m, *w)))
            .filter(|p| p.1 > 1e-12)
            .collect();
        body = Body::fit_censored(family, &weighted, &weighted_censored, &body)?;
    }
    // EM creeps towards zero without reaching it: call a vanishing tail none.
    let (pn, ph) = (snap(pn), snap(ph));
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let comps = components(tails, pn, ph);
    let ks = ks_distance(&sorted, |x| {
        comps.iter().map(|(m, p)| p * body.cdf(x / m)).sum()
    });
    let k =
        family.params() + tails.node_mult.is_some() as usize + tails.heavy_mult.is_some() as usize;
    Some(MixtureFit {
        body,
        node_prob: pn,
        heavy_prob: ph,
        log_likelihood: ll,
        aic: 2.0 * k as f64 - 2.0 * ll,
        ks,
        iterations,
        body_responsibility: resp.iter().map(|r| r[0]).collect(),
    })
}

/// Whether component `k` of [`components`] is in the node tail and in the heavy tail.
fn component_flags(t: &Tails, k: usize) -> (bool, bool) {
    match (t.node_mult.is_some(), t.heavy_mult.is_some()) {
        (true, true) => (k >= 2, k % 2 == 1),
        (true, false) => (k == 1, false),
        (false, true) => (false, k == 1),
        (false, false) => (false, false),
    }
}

/// The maximum-likelihood lognormal of positive values: (mu, sigma).
pub fn lognormal_mle(values: &[f64]) -> Option<(f64, f64)> {
    let xs: Vec<(f64, f64)> = values
        .iter()
        .filter(|x| **x > 0.0)
        .map(|&x| (x, 1.0))
        .collect();
    match Body::fit(Family::Lognormal, &xs)? {
        Body::Lognormal { mu, sigma } => Some((mu, sigma)),
        _ => None,
    }
}

/// The median of a slice (sorted in place), as numpy computes it.
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    crate::stats::percentile_sorted(v, 50.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_distr::{Distribution, Exp, Gamma, LogNormal};

    /// statrs' incomplete gamma functions panic on an infinite argument;
    /// the bodies answer their limits instead.
    #[test]
    fn tails_at_infinity_are_their_limits() {
        let bodies = [
            Body::Gamma {
                shape: 2.0,
                scale: 3.0,
            },
            Body::Gamma {
                shape: 2.0,
                scale: 1e-310,
            },
            Body::Lognormal {
                mu: 1.0,
                sigma: 0.5,
            },
            Body::Exponential { mean: 4.0 },
        ];
        for b in bodies {
            assert_eq!(b.sf(f64::INFINITY), 0.0, "{b:?}");
            assert_eq!(b.cdf(f64::INFINITY), 1.0, "{b:?}");
            assert!(b.sf(f64::NAN).is_nan() && b.cdf(f64::NAN).is_nan(), "{b:?}");
        }
        // A finite x past a tiny scale is infinitely far out.
        let tiny = bodies[1];
        assert_eq!((tiny.sf(1e10), tiny.cdf(1e10)), (0.0, 1.0));
    }

    fn draws<D: Distribution<f64>>(d: D, n: usize, key: u64) -> Vec<f64> {
        let mut rng = rand_pcg::Pcg64Mcg::new(((key as u128) << 64) | 0x9e37_79b9_7f4a_7c15);
        (0..n).map(|_| d.sample(&mut rng)).collect()
    }

    #[test]
    fn weighted_fits_match_closed_forms() {
        // Lognormal: mean and population sd of the logs.
        let xs = [(1f64.exp(), 1.0), (3f64.exp(), 1.0)];
        assert_eq!(
            Body::fit(Family::Lognormal, &xs),
            Some(Body::Lognormal {
                mu: 2.0,
                sigma: 1.0
            })
        );
        // Weights count as repeats.
        let w = [(2.0, 3.0), (6.0, 1.0)];
        assert_eq!(
            Body::fit(Family::Exponential, &w),
            Some(Body::Exponential { mean: 3.0 })
        );
        // Values that do not vary carry no lognormal or gamma.
        let same = [(5.0, 1.0), (5.0, 2.0)];
        assert_eq!(Body::fit(Family::Lognormal, &same), None);
        assert_eq!(Body::fit(Family::Gamma, &same), None);
        assert_eq!(Body::fit(Family::Exponential, &[]), None);
    }

    #[test]
    fn gamma_shape_solves_the_likelihood_equation() {
        let xs: Vec<(f64, f64)> = [1.0, 2.0, 4.0, 8.0].iter().map(|&x| (x, 1.0)).collect();
        let Some(Body::Gamma { shape, scale }) = Body::fit(Family::Gamma, &xs) else {
            panic!("no gamma")
        };
        let s = (15.0f64 / 4.0).ln() - (1.0f64 * 2.0 * 4.0 * 8.0).ln() / 4.0;
        assert!((shape.ln() - digamma(shape) - s).abs() < 1e-9);
        assert!((shape * scale - 3.75).abs() < 1e-9);
    }

    #[test]
    fn cdf_and_sf_agree_and_match_known_points() {
        let bodies = [
            Body::Lognormal {
                mu: 1.0,
                sigma: 0.5,
            },
            Body::Gamma {
                shape: 3.0,
                scale: 2.0,
            },
            Body::Exponential { mean: 4.0 },
        ];
        for b in bodies {
            for x in [0.5, 2.0, 7.0, 30.0] {
                assert!((b.cdf(x) + b.sf(x) - 1.0).abs() < 1e-12, "{b:?} at {x}");
            }
        }
        // The lognormal's median is e^mu; the exponential's cdf at its mean 1 - 1/e.
        assert!((bodies[0].cdf(1f64.exp()) - 0.5).abs() < 1e-12);
        assert!((bodies[2].cdf(4.0) - (1.0 - (-1f64).exp())).abs() < 1e-12);
    }

    #[test]
    fn recovers_each_family_and_aic_picks_it() {
        let n = 4000;
        let cases: [(Family, Vec<f64>); 3] = [
            (
                Family::Lognormal,
                draws(LogNormal::new(6.0, 0.5).unwrap(), n, 1),
            ),
            (Family::Gamma, draws(Gamma::new(4.0, 25.0).unwrap(), n, 2)),
            (
                Family::Exponential,
                draws(Exp::new(1.0 / 300.0).unwrap(), n, 3),
            ),
        ];
        for (truth, xs) in &cases {
            let fits: Vec<MixtureFit> = Family::FITTED
                .iter()
                .map(|f| fit_mixture(*f, xs, &[], &Tails::default()).unwrap())
                .collect();
            let best = fits.iter().min_by(|a, b| a.aic.total_cmp(&b.aic)).unwrap();
            let summary: Vec<_> = fits.iter().map(|f| (f.body, f.aic, f.ks)).collect();
            assert_eq!(best.body.family(), *truth, "{summary:?}");
        }
        let fit = fit_mixture(Family::Lognormal, &cases[0].1, &[], &Tails::default()).unwrap();
        let Body::Lognormal { mu, sigma } = fit.body else {
            panic!()
        };
        assert!(
            (mu - 6.0).abs() < 0.03 && (sigma - 0.5).abs() < 0.03,
            "{mu} {sigma}"
        );
        let fit = fit_mixture(Family::Gamma, &cases[1].1, &[], &Tails::default()).unwrap();
        let Body::Gamma { shape, scale } = fit.body else {
            panic!()
        };
        assert!((shape / 4.0 - 1.0).abs() < 0.08 && (shape * scale / 100.0 - 1.0).abs() < 0.03);
    }

    #[test]
    fn em_separates_a_heavy_tail_and_uses_censored_values() {
        // 5% of draws x 50; those past 3,000 ms are cut (a timeout).
        let body = draws(LogNormal::new(5.0, 0.4).unwrap(), 6000, 7);
        let u = draws(rand_distr::Uniform::new(0.0, 1.0).unwrap(), 6000, 8);
        let limit = 3000.0;
        let (mut values, mut censored) = (vec![], vec![]);
        for (x, u) in body.iter().zip(&u) {
            let x = if *u < 0.05 { x * 50.0 } else { *x };
            if x > limit {
                censored.push(limit)
            } else {
                values.push(x)
            }
        }
        assert!(!censored.is_empty());
        let tails = Tails {
            node_mult: None,
            heavy_mult: Some(50.0),
            start: (0.0, 0.01),
        };
        let fit = fit_mixture(Family::Lognormal, &values, &censored, &tails).unwrap();
        assert!((fit.heavy_prob - 0.05).abs() < 0.008, "{}", fit.heavy_prob);
        let Body::Lognormal { mu, sigma } = fit.body else {
            panic!()
        };
        assert!(
            (mu - 5.0).abs() < 0.02 && (sigma - 0.4).abs() < 0.02,
            "{mu} {sigma}"
        );
        // Most tail draws were cut: without the censored values the tail
        // looks far rarer than it is.
        let blind = fit_mixture(Family::Lognormal, &values, &[], &tails).unwrap();
        assert!(blind.heavy_prob < 0.03, "{}", blind.heavy_prob);
    }

    #[test]
    fn censored_values_correct_the_body() {
        // A timeout at e^5.5 cuts about 16% of lognormal(5, 0.5) draws.
        let limit = 5.5f64.exp();
        let xs = draws(LogNormal::new(5.0, 0.5).unwrap(), 8000, 11);
        let values: Vec<f64> = xs.iter().copied().filter(|x| *x <= limit).collect();
        let censored = vec![limit; xs.len() - values.len()];
        let fit = fit_mixture(Family::Lognormal, &values, &censored, &Tails::default()).unwrap();
        let Body::Lognormal { mu, sigma } = fit.body else {
            panic!()
        };
        assert!(
            (mu - 5.0).abs() < 0.02 && (sigma - 0.5).abs() < 0.02,
            "{mu} {sigma}"
        );
        let naive = fit_mixture(Family::Lognormal, &values, &[], &Tails::default()).unwrap();
        let Body::Lognormal { sigma: s2, .. } = naive.body else {
            panic!()
        };
        assert!(s2 < 0.45, "{s2}");
        // The exponential's censored mean is exact by memorylessness.
        let xs = draws(Exp::new(1.0 / 100.0).unwrap(), 8000, 12);
        let values: Vec<f64> = xs.iter().copied().filter(|x| *x <= 150.0).collect();
        let censored = vec![150.0; xs.len() - values.len()];
        let fit = fit_mixture(Family::Exponential, &values, &censored, &Tails::default()).unwrap();
        assert!(
            (fit.body.mean() / 100.0 - 1.0).abs() < 0.04,
            "{:?}",
            fit.body
        );
    }

    #[test]
    fn ks_distance_by_hand() {
        // Against Uniform(0, 1), per value max(F - i/n, (i+1)/n - F):
        let d = ks_distance(&[0.1, 0.5, 0.9], |x| x);
        // i=0: max(0.1-0, 1/3-0.1)=0.2333; i=1: max(0.5-1/3, 2/3-0.5)=0.1667; i=2: max(0.9-2/3, 1-0.9)=0.2333
        assert!((d - (1.0 / 3.0 - 0.1)).abs() < 1e-12, "{d}");
        let mut v = [3.0, 1.0, 2.0, 10.0];
        assert_eq!(median(&mut v), 2.5);
    }
}
