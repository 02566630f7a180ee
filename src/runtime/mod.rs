//! The workflow runtime: the state machine of workflows, nodes and
//! attempts that both drivers share.
//!
//! Everything here is clock-independent bookkeeping: arrivals, iteration
//! expansion, readiness and slack, local pools, applying the policy's
//! decisions, booking starts (slots, the client-side bucket), release,
//! cost and waste, hedge winner and loser, retries and backoff, the
//! DecideNext stop rule, failure and cancellation, per-workflow records and
//! the metrics reduction. A [`Driver`] supplies time and outcomes: the
//! simulator ([`crate::sim`]) from its event queue and keyed draws, the live
//! executor ([`crate::live`]) from a real clock and HTTP. The [`Policy`] is the same
//! object under both.
//!
//! ```text
//!   driver ──on_timer / on_attempt_end(now, ..)──▶ Runtime ──▶ Policy
//!      ▲                                              │
//!      └──── send / cancel / set_timer ◀──────────────┘
//! ```
//!
//! Each entry point handles one event and then runs the policy's dispatch,
//! so a driver only has to deliver events one at a time, in time order,
//! with a time no earlier than the last one.

mod driver;

pub use driver::{AttemptReport, Driver, SendAttempt, Timer, TokenUsage};

use std::collections::VecDeque;
use std::marker::PhantomData;

use crate::metrics::{
    Observer, Place, RunResult, Summary, TierRow, TraceEvent, TraceKind, WorkflowRecord,
};
use crate::policy::{
    AttemptEnded, AttemptKey, AttemptStarted, CallKey, Decision, NodeTypeInfo, Policy, PolicySetup,
    ReadyCall, StartKind, SystemView, TierInfo, TierLoad,
};
use crate::provider::{
    AttemptIds, DrawSpec, Limit, Outcome, PrefixUse, TierModel, draw_latency_ms,
};
use crate::rng::{Keyer, Stream, keyed, unit};
use crate::scenario::{Arrivals, Dist, Enforcer, Sampler, Scenario, Template};
use crate::stats::{self, Samples};
use crate::units::{Money, SimDuration, SimTime};
use crate::workload::{Block, BlockNode, CompiledWorkload, TypeFacts};

/// Which copy of the engine (the runtime and the policy's hooks it calls) a
/// run uses. Every check of an optional mechanism is written
/// `F::MECHANISMS && flag`: in the [`QueuesOnly`] copy it is the constant
/// `false` and compiles away, with the code it guards. A scenario that uses
/// none of them ([`uses_optional_mechanisms`]) runs there, which makes
/// M/M/c, fork-join and the research agent under `fifo_cheapest` and
/// `dag_cheapest` 3–6% faster (see `docs/performance.md`); outputs are the
/// same either way, since every flag those checks read is false in such a
/// scenario.
pub trait Variant: 'static {
    /// Whether this copy checks for optional mechanisms at all.
    const MECHANISMS: bool;
}

/// The copy that runs every scenario: each optional mechanism is checked
/// for at run time.
#[derive(Debug)]
pub enum General {}

impl Variant for General {
    const MECHANISMS: bool = true;
}

/// The copy for scenarios whose policy and workload use no optional
/// mechanism: workflows, DAG priority, queues, local pools, retries and
/// rate limits only.
#[derive(Debug)]
pub enum QueuesOnly {}

impl Variant for QueuesOnly {
    const MECHANISMS: bool = false;
}

/// Whether `s` uses a mechanism the [`QueuesOnly`] copy leaves out: hedging,
/// escalation, an in-flight cap or model routing (its policy and
/// ablations), answers that can be rejected, a prefix cache or streaming
/// latencies. DAG priority and rate limits are not optional: both copies
/// handle them.
pub fn uses_optional_mechanisms(s: &Scenario) -> bool {
    let mech = crate::policy::Mechanisms::of(s.policy, &s.ablations);
    mech.hedging
        || mech.escalation
        || mech.in_flight_cap
        || mech.model_routing
        || s.redos_possible()
        || s.has_prefix_caching()
        || s.node_types.values().any(|n| n.latency.is_streaming())
}

/// Where nodes of a type run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exec {
    /// On a provider (index).
    Remote(u16),
    /// On a local pool (index).
    Local(u16),
}

/// The run's node-type table, in the scenario's (sorted) name order.
#[derive(Clone, Debug)]
pub struct NodeTable {
    /// Names.
    pub names: Vec<String>,
    /// Where each type runs.
    pub exec: Vec<Exec>,
    /// Base latency distributions.
    pub dists: Vec<Dist>,
    /// Samplers.
    pub samplers: Vec<Sampler>,
    /// Node-specific tails.
    pub tails: Vec<Option<(f64, f64)>>,
    /// Heavy tails: the node type's own, else the scenario's.
    pub heavy_tails: Vec<(f64, f64)>,
    /// Default tokens.
    pub tokens: Vec<(u32, u32)>,
    /// Leading prompt tokens every call of the type shares.
    pub shared_tokens: Vec<u32>,
    /// Provider names, in index order.
    pub providers: Vec<String>,
    /// Pool names, in index order.
    pub pools: Vec<String>,
}

impl NodeTable {
    /// Builds the table from a validated scenario.
    pub fn build(s: &Scenario) -> NodeTable {
        let providers: Vec<String> = s.providers.keys().cloned().collect();
        let pools: Vec<String> = s.pools.keys().cloned().collect();
        let mut t = NodeTable {
            names: vec![],
            exec: vec![],
            dists: vec![],
            samplers: vec![],
            tails: vec![],
            heavy_tails: vec![],
            tokens: vec![],
            shared_tokens: vec![],
            providers,
            pools,
        };
        for (name, nt) in &s.node_types {
            let exec = if let Some(i) = s.providers.values().position(|p| p.resource == nt.resource)
            {
                Exec::Remote(i as u16)
            } else {
                let i = t
                    .pools
                    .iter()
                    .position(|p| *p == nt.resource)
                    .expect("validated resource class");
                Exec::Local(i as u16)
            };
            t.names.push(name.clone());
            t.exec.push(exec);
            t.dists.push(nt.latency.clone());
            t.samplers.push(nt.latency.sampler());
            t.tails.push(nt.tail.as_ref().map(|x| (x.prob, x.mult)));
            t.heavy_tails
                .push(nt.heavy_tail.as_ref().unwrap_or(&s.heavy_tail).pair());
            t.tokens.push((nt.input_tokens, nt.output_tokens));
            t.shared_tokens.push(nt.shared_prompt_tokens);
        }
        t
    }

    /// The facts the workload compiler needs.
    pub fn facts(&self) -> TypeFacts {
        TypeFacts {
            index: self
                .names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.clone(), i as u16))
                .collect(),
            latency: self
                .dists
                .iter()
                .zip(&self.tails)
                .map(|(d, t)| (d.clone(), t.map_or(1.0, |(p, m)| 1.0 + p * (m - 1.0))))
                .collect(),
            tokens: self.tokens.clone(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NodeState {
    Blocked,
    Waiting,
    Running,
    Backoff,
    Done,
}

const NO_ATTEMPT: u32 = u32::MAX;

/// A local node's [`Node::provider`].
const LOCAL: u16 = u16::MAX;

/// At most this many nodes (640 KB) are reserved for a workflow when it
/// arrives; a larger block grows its table as it goes.
const NODES_RESERVED_MAX: usize = 1 << 14;

// 40 bytes, not a cache line: with a thousand workflows in flight their
// node tables overflow the L2 cache, and a node's first touch is what the
// research agent waits on most (padded to 128 bytes it ran 15% slower, to 64
// about 10%; from 48 bytes to 40, 6-8% faster as a fresh process).
const _: () = assert!(std::mem::size_of::<Node>() <= 40);

/// A block as every workflow's table starts it: its nodes blocked on
/// their predecessors, copied in whole when an iteration starts.
#[derive(Debug)]
struct FreshBlock {
    nodes: Vec<Node>,
    /// Remote nodes (calls).
    calls: u32,
    /// Where the block starts in the runtime's `block_nodes`.
    first: u32,
    /// The block's roots.
    roots: Vec<u32>,
}

impl FreshBlock {
    fn new(b: &Block, first: u32, table: &NodeTable) -> FreshBlock {
        let nodes: Vec<Node> = b
            .nodes
            .iter()
            .map(|n| {
                let provider = match table.exec[n.node_type as usize] {
                    Exec::Remote(p) => p,
                    Exec::Local(_) => LOCAL,
                };
                Node::blocked(n, provider)
            })
            .collect();
        FreshBlock {
            calls: nodes.iter().filter(|n| n.provider != LOCAL).count() as u32,
            nodes,
            first,
            roots: b.roots.clone(),
        }
    }
}

impl Node {
    /// Block node `b` of a fresh block, waiting for its predecessors.
    fn blocked(b: &BlockNode, provider: u16) -> Node {
        Node {
            ty: b.node_type,
            provider,
            state: NodeState::Blocked,
            deps_left: b.preds,
            attempts: 0,
            failures: 0,
            running: [NO_ATTEMPT; 2],
            redos: 0,
            ready_at: SimTime::ZERO,
            slack: SimDuration::ZERO,
        }
    }
}

/// A workflow's nodes: the block it is running, indexed by the node's
/// number in the workflow (what keys its randomness and names it in
/// traces). The next block replaces it when it has finished, so the table
/// holds one iteration's nodes, not every iteration run so far: with
/// thousands of workflows in flight, first touches of fresh memory (page
/// faults) were a tenth of a research run's time.
#[derive(Debug, Default)]
struct LiveNodes {
    /// The workflow's number of `v[0]`, the block's first node; every
    /// node before it is done.
    first: u32,
    v: Vec<Node>,
    /// Each remote node's keyed difficulty (NaN for local ones), beside
    /// `v`; filled only when something reads difficulties. Drawn once per
    /// node rather than on every look at the call, and kept out of
    /// [`Node`] so that a node still fits one cache line.
    difficulty: Vec<f64>,
}

impl LiveNodes {
    /// Nodes the workflow has had so far.
    fn total(&self) -> u32 {
        self.first + self.v.len() as u32
    }

    /// Node `n`, if it is still held (a node before `first` is done).
    fn get(&self, n: u32) -> Option<&Node> {
        self.v.get(n.checked_sub(self.first)? as usize)
    }

    /// Drops every node held (all done); numbering goes on after them.
    fn drop_done(&mut self) {
        self.first = self.total();
        self.v.clear();
        self.difficulty.clear();
    }

    /// Room for `n` nodes (and their difficulties when `difficulties`).
    fn reserve(&mut self, n: usize, difficulties: bool) {
        if self.v.capacity() < n {
            self.v.reserve_exact(n);
        }
        if difficulties && self.difficulty.capacity() < n {
            self.difficulty.reserve_exact(n);
        }
    }

    /// Node `n`'s difficulty (filled only when difficulties are read).
    fn difficulty(&self, n: u32) -> f64 {
        self.difficulty[(n - self.first) as usize]
    }
}

impl std::ops::Index<u32> for LiveNodes {
    type Output = Node;
    fn index(&self, n: u32) -> &Node {
        &self.v[(n - self.first) as usize]
    }
}

impl std::ops::IndexMut<u32> for LiveNodes {
    fn index_mut(&mut self, n: u32) -> &mut Node {
        &mut self.v[(n - self.first) as usize]
    }
}

/// At most this many redos per call: a guard, since a redo goes to the
/// tier's best model, whose answer is final.
const MAX_REDOS: u8 = 8;

/// A live node: what changes as it runs, and its type and provider, read
/// on every look at it. Its tokens and critical path within the block are
/// its block node's, read through [`Workflow::block_node`] rather than
/// copied into every workflow's table.
#[derive(Clone, Copy, Debug)]
struct Node {
    ty: u16,
    /// Provider index for remote nodes, [`LOCAL`] for local ones.
    provider: u16,
    state: NodeState,
    deps_left: u32,
    attempts: u32,
    /// Failed attempts so far: at most a tier's `max_retries` (validated
    /// <= 100) plus one, since the next one fails the workflow. A byte
    /// keeps the node at 40 bytes.
    failures: u8,
    running: [u32; 2],
    /// Answers rejected so far (quality curves): the call is redone on a
    /// better model.
    redos: u8,
    ready_at: SimTime,
    /// Slack computed when the node last became ready.
    slack: SimDuration,
}

/// What a ready call's facts read of its node, copied out at once.
#[derive(Clone, Copy)]
struct NodeFacts {
    ty: u16,
    provider: u16,
    redos: u8,
}

impl Node {
    #[inline]
    fn facts(&self) -> NodeFacts {
        NodeFacts {
            ty: self.ty,
            provider: self.provider,
            redos: self.redos,
        }
    }
}

#[derive(Debug, Default)]
struct Workflow {
    id: u64,
    generation: u32,
    live: bool,
    arrival: SimTime,
    nodes: LiveNodes,
    unfinished: u32,
    iteration: u32,
    relevant: u32,
    /// The critical path of the iterations after this one.
    later_cp: SimDuration,
    /// Where the table's block starts in the runtime's `block_nodes`, less
    /// `nodes.first` (wrapping): node `n`'s block node is at `n + statics`.
    statics: u32,
    propensity: f64,
    expected_finish: SimTime,
    cost: Money,
    retries: u32,
    rate_limited: u32,
    cancellations: u32,
    hedges: u32,
    escalations: u32,
    wasted: SimDuration,
    calls: u32,
    attempts: u32,
    redos: u32,
    queue_wait: SimDuration,
    /// Local tasks running; a dead workflow's slot is reused only at 0, so
    /// their end events can still read the node they ran.
    local_running: u32,
}

impl Workflow {
    /// Node `node`'s block node (type, tokens, critical path within its
    /// block), shared by every workflow that runs the block.
    #[inline]
    fn block_node<'b>(&self, block_nodes: &'b [BlockNode], node: u32) -> &'b BlockNode {
        &block_nodes[node.wrapping_add(self.statics) as usize]
    }

