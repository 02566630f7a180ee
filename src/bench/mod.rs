//! `agentsched bench`: a fixed suite that tells whoever changes the engine
//! whether a change made it faster without changing what it computes.
//!
//! Each benchmark runs once to warm up, then N times; its time is the
//! minimum of the N (the least disturbed), reported with the median, the
//! maximum and the spread. Each also records the digest of what it computed,
//! so that a comparison with an earlier results file ([`eval`]) can tell a
//! speed-up from a changed result. Results go to `results_<unix>.json`.

pub mod eval;
pub mod paired;
pub mod reference;

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::stats::finite;
use serde::{Deserialize, Serialize};
use sha1::Digest;

use crate::error::{Error, Result};
use crate::metrics::{NullObserver, RunResult};
use crate::policy::PolicyKind;
use crate::scenario::Scenario;

/// Schema tag of a results file.
pub const RESULTS_SCHEMA: &str = "agentsched-bench/1";

/// Which suite to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Suite {
    /// Every benchmark, 7 repetitions (about two minutes on 2 cores).
    Full,
    /// Every benchmark but the traced run, 3 repetitions (under a minute).
    Quick,
}

impl Suite {
    /// Timed repetitions per benchmark.
    pub fn repetitions(self) -> usize {
        match self {
            Suite::Full => 7,
            Suite::Quick => 3,
        }
    }

    /// The name `--suite` takes.
    pub fn name(self) -> &'static str {
        match self {
            Suite::Full => "full",
            Suite::Quick => "quick",
        }
    }
}

/// The M/M/8 model of issue 10 and DESIGN.md section 7: utilisation 0.9.
pub const MMC_SERVERS: u32 = 8;
/// Arrivals per second.
pub const MMC_ARRIVAL_RATE: f64 = 7.2;
/// Services per second per server.
pub const MMC_SERVICE_RATE: f64 = 1.0;
/// Customers.
pub const MMC_CUSTOMERS: u64 = 1_000_000;

/// Where a benchmark may write (a fresh directory per repetition).
#[derive(Debug)]
pub struct Scratch {
    root: tempfile::TempDir,
    next: usize,
}

impl Scratch {
    fn new() -> Result<Scratch> {
        let root = tempfile::Builder::new()
            .prefix("agentsched-bench-")
            .tempdir()
            .map_err(|source| Error::Write {
                path: std::env::temp_dir(),
                source,
            })?;
        Ok(Scratch { root, next: 0 })
    }

    fn fresh(&mut self) -> PathBuf {
        self.next += 1;
        self.root.path().join(format!("rep{}", self.next))
    }
}

/// One benchmark of the suite: computes, returns the digest of its result.
type Work = Box<dyn Fn(&Path) -> Result<String>>;

/// A benchmark: name, what it counts, and the work.
pub struct Spec {
    /// Stable name (results are matched by it).
    pub name: String,
    /// What `items` counts (customers, workflows, runs).
    pub unit: &'static str,
    /// Items per repetition (throughput = items / time).
    pub items: u64,
    /// Threads it uses (1 unless it is a parallel sweep or the ratchet).
    pub threads: usize,
    /// In the quick suite too.
    pub quick: bool,
    work: Work,
}

impl std::fmt::Debug for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spec").field("name", &self.name).finish()
    }
}

fn sha1_hex(text: &[u8]) -> String {
    crate::output::hex(&sha1::Sha1::digest(text))
}

/// Digest of an in-memory run: its summary and tier rows, without the
/// measured wall time. Fields added since the digest was defined are left
/// out of its text while a run has none, so that runs without them keep
/// the digests earlier builds gave them.
pub fn run_digest(r: &RunResult) -> String {
    let mut r = r.clone();
    r.summary.wall_time_s = 0.0;
    let text = format!("{:?}\n{:?}", r.summary, r.tiers);
    let text = text
        .replace(", cached_input_tokens: None", "")
        .replace(", cache_write_tokens: None", "");
    sha1_hex(text.as_bytes())
}

