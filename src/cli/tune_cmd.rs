//! `agentsched factory`, `constants`, `split`, `ratchet`, `eval`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::cli::args::{read_constants, read_constants_for};
use crate::error::{Error, Result};
use crate::output::atomic_write;
use crate::policy::catalogue::{catalogue, info};
use crate::policy::{Constants, PolicyKind};
use crate::scenario::factory::{MASTER_SEED, ScenarioSeed, default_seeds};
use crate::tune::{self, Objective};

/// The most scenario seeds `factory seeds` prints.
pub const MAX_FACTORY_SEEDS: u64 = 100_000;
/// The most scenario seeds `split`, `ratchet` and `eval` run on.
pub const MAX_N_SEEDS: u64 = 10_000;

/// `factory` subcommands.
#[derive(Subcommand, Debug)]
pub enum FactoryCmd {
    /// Print the first N scenario seeds (JSON array).
    Seeds {
        /// How many (at most 100000).
        #[arg(allow_negative_numbers = true, long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=MAX_FACTORY_SEEDS))]
        n: u64,
    },
    /// Print the scenario of one seed (a scenario `simulate --scenario` accepts).
    Create {
        /// Seed id.
        #[arg(allow_negative_numbers = true, long = "seed-id", alias = "seed_id")]
        seed_id: u64,
        /// Policy to put in the scenario.
        #[arg(long, value_enum, default_value = "full")]
        policy: PolicyKind,
    },
}

pub(crate) fn factory(c: FactoryCmd) -> Result<u8> {
    let text = match c {
        FactoryCmd::Seeds { n } => {
            serde_json::to_string_pretty(&default_seeds(n)).expect("seeds serialize") + "\n"
        }
        FactoryCmd::Create { seed_id, policy } => ScenarioSeed::draw(MASTER_SEED, seed_id)
            .scenario(policy)
            .to_pretty_json(),
    };
    out!("{text}");
    Ok(0)
}

/// `constants` flags.
#[derive(Args, Debug)]
pub struct ConstantsArgs {
    /// JSON (an object keyed by constant name, accepted by --constants).
    #[arg(long)]
    pub json: bool,
}

pub(crate) fn constants(a: ConstantsArgs) -> Result<u8> {
    if a.json {
        // Defaults as the constants file types them (integers stay integers),
        // so this output is itself a valid --constants file.
        let typed = serde_json::to_value(Constants::default()).expect("constants serialize");
        let map: serde_json::Map<String, serde_json::Value> = catalogue()
            .into_iter()
            .map(|c| {
                let mut v = serde_json::to_value(&c).expect("catalogue serializes");
                let o = v.as_object_mut().expect("object");
                o.remove("name");
                o.insert("default".into(), typed[c.name].clone());
                (c.name.to_string(), v)
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&map).expect("json"));
    } else {
        outln!(
            "{:<24} {:>9} {:<8} {:<16} {:<32} description",
            "constant",
            "default",
            "unit",
            "range",
            "sweep"
        );
        for c in catalogue() {
            let sweep: Vec<String> = c.sweep.iter().map(|v| v.to_string()).collect();
            outln!(
                "{:<24} {:>9} {:<8} {:<16} {:<32} {}",
                c.name,
                c.default,
                c.unit,
                format!("[{}, {}]", c.min, c.max),
                sweep.join(","),
                c.description
            );
        }
    }
    Ok(0)
}

/// Flags shared by split, ratchet and eval.
#[derive(Args, Debug, Clone)]
pub struct TuneArgs {
    /// Scenario seeds from the factory (70% train, 30% validation by id).
    #[arg(allow_negative_numbers = true, long = "n-seeds", alias = "n_seeds", default_value_t = 50,
          value_parser = clap::value_parser!(u64).range(2..=MAX_N_SEEDS))]
    pub n_seeds: u64,
    /// Policy whose constants are tuned.
    #[arg(long, value_enum, default_value = "full")]
    pub policy: PolicyKind,
    /// What "better" means (see README: relative p95 and cost against the current constants).
    #[arg(long, value_enum, default_value = "balanced")]
    pub objective: Objective,
}

fn base_constants(path: &Option<PathBuf>) -> Result<Constants> {
    match path {
        Some(p) => read_constants(p, &Constants::default()),
        None => Ok(Constants::default()),
    }
}

fn check_threshold(t: f64) -> Result<()> {
    if t.is_finite() && t >= 0.0 {
        Ok(())
    } else {
        Err(Error::Input(format!(
            "--threshold: expected a number >= 0, got {t}"
        )))
    }
}

/// `split` flags.
#[derive(Args, Debug)]
pub struct SplitArgs {
    /// The constant to sweep.
    #[arg(long)]
    pub constant: String,
    /// Values to try, comma-separated (default: the catalogue's sweep).
    #[arg(allow_hyphen_values = true, long, value_delimiter = ',', value_parser = crate::cli::args::finite_f64)]
    pub values: Vec<f64>,
    /// Minimum mean validation gain to accept.
    #[arg(allow_hyphen_values = true, long, default_value_t = 0.01, value_parser = crate::cli::args::finite_f64)]
    pub threshold: f64,
    /// Current constants (default: the built-in defaults).
    #[arg(long, value_name = "FILE")]
    pub constants: Option<PathBuf>,
    /// Print the ValidationResult as JSON.
    #[arg(long)]
    pub json: bool,
    /// Seeds, policy, objective.
    #[command(flatten)]
    pub tune: TuneArgs,
}

