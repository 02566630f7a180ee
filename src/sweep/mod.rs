//! Experiment sweeps: a matrix of runs executed in-process on a rayon pool,
//! with the seed runner's layout and ids, resume, shards and fail-fast.
//!
//! ```text
//! <out_root>/<exp_name>/
//!   runs/<run_id>/{meta.json, stdout.txt, stderr.txt, out/{summary.csv, summary.json, workflows.csv, tiers.csv, trace.json}}
//!   aggregate/{runs.csv, sweep_aggregate.json, sweep_aggregate.csv}   (collect)
//!   report/{index.html, assets/*.svg}                               (report)
//! ```
//!
//! Each run is written into `runs/.<run_id>.partial` and renamed into place
//! when complete, so a sweep killed at any instant leaves either a complete
//! run directory or a partial one that the next start removes.

pub mod collect;
pub mod failures;
pub mod live;
pub mod plan;
pub mod pyjson;
pub mod row;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rayon::prelude::*;
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::output::atomic_write;

pub use plan::{Ablation, ExperimentConfig, PlannedRun, Shard, expand};

/// The default experiment: the seed's default matrix (96 runs).
pub const DEFAULT_EXPERIMENT: &str = include_str!("../../scenarios/default.json");

/// How to run a sweep.
#[derive(Clone, Debug, Default)]
pub struct SweepOptions {
    /// Overrides the config's name.
    pub exp_name: Option<String>,
    /// Overrides the config's output root.
    pub out_root: Option<PathBuf>,
    /// Threads (default: the config's `jobs`, else the number of cores).
    pub jobs: Option<usize>,
    /// Skip runs that are complete with the same configuration.
    pub resume: bool,
    /// Stop starting runs after the first failure.
    pub fail_fast: bool,
    /// Run only this slice of the plan.
    pub shard: Option<Shard>,
    /// No progress output.
    pub quiet: bool,
}

/// What a sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepOutcome {
    /// The experiment directory.
    pub exp_dir: PathBuf,
    /// Runs in the full plan.
    pub planned: usize,
    /// Runs in this shard.
    pub in_shard: usize,
    /// Runs executed now.
    pub executed: usize,
    /// Runs skipped by --resume.
    pub skipped: usize,
    /// Runs that failed.
    pub failed: usize,
    /// Runs not started because of --fail-fast (or a live sweep's stop).
    pub not_started: usize,
    /// Why runs failed.
    pub failures: failures::Tally,
    /// Why a live sweep stopped by itself: a run that never reached its
    /// endpoints, whose failure every later run would repeat.
    pub setup_stop: Option<String>,
    /// Why a live sweep stopped at its spending cap (`max_cost`).
    pub cap_stop: Option<String>,
}

/// What a sweep would run, listed line by line as it is read, so that a
/// big plan's listing starts at once and holds nothing per run.
pub struct DryRun<'c> {
    /// Runs in the full plan.
    pub planned: usize,
    /// Runs (or live trials) this listing has.
    pub listed: usize,
    /// One line per run: its id, then what it runs.
    pub lines: Box<dyn Iterator<Item = String> + 'c>,
    /// A line after them (a live sweep's simulated spend).
    pub footer: Option<String>,
}

impl std::fmt::Debug for DryRun<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DryRun")
            .field("planned", &self.planned)
            .field("listed", &self.listed)
            .finish_non_exhaustive()
    }
}

/// The experiment directory of a config under `opts`.
pub fn exp_dir(cfg: &ExperimentConfig, opts: &SweepOptions) -> PathBuf {
    let root = opts
        .out_root
        .clone()
        .unwrap_or_else(|| cfg.out_root.clone());
    root.join(plan::sanitize(
        opts.exp_name.as_deref().unwrap_or(&cfg.name),
    ))
}

pub(crate) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// True when `runs/<id>` holds a successful run of exactly this configuration.
pub fn is_complete(run_dir: &Path, config_hash: &str) -> bool {
    let Ok(text) = std::fs::read_to_string(run_dir.join("meta.json")) else {
        return false;
    };
    let Ok(meta) = serde_json::from_str::<Value>(&text) else {
        return false;
    };
    meta["exit_code"] == 0
        && meta["config_hash"] == config_hash
        && run_dir.join("out/summary.csv").is_file()
}

