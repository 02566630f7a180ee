//! `collect`: one row per run in `aggregate/runs.csv`, and the sweep's
//! statistics across seeds in `aggregate/sweep_aggregate.{json,csv}`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::metrics::SUMMARY_COLUMNS;
use crate::output::{Durability, StreamFile, atomic_write, json_f64};
use crate::stats::{Describe, describe, pareto_front};
use crate::sweep::failures::{self, Tally};
use crate::sweep::plan::SIM_FLAGS;

pub use crate::sweep::row::Row;

/// One record of a small CSV file (a run's summary or tiers), by column name.
pub type Record = BTreeMap<String, String>;

/// The seed runner's leading columns, in its order.
pub const CONFIG_COLUMNS: [&str; 19] = [
    "run_id",
    "policy",
    "workflows",
    "pdfs",
    "iters",
    "subqueries",
    "seed",
    "time_scale",
    "enable_model_routing",
    "heavy_tail_prob",
    "heavy_tail_mult",
    "ablation_name",
    "ablation_flags",
    "disable_hedging",
    "disable_escalation",
    "disable_dag_priority",
    "exit_code",
    "wall_time_s",
    "sim_binary_version",
];

/// Columns after the summary metrics.
pub const RUNTIME_COLUMNS: [&str; 3] = ["run_dir", "start_time_unix_s", "end_time_unix_s"];

/// Metrics aggregated across seeds.
pub const HEADLINE: [&str; 8] = [
    "makespan_mean_ms",
    "makespan_p50_ms",
    "makespan_p95_ms",
    "makespan_p99_ms",
    "cost_mean",
    "cost_total",
    "queue_wait_p95_ms",
    "throughput_wf_per_s",
];

/// What identifies a configuration: every simulator parameter but the
/// seed, plus the ablation's name (scenario-path parameters are added per
/// sweep).
fn config_keys() -> impl Iterator<Item = &'static str> {
    SIM_FLAGS
        .iter()
        .copied()
        .filter(|k| *k != "seed")
        .chain(["ablation_name"])
}

/// A cell as pandas writes it: booleans `True`/`False`, strings bare,
/// numbers as JSON writes them, null empty.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A CSV file as records of column -> value (text as written).
pub fn read_csv(path: &Path) -> Result<Vec<Record>> {
    // The files read here (a run's summary and tiers) are a few hundred
    // bytes: building the csv crate's reader (its parser tables) took a
    // sixth of `collect`'s time, so one parser per thread splits them. A
    // file it does not take is read by the csv crate, for its messages.
    if let Ok(bytes) = std::fs::read(path)
        && let Some(mut lines) = split_plain_csv(&bytes)
    {
        let head = if lines.is_empty() {
            Vec::new()
        } else {
            lines.remove(0)
        };
        return Ok(lines
            .into_iter()
            .map(|rec| head.iter().cloned().zip(rec).collect())
            .collect());
    }
    read_csv_as(path, |head, rec| {
        head.iter()
            .cloned()
            .zip(rec.iter().map(String::from))
            .collect()
    })
}

/// The records of CSV text, split as the csv crate splits them (it uses
/// the same parser, `csv_core`, with the same defaults), when the text is
/// UTF-8 without a byte-order mark and every record has as many fields as
/// the first; None otherwise.
fn split_plain_csv(text: &[u8]) -> Option<Vec<Vec<String>>> {
    // Built by `new` and reset between files: csv_core's `Default` and
    // `Clone` leave out the parser tables (and it then never ends).
    thread_local!(static PARSER: std::cell::RefCell<csv_core::Reader> =
        std::cell::RefCell::new(csv_core::Reader::new()));
    if text.starts_with(b"\xEF\xBB\xBF") {
        return None;
    }
    PARSER.with_borrow_mut(|parser| {
        parser.reset();
        split_records(parser, text)
    })
}

fn split_records(parser: &mut csv_core::Reader, text: &[u8]) -> Option<Vec<Vec<String>>> {
    // A record's fields are never longer than its text.
    let mut fields = vec![0u8; text.len() + 1];
    let mut ends = vec![0usize; 16];
    let (mut input, mut records) = (text, Vec::<Vec<String>>::new());
    let (mut used, mut nends) = (0, 0);
    loop {
        let (result, nin, nout, nend) =
            parser.read_record(input, &mut fields[used..], &mut ends[nends..]);
        input = &input[nin..];
        used += nout;
        nends += nend;
        match result {
            csv_core::ReadRecordResult::InputEmpty => {}
            csv_core::ReadRecordResult::OutputFull => return None,
            csv_core::ReadRecordResult::OutputEndsFull => ends.resize(ends.len() * 2, 0),
            csv_core::ReadRecordResult::Record => {
                let mut record = Vec::with_capacity(nends);
                let mut start = 0;
                for &end in &ends[..nends] {
                    record.push(std::str::from_utf8(&fields[start..end]).ok()?.to_string());
                    start = end;
                }
                if records
                    .first()
                    .is_some_and(|first| first.len() != record.len())
                {
                    return None;
                }
                records.push(record);
                (used, nends) = (0, 0);
            }
            csv_core::ReadRecordResult::End => return Some(records),
        }
    }
}

/// A CSV file's records, each built by `record` from the header and its
/// fields.
fn read_csv_as<R>(
    path: &Path,
    mut record: impl FnMut(&[String], &csv::StringRecord) -> R,
) -> Result<Vec<R>> {
    let fail = |e: csv::Error| Error::Input(format!("{}: {e}", path.display()));
    let mut r = csv::Reader::from_path(path).map_err(fail)?;
    let head: Vec<String> = r
        .headers()
        .map_err(fail)?
        .iter()
        .map(String::from)
        .collect();
    let mut out = Vec::new();
    for rec in r.records() {
        out.push(record(&head, &rec.map_err(fail)?));
    }
    Ok(out)
}

/// Whether a row is a successful run whose outputs were read: exit code 0
/// and no `collect_error`.
pub fn succeeded(r: &Row) -> bool {
    r.get("exit_code").is_some_and(|c| c == "0") && r.get("collect_error").is_none_or(str::is_empty)
}

