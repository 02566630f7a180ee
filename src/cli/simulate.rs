//! `agentsched simulate`.

use std::path::PathBuf;

use clap::Args;

use crate::cli::ScenarioArgs;
use crate::error::Result;
use crate::output::{simulate_to_dir, summary_lines};

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

pub(crate) fn run(a: SimulateArgs) -> Result<u8> {
    let s = a.scenario.resolve()?;
    if !a.trace && a.out.join("trace.json").exists() {
        eprintln!(
            "warning: {} is from an earlier run (this run writes no trace); it is left as it was",
            a.out.join("trace.json").display()
        );
    }
    let out = simulate_to_dir(&s, &a.out, a.trace)?;
    if !a.quiet {
        out!("{}", summary_lines(&s, &out, &a.out));
    }
    Ok(0)
}
