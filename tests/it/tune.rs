//! The tuning commands as users and optimisation agents run them.

use crate::util::{agentsched_in, err};

#[test]
fn factory_scenarios_are_deterministic_and_simulate_accepts_them() {
    let tmp = tempfile::tempdir().unwrap();
    let a = agentsched_in(tmp.path(), &["factory", "create", "--seed-id", "7"]);
    let b = agentsched_in(tmp.path(), &["factory", "create", "--seed-id", "7"]);
    assert!(a.status.success(), "{}", err(&a));
    assert_eq!(a.stdout, b.stdout);
    std::fs::write(tmp.path().join("s7.json"), &a.stdout).unwrap();
    let o = agentsched_in(
        tmp.path(),
        &["simulate", "--scenario", "s7.json", "--quiet", "--out", "o"],
    );
    assert!(o.status.success(), "{}", err(&o));
    let seeds = agentsched_in(tmp.path(), &["factory", "seeds", "--n", "12"]);
    let v: serde_json::Value = serde_json::from_slice(&seeds.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 12);
    assert_eq!(v[7]["id"], 7);
}

#[test]
fn the_catalogue_json_is_a_valid_constants_file() {
    let tmp = tempfile::tempdir().unwrap();
    let o = agentsched_in(tmp.path(), &["constants", "--json"]);
    assert!(o.status.success());
    let cat: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(cat["alpha"]["default"], 1.0);
    assert!(cat["hedge_stretch"]["sweep"].as_array().unwrap().len() >= 3);
    std::fs::write(tmp.path().join("cat.json"), &o.stdout).unwrap();
    let s = agentsched_in(
        tmp.path(),
        &[
            "simulate",
            "--constants",
            "cat.json",
            "--workflows",
            "3",
            "--quiet",
            "--out",
            "o",
        ],
    );
    assert!(s.status.success(), "{}", err(&s));
}

#[test]
fn eval_reports_for_agents_and_an_unchanged_candidate_is_not_acceptable() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("same.json"), "{}").unwrap();
    let o = agentsched_in(
        tmp.path(),
        &[
            "eval",
            "--candidate",
            "same.json",
            "--n-seeds",
            "20",
            "--report",
            "eval.json",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("eval.json")).unwrap())
            .unwrap();
    assert_eq!(r["is_acceptable"], false);
    assert_eq!(r["aggregate_score"], 0.0);
    let b = r["benchmarks"].as_array().unwrap();
    assert_eq!(b.len(), 6, "the 30% validation share of 20 seeds");
    assert!(
        b.iter()
            .all(|x| x["output_changed"] == false && x["perf_gain"] == 0.0 && x["score"] == 0.0)
    );
    // A real change alters outputs.
    std::fs::write(
        tmp.path().join("cand.json"),
        r#"{"routing_threshold": 0.8, "alpha": 0.25}"#,
    )
    .unwrap();
    let o = agentsched_in(
        tmp.path(),
        &[
            "eval",
            "--candidate",
            "cand.json",
            "--n-seeds",
            "20",
            "--report",
            "eval2.json",
        ],
    );
    assert!(matches!(o.status.code(), Some(0) | Some(1)), "{}", err(&o));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("eval2.json")).unwrap())
            .unwrap();
    assert!(
        r["benchmarks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["output_changed"] == true)
    );
    assert_eq!(
        r["is_acceptable"],
        r["aggregate_score"].as_f64().is_some_and(|a| a > 0.0)
    );
    // Bad input: exit 2.
    std::fs::write(tmp.path().join("bad.json"), r#"{"alpah": 1}"#).unwrap();
    let o = agentsched_in(
        tmp.path(),
        &["eval", "--candidate", "bad.json", "--report", "e3.json"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("alpah"));
    assert!(!tmp.path().join("e3.json").exists());
}

#[test]
fn the_ratchet_never_writes_its_input_and_decides_every_constant() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("mine.json");
    let original = "{\"alpha\": 2.0, \"gamma\": 0.2}\n";
    std::fs::write(&input, original).unwrap();
    let o = agentsched_in(
        tmp.path(),
        &[
            "ratchet",
            "--constants",
            "mine.json",
            "--n-seeds",
            "10",
            "--out",
            "r",
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(
        std::fs::read_to_string(&input).unwrap(),
        original,
        "input untouched"
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("r/ratchet.json")).unwrap())
            .unwrap();
    assert_eq!(r["train_seeds"].as_array().unwrap().len(), 7);
    assert_eq!(r["validation_seeds"].as_array().unwrap().len(), 3);
    let decisions = r["decisions"].as_array().unwrap();
    assert_eq!(decisions.len(), 11);
    for d in decisions {
        assert!(
            ["accept", "reject", "no_sensitivity"].contains(&d["action"].as_str().unwrap()),
            "{d}"
        );
        assert!(!d["reason"].as_str().unwrap().is_empty());
    }
    let alpha = decisions.iter().find(|d| d["constant"] == "alpha").unwrap();
    assert_eq!(
        alpha["current"], 2.0,
        "decisions start from the given constants"
    );
    let report = std::fs::read_to_string(tmp.path().join("r/report.txt")).unwrap();
    assert!(report.contains("11 constants") && report.contains("Accepted:"));
    // The objective as `--objective` spells it; a section with nothing in it says so.
    assert!(report.contains(", objective balanced, "), "{report}");
    let sections = report.matches("\n  (none)\n").count();
    let empty = ["accept", "reject", "no_sensitivity"]
        .iter()
        .filter(|a| !decisions.iter().any(|d| d["action"] == **a))
        .count();
    assert_eq!(sections, empty, "{report}");
    // Rejections no validation run could test are counted as such (three
    // validation scenarios leave some constants unexercised).
    let untested = decisions
        .iter()
        .filter(|d| d["reason"].as_str().unwrap().starts_with("untested: "))
        .count();
    assert!(untested > 0, "{report}");
    let rejected = decisions.iter().filter(|d| d["action"] == "reject").count();
    assert!(
        report.contains(&format!(
            "\nuntested: {untested} of the {rejected} rejections ("
        )),
        "{report}"
    );
    let proposed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("r/proposed_constants.json")).unwrap(),
    )
    .unwrap();
    assert!(proposed.get("alpha").is_some());

    // Pointing --out at the input's directory is refused: it would overwrite it.
    std::fs::write(tmp.path().join("proposed_constants.json"), original).unwrap();
    let o = agentsched_in(
        tmp.path(),
        &[
            "ratchet",
            "--constants",
            "proposed_constants.json",
            "--n-seeds",
            "4",
            "--out",
            ".",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("proposed_constants.json")).unwrap(),
        original
    );
}

