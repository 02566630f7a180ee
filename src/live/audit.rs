//! The output-caching audit: is an endpoint answering repeated prompts
//! from a cache? A replay against such an endpoint looks faster than
//! production, where prompts differ.
//!
//! Two phases, back to back, against one (provider, tier): a reference
//! phase of N distinct prompts, then an audit phase of M requests that all
//! repeat one of them (`sample_index`). Both run unpaced (as fast as the
//! in-flight bound allows: a paced load would hide the signal). The audit
//! passes iff both phases completed at least `requested x (1 - t)` and the
//! audit phase's QPS is below the reference's x (1 + t). A phase that did
//! not run cleanly (interrupted, or the endpoint unreachable) gives no
//! verdict. The verdict JSON is written before the verify file, each
//! atomically, so the verify file never exists without the JSON.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::endpoints::ResolvedEndpoint;
use super::sse::UsageTotals;
use super::stop::StopSignal;
use super::transport::{CallKind, CallRequest, HttpTransport, Prompt, Transport};
use crate::error::{Error, Result};
use crate::output::{atomic_write, sync_dir};
use crate::provider::Outcome;

/// The verdict file, written first.
pub const RESULT_FILE: &str = "audit_output_caching_test.json";
/// The verify file, written only after [`RESULT_FILE`].
pub const VERIFY_FILE: &str = "verify_OUTPUT_CACHING_TEST.txt";

/// How requests are issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadPattern {
    /// Every request at once, up to the in-flight bound.
    MaxThroughput,
    /// A fixed number in flight (a closed loop).
    Concurrency,
}

impl LoadPattern {
    /// Parses `max_throughput` or `concurrency`; paced patterns are refused.
    pub fn parse(text: &str) -> std::result::Result<LoadPattern, String> {
        match text {
            "max_throughput" => Ok(LoadPattern::MaxThroughput),
            "concurrency" => Ok(LoadPattern::Concurrency),
            "poisson" | "constant" | "constant_rate" | "fixed_rate" | "rate" | "sweep"
            | "paced" | "synchronous" => Err(format!(
                "{text:?} is a paced pattern: a cache shows as a higher rate, which pacing \
                 caps; expected max_throughput or concurrency"
            )),
            _ => Err(format!(
                "expected max_throughput or concurrency, got {text:?}"
            )),
        }
    }

    /// The name [`parse`](Self::parse) takes.
    pub fn name(self) -> &'static str {
        match self {
            LoadPattern::MaxThroughput => "max_throughput",
            LoadPattern::Concurrency => "concurrency",
        }
    }
}

/// What the audit sends where.
#[derive(Clone, Debug)]
pub struct AuditConfig {
    /// The (provider, tier)'s endpoint.
    pub endpoint: Arc<ResolvedEndpoint>,
    /// Chat completions or embeddings.
    pub kind: CallKind,
    /// Distinct prompts in the reference phase.
    pub reference_requests: u32,
    /// Requests in the audit phase, all with prompt `sample_index`.
    pub audit_requests: u32,
    /// Which reference prompt the audit phase repeats.
    pub sample_index: u32,
    /// How requests are issued.
    pub pattern: LoadPattern,
    /// Requests in flight at most.
    pub in_flight: u32,
    /// The threshold t, 0 < t < 1.
    pub threshold: f64,
    /// Prompt size (tokens).
    pub input_tokens: u32,
    /// `max_tokens`.
    pub output_tokens: u32,
    /// A request not done by then is abandoned (a failure).
    pub timeout: Duration,
    /// Pause between the phases.
    pub cooldown: Duration,
}

/// One phase's result.
#[derive(Clone, Debug, PartialEq)]
pub struct Phase {
    /// Requests sent.
    pub requested: u32,
    /// Requests answered successfully.
    pub completed: u32,
    /// Seconds from the first request out to the last answer in.
    pub wall_s: f64,
    /// The prompt and cached prompt tokens the endpoint reported.
    pub usage: UsageTotals,
}

impl Phase {
    /// Completed requests per second of the phase.
    pub fn qps(&self) -> f64 {
        if self.wall_s > 0.0 {
            self.completed as f64 / self.wall_s
        } else {
            0.0
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "requested": self.requested,
            "completed": self.completed,
            "wall_s": self.wall_s,
            "qps": crate::stats::finite(self.qps()),
            "usage_prompt_tokens": self.usage.prompt,
            "usage_cached_prompt_tokens": self.usage.cached_prompt,
        })
    }
}

/// The audit's verdict.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// PASS.
    pub passed: bool,
    /// Why, in one sentence.
    pub reason: String,
}

