//! What the determinism contract alone costs a bare event loop, and what a
//! lean runtime of the engine's shape adds to it. `sequential` and `keyed`
//! are the bench's heap-reference M/M/8 loop, drawing from one sequential
//! generator (as the reference does) or with the engine's keyed draws (a
//! generator per arrival and per service, keyed by the customer's id); both
//! keep every customer's latency and queue wait and select percentiles at
//! the end, as the engine's records do. `runtime` runs the same customers,
//! on the keyed draws, through a lean runtime of the engine's shape (see
//! [`lean`]) and prints the same percentiles. Measured beside the engine,
//! they split the core's gap to the reference into keyed randomness and
//! records, the runtime's shape, and the engine's features.
//!
//! `cargo run --release --example mmc_floor -- [sequential|keyed|runtime] [N]`
//! (N customers, default 1,000,000); count instructions with
//! `valgrind --tool=cachegrind`. Mode `check` asserts that `runtime` and
//! `keyed` give the same latencies and waits.
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Instant;

use agentsched::rng::{Keyer, SimRng, Stream, mix64, unit};
use rand::Rng;
use rand_distr::{Distribution, Exp};

const SERVERS: u32 = 8;
const ARRIVAL_RATE: f64 = 7.2;
const SERVICE_RATE: f64 = 1.0;
const SEED: u64 = 1;

/// Where the loops' exponential draws come from (generic, so that each
/// loop is compiled for one source, with no branch on it per draw).
trait Draws {
    fn gap_s(&mut self, id: u64) -> f64;
    fn service_s(&mut self, id: u64) -> f64;
}

/// One generator in draw order, inverse-CDF, as the reference loop.
struct Sequential(SimRng);

impl Draws for Sequential {
    #[inline(always)]
    fn gap_s(&mut self, _id: u64) -> f64 {
        -(1.0 - unit(&mut self.0)).ln() / ARRIVAL_RATE
    }

    #[inline(always)]
    fn service_s(&mut self, _id: u64) -> f64 {
        -(1.0 - unit(&mut self.0)).ln() / SERVICE_RATE
    }
}

/// A generator per draw keyed by the customer's id, sampled as the engine
/// samples (rand_distr's ziggurat); a service draw also takes the two
/// words an engine attempt draws for its tails and failure.
struct Keyed {
    arrivals: Keyer,
    services: Keyer,
    arrival_gap: Exp<f64>,
    service: Exp<f64>,
}

impl Keyed {
    fn new() -> Keyed {
        Keyed {
            arrivals: Keyer::new(SEED, Stream::Arrival),
            services: Keyer::new(SEED, Stream::Attempt),
            arrival_gap: Exp::new(ARRIVAL_RATE).expect("positive rate"),
            service: Exp::new(SERVICE_RATE).expect("positive rate"),
        }
    }
}

impl Draws for Keyed {
    #[inline(always)]
    fn gap_s(&mut self, id: u64) -> f64 {
        self.arrival_gap.sample(&mut self.arrivals.rng(id, 0))
    }

    #[inline(always)]
    fn service_s(&mut self, id: u64) -> f64 {
        let mut rng = self.services.rng(id << 32, 0);
        let s = self.service.sample(&mut rng);
        std::hint::black_box((rng.next_u64(), unit(&mut rng)));
        s
    }
}

