//! `calibrate` against the emulator on 127.0.0.1: the emulator serves a
//! "truth" scenario that differs from the one handed to `calibrate`; one
//! live run later, the calibrated scenario has the truth's numbers, and
//! predicts the live run far better than the input did.

use std::path::Path;

use agentsched::scenario::Scenario;
use serde_json::Value;

use crate::util::{Emulator, agentsched_in, err};

/// A transport delay is stretched by the time scale. At 40x, on a machine
/// whose two cores were kept busy beside the test, tier 1's calibrated
/// mean came out 12-13% high (the null run's transport time no longer
/// matched the live run's); at 20x, 4%.
const SCALE: &str = "20";

/// The default scenario with llm latencies 2x, a tier-1 failure rate of
/// 0.2 (not 0.02) and on tier 0 a provider-enforced bucket of 1/s, burst 4
/// (not a client-side 5/s, burst 20).
fn truth(base: &Value) -> Value {
    let mut t = base.clone();
    for nt in t["node_types"].as_object_mut().unwrap().values_mut() {
        if nt["resource"] == "llm" {
            let mu = nt["latency"]["mu"].as_f64().unwrap();
            nt["latency"]["mu"] = (mu + 2f64.ln()).into();
        }
    }
    let tiers = &mut t["providers"]["llm_provider"]["tiers"];
    tiers[1]["failure_prob"] = 0.2.into();
    tiers[0]["rate_limit"] =
        serde_json::json!({"rate_per_s": 1.0, "burst": 4, "enforced_by": "provider"});
    t
}

/// Mean latency of a (node type, tier) cell's body (tails aside: the
/// heavy tail's probability is checked on its own) for a call with the
/// given tokens.
fn cell_mean(s: &Scenario, nt: &str, tier: usize, input: u32, output: u32) -> f64 {
    let t = &s.providers["llm_provider"].tiers[tier];
    s.node_types[nt].latency.mean_ms(input, output) * t.latency_scale
}

/// `calibrate --live live ARGS` in `dir`.
fn calibrate(dir: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["calibrate", "--live", "live"];
    all.extend_from_slice(args);
    agentsched_in(dir, &all)
}

fn mape(dir: &Path, sim: &str) -> f64 {
    let json = format!("f_{sim}.json");
    let o = agentsched_in(
        dir,
        &["fidelity", "--live", "live", "--sim", sim, "--json", &json],
    );
    assert!(matches!(o.status.code(), Some(0 | 1)), "{}", err(&o));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(dir.join(json)).unwrap()).unwrap();
    v["mape"].as_f64().unwrap()
}

