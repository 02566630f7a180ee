//! Tuning policy constants without fooling ourselves: sweep a constant on
//! train scenarios from the factory, and accept the best value only if it
//! also wins on held-out validation scenarios (paired, common random
//! numbers) and sits away from a cliff.
//!
//! **Objective** (one definition for split, ratchet and eval): on one
//! scenario, a candidate's relative cost is
//! `J = w_latency * p95 / p95_ref + w_cost * cost / cost_ref`
//! against a reference run (the current constants) on the same scenario and
//! seed; its *gain* is `1 - J` (positive = better). `balanced` weighs
//! makespan p95 and mean cost 1:1 (0.5 each); `latency` and `cost` use one
//! of them. A run whose p95 or cost is undefined (no completed workflow)
//! counts as a gain of -1.

pub mod ratchet;

use crate::stats::finite;
use rayon::prelude::*;
use serde::Serialize;

use crate::metrics::{Observer, WorkflowRecord};
use crate::policy::{Constants, PolicyKind};
use crate::scenario::Scenario;
use crate::scenario::factory::{ScenarioSeed, default_seeds};
use crate::stats::describe;

/// Which outputs the objective weighs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// Makespan p95 and mean cost, 1:1.
    Balanced,
    /// Makespan p95 only.
    Latency,
    /// Mean cost only.
    Cost,
}

impl Objective {
    /// (latency weight, cost weight).
    pub fn weights(self) -> (f64, f64) {
        match self {
            Objective::Balanced => (0.5, 0.5),
            Objective::Latency => (1.0, 0.0),
            Objective::Cost => (0.0, 1.0),
        }
    }

    /// The gain of `run` over `reference` on the same scenario.
    pub fn gain(self, run: &RunScore, reference: &RunScore) -> f64 {
        let (wl, wc) = self.weights();
        let ratio = |x: f64, r: f64| {
            if r > 0.0 {
                x / r
            } else if x <= 0.0 {
                1.0
            } else {
                f64::INFINITY
            }
        };
        let j = wl * ratio(run.p95_ms, reference.p95_ms)
            + wc * ratio(run.cost_mean, reference.cost_mean);
        if j.is_finite() { 1.0 - j } else { -1.0 }
    }
}

/// What the objective reads from one run, plus its output digest.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunScore {
    /// Makespan p95 (ms), NaN when nothing completed.
    pub p95_ms: f64,
    /// Mean cost per workflow.
    pub cost_mean: f64,
    /// SHA-1 of the workflow records and summary (deterministic outputs).
    pub digest: String,
}

/// Hashes workflow records as they complete (completion order is itself
/// deterministic). The digest only tells runs of one process apart (an
/// eval's `output_changed`), so it hashes each record's fields as bytes:
/// formatting them as text was a tenth of a ratchet's instructions.
#[derive(Debug, Default)]
struct DigestObserver {
    hasher: sha1::Sha1,
}

impl Observer for DigestObserver {
    const CAN_TRACE: bool = false;

    fn workflow_done(&mut self, r: &WorkflowRecord) {
        use sha1::Digest;
        // Every field, by name: a field added to the record fails to
        // compile here until it is hashed too.
        let WorkflowRecord {
            workflow_id,
            arrival,
            finish,
            ok,
            cost,
            retries,
            rate_limited,
            cancellations,
            hedges_launched,
            escalations,
            wasted,
            iterations,
            nodes,
            calls,
            attempts,
            redos,
            queue_wait,
            interrupted,
        } = *r;
        let wide = [
            workflow_id,
            arrival.0,
            finish.0,
            cost.0,
            wasted.0,
            queue_wait.0,
        ];
        let narrow = [
            retries,
            rate_limited,
            cancellations,
            hedges_launched,
            escalations,
            iterations,
            nodes,
            calls,
            attempts,
            redos,
        ];
        let mut bytes = [0u8; 6 * 8 + 10 * 4 + 2];
        for (i, x) in wide.iter().enumerate() {
            bytes[8 * i..8 * i + 8].copy_from_slice(&x.to_le_bytes());
        }
        for (i, x) in narrow.iter().enumerate() {
            bytes[48 + 4 * i..52 + 4 * i].copy_from_slice(&x.to_le_bytes());
        }
        bytes[88] = u8::from(ok);
        bytes[89] = u8::from(interrupted);
        self.hasher.update(bytes);
    }
}

