//! Paired runs: this binary and a baseline build of agentsched timed
//! alternately, benchmark by benchmark, so that the machine's drift hits
//! both alike.
//!
//! Comparing with a results file made minutes earlier measures the machine
//! as much as the change: on a shared VM the same binary runs 6-30% slower
//! or faster from one minute to the next, in phases of seconds. Here each
//! repetition runs every selected benchmark once in each binary, back to
//! back, in alternating order (the baseline first on even repetitions, this
//! binary first on odd ones, so a steady drift favours neither), and each
//! side keeps its minimum.
//!
//! Both sides run as child processes with the same arguments
//! (`bench --suite S --reps 1 --quiet --only NAME --results-dir <scratch>`),
//! so they are measured the same way, and a baseline built from any commit
//! that has `bench` will do. The benchmarks are this binary's suite; one the
//! baseline does not list is timed on this side only (reported as new).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{BenchResult, RESULTS_SCHEMA, ResultsFile, Scratch, Suite, ratios, summary};
use crate::error::{Error, Result};

/// How to run a paired comparison.
#[derive(Clone, Debug)]
pub struct PairedOptions {
    /// The other build of agentsched.
    pub baseline_bin: PathBuf,
    /// This build (normally `std::env::current_exe()`).
    pub current_bin: PathBuf,
    /// Suite.
    pub suite: Suite,
    /// Repetitions (default: the suite's): timed runs per benchmark and binary.
    pub repetitions: Option<usize>,
    /// Print progress to stderr.
    pub progress: bool,
    /// This build's benchmarks the selection left out (recorded in both
    /// results files).
    pub not_selected: Vec<String>,
}

/// The two sides of a paired run, each as a results file.
#[derive(Clone, Debug)]
pub struct Paired {
    /// The baseline binary's measurements.
    pub baseline: ResultsFile,
    /// This binary's.
    pub current: ResultsFile,
}

/// Which binary runs first in repetition `rep`: the baseline on even ones.
pub fn baseline_first(rep: usize) -> bool {
    rep % 2 == 0
}

/// One binary's runs, merged benchmark by benchmark.
#[derive(Debug)]
struct Side {
    bin: PathBuf,
    /// Per benchmark, in suite order: the first run's entry and every time.
    runs: Vec<(BenchResult, Vec<f64>)>,
    /// The first run's file (version, machine).
    first: Option<ResultsFile>,
}

impl Side {
    fn new(bin: PathBuf) -> Side {
        Side {
            bin,
            runs: Vec::new(),
            first: None,
        }
    }

    /// Adds one timed run of `name` from a pass's results file; every run
    /// of a benchmark must compute what its first did.
    fn add(&mut self, name: &str, pass: ResultsFile) -> Result<f64> {
        let bin = self.bin.display();
        let b = pass
            .benchmarks
            .iter()
            .find(|b| b.name == name)
            .ok_or_else(|| Error::Execution(format!("{bin}: its pass did not time {name}")))?;
        let t = b
            .time_s
            .ok_or_else(|| Error::Execution(format!("{bin}: benchmark {name} reported no time")))?;
        match self.runs.iter_mut().find(|(f, _)| f.name == name) {
            Some((first, times)) => {
                if first.output_digest != b.output_digest {
                    return Err(Error::Execution(format!(
                        "{bin}: benchmark {name} computed different results in two runs ({} then {}): the engine is not deterministic",
                        first.output_digest.as_deref().unwrap_or("-"),
                        b.output_digest.as_deref().unwrap_or("-"),
                    )));
                }
                times.push(t);
            }
            None => self.runs.push((b.clone(), vec![t])),
        }
        if self.first.is_none() {
            self.first = Some(pass);
        }
        Ok(t)
    }

    fn finish(
        self,
        suite: Suite,
        reps: usize,
        created_unix_s: u64,
        not_selected: &[String],
    ) -> Option<ResultsFile> {
        let first = self.first?;
        let benchmarks: Vec<BenchResult> = self
            .runs
            .iter()
            .map(|(b, times)| {
                summary(
                    &b.name,
                    &b.unit,
                    b.items,
                    b.threads,
                    times,
                    b.output_digest.clone(),
                )
            })
            .collect();
        Some(ResultsFile {
            schema: RESULTS_SCHEMA.into(),
            suite,
            version: first.version,
            created_unix_s,
            machine: first.machine,
            repetitions: reps,
            ratios: ratios(&benchmarks),
            benchmarks,
            binary: Some(self.bin.display().to_string()),
            not_selected: not_selected.to_vec(),
        })
    }
}

