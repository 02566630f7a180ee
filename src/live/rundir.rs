//! A live run into an output directory: the files `simulate` writes (with
//! the live metrics), `requests.jsonl` and `scenario.json`. Shared by
//! `live run` and live sweeps.

use std::path::Path;

use crate::error::Result;
use crate::live::{self, LiveConfig, Reach, RequestLog};
use crate::output::{self, Durability, FileObserver};
use crate::scenario::Scenario;

/// A finished live run and its workflows file.
#[derive(Debug)]
pub struct LiveDone {
    /// The run.
    pub outcome: live::LiveOutcome,
    workflows_sha: [u8; 20],
}

/// Runs `s` live with `transport`, streaming workflows.csv, trace.json and
/// requests.jsonl into `out`.
pub async fn run_to_dir<T: live::Transport>(
    s: &Scenario,
    out: &Path,
    trace: bool,
    transport: T,
    cfg: LiveConfig,
    stop: impl std::future::Future<Output = ()>,
) -> Result<LiveDone> {
    let mut obs = FileObserver::create(out, trace, s, Durability::Atomic)?;
    let log = RequestLog::create(&out.join("requests.jsonl"))?;
    let outcome = live::run(s, &mut obs, transport, cfg, Some(log), stop).await?;
    let workflows_sha = obs.finish()?;
    Ok(LiveDone {
        outcome,
        workflows_sha,
    })
}

/// Writes summary.csv/json and tiers.csv of a live run; returns the digest.
pub fn write_outputs(
    s: &Scenario,
    out: &Path,
    done: &LiveDone,
    mut meta: serde_json::Map<String, serde_json::Value>,
) -> Result<String> {
    let mut metrics = done.outcome.metrics.clone();
    meta.insert("scenario".into(), s.name.clone().into());
    meta.insert("seed".into(), s.seed.into());
    meta.insert("time_scale".into(), output::json_f64(s.time_scale));
    meta.insert("interrupted".into(), done.outcome.interrupted.into());
    meta.insert("requests_logged".into(), done.outcome.request_lines.into());
    let endpoints = meta.get("endpoints").cloned().unwrap_or_default();
    let unreached = unreached_endpoints(s, done, &endpoints);
    if !unreached.is_empty() {
        // Read back by `fidelity --live`, which refuses such a run.
        meta.insert("never_reached".into(), unreached.into());
    }
    for (key, warnings) in measurement_warnings(s, done, &endpoints) {
        if !warnings.is_empty() {
            // Read back by `fidelity --live` and `calibrate`, which warn,
            // and by `report`, which lists them.
            meta.insert(key.into(), warnings.into());
        }
    }
    let refusing = refusing_endpoints(s, done, &endpoints);
    if !refusing.is_empty() {
        // Read back by `fidelity --live`, which refuses such a run.
        meta.insert("never_served".into(), refusing.into());
    }
    meta.insert("version".into(), env!("CARGO_PKG_VERSION").into());
    output::atomic_write(
        &out.join(crate::recorded::SCENARIO_FILE),
        s.to_pretty_json().as_bytes(),
    )?;
    let digest = output::write_run_files(
        out,
        &done.outcome.result,
        &done.workflows_sha,
        &meta,
        s.policy.name(),
        Durability::Atomic,
        &metrics.columns(),
    )?;
    output::sync_dir(out);
    Ok(digest)
}

/// `summary.json`'s and `meta.json`'s `endpoints`: each (provider, tier)'s
/// URL and models, never its key.
pub fn endpoints_json<E: std::borrow::Borrow<crate::live::ResolvedEndpoint>>(
    s: &Scenario,
    eps: &[Vec<E>],
) -> serde_json::Value {
    let proxies = crate::live::proxy::Proxies::from_env();
    let proxies = &proxies;
    eps.iter()
        .zip(s.providers.keys())
        .flat_map(|(tiers, p)| {
            tiers.iter().enumerate().map(move |(k, e)| {
                let e = e.borrow();
                let mut j = serde_json::json!({"provider": p, "tier": k, "base_url": e.base_url, "models": e.models});
                // Only when one is used, so that other runs' files are as they were.
                if let Some(proxy) = proxies.describe(&e.base_url) {
                    j["proxy"] = proxy.into();
                }
                // What was asked of the server beyond the call itself
                // (`ignore_eos` changes what is measured).
                if !e.extra_body.is_empty() {
                    j["extra_body"] = e.extra_body.clone().into();
                }
                j
            })
        })
        .collect()
}

