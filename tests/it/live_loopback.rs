//! The live executor against the emulator on 127.0.0.1: every workflow
//! completes under each policy, provider-enforced 429s are honoured, every
//! fault kind ends recorded (no hang, one requests.jsonl line per attempt),
//! and an API key never reaches a file.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use agentsched::live::emulator::{self, EmulatorConfig, Fault};
use agentsched::live::{self, HttpTransport, LiveConfig, LiveOutcome, RequestLog};
use agentsched::metrics::MemoryObserver;
use agentsched::policy::PolicyKind;
use agentsched::scenario::{Enforcer, RateLimit, Scenario};

use crate::util::{agentsched_in, err};

fn small(policy: PolicyKind) -> Scenario {
    let mut s = Scenario::default_research_agent();
    s.workload.workflows = 3;
    s.workload.pdfs = 2;
    s.workload.subqueries = 2;
    s.policy = policy;
    s.time_scale = 50.0;
    s
}

/// Serves `s` on loopback and runs it live; bounded in time.
fn run_against_emulator(
    s: &Scenario,
    faults: BTreeMap<Fault, f64>,
) -> (LiveOutcome, Vec<serde_json::Value>) {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("requests.jsonl");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let out = rt.block_on(async {
        let cfg = EmulatorConfig {
            time_scale: s.time_scale,
            faults,
            ttft_fraction: 0.3,
            cache: false,
        };
        let h = emulator::start(s, cfg, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let mut s2 = s.clone();
        let file = emulator::endpoints_for(s, h.addr);
        let endpoints = file.resolve("test", &mut s2, |_| None).unwrap();
        let mut cfg = LiveConfig::new(&s2);
        cfg.endpoints = endpoints
            .into_iter()
            .map(|t| t.into_iter().map(Arc::new).collect())
            .collect();
        let mut obs = MemoryObserver::default();
        let log = RequestLog::create(&log_path).unwrap();
        let run = live::run(
            &s2,
            &mut obs,
            HttpTransport::new(),
            cfg,
            Some(log),
            std::future::pending(),
        );
        let out = tokio::time::timeout(Duration::from_secs(60), run)
            .await
            .expect("the run ends (no hang)")
            .unwrap();
        h.shutdown().await;
        assert_eq!(obs.workflows.len() as u64, s.workload.workflows);
        out
    });
    let lines = std::fs::read_to_string(&log_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (out, lines)
}

#[test]
fn every_workflow_completes_under_each_policy() {
    for policy in PolicyKind::ALL {
        let s = small(policy);
        let (out, lines) = run_against_emulator(&s, BTreeMap::new());
        let m = &out.result.summary;
        assert_eq!(m.completed, 3, "{}: {m:?}", policy.name());
        assert_eq!(lines.len() as u64, m.attempts, "{}", policy.name());
        assert_eq!(out.request_lines, m.attempts);
        assert!(m.makespan_p50_ms > 0.0 && m.cost_total > 0.0);
        // Streaming metrics exist for a live run.
        let cols: BTreeMap<_, _> = out.metrics.clone().columns().into_iter().collect();
        assert!(cols["ttft_p50_ms"].as_f64().unwrap() > 0.0);
        assert!(cols["e2e_p95_ms"].as_f64().unwrap() >= cols["e2e_p50_ms"].as_f64().unwrap());
        for l in &lines {
            assert!(l["done_ms"].as_f64().unwrap() >= l["sent_ms"].as_f64().unwrap());
        }
    }
}

/// `small` with ExtractEvidence's 1,200-token shared prompt cached on
/// every LLM tier ($10/Mtok in, $1 cached).
fn small_with_a_prefix_cache() -> Scenario {
    let mut s = small(PolicyKind::FifoCheapest);
    s.node_types
        .get_mut("ExtractEvidence")
        .unwrap()
        .shared_prompt_tokens = 1200;
    for t in &mut s.providers.get_mut("llm_provider").unwrap().tiers {
        (t.price_per_mtok_in, t.price_per_mtok_cached_in) = (10.0, Some(1.0));
        t.prefix_cache = Some(agentsched::scenario::PrefixCache {
            ttl_ms: 300_000.0,
            block_tokens: 16,
            min_tokens: 0,
        });
    }
    s
}

fn cached(l: &serde_json::Value) -> Option<u64> {
    l["usage_cached_prompt_tokens"].as_u64()
}

#[test]
fn the_emulator_serves_a_shared_prompt_from_its_prefix_cache_as_the_simulator_does() {
    let s = small_with_a_prefix_cache();
    let (out, lines) = run_against_emulator(&s, BTreeMap::new());
    let m = &out.result.summary;
    assert_eq!(m.completed, 3);
    let mut hits = 0;
    for l in &lines {
        match (l["node_type"].as_str().unwrap(), &l["provider"]) {
            // Its 1,200 shared tokens, in whole 16-token blocks, once warm.
            ("ExtractEvidence", _) if l["outcome"] == "success" => {
                let c = cached(l).expect("a tier with a cache reports it");
                assert!(c == 0 || c == 1200, "{l}");
                hits += (c > 0) as u64;
            }
            (_, p) if p == "llm_provider" && l["outcome"] == "success" => {
                assert_eq!(cached(l), Some(0), "{l}")
            }
            _ => {}
        }
    }
    assert!(hits > 0, "no call found the cache warm");
    let reported: u64 = lines.iter().filter_map(cached).sum();
    assert_eq!(m.cached_input_tokens, Some(reported));
    assert_eq!(reported, hits * 1200);
    // The emulator does not say what it wrote, as OpenAI-compatible servers
    // do not: each ExtractEvidence answer served nothing from the cache
    // wrote the 1,200 tokens it can serve. Other types share nothing.
    assert!(
        lines
            .iter()
            .all(|l| l.get("usage_cache_write_tokens").is_none())
    );
    let misses = lines
        .iter()
        .filter(|l| l["node_type"] == "ExtractEvidence" && cached(l) == Some(0))
        .count() as u64;
    assert!(misses > 0);
    assert_eq!(m.cache_write_tokens, Some(misses * 1200));
    // The simulator of the same scenario serves about as many from its
    // cache (the live run's timing decides which calls find it warm).
    let simulated = agentsched::sim::run(&s, &mut agentsched::metrics::NullObserver).summary;
    let sim_hits = simulated.cached_input_tokens.unwrap() / 1200;
    assert!(
        sim_hits.abs_diff(hits) <= 4,
        "{sim_hits} simulated hits, {hits} live"
    );
}

/// A tier that prices cache writes on their own says in each answer what
/// it wrote (`usage.cache_creation_input_tokens`, as Anthropic's API does),
/// and the run's count of writes is the answers' sum.
#[test]
fn the_emulator_reports_cache_writes_where_a_tier_prices_them() {
    let mut s = small_with_a_prefix_cache();
    for t in &mut s.providers.get_mut("llm_provider").unwrap().tiers {
        t.price_per_mtok_cache_write = Some(12.5);
    }
    let (out, lines) = run_against_emulator(&s, BTreeMap::new());
    let m = &out.result.summary;
    assert_eq!(m.completed, 3);
    let written = |l: &serde_json::Value| l["usage_cache_write_tokens"].as_u64();
    let (mut hits, mut misses) = (0, 0);
    for l in lines.iter().filter(|l| l["outcome"] == "success") {
        match (l["node_type"].as_str().unwrap(), &l["provider"]) {
            // A miss writes the 1,200 tokens the cache can serve; a hit
            // writes nothing.
            ("ExtractEvidence", _) => match (cached(l), written(l)) {
                (Some(0), Some(1200)) => misses += 1,
                (Some(1200), Some(0)) => hits += 1,
                other => panic!("{other:?}: {l}"),
            },
            (_, p) if p == "llm_provider" => assert_eq!(written(l), Some(0), "{l}"),
            _ => assert_eq!(written(l), None, "{l}"),
        }
    }
    assert!(hits > 0 && misses > 0, "{hits} hits, {misses} misses");
    let reported: u64 = lines.iter().filter_map(written).sum();
    assert_eq!(m.cache_write_tokens, Some(reported));
    assert_eq!(reported, misses * 1200);
}

#[test]
fn provider_enforced_429s_are_honoured() {
    let mut s = small(PolicyKind::FifoCheapest);
    let llm = s.providers.get_mut("llm_provider").unwrap();
    llm.tiers[0].slots = 4;
    llm.tiers[0].rate_limit = Some(RateLimit {
        rate_per_s: 2.0,
        burst: 1,
        enforced_by: Enforcer::Provider,
        reject_latency_ms: 20.0,
    });
    let (out, lines) = run_against_emulator(&s, BTreeMap::new());
    let m = &out.result.summary;
    assert_eq!(m.completed, 3);
    assert!(m.rate_limited > 0, "{m:?}");
    assert_eq!(out.metrics.http_429, m.rate_limited);
    let limited: Vec<_> = lines
        .iter()
        .filter(|l| l["outcome"] == "rate_limited")
        .collect();
    assert_eq!(limited.len() as u64, m.rate_limited);
    // Every 429 carried a wait, and the call honoured it before resending.
    for l in &limited {
        let wait = l["retry_after_ms"].as_f64().expect("a Retry-After");
        // At most about one refill interval (500 ms at 2/s), give or take
        // the clocks' conversions.
        assert!(wait > 0.0 && wait <= 600.0, "{l}");
        assert_eq!(l["status"], 429);
        // The call's next attempt went out only after the wait.
        let done = l["done_ms"].as_f64().unwrap();
        let next = lines
            .iter()
            .filter(|m| m["workflow"] == l["workflow"] && m["node"] == l["node"])
            .map(|m| m["sent_ms"].as_f64().unwrap())
            .filter(|&t| t > l["sent_ms"].as_f64().unwrap())
            .fold(f64::INFINITY, f64::min);
        assert!(next >= done + wait - 1.0, "resent at {next} after {l}");
    }
}

#[test]
fn token_limit_429s_are_named_and_counted_by_cause_over_http() {
    let mut s = small(PolicyKind::FifoCheapest);
    let llm = s.providers.get_mut("llm_provider").unwrap();
    llm.tiers[0].slots = 4;
    llm.tiers[0].token_limit = Some(agentsched::scenario::TokenLimit {
        tokens_per_min: 120_000.0,
        token_burst: 4_000,
        enforced_by: Enforcer::Provider,
        reject_latency_ms: 20.0,
    });
    let (out, lines) = run_against_emulator(&s, BTreeMap::new());
    let m = &out.result.summary;
    assert_eq!(m.completed, 3);
    assert!(m.rate_limited > 0, "{m:?}");
    // The tier's request limit is the client's: every 429 is the token limit's.
    assert_eq!(m.rate_limited_tokens, Some(m.rate_limited), "{m:?}");
    let limited = lines
        .iter()
        .filter(|l| l["outcome"] == "rate_limited")
        .count();
    assert_eq!(limited as u64, m.rate_limited);
}

#[test]
fn a_streaming_model_streams_its_first_token_at_the_drawn_time() {
    let mut s = Scenario::from_json_str(include_str!("../../scenarios/streaming.json")).unwrap();
    s.workload.workflows = 3;
    s.workload.pdfs = 2;
    s.workload.subqueries = 2;
    // At 10x a first token is ~20 ms of real time, so a few ms of scheduling
    // delay on a loaded 2-core machine (the tests run in parallel) stay well
    // inside the bound below; at 50x they did not.
    s.time_scale = 10.0;
    let sim = agentsched::sim::run(&s, &mut MemoryObserver::default()).summary;
    let (out, _) = run_against_emulator(&s, BTreeMap::new());
    let m = &out.result.summary;
    assert_eq!(m.completed, 3);
    // The runtime measured TTFT from the stream; the live metrics' own
    // TTFT columns give way to it (one column per name).
    let live_ttft = m.ttft_p50_ms.expect("streaming columns");
    let sim_ttft = sim.ttft_p50_ms.unwrap();
    assert!(live_ttft > 0.0 && m.tpot_mean_ms.unwrap() > 0.0);
    // Same draws (identity header); the real clock adds little at 10x.
    assert!(
        (live_ttft - sim_ttft).abs() / sim_ttft < 0.5,
        "live {live_ttft} vs sim {sim_ttft}"
    );
    let csv = agentsched::output::summary_csv_with(m, "full", &out.metrics.clone().columns());
    let text = String::from_utf8(csv).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let unique: std::collections::BTreeSet<&&str> = header.iter().collect();
    assert_eq!(unique.len(), header.len(), "{header:?}");
}

#[test]
fn each_fault_kind_is_recorded_without_a_hang() {
    for (fault, name) in Fault::ALL {
        // No hedging: a hedge would win against a stalled stream and
        // cancel it before its timeout.
        let s = small(PolicyKind::DagEscalation);
        let (out, lines) = run_against_emulator(&s, BTreeMap::from([(fault, 0.3)]));
        let m = &out.result.summary;
        assert_eq!(lines.len() as u64, m.attempts, "{name}");
        assert_eq!(m.completed + m.failed, 3, "{name}");
        if fault == Fault::SlowHeaders {
            // Late, not broken: every attempt still succeeds or is a drawn failure.
            assert!(lines.iter().all(|l| l["error"].is_null()
                || l["error"] == "http_500"
                || l["outcome"] == "cancelled"
                || l["outcome"] == "timeout"));
            continue;
        }
        let errors: Vec<&str> = lines
            .iter()
            .filter_map(|l| l["error"].as_str())
            .filter(|e| *e != "http_500")
            .collect();
        assert!(!errors.is_empty(), "{name}: no fault recorded");
        let expected = match fault {
            Fault::Reset => "reset",
            Fault::Malformed => "malformed_sse",
            Fault::Stall => "timeout",
            Fault::Truncated => "truncated",
            Fault::SlowHeaders => unreachable!(),
        };
        assert!(errors.contains(&expected), "{name}: {errors:?}");
        // The summary counts them as failed or timed-out attempts.
        assert!(
            m.failures + m.timeouts >= errors.len() as u64,
            "{name}: {m:?}"
        );
    }
}

/// An emulator of `s` on 127.0.0.1 in its own runtime, for tests that run
/// the command-line binary against it.
fn background_emulator(s: &Scenario) -> (tokio::runtime::Runtime, emulator::EmulatorHandle) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let cfg = EmulatorConfig {
        time_scale: s.time_scale,
        faults: BTreeMap::new(),
        ttft_fraction: 0.3,
        cache: false,
    };
    let h = rt
        .block_on(emulator::start(s, cfg, "127.0.0.1:0".parse().unwrap()))
        .unwrap();
    (rt, h)
}

/// A hung server behind a tier without a `timeout_ms` of its own: each
/// request is aborted as a timeout at `--request-timeout-s` (real time),
/// so the run ends rather than waiting forever.
#[test]
fn a_tier_without_a_timeout_is_bounded_by_the_request_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut s = small(PolicyKind::FifoCheapest);
    s.workload.workflows = 1;
    s.providers.get_mut("embed_provider").unwrap().tiers[0].timeout_ms = None;
    let (rt, h) = background_emulator(&s);
    let mut file = emulator::endpoints_for(&s, h.addr);
    file.providers.get_mut("embed_provider").unwrap()[0].base_url = crate::util::hung_endpoint();
    std::fs::write(d.join("ep.json"), serde_json::to_string(&file).unwrap()).unwrap();
    let mut args = SMALL_LIVE_RUN.to_vec();
    let workflows = args.iter().position(|a| *a == "--workflows").unwrap();
    args[workflows + 1] = "1";
    args.extend([
        "--policy",
        "fifo_cheapest",
        "--set",
        "providers.embed_provider.tiers.0.timeout_ms=null",
        "--request-timeout-s",
        "0.3",
        "--quiet",
        "--out",
        "o",
    ]);
    let limit = std::time::Duration::from_secs(60);
    let o = crate::util::agentsched_in_within(d, &args, limit);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    crate::util::assert_each_timed_out_after(&d.join("o"), "embed_provider", 0, 0.3);
    // A bad limit is refused before anything is sent.
    let mut bad = args.clone();
    let at = bad.iter().position(|a| *a == "0.3").unwrap();
    bad[at] = "-2";
    let o = agentsched_in(d, &bad);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("--request-timeout-s"), "{}", err(&o));
    assert!(err(&o).contains("expected seconds"), "{}", err(&o));
    drop((rt, h));
}

