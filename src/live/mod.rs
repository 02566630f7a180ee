//! The live executor: the second driver of the workflow runtime, on tokio.
//!
//! The runtime and the policy are the simulator's; this driver supplies
//! time from a tokio clock and outcomes from a [`Transport`] (HTTP to
//! OpenAI-compatible endpoints, or the in-process provider model).
//!
//! **Time.** The scenario is written in scenario time; `time_scale` N
//! compresses it: real time = scenario time / N. The runtime, the policy
//! and every output see scenario time (real elapsed x N), so a live run's
//! files compare column for column with a simulation's.
//!
//! **Ordering.** Everything that will happen (timers the runtime asked
//! for, attempt ends) waits in one queue ordered by (scenario time,
//! sequence of scheduling), the simulator's own order. An item is handled
//! once the clock has reached its time and is reported at its own time,
//! one at a time, each followed by a dispatch: a timer that fires late is
//! still reported at its deadline, and a reply at its decision time plus
//! the real time since its request went out (x N). So the executor's own
//! lag (a late timer, a busy loop) is not charged to the endpoint; the
//! endpoint's and the network's time is. A transport that knows an attempt's reply at send time (the
//! in-process model) has it delivered at exactly its planned end, which is
//! what makes the live driver reproduce the simulator on tokio's paused
//! clock (the parity test).
//!
//! **Cancellation.** A hedge loser or an attempt of a failed workflow is
//! aborted: its request is dropped mid-flight, it is recorded as cancelled
//! and charged pro rata for the time it ran against its expected duration.
//!
//! **429s.** A 429 frees the attempt's slot at once (the answer came back),
//! and the call waits outside the queues for the `retry-after-ms`,
//! `x-ratelimit-reset-requests` or `Retry-After` the server sent (without
//! one: the scenario's retry backoff), then becomes ready again and is
//! queued like any ready call. A call that meets more than
//! [`LiveConfig::max_consecutive_429`] 429s in a row counts the next one
//! as a failure, so that a misconfigured endpoint cannot hold a run forever.

pub mod audit;
pub mod emulator;
pub mod endpoints;
pub mod proxy;
pub mod rundir;
pub mod spend;
pub mod sse;
pub mod stop;
pub mod transport;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::metrics::{Observer, RunResult};
use crate::policy::{AttemptKey, StartKind};
use crate::provider::{Outcome, PrefixUse};
use crate::runtime::{AttemptReport, Driver, NodeTable, Runtime, SendAttempt, Timer, TokenUsage};
use crate::scenario::Scenario;
use crate::stats;
use crate::units::{Money, SimDuration, SimTime};
use sse::{Usage, UsageTotals};

pub use endpoints::{EndpointsFile, ResolvedEndpoint};
pub use transport::{
    CallKind, CallRequest, HttpTransport, ModelTransport, Prompt, Reply, Transport,
};

/// The request header carrying an attempt's identity, so that the
/// emulator draws exactly what the simulator would for it:
/// `seed=1;wf=3;node=17;provider=1;tier=0;attempt=0;model=0;type=ExtractEvidence;out=150`.
pub const IDENTITY_HEADER: &str = "x-agentsched-attempt";

/// Converts between a tokio instant and scenario time.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    t0: Instant,
    scale: f64,
}

impl Clock {
    /// Scenario time 0 is now; `scale` scenario seconds pass per real second.
    pub fn start(scale: f64) -> Clock {
        Clock {
            t0: Instant::now(),
            scale,
        }
    }

    /// Scenario time at `at` (rounded down to the microsecond).
    pub fn sim(&self, at: Instant) -> SimTime {
        let ns = at.saturating_duration_since(self.t0).as_nanos() as f64;
        SimTime((ns * self.scale / 1000.0) as u64)
    }

    /// The real instant of scenario time `t` (rounded up to the nanosecond).
    pub fn real(&self, t: SimTime) -> Instant {
        self.t0 + Duration::from_nanos((t.0 as f64 * 1000.0 / self.scale).ceil() as u64)
    }

    /// A real duration as scenario time.
    pub fn to_sim(&self, d: Duration) -> SimDuration {
        SimDuration((d.as_nanos() as f64 * self.scale / 1000.0) as u64)
    }

    /// Microseconds of real time since the start.
    pub fn real_us(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.t0).as_micros() as u64
    }
}

/// [`LiveConfig::request_timeout`] unless told otherwise: the OpenAI
/// Python client's default request timeout.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// What a request timeout in seconds must be (`live run
/// --request-timeout-s`, a live sweep's `request_timeout_s`).
pub const REQUEST_TIMEOUT_EXPECTED: &str = "expected seconds between 0 (no limit) and 1e9";

/// A request timeout given in seconds: `Some(None)` for 0 (no limit),
/// `None` for anything outside [0, 1e9] (NaN included).
pub fn request_timeout_of(secs: f64) -> Option<Option<Duration>> {
    (0.0..=1e9)
        .contains(&secs)
        .then(|| (secs > 0.0).then(|| Duration::from_secs_f64(secs)))
}

/// What `--max-cost` and a live sweep's `max_cost` take.
pub const MAX_COST_EXPECTED: &str = "expected dollars > 0 and at most 1e9";

/// A spending cap given in dollars; `None` outside (0, 1e9] (NaN included).
pub fn max_cost_of(dollars: f64) -> Option<Money> {
    (dollars > 0.0 && dollars <= 1e9).then(|| Money::from_dollars(dollars))
}

/// How a live run behaves.
#[derive(Clone, Debug)]
pub struct LiveConfig {
    /// Scenario seconds per real second.
    pub time_scale: f64,
    /// Endpoints per (provider, tier), for transports that send requests.
    pub endpoints: Vec<Vec<Arc<ResolvedEndpoint>>>,
    /// Send the attempt identity header.
    pub send_identity: bool,
    /// 429s in a row after which a call's next 429 counts as a failure.
    pub max_consecutive_429: u32,
    /// Real time after which a request to a tier without a `timeout_ms`
    /// of its own is aborted as a timeout (a hung server would otherwise
    /// hold its call, and the run, forever); None waits forever.
    pub request_timeout: Option<Duration>,
    /// Show progress on stderr.
    pub progress: bool,
    /// Spend the last 1.5 ms before a deadline yielding instead of on the
    /// timer wheel (which wakes up to a millisecond late). Off by default:
    /// replies are placed relative to their own send, so a late timer
    /// costs nothing but the spin's CPU; never on a paused clock, which
    /// only moves when every task sleeps.
    pub precise_timers: bool,
    /// The spending cap (`--max-cost`): no attempt is sent that would
    /// take what the run has committed past it (see [`spend`]).
    pub max_cost: Option<Money>,
}