/// Creates `dir/runs` and writes `dir/experiment.json` (what the sweep ran:
/// matrix, seeds, ablations, common arguments, base scenario, plus `extra`
/// fields of a live sweep), atomically.
pub fn write_experiment_record(
    cfg: &ExperimentConfig,
    dir: &Path,
    planned: usize,
    extra: Option<serde_json::Map<String, Value>>,
) -> Result<()> {
    let runs_dir = dir.join("runs");
    std::fs::create_dir_all(&runs_dir).map_err(|source| Error::Write {
        path: runs_dir.clone(),
        source,
    })?;
    // Temporary files of a sweep killed while writing experiment.json:
    // only this tool's, by name, and only stale ones (a shard running
    // beside this one may be writing its own right now).
    let stale_prefix = format!(".experiment.json{}", crate::output::TMP_MARK);
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let stale = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > std::time::Duration::from_secs(600));
        if name.starts_with(&stale_prefix) && stale {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let mut record = json!({
        "name": cfg.name,
        "planned_runs": planned,
        "matrix": cfg.matrix.iter().map(|(k, v)| (k.clone(), Value::Array(v.clone()))).collect::<serde_json::Map<_, _>>(),
        "seeds": cfg.seeds,
        "ablations": cfg.ablations.iter().map(|a| json!({"name": a.name, "flags": a.flags})).collect::<Vec<_>>(),
        "common_args": cfg.common_args,
        // What a run's parameters apply to: `live run --from-run` and
        // `fidelity` resolve a run's scenario from it.
        "base_scenario": cfg.base,
        "tool_version": concat!("agentsched ", env!("CARGO_PKG_VERSION")),
    });
    if let (Some(extra), Value::Object(r)) = (extra, &mut record) {
        r.extend(extra);
    }
    atomic_write(
        &dir.join("experiment.json"),
        format!("{:#}\n", record).as_bytes(),
    )?;
    crate::output::sync_dir(dir);
    Ok(())
}

/// The runs of this shard of a sweep, each with the equivalent
/// `simulate` command line; nothing is run or written.
pub fn dry_run<'c>(cfg: &'c ExperimentConfig, opts: &SweepOptions) -> Result<DryRun<'c>> {
    let plan = expand(cfg, cfg.trace)?;
    let runs_dir = exp_dir(cfg, opts).join("runs");
    let shard = opts.shard;
    let mine = move |i: &usize| shard.is_none_or(|s| s.owns(*i));
    Ok(DryRun {
        footer: None,
        planned: plan.len(),
        listed: (0..plan.len()).filter(mine).count(),
        lines: Box::new((0..plan.len()).filter(mine).map(move |i| {
            let r = plan.get(i);
            format!(
                "{}  {}",
                r.run_id,
                r.cmd(&runs_dir.join(&r.run_id).join("out")).join(" ")
            )
        })),
    })
}

