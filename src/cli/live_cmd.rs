//! `agentsched live run` and `agentsched emulate`.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Subcommand};

use crate::cli::ScenarioArgs;
use crate::error::{Error, Result};
use crate::live::emulator::{self, EmulatorConfig, Fault};
use crate::live::rundir::{
    all_measurement_warnings, endpoints_json, headline, never_reached, run_to_dir, write_outputs,
};
use crate::live::stop::{StopSignal, stop_signal};
use crate::live::{EndpointsFile, HttpTransport, LiveConfig, ModelTransport};
use crate::output;
use crate::recorded::{Mode, RecordedRun, Replayed};
use crate::scenario::Scenario;

/// `live` subcommands.
#[derive(Subcommand, Debug)]
pub enum LiveCmd {
    /// Replay a scenario against OpenAI-compatible endpoints with the simulator's policy code.
    ///
    /// Ctrl-C or SIGTERM stops it with every output written, the unfinished workflows marked
    /// interrupted (exit 130, 143).
    Run(LiveRunArgs),
}

/// `live run` flags.
#[derive(Args, Debug)]
pub struct LiveRunArgs {
    /// The scenario (the `simulate` flags; `--time-scale N` runs N scenario seconds per real second).
    #[command(flatten)]
    pub scenario: ScenarioArgs,
    /// Replay a finished simulated run exactly: the scenario, policy, constants and seed it recorded
    /// (a `simulate --out` directory or a sweep's run directory). `--constants`, `--set` and
    /// `--time-scale` still apply; the live run records what it replays, for `fidelity`.
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = [
        "scenario", "policy", "workflows", "pdfs", "iters", "subqueries", "seed",
        "enable_model_routing", "heavy_tail_prob", "heavy_tail_mult", "disable_hedging",
        "disable_escalation", "disable_dag_priority",
    ])]
    pub from_run: Option<PathBuf>,
    /// endpoints.json: base URL, model and key variable per (provider, tier).
    #[arg(long, value_name = "FILE", required_unless_present = "in_process")]
    pub endpoints: Option<PathBuf>,
    /// No network: answer every attempt from the provider model in process (a dry run of the executor).
    #[arg(long, conflicts_with = "endpoints")]
    pub in_process: bool,
    /// Output directory (created if missing).
    #[arg(long, alias = "out_dir", alias = "out-dir", default_value = "out/live")]
    pub out: PathBuf,
    /// Also write trace.json.
    #[arg(long)]
    pub trace: bool,
    /// 429s in a row after which a call's next 429 counts as a failure.
    #[arg(allow_negative_numbers = true, long, default_value_t = 32)]
    pub max_consecutive_429: u32,
    /// Real seconds after which a request to a tier without a `timeout_ms` of its own is
    /// aborted as a timeout (a hung server would hold its call forever); 0 waits forever.
    #[arg(
        allow_negative_numbers = true,
        long,
        value_name = "SECONDS",
        default_value = "600",
        value_parser = request_timeout
    )]
    pub request_timeout_s: RequestTimeout,
    /// A spending cap in dollars: the run is refused if its simulation spends more, and stops
    /// (every output written, exit 1) before sending an attempt that would take what it has
    /// committed (charges so far, plus attempts in flight at their price) past the cap.
    #[arg(
        allow_negative_numbers = true,
        long,
        alias = "max_cost",
        value_name = "DOLLARS",
        value_parser = max_cost
    )]
    pub max_cost: Option<f64>,
    /// Do not send the attempt identity header (x-agentsched-attempt).
    #[arg(long)]
    pub no_identity: bool,
    /// Print nothing on success (no progress either).
    #[arg(long, short)]
    pub quiet: bool,
}

/// `emulate` flags.
#[derive(Args, Debug)]
pub struct EmulateArgs {
    /// The scenario whose tiers to serve.
    #[command(flatten)]
    pub scenario: ScenarioArgs,
    /// Address to bind (loopback unless told otherwise).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0: any free one; the address is printed).
    #[arg(allow_negative_numbers = true, long, default_value_t = 0)]
    pub port: u16,
    /// Inject a fault with a probability per request: reset, malformed, stall, slow_headers, truncated.
    #[arg(long, value_name = "KIND=PROB")]
    pub fault: Vec<String>,
    /// Share of a streamed answer's latency before its first token.
    #[arg(allow_hyphen_values = true, long, default_value_t = 0.3, value_parser = crate::cli::args::finite_f64)]
    pub ttft_fraction: f64,
    /// Answer a prompt seen before (same model and text) at once, from a response cache
    /// (what `audit caching` detects).
    #[arg(long)]
    pub cache: bool,
    /// Answer every call at once, successfully, without limits: a null endpoint, whose
    /// live run measures the transport's own time per call (`calibrate --null-run`).
    #[arg(long)]
    pub zero_latency: bool,
    /// Write an endpoints.json for this emulator (for `live run --endpoints`).
    #[arg(long, value_name = "FILE")]
    pub write_endpoints: Option<PathBuf>,
}

/// `--request-timeout-s`: a real-time limit, or none.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RequestTimeout(pub Option<std::time::Duration>);

