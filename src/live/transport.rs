//! How the live executor reaches a provider: an OpenAI-compatible HTTP
//! client, or an in-process model of the provider (the simulator's own
//! keyed draws) for parity tests and dry runs.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;

use super::proxy::{Answered, Proxies, Routed};
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

use super::endpoints::ResolvedEndpoint;
use super::sse::{SseEvent, SseParser, Usage};
use crate::provider::{Limit, Outcome, ProviderSide};
use crate::runtime::SendAttempt;
use crate::units::{SimDuration, SimTime};

/// The most of an error or 429 body read: enough for any server's
/// message; a longer one is dropped with its connection.
const MAX_ERROR_BODY_BYTES: usize = 64 << 10;

/// The most of an embeddings answer read: far past a batch of vectors
/// (3,072 floats of JSON are about 60 kB). Past it the attempt fails as
/// `body_too_large` instead of holding whatever the server sends.
pub const MAX_EMBED_BODY_BYTES: usize = 64 << 20;

/// A boxed reply future.
pub type ReplyFuture = Pin<Box<dyn Future<Output = Reply> + Send>>;

/// Which API a call uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    /// `POST /chat/completions`, streamed.
    Chat,
    /// `POST /embeddings`.
    Embed,
}

/// One attempt, as the transport sends it.
#[derive(Clone, Debug)]
pub struct CallRequest {
    /// Where.
    pub endpoint: Arc<ResolvedEndpoint>,
    /// Which API.
    pub kind: CallKind,
    /// Model index on the tier.
    pub model: usize,
    /// Prompt size in tokens (a synthetic prompt of about that many).
    pub input_tokens: u32,
    /// `max_tokens`.
    pub output_tokens: u32,
    /// The tier's timeout in real time: the request is aborted then.
    pub timeout: Option<Duration>,
    /// The attempt's identity (`x-agentsched-attempt`), so that the
    /// emulator draws what the simulator would.
    pub identity: Option<String>,
    /// Whose prompt it is: what makes its text distinct.
    pub prompt: Prompt,
}

/// Whose prompt a request sends. A synthetic prompt is filler ("tok tok
/// ..."), so what tells two apart is their first words: providers cache
/// prompts by prefix (OpenAI from 1,024 tokens, vLLM and SGLang in blocks
/// of 16), and prompts that shared their start would be served from that
/// cache, their prefill skipped and their input tokens billed at the
/// cached price, flattering every live latency and cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prompt {
    /// A workflow's call: `run <run> call <workflow>.<node>` first, so no
    /// other call's prompt shares more than its first few tokens with it
    /// (no cache block), in this run or (with `run` drawn afresh for each
    /// run) in an earlier one against the same endpoint. Its attempts
    /// (retries, hedges, escalations) send it alike, as an agent resends
    /// its prompt. A node type with a shared prompt (`shared` tokens)
    /// starts every call with the same `run <run> system <type>` part of
    /// that size, as an agent's calls share their system prompt, and then
    /// the call's own part (at least its `call` head, so that no two calls
    /// are one request).
    Call {
        /// Distinct for each run.
        run: u32,
        /// The workflow's id.
        workflow: u64,
        /// The node's index in its workflow.
        node: u32,
        /// The node type's index.
        node_type: u16,
        /// Leading tokens every call of the type shares in this run.
        shared: u32,
    },
    /// The caching audit's: `sample <n>` first; one `n` sent again is the
    /// same request again.
    Sample(u64),
}

impl Prompt {
    /// The prompt's text, about `tokens` tokens long in common tokenizers
    /// (its head estimated at three characters a token).
    pub fn text(self, tokens: u32) -> String {
        let head = |text: String, tokens: u32| {
            let head_tokens = text.len().div_ceil(3) as u32;
            text + filler(tokens.saturating_sub(head_tokens))
        };
        match self {
            Prompt::Call {
                run,
                workflow,
                node,
                shared: 0,
                ..
            } => head(format!("run {run:08x} call {workflow}.{node} "), tokens),
            Prompt::Call {
                run,
                workflow,
                node,
                node_type,
                shared,
            } => {
                let shared = shared.min(tokens);
                let common = head(format!("run {run:08x} system {node_type} "), shared);
                common + &head(format!("call {workflow}.{node} "), tokens - shared)
            }
            Prompt::Sample(n) => head(format!("sample {n} "), tokens),
        }
    }
}

/// A number that differs from run to run, for [`Prompt::Call`]'s `run`:
/// std's per-process random hash keys, hashed with the clock.
pub fn run_nonce() -> u32 {
    use std::hash::BuildHasher;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let h = std::hash::RandomState::new().hash_one((now, std::process::id()));
    (h ^ (h >> 32)) as u32
}

/// How an attempt ended, with its real timestamps.
#[derive(Clone, Debug, Default)]
pub struct Reply {
    /// Success, Failure, Timeout or RateLimited.
    pub outcome: Option<Outcome>,
    /// HTTP status, when a response came.
    pub status: Option<u16>,
    /// What went wrong (`connect`, `reset`, `http_500`, `malformed_sse`,
    /// `truncated`, `timeout`, `rate_limited`, ...).
    pub error: Option<String>,
    /// What the server said of an error status but 429 (see
    /// [`error_message`]).
    pub error_message: Option<String>,
    /// The wait a 429 asked for, in real time.
    pub retry_after: Option<Duration>,
    /// The limit a 429 named.
    pub limited_by: Option<Limit>,
    /// A model reply's time to first token, in scenario time (a real
    /// reply's is measured: `first_token`).
    pub ttft: Option<SimDuration>,
    /// The request went out (the transport started on it).
    pub sent: Option<Instant>,
    /// Usage the server reported.
    pub usage: Option<Usage>,
    /// Response headers arrived.
    pub first_byte: Option<Instant>,
    /// First generated text: content or reasoning.
    pub first_token: Option<Instant>,
    /// The attempt ended.
    pub done: Option<Instant>,
    /// Content chunks received.
    pub chunks: u32,
    /// The `x-ratelimit-*` headers of the response, when it had any.
    pub rate_headers: Option<RateHeaders>,
    /// How many times the request went again because a kept-alive
    /// connection closed under it (see `proxy::Answered`).
    pub resent: u8,
}

