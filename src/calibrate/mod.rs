//! `agentsched calibrate`: fits a scenario to what live endpoints did.
//!
//! The scenario's latency model is multiplicative: an attempt of node type
//! `n` on tier `j` with model `m` takes `body_n x scale_j x scale_m x
//! tails`. So calibration works in three steps over the attempts of one
//! or more live runs (`requests.jsonl`):
//!
//! 1. **Tier scales.** Per (node type, tier) cell, the mean log
//!    latency (what the lognormal body's MLE matches); these are split into a node-type part and a tier part by
//!    alternating least squares (`g_nj = a_n + b_j`, weighted by samples).
//!    One tier per provider (the one with the most samples) keeps its
//!    latency scale, which fixes the split; the products, which are what
//!    the data identify, are free.
//! 2. **Node type latency.** The samples of a node type, divided by their
//!    tier's and model's scale, are fitted by maximum likelihood for each
//!    family (lognormal, gamma, exponential), with the scenario's node
//!    tail and heavy tail as mixture components (multipliers held,
//!    probabilities estimated) by EM, timeouts and cancelled attempts as
//!    right-censored samples. The family with the smallest Akaike
//!    information criterion is kept (its Kolmogorov-Smirnov distance is
//!    reported beside it) (a lognormal with a per-token
//!    shift of mu is kept as one: no other family models it). A streamed
//!    node type (`streaming`) gets its time to first token and time per
//!    output token fitted instead.
//! 3. **Tiers.** Failure probability (failures among answered attempts;
//!    an attempt that never reached the endpoint, no connection or no TLS
//!    session, is left out of everything and counted as `unreached`),
//!    the request and token buckets from `x-ratelimit-*` headers (or,
//!    without headers, from the 429s themselves), and the 429 latency.
//!
//! Everything else (prices, slots, timeouts, retries, the workload, the
//! policy) is the input scenario's: those are settings, not observations.
//! The transport's own time per call is in every live latency; a null run
//! (`--null-run`: a live run against an endpoint that answers at once)
//! measures it, and it is then taken out of every sample.

pub mod fit;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::live::RateRecord;
use crate::scenario::{Dist, Enforcer, RateLimit, Scenario, TokenLimit};
use fit::{Family, MixtureFit, Tails, fit_mixture, lognormal_mle, median};

/// One line of `requests.jsonl`, as far as calibration reads it.
#[derive(Clone, Debug, Deserialize)]
pub struct Attempt {
    /// Node type.
    pub node_type: String,
    /// Provider name.
    pub provider: String,
    /// Tier index.
    pub tier: u16,
    /// Model index on the tier (older logs: 0).
    #[serde(default)]
    pub model_index: u8,
    /// Planned prompt tokens (older logs: the node type's).
    #[serde(default)]
    pub input_tokens: Option<u32>,
    /// Planned completion tokens (older logs: the node type's).
    #[serde(default)]
    pub output_tokens: Option<u32>,
    /// Sent (scenario ms).
    pub sent_ms: f64,
    /// First token (scenario ms).
    #[serde(default)]
    pub first_token_ms: Option<f64>,
    /// Ended (scenario ms).
    pub done_ms: f64,
    /// Sent, real us.
    pub sent_us: u64,
    /// Ended, real us.
    pub done_us: u64,
    /// `success`, `failure`, `timeout`, `rate_limited` or `cancelled`.
    pub outcome: String,
    /// A 429's requested wait (scenario ms).
    #[serde(default)]
    pub retry_after_ms: Option<f64>,
    /// Why it failed (`connect`, `tls`, `reset`, `http_5xx`, ...).
    #[serde(default)]
    pub error: Option<String>,
    /// Dropped by the scheduler.
    #[serde(default)]
    pub cancelled: bool,
    /// Of its prompt tokens, those the server served from its prefix
    /// cache (not prefilled).
    #[serde(default)]
    pub usage_cached_prompt_tokens: Option<u32>,
    /// The rate-limit headers.
    #[serde(flatten)]
    pub rate: RateRecord,
}

/// A live run's directory, read.
#[derive(Clone, Debug)]
pub struct LiveSource {
    /// Where it was read from (the directory holding `requests.jsonl`).
    pub dir: PathBuf,
    /// Its effective scenario (`scenario.json`).
    pub scenario: Scenario,
    /// Its attempts.
    pub attempts: Vec<Attempt>,
}