/// Runs scenario `s` under `constants`, in memory.
fn score_scenario(s: &Scenario, constants: &Constants) -> RunScore {
    use sha1::Digest;
    let mut s = s.clone();
    s.constants = constants.clone();
    let mut obs = DigestObserver::default();
    let mut r = crate::sim::run(&s, &mut obs);
    r.summary.wall_time_s = 0.0;
    obs.hasher.update(format!("{:?}", r.summary).as_bytes());
    let p95 = r.summary.makespan_p95_ms;
    RunScore {
        p95_ms: if p95.is_nan() { f64::NAN } else { p95 },
        cost_mean: r.summary.cost_mean,
        digest: obs
            .hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    }
}

/// Scores every (seed, constants) pair in parallel; results in input order.
/// Each seed's scenario is built once, however many constants it is
/// scored under.
pub fn score_all(jobs: &[(&ScenarioSeed, &Constants)], policy: PolicyKind) -> Vec<RunScore> {
    let mut built: Vec<(&ScenarioSeed, Scenario)> = Vec::new();
    for &(seed, _) in jobs {
        if !built.iter().any(|(b, _)| std::ptr::eq(*b, seed)) {
            built.push((seed, seed.scenario(policy)));
        }
    }
    let scenario_of = |seed: &ScenarioSeed| {
        &built
            .iter()
            .find(|(b, _)| std::ptr::eq(*b, seed))
            .expect("built above")
            .1
    };
    jobs.par_iter()
        .map(|(seed, c)| score_scenario(scenario_of(seed), c))
        .collect()
}

/// A paired comparison of a candidate against the reference on scenarios.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Paired {
    /// Per-scenario gains.
    pub gains: Vec<f64>,
    /// Mean gain.
    pub mean: f64,
    /// 95% t interval of the mean gain (NaN with fewer than 2 scenarios).
    pub ci95: (f64, f64),
}

impl Paired {
    /// From per-scenario gains.
    pub fn from_gains(gains: Vec<f64>) -> Paired {
        let d = describe(&gains);
        Paired {
            mean: d.mean,
            ci95: (d.ci95_low, d.ci95_high),
            gains,
        }
    }
}

/// The factory's seeds split 70/30 by id.
pub fn seeds(n: u64) -> (Vec<ScenarioSeed>, Vec<ScenarioSeed>) {
    let all = default_seeds(n);
    let (train, _) = crate::scenario::factory::split(n);
    let cut = train.len();
    let mut all = all;
    let validation = all.split_off(cut);
    (all, validation)
}

/// Train and validation seeds with the reference (current constants) run
/// on each, computed once and shared by every candidate.
#[derive(Debug)]
pub struct Reference {
    /// Train seeds.
    pub train: Vec<ScenarioSeed>,
    /// Validation seeds.
    pub validation: Vec<ScenarioSeed>,
    /// Reference scores, train seeds first.
    pub scores: Vec<RunScore>,
}

impl Reference {
    /// Runs `base` on the train and validation seeds of `n_seeds`.
    pub fn new(base: &Constants, n_seeds: u64, policy: PolicyKind) -> Result<Reference, String> {
        let (train, validation) = seeds(n_seeds);
        if train.is_empty() || validation.is_empty() {
            return Err(format!(
                "--n-seeds {n_seeds}: expected at least 2 seeds (one to train, one to validate)"
            ));
        }
        let jobs: Vec<(&ScenarioSeed, &Constants)> =
            train.iter().chain(&validation).map(|s| (s, base)).collect();
        let scores = score_all(&jobs, policy);
        Ok(Reference {
            train,
            validation,
            scores,
        })
    }

    /// Reference scores of the train seeds.
    pub fn train_scores(&self) -> &[RunScore] {
        &self.scores[..self.train.len()]
    }

    /// Reference scores of the validation seeds.
    pub fn validation_scores(&self) -> &[RunScore] {
        &self.scores[self.train.len()..]
    }
}