/// What a response's `x-ratelimit-*` headers said (OpenAI's names; resets in
/// real time). `calibrate` estimates a tier's bucket from them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RateHeaders {
    /// `x-ratelimit-limit-requests`.
    pub limit_requests: Option<u64>,
    /// `x-ratelimit-remaining-requests`.
    pub remaining_requests: Option<u64>,
    /// `x-ratelimit-reset-requests`: until the request bucket is full again.
    pub reset_requests: Option<Duration>,
    /// `x-ratelimit-limit-tokens`.
    pub limit_tokens: Option<u64>,
    /// `x-ratelimit-remaining-tokens`.
    pub remaining_tokens: Option<u64>,
    /// `x-ratelimit-reset-tokens`.
    pub reset_tokens: Option<Duration>,
}

impl RateHeaders {
    /// The headers' values, or None when the response had none of them.
    pub fn parse(headers: &http::HeaderMap) -> Option<RateHeaders> {
        let get = |k: &str| headers.get(k).and_then(|v| v.to_str().ok());
        let count = |k: &str| get(k).and_then(|v| v.trim().parse::<u64>().ok());
        let h = RateHeaders {
            limit_requests: count("x-ratelimit-limit-requests"),
            remaining_requests: count("x-ratelimit-remaining-requests"),
            reset_requests: get("x-ratelimit-reset-requests").and_then(parse_go_duration),
            limit_tokens: count("x-ratelimit-limit-tokens"),
            remaining_tokens: count("x-ratelimit-remaining-tokens"),
            reset_tokens: get("x-ratelimit-reset-tokens").and_then(parse_go_duration),
        };
        (h != RateHeaders::default()).then_some(h)
    }
}

impl Reply {
    fn failed(kind: impl Into<String>) -> Reply {
        Reply {
            outcome: Some(Outcome::Failure),
            error: Some(kind.into()),
            done: Some(Instant::now()),
            ..Reply::default()
        }
    }
}

/// What sends attempts.
pub trait Transport {
    /// A reply known at send time, with the attempt's duration in scenario
    /// time: an in-process model answers this way, so that the executor can
    /// deliver it at exactly that time. Real transports return `None`.
    fn immediate(&mut self, _now: SimTime, _a: &SendAttempt<'_>) -> Option<(SimDuration, Reply)> {
        None
    }
    /// Sends `req`; the future resolves when the attempt ended.
    fn call(&mut self, req: CallRequest) -> ReplyFuture;
}

/// The provider model in process: the simulator's keyed draws and
/// provider-enforced buckets, answered at send time. Used by the parity
/// test (on tokio's paused clock) and for dry runs of the executor.
#[derive(Debug)]
pub struct ModelTransport {
    provider: ProviderSide,
}

impl ModelTransport {
    /// The model of `s`'s providers.
    pub fn new(s: &crate::scenario::Scenario) -> ModelTransport {
        ModelTransport {
            provider: ProviderSide::new(s),
        }
    }
}

impl Transport for ModelTransport {
    fn immediate(&mut self, now: SimTime, a: &SendAttempt<'_>) -> Option<(SimDuration, Reply)> {
        let r = self
            .provider
            .attempt(now, a.ids, a.tier, a.model as usize, a.node_type, &a.spec);
        let reply = Reply {
            outcome: Some(r.draw.outcome),
            retry_after: Some(Duration::from_micros(r.retry_after.0)),
            limited_by: (r.draw.outcome == Outcome::RateLimited).then_some(r.limited_by),
            ttft: r.draw.ttft,
            // A prefix cache's hit or write, reported as a server that
            // reports both (a gateway in front of Anthropic) does.
            usage: (r.cached_input_tokens > 0 || r.cache_write_tokens > 0).then_some(Usage {
                prompt: a.input_tokens,
                completion: a.output_tokens,
                cached_prompt: Some(r.cached_input_tokens),
                cache_write: Some(r.cache_write_tokens),
            }),
            ..Reply::default()
        };
        Some((r.draw.duration, reply))
    }

    fn call(&mut self, _req: CallRequest) -> ReplyFuture {
        unreachable!("the model transport answers every attempt at send time")
    }
}

/// The pooled client: TLS (`https://`) or plain TCP (`http://`), directly
/// or through a proxy.
type HttpClient = Client<Bounded<Routed>, Full<Bytes>>;

/// An OpenAI-compatible HTTP/1.1 client with a connection pool, over
/// plain TCP (`http://`) or TLS (`https://`), through the environment's
/// HTTP proxies ([`super::proxy`]).
#[derive(Clone, Debug)]
pub struct HttpTransport {
    client: HttpClient,
    proxies: Arc<Proxies>,
}

impl Default for HttpTransport {
    fn default() -> Self {
        Self::new()
    }
}

/// How long a connection may take to open (TCP, then the TLS handshake
/// for `https://`) before the attempt fails as `connect`. In real time
/// (connecting is the network's business, not the scenario's), and
/// independent of the tier's timeout, which bounds the whole request when
/// the tier has one. Without it, an endpoint that drops connection
/// requests (a dead host, a full accept queue) held a slot for the
/// operating system's own limit, about two minutes on Linux, and one that
/// accepts but never answers the handshake held it for ever.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How many times a request lost with a kept-alive connection the server
/// closed is sent again (each time on another connection).
const MAX_RESENDS_ON_CLOSED: u8 = 2;

