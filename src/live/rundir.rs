//! A live run into an output directory: the files `simulate` writes (with
//! the live metrics), `requests.jsonl` and `scenario.json`. Shared by
//! `live run` and live sweeps.

use std::path::Path;

use crate::error::Result;
use crate::live::{self, LiveConfig, RequestLog};
use crate::output::{self, Durability, FileObserver};
use crate::scenario::Scenario;

/// A finished live run and its workflows file.
#[derive(Debug)]
pub struct LiveDone {
    /// The run.
    pub outcome: live::LiveOutcome,
    workflows_sha: [u8; 20],
}

/// Runs `s` live with `transport`, streaming workflows.csv, trace.json and
/// requests.jsonl into `out`.
pub async fn run_to_dir<T: live::Transport>(
    s: &Scenario,
    out: &Path,
    trace: bool,
    transport: T,
    cfg: LiveConfig,
    stop: impl std::future::Future<Output = ()>,
) -> Result<LiveDone> {
    let mut obs = FileObserver::create(out, trace, s, Durability::Atomic)?;
    let log = RequestLog::create(&out.join("requests.jsonl"))?;
    let outcome = live::run(s, &mut obs, transport, cfg, Some(log), stop).await?;
    let workflows_sha = obs.finish()?;
    Ok(LiveDone {
        outcome,
        workflows_sha,
    })
}

/// Writes summary.csv/json and tiers.csv of a live run; returns the digest.
pub fn write_outputs(
    s: &Scenario,
    out: &Path,
    done: &LiveDone,
    mut meta: serde_json::Map<String, serde_json::Value>,
) -> Result<String> {
    let mut metrics = done.outcome.metrics.clone();
    meta.insert("scenario".into(), s.name.clone().into());
    meta.insert("seed".into(), s.seed.into());
    meta.insert("time_scale".into(), output::json_f64(s.time_scale));
    meta.insert("interrupted".into(), done.outcome.interrupted.into());
    meta.insert("requests_logged".into(), done.outcome.request_lines.into());
    meta.insert("version".into(), env!("CARGO_PKG_VERSION").into());
    output::atomic_write(
        &out.join(crate::recorded::SCENARIO_FILE),
        s.to_pretty_json().as_bytes(),
    )?;
    let digest = output::write_run_files(
        out,
        &done.outcome.result,
        &done.workflows_sha,
        &meta,
        s.policy.name(),
        Durability::Atomic,
        &metrics.columns(),
    )?;
    output::sync_dir(out);
    Ok(digest)
}
