//! Live sweeps (`sweep --config F --live endpoints.json`): the experiment
//! format against endpoints, into the same layout, so that `collect`,
//! `report` and `fidelity` work unchanged.
//!
//! Runs go one at a time (concurrent runs would share the endpoints and
//! distort each other), each repeated as trials: `repeated` order runs
//! trial 1 of every configuration, then trial 2, ...; `independent` runs all
//! trials of one configuration before the next. With `max_trials` above
//! `trials`, a configuration stops once the 95% confidence half-width of
//! its objective is within `ci_target` of its mean (after at least 3
//! trials). Each run is written into `runs/.<id>.partial` and renamed into
//! place when complete: `--resume` skips complete runs and never re-sends
//! them.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use sha1::Digest;

use super::plan::{LiveSettings, PlannedRun, SweepMode, resolve};
use super::{
    ExperimentConfig, SweepOptions, SweepOutcome, commit, exp_dir, expand, failures, unix_now,
};
use crate::error::{Error, Result};
use crate::live::rundir::{all_measurement_warnings, endpoints_json, headline, never_reached};
use crate::live::stop::{StopFlag, StopSignal};
use crate::live::{EndpointsFile, HttpTransport, LiveConfig, ResolvedEndpoint};
use crate::output::make_durable;
use crate::scenario::Scenario;
use crate::units::Money;

/// One trial of one planned run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trial {
    /// Index into the plan.
    pub run: usize,
    /// 0-based trial number.
    pub trial: u32,
}

/// The order of a sweep's trials, as far as it is fixed in advance: every
/// trial up to `max_trials`. Adaptive stopping skips a configuration's
/// remaining trials in this order once it has converged.
pub fn schedule(runs: usize, l: &LiveSettings) -> Vec<Trial> {
    let mut v = Vec::with_capacity(runs * l.max_trials as usize);
    match l.mode {
        SweepMode::Repeated => {
            for trial in 0..l.max_trials {
                for run in 0..runs {
                    v.push(Trial { run, trial });
                }
            }
        }
        SweepMode::Independent => {
            for run in 0..runs {
                for trial in 0..l.max_trials {
                    v.push(Trial { run, trial });
                }
            }
        }
    }
    v
}

/// Whether a configuration with objective values `xs` needs no more
/// trials: at `max_trials`, or (adaptive) after at least `min(3, max)`
/// trials with the 95% t half-width within `ci_target` x |mean|;
/// without adaptivity, after `trials`.
pub fn settled(done: u32, xs: &[f64], l: &LiveSettings) -> bool {
    if done >= l.max_trials {
        return true;
    }
    if !l.adaptive() {
        return done >= l.trials;
    }
    let least = l.trials.max(3).min(l.max_trials);
    if done < least || xs.len() < 2 {
        return false;
    }
    let d = crate::stats::describe(xs);
    (d.ci95_high - d.ci95_low) / 2.0 <= l.ci_target * d.mean.abs()
}

/// The run id of a trial: the seed runner's id, plus `__t<k>` (1-based)
/// when a run may have more than one trial.
pub fn trial_id(r: &PlannedRun, trial: u32, l: &LiveSettings) -> String {
    if l.max_trials > 1 {
        format!("{}__t{}", r.run_id, trial + 1)
    } else {
        r.run_id.clone()
    }
}

/// A trial's scenario with its endpoints, or why there is none (exit
/// code, message).
type Resolved = std::result::Result<(Scenario, Vec<Vec<ResolvedEndpoint>>), (u8, String)>;

/// What a trial runs: its parameters (the seed moved by the trial unless
/// `same_seed`), its scenario with the endpoints' overrides applied, and
/// the hash `--resume` compares.
struct Prepared {
    params: Map<String, Value>,
    scenario: Resolved,
    config_hash: String,
    /// The seed's configuration columns, which `collect` groups runs by
    /// (those of the scenario given, when it was refused).
    columns: Option<Value>,
    /// The run's `--request-timeout-s`.
    request_timeout_s: f64,
}

