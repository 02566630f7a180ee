//! The simulator against queueing theory.
//!
//! Each case runs a `single_call` scenario with Poisson arrivals and one
//! tier of `c` slots, and compares the simulated mean queue wait with the
//! closed form:
//! - M/M/1: `Wq = rho / (mu - lambda)`;
//! - M/M/c: `Wq = C(c, a) / (c mu - lambda)`, `C` Erlang's C formula, `a = lambda / mu`;
//! - M/D/1 (Pollaczek-Khinchine with deterministic service): `Wq = rho / (2 mu (1 - rho))`;
//! - Little's law: the time-averaged number in system `L` (its own
//!   integral in the simulator) against `lambda (Wq + 1/mu)` from Erlang C.
//! - A tier bound only by a tokens-per-minute limit: throughput equals the
//!   bucket's rate over the tokens each call reserves.
//!
//! Tolerances are relative and sized from the seed-to-seed spread of the
//! simulated means (about 2% of Erlang C at c = 8, utilisation 0.9 and 1M
//! customers, growing as 1/sqrt(N)).

use serde::Serialize;

use crate::metrics::NullObserver;
use crate::scenario::{Arrivals, Dist, Scenario, TokenLimit};
use crate::sim;

/// Erlang's C formula: the probability that an arrival waits in M/M/c.
/// `a = lambda / mu` must be below `c`. Computed with the stable Erlang B
/// recursion `B(k) = a B(k-1) / (k + a B(k-1))`.
pub fn erlang_c(c: u32, a: f64) -> f64 {
    let mut b = 1.0;
    for k in 1..=c {
        b = a * b / (k as f64 + a * b);
    }
    let rho = a / c as f64;
    b / (1.0 - rho + rho * b)
}

/// Mean queue wait (seconds) of M/M/c.
pub fn mmc_wq(c: u32, lambda: f64, mu: f64) -> f64 {
    erlang_c(c, lambda / mu) / (c as f64 * mu - lambda)
}

/// Mean queue wait (seconds) of M/D/1 by Pollaczek-Khinchine.
pub fn md1_wq(lambda: f64, mu: f64) -> f64 {
    let rho = lambda / mu;
    rho / (2.0 * mu * (1.0 - rho))
}

/// One comparison.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Check {
    /// Case name.
    pub case: String,
    /// What is compared.
    pub metric: String,
    /// Simulated value.
    pub simulated: f64,
    /// Theoretical value.
    pub theory: f64,
    /// |simulated - theory| / theory.
    pub rel_error: f64,
    /// Allowed relative error.
    pub tolerance: f64,
    /// Within tolerance.
    pub pass: bool,
}

fn check(case: &str, metric: &str, simulated: f64, theory: f64, tolerance: f64) -> Check {
    let rel_error = (simulated - theory).abs() / theory;
    Check {
        case: case.into(),
        metric: metric.into(),
        simulated,
        theory,
        rel_error,
        tolerance,
        pass: rel_error <= tolerance,
    }
}