    /// Node `node`'s remaining critical path, later iterations included.
    #[inline]
    fn remaining_cp(&self, block_nodes: &[BlockNode], node: u32) -> SimDuration {
        self.block_node(block_nodes, node).rcp_in_block + self.later_cp
    }

    /// Makes a free slot workflow `id`, arrived at `now`, in place: built
    /// on the stack and copied in, the struct was reloaded wider than it
    /// had just been written (store-forwarding stalls, 8% of an M/M/8
    /// run). Every field is named, so a new one does not compile until it
    /// is reset here; the node table keeps its memory, emptied.
    fn reset(&mut self, id: u64, now: SimTime, propensity: f64) {
        let Workflow {
            id: w_id,
            generation: _,
            live,
            arrival,
            nodes,
            unfinished,
            iteration,
            relevant,
            later_cp,
            statics,
            propensity: w_propensity,
            expected_finish,
            cost,
            retries,
            rate_limited,
            cancellations,
            hedges,
            escalations,
            wasted,
            calls,
            attempts,
            redos,
            queue_wait,
            local_running,
        } = self;
        *w_id = id;
        *live = true;
        *arrival = now;
        *w_propensity = propensity;
        *expected_finish = now;
        *cost = Money::ZERO;
        *wasted = SimDuration::ZERO;
        *queue_wait = SimDuration::ZERO;
        *later_cp = SimDuration::ZERO;
        for count in [
            unfinished,
            iteration,
            relevant,
            statics,
            retries,
            rate_limited,
            cancellations,
            hedges,
            escalations,
            calls,
            attempts,
            redos,
            local_running,
        ] {
            *count = 0;
        }
        nodes.first = 0;
        nodes.v.clear();
        nodes.difficulty.clear();
    }
}

#[derive(Clone, Copy, Debug)]
struct Attempt {
    generation: u32,
    live: bool,
    wf_slot: u32,
    node: u32,
    provider: u16,
    tier: u16,
    model: u8,
    kind: StartKind,
    attempt_no: u32,
    start: SimTime,
    /// Start plus the planned (or, live, the expected) duration: cancelled
    /// attempts pay in proportion to the part of it they ran.
    end: SimTime,
    price: Money,
    queue_wait: SimDuration,
}

#[derive(Debug)]
struct TierRt {
    model: TierModel,
    /// The client enforces a request or token limit here (a start books it).
    client_limited: bool,
    in_flight: u32,
    busy: SimDuration,
    waits: Samples,
    requests: u64,
    successes: u64,
    failures: u64,
    timeouts: u64,
    rate_limited: u64,
    /// 429s from the tokens-per-minute limit (also in `rate_limited`).
    rate_limited_tokens: u64,
    /// Prompt tokens its prefix cache served.
    cached_input_tokens: u64,
    /// Prompt tokens written to its prefix cache.
    cache_write_tokens: u64,
    cancelled: u64,
    hedges: u64,
    escalations_in: u64,
    /// Answers from this tier that were rejected and redone.
    redos: u64,
    cost: Money,
    service_sum: SimDuration,
}

#[derive(Debug)]
struct PoolRt {
    workers: u32,
    busy_workers: u32,
    queue: VecDeque<(u32, u32, u32, SimTime)>,
    busy: SimDuration,
    waits: Samples,
    tasks: u64,
    service_sum: SimDuration,
}

/// Mutable run state, separate from the policy so both can be borrowed.
#[derive(Debug)]
struct State {
    now: SimTime,
    /// Every provider's tiers in one array: provider `p`'s are
    /// `tiers[tier_first[p]..tier_first[p + 1]]`.
    tiers: Vec<TierRt>,
    tier_first: Vec<usize>,
    pools: Vec<PoolRt>,
    wfs: Vec<Workflow>,
    free_wfs: Vec<u32>,
    atts: Vec<Attempt>,
    free_atts: Vec<u32>,
    remote_in_flight: u32,
    next_arrival: u64,
    last_arrival: SimTime,
    /// Per-workflow and per-attempt samples, for exact percentiles in
    /// bounded memory (spilled to a temporary file past a cap).
    makespans: Samples,
    costs: Samples,
    completed: u64,
    failed: u64,
    hedge_wins: u64,
    retries: u64,
    cancellations: u64,
    wasted: SimDuration,
    calls: u64,
    attempts: u64,
    redos: u64,
    /// Times to first token of successful streamed attempts (us), and the
    /// sum and count of their times per output token (ms).
    ttfts: Samples,
    tpot_sum_ms: f64,
    tpot_n: u64,
    /// Time and money spent on answers that were rejected.
    redo_wasted: SimDuration,
    redo_cost: Money,
    /// Workflows in the system and the integral of that count over time
    /// (count x us), for the time-average L of Little's law.
    active: u64,
    active_area: u128,
    active_since: SimTime,
}

impl State {
    #[inline]
    fn tier(&self, provider: u16, tier: u16) -> &TierRt {
        &self.tiers[self.tier_first[provider as usize] + tier as usize]
    }

    #[inline]
    fn tier_mut(&mut self, provider: u16, tier: u16) -> &mut TierRt {
        &mut self.tiers[self.tier_first[provider as usize] + tier as usize]
    }

    /// Provider `p`'s tiers.
    fn provider_tiers_mut(&mut self, p: usize) -> &mut [TierRt] {
        &mut self.tiers[self.tier_first[p]..self.tier_first[p + 1]]
    }

    fn active_changed(&mut self, delta: i64) {
        self.active_area += self.active as u128 * (self.now - self.active_since).0 as u128;
        self.active_since = self.now;
        self.active = self.active.wrapping_add_signed(delta);
    }
}

struct View<'a, F> {
    st: &'a State,
    block_nodes: &'a [BlockNode],
    /// Whether anything reads call difficulties (routing, quality curves).
    difficulty: bool,
    variant: PhantomData<F>,
}

/// A call's keyed difficulty in [0, 1): what model routing and quality
/// curves read.
pub(crate) fn difficulty(seed: u64, workflow: u64, node: u32) -> f64 {
    unit(&mut keyed(
        seed,
        Stream::Difficulty,
        [workflow, node as u64, 0, 0],
    ))
}

impl<F: Variant> View<'_, F> {
    #[inline]
    fn ready_call(&self, call: CallKey) -> ReadyCall {
        let n = &self.st.wfs[call.slot as usize].nodes[call.node];
        self.ready_call_of(call, n.facts(), n.slack)
    }

    /// [`ready_call`](Self::ready_call) with the node's facts and slack
    /// given: a caller that has just written the node's state passes
    /// facts it read before that write. Read after it, they came from one
    /// 8-byte load over the 1-byte store, which waits for the store to
    /// reach the cache (a store-forwarding stall: 4% of an M/M/8 run).
    #[inline]
    fn ready_call_of(&self, call: CallKey, f: NodeFacts, slack: SimDuration) -> ReadyCall {
        let w = &self.st.wfs[call.slot as usize];
        let b = w.block_node(self.block_nodes, call.node);
        ReadyCall {
            call,
            workflow_id: w.id,
            provider: f.provider,
            node_type: f.ty,
            workflow_arrival: w.arrival,
            remaining_cp: w.remaining_cp(self.block_nodes, call.node),
            slack,
            // The table holds difficulties only when something reads them.
            difficulty: if self.difficulty {
                w.nodes.difficulty(call.node)
            } else {
                0.0
            },
            redos: f.redos,
            workflow_spent: w.cost,
            input_tokens: b.input_tokens,
            output_tokens: b.output_tokens,
        }
    }
}