fn core(name: &str, unit: &'static str, s: Scenario, quick: bool) -> Spec {
    let items = s.workload.workflows;
    Spec {
        name: name.to_string(),
        unit,
        items,
        threads: 1,
        quick,
        work: Box::new(move |_| Ok(run_digest(&crate::sim::run(&s, &mut NullObserver)))),
    }
}

fn simulate(name: &str, s: Scenario, trace: bool, quick: bool) -> Spec {
    Spec {
        name: name.to_string(),
        unit: "customers",
        items: s.workload.workflows,
        threads: 1,
        quick,
        work: Box::new(move |dir| Ok(crate::output::simulate_to_dir(&s, dir, trace)?.digest)),
    }
}

/// Digest of a sweep: every run's id and output digest, in id order.
fn sweep_digest(exp_dir: &Path) -> Result<String> {
    let runs = exp_dir.join("runs");
    let mut lines = Vec::new();
    let entries = std::fs::read_dir(&runs).map_err(|source| Error::Read {
        path: runs.clone(),
        source,
    })?;
    for e in entries.flatten() {
        let meta = e.path().join("meta.json");
        let text = std::fs::read_to_string(&meta).map_err(|source| Error::Read {
            path: meta.clone(),
            source,
        })?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::Input(format!("{}: {e}", meta.display())))?;
        lines.push(format!(
            "{} {} {}\n",
            e.file_name().to_string_lossy(),
            v["exit_code"],
            v["output_digest"]
        ));
    }
    lines.sort();
    Ok(sha1_hex(lines.concat().as_bytes()))
}

fn default_sweep(name: &str, jobs: usize) -> Result<Spec> {
    let cfg = crate::sweep::ExperimentConfig::from_value(
        serde_json::from_str(crate::sweep::DEFAULT_EXPERIMENT).expect("embedded config"),
        "embedded default experiment",
        None,
    )?;
    let runs = crate::sweep::expand(&cfg, cfg.trace)?.len() as u64;
    Ok(Spec {
        name: name.to_string(),
        unit: "runs",
        items: runs,
        threads: jobs,
        quick: true,
        work: Box::new(move |dir| {
            let opts = crate::sweep::SweepOptions {
                out_root: Some(dir.to_path_buf()),
                jobs: Some(jobs),
                quiet: true,
                ..Default::default()
            };
            let o = crate::sweep::run_sweep(&cfg, &opts)?;
            if o.failed > 0 {
                return Err(Error::Execution(format!(
                    "{} of the default sweep's runs failed",
                    o.failed
                )));
            }
            sweep_digest(&o.exp_dir)
        }),
    })
}

fn ratchet(threads: usize) -> Spec {
    Spec {
        name: "ratchet/default_50_seeds_full".into(),
        unit: "ratchets",
        items: 1,
        threads,
        quick: true,
        work: Box::new(|_| {
            let mut r = crate::tune::ratchet::run(
                &crate::policy::Constants::default(),
                50,
                PolicyKind::Full,
                crate::tune::Objective::Balanced,
                0.01,
            )
            .map_err(Error::Input)?;
            r.duration_s = 0.0;
            Ok(sha1_hex(
                serde_json::to_string(&r).expect("ratchet json").as_bytes(),
            ))
        }),
    }
}

/// The M/M/8 scenario of the suite.
pub fn mmc_scenario() -> Scenario {
    Scenario::mmc(
        MMC_SERVERS,
        MMC_ARRIVAL_RATE,
        MMC_SERVICE_RATE,
        MMC_CUSTOMERS,
        1,
    )
}

/// Names of the M/M/8 benchmarks the derived ratios are computed from.
pub const MMC_REFERENCE: &str = "mmc8_rho0.9_1M/heap_reference";
/// The engine alone.
pub const MMC_CORE: &str = "mmc8_rho0.9_1M/core";
/// `simulate` with its default outputs.
pub const MMC_SIMULATE: &str = "mmc8_rho0.9_1M/simulate";
/// `simulate --trace`.
pub const MMC_SIMULATE_TRACE: &str = "mmc8_rho0.9_1M/simulate_trace";

