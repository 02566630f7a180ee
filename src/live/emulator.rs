//! `agentsched emulate`: an OpenAI-compatible server for every tier of a
//! scenario, drawing latencies and outcomes from the shared provider model
//! ([`ProviderSide`]) and playing them out in real time / `time_scale`.
//!
//! - Models are named `{provider}-t{tier}-{model}` (`llm_provider-t0-large`,
//!   `embed_provider-t1-default`); `GET /v1/models` lists them.
//! - `POST /v1/chat/completions` streams (SSE) when asked: the first token
//!   at the drawn time to first token for node types with a streaming
//!   latency model, else at [`EmulatorConfig::ttft_fraction`] of the drawn
//!   latency; the other
//!   tokens evenly spaced after it, the last token, the finish chunk, the
//!   usage chunk and `[DONE]` at the drawn latency, each sent against an
//!   absolute deadline (tokens due together go in one write). Without
//!   `stream`, one JSON answer at the drawn latency.
//! - `POST /v1/embeddings`: one JSON answer at the drawn latency.
//! - Provider-enforced rate limits answer 429 after the tier's reject
//!   latency, with `retry-after`, `retry-after-ms`,
//!   `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` and OpenAI's
//!   wording of the limit ("... on tokens per min (TPM)"); drawn failures answer
//!   500; a drawn timeout stalls past the tier's timeout (the client cuts it).
//! - With the [`IDENTITY_HEADER`](super::IDENTITY_HEADER) the draw is the
//!   simulator's for that attempt; without it, one from the emulator's own
//!   keyed stream (a request counter) for the provider's node type whose
//!   output size is closest to `max_tokens` (one past u32 is a 400).
//! - A request body past [`MAX_REQUEST_BYTES`] is a 413.
//! - Faults (`--fault KIND=PROB`, drawn once per request): `reset` (the
//!   connection is dropped half-way), `malformed` (a broken SSE line
//!   mid-stream), `stall` (the stream stops half-way until past the tier's
//!   timeout, or for 3x the latency without one, then ends unfinished), `slow_headers` (headers only after the drawn
//!   latency), `truncated` (the body ends half-way without usage or
//!   `[DONE]`).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::endpoints::{EndpointsFile, TierEndpoint};
use super::{Clock, precise_sleep_until};
use crate::error::{Error, Result};
use crate::provider::{AttemptDraw, AttemptIds, DrawSpec, Limit, Outcome, ProviderSide, TierModel};
use crate::rng::{Keyer, Stream, keyed, unit};
use crate::runtime::NodeTable;
use crate::scenario::Scenario;
use crate::units::SimDuration;

/// Injectable faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// Drop the connection half-way.
    Reset,
    /// A broken SSE line mid-stream.
    Malformed,
    /// Stop half-way for 3x the latency, then end unfinished.
    Stall,
    /// Headers only after the drawn latency.
    SlowHeaders,
    /// End the body half-way, without usage or `[DONE]`.
    Truncated,
}

impl Fault {
    /// Every fault, with its flag name.
    pub const ALL: [(Fault, &'static str); 5] = [
        (Fault::Reset, "reset"),
        (Fault::Malformed, "malformed"),
        (Fault::Stall, "stall"),
        (Fault::SlowHeaders, "slow_headers"),
        (Fault::Truncated, "truncated"),
    ];

    /// Parses `KIND=PROB`.
    pub fn parse(text: &str) -> std::result::Result<(Fault, f64), String> {
        let (k, p) = text
            .split_once('=')
            .ok_or_else(|| format!("--fault {text:?}: expected KIND=PROB, e.g. reset=0.05"))?;
        let fault = Fault::ALL
            .iter()
            .find(|(_, n)| *n == k)
            .map(|(f, _)| *f)
            .ok_or_else(|| {
                let names: Vec<&str> = Fault::ALL.iter().map(|(_, n)| *n).collect();
                format!(
                    "--fault {text:?}: unknown kind {k:?} (expected one of {})",
                    names.join(", ")
                )
            })?;
        let prob: f64 = p
            .parse()
            .ok()
            .filter(|x: &f64| (0.0..=1.0).contains(x))
            .ok_or_else(|| {
                format!("--fault {text:?}: expected a probability in [0, 1], got {p:?}")
            })?;
        Ok((fault, prob))
    }
}

/// How the emulator behaves.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// Scenario seconds per real second.
    pub time_scale: f64,
    /// Fault probabilities (their sum is at most 1).
    pub faults: BTreeMap<Fault, f64>,
    /// Share of a streamed answer's latency before its first token.
    pub ttft_fraction: f64,
    /// Answer a prompt seen before (same model, same text) at once and
    /// successfully, as a response cache would: what `audit caching`
    /// detects.
    pub cache: bool,
}