impl LiveConfig {
    /// Defaults for a run of `s` (no endpoints: the model transport).
    pub fn new(s: &Scenario) -> LiveConfig {
        LiveConfig {
            time_scale: s.time_scale,
            endpoints: Vec::new(),
            send_identity: true,
            max_consecutive_429: 32,
            request_timeout: Some(DEFAULT_REQUEST_TIMEOUT),
            progress: false,
            precise_timers: false,
            max_cost: None,
        }
    }
}

/// One line of `requests.jsonl`: one attempt, written when it ended.
#[derive(Clone, Debug, Serialize)]
pub struct RequestRecord {
    /// Workflow id.
    pub workflow: u64,
    /// Node index.
    pub node: u32,
    /// Node type.
    pub node_type: String,
    /// Attempt number of the node.
    pub attempt: u32,
    /// `primary`, `escalated` or `hedge`.
    pub role: &'static str,
    /// Provider name.
    pub provider: String,
    /// Tier index.
    pub tier: u16,
    /// Model name sent.
    pub model: String,
    /// The model's index on the tier in the scenario (its latency scale).
    pub model_index: u8,
    /// Prompt tokens the scenario gives the call.
    pub input_tokens: u32,
    /// Completion tokens asked for (`max_tokens`).
    pub output_tokens: u32,
    /// When the call became ready for this start (scenario ms).
    pub scheduled_ms: f64,
    /// Sent (scenario ms).
    pub sent_ms: f64,
    /// Response headers (scenario ms).
    pub first_byte_ms: Option<f64>,
    /// First generated text: content or reasoning (scenario ms).
    pub first_token_ms: Option<f64>,
    /// Ended (scenario ms).
    pub done_ms: f64,
    /// Sent, real microseconds since the run started.
    pub sent_us: u64,
    /// Response headers, real microseconds.
    pub first_byte_us: Option<u64>,
    /// First token, real microseconds.
    pub first_token_us: Option<u64>,
    /// Ended, real microseconds.
    pub done_us: u64,
    /// HTTP status.
    pub status: Option<u16>,
    /// `success`, `failure`, `timeout`, `rate_limited` or `cancelled`.
    pub outcome: &'static str,
    /// What went wrong.
    pub error: Option<String>,
    /// What the server said of an error status (its message, at most 300
    /// characters; absent for other outcomes and for 429s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// The wait a 429 asked for (scenario ms).
    pub retry_after_ms: Option<f64>,
    /// Prompt tokens the server reported.
    pub usage_prompt_tokens: Option<u32>,
    /// Completion tokens the server reported.
    pub usage_completion_tokens: Option<u32>,
    /// Of the prompt tokens, those the server said it served from its
    /// prompt cache (absent from its answer: null).
    pub usage_cached_prompt_tokens: Option<u32>,
    /// Of the prompt tokens, those the server said it wrote to its prompt
    /// cache (`cache_creation_input_tokens`; absent from its answer: not
    /// written here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_cache_write_tokens: Option<u32>,
    /// Dropped by the scheduler (hedge loser, failed workflow, interrupt).
    pub cancelled: bool,
    /// How many times the request went again because a kept-alive
    /// connection closed under it before the server read it (absent: 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub resent: u8,
    /// `x-ratelimit-*` headers of the response, resets in scenario ms
    /// (absent when it had none).
    #[serde(flatten)]
    pub rate: RateRecord,
}

fn is_zero(n: &u8) -> bool {
    *n == 0
}

/// The `x-ratelimit-*` headers of one response, as `requests.jsonl` keeps them.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct RateRecord {
    /// `x-ratelimit-limit-requests`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratelimit_limit_requests: Option<u64>,
    /// `x-ratelimit-remaining-requests`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratelimit_remaining_requests: Option<u64>,
    /// `x-ratelimit-reset-requests`, scenario ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratelimit_reset_requests_ms: Option<f64>,
    /// `x-ratelimit-limit-tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratelimit_limit_tokens: Option<u64>,
    /// `x-ratelimit-remaining-tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratelimit_remaining_tokens: Option<u64>,
    /// `x-ratelimit-reset-tokens`, scenario ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratelimit_reset_tokens_ms: Option<f64>,
}

/// Streaming metrics only a live run has.
#[derive(Clone, Debug, Default)]
pub struct LiveMetrics {
    ttft_ms: Vec<f64>,
    e2e_ms: Vec<f64>,
    tpot_sum_ms: f64,
    tpot_n: u64,
    /// HTTP 429 answers.
    pub http_429: u64,
    /// Attempts that ended with an error (any kind but 429).
    pub errors: u64,
    /// The usage the servers reported.
    usage: UsageTotals,
    /// Per (provider, tier): replies, and how many of them never reached
    /// the endpoint (no connection, no TLS session).
    reach: std::collections::BTreeMap<(u16, u16), Reach>,
    /// Per (provider, tier): what the server said with its first refusal.
    refused_messages: std::collections::BTreeMap<(u16, u16), String>,
}

/// How often one endpoint was reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reach {
    /// Replies to attempts sent there (cancelled attempts have none).
    pub replies: u64,
    /// Of them, failed to connect.
    pub connect: u64,
    /// Of them, failed to open a TLS session.
    pub tls: u64,
    /// Of them, came with a response (a status line or headers).
    pub answered: u64,
    /// Of them, timed out (before or after a response began).
    pub timeouts: u64,
    /// Of them, answered with a client error that retrying cannot mend:
    /// 4xx but 408 and 429 (a refused key, a wrong path or model name).
    pub refused: u64,
    /// The status of the first refusal (0 before one).
    pub refused_status: u16,
    /// Whether refusals came with more than one status.
    pub refused_mixed: bool,
    /// Successful chat answers whose usage said how many tokens they held.
    pub completions: u64,
    /// Of them, held fewer tokens than asked for (the model stopped at
    /// its end-of-sequence token before `max_tokens`).
    pub short: u64,
    /// Of them, held more tokens than asked for (the server ignored the
    /// output size).
    pub long: u64,
    /// The completion tokens those answers held, and were asked for.
    pub completion_tokens: u64,
    /// See [`completion_tokens`](Self::completion_tokens).
    pub asked_tokens: u64,
    /// Successful answers (chat and embeddings).
    pub successes: u64,
    /// Of them, reported no token usage: their costs are the scenario's
    /// token counts priced, and their lengths are unknown.
    pub unmetered: u64,
}

