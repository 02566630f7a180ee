//! `agentsched scenario show|mmc`.

use clap::{Args, Subcommand};

use crate::cli::ScenarioArgs;
use crate::error::{Error, Result};
use crate::scenario::Scenario;

/// Scenario subcommands.
#[derive(Subcommand, Debug)]
pub enum ScenarioCmd {
    /// Print the effective scenario JSON (file or default, then flags and --set).
    Show(ScenarioArgs),
    /// Print an M/M/c scenario: single calls, Poisson arrivals, one tier with C slots, exponential service.
    Mmc(MmcArgs),
}

/// `scenario mmc` flags.
#[derive(Args, Debug)]
pub struct MmcArgs {
    /// Servers (slots of the single tier).
    #[arg(allow_negative_numbers = true, long)]
    pub servers: u32,
    /// Arrivals per second.
    #[arg(allow_hyphen_values = true, long = "arrival-rate", alias = "arrival_rate", value_parser = crate::cli::args::finite_f64)]
    pub arrival_rate: f64,
    /// Services per second per server.
    #[arg(allow_hyphen_values = true, long = "service-rate", alias = "service_rate", value_parser = crate::cli::args::finite_f64)]
    pub service_rate: f64,
    /// Customers (workflows).
    #[arg(allow_negative_numbers = true, long)]
    pub workflows: u64,
    /// Seed.
    #[arg(allow_negative_numbers = true, long, default_value_t = 1)]
    pub seed: u64,
}

pub(crate) fn run(c: ScenarioCmd) -> Result<u8> {
    let s = match c {
        ScenarioCmd::Show(a) => a.resolve()?,
        ScenarioCmd::Mmc(m) => {
            if !(m.service_rate.is_finite() && m.service_rate > 0.0) {
                return Err(Error::Input(format!(
                    "--service-rate: expected a number > 0, got {}",
                    m.service_rate
                )));
            }
            let s = Scenario::mmc(
                m.servers,
                m.arrival_rate,
                m.service_rate,
                m.workflows,
                m.seed,
            );
            s.validate()
                .map_err(|e| Error::Input(format!("scenario mmc: {e}")))?;
            s
        }
    };
    out!("{}", s.to_pretty_json());
    Ok(0)
}