/// A connector that gives up on a connection that is not open, handshake
/// included, within `limit`.
#[derive(Clone, Debug)]
struct Bounded<C> {
    inner: C,
    limit: Duration,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<C> tower_service::Service<http::Uri> for Bounded<C>
where
    C: tower_service::Service<http::Uri>,
    C::Error: Into<BoxError>,
    C::Future: Send + 'static,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, BoxError>> + Send>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let (opening, limit) = (self.inner.call(uri), self.limit);
        Box::pin(async move {
            match tokio::time::timeout(limit, opening).await {
                Ok(opened) => opened.map_err(Into::into),
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connection not open within {limit:?}"),
                )
                .into()),
            }
        })
    }
}

/// The certificates an `https://` endpoint may chain to: Mozilla's roots
/// (built in, so that a bare container works) and the system's store
/// (where a company's own CA lives), or instead of the latter the file or
/// directory `SSL_CERT_FILE` / `SSL_CERT_DIR` name. Loaded once a process.
fn trusted_roots() -> Arc<rustls::RootCertStore> {
    static ROOTS: OnceLock<Arc<rustls::RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            // A certificate the store cannot parse is skipped, as a
            // browser would; so is a store that cannot be read.
            let (_added, _skipped) =
                roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            Arc::new(roots)
        })
        .clone()
}

impl HttpTransport {
    /// A client keeping idle connections per host, giving up on a
    /// connection after [`CONNECT_TIMEOUT`], trusting the usual roots,
    /// through the proxies the environment names.
    pub fn new() -> HttpTransport {
        Self::with_connect_timeout(CONNECT_TIMEOUT)
    }

    /// [`new`](Self::new) with another connect timeout.
    pub fn with_connect_timeout(limit: Duration) -> HttpTransport {
        let mut tcp = HttpConnector::new();
        tcp.set_nodelay(true);
        // The TLS layer on top sees `https://` URIs too.
        tcp.enforce_http(false);
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring's provider supports TLS 1.2 and 1.3")
        .with_root_certificates(trusted_roots())
        .with_no_client_auth();
        let proxies = Arc::new(Proxies::from_env());
        let connector = Bounded {
            inner: Routed::new(tcp, tls, proxies.clone()),
            limit,
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1024)
            .build(connector);
        HttpTransport { client, proxies }
    }
}

/// Whether a request failed in the TLS layer (a certificate the roots do
/// not vouch for, a handshake the server broke off), somewhere down the
/// error's chain of causes. `io::Error` hides the error it wraps from
/// `source()`, so each is opened with `get_ref()`.
fn caused_by_tls(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(err) = cause {
        if err.is::<rustls::Error>() {
            return true;
        }
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            && caused_by_tls(inner)
        {
            return true;
        }
        cause = err.source();
    }
    false
}

/// Filler of about `tokens` tokens ("tok " is one token in common
/// tokenizers).
fn filler(tokens: u32) -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    const MAX: usize = 1 << 17;
    let text = TEXT.get_or_init(|| "tok ".repeat(MAX));
    &text[..4 * (tokens as usize).min(MAX)]
}

fn request_body(req: &CallRequest) -> Bytes {
    let model = &req.endpoint.models[req.model];
    let text = req.prompt.text(req.input_tokens);
    let mut body = match req.kind {
        CallKind::Chat => {
            let mut body = serde_json::json!({
                "model": model,
                "messages": [{"role": "user", "content": text}],
                "stream": true,
                "stream_options": {"include_usage": true},
            });
            body[req.endpoint.max_tokens_param.name()] = req.output_tokens.max(1).into();
            body
        }
        CallKind::Embed => serde_json::json!({
            "model": model,
            "input": text,
        }),
    };
    // The endpoint's own fields (validated not to be any of the above).
    for (k, v) in &req.endpoint.extra_body {
        body[k] = v.clone();
    }
    Bytes::from(serde_json::to_vec(&body).expect("request serializes"))
}

/// At most this many characters of a server's error message are kept.
pub const MAX_ERROR_MESSAGE_CHARS: usize = 300;

/// What an error response's body says, for people: OpenAI's
/// `error.message` (or an `error` string), vLLM's and others' `message`,
/// FastAPI's `detail`, else the body's text; whitespace collapsed, at most
/// [`MAX_ERROR_MESSAGE_CHARS`] characters (an ellipsis marks a cut), with
/// `secret` (the endpoint's key, should the server echo it) masked. None for
/// an empty body.
pub fn error_message(body: &[u8], secret: &str) -> Option<String> {
    use serde_json::Value;
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    };
    let said = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
        let error = v.get("error");
        error
            .and_then(|e| e.get("message"))
            .and_then(text)
            .or_else(|| error.filter(|e| e.is_string()).and_then(text))
            .or_else(|| v.get("message").and_then(text))
            .or_else(|| v.get("detail").and_then(text))
    });
    let mut said = said.unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    if !secret.is_empty() {
        said = said.replace(secret, "***");
    }
    let words: Vec<&str> = said.split_whitespace().collect();
    if words.is_empty() {
        return None;
    }
    let whole = words.join(" ");
    Some(match whole.char_indices().nth(MAX_ERROR_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &whole[..cut]),
        None => whole,
    })
}

