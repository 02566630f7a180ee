//! Simulated against live: per-metric relative errors, MAPE over the
//! headline metrics, whether the two rank configurations alike, and a
//! verdict against tolerances.
//!
//! Pure computation over the tables the runs wrote (`summary.csv`,
//! `tiers.csv`, an experiment's runs); the command in `cli` finds the runs
//! and prints. Relative error is `(live - simulated) / |simulated|`: positive
//! when the live run was slower or dearer.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::stats::{finite, kendall_tau_b_pairs, within_margin};
use crate::sweep::collect::{self, ConfigKey, Row, record_num};

/// Metrics whose mean absolute relative error is the headline MAPE: the
/// sweep's headline metrics up to `cost_total` (makespan mean, p50, p95,
/// p99, cost mean and total).
pub const HEADLINE: &[&str] = collect::HEADLINE.split_at(6).0;

/// Run-level metrics compared beside the headline ones (reported, not judged).
pub const RUN_METRICS: [&str; 6] = [
    "queue_wait_mean_ms",
    "queue_wait_p95_ms",
    "retries",
    "rate_limited",
    "hedges",
    "escalations",
];

/// Per-tier metrics compared (reported, not judged).
pub const TIER_METRICS: [&str; 3] = ["queue_wait_mean_ms", "queue_wait_p95_ms", "utilization"];

/// What a verdict allows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerances {
    /// Largest MAPE over the headline metrics (a fraction: 0.15 is 15%).
    pub max_mape: f64,
    /// Largest absolute relative error of any one headline metric (pairs).
    pub max_error: f64,
    /// Smallest Kendall tau between the simulated and live rankings (experiments).
    pub min_tau: f64,
    /// Whether simulated and live must pick the same winner (experiments).
    pub same_winner: bool,
    /// Experiments: configurations whose objectives are within this
    /// fraction of each other are tied (a fraction of the larger one).
    pub tie_margin: f64,
}

impl Default for Tolerances {
    /// 15% MAPE, 25% on any headline metric, tau at least 0.6 (one
    /// adjacent swap among four configurations gives 0.67), same winner.
    /// One seed of a queueing system is chaotic (a 0.1% latency change
    /// moves the default scenario's p95 by up to 11%), so the pair bounds
    /// are loose; compare experiments over seeds for tight verdicts.
    /// Configurations within 2% of each other tie: two policies that
    /// differ by less are a coin flip over a few seeds, and no reason to
    /// change a production setting.
    fn default() -> Self {
        Tolerances {
            max_mape: 0.15,
            max_error: 0.25,
            min_tau: 0.6,
            same_winner: true,
            tie_margin: 0.02,
        }
    }
}

/// One compared quantity.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    /// `run`, or `tier <provider>/<tier_id>` (`pool <name>` for local pools).
    pub scope: String,
    /// Column name.
    pub name: String,
    /// Simulated value.
    pub sim: f64,
    /// Live value.
    pub live: f64,
    /// Part of the headline MAPE.
    pub headline: bool,
}

impl Metric {
    /// `(live - sim) / |sim|`; 0 when both are 0; None when the simulated
    /// value is 0 and the live one is not, or either is not a number.
    pub fn rel_error(&self) -> Option<f64> {
        if !self.sim.is_finite() || !self.live.is_finite() {
            return None;
        }
        if self.sim == 0.0 {
            return (self.live == 0.0).then_some(0.0);
        }
        Some((self.live - self.sim) / self.sim.abs())
    }

    fn to_json(&self) -> Value {
        json!({
            "scope": self.scope,
            "metric": self.name,
            "simulated": finite(self.sim),
            "live": finite(self.live),
            "rel_error": self.rel_error(),
            "headline": self.headline,
        })
    }
}

/// A run's tables: the summary row and the tier rows.
#[derive(Clone, Debug, Default)]
pub struct RunTables {
    /// `summary.csv`'s row.
    pub summary: BTreeMap<String, String>,
    /// `tiers.csv`'s rows.
    pub tiers: Vec<BTreeMap<String, String>>,
}

fn tier_scope(t: &BTreeMap<String, String>) -> String {
    let get = |k: &str| t.get(k).map_or("", String::as_str);
    if get("kind") == "local" {
        format!("pool {}", get("provider"))
    } else {
        format!("tier {}/{}", get("provider"), get("tier_id"))
    }
}

/// MAPE over the headline metrics with a relative error; NaN when none has.
pub fn mape(metrics: &[Metric]) -> f64 {
    let errs: Vec<f64> = metrics
        .iter()
        .filter(|m| m.headline)
        .filter_map(Metric::rel_error)
        .map(f64::abs)
        .collect();
    crate::stats::mean(&errs)
}