impl LiveSource {
    /// Reads a `live run --out` directory (or a live sweep's run directory,
    /// whose files are under `out/`).
    pub fn read(dir: &Path) -> Result<LiveSource> {
        let dir = if !dir.join("requests.jsonl").exists() && dir.join("out/requests.jsonl").exists()
        {
            dir.join("out")
        } else {
            dir.to_path_buf()
        };
        let log = dir.join("requests.jsonl");
        if !log.exists() {
            return Err(Error::Input(format!(
                "{}: expected a live run directory (with requests.jsonl and scenario.json), found no requests.jsonl",
                dir.display()
            )));
        }
        let sc_path = dir.join("scenario.json");
        let text = std::fs::read_to_string(&sc_path).map_err(|source| Error::Read {
            path: sc_path.clone(),
            source,
        })?;
        let scenario = Scenario::from_json_str(&text)
            .map_err(|e| Error::Input(format!("{}: {e}", sc_path.display())))?;
        let body = std::fs::read_to_string(&log).map_err(|source| Error::Read {
            path: log.clone(),
            source,
        })?;
        let mut attempts = Vec::new();
        for (i, line) in body.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let a: Attempt = serde_json::from_str(line).map_err(|e| {
                Error::Input(format!(
                    "{} line {}: expected one attempt record as `live run` writes it: {e}",
                    log.display(),
                    i + 1
                ))
            })?;
            check_times(&a)
                .map_err(|msg| Error::Input(format!("{} line {}: {msg}", log.display(), i + 1)))?;
            attempts.push(a);
        }
        Ok(LiveSource {
            dir,
            scenario,
            attempts,
        })
    }
}

/// A record's times are scenario ms of one run: finite, from 0 to the
/// simulator's horizon. Past it (a mangled file's 1e308) a latency is no
/// sample of anything, and the fits' arithmetic would overflow.
fn check_times(a: &Attempt) -> std::result::Result<(), String> {
    let horizon = crate::units::SimTime::HORIZON.as_ms();
    for (field, v) in [
        ("sent_ms", Some(a.sent_ms)),
        ("first_token_ms", a.first_token_ms),
        ("done_ms", Some(a.done_ms)),
        ("retry_after_ms", a.retry_after_ms),
    ] {
        if let Some(v) = v
            && !(0.0..=horizon).contains(&v)
        {
            return Err(format!(
                "{field}: expected scenario milliseconds from 0 to {horizon:e}, got {v}"
            ));
        }
    }
    Ok(())
}

/// How to calibrate.
#[derive(Clone, Debug)]
pub struct Options {
    /// Fewest samples a node type, tier or bucket needs to be refitted;
    /// below it the input's values are kept (and the provenance says so).
    pub min_samples: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { min_samples: 30 }
    }
}

/// The transport's time per call, from a null run.
#[derive(Clone, Debug)]
pub struct Overhead {
    /// The null run's directory.
    pub dir: PathBuf,
    /// Median real time per answered call, ms.
    pub real_ms: f64,
    /// Calls it is the median of.
    pub samples: usize,
}

impl Overhead {
    /// Measures it from a null run: the median real time of its
    /// successful attempts.
    pub fn measure(null: &LiveSource) -> Result<Overhead> {
        let mut v: Vec<f64> = null
            .attempts
            .iter()
            .filter(|a| a.outcome == "success")
            .map(|a| a.done_us.saturating_sub(a.sent_us) as f64 / 1e3)
            .collect();
        if v.is_empty() {
            return Err(Error::Input(format!(
                "--null-run {}: no successful attempt to measure the transport by",
                null.dir.display()
            )));
        }
        Ok(Overhead {
            dir: null.dir.clone(),
            samples: v.len(),
            real_ms: median(&mut v),
        })
    }
}

/// Indices of a (provider, tier) in the scenario.
type TierKey = (usize, usize);

#[derive(Default)]
struct Cell {
    /// Observed latencies / (model scale x token factor), ms.
    values: Vec<f64>,
    /// Censored at these, same units.
    censored: Vec<f64>,
    /// For streamed answers: (ttft, total, input tokens, output tokens),
    /// in the same units, by index into `values`.
    streamed: Vec<Option<(f64, f64, u32, u32)>>,
}

#[derive(Default)]
struct TierObs {
    success: u64,
    failure: u64,
    timeout: u64,
    rate_limited: u64,
    cancelled: u64,
    /// Failed before reaching the endpoint (no connection, no TLS session).
    unreached: u64,
    reject_ms: Vec<f64>,
    /// (sent_ms, was a 429), per source run (time restarts).
    sends: Vec<Vec<(f64, bool)>>,
    rate: Vec<(RateRecord, Option<f64>)>,
}