struct TierServe {
    provider: u16,
    tier: u16,
    model: usize,
}

struct State {
    clock: Clock,
    table: NodeTable,
    tiers: Vec<Vec<TierModel>>,
    /// Per (provider, tier): whether its answers say what they wrote to
    /// the prefix cache (a tier that prices writes on their own).
    reports_writes: Vec<Vec<bool>>,
    seed: u64,
    models: BTreeMap<String, TierServe>,
    provider: Mutex<ProviderSide>,
    own_keyer: Keyer,
    requests: AtomicU64,
    /// Hashes of (model, prompt) answered so far (with `cfg.cache`).
    seen: Mutex<std::collections::HashSet<u64>>,
    cfg: EmulatorConfig,
}

/// The model names the emulator serves for `s`, per (provider, tier), by
/// model index.
pub fn model_names(s: &Scenario) -> Vec<Vec<Vec<String>>> {
    s.providers
        .iter()
        .map(|(pname, p)| {
            p.tiers
                .iter()
                .enumerate()
                .map(|(k, t)| {
                    if t.models.is_empty() {
                        vec![format!("{pname}-t{k}-default")]
                    } else {
                        t.models
                            .iter()
                            .map(|m| format!("{pname}-t{k}-{}", m.name))
                            .collect()
                    }
                })
                .collect()
        })
        .collect()
}

/// An `endpoints.json` pointing every tier of `s` at an emulator at `addr`.
pub fn endpoints_for(s: &Scenario, addr: SocketAddr) -> EndpointsFile {
    let names = model_names(s);
    EndpointsFile {
        providers: s
            .providers
            .iter()
            .zip(names)
            .map(|((pname, p), tiers)| {
                let eps = p
                    .tiers
                    .iter()
                    .zip(tiers)
                    .map(|(t, names)| TierEndpoint {
                        base_url: format!("http://{addr}/v1"),
                        model: names[0].clone(),
                        models: t
                            .models
                            .iter()
                            .zip(&names)
                            .skip(1)
                            .map(|(m, n)| (m.name.clone(), n.clone()))
                            .collect(),
                        api_key_env: None,
                        api_key_header: None,
                        headers: BTreeMap::new(),
                        max_tokens_param: Default::default(),
                        extra_body: Default::default(),
                        slots: None,
                        rate_limit: None,
                        token_limit: None,
                    })
                    .collect();
                (pname.clone(), eps)
            })
            .collect(),
    }
}

/// A running emulator.
#[derive(Debug)]
pub struct EmulatorHandle {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl EmulatorHandle {
    /// Stops accepting and waits for the accept loop to end.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = self.task.await;
    }
}

