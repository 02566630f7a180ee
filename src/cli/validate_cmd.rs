//! `agentsched validate`.

use clap::Args;

use crate::error::{Error, Result};
use crate::validate;

/// `validate` flags.
#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Customers per case (tolerances scale as 1/sqrt of it).
    #[arg(allow_negative_numbers = true, long, default_value_t = 400_000)]
    pub customers: u64,
    /// Seed.
    #[arg(allow_negative_numbers = true, long, default_value_t = 1)]
    pub seed: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub(crate) fn run(a: ValidateArgs) -> Result<u8> {
    let max = crate::scenario::MAX_WORKFLOWS;
    if !(10_000..=max).contains(&a.customers) {
        return Err(Error::Input(format!(
            "--customers: expected an integer in [10000, {max}] (the limit on workflows per run), got {}",
            a.customers
        )));
    }
    let checks = validate::run_all(a.customers, a.seed);
    if a.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&checks).expect("checks serialize")
        );
    } else {
        outln!(
            "{:<20} {:<24} {:>12} {:>12} {:>9} {:>9}  verdict",
            "case",
            "metric",
            "simulated",
            "theory",
            "error",
            "tol"
        );
        for c in &checks {
            outln!(
                "{:<20} {:<24} {:>12.4} {:>12.4} {:>8.2}% {:>8.2}%  {}",
                c.case,
                c.metric,
                c.simulated,
                c.theory,
                100.0 * c.rel_error,
                100.0 * c.tolerance,
                if c.pass { "ok" } else { "OFF" }
            );
        }
    }
    Ok(if checks.iter().all(|c| c.pass) { 0 } else { 1 })
}