impl Reach {
    /// Every reply failed before reaching the endpoint.
    pub fn never_reached(&self) -> bool {
        self.replies > 0 && self.connect + self.tls == self.replies
    }

    /// The endpoint was reached but answered none of its requests: each
    /// timed out or ended before a response began (a hung or overloaded
    /// server). A measurement, unlike [`never_reached`](Self::never_reached),
    /// but one of its failures only.
    pub fn never_answered(&self) -> bool {
        self.replies > 0 && self.answered == 0 && !self.never_reached()
    }

    /// The endpoint answered, and refused every request it answered (a
    /// key it does not take, a path or model it does not serve): a set-up
    /// fault that every later request meets too, not a measurement.
    pub fn refused_all(&self) -> bool {
        self.refused > 0 && self.refused == self.answered
    }

    /// More than a tenth of the endpoint's answers stopped short of the
    /// tokens asked for: its latencies and costs run below the scenario's
    /// output sizes.
    pub fn stopped_short(&self) -> bool {
        self.short * 10 > self.completions
    }

    /// More than a tenth of the endpoint's answers ran past the tokens
    /// asked for: its latencies and costs run above the scenario's.
    pub fn ran_long(&self) -> bool {
        self.long * 10 > self.completions
    }

    /// More than a tenth of the endpoint's successful answers reported no
    /// token usage: its costs are estimates, not what it served.
    pub fn unmetered(&self) -> bool {
        self.unmetered * 10 > self.successes
    }
}

/// Whether an HTTP status is a refusal that a retry cannot mend.
fn is_refusal(status: u16) -> bool {
    (400..500).contains(&status) && status != 408 && status != 429
}

impl LiveMetrics {
    /// Counts a reply from endpoint (provider, tier).
    fn reached(&mut self, provider: u16, tier: u16, reply: &Reply) {
        let r = self.reach.entry((provider, tier)).or_default();
        r.replies += 1;
        match reply.error.as_deref() {
            Some("connect") => r.connect += 1,
            Some("tls") => r.tls += 1,
            Some("timeout") => r.timeouts += 1,
            _ => {}
        }
        if reply.status.is_some() || reply.first_byte.is_some() {
            r.answered += 1;
        }
        if let Some(status) = reply.status.filter(|&s| is_refusal(s)) {
            r.refused += 1;
            if r.refused_status == 0 {
                r.refused_status = status;
                if let Some(m) = &reply.error_message {
                    self.refused_messages.insert((provider, tier), m.clone());
                }
            } else if r.refused_status != status {
                r.refused_mixed = true;
            }
        }
    }

    /// Counts a successful answer from endpoint (provider, tier), and
    /// whether it reported its token usage.
    fn succeeded(&mut self, provider: u16, tier: u16, metered: bool) {
        let r = self.reach.entry((provider, tier)).or_default();
        r.successes += 1;
        r.unmetered += u64::from(!metered);
    }

    /// Counts a successful chat answer from endpoint (provider, tier) that
    /// reported `completion` tokens, `asked` having been asked for.
    fn completed(&mut self, provider: u16, tier: u16, asked: u32, completion: u32) {
        let r = self.reach.entry((provider, tier)).or_default();
        r.completions += 1;
        r.short += u64::from(completion < asked);
        r.long += u64::from(completion > asked);
        r.completion_tokens += u64::from(completion);
        r.asked_tokens += u64::from(asked);
    }

    /// What endpoint (provider, tier) said when it first refused a request
    /// (see [`Reach::refused_status`]), if it said anything.
    pub fn refused_message(&self, provider: u16, tier: u16) -> Option<&str> {
        self.refused_messages
            .get(&(provider, tier))
            .map(String::as_str)
    }

    /// The endpoints whose replies meet `which` ([`Reach::never_reached`],
    /// [`Reach::never_answered`]): (provider, tier) and what happened to
    /// the requests.
    pub fn endpoints_where(&self, which: impl Fn(&Reach) -> bool) -> Vec<((u16, u16), Reach)> {
        self.reach
            .iter()
            .filter(|(_, r)| which(r))
            .map(|(k, r)| (*k, *r))
            .collect()
    }

    /// The summary columns a live run adds (scenario ms): `ttft_p50_ms
    /// ttft_p95_ms tpot_mean_ms e2e_p50_ms e2e_p95_ms e2e_p99_ms
    /// http_429 errors usage_prompt_tokens usage_cached_prompt_tokens`.
    pub fn columns(&mut self) -> Vec<(&'static str, serde_json::Value)> {
        let pct = |xs: &mut Vec<f64>, q: f64| {
            xs.sort_unstable_by(f64::total_cmp);
            if xs.is_empty() {
                f64::NAN
            } else {
                stats::percentile_sorted(xs, q)
            }
        };
        let j = crate::output::json_f64;
        vec![
            ("ttft_p50_ms", j(pct(&mut self.ttft_ms, 50.0))),
            ("ttft_p95_ms", j(pct(&mut self.ttft_ms, 95.0))),
            (
                "tpot_mean_ms",
                j(if self.tpot_n == 0 {
                    f64::NAN
                } else {
                    self.tpot_sum_ms / self.tpot_n as f64
                }),
            ),
            ("e2e_p50_ms", j(pct(&mut self.e2e_ms, 50.0))),
            ("e2e_p95_ms", j(pct(&mut self.e2e_ms, 95.0))),
            ("e2e_p99_ms", j(pct(&mut self.e2e_ms, 99.0))),
            ("http_429", self.http_429.into()),
            ("errors", self.errors.into()),
            ("usage_prompt_tokens", self.usage.prompt.into()),
            (
                "usage_cached_prompt_tokens",
                self.usage.cached_prompt.into(),
            ),
        ]
    }
}

