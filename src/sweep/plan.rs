//! Experiment configs (the seed runner's JSON format) and their expansion
//! into a plan of runs with the seed's run ids.
//!
//! Matrix = Cartesian product over every key except `seeds` and
//! `ablations` (in the config's key order, last key fastest), then seeds,
//! then ablations. Each run's `params` are `common_args`, overridden by the
//! combination, plus `seed`; its id is
//! `{policy}__wf{workflows}__seed{seed}__{ablation}__{h}` with `h` the first
//! 12 hex digits of the SHA-1 of Python's compact, key-sorted JSON of
//! `{params, ablation_name, ablation_flags}`.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use sha1::{Digest, Sha1};

use crate::error::{Error, Result};
use crate::policy::PolicyKind;
use crate::scenario::Scenario;
use crate::scenario::overrides::SetOverride;
use crate::sweep::pyjson;

/// One ablation: a name and simulator flags.
#[derive(Clone, Debug, PartialEq)]
pub struct Ablation {
    /// Name (part of the run id).
    pub name: String,
    /// Flags as written, e.g. `--disable_hedging`.
    pub flags: Vec<String>,
}

/// A parsed, validated experiment config.
#[derive(Clone, Debug)]
pub struct ExperimentConfig {
    /// Experiment name (the directory under `out_root`).
    pub name: String,
    /// Output root.
    pub out_root: PathBuf,
    /// Applied to every run.
    pub common_args: Map<String, Value>,
    /// Matrix keys and their values, in config order.
    pub matrix: Vec<(String, Vec<Value>)>,
    /// Seeds.
    pub seeds: Vec<Value>,
    /// Ablations.
    pub ablations: Vec<Ablation>,
    /// Default parallelism.
    pub jobs: Option<usize>,
    /// Base scenario (default: the embedded one).
    pub base: Value,
    /// Write trace.json for every run.
    pub trace: bool,
    /// Where the config came from (messages).
    pub origin: String,
    /// Trials, order, cooldowns and adaptive stopping of a live sweep
    /// (`sweep --live`); a simulated sweep ignores them (it is deterministic).
    pub live: LiveSettings,
}

/// How a live sweep repeats and spaces its runs.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveSettings {
    /// Trials of each run at least (adaptive stopping runs at least 3).
    pub trials: u32,
    /// Trials at most; above `trials`, stopping is adaptive.
    pub max_trials: u32,
    /// `repeated`: each trial runs every configuration; `independent`: all
    /// trials of one configuration, then the next.
    pub mode: SweepMode,
    /// Seconds of pause between configurations.
    pub cooldown_s: f64,
    /// Seconds of pause between trials.
    pub trial_cooldown_s: f64,
    /// Every trial reuses the run's seed (else trial k runs seed + k).
    pub same_seed: bool,
    /// Adaptive stopping: the 95% half-width of the objective within this
    /// fraction of its mean.
    pub ci_target: f64,
    /// The metric adaptive stopping watches.
    pub objective: String,
    /// Real seconds after which a request to a tier without a `timeout_ms`
    /// is aborted as a timeout (`live run --request-timeout-s`); 0: never.
    pub request_timeout_s: f64,
    /// The most this invocation of the sweep may spend, in dollars, over
    /// all the runs it makes (`live run --max-cost`); None: no cap.
    pub max_cost: Option<f64>,
}

impl Default for LiveSettings {
    fn default() -> Self {
        LiveSettings {
            trials: 1,
            max_trials: 1,
            mode: SweepMode::Repeated,
            cooldown_s: 0.0,
            trial_cooldown_s: 0.0,
            same_seed: true,
            ci_target: 0.10,
            objective: "makespan_p95_ms".into(),
            request_timeout_s: DEFAULT_REQUEST_TIMEOUT_S,
            max_cost: None,
        }
    }
}

/// `request_timeout_s` unless told otherwise: `live run`'s default.
pub const DEFAULT_REQUEST_TIMEOUT_S: f64 = crate::live::DEFAULT_REQUEST_TIMEOUT.as_secs() as f64;

impl LiveSettings {
    /// Whether trials stop adaptively.
    pub fn adaptive(&self) -> bool {
        self.max_trials > self.trials
    }
}

/// The order of a live sweep's trials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SweepMode {
    /// Trial 1 of every configuration, then trial 2 of every one, ...
    Repeated,
    /// Every trial of the first configuration, then of the next, ...
    Independent,
}

impl SweepMode {
    /// The config's spelling.
    pub fn name(self) -> &'static str {
        match self {
            SweepMode::Repeated => "repeated",
            SweepMode::Independent => "independent",
        }
    }
}

/// The live sweep settings (top-level keys, one value each).
pub const LIVE_KEYS: [&str; 10] = [
    "trials",
    "max_trials",
    "sweep_mode",
    "cooldown_s",
    "trial_cooldown_s",
    "same_seed",
    "ci_target",
    "objective",
    "request_timeout_s",
    "max_cost",
];

