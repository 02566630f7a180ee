//! Scheduling policies: pure decision logic.
//!
//! A [`Policy`] sees a read-only [`SystemView`] of the scheduler (tier
//! loads, the current time, whether a call is still waiting) and returns
//! [`Decision`]s. It never sleeps, does no I/O and reads no clock: the
//! discrete-event simulator and the live executor are two drivers of the
//! same policy objects, which is what makes an offline winner meaningful
//! live.
//!
//! Driver protocol. The shared runtime ([`crate::runtime`]) implements it
//! for both drivers (the simulator and the live executor); anything else
//! that drives a `Policy` must honour all of it:
//! 1. **One event at a time.** Handle driver events (a timer, an ended
//!    attempt, an arrival) one by one, in time order, each followed by one
//!    [`Policy::dispatch`]. Within an event: first
//!    [`Policy::on_attempt_end`] for every attempt that ended, whatever the
//!    outcome (cancelled and rate-limited ones too: they free capacity;
//!    report cancelled attempts inline, at the moment they are cancelled);
//!    then [`Policy::on_ready`] for every call that became ready (new, or a
//!    retry); then `dispatch`.
//! 2. **Apply each `Start` before the next call into the policy.**
//!    `on_ready` and `dispatch` reserve nothing: a `Start` is emitted only
//!    for capacity the view reported free, and the view must show it taken
//!    (slot, client-side token, in-flight count) before the policy is asked
//!    anything else. After applying a `Start`, call [`Policy::on_started`];
//!    for a `Start` that could not be applied (the call stopped waiting
//!    meanwhile), call [`Policy::recheck`].
//! 3. **Keep every `WakeAt`.** `WakeAt(t)` asks for a `dispatch` at `t`
//!    (token refill, hedge deadline). A policy asks for each time once, not
//!    again on every pass, so a driver that drops one may stall a queue.
//! 4. **Report no time earlier than requested.** At the wake-up, the view's
//!    `now()` must be at least `t` and never go backwards. A driver on a
//!    real clock converts the clock first and then clamps (timers wake a
//!    little late; reporting the requested time itself is allowed).
//!
//! Decisions are applied in order. `dispatch` skips its pass when nothing it
//! depends on changed, so calling it after every event costs little.
//!
//! Per-tier queues live here: a call that cannot start at once waits in the
//! queue of the cheapest tier, ordered by workflow age (`fifo_cheapest`) or by
//! the DAG score; escalation moves queued calls to faster tiers.

pub mod catalogue;
pub mod estimates;
pub mod params;
mod tier_queue;

use std::cmp::Ordering;

pub use params::{Ablations, Constants, Mechanisms, PolicyKind};

use crate::bucket::TokenBucket;
use crate::minheap::MinHeap;
use crate::units::{Money, SimDuration, SimTime};
use estimates::Window;
use tier_queue::TierQueue;

/// The driver's handle of a call (one node of one workflow). Opaque to policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallKey {
    /// Workflow slot.
    pub slot: u32,
    /// Slot generation (detects reuse).
    pub generation: u32,
    /// Node index within the workflow.
    pub node: u32,
}

/// The driver's handle of one attempt. Opaque to policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttemptKey {
    /// Attempt slot.
    pub slot: u32,
    /// Slot generation.
    pub generation: u32,
}

/// Static facts about a tier, given at construction.
#[derive(Clone, Debug, PartialEq)]
pub struct TierInfo {
    /// Latency multiplier (smaller is faster).
    pub latency_scale: f64,
    /// Price per call, per million input tokens, per million output tokens.
    pub prices: (f64, f64, f64),
    /// Models: (price multiplier, latency multiplier); the first is the default.
    pub models: Vec<(f64, f64)>,
    /// Each model's quality curve `(midpoint, slope)`, if it has one.
    pub quality: Vec<Option<(f64, f64)>>,
    /// Whether the client enforces a tokens-per-minute limit here (the
    /// view then reports the bucket in [`TierLoad::token_bucket`]).
    pub token_limit: bool,
    /// Whether the client enforces a request-rate limit here (only then
    /// may the view report finite [`TierLoad::tokens`] on a tier with a
    /// free slot).
    pub request_limit: bool,
}

impl TierInfo {
    /// Price of one attempt of `call` with `model` on this tier.
    pub fn price(&self, model: u8, input_tokens: u32, output_tokens: u32) -> f64 {
        let (c, i, o) = self.prices;
        (c + i * input_tokens as f64 / 1e6 + o * output_tokens as f64 / 1e6)
            * self.models[model as usize].0
    }

    /// The model whose answers to calls of difficulty `d` are accepted
    /// most often (a model without a curve accepts all; ties go to the
    /// lower index): where a rejected answer is redone.
    pub fn best_model(&self, d: f64) -> u8 {
        let accept = |m: usize| {
            self.quality
                .get(m)
                .copied()
                .flatten()
                .map_or(1.0, |(mid, slope)| {
                    crate::scenario::QualityCurve {
                        midpoint: mid,
                        slope,
                    }
                    .accept(d)
                })
        };
        let mut best = 0;
        for m in 1..self.models.len() {
            if accept(m) > accept(best) {
                best = m;
            }
        }
        best as u8
    }

    /// The model with the lowest price multiplier (ties go to the lower
    /// index): where model routing sends easy calls.
    pub fn cheapest_model(&self) -> u8 {
        (0..self.models.len())
            .min_by(|&a, &b| {
                self.models[a]
                    .0
                    .total_cmp(&self.models[b].0)
                    .then(a.cmp(&b))
            })
            .unwrap_or(0) as u8
    }
}

/// Static facts about a node type.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeTypeInfo {
    /// Prior median service time at tier scale 1 (ms), until online data exists.
    pub prior_p50_ms: f64,
    /// Prior 95th percentile (ms).
    pub prior_p95_ms: f64,
}

/// What a policy is built from.
#[derive(Clone, Debug)]
pub struct PolicySetup {
    /// Which policy.
    pub kind: PolicyKind,
    /// Ablation switches.
    pub ablations: Ablations,
    /// Tunable constants.
    pub constants: Constants,
    /// Providers, each a list of tiers.
    pub providers: Vec<Vec<TierInfo>>,
    /// Node types (indexed like the driver's table).
    pub node_types: Vec<NodeTypeInfo>,
    /// Some call's answer can be rejected
    /// ([`Scenario::redos_possible`](crate::scenario::Scenario::redos_possible)),
    /// and its redo then runs on its tier's best model.
    pub redos_possible: bool,
}

