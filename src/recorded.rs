//! Runs on disk: finding a finished run's scenario and results again.
//!
//! Three layouts hold a run: a `simulate --out` directory and a `live run
//! --out` directory (summary, tiers and the effective `scenario.json`), and
//! a sweep's run directory (`meta.json` beside `out/`; its scenario is the
//! experiment's base scenario with the run's parameters, checked against
//! the run's recorded config hash). `live run --from-run` replays one;
//! `fidelity` compares two.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::scenario::Scenario;
use crate::sweep::collect::read_csv;
use crate::sweep::plan::{Ablation, PlannedRun};

/// The file name of a run's effective scenario.
pub const SCENARIO_FILE: &str = "scenario.json";

/// Which driver produced a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The simulator.
    Simulated,
    /// The live executor.
    Live,
}

impl Mode {
    /// Lower-case name (`simulated`, `live`).
    pub fn name(self) -> &'static str {
        match self {
            Mode::Simulated => "simulated",
            Mode::Live => "live",
        }
    }
}

/// What a live run recorded about the simulated run it replays.
#[derive(Clone, Debug, PartialEq)]
pub struct Replayed {
    /// The simulated run's directory, as given to `--from-run`.
    pub run: PathBuf,
    /// Its output digest, if it recorded one.
    pub output_digest: Option<String>,
    /// Changes the replay made that alter simulated results
    /// (`--constants FILE`, `--set PATH=VALUE`); empty for an exact replay.
    pub changed: Vec<String>,
}

impl Replayed {
    /// The record in a live run's summary.json.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "run": self.run.display().to_string(),
            "output_digest": self.output_digest,
            "changed": self.changed,
        })
    }

    fn from_json(v: &Value) -> Option<Replayed> {
        Some(Replayed {
            run: PathBuf::from(v.get("run")?.as_str()?),
            output_digest: v
                .get("output_digest")
                .and_then(Value::as_str)
                .map(String::from),
            changed: v
                .get("changed")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}

/// A finished run found on disk.
#[derive(Clone, Debug)]
pub struct RecordedRun {
    /// The directory holding its `summary.csv` and `tiers.csv`.
    pub out_dir: PathBuf,
    /// Simulated or live.
    pub mode: Mode,
    /// Its effective scenario as a JSON document (what `--scenario` takes).
    pub scenario: Value,
    /// Where the scenario came from (messages).
    pub scenario_origin: String,
    /// The run's output digest, where recorded.
    pub output_digest: Option<String>,
    /// For a live run started with `--from-run`: the run it replays.
    pub replays: Option<Replayed>,
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.into(),
        source,
    })?;
    serde_json::from_str(&text)
        .map_err(|e| Error::Input(format!("{}: invalid JSON: {e}", path.display())))
}

impl RecordedRun {
    /// Finds the run in `dir`: a `simulate --out` or `live run --out`
    /// directory, or a sweep's run directory (or its `out/`).
    pub fn locate(dir: &Path) -> Result<RecordedRun> {
        if !dir.is_dir() {
            return Err(Error::Input(format!(
                "{}: not a directory (expected a run's output directory)",
                dir.display()
            )));
        }
        if dir.join("meta.json").is_file() && dir.join("out").is_dir() {
            return Self::sweep_run(dir);
        }
        if let Some(parent) = dir.parent()
            && dir.file_name().is_some_and(|n| n == "out")
            && parent.join("meta.json").is_file()
        {
            return Self::sweep_run(parent);
        }
        let scenario_path = dir.join(SCENARIO_FILE);
        if dir.join("summary.csv").is_file() && scenario_path.is_file() {
            let summary = dir.join("summary.json");
            let summary = if summary.is_file() {
                read_json(&summary)?
            } else {
                Value::Null
            };
            let mode = if summary.get("mode").and_then(Value::as_str) == Some("live") {
                Mode::Live
            } else {
                Mode::Simulated
            };
            return Ok(RecordedRun {
                out_dir: dir.to_path_buf(),
                mode,
                scenario: read_json(&scenario_path)?,
                scenario_origin: scenario_path.display().to_string(),
                output_digest: summary
                    .get("output_digest")
                    .and_then(Value::as_str)
                    .map(String::from),
                replays: summary.get("replays").and_then(Replayed::from_json),
            });
        }
        Err(Error::Input(format!(
            "{}: not a recorded run: expected summary.csv with {SCENARIO_FILE} (a `simulate --out` or \
             `live run --out` directory) or meta.json with out/ (a sweep's run directory)",
            dir.display()
        )))
    }

