//! Sweeps as users run them: the binary on the seed's configs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{agentsched_in, err};

fn smoke() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/smoke.json")
}

fn default_cfg() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/default.json")
}

/// run id -> output digest, for every completed run of an experiment.
fn digests(exp: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(exp.join("runs")).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!name.starts_with('.'), "leftover partial directory {name}");
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(p.join("meta.json")).unwrap()).unwrap();
        assert_eq!(meta["exit_code"], 0, "{name}");
        // The digest covers workflows.csv, tiers.csv and summary.csv minus wall time.
        out.insert(name, meta["output_digest"].as_str().unwrap().to_string());
    }
    out
}

/// Every file of every run, except the ones that hold wall-clock times.
fn run_files(exp: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(exp.join("runs")).unwrap() {
        let run = e.unwrap().path();
        for f in ["out/workflows.csv", "out/tiers.csv", "stderr.txt"] {
            out.insert(
                format!("{}/{f}", run.file_name().unwrap().to_string_lossy()),
                std::fs::read(run.join(f)).unwrap(),
            );
        }
    }
    out
}

#[test]
fn dry_run_lists_the_plan_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let o = agentsched_in(
        tmp.path(),
        &[
            "sweep",
            "--config",
            default_cfg().to_str().unwrap(),
            "--dry_run",
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(text.lines().filter(|l| l.contains("__seed")).count(), 96);
    assert!(text.contains("96 runs planned"));
    let o = agentsched_in(
        tmp.path(),
        &[
            "sweep",
            "--config",
            smoke().to_str().unwrap(),
            "--dry-run",
            "--shard",
            "2/3",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.contains("__seed"))
            .count(),
        3
    );
    assert!(
        std::fs::read_dir(tmp.path()).unwrap().next().is_none(),
        "a dry run creates nothing"
    );
}

#[test]
fn results_do_not_depend_on_jobs_and_resume_reruns_exactly_the_incomplete() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = smoke();
    let cfg = cfg.to_str().unwrap();
    for (name, jobs) in [("j1", "1"), ("j2", "2")] {
        let o = agentsched_in(
            tmp.path(),
            &[
                "sweep",
                "--config",
                cfg,
                "--exp-name",
                name,
                "--jobs",
                jobs,
                "--quiet",
            ],
        );
        assert!(o.status.success(), "{}", err(&o));
    }
    let j1 = tmp.path().join("bench_runs/j1");
    let j2 = tmp.path().join("bench_runs/j2");
    assert_eq!(digests(&j1).len(), 8);
    assert_eq!(digests(&j1), digests(&j2));
    assert_eq!(run_files(&j1), run_files(&j2));

    // Break two runs: one loses its summary, one was made with another configuration.
    let ids: Vec<String> = digests(&j1).into_keys().collect();
    std::fs::remove_file(j1.join("runs").join(&ids[0]).join("out/summary.csv")).unwrap();
    let meta_path = j1.join("runs").join(&ids[3]).join("meta.json");
    let meta = std::fs::read_to_string(&meta_path)
        .unwrap()
        .replace("\"config_hash\": \"", "\"config_hash\": \"x");
    std::fs::write(&meta_path, meta).unwrap();
    let o = agentsched_in(
        tmp.path(),
        &["sweep", "--config", cfg, "--exp-name", "j1", "--resume"],
    );
    assert!(o.status.success(), "{}", err(&o));
    let msg = String::from_utf8_lossy(&o.stderr);
    assert!(msg.contains("2 executed, 6 skipped"), "{msg}");
    assert_eq!(digests(&j1), digests(&j2));
    // Collected tables agree too, except the wall-clock columns.
    for dir in [&j1, &j2] {
        let o = agentsched_in(tmp.path(), &["collect", "--exp_dir", dir.to_str().unwrap()]);
        assert!(o.status.success(), "{}", err(&o));
    }
    let strip = |p: &Path| -> Vec<Vec<String>> {
        let mut r = csv::Reader::from_path(p.join("aggregate/runs.csv")).unwrap();
        let head: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
        let keep: Vec<usize> = (0..head.len())
            .filter(|&i| {
                ![
                    "wall_time_s",
                    "sim_wall_time_s",
                    "run_dir",
                    "start_time_unix_s",
                    "end_time_unix_s",
                ]
                .contains(&head[i].as_str())
            })
            .collect();
        r.records()
            .map(|rec| {
                keep.iter()
                    .map(|&i| rec.as_ref().unwrap()[i].to_string())
                    .collect()
            })
            .collect()
    };
    assert_eq!(strip(&j1), strip(&j2));
    assert_eq!(
        std::fs::read(j1.join("aggregate/sweep_aggregate.json")).unwrap(),
        std::fs::read(j2.join("aggregate/sweep_aggregate.json")).unwrap()
    );
}