/// The pure verify step.
pub fn verify(reference: &Phase, audit: &Phase, threshold: f64) -> Verdict {
    let floor = |p: &Phase| p.requested as f64 * (1.0 - threshold);
    for (name, p) in [("reference", reference), ("audit", audit)] {
        // Counts are whole: 90 of 100 at t = 0.1 is enough, though
        // 100 x (1 - 0.1) is 90.00000000000001 in binary.
        if (p.completed as f64) < floor(p) - 1e-9 {
            return Verdict {
                passed: false,
                reason: format!(
                    "the {name} phase completed {} of {} requests, fewer than {:.1} = {} x (1 - {threshold})",
                    p.completed,
                    p.requested,
                    floor(p),
                    p.requested
                ),
            };
        }
    }
    let (r, a) = (reference.qps(), audit.qps());
    let bound = r * (1.0 + threshold);
    if a < bound {
        Verdict {
            passed: true,
            reason: format!(
                "audit QPS {a:.3} < reference QPS {r:.3} x (1 + {threshold}) = {bound:.3}: \
                 repeating one prompt is not faster"
            ),
        }
    } else {
        let mut reason = format!(
            "audit QPS {a:.3} >= reference QPS {r:.3} x (1 + {threshold}) = {bound:.3}: \
             the endpoint answers a repeated prompt faster, as from a cache"
        );
        // A prefix cache (vLLM's, SGLang's, llama.cpp's, OpenAI's) skips
        // a repeated prompt's prefill but still generates its answer: the
        // live executor's prompts differ, so it does not flatter a replay.
        if let Some(share) = audit.usage.cached_share().filter(|&x| x >= 0.5) {
            let before = reference.usage.cached_share().map_or(String::new(), |x| {
                format!(" (reference phase: {:.0}%)", 100.0 * x)
            });
            reason.push_str(&format!(
                "; but the endpoint reported {:.0}% of the audit phase's prompt tokens served \
                 from its prompt cache{before}: a prefix cache skips a repeated prompt's \
                 prefill and alone can make it this much faster, while the answers may still \
                 be generated. Live runs send every call a prompt of its own, which such a \
                 cache does not flatter; a larger --output-tokens weighs generation over \
                 prefill",
                100.0 * share
            ));
        }
        Verdict {
            passed: false,
            reason,
        }
    }
}

/// Checks the numbers of a config (exit 2 naming the flag).
pub fn check(cfg: &AuditConfig) -> Result<()> {
    let bad = |flag: &str, msg: String| Err(Error::Input(format!("{flag}: {msg}")));
    if !(cfg.threshold > 0.0 && cfg.threshold < 1.0) {
        return bad(
            "--threshold",
            format!("expected 0 < t < 1, got {}", cfg.threshold),
        );
    }
    if cfg.reference_requests == 0 {
        return bad("--reference-requests", "expected at least 1".into());
    }
    if cfg.audit_requests == 0 {
        return bad("--audit-requests", "expected at least 1".into());
    }
    if cfg.sample_index >= cfg.reference_requests {
        return bad(
            "--sample-index",
            format!(
                "expected one of the reference prompts, 0..{}, got {}",
                cfg.reference_requests, cfg.sample_index
            ),
        );
    }
    if cfg.in_flight == 0 {
        return bad("--concurrency", "expected at least 1".into());
    }
    Ok(())
}

/// Whether anything answers at the endpoint's address (exit 3 if not).
async fn probe(ep: &ResolvedEndpoint) -> Result<()> {
    // Behind a proxy, the proxy is what must take the connection.
    let (addr, what) = match super::proxy::Proxies::from_env().first_hop(&ep.base_url) {
        Some(proxy) => (
            proxy.clone(),
            format!("{} (through its proxy {proxy})", ep.base_url),
        ),
        None => (ep.host_port(), ep.base_url.clone()),
    };
    let connect = tokio::net::TcpStream::connect(addr);
    match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(Error::Setup(format!(
            "{what}: unreachable ({e}); no audit was run"
        ))),
        Err(_) => Err(Error::Setup(format!(
            "{what}: no connection within 5 s; no audit was run"
        ))),
    }
}

