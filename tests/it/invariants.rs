//! Properties every run must have, on random DAG scenarios and every policy:
//! no call starts before its dependencies finish; slots and rate limits are
//! never exceeded; costs are non-negative and add up; a workflow's makespan
//! is at least the summed durations of any dependency chain of its calls.

use std::collections::BTreeMap;

use agentsched::metrics::{
    MemoryObserver, Place, RunResult, TraceEvent, TraceKind, WorkflowRecord,
};
use agentsched::policy::PolicyKind;
use agentsched::provider::Outcome;
use agentsched::runtime::uses_optional_mechanisms;
use agentsched::scenario::{Arrivals, Scenario};
use agentsched::sim::Simulator;
use proptest::prelude::*;
use serde_json::json;

#[derive(Debug, Clone)]
struct Case {
    nodes: Vec<u8>, // node type per node: 0,1 remote (llm), 2 remote (embed), 3 local
    edges: Vec<(usize, usize)>,
    workflows: u64,
    slots: (u32, u32),
    rate: Option<(f64, u32)>,
    failure: f64,
    timeout_ms: Option<f64>,
    heavy: (f64, f64),
    policy: &'static str,
    ablation: u8,
    poisson: Option<f64>,
    seed: u64,
    /// Tokens-per-minute limit on every tier: (tokens per minute, burst).
    tpm: Option<(f64, u64)>,
    /// A quality curve on the small model: (midpoint, slope).
    quality: Option<(f64, f64)>,
    /// A prefix cache on every tier, and shared prompts on types A and E:
    /// (ttl ms, block tokens, cached price per Mtok).
    cache: Option<(f64, u32, f64)>,
}

fn case() -> impl Strategy<Value = Case> {
    (1usize..8)
        .prop_flat_map(|n| {
            (
                proptest::collection::vec(0u8..4, n),
                proptest::collection::vec((0..n, 0..n), 0..(2 * n)),
                1u64..12,
                (1u32..4, 1u32..5),
                proptest::option::of((1.0f64..20.0, 1u32..6)),
                0.0f64..0.3,
                proptest::option::of(300.0f64..3000.0),
                (0.0f64..0.2, 1.0f64..20.0),
                prop::sample::select(vec![
                    "fifo_cheapest",
                    "dag_cheapest",
                    "dag_escalation",
                    "full",
                ]),
                0u8..16,
                proptest::option::of(0.5f64..20.0),
                (
                    0u64..1000,
                    proptest::option::of((3000.0f64..60000.0, 300u64..3000)),
                    proptest::option::of((0.0f64..1.0, 0.0f64..20.0)),
                    proptest::option::of((0.0f64..5000.0, 1u32..300, 0.0f64..1.0)),
                ),
            )
        })
        .prop_map(
            |(
                nodes,
                raw,
                workflows,
                slots,
                rate,
                failure,
                timeout_ms,
                heavy,
                policy,
                ablation,
                poisson,
                (seed, tpm, quality, cache),
            )| {
                // Only forward edges, so the DAG is acyclic.
                let mut edges: Vec<(usize, usize)> =
                    raw.into_iter().filter(|(a, b)| a < b).collect();
                edges.sort();
                edges.dedup();
                Case {
                    nodes,
                    edges,
                    workflows,
                    slots,
                    rate,
                    failure,
                    timeout_ms,
                    heavy,
                    policy,
                    ablation,
                    poisson,
                    seed,
                    tpm,
                    quality,
                    cache,
                }
            },
        )
}