/// A call that has become ready (or ready again after a retry backoff).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReadyCall {
    /// Handle.
    pub call: CallKey,
    /// Workflow id (arrival order); ties in priority break by it.
    pub workflow_id: u64,
    /// Provider index.
    pub provider: u16,
    /// Node type index.
    pub node_type: u16,
    /// When the workflow arrived.
    pub workflow_arrival: SimTime,
    /// Expected remaining critical path from this call to the workflow's end.
    pub remaining_cp: SimDuration,
    /// How long this call can be delayed without delaying the workflow.
    pub slack: SimDuration,
    /// Keyed per-call difficulty in [0, 1) (model routing).
    pub difficulty: f64,
    /// What the workflow has spent so far.
    pub workflow_spent: Money,
    /// Prompt tokens.
    pub input_tokens: u32,
    /// Completion tokens.
    pub output_tokens: u32,
    /// Answers rejected so far: a call with redos goes to the best model.
    pub redos: u8,
}

impl ReadyCall {
    /// What a tokens-per-minute limit reserves for it: prompt tokens plus
    /// `max_tokens`.
    pub fn reserved_tokens(&self) -> u64 {
        self.input_tokens as u64 + self.output_tokens as u64
    }
}

/// Load of one tier as the driver sees it now. The rate-limit fields
/// matter only while a slot is free: a full tier may report `tokens` 0,
/// `next_token_at` now and no `token_bucket`, since nothing can start there.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TierLoad {
    /// Attempts in flight.
    pub in_flight: u32,
    /// Slots.
    pub slots: u32,
    /// Rate-limit tokens available now (`u32::MAX` when unlimited or
    /// enforced by the provider, which the client cannot see; finite on a
    /// tier with a free slot only under [`TierInfo::request_limit`]).
    pub tokens: u32,
    /// When a token beyond the `tokens` available now arrives: the
    /// earliest start once they are all taken.
    pub next_token_at: SimTime,
    /// A copy of the client-enforced tokens-per-minute bucket, if any: a
    /// call starts only when it admits the call's reserved tokens.
    pub token_bucket: Option<TokenBucket>,
}

impl TierLoad {
    /// Attempts that could start now, as far as slots and the request
    /// bucket go.
    pub fn free(&self) -> u32 {
        self.slots.saturating_sub(self.in_flight).min(self.tokens)
    }

    /// Whether the tokens-per-minute limit admits `cost` tokens at `now`.
    pub fn admits(&self, now: SimTime, cost: u64) -> bool {
        self.token_bucket.is_none_or(|b| b.admits(now, cost))
    }
}

/// The read-only state a policy decides on.
pub trait SystemView {
    /// False in the copy of the engine compiled for scenarios without
    /// optional mechanisms (see `runtime::Variant`): no hedging, escalation,
    /// model routing, in-flight cap or rejected answer. A view that says
    /// false promises that, and the policy's checks of them are then
    /// constants.
    const MECHANISMS: bool = true;
    /// The current time.
    fn now(&self) -> SimTime;
    /// Load of one tier.
    fn tier_load(&self, provider: u16, tier: u16) -> TierLoad;
    /// Free slots of one tier, rate limits aside: `tier_load(..).free()`
    /// where the client enforces no rate limit, which is all a plain
    /// policy reads (a driver may answer it without working out buckets).
    fn free_slots(&self, provider: u16, tier: u16) -> u32 {
        let load = self.tier_load(provider, tier);
        load.slots.saturating_sub(load.in_flight)
    }
    /// Remote attempts in flight, all providers.
    fn remote_in_flight(&self) -> u32;
    /// True while `call` still needs a start (not running, done or dead).
    fn call_waiting(&self, call: CallKey) -> bool;
    /// True while `attempt` is running.
    fn attempt_running(&self, attempt: AttemptKey) -> bool;
    /// Current facts of a waiting or running call (its workflow's spend
    /// changes while it waits).
    fn call_facts(&self, call: CallKey) -> ReadyCall;
}

/// Why a call was started where it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StartKind {
    /// The call's first placement.
    Primary,
    /// Moved from a slower tier's queue to a faster tier.
    Escalated,
    /// A duplicate of a running attempt on a faster tier.
    Hedge,
}

impl StartKind {
    /// Lower-case name for traces.
    pub fn name(self) -> &'static str {
        match self {
            StartKind::Primary => "primary",
            StartKind::Escalated => "escalated",
            StartKind::Hedge => "hedge",
        }
    }
}

/// What a policy asks the driver to do.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Decision {
    /// Start an attempt of `call` on (`provider`, `tier`) with `model`.
    Start {
        /// The call.
        call: CallKey,
        /// Provider index.
        provider: u16,
        /// Tier index.
        tier: u16,
        /// Model index on that tier.
        model: u8,
        /// Why.
        kind: StartKind,
    },
    /// Call `dispatch` again at this time.
    WakeAt(SimTime),
}

/// An attempt the driver just started (after a `Start`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttemptStarted {
    /// The call.
    pub call: CallKey,
    /// The attempt's handle.
    pub attempt: AttemptKey,
    /// Where.
    pub provider: u16,
    /// Where.
    pub tier: u16,
    /// Model used.
    pub model: u8,
    /// The call's facts, as given to `on_ready`.
    pub ready: ReadyCall,
    /// Why it started.
    pub kind: StartKind,
}

/// An attempt that ended.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttemptEnded {
    /// Where.
    pub provider: u16,
    /// Where.
    pub tier: u16,
    /// Node type.
    pub node_type: u16,
    /// Time from ready to start.
    pub queue_wait: SimDuration,
    /// Time from start to end.
    pub service: SimDuration,
    /// True for a successful result.
    pub success: bool,
    /// False for a cancelled or rate-limited attempt: it freed capacity,
    /// but its times describe neither the tier's service nor its queue.
    pub measured: bool,
    /// Why it started.
    pub kind: StartKind,
}

/// A queued call; its tier queue pops the smallest `(k1, k2, seq)`. Entries are
/// small on purpose: the facts of the call are read from the view.
///
/// The three keys are packed into one `u128` (k1, then k2 in 24 bits,
/// then seq in 40), so that comparing two entries is one integer
/// comparison and an entry is 32 bytes: a queue's pushes are sorted and
/// merged in batches of hundreds (see [`TierQueue`]).
/// k2 is a workflow id (at most [`MAX_WORKFLOWS`](crate::scenario::MAX_WORKFLOWS)
/// < 2^24) and seq counts the pushes of one run.
#[derive(Clone, Copy, Debug)]
struct Queued {
    key: u128,
    call: CallKey,
}