#[test]
fn shards_partition_the_plan_and_their_union_is_the_sweep() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = smoke();
    let cfg = cfg.to_str().unwrap();
    let o = agentsched_in(
        tmp.path(),
        &["sweep", "--config", cfg, "--exp-name", "whole", "--quiet"],
    );
    assert!(o.status.success(), "{}", err(&o));
    let mut seen = 0;
    for k in 1..=3 {
        let shard = format!("{k}/3");
        let o = agentsched_in(
            tmp.path(),
            &[
                "sweep",
                "--config",
                cfg,
                "--exp-name",
                "sharded",
                "--shard",
                &shard,
                "--quiet",
            ],
        );
        assert!(o.status.success(), "{}", err(&o));
        let now = digests(&tmp.path().join("bench_runs/sharded")).len();
        assert!(now > seen, "shard {shard} added runs");
        seen = now;
    }
    assert_eq!(
        digests(&tmp.path().join("bench_runs/whole")),
        digests(&tmp.path().join("bench_runs/sharded"))
    );
}

#[test]
fn a_sweep_killed_mid_write_and_resumed_ends_complete_and_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = default_cfg();
    let cfg = cfg.to_str().unwrap();
    let o = agentsched_in(
        tmp.path(),
        &[
            "sweep",
            "--config",
            cfg,
            "--exp-name",
            "clean",
            "--jobs",
            "2",
            "--quiet",
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    let want = digests(&tmp.path().join("bench_runs/clean"));
    assert_eq!(want.len(), 96);
    // Kill -9 at a few different moments, resuming in between.
    for delay_ms in [60u64, 150, 300] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_agentsched"))
            .current_dir(tmp.path())
            .args([
                "sweep",
                "--config",
                cfg,
                "--exp-name",
                "killed",
                "--jobs",
                "2",
                "--quiet",
                "--resume",
            ])
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    let o = agentsched_in(
        tmp.path(),
        &[
            "sweep",
            "--config",
            cfg,
            "--exp-name",
            "killed",
            "--resume",
            "--quiet",
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    let exp = tmp.path().join("bench_runs/killed");
    assert_eq!(digests(&exp), want);
    // No temporary file anywhere.
    fn walk(p: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(p).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p.file_name().unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut files = Vec::new();
    walk(&exp, &mut files);
    assert!(
        files.iter().all(|f| !f.contains("tmp")),
        "temporary files left: {files:?}"
    );
}

#[test]
fn failed_runs_are_recorded_and_the_sweep_goes_on_unless_fail_fast() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("bad_values.json");
    std::fs::write(
        &cfg,
        r#"{"name": "partly_bad", "common_args": {"iters": 1}, "matrix": {"pdfs": [0, 2], "workflows": [3], "policy": ["full"], "seeds": [1, 2]}}"#,
    )
    .unwrap();
    let o = agentsched_in(tmp.path(), &["sweep", "--config", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    // Each failed run says why as it ends, and the sweep's last lines group
    // the failures by reason.
    const WHY: &str = "workload.pdfs: expected an integer >= 1, got 0";
    let progress = err(&o);
    let failed_lines: Vec<&str> = progress.lines().filter(|l| l.contains("FAILED")).collect();
    assert_eq!(failed_lines.len(), 2, "{progress}");
    for l in &failed_lines {
        assert!(l.ends_with(&format!(": exit 2: {WHY}")), "{l}");
    }
    assert!(
        progress.contains(&format!(
            "\nfailed: 2 runs, exit 2: {WHY} (e.g. full__wf3__seed"
        )),
        "{progress}"
    );
    let runs = tmp.path().join("bench_runs/partly_bad/runs");
    let mut failed = 0;
    for e in std::fs::read_dir(&runs).unwrap() {
        let p = e.unwrap().path();
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(p.join("meta.json")).unwrap()).unwrap();
        if meta["params"]["pdfs"] == 0 {
            failed += 1;
            assert_eq!(meta["exit_code"], 2);
            assert!(
                std::fs::read_to_string(p.join("stderr.txt"))
                    .unwrap()
                    .contains("workload.pdfs")
            );
        } else {
            assert_eq!(meta["exit_code"], 0);
        }
    }
    assert_eq!(failed, 2);
    let o = agentsched_in(
        tmp.path(),
        &["collect", "--exp-dir", "bench_runs/partly_bad"],
    );
    assert!(o.status.success(), "{}", err(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("4 runs (2 failed)"));
    assert!(
        err(&o).contains(&format!(
            "failed: 2 runs, exit 2: {WHY} (e.g. full__wf3__seed1__"
        )),
        "{}",
        err(&o)
    );
    // runs.csv says why each failed run failed, and nothing for the others.
    let mut csv =
        csv::Reader::from_path(tmp.path().join("bench_runs/partly_bad/aggregate/runs.csv"))
            .unwrap();
    let head = csv.headers().unwrap().clone();
    let col = |k: &str| head.iter().position(|h| h == k).unwrap();
    let (pdfs, error) = (col("pdfs"), col("error"));
    // The configuration columns a matrix does not set come from the
    // scenario each run was given, refused or not: pandas reads the
    // booleans as booleans.
    let resolved = [
        "time_scale",
        "subqueries",
        "heavy_tail_prob",
        "disable_hedging",
    ]
    .map(col);
    let rows: Vec<csv::StringRecord> = csv.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 4);
    for r in &rows {
        let p = &r[pdfs];
        assert_eq!(&r[error], if p == "0" { WHY } else { "" }, "pdfs {p}");
        let given: Vec<&str> = resolved.iter().map(|&c| &r[c]).collect();
        assert_eq!(given, ["50.0", "4", "0.02", "False"], "pdfs {p}");
    }
    // The report lists the reason, and the runs table shows the swept
    // `pdfs` (it varies only between failed and successful runs) and why.
    let o = agentsched_in(
        tmp.path(),
        &["report", "--exp-dir", "bench_runs/partly_bad"],
    );
    assert!(o.status.success(), "{}", err(&o));
    let page = std::fs::read_to_string(tmp.path().join("bench_runs/partly_bad/report/index.html"))
        .unwrap();
    let why_html = WHY.replace('>', "&gt;");
    assert!(
        page.contains(&format!(
            "<li>2 runs, exit 2: {why_html} (e.g. full__wf3__seed1__"
        )),
        "{page}"
    );
    assert!(
        page.contains("<th>ablation_name</th><th>pdfs</th><th>exit_code</th><th>error</th>"),
        "{page}"
    );
    assert_eq!(
        page.matches(&format!("<td>0</td><td>2</td><td>{why_html}</td>"))
            .count(),
        2,
        "{page}"
    );

    let o = agentsched_in(
        tmp.path(),
        &[
            "sweep",
            "--config",
            cfg.to_str().unwrap(),
            "--exp-name",
            "ff",
            "--fail-fast",
            "--jobs",
            "1",
            "--quiet",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    // --quiet drops the progress, not the reasons.
    assert!(!err(&o).contains("FAILED"), "{}", err(&o));
    assert!(
        err(&o).contains(&format!(", exit 2: {WHY} (e.g. full__wf3__seed")),
        "{}",
        err(&o)
    );
    let n = std::fs::read_dir(tmp.path().join("bench_runs/ff/runs"))
        .unwrap()
        .count();
    assert!(n < 4, "fail-fast stops starting runs ({n} ran)");
}

#[test]
fn bad_configs_exit_2_naming_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (r#"{"matrix": {"policy": ["fastest"]}}"#, "matrix.policy"),
        (
            r#"{"matrix": {"policy": ["full"], "colour": ["red"]}}"#,
            "unknown key `colour`",
        ),
        (r#"{"matrix": {"workflows": ["many"]}}"#, "matrix.workflows"),
        (r#"{"matrix": {"workflows": [5, 5]}}"#, "duplicate value 5"),
        (r#"{"matrix": {"workflows": []}}"#, "empty list"),
        (
            r#"{"matrix": {"seeds": [1], "ablations": [{"name": "x", "flags": ["--turbo"]}]}}"#,
            "--turbo",
        ),
        (r#"{"matrix": {}, "jobs": 0}"#, "jobs"),
        (r#"{"matrix": {}, "colour": 1}"#, "colour"),
        (
            r#"{"common_args": {"heavy_tail_prob": "high"}, "matrix": {}}"#,
            "common_args.heavy_tail_prob",
        ),
        (r#"{"matrix": "#, "invalid JSON"),
    ];
    for (i, (text, needle)) in cases.iter().enumerate() {
        let p = tmp.path().join(format!("c{i}.json"));
        std::fs::write(&p, text).unwrap();
        let o = agentsched_in(tmp.path(), &["sweep", "--config", p.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{text}: {}", err(&o));
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(
            e.contains(needle) && e.contains(&format!("c{i}.json")),
            "{text}: `{needle}` not in {e}"
        );
    }
    let o = agentsched_in(
        tmp.path(),
        &[
            "sweep",
            "--config",
            smoke().to_str().unwrap(),
            "--shard",
            "4/3",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        !tmp.path().join("bench_runs").exists(),
        "bad input writes nothing"
    );
}

#[test]
fn matrix_keys_may_be_scenario_paths_and_a_base_scenario() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("paths.json");
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/dag_example.json");
    std::fs::write(
        &cfg,
        format!(
            r#"{{"name": "paths", "scenario": "{}", "common_args": {{"workflows": 50}},
               "matrix": {{"providers.llm_provider.tiers.1.slots": [2, 8], "policy": ["fifo_cheapest", "full"], "seeds": [1, 2, 3]}}}}"#,
            base.display()
        ),
    )
    .unwrap();
    let o = agentsched_in(
        tmp.path(),
        &[
            "sweep",
            "--config",
            cfg.to_str().unwrap(),
            "--quiet",
            "--report",
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    let agg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            tmp.path()
                .join("bench_runs/paths/aggregate/sweep_aggregate.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let configs = agg["configurations"].as_array().unwrap();
    assert_eq!(configs.len(), 4, "2 slot counts x 2 policies");
    assert!(
        configs
            .iter()
            .all(|c| c["metrics"]["makespan_p95_ms"]["n"] == 3)
    );
    assert!(configs.iter().any(|c| {
        c["label"]
            .as_str()
            .unwrap()
            .contains("providers.llm_provider.tiers.1.slots=2")
    }));
    assert!(!agg["pareto_frontier"].as_array().unwrap().is_empty());
    let html =
        std::fs::read_to_string(tmp.path().join("bench_runs/paths/report/index.html")).unwrap();
    assert!(html.contains("<table") && html.contains("assets/pareto.svg"));
    // A simulated experiment has nothing live to compare.
    assert!(!html.contains("id=\"fidelity\""));
    // The slot count is numeric: a trend along it, in the JSON and the report.
    let trend = agg["trends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| {
            t["parameter"] == "providers.llm_provider.tiers.1.slots"
                && t["metric"] == "makespan_p95_ms"
        })
        .expect("a p95 trend along the slot count");
    assert_eq!(trend["values"], serde_json::json!([2.0, 8.0]));
    assert_eq!(trend["n_runs"], 12);
    assert!(
        html.contains("id=\"trends\"")
            && html.contains("providers.llm_provider.tiers.1.slots</td><td>makespan_p95_ms")
    );
    // The table of runs has a column for the slot count (else the two
    // counts' runs look alike), after the ablation, each run's value in it.
    let runs = &html[html.find("id=\"runs-table\"").unwrap()..];
    assert!(
        runs.contains(
            "<th>ablation_name</th><th>providers.llm_provider.tiers.1.slots</th><th>exit_code</th>"
        ),
        "{runs}"
    );
    for slots in ["2", "8"] {
        assert_eq!(
            runs.matches(&format!("<td>baseline</td><td>{slots}</td><td>0</td>"))
                .count(),
            6,
            "2 policies x 3 seeds with {slots} slots"
        );
    }
    for f in [
        "makespan_by_policy.svg",
        "cost_by_policy.svg",
        "ablation_deltas_full_p95_ratio.svg",
        "pareto.svg",
    ] {
        let svg =
            std::fs::read_to_string(tmp.path().join("bench_runs/paths/report/assets").join(f))
                .unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("</svg>"), "{f}");
    }
}

#[test]
fn token_limits_and_quality_curves_sweep_and_collect_like_any_field() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("realism.json");
    std::fs::write(
        &cfg,
        r#"{"name": "realism",
            "common_args": {"workflows": 6, "pdfs": 3, "subqueries": 2, "enable_model_routing": true},
            "matrix": {"policy": ["fifo_cheapest"], "seeds": [1],
              "providers.llm_provider.tiers.0.token_limit": [
                {"tokens_per_min": 30000, "token_burst": 4000, "enforced_by": "provider"},
                {"tokens_per_min": 3000000, "token_burst": 300000}],
              "providers.llm_provider.tiers.0.models.1.quality.midpoint": [0.3, 0.95]}}"#,
    )
    .unwrap();
    let o = agentsched_in(
        tmp.path(),
        &[
            "sweep",
            "--config",
            cfg.to_str().unwrap(),
            "--out-root",
            "runs",
            "--quiet",
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    let exp = tmp.path().join("runs/realism");
    let o = agentsched_in(tmp.path(), &["collect", "--exp-dir", exp.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    let mut r = csv::Reader::from_path(exp.join("aggregate/runs.csv")).unwrap();
    let head = r.headers().unwrap().clone();
    let col = |name: &str| {
        head.iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("{name} in {head:?}"))
    };
    let (tokens, redos) = (col("rate_limited_tokens"), col("redos"));
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 4);
    let n = |row: &csv::StringRecord, i: usize| row[i].parse::<u64>().unwrap();
    // The tight provider-enforced limit answers 429s; the loose one never.
    assert!(rows.iter().any(|x| n(x, tokens) > 0));
    assert!(rows.iter().any(|x| n(x, tokens) == 0));
    // The harsher curve (midpoint 0.3) redoes more than the mild one.
    let max = rows.iter().map(|x| n(x, redos)).max().unwrap();
    let min = rows.iter().map(|x| n(x, redos)).min().unwrap();
    assert!(max > min, "redos {min}..{max}");
}

#[test]
fn cleanup_removes_only_this_tools_stale_temporary_files() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tmp.path().join("bench_runs/smoke");
    std::fs::create_dir_all(&exp).unwrap();
    let mark = agentsched::output::TMP_MARK;
    let users = exp.join(".notes.tmp1");
    let stale = exp.join(format!(".experiment.json{mark}4242"));
    let fresh = exp.join(format!(".experiment.json{mark}4343"));
    for f in [&users, &stale, &fresh] {
        std::fs::write(f, "x").unwrap();
    }
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for f in [&users, &stale] {
        std::fs::File::options()
            .write(true)
            .open(f)
            .unwrap()
            .set_modified(hour_ago)
            .unwrap();
    }
    let o = agentsched_in(
        tmp.path(),
        &["sweep", "--config", smoke().to_str().unwrap(), "--quiet"],
    );
    assert!(o.status.success(), "{}", err(&o));
    assert!(
        users.exists(),
        "a file the tool did not make is never removed"
    );
    assert!(
        fresh.exists(),
        "another writer's fresh temporary file is left alone"
    );
    assert!(
        !stale.exists(),
        "a stale temporary file of the tool is cleaned up"
    );
}
