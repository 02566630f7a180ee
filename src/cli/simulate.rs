//! `agentsched simulate`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;

use crate::cli::ScenarioArgs;
use crate::error::{Error, Result};
use crate::metrics::RunResult;
use crate::output::{FileObserver, write_run_files};
use crate::scenario::Scenario;
use crate::sim::{NodeTable, Simulator};

/// `simulate` flags.
#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// The scenario.
    #[command(flatten)]
    pub scenario: ScenarioArgs,
    /// Output directory (created if missing; this run's files replace a previous run's).
    #[arg(long, alias = "out_dir", alias = "out-dir", default_value = "out/sim")]
    pub out: PathBuf,
    /// Also write trace.json (every event; large).
    #[arg(long)]
    pub trace: bool,
    /// Print nothing on success.
    #[arg(long, short)]
    pub quiet: bool,
}

/// What a simulation wrote.
#[derive(Debug)]
pub struct SimulationOutput {
    /// The run's result (with `wall_time_s`).
    pub result: RunResult,
    /// The output digest.
    pub digest: String,
}

/// Runs `s` and writes its outputs into `out`.
pub fn simulate_to_dir(s: &Scenario, out: &Path, trace: bool) -> Result<SimulationOutput> {
    if out.exists() && !out.is_dir() {
        return Err(Error::Input(format!(
            "--out {}: exists and is not a directory",
            out.display()
        )));
    }
    std::fs::create_dir_all(out).map_err(|source| Error::Write {
        path: out.to_path_buf(),
        source,
    })?;
    let mut obs = FileObserver::create(out, trace, NodeTable::build(s))?;
    let started = Instant::now();
    let mut result = Simulator::new(s, &mut obs).run();
    result.summary.wall_time_s = started.elapsed().as_secs_f64();
    let workflows_sha = obs.finish()?;
    let mut meta = serde_json::Map::new();
    meta.insert("scenario".into(), s.name.clone().into());
    meta.insert("seed".into(), s.seed.into());
    meta.insert("time_scale".into(), crate::output::json_f64(s.time_scale));
    meta.insert("version".into(), env!("CARGO_PKG_VERSION").into());
    let digest = write_run_files(out, &result, &workflows_sha, &meta, s.policy.name())?;
    Ok(SimulationOutput { result, digest })
}

pub(crate) fn run(a: SimulateArgs) -> Result<u8> {
    let s = a.scenario.resolve()?;
    let out = simulate_to_dir(&s, &a.out, a.trace)?;
    if !a.quiet {
        let m = &out.result.summary;
        println!(
            "{} {} workflows ({} failed): makespan p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms; cost mean {:.4}, total {:.4}",
            s.policy.name(),
            m.workflows,
            m.failed,
            m.makespan_p50_ms,
            m.makespan_p95_ms,
            m.makespan_p99_ms,
            m.cost_mean,
            m.cost_total
        );
        println!(
            "hedges {} (won {}), escalations {}, retries {}, events {}, {:.3} s; digest {}; outputs in {}",
            m.hedges,
            m.hedge_wins,
            m.escalations,
            m.retries,
            m.events,
            m.wall_time_s,
            &out.digest[..12],
            a.out.display()
        );
    }
    Ok(0)
}