/// The whole suite, in running order.
pub fn suite(cores: usize) -> Result<Vec<Spec>> {
    let mut v = vec![
        Spec {
            name: MMC_REFERENCE.into(),
            unit: "customers",
            items: MMC_CUSTOMERS,
            threads: 1,
            quick: true,
            work: Box::new(|_| {
                let o = reference::mmc_heap_loop(
                    MMC_SERVERS,
                    MMC_ARRIVAL_RATE,
                    MMC_SERVICE_RATE,
                    MMC_CUSTOMERS,
                    1,
                );
                Ok(sha1_hex(format!("{o:?}").as_bytes()))
            }),
        },
        core(MMC_CORE, "customers", mmc_scenario(), true),
        simulate(MMC_SIMULATE, mmc_scenario(), false, true),
        simulate(MMC_SIMULATE_TRACE, mmc_scenario(), true, false),
    ];
    let mut fj = Scenario::from_json_str(include_str!("../../scenarios/fork_join.json"))
        .expect("scenarios/fork_join.json");
    fj.workload.workflows = 100_000;
    v.push(core("fork_join_100k/core", "workflows", fj, true));
    for policy in PolicyKind::ALL {
        let mut s = Scenario::default_research_agent();
        s.workload.workflows = 1_000;
        s.policy = policy;
        v.push(core(
            &format!("research_agent_1k/{}", policy.name()),
            "workflows",
            s,
            true,
        ));
    }
    v.push(default_sweep("default_sweep/jobs_1", 1)?);
    v.push(default_sweep("default_sweep/jobs_all", cores)?);
    v.push(ratchet(cores));
    Ok(v)
}

/// One benchmark's measurement, as written to the results file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchResult {
    /// The benchmark's name.
    pub name: String,
    /// What `items` counts.
    pub unit: String,
    /// Items per repetition.
    pub items: u64,
    /// Threads used.
    #[serde(default)]
    pub threads: usize,
    /// Minimum time over the repetitions, seconds (null when unknown).
    pub time_s: Option<f64>,
    /// Median time, seconds.
    #[serde(default)]
    pub median_s: Option<f64>,
    /// Maximum time, seconds.
    #[serde(default)]
    pub max_s: Option<f64>,
    /// (max - min) / min.
    #[serde(default)]
    pub spread: Option<f64>,
    /// Items per second at the minimum time.
    #[serde(default)]
    pub per_s: Option<f64>,
    /// Every timed repetition, seconds.
    #[serde(default)]
    pub times_s: Vec<f64>,
    /// Digest of what it computed (null when unknown).
    pub output_digest: Option<String>,
}

/// A ratio between two benchmarks of the same run, against its target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ratio {
    /// What it compares.
    pub name: String,
    /// Numerator benchmark.
    pub numerator: String,
    /// Denominator benchmark.
    pub denominator: String,
    /// numerator time / denominator time (null when either is missing).
    pub value: Option<f64>,
    /// The goal, e.g. `<= 1.3`.
    pub target: String,
    /// Whether the value meets the goal (null when unknown).
    pub met: Option<bool>,
    /// The ratio of each repetition's own two times: every repetition
    /// times the benchmarks back to back, so its ratio is free of the
    /// machine's drift between repetitions, which the minimum times are not.
    /// Reported beside the verdict (which stays the minimum times'), so
    /// that a verdict near the goal can be read against the noise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paired: Option<eval::RepetitionMedian>,
}

/// The machine a results file was measured on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// Logical cores available.
    pub cores: usize,
    /// `std::env::consts::OS`.
    pub os: String,
    /// `std::env::consts::ARCH`.
    pub arch: String,
    /// The processor's model name (Linux's `/proc/cpuinfo`); empty where
    /// unknown, as in results files written before it was recorded.
    #[serde(default)]
    pub cpu: String,
}

impl Machine {
    /// This machine, with `cores` logical cores available.
    pub fn this(cores: usize) -> Machine {
        Machine {
            cores,
            os: std::env::consts::OS.into(),
            arch: std::env::consts::ARCH.into(),
            cpu: cpu_model(),
        }
    }

