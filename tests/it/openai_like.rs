//! Live runs against a loopback server that answers as today's providers
//! do: a prefix cache reported in `usage.prompt_tokens_details`, a reasoning
//! model's thinking streamed before its answer, and `max_tokens` refused
//! the way OpenAI's reasoning models refuse it; and the caching audit
//! against a prefix cache.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::live_loopback::SMALL_LIVE_RUN;
use crate::util::{agentsched_in, err};

/// How the server behaves.
#[derive(Clone, Copy, Default)]
struct Options {
    /// Stream a thought after the first wait, the answer after the second.
    reasoning: Option<(Duration, Duration)>,
    /// Answer a chat request that sets `max_tokens` with OpenAI's 400.
    refuse_max_tokens: bool,
    /// Prefill time per prompt token not served from the cache.
    prefill_per_token: Option<Duration>,
    /// Stop at the end-of-sequence token even when asked to ignore it (a
    /// server that does not know `ignore_eos`).
    eos_always: bool,
    /// Answer 5 tokens past `max_tokens` (a server that ignores it).
    overlong: bool,
    /// Report no usage: no usage chunk in a stream (a server that ignores
    /// `stream_options`), none with an embedding.
    no_usage: bool,
}

/// vLLM's cache block, in tokens (words here): a prompt is served from the
/// cache for the whole blocks it shares with an earlier one.
const BLOCK: usize = 16;

struct Server {
    url: String,
    /// Every request body, as (path, JSON).
    bodies: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Server {
    fn start(opts: Options) -> Server {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let seen = bodies.clone();
        let prompts: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (seen, prompts) = (seen.clone(), prompts.clone());
                std::thread::spawn(move || serve(conn, opts, &seen, &prompts));
            }
        });
        Server { url, bodies }
    }

    /// The body of every chat request, in arrival order.
    fn chat_bodies(&self) -> Vec<Value> {
        let bodies = self.bodies.lock().unwrap();
        bodies
            .iter()
            .filter(|(path, _)| path.ends_with("/chat/completions"))
            .map(|(_, b)| b.clone())
            .collect()
    }
}