// Every workflow id of a run fits the queue key's k2 field.
const _: () = assert!(crate::scenario::MAX_WORKFLOWS < 1 << Queued::K2_BITS);

impl Queued {
    const K2_BITS: u32 = 24;
    const SEQ_BITS: u32 = 40;

    fn new(k1: u64, k2: u64, seq: u64, call: CallKey) -> Queued {
        assert!(
            k2 < 1 << Self::K2_BITS && seq < 1 << Self::SEQ_BITS,
            "queue key out of range: workflow id {k2} (limit 2^24), push {seq} (limit 2^40)"
        );
        let low = (k2 << Self::SEQ_BITS) | seq;
        Queued {
            key: (u128::from(k1) << 64) | u128::from(low),
            call,
        }
    }
}

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        self.key == o.key
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> Ordering {
        // Reversed: the tier queue pops the greatest and we want the smallest key.
        o.key.cmp(&self.key)
    }
}

/// A hedge deadline; the attempt it is for waits in `Policy::armed`, so
/// that heap entries stay small.
#[derive(Clone, Copy, Debug)]
struct HedgeTimer {
    at: SimTime,
    seq: u64,
    armed: u32,
}

impl PartialEq for HedgeTimer {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for HedgeTimer {}
impl PartialOrd for HedgeTimer {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for HedgeTimer {
    fn cmp(&self, o: &Self) -> Ordering {
        self.at.with_seq(self.seq).cmp(&o.at.with_seq(o.seq))
    }
}

/// Maps a score (higher first) to a key that sorts ascending.
fn desc_key(score: f64) -> u64 {
    !estimates::order_key(score)
}

/// Every policy, parameterised by the mechanisms it runs.
#[derive(Debug)]
pub struct Policy {
    mech: Mechanisms,
    c: Constants,
    /// Every provider's tiers in one array (provider `p`'s are
    /// `tiers[provs[p].first..][..provs[p].len]`): a dispatch pass walks it
    /// without nested vectors.
    tiers: Vec<TierState>,
    provs: Vec<ProviderTiers>,
    node_types: Vec<NodeTypeInfo>,
    /// Service-time window per (node type, provider tier slot).
    service: Vec<Vec<Window>>,
    hedges: MinHeap<HedgeTimer>,
    /// The attempts of pending hedge timers, by `HedgeTimer::armed`, and
    /// the free entries of that table.
    armed: Vec<AttemptStarted>,
    armed_free: Vec<u32>,
    /// Due hedges that found no capacity yet, as indices into `armed`
    /// (an entry is freed when it leaves this list).
    hedges_due: Vec<u32>,
    /// Per provider, whether a tier has room in this pass's hedge step.
    hedge_room: Vec<bool>,
    seq: u64,
    /// Entries in all queues (dead ones included until popped).
    queued: usize,
    /// Whether any mechanism reads the online estimates.
    learns: bool,
    /// A call may be a redo, which runs on its tier's best model (see
    /// [`TierInfo::best_model`]): a queue head's facts are then read when
    /// it starts, as they are with model routing.
    redos_possible: bool,
    /// Something a dispatch pass depends on changed since the last pass:
    /// capacity was freed, a call was queued, or a driver asked for a recheck.
    dirty: bool,
    /// The earliest wake-up asked for since the last pass (token refill,
    /// hedge deadline); NEVER when none.
    next_wake: SimTime,
    /// The earliest token-refill wake-up the last pass asked for (or
    /// confirmed): `next_wake` without the hedge deadlines.
    pass_wake: SimTime,
    /// Scratch: hedge deadlines taken off the heap by `dead_hedges_only`.
    due_scratch: Vec<HedgeTimer>,
    /// Dispatch passes made (skipped ones not counted).
    passes: u64,
    /// Run every pass, skipping none, and every step of a pass and of
    /// `on_ready` (tests compare the two modes).
    exhaustive: bool,
    /// Some tier has a client-enforced request-rate limit (without one, no
    /// pass can leave a tier blocked by its request tokens).
    request_limited: bool,
    /// Some tier's `tpm_blocked` is set (most scenarios have no token
    /// limits, and their passes skip the scan).
    tpm_any_blocked: bool,
    /// Only the queues can start calls: no escalation, hedging or
    /// in-flight cap, and no client-enforced rate limit anywhere. Then a
    /// tier's free slots are all a decision reads of it, nothing can leave
    /// a tier waiting for a token, a pass only serves each queue
    /// (`plain_pass`) as the full pass would with every other step idle,
    /// and a ready call looks only for a free slot.
    plain: bool,
}

/// One tier as the policy keeps it: its facts, its queue and wait
/// estimates, and the scratch of one dispatch pass.
#[derive(Debug)]
struct TierState {
    info: TierInfo,
    /// `info.cheapest_model()`, found once.
    cheapest_model: u8,
    /// Calls waiting for this tier.
    queue: TierQueue<Queued>,
    /// Queue-wait window.
    waits: Window,
    /// Scratch: free capacity during one dispatch.
    free: u32,
    /// Scratch: the load at the start of one dispatch pass (the view does
    /// not change until the pass's decisions are applied).
    load: TierLoad,
    /// The token wake-up last asked for: drivers honour every wake-up
    /// until it comes, so asking again for the same time is moot.
    token_wake: SimTime,
    /// Scratch: when the tokens-per-minute limit admits the call this pass
    /// could not start here (NEVER when none waited).
    tpm_blocked: SimTime,
    /// The tokens-per-minute wake-up last asked for.
    tpm_wake: SimTime,
}

/// The load a pass records for a tier it does not look at: no room, and
/// no rate limit to wake up for.
const NOT_LOADED: TierLoad = TierLoad {
    in_flight: 0,
    slots: 0,
    tokens: u32::MAX,
    next_token_at: SimTime::ZERO,
    token_bucket: None,
};

/// Where one provider's tiers are in `Policy::tiers`, and their orders.
#[derive(Debug)]
struct ProviderTiers {
    first: usize,
    len: usize,
    /// Tier indices, cheapest (by per-call price) first.
    by_price: Vec<u16>,
    /// Tier indices, fastest first.
    by_speed: Vec<u16>,
    /// Whether any of its tiers has a client-enforced token limit.
    token_limited: bool,
}

impl Policy {
    /// Builds a policy.
    pub fn new(setup: PolicySetup) -> Policy {
        let mech = Mechanisms::of(setup.kind, &setup.ablations);
        let window = setup.constants.stats_window as usize;
        let sort_by = |tiers: &Vec<TierInfo>, f: &dyn Fn(&TierInfo) -> f64| {
            let mut idx: Vec<u16> = (0..tiers.len() as u16).collect();
            idx.sort_by(|&a, &b| {
                f(&tiers[a as usize])
                    .total_cmp(&f(&tiers[b as usize]))
                    .then(a.cmp(&b))
            });
            idx
        };
        let max_tiers = setup.providers.iter().map(Vec::len).max().unwrap_or(0);
        let mut provs = Vec::with_capacity(setup.providers.len());
        let mut tiers = Vec::new();
        for p in &setup.providers {
            provs.push(ProviderTiers {
                first: tiers.len(),
                len: p.len(),
                by_price: sort_by(p, &|x| x.prices.0 + x.prices.1 + x.prices.2),
                by_speed: sort_by(p, &|x| x.latency_scale),
                token_limited: p.iter().any(|t| t.token_limit),
            });
            tiers.extend(p.iter().map(|info| TierState {
                info: info.clone(),
                cheapest_model: info.cheapest_model(),
                queue: TierQueue::new(),
                waits: Window::new(window),
                free: 0,
                load: TierLoad::default(),
                token_wake: SimTime::NEVER,
                tpm_blocked: SimTime::NEVER,
                tpm_wake: SimTime::NEVER,
            }));
        }
        Policy {
            mech,
            tiers,
            provs,
            service: setup
                .node_types
                .iter()
                .map(|_| (0..max_tiers.max(1)).map(|_| Window::new(window)).collect())
                .collect(),
            dirty: true,
            next_wake: SimTime::NEVER,
            pass_wake: SimTime::NEVER,
            due_scratch: Vec::new(),
            passes: 0,
            exhaustive: false,
            tpm_any_blocked: false,
            request_limited: setup.providers.iter().flatten().any(|t| t.request_limit),
            plain: !mech.escalation
                && !mech.hedging
                && !mech.in_flight_cap
                && !setup
                    .providers
                    .iter()
                    .flatten()
                    .any(|t| t.request_limit || t.token_limit),
            c: setup.constants,
            node_types: setup.node_types,
            hedges: MinHeap::new(),
            armed: Vec::new(),
            armed_free: Vec::new(),
            hedges_due: Vec::new(),
            hedge_room: Vec::new(),
            seq: 0,
            queued: 0,
            learns: mech.escalation || mech.hedging,
            redos_possible: setup.redos_possible,
        }
    }