impl<F: Variant> SystemView for View<'_, F> {
    const MECHANISMS: bool = F::MECHANISMS;

    fn now(&self) -> SimTime {
        self.st.now
    }

    fn tier_load(&self, provider: u16, tier: u16) -> TierLoad {
        let t = self.st.tier(provider, tier);
        if t.in_flight >= t.model.slots {
            // Nothing can start on a full tier: its rate limits are not
            // worked out (most tiers are full most of the time under load).
            return TierLoad {
                in_flight: t.in_flight,
                slots: t.model.slots,
                tokens: 0,
                next_token_at: self.st.now,
                token_bucket: None,
            };
        }
        let (tokens, next) = match (&t.model.bucket, t.model.enforcer) {
            (Some(b), Enforcer::Client) => {
                let (k, next) = b.state(self.st.now);
                (k.min(u32::MAX as u64 - 1) as u32, next)
            }
            _ => (u32::MAX, self.st.now),
        };
        TierLoad {
            in_flight: t.in_flight,
            slots: t.model.slots,
            tokens,
            next_token_at: next,
            token_bucket: t
                .model
                .token_bucket
                .filter(|_| t.model.token_enforcer == Enforcer::Client),
        }
    }

    fn free_slots(&self, provider: u16, tier: u16) -> u32 {
        let t = self.st.tier(provider, tier);
        t.model.slots.saturating_sub(t.in_flight)
    }

    fn remote_in_flight(&self) -> u32 {
        self.st.remote_in_flight
    }

    fn call_waiting(&self, call: CallKey) -> bool {
        let w = &self.st.wfs[call.slot as usize];
        w.live
            && w.generation == call.generation
            && w.nodes
                .get(call.node)
                .is_some_and(|n| n.state == NodeState::Waiting)
    }

    fn attempt_running(&self, a: AttemptKey) -> bool {
        let at = &self.st.atts[a.slot as usize];
        at.live && at.generation == a.generation
    }

    fn call_facts(&self, call: CallKey) -> ReadyCall {
        self.ready_call(call)
    }
}

/// Attempt details of a traced event (zero for node- and workflow-level events).
#[derive(Clone, Copy, Debug)]
struct AttemptTag {
    attempt: u32,
    model: u8,
    cost: Money,
    /// Time to first token, as the driver reported it (ends only).
    ttft: Option<SimDuration>,
}

impl AttemptTag {
    const NONE: AttemptTag = AttemptTag {
        attempt: 0,
        model: 0,
        cost: Money::ZERO,
        ttft: None,
    };
}

/// A view borrowing only the state fields, so the policy can be borrowed
/// mutably beside it.
macro_rules! view {
    ($sim:ident) => {
        View::<F> {
            st: &$sim.st,
            block_nodes: &$sim.block_nodes,
            difficulty: F::MECHANISMS && $sim.difficulties,
            variant: PhantomData,
        }
    };
}

/// The workflow state machine of one run, driven by `D`: the scenario
/// compiled, the policy built, every workflow, node and attempt.
pub struct Runtime<'o, O: Observer, D: Driver, F: Variant = General> {
    /// The driver: what sends attempts and keeps timers.
    pub io: D,
    seed: u64,
    arrivals: Arrivals,
    table: NodeTable,
    workload: CompiledWorkload,
    policy: Policy,
    st: State,
    obs: &'o mut O,
    tracing: bool,
    /// Something reads call difficulties (model routing, quality curves):
    /// draw them into the node tables.
    difficulties: bool,
    /// Some answer can be rejected (quality curves): judge successes.
    judging: bool,
    /// Some tier has a tokens-per-minute limit: report 429s by cause.
    token_limits: bool,
    /// Some call can be served from a prefix cache (outputs count them).
    prefix_caching: bool,
    /// Each node type's shared prompt tokens (live usage that does not say
    /// what a miss wrote to a cache is read with them).
    shared_prompt_tokens: Vec<u32>,
    /// Some node type streams (a time to first token): report TTFT, TPOT.
    streaming: bool,
    /// Hedging on: tell the policy about starts.
    hedging: bool,
    /// The policy reads slack (see
    /// [`Mechanisms::reads_slack`](crate::policy::Mechanisms::reads_slack)): work it
    /// out when a call becomes ready.
    slack: bool,
    arrival_gap: Option<rand_distr::Exp<f64>>,
    /// Premixed keys of the hot streams.
    local_keyer: Keyer,
    arrival_keyer: Keyer,
    decisions: Vec<Decision>,
    follow_up: Vec<Decision>,
    /// Nodes reserved for a workflow when it arrives: its largest block, up
    /// to [`NODES_RESERVED_MAX`].
    nodes_reserved: usize,
    /// Every block's nodes, block after block: a node's static facts, which
    /// its workflow's table does not copy (see [`Workflow::block_node`]).
    block_nodes: Vec<BlockNode>,
    /// Each block as a fresh workflow table holds it, and its calls.
    fresh_blocks: Vec<FreshBlock>,
    /// Prior median service time per node type (ms, tier scale 1): what a
    /// cancelled attempt of unknown planned duration is charged against.
    prior_p50_ms: Vec<f64>,
    variant: PhantomData<F>,
}

impl<O: Observer, D: Driver, F: Variant> std::fmt::Debug for Runtime<'_, O, D, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("seed", &self.seed)
            .field("now", &self.st.now)
            .finish()
    }
}

/// Priors for the policy: Monte Carlo p50/p95 of each node type's latency
/// (node tail and heavy tail included), from a fixed keyed stream.
///
/// They depend only on the seed and the type's latency model, which most
/// runs of a sweep or a ratchet share with an earlier run of the process
/// (same seed and node types, another policy or constant), so they are
/// memoised process-wide: a run of the default scenario spent a tenth of
/// its instructions drawing them.
fn priors(s: &Scenario, table: &NodeTable, cw: &CompiledWorkload) -> Vec<NodeTypeInfo> {
    priors_with(s, table, cw, true)
}

/// [`priors`], through the memo or not (tests compare the two).
fn priors_with(
    s: &Scenario,
    table: &NodeTable,
    cw: &CompiledWorkload,
    memo: bool,
) -> Vec<NodeTypeInfo> {
    (0..table.names.len())
        .map(|ty| {
            // Use the token count the workload actually gives this type, if any.
            let tokens = cw
                .blocks
                .iter()
                .flat_map(|b| b.nodes.iter())
                .find(|n| n.node_type as usize == ty)
                .map_or(table.tokens[ty].1, |n| n.output_tokens);
            // Everything the draws read, bit for bit.
            let (tail, heavy) = (table.tails[ty], table.heavy_tails[ty]);
            let (tail_on, (tail_prob, tail_mult)) = (tail.is_some(), tail.unwrap_or((0.0, 0.0)));
            let mut model: PriorKey = [0; 14];
            model[..6].copy_from_slice(&table.dists[ty].bits());
            model[6..].copy_from_slice(&[
                s.seed,
                ty as u64,
                tokens.into(),
                tail_on.into(),
                tail_prob.to_bits(),
                tail_mult.to_bits(),
                heavy.0.to_bits(),
                heavy.1.to_bits(),
            ]);
            let compute = || {
                let spec = DrawSpec {
                    sampler: &table.samplers[ty],
                    tail: table.tails[ty],
                    heavy_tail: table.heavy_tails[ty],
                    input_tokens: 0,
                    output_tokens: tokens,
                };
                prior(s.seed, ty, &spec)
            };
            if memo {
                prior_memo(model, compute)
            } else {
                compute()
            }
        })
        .collect()
}

/// At most this many priors are memoised; past it the memo starts afresh.
const PRIOR_MEMO_MAX: usize = 4096;

/// What a prior depends on: the type's distribution ([`Dist::bits`]), then
/// the seed, the type's index (its draws' key), its output tokens, its
/// node tail (present, probability, multiplier) and its heavy tail.
type PriorKey = [u64; 14];

/// The memoised prior of `key`, computed by `compute` if new.
fn prior_memo(key: PriorKey, compute: impl FnOnce() -> NodeTypeInfo) -> NodeTypeInfo {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static MEMO: OnceLock<Mutex<HashMap<PriorKey, NodeTypeInfo>>> = OnceLock::new();
    let memo = MEMO.get_or_init(Mutex::default);
    // A poisoned lock only means another run panicked; the map is still whole.
    if let Some(p) = memo.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return p.clone();
    }
    let p = compute();
    let mut m = memo.lock().unwrap_or_else(|e| e.into_inner());
    if m.len() >= PRIOR_MEMO_MAX {
        m.clear();
    }
    m.insert(key, p.clone());
    p
}

/// Node type `ty`'s prior: p50 and p95 of 2,000 keyed draws of `spec`.
fn prior(seed: u64, ty: usize, spec: &DrawSpec<'_>) -> NodeTypeInfo {
    const N: usize = 2000;
    let mut rng = keyed(seed, Stream::Prior, [ty as u64, 0, 0, 0]);
    let mut xs: Vec<f64> = (0..N).map(|_| draw_latency_ms(&mut rng, spec)).collect();
    let [p50, p95] = stats::percentiles_select(&mut xs, &[50.0, 95.0])[..] else {
        unreachable!("two percentiles asked, two given")
    };
    NodeTypeInfo {
        prior_p50_ms: p50,
        prior_p95_ms: p95,
    }
}