    /// How `other` differs from this machine (what a comparison of their
    /// times would mix up with the change), or None. An unknown model
    /// name differs from nothing.
    pub fn differences(&self, other: &Machine) -> Option<String> {
        let mut d = Vec::new();
        if self.cores != other.cores {
            d.push(format!("cores {} -> {}", self.cores, other.cores));
        }
        if self.os != other.os {
            d.push(format!("os {} -> {}", self.os, other.os));
        }
        if self.arch != other.arch {
            d.push(format!("arch {} -> {}", self.arch, other.arch));
        }
        if !self.cpu.is_empty() && !other.cpu.is_empty() && self.cpu != other.cpu {
            d.push(format!("cpu {:?} -> {:?}", self.cpu, other.cpu));
        }
        (!d.is_empty()).then(|| d.join(", "))
    }
}

/// The first `model name` of `/proc/cpuinfo`, or empty.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim() == "model name")
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default()
}

/// A `results_<unix>.json` file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResultsFile {
    /// [`RESULTS_SCHEMA`].
    pub schema: String,
    /// Suite run.
    pub suite: Suite,
    /// Tool version.
    pub version: String,
    /// When the run finished (seconds since the epoch).
    pub created_unix_s: u64,
    /// Where it ran.
    pub machine: Machine,
    /// Timed repetitions per benchmark (after one warm-up).
    pub repetitions: usize,
    /// The measurements.
    pub benchmarks: Vec<BenchResult>,
    /// Derived ratios with their goals.
    #[serde(default)]
    pub ratios: Vec<Ratio>,
    /// The executable measured, when it was not the one writing the file
    /// (a paired run, `--baseline-bin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<String>,
    /// The benchmarks of the full suite this run left out (`--suite quick`,
    /// `--only`): an eval report calls them not run, not removed. Empty in
    /// files from before it was recorded.
    #[serde(default)]
    pub not_selected: Vec<String>,
}

/// Summarises the timed repetitions of one benchmark.
pub fn summarize(spec: &Spec, times: &[f64], digest: String) -> BenchResult {
    summary(
        &spec.name,
        spec.unit,
        spec.items,
        spec.threads,
        times,
        Some(digest),
    )
}

/// A benchmark's result from its timed repetitions: the minimum, with the
/// median, maximum, spread and throughput beside it.
pub fn summary(
    name: &str,
    unit: &str,
    items: u64,
    threads: usize,
    times: &[f64],
    digest: Option<String>,
) -> BenchResult {
    let mut sorted = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    let min = sorted.first().copied();
    let max = sorted.last().copied();
    let median = (!sorted.is_empty()).then(|| crate::stats::percentile_sorted(&sorted, 50.0));
    BenchResult {
        name: name.to_string(),
        unit: unit.to_string(),
        items,
        threads,
        time_s: min.and_then(finite),
        median_s: median.and_then(finite),
        max_s: max.and_then(finite),
        spread: min.zip(max).and_then(|(a, b)| finite((b - a) / a)),
        per_s: min.and_then(|m| finite(items as f64 / m)),
        times_s: times.to_vec(),
        output_digest: digest,
    }
}

/// The ratios issue 10 sets goals for, from one run's results.
pub fn ratios(results: &[BenchResult]) -> Vec<Ratio> {
    let find = |n: &str| results.iter().find(|r| r.name == n);
    let time = |n: &str| find(n).and_then(|r| r.time_s);
    // `goal` None: reported without a goal.
    let ratio =
        |name: &str, num: &str, den: &str, target: &str, goal: Option<&dyn Fn(f64) -> bool>| {
            let value = time(num).zip(time(den)).and_then(|(a, b)| finite(a / b));
            Ratio {
                name: name.into(),
                numerator: num.into(),
                denominator: den.into(),
                value,
                target: target.into(),
                met: value.zip(goal).map(|(v, g)| g(v)),
                paired: find(num)
                    .zip(find(den))
                    .and_then(|(a, b)| eval::per_repetition(&a.times_s, &b.times_s, |x, y| x / y)),
            }
        };
    vec![
        ratio(
            "output path: simulate with outputs / core",
            MMC_SIMULATE,
            MMC_CORE,
            "<= 1.3",
            Some(&|v| v <= 1.3),
        ),
        ratio(
            "output path with trace: simulate --trace / core",
            MMC_SIMULATE_TRACE,
            MMC_CORE,
            "none, reported",
            None,
        ),
        // Throughput of the core as a fraction of the bare loop's: the
        // inverse of the time ratio.
        ratio(
            "core speed: heap reference time / core time",
            MMC_REFERENCE,
            MMC_CORE,
            ">= 0.5",
            Some(&|v| v >= 0.5),
        ),
    ]
    .into_iter()
    .filter(|r| time(&r.numerator).is_some() || time(&r.denominator).is_some())
    .collect()
}