    /// The mechanisms this policy runs.
    pub fn mechanisms(&self) -> Mechanisms {
        self.mech
    }

    /// The constants in force.
    pub fn constants(&self) -> &Constants {
        &self.c
    }

    /// Backoff before retry number `retry` (1-based): `retry_backoff_ms * 2^(retry-1)`.
    pub fn retry_delay(&self, retry: u32) -> SimDuration {
        SimDuration::from_ms(
            self.c.retry_backoff_ms * 2f64.powi(retry.saturating_sub(1).min(30) as i32),
        )
    }

    /// Dispatch passes made so far (passes skipped as idle not counted).
    pub fn passes(&self) -> u64 {
        self.passes
    }

    /// Calls waiting in the queue of (provider, tier), including entries
    /// whose call died (they are dropped lazily).
    pub fn queued(&self, provider: u16, tier: u16) -> usize {
        self.tier(provider, tier).queue.len()
    }

    /// The index in `tiers` of (provider, tier).
    #[inline]
    fn gid(&self, provider: u16, tier: u16) -> usize {
        self.provs[provider as usize].first + tier as usize
    }

    #[inline]
    fn tier(&self, provider: u16, tier: u16) -> &TierState {
        &self.tiers[self.gid(provider, tier)]
    }

    /// Median service estimate (ms) of `node_type` on (provider, tier).
    pub fn p50_service_ms(&mut self, node_type: u16, provider: u16, tier: u16) -> f64 {
        let info = &self.node_types[node_type as usize];
        let scale = self.tier(provider, tier).info.latency_scale;
        self.service[node_type as usize][tier as usize].p50_or(info.prior_p50_ms * scale)
    }

    /// 95th-percentile service estimate (ms).
    pub fn p95_service_ms(&mut self, node_type: u16, provider: u16, tier: u16) -> f64 {
        let info = &self.node_types[node_type as usize];
        let scale = self.tier(provider, tier).info.latency_scale;
        self.service[node_type as usize][tier as usize].p95_or(info.prior_p95_ms * scale)
    }

    /// 95th-percentile queue-wait estimate (ms) of (provider, tier); 0 before data.
    pub fn p95_wait_ms(&mut self, provider: u16, tier: u16) -> f64 {
        let g = self.gid(provider, tier);
        self.tiers[g].waits.p95_or(0.0)
    }

    /// The queue priority key of a call: smaller goes first.
    fn key(&self, r: &ReadyCall) -> (u64, u64) {
        if self.mech.dag_priority {
            // score = alpha*rcp + beta/(1+slack) + gamma*age. Age is
            // now - arrival for every entry alike, so gamma*now cancels in
            // comparisons and -gamma*arrival keeps the order exact over time.
            let score = self.c.alpha * r.remaining_cp.as_secs()
                + self.c.beta / (1.0 + r.slack.as_secs())
                - self.c.gamma * r.workflow_arrival.as_secs();
            (desc_key(score), r.workflow_id)
        } else {
            (r.workflow_arrival.0, r.workflow_id)
        }
    }

    /// The model a call uses on `tier`.
    fn model_for(&self, r: &ReadyCall, provider: u16, tier: u16) -> u8 {
        let ts = self.tier(provider, tier);
        let info = &ts.info;
        if r.redos > 0 {
            return info.best_model(r.difficulty);
        }
        if !self.mech.model_routing {
            return 0;
        }
        let cheapest = ts.cheapest_model;
        let default_price = info.price(0, r.input_tokens, r.output_tokens);
        let over_budget = r.workflow_spent.as_dollars() + default_price > self.c.workflow_budget;
        if r.difficulty < self.c.routing_threshold || over_budget {
            cheapest
        } else {
            0
        }
    }