fn prepare(
    cfg: &ExperimentConfig,
    r: &PlannedRun,
    trial: u32,
    endpoints: &EndpointsFile,
    endpoints_name: &str,
) -> Prepared {
    let mut params = r.params.clone();
    if !cfg.live.same_seed
        && let Some(seed) = params.get("seed").and_then(Value::as_u64)
    {
        params.insert("seed".into(), (seed + trial as u64).into());
    }
    let scenario = resolve(&cfg.base, &params, &r.ablation)
        .map_err(|m| (2u8, m))
        .and_then(|mut s| {
            let eps = endpoints
                .resolve(endpoints_name, &mut s, |k| std::env::var(k).ok())
                .map_err(|e| (e.exit_code(), e.to_string()))?;
            Ok((s, eps))
        });
    let mut h = sha1::Sha1::new();
    match &scenario {
        Ok((s, _)) => h.update(s.to_pretty_json().as_bytes()),
        Err((_, m)) => h.update(m.as_bytes()),
    }
    h.update(b"live");
    h.update(trial.to_le_bytes());
    h.update([r.trace as u8]);
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    // Hashed only when set, so that runs made before the setting existed
    // still resume.
    let request_timeout_s = cfg.live.request_timeout_s;
    if request_timeout_s != super::plan::DEFAULT_REQUEST_TIMEOUT_S {
        h.update(request_timeout_s.to_le_bytes());
    }
    let columns = match &scenario {
        Ok((s, _)) => Some(super::resolved_params(s)),
        Err(_) => super::plan::rejected_columns(&cfg.base, &params, &r.ablation),
    };
    Prepared {
        params,
        scenario,
        config_hash: crate::output::hex(&h.finalize()),
        columns,
        request_timeout_s,
    }
}

/// The objective's value in a finished run's summary.csv.
fn objective_of(out: &Path, objective: &str) -> Option<f64> {
    let rows = crate::sweep::collect::read_csv(&out.join("summary.csv")).ok()?;
    rows.first()?.get(objective)?.parse().ok()
}

/// A live sweep's plan and trial order, once its options and every run's
/// endpoints are checked.
struct LivePlan<'c> {
    plan: super::plan::Plan<'c>,
    order: Vec<Trial>,
    endpoints: EndpointsFile,
    endpoints_name: String,
}

fn live_plan<'c>(
    cfg: &'c ExperimentConfig,
    opts: &SweepOptions,
    endpoints_path: &Path,
) -> Result<LivePlan<'c>> {
    if opts.shard.is_some() {
        return Err(Error::Input(
            "--shard: a live sweep runs one run at a time against its endpoints; run it whole"
                .into(),
        ));
    }
    if opts.jobs.is_some_and(|j| j > 1) {
        return Err(Error::Input(
            "--jobs: a live sweep runs one run at a time (concurrent runs would share the \
             endpoints); leave --jobs out"
                .into(),
        ));
    }
    let endpoints = EndpointsFile::read(endpoints_path)?;
    let endpoints_name = endpoints_path.display().to_string();
    let plan = expand(cfg, cfg.trace)?;
    // Every run's endpoints (and proxies) are checked before anything is sent.
    let proxies = crate::live::proxy::Proxies::from_env();
    for r in plan.iter() {
        if let Ok(mut s) = resolve(&cfg.base, &r.params, &r.ablation) {
            proxies
                .check(&endpoints.resolve(&endpoints_name, &mut s, |k| std::env::var(k).ok())?)?;
        }
    }
    let order = schedule(plan.len(), &cfg.live);
    Ok(LivePlan {
        plan,
        order,
        endpoints,
        endpoints_name,
    })
}

/// A live sweep's trials in the order they would run; nothing is sent
/// or written.
pub fn dry_run_live<'c>(
    cfg: &'c ExperimentConfig,
    opts: &SweepOptions,
    endpoints_path: &Path,
) -> Result<super::DryRun<'c>> {
    let lp = live_plan(cfg, opts, endpoints_path)?;
    // What a real run checks first, and what a user planning a live sweep
    // against paid endpoints asks before anything else.
    let (est, trials) = check_max_cost(cfg, opts, &lp)?;
    let LivePlan { plan, order, .. } = lp;
    let l = &cfg.live;
    Ok(super::DryRun {
        footer: Some(format!(
            "the simulations of the {trials} trials spend ${est:.2} at the scenarios' prices{}",
            l.max_cost
                .map_or_else(String::new, |cap| format!(" (max_cost ${cap})"))
        )),
        planned: order.len(),
        listed: order.len(),
        lines: Box::new(order.into_iter().map(move |t| {
            let r = plan.get(t.run);
            format!(
                "{}  live trial {} of {}{}",
                trial_id(&r, t.trial, l),
                t.trial + 1,
                l.max_trials,
                if l.adaptive() && t.trial >= l.trials.max(3).min(l.max_trials) {
                    " (if not yet within ci_target)"
                } else {
                    ""
                }
            )
        })),
    })
}

