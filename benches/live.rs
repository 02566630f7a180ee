//! Live executor throughput against a trivial local endpoint (a bench
//! binary, not a timed test).
//!
//! The emulator serves a zero-latency single-call scenario (one tier, 64
//! slots, 1-token answers) from its own thread and runtime; the executor
//! runs on a current-thread runtime on the main thread, so that thread's
//! CPU time is the client's: the policy, the DAG bookkeeping, HTTP and SSE.
//! Prints requests per second and client CPU microseconds per request.
//!
//! With `tls`, the client speaks `https://` to a TLS-terminating proxy (a
//! fresh authority, on a thread of its own) in front of the emulator. The
//! client then runs in a child process started with `SSL_CERT_FILE` naming
//! that authority, since a process loads its trusted roots once; its CPU
//! time per request against the plain run's is what TLS costs the client.
//!
//! `cargo bench --bench live [-- WORKFLOWS] [tls]` (default 20000).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use agentsched::live::emulator::{self, EmulatorConfig};
use agentsched::live::{self, HttpTransport, LiveConfig};
use agentsched::metrics::NullObserver;
use agentsched::scenario::Scenario;

#[path = "../tests/it/tls_proxy.rs"]
mod tls_proxy;

/// Set in the child that runs the client of a TLS run: the proxy's port.
const CHILD_PORT: &str = "AGENTSCHED_BENCH_TLS_PORT";

fn thread_cpu() -> std::time::Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    std::time::Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn scenario(workflows: u64) -> Scenario {
    let mut doc: serde_json::Value =
        serde_json::from_str(include_str!("../scenarios/mmc.json")).expect("mmc.json");
    doc["workload"]["workflows"] = workflows.into();
    doc["arrivals"] = serde_json::json!({"pattern": "all_at_once"});
    doc["node_types"]["Call"]["latency"] = serde_json::json!({"dist": "constant", "ms": 0.0});
    doc["node_types"]["Call"]["output_tokens"] = 1.into();
    doc["providers"]["llm_provider"]["tiers"][0]["slots"] = 64.into();
    doc["policy"] = "fifo_cheapest".into();
    Scenario::from_value(doc).expect("bench scenario")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let workflows: u64 = args.iter().find_map(|a| a.parse().ok()).unwrap_or(20_000);
    let s = scenario(workflows);
    if let Ok(port) = std::env::var(CHILD_PORT) {
        let port: u16 = port.parse().expect("proxy port");
        // The emulator's address only fills in the endpoint file: every
        // base URL is then pointed at the proxy.
        let url = format!("https://127.0.0.1:{port}/v1");
        run_client(
            &s,
            "TLS endpoint (a proxy in front)",
            "127.0.0.1:1".parse().unwrap(),
            Some(url),
        );
        return;
    }

    // The endpoint: its own thread and runtime.
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_s = s.clone();
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("server runtime");
        rt.block_on(async {
            let cfg = EmulatorConfig {
                time_scale: 1.0,
                faults: BTreeMap::new(),
                ttft_fraction: 0.0,
                cache: false,
            };
            let h = emulator::start(&server_s, cfg, "127.0.0.1:0".parse().unwrap())
                .await
                .expect("emulator");
            addr_tx.send(h.addr).unwrap();
            let _ = stop_rx.await;
            h.shutdown().await;
        });
    });
    let addr = addr_rx.recv().unwrap();

    if args.iter().any(|a| a == "tls") {
        run_tls_child(workflows, addr);
    } else {
        run_client(&s, "zero-latency endpoint", addr, None);
    }
    let _ = stop_tx.send(());
    server.join().unwrap();
}

/// Starts the proxy in front of `addr` and this bench again as the client,
/// trusting the proxy's authority; waits for it.
fn run_tls_child(workflows: u64, addr: SocketAddr) {
    let proxy_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("proxy runtime");
    let (port, ca_pem) = tls_proxy::start(&proxy_rt, addr);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let proxy = std::thread::spawn(move || {
        let _ = proxy_rt.block_on(stop_rx);
    });
    let dir = tempfile::tempdir().expect("temporary directory");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).expect("write ca.pem");
    let status = std::process::Command::new(std::env::current_exe().expect("own path"))
        .arg(workflows.to_string())
        .env(CHILD_PORT, port.to_string())
        .env("SSL_CERT_FILE", &ca)
        .env_remove("SSL_CERT_DIR")
        .status()
        .expect("start the client");
    let _ = stop_tx.send(());
    proxy.join().unwrap();
    assert!(status.success(), "the TLS client failed: {status}");
}

/// Runs every workflow of `s` against the emulator at `addr` (or at `url`
/// in its place) and prints the throughput and this thread's CPU time.
fn run_client(s: &Scenario, what: &str, addr: SocketAddr, url: Option<String>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let mut file = emulator::endpoints_for(s, addr);
    if let Some(url) = url {
        for t in file.providers.values_mut().flatten() {
            t.base_url = url.clone();
        }
    }
    let mut s2 = s.clone();
    let eps = file.resolve("bench", &mut s2, |_| None).expect("endpoints");
    let mut cfg = LiveConfig::new(&s2);
    cfg.endpoints = eps
        .into_iter()
        .map(|t| t.into_iter().map(Arc::new).collect())
        .collect();
    cfg.precise_timers = false;
    let cpu0 = thread_cpu();
    let t0 = Instant::now();
    let out = rt
        .block_on(live::run(
            &s2,
            &mut NullObserver,
            HttpTransport::new(),
            cfg,
            None,
            std::future::pending(),
        ))
        .expect("live run");
    let wall = t0.elapsed().as_secs_f64();
    let cpu = (thread_cpu() - cpu0).as_secs_f64();
    let n = out.attempts_sent as f64;
    assert_eq!(out.result.summary.completed, s.workload.workflows);
    assert_eq!(
        out.attempts_sent, s.workload.workflows,
        "one request a workflow, none failed"
    );
    println!(
        "live executor, {what}: {n} requests in {wall:.2} s: {:.0} requests/s, \
         client CPU {:.1} us/request",
        n / wall,
        cpu / n * 1e6
    );
}