/// Calibrates `input` to `sources`. Returns the proposed scenario, whose
/// `provenance` says where each number came from.
pub fn calibrate(
    input: &Scenario,
    input_label: &str,
    sources: &[LiveSource],
    overhead: Option<&Overhead>,
    opts: &Options,
) -> Result<Scenario> {
    let providers: Vec<&String> = input.providers.keys().collect();
    let mut cells: BTreeMap<(String, TierKey), Cell> = BTreeMap::new();
    let mut tiers: BTreeMap<TierKey, TierObs> = BTreeMap::new();
    let mut total = 0usize;
    for (si, src) in sources.iter().enumerate() {
        let over_ms = overhead.map_or(0.0, |o| o.real_ms * src.scenario.time_scale);
        for (i, a) in src.attempts.iter().enumerate() {
            let at = || {
                format!(
                    "{} line {}",
                    src.dir.join("requests.jsonl").display(),
                    i + 1
                )
            };
            let nt = input.node_types.get(&a.node_type).ok_or_else(|| {
                Error::Input(format!(
                    "{}: node type {:?} is not in the scenario {input_label}",
                    at(),
                    a.node_type
                ))
            })?;
            let p = providers
                .iter()
                .position(|p| **p == a.provider)
                .ok_or_else(|| {
                    Error::Input(format!(
                        "{}: provider {:?} is not in the scenario {input_label}",
                        at(),
                        a.provider
                    ))
                })?;
            let tier = input.providers[&a.provider]
                .tiers
                .get(a.tier as usize)
                .ok_or_else(|| {
                    Error::Input(format!(
                        "{}: tier {} of {:?} is not in the scenario {input_label}",
                        at(),
                        a.tier,
                        a.provider
                    ))
                })?;
            total += 1;
            let key = (p, a.tier as usize);
            let t = tiers.entry(key).or_default();
            // The endpoint never saw it: no failure of the provider's, no
            // latency, no request against its buckets.
            if matches!(a.error.as_deref(), Some("connect" | "tls")) {
                t.unreached += 1;
                continue;
            }
            if t.sends.len() <= si {
                t.sends.resize_with(si + 1, Vec::new);
            }
            t.sends[si].push((a.sent_ms, a.outcome == "rate_limited"));
            if a.rate != RateRecord::default() {
                t.rate.push((a.rate.clone(), a.retry_after_ms));
            }
            let elapsed = (a.done_ms - a.sent_ms).max(0.0);
            if a.outcome == "rate_limited" {
                t.rate_limited += 1;
                t.reject_ms.push(elapsed);
                continue;
            }
            let out = a.output_tokens.unwrap_or(nt.output_tokens);
            let inp = a.input_tokens.unwrap_or(nt.input_tokens);
            let model_scale = tier
                .models
                .get(a.model_index as usize)
                .map_or(1.0, |m| m.latency_scale);
            let per_token = match nt.latency {
                Dist::Lognormal {
                    mu_per_output_token,
                    ..
                } => mu_per_output_token,
                _ => 0.0,
            };
            let factor = model_scale * (per_token * out as f64).exp();
            // The transport's share, never more than most of the sample.
            let net = |ms: f64| (ms - over_ms).max(ms * 0.01).max(1e-3);
            // A sample the scaling made infinite (a factor that underflowed)
            // carries nothing a fit could use.
            let sample = |ms: f64| Some(net(ms) / factor).filter(|x| x.is_finite());
            let cell = cells.entry((a.node_type.clone(), key)).or_default();
            if a.cancelled || a.outcome == "cancelled" {
                t.cancelled += 1;
                if elapsed > over_ms {
                    cell.censored.extend(sample(elapsed));
                }
                continue;
            }
            match a.outcome.as_str() {
                "success" => {
                    t.success += 1;
                    cell.values.extend(sample(elapsed));
                    // A prompt's cached part was not prefilled.
                    let prefilled = inp - a.usage_cached_prompt_tokens.unwrap_or(0).min(inp);
                    let streamed = a.first_token_ms.map(|ft| {
                        let ttft = net((ft - a.sent_ms).max(0.0)) / model_scale;
                        (ttft, net(elapsed) / model_scale, prefilled, out)
                    });
                    cell.streamed.push(streamed);
                }
                "timeout" => {
                    t.timeout += 1;
                    cell.censored.extend(sample(elapsed));
                }
                _ => t.failure += 1,
            }
        }
    }
    if total == 0 {
        return Err(Error::Input(
            "--live: the runs hold no attempts (requests.jsonl is empty)".into(),
        ));
    }

    let mut out = input.clone();
    let tier_ln = split_tier_scales(input, &providers, &cells, opts.min_samples);
    // Tier scales.
    let mut tier_report = BTreeMap::new();
    for (&(p, j), ln_b) in &tier_ln {
        let t = &mut out.providers.get_mut(providers[p]).expect("provider").tiers[j];
        let before = t.latency_scale;
        t.latency_scale = ln_b.0.exp();
        tier_report.insert(
            (p, j),
            json!({"latency_scale": {"input": before, "calibrated": t.latency_scale,
                    "held": ln_b.1, "samples": ln_b.2}}),
        );
    }
    let scale_of = |p: usize, j: usize| {
        tier_ln
            .get(&(p, j))
            .map_or(input.providers[providers[p]].tiers[j].latency_scale, |v| {
                v.0.exp()
            })
    };

    // Node types. The heavy tail is fitted per remote type and pooled; the
    // pooled value becomes each fitted type's own, so that the global one
    // keeps stretching local work (which no live run shows) as before.
    let heavy_of =
        |nt: &crate::scenario::NodeType| nt.heavy_tail.clone().unwrap_or(input.heavy_tail.clone());
    let mut node_report = serde_json::Map::new();
    // (sum of prob x samples, samples, mult, the types fitted).
    let mut heavy_acc: (f64, usize, f64, Vec<String>) = (0.0, 0, 1.0, Vec::new());
    let mut cell_report = Vec::new();
    for (name, nt) in &input.node_types {
        let mine: Vec<(&TierKey, &Cell)> = cells
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|((_, k), c)| (k, c))
            .collect();
        if mine.is_empty() {
            continue;
        }
        let heavy = heavy_of(nt);
        let heavy_mult = (heavy.prob > 0.0 && heavy.mult != 1.0).then_some(heavy.mult);
        let tails = Tails {
            node_mult: nt
                .tail
                .as_ref()
                .filter(|t| t.prob > 0.0 && t.mult != 1.0)
                .map(|t| t.mult),
            heavy_mult,
            start: (nt.tail.as_ref().map_or(0.0, |t| t.prob), heavy.prob),
        };
        let mut values = Vec::new();
        let mut censored = Vec::new();
        let mut streamed = Vec::new();
        for &(&(p, j), c) in &mine {
            let s = scale_of(p, j);
            values.extend(c.values.iter().map(|v| v / s));
            censored.extend(c.censored.iter().map(|v| v / s));
            streamed.extend(
                c.streamed
                    .iter()
                    .map(|x| x.map(|(a, b, i, o)| (a / s, b / s, i, o))),
            );
            cell_report.push(cell_json(name, providers[p], j, c, &tails));
        }
        let n = values.len();
        let mut rep = serde_json::Map::new();
        rep.insert("samples".into(), json!(n));
        rep.insert("censored".into(), json!(censored.len()));
        if n < opts.min_samples {
            rep.insert(
                "kept".into(),
                json!(format!(
                    "fewer than {} samples: the input's latency model is kept",
                    opts.min_samples
                )),
            );
            node_report.insert(name.clone(), Value::Object(rep));
            continue;
        }
        let target = out.node_types.get_mut(name).expect("node type");
        let (fit, dist, candidates) =
            fit_node_type(&nt.latency, &values, &censored, &streamed, &tails);
        rep.insert("candidates".into(), Value::Array(candidates));
        let Some(fit) = fit else {
            rep.insert(
                "kept".into(),
                json!("no family could be fitted: the input's latency model is kept"),
            );
            node_report.insert(name.clone(), Value::Object(rep));
            continue;
        };
        rep.insert("family".into(), json!(dist_family(&dist)));
        rep.insert("latency".into(), serde_json::to_value(&dist).expect("dist"));
        rep.insert(
            "input_latency".into(),
            serde_json::to_value(&nt.latency).expect("dist"),
        );
        rep.insert("ks".into(), crate::output::json_f64(fit.ks));
        if let (Some(t), Some(_)) = (target.tail.as_mut(), tails.node_mult) {
            rep.insert(
                "tail_prob".into(),
                json!({"input": t.prob, "calibrated": fit.node_prob}),
            );
            t.prob = fit.node_prob;
        }
        if let Some(mult) = heavy_mult {
            rep.insert("heavy_tail_prob".into(), json!(fit.heavy_prob));
            heavy_acc.0 += fit.heavy_prob * n as f64;
            heavy_acc.1 += n;
            // Types with another multiplier would pool unlike things: the
            // last one's is kept, and the report names every type.
            heavy_acc.2 = mult;
            heavy_acc.3.push(name.clone());
        }
        target.latency = dist;
        node_report.insert(name.clone(), Value::Object(rep));
    }
    let heavy_report = if heavy_acc.1 > 0 {
        let p = heavy_acc.0 / heavy_acc.1 as f64;
        for name in &heavy_acc.3 {
            if let Some(nt) = out.node_types.get_mut(name) {
                nt.heavy_tail = Some(crate::scenario::HeavyTail {
                    prob: p,
                    mult: heavy_acc.2,
                });
            }
        }
        json!({"prob": {"input": input.heavy_tail.prob, "calibrated": p},
            "mult": {"held": heavy_acc.2}, "samples": heavy_acc.1,
            "node_types": heavy_acc.3,
            "global": "kept: the other node types (local work, which no live run shows) still use it"})
    } else {
        json!({"kept": "no fitted node type has a heavy tail in the input scenario: none is fitted"})
    };

    // Tiers: failures, timeouts, 429s, buckets.
    let mut tier_list = Vec::new();
    for (&(p, j), obs) in &tiers {
        let t_in = &input.providers[providers[p]].tiers[j];
        let t = &mut out.providers.get_mut(providers[p]).expect("provider").tiers[j];
        let mut rep = tier_report
            .remove(&(p, j))
            .unwrap_or_else(|| json!({"latency_scale": {"input": t_in.latency_scale, "kept": "no latency samples"}}));
        let r = rep.as_object_mut().expect("object");
        r.insert("provider".into(), json!(providers[p]));
        r.insert("tier".into(), json!(j));
        let answered = obs.success + obs.failure;
        let sent = answered + obs.timeout + obs.rate_limited;
        let frac = |a: u64, b: u64| {
            if b > 0 {
                json!(a as f64 / b as f64)
            } else {
                Value::Null
            }
        };
        let mut failure = json!({"failures": obs.failure, "answered": answered,
            "input": t_in.failure_prob});
        if answered as usize >= opts.min_samples {
            t.failure_prob = obs.failure as f64 / answered as f64;
            failure["calibrated"] = json!(t.failure_prob);
        } else {
            failure["kept"] = json!(format!("fewer than {} answered attempts", opts.min_samples));
        }
        r.insert("failure_prob".into(), failure);
        r.insert(
            "observed".into(),
            json!({"attempts": sent + obs.cancelled + obs.unreached, "success": obs.success, "failure": obs.failure,
                "timeout": obs.timeout, "rate_limited": obs.rate_limited, "cancelled": obs.cancelled,
                "unreached": obs.unreached,
                "failure_rate": frac(obs.failure, answered), "timeout_rate": frac(obs.timeout, sent),
                "rate_limited_rate": frac(obs.rate_limited, sent)}),
        );
        r.insert("rate_limit".into(), calibrate_bucket(t_in, t, obs, opts));
        tier_list.push(rep);
    }

    let sources_json: Vec<Value> = sources
        .iter()
        .map(|s| {
            json!({"dir": s.dir.display().to_string(), "attempts": s.attempts.len(),
                "time_scale": s.scenario.time_scale, "policy": s.scenario.policy.name(),
                "seed": s.scenario.seed, "transport_ms_removed":
                    overhead.map_or(0.0, |o| o.real_ms * s.scenario.time_scale)})
        })
        .collect();
    out.provenance = Some(json!({
        "tool": format!("agentsched {} calibrate", env!("CARGO_PKG_VERSION")),
        "input_scenario": input_label,
        "sources": sources_json,
        "attempts": total,
        "transport": match overhead {
            Some(o) => json!({"null_run": o.dir.display().to_string(), "real_ms_per_call": o.real_ms,
                "samples": o.samples, "removed": "from every latency sample, x each run's time scale"}),
            None => json!({"null_run": null, "removed": false,
                "note": "no --null-run: the fitted latencies include the transport's time per call"}),
        },
        "method": "per node type: maximum likelihood of lognormal, gamma and exponential (EM over the \
                   scenario's tails, timeouts and cancelled attempts censored), the smallest \
                   AIC kept (Kolmogorov-Smirnov distance reported); tier latency scales from per-cell mean log \
                   latencies; failure probability = failures / answered; buckets from x-ratelimit-* \
                   headers, else from the 429s",
        "min_samples": opts.min_samples,
        "node_types": Value::Object(node_report),
        "heavy_tail": heavy_report,
        "tiers": tier_list,
        "cells": cell_report,
        "not_calibrated": ["prices", "slots", "timeouts and retries (client settings)",
            "model latency scales", "tail multipliers", "the workload, arrivals and policy"],
    }));
    out.validate()
        .map_err(|e| Error::Execution(format!("the calibrated scenario does not validate: {e}")))?;
    Ok(out)
}