/// What `split` decides about one constant.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ValidationResult {
    /// The constant.
    pub constant: String,
    /// Its current value.
    pub current: f64,
    /// The value with the best mean train gain.
    pub best_value: f64,
    /// Mean train gain of the best value over the current one.
    pub train_delta: f64,
    /// Mean validation gain of the best value over the current one.
    pub validation_delta: f64,
    /// 95% t interval of the validation gain (paired by scenario).
    pub validation_ci95: (f64, f64),
    /// Mean train gain of every swept value.
    pub train_curve: Vec<(f64, f64)>,
    /// `accept` or `reject`.
    pub recommendation: String,
    /// Why.
    pub reason: String,
}

/// Train gains of each value of `constant`, against `base`.
pub fn train_curve(
    constant: &str,
    values: &[f64],
    base: &Constants,
    train: &[ScenarioSeed],
    reference: &[RunScore],
    policy: PolicyKind,
    objective: Objective,
) -> Result<Vec<(f64, Paired)>, String> {
    let candidates: Vec<Constants> = values
        .iter()
        .map(|&v| base.with(constant, v))
        .collect::<Result<_, _>>()?;
    let jobs: Vec<(&ScenarioSeed, &Constants)> = candidates
        .iter()
        .flat_map(|c| train.iter().map(move |s| (s, c)))
        .collect();
    let scores = score_all(&jobs, policy);
    Ok(values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let gains = (0..train.len())
                .map(|k| objective.gain(&scores[i * train.len() + k], &reference[k]))
                .collect();
            (v, Paired::from_gains(gains))
        })
        .collect())
}

/// Paired validation of `candidate` against `base` on `validation`.
pub fn validate_candidate(
    candidate: &Constants,
    validation: &[ScenarioSeed],
    reference: &[RunScore],
    policy: PolicyKind,
    objective: Objective,
) -> Paired {
    let jobs: Vec<(&ScenarioSeed, &Constants)> =
        validation.iter().map(|s| (s, candidate)).collect();
    let scores = score_all(&jobs, policy);
    Paired::from_gains(
        scores
            .iter()
            .zip(reference)
            .map(|(s, r)| objective.gain(s, r))
            .collect(),
    )
}

/// How [`verdict`]'s reason starts when no validation run moved.
pub const UNTESTED: &str = "untested:";

/// Accept only if the mean validation gain exceeds `threshold` and the
/// lower end of its paired 95% interval is above zero: a bare mean can be
/// carried by one lucky scenario.
pub fn verdict(validation: &Paired, threshold: f64) -> (bool, String) {
    // Written so that a NaN mean or bound fails both tests.
    let mean_ok = validation.mean > threshold;
    let ci_ok = validation.ci95.0 > 0.0;
    // Exactly zero everywhere: the change did not move a single validation
    // run (a constant only some scenarios exercise, e.g. routing when no
    // validation scenario routes). A verdict on the threshold would read
    // as "no better", where the truth is "not tested".
    if !validation.gains.is_empty() && validation.gains.iter().all(|&g| g == 0.0) {
        return (
            false,
            format!(
                "{UNTESTED} no validation scenario is affected (all {} give exactly the current result); more --n-seeds may include one that is",
                validation.gains.len()
            ),
        );
    }
    if !mean_ok {
        (
            false,
            format!(
                "mean validation gain {:.4} does not exceed the threshold {threshold}",
                validation.mean
            ),
        )
    } else if !ci_ok {
        (
            false,
            format!(
                "mean validation gain {:.4} but its 95% interval [{:.4}, {:.4}] includes zero",
                validation.mean, validation.ci95.0, validation.ci95.1
            ),
        )
    } else {
        (
            true,
            format!(
                "validation gain {:.4} (95% CI [{:.4}, {:.4}]) exceeds {threshold}",
                validation.mean, validation.ci95.0, validation.ci95.1
            ),
        )
    }
}

