//! What the determinism contract alone costs a bare event loop: the bench's
//! heap-reference M/M/8 loop, once with one sequential generator (as the
//! reference draws) and once with the engine's keyed draws (a generator per
//! arrival and per service, keyed by the customer's id), both keeping every
//! customer's latency and queue wait and selecting percentiles at the end,
//! as the engine's records do. Measured beside the engine's instructions
//! per customer, it shows how much of the core's gap to the reference is
//! keyed randomness and records, and how much the runtime's generality.
//!
//! `cargo run --release --example mmc_floor -- [sequential|keyed] [N]`
//! (N customers, default 1,000,000); count instructions with
//! `valgrind --tool=cachegrind`.
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

/// Where the loop's exponential draws come from.
enum Draws {
    /// One generator in draw order, inverse-CDF, as the reference loop.
    Sequential(SimRng),
    /// A generator per draw keyed by the customer's id, sampled as the
    /// engine samples (rand_distr's ziggurat); a service draw also takes the
    /// two words an engine attempt draws for its tails and failure.
    Keyed {
        arrivals: Keyer,
        services: Keyer,
        arrival_gap: Exp<f64>,
        service: Exp<f64>,
    },
}

impl Draws {
    fn gap_s(&mut self, id: u64) -> f64 {
        match self {
            Draws::Sequential(rng) => -(1.0 - unit(rng)).ln() / ARRIVAL_RATE,
            Draws::Keyed {
                arrivals,
                arrival_gap,
                ..
            } => arrival_gap.sample(&mut arrivals.rng(id, 0)),
        }
    }

    fn service_s(&mut self, id: u64) -> f64 {
        match self {
            Draws::Sequential(rng) => -(1.0 - unit(rng)).ln() / SERVICE_RATE,
            Draws::Keyed {
                services, service, ..
            } => {
                let mut rng = services.rng(id << 32, 0);
                let s = service.sample(&mut rng);
                std::hint::black_box((rng.next_u64(), unit(&mut rng)));
                s
            }
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "keyed".into());
    let customers: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let mut draws = match mode.as_str() {
        "sequential" => Draws::Sequential(SimRng::new(u128::from(mix64(SEED)) | 1)),
        "keyed" => Draws::Keyed {
            arrivals: Keyer::new(SEED, Stream::Arrival),
            services: Keyer::new(SEED, Stream::Attempt),
            arrival_gap: Exp::new(ARRIVAL_RATE).expect("positive rate"),
            service: Exp::new(SERVICE_RATE).expect("positive rate"),
        },
        other => {
            eprintln!("unknown mode {other:?}: expected sequential or keyed");
            std::process::exit(2);
        }
    };
    let t = Instant::now();
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
