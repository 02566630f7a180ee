//! `agentsched bench` and its eval report, as an optimisation agent uses them:
//! run, change something, run again, read the JSON verdict.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util::{agentsched_in, err};

const ONE: &[&str] = &[
    "bench",
    "--suite",
    "quick",
    "--only",
    "research_agent_1k/fifo_cheapest",
    "--reps",
    "1",
    "--quiet",
    "--results-dir",
    "r",
];

fn results(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("r"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".json"))
        .collect();
    v.sort();
    v
}

fn read(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn run_with(dir: &Path, extra: &[&str]) -> std::process::Output {
    let args: Vec<&str> = ONE.iter().chain(extra).copied().collect();
    agentsched_in(dir, &args)
}

/// A hand-made earlier results file: the measured one with its time scaled
/// and, optionally, its digest replaced.
fn hand_made(measured: &Value, time_factor: Option<f64>, digest: Option<&str>) -> Value {
    let mut v = measured.clone();
    let b = &mut v["benchmarks"][0];
    b["time_s"] = match time_factor {
        Some(f) => (b["time_s"].as_f64().unwrap() * f).into(),
        None => Value::Null,
    };
    if let Some(d) = digest {
        b["output_digest"] = d.into();
    }
    v
}

#[test]
fn eval_report_scores_speed_and_vetoes_changed_output() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    // First run: results written, no report, exit 0.
    let o = run_with(dir, &["--eval-report", "eval.json"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("first run"));
    assert!(!dir.join("eval.json").exists());
    let first = results(dir);
    assert_eq!(first.len(), 1);
    let measured = read(&first[0]);
    let b = &measured["benchmarks"][0];
    assert_eq!(b["name"], "research_agent_1k/fifo_cheapest");
    assert!(b["time_s"].as_f64().unwrap() > 0.0);
    assert_eq!(b["output_digest"].as_str().unwrap().len(), 40);
    // What --only left out is recorded: the suite's other benchmarks.
    let left_out = measured["not_selected"].as_array().unwrap();
    assert!(left_out.contains(&"research_agent_1k/full".into()));
    assert!(!left_out.contains(&"research_agent_1k/fifo_cheapest".into()));

    // An earlier run 10x slower with the same digest: a positive score.
    // It also timed `full`, which this run leaves out: not run, no veto.
    std::fs::remove_file(&first[0]).unwrap();
    let mut slower = hand_made(&measured, Some(10.0), None);
    let mut full = slower["benchmarks"][0].clone();
    full["name"] = "research_agent_1k/full".into();
    slower["benchmarks"].as_array_mut().unwrap().push(full);
    std::fs::write(dir.join("r/results_1000.json"), slower.to_string()).unwrap();
    let o = run_with(dir, &["--eval-report", "eval.json"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let r = read(&dir.join("eval.json"));
    assert!(
        r["baseline"]
            .as_str()
            .unwrap()
            .ends_with("results_1000.json")
    );
    let e = &r["benchmarks"][0];
    assert!(e["perf_gain"].as_f64().unwrap() > 1.0, "{r}");
    assert_eq!(e["output_changed"], false);
    assert_eq!(e["score"], e["perf_gain"]);
    assert_eq!(r["aggregate_score"], e["score"]);
    assert_eq!(r["is_acceptable"], true);
    assert_eq!(r["improvements"][0], "research_agent_1k/fifo_cheapest");
    assert_eq!(r["not_run"], serde_json::json!(["research_agent_1k/full"]));
    assert_eq!(r["removed"], serde_json::json!([]));
    assert_eq!(results(dir).len(), 2, "results accumulate; none replaced");

    // The same, but one digest changed: score 0, not acceptable, exit 1.
    let changed = dir.join("changed.json");
    std::fs::write(
        &changed,
        hand_made(&measured, Some(10.0), Some("0000")).to_string(),
    )
    .unwrap();
    let o = run_with(
        dir,
        &[
            "--baseline",
            "changed.json",
            "--eval-report",
            "reports/new/eval2.json",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    // The report's directory is made for it.
    let r = read(&dir.join("reports/new/eval2.json"));
    assert_eq!(r["benchmarks"][0]["output_changed"], true);
    assert_eq!(r["benchmarks"][0]["score"], 0.0);
    assert_eq!(r["aggregate_score"], 0.0);
    assert_eq!(r["is_acceptable"], false);
    assert_eq!(r["output_changed"][0], "research_agent_1k/fifo_cheapest");

    // An unknown earlier time: gain and score null (never NaN), exit 1.
    // That baseline is also a full-suite run: a warning says so.
    let mut unknown = hand_made(&measured, None, None);
    unknown["suite"] = "full".into();
    unknown["repetitions"] = 7.into();
    std::fs::write(&changed, unknown.to_string()).unwrap();
    let o = run_with(
        dir,
        &["--baseline", "changed.json", "--eval-report", "eval3.json"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(
        err(&o)
            .contains("is a `full` suite run of 7 repetitions, this is a `quick` suite run of 1"),
        "{}",
        err(&o)
    );
    let text = std::fs::read_to_string(dir.join("eval3.json")).unwrap();
    assert!(!text.contains("NaN"), "{text}");
    let r: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(r["benchmarks"][0]["perf_gain"], Value::Null);
    assert_eq!(r["benchmarks"][0]["score"], Value::Null);
    assert_eq!(r["aggregate_score"], Value::Null);
    assert_eq!(r["is_acceptable"], false);

    // The results name this machine's processor, as /proc/cpuinfo does.
    let cpu = measured["machine"]["cpu"].as_str().unwrap();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    assert_eq!(
        !cpu.is_empty(),
        cpuinfo.lines().any(|l| l.starts_with("model name")),
        "{cpu:?}"
    );
    // An earlier run 10x slower, but on another machine: times not
    // compared, so no score and exit 1; the outputs still are.
    let mut elsewhere = hand_made(&measured, Some(10.0), None);
    elsewhere["machine"]["cpu"] = "some other processor".into();
    std::fs::write(&changed, elsewhere.to_string()).unwrap();
    let o = run_with(
        dir,
        &["--baseline", "changed.json", "--eval-report", "eval4.json"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("measured on another machine"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let r = read(&dir.join("eval4.json"));
    assert!(
        r["machine_differs"]
            .as_str()
            .unwrap()
            .contains("some other processor"),
        "{r}"
    );
    let e = &r["benchmarks"][0];
    assert_eq!(e["perf_gain"], Value::Null);
    assert_eq!(e["score"], Value::Null);
    assert_eq!(e["change"], "not_comparable");
    assert_eq!(e["output_changed"], false);
    assert_eq!(r["is_acceptable"], false);

    // The report may not replace the baseline it reads.
    let before = std::fs::read(&changed).unwrap();
    let o = run_with(
        dir,
        &[
            "--baseline",
            "changed.json",
            "--eval-report",
            "changed.json",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert_eq!(std::fs::read(&changed).unwrap(), before);
}

#[test]
fn bad_baselines_and_filters_are_refused_before_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("b.json"), r#"{"schema": "x", "benchmarks": 3}"#).unwrap();
    let o = run_with(dir, &["--baseline", "b.json"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("b.json"), "{}", err(&o));
    assert!(!dir.join("r").exists(), "nothing ran");

    // An eval report that cannot be written is refused before the run too.
    std::fs::create_dir(dir.join("a_dir")).unwrap();
    std::fs::write(dir.join("a_file"), "mine").unwrap();
    for (report, expected) in [
        ("a_dir", "a_dir: is a directory"),
        ("a_file/eval.json", "cannot make its directory a_file"),
    ] {
        let o = run_with(dir, &["--eval-report", report]);
        assert_eq!(o.status.code(), Some(2), "{report}");
        assert!(err(&o).contains(expected), "{report}: {}", err(&o));
        assert!(!dir.join("r").exists(), "{report}: nothing ran");
    }
    assert_eq!(std::fs::read_to_string(dir.join("a_file")).unwrap(), "mine");

    let o = agentsched_in(
        dir,
        &["bench", "--only", "no_such_benchmark", "--results-dir", "r"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err(&o).contains("research_agent_1k/full"),
        "lists the names: {}",
        err(&o)
    );
}

/// `--baseline-bin`: a baseline that is this very binary computes the same
/// thing; one that computes something else is vetoed; one that does not run
/// is bad input.
#[test]
fn paired_runs_time_a_baseline_binary_alternately_and_judge_its_output() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let me = env!("CARGO_BIN_EXE_agentsched");
    let paired = |baseline: &str, report: &str| {
        let mut args: Vec<&str> = ONE.to_vec();
        args[6] = "2"; // --reps
        args.extend(["--baseline-bin", baseline, "--eval-report", report]);
        agentsched_in(dir, &args)
    };

    let o = paired(me, "same.json");
    let r = read(&dir.join("same.json"));
    let acceptable = r["is_acceptable"].as_bool().unwrap();
    // Exit 0 exactly when the report is acceptable (the same binary may
    // measure faster or slower than itself; its output may not change).
    assert_eq!(
        o.status.code(),
        Some(if acceptable { 0 } else { 1 }),
        "{}",
        err(&o)
    );
    let e = &r["benchmarks"][0];
    assert_eq!(e["name"], "research_agent_1k/fifo_cheapest");
    assert_eq!(e["output_changed"], false);
    assert!(e["perf_gain"].as_f64().is_some(), "{r}");
    // Each repetition's own gain: its median, but no 95% interval from 2.
    assert_eq!(e["paired"]["repetitions"], 2, "{r}");
    assert!(e["paired"]["median_gain"].as_f64().is_some(), "{r}");
    assert!(e["paired"]["low"].is_null() && e["paired"]["high"].is_null());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("paired median"), "{text}");
    let files = results(dir);
    assert_eq!(files.len(), 2, "the baseline's and this binary's results");
    assert_eq!(dir.join(r["baseline"].as_str().unwrap()), files[0]);
    assert_eq!(dir.join(r["current"].as_str().unwrap()), files[1]);
    for f in &files {
        let v = read(f);
        assert_eq!(v["binary"], me);
        assert_eq!(v["repetitions"], 2);
        assert_eq!(v["benchmarks"][0]["times_s"].as_array().unwrap().len(), 2);
        let left_out = v["not_selected"].as_array().unwrap();
        assert!(left_out.contains(&"research_agent_1k/full".into()), "{v}");
    }

    // A baseline whose results carry another digest: score 0, exit 1.
    let fake = dir.join("other-build");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\n\"{me}\" \"$@\" || exit $?\nwhile [ $# -gt 0 ]; do\n  if [ \"$1\" = --results-dir ]; then\n    sed -i -E 's/\"output_digest\": \"[0-9a-f]+\"/\"output_digest\": \"0000\"/' \"$2\"/results_*.json\n  fi\n  shift\ndone\n"
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = paired(fake.to_str().unwrap(), "other.json");
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    let r = read(&dir.join("other.json"));
    assert_eq!(r["benchmarks"][0]["output_changed"], true);
    assert_eq!(r["benchmarks"][0]["score"], 0.0);
    assert_eq!(r["is_acceptable"], false);
    assert_eq!(r["output_changed"][0], "research_agent_1k/fifo_cheapest");
    assert_eq!(results(dir).len(), 4);

    // Not runnable, or beside --baseline: refused before anything runs.
    let o = paired("/nonexistent/agentsched", "x.json");
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains("--baseline-bin /nonexistent/agentsched"),
        "{}",
        err(&o)
    );
    // A program that runs but is not agentsched (`true` lists nothing).
    let o = paired("true", "x.json");
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains("printed no benchmark; expected a build of agentsched"),
        "{}",
        err(&o)
    );
    let o = agentsched_in(
        dir,
        &["bench", "--baseline-bin", me, "--baseline", "b.json"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert_eq!(results(dir).len(), 4, "nothing ran");
    assert!(!dir.join("x.json").exists());
}