/// An endpoint that accepts connections and never answers (a hung server)
/// is reached, so the run stands (exit 0), but it warns naming the
/// endpoint, records it in summary.json, and `fidelity --live` repeats it;
/// endpoints that answered are not named.
#[test]
fn an_endpoint_that_never_answers_is_warned_about_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = small(PolicyKind::Full);
    let (rt, h) = background_emulator(&s);
    let hung_url = crate::util::hung_endpoint();
    let mut file = emulator::endpoints_for(&s, h.addr);
    file.providers.get_mut("embed_provider").unwrap()[0].base_url = hung_url.clone();
    std::fs::write(d.join("ep.json"), serde_json::to_string(&file).unwrap()).unwrap();
    let o = agentsched_in(
        d,
        &[&SMALL_LIVE_RUN[..], &["--quiet", "--out", "o"]].concat(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    // Every request sent there timed out (embed tier 0's timeout is 10 s of
    // scenario time), and the warning counts them.
    let to_hung = crate::util::sent_to(&d.join("o"), "embed_provider", 0);
    assert!(!to_hung.is_empty());
    assert!(
        to_hung
            .iter()
            .all(|r| r["error"] == "timeout" && r["status"].is_null())
    );
    let msg = err(&o);
    let warning = format!(
        "warning: embed_provider tier 0 ({hung_url}) answered none of its {} requests (all timed out before a response began); the outputs measure its failures, not its answers",
        to_hung.len()
    );
    assert!(msg.contains(&warning), "{msg}");
    assert_eq!(msg.matches("warning:").count(), 1, "{msg}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("o/summary.json")).unwrap()).unwrap();
    let mute = summary["never_answered"].as_array().unwrap();
    assert_eq!(mute.len(), 1);
    assert!(warning.contains(mute[0].as_str().unwrap().split(';').next().unwrap()));
    assert!(summary.get("never_reached").is_none(), "{summary}");
    let o = agentsched_in(d, &["fidelity", "--live", "o"]);
    assert!(matches!(o.status.code(), Some(0 | 1)), "{}", err(&o));
    assert!(
        err(&o).contains("warning: --live o: embed_provider tier 0"),
        "{}",
        err(&o)
    );
    rt.block_on(h.shutdown());
}

/// A `max_tokens` past u32 is a bad request, not wrapped to a small length.
#[test]
fn a_max_tokens_past_u32_is_refused() {
    use std::io::{Read, Write};
    let s = small(PolicyKind::FifoCheapest);
    let (rt, h) = background_emulator(&s);
    let model = emulator::endpoints_for(&s, h.addr).providers["llm_provider"][0]
        .model
        .clone();
    let post = |max_tokens: u64| {
        let body = format!(
            r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}],"max_tokens":{max_tokens}}}"#
        );
        let mut c = std::net::TcpStream::connect(h.addr).unwrap();
        c.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        write!(
            c,
            "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut reply = String::new();
        c.read_to_string(&mut reply).unwrap();
        reply
    };
    let past = post(u64::from(u32::MAX) + 6);
    assert!(past.starts_with("HTTP/1.1 400"), "{past}");
    assert!(past.contains("max_tokens"), "{past}");
    let ok = post(6);
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    rt.block_on(h.shutdown());
}