/// Runs a sweep (see [`dry_run`] for its listing).
pub fn run_sweep(cfg: &ExperimentConfig, opts: &SweepOptions) -> Result<SweepOutcome> {
    let plan = expand(cfg, cfg.trace)?;
    let dir = exp_dir(cfg, opts);
    let mine: Vec<usize> = (0..plan.len())
        .filter(|&i| opts.shard.is_none_or(|s| s.owns(i)))
        .collect();
    let mut outcome = SweepOutcome {
        exp_dir: dir.clone(),
        planned: plan.len(),
        in_shard: mine.len(),
        ..Default::default()
    };
    let runs_dir = dir.join("runs");
    write_experiment_record(cfg, &dir, plan.len(), None)?;

    let mut todo = Vec::new();
    for i in mine {
        let r = plan.get(i);
        // Leftovers of a run killed mid-write.
        let partial = runs_dir.join(format!(".{}.partial", r.run_id));
        if partial.exists() {
            std::fs::remove_dir_all(&partial).map_err(|source| Error::Write {
                path: partial,
                source,
            })?;
        }
        // Resolved here only to compare hashes, then dropped.
        if opts.resume && is_complete(&runs_dir.join(&r.run_id), &r.resolve(&cfg.base).config_hash)
        {
            outcome.skipped += 1;
        } else {
            todo.push(i);
        }
    }

    let jobs = opts
        .jobs
        .or(cfg.jobs)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs.max(1))
        .build()
        .map_err(|e| Error::Execution(format!("cannot start {jobs} worker threads: {e}")))?;
    let progress = Progress::new(todo.len(), outcome.skipped, opts.quiet);
    let stop = AtomicBool::new(false);
    // Workers simulate and write each run into its staging directory; one
    // committer thread makes it durable and renames it into place, so disk
    // latency overlaps simulation instead of serialising it.
    let (tx, rx) = std::sync::mpsc::channel::<Staged>();
    let (started_runs, committed) = std::thread::scope(|scope| {
        let (progress, runs_dir) = (&progress, &runs_dir);
        let committer = scope.spawn(move || {
            let mut results = Vec::new();
            // Take every run staged so far, make them durable together, then
            // rename each into place.
            while let Ok(first) = rx.recv() {
                let mut batch = vec![first];
                while let Ok(more) = rx.try_recv() {
                    batch.push(more);
                }
                let dirs: Vec<PathBuf> = batch.iter().map(|b| b.staging.clone()).collect();
                let durable = crate::output::make_durable_all(&dirs);
                for staged in &batch {
                    let failure = match durable
                        .as_ref()
                        .map_err(|e| e.to_string())
                        .and_then(|()| commit(staged, runs_dir).map_err(|e| e.to_string()))
                    {
                        Ok(()) => staged.failure.clone(),
                        Err(e) => Some((4, failures::shorten(&e))),
                    };
                    progress.done(&staged.run_id, failure.as_ref());
                    results.push((staged.run_id.clone(), failure));
                }
                crate::output::sync_dir(runs_dir);
            }
            results
        });
        let started_runs: usize = pool.install(|| {
            todo.par_iter()
                .with_max_len(1)
                .map_with(tx, |tx, &i| {
                    if stop.load(Ordering::SeqCst) {
                        return 0;
                    }
                    let staged = execute(&plan.get(i), &cfg.base, runs_dir);
                    if staged.failure.is_some() && opts.fail_fast {
                        stop.store(true, Ordering::SeqCst);
                    }
                    tx.send(staged).expect("the committer outlives the workers");
                    1
                })
                .sum()
        });
        (
            started_runs,
            committer.join().expect("the committer does not panic"),
        )
    });
    progress.finish();
    outcome.executed = committed.len();
    for (run_id, failure) in &committed {
        if let Some((code, msg)) = failure {
            outcome.failed += 1;
            outcome.failures.add(&code.to_string(), msg, run_id);
        }
    }
    outcome.not_started = todo.len() - started_runs;
    Ok(outcome)
}

/// A run written into its staging directory, not yet durable or in place.
#[derive(Debug)]
pub struct Staged {
    /// The run.
    pub run_id: String,
    /// Its staging directory.
    pub staging: PathBuf,
    /// Why the run failed (its exit code and message); None when it
    /// succeeded and its files were written.
    pub failure: Option<(u8, String)>,
}

/// Renames a staged run, already made durable, into `runs/<run_id>`; the
/// caller syncs `runs_dir` afterwards.
pub fn commit(staged: &Staged, runs_dir: &Path) -> Result<()> {
    let final_dir = runs_dir.join(&staged.run_id);
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir).map_err(|source| Error::Write {
            path: final_dir.clone(),
            source,
        })?;
    }
    std::fs::rename(&staged.staging, &final_dir).map_err(|source| Error::Write {
        path: final_dir.clone(),
        source,
    })?;
    Ok(())
}

