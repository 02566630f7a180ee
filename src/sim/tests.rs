//! Engine behaviour on whole scenarios.

use super::*;
use crate::metrics::{MemoryObserver, NullObserver};
use crate::metrics::{Place, TraceKind};
use crate::policy::PolicyKind;
use crate::provider::Outcome;
use crate::scenario::Arrivals;
use crate::units::Money;

fn research(workflows: u64, policy: PolicyKind) -> Scenario {
    let mut s = Scenario::default_research_agent();
    s.workload.workflows = workflows;
    s.policy = policy;
    s
}

fn run_mem(s: &Scenario) -> (RunResult, MemoryObserver) {
    let mut obs = MemoryObserver::default();
    let r = run(s, &mut obs);
    (r, obs)
}

#[test]
fn no_hedges_with_disable_hedging_and_full_hedges_under_heavy_tail() {
    let s = research(40, PolicyKind::Full);
    let r = run(&s, &mut NullObserver);
    assert!(
        r.summary.hedges > 0,
        "full hedges under the default heavy tail"
    );
    assert!(r.summary.hedge_wins > 0 && r.summary.hedge_wins <= r.summary.hedges);
    let mut off = s.clone();
    off.ablations.disable_hedging = true;
    assert_eq!(run(&off, &mut NullObserver).summary.hedges, 0);
    for p in [
        PolicyKind::FifoCheapest,
        PolicyKind::DagCheapest,
        PolicyKind::DagEscalation,
    ] {
        assert_eq!(
            run(&research(40, p), &mut NullObserver).summary.hedges,
            0,
            "{p:?} never hedges"
        );
    }
}

#[test]
fn escalation_only_where_named_and_it_uses_the_fast_tier() {
    let cheap = run(&research(40, PolicyKind::DagCheapest), &mut NullObserver);
    let esc = run(&research(40, PolicyKind::DagEscalation), &mut NullObserver);
    assert_eq!(cheap.summary.escalations, 0);
    assert!(esc.summary.escalations > 0);
    let llm_tier1 = |r: &RunResult| {
        r.tiers
            .iter()
            .find(|t| t.provider == "llm_provider" && t.tier_id == 1)
            .unwrap()
            .requests
    };
    assert!(
        llm_tier1(&esc) > llm_tier1(&cheap),
        "escalation sends more work to the fast tier"
    );
    assert!(esc.summary.makespan_p95_ms < cheap.summary.makespan_p95_ms);
    assert!(
        esc.summary.cost_mean > cheap.summary.cost_mean,
        "and pays for it"
    );
    let mut off = research(40, PolicyKind::DagEscalation);
    off.ablations.disable_escalation = true;
    assert_eq!(run(&off, &mut NullObserver).summary.escalations, 0);
}

#[test]
fn the_fast_tier_is_faster() {
    let r = run(&research(40, PolicyKind::DagEscalation), &mut NullObserver);
    let svc = |tier| {
        r.tiers
            .iter()
            .find(|t| t.provider == "llm_provider" && t.tier_id == tier)
            .unwrap()
            .service_mean_ms
    };
    assert!(
        svc(1) < 0.7 * svc(0),
        "tier 1 {} vs tier 0 {}",
        svc(1),
        svc(0)
    );
}

#[test]
fn iters_matters() {
    let mut one = research(30, PolicyKind::Full);
    one.workload.iters = 1;
    let mut five = one.clone();
    five.workload.iters = 5;
    let (a, oa) = run_mem(&one);
    let (b, ob) = run_mem(&five);
    assert!(oa.workflows.iter().all(|w| w.iterations == 1));
    assert!(
        ob.workflows.iter().any(|w| w.iterations >= 3),
        "some workflows need several iterations"
    );
    assert!(ob.workflows.iter().all(|w| w.iterations <= 5));
    assert!(b.summary.calls > a.summary.calls);
}

#[test]
fn a_workflow_holds_one_block_and_numbers_its_nodes_across_iterations() {
    let mut s = research(30, PolicyKind::Full);
    s.workload.iters = 5;
    let mut obs = MemoryObserver {
        keep_trace: true,
        ..MemoryObserver::default()
    };
    let sim = Simulator::new(&s, &mut obs);
    let blocks = [0, 1].map(|i| sim.workload().block(i).nodes.len());
    let Engine::General(mut rt) = sim.engine else {
        panic!("`full` hedges: the general engine runs it");
    };
    let events = super::run_events(&mut rt).expect("within the horizon");
    assert!(events > 0);
    // Every workflow ended on its last block: earlier ones were dropped.
    assert!(rt.largest_node_table() <= blocks[0].max(blocks[1]));
    let _ = rt.finish(events);
    assert!(obs.workflows.iter().any(|w| w.iterations >= 3));
    for w in &obs.workflows {
        let expected = blocks[0] + (w.iterations as usize - 1) * blocks[1];
        assert_eq!(w.nodes as usize, expected, "workflow {}", w.workflow_id);
    }
    // Workflow-level events name no node, however many blocks were dropped.
    let ends: Vec<_> = obs
        .trace
        .iter()
        .filter(|e| matches!(e.kind, TraceKind::Arrive | TraceKind::WorkflowDone(_)))
        .collect();
    assert_eq!(ends.len(), 2 * obs.workflows.len());
    assert!(ends.iter().all(|e| (e.node, e.node_type) == (0, 0)));
    // Node events of later iterations carry their node's type.
    let table = NodeTable::build(&s);
    let decide = table.names.iter().position(|n| n == "DecideNext").unwrap() as u16;
    let last = blocks[0] as u32 + blocks[1] as u32 - 1;
    assert!(
        obs.trace
            .iter()
            .any(|e| e.kind == TraceKind::NodeDone && e.node == last && e.node_type == decide)
    );
}

