//! `audit caching` against the emulator on 127.0.0.1, with its response
//! cache on (FAIL) and off (PASS); exit codes; the order of its files.
//! Every emulator is a child process, stopped by PID when the test ends.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{Emulator, agentsched_in, err};

/// The emulator serving the default scenario with every llm call of the
/// audited type taking a constant 2 s of scenario time (100 ms real at
/// time scale 20), no failures and no heavy tail: both phases then see
/// the same service time, and only a cache makes one faster.
fn emulator(dir: &Path, cache: bool) -> Emulator {
    let mut args = vec![
        "--time-scale",
        "20",
        "--set",
        r#"node_types.Plan.latency={"dist":"constant","ms":2000}"#,
        "--set",
        "providers.llm_provider.tiers.0.failure_prob=0",
        "--set",
        "heavy_tail.prob=0",
    ];
    if cache {
        args.push("--cache");
    }
    Emulator::start(dir, if cache { "ep_cache.json" } else { "ep.json" }, &args)
}

fn audit_args<'a>(ep: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "audit",
        "caching",
        "--endpoints",
        ep,
        "--out",
        out,
        "--reference-requests",
        "40",
        "--audit-requests",
        "40",
        "--concurrency",
        "4",
    ]
}

fn result(out: &Path) -> Value {
    let text = std::fs::read_to_string(out.join("audit_output_caching_test.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn no_cache_passes_and_a_cache_fails_with_files_in_order() {
    let d = tempfile::tempdir().unwrap();
    let cwd = d.path();
    for (cache, pattern) in [(false, "concurrency"), (true, "max_throughput")] {
        let emu = emulator(cwd, cache);
        let ep = emu.endpoints.to_string_lossy().into_owned();
        let out = format!("out_{cache}");
        let mut args = audit_args(&ep, &out);
        args.extend(["--load-pattern", pattern]);
        let o = agentsched_in(cwd, &args);
        drop(emu);
        assert_eq!(
            o.status.code(),
            Some(if cache { 1 } else { 0 }),
            "{}",
            err(&o)
        );
        let out = cwd.join(&out);
        let r = result(&out);
        assert_eq!(r["test"], "output_caching");
        assert_eq!(r["passed"], !cache, "{r}");
        assert_eq!(r["threshold"], 0.1);
        assert_eq!(r["reference"]["requested"], 40);
        assert_eq!(r["reference"]["completed"], 40);
        assert_eq!(r["audit"]["completed"], 40);
        let (ref_qps, audit_qps) = (
            r["ref_qps"].as_f64().unwrap(),
            r["audit_qps"].as_f64().unwrap(),
        );
        if cache {
            // Answers from the cache come at once: many times faster.
            assert!(audit_qps > 3.0 * ref_qps, "{r}");
        } else {
            assert!(audit_qps < 1.1 * ref_qps, "{r}");
        }
        let verify = std::fs::read_to_string(out.join("verify_OUTPUT_CACHING_TEST.txt")).unwrap();
        assert_eq!(
            verify,
            format!(
                "Performance check pass: {}\n",
                if cache { "False" } else { "True" }
            )
        );
        // The JSON is written (and renamed into place) before the verify file.
        let mtime = |f: &str| std::fs::metadata(out.join(f)).unwrap().modified().unwrap();
        assert!(mtime("audit_output_caching_test.json") <= mtime("verify_OUTPUT_CACHING_TEST.txt"));
        // Each phase's requests: distinct prompts, then one repeated.
        let prompts = |phase: &str| -> Vec<u64> {
            std::fs::read_to_string(out.join("audit").join(phase).join("requests.jsonl"))
                .unwrap()
                .lines()
                .map(|l| {
                    serde_json::from_str::<Value>(l).unwrap()["prompt"]
                        .as_u64()
                        .unwrap()
                })
                .collect()
        };
        assert_eq!(prompts("reference"), (0..40).collect::<Vec<u64>>());
        assert_eq!(prompts("output_caching"), vec![0; 40]);
        // No temporary file is left behind.
        for e in std::fs::read_dir(&out).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(!name.starts_with('.'), "{name}");
        }
    }
}

#[test]
fn exit_codes_for_bad_input_and_an_unreachable_endpoint() {
    let d = tempfile::tempdir().unwrap();
    let cwd = d.path();
    // An endpoints file for a port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let emu = emulator(cwd, false);
    let text = std::fs::read_to_string(&emu.endpoints).unwrap();
    drop(emu);
    let old_port = text
        .split("127.0.0.1:")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    std::fs::write(
        cwd.join("dead.json"),
        text.replace(
            &format!("127.0.0.1:{old_port}"),
            &format!("127.0.0.1:{port}"),
        ),
    )
    .unwrap();
    let o = agentsched_in(cwd, &audit_args("dead.json", "out_dead"));
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unreachable"));
    assert!(!cwd.join("out_dead/audit_output_caching_test.json").exists());

    std::fs::create_dir(cwd.join("full")).unwrap();
    std::fs::write(cwd.join("full/keep.txt"), "mine").unwrap();
    for (extra, want) in [
        (vec!["--load-pattern", "poisson"], "paced"),
        (vec!["--threshold", "1"], "--threshold"),
        (vec!["--threshold", "0"], "--threshold"),
        (vec!["--sample-index", "40"], "--sample-index"),
        (vec!["--provider", "nobody"], "--provider nobody"),
        (vec!["--tier", "7"], "--tier 7"),
    ] {
        let mut args = audit_args("dead.json", "out_bad");
        args.extend(extra.iter());
        let o = agentsched_in(cwd, &args);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {}", err(&o));
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains(want), "{extra:?}: {e}");
    }
    let o = agentsched_in(cwd, &audit_args("dead.json", "full"));
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert_eq!(
        std::fs::read_to_string(cwd.join("full/keep.txt")).unwrap(),
        "mine"
    );
}

