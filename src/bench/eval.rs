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
//! improvements; benchmarks in only one file as new or removed, or as not
//! run when that file's run left out one its build has (`--suite quick`,
//! `--only`).
//! Non-finite numbers are written as null.
//!
//! After a paired run (the two files timed alternately, repetition by
//! repetition), each entry also gets `paired`: the median of the
//! repetitions' own gains and a 95% interval for it. The verdict stays the
//! minimum times' (as specified); the interval says whether the gain stands
//! out from the machine's noise.

use crate::stats::finite;
use serde::{Deserialize, Serialize};
use statrs::distribution::{Binomial, DiscreteCDF};

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
    /// Only in the earlier results, and not in this build's suite.
    Removed,
    /// In one file only, because that run left it out (`--suite quick`,
    /// `--only`), not because its build lacked it.
    NotRun,
    /// In both, but a time is missing, or they ran on different machines.
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
    /// Repetition by repetition, after a paired run (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paired: Option<PairedGain>,
}

/// One benchmark's gains repetition by repetition, in a paired run: each
/// repetition timed both binaries back to back, so its own gain (baseline
/// time / this time - 1) is free of the drift between repetitions.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PairedGain {
    /// Repetitions paired.
    pub repetitions: usize,
    /// The median of the repetitions' gains.
    pub median_gain: Option<f64>,
    /// A 95% interval for that median (order statistics of the gains, true
    /// whatever their distribution); null with fewer than 6 repetitions.
    pub low: Option<f64>,
    /// Its upper end.
    pub high: Option<f64>,
}

/// The 0-based rank `k` such that the `k`-th smallest and the `k`-th largest
/// of `n` samples bound their population's median with probability at least
/// 95% (the largest such `k`); None when `n` is too small (under 6).
///
/// The median lies below the `k`-th smallest when at most `k` samples fall
/// below it, which has probability P(B <= k) with B ~ Binomial(n, 1/2); the
/// interval misses on either side, so it covers with 1 - 2 P(B <= k).
pub fn median_interval_rank(n: usize) -> Option<usize> {
    let below = Binomial::new(0.5, n as u64).ok()?;
    (0..n / 2)
        .take_while(|&k| below.cdf(k as u64) <= 0.025)
        .last()
}

/// The paired gains of two equally long lists of times, repetition by
/// repetition; None unless every time is positive.
pub fn paired_gain(old: &[f64], new: &[f64]) -> Option<PairedGain> {
    let m = per_repetition(old, new, |o, n| o / n - 1.0)?;
    Some(PairedGain {
        repetitions: m.repetitions,
        median_gain: m.median,
        low: m.low,
        high: m.high,
    })
}

/// The median of one value per repetition, with a 95% interval for it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RepetitionMedian {
    /// Repetitions.
    pub repetitions: usize,
    /// The median of their values.
    pub median: Option<f64>,
    /// The interval's lower end (order statistics, true whatever the
    /// values' distribution); None with fewer than 6 repetitions.
    pub low: Option<f64>,
    /// Its upper end.
    pub high: Option<f64>,
}

/// `f(a, b)` of each repetition's two times, and the median of those
/// values with its interval; None unless the lists are equally long, not
/// empty, and every time is positive.
pub fn per_repetition(
    a: &[f64],
    b: &[f64],
    f: impl Fn(f64, f64) -> f64,
) -> Option<RepetitionMedian> {
    if a.len() != b.len() || a.is_empty() {
        return None;
    }
    let mut values = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| Some(f(positive(Some(x))?, positive(Some(y))?)))
        .collect::<Option<Vec<f64>>>()?;
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let bound = |i: usize| finite(values[i]);
    let k = median_interval_rank(n);
    Some(RepetitionMedian {
        repetitions: n,
        median: finite(crate::stats::percentile_sorted(&values, 50.0)),
        low: k.and_then(&bound),
        high: k.and_then(|k| bound(n - 1 - k)),
    })
}

