//! What a run measures: per-workflow records, the event trace, per-tier
//! rows and the run summary, plus the [`Observer`] hook through which a
//! driver streams records out as they happen.

use serde::Serialize;

use crate::policy::StartKind;
use crate::provider::Outcome;
use crate::units::{Money, SimDuration, SimTime};

/// One finished workflow.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkflowRecord {
    /// Arrival order, from 0.
    pub workflow_id: u64,
    /// Arrival time.
    pub arrival: SimTime,
    /// Finish (or failure) time.
    pub finish: SimTime,
    /// False when a node exhausted its retries.
    pub ok: bool,
    /// Money spent on every attempt, failed and cancelled ones included.
    pub cost: Money,
    /// Retries after failures and timeouts.
    pub retries: u32,
    /// Re-sends after 429s.
    pub rate_limited: u32,
    /// Attempts cancelled (hedge losers, attempts of a failed workflow).
    pub cancellations: u32,
    /// Hedged duplicates launched.
    pub hedges_launched: u32,
    /// Calls escalated to a faster tier.
    pub escalations: u32,
    /// Time spent on attempts whose result was thrown away.
    pub wasted: SimDuration,
    /// Iterations run (research agent; 1 otherwise).
    pub iterations: u32,
    /// Nodes instantiated.
    pub nodes: u32,
    /// Remote calls (nodes served by a provider).
    pub calls: u32,
    /// Remote attempts started.
    pub attempts: u32,
    /// Answers rejected and redone (quality curves).
    pub redos: u32,
    /// Summed queue wait of its remote attempts.
    pub queue_wait: SimDuration,
    /// The run was stopped (Ctrl-C) before this workflow finished: `ok` is
    /// false and `workflows.csv` says `interrupted`.
    pub interrupted: bool,
}

impl WorkflowRecord {
    /// Finish minus arrival.
    pub fn makespan(&self) -> SimDuration {
        self.finish - self.arrival
    }
}

/// Where a traced event happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Place {
    /// Nowhere in particular (arrivals, workflow ends).
    None,
    /// A provider tier.
    Tier {
        /// Provider index.
        provider: u16,
        /// Tier index.
        tier: u16,
    },
    /// A local pool.
    Pool(u16),
}

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceKind {
    /// A workflow arrived.
    Arrive,
    /// A node's dependencies are done (or its retry backoff ended).
    Ready,
    /// An attempt or local task started.
    Start(StartKind),
    /// An attempt or local task ended.
    End(Outcome),
    /// A node finished successfully.
    NodeDone,
    /// A workflow finished (`true`) or failed.
    WorkflowDone(bool),
    /// A successful attempt's answer was rejected (quality curve); the
    /// call is redone.
    Redo,
}

/// One traced event.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TraceEvent {
    /// When.
    pub t: SimTime,
    /// What.
    pub kind: TraceKind,
    /// Workflow id.
    pub workflow: u64,
    /// Node index within the workflow (0 for workflow-level events).
    pub node: u32,
    /// Node type index (0 for workflow-level events).
    pub node_type: u16,
    /// Where.
    pub place: Place,
    /// Attempt number of the node (remote starts and ends).
    pub attempt: u32,
    /// Model index (remote starts).
    pub model: u8,
    /// Money charged (ends).
    pub cost: Money,
    /// Time to first token (successful ends of a streaming scenario's
    /// remote calls).
    pub ttft: Option<SimDuration>,
}

/// Receives records as a run produces them. Defaults do nothing, so a
/// benchmark pays for none of it.
pub trait Observer {
    /// False for a kind of observer that never takes a trace: the runtime's
    /// trace calls then compile to nothing, instead of to a test of
    /// [`wants_trace`](Observer::wants_trace) and a call.
    const CAN_TRACE: bool = true;
    /// A workflow finished or failed (in completion order, not id order).
    fn workflow_done(&mut self, _rec: &WorkflowRecord) {}
    /// True if [`Observer::trace`] should be called at all.
    fn wants_trace(&self) -> bool {
        false
    }
    /// One traced event, in simulation order.
    fn trace(&mut self, _ev: &TraceEvent) {}
}

