//! `agentsched calibrate`: a scenario fitted to live runs, written as a
//! new file beside the input (which it never replaces).

use std::path::PathBuf;

use clap::Args;

use crate::calibrate::{self, LiveSource, Options, Overhead};
use crate::error::{Error, Result};
use crate::output;
use crate::scenario::{Dist, Scenario};

/// `calibrate` flags.
#[derive(Args, Debug)]
pub struct CalibrateArgs {
    /// A live run directory (`live run --out`, or a live sweep's run directory); repeat to
    /// pool several runs.
    #[arg(long, value_name = "DIR", required = true)]
    pub live: Vec<PathBuf>,
    /// The scenario to calibrate [default: the first live run's scenario.json].
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Where to write the calibrated scenario (a new file; see --force).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// A live run against an endpoint that answers at once (e.g. `emulate --zero-latency`):
    /// its median time per call is the transport's, taken out of every latency sample.
    #[arg(long, value_name = "DIR")]
    pub null_run: Option<PathBuf>,
    /// Fewest samples a node type or tier needs to be refitted (fewer: the input's values
    /// are kept, and the provenance says so).
    #[arg(long, default_value_t = Options::default().min_samples as u64, value_parser = clap::value_parser!(u64).range(2..))]
    pub min_samples: u64,
    /// Replace --out when it exists (never the --scenario file).
    #[arg(long)]
    pub force: bool,
}

/// Runs `calibrate`: exit 0 with the scenario written.
pub(crate) fn run(a: CalibrateArgs) -> Result<u8> {
    let sources = a
        .live
        .iter()
        .map(|d| LiveSource::read(d))
        .collect::<Result<Vec<_>>>()?;
    for src in &sources {
        // Fitted all the same: the warning says what the fit measures.
        for w in crate::live::rundir::recorded_measurement_warnings(&src.dir) {
            eprintln!("warning: --live {}: {w}", src.dir.display());
        }
        // Its attempts are samples like any other (those cut off when it
        // stopped, censored ones), but fewer than a whole run's.
        if crate::live::rundir::recorded_interrupted(&src.dir) {
            eprintln!(
                "warning: --live {}: the run was stopped before its workflows finished; its \
                 attempts are fitted, those cut off at the stop as lasting at least as long",
                src.dir.display()
            );
        }
    }
    let (input, label) = match &a.scenario {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| {
                Error::Input(format!("--scenario: cannot read {}: {e}", p.display()))
            })?;
            let s = Scenario::from_json_str(&text)
                .map_err(|e| Error::Input(format!("{}: {e}", p.display())))?;
            (s, p.display().to_string())
        }
        None => {
            let s = &sources[0];
            (
                s.scenario.clone(),
                s.dir.join("scenario.json").display().to_string(),
            )
        }
    };
    let mut inputs: Vec<(&str, PathBuf)> = vec![];
    if let Some(p) = &a.scenario {
        inputs.push(("--scenario", p.clone()));
    }
    for s in &sources {
        inputs.push(("--live", s.dir.join("scenario.json")));
        inputs.push(("--live", s.dir.join("requests.jsonl")));
    }
    let refs: Vec<(&str, &std::path::Path)> =
        inputs.iter().map(|(f, p)| (*f, p.as_path())).collect();
    output::refuse_overwriting_inputs("--out", &a.out, &refs)?;
    if a.out.exists() && !a.force {
        return Err(Error::Input(format!(
            "--out {}: exists; calibrate writes a new scenario and never replaces a file \
             unless --force is given",
            a.out.display()
        )));
    }
    if a.out.is_dir() {
        return Err(Error::Input(format!(
            "--out {}: is a directory; expected a file",
            a.out.display()
        )));
    }
    let overhead = match &a.null_run {
        Some(d) => Some(Overhead::measure(&LiveSource::read(d)?)?),
        None => None,
    };
    let opts = Options {
        min_samples: a.min_samples as usize,
    };
    let cal = calibrate::calibrate(&input, &label, &sources, overhead.as_ref(), &opts)?;
    let mut text = serde_json::to_string_pretty(&cal).expect("scenario serializes");
    text.push('\n');
    output::atomic_write(&a.out, text.as_bytes())?;
    if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        output::sync_dir(dir);
    }
    print_summary(&input, &cal, overhead.as_ref(), &a)?;
    Ok(0)
}