#[test]
fn a_request_body_past_the_limit_is_refused_before_it_is_read() {
    use std::io::{Read, Write};
    let s = small(PolicyKind::FifoCheapest);
    let (rt, h) = background_emulator(&s);
    // Only the head is sent: the answer must come from content-length.
    let post = |length: usize| {
        let mut c = std::net::TcpStream::connect(h.addr).unwrap();
        c.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        write!(
            c,
            "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
             content-length: {length}\r\nconnection: close\r\n\r\n"
        )
        .unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let mut reply = String::new();
        c.read_to_string(&mut reply).unwrap();
        reply
    };
    let past = post(emulator::MAX_REQUEST_BYTES + 1);
    assert!(past.starts_with("HTTP/1.1 413"), "{past}");
    assert!(
        past.contains(&format!("over {} bytes", emulator::MAX_REQUEST_BYTES)),
        "{past}"
    );
    // At the limit the body is waited for; the half-closed connection
    // ends it early, which is an unreadable body, not a 413.
    let at = post(emulator::MAX_REQUEST_BYTES);
    assert!(at.starts_with("HTTP/1.1 400"), "{at}");
    rt.block_on(h.shutdown());
}

/// `live run` of `small`'s scenario against `ep.json`.
pub const SMALL_LIVE_RUN: [&str; 12] = [
    "live",
    "run",
    "--endpoints",
    "ep.json",
    "--workflows",
    "3",
    "--pdfs",
    "2",
    "--subqueries",
    "2",
    "--time-scale",
    "50",
];

