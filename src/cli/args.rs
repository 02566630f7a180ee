//! Scenario flags shared by `simulate` and `scenario show`, and their
//! resolution into one validated [`Scenario`].

use std::path::{Path, PathBuf};

use clap::Args;

use crate::error::{Error, Result};
use crate::policy::{Constants, PolicyKind};
use crate::scenario::Scenario;
use crate::scenario::overrides::SetOverride;

/// The seed simulator's flags, plus `--scenario`, `--set` and `--constants`.
/// Underscore spellings are accepted as aliases so existing scripts work.
#[derive(Args, Debug, Clone, Default)]
pub struct ScenarioArgs {
    /// Scenario JSON file (default: the embedded research-agent scenario).
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Scheduling policy.
    #[arg(long, value_enum)]
    pub policy: Option<PolicyKind>,
    /// Number of workflows.
    #[arg(allow_negative_numbers = true, long)]
    pub workflows: Option<u64>,
    /// research_agent: PDFs per iteration.
    #[arg(allow_negative_numbers = true, long)]
    pub pdfs: Option<u32>,
    /// research_agent: maximum iterations.
    #[arg(allow_negative_numbers = true, long)]
    pub iters: Option<u32>,
    /// research_agent: subqueries per PDF.
    #[arg(allow_negative_numbers = true, long)]
    pub subqueries: Option<u32>,
    /// Master seed.
    #[arg(allow_negative_numbers = true, long)]
    pub seed: Option<u64>,
    /// Recorded only; the live executor compresses time by it. Never changes simulated results.
    #[arg(allow_hyphen_values = true, long = "time-scale", alias = "time_scale", value_parser = finite_f64)]
    pub time_scale: Option<f64>,
    /// Let each call choose a model (small/large) by difficulty, within the workflow budget.
    #[arg(long = "enable-model-routing", alias = "enable_model_routing")]
    pub enable_model_routing: bool,
    /// Probability that an attempt is multiplied by --heavy-tail-mult.
    #[arg(allow_hyphen_values = true, long = "heavy-tail-prob", alias = "heavy_tail_prob", value_parser = finite_f64)]
    pub heavy_tail_prob: Option<f64>,
    /// Heavy-tail multiplier.
    #[arg(allow_hyphen_values = true, long = "heavy-tail-mult", alias = "heavy_tail_mult", value_parser = finite_f64)]
    pub heavy_tail_mult: Option<f64>,
    /// No hedged duplicates.
    #[arg(long = "disable-hedging", alias = "disable_hedging")]
    pub disable_hedging: bool,
    /// No escalation to faster tiers.
    #[arg(long = "disable-escalation", alias = "disable_escalation")]
    pub disable_escalation: bool,
    /// Order ready calls by workflow age instead of the DAG score.
    #[arg(long = "disable-dag-priority", alias = "disable_dag_priority")]
    pub disable_dag_priority: bool,
    /// Policy constants JSON (an object of constants; missing ones keep their values).
    #[arg(long, value_name = "FILE")]
    pub constants: Option<PathBuf>,
    /// Override any scenario field by dotted path, e.g. --set providers.llm_provider.tiers.0.slots=4
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
}

/// A float flag: finite (clap reports anything else with exit 2, naming the flag).
pub fn finite_f64(text: &str) -> std::result::Result<f64, String> {
    let v: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("expected a number, got `{text}`"))?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(format!("expected a finite number, got `{text}`"))
    }
}

/// Reads the file a flag names; the error says which flag.
fn read(flag: &str, path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| Error::Input(format!("{flag}: cannot read {}: {e}", path.display())))
}

/// Reads a constants file: a JSON object of constants (partial allowed).
pub fn read_constants(path: &Path, base: &Constants) -> Result<Constants> {
    read_constants_for("--constants", path, base)
}