fn scenario(c: &Case) -> Scenario {
    let types = ["A", "B", "E", "L"];
    let tier = |slots: u32, scale: f64, price: f64| {
        let mut t = json!({
            "slots": slots, "latency_scale": scale, "failure_prob": c.failure, "max_retries": 2,
            "price_per_call": price, "price_per_mtok_in": 1.0,
            "models": [{"name": "large"}, {"name": "small", "price_multiplier": 0.2, "latency_scale": 0.6}]
        });
        if let Some(ms) = c.timeout_ms {
            t["timeout_ms"] = json!(ms);
        }
        if let Some((rate, burst)) = c.rate {
            t["rate_limit"] = json!({"rate_per_s": rate, "burst": burst});
        }
        if let Some((per_min, burst)) = c.tpm {
            t["token_limit"] = json!({"tokens_per_min": per_min, "token_burst": burst});
        }
        if let Some((midpoint, slope)) = c.quality {
            t["models"][1]["quality"] = json!({"midpoint": midpoint, "slope": slope});
        }
        if let Some((ttl_ms, block_tokens, cached_price)) = c.cache {
            t["prefix_cache"] = json!({"ttl_ms": ttl_ms, "block_tokens": block_tokens});
            t["price_per_mtok_cached_in"] = json!(cached_price);
        }
        t
    };
    let doc = json!({
        "seed": c.seed,
        "workload": {
            "template": "dag",
            "workflows": c.workflows,
            "dag": {
                "nodes": c.nodes.iter().enumerate().map(|(i, &t)| json!({"id": format!("n{i}"), "node_type": types[t as usize]})).collect::<Vec<_>>(),
                "edges": c.edges.iter().map(|(a, b)| json!([format!("n{a}"), format!("n{b}")])).collect::<Vec<_>>()
            }
        },
        "arrivals": match c.poisson { Some(r) => json!({"pattern": "poisson", "rate_per_s": r}), None => json!({"pattern": "all_at_once"}) },
        "node_types": {
            "A": {"resource": "llm", "latency": {"dist": "lognormal", "mu": 5.5, "sigma": 0.8}, "input_tokens": 500},
            "B": {"resource": "llm", "latency": {"dist": "exponential", "mean_ms": 300.0}, "input_tokens": 200, "output_tokens": 100},
            "E": {"resource": "embed", "latency": {"dist": "gamma", "shape": 4.0, "scale_ms": 25.0}, "tail": {"prob": 0.1, "mult": 3.0}, "input_tokens": 300},
            "L": {"resource": "cpu", "latency": {"dist": "uniform", "low_ms": 10.0, "high_ms": 90.0}}
        },
        "pools": {"cpu": {"workers": 2}},
        "providers": {
            "llm_provider": {"resource": "llm", "tiers": [tier(c.slots.0, 1.0, 0.01), tier(c.slots.1, 0.5, 0.05)]},
            "embed_provider": {"resource": "embed", "tiers": [tier(c.slots.0, 1.0, 0.001)]}
        },
        "heavy_tail": {"prob": c.heavy.0, "mult": c.heavy.1},
        "policy": c.policy,
        "ablations": {
            "disable_hedging": c.ablation & 1 != 0,
            "disable_escalation": c.ablation & 2 != 0,
            "disable_dag_priority": c.ablation & 4 != 0,
            "enable_model_routing": c.ablation & 8 != 0
        },
        "constants": {"time_value_per_s": 1.0}
    });
    let mut doc = doc;
    if c.cache.is_some() {
        doc["node_types"]["A"]["shared_prompt_tokens"] = json!(400);
        doc["node_types"]["E"]["shared_prompt_tokens"] = json!(300);
    }
    Scenario::from_value(doc).expect("generated scenario is valid")
}