#[test]
fn workflows_see_the_same_draws_whatever_the_policy() {
    // Common random numbers: iterations depend on keyed evidence only.
    let iterations = |p| {
        let (_, o) = run_mem(&research(30, p));
        let mut v: Vec<(u64, u32)> = o
            .workflows
            .iter()
            .map(|w| (w.workflow_id, w.iterations))
            .collect();
        v.sort();
        v
    };
    let base = iterations(PolicyKind::FifoCheapest);
    for p in [
        PolicyKind::DagCheapest,
        PolicyKind::DagEscalation,
        PolicyKind::Full,
    ] {
        assert_eq!(iterations(p), base, "{p:?}");
    }
}

#[test]
fn time_scale_does_not_change_results() {
    let a = research(20, PolicyKind::Full);
    let mut b = a.clone();
    b.time_scale = 50.0;
    assert_eq!(run(&a, &mut NullObserver), run(&b, &mut NullObserver));
}

#[test]
fn the_seed_changes_results() {
    let a = research(20, PolicyKind::Full);
    let mut b = a.clone();
    b.seed = 2;
    assert_ne!(
        run(&a, &mut NullObserver).summary,
        run(&b, &mut NullObserver).summary
    );
}

#[test]
fn provider_enforced_rate_limits_answer_429_and_calls_retry() {
    let mut s = Scenario::mmc(8, 20.0, 1.0, 2000, 1);
    let tier = &mut s.providers.get_mut("llm_provider").unwrap().tiers[0];
    tier.slots = 50;
    tier.rate_limit = Some(crate::scenario::RateLimit {
        rate_per_s: 5.0,
        burst: 5,
        enforced_by: crate::scenario::Enforcer::Provider,
        reject_latency_ms: 20.0,
    });
    let mut obs = MemoryObserver {
        keep_trace: true,
        ..MemoryObserver::default()
    };
    let r = run(&s, &mut obs);
    assert!(r.summary.rate_limited > 0);
    assert_eq!(
        r.summary.completed, 2000,
        "every call eventually gets through"
    );
    assert!(obs.workflows.iter().any(|w| w.rate_limited > 0));
    // Accepted starts never exceed the bucket: in any window, burst + rate x width.
    let starts: Vec<(u64, u32, u64)> = obs
        .trace
        .iter()
        .filter(|e| matches!(e.kind, TraceKind::Start(_)))
        .map(|e| (e.workflow, e.attempt, e.t.0))
        .collect();
    let rejected: std::collections::BTreeSet<(u64, u32)> = obs
        .trace
        .iter()
        .filter(|e| e.kind == TraceKind::End(Outcome::RateLimited))
        .map(|e| (e.workflow, e.attempt))
        .collect();
    let mut ok: Vec<u64> = starts
        .iter()
        .filter(|(w, a, _)| !rejected.contains(&(*w, *a)))
        .map(|s| s.2)
        .collect();
    ok.sort();
    for i in 0..ok.len() {
        for j in (i + 1)..ok.len().min(i + 60) {
            let width_s = (ok[j] - ok[i]) as f64 / 1e6;
            assert!(
                (j - i + 1) as f64 <= 5.0 + 5.0 * width_s + 1e-9,
                "bucket exceeded in [{}, {}]",
                ok[i],
                ok[j]
            );
        }
    }
}

#[test]
fn failures_exhausting_retries_fail_the_workflow_not_the_run() {
    let mut s = research(10, PolicyKind::Full);
    for p in s.providers.values_mut() {
        for t in &mut p.tiers {
            t.failure_prob = 0.6;
            t.max_retries = 1;
        }
    }
    let (r, o) = run_mem(&s);
    assert!(r.summary.failed > 0);
    assert_eq!(r.summary.failed + r.summary.completed, 10);
    assert_eq!(
        o.workflows.iter().filter(|w| !w.ok).count() as u64,
        r.summary.failed
    );
    // Failed workflows are excluded from makespan but still paid for.
    assert!(
        o.workflows
            .iter()
            .filter(|w| !w.ok)
            .all(|w| w.cost > Money::ZERO)
    );
}

