//! Calibration against attempts drawn from a known scenario with the
//! provider model itself (no transport): the truth is exact.

use super::*;
use crate::provider::{AttemptIds, DrawSpec, Outcome, TierModel, attempt_keyer, draw_attempt};

/// Attempts of every llm and embed node type on both tiers of each
/// provider of `truth`, drawn as the simulator would, `n` per cell.
fn synthesize(truth: &Scenario, n: u64) -> Vec<Attempt> {
    let keyer = attempt_keyer(truth.seed);
    let mut out = Vec::new();
    for (pi, (pname, prov)) in truth.providers.iter().enumerate() {
        for (ti, tier) in prov.tiers.iter().enumerate() {
            let model = TierModel::new(tier);
            for (name, nt) in truth
                .node_types
                .iter()
                .filter(|(_, nt)| nt.resource == prov.resource)
            {
                let sampler = nt.latency.sampler();
                let spec = DrawSpec {
                    sampler: &sampler,
                    tail: nt.tail.as_ref().map(|t| (t.prob, t.mult)),
                    heavy_tail: nt.heavy_tail.as_ref().unwrap_or(&truth.heavy_tail).pair(),
                    input_tokens: nt.input_tokens,
                    output_tokens: nt.output_tokens,
                };
                for w in 0..n {
                    let ids = AttemptIds {
                        workflow: w,
                        node: name.len() as u32,
                        provider: pi as u16,
                        tier: ti as u16,
                        attempt: 0,
                    };
                    let d = draw_attempt(&keyer, ids, &model, 0, &spec);
                    out.push(record(name, pname, ti as u16, nt, &d, truth.time_scale));
                }
            }
        }
    }
    out
}

/// The log line of an attempt of `nt` on tier `tier` of `provider`,
/// sent at 0, that drew `d`.
fn record(
    node_type: &str,
    provider: &str,
    tier: u16,
    nt: &crate::scenario::NodeType,
    d: &crate::provider::AttemptDraw,
    time_scale: f64,
) -> Attempt {
    let ms = d.duration.as_ms();
    Attempt {
        node_type: node_type.into(),
        provider: provider.into(),
        tier,
        model_index: 0,
        input_tokens: Some(nt.input_tokens),
        output_tokens: Some(nt.output_tokens),
        sent_ms: 0.0,
        first_token_ms: d.ttft.map(|t| t.as_ms()),
        done_ms: ms,
        sent_us: 0,
        done_us: (ms * 1e3 / time_scale) as u64,
        outcome: match d.outcome {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Timeout => "timeout",
            _ => "rate_limited",
        }
        .into(),
        retry_after_ms: None,
        error: (d.outcome == Outcome::Failure).then(|| "http_5xx".into()),
        cancelled: false,
        usage_cached_prompt_tokens: None,
        rate: RateRecord::default(),
    }
}

fn source(s: &Scenario, attempts: Vec<Attempt>) -> LiveSource {
    LiveSource {
        dir: PathBuf::from("synthetic"),
        scenario: s.clone(),
        attempts,
    }
}

/// Calibrates `base` to `attempts` with the default options.
fn calibrated(base: &Scenario, attempts: Vec<Attempt>) -> Scenario {
    calibrate(
        base,
        "b",
        &[source(base, attempts)],
        None,
        &Options::default(),
    )
    .unwrap()
}

/// The mean latency of a cell (tails included), before the timeout.
fn cell_mean(s: &Scenario, node_type: &str, provider: &str, tier: usize) -> f64 {
    let nt = &s.node_types[node_type];
    let t = &s.providers[provider].tiers[tier];
    let tail = nt
        .tail
        .as_ref()
        .map_or(1.0, |t| 1.0 - t.prob + t.prob * t.mult);
    let h = nt.heavy_tail.as_ref().unwrap_or(&s.heavy_tail);
    let heavy = 1.0 - h.prob + h.prob * h.mult;
    nt.latency.mean_ms(nt.input_tokens, nt.output_tokens) * t.latency_scale * tail * heavy
}

fn truth_of(base: &Scenario) -> Scenario {
    let mut truth = base.clone();
    for nt in truth
        .node_types
        .values_mut()
        .filter(|nt| nt.resource == "llm")
    {
        if let Dist::Lognormal { mu, .. } = &mut nt.latency {
            *mu += 2f64.ln();
        }
    }
    let t = &mut truth.providers.get_mut("llm_provider").unwrap().tiers;
    t[0].failure_prob = 0.12;
    t[1].latency_scale = 0.8;
    // The endpoints' heavy tail is twice the input's (2%).
    truth.heavy_tail.prob = 0.04;
    truth
}