#[test]
fn no_output_overwrites_an_input_and_outputs_are_checked_before_the_work() {
    let tmp = tempfile::tempdir().unwrap();
    let original = "{\"alpha\": 2.0}\n";
    std::fs::write(tmp.path().join("c.json"), original).unwrap();
    std::fs::write(tmp.path().join("b.json"), original).unwrap();
    for args in [
        &["eval", "--candidate", "c.json", "--report", "c.json"][..],
        &[
            "eval",
            "--candidate",
            "c.json",
            "--baseline",
            "b.json",
            "--report",
            "./b.json",
        ][..],
    ] {
        let o = agentsched_in(tmp.path(), args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", err(&o));
        assert!(
            err(&o).contains("an output never overwrites an input"),
            "{}",
            err(&o)
        );
    }
    for f in ["c.json", "b.json"] {
        assert_eq!(
            std::fs::read_to_string(tmp.path().join(f)).unwrap(),
            original
        );
    }
    // `ratchet --out` naming a file is refused (checked before the work).
    let o = agentsched_in(tmp.path(), &["ratchet", "--out", "c.json"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("not a directory"), "{}", err(&o));
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("c.json")).unwrap(),
        original
    );
}

#[test]
fn split_prints_a_validation_result() {
    let tmp = tempfile::tempdir().unwrap();
    let o = agentsched_in(
        tmp.path(),
        &[
            "split",
            "--constant",
            "hedge_stretch",
            "--values",
            "1.25,1.5,3",
            "--n-seeds",
            "20",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["constant"], "hedge_stretch");
    assert_eq!(r["current"], 1.5);
    assert!(["accept", "reject"].contains(&r["recommendation"].as_str().unwrap()));
    assert_eq!(r["train_curve"].as_array().unwrap().len(), 3);
    let o = agentsched_in(
        tmp.path(),
        &["split", "--constant", "hedge_stretch", "--values", "0.5"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("hedge_stretch"));
}