/// How to run the suite.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Suite.
    pub suite: Suite,
    /// Repetitions (default: the suite's).
    pub repetitions: Option<usize>,
    /// Run only benchmarks whose name contains one of these.
    pub only: Vec<String>,
    /// Print progress to stderr.
    pub progress: bool,
}

/// The benchmarks of `specs` in `suite` selected by `only` (all when it is
/// empty): a benchmark's full name selects it alone (`.../simulate`, not
/// `.../simulate_trace` too), other text every name that contains it; an
/// error when none is selected.
pub fn select(specs: Vec<Spec>, suite: Suite, only: &[String]) -> Result<Vec<Spec>> {
    let catalogue: Vec<(String, bool)> = specs.iter().map(|s| (s.name.clone(), s.quick)).collect();
    let selects = |name: &str, o: &str| {
        if catalogue.iter().any(|(n, _)| n == o) {
            name == o
        } else {
            name.contains(o)
        }
    };
    let chosen: Vec<Spec> = specs
        .into_iter()
        .filter(|s| suite == Suite::Full || s.quick)
        .filter(|s| only.is_empty() || only.iter().any(|o| selects(&s.name, o)))
        .collect();
    if chosen.is_empty() {
        let in_suite: Vec<&str> = catalogue
            .iter()
            .filter(|(_, quick)| suite == Suite::Full || *quick)
            .map(|(n, _)| n.as_str())
            .collect();
        // A full-only benchmark named in the quick suite is a likely slip:
        // say where it runs, not only that nothing matched.
        let full_only: Vec<&str> = catalogue
            .iter()
            .filter(|(n, quick)| !quick && only.iter().any(|o| selects(n, o)))
            .map(|(n, _)| n.as_str())
            .collect();
        let hint = if suite == Suite::Quick && !full_only.is_empty() {
            format!(" ({} runs only in the `full` suite)", full_only.join(", "))
        } else {
            String::new()
        };
        return Err(Error::Input(format!(
            "--only {}: matches no benchmark of the `{}` suite{hint}; expected part of one of: {}",
            only.join(", "),
            suite.name(),
            in_suite.join(", ")
        )));
    }
    Ok(chosen)
}

/// The suite's benchmarks selected by `which` and `only` (as [`select`]),
/// and the names of those it left out, in the suite's order.
pub fn selection(cores: usize, which: Suite, only: &[String]) -> Result<(Vec<Spec>, Vec<String>)> {
    let all = suite(cores)?;
    let catalogue: Vec<String> = all.iter().map(|s| s.name.clone()).collect();
    let chosen = select(all, which, only)?;
    let left_out = catalogue
        .into_iter()
        .filter(|n| !chosen.iter().any(|s| &s.name == n))
        .collect();
    Ok((chosen, left_out))
}