/// `; {label} {median} [{low}, {high}] of {repetitions}` (no interval
/// without both ends), each number printed by `show`.
pub fn median_text(
    label: &str,
    median: Option<f64>,
    (low, high): (Option<f64>, Option<f64>),
    repetitions: usize,
    show: impl Fn(Option<f64>) -> String,
) -> String {
    let interval = match (low, high) {
        (Some(lo), Some(hi)) => format!(" [{}, {}]", show(Some(lo)), show(Some(hi))),
        _ => String::new(),
    };
    format!("; {label} {}{interval} of {repetitions}", show(median))
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
    /// How the baseline's machine differs from this one's (null when it
    /// does not): then no time is compared, only outputs.
    pub machine_differs: Option<String>,
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
    /// Names only in the earlier results, that this build no longer has.
    pub removed: Vec<String>,
    /// Names in one file only, because that run left them out.
    pub not_run: Vec<String>,
}

fn positive(t: Option<f64>) -> Option<f64> {
    t.filter(|t| t.is_finite() && *t > 0.0)
}

/// How one results file has a benchmark: measured, or why not.
#[derive(Clone, Copy, Debug)]
pub enum Measured<'a> {
    /// Measured by that file's run.
    Yes(&'a BenchResult),
    /// The run left it out (not selected).
    NotRun,
    /// The build did not have it.
    Absent,
}

impl<'a> Measured<'a> {
    /// How `file` has benchmark `name`.
    pub fn in_file(file: &'a ResultsFile, name: &str) -> Measured<'a> {
        match file.benchmarks.iter().find(|b| b.name == name) {
            Some(b) => Measured::Yes(b),
            None if file.not_selected.iter().any(|n| n == name) => Measured::NotRun,
            None => Measured::Absent,
        }
    }

    fn result(self) -> Option<&'a BenchResult> {
        match self {
            Measured::Yes(b) => Some(b),
            Measured::NotRun | Measured::Absent => None,
        }
    }
}

/// Compares one benchmark measured before and after; its times only when
/// `same_machine` (on another, they would measure the machine too).
pub fn compare(
    name: &str,
    before: Measured<'_>,
    after: Measured<'_>,
    same_machine: bool,
) -> EvalEntry {
    let (old, new) = (before.result(), after.result());
    let (old_t, new_t) = (
        old.and_then(|o| positive(o.time_s)),
        new.and_then(|n| positive(n.time_s)),
    );
    let perf_gain = old_t
        .zip(new_t)
        .filter(|_| same_machine)
        .and_then(|(o, n)| finite(o / n - 1.0));
    let output_changed = match (
        old.and_then(|o| o.output_digest.as_ref()),
        new.and_then(|n| n.output_digest.as_ref()),
    ) {
        (Some(a), Some(b)) => Some(a != b),
        _ => None,
    };
    // A changed output vetoes whatever the times say, or whether they compare.
    let score = match (perf_gain, output_changed) {
        (_, Some(true)) => Some(0.0),
        (Some(g), Some(false)) => Some(g.max(0.0)),
        _ => None,
    };
    let change = match (before, after, perf_gain) {
        (Measured::NotRun, _, _) | (_, Measured::NotRun, _) => Change::NotRun,
        (Measured::Absent, _, _) => Change::New,
        (_, Measured::Absent, _) => Change::Removed,
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
        paired: None,
    }
}

/// Adds the repetition-by-repetition gains to a report of a paired run
/// (`baseline` and `current` timed alternately, so their `times_s` pair up).
pub fn add_paired(r: &mut EvalReport, baseline: &ResultsFile, current: &ResultsFile) {
    fn times<'f>(f: &'f ResultsFile, name: &str) -> Option<&'f [f64]> {
        let b = f.benchmarks.iter().find(|b| b.name == name)?;
        Some(&b.times_s)
    }
    for e in &mut r.benchmarks {
        e.paired = times(baseline, &e.name)
            .zip(times(current, &e.name))
            .and_then(|(o, n)| paired_gain(o, n));
    }
}

