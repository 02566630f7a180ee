//! HTTP proxies from the environment, read as curl reads them:
//! `HTTPS_PROXY` for `https://` endpoints, `HTTP_PROXY` for `http://` ones,
//! `ALL_PROXY` for either, `NO_PROXY` for hosts to reach directly (lower
//! case spellings too; parsing and `NO_PROXY` matching are hyper-util's).
//! Behind a company's egress proxy a real endpoint is reachable only
//! through it, as for curl and the OpenAI SDKs.
//!
//! An `https://` endpoint is reached through a CONNECT tunnel, with TLS to
//! the endpoint inside it; an `http://` one by sending the proxy each
//! request in absolute form. Loopback endpoints (`127.0.0.0/8`, `::1`,
//! `localhost`) are never proxied, whatever `NO_PROXY` says: a local
//! server or the emulator is on this machine, not behind the proxy.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::proxy::matcher::{Intercept, Matcher};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::ResolvedEndpoint;
use crate::error::{Error, Result};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Which endpoints go through which proxy.
pub struct Proxies {
    matcher: Matcher,
}

impl std::fmt::Debug for Proxies {
    // Credentials stay out (hyper-util's Debug leaves them out too).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxies")
            .field("matcher", &self.matcher)
            .finish()
    }
}

/// Whether `host` (as a URI gives it, IPv6 in brackets) is this machine.
fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Proxies {
    /// The proxies the environment names (none in a CGI context, where
    /// `HTTP_PROXY` may come from a request header).
    pub fn from_env() -> Proxies {
        Proxies::from_matcher(Matcher::from_env())
    }

    /// Proxies as `matcher` routes them (tests build one by hand).
    pub fn from_matcher(matcher: Matcher) -> Proxies {
        Proxies { matcher }
    }

    /// The proxy for requests to `uri`, if any.
    pub fn for_uri(&self, uri: &http::Uri) -> Option<Intercept> {
        if is_loopback(uri.host()?) {
            return None;
        }
        self.matcher.intercept(uri)
    }

    /// The proxy for an endpoint's base URL, as `scheme://host:port`
    /// (without credentials, which never reach a file or a message).
    pub fn describe(&self, base_url: &str) -> Option<String> {
        let uri: http::Uri = base_url.parse().ok()?;
        let p = self.for_uri(&uri)?;
        let u = p.uri();
        Some(format!(
            "{}://{}",
            u.scheme_str().unwrap_or("http"),
            u.authority().map_or("", |a| a.as_str())
        ))
    }

    /// The `host:port` a connection for `base_url` opens first: its
    /// proxy's (port 80 unless given), if it has one.
    pub fn first_hop(&self, base_url: &str) -> Option<String> {
        let uri: http::Uri = base_url.parse().ok()?;
        let p = self.for_uri(&uri)?;
        let u = p.uri();
        Some(format!("{}:{}", u.host()?, u.port_u16().unwrap_or(80)))
    }

    /// Refuses a proxy this client cannot use for one of `endpoints`: it
    /// speaks to `http://` proxies only (not SOCKS, not TLS to the proxy).
    pub fn check<E: std::borrow::Borrow<ResolvedEndpoint>>(
        &self,
        endpoints: &[Vec<E>],
    ) -> Result<()> {
        for e in endpoints.iter().flatten() {
            let e = e.borrow();
            let Some(p) = e.base_url.parse().ok().and_then(|u| self.for_uri(&u)) else {
                continue;
            };
            if p.uri().scheme_str() != Some("http") {
                let var = if e.tls { "HTTPS_PROXY" } else { "HTTP_PROXY" };
                return Err(Error::Input(format!(
                    "{var} (or ALL_PROXY) names a {}:// proxy for {}: agentsched connects \
                     through http:// proxies only (an HTTP CONNECT tunnel for https:// \
                     endpoints); name an http:// proxy, or the endpoint's host in NO_PROXY",
                    p.uri().scheme_str().unwrap_or("?"),
                    e.base_url
                )));
            }
        }
        Ok(())
    }
}

/// A connection: to the endpoint (directly or through a CONNECT tunnel,
/// both speaking to the endpoint itself), or to a proxy that forwards
/// each request (which then goes in absolute form).
#[derive(Debug)]
// Unboxed as before proxies: a connection is moved a few times while it
// opens and then stays in its task; a box would sit on every read and write.
#[allow(clippy::large_enum_variant)]
pub enum Conn {
    /// The endpoint is at the other end (TLS or plain).
    Endpoint(MaybeHttpsStream<TokioIo<TcpStream>>),
    /// An `http://` endpoint's forwarding proxy is at the other end.
    Forwarding(TokioIo<TcpStream>),
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        let connected = match self {
            Conn::Endpoint(s) => s.connected(),
            // Tells the client to send absolute-form request targets.
            Conn::Forwarding(s) => s.connected().proxy(true),
        };
        // Asked once per connection; every response and error on it
        // carries a clone.
        connected.extra(Answered::default())
    }
}

/// Whether a connection has answered a request. A request that fails on
/// one that has, before its own answer began, was almost always sent as
/// the server closed the connection, unread (llama.cpp's server closes it
/// after every streamed answer, and many servers after a few idle
/// seconds, without saying so).
#[derive(Clone, Debug, Default)]
pub struct Answered(Arc<AtomicBool>);

impl Answered {
    /// Marks the connection of a response as having answered.
    pub fn mark(response_extensions: &http::Extensions) {
        if let Some(a) = response_extensions.get::<Answered>() {
            a.0.store(true, Ordering::Relaxed);
        }
    }