#[test]
fn recovers_latencies_tier_scales_and_failure_rates() {
    let base = Scenario::default_research_agent();
    let truth = truth_of(&base);
    let attempts = synthesize(&truth, 3000);
    let cal = calibrate(
        &base,
        "base.json",
        &[source(&base, attempts)],
        None,
        &Options::default(),
    )
    .unwrap();
    for nt in ["Plan", "ExtractEvidence", "DecideNext"] {
        for tier in 0..2 {
            let (want, got) = (
                cell_mean(&truth, nt, "llm_provider", tier),
                cell_mean(&cal, nt, "llm_provider", tier),
            );
            assert!(
                (got / want - 1.0).abs() < 0.10,
                "{nt} tier {tier}: {got} vs {want}"
            );
            let before = cell_mean(&base, nt, "llm_provider", tier);
            assert!(
                (before / want - 1.0).abs() > 0.3,
                "the input was off to begin with"
            );
        }
        assert_eq!(dist_family(&cal.node_types[nt].latency), "lognormal");
    }
    let embed = (
        cell_mean(&truth, "Embed", "embed_provider", 1),
        cell_mean(&cal, "Embed", "embed_provider", 1),
    );
    assert!((embed.1 / embed.0 - 1.0).abs() < 0.10, "{embed:?}");
    let fp = cal.providers["llm_provider"].tiers[0].failure_prob;
    assert!((fp / 0.12 - 1.0).abs() < 0.10, "{fp}");
    // The heavy tail is fitted on the remote types; the global one, which
    // local work also draws, stays the input's.
    for (name, nt) in &cal.node_types {
        let remote = cal.providers.values().any(|p| p.resource == nt.resource);
        match (&nt.heavy_tail, remote) {
            (Some(h), true) => {
                assert!((h.prob / 0.04 - 1.0).abs() < 0.25, "{name}: {h:?}");
                assert_eq!(h.mult, base.heavy_tail.mult);
            }
            (None, false) => {}
            (h, _) => panic!("{name} (remote {remote}): heavy tail {h:?}"),
        }
    }
    assert_eq!(cal.heavy_tail, base.heavy_tail);
    // Nothing that is a setting moved.
    assert_eq!(
        cal.providers["llm_provider"].tiers[0].slots,
        base.providers["llm_provider"].tiers[0].slots
    );
    assert_eq!(cal.workload, base.workload);
    let prov = cal.provenance.as_ref().unwrap();
    assert_eq!(prov["input_scenario"], "base.json");
    assert!(
        prov["node_types"]["Plan"]["candidates"]
            .as_array()
            .unwrap()
            .len()
            >= 2
    );
    // It is an ordinary scenario: it round-trips and validates.
    let text = serde_json::to_string(&cal).unwrap();
    assert_eq!(Scenario::from_json_str(&text).unwrap(), cal);
}