/// Binds `addr` and serves `s` on the current tokio runtime.
pub async fn start(s: &Scenario, cfg: EmulatorConfig, addr: SocketAddr) -> Result<EmulatorHandle> {
    let total: f64 = cfg.faults.values().sum();
    if total > 1.0 + 1e-12 {
        return Err(Error::Input(format!(
            "--fault: the probabilities add up to {total}, expected at most 1"
        )));
    }
    if !(cfg.time_scale.is_finite() && cfg.time_scale > 0.0) {
        return Err(Error::Input(format!(
            "--time-scale: expected a finite number > 0, got {}",
            cfg.time_scale
        )));
    }
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Execution(format!("cannot listen on {addr}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Execution(format!("cannot listen on {addr}: {e}")))?;
    let table = NodeTable::build(s);
    let mut models = BTreeMap::new();
    for (p, tiers) in model_names(s).into_iter().enumerate() {
        for (t, names) in tiers.into_iter().enumerate() {
            for (m, name) in names.into_iter().enumerate() {
                models.insert(
                    name,
                    TierServe {
                        provider: p as u16,
                        tier: t as u16,
                        model: m,
                    },
                );
            }
        }
    }
    let state = Arc::new(State {
        clock: Clock::start(cfg.time_scale),
        tiers: s
            .providers
            .values()
            .map(|p| p.tiers.iter().map(TierModel::new).collect())
            .collect(),
        reports_writes: s
            .providers
            .values()
            .map(|p| {
                p.tiers
                    .iter()
                    .map(|t| t.price_per_mtok_cache_write.is_some())
                    .collect()
            })
            .collect(),
        seed: s.seed,
        table,
        models,
        provider: Mutex::new(ProviderSide::new(s)),
        own_keyer: Keyer::new(s.seed, Stream::Emulator),
        requests: AtomicU64::new(0),
        seen: Mutex::new(Default::default()),
        cfg,
    });
    let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut stop_rx => break,
                conn = listener.accept() => {
                    let Ok((stream, _)) = conn else { continue };
                    let _ = stream.set_nodelay(true);
                    let state = state.clone();
                    tokio::spawn(async move {
                        let svc = service_fn(move |req| handle(state.clone(), req));
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            }
        }
    });
    Ok(EmulatorHandle {
        addr,
        stop: Some(stop_tx),
        task,
    })
}

/// The largest request body served; past it a request is a 413 (before
/// its body is read when its `content-length` says so). A prompt of a
/// million tokens is about 4 MB.
pub const MAX_REQUEST_BYTES: usize = 16 << 20;

/// A response body: whole, or fed frame by frame from a channel.
#[derive(Debug)]
pub enum EmuBody {
    /// All at once.
    Full(Option<Bytes>),
    /// Streamed; an `Err` drops the connection.
    Chan(mpsc::Receiver<std::result::Result<Bytes, std::io::Error>>),
}

impl Body for EmuBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            EmuBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            EmuBody::Chan(rx) => rx.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data))),
        }
    }
}

fn json_response(status: u16, v: serde_json::Value) -> http::Response<EmuBody> {
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(EmuBody::Full(Some(Bytes::from(v.to_string()))))
        .expect("valid response")
}

fn error(status: u16, message: &str) -> http::Response<EmuBody> {
    json_response(
        status,
        serde_json::json!({"error": {"message": message, "type": "emulator_error"}}),
    )
}

/// The identity header's fields.
struct Identity {
    ids: AttemptIds,
    node_type: String,
    out: u32,
}

/// A simulated wait as the real milliseconds a header carries, rounded up
/// to the microsecond written: a client that waits what it is told never
/// comes back before the wait is over, and a positive wait is never 0.000.
fn header_ms(wait: SimDuration, time_scale: f64) -> f64 {
    (wait.0 as f64 / time_scale).ceil() / 1e3
}

fn parse_identity(v: &str, seed: u64) -> Option<Identity> {
    let mut f: BTreeMap<&str, &str> = BTreeMap::new();
    for part in v.split(';') {
        let (k, x) = part.split_once('=')?;
        f.insert(k.trim(), x.trim());
    }
    let n = |k: &str| f.get(k)?.parse::<u64>().ok();
    // A field out of its type's range makes the header malformed, as a
    // missing one does, rather than wrapping to another attempt's identity.
    let n32 = |k: &str| u32::try_from(n(k)?).ok();
    let n16 = |k: &str| u16::try_from(n(k)?).ok();
    if n("seed")? != seed {
        return None;
    }
    Some(Identity {
        ids: AttemptIds {
            workflow: n("wf")?,
            node: n32("node")?,
            provider: n16("provider")?,
            tier: n16("tier")?,
            attempt: n32("attempt")?,
        },
        node_type: f.get("type")?.to_string(),
        out: n32("out")?,
    })
}

