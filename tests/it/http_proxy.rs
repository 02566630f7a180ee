//! A minimal HTTP proxy on loopback: CONNECT tunnels and requests
//! forwarded in absolute form. Every destination goes to 127.0.0.1 at the
//! destination's port, so that a test can name endpoints by hosts no
//! resolver knows: only through this proxy are they reached.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the proxy was asked for.
#[derive(Debug, Default)]
pub struct Seen {
    /// CONNECT tunnels opened.
    pub tunnels: AtomicUsize,
    /// Connections whose first request was forwarded.
    pub forwarded: AtomicUsize,
    /// The `Proxy-Authorization` value of each tunnel and forwarded
    /// connection's first request ("" when absent).
    pub auth: Mutex<Vec<String>>,
    /// The head (request line and headers) of each forwarded connection's
    /// first request.
    pub heads: Mutex<Vec<String>>,
}

impl Seen {
    pub fn tunnels(&self) -> usize {
        self.tunnels.load(Ordering::SeqCst)
    }

    pub fn forwarded(&self) -> usize {
        self.forwarded.load(Ordering::SeqCst)
    }
}

/// Starts the proxy on `rt`; returns its port and what it sees.
pub fn start(rt: &tokio::runtime::Runtime) -> (u16, Arc<Seen>) {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    rt.spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(serve(client, s.clone()));
        }
    });
    (port, seen)
}

async fn serve(mut client: tokio::net::TcpStream, seen: Arc<Seen>) {
    // The request head (and whatever of the body came with it).
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match client.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) if buf.len() + n <= 1 << 16 => buf.extend_from_slice(&chunk[..n]),
            Ok(_) => return,
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut words = head.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let auth = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("proxy-authorization")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    seen.auth.lock().unwrap().push(auth);
    // host:port for a tunnel, http://host:port/path for a forwarded request.
    let authority = target
        .strip_prefix("http://")
        .unwrap_or(target)
        .split('/')
        .next()
        .unwrap_or("");
    let Some(port) = authority
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
    else {
        return;
    };
    let Ok(mut upstream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return;
    };
    if method == "CONNECT" {
        seen.tunnels.fetch_add(1, Ordering::SeqCst);
        if client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await
            .is_err()
        {
            return;
        }
        // Bytes after the CONNECT head belong to the tunnel.
        if upstream.write_all(&buf[head_end..]).await.is_err() {
            return;
        }
    } else {
        seen.forwarded.fetch_add(1, Ordering::SeqCst);
        seen.heads.lock().unwrap().push(head.clone());
        // The emulator takes absolute-form targets as they are.
        if upstream.write_all(&buf).await.is_err() {
            return;
        }
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}