/// One request a connection: reads it, answers, closes.
fn serve(
    conn: std::net::TcpStream,
    opts: Options,
    seen: &Mutex<Vec<(String, Value)>>,
    prompts: &Mutex<Vec<Vec<String>>>,
) {
    let Some((path, body)) = crate::util::read_request(&conn) else {
        return;
    };
    let Ok(doc) = serde_json::from_slice::<Value>(&body) else {
        return;
    };
    seen.lock().unwrap().push((path.clone(), doc.clone()));
    let mut out = &conn;
    if path.ends_with("/embeddings") {
        let words = doc["input"]
            .as_str()
            .unwrap_or("")
            .split_whitespace()
            .count();
        let usage = match opts.no_usage {
            true => String::new(),
            false => format!(r#","usage":{{"prompt_tokens":{words},"total_tokens":{words}}}"#),
        };
        let answer = format!(
            r#"{{"object":"list","data":[{{"object":"embedding","index":0,"embedding":[0.5]}}]{usage}}}"#
        );
        let _ = write!(
            out,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{answer}",
            answer.len()
        );
        return;
    }
    if opts.refuse_max_tokens && doc.get("max_tokens").is_some() {
        let answer = r#"{"error":{"message":"Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.","type":"invalid_request_error","param":"max_tokens","code":"unsupported_parameter"}}"#;
        let _ = write!(
            out,
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{answer}",
            answer.len()
        );
        return;
    }
    let words: Vec<String> = doc["messages"][0]["content"]
        .as_str()
        .unwrap_or("")
        .split_whitespace()
        .map(String::from)
        .collect();
    let cached = {
        let mut earlier = prompts.lock().unwrap();
        let shared = earlier
            .iter()
            .map(|p| p.iter().zip(&words).take_while(|(a, b)| a == b).count())
            .max()
            .unwrap_or(0);
        earlier.push(words.clone());
        // Whole blocks, and never the last token (it is computed anew).
        (shared.min(words.len().saturating_sub(1)) / BLOCK) * BLOCK
    };
    if let Some(per_token) = opts.prefill_per_token {
        std::thread::sleep(per_token * (words.len() - cached) as u32);
    }
    let _ = write!(
        out,
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
    );
    let _ = out.flush();
    if let Some((think, answer)) = opts.reasoning {
        std::thread::sleep(think);
        let _ = write!(
            out,
            "data: {{\"choices\":[{{\"delta\":{{\"content\":null,\"reasoning_content\":\"Hmm\"}}}}]}}\n\n"
        );
        let _ = out.flush();
        std::thread::sleep(answer);
    }
    // A model's answer ends at its end-of-sequence token, three tokens in,
    // unless told to ignore it (vLLM's and llama.cpp's `ignore_eos`).
    let asked = doc["max_tokens"].as_u64().unwrap_or(3);
    let completion = match doc["ignore_eos"] == true && !opts.eos_always {
        _ if opts.overlong => asked + 5,
        true => asked,
        false => 3,
    };
    let usage = match opts.no_usage {
        true => String::new(),
        false => format!(
            "data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":{},\"completion_tokens\":{completion},\
             \"prompt_tokens_details\":{{\"cached_tokens\":{cached}}}}}}}\n\n",
            words.len()
        ),
    };
    let _ = write!(
        out,
        "data: {{\"choices\":[{{\"delta\":{{\"content\":\"ok\"}}}}]}}\n\n\
         data: {{\"choices\":[{{\"delta\":{{}},\"finish_reason\":\"stop\"}}]}}\n\n\
         {usage}data: [DONE]\n\n"
    );
}

/// Every tier of the default scenario at `url`; the llm tiers with
/// `extra` fields too.
fn write_endpoints(dir: &Path, url: &str, extra: Value) {
    let tier = |extra: &Value| {
        let mut t = serde_json::json!({"base_url": url, "model": "m"});
        for (k, v) in extra.as_object().unwrap() {
            t[k] = v.clone();
        }
        t
    };
    let plain = serde_json::json!({});
    let file = serde_json::json!({"providers": {
        "llm_provider": [tier(&extra), tier(&extra)],
        "embed_provider": [tier(&plain), tier(&plain)],
    }});
    std::fs::write(dir.join("ep.json"), file.to_string()).unwrap();
}

/// A small live run of the default scenario under `fifo_cheapest` (no
/// hedges or escalations: each call is sent once).
fn live_run(dir: &Path, out: &str) -> std::process::Output {
    let extra = ["--policy", "fifo_cheapest", "--quiet", "--out", out];
    agentsched_in(dir, &[&SMALL_LIVE_RUN[..], &extra].concat())
}

fn records(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out.join("requests.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn summary(out: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap()
}

/// A raw chat request; returns the answer's text.
fn post_chat(url: &str, prompt: &str) -> String {
    let addr = url.trim_start_matches("http://").trim_end_matches("/v1");
    let body = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": prompt}],
        "max_tokens": 3, "stream": true})
    .to_string();
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    write!(
        c,
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn no_prompt_is_served_from_a_prefix_cache_within_a_run_or_across_runs() {
    let server = Server::start(Options::default());
    // The server's cache works: a prompt sent again is served from it.
    let prompt = "tok ".repeat(100);
    assert!(post_chat(&server.url, &prompt).contains(r#""cached_tokens":0"#));
    assert!(post_chat(&server.url, &prompt).contains(r#""cached_tokens":96"#));
    let sent_before = server.chat_bodies().len();

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_endpoints(d, &server.url, serde_json::json!({}));
    for out in ["first", "second"] {
        let o = live_run(d, out);
        assert_eq!(o.status.code(), Some(0), "{}", err(&o));
        let chat: Vec<Value> = records(&d.join(out))
            .into_iter()
            .filter(|r| r["provider"] == "llm_provider")
            .collect();
        assert!(chat.len() >= 10, "{} chat requests", chat.len());
        let mut prompt_tokens = 0;
        for r in &chat {
            assert_eq!(r["outcome"], "success", "{r}");
            // Prompt sizes are the calls' (the head costs a few words).
            let asked = r["input_tokens"].as_u64().unwrap();
            let got = r["usage_prompt_tokens"].as_u64().unwrap();
            assert!(
                got.abs_diff(asked) <= 8,
                "{got} words for {asked} tokens: {r}"
            );
            assert_eq!(r["usage_cached_prompt_tokens"], 0, "{r}");
            prompt_tokens += got;
        }
        let s = summary(&d.join(out));
        // The embedding server reports no cache: its prompt tokens count,
        // its cached ones are unknown rather than 0.
        let embedded: u64 = records(&d.join(out))
            .iter()
            .filter(|r| r["provider"] == "embed_provider")
            .map(|r| {
                assert!(r["usage_cached_prompt_tokens"].is_null(), "{r}");
                r["usage_prompt_tokens"].as_u64().unwrap()
            })
            .sum();
        assert!(embedded > 0);
        assert_eq!(s["usage_prompt_tokens"], prompt_tokens + embedded, "{s}");
        assert_eq!(s["usage_cached_prompt_tokens"], 0, "{s}");
        assert!(
            s["live_columns"]
                .as_array()
                .unwrap()
                .contains(&"usage_cached_prompt_tokens".into())
        );
    }
    // Every prompt sent is distinct from its start, and each run's carry
    // their own run number.
    let sent = &server.chat_bodies()[sent_before..];
    let heads: Vec<Vec<&str>> = sent
        .iter()
        .map(|b| {
            b["messages"][0]["content"]
                .as_str()
                .unwrap()
                .split_whitespace()
                .take(4)
                .collect()
        })
        .collect();
    assert_eq!(
        heads.iter().collect::<HashSet<_>>().len(),
        heads.len(),
        "two calls sent the same prompt head"
    );
    let runs: HashSet<&str> = heads.iter().map(|h| h[1]).collect();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(heads.iter().all(|h| h[0] == "run" && h[2] == "call"));
}

/// Answers that end before the tokens asked for are warned of, naming the
/// endpoint and the remedy; an endpoint's `extra_body` goes into every
/// request (here `ignore_eos`, after which answers are whole and nothing is
/// said), is recorded with the endpoints, and may not replace a field the
/// executor sets.
#[test]
fn short_answers_are_warned_of_and_extra_body_asks_for_whole_ones() {
    let server = Server::start(Options::default());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_endpoints(d, &server.url, serde_json::json!({}));
    let o = live_run(d, "short");
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let chat: Vec<Value> = records(&d.join("short"))
        .into_iter()
        .filter(|r| r["provider"] == "llm_provider" && r["outcome"] == "success")
        .collect();
    assert!(chat.len() >= 10);
    for t in 0..2 {
        let on_tier: Vec<&Value> = chat.iter().filter(|r| r["tier"] == t).collect();
        let warning = format!(
            "llm_provider tier {t} ({}): {n} of {n} answers stopped short of the tokens asked for ({} of {} tokens, ",
            server.url,
            3 * on_tier.len(),
            on_tier
                .iter()
                .map(|r| r["output_tokens"].as_u64().unwrap())
                .sum::<u64>(),
            n = on_tier.len(),
        );
        let said = err(&o).contains(&format!("warning: {warning}"));
        assert_eq!(said, !on_tier.is_empty(), "tier {t}: {}", err(&o));
    }
    assert!(err(&o).contains(r#""extra_body": {"ignore_eos": true} in its endpoints entry"#));
    assert!(!err(&o).contains("embed_provider"), "{}", err(&o));
    let short = summary(&d.join("short"));
    let listed = short["short_answers"].as_array().unwrap();
    assert!(
        !listed.is_empty()
            && listed
                .iter()
                .all(|w| w.as_str().unwrap().starts_with("llm_provider tier "))
    );
    let f = agentsched_in(d, &["fidelity", "--live", "short"]);
    assert!(matches!(f.status.code(), Some(0 | 1)), "{}", err(&f));
    assert!(
        err(&f).contains("warning: --live short: llm_provider tier "),
        "{}",
        err(&f)
    );
    let c = agentsched_in(d, &["calibrate", "--live", "short", "--out", "cal.json"]);
    assert_eq!(c.status.code(), Some(0), "{}", err(&c));
    assert!(
        err(&c).contains("warning: --live short: llm_provider tier ")
            && err(&c).contains("answers stopped short of the tokens asked for"),
        "{}",
        err(&c)
    );

    let sent_before = server.chat_bodies().len();
    write_endpoints(
        d,
        &server.url,
        serde_json::json!({"extra_body": {"ignore_eos": true, "top_k": 1}}),
    );
    let o = live_run(d, "whole");
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(!err(&o).contains("warning"), "{}", err(&o));
    let bodies = &server.chat_bodies()[sent_before..];
    assert!(bodies.len() >= 10);
    for b in bodies {
        assert_eq!(b["ignore_eos"], true, "{b}");
        assert_eq!(b["top_k"], 1, "{b}");
        assert_eq!(b["stream"], true, "{b}");
        assert!(b["max_tokens"].as_u64().unwrap() >= 1, "{b}");
    }
    for r in records(&d.join("whole"))
        .iter()
        .filter(|r| r["provider"] == "llm_provider")
    {
        assert_eq!(r["usage_completion_tokens"], r["output_tokens"], "{r}");
    }
    let whole = summary(&d.join("whole"));
    assert!(whole.get("short_answers").is_none(), "{whole}");
    for e in whole["endpoints"].as_array().unwrap() {
        let want = match e["provider"] == "llm_provider" {
            true => serde_json::json!({"ignore_eos": true, "top_k": 1}),
            false => Value::Null,
        };
        assert_eq!(e["extra_body"], want, "{e}");
    }

    // A field the executor sets is refused before anything is sent.
    write_endpoints(
        d,
        &server.url,
        serde_json::json!({"extra_body": {"stream": false}}),
    );
    let sent_before = server.chat_bodies().len();
    let o = live_run(d, "refused");
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains(
            "providers.llm_provider.0.extra_body.stream: the executor sets this field itself"
        ),
        "{}",
        err(&o)
    );
    assert_eq!(server.chat_bodies().len(), sent_before);

    // A server that does not know `ignore_eos` is named as such.
    let deaf = Server::start(Options {
        eos_always: true,
        ..Options::default()
    });
    write_endpoints(
        d,
        &deaf.url,
        serde_json::json!({"extra_body": {"ignore_eos": true}}),
    );
    let o = live_run(d, "deaf");
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(
        err(&o)
            .contains("the server was sent ignore_eos and stopped anyway: it does not support it"),
        "{}",
        err(&o)
    );

    // A server that ignores `max_tokens` runs long, and is named too.
    let deaf = Server::start(Options {
        overlong: true,
        ..Options::default()
    });
    write_endpoints(d, &deaf.url, serde_json::json!({}));
    let o = live_run(d, "long");
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(!err(&o).contains("stopped short"), "{}", err(&o));
    let long = summary(&d.join("long"));
    let listed = long["long_answers"].as_array().unwrap();
    assert!(!listed.is_empty());
    for w in listed {
        let w = w.as_str().unwrap();
        assert!(w.starts_with("llm_provider tier "), "{w}");
        assert!(w.contains("answers ran past the tokens asked for"), "{w}");
        assert!(
            w.contains("the server does not honour the output size it is sent"),
            "{w}"
        );
        assert!(err(&o).contains(&format!("warning: {w}")), "{}", err(&o));
    }
    assert!(long.get("short_answers").is_none(), "{long}");
}

/// Answers that report no usage are warned of: their costs are the
/// scenario's estimates, and a chat answer's length is unknown.
#[test]
fn answers_without_usage_are_warned_of() {
    let server = Server::start(Options {
        no_usage: true,
        ..Options::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_endpoints(d, &server.url, serde_json::json!({}));
    let o = live_run(d, "unmetered");
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let recs = records(&d.join("unmetered"));
    let s = summary(&d.join("unmetered"));
    let listed: Vec<&str> = s["no_usage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    let mut warned = 0;
    for (provider, tiers) in [("llm_provider", 0..2), ("embed_provider", 0..2)] {
        for t in tiers {
            let answered: Vec<&Value> = recs
                .iter()
                .filter(|r| r["provider"] == provider && r["tier"] == t)
                .filter(|r| r["outcome"] == "success")
                .collect();
            assert!(answered.iter().all(|r| r["usage_prompt_tokens"].is_null()));
            let head = format!(
                "{provider} tier {t} ({}): {n} of {n} answers reported no token usage, so their costs are the scenario's ",
                server.url,
                n = answered.len()
            );
            let w = listed.iter().find(|w| w.starts_with(&head));
            assert_eq!(w.is_some(), !answered.is_empty(), "{head}: {listed:?}");
            let Some(w) = w else { continue };
            warned += 1;
            assert!(err(&o).contains(&format!("warning: {w}")), "{}", err(&o));
            let chat = provider == "llm_provider";
            assert_eq!(w.contains("their lengths are unknown"), chat, "{w}");
            assert_eq!(w.contains("\"include_usage\": true"), chat, "{w}");
            assert_eq!(w.contains("input tokens priced"), !chat, "{w}");
        }
    }
    assert_eq!(warned, listed.len(), "{listed:?}");
    assert!(listed.iter().any(|w| w.starts_with("llm_provider")));
    assert!(listed.iter().any(|w| w.starts_with("embed_provider")));
    // No length was reported, so none is said to be short.
    assert!(s.get("short_answers").is_none(), "{s}");
    // fidelity repeats them.
    let f = agentsched_in(d, &["fidelity", "--live", "unmetered"]);
    assert!(matches!(f.status.code(), Some(0 | 1)), "{}", err(&f));
    assert!(
        err(&f).contains("warning: --live unmetered: llm_provider tier ")
            && err(&f).contains("answers reported no token usage"),
        "{}",
        err(&f)
    );
}

#[test]
fn a_reasoning_model_takes_max_completion_tokens_and_thinks_before_its_first_answer_token() {
    let (think, answer) = (Duration::from_millis(30), Duration::from_millis(120));
    let server = Server::start(Options {
        reasoning: Some((think, answer)),
        refuse_max_tokens: true,
        ..Options::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // As OpenAI's o-series and gpt-5 answer `max_tokens`: every request
    // refused, a setup error that says what to set.
    write_endpoints(d, &server.url, serde_json::json!({}));
    let o = live_run(d, "refused");
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    let msg = err(&o);
    assert!(
        msg.contains("refused every request")
            && msg.contains("HTTP 400 (Bad Request)")
            && msg.contains(r#""max_tokens_param": "max_completion_tokens""#),
        "{msg}"
    );
    let refused = server.chat_bodies().len();
    assert!(refused > 0);

    write_endpoints(
        d,
        &server.url,
        serde_json::json!({"max_tokens_param": "max_completion_tokens"}),
    );
    let o = live_run(d, "served");
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    for b in &server.chat_bodies()[refused..] {
        assert!(b.get("max_tokens").is_none(), "{b}");
        assert!(b["max_completion_tokens"].as_u64().unwrap() >= 1, "{b}");
    }
    // The first token is the first thought, not the answer that came
    // `answer` later.
    let answered: Vec<Value> = records(&d.join("served"))
        .into_iter()
        .filter(|r| r["provider"] == "llm_provider" && r["outcome"] == "success")
        .collect();
    assert!(answered.len() >= 5, "{} answered", answered.len());
    for r in &answered {
        let us = |k: &str| r[k].as_u64().unwrap();
        assert!(
            us("first_token_us") >= us("sent_us") + think.as_micros() as u64,
            "{r}"
        );
        assert!(
            us("done_us") >= us("first_token_us") + answer.as_micros() as u64 * 3 / 4,
            "{r}"
        );
    }
    let s = summary(&d.join("served"));
    // 30 ms of real time is 1.5 s of scenario time at --time-scale 50.
    assert!(s["ttft_p50_ms"].as_f64().unwrap() >= 1500.0, "{s}");
}

#[test]
fn the_caching_audit_names_a_prefix_cache_it_is_told_of() {
    // Prefill 1 ms a token not cached: a 200-token prompt (199 words)
    // repeated is served from the cache for 192 of them, and answered far
    // sooner.
    let server = Server::start(Options {
        prefill_per_token: Some(Duration::from_millis(1)),
        ..Options::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_endpoints(d, &server.url, serde_json::json!({}));
    let o = agentsched_in(
        d,
        &[
            "audit",
            "caching",
            "--endpoints",
            "ep.json",
            "--out",
            "audit",
            "--reference-requests",
            "24",
            "--audit-requests",
            "24",
            "--concurrency",
            "8",
            "--input-tokens",
            "200",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    let r: Value = serde_json::from_str(
        &std::fs::read_to_string(d.join("audit/audit_output_caching_test.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(r["passed"], false);
    assert_eq!(r["reference"]["usage_cached_prompt_tokens"], 0, "{r}");
    let (prompt, cached) = (
        r["audit"]["usage_prompt_tokens"].as_u64().unwrap(),
        r["audit"]["usage_cached_prompt_tokens"].as_u64().unwrap(),
    );
    // Each of the 199 words but the last, in whole blocks of 16: 192. The
    // first repeat is cached too, as the reference phase sent it.
    assert_eq!(cached, 24 * 192, "{r}");
    let share = (100.0 * cached as f64 / prompt as f64).round();
    let reason = r["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!(
            "the endpoint reported {share}% of the audit phase's prompt tokens served from its \
             prompt cache (reference phase: 0%): a prefix cache skips"
        )),
        "{reason}"
    );
    let lines =
        std::fs::read_to_string(d.join("audit/audit/output_caching/requests.jsonl")).unwrap();
    for l in lines.lines() {
        let l: Value = serde_json::from_str(l).unwrap();
        assert_eq!(l["usage_cached_prompt_tokens"], 192, "{l}");
    }
}

#[test]
fn a_shared_system_prompt_is_served_from_the_providers_cache_and_billed_as_cached() {
    let server = Server::start(Options::default());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_endpoints(d, &server.url, serde_json::json!({}));
    // ExtractEvidence calls (1,500 prompt tokens) share a 1,200-token
    // system prompt; both llm tiers price prompt tokens at $10 a million,
    // and say they keep a prefix cache (so the summary counts its tokens).
    // The server reports no cache writes, as OpenAI-compatible servers do
    // not: with a write price the run reads them off the scenario's cache.
    let run_priced = |out: &str, cached_price: &str, write_price: Option<&str>| {
        let mut args: Vec<String> = [
            &SMALL_LIVE_RUN[..],
            &["--policy", "fifo_cheapest", "--quiet", "--out", out],
            &[
                "--set",
                "node_types.ExtractEvidence.shared_prompt_tokens=1200",
            ],
        ]
        .concat()
        .iter()
        .map(|a| a.to_string())
        .collect();
        for t in 0..2 {
            let tier = format!("providers.llm_provider.tiers.{t}");
            for set in [
                format!("{tier}.price_per_mtok_in=10"),
                format!("{tier}.price_per_mtok_cached_in={cached_price}"),
                format!("{tier}.prefix_cache={{}}"),
            ] {
                args.extend(["--set".to_string(), set]);
            }
            if let Some(w) = write_price {
                let set = format!("{tier}.price_per_mtok_cache_write={w}");
                args.extend(["--set".to_string(), set]);
            }
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = agentsched_in(d, &args);
        assert_eq!(o.status.code(), Some(0), "{}", err(&o));
        (records(&d.join(out)), summary(&d.join(out)))
    };
    let run = |out: &str, cached_price: &str| run_priced(out, cached_price, None);
    let (full, full_summary) = run("full", "10");
    let (discounted, discounted_summary) = run("discounted", "1");
    let (premium, premium_summary) = run_priced("premium", "1", Some("12.5"));

    let cached = |r: &Value| r["usage_cached_prompt_tokens"].as_u64().unwrap_or(0);
    for recs in [&full, &discounted, &premium] {
        let extract: Vec<&Value> = recs
            .iter()
            .filter(|r| r["node_type"] == "ExtractEvidence")
            .collect();
        assert!(
            extract.len() >= 8,
            "{} ExtractEvidence calls",
            extract.len()
        );
        // The first to arrive wrote the shared prompt (1,196 words, then
        // "call"); every later one is served its whole 16-word blocks.
        let misses = extract.iter().filter(|r| cached(r) == 0).count();
        assert_eq!(misses, 1, "{extract:?}");
        for r in extract.iter().filter(|r| cached(r) != 0) {
            assert_eq!(cached(r), 1184, "{r}");
        }
        // Other calls share nothing with each other.
        assert!(
            recs.iter()
                .filter(|r| r["provider"] == "llm_provider" && r["node_type"] != "ExtractEvidence")
                .all(|r| cached(r) == 0)
        );
    }
    let total = |recs: &[Value]| recs.iter().map(cached).sum::<u64>();
    assert_eq!(total(&full), total(&discounted));
    // The one miss wrote the scenario's 1,200 shared tokens (its default
    // cache serves all of them), with or without a write price.
    assert_eq!(premium_summary["cache_write_tokens"], 1200);
    assert_eq!(full_summary["cache_write_tokens"], 1200);
    assert_eq!(full_summary["cached_input_tokens"], total(&full));
    assert_eq!(full_summary["usage_cached_prompt_tokens"], total(&full));
    // Each run's cost is its calls' at these prices (the runs' calls may
    // go to other tiers: fifo_cheapest spills by live timing).
    for ((recs, summary), (cached_price, write_price)) in [
        (&full, &full_summary),
        (&discounted, &discounted_summary),
        (&premium, &premium_summary),
    ]
    .into_iter()
    .zip([(10e-6, 10e-6), (1e-6, 10e-6), (1e-6, 12.5e-6)])
    {
        let expected: f64 = recs
            .iter()
            .map(|r| {
                let tier = r["tier"].as_u64().unwrap() as usize;
                if r["provider"] == "embed_provider" {
                    return [0.0001, 0.0005][tier];
                }
                let multiplier = [1.0, 0.2][r["model_index"].as_u64().unwrap() as usize];
                let prompt = r["usage_prompt_tokens"].as_u64().unwrap() as f64;
                let hit = cached(r) as f64;
                let wrote = if r["node_type"] == "ExtractEvidence" && hit == 0.0 {
                    1200.0
                } else {
                    0.0
                };
                ([0.01, 0.05][tier]
                    + (prompt - hit - wrote) * 10e-6
                    + hit * cached_price
                    + wrote * write_price)
                    * multiplier
            })
            .sum();
        let cost = summary["cost_total"].as_f64().unwrap();
        assert!(
            (cost - expected).abs() < 1e-9 * recs.len() as f64,
            "cost ${cost}, priced from the records ${expected}"
        );
    }
}