/// Adds a run's summary and tier metrics to its row. Files this tool did
/// not write (no data row, a missing column, broken CSV) are reported, not
/// guessed at.
fn read_outputs(d: &Path, row: &mut Row) -> std::result::Result<(), String> {
    let summary = d.join("out/summary.csv");
    let rows = read_csv(&summary).map_err(|e| e.to_string())?;
    let Some(s) = rows.into_iter().next() else {
        return Err("out/summary.csv has no data row".into());
    };
    if let Some(missing) = SUMMARY_COLUMNS.iter().find(|c| !s.contains_key(**c)) {
        return Err(format!(
            "out/summary.csv is not this tool's summary (no `{missing}` column)"
        ));
    }
    for (k, v) in s {
        match k.as_str() {
            "policy" => {}
            // The run's wall time is meta's; the simulator's own is kept apart.
            "wall_time_s" => {
                row.insert("sim_wall_time_s", &v);
            }
            _ => row.insert(&k, &v),
        }
    }
    let tiers = d.join("out/tiers.csv");
    if tiers.is_file() {
        for (i, t) in read_csv(&tiers)
            .map_err(|e| e.to_string())?
            .into_iter()
            .enumerate()
        {
            let (Some(provider), Some(tier)) = (t.get("provider"), t.get("tier_id")) else {
                return Err(format!(
                    "out/tiers.csv row {} has no `provider` and `tier_id` columns",
                    i + 1
                ));
            };
            let prefix = format!("{provider}_tier{tier}");
            for (k, v) in &t {
                if !matches!(k.as_str(), "provider" | "tier_id" | "kind") {
                    row.insert(&format!("{prefix}_{k}"), v);
                }
            }
        }
    }
    Ok(())
}

/// An experiment's run directories, sorted by name (run id); hidden ones
/// (a sweep's half-written runs) are skipped.
fn run_dirs(exp_dir: &Path) -> Result<Vec<PathBuf>> {
    let runs = exp_dir.join("runs");
    if exp_dir.is_dir() && !runs.exists() {
        return Err(Error::Input(not_an_experiment(exp_dir)));
    }
    let entries = std::fs::read_dir(&runs).map_err(|source| Error::Read {
        path: runs.clone(),
        source,
    })?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir()
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// Why `dir` is no experiment, naming the experiments inside it when it is
/// an output root (`bench_runs` for `bench_runs/default`, the usual slip).
fn not_an_experiment(dir: &Path) -> String {
    let mut inside: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.join("runs").is_dir())
                .map(|p| p.display().to_string())
                .collect()
        })
        .unwrap_or_default();
    inside.sort();
    let hint = match inside.len() {
        0 => "give the directory a sweep wrote: <out-root>/<experiment name>, e.g. bench_runs/default"
            .to_string(),
        1..=5 => format!("it holds the experiments {}", inside.join(", ")),
        n => format!(
            "it holds {n} experiments, e.g. {}",
            inside[..3].join(", ")
        ),
    };
    format!(
        "{}: not an experiment directory (it has no runs/); {hint}",
        dir.display()
    )
}

/// Reads run directories in parallel (each is independent), in order.
fn read_runs(dirs: &[PathBuf]) -> Vec<(Option<Row>, Vec<String>)> {
    use rayon::prelude::*;
    dirs.par_iter().map(|d| gather_run(d)).collect()
}

/// Reads every run directory of an experiment into rows (sorted by run id).
pub fn gather(exp_dir: &Path) -> Result<(Vec<Row>, Vec<String>)> {
    let dirs = run_dirs(exp_dir)?;
    let mut rows = Vec::with_capacity(dirs.len());
    let mut warnings = Vec::new();
    for (row, w) in read_runs(&dirs) {
        rows.extend(row);
        warnings.extend(w);
    }
    Ok((rows, warnings))
}

/// One run directory's row (None when its meta.json is unreadable) and the
/// warnings it gave.
fn gather_run(d: &Path) -> (Option<Row>, Vec<String>) {
    let mut warnings = Vec::new();
    let meta_path = d.join("meta.json");
    let meta: Value = match std::fs::read_to_string(&meta_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
    {
        Some(m) => m,
        None => {
            warnings.push(format!("{}: no readable meta.json; skipped", d.display()));
            return (None, warnings);
        }
    };
    let mut row = Row::new();
    let resolved = meta.get("resolved").cloned().unwrap_or(Value::Null);
    for k in CONFIG_COLUMNS {
        let v = match k {
            "ablation_flags" => Value::String(meta["ablation_flags"].to_string()),
            "run_id" | "ablation_name" | "exit_code" | "wall_time_s" | "sim_binary_version" => {
                meta[k].clone()
            }
            _ => resolved
                .get(k)
                .cloned()
                .or_else(|| meta["params"].get(k).cloned())
                .unwrap_or(Value::Null),
        };
        row.insert(k, &cell(&v));
    }
    // Matrix keys that are scenario paths get a column of their own.
    if let Some(params) = meta["params"].as_object() {
        for (k, v) in params {
            if !row.contains_key(k) {
                row.insert(k, &cell(v));
            }
        }
    }
    row.insert("run_dir", &d.display().to_string());
    row.insert("start_time_unix_s", &cell(&meta["start_time_unix_s"]));
    row.insert("end_time_unix_s", &cell(&meta["end_time_unix_s"]));
    row.insert("output_digest", &cell(&meta["output_digest"]));
    // A failed run says why in its stderr.txt; runs.csv repeats the reason.
    if meta["exit_code"] != 0 {
        let stderr = std::fs::read_to_string(d.join("stderr.txt")).unwrap_or_default();
        if let Some(reason) = failures::reason_in_stderr(&stderr) {
            row.insert("error", &reason);
        }
    }
    let summary = d.join("out/summary.csv");
    if summary.is_file() {
        if let Err(problem) = read_outputs(d, &mut row) {
            warnings.push(format!(
                "{}: {problem}; the run is counted as failed",
                d.display()
            ));
            row.insert("collect_error", &problem);
        }
    } else if meta["exit_code"] == 0 {
        warnings.push(format!(
            "{}: exit code 0 but no out/summary.csv",
            d.display()
        ));
    }
    (Some(row), warnings)
}

/// runs.csv column order of rows with these column names (repeats
/// allowed): the seed's config columns, the summary metrics, run_dir and
/// times, then every other column sorted.
fn columns_of<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut cols: Vec<String> = CONFIG_COLUMNS.iter().map(|s| s.to_string()).collect();
    // `workflows` is both a config column and a summary metric (same value).
    cols.extend(
        SUMMARY_COLUMNS
            .iter()
            .filter(|c| **c != "wall_time_s" && !CONFIG_COLUMNS.contains(c))
            .map(|s| s.to_string()),
    );
    cols.extend(RUNTIME_COLUMNS.iter().map(|s| s.to_string()));
    let fixed: BTreeSet<&str> = cols.iter().map(String::as_str).collect();
    // Inserted one by one: collecting would sort every row's keys at once.
    let mut rest: BTreeSet<&str> = BTreeSet::new();
    for k in names {
        if !fixed.contains(k) {
            rest.insert(k);
        }
    }
    let rest: Vec<String> = rest.into_iter().map(String::from).collect();
    cols.extend(rest);
    cols
}