/// `g_nj = a_n + b_j` over cells by alternating weighted least squares on
/// mean log latencies; per provider the tier with the most samples is
/// held at its input scale, and so is a tier with fewer than `min`
/// samples. Returns per tier (ln scale, held, samples).
fn split_tier_scales(
    input: &Scenario,
    providers: &[&String],
    cells: &BTreeMap<(String, TierKey), Cell>,
    min: usize,
) -> BTreeMap<TierKey, (f64, bool, usize)> {
    let g: Vec<(&str, TierKey, f64, f64)> = cells
        .iter()
        .filter(|(_, c)| !c.values.is_empty())
        .map(|((n, k), c)| {
            let logs: Vec<f64> = c.values.iter().map(|v| v.ln()).collect();
            (
                n.as_str(),
                *k,
                crate::stats::mean(&logs),
                c.values.len() as f64,
            )
        })
        .collect();
    let mut samples: BTreeMap<TierKey, usize> = BTreeMap::new();
    for (_, k, _, w) in &g {
        *samples.entry(*k).or_default() += *w as usize;
    }
    let mut held: BTreeMap<usize, TierKey> = BTreeMap::new();
    for (&k, &n) in &samples {
        let e = held.entry(k.0).or_insert(k);
        if n > samples[e] {
            *e = k;
        }
    }
    let fixed = |k: TierKey| held[&k.0] == k || samples[&k] < min;
    let mut b: BTreeMap<TierKey, f64> = samples
        .keys()
        .map(|&(p, j)| {
            (
                (p, j),
                input.providers[providers[p]].tiers[j].latency_scale.ln(),
            )
        })
        .collect();
    for _ in 0..200 {
        let mut acc: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
        for (n, k, gv, w) in &g {
            let e = acc.entry(n).or_default();
            e.0 += w * (gv - b[k]);
            e.1 += w;
        }
        let a: BTreeMap<&str, f64> = acc.into_iter().map(|(n, (s, w))| (n, s / w)).collect();
        let mut acc: BTreeMap<TierKey, (f64, f64)> = BTreeMap::new();
        for (n, k, gv, w) in &g {
            let e = acc.entry(*k).or_default();
            e.0 += w * (gv - a[n]);
            e.1 += w;
        }
        for (k, (s, w)) in acc {
            if !fixed(k) {
                b.insert(k, s / w);
            }
        }
    }
    b.into_iter()
        .map(|(k, v)| (k, (v, fixed(k), samples[&k])))
        .collect()
}