/// One simulated run against one live run.
#[derive(Clone, Debug)]
pub struct PairReport {
    /// Every compared quantity, run-level first.
    pub metrics: Vec<Metric>,
    /// MAPE over the headline metrics.
    pub mape: f64,
    /// Why the verdict failed (empty: pass).
    pub failures: Vec<String>,
}

/// Compares two runs' tables and judges them.
pub fn compare_pair(sim: &RunTables, live: &RunTables, tol: &Tolerances) -> PairReport {
    let mut metrics: Vec<Metric> = HEADLINE
        .iter()
        .map(|k| (k, true))
        .chain(RUN_METRICS.iter().map(|k| (k, false)))
        .map(|(k, headline)| Metric {
            scope: "run".into(),
            name: k.to_string(),
            sim: record_num(&sim.summary, k),
            live: record_num(&live.summary, k),
            headline,
        })
        .collect();
    for st in &sim.tiers {
        let scope = tier_scope(st);
        let Some(lt) = live.tiers.iter().find(|t| tier_scope(t) == scope) else {
            continue;
        };
        for k in TIER_METRICS {
            metrics.push(Metric {
                scope: scope.clone(),
                name: k.to_string(),
                sim: record_num(st, k),
                live: record_num(lt, k),
                headline: false,
            });
        }
    }
    let mape = mape(&metrics);
    let mut failures = Vec::new();
    if mape.is_nan() || mape > tol.max_mape {
        failures.push(format!(
            "MAPE {} over the headline metrics is above {}",
            pct_abs(mape),
            pct_abs(tol.max_mape)
        ));
    }
    for m in metrics.iter().filter(|m| m.headline) {
        match m.rel_error() {
            Some(e) if e.abs() <= tol.max_error => {}
            Some(e) => failures.push(format!(
                "{} off by {} (more than {})",
                m.name,
                pct(e),
                pct_abs(tol.max_error)
            )),
            None => failures.push(format!(
                "{} not comparable (simulated {}, live {})",
                m.name, m.sim, m.live
            )),
        }
    }
    PairReport {
        metrics,
        mape,
        failures,
    }
}

/// A fraction as a signed percentage with one decimal (`+12.5%`), or `n/a`.
pub fn pct(x: f64) -> String {
    if x.is_finite() {
        format!("{:+.1}%", 100.0 * x)
    } else {
        "n/a".into()
    }
}

/// A non-negative fraction (a bound, a MAPE) as a percentage (`12.5%`).
pub fn pct_abs(x: f64) -> String {
    if x.is_finite() {
        format!("{:.1}%", 100.0 * x)
    } else {
        "n/a".into()
    }
}

/// One configuration of an experiment, simulated against live (means over
/// seeds or trials).
#[derive(Clone, Debug)]
pub struct ConfigPair {
    /// The configuration's label (`k=v` of the keys that vary).
    pub label: String,
    /// Headline metrics.
    pub metrics: Vec<Metric>,
    /// Their MAPE.
    pub mape: f64,
    /// Successful runs behind the simulated and the live means.
    pub runs: (usize, usize),
}

/// How the two experiments rank the configurations by one objective.
#[derive(Clone, Debug)]
pub struct Ranking {
    /// The metric (smaller is better, but for throughput).
    pub objective: String,
    /// Kendall's tau-b between the simulated and live means over the
    /// pairs the simulation separates (beyond the tie margin); a pair
    /// within the margin live counts as a live tie.
    pub tau: f64,
    /// Configuration labels, best first, by the simulated means.
    pub sim_order: Vec<String>,
    /// The same by the live means.
    pub live_order: Vec<String>,
    /// Pairs the simulation cannot tell apart (within the tie margin, or,
    /// over three or more seeds each, not different at 95%), each in
    /// simulated order.
    pub sim_ties: Vec<(String, String)>,
    /// Pairs the simulation separates that live orders the other way,
    /// each in simulated order.
    pub reversed: Vec<(String, String)>,
    /// The simulated best and every configuration tied with it.
    pub sim_best: Vec<String>,
}

impl Ranking {
    /// Whether both orders are the same, strictly.
    pub fn identical(&self) -> bool {
        self.sim_order == self.live_order
    }

    /// Whether live orders every pair the simulation separates as the
    /// simulation does (pairs it cannot tell apart may go either way).
    pub fn agrees(&self) -> bool {
        self.reversed.is_empty()
    }

