//! `agentsched audit caching`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::cli::ScenarioArgs;
use crate::error::{Error, Result};
use crate::live::EndpointsFile;
use crate::live::audit::{self, AuditConfig, LoadPattern};
use crate::live::transport::CallKind;

/// `audit` subcommands.
#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Is an endpoint answering repeated prompts from a cache? (exit 0 pass, 1 fail)
    Caching(CachingArgs),
}

/// `audit caching` flags.
#[derive(Args, Debug)]
pub struct CachingArgs {
    /// endpoints.json (as for `live run`).
    #[arg(long, value_name = "FILE")]
    pub endpoints: PathBuf,
    /// The scenario the endpoints file is written for (default: the embedded one).
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// The provider to audit (default: the scenario's first non-embedding provider).
    #[arg(long)]
    pub provider: Option<String>,
    /// The tier to audit.
    #[arg(allow_negative_numbers = true, long, default_value_t = 0)]
    pub tier: u16,
    /// Distinct prompts in the reference phase.
    #[arg(allow_negative_numbers = true, long, default_value_t = 100)]
    pub reference_requests: u32,
    /// Requests in the audit phase, all repeating one reference prompt.
    #[arg(allow_negative_numbers = true, long, default_value_t = 100)]
    pub audit_requests: u32,
    /// Which reference prompt the audit phase repeats.
    #[arg(allow_negative_numbers = true, long, default_value_t = 0)]
    pub sample_index: u32,
    /// max_throughput (every request at once, up to --concurrency in flight) or concurrency
    /// (a closed loop of --concurrency); paced patterns are refused.
    #[arg(long, default_value = "max_throughput")]
    pub load_pattern: String,
    /// Requests in flight at most.
    #[arg(allow_negative_numbers = true, long, default_value_t = 16)]
    pub concurrency: u32,
    /// Threshold t (0 < t < 1): PASS iff both phases complete >= requested x (1 - t) and audit
    /// QPS < reference QPS x (1 + t).
    #[arg(allow_hyphen_values = true, long, default_value_t = 0.10, value_parser = crate::cli::args::finite_f64)]
    pub threshold: f64,
    /// Prompt size, tokens.
    #[arg(allow_negative_numbers = true, long, default_value_t = 64)]
    pub input_tokens: u32,
    /// max_tokens.
    #[arg(allow_negative_numbers = true, long, default_value_t = 16)]
    pub output_tokens: u32,
    /// Seconds after which an unanswered request counts as failed.
    #[arg(allow_hyphen_values = true, long, default_value_t = 60.0, value_parser = crate::cli::args::finite_f64)]
    pub timeout_s: f64,
    /// Seconds of pause between the phases.
    #[arg(allow_hyphen_values = true, long, default_value_t = 0.0, value_parser = crate::cli::args::finite_f64)]
    pub cooldown_s: f64,
    /// Output directory: new or empty (an earlier audit's files are never replaced).
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `audit` subcommands.
pub(crate) fn run(c: AuditCmd) -> Result<u8> {
    match c {
        AuditCmd::Caching(a) => caching(a),
    }
}

fn seconds(flag: &str, v: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(v)
        .map_err(|_| Error::Input(format!("{flag}: expected seconds >= 0, got {v}")))
}

fn caching(a: CachingArgs) -> Result<u8> {
    let pattern = LoadPattern::parse(&a.load_pattern)
        .map_err(|m| Error::Input(format!("--load-pattern: {m}")))?;
    let mut s = ScenarioArgs {
        scenario: a.scenario.clone(),
        ..ScenarioArgs::default()
    }
    .resolve()?;
    let file = EndpointsFile::read(&a.endpoints)?;
    let resolved = file.resolve(&a.endpoints.display().to_string(), &mut s, |k| {
        std::env::var(k).ok()
    })?;
    crate::live::proxy::Proxies::from_env().check(&resolved)?;
    let names: Vec<&String> = s.providers.keys().collect();
    let p = match &a.provider {
        Some(name) => names.iter().position(|n| *n == name).ok_or_else(|| {
            Error::Input(format!(
                "--provider {name}: not a provider of the scenario (expected one of {})",
                names
                    .iter()
                    .map(|n| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?,
        None => s
            .providers
            .values()
            .position(|p| p.resource != "embed")
            .unwrap_or(0),
    };
    let provider = s.providers.values().nth(p).expect("index of a provider");
    let Some(endpoint) = resolved[p].get(a.tier as usize) else {
        return Err(Error::Input(format!(
            "--tier {}: provider {} has {} tiers",
            a.tier,
            names[p],
            resolved[p].len()
        )));
    };
    let cfg = AuditConfig {
        endpoint: Arc::new(endpoint.clone()),
        kind: if provider.resource == "embed" {
            CallKind::Embed
        } else {
            CallKind::Chat
        },
        reference_requests: a.reference_requests,
        audit_requests: a.audit_requests,
        sample_index: a.sample_index,
        pattern,
        in_flight: a.concurrency,
        threshold: a.threshold,
        input_tokens: a.input_tokens,
        output_tokens: a.output_tokens,
        timeout: seconds("--timeout-s", a.timeout_s)?,
        cooldown: seconds("--cooldown-s", a.cooldown_s)?,
    };
    audit::check(&cfg)?;
    if a.out.exists() {
        let occupied = std::fs::read_dir(&a.out)
            .map_err(|source| Error::Read {
                path: a.out.clone(),
                source,
            })?
            .next()
            .is_some();
        if occupied {
            return Err(Error::Input(format!(
                "--out {}: not empty; an audit writes into a new or empty directory, so an \
                 earlier audit's verdict is never replaced or left beside a new one",
                a.out.display()
            )));
        }
    }
    std::fs::create_dir_all(&a.out).map_err(|source| Error::Write {
        path: a.out.clone(),
        source,
    })?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Execution(format!("cannot start the async runtime: {e}")))?;
    let done = rt.block_on(audit::run(&cfg, &a.out, crate::live::stop::stop_signal()))?;
    outln!(
        "output caching audit of {} ({} {}): reference {} of {} in {:.3} s = {:.2} QPS; \
         audit {} of {} in {:.3} s = {:.2} QPS",
        cfg.endpoint.base_url,
        names[p],
        a.tier,
        done.reference.completed,
        done.reference.requested,
        done.reference.wall_s,
        done.reference.qps(),
        done.audit.completed,
        done.audit.requested,
        done.audit.wall_s,
        done.audit.qps()
    );
    outln!(
        "{}: {}; {}",
        if done.verdict.passed { "PASS" } else { "FAIL" },
        done.verdict.reason,
        done.result_path.display()
    );
    Ok(if done.verdict.passed { 0 } else { 1 })
}