fn dist_family(d: &Dist) -> &'static str {
    match d {
        Dist::Constant { .. } => "constant",
        Dist::Uniform { .. } => "uniform",
        Dist::Exponential { .. } => "exponential",
        Dist::Lognormal { .. } => "lognormal",
        Dist::Gamma { .. } => "gamma",
        Dist::Streaming { .. } => "streaming",
    }
}

fn fit_json(f: &MixtureFit) -> Value {
    json!({
        "family": f.body.family().name(),
        "params": f.body.params_json(),
        "ks": crate::output::json_f64(f.ks),
        "aic": crate::output::json_f64(f.aic),
        "log_likelihood": crate::output::json_f64(f.log_likelihood),
        "node_tail_prob": f.node_prob,
        "heavy_tail_prob": f.heavy_prob,
    })
}

/// Every family's fit; the kept one (and its latency model).
fn fit_node_type(
    input: &Dist,
    values: &[f64],
    censored: &[f64],
    streamed: &[Option<(f64, f64, u32, u32)>],
    tails: &Tails,
) -> (Option<MixtureFit>, Dist, Vec<Value>) {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(0.0, f64::max);
    if hi - lo <= 1e-9 * hi.max(1.0) {
        // Every sample the same: a constant (tails cannot be seen).
        let fit = fit_mixture(Family::Constant, values, &[], &Tails::default());
        return (fit, Dist::Constant { ms: hi }, vec![]);
    }
    let fits: Vec<MixtureFit> = Family::FITTED
        .iter()
        .filter_map(|f| fit_mixture(*f, values, censored, tails))
        .collect();
    let candidates = fits.iter().map(fit_json).collect();
    let by_aic = |f: &&MixtureFit| f.aic;
    let pick = match input {
        // Only the lognormal models a per-token shift of mu.
        Dist::Lognormal {
            mu_per_output_token,
            ..
        } if *mu_per_output_token != 0.0 => {
            fits.iter().find(|f| f.body.family() == Family::Lognormal)
        }
        _ => fits.iter().min_by(|a, b| by_aic(a).total_cmp(&by_aic(b))),
    };
    let Some(best) = pick.cloned() else {
        return (None, input.clone(), candidates);
    };
    let per_token = match input {
        Dist::Lognormal {
            mu_per_output_token,
            ..
        } => *mu_per_output_token,
        _ => 0.0,
    };
    if let Dist::Streaming {
        ttft_ms_per_input_token,
        ..
    } = *input
        && let Some(d) = fit_streaming(&best, streamed, ttft_ms_per_input_token)
    {
        return (Some(best), d, candidates);
    }
    let dist = best.body.to_dist(per_token);
    (Some(best), dist, candidates)
}