/// The endpoints a finished live run never reached, one line each: every
/// request sent there failed to connect (or to open a TLS session), so the
/// server is down or the endpoints file names the wrong address. Empty
/// when every endpoint that was sent requests answered at least one; a
/// run whose endpoint went down part-way measured the outage and is not
/// this. `endpoints` is `summary.json`'s list (for the URLs).
pub fn unreached_endpoints(
    s: &Scenario,
    done: &LiveDone,
    endpoints: &serde_json::Value,
) -> Vec<String> {
    done.outcome
        .metrics
        .endpoints_where(Reach::never_reached)
        .iter()
        .map(|&((p, t), r)| {
            let (name, url) = endpoint_of(s, endpoints, p, t);
            let via = endpoint_json(s, endpoints, p, t)
                .and_then(|e| e["proxy"].as_str())
                .map_or_else(String::new, |proxy| {
                    format!(", through the environment's proxy {proxy}")
                });
            let url = url.map_or_else(String::new, |u| format!(" ({u}{via})"));
            let how = match (r.connect, r.tls) {
                (_, 0) => "failed to connect".to_string(),
                (0, _) => "failed to open a TLS session".to_string(),
                (c, t) => format!("failed to connect ({c}) or to open a TLS session ({t})"),
            };
            let requests = if r.replies == 1 {
                "request"
            } else {
                "requests"
            };
            format!("{name} tier {t}{url}: all {} {requests} {how}", r.replies)
        })
        .collect()
}

/// Provider `p`'s name and the base URL of its tier `t` in `endpoints`
/// (none for a run answered in process).
fn endpoint_of<'a>(
    s: &'a Scenario,
    endpoints: &'a serde_json::Value,
    p: u16,
    t: u16,
) -> (&'a str, Option<&'a str>) {
    let name = s
        .providers
        .keys()
        .nth(p as usize)
        .map_or("?", |n| n.as_str());
    let url = endpoint_json(s, endpoints, p, t).and_then(|e| e["base_url"].as_str());
    (name, url)
}

/// Tier `t` of provider `p` in `endpoints` (`summary.json`'s list).
fn endpoint_json<'a>(
    s: &Scenario,
    endpoints: &'a serde_json::Value,
    p: u16,
    t: u16,
) -> Option<&'a serde_json::Value> {
    let name = s.providers.keys().nth(p as usize)?;
    endpoints
        .as_array()?
        .iter()
        .find(|e| e["provider"] == *name && e["tier"] == t)
}

/// The `summary.json` keys of a live run's measurement warnings, in the
/// order [`measurement_warnings`] gives them.
pub const MEASUREMENT_WARNINGS: [&str; 4] = [
    "never_answered",
    "short_answers",
    "long_answers",
    "no_usage",
];