/// Runs a live sweep (see [`dry_run_live`] for its listing).
pub fn run_live_sweep(
    cfg: &ExperimentConfig,
    opts: &SweepOptions,
    endpoints_path: &Path,
) -> Result<SweepOutcome> {
    let lp = live_plan(cfg, opts, endpoints_path)?;
    if cfg.live.max_cost.is_some() {
        check_max_cost(cfg, opts, &lp)?;
    }
    let LivePlan {
        plan,
        order,
        endpoints,
        endpoints_name,
    } = lp;
    let l = &cfg.live;
    let dir = exp_dir(cfg, opts);
    let runs_dir = dir.join("runs");
    let mut outcome = SweepOutcome {
        exp_dir: dir.clone(),
        planned: order.len(),
        in_shard: order.len(),
        ..Default::default()
    };
    let mut extra = Map::new();
    extra.insert("mode".into(), "live".into());
    extra.insert("endpoints_file".into(), endpoints_name.clone().into());
    extra.insert(
        "live".into(),
        json!({
            "trials": l.trials,
            "max_trials": l.max_trials,
            "sweep_mode": l.mode.name(),
            "cooldown_s": l.cooldown_s,
            "trial_cooldown_s": l.trial_cooldown_s,
            "same_seed": l.same_seed,
            "ci_target": l.ci_target,
            "objective": l.objective,
            "request_timeout_s": l.request_timeout_s,
            "max_cost": l.max_cost,
        }),
    );
    super::write_experiment_record(cfg, &dir, order.len(), Some(extra))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Execution(format!("cannot start the async runtime: {e}")))?;
    let stop = StopFlag::listen(&rt);
    let mut values: Vec<Vec<f64>> = vec![Vec::new(); plan.len()];
    let mut done: Vec<u32> = vec![0; plan.len()];
    let mut last_ran: Option<usize> = None;
    let mut stopped = false;
    // What this sweep's runs have been charged (with a spending cap).
    let mut spent = 0.0;
    for t in &order {
        let r = &plan.get(t.run);
        if settled(done[t.run], &values[t.run], l) {
            continue;
        }
        if stopped || stop.get().is_some() {
            outcome.not_started += 1;
            continue;
        }
        let id = trial_id(r, t.trial, l);
        let p = prepare(cfg, r, t.trial, &endpoints, &endpoints_name);
        let run_dir = runs_dir.join(&id);
        if opts.resume && super::is_complete(&run_dir, &p.config_hash) {
            outcome.skipped += 1;
            done[t.run] += 1;
            values[t.run].extend(objective_of(&run_dir.join("out"), &l.objective));
            continue;
        }
        // A pause lets the endpoints drain before the next measurement.
        if let Some(prev) = last_ran {
            let pause = if prev == t.run {
                l.trial_cooldown_s
            } else if l.mode == SweepMode::Repeated && t.run <= prev {
                // A new round of trials.
                l.trial_cooldown_s.max(l.cooldown_s)
            } else {
                l.cooldown_s
            };
            // A signal during the pause ends the sweep there.
            if stop.sleep(&rt, Duration::from_secs_f64(pause)) {
                outcome.not_started += 1;
                continue;
            }
        }
        last_ran = Some(t.run);
        // Each run may commit what the sweep's cap leaves.
        let max_cost = l.max_cost.map(|cap| crate::live::max_cost_of(cap - spent));
        if max_cost == Some(None) {
            stopped = true;
            outcome.not_started += 1;
            outcome.cap_stop = Some(cap_stop_message(l, spent, &id));
            continue;
        }
        let end = execute_trial(
            &endpoints_name,
            r,
            t.trial,
            &id,
            p,
            &runs_dir,
            &rt,
            &stop,
            opts,
            max_cost.flatten(),
        )?;
        outcome.executed += 1;
        done[t.run] += 1;
        spent += end.cost;
        if end.max_cost_reached {
            stopped = true;
            outcome.cap_stop = Some(cap_stop_message(l, spent, &id));
        }
        match end.failure {
            None => values[t.run].extend(objective_of(&run_dir.join("out"), &l.objective)),
            Some((code, msg)) => {
                outcome.failed += 1;
                outcome.failures.add(&code.to_string(), &msg, &id);
                stopped |= opts.fail_fast;
                // Exit 3 is a run that never reached an endpoint, or that an
                // endpoint refused throughout: every later run goes to the
                // same endpoints, so they would only repeat it (and sleep
                // through their cooldowns doing so).
                if code == crate::error::EXIT_SETUP {
                    stopped = true;
                    outcome.setup_stop = Some(if msg.contains("refused every request") {
                        format!(
                            "run {id} was refused by its endpoints (exit 3), so the runs after it \
                             were not started; fix the keys, URLs or model names in {endpoints_name}, \
                             then run the same command with --resume (finished runs are kept)"
                        )
                    } else {
                        format!(
                            "run {id} never reached its endpoints (exit 3), so the runs after it \
                             were not started; start the server or fix {endpoints_name}, then run \
                             the same command with --resume (finished runs are kept)"
                        )
                    });
                }
            }
        }
    }
    if let Some(by) = stop.get() {
        return Err(Error::Stopped {
            code: by.exit_code(),
            message: format!(
                "stopped by {}: {} runs done, the rest not started; `--resume` continues without \
                 re-sending them",
                by.name(),
                outcome.executed + outcome.skipped
            ),
        });
    }
    Ok(outcome)
}