fn live_settings(origin: &str, top: &Map<String, Value>) -> Result<LiveSettings> {
    let mut l = LiveSettings::default();
    let count = |k: &str| -> Result<Option<u32>> {
        match top.get(k) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if (1..=10_000).contains(&n) => Ok(Some(n as u32)),
                _ => Err(bad(
                    origin,
                    k,
                    format!("expected an integer in [1, 10000], got {v}"),
                )),
            },
        }
    };
    let seconds = |k: &str| -> Result<f64> {
        match top.get(k) {
            None => Ok(0.0),
            Some(v) => match v.as_f64() {
                Some(x) if x.is_finite() && (0.0..=86_400.0).contains(&x) => Ok(x),
                _ => Err(bad(
                    origin,
                    k,
                    format!("expected seconds in [0, 86400], got {v}"),
                )),
            },
        }
    };
    if let Some(n) = count("trials")? {
        l.trials = n;
    }
    l.max_trials = count("max_trials")?.unwrap_or(l.trials);
    if l.max_trials < l.trials {
        return Err(bad(
            origin,
            "max_trials",
            format!(
                "expected at least trials ({}), got {}",
                l.trials, l.max_trials
            ),
        ));
    }
    l.mode = match top.get("sweep_mode") {
        None => SweepMode::Repeated,
        Some(Value::String(s)) if s == "repeated" => SweepMode::Repeated,
        Some(Value::String(s)) if s == "independent" => SweepMode::Independent,
        Some(v) => {
            return Err(bad(
                origin,
                "sweep_mode",
                format!("expected \"repeated\" or \"independent\", got {v}"),
            ));
        }
    };
    l.cooldown_s = seconds("cooldown_s")?;
    l.trial_cooldown_s = seconds("trial_cooldown_s")?;
    match top.get("same_seed") {
        None => {}
        Some(Value::Bool(b)) => l.same_seed = *b,
        Some(v) => {
            return Err(bad(
                origin,
                "same_seed",
                format!("expected true or false, got {v}"),
            ));
        }
    }
    if let Some(v) = top.get("ci_target") {
        l.ci_target = v.as_f64().filter(|x| *x > 0.0 && *x < 1.0).ok_or_else(|| {
            bad(
                origin,
                "ci_target",
                format!("expected a fraction in (0, 1), got {v}"),
            )
        })?;
    }
    if let Some(v) = top.get("objective") {
        l.objective = v
            .as_str()
            .filter(|o| crate::sweep::collect::HEADLINE.contains(o))
            .ok_or_else(|| {
                bad(
                    origin,
                    "objective",
                    format!(
                        "expected one of {}, got {v}",
                        crate::sweep::collect::HEADLINE.join(", ")
                    ),
                )
            })?
            .to_string();
    }
    if let Some(v) = top.get("request_timeout_s") {
        l.request_timeout_s = v
            .as_f64()
            .filter(|&x| crate::live::request_timeout_of(x).is_some())
            .ok_or_else(|| {
                bad(
                    origin,
                    "request_timeout_s",
                    format!("{}, got {v}", crate::live::REQUEST_TIMEOUT_EXPECTED),
                )
            })?;
    }
    if let Some(v) = top.get("max_cost") {
        l.max_cost = Some(
            v.as_f64()
                .filter(|&x| crate::live::max_cost_of(x).is_some())
                .ok_or_else(|| {
                    bad(
                        origin,
                        "max_cost",
                        format!("{}, got {v}", crate::live::MAX_COST_EXPECTED),
                    )
                })?,
        );
    }
    Ok(l)
}

/// The seed simulator's flags a matrix or `common_args` key may name.
pub const SIM_FLAGS: [&str; 13] = [
    "policy",
    "workflows",
    "pdfs",
    "iters",
    "subqueries",
    "seed",
    "time_scale",
    "enable_model_routing",
    "heavy_tail_prob",
    "heavy_tail_mult",
    "disable_hedging",
    "disable_escalation",
    "disable_dag_priority",
];

/// The most runs a sweep may run at once (each is a thread).
pub const MAX_JOBS: usize = 256;
/// The most runs one experiment may plan (its runs.csv has a row each).
pub const MAX_RUNS: u64 = 100_000;

const TOP_KEYS: [&str; 18] = [
    "name",
    "sim_binary",
    "out_root",
    "common_args",
    "matrix",
    "jobs",
    "scenario",
    "trace",
    "trials",
    "max_trials",
    "sweep_mode",
    "cooldown_s",
    "trial_cooldown_s",
    "same_seed",
    "ci_target",
    "objective",
    "request_timeout_s",
    "max_cost",
];

fn bad(origin: &str, field: &str, msg: impl std::fmt::Display) -> Error {
    Error::Input(format!("{origin}: {field}: {msg}"))
}

