//! The reference the core is measured against: a bare binary-heap event loop
//! for M/M/c, as small as such a loop gets (no workflows, no policy, no
//! records). The engine's M/M/8 time is reported beside this loop's, measured
//! in the same `bench` run, so machine speed cancels out of the ratio.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use crate::rng::{SimRng, unit};

/// What the loop computed (hashed into the benchmark's digest).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MmcOutcome {
    /// Customers served.
    pub served: u64,
    /// Mean time in queue, seconds.
    pub mean_wait_s: f64,
    /// Time of the last departure, seconds.
    pub end_s: f64,
}

/// Event kinds, ordered so that at equal times departures go first.
const DEPARTURE: u8 = 0;
const ARRIVAL: u8 = 1;

fn exp_draw(rng: &mut SimRng, rate: f64) -> f64 {
    -(1.0 - unit(rng)).ln() / rate
}

/// Simulates `customers` customers of an M/M/`servers` queue (rates per
/// second) with one generator seeded by `seed`.
pub fn mmc_heap_loop(
    servers: u32,
    arrival_rate: f64,
    service_rate: f64,
    customers: u64,
    seed: u64,
) -> MmcOutcome {
    let mut rng = SimRng::new(u128::from(crate::rng::mix64(seed)) | 1);
    // (time in ns, kind): integer times keep the heap's order total.
    let mut heap: BinaryHeap<Reverse<(u64, u8)>> = BinaryHeap::with_capacity(servers as usize + 1);
    let mut waiting: VecDeque<u64> = VecDeque::new();
    let ns = |s: f64| (s * 1e9) as u64;
    let mut busy = 0u32;
    let mut arrived = 1u64;
    let (mut served, mut total_wait_ns, mut end_ns) = (0u64, 0u128, 0u64);
    heap.push(Reverse((ns(exp_draw(&mut rng, arrival_rate)), ARRIVAL)));
    while let Some(Reverse((now, kind))) = heap.pop() {
        if kind == ARRIVAL {
            if arrived < customers {
                arrived += 1;
                heap.push(Reverse((
                    now + ns(exp_draw(&mut rng, arrival_rate)),
                    ARRIVAL,
                )));
            }
            if busy < servers {
                busy += 1;
                heap.push(Reverse((
                    now + ns(exp_draw(&mut rng, service_rate)),
                    DEPARTURE,
                )));
            } else {
                waiting.push_back(now);
            }
        } else {
            served += 1;
            end_ns = now;
            match waiting.pop_front() {
                Some(since) => {
                    total_wait_ns += u128::from(now - since);
                    heap.push(Reverse((
                        now + ns(exp_draw(&mut rng, service_rate)),
                        DEPARTURE,
                    )));
                }
                None => busy -= 1,
            }
        }
    }
    MmcOutcome {
        served,
        mean_wait_s: total_wait_ns as f64 / 1e9 / served.max(1) as f64,
        end_s: end_ns as f64 / 1e9,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Erlang C: the loop is a real M/M/c simulation, not just a heap
    /// exercise (mean wait within 10% of theory at utilisation 0.9).
    #[test]
    fn heap_loop_matches_erlang_c() {
        let o = mmc_heap_loop(8, 7.2, 1.0, 400_000, 7);
        assert_eq!(o.served, 400_000);
        let theory = crate::validate::mmc_wq(8, 7.2, 1.0);
        let rel = (o.mean_wait_s - theory).abs() / theory;
        assert!(rel < 0.1, "Wq {} vs Erlang C {theory}", o.mean_wait_s);
        assert_eq!(o, mmc_heap_loop(8, 7.2, 1.0, 400_000, 7), "deterministic");
    }
}
