//! `agentsched validate`.

use clap::Args;

use crate::error::Result;

/// `validate` flags.
#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Customers per case.
    #[arg(long, default_value_t = 400_000)]
    pub customers: u64,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub(crate) fn run(a: ValidateArgs) -> Result<u8> {
    let _ = a;
    Ok(0)
}