    fn within_budget(&self, r: &ReadyCall, provider: u16, tier: u16, model: u8) -> bool {
        if !self.mech.model_routing {
            return true;
        }
        let price = self
            .tier(provider, tier)
            .info
            .price(model, r.input_tokens, r.output_tokens);
        r.workflow_spent.as_dollars() + price <= self.c.workflow_budget
    }

    fn global_free<V: SystemView>(&self, view: &V) -> u32 {
        if V::MECHANISMS && self.mech.in_flight_cap {
            self.c.max_in_flight.saturating_sub(view.remote_in_flight())
        } else {
            u32::MAX
        }
    }

    /// A call became ready: start it on the cheapest tier that has free
    /// capacity and nobody queued, or queue it at the cheapest tier.
    /// Inlined, with the search under rate limits or a cap out of line.
    #[inline]
    pub fn on_ready<V: SystemView>(&mut self, view: &V, r: ReadyCall, out: &mut Vec<Decision>) {
        if !self.plain || self.exhaustive {
            self.on_ready_limited(view, r, out);
            return;
        }
        // What the general search comes to without rate limits or a cap
        // (an exhaustive run makes it, to check that): the cheapest tier
        // with a free slot and nobody queued takes the call.
        let p = r.provider;
        let pv = &self.provs[p as usize];
        for &t in &pv.by_price {
            if self.tiers[pv.first + t as usize].queue.is_empty() && view.free_slots(p, t) > 0 {
                self.start_ready::<V>(&r, t, out);
                return;
            }
        }
        self.enqueue(p, pv.by_price[0], r);
    }

    /// [`on_ready`](Self::on_ready) where rate limits or a cap may apply.
    /// Out of line: the plain search inlined beside it cost the research
    /// agent 0.5% more instructions; this way it costs a call.
    #[inline(never)]
    fn on_ready_limited<V: SystemView>(&mut self, view: &V, r: ReadyCall, out: &mut Vec<Decision>) {
        let p = r.provider;
        let pv = &self.provs[p as usize];
        let cheapest = pv.by_price[0];
        let cheapest_scale = self.tiers[pv.first + cheapest as usize].info.latency_scale;
        // Whether a tier that could take this call once queued is out of
        // tokens with slots to spare and had no queue to wake up for.
        let mut wake_needed = false;
        if self.global_free(view) > 0 {
            for &t in &pv.by_price {
                let ts = &self.tiers[pv.first + t as usize];
                if !ts.queue.is_empty() {
                    continue;
                }
                let load = view.tier_load(p, t);
                let admitted = !pv.token_limited || load.admits(view.now(), r.reserved_tokens());
                if load.free() > 0 && admitted {
                    // Taking the last token with slots to spare leaves the
                    // tier rate-blocked: a pass decides whether to wake up
                    // for its next token (always, under a token limit).
                    self.dirty |= (load.tokens == 1 && load.in_flight + 1 < load.slots)
                        || load.token_bucket.is_some();
                    self.start_ready::<V>(&r, t, out);
                    return;
                }
                let could_take = t == cheapest
                    || (V::MECHANISMS
                        && self.mech.escalation
                        && ts.info.latency_scale < cheapest_scale);
                wake_needed |=
                    could_take && load.in_flight < load.slots && (load.tokens == 0 || !admitted);
            }
        } else {
            // Rare: the in-flight cap binds. Let a pass sort it out.
            wake_needed = true;
        }
        // Every tier without a queue is full now (or the call would have
        // started), and a tier with a queue and room would have been served
        // by the last pass; so a pass can do something new with this call
        // only by waking up for a token.
        // Under a token limit the call may become a queue's head with a
        // different reservation, and so a different wake-up time: a pass
        // recomputes it.
        self.dirty |= wake_needed || pv.token_limited;
        self.enqueue(p, cheapest, r);
    }

    /// Starts ready call `r` on tier `t` of its provider, on the model
    /// it would use there, as its first placement.
    #[inline]
    fn start_ready<V: SystemView>(&self, r: &ReadyCall, t: u16, out: &mut Vec<Decision>) {
        // Without optional mechanisms a call has no redo and no routing.
        let model = if V::MECHANISMS {
            self.model_for(r, r.provider, t)
        } else {
            0
        };
        out.push(Decision::Start {
            call: r.call,
            provider: r.provider,
            tier: t,
            model,
            kind: StartKind::Primary,
        });
    }

    fn enqueue(&mut self, provider: u16, tier: u16, r: ReadyCall) {
        let (k1, k2) = self.key(&r);
        self.seq += 1;
        let g = self.gid(provider, tier);
        self.tiers[g]
            .queue
            .push(Queued::new(k1, k2, self.seq, r.call));
        self.queued += 1;
    }

    /// The driver started an attempt: arm its hedge timer if it qualifies.
    pub fn on_started<V: SystemView>(
        &mut self,
        _view: &V,
        s: AttemptStarted,
        start: SimTime,
        out: &mut Vec<Decision>,
    ) {
        if !self.mech.hedging || s.kind == StartKind::Hedge {
            return;
        }
        let p95 = self.p95_service_ms(s.ready.node_type, s.provider, s.tier);
        // Critical: the call cannot absorb a p95-sized delay without
        // delaying its workflow.
        if s.ready.slack.as_ms() >= p95 {
            return;
        }
        let at = start + SimDuration::from_ms(self.c.hedge_stretch * p95);
        self.seq += 1;
        let armed = match self.armed_free.pop() {
            Some(i) => {
                self.armed[i as usize] = s;
                i
            }
            None => {
                self.armed.push(s);
                (self.armed.len() - 1) as u32
            }
        };
        self.hedges.push(HedgeTimer {
            at,
            seq: self.seq,
            armed,
        });
        self.wake_at(at, out);
    }

    /// Asks the driver for a dispatch at `at`.
    fn wake_at(&mut self, at: SimTime, out: &mut Vec<Decision>) {
        self.next_wake = self.next_wake.min(at);
        out.push(Decision::WakeAt(at));
    }

    /// Makes the next [`dispatch`](Self::dispatch) run a full pass. A driver
    /// calls this when it could not apply a `Start` (the call stopped
    /// waiting meanwhile), so that the capacity the policy counted on for
    /// it is offered again.
    pub fn recheck(&mut self) {
        self.dirty = true;
    }