/// Runs one phase: `variants[i]` is request i's prompt. Writes its
/// `requests.jsonl` into `dir` at the end (atomically).
async fn run_phase(
    transport: &HttpTransport,
    cfg: &AuditConfig,
    name: &str,
    variants: Vec<u64>,
    dir: &Path,
) -> Result<Phase> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let requested = variants.len() as u32;
    let limit = match cfg.pattern {
        LoadPattern::MaxThroughput => cfg.in_flight.min(requested),
        LoadPattern::Concurrency => cfg.in_flight,
    } as usize;
    let start = Instant::now();
    let us = |t: Option<Instant>| t.map(|t| t.saturating_duration_since(start).as_micros() as u64);
    let mut tasks = tokio::task::JoinSet::new();
    let mut pending = variants.into_iter().enumerate();
    let mut lines: Vec<(usize, Value)> = Vec::with_capacity(requested as usize);
    let (mut completed, mut unreachable, mut last_done) = (0u32, 0u32, start);
    let mut usage_totals = UsageTotals::default();
    loop {
        while tasks.len() < limit {
            let Some((i, v)) = pending.next() else { break };
            let req = CallRequest {
                endpoint: cfg.endpoint.clone(),
                kind: cfg.kind,
                model: 0,
                input_tokens: cfg.input_tokens,
                output_tokens: cfg.output_tokens,
                timeout: Some(cfg.timeout),
                identity: None,
                prompt: Prompt::Sample(v),
            };
            let call = transport.clone().call(req);
            let timeout = cfg.timeout;
            tasks.spawn(async move {
                let sent = Instant::now();
                let reply = tokio::time::timeout(timeout, call).await;
                (i, v, sent, reply)
            });
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        let (i, v, sent, reply) = joined
            .map_err(|e| Error::Execution(format!("{name} phase: a request task failed: {e}")))?;
        let now = Instant::now();
        last_done = last_done.max(now);
        let (outcome, status, error, first_token, usage) = match reply {
            Ok(r) => (r.outcome, r.status, r.error, r.first_token, r.usage),
            Err(_) => (
                Some(Outcome::Timeout),
                None,
                Some("timeout".into()),
                None,
                None,
            ),
        };
        let ok = outcome == Some(Outcome::Success);
        completed += ok as u32;
        if let Some(u) = usage.filter(|_| ok) {
            usage_totals.add(u);
        }
        // Not reached at all (no connection, or no TLS session): the
        // endpoint was not measured, so its failures say nothing of a cache.
        unreachable += matches!(error.as_deref(), Some("connect" | "tls")) as u32;
        lines.push((
            i,
            json!({
                "index": i,
                "prompt": v,
                "sent_us": us(Some(sent)),
                "first_token_us": us(first_token),
                "done_us": us(Some(now)),
                "status": status,
                "outcome": outcome.map(|o| o.name()),
                "error": error,
                "usage_prompt_tokens": usage.map(|u| u.prompt),
                "usage_cached_prompt_tokens": usage.and_then(|u| u.cached_prompt),
            }),
        ));
    }
    lines.sort_by_key(|(i, _)| *i);
    let mut text = String::new();
    for (_, l) in &lines {
        text.push_str(&l.to_string());
        text.push('\n');
    }
    atomic_write(&dir.join("requests.jsonl"), text.as_bytes())?;
    sync_dir(dir);
    if unreachable > 0 {
        return Err(Error::Execution(format!(
            "{name} phase: {unreachable} of {requested} requests found {} unreachable \
             (no connection, or a failed TLS handshake); the phase is not clean, no verdict",
            cfg.endpoint.base_url
        )));
    }
    Ok(Phase {
        requested,
        completed,
        wall_s: last_done.saturating_duration_since(start).as_secs_f64(),
        usage: usage_totals,
    })
}

/// What a finished audit wrote.
#[derive(Clone, Debug)]
pub struct AuditOutcome {
    /// The reference phase.
    pub reference: Phase,
    /// The audit phase.
    pub audit: Phase,
    /// The verdict.
    pub verdict: Verdict,
    /// The verdict JSON's path.
    pub result_path: PathBuf,
}