/// What a finished live run warns of, under its `summary.json` key: the
/// run stands, but measured less than, or other than, its scenario (an
/// endpoint that answered nothing, answers cut short or run long, answers
/// that did not say what they used).
pub fn measurement_warnings(
    s: &Scenario,
    done: &LiveDone,
    endpoints: &serde_json::Value,
) -> [(&'static str, Vec<String>); 4] {
    [
        (
            MEASUREMENT_WARNINGS[0],
            unanswered_endpoints(s, done, endpoints),
        ),
        (
            MEASUREMENT_WARNINGS[1],
            answer_lengths(s, done, endpoints, true),
        ),
        (
            MEASUREMENT_WARNINGS[2],
            answer_lengths(s, done, endpoints, false),
        ),
        (
            MEASUREMENT_WARNINGS[3],
            unmetered_endpoints(s, done, endpoints),
        ),
    ]
}

/// The same, one list: what `live run` and live sweeps print.
pub fn all_measurement_warnings(
    s: &Scenario,
    done: &LiveDone,
    endpoints: &serde_json::Value,
) -> Vec<String> {
    measurement_warnings(s, done, endpoints)
        .into_iter()
        .flat_map(|(_, w)| w)
        .collect()
}

/// The measurement warnings a live run's `summary.json` records (none
/// when it has no summary, as a run cut off before writing it).
pub fn recorded_measurement_warnings(out: &Path) -> Vec<String> {
    let Some(v) = recorded_summary(out) else {
        return Vec::new();
    };
    MEASUREMENT_WARNINGS
        .iter()
        .filter_map(|k| v[k].as_array())
        .flatten()
        .filter_map(|w| w.as_str().map(String::from))
        .collect()
}

/// Whether a live run's `summary.json` says it was stopped before its
/// workflows finished (Ctrl-C, SIGTERM, its spending cap).
pub fn recorded_interrupted(out: &Path) -> bool {
    recorded_summary(out).is_some_and(|v| v["interrupted"] == true)
}

/// A run's `summary.json`, if it has a readable one.
fn recorded_summary(out: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(out.join("summary.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// One warning per endpoint of a live run whose replies meet `which`,
/// worded by `say(provider index, provider name, tier, base URL, replies)`.
/// In-process runs have no endpoints and get none.
fn endpoint_warnings(
    s: &Scenario,
    done: &LiveDone,
    endpoints: &serde_json::Value,
    which: impl Fn(&Reach) -> bool,
    say: impl Fn(u16, &str, u16, &str, &Reach) -> String,
) -> Vec<String> {
    done.outcome
        .metrics
        .endpoints_where(which)
        .iter()
        .filter_map(|&((p, t), r)| {
            let (name, url) = endpoint_of(s, endpoints, p, t);
            Some(say(p, name, t, url?, &r))
        })
        .collect()
}

/// Warnings for the endpoints a live run reached that answered none of
/// their requests (a hung or overloaded server): the run stands, but its
/// outputs measure only that endpoint's failures. In-process runs have no
/// endpoints and get none.
fn unanswered_endpoints(
    s: &Scenario,
    done: &LiveDone,
    endpoints: &serde_json::Value,
) -> Vec<String> {
    endpoint_warnings(
        s,
        done,
        endpoints,
        Reach::never_answered,
        |_, name, t, url, r| {
            let how = match (r.timeouts, r.replies - r.timeouts) {
                (_, 0) => "all timed out".to_string(),
                (0, _) => "all failed".to_string(),
                (timed_out, failed) => format!("{timed_out} timed out, {failed} failed"),
            };
            let requests = match r.replies {
                1 => "its one request".to_string(),
                n => format!("its {n} requests"),
            };
            format!(
                "{name} tier {t} ({url}) answered none of {requests} ({how} before a response \
                 began); the outputs measure its failures, not its answers. Is the server hung or \
                 overloaded? requests.jsonl has each request's error"
            )
        },
    )
}

/// Warnings for the endpoints whose answers stopped short of the tokens
/// asked for (`short`: the model ended at its end-of-sequence token before
/// `max_tokens`), or ran past them (the server ignores the output size),
/// in more than a tenth of them: live latencies and costs then run below,
/// or above, the scenario's output sizes. Each says what to do about it.
fn answer_lengths(
    s: &Scenario,
    done: &LiveDone,
    endpoints: &serde_json::Value,
    short: bool,
) -> Vec<String> {
    let which = if short {
        Reach::stopped_short
    } else {
        Reach::ran_long
    };
    endpoint_warnings(s, done, endpoints, which, |p, name, t, url, r| {
        let sent_ignore_eos = endpoint_json(s, endpoints, p, t)
            .is_some_and(|e| e["extra_body"]["ignore_eos"] == true);
        let (n, how, side, what_now) = match (short, sent_ignore_eos) {
            (true, true) => (
                r.short,
                "stopped short of",
                "below",
                "the server was sent ignore_eos and stopped anyway: it does not support it",
            ),
            (true, false) => (
                r.short,
                "stopped short of",
                "below",
                "where the server supports it (vLLM, SGLang, llama.cpp), \"extra_body\": \
                     {\"ignore_eos\": true} in its endpoints entry makes it generate every \
                     token asked for",
            ),
            (false, _) => (
                r.long,
                "ran past",
                "above",
                "the server does not honour the output size it is sent (max_tokens, or \
                     max_completion_tokens where the endpoint's max_tokens_param says so)",
            ),
        };
        format!(
            "{name} tier {t} ({url}): {n} of {} answers {how} the tokens asked for ({} of {} \
             tokens, {:.0}%), so live latencies and costs run {side} the scenario's output \
             sizes; {what_now}",
            r.completions,
            r.completion_tokens,
            r.asked_tokens,
            100.0 * r.completion_tokens as f64 / r.asked_tokens.max(1) as f64
        )
    })
}

/// Warnings for the endpoints whose successful answers, more than a tenth
/// of them, reported no token usage: a live run prices those from the
/// scenario's token counts, so its costs there are estimates, and a chat
/// answer's length is unknown (nothing can be said of short answers).
fn unmetered_endpoints(
    s: &Scenario,
    done: &LiveDone,
    endpoints: &serde_json::Value,
) -> Vec<String> {
    endpoint_warnings(
        s,
        done,
        endpoints,
        Reach::unmetered,
        |p, name, t, url, r| {
            let embed = s
                .providers
                .values()
                .nth(p as usize)
                .is_some_and(|pm| pm.resource == "embed");
            let what = if embed {
                "their costs are the scenario's input tokens priced, not what the endpoint counted"
            } else {
                "their costs are the scenario's token counts priced, not what the endpoint served, \
             and their lengths are unknown (whether they stopped short of the tokens asked for \
             cannot be told); the executor asks for usage with \"stream_options\": \
             {\"include_usage\": true}, which this server ignores"
            };
            format!(
                "{name} tier {t} ({url}): {} of {} answers reported no token usage, so {what}",
                r.unmetered, r.successes
            )
        },
    )
}

/// The endpoints that refused every request they answered (401, 404, ...),
/// one line each, with what to check.
pub fn refusing_endpoints(
    s: &Scenario,
    done: &LiveDone,
    endpoints: &serde_json::Value,
) -> Vec<String> {
    done.outcome
        .metrics
        .endpoints_where(Reach::refused_all)
        .iter()
        .map(|&((p, t), r)| {
            let (name, base_url) = endpoint_of(s, endpoints, p, t);
            let url = base_url.map_or_else(String::new, |u| format!(" ({u})"));
            let base_url = base_url.unwrap_or("{base_url}");
            let status = r.refused_status;
            let statuses = if r.refused_mixed {
                format!("HTTP {status} and other client errors")
            } else {
                match http::StatusCode::from_u16(status)
                    .ok()
                    .and_then(|c| c.canonical_reason())
                {
                    Some(reason) => format!("HTTP {status} ({reason})"),
                    None => format!("HTTP {status}"),
                }
            };
            let check = match status {
                401 | 403 => "the key was refused: check the variable api_key_env names (and \
                              api_key_header, if the server wants the key in another header)"
                    .to_string(),
                404 | 405 => format!(
                    "nothing is served there: requests go to {base_url}/chat/completions and \
                     {base_url}/embeddings; check base_url and the model names"
                ),
                400 | 422 => "the server refused the requests themselves: check the model \
                              names; a reasoning model that takes max_completion_tokens instead of \
                              max_tokens (OpenAI's o-series and gpt-5) needs \
                              \"max_tokens_param\": \"max_completion_tokens\" in the endpoints file"
                    .to_string(),
                _ => "check the model names and what the server expects of a request".to_string(),
            };
            let answers = if r.refused == 1 {
                "its one answer was".to_string()
            } else {
                format!("all {} answers were", r.refused)
            };
            let said = done
                .outcome
                .metrics
                .refused_message(p, t)
                .map_or_else(String::new, |m| format!(" (the server said: {m})"));
            format!(
                "{name} tier {t}{url} refused every request: {answers} {statuses}{said}; {check}"
            )
        })
        .collect()
}

/// A live run that never reached some endpoint, or that some endpoint
/// refused throughout, is a setup error (exit 3) saying which: every later
/// run would meet the same. See [`unreached_endpoints`] and
/// [`refusing_endpoints`].
pub fn never_reached(
    s: &Scenario,
    done: &LiveDone,
    endpoints: &serde_json::Value,
) -> Option<crate::error::Error> {
    let dead = unreached_endpoints(s, done, endpoints);
    let refusing = refusing_endpoints(s, done, endpoints);
    let mut parts = Vec::new();
    if !dead.is_empty() {
        parts.push(format!(
            "never reached {}; is the server up, and are the endpoints file's URLs right?",
            dead.join("; ")
        ));
    }
    if !refusing.is_empty() {
        parts.push(format!("{}.", refusing.join("; ")));
    }
    let them = dead.len() + refusing.len();
    (them > 0).then(|| {
        crate::error::Error::Setup(format!(
            "{} The outputs are written, but they measure no answer from {}",
            parts.join(" "),
            if them == 1 { "it" } else { "them" }
        ))
    })
}

/// A finished live run in one line, as `live run` and live sweeps print it:
/// `full live 50 workflows (0 failed): makespan p50 …; cost mean …; N
/// attempts, N 429s, N errors`.
pub fn headline(s: &Scenario, done: &LiveDone) -> String {
    let m = &done.outcome.result.summary;
    format!(
        "{} live {} workflows ({} failed{}): makespan p50 {:.0} ms, p95 {:.0} ms; cost mean {:.4}; \
         {} attempts, {} 429s, {} errors",
        s.policy.name(),
        m.workflows,
        m.failed,
        if done.outcome.interrupted {
            ", interrupted"
        } else {
            ""
        },
        m.makespan_p50_ms,
        m.makespan_p95_ms,
        m.cost_mean,
        m.attempts,
        done.outcome.metrics.http_429,
        done.outcome.metrics.errors,
    )
}