#[test]
fn api_keys_never_reach_an_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Emulator in this process; the CLI runs against it.
    let s = small(PolicyKind::Full);
    let (rt, h) = background_emulator(&s);
    let mut file = emulator::endpoints_for(&s, h.addr);
    for tiers in file.providers.values_mut() {
        for t in tiers {
            t.api_key_env = Some("AGENTSCHED_TEST_KEY".into());
        }
    }
    std::fs::write(d.join("ep.json"), serde_json::to_string(&file).unwrap()).unwrap();
    let secret = "sk-test-5f0c1e9a7b3d";
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_agentsched"))
        .current_dir(d)
        .env("AGENTSCHED_TEST_KEY", secret)
        .args(SMALL_LIVE_RUN)
        .args(["--trace", "--out", "o"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    let mut checked = 0;
    for e in std::fs::read_dir(d.join("o")).unwrap() {
        let text = std::fs::read(e.unwrap().path()).unwrap();
        assert!(!String::from_utf8_lossy(&text).contains(secret));
        checked += 1;
    }
    assert!(
        checked >= 6,
        "summary.csv/json, workflows, tiers, trace, requests"
    );
    assert!(!String::from_utf8_lossy(&o.stdout).contains(secret));
    assert!(!String::from_utf8_lossy(&o.stderr).contains(secret));
    // A missing key variable is bad input naming the field, without a value.
    let o = agentsched_in(d, &["live", "run", "--endpoints", "ep.json", "--out", "o2"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    let msg = String::from_utf8_lossy(&o.stderr);
    assert!(
        msg.contains("api_key_env") && msg.contains("AGENTSCHED_TEST_KEY"),
        "{msg}"
    );
    rt.block_on(h.shutdown());
}

#[test]
fn ctrl_c_writes_every_output_marked_interrupted() {
    stopped_by_a_signal_writes_every_output("INT", 130);
}

/// SIGTERM (`scancel`, a Slurm time limit, `timeout`, systemd) stops a live
/// run as Ctrl-C does, with the shell's code for it.
#[test]
fn sigterm_writes_every_output_marked_interrupted() {
    stopped_by_a_signal_writes_every_output("TERM", 143);
}

fn stopped_by_a_signal_writes_every_output(signal: &str, code: i32) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut s = small(PolicyKind::Full);
    s.workload.workflows = 40;
    s.time_scale = 5.0; // long enough to be interrupted
    let (rt, h) = background_emulator(&s);
    let file = emulator::endpoints_for(&s, h.addr);
    std::fs::write(d.join("ep.json"), serde_json::to_string(&file).unwrap()).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_agentsched"))
        .current_dir(d)
        .args([
            "live",
            "run",
            "--endpoints",
            "ep.json",
            "--workflows",
            "40",
            "--pdfs",
            "2",
            "--subqueries",
            "2",
            "--time-scale",
            "5",
            "--out",
            "o",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    crate::util::send_signal(child.id(), signal);
    let o = child.wait_with_output().unwrap();
    rt.block_on(h.shutdown());
    assert_eq!(o.status.code(), Some(code), "{}", err(&o));
    let name = if signal == "INT" {
        "Ctrl-C (SIGINT)"
    } else {
        "SIGTERM"
    };
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&format!(
            "stopped by {name}: every output was written, the unfinished workflows marked interrupted"
        )),
        "{}",
        err(&o)
    );
    // Nothing half-written is left behind.
    let mut names: Vec<String> = std::fs::read_dir(d.join("o"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "requests.jsonl",
            "scenario.json",
            "summary.csv",
            "summary.json",
            "tiers.csv",
            "workflows.csv"
        ]
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("o/summary.json")).unwrap()).unwrap();
    assert_eq!(summary["interrupted"], true);
    let completed = summary["completed"].as_u64().unwrap();
    assert!(completed < 40, "interrupted before the end: {summary}");
    let workflows = std::fs::read_to_string(d.join("o/workflows.csv")).unwrap();
    assert!(
        workflows.lines().any(|l| l.contains(",interrupted,")),
        "{workflows}"
    );
    let requests = std::fs::read_to_string(d.join("o/requests.jsonl")).unwrap();
    assert_eq!(
        requests.lines().count() as u64,
        summary["attempts"].as_u64().unwrap(),
        "one line per attempt, cancelled ones included"
    );
    assert!(requests.lines().any(|l| l.contains("\"cancelled\":true")));
    // Part of a run: nothing for fidelity to compare.
    let f = agentsched_in(d, &["fidelity", "--live", "o"]);
    assert_eq!(f.status.code(), Some(2), "{}", err(&f));
    assert!(
        err(&f).contains(
            "--live o: the run was stopped by Ctrl-C or SIGTERM before its workflows finished"
        ),
        "{}",
        err(&f)
    );
}

/// `live run` reaches an `https://` endpoint whose authority
/// `SSL_CERT_FILE` names, and refuses it as `tls` (not `connect`) without
/// that file: nothing is sent to a server the trusted roots (Mozilla's
/// and the system's) do not vouch for.
#[test]
fn an_https_endpoint_is_trusted_through_ssl_cert_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = small(PolicyKind::DagEscalation);
    let (rt, h) = background_emulator(&s);
    let (port, ca_pem) = crate::tls_proxy::start(&rt, h.addr);
    std::fs::write(d.join("ca.pem"), ca_pem).unwrap();
    let mut file = emulator::endpoints_for(&s, h.addr);
    for tiers in file.providers.values_mut() {
        for t in tiers {
            t.base_url = format!("https://127.0.0.1:{port}/v1");
        }
    }
    std::fs::write(d.join("ep.json"), serde_json::to_string(&file).unwrap()).unwrap();
    let live_run = |out: &str, ca: Option<&str>| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_agentsched"));
        c.current_dir(d).env_remove("SSL_CERT_DIR");
        match ca {
            Some(f) => c.env("SSL_CERT_FILE", f),
            None => c.env_remove("SSL_CERT_FILE"),
        };
        let o = c
            .args(SMALL_LIVE_RUN)
            .args(["--out", out])
            .output()
            .unwrap();
        let log = std::fs::read_to_string(d.join(out).join("requests.jsonl")).unwrap();
        let lines: Vec<serde_json::Value> = log
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (o, lines)
    };
    let (o, lines) = live_run("trusted", Some("ca.pem"));
    assert!(o.status.success(), "{}", err(&o));
    let successes = lines.iter().filter(|l| l["outcome"] == "success").count();
    assert!(successes > 0, "{lines:?}");
    assert!(lines.iter().all(|l| l["error"] != "tls"), "{lines:?}");
    let (o, lines) = live_run("untrusted", None);
    assert!(!lines.is_empty());
    assert!(lines.iter().all(|l| l["error"] == "tls"), "{lines:?}");
    // No endpoint was reached: a setup error, saying how.
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    assert!(
        err(&o).contains("requests failed to open a TLS session"),
        "{}",
        err(&o)
    );
    rt.block_on(h.shutdown());
}