/// CSV bytes of rows under `cols` (missing cells empty).
pub fn to_csv(rows: &[Row], cols: &[String]) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(cols).expect("in-memory csv");
    for r in rows {
        w.write_record(cols.iter().map(|c| r.get(c).unwrap_or("")))
            .expect("in-memory csv");
    }
    w.into_inner().expect("in-memory csv")
}

/// A row's value as a number (NaN when missing or not a number).
pub fn num(r: &Row, k: &str) -> f64 {
    parse_num(r.get(k))
}

/// A record's value as a number (NaN when missing or not a number).
pub fn record_num(r: &Record, k: &str) -> f64 {
    parse_num(r.get(k).map(String::as_str))
}

fn parse_num(cell: Option<&str>) -> f64 {
    cell.and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
}

/// A configuration: everything but the seed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConfigKey(pub Vec<(String, String)>);

impl ConfigKey {
    fn of(r: &Row, extra: &[String]) -> ConfigKey {
        let mut v: Vec<(String, String)> = config_keys()
            .map(|k| (k.to_string(), r.get(k).unwrap_or_default().to_string()))
            .collect();
        v.extend(
            extra
                .iter()
                .map(|k| (k.clone(), r.get(k).unwrap_or_default().to_string())),
        );
        ConfigKey(v)
    }

    /// This configuration with its ablation undone: name `baseline`, the
    /// ablation switches (what an ablation changes) blanked.
    fn as_baseline(&self) -> ConfigKey {
        let mut k = self.clone();
        for (name, v) in k.0.iter_mut() {
            if name == "ablation_name" {
                *v = "baseline".into();
            } else if name.starts_with("disable_") || name == "enable_model_routing" {
                v.clear();
            }
        }
        k
    }

    fn get(&self, k: &str) -> &str {
        self.0
            .iter()
            .find(|(a, _)| a == k)
            .map_or("", |(_, v)| v.as_str())
    }

    /// `k=v` for the keys that vary across the sweep.
    pub fn label(&self, varying: &BTreeSet<String>) -> String {
        let parts: Vec<String> = self
            .0
            .iter()
            .filter(|(k, _)| varying.contains(k))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if parts.is_empty() {
            "all".into()
        } else {
            parts.join(" ")
        }
    }
}

/// Aggregates of one configuration.
#[derive(Clone, Debug)]
pub struct ConfigStats {
    /// The configuration.
    pub key: ConfigKey,
    /// Its label.
    pub label: String,
    /// Per headline metric.
    pub metrics: BTreeMap<&'static str, Describe>,
    /// Seed -> row index, for pairing.
    pub seeds: BTreeMap<String, usize>,
    /// On the (makespan p95, cost mean) Pareto frontier.
    pub pareto: bool,
}

/// Statistics of a whole sweep.
#[derive(Clone, Debug)]
pub struct Aggregate {
    /// Per configuration, sorted by key.
    pub configs: Vec<ConfigStats>,
    /// Paired differences against the baseline ablation.
    pub paired: Vec<Value>,
    /// Best configuration label per objective.
    pub best: Map<String, Value>,
    /// Keys that vary across the sweep.
    pub varying: BTreeSet<String>,
    /// How each headline metric moves along each numeric swept parameter.
    pub trends: Vec<Trend>,
}

/// How one headline metric moves along one numeric swept parameter.
#[derive(Clone, Debug, PartialEq)]
pub struct Trend {
    /// The parameter.
    pub parameter: String,
    /// The metric.
    pub metric: &'static str,
    /// The parameter's values, ascending.
    pub values: Vec<f64>,
    /// Per value, the mean over the configurations with it of their mean
    /// over seeds.
    pub means: Vec<f64>,
    /// `rises`, `falls`, `flat` or `non_monotonic`, read off `means`.
    pub direction: &'static str,
    /// Spearman's rho between the parameter and the metric over all
    /// successful runs.
    pub spearman_rho: f64,
    /// Runs behind rho.
    pub n_runs: usize,
    /// Slices (configurations equal but for this parameter) by direction:
    /// rises, falls, flat, non-monotonic. Tells a consistent trend from one
    /// that holds for some policies only.
    pub slices: [usize; 4],
}

/// The direction of a sequence: strictly up, strictly down, all equal, or
/// anything else.
fn direction(seq: &[f64]) -> &'static str {
    let pairs = || seq.windows(2);
    if seq.len() < 2 || seq.iter().any(|x| x.is_nan()) {
        "non_monotonic"
    } else if pairs().all(|w| w[1] > w[0]) {
        "rises"
    } else if pairs().all(|w| w[1] < w[0]) {
        "falls"
    } else if pairs().all(|w| w[1] == w[0]) {
        "flat"
    } else {
        "non_monotonic"
    }
}