/// A streamed node type: time to first token (less the prefill) and time
/// per output token, lognormal, from the attempts the body explains.
fn fit_streaming(
    fit: &MixtureFit,
    streamed: &[Option<(f64, f64, u32, u32)>],
    per_input: f64,
) -> Option<Dist> {
    let body: Vec<(f64, f64, u32, u32)> = streamed
        .iter()
        .zip(&fit.body_responsibility)
        .filter(|(_, r)| **r >= 0.5)
        .filter_map(|(s, _)| *s)
        .filter(|s| s.3 >= 2)
        .collect();
    if body.len() < 2 {
        return None;
    }
    let ttft: Vec<f64> = body
        .iter()
        .map(|(t, _, i, _)| (t - per_input * *i as f64).max(1e-3))
        .collect();
    let tpot: Vec<f64> = body
        .iter()
        .map(|(t, tot, _, o)| ((tot - t) / (o - 1) as f64).max(1e-6))
        .collect();
    let (ttft_mu, ttft_sigma) = lognormal_mle(&ttft)?;
    let (tpot_mu, tpot_sigma) = lognormal_mle(&tpot)?;
    Some(Dist::Streaming {
        ttft_mu,
        ttft_sigma,
        ttft_ms_per_input_token: per_input,
        tpot_mu,
        tpot_sigma,
    })
}

