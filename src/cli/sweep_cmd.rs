//! `agentsched sweep`, `collect`.

use std::path::PathBuf;

use clap::Args;

use crate::error::{Error, Result};
use crate::sweep::{self, ExperimentConfig, Shard, SweepOptions};

/// `sweep` flags (underscore spellings as in the seed runner).
#[derive(Args, Debug)]
pub struct SweepArgs {
    /// Experiment JSON (default: the embedded scenarios/default.json).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Overrides the config's name.
    #[arg(long = "exp-name", alias = "exp_name")]
    pub exp_name: Option<String>,
    /// Overrides the config's out_root.
    #[arg(long = "out-root", alias = "out_root")]
    pub out_root: Option<PathBuf>,
    /// Runs in parallel (default: the config's jobs, else the number of cores).
    #[arg(allow_negative_numbers = true, long)]
    pub jobs: Option<usize>,
    /// Print the planned runs, execute nothing.
    #[arg(long = "dry-run", alias = "dry_run")]
    pub dry_run: bool,
    /// Skip runs with out/summary.csv and a meta.json of the same configuration.
    #[arg(long)]
    pub resume: bool,
    /// Stop starting runs after the first failure.
    #[arg(long = "fail-fast", alias = "fail_fast")]
    pub fail_fast: bool,
    /// Run the K-th of N disjoint slices of the plan (1 <= K <= N), for clusters.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<Shard>,
    /// Run the experiment live against these endpoints (endpoints.json), one run at a time,
    /// with the config's trials, sweep_mode, cooldowns and adaptive stopping; a run that never
    /// reached its endpoints stops it (exit 3; --resume continues), as Ctrl-C and SIGTERM do
    /// (exit 130, 143), even in a cooldown.
    #[arg(long, value_name = "ENDPOINTS")]
    pub live: Option<PathBuf>,
    /// After the sweep, also collect and write the report.
    #[arg(long)]
    pub report: bool,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

pub(crate) fn run(a: SweepArgs) -> Result<u8> {
    let cfg = match &a.config {
        Some(p) => ExperimentConfig::load(p)?,
        None => ExperimentConfig::from_value(
            serde_json::from_str(sweep::DEFAULT_EXPERIMENT).expect("embedded config"),
            "embedded default experiment",
            None,
        )?,
    };
    if let Some(j) = a.jobs
        && !(1..=sweep::plan::MAX_JOBS).contains(&j)
    {
        return Err(Error::Input(format!(
            "--jobs: expected an integer in [1, {}], got {j}",
            sweep::plan::MAX_JOBS
        )));
    }
    let opts = SweepOptions {
        exp_name: a.exp_name,
        out_root: a.out_root,
        jobs: a.jobs,
        resume: a.resume,
        fail_fast: a.fail_fast,
        shard: a.shard,
        quiet: a.quiet,
    };
    if a.dry_run {
        let d = match &a.live {
            Some(endpoints) => sweep::live::dry_run_live(&cfg, &opts, endpoints)?,
            None => sweep::dry_run(&cfg, &opts)?,
        };
        let (listed, planned) = (d.listed, d.planned);
        for line in d.lines {
            outln!("{line}");
        }
        if let Some(footer) = &d.footer {
            outln!("{footer}");
        }
        outln!("{listed} runs planned ({planned} in the full plan); dry run, nothing executed");
        return Ok(0);
    }
    let started = std::time::Instant::now();
    let o = match &a.live {
        Some(endpoints) => sweep::live::run_live_sweep(&cfg, &opts, endpoints)?,
        None => sweep::run_sweep(&cfg, &opts)?,
    };
    if !a.quiet {
        let scope = match (a.shard, &a.live) {
            (Some(s), _) => format!("{} in shard {s}", o.in_shard),
            (None, Some(_)) => {
                "live, one at a time; adaptive stopping may leave some unrun".to_string()
            }
            (None, None) => "all in this process".to_string(),
        };
        eprintln!(
            "{}: {} runs ({scope}): {} executed, {} skipped (resume), {} failed, {} not started; {:.2} s",
            o.exp_dir.display(),
            o.planned,
            o.executed,
            o.skipped,
            o.failed,
            o.not_started,
            started.elapsed().as_secs_f64()
        );
    }
    // Errors, not progress: said even with --quiet.
    print_failures(&o.failures);
    for why in [&o.setup_stop, &o.cap_stop].into_iter().flatten() {
        eprintln!("stopped: {why}");
    }
    if a.report {
        let c = sweep::collect::collect(&o.exp_dir, None)?;
        let index = crate::report::write_report(&o.exp_dir, &c.runs_csv, None)?;
        if !a.quiet {
            eprintln!(
                "collected {} runs into {}; report: {}",
                c.runs,
                c.runs_csv.display(),
                index.display()
            );
        }
    }
    Ok(if o.setup_stop.is_some() {
        crate::error::EXIT_SETUP
    } else if o.failed > 0 || o.not_started > 0 {
        1
    } else {
        0
    })
}

/// `collect` flags.
#[derive(Args, Debug)]
pub struct CollectArgs {
    /// Experiment directory, e.g. bench_runs/smoke.
    #[arg(long = "exp-dir", alias = "exp_dir")]
    pub exp_dir: PathBuf,
    /// Output CSV (default: <exp-dir>/aggregate/runs.csv).
    #[arg(long = "out-csv", alias = "out_csv")]
    pub out_csv: Option<PathBuf>,
}

pub(crate) fn collect(a: CollectArgs) -> Result<u8> {
    let c = sweep::collect::collect(&a.exp_dir, a.out_csv.as_deref())?;
    for w in &c.warnings {
        eprintln!("warning: {w}");
    }
    outln!(
        "{} runs ({} failed) -> {}",
        c.runs,
        c.failed,
        c.runs_csv.display()
    );
    print_failures(&c.failures);
    Ok(0)
}

/// The most reasons for failed runs printed; runs.csv's `error` column has
/// every run's.
const FAILURE_REASONS_SHOWN: usize = 10;

/// Why runs failed, one line per reason (stderr: stdout keeps one line).
fn print_failures(t: &sweep::failures::Tally) {
    for line in t.lines(FAILURE_REASONS_SHOWN) {
        eprintln!("failed: {line}");
    }
}