fn short(d: &Dist) -> String {
    let f = |x: f64| format!("{x:.4}");
    match *d {
        Dist::Constant { ms } => format!("constant {} ms", f(ms)),
        Dist::Uniform { low_ms, high_ms } => format!("uniform [{}, {}] ms", f(low_ms), f(high_ms)),
        Dist::Exponential { mean_ms } => format!("exponential mean {} ms", f(mean_ms)),
        Dist::Lognormal { mu, sigma, .. } => format!("lognormal mu {} sigma {}", f(mu), f(sigma)),
        Dist::Gamma { shape, scale_ms } => {
            format!("gamma shape {} scale {} ms", f(shape), f(scale_ms))
        }
        Dist::Streaming {
            ttft_mu,
            ttft_sigma,
            tpot_mu,
            tpot_sigma,
            ..
        } => format!(
            "streaming ttft mu {} sigma {}, tpot mu {} sigma {}",
            f(ttft_mu),
            f(ttft_sigma),
            f(tpot_mu),
            f(tpot_sigma)
        ),
    }
}

fn print_summary(
    input: &Scenario,
    cal: &Scenario,
    overhead: Option<&Overhead>,
    a: &CalibrateArgs,
) -> Result<()> {
    let prov = cal
        .provenance
        .as_ref()
        .expect("calibrate writes provenance");
    outln!(
        "calibrated from {} attempts in {} run(s)",
        prov["attempts"],
        a.live.len()
    );
    match overhead {
        Some(o) => outln!(
            "transport: {:.3} real ms per call (median of {} in {}), taken out of every sample",
            o.real_ms,
            o.samples,
            o.dir.display()
        ),
        None => outln!("transport: not measured (no --null-run): latencies include it"),
    }
    for (name, rep) in prov["node_types"].as_object().into_iter().flatten() {
        let n = &rep["samples"];
        match rep.get("kept") {
            Some(k) => outln!("{name:<18} {n} samples: {}", k.as_str().unwrap_or("kept")),
            None => outln!(
                "{name:<18} {n} samples: {} -> {} (AIC best of {}; KS {:.4})",
                short(&input.node_types[name].latency),
                short(&cal.node_types[name].latency),
                rep["candidates"].as_array().map_or(0, Vec::len),
                rep["ks"].as_f64().unwrap_or(f64::NAN)
            ),
        }
    }
    let fitted: Vec<(&String, &crate::scenario::HeavyTail)> = cal
        .node_types
        .iter()
        .filter_map(|(n, nt)| nt.heavy_tail.as_ref().map(|h| (n, h)))
        .filter(|(n, h)| {
            input.node_types[*n]
                .heavy_tail
                .as_ref()
                .unwrap_or(&input.heavy_tail)
                != *h
        })
        .collect();
    if let Some((_, h)) = fitted.first() {
        let names: Vec<&str> = fitted.iter().map(|(n, _)| n.as_str()).collect();
        outln!(
            "heavy tail         prob {:.4} -> {:.4} (x{} held) on {}; the global one (local work) kept",
            input.heavy_tail.prob,
            h.prob,
            h.mult,
            names.join(", ")
        );
    }
    for t in prov["tiers"].as_array().into_iter().flatten() {
        let (p, j) = (
            t["provider"].as_str().unwrap_or(""),
            t["tier"].as_u64().unwrap_or(0) as usize,
        );
        let (ti, tc) = (&input.providers[p].tiers[j], &cal.providers[p].tiers[j]);
        let limit = |r: &Option<crate::scenario::RateLimit>| {
            r.as_ref().map_or("none".to_string(), |r| {
                format!(
                    "{:.3}/s burst {} ({:?})",
                    r.rate_per_s, r.burst, r.enforced_by
                )
                .to_lowercase()
            })
        };
        outln!(
            "{p} tier {j}: latency scale {:.4} -> {:.4}, failure prob {:.4} -> {:.4} ({} answered), \
             rate limit {} -> {}",
            ti.latency_scale,
            tc.latency_scale,
            ti.failure_prob,
            tc.failure_prob,
            t["failure_prob"]["answered"],
            limit(&ti.rate_limit),
            limit(&tc.rate_limit)
        );
        let unreached = t["observed"]["unreached"].as_u64().unwrap_or(0);
        if unreached > 0 {
            outln!(
                "{p} tier {j}: {unreached} attempts never reached the endpoint (connect/tls): left out"
            );
        }
    }
    outln!(
        "wrote {} (provenance inside; the input is unchanged)",
        a.out.display()
    );
    Ok(())
}