#[test]
fn cancelled_hedges_pay_in_proportion() {
    let s = research(40, PolicyKind::Full);
    let mut obs = MemoryObserver {
        keep_trace: true,
        ..MemoryObserver::default()
    };
    let r = run(&s, &mut obs);
    assert!(r.summary.cancellations > 0);
    let table = NodeTable::build(&s);
    for e in &obs.trace {
        if let (TraceKind::End(Outcome::Cancelled), Place::Tier { provider, tier }) =
            (e.kind, e.place)
        {
            let price = s.providers[&table.providers[provider as usize]].tiers[tier as usize]
                .price_per_call;
            let model_mult = 1.0; // routing off: default model
            assert!(
                e.cost.as_dollars() <= price * model_mult + 1e-12,
                "a cancelled attempt never pays more than full price"
            );
        }
    }
    // wasted time is recorded per workflow and in total.
    assert!(r.summary.wasted_ms > 0.0);
}

#[test]
fn totals_agree_with_workflow_records() {
    let (r, o) = run_mem(&research(25, PolicyKind::Full));
    let cost: u64 = o.workflows.iter().map(|w| w.cost.0).sum();
    assert_eq!(Money(cost).as_dollars(), r.summary.cost_total);
    let tier_cost: f64 = r.tiers.iter().map(|t| t.cost).sum();
    assert!((tier_cost - r.summary.cost_total).abs() < 1e-9);
    let mut mk: Vec<f64> = o
        .workflows
        .iter()
        .filter(|w| w.ok)
        .map(|w| w.makespan().as_ms())
        .collect();
    mk.sort_by(f64::total_cmp);
    assert!((crate::stats::percentile_sorted(&mk, 95.0) - r.summary.makespan_p95_ms).abs() < 1e-6);
    let attempts: u32 = o.workflows.iter().map(|w| w.attempts).sum();
    assert_eq!(attempts as u64, r.summary.attempts);
}

#[test]
fn spilling_samples_to_disk_changes_no_result() {
    let mut research = research(400, PolicyKind::Full);
    research.arrivals = Arrivals::Poisson { rate_per_s: 1.0 };
    for s in [Scenario::mmc(8, 7.2, 1.0, 30_000, 3), research] {
        let in_memory = run(&s, &mut NullObserver);
        let spilled = Simulator::new(&s, &mut NullObserver)
            .with_samples_in_memory(1000)
            .run();
        assert!(in_memory.summary.calls > 2000, "enough samples to spill");
        assert_eq!(format!("{in_memory:?}"), format!("{spilled:?}"));
    }
}

fn token_limit(
    per_min: f64,
    burst: u64,
    by: crate::scenario::Enforcer,
) -> crate::scenario::TokenLimit {
    crate::scenario::TokenLimit {
        tokens_per_min: per_min,
        token_burst: burst,
        enforced_by: by,
        reject_latency_ms: 20.0,
    }
}

#[test]
fn provider_enforced_token_limits_answer_429s_counted_by_cause() {
    use crate::scenario::Enforcer;
    let mut s = Scenario::mmc(8, 20.0, 1.0, 1000, 1);
    let call = s.node_types.get_mut("Call").unwrap();
    (call.input_tokens, call.output_tokens) = (900, 100);
    let tier = &mut s.providers.get_mut("llm_provider").unwrap().tiers[0];
    tier.slots = 50;
    // 300,000 tokens a minute at 1,000 a call: 5 calls a second, against 20 arriving.
    tier.token_limit = Some(token_limit(300_000.0, 5_000, Enforcer::Provider));
    let r = run(&s, &mut NullObserver);
    assert_eq!(
        r.summary.completed, 1000,
        "every call eventually gets through"
    );
    let by_tokens = r
        .summary
        .rate_limited_tokens
        .expect("a token-limited run counts by cause");
    assert!(by_tokens > 0);
    assert_eq!(
        by_tokens, r.summary.rate_limited,
        "no request limit: every 429 is the token limit's"
    );
    assert_eq!(r.tiers[0].rate_limited_tokens, Some(by_tokens));
    // Both limits: each 429 is blamed on the limit that waits longer, and
    // the request limit (2/s, tighter than 5/s) gets most of them.
    s.providers.get_mut("llm_provider").unwrap().tiers[0].rate_limit =
        Some(crate::scenario::RateLimit {
            rate_per_s: 2.0,
            burst: 2,
            enforced_by: Enforcer::Provider,
            reject_latency_ms: 20.0,
        });
    let r = run(&s, &mut NullObserver);
    let by_tokens = r.summary.rate_limited_tokens.unwrap();
    assert!(r.summary.rate_limited > 2 * by_tokens, "{:?}", r.summary);
    // No token limit: no by-cause column.
    let plain = Scenario::mmc(8, 7.2, 1.0, 100, 1);
    assert_eq!(
        run(&plain, &mut NullObserver).summary.rate_limited_tokens,
        None
    );
}