/// The bench's bare loop, keeping every latency and wait. Always inlined,
/// as are the draws: compiled as one loop, as the reference is.
#[inline(always)]
fn bare(draws: &mut impl Draws, customers: u64) -> (Vec<u64>, Vec<u64>) {
    let ns = |s: f64| (s * 1e9) as u64;
    // (time in ns, kind, what): an arrival (kind 1) carries the customer's
    // id, a departure (kind 0, first at equal times) its arrival time.
    let mut heap: BinaryHeap<Reverse<(u64, u8, u64)>> = BinaryHeap::new();
    let mut waiting: VecDeque<(u64, u64)> = VecDeque::new();
    let (mut latencies, mut waits) = (Vec::new(), Vec::new());
    let (mut busy, mut arrived) = (0u32, 1u64);
    heap.push(Reverse((0, 1, 0)));
    while let Some(Reverse((now, kind, what))) = heap.pop() {
        if kind == 1 {
            let id = what;
            if arrived < customers {
                let next = now + ns(draws.gap_s(arrived));
                heap.push(Reverse((next, 1, arrived)));
                arrived += 1;
            }
            if busy < SERVERS {
                busy += 1;
                waits.push(0);
                heap.push(Reverse((now + ns(draws.service_s(id)), 0, now)));
            } else {
                waiting.push_back((now, id));
            }
        } else {
            latencies.push(now - what);
            match waiting.pop_front() {
                Some((since, next)) => {
                    waits.push(now - since);
                    let end = now + ns(draws.service_s(next));
                    heap.push(Reverse((end, 0, since)));
                }
                None => busy -= 1,
            }
        }
    }
    (latencies, waits)
}

/// A lean runtime of the engine's shape, on the keyed draws: workflows in
/// reused slots with generations, their nodes, a policy that sees the
/// system only through a view and answers with decisions, attempts in
/// reused slots (a stale end is recognised by its generation), the
/// engine's event queue, and the per-tier and per-workflow accounting
/// behind the engine's outputs. No retries, timeouts, rate limits, hedges,
/// traces or observer: what the engine adds to this is what its features
/// cost where a scenario does not use them.
mod lean {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    use agentsched::sim::EventQueue;
    use agentsched::units::SimTime;

    use super::{Draws, SERVERS};