/// Runs one planned run into its staging directory. Never panics: a panic
/// inside the simulator is caught here and recorded as exit code 4.
pub fn execute(r: &PlannedRun, base: &Value, runs_dir: &Path) -> Staged {
    use crate::output::Durability;
    let resolved = r.resolve(base);
    let staging = runs_dir.join(format!(".{}.partial", r.run_id));
    let final_dir = runs_dir.join(&r.run_id);
    let out = staging.join("out");
    let start_unix = unix_now();
    let started = Instant::now();
    let result: std::result::Result<(String, String), (u8, String)> = match &resolved.scenario {
        Err(msg) => Err((2, format!("error: {msg}"))),
        Ok(s) => {
            match std::panic::catch_unwind(|| {
                crate::output::simulate_to_dir_with(s, &out, r.trace, Durability::Staged)
            }) {
                Ok(Ok(o)) => Ok((
                    crate::output::summary_lines(s, &o, &final_dir.join("out")),
                    o.digest,
                )),
                Ok(Err(e)) => Err((e.exit_code(), format!("error: {e}"))),
                Err(panic) => {
                    let msg = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "unknown panic".into());
                    Err((4, format!("error: the simulator panicked: {msg}")))
                }
            }
        }
    };
    let wall = started.elapsed().as_secs_f64();
    let (exit_code, stdout, stderr, digest) = match result {
        Ok((lines, digest)) => (0u8, lines, String::new(), Some(digest)),
        Err((code, msg)) => (code, String::new(), format!("{msg}\n"), None),
    };
    let mut failure = (exit_code != 0).then(|| {
        (
            exit_code,
            failures::reason_in_stderr(&stderr).unwrap_or_default(),
        )
    });
    let write_all = || -> Result<()> {
        std::fs::create_dir_all(&staging).map_err(|source| Error::Write {
            path: staging.clone(),
            source,
        })?;
        let resolved_params = match &resolved.scenario {
            Ok(s) => Some(resolved_params(s)),
            Err(_) => plan::rejected_columns(base, &r.params, &r.ablation),
        };
        let meta = json!({
            "run_id": r.run_id,
            "params": r.params,
            "ablation_name": r.ablation.name,
            "ablation_flags": r.ablation.flags,
            "cmd": r.cmd(&final_dir.join("out")).join(" "),
            "cwd": std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default(),
            "start_time_unix_s": start_unix,
            "end_time_unix_s": unix_now(),
            "wall_time_s": wall,
            "exit_code": exit_code,
            "sim_binary_version": concat!("agentsched ", env!("CARGO_PKG_VERSION")),
            "config_hash": resolved.config_hash,
            "scenario_hash": resolved.scenario.as_ref().ok().map(|s| {
                use sha1::Digest;
                sha1::Sha1::digest(s.to_pretty_json().as_bytes()).iter().map(|b| format!("{b:02x}")).collect::<String>()
            }),
            "output_digest": digest,
            "resolved": resolved_params,
        });
        write_run_record(&staging, &stdout, &stderr, &meta)
    };
    if let Err(e) = write_all() {
        failure = Some((e.exit_code(), failures::shorten(&e.to_string())));
    }
    Staged {
        run_id: r.run_id.clone(),
        staging,
        failure,
    }
}

/// Writes a run's `stdout.txt`, `stderr.txt` and `meta.json` into its
/// staging directory (made durable with the rest of the run).
pub fn write_run_record(staging: &Path, stdout: &str, stderr: &str, meta: &Value) -> Result<()> {
    use crate::output::{Durability, write_file};
    write_file(
        &staging.join("stdout.txt"),
        stdout.as_bytes(),
        Durability::Staged,
    )?;
    write_file(
        &staging.join("stderr.txt"),
        stderr.as_bytes(),
        Durability::Staged,
    )?;
    write_file(
        &staging.join("meta.json"),
        format!("{meta:#}\n").as_bytes(),
        Durability::Staged,
    )
}

