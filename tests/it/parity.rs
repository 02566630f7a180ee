//! The live driver reproduces the simulator: over the in-process provider
//! model on tokio's paused clock, the decision trace, every workflow record
//! and every result are the simulator's, under all four policies, with
//! routing, a heavy tail, failures, timeouts and provider-enforced 429s,
//! and with token limits, quality curves (redos) and prefix caches.

use agentsched::live::{self, LiveConfig, ModelTransport};
use agentsched::metrics::{MemoryObserver, RunResult};
use agentsched::policy::PolicyKind;
use agentsched::scenario::{Enforcer, PrefixCache, QualityCurve, RateLimit, Scenario, TokenLimit};
use agentsched::sim;

fn scenarios() -> Vec<(String, Scenario)> {
    let mut out = Vec::new();
    for policy in PolicyKind::ALL {
        let mut s = Scenario::default_research_agent();
        s.workload.workflows = 8;
        s.workload.pdfs = 3;
        s.workload.subqueries = 2;
        s.policy = policy;
        out.push((format!("{}/plain", policy.name()), s.clone()));

        // Routing, a heavy tail, failures, tight timeouts and a
        // provider-enforced limit that answers 429s.
        let mut hard = s.clone();
        hard.seed = 7;
        hard.ablations.enable_model_routing = true;
        hard.heavy_tail.prob = 0.05;
        hard.heavy_tail.mult = 20.0;
        let llm = hard.providers.get_mut("llm_provider").unwrap();
        llm.tiers[0].failure_prob = 0.1;
        llm.tiers[1].timeout_ms = Some(900.0);
        llm.tiers[0].rate_limit = Some(RateLimit {
            rate_per_s: 2.0,
            burst: 2,
            enforced_by: Enforcer::Provider,
            reject_latency_ms: 20.0,
        });
        hard.arrivals = agentsched::scenario::Arrivals::Poisson { rate_per_s: 0.5 };
        out.push((format!("{}/hard", policy.name()), hard.clone()));

        // Token limits (the provider's on tier 0, the client's on tier 1)
        // and a quality curve on the small model.
        let mut real = hard;
        real.seed = 11;
        let llm = real.providers.get_mut("llm_provider").unwrap();
        llm.tiers[0].rate_limit = None;
        for (t, by) in [(0, Enforcer::Provider), (1, Enforcer::Client)] {
            llm.tiers[t].token_limit = Some(TokenLimit {
                tokens_per_min: 200_000.0,
                token_burst: 4_000,
                enforced_by: by,
                reject_latency_ms: 20.0,
            });
            llm.tiers[t].models[1].quality = Some(QualityCurve {
                midpoint: 0.3,
                slope: 12.0,
            });
        }
        out.push((format!("{}/tokens_and_redos", policy.name()), real));

        // The streaming latency model (a time to first token per attempt).
        let mut streaming = Scenario::from_json_str(include_str!("../../scenarios/streaming.json"))
            .expect("shipped scenario");
        streaming.workload.workflows = 6;
        streaming.workload.pdfs = 2;
        streaming.workload.subqueries = 2;
        streaming.policy = policy;
        out.push((format!("{}/streaming", policy.name()), streaming.clone()));

        // A shared system prompt on the llm calls, and a prefix cache on
        // each llm tier with a cheaper cached price.
        let mut cached = streaming;
        cached.seed = 13;
        for nt in cached.node_types.values_mut() {
            if nt.resource == "llm" {
                nt.shared_prompt_tokens = nt.input_tokens * 3 / 4;
            }
        }
        for t in &mut cached.providers.get_mut("llm_provider").unwrap().tiers {
            (t.price_per_mtok_in, t.price_per_mtok_cached_in) = (3.0, Some(0.3));
            t.prefix_cache = Some(PrefixCache {
                ttl_ms: 2_000.0,
                block_tokens: 64,
                min_tokens: 256,
            });
        }
        out.push((format!("{}/prefix_cache", policy.name()), cached));
    }
    out
}

fn live_run(s: &Scenario) -> (RunResult, MemoryObserver) {
    let mut obs = MemoryObserver {
        keep_trace: true,
        ..MemoryObserver::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let mut cfg = LiveConfig::new(s);
    cfg.precise_timers = false;
    let out = rt
        .block_on(live::run(
            s,
            &mut obs,
            ModelTransport::new(s),
            cfg,
            None,
            std::future::pending(),
        ))
        .unwrap();
    assert!(!out.interrupted);
    (out.result, obs)
}

#[test]
fn live_driver_on_a_paused_clock_reproduces_the_simulator() {
    let mut rate_limited = 0;
    let mut rate_limited_tokens = 0;
    let mut redos = 0;
    let mut ttft_runs = 0;
    let mut timeouts = 0;
    let mut failures = 0;
    let mut cached_tokens = 0;
    for (name, s) in scenarios() {
        let mut sim_obs = MemoryObserver {
            keep_trace: true,
            ..MemoryObserver::default()
        };
        let mut sim_result = sim::run(&s, &mut sim_obs);
        let (mut live_result, live_obs) = live_run(&s);
        assert!(!sim_obs.trace.is_empty());
        assert_eq!(
            sim_obs.trace.len(),
            live_obs.trace.len(),
            "{name}: trace length"
        );
        for (i, (a, b)) in sim_obs.trace.iter().zip(&live_obs.trace).enumerate() {
            assert_eq!(a, b, "{name}: trace event {i} differs");
        }
        assert_eq!(sim_obs.workflows, live_obs.workflows, "{name}: workflows");
        sim_result.summary.wall_time_s = 0.0;
        live_result.summary.wall_time_s = 0.0;
        // Debug text, so that NaN (no samples) equals NaN.
        assert_eq!(
            format!("{sim_result:?}"),
            format!("{live_result:?}"),
            "{name}: results"
        );
        rate_limited += sim_result.summary.rate_limited;
        rate_limited_tokens += sim_result.summary.rate_limited_tokens.unwrap_or(0);
        redos += sim_result.summary.redos.unwrap_or(0);
        ttft_runs += sim_result.summary.ttft_p50_ms.is_some_and(|t| t > 0.0) as u32;
        timeouts += sim_result.summary.timeouts;
        failures += sim_result.summary.failures;
        cached_tokens += sim_result.summary.cached_input_tokens.unwrap_or(0);
    }
    // The hard cases exercised what they are for.
    assert!(rate_limited > 0 && timeouts > 0 && failures > 0);
    assert!(rate_limited_tokens > 0 && redos > 0);
    assert!(ttft_runs > 0);
    assert!(cached_tokens > 0);
}