/// Attempts that never reached the endpoint (it was down) are not the
/// provider's failures: the failure rate is the endpoint's, and they are
/// counted apart. The same attempts answered with a 5xx would count.
#[test]
fn attempts_that_never_reached_the_endpoint_are_not_failures() {
    let base = Scenario::default_research_agent();
    let truth = truth_of(&base);
    let attempts = synthesize(&truth, 1000);
    let down: Vec<Attempt> = attempts
        .iter()
        .filter(|a| a.provider == "llm_provider" && a.tier == 0)
        .take(900)
        .map(|a| Attempt {
            outcome: "failure".into(),
            error: Some(
                if a.done_ms > a.sent_ms + 1e3 {
                    "connect"
                } else {
                    "tls"
                }
                .into(),
            ),
            first_token_ms: None,
            ..a.clone()
        })
        .collect();
    let run = |extra: &[Attempt]| {
        let all: Vec<Attempt> = attempts.iter().chain(extra).cloned().collect();
        let (cal, prov) = calibrate_with_provenance(&base, all);
        let tier0 = prov["tiers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["provider"] == "llm_provider" && t["tier"] == 0)
            .unwrap()
            .clone();
        (cal.providers["llm_provider"].tiers[0].failure_prob, tier0)
    };
    let (clean, clean_obs) = run(&[]);
    let (with_down, obs) = run(&down);
    assert_eq!(with_down, clean, "the failure rate is the endpoint's");
    assert!((clean / 0.12 - 1.0).abs() < 0.15, "{clean}");
    assert_eq!(obs["observed"]["unreached"], 900);
    assert_eq!(clean_obs["observed"]["unreached"], 0);
    assert_eq!(obs["observed"]["failure"], clean_obs["observed"]["failure"]);
    // Answered with an error instead, they are failures.
    let answered: Vec<Attempt> = down
        .iter()
        .map(|a| Attempt {
            error: Some("http_5xx".into()),
            ..a.clone()
        })
        .collect();
    let (with_5xx, _) = run(&answered);
    assert!(with_5xx > clean + 0.1, "{with_5xx} vs {clean}");
}

/// Calibrates `base` to `attempts`; the scenario and its provenance.
fn calibrate_with_provenance(base: &Scenario, attempts: Vec<Attempt>) -> (Scenario, Value) {
    let cal = calibrated(base, attempts);
    let prov = cal.provenance.clone().unwrap();
    (cal, prov)
}

#[test]
fn a_gamma_endpoint_is_fitted_as_gamma() {
    let base = Scenario::default_research_agent();
    let mut truth = base.clone();
    truth.heavy_tail.prob = 0.0;
    truth.node_types.get_mut("DecideNext").unwrap().latency = Dist::Gamma {
        shape: 3.0,
        scale_ms: 300.0,
    };
    let mut base2 = base.clone();
    base2.heavy_tail.prob = 0.0;
    let cal = calibrated(&base2, synthesize(&truth, 3000));
    let Dist::Gamma { shape, scale_ms } = cal.node_types["DecideNext"].latency else {
        panic!("{:?}", cal.node_types["DecideNext"].latency)
    };
    assert!(
        (shape / 3.0 - 1.0).abs() < 0.1 && (shape * scale_ms / 900.0 - 1.0).abs() < 0.05,
        "{shape} {scale_ms}"
    );
}

#[test]
fn few_samples_keep_the_input_and_say_so() {
    let base = Scenario::default_research_agent();
    let truth = truth_of(&base);
    let attempts = synthesize(&truth, 5);
    let cal = calibrated(&base, attempts);
    assert_eq!(
        cal.node_types["Plan"].latency,
        base.node_types["Plan"].latency
    );
    assert_eq!(cal.providers["llm_provider"].tiers[0].failure_prob, 0.03);
    let prov = cal.provenance.unwrap();
    assert!(
        prov["node_types"]["Plan"]["kept"]
            .as_str()
            .unwrap()
            .contains("fewer than 30")
    );
}

#[test]
fn unknown_names_and_empty_runs_are_input_errors() {
    let base = Scenario::default_research_agent();
    let mut a = synthesize(&base, 1);
    a[0].node_type = "Nope".into();
    let e = calibrate(
        &base,
        "b.json",
        &[source(&base, a)],
        None,
        &Options::default(),
    )
    .unwrap_err();
    assert!(
        matches!(&e, Error::Input(m) if m.contains("line 1") && m.contains("\"Nope\"") && m.contains("b.json")),
        "{e}"
    );
    let e = calibrate(
        &base,
        "b",
        &[source(&base, vec![])],
        None,
        &Options::default(),
    )
    .unwrap_err();
    assert_eq!(e.exit_code(), 2);
}

/// Found by the side-input fuzzer: a timeout whose `done_ms` a mangled
/// file made 1e308 reached statrs' incomplete gamma as infinity, a panic.
#[test]
fn a_mangled_time_is_an_input_error_and_an_infinite_sample_is_no_sample() {
    let base = Scenario::default_research_agent();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("scenario.json"), base.to_pretty_json()).unwrap();
    let line = |done_ms: &str| {
        format!(
            r#"{{"node_type":"Plan","provider":"llm_provider","tier":0,"sent_ms":0.0,
                "done_ms":{done_ms},"sent_us":0,"done_us":10,"outcome":"timeout"}}"#
        )
        .replace('\n', "")
    };
    let log = dir.path().join("requests.jsonl");
    std::fs::write(&log, format!("{}\n{}\n", line("5.0"), line("1e308"))).unwrap();
    let e = LiveSource::read(dir.path()).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert!(
        e.to_string().ends_with(
            "requests.jsonl line 2: done_ms: expected scenario milliseconds from 0 to \
             4.611686018427388e15, got 100000000000000000000000000000000000000000000000000000000\
             000000000000000000000000000000000000000000000000000000000000000000000000000000000000\
             000000000000000000000000000000000000000000000000000000000000000000000000000000000000\
             000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
        ),
        "{e}"
    );
    std::fs::write(&log, format!("{}\n", line("-1"))).unwrap();
    assert!(
        LiveSource::read(dir.path())
            .unwrap_err()
            .to_string()
            .contains("line 1: done_ms: expected scenario milliseconds from 0")
    );
    // Built in memory, past the check: timeouts whose scaled time is
    // infinite are no samples, and the gamma fit goes on without a panic.
    let mut truth = base.clone();
    truth.heavy_tail.prob = 0.0;
    truth.node_types.get_mut("DecideNext").unwrap().latency = Dist::Gamma {
        shape: 3.0,
        scale_ms: 300.0,
    };
    let mut attempts = synthesize(&truth, 200);
    let mut timeout = attempts
        .iter()
        .find(|a| a.node_type == "DecideNext")
        .unwrap()
        .clone();
    timeout.outcome = "timeout".into();
    timeout.done_ms = f64::MAX;
    // The small model's latency scale, 0.6, divides it past f64::MAX.
    timeout.model_index = 1;
    attempts.extend(std::iter::repeat_n(timeout, 5));
    let mut base2 = base.clone();
    base2.heavy_tail.prob = 0.0;
    let cal = calibrated(&base2, attempts);
    let nt = &cal.node_types["DecideNext"];
    let mean = nt.latency.mean_ms(nt.input_tokens, nt.output_tokens);
    assert!(mean.is_finite() && mean > 0.0, "{:?}", nt.latency);
}