#[test]
fn client_enforced_token_limits_delay_starts_without_429s() {
    use crate::scenario::Enforcer;
    let mut s = Scenario::mmc(8, 20.0, 1.0, 500, 2);
    let call = s.node_types.get_mut("Call").unwrap();
    (call.input_tokens, call.output_tokens) = (900, 100);
    let unlimited = run(&s, &mut NullObserver).summary;
    s.providers.get_mut("llm_provider").unwrap().tiers[0].token_limit =
        Some(token_limit(300_000.0, 5_000, Enforcer::Client));
    let limited = run(&s, &mut NullObserver).summary;
    assert_eq!(limited.rate_limited, 0);
    assert_eq!(limited.rate_limited_tokens, Some(0));
    // 5 calls a second at most: 500 calls take about 100 s.
    assert!(limited.sim_time_ms > 95_000.0, "{}", limited.sim_time_ms);
    assert!(limited.queue_wait_mean_ms > 2.0 * unlimited.queue_wait_mean_ms);
}

/// The default scenario with model routing and a quality curve on `small`.
fn routed_with_curve(policy: PolicyKind, midpoint: f64, slope: f64) -> Scenario {
    let mut s = research(20, policy);
    s.ablations.enable_model_routing = true;
    s.constants.workflow_budget = 1e6;
    for t in &mut s.providers.get_mut("llm_provider").unwrap().tiers {
        t.models[1].quality = Some(crate::scenario::QualityCurve { midpoint, slope });
    }
    s
}

#[test]
fn the_same_calls_are_redone_under_every_policy() {
    let redone = |policy| {
        let s = routed_with_curve(policy, 0.3, 12.0);
        let mut obs = MemoryObserver {
            keep_trace: true,
            ..MemoryObserver::default()
        };
        let r = run(&s, &mut obs);
        let calls: std::collections::BTreeSet<(u64, u32)> = obs
            .trace
            .iter()
            .filter(|e| e.kind == TraceKind::Redo)
            .map(|e| (e.workflow, e.node))
            .collect();
        assert_eq!(
            r.summary.redos,
            Some(calls.len() as u64),
            "one redo per call here"
        );
        let per_wf: u64 = obs.workflows.iter().map(|w| w.redos as u64).sum();
        assert_eq!(Some(per_wf), r.summary.redos);
        let per_tier: u64 = r.tiers.iter().filter_map(|t| t.redos).sum();
        assert_eq!(Some(per_tier), r.summary.redos);
        assert!(r.summary.redo_cost.unwrap() > 0.0 && r.summary.redo_wasted_ms.unwrap() > 0.0);
        assert!(r.summary.wasted_ms >= r.summary.redo_wasted_ms.unwrap());
        calls
    };
    let reference = redone(PolicyKind::FifoCheapest);
    assert!(
        reference.len() > 20,
        "the curve rejects a fair share: {}",
        reference.len()
    );
    for p in [
        PolicyKind::DagCheapest,
        PolicyKind::DagEscalation,
        PolicyKind::Full,
    ] {
        assert_eq!(redone(p), reference, "{p:?}");
    }
}

#[test]
fn a_redo_runs_on_the_better_model_after_the_rejected_answer() {
    let s = routed_with_curve(PolicyKind::FifoCheapest, 0.3, 12.0);
    let mut obs = MemoryObserver {
        keep_trace: true,
        ..MemoryObserver::default()
    };
    run(&s, &mut obs);
    let mut checked = 0;
    for (i, e) in obs.trace.iter().enumerate() {
        if e.kind != TraceKind::Redo {
            continue;
        }
        assert_eq!(e.model, 1, "only the small model's answers are rejected");
        let next = obs.trace[i + 1..]
            .iter()
            .find(|x| {
                matches!(x.kind, TraceKind::Start(_))
                    && (x.workflow, x.node) == (e.workflow, e.node)
            })
            .expect("a redone call starts again");
        assert_eq!(next.model, 0, "the redo uses the large model");
        assert!(next.attempt > e.attempt);
        checked += 1;
    }
    assert!(checked > 0);
}