/// An endpoint that answers none of its requests (nothing listens at its
/// address) makes the run a setup error naming it, with every output
/// written; endpoints that answered are not named.
#[test]
fn an_endpoint_never_reached_is_a_setup_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = small(PolicyKind::Full);
    let (rt, h) = background_emulator(&s);
    let mut file = emulator::endpoints_for(&s, h.addr);
    // A loopback port nothing listens on any more.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dead_url = format!("http://{closed}/v1");
    file.providers.get_mut("embed_provider").unwrap()[0].base_url = dead_url.clone();
    std::fs::write(d.join("ep.json"), serde_json::to_string(&file).unwrap()).unwrap();
    let o = agentsched_in(
        d,
        &[&SMALL_LIVE_RUN[..], &["--quiet", "--out", "o"]].concat(),
    );
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    for f in [
        "summary.csv",
        "summary.json",
        "workflows.csv",
        "tiers.csv",
        "requests.jsonl",
    ] {
        assert!(d.join("o").join(f).is_file(), "{f} written");
    }
    // Every request to the dead tier failed to connect, and the message
    // counts them.
    let to_dead = crate::util::sent_to(&d.join("o"), "embed_provider", 0);
    assert!(!to_dead.is_empty());
    assert!(to_dead.iter().all(|r| r["error"] == "connect"));
    let msg = err(&o);
    assert!(
        msg.contains(&format!(
            "never reached embed_provider tier 0 ({dead_url}): all {} requests failed to connect",
            to_dead.len()
        )),
        "{msg}"
    );
    assert!(!msg.contains("llm_provider"), "{msg}");
    // summary.json says so, and `fidelity --live` refuses the run.
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("o/summary.json")).unwrap()).unwrap();
    let dead = summary["never_reached"].as_array().unwrap();
    assert_eq!(dead.len(), 1);
    assert!(msg.contains(dead[0].as_str().unwrap()), "{msg}");
    let o = agentsched_in(d, &["fidelity", "--live", "o"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains("--live o: the run never reached embed_provider tier 0"),
        "{}",
        err(&o)
    );
    rt.block_on(h.shutdown());
}