impl ExperimentConfig {
    /// Reads and validates a config file. A relative `scenario` path is
    /// resolved against the config's directory.
    pub fn load(path: &Path) -> Result<ExperimentConfig> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.into(),
            source,
        })?;
        let origin = path.display().to_string();
        let v: Value = serde_json::from_str(&text).map_err(|e| {
            Error::Input(format!(
                "{origin}: line {} column {}: invalid JSON: {e}",
                e.line(),
                e.column()
            ))
        })?;
        ExperimentConfig::from_value(v, &origin, path.parent())
    }

    /// Validates a config document.
    pub fn from_value(v: Value, origin: &str, dir: Option<&Path>) -> Result<ExperimentConfig> {
        let Value::Object(top) = v else {
            return Err(bad(origin, "config", "expected a JSON object"));
        };
        for k in top.keys() {
            if !TOP_KEYS.contains(&k.as_str()) {
                return Err(bad(
                    origin,
                    k,
                    format!("unknown key; expected one of {}", TOP_KEYS.join(", ")),
                ));
            }
        }
        let string = |k: &str, default: &str| -> Result<String> {
            match top.get(k) {
                None => Ok(default.to_string()),
                Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                Some(other) => Err(bad(
                    origin,
                    k,
                    format!("expected a non-empty string, got {other}"),
                )),
            }
        };
        let name = string("name", "experiment")?;
        let out_root = PathBuf::from(string("out_root", "bench_runs")?);
        if let Some(x) = top.get("sim_binary")
            && !x.is_string()
        {
            return Err(bad(
                origin,
                "sim_binary",
                "expected a string (it is ignored)",
            ));
        }
        let common_args = match top.get("common_args") {
            None => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(other) => {
                return Err(bad(
                    origin,
                    "common_args",
                    format!("expected an object, got {other}"),
                ));
            }
        };
        for (k, v) in &common_args {
            check_param(origin, &format!("common_args.{k}"), k, v)?;
        }
        let jobs = match top.get("jobs") {
            None => None,
            Some(Value::Number(n))
                if n.as_u64()
                    .is_some_and(|j| (1..=MAX_JOBS as u64).contains(&j)) =>
            {
                n.as_u64().map(|j| j as usize)
            }
            Some(other) => {
                return Err(bad(
                    origin,
                    "jobs",
                    format!("expected an integer in [1, {MAX_JOBS}], got {other}"),
                ));
            }
        };
        let trace = match top.get("trace") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(bad(
                    origin,
                    "trace",
                    format!("expected true or false, got {other}"),
                ));
            }
        };
        let base = match top.get("scenario") {
            None => {
                serde_json::from_str(crate::scenario::DEFAULT_SCENARIO_JSON).expect("embedded JSON")
            }
            Some(Value::String(p)) => {
                let path = match dir {
                    Some(d) if Path::new(p).is_relative() => d.join(p),
                    _ => PathBuf::from(p),
                };
                // Errors name the key as well as the file it points to.
                let named = |msg: String| bad(origin, "scenario", msg);
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| named(format!("cannot read {}: {e}", path.display())))?;
                let v: Value = serde_json::from_str(&text)
                    .map_err(|e| named(format!("{}: invalid JSON: {e}", path.display())))?;
                Scenario::from_value(v.clone())
                    .map_err(|e| named(format!("{}: {e}", path.display())))?;
                v
            }
            Some(other) => {
                return Err(bad(
                    origin,
                    "scenario",
                    format!("expected a file path, got {other}"),
                ));
            }
        };
        let Some(Value::Object(matrix)) = top.get("matrix") else {
            return Err(bad(origin, "matrix", "expected an object of lists"));
        };
        // Scenario paths must name a field before any run: the base with every
        // field present is what each run's overrides apply to.
        let full_base = Scenario::from_value(base.clone())
            .map(|s| s.to_value())
            .map_err(|e| bad(origin, "scenario", e))?;
        let check_path = |field: &str, k: &str, v: &Value| -> Result<()> {
            if !k.contains('.') && SIM_FLAGS.contains(&k) {
                return Ok(());
            }
            SetOverride {
                path: k.split('.').map(String::from).collect(),
                value: v.clone(),
            }
            .check_known(&full_base)
            .map_err(|m| {
                // The message's own `--set PATH: ` prefix repeats the field.
                let m = m.split_once(": ").map_or(m.as_str(), |(_, rest)| rest);
                bad(origin, field, m)
            })
        };
        for (k, v) in &common_args {
            check_path(&format!("common_args.{k}"), k, v)?;
        }
        let mut keys = Vec::new();
        let mut seeds = vec![Value::from(1)];
        let mut ablations = vec![Ablation {
            name: "baseline".into(),
            flags: vec![],
        }];
        for (k, v) in matrix {
            let field = format!("matrix.{k}");
            if LIVE_KEYS.contains(&k.as_str()) || k == "jobs" || k == "trace" {
                return Err(bad(
                    origin,
                    &field,
                    "a sweep setting, not a matrix key: give one value at the top level",
                ));
            }
            let Value::Array(values) = v else {
                return Err(bad(
                    origin,
                    &field,
                    format!("expected a list of values, got {v}"),
                ));
            };
            if values.is_empty() {
                return Err(bad(
                    origin,
                    &field,
                    "empty list: the matrix would have no runs",
                ));
            }
            let mut seen = std::collections::BTreeSet::new();
            for a in values {
                if !seen.insert(a.to_string()) {
                    return Err(bad(origin, &field, format!("duplicate value {a}")));
                }
            }
            match k.as_str() {
                "seeds" => {
                    for s in values {
                        if s.as_u64().is_none() {
                            return Err(bad(
                                origin,
                                &field,
                                format!("expected non-negative integers, got {s}"),
                            ));
                        }
                    }
                    seeds = values.clone();
                }
                "ablations" => ablations = parse_ablations(origin, values)?,
                _ => {
                    for x in values {
                        check_param(origin, &field, k, x)?;
                    }
                    check_path(&field, k, &values[0])?;
                    keys.push((k.clone(), values.clone()));
                }
            }
        }
        let runs = keys
            .iter()
            .map(|(_, v)| v.len() as u64)
            .chain([seeds.len() as u64, ablations.len() as u64])
            .try_fold(1u64, u64::checked_mul)
            .filter(|n| *n <= MAX_RUNS);
        if runs.is_none() {
            let sizes: Vec<String> = keys
                .iter()
                .map(|(k, v)| format!("{k} {}", v.len()))
                .chain([
                    format!("seeds {}", seeds.len()),
                    format!("ablations {}", ablations.len()),
                ])
                .collect();
            return Err(bad(
                origin,
                "matrix",
                format!(
                    "the matrix expands to more than {MAX_RUNS} runs (the limit per experiment): {}",
                    sizes.join(" x ")
                ),
            ));
        }
        Ok(ExperimentConfig {
            name,
            out_root,
            common_args,
            matrix: keys,
            seeds,
            ablations,
            jobs,
            base,
            trace,
            origin: origin.to_string(),
            live: live_settings(origin, &top)?,
        })
    }
}

