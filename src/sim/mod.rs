//! The deterministic discrete-event simulator: a thin driver of the shared
//! [`runtime`](crate::runtime).
//!
//! A single-threaded core pops events in (time, insertion) order and hands
//! them to the runtime; what this driver adds is the event queue and the
//! keyed outcome draws (latency, failure, timeout), plus the provider side
//! of provider-enforced rate limits (429s with a Retry-After).

mod queue;

pub use queue::EventQueue;

pub use crate::runtime::{Exec, NodeTable};

use crate::metrics::{Observer, RunResult};
use crate::policy::AttemptKey;
use crate::provider::{PrefixUse, ProviderReply, ProviderSide};
use crate::runtime::{
    AttemptReport, Driver, General, QueuesOnly, Runtime, SendAttempt, Timer, Variant,
    uses_optional_mechanisms,
};
use crate::scenario::Scenario;
use crate::units::{SimDuration, SimTime};
use crate::workload::CompiledWorkload;

#[derive(Clone, Copy, Debug)]
enum Event {
    Timer(Timer),
    AttemptEnd { slot: u32, generation: u32 },
}

/// The simulator's side of the runtime: the event queue and the provider
/// model (keyed draws, provider-enforced buckets).
#[derive(Debug)]
pub struct SimDriver {
    queue: EventQueue<Event>,
    provider: ProviderSide,
    /// The provider's reply to each attempt slot's latest attempt: its
    /// drawn duration and outcome, and for a 429 its Retry-After and limit.
    ends: Vec<ProviderReply>,
}

impl SimDriver {
    /// An empty event queue and the scenario's provider model.
    fn new(s: &Scenario) -> SimDriver {
        SimDriver {
            queue: EventQueue::with_wake(Event::Timer(Timer::Wake)),
            provider: ProviderSide::new(s),
            ends: Vec::new(),
        }
    }
}

// Inlined: an attempt's send and an arrival's timer were calls of their own.
// Always, for the send: a run that records its workflows (`simulate`, a
// sweep's runs) still made it a call.
impl Driver for SimDriver {
    #[inline(always)]
    fn send(&mut self, now: SimTime, a: &SendAttempt<'_>) -> Option<SimDuration> {
        let slot = a.key.slot as usize;
        if slot >= self.ends.len() {
            self.ends.resize(slot + 1, ProviderReply::BLANK);
        }
        // Drawn straight into its slot (see `ProviderSide::attempt_into`).
        self.provider.attempt_into(
            &mut self.ends[slot],
            now,
            a.ids,
            a.tier,
            a.model as usize,
            a.node_type,
            &a.spec,
        );
        let duration = self.ends[slot].draw.duration;
        self.queue.push(
            now + duration,
            Event::AttemptEnd {
                slot: a.key.slot,
                generation: a.key.generation,
            },
        );
        Some(duration)
    }

    fn prefix_use(&self, attempt: AttemptKey) -> PrefixUse {
        let end = &self.ends[attempt.slot as usize];
        PrefixUse {
            cached: end.cached_input_tokens,
            written: end.cache_write_tokens,
        }
    }

    /// Nothing to do: the runtime ignores the stale end event.
    fn cancel(&mut self, _attempt: AttemptKey) {}

    /// The events still pending can change nothing: dropped, so that the
    /// run ends with the event it finished at.
    fn finished(&mut self) {
        self.queue.clear();
    }

    /// Always inlined: out of line, the timer passed through memory was
    /// reloaded wider than it was written (a store-forwarding stall).
    #[inline(always)]
    fn set_timer(&mut self, at: SimTime, timer: Timer) {
        match timer {
            // At most one arrival is pending: it waits beside the heap.
            Timer::Arrival => self.queue.push_arrival(at, Event::Timer(timer)),
            // Payload-free: it waits among bare keys (see `EventQueue`).
            Timer::Wake => self.queue.push_wake(at),
            _ => self.queue.push(at, Event::Timer(timer)),
        }
    }
}

/// A run, ready to go: the scenario compiled, the policy built.
pub struct Simulator<'o, O: Observer> {
    engine: Engine<'o, O>,
}

/// The runtime, in the copy the scenario can run on (see
/// [`crate::runtime::Variant`]).
enum Engine<'o, O: Observer> {
    General(Runtime<'o, O, SimDriver, General>),
    QueuesOnly(Runtime<'o, O, SimDriver, QueuesOnly>),
}

/// Calls `$body` with `$rt` bound to the runtime, whichever copy it is.
macro_rules! with_runtime {
    ($engine:expr, $rt:ident => $body:expr) => {
        match $engine {
            Engine::General($rt) => $body,
            Engine::QueuesOnly($rt) => $body,
        }
    };
}

impl<O: Observer> std::fmt::Debug for Simulator<'_, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("now", &with_runtime!(&self.engine, rt => rt.now()))
            .field("queues_only", &self.queues_only())
            .finish()
    }
}