/// Records nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullObserver;
impl Observer for NullObserver {
    const CAN_TRACE: bool = false;
}

/// Keeps everything in memory (tests, small runs).
#[derive(Debug, Default, Clone)]
pub struct MemoryObserver {
    /// Finished workflows, in completion order.
    pub workflows: Vec<WorkflowRecord>,
    /// The trace.
    pub trace: Vec<TraceEvent>,
    /// Whether to keep the trace.
    pub keep_trace: bool,
}

impl Observer for MemoryObserver {
    fn workflow_done(&mut self, rec: &WorkflowRecord) {
        self.workflows.push(rec.clone());
    }
    fn wants_trace(&self) -> bool {
        self.keep_trace
    }
    fn trace(&mut self, ev: &TraceEvent) {
        self.trace.push(*ev);
    }
}

/// One row of `tiers.csv`: a provider tier or a local pool.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TierRow {
    /// Provider (or pool) name.
    pub provider: String,
    /// Tier index (0 for pools).
    pub tier_id: u16,
    /// Busy slot-time over slots x run duration.
    pub utilization: f64,
    /// 95th percentile queue wait of attempts started here (ms).
    pub queue_wait_p95_ms: f64,
    /// Time-averaged attempts in flight.
    pub in_flight_avg: f64,
    /// `remote` or `local`.
    pub kind: String,
    /// Slots (workers for pools).
    pub slots: u32,
    /// Attempts started (tasks for pools), hedges included.
    pub requests: u64,
    /// Successful attempts.
    pub successes: u64,
    /// Failed attempts (error responses).
    pub failures: u64,
    /// Timed-out attempts.
    pub timeouts: u64,
    /// 429 responses.
    pub rate_limited: u64,
    /// 429s from the tokens-per-minute limit; present when the scenario
    /// has token limits.
    pub rate_limited_tokens: Option<u64>,
    /// Prompt tokens served from its prefix cache; present when the
    /// scenario models prefix caching.
    pub cached_input_tokens: Option<u64>,
    /// Prompt tokens written to its prefix cache; present with
    /// `cached_input_tokens`.
    pub cache_write_tokens: Option<u64>,
    /// Cancelled attempts.
    pub cancelled: u64,
    /// Hedged duplicates started here.
    pub hedges: u64,
    /// Escalated calls started here.
    pub escalations_in: u64,
    /// Mean queue wait (ms).
    pub queue_wait_mean_ms: f64,
    /// Median queue wait (ms).
    pub queue_wait_p50_ms: f64,
    /// Mean service time of successful attempts (ms).
    pub service_mean_ms: f64,
    /// Money charged here.
    pub cost: f64,
    /// Answers rejected here and redone; present when redos are possible.
    pub redos: Option<u64>,
}