fn check(c: &Case) -> Result<(), TestCaseError> {
    let s = scenario(c);
    let mut obs = MemoryObserver {
        keep_trace: true,
        ..MemoryObserver::default()
    };
    let s_names: Vec<String> = s.node_types.keys().cloned().collect();
    let sim = Simulator::new(&s, &mut obs);
    let block = sim.workload().block(0).clone();
    let result = sim.run();
    let trace = &obs.trace;

    prop_assert_eq!(
        result.summary.completed + result.summary.failed,
        c.workflows
    );
    prop_assert_eq!(obs.workflows.len() as u64, c.workflows);

    // Slots: replay starts and ends per place.
    let slots: BTreeMap<Place, u32> = [
        (
            Place::Tier {
                provider: 1,
                tier: 0,
            },
            c.slots.0,
        ),
        (
            Place::Tier {
                provider: 1,
                tier: 1,
            },
            c.slots.1,
        ),
        (
            Place::Tier {
                provider: 0,
                tier: 0,
            },
            c.slots.0,
        ),
        (Place::Pool(0), 2),
    ]
    .into_iter()
    .collect();
    let mut busy: BTreeMap<Place, u32> = BTreeMap::new();
    for e in trace {
        match e.kind {
            TraceKind::Start(_) => {
                let b = busy.entry(e.place).or_default();
                *b += 1;
                prop_assert!(
                    *b <= slots[&e.place],
                    "{:?} over its {} slots at {}",
                    e.place,
                    slots[&e.place],
                    e.t
                );
            }
            TraceKind::End(_) => *busy.get_mut(&e.place).expect("ended after a start") -= 1,
            _ => {}
        }
        if let TraceKind::End(_) = e.kind {
            prop_assert!(
                e.cost.0 <= 1_000_000_000,
                "one attempt never costs more than a dollar here"
            );
        }
    }
    prop_assert!(
        busy.values().all(|&b| b == 0),
        "everything that started ended"
    );

    // The run ends when its last work does (a workflow, or a failed
    // workflow's leftover task), not at a timer still pending then.
    let last_work = trace
        .iter()
        .filter(|e| matches!(e.kind, TraceKind::End(_)))
        .map(|e| e.t)
        .chain(obs.workflows.iter().map(|w| w.finish))
        .max()
        .expect("every case runs workflows");
    prop_assert_eq!(result.summary.sim_time_ms, last_work.as_ms());

    // Rate limits (client-enforced): starts in any window <= burst + rate x width.
    if let Some((rate, burst)) = c.rate {
        for place in slots.keys().filter(|p| matches!(p, Place::Tier { .. })) {
            let starts: Vec<u64> = trace
                .iter()
                .filter(|e| matches!(e.kind, TraceKind::Start(_)) && e.place == *place)
                .map(|e| e.t.0)
                .collect();
            for i in 0..starts.len() {
                for j in i..starts.len() {
                    let width = (starts[j] - starts[i]) as f64 / 1e6;
                    prop_assert!(
                        (j - i + 1) as f64 <= burst as f64 + rate * width + 1e-6,
                        "{:?}: {} starts within {} s exceed burst {} + rate {}",
                        place,
                        j - i + 1,
                        width,
                        burst,
                        rate
                    );
                }
            }
        }
    }

    // Token limits (client-enforced): tokens reserved by the starts in any
    // window <= burst + rate x width (each start's reservation clamped to
    // the burst; +1 for the nanosecond rounding of the refill interval).
    if let Some((per_min, burst)) = c.tpm {
        let reserved = |ty: &str| -> u64 {
            match ty {
                "A" => 500,
                "B" => 300,
                "E" => 300,
                _ => 0,
            }
        };
        for place in slots.keys().filter(|p| matches!(p, Place::Tier { .. })) {
            let starts: Vec<(u64, u64)> = trace
                .iter()
                .filter(|e| matches!(e.kind, TraceKind::Start(_)) && e.place == *place)
                .map(|e| (e.t.0, reserved(&s_names[e.node_type as usize]).min(burst)))
                .collect();
            for i in 0..starts.len() {
                let mut sum = 0;
                for j in i..starts.len() {
                    sum += starts[j].1;
                    let width_min = (starts[j].0 - starts[i].0) as f64 / 60e6;
                    prop_assert!(
                        sum as f64 <= burst as f64 + per_min * width_min + 1.0,
                        "{:?}: {} tokens within {} min exceed burst {} + {}/min",
                        place,
                        sum,
                        width_min,
                        burst,
                        per_min
                    );
                }
            }
        }
    }

    // Dependencies and chains, per workflow.
    let mut done: BTreeMap<(u64, u32), u64> = BTreeMap::new();
    let mut first_start: BTreeMap<(u64, u32), u64> = BTreeMap::new();
    let mut attempt_start: BTreeMap<(u64, u32, u32, Place), u64> = BTreeMap::new();
    let mut duration: BTreeMap<(u64, u32), u64> = BTreeMap::new();
    for e in trace {
        let k = (e.workflow, e.node);
        match e.kind {
            TraceKind::Start(_) => {
                first_start.entry(k).or_insert(e.t.0);
                attempt_start.insert((e.workflow, e.node, e.attempt, e.place), e.t.0);
            }
            TraceKind::End(Outcome::Success) => {
                let st = attempt_start[&(e.workflow, e.node, e.attempt, e.place)];
                duration.insert(k, e.t.0 - st);
            }
            TraceKind::NodeDone => {
                done.insert(k, e.t.0);
            }
            _ => {}
        }
    }
    for w in &obs.workflows {
        let id = w.workflow_id;
        let n = block.nodes.len();
        for a in 0..n {
            for &b in block.successors(a) {
                if let Some(&sb) = first_start.get(&(id, b)) {
                    let da = done.get(&(id, a as u32));
                    prop_assert!(
                        da.is_some_and(|&d| d <= sb),
                        "wf {} node {} started before dependency {} finished",
                        id,
                        b,
                        a
                    );
                }
            }
        }
        if w.ok {
            prop_assert_eq!(
                done.keys().filter(|k| k.0 == id).count(),
                n,
                "a completed workflow finished every node"
            );
            // Longest chain of actual durations, by DP in topological order (block order is topological).
            let mut chain = vec![0u64; n];
            for a in (0..n).rev() {
                let after = block
                    .successors(a)
                    .iter()
                    .map(|&b| chain[b as usize])
                    .max()
                    .unwrap_or(0);
                chain[a] = duration[&(id, a as u32)] + after;
            }
            let longest = chain.into_iter().max().unwrap_or(0);
            prop_assert!(
                w.makespan().0 >= longest,
                "wf {}: makespan {} < chain {}",
                id,
                w.makespan().0,
                longest
            );
        }
    }

    let total: u64 = obs.workflows.iter().map(|w| w.cost.0).sum();
    prop_assert!(
        (agentsched::units::Money(total).as_dollars() - result.summary.cost_total).abs() < 1e-12
    );
    prop_assert!(result.summary.cost_total >= 0.0 && result.summary.cost_mean >= 0.0);
    Ok(())
}