impl<'o, O: Observer> Simulator<'o, O> {
    /// Compiles a validated scenario.
    pub fn new(s: &Scenario, obs: &'o mut O) -> Simulator<'o, O> {
        let io = SimDriver::new(s);
        let engine = if uses_optional_mechanisms(s) {
            Engine::General(Runtime::new(s, obs, io))
        } else {
            Engine::QueuesOnly(Runtime::new(s, obs, io))
        };
        Simulator { engine }
    }

    /// The same run on the [`General`] copy of the engine, whatever the
    /// scenario uses (the tests check that both copies compute the same).
    pub fn general(s: &Scenario, obs: &'o mut O) -> Simulator<'o, O> {
        Simulator {
            engine: Engine::General(Runtime::new(s, obs, SimDriver::new(s))),
        }
    }

    /// Runs a full policy dispatch pass after every event instead of
    /// skipping passes that cannot change anything. Outputs are the same,
    /// except `events` (wake-ups may be requested at other moments); the
    /// tests check exactly that.
    pub fn with_exhaustive_dispatch(self) -> Self {
        Simulator {
            engine: match self.engine {
                Engine::General(rt) => Engine::General(rt.with_exhaustive_dispatch()),
                Engine::QueuesOnly(rt) => Engine::QueuesOnly(rt.with_exhaustive_dispatch()),
            },
        }
    }

    /// Keeps at most `cap` samples per metric in memory, spilling the rest
    /// to a temporary file. Results are the same whatever the cap.
    pub fn with_samples_in_memory(self, cap: usize) -> Self {
        Simulator {
            engine: match self.engine {
                Engine::General(rt) => Engine::General(rt.with_samples_in_memory(cap)),
                Engine::QueuesOnly(rt) => Engine::QueuesOnly(rt.with_samples_in_memory(cap)),
            },
        }
    }

    /// The node-type table (names for reports).
    pub fn table(&self) -> &NodeTable {
        with_runtime!(&self.engine, rt => rt.table())
    }

    /// The compiled workload (tests check traces against its blocks).
    pub fn workload(&self) -> &CompiledWorkload {
        with_runtime!(&self.engine, rt => rt.workload())
    }

    /// Whether the run uses the [`QueuesOnly`] copy of the engine.
    pub fn queues_only(&self) -> bool {
        matches!(self.engine, Engine::QueuesOnly(_))
    }

    /// Runs to completion. A run that would pass [`SimTime::HORIZON`]
    /// stops there; [`Simulator::run_checked`] says so.
    pub fn run(self) -> RunResult {
        self.run_checked().unwrap_or_else(|e| *e.partial)
    }

    /// Runs to completion, or stops with [`PastHorizon`] at the first event
    /// past [`SimTime::HORIZON`]: validation bounds every time a scenario
    /// names, so only absurd draws (a lognormal with a huge sigma) or very
    /// long serial chains get there, and the clock never saturates.
    pub fn run_checked(self) -> Result<RunResult, PastHorizon> {
        with_runtime!(self.engine, rt => run_to_end(rt))
    }
}

/// Runs `rt` to its end (see [`Simulator::run_checked`]).
fn run_to_end<O: Observer, F: Variant>(
    mut rt: Runtime<'_, O, SimDriver, F>,
) -> Result<RunResult, PastHorizon> {
    match run_events(&mut rt) {
        Ok(events) => Ok(rt.finish(events)),
        Err(events) => Err(PastHorizon {
            partial: Box::new(rt.finish(events)),
        }),
    }
}

/// Handles every event until the run has finished (the runtime then has
/// the queue dropped: see [`Runtime::finished`]); returns how many, as an
/// error if the run stopped at the horizon.
fn run_events<O: Observer, F: Variant>(rt: &mut Runtime<'_, O, SimDriver, F>) -> Result<u64, u64> {
    let mut events = 0u64;
    rt.start();
    while let Some((t, ev)) = rt.io.queue.pop() {
        if t > SimTime::HORIZON {
            return Err(events);
        }
        events += 1;
        match ev {
            Event::Timer(timer) => rt.on_timer(t, timer),
            Event::AttemptEnd { slot, generation } => {
                let end = rt.io.ends[slot as usize];
                rt.on_attempt_end(
                    t,
                    AttemptKey { slot, generation },
                    AttemptReport {
                        outcome: end.draw.outcome,
                        retry_after: end.retry_after,
                        limited_by: end.limited_by,
                        ttft: end.draw.ttft,
                        usage: None,
                    },
                );
            }
        }
    }
    Ok(events)
}

/// A run stopped at the representable horizon of simulated time.
#[derive(Debug)]
pub struct PastHorizon {
    /// What the run had computed when it stopped.
    pub partial: Box<RunResult>,
}

impl std::fmt::Display for PastHorizon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "simulated time passed its horizon ({:.0} years) after {} events: the scenario's latencies, \
             timeouts or arrival gaps are too long (a latency draw is capped at {:.0} years; check sigma and mu)",
            SimTime::HORIZON.as_secs() / 31_557_600.0,
            self.partial.summary.events,
            SimDuration::MAX_DRAW.as_secs() / 31_557_600.0,
        )
    }
}

/// Validates and runs a scenario, streaming records to `obs`.
pub fn run<O: Observer>(s: &Scenario, obs: &mut O) -> RunResult {
    Simulator::new(s, obs).run()
}

#[cfg(test)]
mod tests;
