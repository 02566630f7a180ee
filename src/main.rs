use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = agentsched::cli::Cli::parse();
    match agentsched::cli::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(agentsched::error::Error::StdoutClosed) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