fn parse_ablations(origin: &str, values: &[Value]) -> Result<Vec<Ablation>> {
    let mut out: Vec<Ablation> = Vec::new();
    for (i, a) in values.iter().enumerate() {
        let field = format!("matrix.ablations.{i}");
        let Some(obj) = a.as_object() else {
            return Err(bad(
                origin,
                &field,
                "expected {\"name\": ..., \"flags\": [...]}",
            ));
        };
        for k in obj.keys() {
            if k != "name" && k != "flags" {
                return Err(bad(
                    origin,
                    &field,
                    format!("unknown key `{k}`; expected name and flags"),
                ));
            }
        }
        let Some(name) = obj
            .get("name")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        else {
            return Err(bad(
                origin,
                &format!("{field}.name"),
                "expected a non-empty string",
            ));
        };
        let flags: Vec<String> = match obj.get("flags") {
            None => vec![],
            Some(Value::Array(f)) => f
                .iter()
                .map(|x| {
                    x.as_str()
                        .map(String::from)
                        .ok_or_else(|| bad(origin, &format!("{field}.flags"), "expected strings"))
                })
                .collect::<Result<_>>()?,
            Some(other) => {
                return Err(bad(
                    origin,
                    &format!("{field}.flags"),
                    format!("expected a list of flags, got {other}"),
                ));
            }
        };
        for f in &flags {
            ablation_flag(f).map_err(|m| bad(origin, &format!("{field}.flags"), m))?;
        }
        if out.iter().any(|o| o.name == name) {
            return Err(bad(
                origin,
                &format!("{field}.name"),
                format!("duplicate ablation name `{name}`"),
            ));
        }
        out.push(Ablation {
            name: name.to_string(),
            flags,
        });
    }
    Ok(out)
}

/// The ablation field a simulator flag sets.
fn ablation_flag(flag: &str) -> std::result::Result<&'static str, String> {
    match flag.trim_start_matches('-').replace('-', "_").as_str() {
        "disable_hedging" => Ok("disable_hedging"),
        "disable_escalation" => Ok("disable_escalation"),
        "disable_dag_priority" => Ok("disable_dag_priority"),
        "enable_model_routing" => Ok("enable_model_routing"),
        _ => Err(format!(
            "unknown flag `{flag}`; expected --disable_hedging, --disable_escalation, --disable_dag_priority or --enable_model_routing"
        )),
    }
}