/// Runs every case with `customers` customers and `seed`.
pub fn run_all(customers: u64, seed: u64) -> Vec<Check> {
    let mut out = Vec::new();
    // Tolerances are 5 standard deviations of the seed-to-seed spread of
    // each relative error, measured over 60 seeds at 400k customers
    // (M/M/1 0.73%, M/M/2 1.35%, M/M/8 3.38%, utilisation 0.22%, Little 1.69%,
    // M/D/1 0.81%; every mean error within 1.5 standard errors of 0), and
    // scale as 1/sqrt(N).
    let scale = (400_000.0 / customers.max(1) as f64).sqrt();
    let mmc = |c: u32, lambda: f64, mu: f64| {
        let s = Scenario::mmc(c, lambda, mu, customers, seed);
        sim::run(&s, &mut NullObserver)
    };

    let (l, m) = (0.5, 1.0);
    let r = mmc(1, l, m).summary;
    out.push(check(
        "M/M/1 rho=0.5",
        "queue wait mean (ms)",
        r.queue_wait_mean_ms,
        1000.0 * mmc_wq(1, l, m),
        0.04 * scale,
    ));

    let (l, m) = (1.4, 1.0);
    let r = mmc(2, l, m).summary;
    out.push(check(
        "M/M/2 rho=0.7",
        "queue wait mean (ms)",
        r.queue_wait_mean_ms,
        1000.0 * mmc_wq(2, l, m),
        0.07 * scale,
    ));

    let (c, l, m) = (8, 7.2, 1.0);
    let run = mmc(c, l, m);
    let r = &run.summary;
    let wq = mmc_wq(c, l, m);
    out.push(check(
        "M/M/8 rho=0.9",
        "queue wait mean (ms)",
        r.queue_wait_mean_ms,
        1000.0 * wq,
        0.17 * scale,
    ));
    out.push(check(
        "M/M/8 rho=0.9",
        "utilization",
        run.tiers[0].utilization,
        l / (c as f64 * m),
        0.012 * scale,
    ));
    out.push(check(
        "Little's law M/M/8",
        "L = time-avg in system",
        r.in_system_avg,
        l * (wq + 1.0 / m),
        0.085 * scale,
    ));

    let (l, m) = (0.7, 1.0);
    let mut s = Scenario::mmc(1, l, m, customers, seed);
    s.node_types.get_mut("Call").expect("mmc has Call").latency = Dist::Constant { ms: 1000.0 / m };
    let r = sim::run(&s, &mut NullObserver).summary;
    out.push(check(
        "M/D/1 rho=0.7",
        "queue wait mean (ms)",
        r.queue_wait_mean_ms,
        1000.0 * md1_wq(l, m),
        0.04 * scale,
    ));

    // Token bucket only: plenty of slots, every call queued at once, each
    // reserving 800 prompt + 200 completion tokens of a 600,000 a minute
    // limit: 10 calls a second once the burst is spent.
    let n = (customers / 40).max(1000);
    let mut s = Scenario::mmc(64, 1.0, 10.0, n, seed);
    s.arrivals = Arrivals::AllAtOnce;
    let call = s.node_types.get_mut("Call").expect("mmc has Call");
    (call.input_tokens, call.output_tokens) = (800, 200);
    s.providers
        .get_mut("llm_provider")
        .expect("mmc has llm_provider")
        .tiers[0]
        .token_limit = Some(TokenLimit {
        tokens_per_min: 600_000.0,
        token_burst: 5_000,
        enforced_by: Default::default(),
        reject_latency_ms: 20.0,
    });
    let r = sim::run(&s, &mut NullObserver).summary;
    out.push(check(
        "token limit only",
        "throughput (calls/s)",
        r.throughput_wf_per_s,
        600_000.0 / 60.0 / 1000.0,
        // Deterministic spacing: the error is the burst and the last
        // call's service over n calls.
        0.01,
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_limited_throughput_matches_the_bucket_rate() {
        let checks = run_all(40_000, 1);
        let c = checks
            .iter()
            .find(|c| c.case == "token limit only")
            .expect("token case ran");
        assert!(c.pass, "{c:?}");
        assert!(c.rel_error < 0.01, "{c:?}");
    }

    #[test]
    fn erlang_c_matches_hand_computed_values() {
        // M/M/1: C = rho.
        assert!((erlang_c(1, 0.5) - 0.5).abs() < 1e-12);
        // M/M/2, a = 1: C = (1/2 * 1/(1-0.5)) / (1 + 1 + 1) = 1/3.
        assert!((erlang_c(2, 1.0) - 1.0 / 3.0).abs() < 1e-12);
        // M/M/1 Wq = rho / (mu - lambda) = 0.5 / 0.5 = 1.
        assert!((mmc_wq(1, 0.5, 1.0) - 1.0).abs() < 1e-12);
        // M/D/1 is half of M/M/1.
        assert!((md1_wq(0.5, 1.0) - 0.5).abs() < 1e-12);
    }
}