/// Why a live sweep stopped at its spending cap, run `id` being the one
/// that reached it (or would have started with nothing left).
fn cap_stop_message(l: &LiveSettings, spent: f64, id: &str) -> String {
    format!(
        "run {id} reached max_cost ${} (this sweep's runs were charged ${spent:.4}), so the runs \
         after it were not started; raise max_cost, then run the same command with --resume \
         (finished runs are kept)",
        l.max_cost.unwrap_or_default()
    )
}

/// What the simulations of the trials a live sweep would run spend, in
/// dollars, and how many trials that is: every trial adaptive stopping may
/// add included, those `--resume` keeps left out.
fn simulated_spend(cfg: &ExperimentConfig, opts: &SweepOptions, lp: &LivePlan<'_>) -> (f64, usize) {
    let runs_dir = exp_dir(cfg, opts).join("runs");
    let (mut est, mut trials) = (0.0, 0);
    for t in &lp.order {
        let r = lp.plan.get(t.run);
        let p = prepare(cfg, &r, t.trial, &lp.endpoints, &lp.endpoints_name);
        let run_dir = runs_dir.join(trial_id(&r, t.trial, &cfg.live));
        if opts.resume && super::is_complete(&run_dir, &p.config_hash) {
            continue;
        }
        if let Ok((s, _)) = &p.scenario {
            est += crate::live::spend::simulated_cost(s);
            trials += 1;
        }
    }
    (est, trials)
}

/// A live sweep's spending cap, checked before anything is sent or
/// written: the simulations of the trials it would run must spend no more
/// than `max_cost`. Returns what they spend, and how many trials that is.
fn check_max_cost(
    cfg: &ExperimentConfig,
    opts: &SweepOptions,
    lp: &LivePlan<'_>,
) -> Result<(f64, usize)> {
    let (est, trials) = simulated_spend(cfg, opts, lp);
    let Some(cap) = cfg.live.max_cost else {
        return Ok((est, trials));
    };
    if est > cap {
        return Err(Error::Input(format!(
            "{}: max_cost: the simulations of the {trials} trials this sweep would run spend \
             ${est:.2} at the scenarios' prices, more than max_cost ${cap}; raise it, or plan \
             fewer runs (the matrix, trials, max_trials, workflows)",
            cfg.origin
        )));
    }
    Ok((est, trials))
}

/// How a trial ended.
struct TrialEnd {
    /// Why it failed (exit code and message), None when it succeeded.
    failure: Option<(u8, String)>,
    /// What it was charged, in dollars (0 without a summary).
    cost: f64,
    /// It stopped at the spending cap.
    max_cost_reached: bool,
}