/// Type-checks one parameter value early, so a bad config fails before any run.
fn check_param(origin: &str, field: &str, key: &str, v: &Value) -> Result<()> {
    let ok = match key {
        "policy" => v
            .as_str()
            .is_some_and(|p| PolicyKind::ALL.iter().any(|k| k.name() == p)),
        "workflows" | "pdfs" | "iters" | "subqueries" | "seed" => v.as_u64().is_some(),
        "time_scale" | "heavy_tail_prob" | "heavy_tail_mult" => v.is_number(),
        "enable_model_routing"
        | "disable_hedging"
        | "disable_escalation"
        | "disable_dag_priority" => v.is_boolean(),
        k if k.contains('.') || is_scenario_field(k) => return Ok(()),
        _ => {
            return Err(bad(
                origin,
                field,
                format!(
                    "unknown key `{key}`; expected a simulator flag ({}) or a scenario field path",
                    SIM_FLAGS.join(", ")
                ),
            ));
        }
    };
    if ok {
        Ok(())
    } else {
        let expected = match key {
            "policy" => "one of fifo_cheapest, dag_cheapest, dag_escalation, full".to_string(),
            "workflows" | "pdfs" | "iters" | "subqueries" | "seed" => {
                "a non-negative integer".into()
            }
            "time_scale" | "heavy_tail_prob" | "heavy_tail_mult" => "a number".into(),
            _ => "true or false".into(),
        };
        Err(bad(origin, field, format!("expected {expected}, got {v}")))
    }
}

/// Whether `k` is a top-level scenario field (field names read once).
fn is_scenario_field(k: &str) -> bool {
    static FIELDS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    FIELDS
        .get_or_init(|| {
            Scenario::default_research_agent()
                .to_value()
                .as_object()
                .map_or_else(Vec::new, |m| m.keys().cloned().collect())
        })
        .iter()
        .any(|f| f == k)
}

/// One planned run: what identifies it. The scenario is resolved only when
/// the run executes ([`PlannedRun::resolve`]), so a plan of many runs costs
/// little memory and a sweep's memory follows its workers, not its length.
#[derive(Clone, Debug)]
pub struct PlannedRun {
    /// Position in the full plan (before sharding).
    pub index: usize,
    /// The seed runner's id.
    pub run_id: String,
    /// common_args + combination + seed.
    pub params: Map<String, Value>,
    /// Ablation.
    pub ablation: Ablation,
    /// Write trace.json.
    pub trace: bool,
}

/// A planned run's scenario and the hash resume compares.
#[derive(Clone, Debug)]
pub struct ResolvedRun {
    /// The resolved scenario, or why the parameters do not make one (the
    /// run then fails with exit code 2; the sweep goes on).
    pub scenario: std::result::Result<Scenario, String>,
    /// SHA-1 of the resolved scenario (and trace switch and tool version).
    pub config_hash: String,
}

impl PlannedRun {
    /// Resolves the run's scenario against the experiment's base scenario.
    pub fn resolve(&self, base: &Value) -> ResolvedRun {
        let scenario = resolve(base, &self.params, &self.ablation);
        let mut h = Sha1::new();
        match &scenario {
            Ok(s) => h.update(s.to_pretty_json().as_bytes()),
            Err(e) => h.update(e.as_bytes()),
        }
        h.update([self.trace as u8]);
        h.update(env!("CARGO_PKG_VERSION").as_bytes());
        ResolvedRun {
            scenario,
            config_hash: h.finalize().iter().map(|b| format!("{b:02x}")).collect(),
        }
    }

    /// The equivalent `agentsched simulate` command line.
    pub fn cmd(&self, out_dir: &Path) -> Vec<String> {
        let mut cmd = vec!["agentsched".to_string(), "simulate".to_string()];
        for (k, v) in &self.params {
            if v.is_boolean() && SIM_FLAGS.contains(&k.as_str()) {
                if v.as_bool() == Some(true) {
                    cmd.push(format!("--{k}"));
                }
            } else if SIM_FLAGS.contains(&k.as_str()) {
                cmd.push(format!("--{k}"));
                cmd.push(v.as_str().map_or_else(|| v.to_string(), String::from));
            } else {
                cmd.push("--set".into());
                cmd.push(format!(
                    "{k}={}",
                    v.as_str().map_or_else(|| v.to_string(), String::from)
                ));
            }
        }
        cmd.extend(self.ablation.flags.iter().cloned());
        cmd.push("--out".into());
        cmd.push(out_dir.display().to_string());
        cmd
    }
}

/// `[A-Za-z0-9._-]`, anything else becomes `_`: ids can never escape the runs directory.
pub fn sanitize(token: &str) -> String {
    let s: String = token
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.chars().all(|c| c == '.') {
        "_".into()
    } else {
        s
    }
}

fn token(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), String::from)
}

