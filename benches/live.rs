//! Live executor throughput against a trivial local endpoint (a bench
//! binary, not a timed test).
//!
//! The emulator serves a zero-latency single-call scenario (one tier, 64
//! slots, 1-token answers) from its own thread and runtime; the executor
//! runs on this thread, on a current-thread runtime, so this thread's CPU
//! time is the client's: the policy, the DAG bookkeeping, HTTP and SSE.
//! Prints requests per second and client CPU microseconds per request.
//!
//! `cargo bench --bench live [-- WORKFLOWS]` (default 20000).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use agentsched::live::emulator::{self, EmulatorConfig};
use agentsched::live::{self, HttpTransport, LiveConfig};
use agentsched::metrics::NullObserver;
use agentsched::scenario::Scenario;

fn thread_cpu() -> std::time::Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    std::time::Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn main() {
    let workflows: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000);
    let mut doc: serde_json::Value =
        serde_json::from_str(include_str!("../scenarios/mmc.json")).expect("mmc.json");
    doc["workload"]["workflows"] = workflows.into();
    doc["arrivals"] = serde_json::json!({"pattern": "all_at_once"});
    doc["node_types"]["Call"]["latency"] = serde_json::json!({"dist": "constant", "ms": 0.0});
    doc["node_types"]["Call"]["output_tokens"] = 1.into();
    doc["providers"]["llm_provider"]["tiers"][0]["slots"] = 64.into();
    doc["policy"] = "fifo_cheapest".into();
    let s = Scenario::from_value(doc).expect("bench scenario");

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

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let mut s2 = s.clone();
    let eps = emulator::endpoints_for(&s, addr)
        .resolve("bench", &mut s2, |_| None)
        .expect("endpoints");
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
    assert_eq!(out.result.summary.completed, workflows);
    println!(
        "live executor, zero-latency endpoint: {n} requests in {wall:.2} s: {:.0} requests/s, \
         client CPU {:.1} us/request",
        n / wall,
        cpu / n * 1e6
    );
    let _ = stop_tx.send(());
    server.join().unwrap();
}
