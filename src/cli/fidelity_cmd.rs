//! `agentsched fidelity`: how far a live run (or live experiment) is from
//! its simulation, and whether the verdict holds.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::error::{Error, Result};
use crate::fidelity::{self, ExperimentReport, PairReport, RunTables, Tolerances, pct, pct_abs};
use crate::output::{self, Durability};
use crate::recorded::{Mode, RecordedRun};

/// `fidelity` flags.
#[derive(Args, Debug)]
pub struct FidelityArgs {
    /// The live run (a `live run --out` directory).
    #[arg(long, value_name = "DIR", required_unless_present = "live_exp",
          conflicts_with_all = ["sim_exp", "live_exp"])]
    pub live: Option<PathBuf>,
    /// The simulated run to compare with (default: the run the live one replays with
    /// `--from-run`, else a simulation of the live run's scenario.json).
    #[arg(long, value_name = "DIR", requires = "live")]
    pub sim: Option<PathBuf>,
    /// A live experiment directory (the same matrix as --sim-exp).
    #[arg(long, value_name = "DIR", requires = "sim_exp")]
    pub live_exp: Option<PathBuf>,
    /// A simulated experiment directory.
    #[arg(long, value_name = "DIR", requires = "live_exp")]
    pub sim_exp: Option<PathBuf>,
    /// Experiments: a metric to rank configurations by (repeatable; smaller is better,
    /// but for throughput).
    #[arg(long, value_name = "METRIC", default_values_t = ["makespan_p95_ms".to_string(), "cost_mean".to_string()])]
    pub objective: Vec<String>,
    /// Largest MAPE over the headline metrics (makespan mean/p50/p95/p99, cost mean and total), a fraction.
    #[arg(allow_hyphen_values = true, long, default_value_t = Tolerances::default().max_mape, value_parser = crate::cli::args::finite_f64)]
    pub max_mape: f64,
    /// Pairs: largest absolute relative error of any one headline metric, a fraction.
    #[arg(allow_hyphen_values = true, long, default_value_t = Tolerances::default().max_error, value_parser = crate::cli::args::finite_f64)]
    pub max_error: f64,
    /// Experiments: smallest Kendall tau between the simulated and live rankings.
    #[arg(allow_hyphen_values = true, long, default_value_t = Tolerances::default().min_tau, value_parser = crate::cli::args::finite_f64)]
    pub min_tau: f64,
    /// Experiments: objectives within this fraction of each other are ties (0.02 is 2%):
    /// the live order of configurations the simulation cannot tell apart is not held
    /// against it, and a live winner tied with the simulated one is the same winner.
    #[arg(allow_hyphen_values = true, long, default_value_t = Tolerances::default().tie_margin, value_parser = crate::cli::args::finite_f64)]
    pub tie_margin: f64,
    /// Experiments: pass even when simulated and live pick different winners.
    #[arg(long)]
    pub allow_other_winner: bool,
    /// Also write the report as JSON here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

fn tolerances(a: &FidelityArgs) -> Result<Tolerances> {
    for (flag, v) in [
        ("--max-mape", a.max_mape),
        ("--max-error", a.max_error),
        ("--tie-margin", a.tie_margin),
    ] {
        if v < 0.0 {
            return Err(Error::Input(format!(
                "{flag}: expected a fraction >= 0 (0.15 is 15%), got {v}"
            )));
        }
    }
    if !(-1.0..=1.0).contains(&a.min_tau) {
        return Err(Error::Input(format!(
            "--min-tau: expected a number in [-1, 1], got {}",
            a.min_tau
        )));
    }
    Ok(Tolerances {
        max_mape: a.max_mape,
        max_error: a.max_error,
        min_tau: a.min_tau,
        same_winner: !a.allow_other_winner,
        tie_margin: a.tie_margin,
    })
}