    /// A sweep's run: the experiment's base scenario with the run's
    /// parameters and ablation, checked against the run's config hash.
    fn sweep_run(run_dir: &Path) -> Result<RecordedRun> {
        let meta_path = run_dir.join("meta.json");
        let meta = read_json(&meta_path)?;
        let field = |k: &str| {
            meta.get(k)
                .ok_or_else(|| Error::Input(format!("{}: {k}: missing", meta_path.display())))
        };
        let run_id = field("run_id")?.as_str().unwrap_or_default().to_string();
        let Value::Object(params) = field("params")?.clone() else {
            return Err(Error::Input(format!(
                "{}: params: expected an object",
                meta_path.display()
            )));
        };
        let ablation = Ablation {
            name: field("ablation_name")?
                .as_str()
                .unwrap_or_default()
                .to_string(),
            flags: field("ablation_flags")?
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|f| f.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
        };
        let recorded_hash = field("config_hash")?.as_str().unwrap_or_default();
        let exp_path = run_dir
            .parent()
            .and_then(Path::parent)
            .map(|d| d.join("experiment.json"))
            .filter(|p| p.is_file())
            .ok_or_else(|| {
                Error::Input(format!(
                    "{}: no experiment.json two levels up (a sweep run directory is \
                     <experiment>/runs/<run_id>)",
                    run_dir.display()
                ))
            })?;
        let exp = read_json(&exp_path)?;
        let (base, base_origin) = match exp.get("base_scenario") {
            Some(b) => (b.clone(), format!("{} (base_scenario)", exp_path.display())),
            None => (
                serde_json::from_str(crate::scenario::DEFAULT_SCENARIO_JSON)
                    .expect("embedded JSON"),
                "the embedded default scenario (experiment.json records no base_scenario)"
                    .to_string(),
            ),
        };
        let out_dir = run_dir.join("out");
        let planned = PlannedRun {
            index: 0,
            run_id: run_id.clone(),
            params,
            ablation,
            trace: out_dir.join("trace.json").exists(),
        };
        let resolved = planned.resolve(&base);
        let scenario = resolved.scenario.map_err(|e| {
            Error::Input(format!(
                "{}: the run's parameters do not make a scenario on {base_origin}: {e}",
                meta_path.display()
            ))
        })?;
        if resolved.config_hash != recorded_hash {
            return Err(Error::Input(format!(
                "{}: config_hash {recorded_hash} does not match {} resolved from {base_origin} \
                 with the run's parameters (another agentsched version, or another base scenario); \
                 cannot say what this run simulated",
                meta_path.display(),
                resolved.config_hash
            )));
        }
        Ok(RecordedRun {
            out_dir,
            mode: Mode::Simulated,
            scenario: scenario.to_value(),
            scenario_origin: format!("sweep run {run_id} on {base_origin}"),
            output_digest: meta
                .get("output_digest")
                .and_then(Value::as_str)
                .map(String::from),
            replays: None,
        })
    }

    /// The scenario, validated.
    pub fn scenario(&self) -> Result<Scenario> {
        Scenario::from_value(self.scenario.clone())
            .map_err(|e| Error::Input(format!("{}: {e}", self.scenario_origin)))
    }

    /// The one row of `summary.csv`: column → value (text as written).
    pub fn summary(&self) -> Result<BTreeMap<String, String>> {
        let rows = read_csv(&self.out_dir.join("summary.csv"))?;
        rows.into_iter().next().ok_or_else(|| {
            Error::Input(format!(
                "{}: no data row",
                self.out_dir.join("summary.csv").display()
            ))
        })
    }

    /// The rows of `tiers.csv`.
    pub fn tiers(&self) -> Result<Vec<BTreeMap<String, String>>> {
        read_csv(&self.out_dir.join("tiers.csv"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_that_is_no_run_is_refused_by_name() {
        let d = tempfile::tempdir().unwrap();
        let e = RecordedRun::locate(d.path()).unwrap_err().to_string();
        assert!(e.contains("not a recorded run"), "{e}");
        assert!(e.contains(&d.path().display().to_string()), "{e}");
        let e = RecordedRun::locate(&d.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a directory"), "{e}");
    }

    #[test]
    fn replay_records_round_trip() {
        let r = Replayed {
            run: PathBuf::from("/x/runs/a"),
            output_digest: Some("abc".into()),
            changed: vec!["--constants c.json".into()],
        };
        assert_eq!(Replayed::from_json(&r.to_json()), Some(r));
    }
}