/// Runs the selected benchmarks.
pub fn run_suite(opts: &BenchOptions) -> Result<ResultsFile> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (specs, not_selected) = selection(cores, opts.suite, &opts.only)?;
    let reps = opts.repetitions.unwrap_or(opts.suite.repetitions());
    let mut scratch = Scratch::new()?;
    // One warm-up each (it also fixes the digest every repetition must
    // reproduce), then the repetitions round-robin over the benchmarks: a
    // slow phase of a shared machine then hits every benchmark alike, which
    // keeps the ratios between benchmarks of one run honest.
    let mut digests = Vec::with_capacity(specs.len());
    for spec in &specs {
        if opts.progress {
            eprintln!("warm-up: {}", spec.name);
        }
        let dir = scratch.fresh();
        digests.push((spec.work)(&dir)?);
        remove_quietly(&dir);
    }
    let mut times = vec![Vec::with_capacity(reps); specs.len()];
    for rep in 0..reps {
        for (i, spec) in specs.iter().enumerate() {
            let dir = scratch.fresh();
            let started = Instant::now();
            let d = (spec.work)(&dir)?;
            let t = started.elapsed().as_secs_f64();
            remove_quietly(&dir);
            if d != digests[i] {
                return Err(Error::Execution(format!(
                    "benchmark {}: repetitions computed different results ({} then {d}): the engine is not deterministic",
                    spec.name, digests[i]
                )));
            }
            if opts.progress {
                eprintln!("{}/{reps} {:<40} {t:.4} s", rep + 1, spec.name);
            }
            times[i].push(t);
        }
    }
    let results: Vec<BenchResult> = specs
        .iter()
        .zip(times)
        .zip(digests)
        .map(|((spec, t), d)| summarize(spec, &t, d))
        .collect();
    Ok(ResultsFile {
        schema: RESULTS_SCHEMA.into(),
        suite: opts.suite,
        version: env!("CARGO_PKG_VERSION").into(),
        created_unix_s: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        machine: Machine::this(cores),
        repetitions: reps,
        ratios: ratios(&results),
        benchmarks: results,
        binary: None,
        not_selected,
    })
}

fn remove_quietly(dir: &Path) {
    // Scratch space only; the TempDir removes whatever is left on drop.
    let _ = std::fs::remove_dir_all(dir);
}

/// A results file's position in time: `results_<unix>[_<n>].json`.
pub fn results_key(file_name: &str) -> Option<(u64, u64)> {
    let stem = file_name.strip_prefix("results_")?.strip_suffix(".json")?;
    let (t, n) = match stem.split_once('_') {
        Some((t, n)) => (t, n.parse().ok()?),
        None => (stem, 0),
    };
    Some((t.parse().ok()?, n))
}

/// Every results file in `dir`, oldest first.
pub fn results_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for e in entries.flatten() {
                if let Some(k) = results_key(&e.file_name().to_string_lossy()) {
                    found.push((k, e.path()));
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(Error::Read {
                path: dir.to_path_buf(),
                source,
            });
        }
    }
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// Writes `r` as a new results file in `dir` (never replacing one).
pub fn write_results(dir: &Path, r: &ResultsFile) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let text = serde_json::to_string_pretty(r).expect("results json") + "\n";
    // A second run within the same second gets a suffix; files are never
    // replaced, so the history an eval compares against stays intact.
    let newest = results_files(dir)?
        .last()
        .and_then(|p| results_key(&p.file_name()?.to_string_lossy()));
    let (t, n) = match newest {
        Some((t, n)) if t >= r.created_unix_s => (t, n + 1),
        _ => (r.created_unix_s, 0),
    };
    let name = if n == 0 {
        format!("results_{t}.json")
    } else {
        format!("results_{t}_{n}.json")
    };
    let path = dir.join(name);
    crate::output::atomic_write(&path, text.as_bytes())?;
    crate::output::sync_dir(dir);
    Ok(path)
}