#[test]
fn buckets_from_headers_are_exact_despite_rounding() {
    // A bucket of 8 refilled at 2/s: a 429 reports remaining 0 with a
    // fraction f of a unit left, reset (8 - f)/2 s and wait (1 - f)/2 s.
    let base = Scenario::default_research_agent();
    let mut attempts = synthesize(&base, 40);
    for (k, a) in attempts
        .iter_mut()
        .filter(|a| a.provider == "llm_provider" && a.tier == 0)
        .take(40)
        .enumerate()
    {
        let f = (k % 10) as f64 / 10.0;
        a.outcome = "rate_limited".into();
        a.done_ms = a.sent_ms + 25.0;
        a.retry_after_ms = Some((1.0 - f) / 2.0 * 1e3);
        a.rate = RateRecord {
            ratelimit_limit_requests: Some(8),
            ratelimit_remaining_requests: Some(0),
            ratelimit_reset_requests_ms: Some((8.0 - f) / 2.0 * 1e3),
            ..RateRecord::default()
        };
    }
    let cal = calibrate(
        &base,
        "b",
        &[source(&base, attempts)],
        None,
        &Options { min_samples: 5 },
    )
    .unwrap();
    let r = cal.providers["llm_provider"].tiers[0]
        .rate_limit
        .clone()
        .unwrap();
    assert!((r.rate_per_s - 2.0).abs() < 1e-9, "{r:?}");
    assert_eq!(r.burst, 8);
    assert_eq!(r.enforced_by, Enforcer::Provider);
    assert!((r.reject_latency_ms - 25.0).abs() < 1e-9);
    // The other tier saw no 429 and no header: its bucket is the input's.
    assert_eq!(
        cal.providers["llm_provider"].tiers[1].rate_limit,
        base.providers["llm_provider"].tiers[1].rate_limit
    );
}

#[test]
fn a_null_run_takes_the_transport_out() {
    let base = Scenario::default_research_agent();
    let truth = truth_of(&base);
    let mut attempts = synthesize(&truth, 2000);
    // Every call took 2 real ms more (x time scale 50 = 100 scenario ms).
    for a in &mut attempts {
        a.done_ms += 100.0;
    }
    let null = Overhead {
        dir: "null".into(),
        real_ms: 2.0,
        samples: 10,
    };
    let with = calibrate(
        &base,
        "b",
        &[source(&base, attempts.clone())],
        Some(&null),
        &Options::default(),
    )
    .unwrap();
    let without = calibrated(&base, attempts);
    let want = cell_mean(&truth, "DecideNext", "llm_provider", 0);
    let (a, b) = (
        cell_mean(&with, "DecideNext", "llm_provider", 0),
        cell_mean(&without, "DecideNext", "llm_provider", 0),
    );
    assert!((a / want - 1.0).abs() < 0.1, "{a} vs {want}");
    assert!(b > a + 50.0, "{b} vs {a}");
    assert_eq!(
        with.provenance.unwrap()["transport"]["real_ms_per_call"],
        2.0
    );
}

