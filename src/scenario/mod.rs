//! Scenario specification: what runs (workload, arrivals), on what
//! (node types, local pools, tiered providers), under which policy.
//!
//! A scenario is a complete JSON document; optional fields have documented
//! defaults. `agentsched scenario show` prints the effective scenario with
//! every field filled in. Overrides apply in this order: the file (or the
//! embedded default), `--constants FILE`, the seed's flags, then
//! `--set PATH=VALUE` (see [`overrides`]).

pub mod dist;
pub mod factory;
pub mod overrides;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use dist::{Dist, Sampler, Tail};

use crate::policy::params::{Ablations, Constants, PolicyKind};

/// The embedded default: the seed simulator's research-agent model.
pub const DEFAULT_SCENARIO_JSON: &str = include_str!("../../scenarios/research_agent.json");

/// A complete scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// A label for reports.
    #[serde(default = "default_name")]
    pub name: String,
    /// Master seed; every random draw is keyed by it.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Recorded only: the live executor compresses time by this factor.
    /// It never changes simulated results.
    #[serde(default = "default_time_scale")]
    pub time_scale: f64,
    /// What the workflows are.
    pub workload: Workload,
    /// When workflows arrive.
    #[serde(default)]
    pub arrivals: Arrivals,
    /// Node types by name: resource class, latency, tokens.
    pub node_types: BTreeMap<String, NodeType>,
    /// Local worker pools by resource class (`cpu`, `io`): free, FIFO, no failures.
    #[serde(default = "default_pools")]
    pub pools: BTreeMap<String, Pool>,
    /// Remote providers by name, each serving one resource class with ordered tiers.
    pub providers: BTreeMap<String, Provider>,
    /// Every attempt is independently multiplied by `mult` with probability `prob`.
    #[serde(default)]
    pub heavy_tail: HeavyTail,
    /// The scheduling policy.
    #[serde(default = "default_policy")]
    pub policy: PolicyKind,
    /// The policy's tunable constants.
    #[serde(default)]
    pub constants: Constants,
    /// Mechanism switches.
    #[serde(default)]
    pub ablations: Ablations,
    /// Where the numbers came from (`calibrate` writes it: source runs,
    /// sample counts, fit statistics). Never read by the simulation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<serde_json::Value>,
}

fn default_name() -> String {
    "scenario".into()
}
fn default_seed() -> u64 {
    1
}
fn default_time_scale() -> f64 {
    1.0
}
fn default_policy() -> PolicyKind {
    PolicyKind::Full
}
fn default_pools() -> BTreeMap<String, Pool> {
    BTreeMap::from([
        ("cpu".into(), Pool { workers: 4 }),
        ("io".into(), Pool { workers: 2 }),
    ])
}

/// Workflow templates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Template {
    /// The seed's research agent (plan, per-pdf load/chunk/embed, per-subquery
    /// search/extract, aggregate, decide; up to `iters` iterations).
    ResearchAgent,
    /// One call per workflow (queueing-theory validation).
    SingleCall,
    /// The DAG given in `workload.dag`.
    Dag,
}

/// What each workflow is, and how many there are.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Which template.
    pub template: Template,
    /// Number of workflows in the run.
    pub workflows: u64,
    /// research_agent: PDFs per iteration.
    #[serde(default = "default_pdfs")]
    pub pdfs: u32,
    /// research_agent: maximum iterations.
    #[serde(default = "default_iters")]
    pub iters: u32,
    /// research_agent: subqueries per PDF.
    #[serde(default = "default_subqueries")]
    pub subqueries: u32,
    /// research_agent: a workflow stops once its relevant extractions reach
    /// this fraction of `pdfs * subqueries` (summed over iterations).
    #[serde(default = "default_stop_fraction")]
    pub stop_evidence_fraction: f64,
    /// Multiplies every node's token counts (prices per token, Plan latency).
    #[serde(default = "default_token_scale")]
    pub token_scale: f64,
    /// single_call: the node type of the call.
    #[serde(default = "default_single_node")]
    pub node_type: String,
    /// dag: the graph.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dag: Option<DagSpec>,
}

impl Workload {
    /// Calls in one iteration of a workflow (the size of its compiled
    /// block): what memory grows with.
    pub fn calls_per_iteration(&self) -> u64 {
        match self.template {
            Template::SingleCall => 1,
            Template::Dag => self.dag.as_ref().map_or(0, |d| d.nodes.len() as u64),
            Template::ResearchAgent => {
                let (p, k) = (u64::from(self.pdfs), u64::from(self.subqueries));
                3 + 3 * p + 2 * p * k
            }
        }
    }
}

fn default_pdfs() -> u32 {
    10
}
fn default_iters() -> u32 {
    3
}
fn default_subqueries() -> u32 {
    4
}
fn default_stop_fraction() -> f64 {
    0.6
}
fn default_token_scale() -> f64 {
    1.0
}
fn default_single_node() -> String {
    "Call".into()
}

/// An arbitrary DAG workflow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DagSpec {
    /// Nodes; ids must be unique.
    pub nodes: Vec<DagNode>,
    /// Edges `[from, to]`: `to` starts only after `from` finished.
    #[serde(default)]
    pub edges: Vec<[String; 2]>,
}

/// One node of a [`DagSpec`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DagNode {
    /// Unique id within the DAG.
    pub id: String,
    /// A key of `node_types`.
    pub node_type: String,
    /// Overrides the node type's input tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u32>,
    /// Overrides the node type's output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u32>,
}

