//! The command line: clap structs hold raw flags, each subcommand turns
//! them into validated configuration once and runs. `main.rs` only calls
//! [`run`] and maps errors to exit codes.

/// `print!` to standard output without a panic: a closed pipe stops the
/// command quietly ([`Error::StdoutClosed`](crate::error::Error)), a failed
/// write (a full disk) is an execution error (exit 4). Use inside functions
/// returning [`Result`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::emit(format_args!($($arg)*))?
    };
}

/// [`out!`] with a newline.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::emit(format_args!("{}\n", format_args!($($arg)*)))?
    };
}

pub mod args;
mod audit_cmd;
mod bench_cmd;
mod calibrate_cmd;
mod fidelity_cmd;
pub mod live_cmd;
mod report_cmd;
mod scenario_cmd;
mod simulate;
mod sweep_cmd;
mod tune_cmd;
mod validate_cmd;

use clap::{Parser, Subcommand};

use crate::error::{Error, Result};

/// Writes to standard output and flushes; see [`out!`].
pub(crate) fn emit(text: std::fmt::Arguments<'_>) -> Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_fmt(text)
        .and_then(|()| stdout.flush())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => Error::StdoutClosed,
            _ => Error::Write {
                path: "standard output".into(),
                source: e,
            },
        })
}

pub use args::ScenarioArgs;

/// agentsched: simulate, sweep and tune scheduling policies for LLM agent workflows.
#[derive(Parser, Debug)]
#[command(name = "agentsched", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run one simulation and write summary.csv, summary.json, workflows.csv, tiers.csv (and trace.json).
    Simulate(simulate::SimulateArgs),
    /// Print or generate scenarios.
    #[command(subcommand)]
    Scenario(scenario_cmd::ScenarioCmd),
    /// Check the simulator against queueing theory (exit 1 when off).
    Validate(validate_cmd::ValidateArgs),
    /// Run an experiment matrix (policies x workloads x seeds x ablations) in parallel.
    Sweep(sweep_cmd::SweepArgs),
    /// Merge an experiment's runs into aggregate/runs.csv plus statistics across seeds.
    Collect(sweep_cmd::CollectArgs),
    /// Write a static HTML report with plots for an experiment.
    Report(report_cmd::ReportArgs),
    /// Generate scenarios from seeds (the parametric scenario factory).
    #[command(subcommand)]
    Factory(tune_cmd::FactoryCmd),
    /// List every tunable policy constant (default, unit, range, sweep values).
    Constants(tune_cmd::ConstantsArgs),
    /// Sweep one constant on train scenarios and validate the best value on held-out ones.
    Split(tune_cmd::SplitArgs),
    /// Split-test every constant; write ratchet.json, report.txt and proposed_constants.json.
    Ratchet(tune_cmd::RatchetArgs),
    /// Evaluate candidate constants against a baseline (JSON report for optimisation agents).
    Eval(tune_cmd::EvalArgs),
    /// Run a scenario live against OpenAI-compatible endpoints (`live run`).
    #[command(subcommand)]
    Live(live_cmd::LiveCmd),
    /// Time the engine's benchmark suite; with --eval-report, compare with the previous results (JSON for optimisation agents).
    Bench(bench_cmd::BenchArgs),
    /// Compare a live run (or live experiment) with its simulation: per-metric errors, MAPE, rankings, verdict (exit 1 when off).
    Fidelity(fidelity_cmd::FidelityArgs),
    /// Fit a scenario to live runs (latency families by maximum likelihood, failure rates, rate limits); writes a new scenario with its provenance.
    Calibrate(calibrate_cmd::CalibrateArgs),
    /// Audits of an endpoint: `audit caching` (is it answering repeated prompts from a cache?).
    #[command(subcommand)]
    Audit(audit_cmd::AuditCmd),
    /// Serve a scenario's tiers as an OpenAI-compatible HTTP server (loopback by default).
    Emulate(live_cmd::EmulateArgs),
}

/// Runs a parsed command; returns the exit code on success.
pub fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Simulate(a) => simulate::run(a),
        Command::Scenario(c) => scenario_cmd::run(c),
        Command::Validate(a) => validate_cmd::run(a),
        Command::Sweep(a) => sweep_cmd::run(a),
        Command::Collect(a) => sweep_cmd::collect(a),
        Command::Report(a) => report_cmd::run(a),
        Command::Factory(c) => tune_cmd::factory(c),
        Command::Constants(a) => tune_cmd::constants(a),
        Command::Split(a) => tune_cmd::split(a),
        Command::Ratchet(a) => tune_cmd::ratchet(a),
        Command::Eval(a) => tune_cmd::eval(a),
        Command::Live(c) => live_cmd::run(c),
        Command::Emulate(a) => live_cmd::emulate(a),
        Command::Bench(a) => bench_cmd::run(a),
        Command::Fidelity(a) => fidelity_cmd::run(a),
        Command::Calibrate(a) => calibrate_cmd::run(a),
        Command::Audit(c) => audit_cmd::run(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn seed_underscore_flags_are_accepted() {
        let cli = Cli::try_parse_from([
            "agentsched",
            "simulate",
            "--policy",
            "dag_escalation",
            "--time_scale",
            "50",
            "--enable_model_routing",
            "--heavy_tail_prob",
            "0.02",
            "--heavy_tail_mult",
            "50",
            "--disable_hedging",
            "--disable_escalation",
            "--disable_dag_priority",
            "--out_dir",
            "x",
        ])
        .unwrap();
        let Command::Simulate(a) = cli.command else {
            panic!("simulate")
        };
        let s = a.scenario.resolve().unwrap();
        assert_eq!(s.policy, crate::policy::PolicyKind::DagEscalation);
        assert_eq!(s.time_scale, 50.0);
        assert!(s.ablations.enable_model_routing && s.ablations.disable_hedging);
        assert!(s.ablations.disable_escalation && s.ablations.disable_dag_priority);
        assert_eq!(s.heavy_tail.mult, 50.0);
    }
}
