//! The machine-readable eval report (DESIGN.md section 8): a results file
//! compared with an earlier one, benchmark by benchmark, so that an automated
//! optimisation agent can accept or reject an engine change without parsing
//! text.
//!
//! Per benchmark: `perf_gain` = old time / new time - 1; `output_changed`
//! compares the digests; `score` = max(0, gain) when the output is unchanged,
//! 0 when it changed, null when the two are not comparable (a time or digest
//! is missing, or the benchmark is only in one file). `aggregate_score` is the
//! minimum score over the comparable benchmarks, so one broken benchmark
//! vetoes; `is_acceptable` = aggregate_score > 0. Gains within the band
//! (±5%) are reported as unchanged; the rest are grouped as regressions and
//! improvements; benchmarks in only one file as new or removed. Non-finite
//! numbers are written as null.

use crate::stats::finite;
use serde::Serialize;

use super::{BenchResult, ResultsFile};

/// Schema tag of an eval report.
pub const EVAL_SCHEMA: &str = "agentsched-bench-eval/1";

/// Gains within ±`BAND` are reported as unchanged.
pub const BAND: f64 = 0.05;

/// How a benchmark's time moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Within the band.
    Unchanged,
    /// Faster by more than the band.
    Improvement,
    /// Slower by more than the band.
    Regression,
    /// Only in the new results.
    New,
    /// Only in the earlier results.
    Removed,
    /// In both, but a time is missing.
    NotComparable,
}

/// One benchmark in the report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EvalEntry {
    /// Benchmark name.
    pub name: String,
    /// Earlier time, seconds.
    pub old_time_s: Option<f64>,
    /// New time, seconds.
    pub new_time_s: Option<f64>,
    /// old / new - 1.
    pub perf_gain: Option<f64>,
    /// Whether the digests differ (null when either is missing).
    pub output_changed: Option<bool>,
    /// max(0, gain) if unchanged output, 0 if changed, null if not comparable.
    pub score: Option<f64>,
    /// How its time moved.
    pub change: Change,
}

/// The eval report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EvalReport {
    /// [`EVAL_SCHEMA`].
    pub schema: &'static str,
    /// The earlier results file.
    pub baseline: String,
    /// The new results file.
    pub current: String,
    /// The unchanged band.
    pub band: f64,
    /// Minimum score over the comparable benchmarks (null when none is).
    pub aggregate_score: Option<f64>,
    /// aggregate_score > 0.
    pub is_acceptable: bool,
    /// One entry per benchmark in either file (new results' order, then removed ones).
    pub benchmarks: Vec<EvalEntry>,
    /// Names whose output changed.
    pub output_changed: Vec<String>,
    /// Names whose time is within the band.
    pub unchanged: Vec<String>,
    /// Names slower by more than the band.
    pub regressions: Vec<String>,
    /// Names faster by more than the band.
    pub improvements: Vec<String>,
    /// Names only in the new results.
    pub new: Vec<String>,
    /// Names only in the earlier results.
    pub removed: Vec<String>,
}

fn positive(t: Option<f64>) -> Option<f64> {
    t.filter(|t| t.is_finite() && *t > 0.0)
}

/// Compares one benchmark measured before and after.
pub fn compare(name: &str, old: Option<&BenchResult>, new: Option<&BenchResult>) -> EvalEntry {
    let (old_t, new_t) = (
        old.and_then(|o| positive(o.time_s)),
        new.and_then(|n| positive(n.time_s)),
    );
    let perf_gain = old_t.zip(new_t).and_then(|(o, n)| finite(o / n - 1.0));
    let output_changed = match (
        old.and_then(|o| o.output_digest.as_ref()),
        new.and_then(|n| n.output_digest.as_ref()),
    ) {
        (Some(a), Some(b)) => Some(a != b),
        _ => None,
    };
    let score = match (perf_gain, output_changed) {
        (Some(_), Some(true)) => Some(0.0),
        (Some(g), Some(false)) => Some(g.max(0.0)),
        _ => None,
    };
    let change = match (old, new, perf_gain) {
        (None, _, _) => Change::New,
        (_, None, _) => Change::Removed,
        (_, _, None) => Change::NotComparable,
        (_, _, Some(g)) if g > BAND => Change::Improvement,
        (_, _, Some(g)) if g < -BAND => Change::Regression,
        _ => Change::Unchanged,
    };
    EvalEntry {
        name: name.to_string(),
        old_time_s: old_t,
        new_time_s: new_t,
        perf_gain,
        output_changed,
        score,
        change,
    }
}