    /// Whether the live best is the simulated best or tied with it.
    pub fn same_winner(&self) -> bool {
        self.live_order
            .first()
            .is_some_and(|l| self.sim_best.contains(l))
    }

    /// Whether [`describe`](Self::describe) lists only the first of its
    /// reversed pairs, ties or simulated winners.
    pub fn shortened(&self) -> bool {
        [
            self.reversed.len(),
            self.sim_ties.len(),
            self.sim_best.len(),
        ]
        .iter()
        .any(|&n| n > LISTED)
    }

    /// One sentence: tau, agreement, ties, reversals and the winners; a
    /// list longer than `LISTED` shows its first items and a count.
    pub fn describe(&self, tie_margin: f64) -> String {
        let tau = if self.tau.is_nan() {
            "n/a".to_string()
        } else {
            format!("{:.3}", self.tau)
        };
        let order = if self.identical() {
            "identical order".to_string()
        } else if self.agrees() {
            "same order up to ties".to_string()
        } else {
            let pairs: Vec<String> = self
                .reversed
                .iter()
                .map(|(a, b)| format!("{a} before {b} simulated, after it live"))
                .collect();
            format!(
                "orders differ in {} pair{} ({})",
                pairs.len(),
                if pairs.len() == 1 { "" } else { "s" },
                first_few(&pairs, "; ")
            )
        };
        let ties = if self.sim_ties.is_empty() {
            String::new()
        } else {
            let pairs: Vec<String> = self
                .sim_ties
                .iter()
                .map(|(a, b)| format!("{a} ~ {b}"))
                .collect();
            format!(
                "; {} pair{} tied in the simulation (within {} or not different at 95%): {}",
                pairs.len(),
                if pairs.len() == 1 { "" } else { "s" },
                pct_abs(tie_margin),
                first_few(&pairs, ", ")
            )
        };
        format!(
            "Kendall tau {tau}; {order}{ties}; simulated best {}, live best {}",
            first_few(&self.sim_best, " ~ "),
            self.live_order.first().map_or("-", String::as_str)
        )
    }
}

/// Items a sentence lists before it says how many more there are: a
/// matrix of 32 configurations has hundreds of tied pairs (the JSON report
/// has every one).
const LISTED: usize = 5;

/// The first [`LISTED`] items joined by `sep`, then how many more.
fn first_few(items: &[String], sep: &str) -> String {
    if items.len() <= LISTED {
        items.join(sep)
    } else {
        format!(
            "{}{sep}and {} more",
            items[..LISTED].join(sep),
            items.len() - LISTED
        )
    }
}

/// Two experiments of the same matrix, compared.
#[derive(Clone, Debug)]
pub struct ExperimentReport {
    /// Matched configurations.
    pub configs: Vec<ConfigPair>,
    /// Mean of the configurations' MAPEs.
    pub mape: f64,
    /// One per objective.
    pub rankings: Vec<Ranking>,
    /// Configurations found on one side only (labels).
    pub only_sim: Vec<String>,
    /// The same, live side.
    pub only_live: Vec<String>,
    /// Why the verdict failed (empty: pass).
    pub failures: Vec<String>,
}

/// The configuration key a simulated and a live sweep share: the time
/// scale is a live knob that changes no simulated result.
fn match_key(k: &ConfigKey) -> ConfigKey {
    ConfigKey(
        k.0.iter()
            .filter(|(name, _)| name != "time_scale")
            .cloned()
            .collect(),
    )
}

/// Whether two configurations' means differ at 95% by Welch's t test
/// (degrees of freedom rounded down); true when either has fewer than
/// three runs, and the margin alone decides: two runs give one degree of
/// freedom, a t quantile of 12.7, and would tie nearly everything.
fn welch_differ(a: &crate::stats::Describe, b: &crate::stats::Describe) -> bool {
    if a.n < 3 || b.n < 3 || a.std.is_nan() || b.std.is_nan() {
        return true;
    }
    let (va, vb) = (a.std * a.std / a.n as f64, b.std * b.std / b.n as f64);
    let se = (va + vb).sqrt();
    if se == 0.0 {
        return a.mean != b.mean;
    }
    let df = (va + vb).powi(2) / (va * va / (a.n - 1) as f64 + vb * vb / (b.n - 1) as f64);
    (a.mean - b.mean).abs() > crate::stats::t975((df.floor() as usize).max(1)) * se
}

/// Whether larger values of `objective` are better.
fn higher_is_better(objective: &str) -> bool {
    objective.starts_with("throughput")
}

