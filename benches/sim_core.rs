//! Simulator core throughput, single thread, no outputs (NullObserver).
//!
//! - `mmc`: M/M/c, c = 8, arrivals 7.2/s, service 1/s (utilisation 0.9),
//!   1M customers -> customers per second.
//! - `fork_join`: Poisson arrivals 50/s; plan (tier 0) -> 4 parallel calls
//!   (tier 1) -> synthesis (tier 0); tier 0 has 112 slots and tier 1 224
//!   (utilisation ~0.89); every call lognormal with mean 1 s, sigma 0.5;
//!   100k workflows -> workflows per second.
//! - `research_agent`: the embedded default scenario with 1,000 workflows
//!   under each policy -> workflows per second.

use std::time::Duration;

use agentsched::metrics::NullObserver;
use agentsched::policy::PolicyKind;
use agentsched::scenario::Scenario;
use agentsched::sim;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// The fork-join model of `scenarios/fork_join.json` (lognormal mean 1 s:
/// mu = ln(1000) - sigma^2/2) with `workflows` workflows.
fn fork_join(workflows: u64) -> Scenario {
    let mut s = Scenario::from_json_str(include_str!("../scenarios/fork_join.json"))
        .expect("scenarios/fork_join.json");
    s.workload.workflows = workflows;
    s
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("sim_core");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .warm_up_time(Duration::from_secs(2));

    let n = 1_000_000;
    let mmc = Scenario::mmc(8, 7.2, 1.0, n, 1);
    g.throughput(Throughput::Elements(n));
    g.bench_function("mmc_c8_rho0.9_1M_customers", |b| {
        b.iter(|| sim::run(&mmc, &mut NullObserver))
    });

    let n = 100_000;
    let fj = fork_join(n);
    g.throughput(Throughput::Elements(n));
    g.bench_function("fork_join_100k_workflows", |b| {
        b.iter(|| sim::run(&fj, &mut NullObserver))
    });

    let n = 1_000;
    for policy in PolicyKind::ALL {
        let mut s = Scenario::default_research_agent();
        s.workload.workflows = n;
        s.policy = policy;
        g.throughput(Throughput::Elements(n));
        g.bench_function(
            format!("research_agent_1k_workflows/{}", policy.name()),
            |b| b.iter(|| sim::run(&s, &mut NullObserver)),
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