/// Compares `current` with `baseline` (both by benchmark name).
pub fn evaluate(
    baseline: &ResultsFile,
    baseline_path: &str,
    current: &ResultsFile,
    current_path: &str,
) -> EvalReport {
    let find = |f: &'_ ResultsFile, n: &str| -> Option<BenchResult> {
        f.benchmarks.iter().find(|b| b.name == n).cloned()
    };
    let mut entries: Vec<EvalEntry> = current
        .benchmarks
        .iter()
        .map(|b| compare(&b.name, find(baseline, &b.name).as_ref(), Some(b)))
        .collect();
    entries.extend(
        baseline
            .benchmarks
            .iter()
            .filter(|b| find(current, &b.name).is_none())
            .map(|b| compare(&b.name, Some(b), None)),
    );
    let aggregate = entries
        .iter()
        .filter_map(|e| e.score)
        .fold(None, |m: Option<f64>, s| Some(m.map_or(s, |m| m.min(s))));
    let names = |want: Change| -> Vec<String> {
        entries
            .iter()
            .filter(|e| e.change == want)
            .map(|e| e.name.clone())
            .collect()
    };
    EvalReport {
        schema: EVAL_SCHEMA,
        baseline: baseline_path.to_string(),
        current: current_path.to_string(),
        band: BAND,
        aggregate_score: aggregate,
        is_acceptable: aggregate.is_some_and(|a| a > 0.0),
        output_changed: entries
            .iter()
            .filter(|e| e.output_changed == Some(true))
            .map(|e| e.name.clone())
            .collect(),
        unchanged: names(Change::Unchanged),
        regressions: names(Change::Regression),
        improvements: names(Change::Improvement),
        new: names(Change::New),
        removed: names(Change::Removed),
        benchmarks: entries,
    }
}