/// Runs `fidelity`: exit 0 when the verdict passes, 1 when it fails.
pub(crate) fn run(a: FidelityArgs) -> Result<u8> {
    let tol = tolerances(&a)?;
    for o in &a.objective {
        if !crate::sweep::collect::HEADLINE.contains(&o.as_str()) {
            return Err(Error::Input(format!(
                "--objective {o}: expected one of {}",
                crate::sweep::collect::HEADLINE.join(", ")
            )));
        }
    }
    let (json, pass) = match (&a.live, &a.sim_exp, &a.live_exp) {
        (Some(live), _, _) => pair(live, a.sim.as_deref(), &tol, a.json.as_deref())?,
        (None, Some(sim), Some(live)) => experiments(sim, live, &a.objective, &tol)?,
        _ => unreachable!("clap requires --live or both experiment flags"),
    };
    if let Some(path) = &a.json {
        let mut text = serde_json::to_string_pretty(&json).expect("json");
        text.push('\n');
        output::write_file(path, text.as_bytes(), Durability::Atomic)?;
    }
    Ok(if pass { 0 } else { 1 })
}

fn tables(r: &RecordedRun) -> Result<RunTables> {
    Ok(RunTables {
        summary: r.summary()?,
        tiers: r.tiers()?,
    })
}

/// The simulated side of a pair and how it was found.
fn simulated_side(live: &RecordedRun, sim: Option<&Path>) -> Result<(RunTables, String)> {
    if let Some(dir) = sim {
        let r = RecordedRun::locate(dir)?;
        let note = format!("{} (--sim)", dir.display());
        return Ok((tables(&r)?, note));
    }
    if let Some(rep) = &live.replays {
        if rep.changed.is_empty() {
            match RecordedRun::locate(&rep.run) {
                Ok(r) => {
                    let note = format!("{} (the run it replays)", rep.run.display());
                    return Ok((tables(&r)?, note));
                }
                Err(e) => eprintln!(
                    "warning: the run this live run replays is not readable ({e}); \
                     simulating its scenario instead"
                ),
            }
        }
    }
    // Deterministic: the same scenario simulates to the same results.
    let s = live.scenario()?;
    let tmp = tempfile::tempdir()
        .map_err(|e| Error::Execution(format!("cannot create a temporary directory: {e}")))?;
    output::simulate_to_dir_with(&s, tmp.path(), false, Durability::Staged)?;
    let r = RecordedRun {
        out_dir: tmp.path().to_path_buf(),
        mode: Mode::Simulated,
        scenario: live.scenario.clone(),
        scenario_origin: live.scenario_origin.clone(),
        output_digest: None,
        replays: None,
    };
    let note = format!("a simulation of {}", live.scenario_origin);
    Ok((tables(&r)?, note))
}

