//! The spending cap (`live run --max-cost`, a live sweep's `max_cost`)
//! against the emulator on 127.0.0.1, whose llm tiers fail far more often
//! than the scenario says: every failed attempt is paid for and retried
//! (up to 20 times, so that no workflow fails and stops spending), so a live
//! run costs about twice its simulation (2.1x-3.0x in 24 runs by hand).

use std::path::Path;

use serde_json::Value;

use crate::live_loopback::SMALL_LIVE_RUN;
use crate::util::{Emulator, agentsched_in, err};

/// The emulator, its llm tiers failing 6 attempts in 10 (the scenario
/// says 3 and 2 in 100).
pub fn failing_emulator(dir: &Path) -> Emulator {
    Emulator::start(
        dir,
        "ep.json",
        &[
            "--time-scale",
            "50",
            "--set",
            "providers.llm_provider.tiers.0.failure_prob=0.6",
            "--set",
            "providers.llm_provider.tiers.1.failure_prob=0.6",
        ],
    )
}

/// Retries enough that no workflow fails against that emulator.
const RETRIES: [&str; 4] = [
    "--set",
    "providers.llm_provider.tiers.0.max_retries=20",
    "--set",
    "providers.llm_provider.tiers.1.max_retries=20",
];

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// What `simulate` of `SMALL_LIVE_RUN`'s scenario under `policy` spends.
fn simulated_cost(dir: &Path, policy: &str) -> f64 {
    let out = format!("sim_{policy}");
    let o = agentsched_in(
        dir,
        &[
            "simulate",
            "--workflows",
            "3",
            "--pdfs",
            "2",
            "--subqueries",
            "2",
            "--policy",
            policy,
            "--quiet",
            "--out",
            &out,
            RETRIES[0],
            RETRIES[1],
            RETRIES[2],
            RETRIES[3],
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    json(&dir.join(out).join("summary.json"))["cost_total"]
        .as_f64()
        .unwrap()
}

#[test]
fn a_live_run_never_commits_more_than_its_spending_cap() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let _emu = failing_emulator(d);
    let est = simulated_cost(d, "full");
    let live = |cap: &str, out: &str| {
        let extra = ["--max-cost", cap, "--out", out];
        agentsched_in(d, &[&SMALL_LIVE_RUN[..], &RETRIES, &extra].concat())
    };

    // Below what the simulation spends: refused before anything is sent.
    let o = live(&format!("{}", est * 0.5), "under");
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains(&format!(
            "the simulation of this run spends ${est:.2} (3 workflows at the scenario's prices), \
             more than the cap; raise --max-cost"
        )),
        "{}",
        err(&o)
    );
    assert!(!d.join("under").exists());
    for bad in ["0", "-1", "nan", "2e9", "ten"] {
        let o = live(bad, "bad");
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", err(&o));
        assert!(err(&o).contains("--max-cost"), "{bad}: {}", err(&o));
        assert!(!d.join("bad").exists());
    }

    // 20% above it: the failures make the live run dearer, and it stops at
    // the cap with every output written.
    let cap = est * 1.2;
    let o = live(&format!("{cap}"), "capped");
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(
        err(&o).contains(&format!(
            "stopped at --max-cost {cap}: the next attempt would have committed more than the cap"
        )),
        "{}",
        err(&o)
    );
    let s = json(&d.join("capped/summary.json"));
    assert_eq!(s["max_cost"], cap, "{s}");
    assert_eq!(s["max_cost_simulated"], est, "{s}");
    assert_eq!(s["max_cost_reached"], true, "{s}");
    assert_eq!(s["interrupted"], true, "{s}");
    let spent = s["cost_total"].as_f64().unwrap();
    assert!(spent > 0.0 && spent <= cap, "spent {spent} of {cap}");
    let lines: Vec<Value> = std::fs::read_to_string(d.join("capped/requests.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // The attempts the cap refused were never sent: no status, no bytes.
    let refused: Vec<&Value> = lines.iter().filter(|r| r["error"] == "max_cost").collect();
    assert!(!refused.is_empty());
    for r in &refused {
        assert_eq!(r["outcome"], "cancelled", "{r}");
        assert!(r["status"].is_null() && r["first_byte_ms"].is_null(), "{r}");
    }
    // Nothing was sent after the first refusal: the run stopped in that
    // event, and every later line is a cancellation.
    let first = lines.iter().position(|r| r["error"] == "max_cost").unwrap();
    assert!(
        lines[first..].iter().all(|r| r["outcome"] == "cancelled"),
        "{:?}",
        &lines[first..]
    );
    // Part of a run: fidelity has nothing to compare, calibrate fits its
    // attempts and says so.
    let f = agentsched_in(d, &["fidelity", "--live", "capped"]);
    assert_eq!(f.status.code(), Some(2), "{}", err(&f));
    assert!(
        err(&f).contains("--live capped: the run was stopped by its spending cap (--max-cost)"),
        "{}",
        err(&f)
    );
    let c = agentsched_in(d, &["calibrate", "--live", "capped", "--out", "cal.json"]);
    assert_eq!(c.status.code(), Some(0), "{}", err(&c));
    assert!(
        err(&c)
            .contains("warning: --live capped: the run was stopped before its workflows finished"),
        "{}",
        err(&c)
    );
    // Without the cap the same run costs more than it: the cap bound it.
    let extra = ["--quiet", "--out", "free"];
    let o = agentsched_in(d, &[&SMALL_LIVE_RUN[..], &RETRIES, &extra].concat());
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let free = json(&d.join("free/summary.json"));
    assert!(free["cost_total"].as_f64().unwrap() > cap, "{free}");
    assert!(free.get("max_cost").is_none(), "{free}");

    // A cap the run stays under: exit 0, recorded as not reached.
    let o = live("1000", "roomy");
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let s = json(&d.join("roomy/summary.json"));
    assert_eq!(s["max_cost_reached"], false, "{s}");
    assert_eq!(s["interrupted"], false, "{s}");
}

/// A live sweep's `max_cost` bounds what all its runs spend together: the
/// run that would take the sweep past it stops there, and the runs after
/// it are not started.
#[test]
fn a_live_sweep_stops_at_its_spending_cap() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let _emu = failing_emulator(d);
    let est = simulated_cost(d, "fifo_cheapest") + simulated_cost(d, "full");
    let config = |name: &str, max_cost: &str| {
        std::fs::write(
            d.join(format!("{name}.json")),
            format!(
                r#"{{"name": "{name}", "max_cost": {max_cost},
                    "common_args": {{"workflows": 3, "pdfs": 2, "subqueries": 2, "time_scale": 50,
                        "providers.llm_provider.tiers.0.max_retries": 20,
                        "providers.llm_provider.tiers.1.max_retries": 20}},
                    "matrix": {{"policy": ["fifo_cheapest", "full"], "seeds": [1]}}}}"#
            ),
        )
        .unwrap();
        format!("{name}.json")
    };
    let sweep = |cfg: &str| {
        agentsched_in(
            d,
            &[
                "sweep",
                "--config",
                cfg,
                "--live",
                "ep.json",
                "--out-root",
                "exp",
            ],
        )
    };

    // Under what the two runs' simulations spend: refused, nothing written.
    let under = config("under", &format!("{}", est * 0.9));
    let dry = [
        "sweep",
        "--config",
        &under,
        "--live",
        "ep.json",
        "--dry-run",
    ];
    let o = agentsched_in(d, &dry);
    assert_eq!(
        o.status.code(),
        Some(2),
        "a dry run checks it too: {}",
        err(&o)
    );
    let o = sweep(&under);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains(&format!(
            "under.json: max_cost: the simulations of the 2 trials this sweep would run spend ${est:.2}"
        )),
        "{}",
        err(&o)
    );
    assert!(!d.join("exp/under").exists());
    for bad in ["0", "-2", "\"ten\"", "1e10"] {
        let o = sweep(&config("bad", bad));
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", err(&o));
        assert!(
            err(&o).contains("bad.json: max_cost: expected dollars > 0"),
            "{bad}: {}",
            err(&o)
        );
        assert!(!d.join("exp/bad").exists());
    }

    // 20% above: the failing endpoints make the runs dearer than simulated,
    // and the sweep stops at the cap (in its first run or its second).
    let cap = est * 1.2;
    let capped = config("capped", &format!("{cap}"));
    // A dry run says what the simulations spend, and sends nothing.
    let o = agentsched_in(
        d,
        &[
            "sweep",
            "--config",
            &capped,
            "--live",
            "ep.json",
            "--out-root",
            "exp",
            "--dry-run",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let listing = String::from_utf8_lossy(&o.stdout);
    assert!(
        listing.contains(&format!(
            "the simulations of the 2 trials spend ${est:.2} at the scenarios' prices (max_cost ${cap})"
        )),
        "{listing}"
    );
    assert!(!d.join("exp/capped").exists());
    let o = sweep(&capped);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains("stopped: run "), "{}", err(&o));
    assert!(
        err(&o).contains(&format!(
            "reached max_cost ${cap} (this sweep's runs were charged $"
        )),
        "{}",
        err(&o)
    );
    let exp = d.join("exp/capped");
    let recorded = json(&exp.join("experiment.json"));
    assert_eq!(recorded["live"]["max_cost"], cap, "{recorded}");
    let mut spent = 0.0;
    let mut reached = 0;
    for run in std::fs::read_dir(exp.join("runs")).unwrap() {
        let run = run.unwrap().path();
        let Ok(text) = std::fs::read_to_string(run.join("out/summary.json")) else {
            continue;
        };
        let s: Value = serde_json::from_str(&text).unwrap();
        spent += s["cost_total"].as_f64().unwrap();
        if s["max_cost_reached"] == true {
            reached += 1;
            let meta = json(&run.join("meta.json"));
            assert_eq!(meta["exit_code"], 1, "{meta}");
            let stderr = std::fs::read_to_string(run.join("stderr.txt")).unwrap();
            assert!(stderr.contains("stopped at max_cost"), "{stderr}");
        }
    }
    assert_eq!(reached, 1, "one run stops at the cap");
    assert!(spent > 0.0 && spent <= cap, "spent {spent} of {cap}");
}
