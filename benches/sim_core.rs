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

fn fork_join(workflows: u64) -> Scenario {
    // lognormal mean 1000 ms with sigma 0.5: mu = ln(1000) - 0.125
    let mu = 1000f64.ln() - 0.5 * 0.5 / 2.0;
    let doc = serde_json::json!({
        "name": "fork_join",
        "seed": 1,
        "workload": {
            "template": "dag",
            "workflows": workflows,
            "dag": {
                "nodes": [
                    {"id": "plan", "node_type": "Plan"},
                    {"id": "w0", "node_type": "Work"},
                    {"id": "w1", "node_type": "Work"},
                    {"id": "w2", "node_type": "Work"},
                    {"id": "w3", "node_type": "Work"},
                    {"id": "synth", "node_type": "Plan"}
                ],
                "edges": [["plan","w0"],["plan","w1"],["plan","w2"],["plan","w3"],
                          ["w0","synth"],["w1","synth"],["w2","synth"],["w3","synth"]]
            }
        },
        "arrivals": {"pattern": "poisson", "rate_per_s": 50.0},
        "node_types": {
            "Plan": {"resource": "plan", "latency": {"dist": "lognormal", "mu": mu, "sigma": 0.5}},
            "Work": {"resource": "work", "latency": {"dist": "lognormal", "mu": mu, "sigma": 0.5}}
        },
        "pools": {},
        "providers": {
            "tier0": {"resource": "plan", "tiers": [{"slots": 112}]},
            "tier1": {"resource": "work", "tiers": [{"slots": 224}]}
        },
        "policy": "fifo_cheapest"
    });
    Scenario::from_value(doc).expect("fork-join scenario")
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