/// The report for people: one line per benchmark, then the verdict.
pub fn report_text(r: &EvalReport) -> String {
    let pct = |x: Option<f64>| x.map_or("n/a".to_string(), |g| format!("{:+.1}%", 100.0 * g));
    let secs = |x: Option<f64>| x.map_or("-".to_string(), |t| format!("{t:.4}"));
    let mut s = format!("compared with {}\n", r.baseline);
    for e in &r.benchmarks {
        let change = match e.change {
            Change::Unchanged => "unchanged",
            Change::Improvement => "improvement",
            Change::Regression => "REGRESSION",
            Change::New => "new",
            Change::Removed => "removed",
            Change::NotComparable => "not comparable",
        };
        let output = match e.output_changed {
            Some(true) => ", OUTPUT CHANGED",
            Some(false) => "",
            None => ", output not comparable",
        };
        s.push_str(&format!(
            "  {:<40} {:>9} s -> {:>9} s  {:>8}  {change}{output}\n",
            e.name,
            secs(e.old_time_s),
            secs(e.new_time_s),
            pct(e.perf_gain)
        ));
    }
    s.push_str(&format!(
        "aggregate score {} ({}): {}\n",
        r.aggregate_score
            .map_or("null".to_string(), |a| format!("{a:.4}")),
        "the minimum over comparable benchmarks",
        if r.is_acceptable {
            "acceptable"
        } else {
            "NOT acceptable (every benchmark must be faster with unchanged output)"
        }
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::super::{Machine, RESULTS_SCHEMA, Suite};
    use super::*;

    fn b(name: &str, t: Option<f64>, digest: Option<&str>) -> BenchResult {
        BenchResult {
            name: name.into(),
            unit: "runs".into(),
            items: 1,
            threads: 1,
            time_s: t,
            median_s: t,
            max_s: t,
            spread: Some(0.0),
            per_s: t.map(|t| 1.0 / t),
            times_s: t.into_iter().collect(),
            output_digest: digest.map(str::to_string),
        }
    }

    fn file(benchmarks: Vec<BenchResult>) -> ResultsFile {
        ResultsFile {
            schema: RESULTS_SCHEMA.into(),
            suite: Suite::Quick,
            version: "0".into(),
            created_unix_s: 1,
            machine: Machine {
                cores: 2,
                os: "linux".into(),
                arch: "x86_64".into(),
            },
            repetitions: 3,
            benchmarks,
            ratios: vec![],
            binary: None,
        }
    }

    #[test]
    fn a_faster_run_with_equal_digests_scores_its_gain() {
        let old = file(vec![
            b("a", Some(2.0), Some("x")),
            b("b", Some(1.0), Some("y")),
        ]);
        let new = file(vec![
            b("a", Some(1.0), Some("x")),
            b("b", Some(0.8), Some("y")),
        ]);
        let r = evaluate(&old, "old", &new, "new");
        assert_eq!(r.benchmarks[0].perf_gain, Some(1.0));
        assert_eq!(r.benchmarks[0].score, Some(1.0));
        assert_eq!(r.benchmarks[1].perf_gain, Some(0.25));
        assert_eq!(r.aggregate_score, Some(0.25), "the minimum");
        assert!(r.is_acceptable);
        assert_eq!(r.improvements, vec!["a", "b"]);
        assert!(r.output_changed.is_empty());
    }

    #[test]
    fn one_changed_digest_vetoes_however_fast() {
        let old = file(vec![
            b("a", Some(2.0), Some("x")),
            b("b", Some(2.0), Some("y")),
        ]);
        let new = file(vec![
            b("a", Some(1.0), Some("x")),
            b("b", Some(1.0), Some("CHANGED")),
        ]);
        let r = evaluate(&old, "old", &new, "new");
        assert_eq!(r.benchmarks[1].output_changed, Some(true));
        assert_eq!(r.benchmarks[1].score, Some(0.0));
        assert_eq!(
            r.benchmarks[1].perf_gain,
            Some(1.0),
            "the gain is still reported"
        );
        assert_eq!(r.aggregate_score, Some(0.0));
        assert!(!r.is_acceptable);
        assert_eq!(r.output_changed, vec!["b"]);
    }

    #[test]
    fn the_five_percent_band_groups_changes() {
        let old = file(vec![
            b("same", Some(1.0), Some("d")),
            b("bit_slower", Some(1.0), Some("d")),
            b("slower", Some(1.0), Some("d")),
            b("faster", Some(1.0), Some("d")),
            b("gone", Some(1.0), Some("d")),
        ]);
        let new = file(vec![
            b("same", Some(1.0), Some("d")),
            b("bit_slower", Some(1.04), Some("d")),
            b("slower", Some(1.1), Some("d")),
            b("faster", Some(0.9), Some("d")),
            b("fresh", Some(1.0), Some("d")),
        ]);
        let r = evaluate(&old, "old", &new, "new");
        assert_eq!(r.unchanged, vec!["same", "bit_slower"]);
        assert_eq!(r.regressions, vec!["slower"]);
        assert_eq!(r.improvements, vec!["faster"]);
        assert_eq!(r.new, vec!["fresh"]);
        assert_eq!(r.removed, vec!["gone"]);
        // A slower benchmark scores 0 (not negative), and vetoes.
        let slower = r.benchmarks.iter().find(|e| e.name == "slower").unwrap();
        assert!(slower.perf_gain.unwrap() < -0.05);
        assert_eq!(slower.score, Some(0.0));
        assert_eq!(r.aggregate_score, Some(0.0));
        // New and removed benchmarks are not comparable: null, no veto.
        let fresh = r.benchmarks.iter().find(|e| e.name == "fresh").unwrap();
        assert_eq!((fresh.score, fresh.perf_gain), (None, None));
    }

    #[test]
    fn unknown_numbers_are_null_not_nan() {
        let old = file(vec![
            b("zero", Some(0.0), Some("d")),
            b("missing", None, Some("d")),
            b("no_digest", Some(1.0), None),
        ]);
        let new = file(vec![
            b("zero", Some(1.0), Some("d")),
            b("missing", Some(1.0), Some("d")),
            b("no_digest", Some(0.5), Some("d")),
        ]);
        let r = evaluate(&old, "old", &new, "new");
        for e in &r.benchmarks {
            assert_eq!(e.score, None, "{}", e.name);
        }
        assert_eq!(r.benchmarks[2].perf_gain, Some(1.0));
        assert_eq!(r.benchmarks[2].output_changed, None);
        assert_eq!(r.aggregate_score, None);
        assert!(!r.is_acceptable);
        let json = serde_json::to_string(&r).unwrap();
        assert!(!json.contains("NaN") && !json.contains("inf"), "{json}");
        assert!(json.contains("\"aggregate_score\":null"), "{json}");
        assert!(json.contains("\"perf_gain\":null"), "{json}");
    }
}