/// An `https://` URL for a plain-HTTP server passes the TCP probe, then
/// every request fails its TLS handshake: the endpoint was never
/// measured, so the audit gives no verdict (exit 4, as for a connection
/// lost during a phase), not a FAIL.
#[test]
fn a_failed_tls_handshake_gives_no_verdict() {
    let d = tempfile::tempdir().unwrap();
    let cwd = d.path();
    let emu = emulator(cwd, false);
    let text = std::fs::read_to_string(&emu.endpoints).unwrap();
    std::fs::write(cwd.join("tls.json"), text.replace("http://", "https://")).unwrap();
    let o = agentsched_in(cwd, &audit_args("tls.json", "out_tls"));
    assert_eq!(o.status.code(), Some(4), "{}", err(&o));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("unreachable") && e.contains("TLS"), "{e}");
    assert!(!cwd.join("out_tls/audit_output_caching_test.json").exists());
    drop(emu);
}

#[test]
fn killed_between_the_phases_leaves_no_verdict() {
    stopped_between_the_phases(None);
}

/// SIGTERM in the cooldown ends the audit at once, with exit 143 and the
/// same files as a kill.
#[test]
fn sigterm_between_the_phases_leaves_no_verdict() {
    stopped_between_the_phases(Some("TERM"));
}

/// Stops an audit in its cooldown with `signal`, or kill -9 when None.
fn stopped_between_the_phases(signal: Option<&str>) {
    let d = tempfile::tempdir().unwrap();
    let cwd = d.path();
    let emu = emulator(cwd, false);
    let ep = emu.endpoints.to_string_lossy().into_owned();
    let mut args = audit_args(&ep, "out");
    args.extend(["--cooldown-s", "30"]);
    let mut audit = Command::new(env!("CARGO_BIN_EXE_agentsched"))
        .current_dir(cwd)
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let reference = cwd.join("out/audit/reference/requests.jsonl");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !reference.exists() {
        assert!(
            Instant::now() < deadline,
            "the reference phase did not finish"
        );
        assert!(audit.try_wait().unwrap().is_none(), "the audit ended early");
        std::thread::sleep(Duration::from_millis(10));
    }
    // In the cooldown: the reference phase is written, the audit phase not begun.
    match signal {
        None => {
            audit.kill().unwrap();
            audit.wait().unwrap();
        }
        Some(signal) => {
            let sent = Instant::now();
            crate::util::send_signal(audit.id(), signal);
            let o = audit.wait_with_output().unwrap();
            assert!(
                sent.elapsed() < Duration::from_secs(20),
                "slept through the cooldown"
            );
            assert_eq!(o.status.code(), Some(143), "{}", err(&o));
            assert!(
                err(&o).contains(
                    "stopped by SIGTERM: the audit ended before both phases finished, so it gives no verdict"
                ),
                "{}",
                err(&o)
            );
        }
    }
    drop(emu);
    let out = cwd.join("out");
    assert_eq!(
        std::fs::read_to_string(&reference).unwrap().lines().count(),
        40
    );
    assert!(!out.join("audit/output_caching").exists());
    assert!(!out.join("audit_output_caching_test.json").exists());
    assert!(!out.join("verify_OUTPUT_CACHING_TEST.txt").exists());
}