    /// Makes every [`dispatch`](Self::dispatch) run a full pass, skipping
    /// none, that reads every tier's load (a pass skips the loads of a
    /// provider with nothing queued and no due hedge) and runs every step
    /// (a `plain` policy's pass only serves the queues,
    /// and its [`on_ready`](Self::on_ready) only looks for a free slot).
    /// Decisions are the same either way (a pass, a load or a step is
    /// skipped only when it cannot change anything); this exists to check that.
    pub fn set_exhaustive(&mut self, on: bool) {
        self.exhaustive = on;
    }

    /// An attempt ended (any outcome: it freed capacity); learn from it if
    /// it was measured. `ended` gives its facts and is called only by a
    /// policy that learns: most learn nothing, and then the facts are not
    /// even gathered (gathered before the call, they cost M/M/c a dozen
    /// stores per attempt). Always inlined, the learning kept out of line.
    #[inline(always)]
    pub fn on_attempt_end(&mut self, ended: impl FnOnce() -> AttemptEnded) {
        self.dirty = true;
        if self.learns {
            let e = ended();
            if e.measured {
                self.learn(&e);
            }
        }
    }

    /// Adds a measured attempt's service time and queue wait to the estimates.
    #[inline(never)]
    fn learn(&mut self, e: &AttemptEnded) {
        if e.success {
            self.service[e.node_type as usize][e.tier as usize].push(e.service.as_ms());
        }
        if e.kind != StartKind::Hedge {
            let g = self.gid(e.provider, e.tier);
            self.tiers[g].waits.push(e.queue_wait.as_ms());
        }
    }

    /// Fills free capacity from the queues, escalates, hedges, and asks for
    /// wake-ups for token refills and hedge deadlines.
    ///
    /// Cheap to call after every event: when no capacity was freed, no call
    /// was queued and no requested wake-up time has come since the last
    /// pass, a pass would find exactly what that one found, and is skipped.
    /// So is a pass woken only by hedge deadlines of attempts that have
    /// ended since (most deadlines: an attempt usually ends before it).
    ///
    /// Inlined, so that a skipped pass costs its caller a few comparisons.
    #[inline]
    pub fn dispatch<V: SystemView>(&mut self, view: &V, out: &mut Vec<Decision>) {
        if !self.dirty && !self.exhaustive {
            let now = view.now();
            if now < self.next_wake {
                return;
            }
            // A wake-up time has come: only hedge deadlines of attempts
            // that have ended since may have woken this pass. Checked here
            // rather than in `pass`, whose frame is costly to set up: half
            // of the research agent's wake-ups are such deadlines.
            if now < self.pass_wake && self.dead_hedges_only(view) {
                return;
            }
        }
        self.pass(view, out);
    }

    /// A pass [`dispatch`](Self::dispatch) did not skip.
    #[inline(never)]
    fn pass<V: SystemView>(&mut self, view: &V, out: &mut Vec<Decision>) {
        self.passes += 1;
        self.dirty = false;
        self.next_wake = SimTime::NEVER;
        self.pass_wake = SimTime::NEVER;
        if self.queued == 0 && self.hedges.is_empty() && self.hedges_due.is_empty() {
            return;
        }
        if self.plain && !self.exhaustive {
            self.plain_pass(view, out);
            return;
        }
        if V::MECHANISMS && self.mech.hedging {
            // Taken first: a provider's loads are worked out only if it has
            // a due hedge or a queue.
            while let Some(t) = self.pop_due_deadline(view.now()) {
                self.hedges_due.push(t.armed);
            }
        }
        let mut global = self.global_free(view);
        // Whether some tier has fewer request tokens than free slots: only
        // such a tier can run out of tokens with slots to spare (step 3).
        let mut token_short = false;
        for p in 0..self.provs.len() {
            let (p16, first, len) = (p as u16, self.provs[p].first, self.provs[p].len);
            // Nothing queued at a provider and no hedge due there: this pass
            // cannot start anything on its tiers, nor ask to wake up for
            // them, so its loads (rate-limit buckets) are not worked out
            // (except in an exhaustive pass, which checks exactly that).
            let idle = !self.exhaustive
                && self.tiers[first..first + len]
                    .iter()
                    .all(|ts| ts.queue.is_empty())
                && !self
                    .hedges_due
                    .iter()
                    .any(|&i| self.armed[i as usize].provider == p16);
            for t in 0..len {
                let load = if idle {
                    NOT_LOADED
                } else {
                    view.tier_load(p16, t as u16)
                };
                token_short |= load.tokens < load.slots.saturating_sub(load.in_flight);
                let ts = &mut self.tiers[first + t];
                ts.free = load.free();
                ts.load = load;
            }
            // 1. Each tier serves its own queue, in order: a head its token
            //    limit does not admit yet blocks the calls behind it.
            let token_limited = self.provs[p].token_limited;
            for t in 0..len {
                let g = first + t;
                while self.tiers[g].free > 0 && global > 0 {
                    let q = if token_limited && self.tiers[g].load.token_bucket.is_some() {
                        let Some(q) = self.peek_live(view, g) else {
                            break;
                        };
                        let r = view.call_facts(q.call);
                        if !self.take_tokens(view.now(), g, r.reserved_tokens()) {
                            break;
                        }
                        self.tiers[g].queue.pop();
                        self.queued -= 1;
                        q
                    } else {
                        let Some(q) = self.pop_live(view, g) else {
                            break;
                        };
                        q
                    };
                    self.start_from_queue(view, q, p16, t as u16, out);
                    self.tiers[g].free -= 1;
                    global -= 1;
                }
            }
            // 2. Escalation: a faster tier with free capacity takes the head
            //    of a slower tier's queue when the time saved is worth it.
            if V::MECHANISMS && self.mech.escalation {
                global = self.escalate(view, p, global, out);
            }
        }
        if V::MECHANISMS && self.mech.hedging {
            self.hedge(view, global, out);
        }
        // 3. A tier that this pass leaves blocked only by its rate limit
        //    (out of tokens, slots to spare) gets a wake-up at its next token
        //    when a queued call or a due hedge could use it.
        //    Only a client-enforced request limit can leave a tier so, and
        //    only one that had fewer tokens than free slots: a tier with
        //    at least as many either still has tokens or has no slot left.
        if self.request_limited && (token_short || self.exhaustive) {
            self.ask_token_wakes(out);
        }
        // 4. The same for tokens-per-minute limits: a tier that left a call
        //    waiting for tokens wakes up when they suffice.
        if !std::mem::take(&mut self.tpm_any_blocked) {
            return;
        }
        for ts in &mut self.tiers {
            let at = std::mem::replace(&mut ts.tpm_blocked, SimTime::NEVER);
            if at == SimTime::NEVER {
                continue;
            }
            self.next_wake = self.next_wake.min(at);
            self.pass_wake = self.pass_wake.min(at);
            if ts.tpm_wake != at {
                ts.tpm_wake = at;
                out.push(Decision::WakeAt(at));
            }
        }
    }