/// What is waiting to happen.
#[derive(Debug)]
enum Item {
    Timer(Timer),
    /// An attempt whose reply the transport gave at send time.
    Planned(AttemptKey, AttemptReport),
    /// A reply that came over the wire.
    Replied(AttemptKey, Box<Reply>),
}

#[derive(Debug)]
struct Pending {
    t: SimTime,
    seq: u64,
    item: Item,
}

impl PartialEq for Pending {
    fn eq(&self, o: &Self) -> bool {
        (self.t, self.seq) == (o.t, o.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Pending {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.t, self.seq).cmp(&(o.t, o.seq))
    }
}

/// An attempt in flight.
#[derive(Debug)]
struct InFlight {
    workflow: u64,
    node: u32,
    node_type: u16,
    attempt: u32,
    kind: StartKind,
    provider: u16,
    tier: u16,
    model: u8,
    input_tokens: u32,
    output_tokens: u32,
    scheduled: SimTime,
    sent: SimTime,
    sent_real: Instant,
    planned: Option<SimDuration>,
    abort: Option<tokio::task::AbortHandle>,
    /// Its price at the scenario's token counts, as the spending cap counts it.
    price: Money,
    /// Never sent: the spending cap refused it (it ends cancelled when the
    /// run stops, an instant later).
    unsent: bool,
}

/// Names for `requests.jsonl`.
#[derive(Debug)]
struct Names {
    providers: Vec<String>,
    node_types: Vec<String>,
    /// Each node type's shared prompt tokens (its calls' common head).
    shared_tokens: Vec<u32>,
    /// Model names sent, per (provider, tier), by model index.
    models: Vec<Vec<Vec<String>>>,
    /// Whether each provider serves embeddings.
    embed: Vec<bool>,
}

/// The live driver: the queue of what will happen, the transport, the
/// attempts in flight and the request log.
pub struct LiveDriver<T: Transport> {
    clock: Clock,
    transport: T,
    cfg: LiveConfig,
    seed: u64,
    /// Distinct for each run: heads every prompt (see [`Prompt::Call`]).
    prompt_run: u32,
    heap: BinaryHeap<Reverse<Pending>>,
    seq: u64,
    tx: mpsc::UnboundedSender<(AttemptKey, Box<Reply>)>,
    inflight: HashMap<AttemptKey, InFlight>,
    /// 429s in a row per (workflow, node).
    consecutive_429: HashMap<(u64, u32), u32>,
    retry_backoff_ms: f64,
    names: Names,
    log: Option<RequestLog>,
    metrics: LiveMetrics,
    /// The time of the event being handled.
    now: SimTime,
    attempts_sent: u64,
    /// How the attempt just sent used an in-process model's prefix cache.
    sent_prefix: PrefixUse,
    /// The spending cap's ledger.
    spend: spend::Spend,
}

impl<T: Transport> std::fmt::Debug for LiveDriver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveDriver")
            .field("now", &self.now)
            .field("in_flight", &self.inflight.len())
            .finish()
    }
}

/// `requests.jsonl`, one line per attempt, flushed line by line so that a
/// killed run loses at most the line being written.
#[derive(Debug)]
pub struct RequestLog {
    out: std::io::BufWriter<std::fs::File>,
    path: std::path::PathBuf,
    error: Option<std::io::Error>,
    lines: u64,
}