/// The run summary (`summary.csv` / `summary.json`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    /// Mean makespan of completed workflows (ms).
    pub makespan_mean_ms: f64,
    /// Median makespan (ms).
    pub makespan_p50_ms: f64,
    /// 95th percentile makespan (ms).
    pub makespan_p95_ms: f64,
    /// 99th percentile makespan (ms).
    pub makespan_p99_ms: f64,
    /// Mean cost per workflow, failed ones included.
    pub cost_mean: f64,
    /// Median cost per workflow.
    pub cost_p50: f64,
    /// Total cost.
    pub cost_total: f64,
    /// Workflows in the run.
    pub workflows: u64,
    /// Workflows that completed.
    pub completed: u64,
    /// Workflows that failed.
    pub failed: u64,
    /// Longest makespan (ms).
    pub makespan_max_ms: f64,
    /// Remote calls (nodes).
    pub calls: u64,
    /// Remote attempts started.
    pub attempts: u64,
    /// Mean queue wait of remote attempts, hedges excluded (ms).
    pub queue_wait_mean_ms: f64,
    /// 95th percentile queue wait (ms).
    pub queue_wait_p95_ms: f64,
    /// Hedges launched.
    pub hedges: u64,
    /// Hedges whose result won.
    pub hedge_wins: u64,
    /// Escalations.
    pub escalations: u64,
    /// Retries after failures and timeouts.
    pub retries: u64,
    /// Failed attempts.
    pub failures: u64,
    /// Timed-out attempts.
    pub timeouts: u64,
    /// 429 responses.
    pub rate_limited: u64,
    /// Cancelled attempts.
    pub cancellations: u64,
    /// Time spent on discarded attempts (ms).
    pub wasted_ms: f64,
    /// Simulated time from 0 to the end of the run (ms): the moment the
    /// last workflow ended and no work was left running, not a later timer's.
    pub sim_time_ms: f64,
    /// Completed workflows per simulated second.
    pub throughput_wf_per_s: f64,
    /// Time-averaged workflows in the system (L of Little's law).
    pub in_system_avg: f64,
    /// Events processed.
    pub events: u64,
    /// Seconds of wall time spent simulating (not deterministic).
    pub wall_time_s: f64,
    /// 429s from tokens-per-minute limits (also in `rate_limited`);
    /// present when the scenario has token limits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limited_tokens: Option<u64>,
    /// Answers rejected by quality curves and redone; the three redo
    /// fields are present when the scenario makes redos possible.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redos: Option<u64>,
    /// Time spent on rejected answers (ms; also in `wasted_ms`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redo_wasted_ms: Option<f64>,
    /// Money spent on rejected answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redo_cost: Option<f64>,
    /// Median time to first token of successful streamed attempts (ms);
    /// the three streaming fields are present when a node type streams.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttft_p50_ms: Option<f64>,
    /// 95th percentile time to first token (ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttft_p95_ms: Option<f64>,
    /// Mean time per output token after the first (ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tpot_mean_ms: Option<f64>,
    /// Prompt tokens served from tiers' prefix caches; present when the
    /// scenario models prefix caching.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached_input_tokens: Option<u64>,
    /// Prompt tokens written to tiers' prefix caches (misses of a shared
    /// prompt a cache can serve); present with `cached_input_tokens`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_write_tokens: Option<u64>,
}

impl Summary {
    /// Column names and values in file order (`summary.csv`); counts are
    /// integers, NaN (no data) is null.
    pub fn fields(&self) -> Vec<(&'static str, serde_json::Value)> {
        let v = serde_json::to_value(self).expect("summary serializes");
        let obj = v.as_object().expect("summary is an object");
        let optional = OPTIONAL_SUMMARY_COLUMNS
            .iter()
            .filter(|k| obj.contains_key(**k));
        SUMMARY_COLUMNS
            .iter()
            .chain(optional)
            .map(|&k| (k, obj.get(k).cloned().unwrap_or(serde_json::Value::Null)))
            .collect()
    }
}

/// `summary.csv` columns, in order: the seed's six first.
pub const SUMMARY_COLUMNS: [&str; 29] = [
    "makespan_mean_ms",
    "makespan_p50_ms",
    "makespan_p95_ms",
    "makespan_p99_ms",
    "cost_mean",
    "cost_p50",
    "cost_total",
    "workflows",
    "completed",
    "failed",
    "makespan_max_ms",
    "calls",
    "attempts",
    "queue_wait_mean_ms",
    "queue_wait_p95_ms",
    "hedges",
    "hedge_wins",
    "escalations",
    "retries",
    "failures",
    "timeouts",
    "rate_limited",
    "cancellations",
    "wasted_ms",
    "sim_time_ms",
    "throughput_wf_per_s",
    "in_system_avg",
    "events",
    "wall_time_s",
];

/// Columns after [`SUMMARY_COLUMNS`] that only runs of scenarios with the
/// mechanism have (streaming; token limits; quality curves; prefix
/// caching), in order.
pub const OPTIONAL_SUMMARY_COLUMNS: [&str; 9] = [
    "ttft_p50_ms",
    "ttft_p95_ms",
    "tpot_mean_ms",
    "rate_limited_tokens",
    "redos",
    "redo_wasted_ms",
    "redo_cost",
    "cached_input_tokens",
    "cache_write_tokens",
];

/// Everything a run returns besides what it streamed to its observer.
#[derive(Clone, Debug, PartialEq)]
pub struct RunResult {
    /// The summary (`wall_time_s` is filled by the caller).
    pub summary: Summary,
    /// One row per provider tier, then one per local pool.
    pub tiers: Vec<TierRow>,
}