/// The key an endpoint sends (its auth header's value, `Bearer ` taken
/// off); "" without one, or one too short to mask without masking words.
fn key_of(ep: &ResolvedEndpoint) -> &str {
    let Some(value) = ep.auth.as_ref().and_then(|(_, v)| v.to_str().ok()) else {
        return "";
    };
    let key = value.strip_prefix("Bearer ").unwrap_or(value).trim();
    if key.len() < 8 { "" } else { key }
}

/// Which limit a 429 is about. OpenAI names it in the message ("... on
/// tokens per min (TPM)" / "on requests per min (RPM)"); without that, the
/// exhausted bucket in the `x-ratelimit-remaining-*` headers decides, and
/// requests are the default.
pub fn limit_of_429(headers: &http::HeaderMap, body: &[u8]) -> Limit {
    let text = String::from_utf8_lossy(body).to_ascii_lowercase();
    if text.contains("tokens per min") || text.contains("(tpm)") {
        return Limit::Tokens;
    }
    if text.contains("requests per min") || text.contains("(rpm)") {
        return Limit::Requests;
    }
    let remaining = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    match (
        remaining("x-ratelimit-remaining-requests"),
        remaining("x-ratelimit-remaining-tokens"),
    ) {
        (Some(0), _) | (_, None) => Limit::Requests,
        (_, Some(_)) => Limit::Tokens,
    }
}

/// The wait a 429 asks for: `retry-after-ms`, then the refused limit's
/// `x-ratelimit-reset-requests` or `-tokens` (`1s`, `20ms`, `1m30s`), then
/// `retry-after` (seconds, or an HTTP date: the wait until then).
pub fn retry_after(headers: &http::HeaderMap, limit: Limit) -> Option<Duration> {
    retry_after_at(headers, limit, std::time::SystemTime::now())
}

/// [`retry_after`] with the clock read as `now`.
fn retry_after_at(
    headers: &http::HeaderMap,
    limit: Limit,
    now: std::time::SystemTime,
) -> Option<Duration> {
    let get = |k: &str| headers.get(k).and_then(|v| v.to_str().ok());
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1e3));
    }
    let reset = match limit {
        Limit::Requests => "x-ratelimit-reset-requests",
        Limit::Tokens => "x-ratelimit-reset-tokens",
    };
    if let Some(d) = get(reset).and_then(parse_go_duration) {
        return Some(d);
    }
    let after = get("retry-after")?.trim();
    match after.parse::<f64>() {
        Ok(s) => (s.is_finite() && s >= 0.0).then(|| Duration::from_secs_f64(s)),
        // RFC 9110's other form; a date already past asks for no wait.
        Err(_) => httpdate::parse_http_date(after)
            .ok()
            .map(|at| at.duration_since(now).unwrap_or(Duration::ZERO)),
    }
}

/// Parses durations like `1s`, `250ms`, `1m30s`, `0.5s`, `6m0s`.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut total = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_end] {
            "ms" => 1e-3,
            "s" | "" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "us" | "µs" => 1e-6,
            _ => return None,
        };
        total += value * factor;
        rest = &rest[unit_end..];
    }
    Some(Duration::from_secs_f64(total))
}