#[test]
fn calibration_recovers_the_emulators_truth_and_predicts_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let base_text = agentsched::scenario::DEFAULT_SCENARIO_JSON;
    std::fs::write(dir.join("base.json"), base_text).unwrap();
    let base_value: Value = serde_json::from_str(base_text).unwrap();
    let truth_value = truth(&base_value);
    std::fs::write(dir.join("truth.json"), truth_value.to_string()).unwrap();
    let truth = Scenario::from_value(truth_value).unwrap();
    let base = Scenario::from_value(base_value).unwrap();

    let run = |ep: &Path, out: &str| {
        let o = agentsched_in(
            dir,
            &[
                "live",
                "run",
                "--scenario",
                "base.json",
                "--endpoints",
                ep.to_str().unwrap(),
                "--time-scale",
                SCALE,
                "--out",
                out,
                "--quiet",
            ],
        );
        assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    };
    {
        let truth_path = dir.join("truth.json");
        let e = Emulator::start(
            dir,
            "ep.json",
            &[
                "--scenario",
                truth_path.to_str().unwrap(),
                "--time-scale",
                SCALE,
            ],
        );
        run(&e.endpoints, "live");
    }
    {
        let e = Emulator::start(dir, "ep0.json", &["--time-scale", SCALE, "--zero-latency"]);
        run(&e.endpoints, "null");
    }
    let o = calibrate(
        dir,
        &[
            "--scenario",
            "base.json",
            "--null-run",
            "null",
            "--out",
            "cal.json",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("ExtractEvidence") && text.contains("wrote cal.json"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("base.json")).unwrap(),
        base_text,
        "the input is untouched"
    );
    let cal =
        Scenario::from_json_str(&std::fs::read_to_string(dir.join("cal.json")).unwrap()).unwrap();

    // Latency: the extraction calls (most of the llm traffic) on both tiers.
    // Tier 1 answers about 3,500 of them; tier 0, behind its 1/s bucket,
    // about 700, so its scale is known to about 3% (sigma 0.8 / sqrt(700))
    // and it gets 15% (quiet runs gave 0.92-1.03 of the truth).
    let (inp, out) = (1500, 150);
    for (tier, tolerance) in [(0, 0.15), (1, 0.10)] {
        let (want, got, was) = (
            cell_mean(&truth, "ExtractEvidence", tier, inp, out),
            cell_mean(&cal, "ExtractEvidence", tier, inp, out),
            cell_mean(&base, "ExtractEvidence", tier, inp, out),
        );
        assert!(
            (got / want - 1.0).abs() < tolerance,
            "tier {tier}: calibrated {got:.0} ms, truth {want:.0} ms"
        );
        assert!(
            (was / want - 1.0).abs() > 0.4,
            "the input was off: {was:.0} vs {want:.0}"
        );
    }
    // The heavy tail (2% x50) is found: about 4,000 attempts know it to
    // about 11%, and on a loaded machine slow transport adds outliers
    // (seen: 2.7%), so this checks it within a factor of 2. It is the
    // remote types' own; the global one (local work too) stays.
    let p = cal.node_types["ExtractEvidence"]
        .heavy_tail
        .as_ref()
        .expect("a fitted heavy tail")
        .prob;
    assert!(
        (0.5..=2.0).contains(&(p / truth.heavy_tail.prob)),
        "heavy tail prob {p}"
    );
    assert_eq!(cal.heavy_tail, base.heavy_tail);
    assert_eq!(cal.node_types["LoadPDF"].heavy_tail, None);
    // The failure rate and the bucket that changed.
    let (t0, t1) = (
        &cal.providers["llm_provider"].tiers[0],
        &cal.providers["llm_provider"].tiers[1],
    );
    // About 3,500 answers know a rate of 0.2 to 3.4% (its binomial error);
    // 15% is over four of those (quiet runs gave 0.188-0.206).
    assert!(
        (t1.failure_prob / 0.2 - 1.0).abs() < 0.15,
        "failure prob {}",
        t1.failure_prob
    );
    let r = t0.rate_limit.as_ref().expect("a bucket");
    assert!((r.rate_per_s / 1.0 - 1.0).abs() < 0.10, "{r:?}");
    assert_eq!(r.burst, 4);
    assert_eq!(r.enforced_by, agentsched::scenario::Enforcer::Provider);
    // Settings are the input's; the provenance names the sources.
    assert_eq!(t0.slots, base.providers["llm_provider"].tiers[0].slots);
    let prov = cal.provenance.as_ref().unwrap();
    assert_eq!(prov["sources"][0]["dir"], "live");
    assert!(prov["transport"]["real_ms_per_call"].as_f64().unwrap() > 0.0);
    assert!(
        prov["node_types"]["ExtractEvidence"]["candidates"]
            .as_array()
            .unwrap()
            .len()
            == 3
    );

    // Prediction: the calibrated scenario, simulated, against the live run.
    for (scenario, out) in [("base.json", "sim_base"), ("cal.json", "sim_cal")] {
        let o = agentsched_in(
            dir,
            &["simulate", "--scenario", scenario, "--out", out, "--quiet"],
        );
        assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    }
    let (before, after) = (mape(dir, "sim_base"), mape(dir, "sim_cal"));
    assert!(
        after * 3.0 <= before,
        "MAPE {after:.3} calibrated vs {before:.3} uncalibrated"
    );

    // Never over an input; never over an existing file without --force.
    let o = calibrate(dir, &["--scenario", "base.json", "--out", "base.json"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert_eq!(
        std::fs::read_to_string(dir.join("base.json")).unwrap(),
        base_text
    );
    let o = calibrate(dir, &["--out", "cal.json"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("--force"), "{}", err(&o));
    let o = calibrate(dir, &["--out", "cal.json", "--force"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let o = agentsched_in(dir, &["calibrate", "--live", "nowhere", "--out", "x.json"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("nowhere"), "{}", err(&o));
    std::fs::write(dir.join("bad.json"), "{\"workload\": 1}").unwrap();
    let o = calibrate(dir, &["--scenario", "bad.json", "--out", "y.json"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains("bad.json") && !dir.join("y.json").exists(),
        "{}",
        err(&o)
    );
}