/// Compares `current` with `baseline` (both by benchmark name).
pub fn evaluate(
    baseline: &ResultsFile,
    baseline_path: &str,
    current: &ResultsFile,
    current_path: &str,
) -> EvalReport {
    let machine_differs = baseline.machine.differences(&current.machine);
    let same_machine = machine_differs.is_none();
    let mut entries: Vec<EvalEntry> = current
        .benchmarks
        .iter()
        .map(|b| {
            compare(
                &b.name,
                Measured::in_file(baseline, &b.name),
                Measured::Yes(b),
                same_machine,
            )
        })
        .collect();
    entries.extend(
        baseline
            .benchmarks
            .iter()
            .filter(|b| !current.benchmarks.iter().any(|c| c.name == b.name))
            .map(|b| {
                compare(
                    &b.name,
                    Measured::Yes(b),
                    Measured::in_file(current, &b.name),
                    same_machine,
                )
            }),
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
        machine_differs,
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
        not_run: names(Change::NotRun),
        benchmarks: entries,
    }
}

/// The report for people: one line per benchmark, then the verdict.
pub fn report_text(r: &EvalReport) -> String {
    let pct = |x: Option<f64>| x.map_or("n/a".to_string(), |g| format!("{:+.1}%", 100.0 * g));
    let secs = |x: Option<f64>| x.map_or("-".to_string(), |t| format!("{t:.4}"));
    let mut s = format!("compared with {}\n", r.baseline);
    if let Some(d) = &r.machine_differs {
        s.push_str(&format!(
            "  measured on another machine ({d}): times not compared, only outputs; \
             make the baseline here, or time both builds here with --baseline-bin\n"
        ));
    }
    for e in &r.benchmarks {
        let change = match e.change {
            Change::Unchanged => "unchanged",
            Change::Improvement => "improvement",
            Change::Regression => "REGRESSION",
            Change::New => "new",
            Change::Removed => "removed",
            Change::NotRun => "not run in both (--suite quick or --only left it out)",
            Change::NotComparable => "not comparable",
        };
        let output = match e.output_changed {
            Some(true) => ", OUTPUT CHANGED",
            Some(false) => "",
            None if e.change == Change::NotRun => "",
            None => ", output not comparable",
        };
        let paired = e.paired.as_ref().map_or(String::new(), |p| {
            median_text(
                "paired median",
                p.median_gain,
                (p.low, p.high),
                p.repetitions,
                pct,
            )
        });
        s.push_str(&format!(
            "  {:<40} {:>9} s -> {:>9} s  {:>8}  {change}{output}{paired}\n",
            e.name,
            secs(e.old_time_s),
            secs(e.new_time_s),
            pct(e.perf_gain)
        ));
    }
    if r.benchmarks.iter().any(|e| e.paired.is_some()) {
        s.push_str(
            "  (paired: the median of each repetition's own gain, with its 95% interval; an interval that holds 0 is within the machine's noise)\n",
        );
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
                cpu: "a cpu".into(),
            },
            repetitions: 3,
            benchmarks,
            ratios: vec![],
            binary: None,
            not_selected: vec![],
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
    fn times_from_another_machine_are_not_compared_but_outputs_are() {
        let old = file(vec![
            b("a", Some(2.0), Some("x")),
            b("b", Some(2.0), Some("y")),
            b("gone", Some(1.0), Some("z")),
        ]);
        let mut new = file(vec![
            b("a", Some(1.0), Some("x")),
            b("b", Some(1.0), Some("changed")),
            b("fresh", Some(1.0), Some("w")),
        ]);
        new.machine.cpu = "another cpu".into();
        new.machine.cores = 4;
        let r = evaluate(&old, "old", &new, "new");
        let d = r.machine_differs.as_deref().expect("the machines differ");
        assert!(
            d.contains("cores 2 -> 4") && d.contains("another cpu"),
            "{d}"
        );
        // Twice as fast, but on another machine: no gain, no score.
        let a = &r.benchmarks[0];
        assert_eq!((a.perf_gain, a.score), (None, None));
        assert_eq!(a.change, Change::NotComparable);
        assert_eq!((a.old_time_s, a.new_time_s), (Some(2.0), Some(1.0)));
        assert_eq!(a.output_changed, Some(false));
        // A changed output vetoes on any machine.
        assert_eq!(r.benchmarks[1].score, Some(0.0));
        assert_eq!(r.output_changed, vec!["b"]);
        assert_eq!(r.aggregate_score, Some(0.0));
        assert!(!r.is_acceptable);
        // Presence is still presence.
        assert_eq!(
            (r.new.clone(), r.removed.clone()),
            (vec!["fresh".to_string()], vec!["gone".to_string()])
        );
        assert!(report_text(&r).contains("measured on another machine"));

        // Outputs unchanged: nothing scores, so not acceptable (null aggregate).
        new.benchmarks[1].output_digest = Some("y".into());
        let r = evaluate(&old, "old", &new, "new");
        assert_eq!(r.aggregate_score, None);
        assert!(!r.is_acceptable);
    }

    #[test]
    fn machines_compare_by_cores_system_and_a_known_cpu() {
        let m = file(vec![]).machine;
        assert_eq!(m.differences(&m.clone()), None);
        // A file from before the model name was recorded differs only where it can tell.
        let old: Machine =
            serde_json::from_str(r#"{"cores": 2, "os": "linux", "arch": "x86_64"}"#).unwrap();
        assert_eq!(old.cpu, "");
        assert_eq!(old.differences(&m), None);
        assert_eq!(m.differences(&old), None);
        let other = Machine {
            arch: "aarch64".into(),
            ..m.clone()
        };
        assert_eq!(
            m.differences(&other).as_deref(),
            Some("arch x86_64 -> aarch64")
        );
        // Same machine: a results file compares as before, field for field.
        let r = evaluate(
            &file(vec![b("a", Some(2.0), Some("x"))]),
            "o",
            &file(vec![b("a", Some(1.0), Some("x"))]),
            "n",
        );
        assert_eq!((r.machine_differs, r.aggregate_score), (None, Some(1.0)));
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
            b("left_out", Some(1.0), Some("d")),
        ]);
        let mut new = file(vec![
            b("same", Some(1.0), Some("d")),
            b("bit_slower", Some(1.04), Some("d")),
            b("slower", Some(1.1), Some("d")),
            b("faster", Some(0.9), Some("d")),
            b("fresh", Some(1.0), Some("d")),
            b("skipped_before", Some(1.0), Some("d")),
        ]);
        // Each run had a benchmark it did not select.
        new.not_selected = vec!["left_out".into(), "in_neither".into()];
        let mut old = old;
        old.not_selected = vec!["skipped_before".into(), "in_neither".into()];
        let r = evaluate(&old, "old", &new, "new");
        assert_eq!(r.unchanged, vec!["same", "bit_slower"]);
        assert_eq!(r.regressions, vec!["slower"]);
        assert_eq!(r.improvements, vec!["faster"]);
        assert_eq!(r.new, vec!["fresh"]);
        assert_eq!(r.removed, vec!["gone"]);
        assert_eq!(r.not_run, vec!["skipped_before", "left_out"]);
        let left_out = r.benchmarks.iter().find(|e| e.name == "left_out").unwrap();
        assert_eq!((left_out.score, left_out.change), (None, Change::NotRun));
        let text = report_text(&r);
        assert!(
            text.contains("not run in both (--suite quick or --only left it out)\n"),
            "{text}"
        );
        assert!(text.contains("removed, output not comparable"), "{text}");
        // A slower benchmark scores 0 (not negative), and vetoes.
        let slower = r.benchmarks.iter().find(|e| e.name == "slower").unwrap();
        assert!(slower.perf_gain.unwrap() < -0.05);
        assert_eq!(slower.score, Some(0.0));
        assert_eq!(r.aggregate_score, Some(0.0));
        // New and removed benchmarks are not comparable: null, no veto.
        let fresh = r.benchmarks.iter().find(|e| e.name == "fresh").unwrap();
        assert_eq!((fresh.score, fresh.perf_gain), (None, None));
    }

    /// Coverage 1 - 2 P(B <= k), B ~ Binomial(n, 1/2), by hand: n = 5 has
    /// none at 95% (P(B = 0) = 1/32 > 2.5%); n = 6: P(B = 0) = 1/64; n = 9:
    /// P(B <= 1) = 10/512 but P(B <= 2) = 46/512; n = 20: P(B <= 5) =
    /// 21700/2^20 = 2.07%, P(B <= 6) = 6.0%.
    #[test]
    fn the_median_interval_takes_the_widest_rank_with_95_percent_coverage() {
        assert_eq!(median_interval_rank(1), None);
        assert_eq!(median_interval_rank(5), None);
        assert_eq!(median_interval_rank(6), Some(0));
        assert_eq!(median_interval_rank(9), Some(1));
        assert_eq!(median_interval_rank(20), Some(5));
    }

    #[test]
    fn median_text_shows_an_interval_only_with_both_ends() {
        let show = |x: Option<f64>| x.map_or("n/a".into(), |v| format!("{v:.3}"));
        assert_eq!(
            median_text(
                "per repetition: median",
                Some(1.25),
                (Some(1.0), Some(1.5)),
                7,
                show
            ),
            "; per repetition: median 1.250 [1.000, 1.500] of 7"
        );
        assert_eq!(
            median_text("m", Some(1.25), (None, Some(1.5)), 5, show),
            "; m 1.250 of 5"
        );
        assert_eq!(
            median_text("m", None, (None, None), 0, show),
            "; m n/a of 0"
        );
    }

    #[test]
    fn paired_gains_are_per_repetition_with_their_interval() {
        // Repetition i: baseline old[i], this binary new[i].
        let old = [1.2, 2.0, 1.1, 1.0, 1.5, 3.0, 1.0, 1.0, 1.3];
        let new = [1.0, 1.6, 1.0, 1.0, 1.0, 2.0, 2.0, 0.8, 1.0];
        let p = paired_gain(&old, &new).unwrap();
        // Gains sorted: -0.5, 0, 0.1, 0.2, 0.25, 0.25, 0.3, 0.5, 0.5.
        assert_eq!(p.repetitions, 9);
        assert!((p.median_gain.unwrap() - 0.25).abs() < 1e-12);
        assert_eq!((p.low, p.high), (Some(0.0), Some(0.5)));
        // Too few repetitions for an interval; unequal or bad lists, none.
        let short = paired_gain(&old[..4], &new[..4]).unwrap();
        assert_eq!((short.low, short.high), (None, None));
        assert!(paired_gain(&old, &new[..8]).is_none());
        assert!(paired_gain(&[1.0, 0.0], &[1.0, 1.0]).is_none());
    }

    #[test]
    fn only_a_paired_report_carries_paired_gains() {
        let mut old = file(vec![b("a", Some(1.0), Some("x"))]);
        let mut new = file(vec![b("a", Some(0.5), Some("x"))]);
        old.benchmarks[0].times_s = vec![1.0; 6];
        new.benchmarks[0].times_s = vec![0.5; 6];
        let mut r = evaluate(&old, "old", &new, "new");
        assert!(!serde_json::to_string(&r).unwrap().contains("paired"));
        add_paired(&mut r, &old, &new);
        let p = r.benchmarks[0].paired.as_ref().unwrap();
        assert_eq!(
            (p.median_gain, p.low, p.high),
            (Some(1.0), Some(1.0), Some(1.0))
        );
        assert!(report_text(&r).contains("paired median +100.0% [+100.0%, +100.0%] of 6"));
    }

    #[test]
    fn a_changed_output_vetoes_even_without_a_time_to_compare() {
        let old = file(vec![b("a", None, Some("x"))]);
        let new = file(vec![b("a", Some(1.0), Some("changed"))]);
        let r = evaluate(&old, "old", &new, "new");
        assert_eq!(r.benchmarks[0].perf_gain, None);
        assert_eq!(r.benchmarks[0].change, Change::NotComparable);
        assert_eq!(r.benchmarks[0].score, Some(0.0));
        assert_eq!(r.aggregate_score, Some(0.0));
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