/// Endpoints behind an HTTP proxy, named by hosts no resolver knows, are
/// reached through the proxy that `HTTPS_PROXY` and `HTTP_PROXY` name: a
/// CONNECT tunnel with TLS to the endpoint inside it for `https://`,
/// forwarded requests for `http://`, each with the proxy's credentials,
/// which no output holds. Loopback endpoints are never proxied, and a
/// SOCKS proxy is refused before anything is sent.
#[test]
fn endpoints_behind_an_http_proxy_are_reached_through_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = small(PolicyKind::DagEscalation);
    let (rt, h) = background_emulator(&s);
    let (tls_port, ca_pem) = crate::tls_proxy::start_named(&rt, h.addr, "llm.agentsched.invalid");
    std::fs::write(d.join("ca.pem"), ca_pem).unwrap();
    let (proxy_port, seen) = crate::http_proxy::start(&rt);
    let loopback = emulator::endpoints_for(&s, h.addr);
    std::fs::write(
        d.join("loopback.json"),
        serde_json::to_string(&loopback).unwrap(),
    )
    .unwrap();
    let mut far = loopback.clone();
    for (name, tiers) in far.providers.iter_mut() {
        for t in tiers {
            t.base_url = if name == "llm_provider" {
                format!("https://llm.agentsched.invalid:{tls_port}/v1")
            } else {
                format!("http://embed.agentsched.invalid:{}/v1", h.addr.port())
            };
        }
    }
    std::fs::write(d.join("ep.json"), serde_json::to_string(&far).unwrap()).unwrap();
    let proxy = format!("http://tester:pa%20ss@127.0.0.1:{proxy_port}");
    let live_run = |endpoints: &str, https_proxy: &str, out: &str| {
        let mut args = SMALL_LIVE_RUN.to_vec();
        args[3] = endpoints;
        std::process::Command::new(env!("CARGO_BIN_EXE_agentsched"))
            .current_dir(d)
            .env("SSL_CERT_FILE", "ca.pem")
            .env_remove("SSL_CERT_DIR")
            .env("HTTP_PROXY", &proxy)
            .env("HTTPS_PROXY", https_proxy)
            .env_remove("ALL_PROXY")
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .args(&args)
            .args(["--quiet", "--out", out])
            .output()
            .unwrap()
    };
    let o = live_run("ep.json", &proxy, "far");
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let requests = std::fs::read_to_string(d.join("far/requests.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = requests
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for provider in ["llm_provider", "embed_provider"] {
        assert!(
            lines
                .iter()
                .any(|l| l["provider"] == provider && l["outcome"] == "success"),
            "{provider}: {requests}"
        );
    }
    assert!(
        lines
            .iter()
            .all(|l| l["error"] != "connect" && l["error"] != "tls"),
        "{requests}"
    );
    assert!(seen.tunnels() > 0 && seen.forwarded() > 0, "{seen:?}");
    // "tester:pa ss", as the URL's percent-encoding spells it.
    let basic = "Basic dGVzdGVyOnBhIHNz";
    assert!(
        seen.auth.lock().unwrap().iter().all(|a| a == basic),
        "{seen:?}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("far/summary.json")).unwrap())
            .unwrap();
    let listed = summary["endpoints"].as_array().unwrap();
    assert!(!listed.is_empty());
    for e in listed {
        assert_eq!(
            e["proxy"],
            format!("http://127.0.0.1:{proxy_port}"),
            "{summary}"
        );
    }
    for f in std::fs::read_dir(d.join("far")).unwrap() {
        let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
        for secret in ["pa ss", "pa%20ss", "dGVzdGVyOnBhIHNz", "tester"] {
            assert!(!text.contains(secret), "{secret} in an output");
        }
    }
    // Loopback endpoints go straight to the server, proxy or not.
    let before = (seen.tunnels(), seen.forwarded());
    let o = live_run("loopback.json", &proxy, "near");
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!((seen.tunnels(), seen.forwarded()), before);
    let summary = std::fs::read_to_string(d.join("near/summary.json")).unwrap();
    assert!(!summary.contains("\"proxy\""), "{summary}");
    // A proxy this client cannot use is refused before anything is sent.
    let o = live_run("ep.json", "socks5://127.0.0.1:1080", "socks");
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains(&format!(
            "HTTPS_PROXY (or ALL_PROXY) names a socks5:// proxy for https://llm.agentsched.invalid:{tls_port}/v1"
        )),
        "{}",
        err(&o)
    );
    assert!(!d.join("socks/requests.jsonl").exists());
    assert_eq!((seen.tunnels(), seen.forwarded()), before);
    rt.block_on(h.shutdown());
}

/// An Azure OpenAI-style endpoint: the key goes in `api_key_header`
/// (`api-key`) as it is, not as a bearer token, and the base URL's query
/// (`?api-version=...`) ends every request's URL. What the server receives
/// is read at a forwarding proxy in front of it.
#[test]
fn a_key_header_and_a_base_url_query_reach_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = small(PolicyKind::DagEscalation);
    let (rt, h) = background_emulator(&s);
    let (proxy_port, seen) = crate::http_proxy::start(&rt);
    let mut file = emulator::endpoints_for(&s, h.addr);
    for tiers in file.providers.values_mut() {
        for t in tiers {
            t.base_url = format!(
                "http://azure.agentsched.invalid:{}/openai/deployments/{}?api-version=2024-10-21",
                h.addr.port(),
                t.model
            );
            t.api_key_env = Some("AGENTSCHED_TEST_KEY".into());
            t.api_key_header = Some("api-key".into());
        }
    }
    std::fs::write(d.join("ep.json"), serde_json::to_string(&file).unwrap()).unwrap();
    let secret = "azure-test-key-7c41";
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_agentsched"))
        .current_dir(d)
        .env("AGENTSCHED_TEST_KEY", secret)
        .env("HTTP_PROXY", format!("http://127.0.0.1:{proxy_port}"))
        .env_remove("ALL_PROXY")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .args(SMALL_LIVE_RUN)
        .args(["--quiet", "--out", "o"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let heads = seen.heads.lock().unwrap().clone();
    assert!(!heads.is_empty());
    for head in &heads {
        let line = head.lines().next().unwrap();
        let (prefix, rest) = line.split_once("/openai/deployments/").unwrap();
        assert_eq!(
            prefix,
            format!("POST http://azure.agentsched.invalid:{}", h.addr.port())
        );
        assert!(
            rest.ends_with("/chat/completions?api-version=2024-10-21 HTTP/1.1")
                || rest.ends_with("/embeddings?api-version=2024-10-21 HTTP/1.1"),
            "{line}"
        );
        let headers = head.to_ascii_lowercase();
        assert!(
            headers.contains(&format!("\r\napi-key: {secret}\r\n")),
            "{head}"
        );
        assert!(!headers.contains("\r\nauthorization:"), "{head}");
    }
    let requests = std::fs::read_to_string(d.join("o/requests.jsonl")).unwrap();
    assert!(requests.contains("\"outcome\":\"success\""), "{requests}");
    for f in std::fs::read_dir(d.join("o")).unwrap() {
        let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
        assert!(!text.contains(secret), "the key in an output");
    }
    rt.block_on(h.shutdown());
}

/// An endpoint that refuses every request it answers (a key it does not
/// take, a path it does not serve) makes the run a setup error naming it,
/// its status and what to check; `summary.json` lists it under
/// `never_served`, and `fidelity --live` refuses the run.
#[test]
fn an_endpoint_refusing_every_request_is_a_setup_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = small(PolicyKind::Full);
    let (rt, h) = background_emulator(&s);
    for (status, check) in [
        (
            401,
            "HTTP 401 (Unauthorized) (the server said: Refused: status 401.); the key was refused: \
             check the variable api_key_env names",
        ),
        (
            404,
            "HTTP 404 (Not Found) (the server said: Refused: status 404.); nothing is served \
             there: requests go to ",
        ),
    ] {
        let mut file = emulator::endpoints_for(&s, h.addr);
        let refusing = crate::util::refusing_endpoint(status);
        file.providers.get_mut("llm_provider").unwrap()[0].base_url = refusing.clone();
        std::fs::write(d.join("ep.json"), serde_json::to_string(&file).unwrap()).unwrap();
        let out = format!("o{status}");
        let o = agentsched_in(
            d,
            &[&SMALL_LIVE_RUN[..], &["--quiet", "--out", &out]].concat(),
        );
        assert_eq!(o.status.code(), Some(3), "{}", err(&o));
        let refused = crate::util::sent_to(&d.join(&out), "llm_provider", 0);
        assert!(!refused.is_empty());
        assert!(refused.iter().all(|r| r["status"] == status), "{refused:?}");
        // Each record keeps what the server said, whitespace collapsed.
        let said = format!("Refused: status {status}.");
        assert!(
            refused.iter().all(|r| r["error_message"] == said.as_str()),
            "{refused:?}"
        );
        let msg = err(&o);
        let answers = match refused.len() {
            1 => "its one answer was".to_string(),
            n => format!("all {n} answers were"),
        };
        assert!(
            msg.contains(&format!(
                "llm_provider tier 0 ({refusing}) refused every request: {answers} {check}"
            )),
            "{msg}"
        );
        // The tiers that served are not named.
        assert!(!msg.contains("tier 1"), "{msg}");
        let summary: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(d.join(&out).join("summary.json")).unwrap(),
        )
        .unwrap();
        let listed = summary["never_served"].as_array().unwrap();
        assert_eq!(listed.len(), 1, "{summary}");
        assert!(msg.contains(listed[0].as_str().unwrap()), "{msg}");
        let o = agentsched_in(d, &["fidelity", "--live", &out]);
        assert_eq!(o.status.code(), Some(2), "{}", err(&o));
        assert!(
            err(&o).contains("refused every request")
                && err(&o).contains("its numbers measure refusals, not service"),
            "{}",
            err(&o)
        );
    }
    rt.block_on(h.shutdown());
}