    /// Whether the connection a request failed on had answered before.
    pub fn before(e: &hyper_util::client::legacy::Error) -> bool {
        let mut extensions = http::Extensions::new();
        if let Some(c) = e.connect_info() {
            c.get_extras(&mut extensions);
        }
        extensions
            .get::<Answered>()
            .is_some_and(|a| a.0.load(Ordering::Relaxed))
    }
}

impl hyper::rt::Read for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Endpoint(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Forwarding(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Endpoint(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Forwarding(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Endpoint(s) => Pin::new(s).poll_flush(cx),
            Conn::Forwarding(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Endpoint(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Forwarding(s) => Pin::new(s).poll_shutdown(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Endpoint(s) => s.is_write_vectored(),
            Conn::Forwarding(s) => s.is_write_vectored(),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Endpoint(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Forwarding(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }
}

/// Opens connections directly or through the environment's proxies.
#[derive(Clone, Debug)]
pub struct Routed {
    tcp: HttpConnector,
    tls: Arc<rustls::ClientConfig>,
    direct: HttpsConnector<HttpConnector>,
    proxies: Arc<Proxies>,
}

/// TLS (for `https://` URIs) or plain TCP over `inner`.
fn https_over<C>(tls: &rustls::ClientConfig, inner: C) -> HttpsConnector<C> {
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls.clone())
        .https_or_http()
        .enable_http1()
        .wrap_connector(inner)
}

impl Routed {
    /// Connections over `tcp`, with `tls` for `https://` endpoints.
    pub fn new(tcp: HttpConnector, tls: rustls::ClientConfig, proxies: Arc<Proxies>) -> Routed {
        Routed {
            direct: https_over(&tls, tcp.clone()),
            tcp,
            tls: Arc::new(tls),
            proxies,
        }
    }
}

impl tower_service::Service<http::Uri> for Routed {
    type Response = Conn;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = std::result::Result<Conn, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<std::result::Result<(), BoxError>> {
        // Each call clones what it needs; nothing here waits.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: http::Uri) -> Self::Future {
        let proxy = self.proxies.for_uri(&dst);
        match proxy {
            None => {
                let mut direct = self.direct.clone();
                Box::pin(async move { Ok(Conn::Endpoint(direct.call(dst).await?)) })
            }
            Some(p) if dst.scheme_str() == Some("https") => {
                let mut tunnel = Tunnel::new(p.uri().clone(), self.tcp.clone());
                if let Some(auth) = p.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                let mut through = https_over(&self.tls, tunnel);
                Box::pin(async move { Ok(Conn::Endpoint(through.call(dst).await?)) })
            }
            Some(p) => {
                let mut tcp = self.tcp.clone();
                let at = p.uri().clone();
                Box::pin(async move { Ok(Conn::Forwarding(tcp.call(at).await?)) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(http: &str, https: &str, no: &str) -> Proxies {
        Proxies::from_matcher(Matcher::builder().http(http).https(https).no(no).build())
    }

    #[test]
    fn loopback_is_never_proxied_and_no_proxy_is_honoured() {
        let p = proxies(
            "http://proxy:3128",
            "http://u:secret@proxy:3129",
            "internal.corp",
        );
        for direct in [
            "http://127.0.0.1:8000/v1",
            "http://127.9.9.9:8000/v1",
            "http://[::1]:8000/v1",
            "https://LOCALHOST/v1",
            "http://vllm.internal.corp:8000/v1",
        ] {
            assert_eq!(p.describe(direct), None, "{direct}");
        }
        assert_eq!(
            p.describe("http://10.0.0.5:8000/v1").as_deref(),
            Some("http://proxy:3128")
        );
        // The credentials are used, never shown.
        assert_eq!(
            p.describe("https://api.openai.com/v1").as_deref(),
            Some("http://proxy:3129")
        );
        let i = p
            .for_uri(&"https://api.openai.com/v1".parse().unwrap())
            .unwrap();
        assert!(i.basic_auth().is_some());
        assert_eq!(
            p.first_hop("https://api.openai.com/v1").as_deref(),
            Some("proxy:3129")
        );
        assert_eq!(p.first_hop("http://127.0.0.1:8000/v1"), None);
        assert_eq!(
            proxies("", "", "").describe("https://api.openai.com/v1"),
            None
        );
    }

    #[test]
    fn only_http_proxies_are_accepted() {
        let ep = |url: &str| ResolvedEndpoint {
            tls: url.starts_with("https"),
            authority: String::new(),
            path: "/v1".into(),
            query: String::new(),
            models: vec![],
            auth: None,
            headers: vec![],
            max_tokens_param: Default::default(),
            extra_body: Default::default(),
            base_url: url.into(),
        };
        let socks = proxies("", "socks5://proxy:1080", "");
        let e = socks
            .check(&[vec![ep("https://api.openai.com/v1")]])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(
                "HTTPS_PROXY (or ALL_PROXY) names a socks5:// proxy for https://api.openai.com/v1"
            ),
            "{e}"
        );
        // Not used for a loopback endpoint, so not refused for it.
        socks
            .check(&[vec![ep("https://127.0.0.1:8443/v1")]])
            .unwrap();
        proxies("http://proxy:3128", "http://proxy:3128", "")
            .check(&[vec![
                ep("https://api.openai.com/v1"),
                ep("http://10.1.1.1/v1"),
            ]])
            .unwrap();
    }
}