/// Arrival processes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "pattern", rename_all = "snake_case", deny_unknown_fields)]
pub enum Arrivals {
    /// Every workflow at time 0 (the seed's behaviour).
    #[default]
    AllAtOnce,
    /// Poisson process with `rate_per_s` workflows per second.
    Poisson {
        /// Mean arrivals per second.
        rate_per_s: f64,
    },
    /// One workflow every `interval_ms`, the first at time 0.
    Uniform {
        /// Gap between arrivals.
        interval_ms: f64,
    },
    /// `size` workflows at once every `interval_ms`.
    Burst {
        /// Workflows per burst.
        size: u32,
        /// Gap between bursts.
        interval_ms: f64,
    },
}

/// A node type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeType {
    /// Resource class: a provider's or a pool's `resource`.
    pub resource: String,
    /// Base latency (before tier and model scales and tails).
    pub latency: Dist,
    /// Optional node-specific tail (e.g. Embed x2 with probability 0.05).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<Tail>,
    /// This node type's heavy tail in place of the global one. `calibrate`
    /// writes it for the remote types it fitted: the global heavy tail also
    /// stretches local work, which no live run observes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heavy_tail: Option<HeavyTail>,
    /// Prompt tokens per call.
    #[serde(default)]
    pub input_tokens: u32,
    /// Completion tokens per call.
    #[serde(default)]
    pub output_tokens: u32,
    /// How many of a call's leading prompt tokens every call of this type
    /// sends alike within a run (a system prompt, tool definitions): what
    /// a tier's `prefix_cache` can serve. At most `input_tokens`; a node
    /// with fewer prompt tokens shares all of them.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub shared_prompt_tokens: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A local worker pool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// Concurrent workers.
    pub workers: u32,
}

/// A remote provider.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    /// The resource class it serves (`llm`, `embed`, ...).
    pub resource: String,
    /// Tiers, cheapest first by convention (policies sort by price anyway).
    pub tiers: Vec<Tier>,
}

/// One tier of a provider.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// Concurrency slots.
    pub slots: u32,
    /// Token-bucket rate limit on requests; none when absent.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// Tokens-per-minute limit; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_limit: Option<TokenLimit>,
    /// Multiplies every latency draw on this tier (the fast tier is < 1).
    #[serde(default = "one")]
    pub latency_scale: f64,
    /// Probability that an attempt fails (an error response after its latency).
    #[serde(default)]
    pub failure_prob: f64,
    /// An attempt still running after this long is cut off; none when absent.
    #[serde(default)]
    pub timeout_ms: Option<f64>,
    /// Retries after a failure or timeout before the node fails its workflow.
    #[serde(default)]
    pub max_retries: u32,
    /// Price per attempt.
    #[serde(default)]
    pub price_per_call: f64,
    /// Price per million prompt tokens.
    #[serde(default)]
    pub price_per_mtok_in: f64,
    /// Price per million completion tokens.
    #[serde(default)]
    pub price_per_mtok_out: f64,
    /// Price per million prompt tokens served from the provider's prefix
    /// cache (live replies report them; `prefix_cache` models them);
    /// `price_per_mtok_in` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_per_mtok_cached_in: Option<f64>,
    /// Price per million prompt tokens an attempt writes to the tier's
    /// `prefix_cache` (a miss of a shared prompt it can serve): Anthropic
    /// bills cache writes at 1.25x the input price. `price_per_mtok_in`
    /// when absent; needs a `prefix_cache`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_per_mtok_cache_write: Option<f64>,
    /// The provider's prompt prefix cache; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_cache: Option<PrefixCache>,
    /// Models offered on this tier; the first is the default. Model routing
    /// chooses among them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<Model>,
}

fn one() -> f64 {
    1.0
}

/// A tier's prompt prefix cache, as providers run one (OpenAI's automatic
/// caching, vLLM's and SGLang's prefix caches, Anthropic's cache
/// breakpoints): a call whose node type's shared prompt was processed on
/// this tier and model, and was used within `ttl_ms`, skips its prefill
/// and pays `price_per_mtok_cached_in` for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixCache {
    /// An entry unused this long is gone (OpenAI and Anthropic: 5 minutes).
    #[serde(default = "default_cache_ttl_ms")]
    pub ttl_ms: f64,
    /// Prefixes are cached in whole blocks of this many tokens (OpenAI:
    /// 128, vLLM: 16).
    #[serde(default = "one_token")]
    pub block_tokens: u32,
    /// A cached prefix shorter than this is not served (OpenAI: 1,024).
    #[serde(default)]
    pub min_tokens: u32,
}

fn default_cache_ttl_ms() -> f64 {
    300_000.0
}

fn one_token() -> u32 {
    1
}

impl PrefixCache {
    /// The tokens of a `shared`-token prefix this cache serves once warm.
    pub fn servable(&self, shared: u32) -> u32 {
        let whole = shared / self.block_tokens * self.block_tokens;
        if whole < self.min_tokens { 0 } else { whole }
    }
}

/// A model offered on a tier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    /// Name (reports and the live executor).
    pub name: String,
    /// Multiplies the tier's prices.
    #[serde(default = "one")]
    pub price_multiplier: f64,
    /// Multiplies the tier's latency.
    #[serde(default = "one")]
    pub latency_scale: f64,
    /// How often its answers are good enough; every answer is when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<QualityCurve>,
}

/// The probability that a model's answer to a call of difficulty `d` (in
/// [0, 1)) is accepted: `1 / (1 + exp(slope * (d - midpoint)))`, a logistic
/// that falls from easy to hard calls and crosses 1/2 at `midpoint`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualityCurve {
    /// Difficulty at which half the answers are accepted.
    pub midpoint: f64,
    /// Steepness (>= 0; 0 accepts half of every call).
    pub slope: f64,
}