/// The last lines of a child's standard error, for a message.
fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(5)..].join("\n  ")
}

/// Runs `bin` with `args`; its standard output, or why it failed.
fn run(bin: &Path, args: &[&OsStr]) -> std::result::Result<Vec<u8>, String> {
    let out = Command::new(bin)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run it: {e}"))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        match tail(&out.stderr) {
            t if t.is_empty() => Err(out.status.to_string()),
            t => Err(format!("{}:\n  {t}\n", out.status)),
        }
    }
}

/// Checks that `bin` runs and has the `bench` command; returns the
/// benchmark names it lists.
fn list(bin: &Path) -> Result<Vec<String>> {
    let stdout = run(bin, &["bench".as_ref(), "--list".as_ref()]).map_err(|e| {
        Error::Input(format!(
            "--baseline-bin {}: `bench --list` failed ({e}); expected a build of agentsched that has the bench command",
            bin.display()
        ))
    })?;
    Ok(String::from_utf8_lossy(&stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect())
}

/// One timed run of benchmark `name` by `bin` (after its warm-up), in a
/// fresh results directory of `scratch`.
fn pass(bin: &Path, suite: Suite, name: &str, scratch: &mut Scratch) -> Result<ResultsFile> {
    let dir = scratch.fresh();
    let mut args = [
        "bench",
        "--suite",
        suite.name(),
        "--reps",
        "1",
        "--quiet",
        "--only",
        name,
        "--results-dir",
    ]
    .map(OsStr::new)
    .to_vec();
    args.push(dir.as_os_str());
    run(bin, &args).map_err(|e| {
        Error::Execution(format!("{}: its run of {name} failed ({e})", bin.display()))
    })?;
    let file = super::results_files(&dir)?.pop().ok_or_else(|| {
        Error::Execution(format!(
            "{}: its run of {name} wrote no results file",
            bin.display()
        ))
    })?;
    let r = super::read_results(&file);
    super::remove_quietly(&dir);
    r
}

/// Runs `names` (this binary's selected benchmarks) in both binaries,
/// alternately; an error when the baseline lists none of them.
pub fn run_paired(opts: &PairedOptions, names: &[String]) -> Result<Paired> {
    let listed = list(&opts.baseline_bin)?;
    if !names.iter().any(|n| listed.contains(n)) {
        // A binary that lists nothing ran `bench --list` without being
        // agentsched (or is one from before the bench command had any).
        let lists = if listed.is_empty() {
            "its `bench --list` printed no benchmark; expected a build of agentsched that has the bench command".to_string()
        } else {
            format!("it lists: {}", listed.join(", "))
        };
        return Err(Error::Input(format!(
            "--baseline-bin {}: has none of the selected benchmarks ({}); {lists}",
            opts.baseline_bin.display(),
            names.join(", "),
        )));
    }
    let reps = opts.repetitions.unwrap_or(opts.suite.repetitions());
    let mut base = Side::new(opts.baseline_bin.clone());
    let mut cur = Side::new(opts.current_bin.clone());
    let mut scratch = Scratch::new()?;
    for rep in 0..reps {
        for name in names {
            let in_base = listed.contains(name);
            let mut times = [None, None];
            for is_base in [baseline_first(rep), !baseline_first(rep)] {
                if is_base && !in_base {
                    continue;
                }
                let side = if is_base { &mut base } else { &mut cur };
                let r = pass(&side.bin, opts.suite, name, &mut scratch)?;
                times[is_base as usize] = Some(side.add(name, r)?);
            }
            if opts.progress {
                let secs = |t: Option<f64>| t.map_or("-".into(), |t| format!("{t:.4} s"));
                eprintln!(
                    "{}/{reps} {name:<40} baseline {}, this binary {}",
                    rep + 1,
                    secs(times[1]),
                    secs(times[0])
                );
            }
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok(Paired {
        baseline: base
            .finish(opts.suite, reps, now, &opts.not_selected)
            .expect("the baseline has a selected benchmark"),
        current: cur
            .finish(opts.suite, reps, now, &opts.not_selected)
            .expect("at least one benchmark selected"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Machine;

    fn pass_of(benchmarks: &[(&str, f64, &str)]) -> ResultsFile {
        ResultsFile {
            schema: RESULTS_SCHEMA.into(),
            suite: Suite::Quick,
            version: "0.0.1".into(),
            created_unix_s: 1,
            machine: Machine {
                cores: 2,
                os: "linux".into(),
                arch: "x86_64".into(),
                cpu: "a cpu".into(),
            },
            repetitions: 1,
            not_selected: vec![],
            benchmarks: benchmarks
                .iter()
                .map(|&(name, t, digest)| BenchResult {
                    name: name.into(),
                    unit: "workflows".into(),
                    items: 10,
                    threads: 1,
                    time_s: Some(t),
                    median_s: Some(t),
                    max_s: Some(t),
                    spread: Some(0.0),
                    per_s: Some(10.0 / t),
                    times_s: vec![t],
                    output_digest: Some(digest.into()),
                })
                .collect(),
            ratios: vec![],
            binary: None,
        }
    }

    #[test]
    fn the_order_alternates_so_a_steady_drift_favours_neither_side() {
        let firsts: Vec<bool> = (0..4).map(baseline_first).collect();
        assert_eq!(firsts, [true, false, true, false]);
    }

    #[test]
    fn runs_merge_into_one_result_per_benchmark_with_the_minimum() {
        let mut s = Side::new("old".into());
        for (b, a) in [(0.30, 2.0), (0.20, 3.0), (0.25, 2.5)] {
            // A pass may time more than the benchmark asked for (`--only`
            // matches substrings): only the named one counts.
            assert_eq!(
                s.add("b", pass_of(&[("b", b, "d1"), ("bb", 9.0, "x")]))
                    .unwrap(),
                b
            );
            s.add("a", pass_of(&[("a", a, "d2")])).unwrap();
        }
        let r = s.finish(Suite::Quick, 3, 99, &[]).unwrap();
        assert_eq!(r.repetitions, 3);
        assert_eq!(r.created_unix_s, 99);
        assert_eq!(r.version, "0.0.1");
        assert_eq!(r.binary.as_deref(), Some("old"));
        let names: Vec<&str> = r.benchmarks.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["b", "a"]);
        let b = &r.benchmarks[0];
        assert_eq!(b.times_s, [0.30, 0.20, 0.25]);
        assert_eq!(b.time_s, Some(0.20));
        assert_eq!(b.median_s, Some(0.25));
        assert_eq!(b.max_s, Some(0.30));
        assert!((b.spread.unwrap() - 0.5).abs() < 1e-12);
        assert_eq!(b.per_s, Some(50.0));
        assert_eq!(b.output_digest.as_deref(), Some("d1"));
        assert_eq!(r.benchmarks[1].time_s, Some(2.0));
    }

    #[test]
    fn a_run_that_computes_something_else_stops_the_comparison() {
        let mut s = Side::new("old".into());
        s.add("a", pass_of(&[("a", 1.0, "d1")])).unwrap();
        let e = s.add("a", pass_of(&[("a", 1.0, "d9")])).unwrap_err();
        assert_eq!(e.exit_code(), 4);
        assert!(e.to_string().contains("not deterministic"), "{e}");
    }

    #[test]
    fn a_run_without_the_benchmark_or_its_time_stops_the_comparison() {
        let mut s = Side::new("old".into());
        let e = s.add("a", pass_of(&[("b", 1.0, "d1")])).unwrap_err();
        assert!(e.to_string().contains("did not time a"), "{e}");
        let mut p = pass_of(&[("a", 1.0, "d1")]);
        p.benchmarks[0].time_s = None;
        assert!(s.add("a", p).unwrap_err().to_string().contains("no time"));
        assert!(s.finish(Suite::Quick, 1, 0, &[]).is_none());
    }

    #[test]
    fn an_unrunnable_baseline_is_bad_input() {
        let e = list(Path::new("/nonexistent/agentsched")).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(
            e.to_string()
                .contains("--baseline-bin /nonexistent/agentsched"),
            "{e}"
        );
    }
}