impl<'o, O: Observer, D: Driver, F: Variant> Runtime<'o, O, D, F> {
    /// Compiles a validated scenario for `io` to drive.
    ///
    /// Panics if `F` is [`QueuesOnly`] and the scenario uses an optional
    /// mechanism ([`uses_optional_mechanisms`] says which copy may run it).
    pub fn new(s: &Scenario, obs: &'o mut O, io: D) -> Runtime<'o, O, D, F> {
        assert!(
            F::MECHANISMS || !uses_optional_mechanisms(s),
            "a scenario with optional mechanisms on the queues-only engine"
        );
        let table = NodeTable::build(s);
        let workload = crate::workload::compile(s, &table.facts());
        let nodes_reserved = workload.max_block_nodes().min(NODES_RESERVED_MAX);
        let block_nodes: Vec<BlockNode> = workload
            .blocks
            .iter()
            .flat_map(|b| b.nodes.iter().copied())
            .collect();
        let block_first: Vec<u32> = workload
            .blocks
            .iter()
            .scan(0u32, |first, b| {
                let at = *first;
                *first += b.nodes.len() as u32;
                Some(at)
            })
            .collect();
        let fresh_blocks: Vec<FreshBlock> = workload
            .blocks
            .iter()
            .zip(&block_first)
            .map(|(b, &first)| FreshBlock::new(b, first, &table))
            .collect();
        let by_provider: Vec<Vec<TierRt>> = s
            .providers
            .values()
            .map(|p| {
                p.tiers
                    .iter()
                    .map(TierModel::new)
                    .map(|model| TierRt {
                        client_limited: model.client_request_limit() || model.client_token_limit(),
                        model,
                        in_flight: 0,
                        busy: SimDuration::ZERO,
                        waits: Samples::default(),
                        requests: 0,
                        successes: 0,
                        failures: 0,
                        timeouts: 0,
                        rate_limited: 0,
                        rate_limited_tokens: 0,
                        cached_input_tokens: 0,
                        cache_write_tokens: 0,
                        cancelled: 0,
                        hedges: 0,
                        escalations_in: 0,
                        redos: 0,
                        cost: Money::ZERO,
                        service_sum: SimDuration::ZERO,
                    })
                    .collect()
            })
            .collect();
        let setup = PolicySetup {
            kind: s.policy,
            ablations: s.ablations,
            constants: s.constants.clone(),
            providers: by_provider
                .iter()
                .map(|p| {
                    p.iter()
                        .map(|t| TierInfo {
                            latency_scale: t.model.latency_scale,
                            prices: t.model.prices,
                            models: t
                                .model
                                .models
                                .iter()
                                .map(|m| (m.price_multiplier, m.latency_scale))
                                .collect(),
                            quality: t
                                .model
                                .models
                                .iter()
                                .map(|m| m.quality.as_ref().map(|q| (q.midpoint, q.slope)))
                                .collect(),
                            token_limit: t.model.client_token_limit(),
                            request_limit: t.model.client_request_limit(),
                        })
                        .collect()
                })
                .collect(),
            node_types: priors(s, &table, &workload),
            redos_possible: s.redos_possible(),
        };
        let pools = s
            .pools
            .values()
            .map(|p| PoolRt {
                workers: p.workers,
                busy_workers: 0,
                queue: VecDeque::new(),
                busy: SimDuration::ZERO,
                waits: Samples::default(),
                tasks: 0,
                service_sum: SimDuration::ZERO,
            })
            .collect();
        let tracing = obs.wants_trace();
        let mech = crate::policy::Mechanisms::of(s.policy, &s.ablations);
        let arrival_gap = match s.arrivals {
            Arrivals::Poisson { rate_per_s } => {
                Some(rand_distr::Exp::new(rate_per_s).expect("validated rate"))
            }
            _ => None,
        };
        let prior_p50_ms = setup.node_types.iter().map(|n| n.prior_p50_ms).collect();
        let mut tier_first = vec![0];
        for p in &by_provider {
            tier_first.push(tier_first[tier_first.len() - 1] + p.len());
        }
        let tiers = by_provider.into_iter().flatten().collect();
        Runtime {
            io,
            prior_p50_ms,
            difficulties: mech.model_routing || s.redos_possible(),
            judging: s.redos_possible(),
            token_limits: s.has_token_limits(),
            prefix_caching: s.has_prefix_caching(),
            shared_prompt_tokens: s
                .node_types
                .values()
                .map(|n| n.shared_prompt_tokens)
                .collect(),
            streaming: s.node_types.values().any(|n| n.latency.is_streaming()),
            hedging: mech.hedging,
            slack: mech.reads_slack(),
            arrival_gap,
            local_keyer: Keyer::new(s.seed, Stream::Local),
            arrival_keyer: Keyer::new(s.seed, Stream::Arrival),
            seed: s.seed,
            arrivals: s.arrivals.clone(),
            table,
            workload,
            policy: Policy::new(setup),
            st: State {
                now: SimTime::ZERO,
                tiers,
                tier_first,
                pools,
                wfs: Vec::new(),
                free_wfs: Vec::new(),
                atts: Vec::new(),
                free_atts: Vec::new(),
                remote_in_flight: 0,
                next_arrival: 0,
                last_arrival: SimTime::ZERO,
                makespans: Samples::default(),
                costs: Samples::default(),
                completed: 0,
                failed: 0,
                hedge_wins: 0,
                retries: 0,
                cancellations: 0,
                wasted: SimDuration::ZERO,
                calls: 0,
                attempts: 0,
                redos: 0,
                ttfts: Samples::default(),
                tpot_sum_ms: 0.0,
                tpot_n: 0,
                redo_wasted: SimDuration::ZERO,
                redo_cost: Money::ZERO,
                active: 0,
                active_area: 0,
                active_since: SimTime::ZERO,
            },
            obs,
            tracing,
            decisions: Vec::new(),
            follow_up: Vec::new(),
            nodes_reserved,
            block_nodes,
            fresh_blocks,
            variant: PhantomData,
        }
    }

    /// Runs a full policy dispatch pass, reading every tier's load, after
    /// every event instead of skipping passes (and loads) that cannot
    /// change anything. Outputs are the same,
    /// except `events` (wake-ups may be requested at other moments); the
    /// tests check exactly that.
    pub fn with_exhaustive_dispatch(mut self) -> Self {
        self.policy.set_exhaustive(true);
        self
    }

    /// Keeps at most `cap` samples per metric (makespans, costs, each tier's
    /// and pool's waits) in memory, spilling the rest to a temporary file
    /// (default [`stats::samples::DEFAULT_IN_MEMORY`]). Results are the same
    /// whatever the cap; only memory and speed change.
    pub fn with_samples_in_memory(mut self, cap: usize) -> Self {
        let st = &mut self.st;
        st.makespans = Samples::new(cap);
        st.costs = Samples::new(cap);
        for t in &mut st.tiers {
            t.waits = Samples::new(cap);
        }
        for p in &mut st.pools {
            p.waits = Samples::new(cap);
        }
        self
    }

    /// The node-type table (names for reports).
    pub fn table(&self) -> &NodeTable {
        &self.table
    }

    /// The compiled workload (tests check traces against its blocks).
    pub fn workload(&self) -> &CompiledWorkload {
        &self.workload
    }

    /// The current time (the last event's).
    pub fn now(&self) -> SimTime {
        self.st.now
    }

    /// The policy (tests and drivers read its state).
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Schedules the first arrival; call once, before any event.
    pub fn start(&mut self) {
        if self.workload.workflows > 0 {
            self.io.set_timer(SimTime::ZERO, Timer::Arrival);
        }
    }

    /// The most nodes any workflow's table holds now.
    #[cfg(test)]
    pub(crate) fn largest_node_table(&self) -> usize {
        self.st
            .wfs
            .iter()
            .map(|w| w.nodes.v.len())
            .max()
            .unwrap_or(0)
    }

    /// Workflows in the system (arrived, not yet finished).
    pub fn active_workflows(&self) -> u64 {
        self.st.active
    }

    /// What the attempts that have ended were charged so far (every
    /// charge goes to its tier, so the tiers' costs sum to it).
    pub fn charged(&self) -> Money {
        self.st.tiers.iter().fold(Money::ZERO, |m, t| m + t.cost)
    }

    /// True once every workflow has arrived and ended and no work is left
    /// running (a failed workflow's local tasks run to their end, and so
    /// does any attempt not cancelled). From here on nothing can change a
    /// result, so both drivers end the run here: a timer still pending (the
    /// deadline of a hedge whose attempt has ended, the end of a cancelled
    /// attempt) is not run, and the run's time is this moment, not that
    /// timer's.
    #[inline]
    pub fn finished(&self) -> bool {
        self.st.active == 0
            && self.st.remote_in_flight == 0
            && self.st.next_arrival >= self.workload.workflows
            && self.st.pools.iter().all(|p| p.busy_workers == 0)
    }

    fn advance(&mut self, now: SimTime) {
        debug_assert!(now >= self.st.now, "time went backwards");
        self.st.now = now;
    }

    /// A timer the runtime asked for fired at `now`; then a dispatch.
    pub fn on_timer(&mut self, now: SimTime, timer: Timer) {
        self.advance(now);
        match timer {
            Timer::Arrival => self.arrive(),
            Timer::LocalEnd {
                slot,
                generation,
                node,
                pool,
            } => self.local_end(slot, generation, node, pool),
            Timer::RetryReady {
                slot,
                generation,
                node,
            } => {
                let w = &self.st.wfs[slot as usize];
                if w.live && w.generation == generation {
                    self.make_ready(slot, node);
                }
            }
            // A wake-up the policy asked for: the dispatch below is the point.
            Timer::Wake => {}
        }
        self.dispatch();
    }

    /// An attempt sent by [`Driver::send`] ended at `now`; then a dispatch.
    /// Reports of attempts cancelled meanwhile are ignored.
    pub fn on_attempt_end(&mut self, now: SimTime, attempt: AttemptKey, report: AttemptReport) {
        self.advance(now);
        self.attempt_end(attempt.slot, attempt.generation, report);
        self.dispatch();
    }

    /// Stops the run at `now`: no more arrivals, every running attempt is
    /// cancelled (and charged for what it ran), and every unfinished
    /// workflow is recorded as interrupted. Local tasks still running are
    /// abandoned; their timers must not be reported afterwards.
    pub fn interrupt(&mut self, now: SimTime) {
        self.advance(now);
        self.st.next_arrival = self.workload.workflows;
        for slot in 0..self.st.wfs.len() as u32 {
            if self.st.wfs[slot as usize].live {
                self.workflow_done_as(slot, false, true);
            }
        }
    }

    /// Traces an event of attempt `a` that cost `cost` (and, for a
    /// successful streamed end, took `ttft` to its first token).
    fn trace_attempt(
        &mut self,
        kind: TraceKind,
        a: &Attempt,
        cost: Money,
        ttft: Option<SimDuration>,
    ) {
        let place = Place::Tier {
            provider: a.provider,
            tier: a.tier,
        };
        let tag = AttemptTag {
            attempt: a.attempt_no,
            model: a.model,
            cost,
            ttft,
        };
        self.trace(kind, a.wf_slot, a.node, place, tag);
    }

    /// Always inlined, the event built out of line: most runs do not
    /// trace, and then this is one test (none for an observer that cannot
    /// trace). Built at each call site of a run that records its workflows
    /// (`simulate`, a sweep's runs), the events made the per-event
    /// functions too large for the inliner, which left them calls of their
    /// own: 4.5% of such a run's instructions on M/M/8.
    #[inline(always)]
    fn trace(&mut self, kind: TraceKind, slot: u32, node: u32, place: Place, tag: AttemptTag) {
        if O::CAN_TRACE && self.tracing {
            self.trace_event(kind, slot, node, place, tag);
        }
    }

    #[inline(never)]
    fn trace_event(
        &mut self,
        kind: TraceKind,
        slot: u32,
        node: u32,
        place: Place,
        tag: AttemptTag,
    ) {
        let w = &self.st.wfs[slot as usize];
        // Workflow-level events name no node (node 0 may be long done).
        let node_type = match kind {
            TraceKind::Arrive | TraceKind::WorkflowDone(_) => 0,
            _ => w.nodes.get(node).map_or(0, |n| n.ty),
        };
        let ev = TraceEvent {
            t: self.st.now,
            kind,
            workflow: w.id,
            node,
            node_type,
            place,
            attempt: tag.attempt,
            model: tag.model,
            cost: tag.cost,
            ttft: match kind {
                TraceKind::End(outcome) => self.kept_ttft(outcome, tag.ttft),
                _ => None,
            },
        };
        self.obs.trace(&ev);
    }

    fn arrival_time(&self, id: u64) -> SimTime {
        match self.arrivals {
            Arrivals::AllAtOnce => SimTime::ZERO,
            Arrivals::Poisson { .. } => {
                if id == 0 {
                    return SimTime::ZERO;
                }
                use rand_distr::Distribution;
                let exp = self
                    .arrival_gap
                    .as_ref()
                    .expect("poisson arrivals have a gap distribution");
                let gap_s = exp.sample(&mut self.arrival_keyer.rng(id, 0));
                self.st.last_arrival + SimDuration::from_secs_f64(gap_s)
            }
            Arrivals::Uniform { interval_ms } => {
                SimTime(SimDuration::from_ms(interval_ms * id as f64).0)
            }
            Arrivals::Burst { size, interval_ms } => {
                SimTime(SimDuration::from_ms(interval_ms * (id / size as u64) as f64).0)
            }
        }
    }

    fn arrive(&mut self) {
        let id = self.st.next_arrival;
        self.st.next_arrival += 1;
        self.st.active_changed(1);
        self.st.last_arrival = self.st.now;
        if self.st.next_arrival < self.workload.workflows {
            let t = self.arrival_time(self.st.next_arrival);
            self.io.set_timer(t, Timer::Arrival);
        }
        let slot = match self.st.free_wfs.pop() {
            Some(s) => s,
            None => {
                self.st.wfs.push(Workflow::default());
                (self.st.wfs.len() - 1) as u32
            }
        };
        let propensity = if self.workload.template == Template::ResearchAgent {
            CompiledWorkload::evidence_propensity(self.seed, id)
        } else {
            0.0
        };
        let now = self.st.now;
        self.st.wfs[slot as usize].reset(id, now, propensity);
        // Room for the largest block at once, so the table never grows
        // (and copies its nodes) while the workflow runs.
        self.st.wfs[slot as usize]
            .nodes
            .reserve(self.nodes_reserved, F::MECHANISMS && self.difficulties);
        self.trace(TraceKind::Arrive, slot, 0, Place::None, AttemptTag::NONE);
        self.instantiate(slot, 0);
    }

    /// Replaces the workflow's finished block by the block of `iteration`
    /// and readies its roots.
    #[inline(always)]
    fn instantiate(&mut self, slot: u32, iteration: u32) {
        let bi = self.workload.block_index(iteration);
        let fresh = &self.fresh_blocks[bi];
        let w = &mut self.st.wfs[slot as usize];
        // Only the research agent has several blocks, and its next one is
        // made when DecideNext ends, which every node of the block precedes
        // (validation keeps pdfs and subqueries >= 1).
        assert_eq!(
            w.unfinished, 0,
            "a block starts only when the one before has finished"
        );
        w.nodes.drop_done();
        let base = w.nodes.first;
        w.iteration = iteration;
        w.later_cp = self.workload.later_iterations_cp(iteration);
        w.statics = fresh.first.wrapping_sub(base);
        w.unfinished += fresh.nodes.len() as u32;
        w.calls += fresh.calls;
        match fresh.nodes[..] {
            // One node (the M/M/c model's block): no copy loop.
            [n] => w.nodes.v.push(n),
            _ => w.nodes.v.extend_from_slice(&fresh.nodes),
        }
        if F::MECHANISMS && self.difficulties {
            for (i, n) in fresh.nodes.iter().enumerate() {
                w.nodes.difficulty.push(if n.provider != LOCAL {
                    difficulty(self.seed, w.id, base + i as u32)
                } else {
                    f64::NAN
                });
            }
        }
        for i in 0..self.fresh_blocks[bi].roots.len() {
            let root = self.fresh_blocks[bi].roots[i];
            self.make_ready(slot, base + root);
        }
    }

    #[inline(always)]
    fn make_ready(&mut self, slot: u32, node: u32) {
        let now = self.st.now;
        let w = &mut self.st.wfs[slot as usize];
        let generation = w.generation;
        let n = &mut w.nodes[node];
        // Read before the state is stored: see `View::ready_call_of`.
        let facts = n.facts();
        n.state = NodeState::Waiting;
        n.ready_at = now;
        match self.table.exec[facts.ty as usize] {
            Exec::Local(pool) => {
                self.trace(
                    TraceKind::Ready,
                    slot,
                    node,
                    Place::Pool(pool),
                    AttemptTag::NONE,
                );
                let p = &mut self.st.pools[pool as usize];
                if p.busy_workers < p.workers && p.queue.is_empty() {
                    self.start_local(slot, generation, node, pool, now);
                } else {
                    p.queue.push_back((slot, generation, node, now));
                }
            }
            Exec::Remote(_) => {
                if self.slack {
                    // How far this call's expected finish path is ahead of
                    // the workflow's latest expected finish among ready nodes.
                    let own_finish = now + w.remaining_cp(&self.block_nodes, node);
                    w.expected_finish = w.expected_finish.max(own_finish);
                    w.nodes[node].slack = w.expected_finish - own_finish;
                }
                let slack = w.nodes[node].slack;
                self.trace(TraceKind::Ready, slot, node, Place::None, AttemptTag::NONE);
                let view = view!(self);
                let call = CallKey {
                    slot,
                    generation,
                    node,
                };
                let r = view.ready_call_of(call, facts, slack);
                self.policy.on_ready(&view, r, &mut self.decisions);
                self.apply_decisions();
            }
        }
    }

    fn start_local(
        &mut self,
        slot: u32,
        generation: u32,
        node: u32,
        pool: u16,
        queued_at: SimTime,
    ) {
        let now = self.st.now;
        let w = &self.st.wfs[slot as usize];
        let n = &w.nodes[node];
        let b = w.block_node(&self.block_nodes, node);
        let spec = DrawSpec {
            sampler: &self.table.samplers[n.ty as usize],
            tail: self.table.tails[n.ty as usize],
            heavy_tail: self.table.heavy_tails[n.ty as usize],
            input_tokens: b.input_tokens,
            output_tokens: b.output_tokens,
        };
        let mut rng = self.local_keyer.rng(w.id, node as u64);
        let duration = SimDuration::from_ms(draw_latency_ms(&mut rng, &spec));
        let p = &mut self.st.pools[pool as usize];
        p.busy_workers += 1;
        p.tasks += 1;
        p.waits.push((now - queued_at).0);
        let w = &mut self.st.wfs[slot as usize];
        w.local_running += 1;
        let n = &mut w.nodes[node];
        n.state = NodeState::Running;
        // A local task's start time is kept in `ready_at` (its wait is recorded).
        n.ready_at = now;
        self.io.set_timer(
            now + duration,
            Timer::LocalEnd {
                slot,
                generation,
                node,
                pool,
            },
        );
        self.trace(
            TraceKind::Start(StartKind::Primary),
            slot,
            node,
            Place::Pool(pool),
            AttemptTag::NONE,
        );
    }

    fn local_end(&mut self, slot: u32, generation: u32, node: u32, pool: u16) {
        // The slot is not reused while a local task of it runs, so the node
        // is still there even if its workflow failed meanwhile.
        let w = &mut self.st.wfs[slot as usize];
        w.local_running -= 1;
        let live = w.live && w.generation == generation;
        let duration = self.st.now - w.nodes[node].ready_at;
        let p = &mut self.st.pools[pool as usize];
        p.busy_workers -= 1;
        p.busy += duration;
        p.service_sum += duration;
        if self.st.active == 0 {
            // Perhaps a failed workflow's last local task.
            self.end_if_finished();
        }
        self.trace(
            TraceKind::End(Outcome::Success),
            slot,
            node,
            Place::Pool(pool),
            AttemptTag::NONE,
        );
        if live {
            self.node_done(slot, node);
        } else if self.st.wfs[slot as usize].local_running == 0 {
            self.st.free_wfs.push(slot);
        }
        // FIFO: the oldest task of a live workflow takes the worker.
        while let Some(&(s, g, n, q)) = self.st.pools[pool as usize].queue.front() {
            let p = &self.st.pools[pool as usize];
            if p.busy_workers >= p.workers {
                break;
            }
            self.st.pools[pool as usize].queue.pop_front();
            let w = &self.st.wfs[s as usize];
            if w.live && w.generation == g {
                self.start_local(s, g, n, pool, q);
            }
        }
    }

    /// Inlined: most events leave the policy nothing to do.
    #[inline]
    fn dispatch(&mut self) {
        let view = view!(self);
        self.policy.dispatch(&view, &mut self.decisions);
        self.apply_decisions();
    }

    /// Inlined: most calls find no decision to apply.
    #[inline]
    fn apply_decisions(&mut self) {
        if !self.decisions.is_empty() {
            self.apply_pending_decisions();
        }
    }

    /// Applies the decisions, and those their starts lead to.
    #[inline(never)]
    fn apply_pending_decisions(&mut self) {
        // Starting a call may arm a hedge timer; its wake-up request lands
        // in `follow_up` and is applied in the next round.
        while !self.decisions.is_empty() {
            for i in 0..self.decisions.len() {
                match self.decisions[i] {
                    Decision::Start {
                        call,
                        provider,
                        tier,
                        model,
                        kind,
                    } => {
                        self.start_attempt(call, provider, tier, model, kind);
                    }
                    Decision::WakeAt(t) => {
                        // The policy asks for a time once; each gets its event.
                        // Not once the run has finished (the pass after the
                        // last workflow's end may still ask for a token's
                        // refill): the run ends with its last work.
                        if t > self.st.now && !self.finished() {
                            self.io.set_timer(t, Timer::Wake);
                        }
                    }
                }
            }
            self.decisions.clear();
            std::mem::swap(&mut self.decisions, &mut self.follow_up);
        }
    }

    fn start_attempt(
        &mut self,
        call: CallKey,
        provider: u16,
        tier: u16,
        model: u8,
        kind: StartKind,
    ) {
        let now = self.st.now;
        let w = &self.st.wfs[call.slot as usize];
        if !w.live || w.generation != call.generation {
            self.policy.recheck();
            return;
        }
        // Looked up once: the attempt touches its tier four times.
        let gt = self.st.tier_first[provider as usize] + tier as usize;
        let n = &w.nodes[call.node];
        let valid = match kind {
            StartKind::Hedge => n.state == NodeState::Running && n.running.contains(&NO_ATTEMPT),
            _ => n.state == NodeState::Waiting,
        };
        let t = &self.st.tiers[gt];
        // A policy may only start what the view reported free; anything
        // else is a policy bug, and starting it would break the tier model.
        assert!(
            t.in_flight < t.model.slots,
            "policy started a call on a full tier"
        );
        if !valid || (model as usize) >= t.model.models.len() {
            self.policy.recheck();
            return;
        }
        let (attempt_no, ready_at, ty) = (n.attempts, n.ready_at, n.ty);
        let ids = AttemptIds {
            workflow: w.id,
            node: call.node,
            provider,
            tier,
            attempt: attempt_no,
        };
        let b = w.block_node(&self.block_nodes, call.node);
        let (input_tokens, output_tokens) = (b.input_tokens, b.output_tokens);
        let t = &mut self.st.tiers[gt];
        // The client-side bucket is booked here; a provider-enforced one
        // is the provider's (the driver's) business.
        if t.client_limited {
            book_client_limits(&mut t.model, now, input_tokens, output_tokens);
        }
        let price = t.model.price(model as usize, input_tokens, output_tokens);
        t.in_flight += 1;
        t.requests += 1;
        let queue_wait = if kind == StartKind::Hedge {
            SimDuration::ZERO
        } else {
            now - ready_at
        };
        if kind != StartKind::Hedge {
            t.waits.push(queue_wait.0);
        }
        match kind {
            StartKind::Hedge => t.hedges += 1,
            StartKind::Escalated => t.escalations_in += 1,
            StartKind::Primary => {}
        }
        self.st.remote_in_flight += 1;
        self.st.attempts += 1;
        let a = Attempt {
            generation: 0,
            live: true,
            wf_slot: call.slot,
            node: call.node,
            provider,
            tier,
            model,
            kind,
            attempt_no,
            start: now,
            end: now,
            price,
            queue_wait,
        };
        let (aslot, generation) = match self.st.free_atts.pop() {
            Some(s) => {
                let slot = &mut self.st.atts[s as usize];
                let g = slot.generation;
                *slot = Attempt { generation: g, ..a };
                (s, g)
            }
            None => {
                self.st.atts.push(a);
                ((self.st.atts.len() - 1) as u32, 0)
            }
        };
        let w = &mut self.st.wfs[call.slot as usize];
        let node = &mut w.nodes[call.node];
        node.attempts += 1;
        node.state = NodeState::Running;
        let free_idx = node
            .running
            .iter()
            .position(|&x| x == NO_ATTEMPT)
            .expect("checked a free attempt slot");
        node.running[free_idx] = aslot;
        w.attempts += 1;
        w.queue_wait += queue_wait;
        match kind {
            StartKind::Hedge => w.hedges += 1,
            StartKind::Escalated => w.escalations += 1,
            StartKind::Primary => {}
        }
        let send = SendAttempt {
            key: AttemptKey {
                slot: aslot,
                generation,
            },
            ids,
            model,
            kind,
            node_type: ty,
            input_tokens,
            output_tokens,
            queue_wait,
            spec: DrawSpec {
                sampler: &self.table.samplers[ty as usize],
                tail: self.table.tails[ty as usize],
                heavy_tail: self.table.heavy_tails[ty as usize],
                input_tokens,
                output_tokens,
            },
            tier: &self.st.tiers[gt].model,
        };
        let planned = self.io.send(now, &send).unwrap_or_else(|| {
            let info = &self.st.tiers[gt].model;
            SimDuration::from_ms(
                self.prior_p50_ms[ty as usize]
                    * info.latency_scale
                    * info.models[model as usize].latency_scale,
            )
        });
        self.st.atts[aslot as usize].end = now + planned;
        if F::MECHANISMS && self.prefix_caching {
            self.book_cached_prefix(aslot, generation, gt, input_tokens, output_tokens);
        }
        self.trace(
            TraceKind::Start(kind),
            call.slot,
            call.node,
            Place::Tier { provider, tier },
            AttemptTag {
                attempt: attempt_no,
                model,
                cost: Money::ZERO,
                ttft: None,
            },
        );
        if F::MECHANISMS && self.hedging {
            let ready = view!(self).ready_call(call);
            let started = AttemptStarted {
                call,
                attempt: AttemptKey {
                    slot: aslot,
                    generation,
                },
                provider,
                tier,
                model,
                ready,
                kind,
            };
            let view = view!(self);
            self.policy
                .on_started(&view, started, now, &mut self.follow_up);
        }
    }

    /// An attempt the driver served partly from a prefix cache at send
    /// time (the simulator's provider model knows then): it is charged
    /// the cached rate for those tokens, a cancellation its share of that.
    #[cold]
    fn book_cached_prefix(
        &mut self,
        aslot: u32,
        generation: u32,
        gt: usize,
        input_tokens: u32,
        output_tokens: u32,
    ) {
        if self.st.tiers[gt].model.prefix_cache.is_none() {
            return;
        }
        let used = self.io.prefix_use(AttemptKey {
            slot: aslot,
            generation,
        });
        if used == PrefixUse::default() {
            return;
        }
        let t = &mut self.st.tiers[gt];
        let a = &mut self.st.atts[aslot as usize];
        a.price = t
            .model
            .price_prefix(a.model as usize, input_tokens, used, output_tokens);
        t.cached_input_tokens += u64::from(used.cached);
        t.cache_write_tokens += u64::from(used.written);
    }

    /// How an attempt that ended with `usage` used its tier's prefix cache:
    /// what the provider reported, and where it did not say what it wrote,
    /// the scenario's `prefix_cache` says: a miss of a prompt whose shared
    /// part the cache can serve writes that part.
    #[cold]
    fn reported_prefix_use(&self, a: &Attempt, u: &TokenUsage) -> PrefixUse {
        let written = u.cache_write.unwrap_or_else(|| {
            let t = self.st.tier(a.provider, a.tier);
            let ty = self.st.wfs[a.wf_slot as usize].nodes[a.node].ty;
            match (
                &t.model.prefix_cache,
                self.shared_prompt_tokens.get(ty as usize),
            ) {
                (Some(cache), Some(&shared)) if u.cached_prompt == 0 => {
                    cache.servable(shared).min(u.prompt)
                }
                _ => 0,
            }
        });
        PrefixUse {
            cached: u.cached_prompt,
            written: written.min(u.prompt - u.cached_prompt),
        }
    }

    /// Releases an attempt's slot and accounts for it; returns it, what it
    /// was charged and its node's running attempts after it. `ttft`, the
    /// driver's report of it, goes only into the trace (and there only
    /// where the summary keeps it: see `kept_ttft`).
    /// Always inlined, as is `node_done`: their calls' frames were a
    /// measurable share of what an attempt costs.
    #[inline(always)]
    fn release_attempt(
        &mut self,
        aslot: u32,
        outcome: Outcome,
        usage: Option<TokenUsage>,
        ttft: Option<SimDuration>,
    ) -> (Attempt, Money, [u32; 2]) {
        let now = self.st.now;
        let a = self.st.atts[aslot as usize];
        if outcome == Outcome::Cancelled {
            self.io.cancel(AttemptKey {
                slot: aslot,
                generation: a.generation,
            });
        }
        let st = &mut self.st;
        st.atts[aslot as usize].live = false;
        st.atts[aslot as usize].generation = a.generation.wrapping_add(1);
        st.free_atts.push(aslot);
        st.remote_in_flight -= 1;
        if st.remote_in_flight == 0 && st.active == 0 {
            // A failed workflow's last attempt (not cancelled) ended.
            self.end_if_finished();
        }
        let elapsed = now - a.start;
        let price = match usage {
            // What the provider says it used, where the tier prices tokens.
            Some(u) => {
                let used = self.reported_prefix_use(&a, &u);
                let t = self.st.tier_mut(a.provider, a.tier);
                t.cached_input_tokens += u64::from(used.cached);
                t.cache_write_tokens += u64::from(used.written);
                t.model
                    .price_prefix(a.model as usize, u.prompt, used, u.completion)
            }
            None => a.price,
        };
        let st = &mut self.st;
        let charge = match outcome {
            Outcome::Success | Outcome::Failure | Outcome::Timeout => price,
            Outcome::RateLimited => Money::ZERO,
            // A cancelled attempt pays in proportion to the time it ran.
            Outcome::Cancelled => a.price.prorate(elapsed.0, (a.end - a.start).0),
        };
        let t = st.tier_mut(a.provider, a.tier);
        t.in_flight -= 1;
        t.busy += elapsed;
        t.cost += charge;
        match outcome {
            Outcome::Success => {
                t.successes += 1;
                t.service_sum += elapsed;
            }
            Outcome::Failure => t.failures += 1,
            Outcome::Timeout => t.timeouts += 1,
            Outcome::RateLimited => t.rate_limited += 1,
            Outcome::Cancelled => t.cancelled += 1,
        }
        let w = &mut st.wfs[a.wf_slot as usize];
        w.cost += charge;
        if matches!(
            outcome,
            Outcome::Failure | Outcome::Timeout | Outcome::Cancelled
        ) {
            w.wasted += elapsed;
            st.wasted += elapsed;
        }
        if outcome == Outcome::Cancelled {
            w.cancellations += 1;
            st.cancellations += 1;
        }
        let node = &mut w.nodes[a.node];
        // Written whole and handed back: a caller reading the array again
        // would load 8 bytes over a fresh 4-byte store, a store-forwarding
        // stall that was the M/M/8 run's costliest instruction.
        let running = node
            .running
            .map(|r| if r == aslot { NO_ATTEMPT } else { r });
        node.running = running;
        let ty = node.ty;
        self.trace_attempt(TraceKind::End(outcome), &a, charge, ttft);
        self.policy.on_attempt_end(|| AttemptEnded {
            provider: a.provider,
            tier: a.tier,
            node_type: ty,
            queue_wait: a.queue_wait,
            service: elapsed,
            success: outcome == Outcome::Success,
            measured: outcome != Outcome::Cancelled && outcome != Outcome::RateLimited,
            kind: a.kind,
        });
        (a, charge, running)
    }

    fn attempt_end(&mut self, aslot: u32, generation: u32, report: AttemptReport) {
        let at = &self.st.atts[aslot as usize];
        if !at.live || at.generation != generation {
            return; // cancelled earlier
        }
        let (a, charge, running) =
            self.release_attempt(aslot, report.outcome, report.usage, report.ttft);
        let (slot, node) = (a.wf_slot, a.node);
        if let Some(ttft) = self.kept_ttft(report.outcome, report.ttft) {
            self.streamed(&a, ttft);
        }
        if report.outcome == Outcome::RateLimited && report.limited_by == Limit::Tokens {
            self.st.tier_mut(a.provider, a.tier).rate_limited_tokens += 1;
        }
        let sibling_running = running.iter().any(|&r| r != NO_ATTEMPT);
        match report.outcome {
            Outcome::Success => {
                for r in running {
                    if r != NO_ATTEMPT {
                        self.release_attempt(r, Outcome::Cancelled, None, None);
                    }
                }
                if a.kind == StartKind::Hedge {
                    self.st.hedge_wins += 1;
                }
                if F::MECHANISMS && self.judging && self.rejected(&a) {
                    self.redo(&a, charge);
                } else {
                    self.node_done(slot, node);
                }
            }
            _ if sibling_running => {} // the other attempt may still succeed
            Outcome::RateLimited => {
                let w = &mut self.st.wfs[slot as usize];
                w.rate_limited += 1;
                w.nodes[node].state = NodeState::Backoff;
                let g = w.generation;
                self.io.set_timer(
                    self.st.now + report.retry_after,
                    Timer::RetryReady {
                        slot,
                        generation: g,
                        node,
                    },
                );
            }
            Outcome::Failure | Outcome::Timeout => {
                let max_retries = self.st.tier(a.provider, a.tier).model.max_retries;
                let w = &mut self.st.wfs[slot as usize];
                let nd = &mut w.nodes[node];
                nd.failures = nd.failures.saturating_add(1);
                if u32::from(nd.failures) > max_retries {
                    self.workflow_done(slot, false);
                } else {
                    nd.state = NodeState::Backoff;
                    let delay = self.policy.retry_delay(u32::from(nd.failures));
                    w.retries += 1;
                    self.st.retries += 1;
                    let g = w.generation;
                    self.io.set_timer(
                        self.st.now + delay,
                        Timer::RetryReady {
                            slot,
                            generation: g,
                            node,
                        },
                    );
                }
            }
            // A driver never reports a cancellation; treat one like a
            // failure that needs no retry accounting of its own.
            Outcome::Cancelled => {
                debug_assert!(false, "drivers do not report cancellations");
            }
        }
    }

    /// The time to first token a run keeps, in its summary and its trace,
    /// of an attempt that ended with `outcome`: a streaming scenario's
    /// successful ends only (live replies always carry a measured one).
    #[inline(always)]
    fn kept_ttft(&self, outcome: Outcome, ttft: Option<SimDuration>) -> Option<SimDuration> {
        ttft.filter(|_| F::MECHANISMS && self.streaming && outcome == Outcome::Success)
    }

    /// Records a successful streamed attempt's time to first token and
    /// time per output token, `(e2e - ttft) / (output tokens - 1)` (the
    /// definition vLLM and guidellm use).
    fn streamed(&mut self, a: &Attempt, ttft: SimDuration) {
        let st = &mut self.st;
        st.ttfts.push(ttft.0);
        let out = st.wfs[a.wf_slot as usize]
            .block_node(&self.block_nodes, a.node)
            .output_tokens;
        if out > 1 {
            let after_first = ((st.now - a.start).as_ms() - ttft.as_ms()).max(0.0);
            st.tpot_sum_ms += after_first / (out - 1) as f64;
            st.tpot_n += 1;
        }
    }

    /// Whether the answer of successful attempt `a` is rejected: its
    /// model's quality curve says no (a draw keyed by the call and its redo
    /// count, the same under every policy) and the tier has a model that
    /// accepts more calls of this difficulty. The best model's answer is
    /// final.
    fn rejected(&self, a: &Attempt) -> bool {
        let w = &self.st.wfs[a.wf_slot as usize];
        let n = &w.nodes[a.node];
        let models = &self.st.tier(a.provider, a.tier).model.models;
        let Some(curve) = &models[a.model as usize].quality else {
            return false;
        };
        if n.redos >= MAX_REDOS {
            return false;
        }
        let d = w.nodes.difficulty(a.node);
        let p = curve.accept(d);
        let better = models
            .iter()
            .any(|m| m.quality.as_ref().map_or(1.0, |q| q.accept(d)) > p);
        better
            && unit(&mut keyed(
                self.seed,
                Stream::Quality,
                [w.id, a.node as u64, n.redos as u64, 0],
            )) >= p
    }

    /// Accounts for a rejected answer and makes its call ready again; the
    /// policy places it on a better model ([`ReadyCall::redos`]).
    fn redo(&mut self, a: &Attempt, charge: Money) {
        let elapsed = self.st.now - a.start;
        let st = &mut self.st;
        st.tier_mut(a.provider, a.tier).redos += 1;
        st.redos += 1;
        st.redo_wasted += elapsed;
        st.redo_cost += charge;
        st.wasted += elapsed;
        let w = &mut st.wfs[a.wf_slot as usize];
        w.redos += 1;
        w.wasted += elapsed;
        w.nodes[a.node].redos += 1;
        self.trace_attempt(TraceKind::Redo, a, charge, None);
        self.make_ready(a.wf_slot, a.node);
    }

    /// Always inlined (see `release_attempt`).
    #[inline(always)]
    fn node_done(&mut self, slot: u32, node: u32) {
        let now = self.st.now;
        self.trace(
            TraceKind::NodeDone,
            slot,
            node,
            Place::None,
            AttemptTag::NONE,
        );
        let w = &mut self.st.wfs[slot as usize];
        // The block held is this node's (taken now: a next block replaces it).
        let (base, iteration) = (w.nodes.first, w.iteration);
        let idx = node - base;
        let n = &mut w.nodes[node];
        n.state = NodeState::Done;
        let ty = n.ty;
        w.unfinished -= 1;
        if Some(ty) == self.workload.decide_type {
            w.relevant +=
                self.workload
                    .relevant_in_iteration(self.seed, w.id, iteration, w.propensity);
            let stop =
                w.relevant >= self.workload.stop_relevant || iteration + 1 >= self.workload.iters;
            if !stop {
                self.instantiate(slot, iteration + 1);
            }
        }
        let block = self.workload.block(iteration);
        let succ_range =
            block.succ_off[idx as usize] as usize..block.succ_off[idx as usize + 1] as usize;
        for k in succ_range {
            let s = base + self.workload.block(iteration).succ[k];
            let w = &mut self.st.wfs[slot as usize];
            if !w.live {
                return;
            }
            let sn = &mut w.nodes[s];
            sn.deps_left -= 1;
            if sn.deps_left == 0 {
                self.make_ready(slot, s);
            }
        }
        let w = &self.st.wfs[slot as usize];
        if w.live && w.unfinished == 0 {
            let _ = now;
            self.workflow_done(slot, true);
        }
    }

    /// Always inlined: called once per workflow from `node_done` (inlined
    /// itself), where its call's frame showed in M/M/c profiles.
    #[inline(always)]
    fn workflow_done(&mut self, slot: u32, ok: bool) {
        self.workflow_done_as(slot, ok, false);
    }

    /// Cancels whatever a failed workflow still runs remotely; its local
    /// tasks finish and are ignored.
    #[cold]
    #[inline(never)]
    fn cancel_running(&mut self, slot: u32) {
        let running: Vec<u32> = self.st.wfs[slot as usize]
            .nodes
            .v
            .iter()
            .flat_map(|n| n.running)
            .filter(|&r| r != NO_ATTEMPT)
            .collect();
        for r in running {
            self.release_attempt(r, Outcome::Cancelled, None, None);
        }
    }

    /// Always inlined (the cold cancellations stay out of line): every
    /// workflow ends here once, and out of line the call cost M/M/c 33
    /// instructions a customer (of about 1,850).
    #[inline(always)]
    fn workflow_done_as(&mut self, slot: u32, ok: bool, interrupted: bool) {
        if !ok {
            self.cancel_running(slot);
        }
        self.trace(
            TraceKind::WorkflowDone(ok),
            slot,
            0,
            Place::None,
            AttemptTag::NONE,
        );
        let now = self.st.now;
        let w = &mut self.st.wfs[slot as usize];
        let rec = WorkflowRecord {
            workflow_id: w.id,
            arrival: w.arrival,
            finish: now,
            ok,
            cost: w.cost,
            retries: w.retries,
            rate_limited: w.rate_limited,
            cancellations: w.cancellations,
            hedges_launched: w.hedges,
            escalations: w.escalations,
            wasted: w.wasted,
            iterations: w.iteration + 1,
            nodes: w.nodes.total(),
            calls: w.calls,
            attempts: w.attempts,
            redos: w.redos,
            queue_wait: w.queue_wait,
            interrupted,
        };
        w.live = false;
        w.generation = w.generation.wrapping_add(1);
        if w.local_running == 0 {
            self.st.free_wfs.push(slot);
        }
        self.st.active_changed(-1);
        if ok {
            self.st.completed += 1;
            self.st.makespans.push(rec.makespan().0);
        } else {
            self.st.failed += 1;
        }
        self.st.costs.push(rec.cost.0);
        self.st.calls += rec.calls as u64;
        self.obs.workflow_done(&rec);
        if self.st.active == 0 {
            self.end_if_finished();
        }
    }

    /// Tells the driver when the run has finished (see
    /// [`finished`](Self::finished)). Called where the last workflow or the
    /// last work left running can end, not after every event: a check in
    /// the event loop cost M/M/c 1.8% more instructions.
    #[inline(never)]
    fn end_if_finished(&mut self) {
        if self.finished() {
            self.io.finished();
        }
    }

    /// The run's results; `events` is the driver's count of handled events.
    pub fn finish(mut self, events: u64) -> RunResult {
        let st = &mut self.st;
        let end = st.now;
        let dur_us = end.0.max(1) as f64;
        // Percentiles over exact integer samples (us, nano-dollars).
        let mk = percentiles(&mut st.makespans, &[50.0, 95.0, 99.0, 100.0], 1e-3);
        let cost_p50 = percentiles(&mut st.costs, &[50.0], 1e-9)[0];
        let cost_total = Money(st.costs.sum() as u64).as_dollars();
        // Each tier's p50 and p95 wait, in `st.tiers` order.
        let tier_waits: Vec<Vec<f64>> = st
            .tiers
            .iter_mut()
            .map(|t| percentiles(&mut t.waits, &[50.0, 95.0], 1e-3))
            .collect();
        let waited_on = st.tiers.iter().position(|t| !t.waits.is_empty());
        let mut remote_waits: Vec<&mut Samples> = st
            .tiers
            .iter_mut()
            .map(|t| &mut t.waits)
            .filter(|w| !w.is_empty())
            .collect();
        // The p95 over every tier's waits is an order statistic of their
        // union: with one tier waited on, that tier's own p95 (selecting it
        // again over a million waits cost an M/M/c run 1.2% more).
        let wait_p95 = match waited_on {
            Some(i) if remote_waits.len() == 1 => tier_waits[i][1],
            _ => report(
                stats::samples::percentiles_across(&mut remote_waits, &[95.0], 1e-3),
                1,
            )[0],
        };
        let wait_sum: u128 = remote_waits.iter().map(|w| w.sum()).sum();
        let wait_count: u64 = remote_waits.iter().map(|w| w.len()).sum();
        let mut tiers = Vec::new();
        let (mut failures, mut timeouts, mut rate_limited, mut hedges, mut escalations) =
            (0, 0, 0, 0, 0);
        for (p, name) in self.table.providers.iter().enumerate() {
            let first = st.tier_first[p];
            for (k, t) in st.provider_tiers_mut(p).iter_mut().enumerate() {
                let q = &tier_waits[first + k];
                failures += t.failures;
                timeouts += t.timeouts;
                rate_limited += t.rate_limited;
                hedges += t.hedges;
                escalations += t.escalations_in;
                let in_flight_avg = t.busy.0 as f64 / dur_us;
                tiers.push(TierRow {
                    provider: name.clone(),
                    tier_id: k as u16,
                    utilization: in_flight_avg / t.model.slots as f64,
                    queue_wait_p95_ms: q[1],
                    in_flight_avg,
                    kind: "remote".into(),
                    slots: t.model.slots,
                    requests: t.requests,
                    successes: t.successes,
                    failures: t.failures,
                    timeouts: t.timeouts,
                    rate_limited: t.rate_limited,
                    rate_limited_tokens: self.token_limits.then_some(t.rate_limited_tokens),
                    cached_input_tokens: self.prefix_caching.then_some(t.cached_input_tokens),
                    cache_write_tokens: self.prefix_caching.then_some(t.cache_write_tokens),
                    redos: self.judging.then_some(t.redos),
                    cancelled: t.cancelled,
                    hedges: t.hedges,
                    escalations_in: t.escalations_in,
                    queue_wait_mean_ms: t.waits.mean(1e-3),
                    queue_wait_p50_ms: q[0],
                    service_mean_ms: if t.successes > 0 {
                        t.service_sum.as_ms() / t.successes as f64
                    } else {
                        f64::NAN
                    },
                    cost: t.cost.as_dollars(),
                });
            }
        }
        for (i, name) in self.table.pools.iter().enumerate() {
            let p = &mut st.pools[i];
            let q = percentiles(&mut p.waits, &[50.0, 95.0], 1e-3);
            let in_flight_avg = p.busy.0 as f64 / dur_us;
            tiers.push(TierRow {
                provider: name.clone(),
                tier_id: 0,
                utilization: in_flight_avg / p.workers as f64,
                queue_wait_p95_ms: q[1],
                in_flight_avg,
                kind: "local".into(),
                slots: p.workers,
                requests: p.tasks,
                successes: p.tasks,
                failures: 0,
                timeouts: 0,
                rate_limited: 0,
                rate_limited_tokens: self.token_limits.then_some(0),
                cached_input_tokens: self.prefix_caching.then_some(0),
                cache_write_tokens: self.prefix_caching.then_some(0),
                redos: self.judging.then_some(0),
                cancelled: 0,
                hedges: 0,
                escalations_in: 0,
                queue_wait_mean_ms: p.waits.mean(1e-3),
                queue_wait_p50_ms: q[0],
                service_mean_ms: if p.tasks > 0 {
                    p.service_sum.as_ms() / p.tasks as f64
                } else {
                    f64::NAN
                },
                cost: 0.0,
            });
        }
        let streaming_p: [Option<f64>; 2] = if self.streaming {
            let p = percentiles(&mut st.ttfts, &[50.0, 95.0], 1e-3);
            [Some(p[0]), Some(p[1])]
        } else {
            [None, None]
        };
        let summary = Summary {
            makespan_mean_ms: st.makespans.mean(1e-3),
            makespan_p50_ms: mk[0],
            makespan_p95_ms: mk[1],
            makespan_p99_ms: mk[2],
            cost_mean: st.costs.mean(1e-9),
            cost_p50,
            cost_total,
            workflows: self.workload.workflows,
            completed: st.completed,
            failed: st.failed,
            makespan_max_ms: mk[3],
            calls: st.calls,
            attempts: st.attempts,
            queue_wait_mean_ms: if wait_count == 0 {
                f64::NAN
            } else {
                wait_sum as f64 * 1e-3 / wait_count as f64
            },
            queue_wait_p95_ms: wait_p95,
            hedges,
            hedge_wins: st.hedge_wins,
            escalations,
            retries: st.retries,
            failures,
            timeouts,
            rate_limited,
            cancellations: st.cancellations,
            wasted_ms: st.wasted.as_ms(),
            sim_time_ms: end.as_ms(),
            throughput_wf_per_s: st.completed as f64 / end.as_secs().max(1e-9),
            in_system_avg: st.active_area as f64 / dur_us,
            events,
            wall_time_s: 0.0,
            rate_limited_tokens: self
                .token_limits
                .then(|| st.tiers.iter().map(|t| t.rate_limited_tokens).sum()),
            redos: self.judging.then_some(st.redos),
            ttft_p50_ms: streaming_p[0],
            ttft_p95_ms: streaming_p[1],
            tpot_mean_ms: self.streaming.then(|| {
                if st.tpot_n == 0 {
                    f64::NAN
                } else {
                    st.tpot_sum_ms / st.tpot_n as f64
                }
            }),
            redo_wasted_ms: self.judging.then(|| st.redo_wasted.as_ms()),
            redo_cost: self.judging.then(|| st.redo_cost.as_dollars()),
            cached_input_tokens: self
                .prefix_caching
                .then(|| st.tiers.iter().map(|t| t.cached_input_tokens).sum()),
            cache_write_tokens: self
                .prefix_caching
                .then(|| st.tiers.iter().map(|t| t.cache_write_tokens).sum()),
        };
        RunResult { summary, tiers }
    }
}

/// Books a start on the tier's client-enforced request and token buckets.
/// Always inlined: both copies of the engine call it on every start.
#[inline(always)]
fn book_client_limits(m: &mut TierModel, now: SimTime, input_tokens: u32, output_tokens: u32) {
    if let (Some(b), Enforcer::Client) = (&mut m.bucket, m.enforcer) {
        b.take(now, 1);
    }
    if let (Some(b), Enforcer::Client) = (&mut m.token_bucket, m.token_enforcer) {
        let cost = input_tokens as u64 + output_tokens as u64;
        assert!(
            b.admits(now, cost),
            "policy started a call its tier's token limit does not admit"
        );
        b.take(now, cost);
    }
}

/// Percentiles of a sample store (see [`report`]).
fn percentiles(samples: &mut Samples, qs: &[f64], unit: f64) -> Vec<f64> {
    report(samples.percentiles(qs, unit), qs.len())
}

/// Percentiles whose spilled samples could not be read back are NaN, with a
/// warning: the run's other results stand.
fn report(r: std::io::Result<Vec<f64>>, n: usize) -> Vec<f64> {
    r.unwrap_or_else(|e| {
        eprintln!("agentsched: cannot read back spilled samples ({e}); their percentiles are NaN");
        vec![f64::NAN; n]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(ty: u16) -> Node {
        let b = BlockNode {
            node_type: ty,
            input_tokens: 0,
            output_tokens: 0,
            preds: 0,
            tag: 0,
            rcp_in_block: SimDuration::ZERO,
        };
        Node::blocked(&b, 0)
    }

    /// The memo gives what the draws give, cold or warm, and a change to a
    /// node type's latency model or to the seed is a new entry, not a hit.
    #[test]
    fn memoised_priors_are_the_draws_of_each_model() {
        let base = Scenario::default_research_agent();
        let mut slower = base.clone();
        let (name, nt) = slower.node_types.iter_mut().next().expect("a node type");
        let name = name.clone();
        nt.latency = crate::scenario::Dist::Constant { ms: 12_345.0 };
        let mut reseeded = base.clone();
        reseeded.seed += 1;
        let mut seen = Vec::new();
        for s in [&base, &slower, &reseeded, &base, &slower] {
            let table = NodeTable::build(s);
            let cw = crate::workload::compile(s, &table.facts());
            let fresh = priors_with(s, &table, &cw, false);
            assert_eq!(priors(s, &table, &cw), fresh);
            seen.push((table.names.iter().position(|n| *n == name).unwrap(), fresh));
        }
        let ty = seen[0].0;
        assert_eq!(seen[1].1[ty].prior_p50_ms, 12_345.0);
        assert_ne!(seen[0].1[ty], seen[1].1[ty]);
        assert_ne!(seen[0].1, seen[2].1, "another seed draws other priors");
    }

    #[test]
    fn live_nodes_keep_their_numbers_when_done_blocks_are_dropped() {
        let mut t = LiveNodes::default();
        t.v.extend([node(10), node(11), node(12)]);
        assert_eq!((t.total(), t[1].ty), (3, 11));
        t.drop_done();
        assert_eq!((t.total(), t.v.len()), (3, 0));
        t.v.extend([node(20), node(21)]);
        assert_eq!(t.total(), 5);
        assert_eq!((t[3].ty, t[4].ty), (20, 21));
        t[4].redos = 2;
        assert_eq!(t.get(4).map(|n| n.redos), Some(2));
        // Dropped and never-made nodes are not held.
        assert!(t.get(2).is_none() && t.get(0).is_none() && t.get(5).is_none());
    }
}