impl QualityCurve {
    /// Acceptance probability at difficulty `d`.
    pub fn accept(&self, d: f64) -> f64 {
        1.0 / (1.0 + (self.slope * (d - self.midpoint)).exp())
    }

    /// Whether it rejects some calls: the curve falls with difficulty, so
    /// the hardest difficulty (just below 1) decides.
    pub fn ever_rejects(&self) -> bool {
        self.accept(1.0) < 1.0
    }
}

/// A tokens-per-minute limit: a bucket of `token_burst` tokens refilled
/// at `tokens_per_min`. An attempt takes its prompt tokens plus its
/// `max_tokens` (what providers reserve when a request is admitted).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenLimit {
    /// Refill rate, tokens per minute.
    pub tokens_per_min: f64,
    /// Bucket capacity in tokens (providers that reset per minute have
    /// `token_burst` = `tokens_per_min`).
    pub token_burst: u64,
    /// Who enforces it.
    #[serde(default)]
    pub enforced_by: Enforcer,
    /// How long a 429 takes to come back (provider-enforced only).
    #[serde(default = "default_reject_ms")]
    pub reject_latency_ms: f64,
}

/// Who enforces a tier's rate limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Enforcer {
    /// The scheduler never sends without a token (the seed's behaviour).
    #[default]
    Client,
    /// The scheduler sends regardless; the provider answers 429 with a
    /// Retry-After and the call waits that long and retries.
    Provider,
}

/// A token bucket: `rate_per_s` refill, `burst` capacity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Tokens per second.
    pub rate_per_s: f64,
    /// Bucket capacity.
    pub burst: u32,
    /// Who enforces it.
    #[serde(default)]
    pub enforced_by: Enforcer,
    /// How long a 429 takes to come back (provider-enforced only).
    #[serde(default = "default_reject_ms")]
    pub reject_latency_ms: f64,
}

fn default_reject_ms() -> f64 {
    20.0
}

/// The global heavy tail.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeavyTail {
    /// Probability per attempt.
    pub prob: f64,
    /// Multiplier.
    pub mult: f64,
}

impl HeavyTail {
    /// `(prob, mult)`, as draws take it.
    pub fn pair(&self) -> (f64, f64) {
        (self.prob, self.mult)
    }
}

impl Default for HeavyTail {
    fn default() -> Self {
        HeavyTail {
            prob: 0.0,
            mult: 1.0,
        }
    }
}

/// Node types the research-agent template needs.
pub const RESEARCH_NODE_TYPES: [&str; 8] = [
    "Plan",
    "LoadPDF",
    "Chunk",
    "Embed",
    "SimilaritySearch",
    "ExtractEvidence",
    "Aggregate",
    "DecideNext",
];

/// A validation failure: the field (dotted path) and what was expected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ScenarioError {
    /// Dotted path of the offending field.
    pub field: String,
    /// What was expected, and what was found.
    pub message: String,
}

impl ScenarioError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ScenarioError {
            field: field.into(),
            message: message.into(),
        }
    }
}

fn check_prob(field: &str, p: f64) -> Result<(), ScenarioError> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(ScenarioError::new(
            field,
            format!("expected a probability in [0, 1], got {p}"),
        ))
    }
}

fn check_pos(field: &str, v: f64) -> Result<(), ScenarioError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(ScenarioError::new(
            field,
            format!("expected a finite number > 0, got {}", show(v)),
        ))
    }
}

/// The slowest refill a rate limit may have (one unit a day): slower
/// limits would put the next unit beyond any run's horizon.
pub const MIN_RATE_PER_S: f64 = 1.0 / 86_400.0;
/// The fastest rate a scenario may name (arrivals, request limits): one
/// event per nanosecond, the rate limiter's resolution.
pub const MAX_RATE_PER_S: f64 = 1e9;
/// The fastest tokens-per-minute limit (a trillion a minute).
pub const MAX_TOKENS_PER_MIN: f64 = 1e12;
/// The largest token bucket.
pub const MAX_TOKEN_BURST: u64 = 1_000_000_000_000;
/// The longest time a scenario may name, in ms (about 31.7 years): sums of
/// such times stay far inside the µs clock's range (about 292,000 years).
pub const MAX_MS: f64 = 1e12;
/// The largest multiplier (latency scales, tail multipliers, token scale).
pub const MAX_FACTOR: f64 = 1e6;
/// The largest price, in dollars (per call or per million tokens).
pub const MAX_PRICE: f64 = 1e6;
/// The largest lognormal sigma (a draw past 10^12 ms is capped there).
pub const MAX_SIGMA: f64 = 10.0;
/// The most workflows one run may have.
pub const MAX_WORKFLOWS: u64 = 10_000_000;
/// The most calls one iteration of a workflow may have (the compiled
/// block holds each once, about 64 bytes a call).
pub const MAX_CALLS_PER_ITERATION: u64 = 1_000_000;
/// The most call states a run may hold: workflows x calls per iteration
/// (about 200 bytes each when every workflow is in flight at once, so
/// about 4 GB at the limit).
pub const MAX_CALL_STATES: u64 = 20_000_000;
/// The most slots a tier (or workers a pool) may have.
pub const MAX_SLOTS: u32 = 1_000_000;
/// The most node types, pools, providers, and tiers of one provider, a
/// scenario may have: each is numbered in 16 bits (one value is kept for
/// "no provider").
pub const MAX_NAMED: usize = 65_535;
/// The most models one tier may have: a model is numbered in 8 bits.
pub const MAX_MODELS: usize = 256;