/// Everything a run produces, wake-up counts aside, as comparable text
/// and records: once with the policy skipping idle dispatch passes (and a
/// plain policy making its plain passes and ready-call searches), once
/// with every full pass and general search made.
fn skipping_and_exhaustive(s: &Scenario) -> [(String, Vec<TraceEvent>, Vec<WorkflowRecord>); 2] {
    [false, true].map(|exhaustive| {
        let mut obs = MemoryObserver {
            keep_trace: true,
            ..MemoryObserver::default()
        };
        let sim = Simulator::new(s, &mut obs);
        let sim = if exhaustive {
            sim.with_exhaustive_dispatch()
        } else {
            sim
        };
        let mut result = sim.run();
        // Wake-up events may be requested at other moments; nothing else
        // differs. Debug text, so that NaN (no samples) equals NaN.
        result.summary.events = 0;
        (format!("{result:?}"), obs.trace, obs.workflows)
    })
}

/// The policy skips dispatch passes when nothing they depend on changed;
/// running every pass instead must not change a single decision.
fn skipping_passes_changes_nothing(c: &Case) -> Result<(), TestCaseError> {
    let [skipping, exhaustive] = skipping_and_exhaustive(&scenario(c));
    prop_assert_eq!(&skipping.1, &exhaustive.1, "traces differ");
    prop_assert_eq!(&skipping.2, &exhaustive.2, "workflow records differ");
    prop_assert_eq!(skipping.0, exhaustive.0);
    Ok(())
}

/// `c` without its optional mechanisms: no hedging, escalation or model
/// routing (`full` and `dag_escalation` become `dag_cheapest`), no prefix
/// cache. Quality curves stay: without routing they sit on a model no call
/// uses. Rate and token limits stay: both copies handle them.
fn queues_only(c: &Case) -> Case {
    Case {
        policy: match c.policy {
            "fifo_cheapest" => "fifo_cheapest",
            _ => "dag_cheapest",
        },
        ablation: c.ablation & !8,
        cache: None,
        ..c.clone()
    }
}

/// The simulator runs a scenario without optional mechanisms on the copy of
/// the engine compiled without them; the general copy must compute exactly
/// the same: every trace event, workflow record and summary field.
fn both_engine_copies_agree(c: &Case) -> Result<(), TestCaseError> {
    let s = scenario(&queues_only(c));
    prop_assert!(!uses_optional_mechanisms(&s));
    let run = |general: bool| {
        let mut obs = MemoryObserver {
            keep_trace: true,
            ..MemoryObserver::default()
        };
        let sim = if general {
            Simulator::general(&s, &mut obs)
        } else {
            Simulator::new(&s, &mut obs)
        };
        assert_eq!(sim.queues_only(), !general);
        // Debug text, so that NaN (no samples) equals NaN.
        let result = format!("{:?}", sim.run());
        (result, obs.trace, obs.workflows)
    };
    let (queues_only, general) = (run(false), run(true));
    prop_assert!(!queues_only.1.is_empty());
    prop_assert_eq!(&queues_only.1, &general.1, "traces differ");
    prop_assert_eq!(&queues_only.2, &general.2, "workflow records differ");
    prop_assert_eq!(queues_only.0, general.0);
    Ok(())
}

/// These scenarios' latencies do not depend on prompt size, so a prefix
/// cache changes what attempts cost and nothing else: the same trace,
/// each attempt charged at most what it was without the cache, and the
/// cached tokens counted alike in the summary and the tiers.
fn a_prefix_cache_changes_only_costs(c: &Case) -> Result<(), TestCaseError> {
    let cached = scenario(c);
    let mut plain = cached.clone();
    for t in plain.providers.values_mut().flat_map(|p| &mut p.tiers) {
        t.prefix_cache = None;
    }
    let ((with, with_trace), (without, without_trace)) = (traced(&cached), traced(&plain));
    for (a, b) in same_but_costs(&with_trace, &without_trace)? {
        prop_assert!(a.cost <= b.cost, "{a:?} cost more than {b:?}");
    }
    prop_assert_eq!(without.summary.cached_input_tokens, None);
    let by_tier: u64 = with
        .tiers
        .iter()
        .filter_map(|t| t.cached_input_tokens)
        .sum();
    prop_assert_eq!(with.summary.cached_input_tokens, Some(by_tier));
    prop_assert!(with.summary.cost_total <= without.summary.cost_total + 1e-12);
    Ok(())
}