/// One (node type, provider, tier) cell: samples, median and mean, each
/// family's fit, and the time to first token and per token where streamed.
fn cell_json(node_type: &str, provider: &str, tier: usize, c: &Cell, tails: &Tails) -> Value {
    let mut v = c.values.clone();
    let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
    let med = if v.is_empty() {
        f64::NAN
    } else {
        median(&mut v)
    };
    let fits: Vec<Value> = if c.values.len() >= 2 {
        Family::FITTED
            .iter()
            .filter_map(|f| fit_mixture(*f, &c.values, &c.censored, tails))
            .map(|f| fit_json(&f))
            .collect()
    } else {
        vec![]
    };
    let best = fits
        .iter()
        .min_by(|a, b| {
            let k = |x: &Value| x["aic"].as_f64().unwrap_or(f64::INFINITY);
            k(a).total_cmp(&k(b))
        })
        .map(|f| f["family"].clone())
        .unwrap_or(Value::Null);
    let streamed: Vec<(f64, f64, u32, u32)> = c.streamed.iter().filter_map(|s| *s).collect();
    let stream = if streamed.is_empty() {
        Value::Null
    } else {
        let ttft: Vec<f64> = streamed.iter().map(|s| s.0).collect();
        let tpot: Vec<f64> = streamed
            .iter()
            .filter(|s| s.3 >= 2)
            .map(|s| ((s.1 - s.0) / (s.3 - 1) as f64).max(1e-6))
            .collect();
        let ln = |x: &[f64]| {
            lognormal_mle(x).map_or(Value::Null, |(mu, sigma)| json!({"mu": mu, "sigma": sigma}))
        };
        json!({"samples": streamed.len(), "ttft_ms_median": median(&mut ttft.clone()),
            "ttft_lognormal": ln(&ttft), "tpot_lognormal": ln(&tpot)})
    };
    json!({
        "node_type": node_type, "provider": provider, "tier": tier,
        "samples": c.values.len(), "censored": c.censored.len(),
        "median_ms": crate::output::json_f64(med), "mean_ms": crate::output::json_f64(mean),
        "note": "ms divided by the model's latency scale (and a lognormal's per-token shift)",
        "best_family": best, "fits": fits, "streamed": stream,
    })
}

/// A bucket's (limit, remaining, reset ms) as one response reported them.
type BucketHeaders = (Option<u64>, Option<u64>, Option<f64>);

