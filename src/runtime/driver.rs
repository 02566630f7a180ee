//! The interface between the workflow runtime and a driver.
//!
//! The runtime calls a [`Driver`] wherever something has to happen in time
//! or in the outside world (send an attempt, cancel it, set a timer); the
//! driver calls the runtime's entry points when something happened (a
//! timer fired, an attempt ended). Nothing here knows what a clock is.

use crate::policy::{AttemptKey, StartKind};
use crate::provider::{AttemptIds, DrawSpec, Limit, Outcome, PrefixUse, TierModel};
use crate::units::{SimDuration, SimTime};

/// A timer the runtime asks for; the driver hands it back through
/// [`Runtime::on_timer`](super::Runtime::on_timer) at (or, for a real
/// clock, no earlier than) the requested time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    /// The next workflow arrives.
    Arrival,
    /// A local task ends.
    LocalEnd {
        /// Workflow slot.
        slot: u32,
        /// Slot generation when the task started.
        generation: u32,
        /// Node index.
        node: u32,
        /// Pool index.
        pool: u16,
    },
    /// A call's retry backoff (or 429 wait) is over.
    RetryReady {
        /// Workflow slot.
        slot: u32,
        /// Slot generation when the backoff began.
        generation: u32,
        /// Node index.
        node: u32,
    },
    /// The policy asked for a dispatch at this time (`WakeAt`).
    Wake,
}

/// Everything a driver needs to send one attempt.
#[derive(Clone, Copy, Debug)]
pub struct SendAttempt<'a> {
    /// The attempt's handle: report its end with it.
    pub key: AttemptKey,
    /// The identity its randomness is keyed by (workflow, node, provider,
    /// tier, attempt number).
    pub ids: AttemptIds,
    /// Model index on the tier.
    pub model: u8,
    /// Primary, escalated or hedge.
    pub kind: StartKind,
    /// Node type index.
    pub node_type: u16,
    /// Prompt tokens.
    pub input_tokens: u32,
    /// Completion tokens asked for (`max_tokens`).
    pub output_tokens: u32,
    /// How long the call waited for this start (zero for a hedge).
    pub queue_wait: SimDuration,
    /// What the attempt's latency draw depends on.
    pub spec: DrawSpec<'a>,
    /// The tier's model (the provider-enforced bucket is the driver's).
    pub tier: &'a TierModel,
}

/// How an attempt ended, as the driver observed it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttemptReport {
    /// The outcome (never `Cancelled`: cancellations come from the runtime).
    pub outcome: Outcome,
    /// For a 429: how long to wait before sending again.
    pub retry_after: SimDuration,
    /// For a 429: which limit refused it.
    pub limited_by: Limit,
    /// Time to first token of a streamed answer, in scenario time.
    pub ttft: Option<SimDuration>,
    /// Tokens the provider reported using, if any; a tier priced per
    /// token is charged for these instead of the scenario's sizes.
    pub usage: Option<TokenUsage>,
}

/// Tokens a provider reported for one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenUsage {
    /// Prompt tokens, cached ones included.
    pub prompt: u32,
    /// Of those, the ones served from its prefix cache.
    pub cached_prompt: u32,
    /// Of those, the ones written to its prefix cache, where the provider
    /// said; None where it did not (most do not), and the runtime reads
    /// them off the scenario's `prefix_cache`: the shared part a call
    /// served nothing from the cache wrote.
    pub cache_write: Option<u32>,
    /// Completion tokens.
    pub completion: u32,
}

impl AttemptReport {
    /// A report with only an outcome.
    pub fn of(outcome: Outcome) -> AttemptReport {
        AttemptReport {
            outcome,
            retry_after: SimDuration::ZERO,
            limited_by: Limit::Requests,
            ttft: None,
            usage: None,
        }
    }
}

/// What the runtime asks of a driver. Every method returns at once: a
/// driver records what it must do and reports back through the runtime's
/// entry points later.
pub trait Driver {
    /// Sends an attempt at `now`. Returns its planned duration when the
    /// driver knows it in advance (the simulator's draw); a live driver
    /// returns `None`, and a cancelled attempt is then charged against the
    /// node type's expected duration on that tier.
    fn send(&mut self, now: SimTime, attempt: &SendAttempt<'_>) -> Option<SimDuration>;
    /// How the attempt just sent uses its provider's prefix cache (prompt
    /// tokens served from it and written to it), when the driver knows at
    /// send time (asked only where the scenario models prefix caching, of
    /// attempts on a tier that keeps a cache). A live driver learns it from
    /// the reply's usage instead.
    fn prefix_use(&self, _attempt: AttemptKey) -> PrefixUse {
        PrefixUse::default()
    }
    /// Drops a running attempt (hedge loser, failed workflow, interrupt).
    /// Its end must not be reported afterwards; a report that comes anyway
    /// is ignored.
    fn cancel(&mut self, attempt: AttemptKey);
    /// Asks for `timer` at `at`.
    fn set_timer(&mut self, at: SimTime, timer: Timer);
    /// The run has finished ([`Runtime::finished`](super::Runtime::finished)):
    /// nothing asked for before matters any more. The simulator drops its
    /// pending events here; a live driver checks `finished` itself.
    fn finished(&mut self) {}
}