#[test]
fn curves_that_accept_everything_change_no_output() {
    let dir = std::env::temp_dir().join(format!("agentsched-accept-all-{}", std::process::id()));
    let mut digests = Vec::new();
    for curve in [None, Some((1e6, 1.0))] {
        let mut s = research(15, PolicyKind::Full);
        s.ablations.enable_model_routing = true;
        for t in &mut s.providers.get_mut("llm_provider").unwrap().tiers {
            for m in &mut t.models {
                m.quality = curve
                    .map(|(midpoint, slope)| crate::scenario::QualityCurve { midpoint, slope });
            }
        }
        assert!(!s.redos_possible());
        let out = dir.join(format!("{}", digests.len()));
        let o = crate::output::simulate_to_dir(&s, &out, true).unwrap();
        // The digest covers the summary (wall time aside); the rest byte for byte.
        let files: Vec<Vec<u8>> = ["workflows.csv", "tiers.csv", "trace.json"]
            .iter()
            .map(|f| std::fs::read(out.join(f)).unwrap())
            .collect();
        digests.push((o.digest, files));
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(digests[0], digests[1]);
}

/// One call type on one tier (scale 1, no tails, no failures) with a
/// streaming latency model: TTFT median exp(5.0) + 0.2 ms x prompt tokens,
/// TPOT lognormal(3.0, 0.3).
fn streaming_calls(input_tokens: u32, output_tokens: u32) -> Scenario {
    let mut s = Scenario::mmc(64, 5.0, 1.0, 4000, 3);
    let call = s.node_types.get_mut("Call").unwrap();
    call.latency = crate::scenario::Dist::Streaming {
        ttft_mu: 5.0,
        ttft_sigma: 0.4,
        ttft_ms_per_input_token: 0.2,
        tpot_mu: 3.0,
        tpot_sigma: 0.3,
    };
    (call.input_tokens, call.output_tokens) = (input_tokens, output_tokens);
    s
}

#[test]
fn streaming_calls_report_ttft_and_tpot_that_follow_the_model() {
    let r = run(&streaming_calls(1000, 101), &mut NullObserver).summary;
    let ttft_median = 5.0f64.exp() + 0.2 * 1000.0;
    let p50 = r.ttft_p50_ms.expect("a streaming run reports TTFT");
    assert!(
        (p50 - ttft_median).abs() / ttft_median < 0.03,
        "{p50} vs {ttft_median}"
    );
    assert!(r.ttft_p95_ms.unwrap() > p50);
    let tpot_mean = (3.0f64 + 0.3 * 0.3 / 2.0).exp();
    let tpot = r.tpot_mean_ms.unwrap();
    assert!(
        (tpot - tpot_mean).abs() / tpot_mean < 0.02,
        "{tpot} vs {tpot_mean}"
    );
    // A longer prompt delays the first token; more output tokens lengthen
    // the call but not its first token.
    let longer_prompt = run(&streaming_calls(3000, 101), &mut NullObserver).summary;
    let d = longer_prompt.ttft_p50_ms.unwrap() - p50;
    assert!(
        (d - 400.0).abs() < 40.0,
        "2,000 more prompt tokens at 0.2 ms: {d}"
    );
    let longer_output = run(&streaming_calls(1000, 301), &mut NullObserver).summary;
    assert!((longer_output.ttft_p50_ms.unwrap() - p50).abs() < 1e-9);
    let added = longer_output.makespan_mean_ms - r.makespan_mean_ms;
    assert!(
        (added - 200.0 * tpot_mean).abs() / (200.0 * tpot_mean) < 0.05,
        "{added}"
    );
    // Non-streaming runs have no streaming columns.
    let plain = run(&Scenario::mmc(8, 7.2, 1.0, 100, 1), &mut NullObserver).summary;
    assert_eq!((plain.ttft_p50_ms, plain.tpot_mean_ms), (None, None));
}

/// The trace's successful remote ends carry the TTFT the summary's
/// percentiles are taken over, and nothing else does: a user recomputes
/// `ttft_p50_ms` and `ttft_p95_ms` from it. A run without streaming has none.
#[test]
fn the_trace_carries_each_streamed_ends_ttft() {
    let mut s = Scenario::from_json_str(include_str!("../../scenarios/streaming.json")).unwrap();
    s.workload.workflows = 8;
    let traced = || MemoryObserver {
        keep_trace: true,
        ..MemoryObserver::default()
    };
    let mut obs = traced();
    let r = run(&s, &mut obs);
    let mut ttfts: Vec<f64> = Vec::new();
    for e in &obs.trace {
        if let Some(t) = e.ttft {
            assert_eq!(e.kind, TraceKind::End(Outcome::Success), "{e:?}");
            assert!(
                matches!(e.place, crate::metrics::Place::Tier { .. }),
                "{e:?}"
            );
            ttfts.push(t.as_ms());
        }
    }
    // Not every successful end streams (embeddings do not).
    let successes = obs
        .trace
        .iter()
        .filter(|e| e.kind == TraceKind::End(Outcome::Success))
        .count();
    assert!(!ttfts.is_empty() && ttfts.len() < successes);
    let want = crate::stats::percentiles(&ttfts, &[50.0, 95.0]);
    let got = [
        r.summary.ttft_p50_ms.unwrap(),
        r.summary.ttft_p95_ms.unwrap(),
    ];
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-9 * w, "summary {got:?}, trace {want:?}");
    }
    let mut plain = traced();
    run(&research(5, PolicyKind::Full), &mut plain);
    assert!(plain.trace.len() > 100);
    assert!(plain.trace.iter().all(|e| e.ttft.is_none()));
}