/// The seed runner's run id.
pub fn run_id(params: &Map<String, Value>, ablation: &Ablation, base: &Value) -> String {
    let key = serde_json::json!({
        "params": Value::Object(params.clone()),
        "ablation_name": ablation.name,
        "ablation_flags": ablation.flags,
    });
    let h = Sha1::digest(pyjson::dumps(&key).as_bytes());
    let hex: String = h.iter().take(6).map(|b| format!("{b:02x}")).collect();
    // Fall back to the base scenario's values when the matrix does not name them.
    let policy = params
        .get("policy")
        .or_else(|| base.get("policy"))
        .map_or_else(|| "full".into(), token);
    let wf = params
        .get("workflows")
        .or_else(|| base.pointer("/workload/workflows"))
        .map_or_else(|| "NA".into(), token);
    let seed = params
        .get("seed")
        .or_else(|| base.get("seed"))
        .map_or_else(|| "1".into(), token);
    format!(
        "{}__wf{}__seed{}__{}__{hex}",
        sanitize(&policy),
        sanitize(&wf),
        sanitize(&seed),
        sanitize(&ablation.name)
    )
}

/// Applies run parameters and ablation flags to the base scenario.
pub fn resolve(
    base: &Value,
    params: &Map<String, Value>,
    ablation: &Ablation,
) -> std::result::Result<Scenario, String> {
    Scenario::from_value(resolved_document(base, params, ablation)?).map_err(|e| e.to_string())
}

/// The configuration columns (see [`resolved_params`](super::resolved_params))
/// of a run whose scenario [`resolve`] refuses, read from the scenario it
/// was given; `None` when that does not even parse (a value of the wrong
/// type). The values are what the run was configured with, not results.
pub fn rejected_columns(
    base: &Value,
    params: &Map<String, Value>,
    ablation: &Ablation,
) -> Option<Value> {
    let doc = resolved_document(base, params, ablation).ok()?;
    Scenario::from_value_unchecked(doc)
        .ok()
        .map(|s| super::resolved_params(&s))
}

/// The base scenario's document with the run's parameters and ablation
/// flags applied.
fn resolved_document(
    base: &Value,
    params: &Map<String, Value>,
    ablation: &Ablation,
) -> std::result::Result<Value, String> {
    let mut doc = base.clone();
    for (k, v) in params {
        let path = match k.as_str() {
            "policy" => "policy",
            "workflows" => "workload.workflows",
            "pdfs" => "workload.pdfs",
            "iters" => "workload.iters",
            "subqueries" => "workload.subqueries",
            "seed" => "seed",
            "time_scale" => "time_scale",
            "heavy_tail_prob" => "heavy_tail.prob",
            "heavy_tail_mult" => "heavy_tail.mult",
            "enable_model_routing" => "ablations.enable_model_routing",
            "disable_hedging" => "ablations.disable_hedging",
            "disable_escalation" => "ablations.disable_escalation",
            "disable_dag_priority" => "ablations.disable_dag_priority",
            other => other,
        };
        let o = SetOverride {
            path: path.split('.').map(String::from).collect(),
            value: v.clone(),
        };
        o.apply(&mut doc)?;
    }
    for f in &ablation.flags {
        let field = ablation_flag(f)?;
        doc["ablations"][field] = Value::Bool(true);
    }
    Ok(doc)
}

/// An experiment's full plan (every run, unsharded), in the seed runner's
/// order: matrix combinations (the first key outermost), then seeds, then
/// ablations. A run is made from its position when asked for, so a plan
/// costs what its matrix costs however many runs it has: a sweep's memory
/// is its workers', not its run count's.
#[derive(Debug)]
pub struct Plan<'c> {
    cfg: &'c ExperimentConfig,
    trace: bool,
    len: usize,
}

impl Plan<'_> {
    /// Runs in the plan.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the plan has no run.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The run at plan position `index` (below [`Plan::len`]).
    pub fn get(&self, index: usize) -> PlannedRun {
        assert!(index < self.len, "plan position {index} of {}", self.len);
        let cfg = self.cfg;
        let mut rest = index;
        let mut digit = |n: usize| {
            let d = rest % n;
            rest /= n;
            d
        };
        let ablation = &cfg.ablations[digit(cfg.ablations.len())];
        let seed = &cfg.seeds[digit(cfg.seeds.len())];
        // Mixed radix, the last matrix key least significant.
        let mut picked = vec![0; cfg.matrix.len()];
        for (k, (_, values)) in cfg.matrix.iter().enumerate().rev() {
            picked[k] = digit(values.len());
        }
        let mut params = cfg.common_args.clone();
        for ((k, values), &v) in cfg.matrix.iter().zip(&picked) {
            params.insert(k.clone(), values[v].clone());
        }
        params.insert("seed".into(), seed.clone());
        PlannedRun {
            index,
            run_id: run_id(&params, ablation, &cfg.base),
            params,
            ablation: ablation.clone(),
            trace: self.trace,
        }
    }

    /// Every run, in plan order.
    pub fn iter(&self) -> impl Iterator<Item = PlannedRun> + '_ {
        (0..self.len).map(|i| self.get(i))
    }
}