fn pair(
    live_dir: &Path,
    sim: Option<&Path>,
    tol: &Tolerances,
    json_path: Option<&Path>,
) -> Result<(serde_json::Value, bool)> {
    let live = RecordedRun::locate(live_dir)?;
    if live.mode != Mode::Live {
        return Err(Error::Input(format!(
            "--live {}: is a simulated run (its summary.json does not say mode live); \
             pass the live run's directory",
            live_dir.display()
        )));
    }
    let summary: serde_json::Value = std::fs::read_to_string(live.out_dir.join("summary.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    if let Some(dead) = summary["never_reached"]
        .as_array()
        .filter(|d| !d.is_empty())
    {
        let dead: Vec<&str> = dead.iter().filter_map(|d| d.as_str()).collect();
        return Err(Error::Input(format!(
            "--live {}: the run never reached {}; its numbers measure no endpoint there, so \
             there is nothing to compare: run it again with the endpoints up",
            live_dir.display(),
            dead.join("; ")
        )));
    }
    if let Some(refusing) = summary["never_served"].as_array().filter(|d| !d.is_empty()) {
        let refusing: Vec<&str> = refusing.iter().filter_map(|d| d.as_str()).collect();
        return Err(Error::Input(format!(
            "--live {}: {}; its numbers measure refusals, not service, so there is nothing to \
             compare: run it again once the endpoints serve its requests",
            live_dir.display(),
            refusing.join("; ")
        )));
    }
    if summary["interrupted"] == true {
        let by = if summary["max_cost_reached"] == true {
            "its spending cap (--max-cost)"
        } else {
            "Ctrl-C or SIGTERM"
        };
        return Err(Error::Input(format!(
            "--live {}: the run was stopped by {by} before its workflows finished \
             (summary.json says interrupted), so its makespans and costs describe part of a run: \
             there is nothing to compare; run it again to the end",
            live_dir.display()
        )));
    }
    // A measurement, so compared; but its errors are that endpoint's failures.
    for mute in crate::live::rundir::MEASUREMENT_WARNINGS
        .iter()
        .filter_map(|k| summary[k].as_array())
        .flatten()
        .filter_map(|m| m.as_str())
    {
        eprintln!("warning: --live {}: {mute}", live_dir.display());
    }
    if let Some(p) = json_path {
        output::refuse_overwriting_inputs(
            "--json",
            p,
            &[
                ("--live summary", &live.out_dir.join("summary.json")),
                ("--live scenario", &live.out_dir.join("scenario.json")),
            ],
        )?;
    }
    let (sim_tables, sim_note) = simulated_side(&live, sim)?;
    let live_tables = tables(&live)?;
    let report = fidelity::compare_pair(&sim_tables, &live_tables, tol);
    let time_scale = live.scenario().map(|s| s.time_scale).unwrap_or(f64::NAN);
    // A run with no endpoints answered in process: no transport at all.
    let in_process = summary["endpoints"].as_array().is_some_and(Vec::is_empty);
    let overhead = if in_process {
        "transport overhead: none (the live run answered in process, without HTTP)".to_string()
    } else {
        transport_note(time_scale)
    };
    outln!("fidelity: live {} against {sim_note}", live_dir.display());
    print_pair(&report)?;
    outln!("{overhead}");
    verdict_lines(&report.failures, tol, false)?;
    let mut json = report.to_json();
    json["mode"] = "pair".into();
    json["live"] = live_dir.display().to_string().into();
    json["simulated"] = sim_note.into();
    json["tolerances"] = tolerances_json(tol);
    json["transport_overhead"] = overhead.into();
    Ok((json, report.failures.is_empty()))
}

/// What every report says about the per-call transport overhead.
fn transport_note(time_scale: f64) -> String {
    format!(
        "transport overhead: not modelled (the simulated run has no per-call overhead; each live call \
         also carries its HTTP round trip, about 1-2 ms real, {:.0}-{:.0} ms of scenario time at time scale {time_scale})",
        time_scale,
        2.0 * time_scale
    )
}

fn tolerances_json(t: &Tolerances) -> serde_json::Value {
    serde_json::json!({
        "max_mape": t.max_mape,
        "max_error": t.max_error,
        "min_tau": t.min_tau,
        "same_winner": t.same_winner,
        "tie_margin": t.tie_margin,
    })
}

fn print_pair(r: &PairReport) -> Result<()> {
    outln!(
        "{:<22} {:<28} {:>16} {:>16} {:>9}",
        "scope",
        "metric",
        "simulated",
        "live",
        "error"
    );
    for m in &r.metrics {
        outln!(
            "{:<22} {:<28} {:>16} {:>16} {:>9}",
            m.scope,
            format!("{}{}", m.name, if m.headline { " *" } else { "" }),
            short(m.sim),
            short(m.live),
            m.rel_error().map_or("n/a".into(), pct)
        );
    }
    outln!("MAPE over the headline metrics (*): {}", pct_abs(r.mape));
    Ok(())
}

/// A number in at most 4 significant decimals, without a long tail.
fn short(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    if x.abs() >= 1000.0 || x == x.trunc() {
        format!("{x:.0}")
    } else {
        format!("{x:.4}")
    }
}

fn verdict_lines(failures: &[String], tol: &Tolerances, experiments: bool) -> Result<()> {
    if failures.is_empty() {
        let bounds = if experiments {
            format!(
                "mean MAPE <= {}, Kendall tau >= {}{}, ties within {}",
                pct_abs(tol.max_mape),
                tol.min_tau,
                if tol.same_winner { ", same winner" } else { "" },
                pct_abs(tol.tie_margin)
            )
        } else {
            format!(
                "MAPE <= {}, every headline metric within {}",
                pct_abs(tol.max_mape),
                pct_abs(tol.max_error)
            )
        };
        outln!("verdict: PASS ({bounds})");
    } else {
        outln!("verdict: FAIL");
        for f in failures {
            outln!("  {f}");
        }
    }
    Ok(())
}

/// The most run warnings `--live-exp` prints (the JSON has them all).
const MAX_PRINTED_WARNINGS: usize = 10;

fn experiments(
    sim: &Path,
    live: &Path,
    objectives: &[String],
    tol: &Tolerances,
) -> Result<(serde_json::Value, bool)> {
    let gather = |flag: &str, d: &Path| -> Result<Vec<crate::sweep::collect::Row>> {
        if !d.join("runs").is_dir() {
            return Err(Error::Input(format!(
                "{flag} {}: not an experiment directory (no runs/)",
                d.display()
            )));
        }
        let (rows, warnings) = crate::sweep::collect::gather(d)?;
        for w in warnings {
            eprintln!("warning: {w}");
        }
        // Failed runs have no numbers to compare: say which are left out.
        let failed = crate::sweep::failures::Tally::of_rows(&rows);
        if failed.runs() > 0 {
            eprintln!(
                "warning: {flag} {}: {} of its {} runs failed and are left out:",
                d.display(),
                failed.runs(),
                rows.len()
            );
            for line in failed.lines(5) {
                eprintln!("  {line}");
            }
        }
        Ok(rows)
    };
    let sim_rows = gather("--sim-exp", sim)?;
    let live_rows = gather("--live-exp", live)?;
    // Compared all the same: each says what its run measured.
    let said: Vec<(&str, String)> = live_rows
        .iter()
        .filter(|r| crate::sweep::collect::succeeded(r))
        .flat_map(|r| {
            let id = r.get("run_id").unwrap_or("");
            let out = live.join("runs").join(id).join("out");
            let warnings = crate::live::rundir::recorded_measurement_warnings(&out);
            warnings.into_iter().map(move |w| (id, w))
        })
        .collect();
    for (id, w) in said.iter().take(MAX_PRINTED_WARNINGS) {
        eprintln!("warning: --live-exp {}: run {id}: {w}", live.display());
    }
    if said.len() > MAX_PRINTED_WARNINGS {
        eprintln!(
            "warning: --live-exp {}: and {} more such warnings (each run's stderr.txt has its own)",
            live.display(),
            said.len() - MAX_PRINTED_WARNINGS
        );
    }
    let r = fidelity::compare_experiments(&sim_rows, &live_rows, objectives, tol);
    outln!(
        "fidelity: live experiment {} against simulated {}: {} configurations in both",
        live.display(),
        sim.display(),
        r.configs.len()
    );
    print_experiments(&r, tol)?;
    let time_scale = live_rows
        .iter()
        .find_map(|r| r.get("time_scale").and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN);
    let overhead = transport_note(time_scale);
    outln!("{overhead}");
    verdict_lines(&r.failures, tol, true)?;
    let mut json = r.to_json();
    json["mode"] = "experiments".into();
    json["live_exp"] = live.display().to_string().into();
    json["sim_exp"] = sim.display().to_string().into();
    json["tolerances"] = tolerances_json(tol);
    json["transport_overhead"] = overhead.into();
    json["measurement_warnings"] = said
        .iter()
        .map(|(id, w)| serde_json::json!({"run_id": id, "warning": w}))
        .collect();
    Ok((json, r.failures.is_empty()))
}

fn print_experiments(r: &ExperimentReport, tol: &Tolerances) -> Result<()> {
    // As wide as the longest label, so that the columns line up.
    let w = r.configs.iter().map(|c| c.label.len()).fold(13, usize::max);
    outln!(
        "{:<w$} {:>5} {:>5} {:>9} {:>9} {:>9} {:>9}",
        "configuration",
        "sim",
        "live",
        "p50 err",
        "p95 err",
        "cost err",
        "MAPE"
    );
    for c in &r.configs {
        let err = |k: &str| {
            c.metrics
                .iter()
                .find(|m| m.name == k)
                .and_then(|m| m.rel_error())
                .map_or("n/a".into(), pct)
        };
        outln!(
            "{:<w$} {:>5} {:>5} {:>9} {:>9} {:>9} {:>9}",
            c.label,
            c.runs.0,
            c.runs.1,
            err("makespan_p50_ms"),
            err("makespan_p95_ms"),
            err("cost_mean"),
            pct_abs(c.mape)
        );
    }
    outln!("mean MAPE over the configurations: {}", pct_abs(r.mape));
    for rk in &r.rankings {
        outln!(
            "ranking by {}: {}",
            rk.objective,
            rk.describe(tol.tie_margin)
        );
    }
    if r.rankings.iter().any(|rk| rk.shortened()) {
        outln!("(lists above shortened; the JSON report, --json FILE, has every pair)");
    }
    for (side, labels) in [("simulated", &r.only_sim), ("live", &r.only_live)] {
        if !labels.is_empty() {
            outln!("only in the {side} experiment: {}", labels.join("; "));
        }
    }
    Ok(())
}
