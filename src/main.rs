use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = agentsched::cli::Cli::parse();
    match agentsched::cli::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(agentsched::error::Error::StdoutClosed) => ExitCode::SUCCESS,
        // Not an error: the user (or a scheduler) asked for it.
        Err(e @ agentsched::error::Error::Stopped { .. }) => {
            eprintln!("{e}");
            ExitCode::from(e.exit_code())
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