    /// The pass of a [`plain`](Policy::plain) policy: step 1 alone, each
    /// tier serving its own queue into its free slots in the full pass's
    /// order. The full pass's other steps would do nothing: no escalation
    /// or hedge to start, no cap to bind, no rate limit to wake up for.
    fn plain_pass<V: SystemView>(&mut self, view: &V, out: &mut Vec<Decision>) {
        for p in 0..self.provs.len() {
            let (p16, first, len) = (p as u16, self.provs[p].first, self.provs[p].len);
            for t in 0..len {
                let g = first + t;
                if self.tiers[g].queue.is_empty() {
                    continue;
                }
                let mut free = view.free_slots(p16, t as u16);
                while free > 0 {
                    let Some(q) = self.pop_live(view, g) else {
                        break;
                    };
                    self.start_from_queue(view, q, p16, t as u16, out);
                    free -= 1;
                }
            }
        }
    }

    /// Step 1's start of queue head `q` on its own tier `t` of provider
    /// `p`: a primary start, on the model routing picks from the call's
    /// facts now (the default model without routing).
    #[inline]
    fn start_from_queue<V: SystemView>(
        &self,
        view: &V,
        q: Queued,
        p: u16,
        t: u16,
        out: &mut Vec<Decision>,
    ) {
        let model = if V::MECHANISMS && (self.mech.model_routing || self.redos_possible) {
            self.model_for(&view.call_facts(q.call), p, t)
        } else {
            0
        };
        out.push(Decision::Start {
            call: q.call,
            provider: p,
            tier: t,
            model,
            kind: StartKind::Primary,
        });
    }

    /// Step 3 of a pass: token wake-ups for tiers left request-rate-blocked.
    fn ask_token_wakes(&mut self, out: &mut Vec<Decision>) {
        for p in 0..self.provs.len() {
            let first = self.provs[p].first;
            for t in 0..self.provs[p].len {
                let ts = &self.tiers[first + t];
                let load = &ts.load;
                if load.tokens == u32::MAX {
                    continue;
                }
                let started = load.free() - ts.free;
                if load.tokens == started
                    && load.in_flight + started < load.slots
                    && self.could_use(p, t)
                {
                    let at = load.next_token_at;
                    self.next_wake = self.next_wake.min(at);
                    self.pass_wake = self.pass_wake.min(at);
                    let ts = &mut self.tiers[first + t];
                    if ts.token_wake != at {
                        ts.token_wake = at;
                        out.push(Decision::WakeAt(at));
                    }
                }
            }
        }
    }

    /// The earliest hedge deadline, taken off the heap if it has come.
    /// Always inlined: a pass and a wake-up's check for ended attempts'
    /// deadlines call it until it finds nothing due, and out of line those
    /// calls were 0.6% of the research agent's instructions under `full`.
    #[inline(always)]
    fn pop_due_deadline(&mut self, now: SimTime) -> Option<HedgeTimer> {
        if self.hedges.peek()?.at <= now {
            self.hedges.pop()
        } else {
            None
        }
    }

    /// Called with nothing changed since the last pass but time, and no
    /// token refill due: if every hedge deadline that has come is for an
    /// attempt that has ended, drops those deadlines, keeps the wake-ups
    /// the last pass asked for, and returns true.
    ///
    /// The pass this replaces would find what the last one found: the
    /// queues, capacity, estimates and spends are unchanged (an attempt's
    /// end makes the policy dirty, and so does anything queued that a pass
    /// could start), the due hedges it holds are still running and still
    /// find no room, and the ended attempts' deadlines would leave the due
    /// list again at its end, where removing them moves no other entry.
    /// Otherwise (a due deadline's attempt still runs) the deadlines go
    /// back on the heap, which pops them in the same (time, seq) order.
    #[inline(never)]
    fn dead_hedges_only<V: SystemView>(&mut self, view: &V) -> bool {
        let now = view.now();
        self.due_scratch.clear();
        while let Some(t) = self.pop_due_deadline(now) {
            self.due_scratch.push(t);
            if view.attempt_running(self.armed[t.armed as usize].attempt) {
                self.hedges.extend(self.due_scratch.drain(..));
                return false;
            }
        }
        for t in self.due_scratch.drain(..) {
            self.armed_free.push(t.armed);
        }
        self.next_wake = self
            .pass_wake
            .min(self.hedges.peek().map_or(SimTime::NEVER, |t| t.at));
        true
    }

    /// Takes `cost` reserved tokens from this pass's copy of tier `g`'s
    /// token bucket, if it has one and admits them; otherwise records when
    /// it will, for a wake-up, and returns false.
    fn take_tokens(&mut self, now: SimTime, g: usize, cost: u64) -> bool {
        let ts = &mut self.tiers[g];
        let Some(b) = ts.load.token_bucket.as_mut() else {
            return true;
        };
        if b.admits(now, cost) {
            b.take(now, cost);
            true
        } else {
            let at = b.ready_at(now, cost);
            ts.tpm_blocked = ts.tpm_blocked.min(at);
            self.tpm_any_blocked = true;
            false
        }
    }

    /// Whether tier `t` of provider `p` has work waiting for it: its own
    /// queue, a slower tier's queue it may take by escalation, or a due
    /// hedge it may run.
    fn could_use(&self, p: usize, t: usize) -> bool {
        let tiers = &self.tiers[self.provs[p].first..][..self.provs[p].len];
        let scale = tiers[t].info.latency_scale;
        !tiers[t].queue.is_empty()
            || (self.mech.escalation
                && tiers
                    .iter()
                    .any(|s| s.info.latency_scale > scale && !s.queue.is_empty()))
            || self.hedges_due.iter().any(|&i| {
                let h = &self.armed[i as usize];
                h.provider as usize == p && tiers[h.tier as usize].info.latency_scale >= scale
            })
    }