/// The seed's configuration columns, from the resolved scenario.
pub fn resolved_params(s: &crate::scenario::Scenario) -> Value {
    json!({
        "policy": s.policy.name(),
        "workflows": s.workload.workflows,
        "pdfs": s.workload.pdfs,
        "iters": s.workload.iters,
        "subqueries": s.workload.subqueries,
        "seed": s.seed,
        "time_scale": s.time_scale,
        "enable_model_routing": s.ablations.enable_model_routing,
        "heavy_tail_prob": s.heavy_tail.prob,
        "heavy_tail_mult": s.heavy_tail.mult,
        "disable_hedging": s.ablations.disable_hedging,
        "disable_escalation": s.ablations.disable_escalation,
        "disable_dag_priority": s.ablations.disable_dag_priority,
    })
}

/// Failed runs named above the progress bar; past them, only the count moves.
const BAR_FAILURES_SHOWN: usize = 20;

/// Progress: a bar on a terminal, plain lines otherwise, nothing when quiet.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    plain: bool,
    state: Mutex<(usize, usize)>,
    total: usize,
}

impl Progress {
    fn new(total: usize, skipped: usize, quiet: bool) -> Progress {
        let tty = std::io::stderr().is_terminal();
        let bar = (!quiet && tty).then(|| {
            let b = indicatif::ProgressBar::new(total as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} runs, {msg} [{elapsed_precise} elapsed, ETA {eta}]",
                )
                .expect("valid template"),
            );
            b.set_message("0 failed");
            b
        });
        if !quiet && !tty && skipped > 0 {
            eprintln!("resume: {skipped} complete runs skipped");
        }
        Progress {
            bar,
            plain: !quiet && !tty,
            state: Mutex::new((0, 0)),
            total,
        }
    }

    fn done(&self, run_id: &str, failure: Option<&(u8, String)>) {
        let mut st = self.state.lock().expect("progress lock");
        st.0 += 1;
        if failure.is_some() {
            st.1 += 1;
        }
        let why = failure.map_or_else(String::new, |(code, msg)| format!(": exit {code}: {msg}"));
        if let Some(b) = &self.bar {
            b.inc(1);
            b.set_message(format!("{} failed", st.1));
            // Above the bar, the first failures as they come; the rest are
            // grouped when the sweep ends.
            if failure.is_some() && st.1 <= BAR_FAILURES_SHOWN {
                b.println(format!("FAILED {run_id}{why}"));
            }
        } else if self.plain {
            eprintln!(
                "[{}/{}] {} {run_id}{why}",
                st.0,
                self.total,
                if failure.is_none() {
                    "ok    "
                } else {
                    "FAILED"
                }
            );
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dry run lists its shard's runs, in plan order, each with the
    /// command that runs it, and counts what it lists.
    #[test]
    fn a_dry_run_lists_its_shards_runs_in_plan_order() {
        let cfg = ExperimentConfig::from_value(
            serde_json::from_str(DEFAULT_EXPERIMENT).unwrap(),
            "default",
            None,
        )
        .unwrap();
        let plan = expand(&cfg, false).unwrap();
        let mut seen = Vec::new();
        for k in 1..=3 {
            let shard = Shard { k, n: 3 };
            let opts = SweepOptions {
                shard: Some(shard),
                out_root: Some("/nowhere".into()),
                ..Default::default()
            };
            let d = dry_run(&cfg, &opts).unwrap();
            assert_eq!(d.planned, plan.len());
            let (listed, lines) = (d.listed, d.lines.collect::<Vec<_>>());
            assert_eq!(lines.len(), listed);
            let expected: Vec<String> = plan
                .iter()
                .enumerate()
                .filter(|(i, _)| shard.owns(*i))
                .map(|(_, r)| r.run_id)
                .collect();
            let ids: Vec<&str> = lines
                .iter()
                .map(|l| l.split("  ").next().unwrap())
                .collect();
            assert_eq!(ids, expected, "shard {shard}");
            assert!(
                lines[0].contains("agentsched simulate --pdfs")
                    && lines[0].contains(&format!("/nowhere/default/runs/{}/out", ids[0])),
                "{}",
                lines[0]
            );
            seen.extend(expected);
        }
        assert_eq!(seen.len(), plan.len(), "the shards cover the plan");
    }
}