/// What a response cache keys on: the model and the prompt's text.
fn prompt_key(doc: &serde_json::Value) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    doc.get("model").and_then(|m| m.as_str()).hash(&mut h);
    match doc.get("messages").and_then(|m| m.as_array()) {
        Some(ms) => {
            for m in ms {
                m.get("content").and_then(|c| c.as_str()).hash(&mut h);
            }
        }
        None => doc.get("input").map(|i| i.to_string()).hash(&mut h),
    }
    h.finish()
}

async fn handle(
    state: Arc<State>,
    req: http::Request<Incoming>,
) -> std::result::Result<http::Response<EmuBody>, Infallible> {
    let received = Instant::now();
    let path = req.uri().path().to_string();
    if req.method() == http::Method::GET && (path == "/v1/models" || path == "/models") {
        let data: Vec<serde_json::Value> = state
            .models
            .keys()
            .map(|m| serde_json::json!({"id": m, "object": "model", "owned_by": "agentsched"}))
            .collect();
        return Ok(json_response(
            200,
            serde_json::json!({"object": "list", "data": data}),
        ));
    }
    let chat = path.ends_with("/chat/completions");
    let embed = path.ends_with("/embeddings");
    if req.method() != http::Method::POST || !(chat || embed) {
        return Ok(error(404, "not found"));
    }
    let identity = req
        .headers()
        .get(super::IDENTITY_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_identity(v, state.seed));
    let too_large = || {
        let message = format!("request body over {MAX_REQUEST_BYTES} bytes");
        Ok(error(413, &message))
    };
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_REQUEST_BYTES as u64) {
        return too_large();
    }
    let body = match Limited::new(req.into_body(), MAX_REQUEST_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => return too_large(),
        Err(_) => return Ok(error(400, "unreadable body")),
    };
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return Ok(error(400, "body is not JSON"));
    };
    let Some(serve) = doc
        .get("model")
        .and_then(|m| m.as_str())
        .and_then(|m| state.models.get(m))
    else {
        return Ok(error(404, "unknown model: see GET /v1/models"));
    };
    let (p, t) = (serve.provider, serve.tier);
    // Past u32 it would wrap to some small length: refused, as a server
    // refuses a length past its context.
    let Ok(max_tokens) = doc
        .get("max_tokens")
        .or_else(|| doc.get("max_completion_tokens"))
        .and_then(|x| x.as_u64())
        .map_or(Ok(16), u32::try_from)
    else {
        return Ok(error(400, "max_tokens: expected at most 4294967295"));
    };
    let prompt_tokens = if chat {
        doc.get("messages")
            .and_then(|m| m.as_array())
            .map(|ms| {
                ms.iter()
                    .filter_map(|m| m.get("content").and_then(|c| c.as_str()))
                    .map(|c| c.split_whitespace().count() as u32)
                    .sum()
            })
            .unwrap_or(0)
    } else {
        doc.get("input")
            .and_then(|i| i.as_str())
            .map_or(0, |c| c.split_whitespace().count() as u32)
    };
    let stream = doc.get("stream").and_then(|s| s.as_bool()).unwrap_or(false);
    let cached = state.cfg.cache
        && !state
            .seen
            .lock()
            .expect("cache lock")
            .insert(prompt_key(&doc));
    let n = state.requests.fetch_add(1, Ordering::Relaxed);
    // The node type: named by the identity, else the provider's closest one.
    let tier_model = &state.tiers[p as usize][t as usize];
    let (ty, out, ids, keyer) = match identity.and_then(|id| {
        let ty = state.table.names.iter().position(|x| *x == id.node_type)?;
        (id.ids.provider == p && id.ids.tier == t).then_some((ty, id.out, id.ids))
    }) {
        Some((ty, out, ids)) => (ty, out, ids, None),
        None => {
            let ty = (0..state.table.names.len())
                .filter(
                    |&i| matches!(state.table.exec[i], crate::runtime::Exec::Remote(q) if q == p),
                )
                .min_by_key(|&i| (state.table.tokens[i].1 as i64 - max_tokens as i64).abs())
                .unwrap_or(0);
            let ids = AttemptIds {
                workflow: n & 0xffff_ffff,
                node: (n >> 32) as u32,
                provider: p,
                tier: t,
                attempt: 0,
            };
            (ty, max_tokens, ids, Some(state.own_keyer))
        }
    };
    let spec = DrawSpec {
        sampler: &state.table.samplers[ty],
        tail: state.table.tails[ty],
        heavy_tail: state.table.heavy_tails[ty],
        input_tokens: prompt_tokens,
        output_tokens: out,
    };
    let (reply, buckets) = {
        let mut side = state.provider.lock().expect("provider lock");
        // The provider decides when it takes the request, not when it
        // arrived: clock reads under the lock never go backwards, and a
        // bucket that saw a later request first would otherwise ask this
        // one to wait longer than a refill.
        let now = state.clock.sim(Instant::now());
        let r = match &keyer {
            None => side.attempt(now, ids, tier_model, serve.model, ty as u16, &spec),
            Some(k) => side.attempt_keyed(k, now, ids, tier_model, serve.model, ty as u16, &spec),
        };
        (r, [side.bucket(p, t, now), side.token_bucket(p, t, now)])
    };
    let (mut draw, retry_after) = (reply.draw, reply.retry_after);
    if cached {
        // From the cache: no model time, no failure, no limit.
        draw = AttemptDraw {
            duration: SimDuration::ZERO,
            outcome: Outcome::Success,
            ttft: Some(SimDuration::ZERO),
        };
    }
    let real =
        |d: SimDuration| Duration::from_nanos((d.0 as f64 * 1000.0 / state.cfg.time_scale) as u64);
    let done_at = received + real(draw.duration);
    // One fault draw per request, keyed like the attempt.
    let fault = {
        let (a, b) = ids.words();
        let mut rng = keyed(
            state.seed,
            Stream::Emulator,
            [a, b, keyer.is_some() as u64, n * keyer.is_some() as u64],
        );
        let u = unit(&mut rng);
        let mut acc = 0.0;
        state.cfg.faults.iter().find_map(|(f, p)| {
            acc += p;
            (u < acc && !cached).then_some(*f)
        })
    };
    match draw.outcome {
        Outcome::RateLimited => {
            precise_sleep_until(done_at).await;
            // Waits are written in milliseconds to the microsecond, rounded
            // up: a wait of a few simulated microseconds must not be sent as
            // 0.000, which would ask for a resend before the bucket refills.
            let wait_ms = header_ms(retry_after, state.cfg.time_scale);
            // OpenAI's wording, which names the limit.
            let message = match reply.limited_by {
                Limit::Requests => "Rate limit reached on requests per min (RPM)",
                Limit::Tokens => "Rate limit reached on tokens per min (TPM)",
            };
            let mut r = error(429, message);
            let h = r.headers_mut();
            h.insert(
                "retry-after",
                ((wait_ms / 1e3).ceil() as u64)
                    .to_string()
                    .parse()
                    .expect("num"),
            );
            h.insert(
                "retry-after-ms",
                format!("{wait_ms:.3}").parse().expect("num"),
            );
            for (b, unit) in buckets.iter().zip(["requests", "tokens"]) {
                let Some(b) = b else { continue };
                let num = |x: u64| http::HeaderValue::from(x);
                h.insert(
                    http::HeaderName::try_from(format!("x-ratelimit-limit-{unit}")).expect("name"),
                    num(b.limit),
                );
                h.insert(
                    http::HeaderName::try_from(format!("x-ratelimit-remaining-{unit}"))
                        .expect("name"),
                    num(b.remaining),
                );
                let reset_ms = header_ms(b.reset, state.cfg.time_scale);
                h.insert(
                    http::HeaderName::try_from(format!("x-ratelimit-reset-{unit}")).expect("name"),
                    format!("{reset_ms:.3}ms").parse().expect("num"),
                );
            }
            return Ok(r);
        }
        Outcome::Failure => {
            precise_sleep_until(done_at).await;
            return Ok(error(500, "drawn failure"));
        }
        Outcome::Timeout => {
            // The drawn latency exceeds the tier's timeout: answer late.
            precise_sleep_until(received + real(draw.duration) * 3).await;
            return Ok(error(504, "drawn timeout"));
        }
        _ => {}
    }
    if fault == Some(Fault::SlowHeaders) {
        precise_sleep_until(done_at).await;
    }
    let start = Instant::now();
    let tokens = out.max(1);
    let mut usage = serde_json::json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": if chat { tokens } else { 0 },
        "total_tokens": prompt_tokens + if chat { tokens } else { 0 },
    });
    // A tier with a prefix cache reports what it served, as OpenAI does;
    // one that prices cache writes on their own also what it wrote, as
    // Anthropic's API does (and gateways such as LiteLLM pass on).
    if tier_model.prefix_cache.is_some() {
        usage["prompt_tokens_details"] =
            serde_json::json!({"cached_tokens": reply.cached_input_tokens});
        if state.reports_writes[p as usize][t as usize] {
            usage["cache_creation_input_tokens"] = reply.cache_write_tokens.into();
        }
    }
    let model = doc["model"].as_str().unwrap_or_default().to_string();
    if embed || !stream {
        if fault == Some(Fault::Reset) {
            precise_sleep_until(received + (done_at - received) / 2).await;
            let (tx, rx) = mpsc::channel(1);
            let _ = tx.send(Err(std::io::Error::other("reset"))).await;
            return Ok(http::Response::new(EmuBody::Chan(rx)));
        }
        if fault != Some(Fault::SlowHeaders) {
            precise_sleep_until(done_at).await;
        }
        let v = if embed {
            serde_json::json!({
                "object": "list", "model": model,
                "data": [{"object": "embedding", "index": 0, "embedding": [0.0, 0.1, 0.2, 0.3]}],
                "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
            })
        } else {
            serde_json::json!({
                "id": format!("emu-{n}"), "object": "chat.completion", "created": 0, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "tok ".repeat(tokens as usize)}, "finish_reason": "length"}],
                "usage": usage,
            })
        };
        return Ok(json_response(200, v));
    }
    // Streamed chat: tokens against absolute deadlines from `start`.
    let total = if fault == Some(Fault::SlowHeaders) {
        Duration::ZERO
    } else {
        done_at.saturating_duration_since(start)
    };
    // A streaming latency model draws the first token's time; otherwise
    // it is a fixed fraction of the drawn latency.
    let ttft = match draw.ttft {
        Some(t) if fault != Some(Fault::SlowHeaders) => (received + real(t))
            .saturating_duration_since(start)
            .min(total),
        _ => total.mul_f64(state.cfg.ttft_fraction),
    };
    let deadline = move |k: u32| -> Instant {
        if tokens == 1 {
            start + total
        } else {
            start + ttft + (total - ttft).mul_f64((k - 1) as f64 / (tokens - 1) as f64)
        }
    };
    let (tx, rx) = mpsc::channel(16);
    let chunk = |content: &str| {
        format!(
            "data: {{\"id\":\"emu-{n}\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"{model}\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{content}\"}},\"finish_reason\":null}}]}}\n\n"
        )
    };
    let tok = chunk("tok ");
    let finish = format!(
        "data: {{\"id\":\"emu-{n}\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"{model}\",\"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"length\"}}]}}\n\ndata: {{\"id\":\"emu-{n}\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"{model}\",\"choices\":[],\"usage\":{usage}}}\n\ndata: [DONE]\n\n"
    );
    let half = tokens.div_ceil(2);
    // A stall outlasts the tier's timeout (the client cuts it), or lasts
    // 3x the latency where there is none.
    let stall = match tier_model.timeout {
        Some(limit) => real(limit).mul_f64(1.5),
        None => total * 3,
    } + Duration::from_millis(1);
    tokio::spawn(async move {
        let mut k = 1;
        while k <= tokens {
            // Only the end needs the precise (yielding) wait: intermediate
            // tokens go out on the timer wheel, in batches, unless a late
            // wake-up could carry them past the end.
            let end = deadline(tokens);
            if deadline(k) + Duration::from_millis(2) < end {
                tokio::time::sleep_until(deadline(k)).await;
            } else {
                precise_sleep_until(deadline(k)).await;
            }
            let now = Instant::now();
            let mut batch = String::new();
            while k <= tokens && deadline(k) <= now {
                if k == half + 1 || (tokens == 1 && k == 1) {
                    match fault {
                        Some(Fault::Reset) => {
                            let _ = tx.send(Ok(Bytes::from(batch))).await;
                            let _ = tx.send(Err(std::io::Error::other("reset"))).await;
                            return;
                        }
                        Some(Fault::Truncated) => {
                            let _ = tx.send(Ok(Bytes::from(batch))).await;
                            return;
                        }
                        Some(Fault::Stall) => {
                            let _ = tx.send(Ok(Bytes::from(batch))).await;
                            tokio::time::sleep(stall).await;
                            return;
                        }
                        Some(Fault::Malformed) => {
                            batch.push_str("data: {\"choices\": [ {broken\n\n")
                        }
                        _ => {}
                    }
                }
                batch.push_str(&tok);
                k += 1;
            }
            if k > tokens {
                batch.push_str(&finish);
            }
            if tx.send(Ok(Bytes::from(batch))).await.is_err() {
                return; // the client went away
            }
        }
    });
    Ok(http::Response::builder()
        .status(200)
        .header(http::header::CONTENT_TYPE, "text/event-stream")
        .header(http::header::CACHE_CONTROL, "no-cache")
        .body(EmuBody::Chan(rx))
        .expect("valid response"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_waits_round_up_to_the_microsecond_written() {
        // 1 simulated µs at 50x is 20 ns: written as 0.001 ms, not 0.000.
        assert_eq!(format!("{:.3}", header_ms(SimDuration(1), 50.0)), "0.001");
        assert_eq!(header_ms(SimDuration(25_000), 50.0), 0.5);
        assert_eq!(header_ms(SimDuration(25_001), 50.0), 0.501);
        assert_eq!(header_ms(SimDuration(1_500), 1.0), 1.5);
        assert_eq!(header_ms(SimDuration::ZERO, 50.0), 0.0);
    }

    #[test]
    fn faults_parse_with_clear_errors() {
        assert_eq!(Fault::parse("reset=0.25"), Ok((Fault::Reset, 0.25)));
        assert!(Fault::parse("reset").unwrap_err().contains("KIND=PROB"));
        assert!(
            Fault::parse("boom=0.1")
                .unwrap_err()
                .contains("unknown kind")
        );
        assert!(Fault::parse("stall=2").unwrap_err().contains("probability"));
    }

    #[test]
    fn endpoints_name_every_tier_and_model() {
        let s = Scenario::default_research_agent();
        let f = endpoints_for(&s, "127.0.0.1:9".parse().unwrap());
        let llm = &f.providers["llm_provider"];
        assert_eq!(llm.len(), 2);
        assert_eq!(llm[0].model, "llm_provider-t0-large");
        assert_eq!(llm[0].models["small"], "llm_provider-t0-small");
        assert_eq!(
            f.providers["embed_provider"][1].model,
            "embed_provider-t1-default"
        );
        let id = parse_identity(
            "seed=1;wf=3;node=4;provider=1;tier=0;attempt=2;model=0;type=Plan;out=5",
            1,
        )
        .unwrap();
        assert_eq!(
            (id.ids.workflow, id.ids.node, id.ids.attempt, id.out),
            (3, 4, 2, 5)
        );
        assert!(parse_identity("seed=2;wf=3", 1).is_none());
        assert!(
            parse_identity(
                "seed=1;wf=3;node=4;provider=65536;tier=0;attempt=2;model=0;type=Plan;out=5",
                1,
            )
            .is_none(),
            "provider 65536 wrapped to provider 0"
        );
    }
}