    fn pop_live<V: SystemView>(&mut self, view: &V, g: usize) -> Option<Queued> {
        while let Some(q) = self.tiers[g].queue.pop() {
            self.queued -= 1;
            if view.call_waiting(q.call) {
                return Some(q);
            }
        }
        None
    }

    fn peek_live<V: SystemView>(&mut self, view: &V, g: usize) -> Option<Queued> {
        while let Some(q) = self.tiers[g].queue.peek() {
            if view.call_waiting(q.call) {
                return Some(*q);
            }
            self.tiers[g].queue.pop();
            self.queued -= 1;
        }
        None
    }

    fn escalate<V: SystemView>(
        &mut self,
        view: &V,
        p: usize,
        mut global: u32,
        out: &mut Vec<Decision>,
    ) -> u32 {
        let (p16, first, len) = (p as u16, self.provs[p].first, self.provs[p].len);
        for rank in 0..len {
            let fast = self.provs[p].by_speed[rank];
            let f = first + fast as usize;
            while self.tiers[f].free > 0 && global > 0 {
                // The best-priority head among strictly slower tiers.
                let mut best: Option<(usize, Queued)> = None;
                for slower in rank + 1..len {
                    let s = first + self.provs[p].by_speed[slower] as usize;
                    if self.tiers[s].info.latency_scale <= self.tiers[f].info.latency_scale {
                        continue;
                    }
                    if let Some(q) = self.peek_live(view, s)
                        && best.is_none_or(|(_, b)| q.cmp(&b) == Ordering::Greater)
                    {
                        best = Some((s, q));
                    }
                }
                let Some((s, q)) = best else { break };
                let r = view.call_facts(q.call);
                if !self.worth_escalating(&r, p16, (s - first) as u16, fast)
                    || !self.take_tokens(view.now(), f, r.reserved_tokens())
                {
                    break;
                }
                self.tiers[s].queue.pop();
                self.queued -= 1;
                // Tier `s` stopped serving its queue with slots to spare only
                // because its token limit did not admit this head; the next
                // head reserves other tokens, so the next pass looks again.
                if self.tiers[s].free > 0 && self.provs[p].token_limited {
                    self.dirty = true;
                }
                let model = self.model_for(&r, p16, fast);
                out.push(Decision::Start {
                    call: q.call,
                    provider: p16,
                    tier: fast,
                    model,
                    kind: StartKind::Escalated,
                });
                self.tiers[f].free -= 1;
                global -= 1;
            }
        }
        global
    }

    /// Escalate from `slow` to `fast` when the expected completion time
    /// saved (p95 queue wait + p50 service on each tier) is at least
    /// `escalation_threshold_s` and worth the price difference at
    /// `time_value_per_s` dollars per second.
    pub fn worth_escalating(&mut self, r: &ReadyCall, p: u16, slow: u16, fast: u16) -> bool {
        let model_slow = self.model_for(r, p, slow);
        let model_fast = self.model_for(r, p, fast);
        if !self.within_budget(r, p, fast, model_fast) {
            return false;
        }
        let expected_slow = self.p95_wait_ms(p, slow) + self.p50_service_ms(r.node_type, p, slow);
        // The fast tier has free capacity now: no wait.
        let expected_fast = self.p50_service_ms(r.node_type, p, fast);
        let saved_s = (expected_slow - expected_fast) / 1000.0;
        let price_delta =
            self.tier(p, fast)
                .info
                .price(model_fast, r.input_tokens, r.output_tokens)
                - self
                    .tier(p, slow)
                    .info
                    .price(model_slow, r.input_tokens, r.output_tokens);
        saved_s >= self.c.escalation_threshold_s && saved_s * self.c.time_value_per_s >= price_delta
    }

    /// Starts due hedges (taken off the deadline heap at the pass's start)
    /// where a tier no slower than their attempt's has room.
    fn hedge<V: SystemView>(&mut self, view: &V, mut global: u32, out: &mut Vec<Decision>) {
        let now = view.now();
        self.hedge_room.clear();
        if !self.hedges_due.is_empty() {
            for pv in &self.provs {
                self.hedge_room.push(has_room(&self.tiers, pv));
            }
        }
        let mut i = 0;
        while i < self.hedges_due.len() {
            let armed = self.hedges_due[i];
            let s = &self.armed[armed as usize];
            if !view.attempt_running(s.attempt) {
                self.armed_free.push(self.hedges_due.swap_remove(i));
                continue;
            }
            let (call, provider) = (s.call, s.provider);
            let p = provider as usize;
            // No tier of its provider has room: no target (and no token
            // taken), as the search below would find.
            if global == 0 || !self.hedge_room[p] {
                i += 1;
                continue;
            }
            let cost = s.ready.reserved_tokens();
            let first = self.provs[p].first;
            let current = self.tiers[first + s.tier as usize].info.latency_scale;
            // The fastest tier with free capacity, if not slower than the current one.
            let mut target = None;
            for rank in 0..self.provs[p].len {
                let t = self.provs[p].by_speed[rank];
                let g = first + t as usize;
                if self.tiers[g].info.latency_scale <= current
                    && self.tiers[g].free > 0
                    && self.take_tokens(now, g, cost)
                {
                    target = Some(t);
                    break;
                }
            }
            match target {
                Some(t) => {
                    let ready = &self.armed[armed as usize].ready;
                    let model = self.model_for(ready, provider, t);
                    if self.within_budget(ready, provider, t, model) {
                        out.push(Decision::Start {
                            call,
                            provider,
                            tier: t,
                            model,
                            kind: StartKind::Hedge,
                        });
                        self.tiers[first + t as usize].free -= 1;
                        global -= 1;
                        self.hedge_room[p] = has_room(&self.tiers, &self.provs[p]);
                    }
                    self.armed_free.push(self.hedges_due.swap_remove(i));
                }
                None => i += 1,
            }
        }
        // Every hedge deadline was asked for when its attempt started.
        if let Some(top) = self.hedges.peek() {
            self.next_wake = self.next_wake.min(top.at);
        }
    }
}

/// Whether any of the provider's tiers has a free slot left in this pass.
fn has_room(tiers: &[TierState], pv: &ProviderTiers) -> bool {
    tiers[pv.first..pv.first + pv.len]
        .iter()
        .any(|t| t.free > 0)
}

#[cfg(test)]
mod tests;
