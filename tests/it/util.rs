//! Helpers shared by the test modules.

use std::path::Path;
use std::process::{Command, Output};

/// Runs the binary in `cwd`.
pub fn agentsched_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agentsched"))
        .current_dir(cwd)
        .args(args)
        .output()
        .expect("binary runs")
}

/// Runs the binary in the package directory.
pub fn agentsched(args: &[&str]) -> Output {
    agentsched_in(Path::new(env!("CARGO_MANIFEST_DIR")), args)
}

/// Both output streams, for assertion messages.
pub fn err(o: &Output) -> String {
    format!(
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