/// A run of `s` and its trace.
fn traced(s: &Scenario) -> (RunResult, Vec<TraceEvent>) {
    let mut obs = MemoryObserver {
        keep_trace: true,
        ..MemoryObserver::default()
    };
    let result = Simulator::new(s, &mut obs).run();
    (result, obs.trace)
}

/// Checks that two traces differ in their events' costs at most, and
/// pairs their events up for checks of the costs.
fn same_but_costs<'t>(
    with: &'t [TraceEvent],
    without: &'t [TraceEvent],
) -> Result<Vec<(&'t TraceEvent, &'t TraceEvent)>, TestCaseError> {
    prop_assert_eq!(with.len(), without.len());
    for (a, b) in with.iter().zip(without) {
        prop_assert_eq!(
            TraceEvent { cost: b.cost, ..*a },
            *b,
            "more than a cost changed"
        );
    }
    Ok(with.iter().zip(without).collect())
}

/// A price for writing to a prefix cache changes what the misses that
/// wrote cost and nothing else: the same trace, each attempt charged at
/// least what it was without the premium, and just as many tokens written.
fn a_write_premium_changes_only_costs(c: &Case) -> Result<(), TestCaseError> {
    let plain = scenario(c);
    let mut premium = plain.clone();
    for t in premium.providers.values_mut().flat_map(|p| &mut p.tiers) {
        if t.prefix_cache.is_some() {
            t.price_per_mtok_cache_write = Some(t.price_per_mtok_in * 1.25);
        }
    }
    let ((with, with_trace), (without, without_trace)) = (traced(&premium), traced(&plain));
    for (a, b) in same_but_costs(&with_trace, &without_trace)? {
        prop_assert!(a.cost >= b.cost, "{a:?} cost less than {b:?}");
    }
    let written = with.summary.cache_write_tokens;
    prop_assert_eq!(written, without.summary.cache_write_tokens);
    let by_tier: u64 = with.tiers.iter().filter_map(|t| t.cache_write_tokens).sum();
    prop_assert_eq!(written, Some(by_tier));
    // (Strictly more only where a writer was charged: one cancelled at
    // once pays nothing either way.)
    if by_tier == 0 {
        prop_assert_eq!(with.summary.cost_total, without.summary.cost_total);
    } else {
        prop_assert!(with.summary.cost_total >= without.summary.cost_total);
    }
    Ok(())
}

#[test]
fn skipping_idle_dispatch_passes_is_exact_on_the_default_scenario() {
    // Rate-limited tiers, retries, escalation and hedging under a heavy
    // tail, Poisson arrivals so that the system fills and drains.
    for policy in PolicyKind::ALL {
        let mut s = Scenario::default_research_agent();
        s.workload.workflows = 300;
        s.policy = policy;
        s.heavy_tail.prob = 0.1;
        s.heavy_tail.mult = 5.0;
        s.arrivals = Arrivals::Poisson { rate_per_s: 0.5 };
        s.ablations.enable_model_routing = true;
        let [skipping, exhaustive] = skipping_and_exhaustive(&s);
        assert!(skipping.1.len() > 10_000, "{policy:?}: a busy run");
        assert!(skipping == exhaustive, "{policy:?}: outputs differ");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn every_run_respects_dependencies_slots_limits_and_costs(c in case()) {
        check(&c)?;
    }

    #[test]
    fn skipped_dispatch_passes_change_no_decision(c in case()) {
        skipping_passes_changes_nothing(&c)?;
    }

    #[test]
    fn the_queues_only_engine_computes_what_the_general_one_does(c in case()) {
        both_engine_copies_agree(&c)?;
    }

    #[test]
    fn a_prefix_cache_only_lowers_costs(c in case().prop_filter("cached", |c| c.cache.is_some())) {
        a_prefix_cache_changes_only_costs(&c)?;
    }

    #[test]
    fn a_cache_write_premium_only_raises_costs(c in case().prop_filter("cached", |c| c.cache.is_some())) {
        a_write_premium_changes_only_costs(&c)?;
    }
}
