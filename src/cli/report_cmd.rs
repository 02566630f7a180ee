//! `agentsched report`.

use std::path::PathBuf;

use clap::Args;

use crate::error::{Error, Result};

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
    let runs_csv = match a.runs_csv {
        Some(p) => p,
        None => {
            let p = a.exp_dir.join("aggregate/runs.csv");
            // The usual slip is a report before `collect`: say which step is missing.
            if !p.exists() {
                let hint = if a.exp_dir.is_dir() {
                    format!(
                        "run `agentsched collect --exp-dir {}` first, or give --runs-csv",
                        a.exp_dir.display()
                    )
                } else {
                    format!(
                        "{} is not a directory; expected an experiment directory (out_root/name of a sweep)",
                        a.exp_dir.display()
                    )
                };
                return Err(Error::Input(format!(
                    "--exp-dir {}: no {} ({hint})",
                    a.exp_dir.display(),
                    p.display()
                )));
            }
            p
        }
    };
    let index = crate::report::write_report(&a.exp_dir, &runs_csv, a.out_dir.as_deref())?;
    outln!("{}", index.display());
    Ok(0)
}