pub(crate) fn split(a: SplitArgs) -> Result<u8> {
    check_threshold(a.threshold)?;
    let Some(meta) = info(&a.constant) else {
        let names: Vec<&str> = catalogue().iter().map(|c| c.name).collect();
        return Err(Error::Input(format!(
            "--constant {}: expected one of {}",
            a.constant,
            names.join(", ")
        )));
    };
    let values = if a.values.is_empty() {
        meta.sweep.clone()
    } else {
        a.values.clone()
    };
    let base = base_constants(&a.constants)?;
    for v in &values {
        base.with(&a.constant, *v)
            .map_err(|e| Error::Input(format!("--values: {e}")))?;
    }
    let r = tune::split(
        &a.constant,
        &values,
        &base,
        a.tune.n_seeds,
        a.tune.policy,
        a.tune.objective,
        a.threshold,
    )
    .map_err(Error::Input)?;
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&r).expect("json"));
    } else {
        outln!(
            "{}: current {} best {} | train {:+.4} | validation {:+.4} (95% CI [{:+.4}, {:+.4}]) | {}: {}",
            r.constant,
            r.current,
            r.best_value,
            r.train_delta,
            r.validation_delta,
            r.validation_ci95.0,
            r.validation_ci95.1,
            r.recommendation,
            r.reason
        );
    }
    Ok(0)
}

/// `ratchet` flags.
#[derive(Args, Debug)]
pub struct RatchetArgs {
    /// Current constants (never written; default: the built-in defaults).
    #[arg(long, value_name = "FILE")]
    pub constants: Option<PathBuf>,
    /// Output directory for ratchet.json, report.txt, proposed_constants.json.
    #[arg(long)]
    pub out: PathBuf,
    /// Minimum mean validation gain to accept.
    #[arg(allow_hyphen_values = true, long, default_value_t = 0.01, value_parser = crate::cli::args::finite_f64)]
    pub threshold: f64,
    /// Seeds, policy, objective.
    #[command(flatten)]
    pub tune: TuneArgs,
}

pub(crate) fn ratchet(a: RatchetArgs) -> Result<u8> {
    check_threshold(a.threshold)?;
    let base = base_constants(&a.constants)?;
    if let Some(input) = &a.constants {
        for name in ["ratchet.json", "report.txt", "proposed_constants.json"] {
            crate::output::refuse_overwriting_inputs(
                "--out",
                &a.out.join(name),
                &[("--constants", input)],
            )?;
        }
    }
    // Outputs are checked before the work, not after it.
    crate::output::prepare_out_dir(&a.out)?;
    let r = tune::ratchet::run(
        &base,
        a.tune.n_seeds,
        a.tune.policy,
        a.tune.objective,
        a.threshold,
    )
    .map_err(Error::Input)?;
    std::fs::create_dir_all(&a.out).map_err(|source| Error::Write {
        path: a.out.clone(),
        source,
    })?;
    atomic_write(
        &a.out.join("ratchet.json"),
        (serde_json::to_string_pretty(&r).expect("json") + "\n").as_bytes(),
    )?;
    let text = tune::ratchet::report_text(&r);
    atomic_write(&a.out.join("report.txt"), text.as_bytes())?;
    atomic_write(
        &a.out.join("proposed_constants.json"),
        (serde_json::to_string_pretty(&r.proposed_constants).expect("json") + "\n").as_bytes(),
    )?;
    crate::output::sync_dir(&a.out);
    out!("{text}");
    Ok(0)
}

/// `eval` flags.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Candidate constants.
    #[arg(long, value_name = "FILE")]
    pub candidate: PathBuf,
    /// Baseline constants (default: the built-in defaults).
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Where to write the JSON report.
    #[arg(long, value_name = "FILE")]
    pub report: PathBuf,
    /// Seeds, policy, objective.
    #[command(flatten)]
    pub tune: TuneArgs,
}

pub(crate) fn eval(a: EvalArgs) -> Result<u8> {
    let mut inputs = vec![("--candidate", a.candidate.as_path())];
    if let Some(b) = &a.baseline {
        inputs.push(("--baseline", b.as_path()));
    }
    crate::output::refuse_overwriting_inputs("--report", &a.report, &inputs)?;
    let baseline = match &a.baseline {
        Some(p) => read_constants_for("--baseline", p, &Constants::default())?,
        None => Constants::default(),
    };
    let candidate = read_constants_for("--candidate", &a.candidate, &baseline)?;
    if a.tune.n_seeds < 4 {
        return Err(Error::Input(format!(
            "--n-seeds: expected at least 4 (two validation scenarios), got {}",
            a.tune.n_seeds
        )));
    }
    let r = tune::eval(
        &candidate,
        &baseline,
        a.tune.n_seeds,
        a.tune.policy,
        a.tune.objective,
    );
    let text = serde_json::to_string_pretty(&r).expect("json") + "\n";
    atomic_write(&a.report, text.as_bytes())?;
    outln!(
        "aggregate_score {} -> {}",
        r.aggregate_score
            .map_or("null".into(), |x| format!("{x:.4}")),
        if r.is_acceptable {
            "acceptable"
        } else {
            "not acceptable"
        }
    );
    Ok(if r.is_acceptable { 0 } else { 1 })
}
