//! The binary as users run it.

use std::path::Path;
use std::process::Output;

use crate::util::agentsched;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// summary.csv without the one non-deterministic column.
fn summary_without_wall_time(dir: &Path) -> String {
    let text = String::from_utf8(read(&dir.join("summary.csv"))).unwrap();
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap().split(',').collect();
    let row: Vec<&str> = lines.next().unwrap().split(',').collect();
    let wall = head
        .iter()
        .position(|h| *h == "wall_time_s")
        .expect("wall_time_s column");
    head.iter()
        .zip(&row)
        .enumerate()
        .filter(|(i, _)| *i != wall)
        .map(|(_, (h, v))| format!("{h}={v}\n"))
        .collect()
}

#[test]
fn identical_inputs_give_identical_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs: Vec<_> = (0..2).map(|i| tmp.path().join(format!("run{i}"))).collect();
    for d in &dirs {
        let o = agentsched(&[
            "simulate",
            "--workflows",
            "20",
            "--trace",
            "--quiet",
            "--out",
            d.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    for f in ["workflows.csv", "tiers.csv", "trace.json"] {
        assert_eq!(
            read(&dirs[0].join(f)),
            read(&dirs[1].join(f)),
            "{f} differs between identical runs"
        );
    }
    assert_eq!(
        summary_without_wall_time(&dirs[0]),
        summary_without_wall_time(&dirs[1])
    );
    let digest = |d: &Path| {
        let v: serde_json::Value = serde_json::from_slice(&read(&d.join("summary.json"))).unwrap();
        v["output_digest"].as_str().unwrap().to_string()
    };
    assert_eq!(digest(&dirs[0]), digest(&dirs[1]));
    // trace.json is valid JSON; workflows.csv has one row per workflow, in id order.
    let trace: serde_json::Value =
        serde_json::from_slice(&read(&dirs[0].join("trace.json"))).unwrap();
    assert!(trace.as_array().unwrap().len() > 100);
    let wf = String::from_utf8(read(&dirs[0].join("workflows.csv"))).unwrap();
    let ids: Vec<u64> = wf
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(ids, (0..20).collect::<Vec<_>>());

    // A different seed changes the digest.
    let other = tmp.path().join("other");
    let o = agentsched(&[
        "simulate",
        "--workflows",
        "20",
        "--seed",
        "9",
        "--quiet",
        "--out",
        other.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    assert_ne!(digest(&dirs[0]), digest(&other));
}

#[test]
fn bad_input_exits_2_naming_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o");
    let out = out.to_str().unwrap();
    let bad_json = tmp.path().join("bad.json");
    std::fs::write(&bad_json, "{ \"workload\": ").unwrap();
    let unknown_field = tmp.path().join("unknown.json");
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("scenarios/research_agent.json").unwrap())
            .unwrap();
    doc["workload"]["pdfz"] = 3.into();
    std::fs::write(&unknown_field, doc.to_string()).unwrap();
    let bad_constants = tmp.path().join("c.json");
    std::fs::write(&bad_constants, r#"{"hedge_stretch": 0.5}"#).unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["simulate", "--policy", "fastest", "--out", out],
            "fastest",
        ),
        (
            vec!["simulate", "--workflows", "0", "--out", out],
            "workload.workflows",
        ),
        (
            vec!["simulate", "--heavy-tail-prob", "1.5", "--out", out],
            "heavy_tail.prob",
        ),
        (
            vec![
                "simulate",
                "--set",
                r#"node_types.Plan.heavy_tail={"prob":2,"mult":3}"#,
                "--out",
                out,
            ],
            "node_types.Plan.heavy_tail.prob: expected a probability in [0, 1], got 2",
        ),
        (
            vec![
                "simulate",
                "--set",
                "providers.llm_provider.tiers.0.slots=0",
                "--out",
                out,
            ],
            "providers.llm_provider.tiers.0.slots",
        ),
        (
            vec![
                "simulate",
                "--set",
                "providers.llm_provider.tiers.7.slots=1",
                "--out",
                out,
            ],
            "out of range",
        ),
        (
            vec!["simulate", "--set", "nonsense", "--out", out],
            "PATH=VALUE",
        ),
        (
            vec![
                "simulate",
                "--set",
                "arrivals={\"pattern\":\"poisson\"}",
                "--out",
                out,
            ],
            "rate_per_s",
        ),
        (
            vec![
                "simulate",
                "--scenario",
                "/nonexistent/x.json",
                "--out",
                out,
            ],
            "/nonexistent/x.json",
        ),
        (
            vec![
                "simulate",
                "--scenario",
                bad_json.to_str().unwrap(),
                "--out",
                out,
            ],
            "invalid JSON",
        ),
        (
            vec![
                "simulate",
                "--scenario",
                unknown_field.to_str().unwrap(),
                "--out",
                out,
            ],
            "pdfz",
        ),
        (
            vec![
                "simulate",
                "--constants",
                bad_constants.to_str().unwrap(),
                "--out",
                out,
            ],
            "hedge_stretch",
        ),
        (
            vec![
                "scenario",
                "mmc",
                "--servers",
                "0",
                "--arrival-rate",
                "1",
                "--service-rate",
                "1",
                "--workflows",
                "5",
            ],
            "slots",
        ),
        (vec!["validate", "--customers", "5"], "--customers"),
    ];
    for (args, needle) in cases {
        let o = agentsched(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(needle),
            "{args:?}: stderr does not name `{needle}`: {}",
            stderr(&o)
        );
        assert!(!stderr(&o).contains("panicked"), "{args:?} panicked");
    }
    assert!(
        !Path::new(out).join("summary.csv").exists(),
        "bad input writes nothing"
    );
}

#[test]
fn out_that_is_a_file_is_refused_and_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("precious.txt");
    std::fs::write(&f, "keep me").unwrap();
    let o = agentsched(&["simulate", "--workflows", "2", "--out", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "keep me");
}

#[test]
fn scenario_show_round_trips_and_set_applies() {
    let o = agentsched(&[
        "scenario",
        "show",
        "--pdfs",
        "3",
        "--set",
        "providers.llm_provider.tiers.1.slots=9",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["workload"]["pdfs"], 3);
    assert_eq!(v["providers"]["llm_provider"]["tiers"][1]["slots"], 9);
    // What show prints is a scenario simulate accepts, with the same result.
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("s.json");
    std::fs::write(&file, &o.stdout).unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    let o1 = agentsched(&[
        "simulate",
        "--scenario",
        file.to_str().unwrap(),
        "--workflows",
        "5",
        "--quiet",
        "--out",
        a.to_str().unwrap(),
    ]);
    let o2 = agentsched(&[
        "simulate",
        "--pdfs",
        "3",
        "--set",
        "providers.llm_provider.tiers.1.slots=9",
        "--workflows",
        "5",
        "--quiet",
        "--out",
        b.to_str().unwrap(),
    ]);
    assert!(o1.status.success() && o2.status.success());
    assert_eq!(
        read(&a.join("workflows.csv")),
        read(&b.join("workflows.csv"))
    );
}

#[test]
fn mmc_scenario_runs_and_shipped_scenarios_are_valid() {
    let o = agentsched(&[
        "scenario",
        "mmc",
        "--servers",
        "4",
        "--arrival-rate",
        "3",
        "--service-rate",
        "1",
        "--workflows",
        "1000",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["providers"]["llm_provider"]["tiers"][0]["slots"], 4);
    // The steady state it should approach goes to stderr, beside the JSON.
    assert!(
        stderr(&o).starts_with("M/M/4 at utilisation 0.750: in steady state (Erlang C)"),
        "{}",
        stderr(&o)
    );
    let tmp = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir("scenarios").unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|e| e == "json") && agentsched_accepts_as_scenario(&p) {
            let out = tmp.path().join(p.file_stem().unwrap());
            let o = agentsched(&[
                "simulate",
                "--scenario",
                p.to_str().unwrap(),
                "--quiet",
                "--out",
                out.to_str().unwrap(),
            ]);
            assert!(o.status.success(), "{}: {}", p.display(), stderr(&o));
            assert!(out.join("summary.json").exists());
        }
    }
}

/// Scenario files have a `workload`; experiment configs (the sweep's) do not.
fn agentsched_accepts_as_scenario(p: &Path) -> bool {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    v.get("workload").is_some()
}

#[test]
fn validate_passes_against_theory() {
    let o = agentsched(&["validate", "--customers", "200000"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("Erlang")
            || String::from_utf8_lossy(&o.stdout).contains("M/M/8")
    );
}

#[test]
fn a_closed_pipe_ends_quietly_and_a_full_disk_is_exit_4() {
    use std::process::{Command, Stdio};
    // The reader goes away at once; the output (megabytes) cannot all fit
    // in the pipe, so writes fail with EPIPE.
    let mut child = Command::new(env!("CARGO_BIN_EXE_agentsched"))
        .args(["factory", "seeds", "--n", "3000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(o.stderr.is_empty(), "no panic, no message: {}", stderr(&o));
    // /dev/full: every write fails with ENOSPC.
    if Path::new("/dev/full").exists() {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let o = Command::new(env!("CARGO_BIN_EXE_agentsched"))
            .arg("constants")
            .stdout(full)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("cannot write standard output"),
            "{}",
            stderr(&o)
        );
    }
}