/// The split runner: sweep `constant` over `values` on the train seeds,
/// validate the best value against the current one on the validation seeds.
pub fn split(
    constant: &str,
    values: &[f64],
    base: &Constants,
    n_seeds: u64,
    policy: PolicyKind,
    objective: Objective,
    threshold: f64,
) -> Result<ValidationResult, String> {
    let current = base
        .get(constant)
        .ok_or_else(|| format!("unknown constant `{constant}`"))?;
    let (train, validation) = seeds(n_seeds);
    if train.is_empty() || validation.is_empty() {
        return Err(format!(
            "--n-seeds {n_seeds}: expected at least 2 seeds (one to train, one to validate)"
        ));
    }
    let ref_jobs: Vec<(&ScenarioSeed, &Constants)> =
        train.iter().chain(&validation).map(|s| (s, base)).collect();
    let reference = score_all(&ref_jobs, policy);
    let (ref_train, ref_val) = reference.split_at(train.len());
    let curve = train_curve(constant, values, base, &train, ref_train, policy, objective)?;
    let (best_value, best) = best_of(&curve);
    let candidate = base.with(constant, best_value)?;
    let val = validate_candidate(&candidate, &validation, ref_val, policy, objective);
    let (ok, reason) = if best_value == current {
        (
            false,
            "the current value is the best on the train scenarios".to_string(),
        )
    } else {
        verdict(&val, threshold)
    };
    Ok(ValidationResult {
        constant: constant.to_string(),
        current,
        best_value,
        train_delta: best.mean,
        validation_delta: val.mean,
        validation_ci95: val.ci95,
        train_curve: curve.iter().map(|(v, p)| (*v, p.mean)).collect(),
        recommendation: if ok { "accept" } else { "reject" }.into(),
        reason,
    })
}

/// The value with the highest mean gain (ties: the first).
pub fn best_of(curve: &[(f64, Paired)]) -> (f64, Paired) {
    let mut best = &curve[0];
    for c in &curve[1..] {
        if c.1.mean > best.1.mean {
            best = c;
        }
    }
    (best.0, best.1.clone())
}

/// One benchmark of the eval report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Benchmark {
    /// Scenario name.
    pub name: String,
    /// Relative objective improvement of the candidate (null when undefined).
    pub perf_gain: Option<f64>,
    /// Whether the simulated outputs differ from the baseline's.
    pub output_changed: bool,
    /// The benchmark's score: its gain.
    pub score: Option<f64>,
}

/// The eval report for automated optimisation agents.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EvalReport {
    /// Lower end of the 95% interval of the mean gain; 0 when any scenario
    /// regresses by more than 5%; null when undefined.
    pub aggregate_score: Option<f64>,
    /// `aggregate_score > 0`.
    pub is_acceptable: bool,
    /// One per validation scenario.
    pub benchmarks: Vec<Benchmark>,
    /// Mean gain (context for humans).
    pub mean_gain: Option<f64>,
    /// The objective used.
    pub objective: Objective,
    /// The policy used.
    pub policy: PolicyKind,
}