/// Trends of every headline metric along every varying parameter whose
/// values are all numbers (at least two of them).
fn trends(configs: &[ConfigStats], ok: &[&Row], varying: &BTreeSet<String>) -> Vec<Trend> {
    let mut out = Vec::new();
    for p in varying {
        let value = |c: &ConfigStats| c.key.get(p).parse::<f64>().ok().filter(|v| v.is_finite());
        if configs.iter().any(|c| value(c).is_none()) {
            continue;
        }
        let mut values: Vec<f64> = configs.iter().filter_map(value).collect();
        values.sort_by(f64::total_cmp);
        values.dedup();
        if values.len() < 2 {
            continue;
        }
        // Slices: configurations equal in every key but `p`.
        let mut slices: BTreeMap<ConfigKey, Vec<(f64, &ConfigStats)>> = BTreeMap::new();
        for c in configs {
            let rest = ConfigKey(c.key.0.iter().filter(|(k, _)| k != p).cloned().collect());
            slices
                .entry(rest)
                .or_default()
                .push((value(c).expect("checked"), c));
        }
        for m in HEADLINE {
            let means: Vec<f64> = values
                .iter()
                .map(|v| {
                    let at: Vec<f64> = configs
                        .iter()
                        .filter(|c| value(c) == Some(*v))
                        .map(|c| c.metrics[m].mean)
                        .collect();
                    crate::stats::mean(&at)
                })
                .collect();
            let mut by_slice = [0usize; 4];
            for members in slices.values_mut() {
                members.sort_by(|a, b| a.0.total_cmp(&b.0));
                let seq: Vec<f64> = members.iter().map(|(_, c)| c.metrics[m].mean).collect();
                if seq.len() < 2 {
                    continue;
                }
                let i = match direction(&seq) {
                    "rises" => 0,
                    "falls" => 1,
                    "flat" => 2,
                    _ => 3,
                };
                by_slice[i] += 1;
            }
            let (mut xs, mut ys) = (Vec::new(), Vec::new());
            for c in configs {
                for &i in c.seeds.values() {
                    let y = num(ok[i], m);
                    if !y.is_nan() {
                        xs.push(value(c).expect("checked"));
                        ys.push(y);
                    }
                }
            }
            out.push(Trend {
                parameter: p.clone(),
                metric: m,
                direction: direction(&means),
                values: values.clone(),
                means,
                spearman_rho: crate::stats::spearman(&xs, &ys),
                n_runs: xs.len(),
                slices: by_slice,
            });
        }
    }
    out
}

/// Computes the sweep statistics from successful rows.
pub fn aggregate(rows: &[Row]) -> Aggregate {
    let ok: Vec<&Row> = rows.iter().filter(|r| succeeded(r)).collect();
    // Scenario-path parameters (columns with a dot) identify configurations too.
    let extra: Vec<String> = ok
        .iter()
        .flat_map(|r| r.keys())
        .filter(|k| k.contains('.') && !k.contains("_tier"))
        .map(String::from)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut groups: BTreeMap<ConfigKey, Vec<usize>> = BTreeMap::new();
    for (i, r) in ok.iter().enumerate() {
        groups.entry(ConfigKey::of(r, &extra)).or_default().push(i);
    }
    let mut varying = BTreeSet::new();
    if let Some(first) = groups.keys().next() {
        for k in groups.keys() {
            for ((name, v), (_, v0)) in k.0.iter().zip(&first.0) {
                if v != v0 {
                    varying.insert(name.clone());
                }
            }
        }
    }
    // Keys fully determined by the ablation name (its own switches) add
    // nothing to a label.
    let redundant: Vec<String> = varying
        .iter()
        .filter(|k| k.as_str() != "ablation_name")
        .filter(|k| {
            let mut by_ablation: BTreeMap<&str, &str> = BTreeMap::new();
            groups.keys().all(|g| {
                *by_ablation
                    .entry(g.get("ablation_name"))
                    .or_insert(g.get(k))
                    == g.get(k)
            })
        })
        .cloned()
        .collect();
    for k in &redundant {
        varying.remove(k);
    }
    let mut configs: Vec<ConfigStats> = groups
        .iter()
        .map(|(key, idx)| ConfigStats {
            key: key.clone(),
            label: key.label(&varying),
            metrics: HEADLINE
                .iter()
                .map(|&m| {
                    (
                        m,
                        describe(&idx.iter().map(|&i| num(ok[i], m)).collect::<Vec<_>>()),
                    )
                })
                .collect(),
            seeds: idx
                .iter()
                .map(|&i| (ok[i].get("seed").unwrap_or_default().to_string(), i))
                .collect(),
            pareto: false,
        })
        .collect();
    let pts: Vec<(f64, f64)> = configs
        .iter()
        .map(|c| {
            (
                c.metrics["makespan_p95_ms"].mean,
                c.metrics["cost_mean"].mean,
            )
        })
        .collect();
    for i in pareto_front(&pts) {
        configs[i].pareto = true;
    }
    let mut best = Map::new();
    for (objective, metric, maximise) in [
        ("makespan_p95_ms", "makespan_p95_ms", false),
        ("makespan_p50_ms", "makespan_p50_ms", false),
        ("cost_mean", "cost_mean", false),
        ("throughput_wf_per_s", "throughput_wf_per_s", true),
    ] {
        let pick = configs
            .iter()
            .filter(|c| !c.metrics[metric].mean.is_nan())
            .min_by(|a, b| {
                let (x, y) = (a.metrics[metric].mean, b.metrics[metric].mean);
                let o = if maximise {
                    y.total_cmp(&x)
                } else {
                    x.total_cmp(&y)
                };
                o.then_with(|| a.key.cmp(&b.key))
            });
        if let Some(c) = pick {
            best.insert(
                objective.into(),
                json!({"label": c.label, "mean": json_f64(c.metrics[metric].mean)}),
            );
        }
    }
    // Paired differences: same configuration, same seed, ablation vs baseline.
    let mut paired = Vec::new();
    for c in &configs {
        if c.key.get("ablation_name") == "baseline" {
            continue;
        }
        let base_key = c.key.as_baseline();
        let Some(base) = configs
            .iter()
            .find(|b| b.key.get("ablation_name") == "baseline" && b.key.as_baseline() == base_key)
        else {
            continue;
        };
        for m in ["makespan_p95_ms", "makespan_p50_ms", "cost_mean"] {
            let diffs: Vec<f64> = c
                .seeds
                .iter()
                .filter_map(|(seed, &i)| {
                    base.seeds.get(seed).map(|&j| num(ok[i], m) - num(ok[j], m))
                })
                .collect();
            let d = describe(&diffs);
            let ratio = c.metrics[m].mean / base.metrics[m].mean;
            paired.push(json!({
                "config": c.label,
                "baseline": base.label,
                "policy": c.key.get("policy"),
                "workflows": c.key.get("workflows"),
                "ablation": c.key.get("ablation_name"),
                "metric": m,
                "n_pairs": d.n,
                "mean_diff": json_f64(d.mean),
                "ci95_low": json_f64(d.ci95_low),
                "ci95_high": json_f64(d.ci95_high),
                "ratio": json_f64(ratio),
            }));
        }
    }
    let trends = trends(&configs, &ok, &varying);
    Aggregate {
        configs,
        paired,
        best,
        varying,
        trends,
    }
}