#[test]
fn buckets_from_success_headers_undo_the_servers_rounding() {
    // A bucket of 20 refilled at 2/s, requests a little faster than that:
    // each response reports floor(units left) and the time until full.
    let base = Scenario::default_research_agent();
    let mut attempts = synthesize(&base, 150);
    let (rate, cap) = (2.0, 20.0);
    let (mut avail, mut t) = (cap, 0.0f64);
    let mut rng = rand_pcg::Pcg64Mcg::new(7);
    let mut sent = 0;
    for a in attempts
        .iter_mut()
        .filter(|a| a.provider == "embed_provider" && a.tier == 0)
    {
        let gap = crate::rng::unit(&mut rng) * 0.9;
        t += gap;
        avail = (avail + gap * rate).min(cap);
        if avail < 1.0 {
            continue;
        }
        avail -= 1.0;
        sent += 1;
        a.sent_ms = t * 1e3;
        a.rate = RateRecord {
            ratelimit_limit_requests: Some(cap as u64),
            ratelimit_remaining_requests: Some(avail.floor() as u64),
            ratelimit_reset_requests_ms: Some((cap - avail) / rate * 1e3),
            ..RateRecord::default()
        };
    }
    assert!(sent > 100);
    let cal = calibrated(&base, attempts);
    let r = cal.providers["embed_provider"].tiers[0]
        .rate_limit
        .clone()
        .unwrap();
    assert!((r.rate_per_s / rate - 1.0).abs() < 0.05, "{r:?}");
    assert_eq!(r.burst, 20);
    // The input's client-side bucket (20/s) is looser: llmock's replaces it.
    assert_eq!(r.enforced_by, Enforcer::Client);
}

#[test]
fn a_prompt_served_from_a_cache_is_not_counted_as_prefilled() {
    // The streaming scenario's ExtractEvidence: 1,500 prompt tokens at
    // 0.05 ms each. Every other attempt had 1,200 of them served from the
    // provider's cache, so its first token came 60 ms sooner.
    let truth =
        Scenario::from_json_str(include_str!("../../scenarios/streaming.json")).expect("shipped");
    let nt = &truth.node_types["ExtractEvidence"];
    let Dist::Streaming {
        ttft_mu,
        ttft_ms_per_input_token,
        ..
    } = nt.latency
    else {
        panic!("ExtractEvidence streams in streaming.json");
    };
    assert!(ttft_ms_per_input_token > 0.0);
    let tier = &truth.providers["llm_provider"].tiers[0];
    let model = TierModel::new(tier);
    let sampler = nt.latency.sampler();
    let keyer = attempt_keyer(truth.seed);
    let attempts: Vec<Attempt> = (0..2000u64)
        .map(|w| {
            let cached = if w % 2 == 0 { 1200 } else { 0 };
            let spec = DrawSpec {
                sampler: &sampler,
                tail: None,
                heavy_tail: (0.0, 1.0),
                input_tokens: nt.input_tokens - cached,
                output_tokens: nt.output_tokens,
            };
            let ids = AttemptIds {
                workflow: w,
                node: 0,
                provider: 0,
                tier: 0,
                attempt: 0,
            };
            let d = draw_attempt(&keyer, ids, &model, 0, &spec);
            Attempt {
                usage_cached_prompt_tokens: Some(cached),
                ..record(
                    "ExtractEvidence",
                    "llm_provider",
                    0,
                    nt,
                    &d,
                    truth.time_scale,
                )
            }
        })
        .collect();
    let fitted_mu = |attempts: Vec<Attempt>| {
        let cal = calibrated(&truth, attempts);
        match cal.node_types["ExtractEvidence"].latency {
            Dist::Streaming { ttft_mu, .. } => ttft_mu,
            ref d => panic!("fitted {d:?}"),
        }
    };
    let mu = fitted_mu(attempts.clone());
    assert!(
        (mu - ttft_mu).abs() < 0.05,
        "ttft_mu {mu} against {ttft_mu}"
    );
    // Read as if every prompt had been prefilled whole, the cached ones'
    // first tokens look 60 ms too early, and the fit comes out low.
    let unaware: Vec<Attempt> = attempts
        .into_iter()
        .map(|a| Attempt {
            usage_cached_prompt_tokens: None,
            ..a
        })
        .collect();
    let biased = fitted_mu(unaware);
    assert!(biased < ttft_mu - 0.1, "ttft_mu {biased} against {ttft_mu}");
}