    #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    struct Call {
        slot: u32,
        generation: u32,
        node: u32,
    }

    enum Decision {
        Start { call: Call, tier: u16 },
    }

    /// What the policy may know of the system.
    trait View {
        fn free(&self, tier: u16) -> u32;
        fn waiting(&self, call: Call) -> bool;
    }

    /// FIFO on the cheapest tier: ready calls queue by (priority, arrival).
    struct Policy {
        queues: Vec<BinaryHeap<Reverse<(u64, u64, Call)>>>,
        seq: u64,
        dirty: bool,
    }

    impl Policy {
        fn on_ready(&mut self, call: Call, priority: u64) {
            self.seq += 1;
            self.queues[0].push(Reverse((priority, self.seq, call)));
            self.dirty = true;
        }

        fn on_end(&mut self) {
            self.dirty = true;
        }

        fn dispatch(&mut self, view: &impl View, out: &mut Vec<Decision>) {
            if !std::mem::take(&mut self.dirty) {
                return;
            }
            for (t, q) in self.queues.iter_mut().enumerate() {
                let mut free = view.free(t as u16);
                while free > 0 {
                    let Some(Reverse((_, _, call))) = q.pop() else {
                        break;
                    };
                    if view.waiting(call) {
                        out.push(Decision::Start {
                            call,
                            tier: t as u16,
                        });
                        free -= 1;
                    }
                }
            }
        }
    }

    #[derive(Clone, Copy, PartialEq)]
    enum NodeState {
        Waiting,
        Running,
        Done,
    }

    #[derive(Clone, Copy)]
    struct Node {
        state: NodeState,
        ready_at: u64,
        attempts: u32,
        running: u32,
    }

    #[derive(Default)]
    struct Workflow {
        id: u64,
        generation: u32,
        live: bool,
        arrived: u64,
        pending: u32,
        attempts: u32,
        queue_wait: u64,
        cost: f64,
        /// Reused from the slot's last workflow: no allocation per arrival.
        nodes: Vec<Node>,
    }

    #[derive(Clone, Copy, Default)]
    struct Attempt {
        generation: u32,
        live: bool,
        slot: u32,
        node: u32,
        tier: u16,
        start: u64,
        price: f64,
    }

    struct Tier {
        slots: u32,
        in_flight: u32,
        requests: u64,
        busy_ns: u64,
        price: f64,
        waits: Vec<u64>,
    }

    #[derive(Clone, Copy)]
    enum Event {
        Arrival,
        End { slot: u32, generation: u32 },
    }

    struct State {
        now: u64,
        wfs: Vec<Workflow>,
        free_wfs: Vec<u32>,
        atts: Vec<Attempt>,
        free_atts: Vec<u32>,
        tiers: Vec<Tier>,
        latencies: Vec<u64>,
        cost: f64,
    }

    impl View for State {
        fn free(&self, tier: u16) -> u32 {
            let t = &self.tiers[tier as usize];
            t.slots - t.in_flight
        }
        fn waiting(&self, c: Call) -> bool {
            let w = &self.wfs[c.slot as usize];
            w.live
                && w.generation == c.generation
                && w.nodes[c.node as usize].state == NodeState::Waiting
        }
    }

    struct Runtime<'d, D: Draws> {
        st: State,
        policy: Policy,
        decisions: Vec<Decision>,
        /// The engine's own event queue (times in ns here).
        queue: EventQueue<Event>,
        arrived: u64,
        customers: u64,
        draws: &'d mut D,
    }

    const NS: f64 = 1e9;

    impl<D: Draws> Runtime<'_, D> {
        fn arrive(&mut self) {
            let id = self.arrived;
            self.arrived += 1;
            if self.arrived < self.customers {
                let at = self.st.now + (self.draws.gap_s(self.arrived) * NS) as u64;
                self.queue.push_arrival(SimTime(at), Event::Arrival);
            }
            let slot = match self.st.free_wfs.pop() {
                Some(s) => s,
                None => {
                    self.st.wfs.push(Workflow::default());
                    (self.st.wfs.len() - 1) as u32
                }
            };
            let now = self.st.now;
            let w = &mut self.st.wfs[slot as usize];
            let mut nodes = std::mem::take(&mut w.nodes);
            nodes.clear();
            nodes.push(Node {
                state: NodeState::Waiting,
                ready_at: now,
                attempts: 0,
                running: u32::MAX,
            });
            *w = Workflow {
                id,
                generation: w.generation,
                live: true,
                arrived: now,
                pending: 1,
                nodes,
                ..Workflow::default()
            };
            let generation = w.generation;
            self.policy.on_ready(
                Call {
                    slot,
                    generation,
                    node: 0,
                },
                id,
            );
        }

        fn start(&mut self, call: Call, tier: u16) {
            if !self.st.waiting(call) {
                return;
            }
            let now = self.st.now;
            let t = &mut self.st.tiers[tier as usize];
            assert!(
                t.in_flight < t.slots,
                "policy started a call on a full tier"
            );
            t.in_flight += 1;
            t.requests += 1;
            let price = t.price;
            let w = &mut self.st.wfs[call.slot as usize];
            let wait = now - w.nodes[call.node as usize].ready_at;
            t.waits.push(wait);
            let a = Attempt {
                generation: 0,
                live: true,
                slot: call.slot,
                node: call.node,
                tier,
                start: now,
                price,
            };
            let aslot = match self.st.free_atts.pop() {
                Some(s) => {
                    let g = self.st.atts[s as usize].generation;
                    self.st.atts[s as usize] = Attempt { generation: g, ..a };
                    s
                }
                None => {
                    self.st.atts.push(a);
                    (self.st.atts.len() - 1) as u32
                }
            };
            let w = &mut self.st.wfs[call.slot as usize];
            let node = &mut w.nodes[call.node as usize];
            node.state = NodeState::Running;
            node.attempts += 1;
            node.running = aslot;
            w.attempts += 1;
            w.queue_wait += wait;
            let end = now + (self.draws.service_s(w.id) * NS) as u64;
            let generation = self.st.atts[aslot as usize].generation;
            self.queue.push(
                SimTime(end),
                Event::End {
                    slot: aslot,
                    generation,
                },
            );
        }

        fn end(&mut self, aslot: u32, generation: u32) {
            let a = self.st.atts[aslot as usize];
            if !a.live || a.generation != generation {
                return;
            }
            let now = self.st.now;
            let slot = &mut self.st.atts[aslot as usize];
            slot.live = false;
            slot.generation += 1;
            self.st.free_atts.push(aslot);
            let t = &mut self.st.tiers[a.tier as usize];
            t.in_flight -= 1;
            t.busy_ns += now - a.start;
            let w = &mut self.st.wfs[a.slot as usize];
            w.nodes[a.node as usize].state = NodeState::Done;
            w.cost += a.price;
            w.pending -= 1;
            if w.pending == 0 {
                w.live = false;
                w.generation += 1;
                self.st.latencies.push(now - w.arrived);
                self.st.cost += w.cost;
                self.st.free_wfs.push(a.slot);
            }
            self.policy.on_end();
        }

        fn run(&mut self) {
            while let Some((now, event)) = self.queue.pop() {
                self.st.now = now.0;
                match event {
                    Event::Arrival => self.arrive(),
                    Event::End { slot, generation } => self.end(slot, generation),
                }
                self.policy.dispatch(&self.st, &mut self.decisions);
                for i in 0..self.decisions.len() {
                    let Decision::Start { call, tier } = self.decisions[i];
                    self.start(call, tier);
                }
                self.decisions.clear();
            }
        }
    }

    /// Runs `customers` single-node workflows; returns every workflow's
    /// latency and every start's queue wait, as the bare loop does.
    pub fn run(draws: &mut impl Draws, customers: u64) -> (Vec<u64>, Vec<u64>) {
        let mut rt = Runtime {
            st: State {
                now: 0,
                wfs: Vec::new(),
                free_wfs: Vec::new(),
                atts: Vec::new(),
                free_atts: Vec::new(),
                tiers: vec![Tier {
                    slots: SERVERS,
                    in_flight: 0,
                    requests: 0,
                    busy_ns: 0,
                    price: 0.001,
                    waits: Vec::new(),
                }],
                latencies: Vec::new(),
                cost: 0.0,
            },
            policy: Policy {
                queues: vec![BinaryHeap::new()],
                seq: 0,
                dirty: false,
            },
            decisions: Vec::new(),
            queue: EventQueue::default(),
            arrived: 0,
            customers,
            draws,
        };
        rt.queue.push_arrival(SimTime(0), Event::Arrival);
        rt.run();
        let t = &rt.st.tiers[0];
        std::hint::black_box((rt.st.cost, t.requests, t.busy_ns));
        let waits = std::mem::take(&mut rt.st.tiers[0].waits);
        (rt.st.latencies, waits)
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "keyed".into());
    let customers: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let t = Instant::now();
    let (mut latencies, mut waits) = match mode.as_str() {
        "sequential" => bare(
            &mut Sequential(SimRng::new(u128::from(mix64(SEED)) | 1)),
            customers,
        ),
        "keyed" => bare(&mut Keyed::new(), customers),
        "runtime" => lean::run(&mut Keyed::new(), customers),
        "check" => {
            // The lean runtime serves the same customers as the bare loop:
            // the same latencies and waits (as multisets; ties between
            // events at the same nanosecond may order them differently).
            let (mut bare_l, mut bare_w) = bare(&mut Keyed::new(), customers);
            let (mut lean_l, mut lean_w) = lean::run(&mut Keyed::new(), customers);
            for v in [&mut bare_l, &mut bare_w, &mut lean_l, &mut lean_w] {
                v.sort_unstable();
            }
            assert!(bare_l == lean_l && bare_w == lean_w, "the runtime differs");
            println!("check: {customers} customers, the same latencies and waits");
            return;
        }
        other => {
            eprintln!("unknown mode {other:?}: expected sequential, keyed, runtime or check");
            std::process::exit(2);
        }
    };
    let n = latencies.len();
    let p50 = *latencies.select_nth_unstable(n / 2).1;
    let p99 = *latencies.select_nth_unstable(n * 99 / 100).1;
    let wait_p95 = *waits.select_nth_unstable(n * 95 / 100).1;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{mode}: {n} customers in {secs:.3} s = {:.0} customers/s \
         (latency p50 {:.3} s, p99 {:.3} s; wait p95 {:.3} s)",
        n as f64 / secs,
        p50 as f64 / 1e9,
        p99 as f64 / 1e9,
        wait_p95 as f64 / 1e9
    );
}