/// The plan of a config, after checking that no two of its runs share an
/// id (their directories would collide).
pub fn expand(cfg: &ExperimentConfig, trace: bool) -> Result<Plan<'_>> {
    let len = cfg
        .matrix
        .iter()
        .map(|(_, values)| values.len())
        .chain([cfg.seeds.len(), cfg.ablations.len()])
        .try_fold(1usize, usize::checked_mul)
        .ok_or_else(|| Error::Input(format!("{}: the matrix has too many runs", cfg.origin)))?;
    let plan = Plan { cfg, trace, len };
    // Ids are compared by hash (16 bytes a run, not the ids themselves);
    // runs whose hashes meet are compared by id. The run reported is the
    // first, in plan order, whose id an earlier run has.
    let hash = |id: &str| {
        let mut h = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(id, &mut h);
        std::hash::Hasher::finish(&h)
    };
    let mut by_hash: Vec<(u64, usize)> = plan.iter().map(|r| (hash(&r.run_id), r.index)).collect();
    by_hash.sort_unstable();
    let mut first_repeat: Option<(usize, String)> = None;
    for group in by_hash.chunk_by(|a, b| a.0 == b.0).filter(|g| g.len() > 1) {
        let ids: Vec<(usize, String)> = group
            .iter()
            .map(|&(_, i)| (i, plan.get(i).run_id))
            .collect();
        for (n, (i, id)) in ids.iter().enumerate() {
            if ids[..n].iter().any(|(_, earlier)| earlier == id)
                && first_repeat.as_ref().is_none_or(|(j, _)| i < j)
            {
                first_repeat = Some((*i, id.clone()));
            }
        }
    }
    if let Some((_, id)) = first_repeat {
        return Err(Error::Input(format!(
            "{}: two runs share the id {id}",
            cfg.origin
        )));
    }
    Ok(plan)
}

/// `K/N`: the K-th (1-based) of N slices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// 1-based slice number.
    pub k: usize,
    /// Number of slices.
    pub n: usize,
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.k, self.n)
    }
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Shard, String> {
        let err = || format!("--shard {s}: expected K/N with 1 <= K <= N, e.g. 2/8");
        let (k, n) = s.split_once('/').ok_or_else(err)?;
        let (k, n): (usize, usize) = (
            k.trim().parse().map_err(|_| err())?,
            n.trim().parse().map_err(|_| err())?,
        );
        if n == 0 || k == 0 || k > n {
            return Err(err());
        }
        Ok(Shard { k, n })
    }
}