#[test]
fn the_shipped_streaming_scenario_is_valid_and_streams() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/streaming.json"),
    )
    .unwrap();
    let mut s = Scenario::from_json_str(&text).unwrap();
    s.workload.workflows = 5;
    let r = run(&s, &mut NullObserver).summary;
    assert_eq!(r.completed, 5);
    assert!(r.ttft_p50_ms.unwrap() > 0.0 && r.tpot_mean_ms.unwrap() > 0.0);
}

#[test]
fn a_node_types_own_heavy_tail_replaces_the_global_one() {
    use crate::scenario::{Dist, HeavyTail};
    // Far more servers than calls in flight: a call's makespan is its latency.
    let mut s = Scenario::mmc(64, 5.0, 1.0, 200, 3);
    s.node_types.get_mut("Call").unwrap().latency = Dist::Constant { ms: 100.0 };
    s.heavy_tail = HeavyTail {
        prob: 1.0,
        mult: 3.0,
    };
    let global = run(&s, &mut NullObserver).summary;
    assert_eq!(global.makespan_mean_ms, 300.0);
    assert_eq!(global.makespan_max_ms, 300.0);
    s.node_types.get_mut("Call").unwrap().heavy_tail = Some(HeavyTail {
        prob: 0.0,
        mult: 1.0,
    });
    assert_eq!(run(&s, &mut NullObserver).summary.makespan_max_ms, 100.0);
    // Every type given the global tail as its own: nothing changes.
    let mut r = research(30, PolicyKind::Full);
    r.heavy_tail = HeavyTail {
        prob: 0.05,
        mult: 20.0,
    };
    let before = run(&r, &mut NullObserver).summary;
    for nt in r.node_types.values_mut() {
        nt.heavy_tail = Some(r.heavy_tail.clone());
    }
    let mut after = run(&r, &mut NullObserver).summary;
    after.wall_time_s = before.wall_time_s;
    assert_eq!(before, after);
}

/// Model routing reads each call's keyed difficulty (drawn once per node,
/// in every iteration's block): with no quality curves and no budget in
/// the way, every LLM start (primary, escalated or hedge) uses the cheap
/// model exactly when its call's difficulty is under the threshold.
#[test]
fn routing_picks_each_calls_model_by_its_keyed_difficulty() {
    let mut s = research(60, PolicyKind::Full);
    s.ablations.enable_model_routing = true;
    s.constants.workflow_budget = 1e12;
    for p in s.providers.values_mut() {
        for t in &mut p.tiers {
            for m in &mut t.models {
                m.quality = None;
            }
        }
    }
    let mut obs = MemoryObserver {
        keep_trace: true,
        ..MemoryObserver::default()
    };
    let sim = Simulator::new(&s, &mut obs);
    let names = sim.table().names.clone();
    let first_block = sim.workload().block(0).nodes.len() as u32;
    sim.run();
    let (mut cheap, mut default, mut later_blocks) = (0, 0, 0);
    for e in obs
        .trace
        .iter()
        .filter(|e| matches!(e.kind, TraceKind::Start(_)))
    {
        if s.node_types[&names[e.node_type as usize]].resource != "llm" {
            continue;
        }
        let d = crate::runtime::difficulty(s.seed, e.workflow, e.node);
        // The LLM tiers' models are [large, small]: the small one is cheaper.
        let want = u8::from(d < s.constants.routing_threshold);
        assert_eq!(e.model, want, "workflow {} node {}", e.workflow, e.node);
        if want == 1 {
            cheap += 1
        } else {
            default += 1
        }
        later_blocks += usize::from(e.node >= first_block);
    }
    assert!(
        cheap > 100 && default > 100,
        "{cheap} cheap, {default} default"
    );
    assert!(later_blocks > 50, "later iterations' nodes: {later_blocks}");
}

/// [`streaming_calls`] with 1,500 of the 2,000 prompt tokens shared by
/// every call, priced $1 a million prompt tokens ($0.10 cached), on a
/// tier with `cache` as its prefix cache.
fn shared_prompt_calls(cache: Option<crate::scenario::PrefixCache>) -> Scenario {
    let mut s = streaming_calls(2000, 101);
    s.node_types.get_mut("Call").unwrap().shared_prompt_tokens = 1500;
    let tier = &mut s.providers.values_mut().next().unwrap().tiers[0];
    tier.price_per_mtok_in = 1.0;
    tier.price_per_mtok_cached_in = Some(0.1);
    tier.prefix_cache = cache;
    s
}