async fn send_http(client: HttpClient, proxies: Arc<Proxies>, req: CallRequest) -> Reply {
    let ep = &req.endpoint;
    let path = match req.kind {
        CallKind::Chat => "/chat/completions",
        CallKind::Embed => "/embeddings",
    };
    let Ok(uri) = format!(
        "{}://{}{}{}{}",
        ep.scheme(),
        ep.authority,
        ep.path,
        path,
        ep.query
    )
    .parse::<http::Uri>() else {
        return Reply::failed("bad_request");
    };
    // A forwarding proxy reads its credentials from every request (a
    // tunnel's go with its CONNECT).
    let forward_auth = if ep.tls {
        None
    } else {
        proxies.for_uri(&uri).and_then(|p| p.basic_auth().cloned())
    };
    let mut b = http::Request::post(uri)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "text/event-stream, application/json");
    if let Some((name, value)) = &ep.auth {
        b = b.header(name, value.clone());
    }
    for (k, v) in &ep.headers {
        b = b.header(k, v);
    }
    if let Some(id) = &req.identity {
        b = b.header(super::IDENTITY_HEADER, id.as_str());
    }
    if let Some(auth) = forward_auth {
        b = b.header(http::header::PROXY_AUTHORIZATION, auth);
    }
    let request = match b.body(Full::new(request_body(&req))) {
        Ok(r) => r,
        Err(_) => return Reply::failed("bad_request"),
    };
    let mut resent = 0u8;
    let resp = loop {
        // The body is shared bytes: a copy to resend costs no copying.
        let mut again = http::Request::new(request.body().clone());
        *again.method_mut() = request.method().clone();
        *again.uri_mut() = request.uri().clone();
        *again.headers_mut() = request.headers().clone();
        match client.request(again).await {
            Ok(r) => {
                Answered::mark(r.extensions());
                break r;
            }
            // Sent on a kept-alive connection as the server closed it (see
            // `Answered`): it goes again, as Go's client resends a request
            // on a reused connection that nothing came back on. Each such
            // connection fails at once and leaves the pool.
            Err(e) if resent < MAX_RESENDS_ON_CLOSED && !e.is_connect() && Answered::before(&e) => {
                resent += 1;
            }
            Err(e) => {
                let kind = if caused_by_tls(&e) {
                    "tls"
                } else if e.is_connect() {
                    "connect"
                } else {
                    "reset"
                };
                return Reply {
                    resent,
                    ..Reply::failed(kind)
                };
            }
        }
    };
    let mut reply = Reply {
        status: Some(resp.status().as_u16()),
        first_byte: Some(Instant::now()),
        resent,
        ..Reply::default()
    };
    let status = resp.status();
    reply.rate_headers = RateHeaders::parse(resp.headers());
    if status == http::StatusCode::TOO_MANY_REQUESTS {
        let headers = resp.headers().clone();
        // Read the body (it names the limit) so the connection can be
        // reused; one past any real error message is ignored.
        let body = Limited::new(resp.into_body(), MAX_ERROR_BODY_BYTES)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let limit = limit_of_429(&headers, &body);
        reply.retry_after = retry_after(&headers, limit);
        reply.limited_by = Some(limit);
        reply.outcome = Some(Outcome::RateLimited);
        reply.error = Some("rate_limited".into());
        reply.done = Some(Instant::now());
        return reply;
    }
    if !status.is_success() {
        // Read whole (so the connection can be reused) and kept for
        // people: "model not found", "max_tokens is not supported".
        let body = Limited::new(resp.into_body(), MAX_ERROR_BODY_BYTES)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        reply.error_message = error_message(&body, key_of(&req.endpoint));
        reply.outcome = Some(Outcome::Failure);
        reply.error = Some(format!("http_{}", status.as_u16()));
        reply.done = Some(Instant::now());
        return reply;
    }
    let mut body = resp.into_body();
    match req.kind {
        CallKind::Embed => {
            let bytes = match Limited::new(body, MAX_EMBED_BODY_BYTES).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) if e.is::<LengthLimitError>() => return Reply::failed("body_too_large"),
                Err(_) => return Reply::failed("truncated"),
            };
            reply.done = Some(Instant::now());
            match serde_json::from_slice::<serde_json::Value>(&bytes) {
                Ok(v) if v.get("data").is_some() => {
                    reply.outcome = Some(Outcome::Success);
                    reply.usage = v
                        .get("usage")
                        .filter(|u| u.get("prompt_tokens").is_some_and(|t| t.is_u64()))
                        .map(|u| Usage {
                            completion: 0,
                            ..Usage::from_json(u)
                        });
                }
                _ => {
                    reply.outcome = Some(Outcome::Failure);
                    reply.error = Some("malformed_json".into());
                }
            }
            reply
        }
        CallKind::Chat => {
            let mut parser = SseParser::default();
            let mut finished = false;
            loop {
                let frame = match body.frame().await {
                    None => break,
                    Some(Ok(f)) => f,
                    Some(Err(_)) => {
                        reply.error = Some("reset".into());
                        break;
                    }
                };
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                for ev in parser.push(&data) {
                    match ev {
                        SseEvent::Content => {
                            reply.chunks += 1;
                            if reply.first_token.is_none() {
                                reply.first_token = Some(Instant::now());
                            }
                        }
                        SseEvent::Usage(u) => reply.usage = Some(u),
                        SseEvent::Finish => finished = true,
                        SseEvent::Done => {
                            // The answer is complete here; the end of the
                            // body is only the connection's bookkeeping.
                            finished = true;
                            reply.done.get_or_insert_with(Instant::now);
                        }
                        SseEvent::Error(kind) => {
                            reply.error.get_or_insert(kind);
                        }
                    }
                }
            }
            reply.done.get_or_insert_with(Instant::now);
            if reply.error.is_none() && !finished {
                reply.error = Some("truncated".into());
            }
            reply.outcome = Some(if reply.error.is_none() {
                Outcome::Success
            } else {
                Outcome::Failure
            });
            reply
        }
    }
}

