//! `live run --from-run` and `fidelity`, end to end through the binary. The
//! live runs use the in-process provider (no network), which reproduces the
//! simulator exactly: errors are 0 where the replay is faithful, and any
//! difference a test sees was put there on purpose. One test sweeps the
//! emulator on 127.0.0.1 instead, to see the rankings agree over HTTP.

use std::path::Path;

use serde_json::Value;

use crate::util::{Emulator, agentsched_in, err};

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn ok(cwd: &Path, args: &[&str]) -> String {
    let o = agentsched_in(cwd, args);
    assert_eq!(o.status.code(), Some(0), "{args:?}: {}", err(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn a_replay_of_a_simulated_run_records_it_and_fidelity_finds_it() {
    let d = tempfile::tempdir().unwrap();
    let cwd = d.path();
    ok(
        cwd,
        &[
            "simulate",
            "--workflows",
            "6",
            "--seed",
            "5",
            "--policy",
            "full",
            "--out",
            "sim",
            "--quiet",
        ],
    );
    assert!(cwd.join("sim/scenario.json").is_file());
    let out = ok(
        cwd,
        &[
            "live",
            "run",
            "--from-run",
            "sim",
            "--in-process",
            "--time-scale",
            "1000",
            "--out",
            "live",
        ],
    );
    assert!(out.contains("replayed "), "{out}");
    let live = json(&cwd.join("live/summary.json"));
    let sim = json(&cwd.join("sim/summary.json"));
    // The scenario, policy and seed are the run's, not the defaults.
    assert_eq!(live["policy"], "full");
    assert_eq!(live["seed"], 5);
    assert_eq!(live["workflows"], 6);
    assert_eq!(live["replays"]["output_digest"], sim["output_digest"]);
    assert_eq!(live["replays"]["changed"], serde_json::json!([]));
    // The in-process provider is the simulator's: same outputs, same digest.
    assert_eq!(live["output_digest"], sim["output_digest"]);
    // The digest leaves out the columns `live_columns` lists: without them
    // (and the wall time), the live summary.csv is the simulated one.
    assert_eq!(
        live["live_columns"],
        serde_json::json!([
            "ttft_p50_ms",
            "ttft_p95_ms",
            "tpot_mean_ms",
            "e2e_p50_ms",
            "e2e_p95_ms",
            "e2e_p99_ms",
            "http_429",
            "errors",
            "usage_prompt_tokens",
            "usage_cached_prompt_tokens"
        ])
    );
    assert!(sim.get("live_columns").is_none());
    let summary_cells = |dir: &str, leave_out: &[&str]| -> Vec<(String, String)> {
        let text = std::fs::read_to_string(cwd.join(dir).join("summary.csv")).unwrap();
        let mut lines = text.lines();
        let (head, row) = (lines.next().unwrap(), lines.next().unwrap());
        head.split(',')
            .zip(row.split(','))
            .filter(|(k, _)| *k != "wall_time_s" && !leave_out.contains(k))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let appended: Vec<&str> = live["live_columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(summary_cells("live", &appended), summary_cells("sim", &[]));
    assert_ne!(summary_cells("live", &[]), summary_cells("sim", &[]));

    let out = ok(cwd, &["fidelity", "--live", "live", "--json", "f.json"]);
    assert!(out.contains("(the run it replays)"), "{out}");
    assert!(out.contains("verdict: PASS"), "{out}");
    let f = json(&cwd.join("f.json"));
    assert_eq!(f["mode"], "pair");
    assert_eq!(f["pass"], true);
    assert_eq!(f["mape"], 0.0);
    let metrics = f["metrics"].as_array().unwrap();
    for name in [
        "makespan_p95_ms",
        "cost_total",
        "queue_wait_p95_ms",
        "hedges",
        "escalations",
        "rate_limited",
    ] {
        let m = metrics.iter().find(|m| m["metric"] == name).unwrap();
        assert_eq!(m["rel_error"], 0.0, "{name}: {m}");
    }
    assert!(
        metrics
            .iter()
            .any(|m| m["scope"] == "tier llm_provider/1" && m["metric"] == "utilization")
    );
    assert!(
        f["transport_overhead"]
            .as_str()
            .unwrap()
            .starts_with("transport overhead: none (the live run answered in process")
    );

    // Against another run the verdict fails with exit 1 and says why.
    ok(
        cwd,
        &[
            "simulate",
            "--workflows",
            "6",
            "--seed",
            "5",
            "--policy",
            "fifo_cheapest",
            "--out",
            "other",
            "--quiet",
        ],
    );
    let o = agentsched_in(cwd, &["fidelity", "--live", "live", "--sim", "other"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("verdict: FAIL"), "{text}");
    assert!(text.contains("makespan_p95_ms off by"), "{text}");
}

#[test]
fn a_changed_replay_is_recorded_and_fidelity_simulates_its_scenario() {
    let d = tempfile::tempdir().unwrap();
    let cwd = d.path();
    ok(
        cwd,
        &[
            "simulate",
            "--workflows",
            "5",
            "--policy",
            "dag_escalation",
            "--out",
            "sim",
            "--quiet",
        ],
    );
    std::fs::write(cwd.join("c.json"), r#"{"escalation_threshold_s": 2.0}"#).unwrap();
    ok(
        cwd,
        &[
            "live",
            "run",
            "--from-run",
            "sim",
            "--constants",
            "c.json",
            "--in-process",
            "--time-scale",
            "1000",
            "--out",
            "live",
            "--quiet",
        ],
    );
    let live = json(&cwd.join("live/summary.json"));
    assert_eq!(
        live["replays"]["changed"],
        serde_json::json!(["--constants c.json"])
    );
    let scenario = json(&cwd.join("live/scenario.json"));
    assert_eq!(scenario["constants"]["escalation_threshold_s"], 2.0);
    // The partner no longer matches: fidelity simulates the live scenario.
    let out = ok(cwd, &["fidelity", "--live", "live"]);
    assert!(out.contains("a simulation of"), "{out}");
    assert!(
        out.contains("MAPE over the headline metrics (*): 0.0%"),
        "{out}"
    );
    // A time scale alone changes nothing simulated: not a change.
    ok(
        cwd,
        &[
            "live",
            "run",
            "--from-run",
            "sim",
            "--in-process",
            "--time-scale",
            "500",
            "--out",
            "live2",
            "--quiet",
        ],
    );
    let live2 = json(&cwd.join("live2/summary.json"));
    assert_eq!(live2["replays"]["changed"], serde_json::json!([]));
}

#[test]
fn a_sweep_run_replays_from_its_experiment_and_a_tampered_one_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let cwd = d.path();
    std::fs::write(
        cwd.join("exp.json"),
        r#"{"name": "pol", "common_args": {"workflows": 4, "pdfs": 3},
            "matrix": {"policy": ["fifo_cheapest", "full"], "seeds": [7]}}"#,
    )
    .unwrap();
    ok(
        cwd,
        &[
            "sweep",
            "--config",
            "exp.json",
            "--out-root",
            "x",
            "--quiet",
            "--jobs",
            "1",
        ],
    );
    let runs = cwd.join("x/pol/runs");
    let mut ids: Vec<String> = std::fs::read_dir(&runs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    let full = ids.iter().find(|i| i.starts_with("full__")).unwrap();
    let run = format!("x/pol/runs/{full}");
    ok(
        cwd,
        &[
            "live",
            "run",
            "--from-run",
            &run,
            "--in-process",
            "--time-scale",
            "1000",
            "--out",
            "live",
            "--quiet",
        ],
    );
    let live = json(&cwd.join("live/summary.json"));
    let meta = json(&runs.join(full).join("meta.json"));
    assert_eq!(live["seed"], 7);
    assert_eq!(live["policy"], "full");
    assert_eq!(live["output_digest"], meta["output_digest"]);
    let scenario = json(&cwd.join("live/scenario.json"));
    assert_eq!(scenario["workload"]["pdfs"], 3);
    // The run's out/ directory names the same run.
    let out = ok(
        cwd,
        &["fidelity", "--live", "live", "--sim", &format!("{run}/out")],
    );
    assert!(out.contains("verdict: PASS"), "{out}");

    // A meta.json whose hash does not match what its parameters resolve to.
    let mut m = meta.clone();
    m["params"]["workflows"] = 5.into();
    std::fs::write(runs.join(full).join("meta.json"), m.to_string()).unwrap();
    let o = agentsched_in(
        cwd,
        &[
            "live",
            "run",
            "--from-run",
            &run,
            "--in-process",
            "--out",
            "l2",
            "--quiet",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("config_hash") && e.contains("meta.json"), "{e}");
    assert!(!cwd.join("l2").exists(), "nothing ran");
}

#[test]
fn bad_fidelity_input_exits_2_naming_the_flag() {
    let d = tempfile::tempdir().unwrap();
    let cwd = d.path();
    ok(
        cwd,
        &["simulate", "--workflows", "3", "--out", "sim", "--quiet"],
    );
    for (args, want) in [
        (vec!["fidelity", "--live", "sim"], "is a simulated run"),
        (vec!["fidelity", "--live", "nowhere"], "not a directory"),
        (
            vec!["fidelity", "--live", "sim", "--objective", "speed"],
            "--objective speed",
        ),
        (
            vec!["fidelity", "--live", "sim", "--max-mape", "-1"],
            "--max-mape",
        ),
        (
            vec!["fidelity", "--sim-exp", "sim", "--live-exp", "sim"],
            "not an experiment directory",
        ),
        (
            vec![
                "live",
                "run",
                "--from-run",
                "sim",
                "--policy",
                "full",
                "--in-process",
            ],
            "cannot be used with",
        ),
        (
            vec!["live", "run", "--from-run", ".", "--in-process"],
            "not a recorded run",
        ),
    ] {
        let o = agentsched_in(cwd, &args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", err(&o));
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains(want), "{args:?}: {e}");
    }
}

/// Writes `exp.json`: the four policies over `seeds` with `common_args`,
/// named `name`; sweeps it in simulation into `sim/`.
fn simulated_policy_sweep(cwd: &Path, name: &str, common_args: &str, seeds: &str) {
    std::fs::write(
        cwd.join("exp.json"),
        format!(
            r#"{{"name": "{name}", "common_args": {common_args},
                "matrix": {{"policy": ["fifo_cheapest", "dag_cheapest", "dag_escalation", "full"],
                           "seeds": [{seeds}]}}}}"#
        ),
    )
    .unwrap();
    ok(
        cwd,
        &[
            "sweep",
            "--config",
            "exp.json",
            "--out-root",
            "sim",
            "--quiet",
            "--jobs",
            "2",
        ],
    );
}

#[test]
fn two_experiments_are_ranked_and_a_swapped_ranking_fails() {
    let d = tempfile::tempdir().unwrap();
    let cwd = d.path();
    simulated_policy_sweep(cwd, "pol", r#"{"workflows": 6}"#, "1, 2");
    // A live experiment of the same matrix: each run replayed in process
    // into the same layout (meta.json beside out/).
    let sim_runs = cwd.join("sim/pol/runs");
    for e in std::fs::read_dir(&sim_runs).unwrap() {
        let id = e.unwrap().file_name().to_string_lossy().into_owned();
        let dir = cwd.join("live/pol/runs").join(&id);
        std::fs::create_dir_all(&dir).unwrap();
        ok(
            cwd,
            &[
                "live",
                "run",
                "--from-run",
                &format!("sim/pol/runs/{id}"),
                "--in-process",
                "--time-scale",
                "1000",
                "--out",
                &format!("live/pol/runs/{id}/out"),
                "--quiet",
            ],
        );
        std::fs::copy(sim_runs.join(&id).join("meta.json"), dir.join("meta.json")).unwrap();
    }
    let out = ok(
        cwd,
        &[
            "fidelity",
            "--sim-exp",
            "sim/pol",
            "--live-exp",
            "live/pol",
            "--json",
            "f.json",
        ],
    );
    assert!(out.contains("4 configurations in both"), "{out}");
    let f = json(&cwd.join("f.json"));
    assert_eq!(f["pass"], true);
    // Against the emulator every answer is as long as asked, and answered.
    assert_eq!(f["measurement_warnings"], serde_json::json!([]), "{f}");
    for r in f["rankings"].as_array().unwrap() {
        assert_eq!(r["kendall_tau"], 1.0, "{r}");
        assert_eq!(r["identical"], true);
    }
    // Make live's p95 winner the simulated loser: the ranking and the
    // winner disagree, exit 1.
    let rows = |dir: &Path| -> Vec<(String, f64)> {
        let mut v: Vec<(String, f64)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                let mut r = csv::Reader::from_path(p.join("out/summary.csv")).unwrap();
                let h = r.headers().unwrap().clone();
                let rec = r.records().next().unwrap().unwrap();
                let i = h.iter().position(|c| c == "makespan_p95_ms").unwrap();
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    rec[i].parse().unwrap(),
                )
            })
            .collect();
        v.sort_by(|a, b| a.1.total_cmp(&b.1));
        v
    };
    let by_p95 = rows(&cwd.join("live/pol/runs"));
    let slowest_policy = by_p95
        .last()
        .unwrap()
        .0
        .split("__")
        .next()
        .unwrap()
        .to_string();
    for e in std::fs::read_dir(cwd.join("live/pol/runs")).unwrap() {
        let p = e.unwrap().path();
        if !p
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(&slowest_policy)
        {
            continue;
        }
        let csv_path = p.join("out/summary.csv");
        let text = std::fs::read_to_string(&csv_path).unwrap();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let mut row: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
        let i = header.iter().position(|c| *c == "makespan_p95_ms").unwrap();
        row[i] = "1".into();
        std::fs::write(
            &csv_path,
            format!("{}\n{}\n", header.join(","), row.join(",")),
        )
        .unwrap();
    }
    let o = agentsched_in(
        cwd,
        &[
            "fidelity",
            "--sim-exp",
            "sim/pol",
            "--live-exp",
            "live/pol",
            "--json",
            "g.json",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    let g = json(&cwd.join("g.json"));
    let p95 = &g["rankings"][0];
    assert_eq!(p95["objective"], "makespan_p95_ms");
    assert_eq!(p95["same_winner"], false);
    assert_eq!(
        p95["live_order"][0],
        format!("policy={slowest_policy}"),
        "{p95}"
    );
    assert!(p95["kendall_tau"].as_f64().unwrap() < 1.0);
    // Cost was not touched: its ranking still agrees.
    assert_eq!(g["rankings"][1]["identical"], true);
}

/// The issue's ranking check: a simulated and a live sweep (the emulator
/// over HTTP, time scale 50, seeds 1-3: about 170 s) of the four policies
/// on the default scenario rank them alike by p95 and by cost. Over three
/// seeds the simulation separates the escalating policies (dag_escalation,
/// full) from the cheap ones (fifo_cheapest, dag_cheapest), about 2x apart
/// in p95 and 35% in cost; within each group the means are 1-9% apart,
/// inside the seeds' spread (Welch, 95%) or the 2% margin: ties, whose live
/// order is not held against it. (With two seeds fifo_cheapest and
/// dag_cheapest came out 7.5% apart in p95 and swapped live in about one
/// run in four: one live run of this agent moves its p95 by up to 14%.)
///
/// The absolute errors are held to 25% MAPE, not the default 15%: at time
/// scale 50 each call's real HTTP round trip (1-2 ms) is 50-100 ms of
/// scenario time, which the simulation does not model and queueing
/// amplifies, so live makespans run 6-27% long per configuration. On this
/// kind of machine the mean MAPE of this sweep was 9.3% and 15.2% (a CI
/// failure) for one build and 13.0% for the build before it, whose live
/// path is the same. The rankings, which are what this test is about, are
/// held exactly.
#[test]
fn a_live_sweep_of_the_four_policies_ranks_them_as_the_simulation_does() {
    let d = tempfile::tempdir().unwrap();
    let cwd = d.path();
    let emu = Emulator::start(cwd, "ep.json", &["--time-scale", "50"]);
    simulated_policy_sweep(
        cwd,
        "rank",
        r#"{"workflows": 50, "time_scale": 50}"#,
        "1, 2, 3",
    );
    let ep = emu.endpoints.to_string_lossy().into_owned();
    ok(
        cwd,
        &[
            "sweep",
            "--config",
            "exp.json",
            "--live",
            &ep,
            "--out-root",
            "live",
            "--quiet",
        ],
    );
    drop(emu);
    let out = ok(
        cwd,
        &[
            "fidelity",
            "--sim-exp",
            "sim/rank",
            "--live-exp",
            "live/rank",
            "--max-mape",
            "0.25",
            "--json",
            "f.json",
        ],
    );
    let f = json(&cwd.join("f.json"));
    assert_eq!(f["pass"], true, "{out}");
    let rankings = f["rankings"].as_array().unwrap();
    assert_eq!(rankings.len(), 2);
    for r in rankings {
        assert_eq!(r["agree_up_to_ties"], true, "{out}");
        assert_eq!(r["reversed_pairs"].as_array().unwrap().len(), 0, "{out}");
        assert_eq!(r["same_winner"], true, "{out}");
        // 1 unless a separated pair came out within 2% live (a live tie).
        assert!(r["kendall_tau"].as_f64().unwrap() >= 0.8, "{out}");
        // Not vacuous: at most the pair within each group is tied, so at
        // least the 4 pairs across the groups were checked.
        assert!(r["simulated_ties"].as_array().unwrap().len() <= 2, "{out}");
    }
    assert!(out.contains("verdict: PASS"), "{out}");
}

/// Failed runs have nothing to compare: each side says how many it left
/// out and why, and the comparison goes on with the rest.
#[test]
fn failed_runs_of_an_experiment_are_left_out_and_named() {
    let d = tempfile::tempdir().unwrap();
    let cwd = d.path();
    std::fs::write(
        cwd.join("pb.json"),
        r#"{"name": "pb", "common_args": {"iters": 1, "workflows": 3},
            "matrix": {"pdfs": [0, 2], "policy": ["full", "fifo_cheapest"], "seeds": [1, 2]}}"#,
    )
    .unwrap();
    let o = agentsched_in(
        cwd,
        &["sweep", "--config", "pb.json", "--out-root", "x", "--quiet"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    let o = agentsched_in(
        cwd,
        &["fidelity", "--sim-exp", "x/pb", "--live-exp", "x/pb"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let e = err(&o);
    for flag in ["--sim-exp", "--live-exp"] {
        assert!(
            e.contains(&format!("warning: {flag} x/pb: 4 of its 8 runs failed and are left out:\n  4 runs, exit 2: workload.pdfs: expected an integer >= 1, got 0 (e.g. ")),
            "{e}"
        );
    }
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("2 configurations in both"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}