impl Shard {
    /// Whether plan position `index` belongs to this shard (round-robin, so
    /// every shard gets a similar mix of the matrix).
    pub fn owns(&self, index: usize) -> bool {
        index % self.n == self.k - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn smoke() -> ExperimentConfig {
        let text = include_str!("../../scenarios/smoke.json");
        ExperimentConfig::from_value(serde_json::from_str(text).unwrap(), "smoke.json", None)
            .unwrap()
    }

    /// A refused run still has the configuration it was given; a value
    /// of the wrong type gives none (there is no scenario to read).
    #[test]
    fn a_refused_run_keeps_its_configuration_columns() {
        let cfg = smoke();
        let ablation = Ablation {
            name: "no_hedge".into(),
            flags: vec!["--disable_hedging".into()],
        };
        let params = |pdfs: Value| {
            let mut m = Map::new();
            m.insert("pdfs".into(), pdfs);
            m.insert("time_scale".into(), 7.into());
            m
        };
        let refused = params(0.into());
        assert!(resolve(&cfg.base, &refused, &ablation).is_err());
        let cols = rejected_columns(&cfg.base, &refused, &ablation).unwrap();
        let valid = params(2.into());
        let ok = crate::sweep::resolved_params(&resolve(&cfg.base, &valid, &ablation).unwrap());
        assert_eq!(
            (&cols["pdfs"], &cols["time_scale"]),
            (&json!(0), &json!(7.0))
        );
        assert_eq!(cols["disable_hedging"], json!(true));
        // Everything but the refused value is what a valid run resolves to.
        let mut cols = cols;
        cols["pdfs"] = json!(2);
        assert_eq!(cols, ok);
        assert_eq!(
            rejected_columns(&cfg.base, &params("many".into()), &ablation),
            None
        );
    }

    #[test]
    fn smoke_config_yields_the_seed_runners_ids() {
        let plan: Vec<PlannedRun> = expand(&smoke(), false).unwrap().iter().collect();
        let mut ids: Vec<&str> = plan.iter().map(|r| r.run_id.as_str()).collect();
        ids.sort();
        assert_eq!(
            ids,
            [
                "fifo_cheapest__wf5__seed1__baseline__c9768924ff6b",
                "fifo_cheapest__wf5__seed1__no_hedge__34d4a264e819",
                "fifo_cheapest__wf5__seed2__baseline__3282381ea875",
                "fifo_cheapest__wf5__seed2__no_hedge__d896f4988e7f",
                "full__wf5__seed1__baseline__fcdc4023c8cf",
                "full__wf5__seed1__no_hedge__d85f95cd9565",
                "full__wf5__seed2__baseline__901b070138c8",
                "full__wf5__seed2__no_hedge__ff5d8334433a",
            ]
        );
        let r = plan
            .iter()
            .find(|r| r.run_id.starts_with("full__wf5__seed1__no_hedge"))
            .unwrap();
        let resolved = r.resolve(&smoke().base);
        let r = resolved.scenario.as_ref().unwrap();
        assert!(r.ablations.disable_hedging && r.ablations.enable_model_routing);
        assert_eq!(r.heavy_tail.mult, 50.0);
        assert_eq!(r.workload.workflows, 5);
    }

    #[test]
    fn default_config_has_96_runs() {
        let text = include_str!("../../scenarios/default.json");
        let cfg =
            ExperimentConfig::from_value(serde_json::from_str(text).unwrap(), "default.json", None)
                .unwrap();
        assert_eq!(expand(&cfg, false).unwrap().len(), 2 * 4 * 3 * 4);
    }

    fn config(matrix: Value) -> ExperimentConfig {
        let mut doc: Value =
            serde_json::from_str(include_str!("../../scenarios/smoke.json")).unwrap();
        doc["matrix"] = matrix;
        ExperimentConfig::from_value(doc, "test.json", None).unwrap()
    }

    #[test]
    fn plan_positions_decode_to_the_nested_loops_runs() {
        let cfg = config(serde_json::json!({
            "workflows": [5, 7, 9],
            "policy": ["fifo_cheapest", "full"],
            "heavy_tail_prob": [0.0, 0.1],
            "seeds": [1, 2, 3],
            "ablations": [
                {"name": "baseline", "flags": []},
                {"name": "no_hedge", "flags": ["--disable_hedging"]}
            ]
        }));
        // The seed runner's expansion: the first matrix key outermost,
        // then seeds, then ablations.
        let mut want = Vec::new();
        for wf in &cfg.matrix[0].1 {
            for policy in &cfg.matrix[1].1 {
                for tail in &cfg.matrix[2].1 {
                    for seed in &cfg.seeds {
                        for ab in &cfg.ablations {
                            let mut params = cfg.common_args.clone();
                            params.insert("workflows".into(), wf.clone());
                            params.insert("policy".into(), policy.clone());
                            params.insert("heavy_tail_prob".into(), tail.clone());
                            params.insert("seed".into(), seed.clone());
                            want.push((run_id(&params, ab, &cfg.base), params, ab.name.clone()));
                        }
                    }
                }
            }
        }
        let plan = expand(&cfg, true).unwrap();
        assert_eq!(plan.len(), 3 * 2 * 2 * 3 * 2);
        let got: Vec<_> = plan
            .iter()
            .enumerate()
            .map(|(i, r)| {
                assert_eq!((r.index, r.trace), (i, true));
                (r.run_id, r.params, r.ablation.name)
            })
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_repeated_run_is_refused_naming_the_first_repeat() {
        let mut cfg = smoke();
        cfg.seeds.push(serde_json::json!(1));
        let e = expand(&cfg, false).unwrap_err().to_string();
        // Plan order: fifo_cheapest's seeds 1, 2, then 1 again (baseline first).
        assert!(
            e.contains("two runs share the id fifo_cheapest__wf5__seed1__baseline__c9768924ff6b"),
            "{e}"
        );
        assert!(e.starts_with("smoke.json"), "{e}");
        let mut cfg = smoke();
        cfg.ablations.push(cfg.ablations[1].clone());
        let e = expand(&cfg, false).unwrap_err().to_string();
        assert!(
            e.contains("share the id fifo_cheapest__wf5__seed1__no_hedge__"),
            "{e}"
        );
        assert_eq!(expand(&smoke(), false).unwrap().len(), 8);
    }

    #[test]
    fn shards_partition_the_plan() {
        for n in 1..6 {
            let mut owners = [0; 23];
            for k in 1..=n {
                let s: Shard = format!("{k}/{n}").parse().unwrap();
                for (i, o) in owners.iter_mut().enumerate() {
                    *o += s.owns(i) as usize;
                }
            }
            assert!(owners.iter().all(|&o| o == 1), "n = {n}");
        }
        assert!(
            "0/3".parse::<Shard>().is_err()
                && "4/3".parse::<Shard>().is_err()
                && "x".parse::<Shard>().is_err()
        );
    }

    #[test]
    fn sanitize_keeps_ids_inside_the_runs_directory() {
        assert_eq!(sanitize("../etc/passwd"), ".._etc_passwd");
        assert_eq!(sanitize(".."), "_");
        assert_eq!(sanitize("a b/c"), "a_b_c");
    }
}
