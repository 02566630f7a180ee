//! One timed run of a core benchmark model, for profiling outside criterion
//! (e.g. under `valgrind --tool=callgrind`).
//!
//! `cargo run --release --example one_run -- [mmc|fork_join|research] [N]`:
//! the M/M/8 model at utilisation 0.9 with N customers (default 1,000,000),
//! `scenarios/fork_join.json` with N workflows (default 100,000), or the
//! default research-agent scenario with N workflows (default 1,000) under
//! the policy named third (default `full`).
//!
//! The time is printed to 10 microseconds: at whole milliseconds a 50 ms
//! run's minimum over interleaved rounds was quantised to 2%.
use std::time::Instant;

use agentsched::{metrics::NullObserver, policy::PolicyKind, scenario::Scenario, sim};

fn main() {
    let mut args = std::env::args().skip(1);
    let model = args.next().unwrap_or_else(|| "mmc".into());
    let n: Option<u64> = args.next().and_then(|a| a.parse().ok());
    let s = match model.as_str() {
        "mmc" => Scenario::mmc(8, 7.2, 1.0, n.unwrap_or(1_000_000), 1),
        "fork_join" => {
            let mut s = Scenario::from_json_str(include_str!("../scenarios/fork_join.json"))
                .expect("scenarios/fork_join.json");
            s.workload.workflows = n.unwrap_or(100_000);
            s
        }
        "research" => {
            let mut s = Scenario::default_research_agent();
            s.workload.workflows = n.unwrap_or(1_000);
            if let Some(name) = args.next() {
                s.policy = *PolicyKind::ALL
                    .iter()
                    .find(|k| k.name() == name)
                    .unwrap_or_else(|| {
                        eprintln!("unknown policy {name:?}");
                        std::process::exit(2);
                    });
            }
            s
        }
        other => {
            eprintln!("unknown model {other:?}: expected mmc, fork_join or research");
            std::process::exit(2);
        }
    };
    let n = s.workload.workflows;
    let t = Instant::now();
    let r = sim::run(&s, &mut NullObserver);
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{model}: {n} workflows in {secs:.5} s = {:.0} workflows/s",
        n as f64 / secs
    );
    // Workflows whose calls exhaust their retries fail (a 16,000-workflow
    // research run has a few); every one ends either way.
    assert_eq!(r.summary.completed + r.summary.failed, n);
}