/// Runs both phases and writes the verdict into `out`; `stop` (Ctrl-C or
/// SIGTERM) ends the audit without a verdict.
pub async fn run(
    cfg: &AuditConfig,
    out: &Path,
    stop: impl std::future::Future<Output = StopSignal>,
) -> Result<AuditOutcome> {
    check(cfg)?;
    probe(&cfg.endpoint).await?;
    let transport = HttpTransport::new();
    let phases = async {
        let reference = run_phase(
            &transport,
            cfg,
            "reference",
            (0..cfg.reference_requests as u64).collect(),
            &out.join("audit/reference"),
        )
        .await?;
        tokio::time::sleep(cfg.cooldown).await;
        let audit = run_phase(
            &transport,
            cfg,
            "audit",
            vec![cfg.sample_index as u64; cfg.audit_requests as usize],
            &out.join("audit/output_caching"),
        )
        .await?;
        Ok::<_, Error>((reference, audit))
    };
    let (reference, audit) = tokio::select! {
        r = phases => r?,
        by = stop => return Err(Error::Stopped {
            code: by.exit_code(),
            message: format!(
                "stopped by {}: the audit ended before both phases finished, so it gives no verdict",
                by.name()
            ),
        }),
    };
    let verdict = verify(&reference, &audit, cfg.threshold);
    let result = json!({
        "test": "output_caching",
        "passed": verdict.passed,
        "ref_qps": crate::stats::finite(reference.qps()),
        "audit_qps": crate::stats::finite(audit.qps()),
        "threshold": cfg.threshold,
        "reference": reference.to_json(),
        "audit": audit.to_json(),
        "reason": verdict.reason,
        "load_pattern": cfg.pattern.name(),
        "in_flight": cfg.in_flight,
        "sample_index": cfg.sample_index,
        "endpoint": {"base_url": cfg.endpoint.base_url, "model": cfg.endpoint.models[0]},
        "version": env!("CARGO_PKG_VERSION"),
    });
    let result_path = out.join(RESULT_FILE);
    atomic_write(&result_path, format!("{result:#}\n").as_bytes())?;
    sync_dir(out);
    let verify_text = format!(
        "Performance check pass: {}\n",
        if verdict.passed { "True" } else { "False" }
    );
    atomic_write(&out.join(VERIFY_FILE), verify_text.as_bytes())?;
    sync_dir(out);
    Ok(AuditOutcome {
        reference,
        audit,
        verdict,
        result_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(requested: u32, completed: u32, wall_s: f64) -> Phase {
        Phase {
            requested,
            completed,
            wall_s,
            usage: UsageTotals::default(),
        }
    }

    #[test]
    fn verify_by_hand() {
        // 100 in 2 s = 50 QPS against 100 in 1.9 s = 52.6 QPS < 55: pass.
        let v = verify(&phase(100, 100, 2.0), &phase(100, 100, 1.9), 0.1);
        assert!(v.passed, "{}", v.reason);
        // 60 QPS is past 55.
        let v = verify(&phase(100, 100, 2.0), &phase(120, 120, 2.0), 0.1);
        assert!(!v.passed && v.reason.contains("cache"), "{}", v.reason);
        // 90 of 100 completed is enough at t = 0.1 (45 QPS; the audit's
        // 40 is below 49.5); 89 is not.
        let v = verify(&phase(100, 90, 2.0), &phase(100, 100, 2.5), 0.1);
        assert!(v.passed, "{}", v.reason);
        let v = verify(&phase(100, 89, 2.0), &phase(100, 100, 2.0), 0.1);
        assert!(
            !v.passed
                && v.reason
                    .starts_with("the reference phase completed 89 of 100")
        );
        let v = verify(&phase(100, 100, 2.0), &phase(100, 50, 2.0), 0.1);
        assert!(!v.passed && v.reason.starts_with("the audit phase"));
    }

    #[test]
    fn a_failing_verdict_names_a_prefix_cache_when_the_endpoint_reports_one() {
        let with = |mut p: Phase, prompt: u64, cached: Option<u64>| {
            p.usage = UsageTotals {
                prompt: Some(prompt),
                cached_prompt: cached,
            };
            p
        };
        let reference = with(phase(100, 100, 2.0), 6400, Some(0));
        // 6,000 of 6,400 prompt tokens cached (94%), and 60 QPS past 55.
        let audit = with(phase(120, 120, 2.0), 6400, Some(6000));
        let v = verify(&reference, &audit, 0.1);
        assert!(!v.passed);
        assert!(
            v.reason.contains(
                "the endpoint reported 94% of the audit phase's prompt tokens served from its \
                 prompt cache (reference phase: 0%): a prefix cache"
            ),
            "{}",
            v.reason
        );
        // Under half cached, not reported, or a passing audit: no such note.
        for audit in [
            with(phase(120, 120, 2.0), 6400, Some(3000)),
            with(phase(120, 120, 2.0), 6400, None),
            phase(120, 120, 2.0),
        ] {
            let v = verify(&reference, &audit, 0.1);
            assert!(!v.passed && !v.reason.contains("prefix"), "{}", v.reason);
        }
        let slow = with(phase(100, 100, 2.0), 6400, Some(6000));
        let v = verify(&reference, &slow, 0.1);
        assert!(v.passed && !v.reason.contains("prefix"), "{}", v.reason);
    }

    #[test]
    fn paced_patterns_are_refused() {
        assert_eq!(
            LoadPattern::parse("concurrency"),
            Ok(LoadPattern::Concurrency)
        );
        assert_eq!(
            LoadPattern::parse("max_throughput"),
            Ok(LoadPattern::MaxThroughput)
        );
        assert!(LoadPattern::parse("poisson").unwrap_err().contains("paced"));
        assert!(
            LoadPattern::parse("bursty")
                .unwrap_err()
                .contains("expected")
        );
    }
}