/// Parses `--request-timeout-s`: seconds >= 0, 0 for no limit.
fn request_timeout(s: &str) -> std::result::Result<RequestTimeout, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("expected seconds (0 for no limit), got {s:?}"))?;
    crate::live::request_timeout_of(secs)
        .map(RequestTimeout)
        .ok_or_else(|| format!("{}, got {s}", crate::live::REQUEST_TIMEOUT_EXPECTED))
}

/// Parses `--max-cost`: dollars in (0, 1e9].
fn max_cost(s: &str) -> std::result::Result<f64, String> {
    let dollars: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("expected dollars, got {s:?}"))?;
    crate::live::max_cost_of(dollars)
        .map(|_| dollars)
        .ok_or_else(|| format!("{}, got {s}", crate::live::MAX_COST_EXPECTED))
}

/// Every call answered at once and successfully, with no limit: what is
/// left of a live run's latency against it is the transport's.
fn make_null_endpoint(s: &mut crate::scenario::Scenario) {
    for nt in s.node_types.values_mut() {
        nt.latency = crate::scenario::Dist::Constant { ms: 0.0 };
        nt.tail = None;
    }
    s.heavy_tail = crate::scenario::HeavyTail::default();
    for t in s.providers.values_mut().flat_map(|p| p.tiers.iter_mut()) {
        t.failure_prob = 0.0;
        t.rate_limit = None;
        t.token_limit = None;
    }
}

fn tokio_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Execution(format!("cannot start the async runtime: {e}")))
}

/// Runs `live` subcommands.
pub(crate) fn run(c: LiveCmd) -> Result<u8> {
    match c {
        LiveCmd::Run(a) => live_run(a),
    }
}

/// The scenario of `--from-run DIR` with the flags that still apply, and
/// what the live run records about it.
fn replay_scenario(a: &ScenarioArgs, dir: &Path) -> Result<(Scenario, Replayed)> {
    let rec = RecordedRun::locate(dir)?;
    if rec.mode == Mode::Live {
        return Err(Error::Input(format!(
            "--from-run {}: is a live run; replay the simulated run it was compared with, \
             or pass --scenario {}",
            dir.display(),
            rec.out_dir.join(crate::recorded::SCENARIO_FILE).display()
        )));
    }
    let recorded = rec.scenario()?;
    let s = a.resolve_on(rec.scenario.clone(), &rec.scenario_origin)?;
    // The time scale changes no simulated result; anything else does.
    let mut same_time = s.clone();
    same_time.time_scale = recorded.time_scale;
    let changed = if same_time.to_value() == recorded.to_value() {
        vec![]
    } else {
        a.constants
            .iter()
            .map(|c| format!("--constants {}", c.display()))
            .chain(a.set.iter().map(|x| format!("--set {x}")))
            .collect()
    };
    let replayed = Replayed {
        run: std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf()),
        output_digest: rec.output_digest,
        changed,
    };
    Ok((s, replayed))
}