/// At most `max` entries named by `field`.
fn check_len(field: &str, len: usize, max: usize, what: &str) -> Result<(), ScenarioError> {
    if len <= max {
        Ok(())
    } else {
        Err(ScenarioError::new(
            field,
            format!("expected at most {max} {what}, got {len}"),
        ))
    }
}

/// A multiplier: finite, > 0 and at most [`MAX_FACTOR`].
fn check_factor(field: &str, v: f64) -> Result<(), ScenarioError> {
    if v.is_finite() && v > 0.0 && v <= MAX_FACTOR {
        Ok(())
    } else {
        Err(ScenarioError::new(
            field,
            format!(
                "expected a number in (0, {}], got {}",
                show(MAX_FACTOR),
                show(v)
            ),
        ))
    }
}

/// A count of servers: in [1, max].
fn check_count(field: &str, v: u32, max: u32) -> Result<(), ScenarioError> {
    if (1..=max).contains(&v) {
        Ok(())
    } else {
        Err(ScenarioError::new(
            field,
            format!("expected an integer in [1, {max}], got {v}"),
        ))
    }
}

/// A number as a person reads it: plain in the usual range, otherwise in
/// scientific notation (`1e308`, not 309 digits; `1.157e-5`).
pub fn show(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 || !v.is_finite() || (1e-4..1e15).contains(&a) {
        format!("{v}")
    } else {
        let e = format!("{v:e}");
        // At most four significant digits in the mantissa.
        match e.split_once('e') {
            Some((m, x)) if m.len() > 6 => format!("{:.4}e{x}", m.parse::<f64>().unwrap_or(v)),
            _ => e,
        }
    }
}

fn check_range(field: &str, v: f64, lo: f64, hi: f64) -> Result<(), ScenarioError> {
    if v.is_finite() && (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(ScenarioError::new(
            field,
            format!(
                "expected a number in [{}, {}], got {}",
                show(lo),
                show(hi),
                show(v)
            ),
        ))
    }
}

impl Scenario {
    /// Whether a run of this scenario can redo calls: some tier offers a
    /// model that is used (the default one, or any under model routing)
    /// and whose quality curve rejects some calls, and a model that
    /// accepts more of them. Runs that cannot get no redo columns.
    pub fn redos_possible(&self) -> bool {
        let routing = self.ablations.enable_model_routing;
        self.providers.values().flat_map(|p| &p.tiers).any(|t| {
            t.models.len() > 1
                && t.models.iter().enumerate().any(|(i, m)| {
                    (routing || i == 0) && m.quality.as_ref().is_some_and(|q| q.ever_rejects())
                })
        })
    }

    /// Whether any tier has a tokens-per-minute limit (runs that do get
    /// 429 counts by cause).
    pub fn has_token_limits(&self) -> bool {
        self.providers
            .values()
            .flat_map(|p| &p.tiers)
            .any(|t| t.token_limit.is_some())
    }

    /// Whether some call can be served from a prefix cache: a node type
    /// shares a prompt prefix and a tier keeps a cache.
    pub fn has_prefix_caching(&self) -> bool {
        self.node_types.values().any(|n| n.shared_prompt_tokens > 0)
            && self
                .providers
                .values()
                .flat_map(|p| &p.tiers)
                .any(|t| t.prefix_cache.is_some())
    }

    /// The embedded default scenario.
    pub fn default_research_agent() -> Scenario {
        // Parsed once per process: the factory starts every scenario of a
        // ratchet from it, and parsing cost more than cloning.
        static DEFAULT: std::sync::OnceLock<Scenario> = std::sync::OnceLock::new();
        DEFAULT
            .get_or_init(|| {
                Scenario::from_json_str(DEFAULT_SCENARIO_JSON)
                    .expect("embedded default scenario is valid")
            })
            .clone()
    }