/// Compares two experiments' runs (as `collect` gathers them): per
/// configuration the headline means, and per objective the rankings.
pub fn compare_experiments(
    sim_rows: &[Row],
    live_rows: &[Row],
    objectives: &[String],
    tol: &Tolerances,
) -> ExperimentReport {
    let sim = collect::aggregate(sim_rows);
    let live = collect::aggregate(live_rows);
    let varying: BTreeSet<String> = sim
        .varying
        .union(&live.varying)
        .filter(|k| *k != "time_scale")
        .cloned()
        .collect();
    let live_by_key: BTreeMap<ConfigKey, &collect::ConfigStats> = live
        .configs
        .iter()
        .map(|c| (match_key(&c.key), c))
        .collect();
    let mut configs = Vec::new();
    // (label, sim means, live means) per matched configuration.
    let mut matched: Vec<(String, &collect::ConfigStats, &collect::ConfigStats)> = Vec::new();
    let mut only_sim = Vec::new();
    for s in &sim.configs {
        let label = s.key.label(&varying);
        let Some(l) = live_by_key.get(&match_key(&s.key)) else {
            only_sim.push(label);
            continue;
        };
        let metrics: Vec<Metric> = HEADLINE
            .iter()
            .map(|k| Metric {
                scope: label.clone(),
                name: k.to_string(),
                sim: s.metrics.get(k).map_or(f64::NAN, |d| d.mean),
                live: l.metrics.get(k).map_or(f64::NAN, |d| d.mean),
                headline: true,
            })
            .collect();
        let n = |c: &collect::ConfigStats| c.metrics.get(HEADLINE[0]).map_or(0, |d| d.n);
        configs.push(ConfigPair {
            label: label.clone(),
            mape: mape(&metrics),
            metrics,
            runs: (n(s), n(l)),
        });
        matched.push((label, s, l));
    }
    let sim_keys: BTreeSet<ConfigKey> = sim.configs.iter().map(|c| match_key(&c.key)).collect();
    let only_live = live
        .configs
        .iter()
        .filter(|c| !sim_keys.contains(&match_key(&c.key)))
        .map(|c| c.key.label(&varying))
        .collect();
    let rankings: Vec<Ranking> = objectives
        .iter()
        .map(|o| {
            let describe = |c: &collect::ConfigStats| {
                c.metrics
                    .iter()
                    .find(|(k, _)| **k == o.as_str())
                    .map(|(_, d)| *d)
            };
            let mean = |c: &collect::ConfigStats| describe(c).map_or(f64::NAN, |d| d.mean);
            let sim_stats: Vec<Option<crate::stats::Describe>> =
                matched.iter().map(|(_, s, _)| describe(s)).collect();
            let xs: Vec<f64> = matched.iter().map(|(_, s, _)| mean(s)).collect();
            let ys: Vec<f64> = matched.iter().map(|(_, _, l)| mean(l)).collect();
            let better = |a: f64, b: f64| {
                if higher_is_better(o) { a > b } else { a < b }
            };
            let order = |v: &[f64]| {
                let mut idx: Vec<usize> = (0..v.len()).collect();
                idx.sort_by(|&a, &b| {
                    let c = v[a].total_cmp(&v[b]);
                    (if higher_is_better(o) { c.reverse() } else { c }).then(a.cmp(&b))
                });
                idx
            };
            let label = |i: usize| matched[i].0.clone();
            let tied = |a: f64, b: f64| within_margin(a, b, tol.tie_margin);
            // The simulation separates two configurations when their means
            // are beyond the margin and, with three or more seeds on each
            // side, differ at 95% (Welch's t).
            let sim_tied = |i: usize, j: usize| {
                tied(xs[i], xs[j])
                    || matches!((sim_stats[i], sim_stats[j]), (Some(a), Some(b))
                        if !welch_differ(&a, &b))
            };
            let sim_idx = order(&xs);
            let (mut sim_ties, mut reversed) = (Vec::new(), Vec::new());
            for (n, &i) in sim_idx.iter().enumerate() {
                for &j in &sim_idx[n + 1..] {
                    if sim_tied(i, j) {
                        sim_ties.push((label(i), label(j)));
                    } else if !better(ys[i], ys[j]) {
                        reversed.push((label(i), label(j)));
                    }
                }
            }
            // tau-b, the simulation's ties left out: it makes no claim on them.
            let tau = if xs.iter().chain(&ys).any(|v| v.is_nan()) {
                f64::NAN
            } else {
                kendall_tau_b_pairs(
                    xs.len(),
                    |i, j| xs[i].total_cmp(&xs[j]),
                    |i, j| {
                        if tied(ys[i], ys[j]) {
                            Ordering::Equal
                        } else {
                            ys[i].total_cmp(&ys[j])
                        }
                    },
                    sim_tied,
                )
            };
            let sim_best = sim_idx
                .iter()
                .filter(|&&i| sim_idx.first().is_some_and(|&b| i == b || sim_tied(i, b)))
                .map(|&i| label(i))
                .collect();
            Ranking {
                objective: o.clone(),
                tau,
                sim_order: sim_idx.into_iter().map(label).collect(),
                live_order: order(&ys).into_iter().map(label).collect(),
                sim_ties,
                reversed,
                sim_best,
            }
        })
        .collect();
    let mape = crate::stats::mean(&configs.iter().map(|c| c.mape).collect::<Vec<_>>());
    let mut failures = Vec::new();
    if configs.is_empty() {
        failures.push("no configuration is in both experiments".into());
    }
    if mape.is_nan() || mape > tol.max_mape {
        failures.push(format!(
            "mean MAPE {} over the configurations is above {}",
            pct_abs(mape),
            pct_abs(tol.max_mape)
        ));
    }
    for r in &rankings {
        // One configuration ranks trivially alike.
        if configs.len() >= 2 && r.sim_ties.len() == configs.len() * (configs.len() - 1) / 2 {
            failures.push(format!(
                "{}: the simulation separates no two configurations (all within {} or \
                 not different at 95%): there is no ranking to check",
                r.objective,
                pct_abs(tol.tie_margin)
            ));
        } else if configs.len() >= 2 && (r.tau.is_nan() || r.tau < tol.min_tau) {
            failures.push(format!(
                "{}: Kendall tau {:.3} is below {}",
                r.objective, r.tau, tol.min_tau
            ));
        }
        if tol.same_winner && !r.same_winner() {
            failures.push(format!(
                "{}: simulated picks {}, live picks {}",
                r.objective,
                if r.sim_best.is_empty() {
                    "nothing".to_string()
                } else {
                    r.sim_best.join(" ~ ")
                },
                r.live_order.first().map_or("nothing", String::as_str)
            ));
        }
    }
    ExperimentReport {
        configs,
        mape,
        rankings,
        only_sim,
        only_live,
        failures,
    }
}