/// The tier's request and token buckets from the `x-ratelimit-*` headers
/// (or the 429s), and the time a 429 takes.
fn calibrate_bucket(
    t_in: &crate::scenario::Tier,
    t: &mut crate::scenario::Tier,
    obs: &TierObs,
    opts: &Options,
) -> Value {
    let mut rep = serde_json::Map::new();
    let reject = if obs.reject_ms.is_empty() {
        None
    } else {
        Some(median(&mut obs.reject_ms.clone()))
    };
    // Requests: capacity = the limit; refill from (limit - remaining) /
    // reset, or, on a 429 with its wait W (until one unit is back) and
    // reset R (until all are), (limit - 1) / (R - W), which needs no
    // knowledge of the fractional unit the server rounded away. Summed
    // over responses (a ratio of sums), so that the long resets, which
    // the servers' rounding to the millisecond hardly touches, count most.
    let estimate = |get: &dyn Fn(&RateRecord) -> BucketHeaders| {
        let (mut units, mut ms, mut n) = (0.0, 0.0, 0usize);
        let mut cap = 0u64;
        for (r, wait) in &obs.rate {
            let (Some(limit), remaining, Some(reset)) = get(r) else {
                continue;
            };
            cap = cap.max(limit);
            let remaining = remaining.unwrap_or(0);
            let (u, d) = match wait {
                Some(w) if remaining == 0 && limit >= 2 && reset > *w => {
                    ((limit - 1) as f64, reset - w)
                }
                // Servers floor the units available, so k = limit -
                // remaining overstates the deficit by a fraction of a
                // unit: none when k = 1 (the bucket was full: after one
                // request exactly one unit is missing), about half
                // otherwise.
                _ if limit > remaining && reset > 0.0 => {
                    let k = (limit - remaining) as f64;
                    (if k == 1.0 { 1.0 } else { k - 0.5 }, reset)
                }
                _ => continue,
            };
            units += u;
            ms += d;
            n += 1;
        }
        (n > 0 && ms > 0.0).then(|| (units / (ms / 1e3), cap, n))
    };
    let req = estimate(&|r| {
        (
            r.ratelimit_limit_requests,
            r.ratelimit_remaining_requests,
            r.ratelimit_reset_requests_ms,
        )
    });
    let tok = estimate(&|r| {
        (
            r.ratelimit_limit_tokens,
            r.ratelimit_remaining_tokens,
            r.ratelimit_reset_tokens_ms,
        )
    });
    let enforced = if obs.rate_limited > 0 {
        Enforcer::Provider
    } else {
        t_in.rate_limit
            .as_ref()
            .map_or(Enforcer::Provider, |r| r.enforced_by)
    };
    let reject_ms = reject.unwrap_or_else(|| {
        t_in.rate_limit
            .as_ref()
            .map_or(20.0, |r| r.reject_latency_ms)
    });
    let from_429s = || -> Option<(f64, u64, usize)> {
        // Without headers: during the span from the first 429 to the last,
        // the bucket was empty, so what it admitted is its refill; what it
        // admitted before the first 429 is about its capacity.
        let mut rates = Vec::new();
        let mut caps = Vec::new();
        for sends in &obs.sends {
            let mut s = sends.clone();
            s.sort_by(|a, b| a.0.total_cmp(&b.0));
            let first = s.iter().position(|x| x.1)?;
            let last = s.iter().rposition(|x| x.1)?;
            let span = s[last].0 - s[first].0;
            let admitted = s[first..=last].iter().filter(|x| !x.1).count();
            if span > 0.0 && s[first..=last].iter().filter(|x| x.1).count() >= 5 {
                rates.push(admitted as f64 / (span / 1e3));
                caps.push(first.max(1) as f64);
            }
        }
        (!rates.is_empty()).then(|| {
            let n = rates.len();
            (median(&mut rates), median(&mut caps).round() as u64, n)
        })
    };
    let mut source = "kept";
    let mut proposed = None;
    if let Some((rate, cap, n)) = req.filter(|r| r.2 >= 1) {
        source = "x-ratelimit-*-requests headers";
        proposed = Some((rate, cap, n));
    } else if obs.rate_limited as usize >= opts.min_samples.min(5)
        && let Some(x) = from_429s()
    {
        source = "observed 429s";
        proposed = Some(x);
    }
    rep.insert(
        "input".into(),
        serde_json::to_value(&t_in.rate_limit).expect("limit"),
    );
    if let Some((rate, cap, n)) = proposed {
        let client_binds = t_in
            .rate_limit
            .as_ref()
            .is_some_and(|r| r.enforced_by == Enforcer::Client && r.rate_per_s < rate);
        rep.insert(
            "estimate".into(),
            json!({"rate_per_s": rate, "burst": cap, "samples": n, "from": source}),
        );
        if client_binds {
            rep.insert(
                "kept".into(),
                json!("the input's client-side bucket is tighter: it binds, and is kept"),
            );
        } else if rate.is_finite() && rate > 0.0 && cap >= 1 {
            t.rate_limit = Some(RateLimit {
                rate_per_s: rate,
                burst: cap.min(u32::MAX as u64) as u32,
                enforced_by: enforced,
                reject_latency_ms: reject_ms,
            });
        }
    } else if let (Some(r), Some(ms)) = (t.rate_limit.as_mut(), reject) {
        r.reject_latency_ms = ms;
    }
    rep.insert(
        "calibrated".into(),
        serde_json::to_value(&t.rate_limit).expect("limit"),
    );
    if let Some((rate, cap, n)) = tok {
        rep.insert(
            "tokens_estimate".into(),
            json!({"tokens_per_min": rate * 60.0, "token_burst": cap, "samples": n}),
        );
        t.token_limit = Some(TokenLimit {
            tokens_per_min: rate * 60.0,
            token_burst: cap,
            enforced_by: Enforcer::Provider,
            reject_latency_ms: reject_ms,
        });
    }
    rep.insert(
        "reject_latency_ms".into(),
        reject.map_or(Value::Null, |v| json!(v)),
    );
    Value::Object(rep)
}

#[cfg(test)]
mod tests;