#[test]
fn a_prefix_cache_serves_later_calls_their_shared_prompt_cheaper_and_sooner() {
    use crate::scenario::PrefixCache;
    let cache = |ttl_ms, block_tokens, min_tokens| {
        Some(PrefixCache {
            ttl_ms,
            block_tokens,
            min_tokens,
        })
    };
    let plain = run(&shared_prompt_calls(None), &mut NullObserver).summary;
    assert_eq!(plain.cached_input_tokens, None, "no cache, no column");
    assert!((plain.cost_total - 4000.0 * 0.002).abs() < 1e-9);

    let s = shared_prompt_calls(cache(300_000.0, 1, 0));
    let (r, obs) = run_mem(&s);
    let cached = r.summary.cached_input_tokens.expect("a cache, a column");
    assert_eq!(cached % 1500, 0, "whole shared prompts");
    let hits = cached / 1500;
    // Arrivals 5 a second: only the calls sent before the first prefill
    // ended (a first token at about 550 ms) miss.
    assert!((3990..4000).contains(&hits), "{hits} hits");
    assert_eq!(r.tiers[0].cached_input_tokens, Some(cached));
    // A hit pays 500 x $1 + 1,500 x $0.10 a million, a miss 2,000 x $1.
    let expected = (4000 - hits) as f64 * 0.002 + hits as f64 * 0.000_65;
    assert!(
        (r.summary.cost_total - expected).abs() < 1e-9,
        "{} vs {expected}",
        r.summary.cost_total
    );
    let total: u64 = obs.workflows.iter().map(|w| w.cost.0).sum();
    assert_eq!(Money(total).as_dollars(), r.summary.cost_total);
    // The 1,500 cached tokens skip their prefill: 0.2 ms each.
    let sooner = plain.ttft_p50_ms.unwrap() - r.summary.ttft_p50_ms.unwrap();
    assert!(
        (sooner - 300.0).abs() < 30.0,
        "first tokens {sooner} ms sooner"
    );

    // Entries unused for 100 ms are gone: arrivals 200 ms apart on average
    // find the cache warm less often.
    let short = run(&shared_prompt_calls(cache(100.0, 1, 0)), &mut NullObserver).summary;
    let short_hits = short.cached_input_tokens.unwrap() / 1500;
    assert!(
        short_hits > 1000 && short_hits < hits - 1000,
        "{short_hits} hits with a 100 ms ttl"
    );
    // Blocks of 1,024 tokens serve 1,024 of the 1,500; a 2,000-token
    // minimum serves none.
    let blocks = run(
        &shared_prompt_calls(cache(300_000.0, 1024, 0)),
        &mut NullObserver,
    );
    let blocks = blocks.summary.cached_input_tokens.unwrap();
    assert_eq!(blocks, hits * 1024);
    let none = run(
        &shared_prompt_calls(cache(300_000.0, 1, 2000)),
        &mut NullObserver,
    );
    assert_eq!(none.summary.cached_input_tokens, Some(0));
    assert_eq!(none.summary.cost_total, plain.cost_total);
}

#[test]
fn a_miss_writes_the_shared_prompt_and_pays_the_write_price_where_the_tier_charges_one() {
    use crate::scenario::PrefixCache;
    let cache = PrefixCache {
        ttl_ms: 300_000.0,
        block_tokens: 1,
        min_tokens: 0,
    };
    let free = run(&shared_prompt_calls(Some(cache.clone())), &mut NullObserver);
    let mut s = shared_prompt_calls(Some(cache.clone()));
    let tier = &mut s.providers.values_mut().next().unwrap().tiers[0];
    tier.price_per_mtok_cache_write = Some(1.25);
    let (r, obs) = run_mem(&s);
    // The premium changes what a miss costs, not what the cache does.
    assert_eq!(
        r.summary.cached_input_tokens,
        free.summary.cached_input_tokens
    );
    let hits = r.summary.cached_input_tokens.unwrap() / 1500;
    let misses = 4000 - hits;
    // Every miss writes the 1,500 shared tokens, with or without a premium.
    let written = r.summary.cache_write_tokens.expect("a cache, a column");
    assert_eq!(written, misses * 1500);
    assert_eq!(free.summary.cache_write_tokens, Some(written));
    assert_eq!(r.tiers[0].cache_write_tokens, Some(written));
    // A miss pays 500 x $1 + 1,500 x $1.25 a million, a hit 500 x $1 +
    // 1,500 x $0.10.
    let expected = misses as f64 * 0.002_375 + hits as f64 * 0.000_65;
    assert!(
        (r.summary.cost_total - expected).abs() < 1e-9,
        "{} vs {expected}",
        r.summary.cost_total
    );
    let premium = r.summary.cost_total - free.summary.cost_total;
    assert!(
        (premium - misses as f64 * 0.000_375).abs() < 1e-9,
        "{premium}"
    );
    let total: u64 = obs.workflows.iter().map(|w| w.cost.0).sum();
    assert_eq!(Money(total).as_dollars(), r.summary.cost_total);
    // Nothing can be served (a 2,000-token minimum): nothing is written.
    s.providers.values_mut().next().unwrap().tiers[0]
        .prefix_cache
        .as_mut()
        .unwrap()
        .min_tokens = 2000;
    let none = run(&s, &mut NullObserver).summary;
    assert_eq!(none.cache_write_tokens, Some(0));
    assert!((none.cost_total - 4000.0 * 0.002).abs() < 1e-9);
}