impl PairReport {
    /// The report as JSON (non-finite numbers as null).
    pub fn to_json(&self) -> Value {
        json!({
            "metrics": self.metrics.iter().map(Metric::to_json).collect::<Vec<_>>(),
            "headline": HEADLINE,
            "mape": finite(self.mape),
            "pass": self.failures.is_empty(),
            "failures": self.failures,
        })
    }
}

impl ExperimentReport {
    /// The report as JSON (non-finite numbers as null).
    pub fn to_json(&self) -> Value {
        json!({
            "configurations": self.configs.iter().map(|c| json!({
                "label": c.label,
                "runs_simulated": c.runs.0,
                "runs_live": c.runs.1,
                "mape": finite(c.mape),
                "metrics": c.metrics.iter().map(Metric::to_json).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "headline": HEADLINE,
            "mape": finite(self.mape),
            "rankings": self.rankings.iter().map(|r| json!({
                "objective": r.objective,
                "kendall_tau": finite(r.tau),
                "identical": r.identical(),
                "agree_up_to_ties": r.agrees(),
                "same_winner": r.same_winner(),
                "simulated_order": r.sim_order,
                "live_order": r.live_order,
                "simulated_best": r.sim_best,
                "simulated_ties": r.sim_ties,
                "reversed_pairs": r.reversed,
            })).collect::<Vec<_>>(),
            "only_simulated": self.only_sim,
            "only_live": self.only_live,
            "pass": self.failures.is_empty(),
            "failures": self.failures,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(pairs: &[(&str, f64)]) -> RunTables {
        RunTables {
            summary: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            tiers: vec![],
        }
    }

    #[test]
    fn relative_errors_by_hand() {
        let m = |sim, live| Metric {
            scope: "run".into(),
            name: "x".into(),
            sim,
            live,
            headline: true,
        };
        assert_eq!(m(200.0, 250.0).rel_error(), Some(0.25));
        assert_eq!(m(200.0, 150.0).rel_error(), Some(-0.25));
        assert_eq!(m(0.0, 0.0).rel_error(), Some(0.0));
        assert_eq!(m(0.0, 3.0).rel_error(), None);
        assert_eq!(m(f64::NAN, 3.0).rel_error(), None);
    }

    #[test]
    fn mape_and_verdict_of_a_pair_by_hand() {
        // Headline errors: +10%, -10%, +20%, 0, +5%, +5%: MAPE = 50/6 = 8.33%.
        let sim = tables(&[
            ("makespan_mean_ms", 100.0),
            ("makespan_p50_ms", 100.0),
            ("makespan_p95_ms", 100.0),
            ("makespan_p99_ms", 100.0),
            ("cost_mean", 2.0),
            ("cost_total", 20.0),
            ("hedges", 0.0),
        ]);
        let live = tables(&[
            ("makespan_mean_ms", 110.0),
            ("makespan_p50_ms", 90.0),
            ("makespan_p95_ms", 120.0),
            ("makespan_p99_ms", 100.0),
            ("cost_mean", 2.1),
            ("cost_total", 21.0),
            ("hedges", 4.0),
        ]);
        let tol = Tolerances::default();
        let r = compare_pair(&sim, &live, &tol);
        assert!((r.mape - 0.5 / 6.0).abs() < 1e-12, "{}", r.mape);
        assert!(r.failures.is_empty(), "{:?}", r.failures);
        // Hedges are reported, not judged: 0 simulated, 4 live.
        let h = r.metrics.iter().find(|m| m.name == "hedges").unwrap();
        assert_eq!(h.rel_error(), None);
        // A tighter per-metric bound fails p95 alone (+20% > 15%).
        let tight = Tolerances {
            max_error: 0.15,
            ..tol
        };
        let r = compare_pair(&sim, &live, &tight);
        assert_eq!(r.failures.len(), 1, "{:?}", r.failures);
        assert!(r.failures[0].starts_with("makespan_p95_ms off by +20.0%"));
        // And a tighter MAPE bound fails on the MAPE.
        let r = compare_pair(
            &sim,
            &live,
            &Tolerances {
                max_mape: 0.08,
                ..tol
            },
        );
        assert!(r.failures.iter().any(|f| f.starts_with("MAPE 8.3%")));
        // The JSON says so, with null for what has no number.
        let j = r.to_json();
        assert_eq!(j["pass"], false);
        let hedges = j["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["metric"] == "hedges")
            .unwrap();
        assert!(hedges["rel_error"].is_null());
    }

    #[test]
    fn a_missing_headline_metric_fails_the_pair() {
        let sim = tables(&[("makespan_mean_ms", 100.0)]);
        let live = tables(&[("makespan_mean_ms", 100.0)]);
        let r = compare_pair(&sim, &live, &Tolerances::default());
        assert_eq!(r.mape, 0.0);
        assert!(
            r.failures
                .iter()
                .any(|f| f.starts_with("makespan_p50_ms not comparable"))
        );
    }

    #[test]
    fn tiers_are_matched_by_provider_and_tier() {
        let row = |p: &str, id: &str, u: &str| -> BTreeMap<String, String> {
            [
                ("provider", p),
                ("tier_id", id),
                ("kind", "remote"),
                ("utilization", u),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
        };
        let sim = RunTables {
            tiers: vec![row("a", "0", "0.5"), row("a", "1", "0.2")],
            ..Default::default()
        };
        let live = RunTables {
            tiers: vec![row("a", "1", "0.3"), row("a", "0", "0.4")],
            ..Default::default()
        };
        let r = compare_pair(&sim, &live, &Tolerances::default());
        let u = |scope: &str| {
            r.metrics
                .iter()
                .find(|m| m.scope == scope && m.name == "utilization")
                .unwrap()
                .rel_error()
                .unwrap()
        };
        assert!((u("tier a/0") + 0.2).abs() < 1e-12);
        assert!((u("tier a/1") - 0.5).abs() < 1e-12);
    }

    fn run_row(policy: &str, seed: u32, p95: f64, cost: f64) -> Row {
        let mut r = Row::new();
        for (k, v) in [
            ("policy", policy.to_string()),
            ("seed", seed.to_string()),
            ("workflows", "10".into()),
            ("ablation_name", "baseline".into()),
            ("exit_code", "0".into()),
            ("makespan_mean_ms", p95.to_string()),
            ("makespan_p50_ms", p95.to_string()),
            ("makespan_p95_ms", p95.to_string()),
            ("makespan_p99_ms", p95.to_string()),
            ("cost_mean", cost.to_string()),
            ("cost_total", (10.0 * cost).to_string()),
        ] {
            r.insert(k, &v);
        }
        r
    }

    #[test]
    fn rankings_of_two_experiments_by_hand() {
        // Simulated p95 order a < b < c; live swaps b and c (tau 1/3), and
        // keeps the cost order.
        let sim = vec![
            run_row("a", 1, 100.0, 3.0),
            run_row("b", 1, 200.0, 2.0),
            run_row("c", 1, 300.0, 1.0),
        ];
        let live = vec![
            run_row("a", 1, 110.0, 3.0),
            run_row("b", 1, 330.0, 2.0),
            run_row("c", 1, 310.0, 1.0),
        ];
        let objectives = vec!["makespan_p95_ms".to_string(), "cost_mean".to_string()];
        let r = compare_experiments(&sim, &live, &objectives, &Tolerances::default());
        assert_eq!(r.configs.len(), 3);
        let p95 = &r.rankings[0];
        assert!((p95.tau - 1.0 / 3.0).abs() < 1e-12, "{}", p95.tau);
        assert!(p95.same_winner() && !p95.identical());
        assert_eq!(p95.live_order, ["policy=a", "policy=c", "policy=b"]);
        let cost = &r.rankings[1];
        assert_eq!(cost.tau, 1.0);
        assert_eq!(cost.sim_order, ["policy=c", "policy=b", "policy=a"]);
        // tau 1/3 < 0.6 fails; the MAPEs: a 10%, b (4 x 65% + 0)/6, c (4 x 3.3%)/6.
        assert_eq!(r.failures.len(), 2, "{:?}", r.failures);
        assert!(r.failures[0].starts_with("mean MAPE"));
        assert!(r.failures[1].starts_with("makespan_p95_ms: Kendall tau 0.333"));
        let want = (4.0 * 0.1 / 6.0 + 4.0 * 0.65 / 6.0 + 4.0 * (10.0 / 300.0) / 6.0) / 3.0;
        assert!((r.mape - want).abs() < 1e-12, "{} vs {want}", r.mape);
        // Identical experiments pass.
        let same = compare_experiments(&sim, &sim, &objectives, &Tolerances::default());
        assert!(same.failures.is_empty(), "{:?}", same.failures);
        assert!(same.rankings.iter().all(Ranking::identical));
        // Strictly, tau is still 1/3 and b, c are reversed.
        assert_eq!(p95.reversed, [("policy=b".into(), "policy=c".into())]);
        assert!(p95.sim_ties.is_empty() && !p95.agrees());
        // A configuration missing live is named.
        let fewer = compare_experiments(&sim, &live[..2], &objectives, &Tolerances::default());
        assert_eq!(fewer.only_sim, ["policy=c"]);
    }

    #[test]
    fn a_long_list_of_ties_is_shortened_with_its_count() {
        let objectives = vec!["makespan_p95_ms".to_string()];
        // Eight configurations within 2% of each other: 28 tied pairs, all
        // tied with the best.
        let sim: Vec<Row> = (0..8)
            .map(|i| run_row(&format!("p{i}"), 1, 100.0 + 0.1 * i as f64, 1.0))
            .collect();
        let r = compare_experiments(&sim, &sim, &objectives, &Tolerances::default());
        let k = &r.rankings[0];
        assert_eq!((k.sim_ties.len(), k.sim_best.len()), (28, 8));
        assert!(k.shortened());
        let text = k.describe(0.02);
        assert!(text.contains("28 pairs tied in the simulation"), "{text}");
        assert!(text.contains(", and 23 more;"), "{text}");
        assert!(text.contains(" ~ and 3 more, live best"), "{text}");
        assert_eq!(text.matches(" ~ ").count(), 5 + 4 + 1, "{text}");
        // Two configurations: one pair, listed whole.
        let r = compare_experiments(&sim[..2], &sim[..2], &objectives, &Tolerances::default());
        let k = &r.rankings[0];
        assert!(!k.shortened());
        let text = k.describe(0.02);
        assert!(text.contains("1 pair tied in the simulation (within 2.0% or not different at 95%): policy=p0 ~ policy=p1;"), "{text}");
    }

    #[test]
    fn near_equal_configurations_tie_and_their_live_order_is_not_held_against_them() {
        let objectives = vec!["makespan_p95_ms".to_string()];
        let run = |p: &str, v: f64| run_row(p, 1, v, 1.0);
        // a and b are 1% apart simulated (a tie at 2%); live swaps them.
        let sim = vec![run("a", 100.0), run("b", 101.0), run("c", 200.0)];
        let live = vec![run("a", 105.0), run("b", 100.0), run("c", 190.0)];
        let r = compare_experiments(&sim, &live, &objectives, &Tolerances::default());
        let k = &r.rankings[0];
        assert_eq!(k.sim_ties, [("policy=a".into(), "policy=b".into())]);
        assert!(k.reversed.is_empty() && k.agrees() && !k.identical());
        // Only (a, c) and (b, c) count: both concordant.
        assert_eq!(k.tau, 1.0);
        assert_eq!(k.sim_best, ["policy=a", "policy=b"]);
        assert!(k.same_winner(), "live best b is tied with a");
        assert!(r.failures.is_empty(), "{:?}", r.failures);
        // With no margin the swap is a reversal: tau (2 - 1) / 3, another winner.
        let strict = Tolerances {
            tie_margin: 0.0,
            ..Tolerances::default()
        };
        let r = compare_experiments(&sim, &live, &objectives, &strict);
        let k = &r.rankings[0];
        assert_eq!(k.reversed, [("policy=a".into(), "policy=b".into())]);
        assert!((k.tau - 1.0 / 3.0).abs() < 1e-12 && !k.same_winner());
        assert_eq!(r.failures.len(), 2, "{:?}", r.failures);
        // A pair the simulation separates but live cannot (190 vs 191) is a
        // live tie: tau-b 2 / sqrt(3 x 2), still in order.
        let sim = vec![run("a", 100.0), run("b", 150.0), run("c", 200.0)];
        let live = vec![run("a", 100.0), run("b", 190.0), run("c", 191.0)];
        let r = compare_experiments(&sim, &live, &objectives, &Tolerances::default());
        let k = &r.rankings[0];
        assert!((k.tau - 2.0 / 6f64.sqrt()).abs() < 1e-12, "{}", k.tau);
        assert!(k.agrees() && k.sim_ties.is_empty());
        // All within the margin: nothing to rank, and the verdict says so.
        let flat = vec![run("a", 100.0), run("b", 101.0)];
        let r = compare_experiments(&flat, &flat, &objectives, &Tolerances::default());
        assert!(
            r.failures[0].contains("separates no two configurations"),
            "{:?}",
            r.failures
        );
    }

    #[test]
    fn over_three_seeds_a_difference_the_spread_explains_is_a_tie() {
        let objectives = vec!["makespan_p95_ms".to_string()];
        let runs = |p: &str, vs: [f64; 3]| -> Vec<Row> {
            (0..3)
                .map(|k| run_row(p, k as u32 + 1, vs[k], 1.0))
                .collect()
        };
        // a: mean 200, sd 100; b: mean 250, sd 100 (25% apart, far beyond
        // the margin); Welch: se = sqrt(2 x 100^2 / 3) = 81.6, df 4, t 2.776:
        // 50 < 226.6, a tie. c: mean 1010, sd 10: separated from both.
        let mut sim = runs("a", [100.0, 200.0, 300.0]);
        sim.extend(runs("b", [150.0, 250.0, 350.0]));
        sim.extend(runs("c", [1000.0, 1010.0, 1020.0]));
        let mut live = runs("a", [260.0, 260.0, 260.0]);
        live.extend(runs("b", [240.0, 240.0, 240.0]));
        live.extend(runs("c", [900.0, 900.0, 900.0]));
        let r = compare_experiments(&sim, &live, &objectives, &Tolerances::default());
        let k = &r.rankings[0];
        assert_eq!(k.sim_ties, [("policy=a".into(), "policy=b".into())]);
        assert!(k.agrees() && k.same_winner(), "{k:?}");
        assert_eq!(k.tau, 1.0);
        assert!(welch_differ(
            &r_stats(&[100.0, 200.0, 300.0]),
            &r_stats(&[1000.0, 1010.0, 1020.0])
        ));
        assert!(!welch_differ(
            &r_stats(&[100.0, 200.0, 300.0]),
            &r_stats(&[150.0, 250.0, 350.0])
        ));
        // Two runs each: the margin alone decides (25% apart: separated).
        assert!(welch_differ(
            &r_stats(&[100.0, 300.0]),
            &r_stats(&[150.0, 350.0])
        ));
        // With 2 runs per configuration, the same data is a reversal.
        let two =
            |v: Vec<Row>| -> Vec<Row> { v.into_iter().filter(|r| &r["seed"] != "3").collect() };
        let r = compare_experiments(&two(sim), &two(live), &objectives, &Tolerances::default());
        assert_eq!(
            r.rankings[0].reversed,
            [("policy=a".into(), "policy=b".into())]
        );
    }

    fn r_stats(v: &[f64]) -> crate::stats::Describe {
        crate::stats::describe(v)
    }
}
