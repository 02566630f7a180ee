//! One M/M/c run and one research-agent run, timed, with asserts.
use std::time::Instant;

use agentsched::{metrics::NullObserver, scenario::Scenario, sim};

fn main() {
    let n = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000u64);
    let s = Scenario::mmc(8, 7.2, 1.0, n, 1);
    let t = Instant::now();
    let r = sim::run(&s, &mut NullObserver);
    let secs = t.elapsed().as_secs_f64();
    println!(
        "mmc: {n} customers in {secs:.3} s = {:.0} customers/s",
        n as f64 / secs
    );
    assert_eq!(r.summary.completed, n);
    assert!(r.summary.queue_wait_mean_ms > 0.0);
}