fn trend_json(t: &Trend) -> Value {
    json!({
        "parameter": t.parameter,
        "metric": t.metric,
        "direction": t.direction,
        "spearman_rho": json_f64(t.spearman_rho),
        "n_runs": t.n_runs,
        "values": t.values.iter().map(|v| json_f64(*v)).collect::<Vec<_>>(),
        "means": t.means.iter().map(|v| json_f64(*v)).collect::<Vec<_>>(),
        "slices": {
            "rises": t.slices[0], "falls": t.slices[1], "flat": t.slices[2], "non_monotonic": t.slices[3],
        },
    })
}

/// `sweep_trends.csv`: one row per (parameter, metric).
pub fn trends_csv(a: &Aggregate) -> Vec<u8> {
    let f = crate::output::fmt_f64;
    let cols: Vec<String> = [
        "parameter",
        "metric",
        "direction",
        "spearman_rho",
        "n_runs",
        "values",
        "means",
        "slices_rises",
        "slices_falls",
        "slices_flat",
        "slices_non_monotonic",
    ]
    .iter()
    .map(|c| c.to_string())
    .collect();
    let join = |xs: &[f64]| xs.iter().map(|x| f(*x)).collect::<Vec<_>>().join(";");
    let rows: Vec<Row> = a
        .trends
        .iter()
        .map(|t| {
            let cells = [
                t.parameter.clone(),
                t.metric.to_string(),
                t.direction.to_string(),
                f(t.spearman_rho),
                t.n_runs.to_string(),
                join(&t.values),
                join(&t.means),
                t.slices[0].to_string(),
                t.slices[1].to_string(),
                t.slices[2].to_string(),
                t.slices[3].to_string(),
            ];
            cols.iter().zip(cells).collect()
        })
        .collect();
    to_csv(&rows, &cols)
}

fn describe_json(d: &Describe) -> Value {
    json!({
        "n": d.n, "mean": json_f64(d.mean), "std": json_f64(d.std), "min": json_f64(d.min),
        "max": json_f64(d.max), "cv": json_f64(d.cv), "ci95_low": json_f64(d.ci95_low), "ci95_high": json_f64(d.ci95_high),
    })
}

/// `sweep_aggregate.json`.
pub fn aggregate_json(a: &Aggregate) -> Value {
    json!({
        "configurations": a.configs.iter().map(|c| json!({
            "label": c.label,
            "config": c.key.0.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect::<Map<_, _>>(),
            "seeds": c.seeds.keys().collect::<Vec<_>>(),
            "metrics": c.metrics.iter().map(|(k, d)| (k.to_string(), describe_json(d))).collect::<Map<_, _>>(),
            "on_pareto_front": c.pareto,
        })).collect::<Vec<_>>(),
        "pareto_frontier": a.configs.iter().filter(|c| c.pareto).map(|c| c.label.clone()).collect::<Vec<_>>(),
        "pareto_objectives": ["makespan_p95_ms (mean over seeds)", "cost_mean (mean over seeds)"],
        "best": a.best,
        "paired_vs_baseline": a.paired,
        "trends": a.trends.iter().map(trend_json).collect::<Vec<_>>(),
    })
}

/// `sweep_aggregate.csv`: one row per configuration.
pub fn aggregate_csv(a: &Aggregate) -> Vec<u8> {
    let mut cols: Vec<String> = vec!["label".into()];
    if let Some(c) = a.configs.first() {
        cols.extend(c.key.0.iter().map(|(k, _)| k.clone()));
    }
    cols.push("n".into());
    for m in HEADLINE {
        for s in ["mean", "std", "min", "max", "cv", "ci95_low", "ci95_high"] {
            cols.push(format!("{m}_{s}"));
        }
    }
    cols.push("on_pareto_front".into());
    let f = crate::output::fmt_f64;
    let rows: Vec<Row> = a
        .configs
        .iter()
        .map(|c| {
            let mut r = Row::new();
            r.insert("label", &c.label);
            for (k, v) in &c.key.0 {
                r.insert(k, v);
            }
            r.insert("n", &c.metrics["makespan_p95_ms"].n.to_string());
            for (m, d) in &c.metrics {
                for (s, v) in [
                    ("mean", d.mean),
                    ("std", d.std),
                    ("min", d.min),
                    ("max", d.max),
                    ("cv", d.cv),
                    ("ci95_low", d.ci95_low),
                    ("ci95_high", d.ci95_high),
                ] {
                    r.insert(&format!("{m}_{s}"), &f(v));
                }
            }
            r.insert("on_pareto_front", if c.pareto { "True" } else { "False" });
            r
        })
        .collect();
    to_csv(&rows, &cols)
}

/// What `collect` wrote.
#[derive(Debug)]
pub struct Collected {
    /// Rows (runs).
    pub runs: usize,
    /// Runs with a non-zero exit code.
    pub failed: usize,
    /// Why they failed.
    pub failures: Tally,
    /// Problems found (skipped directories).
    pub warnings: Vec<String>,
    /// runs.csv path.
    pub runs_csv: PathBuf,
}

