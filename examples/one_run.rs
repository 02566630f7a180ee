//! One timed run of a core benchmark model, for profiling outside criterion
//! (e.g. under `valgrind --tool=callgrind`).
//!
//! `cargo run --release --example one_run -- [mmc|fork_join] [N]`: the
//! M/M/8 model at utilisation 0.9 with N customers (default 1,000,000), or
//! `scenarios/fork_join.json` with N workflows (default 100,000).
use std::time::Instant;

use agentsched::{metrics::NullObserver, scenario::Scenario, sim};

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
        other => {
            eprintln!("unknown model {other:?}: expected mmc or fork_join");
            std::process::exit(2);
        }
    };
    let n = s.workload.workflows;
    let t = Instant::now();
    let r = sim::run(&s, &mut NullObserver);
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{model}: {n} workflows in {secs:.3} s = {:.0} workflows/s",
        n as f64 / secs
    );
    assert_eq!(r.summary.completed, n);
}
