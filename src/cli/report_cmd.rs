//! `agentsched report`.

use std::path::PathBuf;

use clap::Args;

use crate::error::Result;

/// `report` flags.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Experiment directory, e.g. bench_runs/smoke.
    #[arg(long = "exp-dir", alias = "exp_dir")]
    pub exp_dir: PathBuf,
    /// Aggregate CSV (default: <exp-dir>/aggregate/runs.csv).
    #[arg(long = "runs-csv", alias = "runs_csv")]
    pub runs_csv: Option<PathBuf>,
    /// Report directory (default: <exp-dir>/report).
    #[arg(long = "out-dir", alias = "out_dir")]
    pub out_dir: Option<PathBuf>,
}

pub(crate) fn run(a: ReportArgs) -> Result<u8> {
    let runs_csv = a
        .runs_csv
        .unwrap_or_else(|| a.exp_dir.join("aggregate/runs.csv"));
    let index = crate::report::write_report(&a.exp_dir, &runs_csv, a.out_dir.as_deref())?;
    outln!("{}", index.display());
    Ok(0)
}