/// Reads a results file (one written by this tool, or by hand).
pub fn read_results(path: &Path) -> Result<ResultsFile> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let de = &mut serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let inner = e.inner();
        if inner.is_syntax() || inner.is_eof() {
            // A broken file has no field to name: say where the text breaks.
            return Error::Input(format!(
                "{}: line {} column {}: invalid JSON: {inner} (expected a results file written by `agentsched bench`)",
                path.display(),
                inner.line(),
                inner.column()
            ));
        }
        let (field, msg) = crate::error::field_and_message(&e);
        Error::Input(format!(
            "{}: field `{field}`: {msg} (expected a results file written by `agentsched bench`)",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_digest_reads_cached_tokens_where_a_run_has_them() {
        let mut s = Scenario::mmc(2, 1.0, 1.0, 50, 4);
        let r = crate::sim::run(&s, &mut NullObserver);
        let text = format!("{:?}", r.summary);
        assert!(text.contains("cached_input_tokens: None"), "{text}");
        let mut cached = r.clone();
        cached.summary.cached_input_tokens = Some(0);
        assert_ne!(run_digest(&r), run_digest(&cached));
        cached.tiers[0].cached_input_tokens = Some(0);
        let mut more = cached.clone();
        more.tiers[0].cached_input_tokens = Some(1);
        assert_ne!(run_digest(&cached), run_digest(&more));
        // Every other field still counts.
        s.seed = 5;
        assert_ne!(
            run_digest(&r),
            run_digest(&crate::sim::run(&s, &mut NullObserver))
        );
    }

    #[test]
    fn a_full_name_selects_its_benchmark_alone_other_text_every_match() {
        let spec = |name: &str, quick: bool| Spec {
            name: name.into(),
            unit: "runs",
            items: 1,
            threads: 1,
            quick,
            work: Box::new(|_| Ok(String::new())),
        };
        let specs = || {
            vec![
                spec("m/core", true),
                spec("m/simulate", true),
                spec("m/simulate_trace", false),
            ]
        };
        let names = |suite, only: &[&str]| -> Result<Vec<String>> {
            let only: Vec<String> = only.iter().map(|o| o.to_string()).collect();
            Ok(select(specs(), suite, &only)?
                .into_iter()
                .map(|s| s.name)
                .collect())
        };
        assert_eq!(names(Suite::Full, &["m/simulate"]).unwrap(), ["m/simulate"]);
        assert_eq!(
            names(Suite::Full, &["simulate"]).unwrap(),
            ["m/simulate", "m/simulate_trace"]
        );
        assert_eq!(names(Suite::Full, &[]).unwrap().len(), 3);
        assert_eq!(
            names(Suite::Quick, &["trace"]).ok(),
            None,
            "full suite only"
        );
        let quick_only = |only: &str| match select(specs(), Suite::Quick, &[only.to_string()]) {
            Err(Error::Input(m)) => m,
            other => panic!("expected an input error, got {:?}", other.map(|_| ())),
        };
        let m = quick_only("trace");
        assert!(
            m.contains("`quick` suite (m/simulate_trace runs only in the `full` suite)"),
            "{m}"
        );
        assert!(m.ends_with("one of: m/core, m/simulate"), "{m}");
        let m = quick_only("nothing");
        assert!(!m.contains("runs only"), "{m}");
        assert_eq!(
            names(Suite::Quick, &["m/core", "simulate"]).unwrap(),
            ["m/core", "m/simulate"]
        );
    }

    #[test]
    fn results_keys_order_by_time_then_suffix() {
        assert_eq!(
            results_key("results_1700000000.json"),
            Some((1_700_000_000, 0))
        );
        assert_eq!(
            results_key("results_1700000000_2.json"),
            Some((1_700_000_000, 2))
        );
        assert_eq!(results_key("results_x.json"), None);
        assert_eq!(results_key("eval.json"), None);
        assert!(results_key("results_9_1.json") > results_key("results_9.json"));
        assert!(results_key("results_10.json") > results_key("results_9_1.json"));
    }

    #[test]
    fn results_in_the_same_second_never_replace_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let r = ResultsFile {
            schema: RESULTS_SCHEMA.into(),
            suite: Suite::Quick,
            version: "x".into(),
            created_unix_s: 1000,
            machine: Machine {
                cores: 2,
                os: "linux".into(),
                arch: "x86_64".into(),
                cpu: "a cpu".into(),
            },
            repetitions: 1,
            benchmarks: vec![],
            ratios: vec![],
            binary: None,
            not_selected: vec!["m/simulate_trace".into()],
        };
        let a = write_results(dir.path(), &r).unwrap();
        let b = write_results(dir.path(), &r).unwrap();
        let c = write_results(dir.path(), &r).unwrap();
        assert_ne!(a, b);
        assert_ne!(b, c);
        assert_eq!(results_files(dir.path()).unwrap(), vec![a, b, c.clone()]);
        assert_eq!(read_results(&c).unwrap(), r);
    }

    #[test]
    fn a_bad_results_file_is_named_with_where_it_breaks() {
        let dir = tempfile::tempdir().unwrap();
        let read = |text: &str| {
            let p = dir.path().join("results_1.json");
            std::fs::write(&p, text).unwrap();
            match read_results(&p) {
                Err(Error::Input(m)) => m,
                other => panic!("expected an input error, got {other:?}"),
            }
        };
        let m = read("{bad");
        assert!(
            m.contains("results_1.json: line 1 column 2: invalid JSON"),
            "{m}"
        );
        let m = read("{\"schema\": \"x\"");
        assert!(
            m.contains("results_1.json: line 1 column 14: invalid JSON: EOF"),
            "{m}"
        );
        let m = read("{\"schema\": 1}");
        assert!(m.contains("results_1.json: field `schema`"), "{m}");
    }

    #[test]
    fn summary_takes_the_minimum_and_the_spread() {
        let spec = Spec {
            name: "x".into(),
            unit: "runs",
            items: 10,
            threads: 1,
            quick: true,
            work: Box::new(|_| Ok(String::new())),
        };
        let r = summarize(&spec, &[2.0, 1.0, 4.0], "d".into());
        assert_eq!(r.time_s, Some(1.0));
        assert_eq!(r.median_s, Some(2.0));
        assert_eq!(r.max_s, Some(4.0));
        assert_eq!(r.spread, Some(3.0));
        assert_eq!(r.per_s, Some(10.0));
        assert_eq!(r.times_s, vec![2.0, 1.0, 4.0]);
    }

    #[test]
    fn ratios_compare_times_of_the_same_run() {
        let r = |name: &str, t: f64| BenchResult {
            name: name.into(),
            unit: "customers".into(),
            items: 1,
            threads: 1,
            time_s: Some(t),
            median_s: None,
            max_s: None,
            spread: None,
            per_s: None,
            times_s: vec![],
            output_digest: None,
        };
        let v = ratios(&[
            r(MMC_REFERENCE, 0.1),
            r(MMC_CORE, 0.4),
            r(MMC_SIMULATE, 0.5),
        ]);
        let get = |n: &str| v.iter().find(|x| x.name.starts_with(n)).unwrap().clone();
        assert_eq!(get("output path:").value, Some(1.25));
        assert_eq!(get("output path:").met, Some(true));
        assert_eq!(get("core speed").value, Some(0.25));
        assert_eq!(get("core speed").met, Some(false));
        assert_eq!(get("output path with trace").value, None);
        assert_eq!(get("output path with trace").met, None);
        // No repetition times: no per-repetition ratio.
        assert_eq!(get("output path:").paired, None);
    }

    #[test]
    fn ratios_also_pair_each_repetitions_own_times() {
        let r = |name: &str, times: &[f64]| summary(name, "customers", 1, 1, times, None);
        // The machine slows down on every other repetition: the minimum
        // times' ratio (1.1 / 1.0) misses what each repetition shows.
        let core = [1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0];
        let simulate = [1.2, 2.6, 1.1, 2.4, 1.3, 2.2, 1.25];
        let v = ratios(&[r(MMC_CORE, &core), r(MMC_SIMULATE, &simulate)]);
        let out = v
            .iter()
            .find(|x| x.name.starts_with("output path:"))
            .unwrap();
        assert_eq!(out.value, Some(1.1));
        // Ratios 1.2 1.3 1.1 1.2 1.3 1.1 1.25: median 1.2; with 7
        // repetitions the 95% interval is the smallest and largest.
        let p = out.paired.expect("paired");
        assert_eq!(p.repetitions, 7);
        assert_eq!(p.median, Some(1.2));
        assert_eq!((p.low, p.high), (Some(1.1), Some(1.3)));
        // Five repetitions: a median, but too few for an interval.
        let v = ratios(&[r(MMC_CORE, &core[..5]), r(MMC_SIMULATE, &simulate[..5])]);
        let p = v[0].paired.expect("paired");
        assert_eq!(
            (p.repetitions, p.median, p.low, p.high),
            (5, Some(1.2), None, None)
        );
        // Unequal repetition counts cannot be paired.
        let v = ratios(&[r(MMC_CORE, &core), r(MMC_SIMULATE, &simulate[..6])]);
        assert_eq!(v[0].paired, None);
    }
}