impl Transport for HttpTransport {
    fn call(&mut self, req: CallRequest) -> ReplyFuture {
        let (client, proxies) = (self.client.clone(), self.proxies.clone());
        Box::pin(async move {
            let sent = Instant::now();
            let timeout = req.timeout;
            let work = send_http(client, proxies, req);
            let mut reply = match timeout {
                None => work.await,
                Some(limit) => match tokio::time::timeout(limit, work).await {
                    Ok(r) => r,
                    Err(_) => Reply {
                        outcome: Some(Outcome::Timeout),
                        error: Some("timeout".into()),
                        done: Some(Instant::now()),
                        ..Reply::default()
                    },
                },
            };
            reply.sent = Some(sent);
            reply
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_headers_parsed_when_present() {
        let mut h = http::HeaderMap::new();
        assert_eq!(RateHeaders::parse(&h), None);
        h.insert("x-ratelimit-limit-requests", "20".parse().unwrap());
        h.insert("x-ratelimit-remaining-requests", "0".parse().unwrap());
        h.insert("x-ratelimit-reset-requests", "1.5s".parse().unwrap());
        h.insert("x-ratelimit-remaining-tokens", "junk".parse().unwrap());
        let r = RateHeaders::parse(&h).unwrap();
        assert_eq!(r.limit_requests, Some(20));
        assert_eq!(r.remaining_requests, Some(0));
        assert_eq!(r.reset_requests, Some(Duration::from_millis(1500)));
        assert_eq!(r.remaining_tokens, None);
        assert_eq!(r.limit_tokens, None);
    }

    #[test]
    fn retry_after_headers_in_order_of_precision() {
        let mut h = http::HeaderMap::new();
        let r = Limit::Requests;
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&h, r), Some(Duration::from_secs(2)));
        h.insert("x-ratelimit-reset-requests", "1m30s".parse().unwrap());
        h.insert("x-ratelimit-reset-tokens", "6s".parse().unwrap());
        assert_eq!(retry_after(&h, r), Some(Duration::from_secs(90)));
        assert_eq!(retry_after(&h, Limit::Tokens), Some(Duration::from_secs(6)));
        h.insert("retry-after-ms", "250".parse().unwrap());
        assert_eq!(retry_after(&h, r), Some(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(parse_go_duration("0.5s"), Some(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("soon"), None);
        assert_eq!(retry_after(&http::HeaderMap::new(), r), None);
        // Retry-After as an HTTP date (RFC 9110): the wait until then.
        let mut h = http::HeaderMap::new();
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        let at = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        let now = at - Duration::from_secs(7);
        assert_eq!(retry_after_at(&h, r, now), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after_at(&h, r, at + Duration::from_secs(3)),
            Some(Duration::ZERO)
        );
        h.insert("retry-after", "tomorrow".parse().unwrap());
        assert_eq!(retry_after_at(&h, r, now), None);
        h.insert("retry-after", "-1".parse().unwrap());
        assert_eq!(retry_after_at(&h, r, now), None);
    }

    #[test]
    fn an_error_bodys_message_is_kept_as_servers_write_it() {
        let said = |body: &str| error_message(body.as_bytes(), "");
        // OpenAI.
        assert_eq!(
            said(
                r#"{"error":{"message":"Unsupported parameter: 'max_tokens' is not supported with this model.","type":"invalid_request_error","param":"max_tokens","code":"unsupported_parameter"}}"#
            )
            .as_deref(),
            Some("Unsupported parameter: 'max_tokens' is not supported with this model.")
        );
        // vLLM, an `error` string, FastAPI's `detail` (a string or not).
        assert_eq!(
            said(r#"{"object":"error","message":"The model `x` does not exist.","type":"NotFoundError","code":404}"#)
                .as_deref(),
            Some("The model `x` does not exist.")
        );
        assert_eq!(
            said(r#"{"error":"model not loaded"}"#).as_deref(),
            Some("model not loaded")
        );
        assert_eq!(
            said(r#"{"detail":"Not Found"}"#).as_deref(),
            Some("Not Found")
        );
        assert_eq!(
            said(r#"{"detail":[{"loc":["body","model"],"msg":"field required"}]}"#).as_deref(),
            Some(r#"[{"loc":["body","model"],"msg":"field required"}]"#)
        );
        // Not JSON, or JSON without a message: the text, whitespace collapsed.
        assert_eq!(
            said("<html>\n  <h1>502 Bad Gateway</h1>\n</html>\n").as_deref(),
            Some("<html> <h1>502 Bad Gateway</h1> </html>")
        );
        assert_eq!(said(r#"{"ok":false}"#).as_deref(), Some(r#"{"ok":false}"#));
        assert_eq!(said(""), None);
        assert_eq!(said(" \n\t"), None);
        assert_eq!(
            said(r#"{"error":{"message":null}}"#).as_deref(),
            Some(r#"{"error":{"message":null}}"#)
        );
        assert_eq!(
            error_message(b"bad \xff byte", "").as_deref(),
            Some("bad \u{fffd} byte")
        );
        // A key the server echoes is masked, before the cut (unmasked, this
        // one would be cut inside the key).
        let echoed = format!(
            r#"{{"error":{{"message":"{} Incorrect API key provided: sk-test-12345678"}}}}"#,
            "x".repeat(260)
        );
        let masked = error_message(echoed.as_bytes(), "sk-test-12345678").unwrap();
        assert!(
            !masked.contains("sk-test") && masked.ends_with("provided: ***"),
            "{masked}"
        );
        // Long ones are cut at a character, not a byte.
        let long = "é".repeat(MAX_ERROR_MESSAGE_CHARS + 50);
        let cut = said(&long).unwrap();
        assert_eq!(cut.chars().count(), MAX_ERROR_MESSAGE_CHARS + 1);
        assert!(cut.ends_with("é…"));
        let exact = "a".repeat(MAX_ERROR_MESSAGE_CHARS);
        assert_eq!(said(&exact).as_deref(), Some(exact.as_str()));
    }

    #[test]
    fn a_429_names_its_limit_by_message_then_headers() {
        let mut h = http::HeaderMap::new();
        let openai_tpm = br#"{"error":{"message":"Rate limit reached for gpt-4o in organization org-x on tokens per min (TPM): Limit 30000, Used 29000, Requested 2000."}}"#;
        assert_eq!(limit_of_429(&h, openai_tpm), Limit::Tokens);
        assert_eq!(
            limit_of_429(&h, b"on requests per min (RPM)"),
            Limit::Requests
        );
        assert_eq!(limit_of_429(&h, b""), Limit::Requests);
        h.insert("x-ratelimit-remaining-requests", "3".parse().unwrap());
        h.insert("x-ratelimit-remaining-tokens", "120".parse().unwrap());
        assert_eq!(limit_of_429(&h, b"slow down"), Limit::Tokens);
        h.insert("x-ratelimit-remaining-requests", "0".parse().unwrap());
        assert_eq!(limit_of_429(&h, b"slow down"), Limit::Requests);
    }

    /// Answers one request on 127.0.0.1 with `status` and a body of
    /// `fill` spaces then `tail`, written until the client hangs up.
    fn serve_once(status: &str, fill: usize, tail: &'static [u8]) -> Arc<ResolvedEndpoint> {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let head = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            fill + tail.len()
        );
        std::thread::spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let _ = c.read(&mut [0u8; 4096]);
            let spaces = [b' '; 1 << 16];
            let mut left = fill;
            let mut ok = c.write_all(head.as_bytes()).is_ok();
            while ok && left > 0 {
                let n = left.min(spaces.len());
                ok = c.write_all(&spaces[..n]).is_ok();
                left -= n;
            }
            let _ = ok && c.write_all(tail).is_ok();
        });
        loopback(addr, false)
    }

    #[test]
    fn the_key_masked_in_messages_is_the_one_the_endpoint_sends() {
        let addr = "127.0.0.1:9".parse().unwrap();
        let with = |name: &str, value: &str| ResolvedEndpoint {
            auth: Some((
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_str(value).unwrap(),
            )),
            ..(*loopback(addr, false)).clone()
        };
        let bearer = with("authorization", "Bearer sk-proj-abcdefgh");
        assert_eq!(key_of(&bearer), "sk-proj-abcdefgh");
        assert_eq!(
            key_of(&with("api-key", "0123456789abcdef")),
            "0123456789abcdef"
        );
        // Too short to mask without masking words; none at all.
        assert_eq!(key_of(&with("api-key", "abc")), "");
        assert_eq!(key_of(&loopback(addr, false)), "");
    }

    /// The endpoint of a test server at `addr` (`https://` if `tls`).
    fn loopback(addr: std::net::SocketAddr, tls: bool) -> Arc<ResolvedEndpoint> {
        let ep = ResolvedEndpoint {
            tls,
            authority: addr.to_string(),
            path: "/v1".into(),
            query: String::new(),
            models: vec!["m".into()],
            auth: None,
            headers: Vec::new(),
            max_tokens_param: Default::default(),
            extra_body: Default::default(),
            base_url: String::new(),
        };
        let base_url = format!("{}://{addr}/v1", ep.scheme());
        Arc::new(ResolvedEndpoint { base_url, ..ep })
    }

    fn embed_request(endpoint: Arc<ResolvedEndpoint>) -> CallRequest {
        CallRequest {
            endpoint,
            kind: CallKind::Embed,
            model: 0,
            input_tokens: 4,
            output_tokens: 0,
            timeout: Some(Duration::from_secs(60)),
            identity: None,
            prompt: Prompt::Sample(0),
        }
    }

    #[tokio::test]
    async fn an_oversized_answer_is_a_failure_not_a_buffer() {
        // Read whole, it would be `{}` after the spaces: JSON without
        // `data`, a `malformed_json` failure rather than this one.
        let ep = serve_once("200 OK", MAX_EMBED_BODY_BYTES, b"{}");
        let reply = HttpTransport::new().call(embed_request(ep)).await;
        assert_eq!(reply.outcome, Some(Outcome::Failure));
        assert_eq!(reply.error.as_deref(), Some("body_too_large"));
        // An answer just under the limit is read and judged as JSON.
        let ep = serve_once("200 OK", MAX_EMBED_BODY_BYTES - 2, b"{}");
        let reply = HttpTransport::new().call(embed_request(ep)).await;
        assert_eq!(reply.error.as_deref(), Some("malformed_json"));
    }

    #[tokio::test]
    async fn a_429_body_past_the_limit_is_not_read_for_its_limit() {
        let says_tokens = b"on tokens per min (TPM)";
        let ep = serve_once("429 Too Many Requests", 16, says_tokens);
        let reply = HttpTransport::new().call(embed_request(ep)).await;
        assert_eq!(reply.limited_by, Some(Limit::Tokens));
        let ep = serve_once("429 Too Many Requests", MAX_ERROR_BODY_BYTES, says_tokens);
        let reply = HttpTransport::new().call(embed_request(ep)).await;
        assert_eq!(reply.outcome, Some(Outcome::RateLimited));
        assert_eq!(reply.limited_by, Some(Limit::Requests));
    }

    /// Sends `request` through a client with a connect timeout of
    /// `limit`; returns its reply and how long it took. Bounded: without
    /// the timeout the attempt would wait for the operating system
    /// (minutes) or for ever.
    async fn call_within(limit: Duration, request: CallRequest) -> (Reply, Duration) {
        let started = std::time::Instant::now();
        let reply = tokio::time::timeout(
            Duration::from_secs(20),
            HttpTransport::with_connect_timeout(limit).call(request),
        )
        .await
        .expect("the attempt ended at the connect timeout");
        (reply, started.elapsed())
    }

    /// A server that accepts the connection and never answers the TLS
    /// handshake fails the attempt as `connect` at the connect timeout.
    #[tokio::test]
    async fn a_handshake_that_never_ends_fails_at_the_connect_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let silent = tokio::spawn(async move {
            let (_connection, _) = listener.accept().await.unwrap();
            std::future::pending::<()>().await
        });
        let limit = Duration::from_millis(300);
        let request = CallRequest {
            timeout: None,
            ..embed_request(loopback(addr, true))
        };
        let (reply, waited) = call_within(limit, request).await;
        assert_eq!(reply.error.as_deref(), Some("connect"));
        assert_eq!(reply.outcome, Some(Outcome::Failure));
        assert!(waited >= limit, "failed after {waited:?}");
        silent.abort();
    }

    /// An endpoint whose accept queue is full leaves a connection request
    /// unanswered (Linux drops the SYN), as a dead host does: the attempt
    /// fails as `connect` at the connect timeout, though the request has
    /// no timeout of its own.
    #[tokio::test]
    async fn a_connection_that_never_opens_fails_at_the_connect_timeout() {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        // Backlog 0: one connection fills the queue (never accepted).
        let listener = socket.listen(0).unwrap();
        let addr = listener.local_addr().unwrap();
        let _queued = std::net::TcpStream::connect(addr).unwrap();
        let limit = Duration::from_millis(300);
        let request = CallRequest {
            timeout: None,
            ..embed_request(loopback(addr, false))
        };
        let (reply, waited) = call_within(limit, request).await;
        assert_eq!(reply.error.as_deref(), Some("connect"));
        assert_eq!(reply.outcome, Some(Outcome::Failure));
        // It waited for the limit: the connection was not refused outright.
        assert!(waited >= limit, "failed after {waited:?}");
        drop(listener);
    }

    /// A server that answers the first `answers` requests on each
    /// connection, then reads the next and closes the connection without
    /// answering it, as a server that closes a kept-alive connection does
    /// when a request crosses the close. Returns the endpoint and the count
    /// of connections it accepted.
    fn serve_dropping(
        answers: usize,
    ) -> (Arc<ResolvedEndpoint>, Arc<std::sync::atomic::AtomicUsize>) {
        use std::io::{Read, Write};
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            for c in listener.incoming() {
                let Ok(mut c) = c else { return };
                count.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                    let body = br#"{"data":[{"embedding":[0.5]}],"usage":{"prompt_tokens":4}}"#;
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                        body.len()
                    );
                    let mut buf = [0u8; 8192];
                    // Each request is small: one read holds it whole.
                    for _ in 0..answers {
                        if !matches!(c.read(&mut buf), Ok(n) if n > 0)
                            || c.write_all(head.as_bytes()).is_err()
                            || c.write_all(body).is_err()
                        {
                            return;
                        }
                    }
                    let _ = c.read(&mut buf);
                });
            }
        });
        (loopback(addr, false), accepted)
    }

    /// llama.cpp's server closes the connection after every streamed
    /// answer without saying so; a request sent on it as it closes is lost
    /// unread. It goes again on a new connection, and only then: a request
    /// lost on a connection that never answered is the endpoint's failure.
    #[tokio::test]
    async fn a_request_lost_with_a_closed_kept_alive_connection_goes_again() {
        use std::sync::atomic::Ordering;
        let mut t = HttpTransport::new();
        let (ep, accepted) = serve_dropping(1);
        for call in 0..3 {
            let reply = t.call(embed_request(ep.clone())).await;
            assert_eq!(
                reply.outcome,
                Some(Outcome::Success),
                "call {call}: {reply:?}"
            );
            assert_eq!(reply.resent, (call > 0) as u8, "call {call}");
        }
        // Each call after the first met the closed connection, then a new one.
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
        let (ep, accepted) = serve_dropping(0);
        let reply = t.call(embed_request(ep)).await;
        assert_eq!(reply.error.as_deref(), Some("reset"));
        assert_eq!(reply.resent, 0);
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "not sent again");
    }

    #[test]
    fn prompts_have_the_asked_size() {
        assert_eq!(filler(3), "tok tok tok ");
        assert_eq!(filler(0), "");
        // "sample 3 " is estimated at 3 tokens.
        assert_eq!(Prompt::Sample(3).text(5), "sample 3 tok tok ");
        assert_eq!(Prompt::Sample(3).text(1), "sample 3 ");
        let call = Prompt::Call {
            run: 0xbeef,
            workflow: 12,
            node: 7,
            node_type: 3,
            shared: 0,
        };
        // "run 0000beef call 12.7 " (23 characters): 8 tokens by estimate.
        assert_eq!(call.text(10), "run 0000beef call 12.7 tok tok ");
        assert_eq!(call.text(1000).matches("tok").count(), 992);
    }

    #[test]
    fn no_two_calls_prompts_share_a_prefix_and_a_calls_attempts_share_one() {
        // vLLM caches prompts in blocks of 16 tokens: prompts that differ
        // within their first few words share no cached block.
        let head = |p: Prompt| p.text(2000)[..24].to_string();
        let call = |run, workflow, node| Prompt::Call {
            run,
            workflow,
            node,
            node_type: 0,
            shared: 0,
        };
        let mut heads = std::collections::HashSet::new();
        for run in [1, 2] {
            for workflow in [0, 1, 10, 11] {
                for node in [0, 1, 11] {
                    assert!(heads.insert(head(call(run, workflow, node))));
                }
            }
        }
        // Node 11 of workflow 1 and node 1 of workflow 11 are told apart.
        assert_ne!(call(1, 1, 11).text(50), call(1, 11, 1).text(50));
        // Resent (retry, hedge, escalation): the same text.
        assert_eq!(call(5, 3, 2).text(300), call(5, 3, 2).text(300));
        let (a, b) = (run_nonce(), run_nonce());
        assert_ne!(a, b, "two runs drew the same nonce");
    }

    #[test]
    fn calls_of_a_type_with_a_shared_prompt_share_exactly_that_prefix() {
        let call = |run, workflow, node, node_type| Prompt::Call {
            run,
            workflow,
            node,
            node_type,
            shared: 600,
        };
        let a = call(7, 1, 2, 4).text(1000);
        let b = call(7, 30, 5, 4).text(1000);
        // "run 00000007 system 4 " (22 characters) is 8 tokens by estimate,
        // then 592 of filler: the shared part is 600 tokens' worth.
        let shared = format!("run 00000007 system 4 {}", "tok ".repeat(592));
        assert!(a.starts_with(&shared) && b.starts_with(&shared));
        assert!(a[shared.len()..].starts_with("call 1.2 tok "));
        assert!(b[shared.len()..].starts_with("call 30.5 tok "));
        let common = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
        assert_eq!(common, shared.len() + "call ".len());
        // "call 1.2 " is 3 tokens by estimate: 397 of filler follow.
        assert_eq!(a.matches("tok").count(), 592 + 397);
        // Another type, or another run, differs within a few tokens.
        assert_ne!(a[..24], call(7, 1, 2, 5).text(1000)[..24]);
        assert_ne!(a[..24], call(8, 1, 2, 4).text(1000)[..24]);
        // A call no larger than the shared prompt shares all of it, and
        // still ends in its own head, so that no two calls are one request.
        let (c, d) = (call(7, 1, 2, 4).text(100), call(7, 9, 9, 4).text(100));
        let shared = format!("run 00000007 system 4 {}", "tok ".repeat(92));
        assert_eq!(c, format!("{shared}call 1.2 "));
        assert_eq!(d, format!("{shared}call 9.9 "));
    }
}