/// Runs one trial into its staging directory and renames it into place.
#[allow(clippy::too_many_arguments)]
fn execute_trial(
    endpoints_name: &str,
    r: &PlannedRun,
    trial: u32,
    id: &str,
    p: Prepared,
    runs_dir: &Path,
    rt: &tokio::runtime::Runtime,
    stop: &StopFlag,
    opts: &SweepOptions,
    max_cost: Option<Money>,
) -> Result<TrialEnd> {
    let staging = runs_dir.join(format!(".{id}.partial"));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|source| Error::Write {
            path: staging.clone(),
            source,
        })?;
    }
    let out = staging.join("out");
    std::fs::create_dir_all(&out).map_err(|source| Error::Write {
        path: out.clone(),
        source,
    })?;
    let start_unix = unix_now();
    let started = Instant::now();
    let mut endpoints_meta = Value::Null;
    let resolved = p.columns;
    // A run that stands but measured an endpoint's failures only.
    let mut warnings = Vec::new();
    let mut max_cost_reached = false;
    let result: std::result::Result<String, (u8, String)> = match p.scenario {
        Err(e) => Err(e),
        Ok((s, eps)) => {
            endpoints_meta = endpoints_json(&s, &eps);
            let mut lc = LiveConfig::new(&s);
            lc.request_timeout = crate::live::request_timeout_of(p.request_timeout_s).flatten();
            lc.max_cost = max_cost;
            lc.endpoints = eps
                .into_iter()
                .map(|tiers| tiers.into_iter().map(Arc::new).collect())
                .collect();
            let done = rt.block_on(crate::live::rundir::run_to_dir(
                &s,
                &out,
                r.trace,
                HttpTransport::new(),
                lc,
                async {
                    stop.wait().await;
                },
            ));
            match done {
                Err(e) => Err((e.exit_code(), e.to_string())),
                Ok(done) => {
                    let mut meta = Map::new();
                    meta.insert("mode".into(), "live".into());
                    meta.insert("endpoints".into(), endpoints_meta.clone());
                    let interrupted = done.outcome.interrupted;
                    max_cost_reached = done.outcome.max_cost_reached;
                    if let Some(cap) = max_cost {
                        meta.insert("max_cost".into(), cap.as_dollars().into());
                        meta.insert("max_cost_reached".into(), max_cost_reached.into());
                    }
                    match crate::live::rundir::write_outputs(&s, &out, &done, meta) {
                        Err(e) => Err((e.exit_code(), e.to_string())),
                        Ok(_) if max_cost_reached => Err((
                            1,
                            format!(
                                "stopped at max_cost: the next attempt would have committed \
                                 more than the ${:.4} the sweep's max_cost left for this run; \
                                 the run's outputs mark unfinished workflows",
                                max_cost.unwrap_or(Money::ZERO).as_dollars()
                            ),
                        )),
                        Ok(_) if interrupted => {
                            let by = stop.get().unwrap_or(StopSignal::Interrupt);
                            Err((
                                by.exit_code(),
                                format!(
                                    "stopped by {}: the run's outputs mark unfinished workflows",
                                    by.name()
                                ),
                            ))
                        }
                        Ok(digest) => match never_reached(&s, &done, &endpoints_meta) {
                            Some(e) => Err((e.exit_code(), e.to_string())),
                            None => Ok({
                                warnings = all_measurement_warnings(&s, &done, &endpoints_meta);
                                format!(
                                    "{}; trial {}; digest {digest}\n",
                                    headline(&s, &done),
                                    trial + 1
                                )
                            }),
                        },
                    }
                }
            }
        }
    };
    let wall = started.elapsed().as_secs_f64();
    let (exit_code, stdout, stderr) = match &result {
        Ok(line) => (
            0u8,
            line.clone(),
            warnings.iter().map(|w| format!("warning: {w}\n")).collect(),
        ),
        Err((code, msg)) => (*code, String::new(), format!("error: {msg}\n")),
    };
    let summary = std::fs::read_to_string(out.join("summary.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok());
    let digest = summary
        .as_ref()
        .and_then(|v| v.get("output_digest").cloned());
    let cost = summary
        .as_ref()
        .and_then(|v| v["cost_total"].as_f64())
        .unwrap_or(0.0);
    // The equivalent single live run (the trial's own seed included).
    let final_out = runs_dir.join(id).join("out");
    let as_run = PlannedRun {
        params: p.params.clone(),
        ..r.clone()
    };
    let cmd: Vec<String> = ["agentsched", "live", "run", "--endpoints", endpoints_name]
        .iter()
        .map(|x| x.to_string())
        .chain(
            (p.request_timeout_s != super::plan::DEFAULT_REQUEST_TIMEOUT_S)
                .then(|| {
                    [
                        "--request-timeout-s".into(),
                        p.request_timeout_s.to_string(),
                    ]
                })
                .into_iter()
                .flatten(),
        )
        .chain(as_run.cmd(&final_out).into_iter().skip(2))
        .collect();
    let meta = json!({
        "run_id": id,
        "params": p.params,
        "ablation_name": r.ablation.name,
        "ablation_flags": r.ablation.flags,
        "mode": "live",
        "trial": trial + 1,
        "cmd": cmd.join(" "),
        "cwd": std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default(),
        "start_time_unix_s": start_unix,
        "end_time_unix_s": unix_now(),
        "wall_time_s": wall,
        "exit_code": exit_code,
        "sim_binary_version": concat!("agentsched ", env!("CARGO_PKG_VERSION")),
        "config_hash": p.config_hash,
        "output_digest": digest,
        "endpoints": endpoints_meta,
        "resolved": resolved,
    });
    super::write_run_record(&staging, &stdout, &stderr, &meta)?;
    make_durable(&staging)?;
    let failure = (exit_code != 0).then(|| {
        (
            exit_code,
            failures::reason_in_stderr(&stderr).unwrap_or_default(),
        )
    });
    commit(
        &super::Staged {
            run_id: id.to_string(),
            staging: staging.clone(),
            failure: failure.clone(),
        },
        runs_dir,
    )?;
    crate::output::sync_dir(runs_dir);
    // Said even with --quiet, as failures are.
    for w in &warnings {
        eprintln!("warning: {id}: {w}");
    }
    if !opts.quiet {
        eprintln!(
            "{id}: {}",
            if exit_code == 0 {
                format!("ok in {wall:.2} s")
            } else {
                format!("exit {exit_code}: {}", stderr.trim_end())
            }
        );
    }
    Ok(TrialEnd {
        failure,
        cost,
        max_cost_reached,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(trials: u32, max_trials: u32, mode: SweepMode) -> LiveSettings {
        LiveSettings {
            trials,
            max_trials,
            mode,
            ..LiveSettings::default()
        }
    }

    #[test]
    fn repeated_and_independent_orders() {
        let pairs = |v: Vec<Trial>| v.into_iter().map(|t| (t.run, t.trial)).collect::<Vec<_>>();
        assert_eq!(
            pairs(schedule(2, &settings(2, 2, SweepMode::Repeated))),
            [(0, 0), (1, 0), (0, 1), (1, 1)]
        );
        assert_eq!(
            pairs(schedule(2, &settings(2, 2, SweepMode::Independent))),
            [(0, 0), (0, 1), (1, 0), (1, 1)]
        );
    }

    #[test]
    fn adaptive_stopping_by_hand() {
        let l = LiveSettings {
            ci_target: 0.1,
            ..settings(1, 10, SweepMode::Repeated)
        };
        // At least 3 trials, however tight.
        assert!(!settled(2, &[100.0, 100.0], &l));
        assert!(settled(3, &[100.0, 100.0, 100.0], &l));
        // 100, 110, 90: sd 10, half-width t(2) x 10 / sqrt(3) = 4.303 x 5.774
        // = 24.8 > 10: go on.
        assert!(!settled(3, &[100.0, 110.0, 90.0], &l));
        // Five values 100, 102, 98, 101, 99: sd 1.58, half-width
        // 2.776 x 1.58 / sqrt(5) = 1.96 <= 10: stop.
        assert!(settled(5, &[100.0, 102.0, 98.0, 101.0, 99.0], &l));
        // max_trials ends it whatever the spread.
        assert!(settled(10, &[1.0, 1000.0], &l));
        // Without adaptivity, exactly `trials`.
        let fixed = settings(2, 2, SweepMode::Repeated);
        assert!(!settled(1, &[5.0], &fixed));
        assert!(settled(2, &[5.0, 50.0], &fixed));
    }
}