/// [`read_constants`] for a file named by `flag` (e.g. `--candidate`).
pub fn read_constants_for(flag: &str, path: &Path, base: &Constants) -> Result<Constants> {
    let text = read(flag, path)?;
    let at = format!("{flag} {}", path.display());
    let patch: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Input(format!("{at}: invalid JSON: {e}")))?;
    let serde_json::Value::Object(patch) = patch else {
        return Err(Error::Input(format!(
            "{at}: expected a JSON object of constants"
        )));
    };
    let mut merged = serde_json::to_value(base).expect("constants serialize");
    for (k, v) in patch {
        // The catalogue's form (`agentsched constants --json`): take its default.
        let v = match v {
            serde_json::Value::Object(ref o) if o.contains_key("default") => o["default"].clone(),
            other => other,
        };
        merged[k] = v;
    }
    let c: Constants = serde_path_to_error::deserialize(merged).map_err(|e| {
        let (field, msg) = crate::error::field_and_message(&e);
        let field = if field.is_empty() {
            "constants".to_string()
        } else {
            format!("constants.{field}")
        };
        Error::Input(format!("{at}: {field}: {msg}"))
    })?;
    c.validate()
        .map_err(|m| Error::Input(format!("{at}: {m}")))?;
    Ok(c)
}

impl ScenarioArgs {
    /// File (or embedded default), then `--constants`, then the flags, then
    /// `--set`; validated once at the end.
    pub fn resolve(&self) -> Result<Scenario> {
        let (value, origin) = match &self.scenario {
            Some(p) => {
                let text = read("--scenario", p)?;
                let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                    Error::Input(format!(
                        "{}: line {} column {}: invalid JSON: {e}",
                        p.display(),
                        e.line(),
                        e.column()
                    ))
                })?;
                (v, p.display().to_string())
            }
            None => (
                serde_json::from_str(crate::scenario::DEFAULT_SCENARIO_JSON)
                    .expect("embedded JSON"),
                "embedded default scenario".to_string(),
            ),
        };
        self.resolve_on(value, &origin)
    }

    /// [`resolve`](Self::resolve) on a given scenario document (named
    /// `origin` in messages) instead of `--scenario` or the default.
    pub fn resolve_on(&self, mut value: serde_json::Value, origin: &str) -> Result<Scenario> {
        // Parse once so that file errors are reported against the file alone.
        let mut s = Scenario::from_value(value.clone())
            .map_err(|e| Error::Input(format!("{origin}: {e}")))?;
        if let Some(p) = &self.constants {
            s.constants = read_constants(p, &s.constants)?;
        }
        if let Some(x) = self.policy {
            s.policy = x;
        }
        let w = &mut s.workload;
        if let Some(x) = self.workflows {
            w.workflows = x;
        }
        if let Some(x) = self.pdfs {
            w.pdfs = x;
        }
        if let Some(x) = self.iters {
            w.iters = x;
        }
        if let Some(x) = self.subqueries {
            w.subqueries = x;
        }
        if let Some(x) = self.seed {
            s.seed = x;
        }
        if let Some(x) = self.time_scale {
            s.time_scale = x;
        }
        if let Some(x) = self.heavy_tail_prob {
            s.heavy_tail.prob = x;
        }
        if let Some(x) = self.heavy_tail_mult {
            s.heavy_tail.mult = x;
        }
        let a = &mut s.ablations;
        a.enable_model_routing |= self.enable_model_routing;
        a.disable_hedging |= self.disable_hedging;
        a.disable_escalation |= self.disable_escalation;
        a.disable_dag_priority |= self.disable_dag_priority;
        value = s.to_value();
        for text in &self.set {
            let o = SetOverride::parse(text).map_err(Error::Input)?;
            o.apply(&mut value).map_err(Error::Input)?;
        }
        Scenario::from_value(value).map_err(|e| {
            let by = if self.set.is_empty() {
                "flags"
            } else {
                "flags and --set"
            };
            Error::Input(format!("{origin} with {by}: {e}"))
        })
    }
}