/// Evaluates `candidate` against `baseline` on the validation seeds of `n_seeds`.
pub fn eval(
    candidate: &Constants,
    baseline: &Constants,
    n_seeds: u64,
    policy: PolicyKind,
    objective: Objective,
) -> EvalReport {
    let (_, validation) = seeds(n_seeds);
    let jobs: Vec<(&ScenarioSeed, &Constants)> = validation
        .iter()
        .flat_map(|s| [(s, baseline), (s, candidate)])
        .collect();
    let scores = score_all(&jobs, policy);
    let mut gains = Vec::new();
    let benchmarks: Vec<Benchmark> = validation
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (b, c) = (&scores[2 * i], &scores[2 * i + 1]);
            let g = objective.gain(c, b);
            gains.push(g);
            Benchmark {
                name: format!("factory_{}", s.id),
                perf_gain: finite(g),
                output_changed: b.digest != c.digest,
                score: finite(g),
            }
        })
        .collect();
    let p = Paired::from_gains(gains.clone());
    let veto = gains.iter().any(|&g| g < -0.05);
    let aggregate = if veto { Some(0.0) } else { finite(p.ci95.0) };
    EvalReport {
        is_acceptable: aggregate.is_some_and(|a| a > 0.0),
        aggregate_score: aggregate,
        benchmarks,
        mean_gain: finite(p.mean),
        objective,
        policy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(p95: f64, cost: f64) -> RunScore {
        RunScore {
            p95_ms: p95,
            cost_mean: cost,
            digest: String::new(),
        }
    }

    /// Every field of a record moves the run digest.
    #[test]
    fn the_run_digest_reads_every_record_field() {
        use crate::units::{Money, SimDuration, SimTime};
        use sha1::Digest;
        let base = WorkflowRecord {
            workflow_id: 1,
            arrival: SimTime(2),
            finish: SimTime(3),
            ok: true,
            cost: Money(4),
            retries: 5,
            rate_limited: 6,
            cancellations: 7,
            hedges_launched: 8,
            escalations: 9,
            wasted: SimDuration(10),
            iterations: 11,
            nodes: 12,
            calls: 13,
            attempts: 14,
            redos: 15,
            queue_wait: SimDuration(16),
            interrupted: false,
        };
        let digest = |r: &WorkflowRecord| {
            let mut o = DigestObserver::default();
            o.workflow_done(r);
            o.hasher.finalize().to_vec()
        };
        let changes: [fn(&mut WorkflowRecord); 18] = [
            |r| r.workflow_id += 1,
            |r| r.arrival.0 += 1,
            |r| r.finish.0 += 1,
            |r| r.ok = false,
            |r| r.cost.0 += 1,
            |r| r.retries += 1,
            |r| r.rate_limited += 1,
            |r| r.cancellations += 1,
            |r| r.hedges_launched += 1,
            |r| r.escalations += 1,
            |r| r.wasted.0 += 1,
            |r| r.iterations += 1,
            |r| r.nodes += 1,
            |r| r.calls += 1,
            |r| r.attempts += 1,
            |r| r.redos += 1,
            |r| r.queue_wait.0 += 1,
            |r| r.interrupted = true,
        ];
        let mut seen = vec![digest(&base)];
        for change in changes {
            let mut r = base.clone();
            change(&mut r);
            let d = digest(&r);
            assert!(!seen.contains(&d), "a field left the digest unchanged");
            seen.push(d);
        }
    }

    #[test]
    fn gain_is_one_minus_weighted_relative_cost() {
        let r = rs(1000.0, 2.0);
        assert_eq!(Objective::Balanced.gain(&r, &r), 0.0);
        // 10% faster, 20% more expensive: J = 0.5 * 0.9 + 0.5 * 1.2 = 1.05.
        assert!((Objective::Balanced.gain(&rs(900.0, 2.4), &r) - (-0.05)).abs() < 1e-12);
        assert!((Objective::Latency.gain(&rs(900.0, 2.4), &r) - 0.1).abs() < 1e-12);
        assert!((Objective::Cost.gain(&rs(900.0, 2.4), &r) - (-0.2)).abs() < 1e-12);
        assert_eq!(Objective::Balanced.gain(&rs(f64::NAN, 1.0), &r), -1.0);
    }

    #[test]
    fn verdict_needs_mean_above_threshold_and_ci_above_zero() {
        let lucky = Paired::from_gains(vec![0.5, -0.01, -0.01, -0.01, -0.01]);
        assert!(lucky.mean > 0.01);
        assert!(
            !verdict(&lucky, 0.01).0,
            "one lucky scenario does not carry it"
        );
        let steady = Paired::from_gains(vec![0.03, 0.04, 0.05, 0.035, 0.045]);
        assert!(verdict(&steady, 0.01).0);
        assert!(!verdict(&steady, 0.1).0);
        // Unaffected is not "no better": the reason says it was not tested,
        // and it is rejected whatever the threshold.
        let untouched = Paired::from_gains(vec![0.0, 0.0]);
        for threshold in [0.01, -0.5] {
            let (ok, why) = verdict(&untouched, threshold);
            assert!(!ok);
            assert!(
                why.starts_with("untested: no validation scenario is affected (all 2 "),
                "{why}"
            );
        }
        let one_moved = Paired::from_gains(vec![0.0, 0.002]);
        assert!(
            verdict(&one_moved, 0.01)
                .1
                .starts_with("mean validation gain 0.0010 does not exceed")
        );
    }

    #[test]
    fn eval_of_an_unchanged_candidate_is_not_acceptable() {
        let c = Constants::default();
        let r = eval(&c, &c, 10, PolicyKind::Full, Objective::Balanced);
        assert_eq!(r.benchmarks.len(), 3);
        assert!(
            r.benchmarks
                .iter()
                .all(|b| !b.output_changed && b.perf_gain == Some(0.0))
        );
        assert!(!r.is_acceptable);
        assert_eq!(r.aggregate_score, Some(0.0));
    }
}