impl RequestLog {
    /// Starts (truncates) `path`.
    pub fn create(path: &std::path::Path) -> crate::error::Result<RequestLog> {
        let f = std::fs::File::create(path).map_err(|source| crate::error::Error::Write {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(RequestLog {
            out: std::io::BufWriter::new(f),
            path: path.to_path_buf(),
            error: None,
            lines: 0,
        })
    }

    fn write(&mut self, r: &RequestRecord) {
        if self.error.is_some() {
            return;
        }
        let mut line = serde_json::to_vec(r).expect("record serializes");
        line.push(b'\n');
        if let Err(e) = self.out.write_all(&line).and_then(|_| self.out.flush()) {
            self.error = Some(e);
        }
        self.lines += 1;
    }

    /// Flushes and fsyncs; reports the first write error.
    pub fn finish(mut self) -> crate::error::Result<u64> {
        let w = |source| crate::error::Error::Write {
            path: self.path.clone(),
            source,
        };
        if let Some(e) = self.error.take() {
            return Err(w(e));
        }
        self.out.flush().map_err(w)?;
        self.out.get_ref().sync_all().map_err(w)?;
        Ok(self.lines)
    }
}

impl<T: Transport> LiveDriver<T> {
    /// Attempt `key` is no longer in flight (it ended, or was cancelled).
    fn take_in_flight(&mut self, key: AttemptKey) -> Option<InFlight> {
        let f = self.inflight.remove(&key)?;
        self.spend.ended(f.price);
        Some(f)
    }

    fn push(&mut self, t: SimTime, item: Item) {
        self.seq += 1;
        self.heap.push(Reverse(Pending {
            t,
            seq: self.seq,
            item,
        }));
    }

    /// Where the real instant `at` of an attempt's reply falls in scenario
    /// time: its decision time plus the real time since the request went
    /// out, x N. The executor's own lag between deciding and sending (a
    /// busy event loop, a timer that woke late) is thus not charged to
    /// the endpoint; what the endpoint and the network took is.
    fn on_timeline(&self, f: &InFlight, reply: &Reply, at: Instant) -> SimTime {
        match reply.sent {
            Some(sent) => f.sent + self.clock.to_sim(at.saturating_duration_since(sent)),
            None => self.clock.sim(at),
        }
    }

    fn record(&mut self, f: &InFlight, done: SimTime, reply: Option<&Reply>, outcome: Outcome) {
        let clock = self.clock;
        let at = |i: Option<Instant>| {
            i.map(|x| match reply {
                Some(r) => self.on_timeline(f, r, x).as_ms(),
                None => clock.sim(x).as_ms(),
            })
        };
        let us = |i: Option<Instant>| i.map(|x| clock.real_us(x));
        let now_real = Instant::now();
        let rec = RequestRecord {
            workflow: f.workflow,
            node: f.node,
            node_type: self.names.node_types[f.node_type as usize].clone(),
            attempt: f.attempt,
            role: f.kind.name(),
            provider: self.names.providers[f.provider as usize].clone(),
            tier: f.tier,
            model: self.names.models[f.provider as usize][f.tier as usize]
                .get(f.model as usize)
                .cloned()
                .unwrap_or_default(),
            model_index: f.model,
            input_tokens: f.input_tokens,
            output_tokens: f.output_tokens,
            scheduled_ms: f.scheduled.as_ms(),
            sent_ms: f.sent.as_ms(),
            first_byte_ms: reply.and_then(|r| at(r.first_byte)),
            first_token_ms: reply.and_then(|r| at(r.first_token)),
            done_ms: done.as_ms(),
            sent_us: clock.real_us(reply.and_then(|r| r.sent).unwrap_or(f.sent_real)),
            first_byte_us: reply.and_then(|r| us(r.first_byte)),
            first_token_us: reply.and_then(|r| us(r.first_token)),
            done_us: reply
                .and_then(|r| us(r.done))
                .unwrap_or_else(|| clock.real_us(now_real)),
            status: reply.and_then(|r| r.status),
            outcome: outcome.name(),
            error: reply.and_then(|r| r.error.clone()),
            error_message: reply.and_then(|r| r.error_message.clone()),
            retry_after_ms: reply
                .and_then(|r| r.retry_after)
                .filter(|_| outcome == Outcome::RateLimited)
                .map(|d| match f.planned {
                    // A model reply's wait is already scenario time.
                    Some(_) => SimDuration(d.as_micros() as u64).as_ms(),
                    None => clock.to_sim(d).as_ms(),
                }),
            usage_prompt_tokens: reply.and_then(|r| r.usage.map(|u| u.prompt)),
            usage_completion_tokens: reply.and_then(|r| r.usage.map(|u| u.completion)),
            usage_cached_prompt_tokens: reply.and_then(|r| r.usage.and_then(|u| u.cached_prompt)),
            usage_cache_write_tokens: reply.and_then(|r| r.usage.and_then(|u| u.cache_write)),
            cancelled: outcome == Outcome::Cancelled,
            resent: reply.map_or(0, |r| r.resent),
            rate: reply
                .and_then(|r| r.rate_headers)
                .map(|h| {
                    let ms = |d: Option<Duration>| d.map(|d| clock.to_sim(d).as_ms());
                    RateRecord {
                        ratelimit_limit_requests: h.limit_requests,
                        ratelimit_remaining_requests: h.remaining_requests,
                        ratelimit_reset_requests_ms: ms(h.reset_requests),
                        ratelimit_limit_tokens: h.limit_tokens,
                        ratelimit_remaining_tokens: h.remaining_tokens,
                        ratelimit_reset_tokens_ms: ms(h.reset_tokens),
                    }
                })
                .unwrap_or_default(),
        };
        if let Some(log) = self.log.as_mut() {
            log.write(&rec);
        }
    }

    /// Turns a reply into the runtime's report: the 429 wait in scenario
    /// time, the cap on consecutive 429s, the streaming metrics.
    fn report(&mut self, f: &InFlight, reply: &Reply) -> AttemptReport {
        self.metrics.reached(f.provider, f.tier, reply);
        if f.planned.is_none() && reply.outcome == Some(Outcome::Success) {
            self.metrics
                .succeeded(f.provider, f.tier, reply.usage.is_some());
        }
        if let Some(u) = reply.usage {
            self.metrics.usage.add(u);
            if f.planned.is_none()
                && reply.outcome == Some(Outcome::Success)
                && !self.names.embed[f.provider as usize]
            {
                self.metrics
                    .completed(f.provider, f.tier, f.output_tokens.max(1), u.completion);
            }
        }
        let mut outcome = reply.outcome.unwrap_or(Outcome::Failure);
        let key = (f.workflow, f.node);
        let mut retry_after = SimDuration::ZERO;
        if outcome == Outcome::RateLimited {
            self.metrics.http_429 += 1;
            let n = self.consecutive_429.entry(key).or_insert(0);
            *n += 1;
            if *n > self.cfg.max_consecutive_429 {
                self.consecutive_429.remove(&key);
                outcome = Outcome::Failure;
            } else {
                let k = *n;
                retry_after = match (reply.retry_after, f.planned) {
                    (Some(d), Some(_)) => SimDuration(d.as_micros() as u64),
                    (Some(d), None) => self.clock.to_sim(d),
                    // No hint: the scenario's backoff, doubling.
                    (None, _) => SimDuration::from_ms(
                        self.retry_backoff_ms * 2f64.powi(k.saturating_sub(1).min(30) as i32),
                    ),
                };
            }
        } else {
            self.consecutive_429.remove(&key);
            if outcome != Outcome::Success {
                self.metrics.errors += 1;
            }
        }
        if f.planned.is_none() {
            let scale = self.clock.scale;
            let ms = |d: Duration| d.as_secs_f64() * 1e3 * scale;
            let sent = reply.sent.unwrap_or(f.sent_real);
            if let Some(done) = reply.done
                && outcome == Outcome::Success
            {
                self.metrics
                    .e2e_ms
                    .push(ms(done.saturating_duration_since(sent)));
                if let Some(first) = reply.first_token {
                    self.metrics
                        .ttft_ms
                        .push(ms(first.saturating_duration_since(sent)));
                    if reply.chunks > 1 {
                        self.metrics.tpot_sum_ms += ms(done - first) / (reply.chunks - 1) as f64;
                        self.metrics.tpot_n += 1;
                    }
                }
            }
        } else if outcome == Outcome::Success {
            self.metrics
                .e2e_ms
                .push(f.planned.unwrap_or_default().as_ms());
        }
        // Time to first token in scenario time: the model's, or measured
        // on the same timeline as the reply.
        let ttft = match f.planned {
            Some(_) => reply.ttft,
            None => reply
                .first_token
                .map(|t| self.on_timeline(f, reply, t) - f.sent),
        };
        AttemptReport {
            outcome,
            retry_after,
            ttft,
            limited_by: reply.limited_by.unwrap_or_default(),
            usage: reply.usage.map(token_usage),
        }
    }
}

/// What the runtime prices from a reply's usage. A server that said
/// neither what it served from its cache nor what it wrote tells nothing
/// of its cache: then nothing is taken as written (`Some(0)`), where one
/// that said what it served but not what it wrote leaves the writes to
/// the scenario's cache model (None).
fn token_usage(u: Usage) -> TokenUsage {
    TokenUsage {
        prompt: u.prompt,
        cached_prompt: u.cached_prompt.unwrap_or(0).min(u.prompt),
        cache_write: match (u.cache_write, u.cached_prompt) {
            (Some(w), _) => Some(w),
            (None, Some(_)) => None,
            (None, None) => Some(0),
        },
        completion: u.completion,
    }
}

impl<T: Transport> Driver for LiveDriver<T> {
    fn send(&mut self, now: SimTime, a: &SendAttempt<'_>) -> Option<SimDuration> {
        self.attempts_sent += 1;
        let mut f = InFlight {
            workflow: a.ids.workflow,
            node: a.ids.node,
            node_type: a.node_type,
            attempt: a.ids.attempt,
            kind: a.kind,
            provider: a.ids.provider,
            tier: a.ids.tier,
            model: a.model,
            input_tokens: a.input_tokens,
            output_tokens: a.output_tokens,
            scheduled: SimTime(now.0 - a.queue_wait.0),
            sent: now,
            sent_real: Instant::now(),
            planned: None,
            abort: None,
            price: a
                .tier
                .price(a.model as usize, a.input_tokens, a.output_tokens),
            unsent: false,
        };
        self.sent_prefix = PrefixUse::default();
        if !self.spend.admit(f.price) {
            // Over the cap: not sent. The run stops once this event is
            // over, and cancels it with everything in flight.
            f.price = Money::ZERO;
            f.unsent = true;
            self.inflight.insert(a.key, f);
            return None;
        }
        if let Some((duration, reply)) = self.transport.immediate(now, a) {
            f.planned = Some(duration);
            let mut report = self.report(&f, &reply);
            // Known at send time, as in the simulator: the runtime prices
            // the cached prefix now (`cached_input_tokens`), not again at
            // the end.
            self.sent_prefix = reply.usage.map_or_else(PrefixUse::default, |u| PrefixUse {
                cached: u.cached_prompt.unwrap_or(0),
                written: u.cache_write.unwrap_or(0),
            });
            report.usage = None;
            self.inflight.insert(a.key, f);
            self.push(now + duration, Item::Planned(a.key, report));
            return Some(duration);
        }
        let (p, t) = (a.ids.provider as usize, a.ids.tier as usize);
        let identity = self.cfg.send_identity.then(|| {
            format!(
                "seed={};wf={};node={};provider={};tier={};attempt={};model={};type={};out={}",
                self.seed,
                a.ids.workflow,
                a.ids.node,
                a.ids.provider,
                a.ids.tier,
                a.ids.attempt,
                a.model,
                self.names.node_types[a.node_type as usize],
                a.output_tokens
            )
        });
        let req = CallRequest {
            prompt: Prompt::Call {
                run: self.prompt_run,
                workflow: a.ids.workflow,
                node: a.ids.node,
                node_type: a.node_type,
                shared: self.names.shared_tokens[a.node_type as usize].min(a.input_tokens),
            },
            endpoint: self.cfg.endpoints[p][t].clone(),
            kind: if self.names.embed[p] {
                CallKind::Embed
            } else {
                CallKind::Chat
            },
            model: a.model as usize,
            input_tokens: a.input_tokens,
            output_tokens: a.output_tokens,
            timeout: a
                .tier
                .timeout
                .map(|d| Duration::from_nanos((d.0 as f64 * 1000.0 / self.clock.scale) as u64))
                .or(self.cfg.request_timeout),
            identity,
        };
        let fut = self.transport.call(req);
        let tx = self.tx.clone();
        let key = a.key;
        let handle = tokio::spawn(async move {
            let reply = fut.await;
            // The run may be over (interrupted): nobody listens then.
            let _ = tx.send((key, Box::new(reply)));
        });
        f.abort = Some(handle.abort_handle());
        self.inflight.insert(a.key, f);
        None
    }

    fn prefix_use(&self, _attempt: AttemptKey) -> PrefixUse {
        self.sent_prefix
    }

    fn cancel(&mut self, attempt: AttemptKey) {
        if let Some(f) = self.take_in_flight(attempt) {
            if let Some(h) = &f.abort {
                h.abort();
            }
            let now = self.now;
            let unsent = f.unsent.then(|| Reply {
                error: Some("max_cost".into()),
                ..Reply::default()
            });
            self.record(&f, now, unsent.as_ref(), Outcome::Cancelled);
        }
    }

    fn set_timer(&mut self, at: SimTime, timer: Timer) {
        self.push(at, Item::Timer(timer));
    }
}

/// What a live run returns.
#[derive(Debug)]
pub struct LiveOutcome {
    /// The runtime's results, as the simulator reports them.
    pub result: RunResult,
    /// Streaming metrics.
    pub metrics: LiveMetrics,
    /// Stopped by Ctrl-C (or the stop signal) before the end, or at the
    /// spending cap.
    pub interrupted: bool,
    /// Stopped because the next attempt would have taken what the run
    /// committed past its cap (`--max-cost`).
    pub max_cost_reached: bool,
    /// Attempts sent (one `requests.jsonl` line each).
    pub attempts_sent: u64,
    /// Lines written to `requests.jsonl`.
    pub request_lines: u64,
    /// Real seconds the run took.
    pub wall_time_s: f64,
}

/// Runs `s` live: the runtime and policy of the simulator, time from the
/// tokio clock, outcomes from `transport`. Records stream to `obs`; one
/// line per attempt to `log`. Resolves when every workflow finished, or
/// when `stop` resolves first (then the run is interrupted: nothing more is
/// admitted, what is in flight is cancelled, and every unfinished workflow
/// is recorded as interrupted).
pub async fn run<O: Observer, T: Transport>(
    s: &Scenario,
    obs: &mut O,
    transport: T,
    cfg: LiveConfig,
    log: Option<RequestLog>,
    stop: impl std::future::Future<Output = ()>,
) -> crate::error::Result<LiveOutcome> {
    let table = NodeTable::build(s);
    let names = Names {
        providers: table.providers.clone(),
        node_types: table.names.clone(),
        shared_tokens: table.shared_tokens.clone(),
        models: s
            .providers
            .values()
            .enumerate()
            .map(|(p, prov)| {
                prov.tiers
                    .iter()
                    .enumerate()
                    .map(
                        |(t, tier)| match cfg.endpoints.get(p).and_then(|e| e.get(t)) {
                            Some(ep) => ep.models.clone(),
                            None if tier.models.is_empty() => vec!["default".into()],
                            None => tier.models.iter().map(|m| m.name.clone()).collect(),
                        },
                    )
                    .collect()
            })
            .collect(),
        embed: s
            .providers
            .values()
            .map(|p| p.resource == "embed")
            .collect(),
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let clock = Clock::start(cfg.time_scale);
    let progress = cfg.progress;
    let precise = cfg.precise_timers;
    let driver = LiveDriver {
        clock,
        transport,
        seed: s.seed,
        prompt_run: transport::run_nonce(),
        heap: BinaryHeap::new(),
        seq: 0,
        tx,
        inflight: HashMap::new(),
        consecutive_429: HashMap::new(),
        retry_backoff_ms: s.constants.retry_backoff_ms,
        names,
        log,
        metrics: LiveMetrics::default(),
        now: SimTime::ZERO,
        attempts_sent: 0,
        sent_prefix: PrefixUse::default(),
        spend: spend::Spend::new(cfg.max_cost),
        cfg,
    };
    let mut rt = Runtime::new(s, obs, driver);
    // Scenario time 0 is now, after the set-up work.
    rt.io.clock = Clock::start(rt.io.cfg.time_scale);
    let started = Instant::now();
    rt.start();
    let mut max_cost_reached = settle_spend(&mut rt);
    let total = s.workload.workflows;
    let bar = progress.then(|| {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} workflows  {msg}  [{elapsed_precise}]",
            )
            .expect("valid template"),
        );
        b
    });
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_tick = (Instant::now(), 0u64);
    let mut events = 0u64;
    let mut interrupted = max_cost_reached;
    tokio::pin!(stop);
    loop {
        if max_cost_reached {
            let now = rt.now();
            rt.interrupt(now);
            break;
        }
        while let Ok((key, reply)) = rx.try_recv() {
            accept_reply(&mut rt, key, reply);
        }
        let clock_now = rt.io.clock.sim(Instant::now());
        let due = rt
            .io
            .heap
            .peek()
            .is_some_and(|Reverse(p)| p.t.0 <= clock_now.0 + 1);
        if due {
            let Reverse(p) = rt.io.heap.pop().expect("peeked");
            let t = p.t.max(rt.now());
            rt.io.now = t;
            events += 1;
            match p.item {
                Item::Timer(timer) => rt.on_timer(t, timer),
                Item::Planned(key, report) => {
                    if let Some(f) = rt.io.take_in_flight(key) {
                        let reply = Reply {
                            outcome: Some(report.outcome),
                            retry_after: Some(Duration::from_micros(report.retry_after.0)),
                            ..Reply::default()
                        };
                        rt.io.record(&f, t, Some(&reply), report.outcome);
                    }
                    // A cancelled attempt's end still passes, as in the
                    // simulator (the runtime ignores it).
                    rt.on_attempt_end(t, key, report);
                }
                Item::Replied(key, reply) => {
                    if let Some(f) = rt.io.take_in_flight(key) {
                        let report = rt.io.report(&f, &reply);
                        rt.io.record(&f, t, Some(&reply), report.outcome);
                        rt.on_attempt_end(t, key, report);
                    } else {
                        events -= 1; // aborted meanwhile: not an event
                    }
                }
            }
            if settle_spend(&mut rt) {
                max_cost_reached = true;
                interrupted = true;
                continue;
            }
            // As in the simulator: the run ends with the event after which
            // nothing is left to do (see `Runtime::finished`).
            if rt.finished() {
                break;
            }
            continue;
        }
        if rt.finished() {
            break;
        }
        let deadline = rt.io.heap.peek().map(|Reverse(p)| rt.io.clock.real(p.t));
        tokio::select! {
            biased;
            _ = &mut stop, if !interrupted => {
                interrupted = true;
                let now = rt.io.clock.sim(Instant::now()).max(rt.now());
                rt.io.now = now;
                rt.interrupt(now);
                break;
            }
            m = rx.recv() => {
                if let Some((key, reply)) = m {
                    accept_reply(&mut rt, key, reply);
                }
            }
            _ = precise_sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() && precise => {}
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() && !precise => {}
            _ = tick.tick(), if bar.is_some() => {
                if let Some(b) = &bar {
                    let (t0, n0) = last_tick;
                    let n = rt.io.attempts_sent;
                    let rps = (n - n0) as f64 / t0.elapsed().as_secs_f64().max(1e-9);
                    last_tick = (Instant::now(), n);
                    b.set_position(total.saturating_sub(rt.active_workflows()).min(total));
                    let spend = &rt.io.spend;
                    let committed = spend.cap().map_or_else(String::new, |cap| {
                        format!(
                            ", ${:.2} of ${:.2} committed",
                            spend.committed().as_dollars(),
                            cap.as_dollars()
                        )
                    });
                    b.set_message(format!(
                        "{rps:.0} req/s, {} in flight, {} 429s, {} errors{committed}",
                        rt.io.inflight.len(),
                        rt.io.metrics.http_429,
                        rt.io.metrics.errors
                    ));
                }
            }
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    // Abandon whatever is left (an interrupt's local tasks and timers).
    for f in rt.io.inflight.values() {
        if let Some(h) = &f.abort {
            h.abort();
        }
    }
    let wall_time_s = started.elapsed().as_secs_f64();
    let metrics = std::mem::take(&mut rt.io.metrics);
    let attempts_sent = rt.io.attempts_sent;
    let log = rt.io.log.take();
    let mut result = rt.finish(events);
    result.summary.wall_time_s = wall_time_s;
    let request_lines = match log {
        Some(l) => l.finish()?,
        None => 0,
    };
    Ok(LiveOutcome {
        result,
        metrics,
        interrupted,
        max_cost_reached,
        attempts_sent,
        request_lines,
        wall_time_s,
    })
}

/// An event is over: the spending cap's ledger takes the runtime's charges.
/// True when an attempt did not fit under the cap (the run stops).
fn settle_spend<O: Observer, T: Transport>(rt: &mut Runtime<'_, O, LiveDriver<T>>) -> bool {
    if rt.io.spend.cap().is_none() {
        return false;
    }
    let charged = rt.charged();
    rt.io.spend.settle(charged);
    rt.io.spend.reached()
}

/// How much earlier than a deadline to stop sleeping on the timer wheel
/// (tokio timers round up to the next millisecond and wake late) and yield
/// until it instead.
const TIMER_SLACK: Duration = Duration::from_micros(1500);

/// Sleeps until `at`, to within tens of microseconds rather than the timer
/// wheel's millisecond: the last `TIMER_SLACK` is spent yielding to other
/// tasks. On a paused clock this is an ordinary sleep.
pub async fn precise_sleep_until(at: Instant) {
    if at > Instant::now() + TIMER_SLACK {
        tokio::time::sleep_until(at - TIMER_SLACK).await;
    }
    let mut spins = 0u32;
    while Instant::now() < at {
        spins += 1;
        if spins > 100_000 {
            // A paused clock does not move by itself: let the timer do it.
            tokio::time::sleep_until(at).await;
            return;
        }
        tokio::task::yield_now().await;
    }
}

/// Queues a reply that came over the wire, stamped with its arrival.
fn accept_reply<O: Observer, T: Transport>(
    rt: &mut Runtime<'_, O, LiveDriver<T>>,
    key: AttemptKey,
    reply: Box<Reply>,
) {
    let at = reply.done.unwrap_or_else(Instant::now);
    let t = match rt.io.inflight.get(&key) {
        Some(f) => rt.io.on_timeline(f, &reply, at),
        None => rt.io.clock.sim(at),
    };
    let t = t.max(rt.now());
    rt.io.push(t, Item::Replied(key, reply));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_left_to_the_scenario_only_where_the_server_said_what_it_served() {
        let usage = |cached_prompt, cache_write| Usage {
            prompt: 2000,
            completion: 10,
            cached_prompt,
            cache_write,
        };
        // Said both: as said (reads capped at the prompt).
        let u = token_usage(usage(Some(5000), Some(300)));
        assert_eq!((u.cached_prompt, u.cache_write), (2000, Some(300)));
        // Said what it served only: writes are the scenario's to say.
        let u = token_usage(usage(Some(0), None));
        assert_eq!((u.cached_prompt, u.cache_write), (0, None));
        // Said nothing of a cache: nothing read, nothing written.
        let u = token_usage(usage(None, None));
        assert_eq!((u.cached_prompt, u.cache_write), (0, Some(0)));
        assert_eq!((u.prompt, u.completion), (2000, 10));
    }

    fn answered(status: u16) -> Reply {
        Reply {
            status: Some(status),
            ..Reply::default()
        }
    }

    /// Refusals are 4xx a retry cannot mend; an endpoint refused all of
    /// its requests only when nothing it answered was anything else.
    #[test]
    fn an_endpoint_refuses_all_only_when_every_answer_was_a_refusal() {
        let mut m = LiveMetrics::default();
        for s in [401, 401, 401] {
            m.reached(0, 0, &answered(s));
        }
        // Timeouts are not answers: they leave a refusing endpoint refusing.
        m.reached(
            0,
            0,
            &Reply {
                error: Some("timeout".into()),
                ..Reply::default()
            },
        );
        for s in [404, 400] {
            m.reached(0, 1, &answered(s));
        }
        // One success, a 429 or a 408 is service, or a wait: not a refusal.
        for (t, s) in [(2, 200), (3, 429), (4, 408)] {
            m.reached(0, t, &answered(401));
            m.reached(0, t, &answered(s));
        }
        let refusing = m.endpoints_where(Reach::refused_all);
        let tiers: Vec<u16> = refusing.iter().map(|&((_, t), _)| t).collect();
        assert_eq!(tiers, [0, 1]);
        let (r0, r1) = (refusing[0].1, refusing[1].1);
        assert_eq!(
            (r0.refused, r0.refused_status, r0.refused_mixed),
            (3, 401, false)
        );
        assert_eq!(
            (r1.refused, r1.refused_status, r1.refused_mixed),
            (2, 404, true)
        );
        assert!(!r0.never_answered() && !r0.never_reached());
    }

    /// An endpoint is said to stop short (run long) once more than a tenth
    /// of its answers held fewer (more) tokens than asked for.
    #[test]
    fn short_answers_count_past_a_tenth() {
        let mut m = LiveMetrics::default();
        for i in 0..10 {
            m.completed(0, 0, 100, if i == 0 { 40 } else { 100 });
            m.completed(0, 1, 100, if i < 2 { 99 } else { 120 });
        }
        m.completed(0, 2, 10, 11);
        let long: Vec<(u16, u16)> = m
            .endpoints_where(Reach::ran_long)
            .iter()
            .map(|&(k, _)| k)
            .collect();
        assert_eq!(long, [(0, 1), (0, 2)]);
        let short = m.endpoints_where(Reach::stopped_short);
        assert_eq!(short.len(), 1, "{short:?}");
        let ((p, t), r) = short[0];
        assert_eq!((p, t), (0, 1));
        assert_eq!(
            (
                r.completions,
                r.short,
                r.long,
                r.completion_tokens,
                r.asked_tokens
            ),
            (10, 2, 8, 2 * 99 + 8 * 120, 1000)
        );
        assert!(r.ran_long());
        let r0 = m.endpoints_where(|r| r.completions > 0)[0].1;
        assert_eq!((r0.short, r0.completion_tokens), (1, 940));
        assert!(!r0.stopped_short());
        assert!(!Reach::default().stopped_short());
    }

    /// An endpoint is said to be unmetered once more than a tenth of its
    /// successful answers reported no usage.
    #[test]
    fn answers_without_usage_count_past_a_tenth() {
        let mut m = LiveMetrics::default();
        for i in 0..10 {
            m.succeeded(0, 0, i != 0);
            m.succeeded(0, 1, i >= 2);
            m.succeeded(1, 0, false);
        }
        let unmetered = m.endpoints_where(Reach::unmetered);
        let found: Vec<((u16, u16), u64, u64)> = unmetered
            .iter()
            .map(|&(k, r)| (k, r.unmetered, r.successes))
            .collect();
        assert_eq!(found, [((0, 1), 2, 10), ((1, 0), 10, 10)]);
        assert!(!Reach::default().unmetered());
    }
}