fn live_run(a: LiveRunArgs) -> Result<u8> {
    let (mut s, replays) = match &a.from_run {
        Some(dir) => {
            let (s, r) = replay_scenario(&a.scenario, dir)?;
            (s, Some(r))
        }
        None => (a.scenario.resolve()?, None),
    };
    let mut cfg = LiveConfig::new(&s);
    cfg.max_consecutive_429 = a.max_consecutive_429;
    cfg.request_timeout = a.request_timeout_s.0;
    cfg.send_identity = !a.no_identity;
    cfg.progress = !a.quiet && std::io::stderr().is_terminal();
    if let Some(path) = &a.endpoints {
        let file = EndpointsFile::read(path)?;
        cfg.endpoints = file
            .resolve(&path.display().to_string(), &mut s, |k| {
                std::env::var(k).ok()
            })?
            .into_iter()
            .map(|tiers| tiers.into_iter().map(Arc::new).collect())
            .collect();
        crate::live::proxy::Proxies::from_env().check(&cfg.endpoints)?;
    }
    if !(s.time_scale.is_finite() && s.time_scale > 0.0) {
        return Err(Error::Input(format!(
            "--time-scale: expected a finite number > 0, got {}",
            s.time_scale
        )));
    }
    let simulated_cost = match a.max_cost {
        Some(cap) => {
            let est = crate::live::spend::simulated_cost(&s);
            if est > cap {
                return Err(Error::Input(format!(
                    "--max-cost {cap}: the simulation of this run spends ${est:.2} ({} workflows at \
                     the scenario's prices), more than the cap; raise --max-cost, or run fewer \
                     workflows (--workflows)",
                    s.workload.workflows
                )));
            }
            cfg.max_cost = crate::live::max_cost_of(cap);
            if !a.quiet {
                outln!(
                    "spending cap ${cap}: the simulation of this run spends ${est:.2}; no attempt \
                     is sent that would commit more than the cap"
                );
            }
            Some(est)
        }
        None => None,
    };
    output::prepare_out_dir(&a.out)?;
    let rt = tokio_runtime()?;
    let endpoints_meta = endpoints_json(&s, &cfg.endpoints);
    let out = &a.out;
    let trace = a.trace;
    let signal = std::cell::Cell::new(None);
    let done = rt.block_on(async {
        let stop = async { signal.set(Some(stop_signal().await)) };
        if a.in_process {
            run_to_dir(&s, out, trace, ModelTransport::new(&s), cfg, stop).await
        } else {
            run_to_dir(&s, out, trace, HttpTransport::new(), cfg, stop).await
        }
    })?;
    let mut meta = serde_json::Map::new();
    meta.insert("mode".into(), "live".into());
    meta.insert("endpoints".into(), endpoints_meta.clone());
    if let Some(r) = &replays {
        meta.insert("replays".into(), r.to_json());
    }
    if let (Some(cap), Some(est)) = (a.max_cost, simulated_cost) {
        meta.insert("max_cost".into(), cap.into());
        meta.insert("max_cost_simulated".into(), est.into());
        meta.insert(
            "max_cost_reached".into(),
            done.outcome.max_cost_reached.into(),
        );
    }
    let digest = write_outputs(&s, out, &done, meta)?;
    if !a.quiet {
        outln!(
            "{}, {:.2} s real at time scale {}; digest {}; outputs in {}",
            headline(&s, &done),
            done.outcome.wall_time_s,
            s.time_scale,
            &digest[..12],
            out.display()
        );
        if let Some(r) = &replays {
            outln!(
                "replayed {}{}",
                r.run.display(),
                if r.changed.is_empty() {
                    String::new()
                } else {
                    format!(" with {}", r.changed.join(", "))
                }
            );
        }
    }
    // Said even with --quiet: the run stands, but measured failures only,
    // or answers of other lengths than the scenario's.
    for w in all_measurement_warnings(&s, &done, &endpoints_meta) {
        eprintln!("warning: {w}");
    }
    if done.outcome.max_cost_reached {
        eprintln!(
            "stopped at --max-cost {}: the next attempt would have committed more than the cap \
             (${:.4} charged; what was in flight was cancelled); every output was written, the \
             unfinished workflows marked interrupted",
            a.max_cost.unwrap_or_default(),
            done.outcome.result.summary.cost_total
        );
        return Ok(1);
    }
    if done.outcome.interrupted {
        let by = signal.get().unwrap_or(StopSignal::Interrupt);
        eprintln!(
            "stopped by {}: every output was written, the unfinished workflows marked interrupted",
            by.name()
        );
        return Ok(by.exit_code());
    }
    never_reached(&s, &done, &endpoints_meta).map_or(Ok(0), Err)
}

/// Runs `emulate` until Ctrl-C or SIGTERM, then stops accepting and exits 0.
pub(crate) fn emulate(a: EmulateArgs) -> Result<u8> {
    let mut s = a.scenario.resolve()?;
    if a.zero_latency {
        make_null_endpoint(&mut s);
    }
    let mut faults = BTreeMap::new();
    for f in &a.fault {
        let (k, p) = Fault::parse(f).map_err(Error::Input)?;
        if faults.insert(k, p).is_some() {
            return Err(Error::Input(format!(
                "--fault {f:?}: this kind is given twice"
            )));
        }
    }
    if !(0.0..=1.0).contains(&a.ttft_fraction) {
        return Err(Error::Input(format!(
            "--ttft-fraction: expected a number in [0, 1], got {}",
            a.ttft_fraction
        )));
    }
    let ip: std::net::IpAddr = a
        .host
        .parse()
        .map_err(|_| Error::Input(format!("--host: expected an IP address, got {:?}", a.host)))?;
    let cfg = EmulatorConfig {
        time_scale: s.time_scale,
        faults,
        ttft_fraction: a.ttft_fraction,
        cache: a.cache,
    };
    let rt = tokio_runtime()?;
    rt.block_on(async {
        let h = emulator::start(&s, cfg, SocketAddr::new(ip, a.port)).await?;
        if let Some(path) = &a.write_endpoints {
            let file = emulator::endpoints_for(&s, h.addr);
            let mut text = serde_json::to_string_pretty(&file).expect("endpoints serialize");
            text.push('\n');
            output::atomic_write(path, text.as_bytes())?;
        }
        outln!(
            "listening on http://{}/v1 (time scale {})",
            h.addr,
            s.time_scale
        );
        use std::io::Write;
        let _ = std::io::stdout().flush();
        stop_signal().await;
        h.shutdown().await;
        Ok::<_, Error>(())
    })?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_request_timeout_is_seconds_and_zero_is_none() {
        assert_eq!(
            request_timeout("600").unwrap(),
            RequestTimeout(Some(Duration::from_secs(600)))
        );
        assert_eq!(
            request_timeout("0.25").unwrap(),
            RequestTimeout(Some(Duration::from_millis(250)))
        );
        assert_eq!(request_timeout("0").unwrap(), RequestTimeout(None));
        for bad in ["-1", "NaN", "inf", "1e10", "ten", ""] {
            let e = request_timeout(bad).unwrap_err();
            assert!(e.starts_with("expected seconds"), "{bad}: {e}");
        }
    }
}