#[test]
fn the_shipped_prefix_cache_scenario_caches_under_every_policy_and_saves_money() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/prefix_cache.json");
    let mut s = Scenario::from_json_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    s.workload.workflows = 10;
    assert!(s.has_prefix_caching());
    for policy in PolicyKind::ALL {
        s.policy = policy;
        let mut cold = s.clone();
        for t in cold.providers.values_mut().flat_map(|p| &mut p.tiers) {
            t.prefix_cache = None;
        }
        let (warm, cold) = (run(&s, &mut NullObserver), run(&cold, &mut NullObserver));
        let cached = warm.summary.cached_input_tokens.unwrap();
        assert!(cached > 100_000, "{policy:?}: {cached} cached tokens");
        assert!(
            warm.summary.cost_total < cold.summary.cost_total,
            "{policy:?}: {} against {} without caches",
            warm.summary.cost_total,
            cold.summary.cost_total
        );
    }
}

#[test]
fn only_scenarios_without_optional_mechanisms_run_on_the_queues_only_engine() {
    let copy = |s: &Scenario| Simulator::new(s, &mut NullObserver).queues_only();
    assert!(copy(&Scenario::mmc(8, 7.2, 1.0, 100, 1)));
    let fork_join =
        Scenario::from_json_str(include_str!("../../scenarios/fork_join.json")).unwrap();
    assert!(copy(&fork_join));
    let mut dag = fork_join.clone();
    dag.policy = PolicyKind::DagCheapest;
    assert!(copy(&dag), "DAG priority is no optional mechanism");
    // The research agent's tiers have client-enforced rate limits.
    assert!(copy(&research(5, PolicyKind::FifoCheapest)));
    assert!(copy(&research(5, PolicyKind::DagCheapest)));
    for kind in [PolicyKind::DagEscalation, PolicyKind::Full] {
        let mut s = fork_join.clone();
        s.policy = kind;
        assert!(!copy(&s), "{kind:?} escalates");
    }
    let mut routed = fork_join.clone();
    routed.ablations.enable_model_routing = true;
    assert!(!copy(&routed));
    for text in [
        include_str!("../../scenarios/streaming.json"),
        include_str!("../../scenarios/prefix_cache.json"),
    ] {
        let mut s = Scenario::from_json_str(text).unwrap();
        s.policy = PolicyKind::FifoCheapest;
        assert!(!copy(&s), "streaming and prefix caches are optional");
    }
    // Whatever the scenario, the general copy can run it.
    assert!(!Simulator::general(&fork_join, &mut NullObserver).queues_only());
}

#[test]
#[should_panic(expected = "optional mechanisms on the queues-only engine")]
fn the_queues_only_engine_refuses_a_scenario_that_hedges() {
    let s = research(5, PolicyKind::Full);
    let _ = Runtime::<_, _, QueuesOnly>::new(&s, &mut NullObserver, SimDriver::new(&s));
}

/// Without model routing a call runs on the default model; when that
/// model's answer is rejected, the redo runs on the tier's best model for
/// the call, whether it starts at once or waits in a queue first (a redo
/// made ready where others wait is queued, and an older workflow's call is
/// often the head the next pass starts: it once went to the default model).
#[test]
fn a_redo_runs_on_the_best_model_whether_or_not_it_queued() {
    let mut s = research(40, PolicyKind::FifoCheapest);
    for t in &mut s.providers.get_mut("llm_provider").unwrap().tiers {
        t.models[0].quality = Some(crate::scenario::QualityCurve {
            midpoint: 0.5,
            slope: 8.0,
        });
        t.models[1].quality = None;
    }
    assert!(s.redos_possible());
    let mut obs = MemoryObserver {
        keep_trace: true,
        ..MemoryObserver::default()
    };
    let r = Simulator::new(&s, &mut obs).run();
    let mut redone = std::collections::HashSet::new();
    let mut redo_starts = 0;
    for e in &obs.trace {
        let call = (e.workflow, e.node);
        match e.kind {
            TraceKind::Redo => {
                redone.insert(call);
            }
            TraceKind::Start(_) if redone.contains(&call) => {
                assert_eq!(e.model, 1, "the redo of {call:?} on the default model");
                redo_starts += 1;
            }
            TraceKind::Start(_) => assert_eq!(e.model, 0, "no routing: the default model"),
            _ => {}
        }
    }
    assert_eq!(r.summary.redos, Some(redone.len() as u64));
    assert!(
        redo_starts >= redone.len() && redone.len() > 10,
        "{redo_starts} redo starts"
    );
}