    /// Parses and validates a scenario document.
    pub fn from_json_str(text: &str) -> Result<Scenario, ScenarioError> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            ScenarioError::new(
                format!("line {} column {}", e.line(), e.column()),
                format!("invalid JSON: {e}"),
            )
        })?;
        Scenario::from_value(value)
    }

    /// Deserializes and validates a JSON value; errors carry the field path.
    pub fn from_value(value: serde_json::Value) -> Result<Scenario, ScenarioError> {
        let s = Scenario::from_value_unchecked(value)?;
        s.validate()?;
        Ok(s)
    }

    /// Deserializes a JSON value without validating it: a scenario the
    /// check refuses still says what it was given (a sweep's failed run
    /// records its configuration columns). Never run one.
    pub fn from_value_unchecked(value: serde_json::Value) -> Result<Scenario, ScenarioError> {
        serde_path_to_error::deserialize(value).map_err(|e| {
            let (path, msg) = crate::error::field_and_message(&e);
            let field = if path.is_empty() {
                "scenario".to_string()
            } else {
                path
            };
            ScenarioError::new(field, msg)
        })
    }

    /// An M/M/c scenario: single calls, Poisson arrivals at `arrival_rate`
    /// per second, one tier with `servers` slots, exponential service at
    /// `service_rate` per second, no failures, limits, prices or tails.
    pub fn mmc(
        servers: u32,
        arrival_rate: f64,
        service_rate: f64,
        workflows: u64,
        seed: u64,
    ) -> Scenario {
        let node_types = BTreeMap::from([(
            "Call".to_string(),
            NodeType {
                resource: "llm".into(),
                latency: Dist::Exponential {
                    mean_ms: 1000.0 / service_rate,
                },
                tail: None,
                heavy_tail: None,
                input_tokens: 0,
                output_tokens: 0,
                shared_prompt_tokens: 0,
            },
        )]);
        let tier = Tier {
            slots: servers,
            rate_limit: None,
            token_limit: None,
            latency_scale: 1.0,
            failure_prob: 0.0,
            timeout_ms: None,
            max_retries: 0,
            price_per_call: 0.0,
            price_per_mtok_in: 0.0,
            price_per_mtok_out: 0.0,
            price_per_mtok_cached_in: None,
            price_per_mtok_cache_write: None,
            prefix_cache: None,
            models: vec![],
        };
        Scenario {
            name: format!("mmc_c{servers}"),
            seed,
            time_scale: 1.0,
            workload: Workload {
                template: Template::SingleCall,
                workflows,
                pdfs: default_pdfs(),
                iters: default_iters(),
                subqueries: default_subqueries(),
                stop_evidence_fraction: default_stop_fraction(),
                token_scale: 1.0,
                node_type: "Call".into(),
                dag: None,
            },
            arrivals: Arrivals::Poisson {
                rate_per_s: arrival_rate,
            },
            node_types,
            pools: BTreeMap::new(),
            providers: BTreeMap::from([(
                "llm_provider".to_string(),
                Provider {
                    resource: "llm".into(),
                    tiers: vec![tier],
                },
            )]),
            heavy_tail: HeavyTail::default(),
            policy: PolicyKind::FifoCheapest,
            constants: Constants::default(),
            ablations: Ablations::default(),
            provenance: None,
        }
    }

    /// The scenario as a JSON value with every field present.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("scenario serializes")
    }

    /// Pretty JSON, newline-terminated.
    pub fn to_pretty_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("scenario serializes");
        s.push('\n');
        s
    }

    /// Checks every cross-field rule; the error names the field.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        if !(self.time_scale.is_finite() && self.time_scale > 0.0 && self.time_scale <= MAX_FACTOR)
        {
            return Err(ScenarioError::new(
                "time_scale",
                format!(
                    "expected a number in (0, {MAX_FACTOR}], got {}",
                    self.time_scale
                ),
            ));
        }
        if let Some(p) = &self.provenance
            && !p.is_object()
        {
            return Err(ScenarioError::new(
                "provenance",
                "expected an object (calibrate's record of where the numbers came from)",
            ));
        }
        self.validate_workload()?;
        let n = self.workload.workflows as f64;
        let span = |field: &str, span_ms: f64| {
            if span_ms <= MAX_MS {
                Ok(())
            } else {
                Err(ScenarioError::new(
                    field,
                    format!(
                        "the {} workflows would arrive over {span_ms:.3e} ms, past the {MAX_MS:e} ms a run may span",
                        self.workload.workflows
                    ),
                ))
            }
        };
        match self.arrivals {
            Arrivals::AllAtOnce => {}
            Arrivals::Poisson { rate_per_s } => {
                check_range(
                    "arrivals.rate_per_s",
                    rate_per_s,
                    MIN_RATE_PER_S,
                    MAX_RATE_PER_S,
                )?;
                span("arrivals.rate_per_s", n / rate_per_s * 1000.0)?;
            }
            Arrivals::Uniform { interval_ms } => {
                check_range("arrivals.interval_ms", interval_ms, 0.0, MAX_MS)?;
                span("arrivals.interval_ms", interval_ms * n)?;
            }
            Arrivals::Burst { size, interval_ms } => {
                if !(1..=MAX_WORKFLOWS).contains(&u64::from(size)) {
                    return Err(ScenarioError::new(
                        "arrivals.size",
                        format!("expected an integer in [1, {MAX_WORKFLOWS}], got {size}"),
                    ));
                }
                check_range("arrivals.interval_ms", interval_ms, 0.0, MAX_MS)?;
                span(
                    "arrivals.interval_ms",
                    interval_ms * (n / size as f64).ceil(),
                )?;
            }
        }
        check_len("node_types", self.node_types.len(), MAX_NAMED, "node types")?;
        check_len("pools", self.pools.len(), MAX_NAMED, "pools")?;
        check_len("providers", self.providers.len(), MAX_NAMED, "providers")?;
        let mut classes: BTreeMap<&str, String> = BTreeMap::new();
        for (name, pool) in &self.pools {
            check_count(&format!("pools.{name}.workers"), pool.workers, MAX_SLOTS)?;
            classes.insert(name.as_str(), format!("pools.{name}"));
        }
        for (pname, p) in &self.providers {
            let at = format!("providers.{pname}");
            if let Some(prev) = classes.insert(p.resource.as_str(), at.clone()) {
                return Err(ScenarioError::new(
                    format!("{at}.resource"),
                    format!(
                        "resource class `{}` is already served by {prev}",
                        p.resource
                    ),
                ));
            }
            if p.tiers.is_empty() {
                return Err(ScenarioError::new(
                    format!("{at}.tiers"),
                    "expected at least one tier",
                ));
            }
            check_len(&format!("{at}.tiers"), p.tiers.len(), MAX_NAMED, "tiers")?;
            for (k, t) in p.tiers.iter().enumerate() {
                validate_tier(&format!("{at}.tiers.{k}"), t)?;
            }
        }
        for (name, nt) in &self.node_types {
            let at = format!("node_types.{name}");
            if !classes.contains_key(nt.resource.as_str()) {
                let known: Vec<&str> = classes.keys().copied().collect();
                return Err(ScenarioError::new(
                    format!("{at}.resource"),
                    format!(
                        "expected a resource class served by a pool or provider ({}), got `{}`",
                        known.join(", "),
                        nt.resource
                    ),
                ));
            }
            nt.latency.check().map_err(|m| {
                ScenarioError::new(format!("{at}.latency.{}", field_of(&m)), rest_of(&m))
            })?;
            if let Some(t) = &nt.tail {
                check_prob(&format!("{at}.tail.prob"), t.prob)?;
                check_factor(&format!("{at}.tail.mult"), t.mult)?;
            }
            if let Some(h) = &nt.heavy_tail {
                check_prob(&format!("{at}.heavy_tail.prob"), h.prob)?;
                check_factor(&format!("{at}.heavy_tail.mult"), h.mult)?;
            }
            if nt.shared_prompt_tokens > nt.input_tokens {
                return Err(ScenarioError::new(
                    format!("{at}.shared_prompt_tokens"),
                    format!(
                        "expected at most the type's input_tokens ({}), got {}",
                        nt.input_tokens, nt.shared_prompt_tokens
                    ),
                ));
            }
        }
        check_prob("heavy_tail.prob", self.heavy_tail.prob)?;
        check_factor("heavy_tail.mult", self.heavy_tail.mult)?;
        self.constants
            .validate()
            .map_err(|m| ScenarioError::new(field_of(&m), rest_of(&m)))?;
        Ok(())
    }

    fn validate_workload(&self) -> Result<(), ScenarioError> {
        let w = &self.workload;
        if !(1..=MAX_WORKFLOWS).contains(&w.workflows) {
            return Err(ScenarioError::new(
                "workload.workflows",
                format!(
                    "expected an integer in [1, {MAX_WORKFLOWS}] (the limit on workflows per run), got {}",
                    w.workflows
                ),
            ));
        }
        check_factor("workload.token_scale", w.token_scale)?;
        let need_type = |field: &str, name: &str| -> Result<(), ScenarioError> {
            if self.node_types.contains_key(name) {
                Ok(())
            } else {
                Err(ScenarioError::new(
                    field,
                    format!(
                        "expected a key of node_types, got `{name}` (node_types has: {})",
                        self.node_type_names()
                    ),
                ))
            }
        };
        match w.template {
            Template::ResearchAgent => {
                for (field, v) in [
                    ("pdfs", w.pdfs),
                    ("iters", w.iters),
                    ("subqueries", w.subqueries),
                ] {
                    if v == 0 {
                        return Err(ScenarioError::new(
                            format!("workload.{field}"),
                            "expected an integer >= 1, got 0",
                        ));
                    }
                }
                if w.pdfs > 10_000 || w.subqueries > 10_000 || w.iters > 10_000 {
                    return Err(ScenarioError::new(
                        "workload",
                        "pdfs, iters and subqueries must each be <= 10000",
                    ));
                }
                check_prob("workload.stop_evidence_fraction", w.stop_evidence_fraction)?;
                for t in RESEARCH_NODE_TYPES {
                    need_type("node_types", t)?;
                }
            }
            Template::SingleCall => need_type("workload.node_type", &w.node_type)?,
            Template::Dag => {
                let Some(dag) = &w.dag else {
                    return Err(ScenarioError::new(
                        "workload.dag",
                        "template `dag` needs a `dag` with nodes and edges",
                    ));
                };
                if dag.nodes.is_empty() {
                    return Err(ScenarioError::new(
                        "workload.dag.nodes",
                        "expected at least one node",
                    ));
                }
                let mut ids = BTreeMap::new();
                for (i, n) in dag.nodes.iter().enumerate() {
                    need_type(&format!("workload.dag.nodes.{i}.node_type"), &n.node_type)?;
                    if ids.insert(n.id.as_str(), i).is_some() {
                        return Err(ScenarioError::new(
                            format!("workload.dag.nodes.{i}.id"),
                            format!("duplicate node id `{}`", n.id),
                        ));
                    }
                }
                for (i, [a, b]) in dag.edges.iter().enumerate() {
                    for end in [a, b] {
                        if !ids.contains_key(end.as_str()) {
                            return Err(ScenarioError::new(
                                format!("workload.dag.edges.{i}"),
                                format!("unknown node id `{end}`"),
                            ));
                        }
                    }
                    if a == b {
                        return Err(ScenarioError::new(
                            format!("workload.dag.edges.{i}"),
                            "self-loop",
                        ));
                    }
                }
                crate::workload::topological_order(dag)
                    .map_err(|m| ScenarioError::new("workload.dag.edges", m))?;
            }
        }
        let calls = w.calls_per_iteration();
        if calls > MAX_CALLS_PER_ITERATION {
            return Err(ScenarioError::new(
                "workload",
                format!(
                    "{calls} calls per iteration (3 + 3 x pdfs + 2 x pdfs x subqueries for research_agent) \
                     is past the limit of {MAX_CALLS_PER_ITERATION}"
                ),
            ));
        }
        if calls.saturating_mul(w.workflows) > MAX_CALL_STATES {
            return Err(ScenarioError::new(
                "workload.workflows",
                format!(
                    "{} workflows x {calls} calls per iteration = {} call states, past the limit of \
                     {MAX_CALL_STATES} (memory when every workflow is in flight); use fewer workflows or smaller ones",
                    w.workflows,
                    calls.saturating_mul(w.workflows)
                ),
            ));
        }
        Ok(())
    }

    fn node_type_names(&self) -> String {
        self.node_types
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn validate_tier(at: &str, t: &Tier) -> Result<(), ScenarioError> {
    check_count(&format!("{at}.slots"), t.slots, MAX_SLOTS)?;
    check_factor(&format!("{at}.latency_scale"), t.latency_scale)?;
    check_prob(&format!("{at}.failure_prob"), t.failure_prob)?;
    if let Some(ms) = t.timeout_ms {
        check_pos(&format!("{at}.timeout_ms"), ms)?;
        check_range(&format!("{at}.timeout_ms"), ms, 0.0, MAX_MS)?;
    }
    if t.max_retries > 100 {
        return Err(ScenarioError::new(
            format!("{at}.max_retries"),
            format!("expected an integer <= 100, got {}", t.max_retries),
        ));
    }
    for (name, v) in [
        ("price_per_call", t.price_per_call),
        ("price_per_mtok_in", t.price_per_mtok_in),
        ("price_per_mtok_out", t.price_per_mtok_out),
    ] {
        check_range(&format!("{at}.{name}"), v, 0.0, MAX_PRICE)?;
    }
    if let Some(v) = t.price_per_mtok_cached_in {
        check_range(&format!("{at}.price_per_mtok_cached_in"), v, 0.0, MAX_PRICE)?;
    }
    if let Some(v) = t.price_per_mtok_cache_write {
        let field = format!("{at}.price_per_mtok_cache_write");
        check_range(&field, v, 0.0, MAX_PRICE)?;
        if t.prefix_cache.is_none() {
            return Err(ScenarioError::new(
                field,
                "a cache write price needs the tier's prefix_cache (which says when an \
                 attempt writes one); set prefix_cache or drop this field",
            ));
        }
    }
    if let Some(c) = &t.prefix_cache {
        check_range(&format!("{at}.prefix_cache.ttl_ms"), c.ttl_ms, 0.0, MAX_MS)?;
        if c.block_tokens == 0 {
            return Err(ScenarioError::new(
                format!("{at}.prefix_cache.block_tokens"),
                "expected an integer >= 1, got 0",
            ));
        }
    }
    if let Some(rl) = &t.rate_limit {
        check_range(
            &format!("{at}.rate_limit.rate_per_s"),
            rl.rate_per_s,
            MIN_RATE_PER_S,
            MAX_RATE_PER_S,
        )?;
        if rl.burst == 0 {
            return Err(ScenarioError::new(
                format!("{at}.rate_limit.burst"),
                "expected an integer >= 1, got 0",
            ));
        }
        check_range(
            &format!("{at}.rate_limit.reject_latency_ms"),
            rl.reject_latency_ms,
            0.0,
            MAX_MS,
        )?;
    }
    if let Some(tl) = &t.token_limit {
        check_range(
            &format!("{at}.token_limit.tokens_per_min"),
            tl.tokens_per_min,
            MIN_RATE_PER_S * 60.0,
            MAX_TOKENS_PER_MIN,
        )?;
        if !(1..=MAX_TOKEN_BURST).contains(&tl.token_burst) {
            return Err(ScenarioError::new(
                format!("{at}.token_limit.token_burst"),
                format!(
                    "expected an integer in [1, {MAX_TOKEN_BURST}], got {}",
                    tl.token_burst
                ),
            ));
        }
        check_range(
            &format!("{at}.token_limit.reject_latency_ms"),
            tl.reject_latency_ms,
            0.0,
            MAX_MS,
        )?;
    }
    check_len(
        &format!("{at}.models"),
        t.models.len(),
        MAX_MODELS,
        "models",
    )?;
    for (m, model) in t.models.iter().enumerate() {
        check_range(
            &format!("{at}.models.{m}.price_multiplier"),
            model.price_multiplier,
            0.0,
            MAX_FACTOR,
        )?;
        check_factor(
            &format!("{at}.models.{m}.latency_scale"),
            model.latency_scale,
        )?;
        if let Some(q) = &model.quality {
            check_range(
                &format!("{at}.models.{m}.quality.midpoint"),
                q.midpoint,
                -1e6,
                1e6,
            )?;
            check_range(&format!("{at}.models.{m}.quality.slope"), q.slope, 0.0, 1e6)?;
        }
    }
    Ok(())
}

/// Splits "field: message" produced by lower-level checks.
fn field_of(m: &str) -> String {
    m.split_once(": ")
        .map(|(f, _)| f.to_string())
        .unwrap_or_default()
}
fn rest_of(m: &str) -> String {
    m.split_once(": ")
        .map(|(_, r)| r.to_string())
        .unwrap_or_else(|| m.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid_and_round_trips() {
        let s = Scenario::default_research_agent();
        assert_eq!(s.workload.template, Template::ResearchAgent);
        let again = Scenario::from_json_str(&s.to_pretty_json()).unwrap();
        assert_eq!(s, again);
    }

    #[test]
    fn errors_name_the_field() {
        let mut v = Scenario::default_research_agent().to_value();
        v["providers"]["llm_provider"]["tiers"][0]["slots"] = 0.into();
        let e = Scenario::from_value(v).unwrap_err();
        assert_eq!(e.field, "providers.llm_provider.tiers.0.slots");

        let mut v = Scenario::default_research_agent().to_value();
        v["workload"]["pdfz"] = 3.into();
        let e = Scenario::from_value(v).unwrap_err();
        assert!(e.to_string().contains("pdfz"), "{e}");

        let mut v = Scenario::default_research_agent().to_value();
        v["policy"] = "fastest".into();
        let e = Scenario::from_value(v).unwrap_err();
        assert_eq!(e.field, "policy");
        assert!(e.message.contains("fifo_cheapest"), "{e}");

        let mut v = Scenario::default_research_agent().to_value();
        v["node_types"]["Plan"]["latency"]["sigma"] = (-1.0).into();
        let e = Scenario::from_value(v).unwrap_err();
        assert_eq!(e.field, "node_types.Plan.latency.sigma");
    }

    #[test]
    fn prefix_caching_fields_are_checked_and_written_back_only_when_set() {
        let base = Scenario::default_research_agent().to_value();
        let refused = |path: &[&str], value: serde_json::Value| {
            let mut v = base.clone();
            let mut at = &mut v;
            for k in &path[..path.len() - 1] {
                at = match k.parse::<usize>() {
                    Ok(i) => &mut at[i],
                    Err(_) => &mut at[*k],
                };
            }
            at[path[path.len() - 1]] = value;
            Scenario::from_value(v).unwrap_err()
        };
        let e = refused(&["node_types", "Plan", "shared_prompt_tokens"], 601.into());
        assert_eq!(e.field, "node_types.Plan.shared_prompt_tokens");
        assert!(
            e.message
                .contains("at most the type's input_tokens (600), got 601"),
            "{e}"
        );
        let tier = ["providers", "llm_provider", "tiers", "1"];
        let e = refused(
            &[&tier[..], &["price_per_mtok_cached_in"]].concat(),
            (-1.0).into(),
        );
        assert_eq!(
            e.field,
            "providers.llm_provider.tiers.1.price_per_mtok_cached_in"
        );
        // A write price needs a cache that says when attempts write.
        let e = refused(
            &[&tier[..], &["price_per_mtok_cache_write"]].concat(),
            3.75.into(),
        );
        assert_eq!(
            e.field,
            "providers.llm_provider.tiers.1.price_per_mtok_cache_write"
        );
        assert!(e.message.contains("needs the tier's prefix_cache"), "{e}");
        let cache = |c: serde_json::Value| refused(&[&tier[..], &["prefix_cache"]].concat(), c);
        let e = cache(serde_json::json!({"block_tokens": 0}));
        assert_eq!(
            e.field,
            "providers.llm_provider.tiers.1.prefix_cache.block_tokens"
        );
        let e = cache(serde_json::json!({"ttl_ms": -5.0}));
        assert_eq!(
            e.field,
            "providers.llm_provider.tiers.1.prefix_cache.ttl_ms"
        );
        let e = cache(serde_json::json!({"ttl": 5.0}));
        assert!(e.to_string().contains("ttl"), "{e}");

        // Defaults, and a round trip that writes back what was set.
        let mut v = base.clone();
        v["node_types"]["Plan"]["shared_prompt_tokens"] = 500.into();
        v["providers"]["llm_provider"]["tiers"][1]["prefix_cache"] = serde_json::json!({});
        let s = Scenario::from_value(v).unwrap();
        let c = s.providers["llm_provider"].tiers[1]
            .prefix_cache
            .clone()
            .unwrap();
        assert_eq!((c.ttl_ms, c.block_tokens, c.min_tokens), (300_000.0, 1, 0));
        assert!(s.has_prefix_caching());
        assert_eq!(Scenario::from_json_str(&s.to_pretty_json()).unwrap(), s);
        let mut written = s.clone();
        written.providers.get_mut("llm_provider").unwrap().tiers[1].price_per_mtok_cache_write =
            Some(3.125);
        let back = Scenario::from_json_str(&written.to_pretty_json()).unwrap();
        assert_eq!(back, written);
        let mut negative = serde_json::to_value(&written).unwrap();
        negative["providers"]["llm_provider"]["tiers"][1]["price_per_mtok_cache_write"] =
            (-1.0).into();
        assert_eq!(
            Scenario::from_value(negative).unwrap_err().field,
            "providers.llm_provider.tiers.1.price_per_mtok_cache_write"
        );
        // Unset, they are not written at all: old scenario files stay as
        // they were.
        let plain = Scenario::default_research_agent().to_pretty_json();
        for field in [
            "shared_prompt_tokens",
            "prefix_cache",
            "price_per_mtok_cached_in",
            "price_per_mtok_cache_write",
        ] {
            assert!(!plain.contains(field), "{field}");
        }
        assert!(!Scenario::default_research_agent().has_prefix_caching());
    }

    /// Each is numbered in 16 bits (models in 8): one more would have
    /// wrapped to another's number and run silently with its settings.
    #[test]
    fn counts_past_their_numbering_are_refused() {
        let base = Scenario::mmc(8, 7.2, 1.0, 100, 3);
        let mut s = base.clone();
        let call = s.node_types["Call"].clone();
        for i in 0..MAX_NAMED {
            s.node_types.insert(format!("A{i:05}"), call.clone());
        }
        let e = s.validate().unwrap_err();
        assert_eq!(e.field, "node_types");
        assert!(
            e.message.contains("at most 65535 node types, got 65536"),
            "{e}"
        );
        s.node_types.remove("A00000");
        s.validate().unwrap();

        let mut s = Scenario::default_research_agent();
        let tier = &mut s.providers.get_mut("llm_provider").unwrap().tiers[0];
        let model = tier.models[0].clone();
        tier.models = vec![model; MAX_MODELS + 1];
        let e = s.validate().unwrap_err();
        assert_eq!(e.field, "providers.llm_provider.tiers.0.models");
        assert!(e.message.contains("at most 256 models, got 257"), "{e}");
        s.providers.get_mut("llm_provider").unwrap().tiers[0]
            .models
            .pop();
        s.validate().unwrap();

        let mut s = base;
        let p = s.providers.values_mut().next().unwrap();
        p.tiers = vec![p.tiers[0].clone(); MAX_NAMED + 1];
        let e = s.validate().unwrap_err();
        assert_eq!(e.field, "providers.llm_provider.tiers");
        assert!(e.message.contains("at most 65535 tiers"), "{e}");
    }

    #[test]
    fn mmc_is_valid() {
        let s = Scenario::mmc(8, 7.2, 1.0, 1000, 3);
        s.validate().unwrap();
        assert_eq!(Scenario::from_json_str(&s.to_pretty_json()).unwrap(), s);
    }
}