/// Runs `collect` reads at once: their full rows are held only until they
/// are spilled, so memory grows with the rows [`aggregate`] reads.
const READ_BATCH: usize = 512;

/// Whether [`aggregate`] reads column `k`: the exit status, the seed, the
/// configuration keys and the headline metrics. Every column with a dot
/// is kept: scenario-path parameters are configuration keys too.
pub fn aggregate_reads(k: &str) -> bool {
    matches!(k, "exit_code" | "collect_error" | "seed" | "ablation_name")
        || SIM_FLAGS.contains(&k)
        || HEADLINE.contains(&k)
        || k.contains('.')
}

/// Full rows set aside until every column name is known: an anonymous
/// temporary file beside the runs, one CSV record per row of (column
/// number, value) pairs, in the order the rows came.
struct Spill {
    out: csv::Writer<std::io::BufWriter<std::fs::File>>,
    /// Column names by number.
    names: Vec<&'static str>,
    ids: std::collections::HashMap<&'static str, usize>,
    /// Where it lives (for messages).
    dir: PathBuf,
}

impl Spill {
    fn new(dir: &Path) -> Result<Spill> {
        let file = tempfile::tempfile_in(dir).map_err(|source| Error::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(Spill {
            out: csv::WriterBuilder::new()
                .flexible(true)
                .from_writer(std::io::BufWriter::with_capacity(1 << 16, file)),
            names: Vec::new(),
            ids: Default::default(),
            dir: dir.to_path_buf(),
        })
    }

    fn push(&mut self, row: &Row) -> Result<()> {
        let mut rec = csv::StringRecord::new();
        let mut id = itoa::Buffer::new();
        for (k, v) in row.iter() {
            let next = self.names.len();
            let n = *self.ids.entry(k).or_insert(next);
            if n == next {
                self.names.push(k);
            }
            rec.push_field(id.format(n));
            rec.push_field(v);
        }
        self.out
            .write_record(&rec)
            .map_err(|e| spill_error(&self.dir, e))
    }

    /// Writes every row set aside, in order, as CSV under `cols` (cells
    /// of columns a row lacks are empty).
    fn write_csv(self, cols: &[String], to: impl std::io::Write) -> Result<()> {
        let col_of: std::collections::HashMap<&str, usize> = cols
            .iter()
            .enumerate()
            .map(|(i, c)| (c.as_str(), i))
            .collect();
        let at: Vec<usize> = self.names.iter().map(|n| col_of[n]).collect();
        let fail = |e: &dyn std::fmt::Display| spill_error(&self.dir, e);
        let mut file = self
            .out
            .into_inner()
            .map_err(|e| fail(e.error()))?
            .into_inner()
            .map_err(|e| fail(e.error()))?;
        std::io::Seek::rewind(&mut file).map_err(|e| fail(&e))?;
        let mut rows = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(std::io::BufReader::with_capacity(1 << 16, file));
        let mut w = csv::Writer::from_writer(to);
        w.write_record(cols).map_err(|e| fail(&e))?;
        let mut rec = csv::StringRecord::new();
        while rows.read_record(&mut rec).map_err(|e| fail(&e))? {
            let mut line = vec![""; cols.len()];
            let mut cells = rec.iter();
            while let (Some(n), Some(v)) = (cells.next(), cells.next()) {
                let n: usize = n.parse().map_err(|e| fail(&e))?;
                line[at[n]] = v;
            }
            w.write_record(&line).map_err(|e| fail(&e))?;
        }
        w.flush().map_err(|e| fail(&e))
    }
}

/// An I/O problem with `collect`'s temporary file in `dir`.
fn spill_error(dir: &Path, e: impl std::fmt::Display) -> Error {
    Error::Write {
        path: dir.to_path_buf(),
        source: std::io::Error::other(format!("collect's temporary file: {e}")),
    }
}

/// `collect --exp-dir DIR [--out-csv]`.
///
/// Memory grows with the columns the statistics read, not with every
/// column: runs are read a batch at a time, their full rows go to a
/// temporary file, and `runs.csv` is written from it once every column is
/// known.
pub fn collect(exp_dir: &Path, out_csv: Option<&Path>) -> Result<Collected> {
    collect_in_batches(exp_dir, out_csv, READ_BATCH)
}

/// [`collect`], reading `batch` runs at a time.
fn collect_in_batches(exp_dir: &Path, out_csv: Option<&Path>, batch: usize) -> Result<Collected> {
    let dirs = run_dirs(exp_dir)?;
    let mut spill = Spill::new(exp_dir)?;
    let mut rows = Vec::with_capacity(dirs.len());
    let mut warnings = Vec::new();
    let mut failures = Tally::new();
    for batch in dirs.chunks(batch) {
        for (row, w) in read_runs(batch) {
            warnings.extend(w);
            if let Some(row) = row {
                spill.push(&row)?;
                failures.add_row(&row);
                rows.push(
                    row.iter()
                        .filter(|(k, _)| aggregate_reads(k))
                        .collect::<Row>(),
                );
            }
        }
    }
    if rows.is_empty() {
        return Err(Error::Input(format!(
            "{}: no runs found under runs/",
            exp_dir.display()
        )));
    }
    let agg_dir = exp_dir.join("aggregate");
    std::fs::create_dir_all(&agg_dir).map_err(|source| Error::Write {
        path: agg_dir.clone(),
        source,
    })?;
    let runs_csv = out_csv.map_or_else(|| agg_dir.join("runs.csv"), Path::to_path_buf);
    let cols = columns_of(spill.names.iter().copied());
    let mut file = StreamFile::create(&runs_csv, Durability::Atomic)?;
    spill.write_csv(&cols, &mut file)?;
    file.commit()?;
    let a = aggregate(&rows);
    atomic_write(
        &agg_dir.join("sweep_aggregate.json"),
        format!("{:#}\n", aggregate_json(&a)).as_bytes(),
    )?;
    atomic_write(&agg_dir.join("sweep_aggregate.csv"), &aggregate_csv(&a))?;
    atomic_write(&agg_dir.join("sweep_trends.csv"), &trends_csv(&a))?;
    crate::output::sync_dir(&agg_dir);
    if let Some(parent) = runs_csv.parent() {
        crate::output::sync_dir(parent);
    }
    let failed = rows.iter().filter(|r| !succeeded(r)).count();
    Ok(Collected {
        runs: rows.len(),
        failed,
        failures,
        warnings,
        runs_csv,
    })
}

/// Reads a runs.csv back (the report's input), keeping the columns `keep`
/// accepts.
pub fn read_runs_csv(path: &Path, keep: impl Fn(&str) -> bool) -> Result<Vec<Row>> {
    read_csv_as(path, |head, rec| {
        head.iter()
            .zip(rec.iter())
            .filter(|(k, _)| keep(k))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_without_runs_is_refused_naming_the_experiments_inside() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let refusal = |dir: &Path| match gather(dir) {
            Err(e @ Error::Input(_)) => e.to_string(),
            other => panic!("{}: {:?}", dir.display(), other.map(|r| r.0.len())),
        };
        let empty = refusal(root);
        assert!(
            empty.ends_with("not an experiment directory (it has no runs/); give the directory a sweep wrote: <out-root>/<experiment name>, e.g. bench_runs/default"),
            "{empty}"
        );
        for name in ["smoke", "default"] {
            std::fs::create_dir_all(root.join(name).join("runs")).unwrap();
        }
        std::fs::create_dir(root.join("notes")).unwrap();
        let msg = refusal(root);
        assert!(
            msg.ends_with(&format!(
                "it holds the experiments {}, {}",
                root.join("default").display(),
                root.join("smoke").display()
            )),
            "{msg}"
        );
        // An experiment with no runs yet is an experiment: nothing to collect.
        assert!(gather(&root.join("smoke")).unwrap().0.is_empty());
        // A missing directory stays a read error naming it.
        assert!(matches!(
            gather(&root.join("gone")),
            Err(Error::Read { .. })
        ));
    }

    /// A successful run of `policy` with `slots` (a numeric swept key) and
    /// seed, whose p95 is `p95` and cost `cost`.
    fn row(policy: &str, slots: &str, seed: &str, p95: f64, cost: f64) -> Row {
        let mut r = Row::new();
        for (k, v) in [
            ("exit_code", "0"),
            ("policy", policy),
            ("workflows", "10"),
            ("ablation_name", "baseline"),
            ("tiers.0.slots", slots),
            ("seed", seed),
        ] {
            r.insert(k, v);
        }
        for m in HEADLINE {
            r.insert(m, "1");
        }
        r.insert("makespan_p95_ms", &p95.to_string());
        r.insert("cost_mean", &cost.to_string());
        r
    }

    #[test]
    fn trends_read_direction_and_spearman_along_a_numeric_key() {
        // p95 falls with slots for both policies (a knee: no gain past 4);
        // cost rises for `a` and falls for `b`: non-monotonic on average.
        let mut rows = Vec::new();
        for (policy, costs) in [("a", [1.0, 2.0, 3.0]), ("b", [9.0, 8.0, 1.0])] {
            for (i, slots) in ["2", "4", "8"].iter().enumerate() {
                for seed in ["1", "2"] {
                    let p95 = [300.0, 100.0, 100.0][i] + if seed == "1" { 0.0 } else { 1.0 };
                    rows.push(row(policy, slots, seed, p95, costs[i]));
                }
            }
        }
        let a = aggregate(&rows);
        let t = |m: &str| {
            a.trends
                .iter()
                .find(|t| t.parameter == "tiers.0.slots" && t.metric == m)
                .unwrap_or_else(|| panic!("no trend for {m}: {:?}", a.trends))
                .clone()
        };
        let p95 = t("makespan_p95_ms");
        assert_eq!(p95.values, vec![2.0, 4.0, 8.0]);
        assert_eq!(p95.means, vec![300.5, 100.5, 100.5]);
        assert_eq!(
            p95.direction, "non_monotonic",
            "falls, then flat past the knee"
        );
        assert_eq!(p95.slices, [0, 0, 0, 2]);
        assert!(p95.spearman_rho < -0.7, "{}", p95.spearman_rho);
        assert_eq!(p95.n_runs, 12);
        let cost = t("cost_mean");
        // Means per value: (1+9)/2, (2+8)/2, (3+1)/2 = 5, 5, 2.
        assert_eq!(cost.means, vec![5.0, 5.0, 2.0]);
        assert_eq!(cost.direction, "non_monotonic");
        assert_eq!(cost.slices, [1, 1, 0, 0], "one slice rises, one falls");
        // A flat metric: rho undefined (null in JSON), direction flat.
        let flat = t("makespan_mean_ms");
        assert_eq!(flat.direction, "flat");
        assert!(flat.spearman_rho.is_nan());
        let json = aggregate_json(&a).to_string();
        assert!(
            json.contains("\"spearman_rho\":null"),
            "NaN is written as null"
        );
        // `policy` varies but is not numeric: no trend along it.
        assert!(a.trends.iter().all(|t| t.parameter == "tiers.0.slots"));
        let csv = String::from_utf8(trends_csv(&a)).unwrap();
        assert!(
            csv.contains("tiers.0.slots,makespan_p95_ms,non_monotonic,"),
            "{csv}"
        );
        assert!(csv.contains(",2;4;8,300.5;100.5;100.5,0,0,0,2\n"), "{csv}");
    }

    /// Writes a run directory: meta.json with `exit_code`, and for a
    /// successful run a summary whose every metric is `x` and one tiers.csv
    /// row per tier named.
    fn fake_run(exp: &Path, id: &str, exit_code: i32, x: &str, tiers: &[&str]) {
        let d = exp.join("runs").join(id);
        std::fs::create_dir_all(d.join("out")).unwrap();
        let meta = json!({
            "run_id": id, "exit_code": exit_code, "ablation_name": "baseline",
            "ablation_flags": [], "wall_time_s": 0.5, "sim_binary_version": "t",
            "params": {"policy": "full", "seed": id.len(), "tiers.0.slots": x},
            "resolved": {"workflows": 10},
        });
        std::fs::write(d.join("meta.json"), meta.to_string()).unwrap();
        if exit_code != 0 {
            return;
        }
        let head = SUMMARY_COLUMNS.join(",");
        let values = vec![x; SUMMARY_COLUMNS.len()].join(",");
        std::fs::write(d.join("out/summary.csv"), format!("{head}\n{values}\n")).unwrap();
        let mut t = String::from("provider,tier_id,kind,requests,note\n");
        for name in tiers {
            // A cell that needs quoting goes through the spill intact.
            t.push_str(&format!("p,{name},remote,{x},\"a, \"\"b\"\"\nc\"\n"));
        }
        std::fs::write(d.join("out/tiers.csv"), t).unwrap();
    }

    /// Collecting in small batches through the temporary file writes what
    /// the rows held in memory give: the same runs.csv (columns that only
    /// some runs have included) and the same statistics.
    #[test]
    fn batched_collect_writes_what_rows_in_memory_give() {
        let tmp = tempfile::tempdir().unwrap();
        let exp = tmp.path();
        fake_run(exp, "r1", 0, "1", &["0"]);
        fake_run(exp, "r2", 0, "2", &["0", "1"]);
        fake_run(exp, "r3", 3, "", &[]);
        fake_run(exp, "r4", 0, "4", &["2"]);
        fake_run(exp, "r5", 0, "5", &[]);
        let (rows, _) = gather(exp).unwrap();
        assert_eq!(rows.len(), 5);
        let expected_csv = to_csv(&rows, &columns_of(rows.iter().flat_map(|r| r.keys())));
        let expected_json = format!("{:#}\n", aggregate_json(&aggregate(&rows)));
        for batch in [1, 2, 3, 512] {
            let c = collect_in_batches(exp, None, batch).unwrap();
            assert_eq!((c.runs, c.failed), (5, 1));
            let csv = std::fs::read(&c.runs_csv).unwrap();
            assert_eq!(
                String::from_utf8(csv).unwrap(),
                String::from_utf8(expected_csv.clone()).unwrap(),
                "batch {batch}"
            );
            let json = std::fs::read_to_string(exp.join("aggregate/sweep_aggregate.json")).unwrap();
            assert_eq!(json, expected_json, "batch {batch}");
        }
        let text = String::from_utf8(expected_csv).unwrap();
        assert!(
            text.contains("p_tier2_requests"),
            "a column of one run only"
        );
        assert!(text.contains("\"a, \"\"b\"\"\nc\""), "a quoted cell");
        assert!(text.contains("tiers.0.slots"), "a scenario-path parameter");
    }

    /// The statistics read only the columns `collect` keeps of each row.
    #[test]
    fn aggregate_of_the_kept_columns_is_the_aggregate_of_whole_rows() {
        let mut rows = Vec::new();
        for (policy, costs) in [("a", [1.0, 2.0]), ("b", [9.0, 8.0])] {
            for (i, slots) in ["2", "4"].iter().enumerate() {
                for seed in ["1", "2"] {
                    let mut r = row(policy, slots, seed, 100.0 * (i + 1) as f64, costs[i]);
                    r.insert("openai_tier0_requests", "7");
                    r.insert("events", seed);
                    r.insert("run_dir", "x");
                    rows.push(r);
                }
            }
        }
        let kept: Vec<Row> = rows
            .iter()
            .map(|r| r.iter().filter(|(k, _)| aggregate_reads(k)).collect())
            .collect();
        assert!(
            kept.iter()
                .all(|r| !r.contains_key("openai_tier0_requests"))
        );
        assert_eq!(
            aggregate_json(&aggregate(&kept)),
            aggregate_json(&aggregate(&rows))
        );
        assert_eq!(trends_csv(&aggregate(&kept)), trends_csv(&aggregate(&rows)));
    }

    /// Small CSV files split as the csv crate reads them; a file the
    /// split does not take is left to the csv crate.
    #[test]
    fn plain_csv_splits_as_the_csv_crate_reads() {
        let by_crate = |text: &str| -> Vec<Vec<String>> {
            csv::ReaderBuilder::new()
                .has_headers(false)
                .from_reader(text.as_bytes())
                .records()
                .map(|r| r.unwrap().iter().map(String::from).collect())
                .collect()
        };
        for text in [
            "a,b\n1,2\n",
            "a,b\r\n1,2",
            "a,b\n\n1,\"x, \"\"y\"\"\nz\"\n,\n",
            "",
            "only\n",
            "a\u{e9},b\n\u{e9}\u{e9},\n",
        ] {
            assert_eq!(
                split_plain_csv(text.as_bytes()),
                Some(by_crate(text)),
                "{text:?}"
            );
        }
        let wide = (0..100)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let text = format!("{wide}\n{wide}\n");
        assert_eq!(split_plain_csv(text.as_bytes()), Some(by_crate(&text)));
        // A file cut inside a quote leaves nothing behind for the next.
        assert_eq!(split_plain_csv(b"a,\"b"), Some(by_crate("a,\"b")));
        assert_eq!(split_plain_csv(b"c,d\n"), Some(by_crate("c,d\n")));
        // Unequal records, a byte-order mark, bad UTF-8: the csv crate's.
        assert_eq!(split_plain_csv(b"a,b\n1\n"), None);
        assert_eq!(split_plain_csv(b"\xEF\xBB\xBFa\n1\n"), None);
        assert_eq!(split_plain_csv(b"a\n\xff\n"), None);
    }

    #[test]
    fn direction_of_sequences() {
        assert_eq!(direction(&[1.0, 2.0, 3.0]), "rises");
        assert_eq!(direction(&[3.0, 2.0]), "falls");
        assert_eq!(direction(&[2.0, 2.0]), "flat");
        assert_eq!(direction(&[1.0, 3.0, 2.0]), "non_monotonic");
        assert_eq!(direction(&[1.0, f64::NAN]), "non_monotonic");
    }
}
