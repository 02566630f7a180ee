//! `report`: a static HTML page with SVG plots (drawn with plotters) that
//! opens from disk with no network: summary, plots, per-configuration
//! statistics and a sortable table of the runs (at most 10,000; past that,
//! failed runs are kept before successful ones).

mod plots;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::output::{atomic_write, fmt_f64};
use crate::sweep::collect::{self, Aggregate, Row};
use crate::sweep::failures::{self, Tally};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The columns of the report's table of runs.
const RUNS_TABLE: [&str; 14] = [
    "run_id",
    "policy",
    "workflows",
    "seed",
    "ablation_name",
    "exit_code",
    "makespan_p50_ms",
    "makespan_p95_ms",
    "makespan_p99_ms",
    "cost_mean",
    "hedges",
    "escalations",
    "retries",
    "wall_time_s",
];

/// The most runs the table lists. A row is about 250 bytes, so 100,000
/// runs would make a 25 MB page that is slow to open and to sort;
/// runs.csv has every run.
const RUNS_TABLE_MAX: usize = 10_000;

/// The runs the table lists, in runs.csv's order: all of them when they
/// fit in `max`, else every failed run (up to `max`: they are what a user
/// looks for) and the first successful runs.
fn listed_runs(rows: &[Row], max: usize) -> Vec<&Row> {
    if rows.len() <= max {
        return rows.iter().collect();
    }
    let failed = rows.iter().filter(|r| !collect::succeeded(r)).count();
    let (mut failed_left, mut ok_left) = (failed.min(max), max - failed.min(max));
    rows.iter()
        .filter(|r| {
            let left = if collect::succeeded(r) {
                &mut ok_left
            } else {
                &mut failed_left
            };
            let take = *left > 0;
            *left -= usize::from(take);
            take
        })
        .collect()
}

/// Whether the report reads column `k` of runs.csv: what the statistics
/// read and the table of runs. The rest is not kept, so the report's
/// memory grows with these columns, not with all of them.
fn report_reads(k: &str) -> bool {
    collect::aggregate_reads(k) || RUNS_TABLE.contains(&k) || k == "run_id" || k == "error"
}

/// The most reasons for failed runs the summary lists.
const FAILURE_REASONS_LISTED: usize = 10;

/// Writes `<out_dir or exp_dir/report>/index.html` and `assets/*.svg`;
/// returns the index path.
pub fn write_report(exp_dir: &Path, runs_csv: &Path, out_dir: Option<&Path>) -> Result<PathBuf> {
    let rows = collect::read_runs_csv(runs_csv, report_reads)?;
    if rows.is_empty() {
        return Err(Error::Input(format!("{}: no runs", runs_csv.display())));
    }
    // A runs.csv from elsewhere would give an empty report: say so instead.
    let needed = ["run_id", "policy", "seed", "ablation_name", "exit_code"]
        .into_iter()
        .chain(collect::HEADLINE);
    let missing: Vec<&str> = needed.filter(|c| !rows[0].contains_key(c)).collect();
    if !missing.is_empty() {
        return Err(Error::Input(format!(
            "{}: not a runs.csv written by `agentsched collect`: no column {}",
            runs_csv.display(),
            missing.join(", ")
        )));
    }
    if !rows.iter().any(collect::succeeded) {
        return Err(Error::Input(format!(
            "{}: none of its {} runs succeeded (exit_code 0 with readable outputs); nothing to plot",
            runs_csv.display(),
            rows.len()
        )));
    }
    let dir = out_dir.map_or_else(|| exp_dir.join("report"), Path::to_path_buf);
    let assets = dir.join("assets");
    std::fs::create_dir_all(&assets).map_err(|source| Error::Write {
        path: assets.clone(),
        source,
    })?;
    let agg = collect::aggregate(&rows);
    let ok: Vec<&Row> = rows.iter().filter(|r| collect::succeeded(r)).collect();
    let mut figures = Vec::new();
    for (name, title, svg) in [
        (
            "makespan_by_policy.svg",
            "Makespan p50 / p95 / p99 by policy (baseline ablation, mean over seeds), one panel per workload",
            plots::makespan_by_policy(&ok),
        ),
        (
            "cost_by_policy.svg",
            "Mean cost per workflow by policy (baseline ablation, mean over seeds)",
            plots::cost_by_policy(&ok),
        ),
        (
            "ablation_deltas_full_p95_ratio.svg",
            "Ablations vs baseline: p95 makespan ratio (policy full, same seeds)",
            plots::ablation_ratio(&agg),
        ),
        (
            "pareto.svg",
            "Cost vs makespan p95 per configuration, 95% CI whiskers; the Pareto frontier in red",
            plots::pareto(&agg),
        ),
    ] {
        let svg = svg.map_err(|e| Error::Execution(format!("plot {name}: {e}")))?;
        atomic_write(&assets.join(name), svg.as_bytes())?;
        figures.push((name, title));
    }
    let mut html = page(&rows, &agg, &figures, RUNS_TABLE_MAX);
    if let Some(section) = fidelity_section(exp_dir, &rows)? {
        // Before the runs table, after the statistics.
        let at = html.find("<section id=\"runs\">").unwrap_or(html.len());
        html.insert_str(at, &section);
    }
    let index = dir.join("index.html");
    atomic_write(&index, html.as_bytes())?;
    crate::output::sync_dir(&assets);
    crate::output::sync_dir(&dir);
    Ok(index)
}

/// The most run warnings the fidelity section lists.
const MAX_LISTED_WARNINGS: usize = 50;

/// For an experiment of live runs (`sweep --live`): each run's scenario
/// simulated (its `out/scenario.json`), and the two compared as `fidelity
/// --sim-exp --live-exp` compares them. None for a simulated experiment.
fn fidelity_section(exp_dir: &Path, rows: &[Row]) -> Result<Option<String>> {
    let live = std::fs::read_to_string(exp_dir.join("experiment.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| v["mode"] == "live");
    if !live {
        return Ok(None);
    }
    let live_rows: Vec<Row> = rows
        .iter()
        .filter(|r| collect::succeeded(r))
        .cloned()
        .collect();
    let mut sim_rows = Vec::with_capacity(live_rows.len());
    // What the runs warned of: they stand, but measured less than, or
    // other than, their scenario.
    let mut warnings: Vec<(&str, String)> = Vec::new();
    for r in &live_rows {
        let id = r.get("run_id").unwrap_or("");
        let out = exp_dir.join("runs").join(id).join("out");
        let said = crate::live::rundir::recorded_measurement_warnings(&out);
        warnings.extend(said.into_iter().map(|w| (id, w)));
        let path = out.join(crate::recorded::SCENARIO_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        let s = crate::scenario::Scenario::from_json_str(&text)
            .map_err(|e| Error::Input(format!("{}: {e}", path.display())))?;
        let result = crate::sim::run(&s, &mut crate::metrics::NullObserver);
        let mut sim = r.clone();
        for (k, v) in result.summary.fields() {
            sim.insert(k, &v.to_string());
        }
        sim_rows.push(sim);
    }
    let objectives = ["makespan_p95_ms".to_string(), "cost_mean".to_string()];
    let tol = crate::fidelity::Tolerances::default();
    let f = crate::fidelity::compare_experiments(&sim_rows, &live_rows, &objectives, &tol);
    let pct = crate::fidelity::pct;
    let mut h = String::from(
        "<section id=\"fidelity\"><h2>Fidelity: live runs against their simulation</h2>\n<p>Each live run's scenario simulated; per configuration the relative error of the live mean, (live - simulated) / simulated, and the MAPE over the headline metrics (makespan mean/p50/p95/p99, cost mean and total). The transport overhead is not modelled: every live call also carries its HTTP round trip.</p>\n<table><thead><tr><th>configuration</th><th>runs</th><th>p50 error</th><th>p95 error</th><th>cost error</th><th>MAPE</th></tr></thead><tbody>\n",
    );
    for c in &f.configs {
        let err = |k: &str| {
            c.metrics
                .iter()
                .find(|m| m.name == k)
                .and_then(|m| m.rel_error())
                .map_or(String::new(), pct)
        };
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            esc(&c.label),
            c.runs.1,
            err("makespan_p50_ms"),
            err("makespan_p95_ms"),
            err("cost_mean"),
            crate::fidelity::pct_abs(c.mape)
        ));
    }
    h.push_str("</tbody></table>\n<ul>\n");
    for r in &f.rankings {
        h.push_str(&format!(
            "<li>Ranking by {}: {}</li>\n",
            r.objective,
            esc(&r.describe(tol.tie_margin))
        ));
    }
    h.push_str(&format!(
        "<li>Verdict at the default tolerances: {}</li>\n</ul>\n",
        if f.failures.is_empty() {
            "PASS".to_string()
        } else {
            format!("FAIL ({})", esc(&f.failures.join("; ")))
        }
    ));
    if !warnings.is_empty() {
        h.push_str(&format!(
            "<h3>Runs that measured less than, or other than, their scenario ({})</h3>\n<ul>\n",
            warnings.len()
        ));
        for (id, w) in warnings.iter().take(MAX_LISTED_WARNINGS) {
            h.push_str(&format!("<li>{}: {}</li>\n", esc(id), esc(w)));
        }
        if warnings.len() > MAX_LISTED_WARNINGS {
            h.push_str(&format!(
                "<li>and {} more: each run's <code>stderr.txt</code> has its own</li>\n",
                warnings.len() - MAX_LISTED_WARNINGS
            ));
        }
        h.push_str("</ul>\n");
    }
    h.push_str("</section>\n");
    Ok(Some(h))
}

fn distinct(rows: &[Row], k: &str) -> Vec<String> {
    rows.iter()
        .filter_map(|r| r.get(k).map(String::from))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn page(rows: &[Row], agg: &Aggregate, figures: &[(&str, &str)], max_listed: usize) -> String {
    let failed = rows.iter().filter(|r| !collect::succeeded(r)).count();
    let mut h = String::new();
    h.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>agentsched sweep report</title>\n<style>");
    h.push_str(include_str!("report.css"));
    h.push_str("</style></head><body>\n<h1>agentsched sweep report</h1>\n<section id=\"summary\"><h2>Summary</h2><ul>\n");
    h.push_str(&format!(
        "<li>Runs: {} ({} failed)</li>\n",
        rows.len(),
        failed
    ));
    let failures = Tally::of_rows(rows);
    if failures.runs() > 0 {
        h.push_str("<li>Why runs failed (the runs table and runs.csv's <code>error</code> column give each run's reason):<ul>\n");
        for line in failures.lines(FAILURE_REASONS_LISTED) {
            h.push_str(&format!("<li>{}</li>\n", esc(&line)));
        }
        h.push_str("</ul></li>\n");
    }
    for (k, name) in [
        ("policy", "Policies"),
        ("workflows", "Workflow scales"),
        ("ablation_name", "Ablations"),
        ("seed", "Seeds"),
    ] {
        h.push_str(&format!(
            "<li>{name}: {}</li>\n",
            esc(&distinct(rows, k).join(", "))
        ));
    }
    for (objective, v) in &agg.best {
        h.push_str(&format!(
            "<li>Best {}: <b>{}</b> ({})</li>\n",
            esc(objective),
            esc(v["label"].as_str().unwrap_or("")),
            v["mean"].as_f64().map_or_else(String::new, fmt_num)
        ));
    }
    let front: Vec<String> = agg
        .configs
        .iter()
        .filter(|c| c.pareto)
        .map(|c| esc(&c.label))
        .collect();
    h.push_str(&format!(
        "<li>Pareto frontier (makespan p95, cost mean): {}</li>\n</ul></section>\n",
        front.join("; ")
    ));
    h.push_str("<section id=\"plots\"><h2>Plots</h2>\n");
    for (name, title) in figures {
        h.push_str(&format!(
            "<figure><img class=\"plot\" src=\"assets/{name}\" alt=\"{}\"><figcaption>{}</figcaption></figure>\n",
            esc(title),
            esc(title)
        ));
    }
    h.push_str("</section>\n<section id=\"configs\"><h2>Configurations (across seeds)</h2>\n<table class=\"sortable\"><thead><tr>");
    let stat_cols = [
        "makespan_p50_ms",
        "makespan_p95_ms",
        "makespan_p99_ms",
        "cost_mean",
    ];
    h.push_str("<th>configuration</th><th>n</th>");
    for m in stat_cols {
        h.push_str(&format!("<th>{m} mean</th><th>{m} 95% CI</th>"));
    }
    h.push_str("<th>Pareto</th></tr></thead><tbody>\n");
    for c in &agg.configs {
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td>",
            esc(&c.label),
            c.metrics["makespan_p95_ms"].n
        ));
        for m in stat_cols {
            let d = &c.metrics[m];
            h.push_str(&format!(
                "<td>{}</td><td>[{}, {}]</td>",
                fmt_num(d.mean),
                fmt_num(d.ci95_low),
                fmt_num(d.ci95_high)
            ));
        }
        h.push_str(&format!(
            "<td>{}</td></tr>\n",
            if c.pareto { "yes" } else { "" }
        ));
    }
    h.push_str("</tbody></table></section>\n");
    if !agg.trends.is_empty() {
        h.push_str("<section id=\"trends\"><h2>Trends along numeric parameters</h2>\n<p>Direction of the per-value mean over configurations; Spearman's rho over every run; slices are configurations equal but for the parameter, by their own direction (rises/falls/flat/other).</p>\n<table><thead><tr><th>parameter</th><th>metric</th><th>direction</th><th>Spearman rho</th><th>values</th><th>means</th><th>slices</th></tr></thead><tbody>\n");
        for t in &agg.trends {
            let list = |xs: &[f64]| {
                xs.iter()
                    .map(|x| fmt_num(*x))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}/{}/{}/{}</td></tr>\n",
                esc(&t.parameter),
                t.metric,
                t.direction.replace('_', "-"),
                if t.spearman_rho.is_nan() { String::new() } else { format!("{:.3}", t.spearman_rho) },
                list(&t.values),
                list(&t.means),
                t.slices[0],
                t.slices[1],
                t.slices[2],
                t.slices[3]
            ));
        }
        h.push_str("</tbody></table></section>\n");
    }
    let listed = listed_runs(rows, max_listed);
    h.push_str("<section id=\"runs\"><h2>Runs</h2><p>Click a header to sort.");
    if listed.len() < rows.len() {
        let failed_listed = listed.iter().filter(|r| !collect::succeeded(r)).count();
        h.push_str(&if failed == 0 {
            format!(
                " Listed: the first {} of the {} runs; runs.csv has every run.",
                listed.len(),
                rows.len()
            )
        } else {
            format!(
                " Listed: {} of the {} runs, in runs.csv's order: {failed_listed} of the {failed} that failed and the first {} that succeeded; runs.csv has every run.",
                listed.len(),
                rows.len(),
                listed.len() - failed_listed
            )
        });
    }
    h.push_str("</p>\n<table class=\"sortable\" id=\"runs-table\"><thead><tr>");
    let (ids, metrics) = RUNS_TABLE.split_at(5);
    // After the exit code, why a run failed, when one did.
    let (exit, metrics) = metrics.split_at(1);
    let error = (failed > 0).then_some("error");
    let cols: Vec<&str> = ids
        .iter()
        .copied()
        .chain(swept_columns(rows, agg))
        .chain(exit.iter().copied())
        .chain(error)
        .chain(metrics.iter().copied())
        .collect();
    for &c in &cols {
        h.push_str(&format!("<th>{c}</th>"));
    }
    h.push_str("</tr></thead><tbody>\n");
    for r in listed {
        h.push_str("<tr>");
        for &c in &cols {
            let v = if c == "error" {
                failures::message_of(r).unwrap_or("")
            } else {
                r.get(c).unwrap_or("")
            };
            let shown = v.parse::<f64>().map_or_else(
                |_| esc(v),
                |x| if v.contains('.') { fmt_num(x) } else { esc(v) },
            );
            h.push_str(&format!("<td>{shown}</td>"));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody></table></section>\n<script>");
    h.push_str(include_str!("report.js"));
    h.push_str("</script>\n</body></html>\n");
    h
}

/// The parameters the runs table shows after the ablation: every one the
/// sweep varies (e.g. `providers.llm_provider.tiers.1.slots`), else runs
/// that differ only in it look alike. Failed runs count too (a value the
/// scenario check refused is why they failed), by the values they have:
/// a failed run's resolved columns are blank, not different.
fn swept_columns<'a>(rows: &[Row], agg: &'a Aggregate) -> Vec<&'a str> {
    let Some(first) = agg.configs.first() else {
        return Vec::new();
    };
    let varies = |k: &str| {
        let values: BTreeSet<&str> = rows
            .iter()
            .filter_map(|r| r.get(k))
            .filter(|v| !v.is_empty())
            .collect();
        // Switches of ablations (`disable_hedging`) go with the ablation's name.
        values.len() > 1 && !k.starts_with("disable_")
    };
    first
        .key
        .0
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !RUNS_TABLE.contains(k))
        .filter(|k| agg.varying.contains(*k) || varies(k))
        .collect()
}

fn fmt_num(x: f64) -> String {
    if x.is_nan() {
        return String::new();
    }
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 1.0 {
        format!("{x:.3}")
    } else {
        fmt_f64((x * 1e6).round() / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::{SweepOptions, plan::ExperimentConfig, run_sweep};

    /// The report reads only the columns it keeps: its page and plots of a
    /// real sweep's runs.csv are the same from whole rows.
    #[test]
    fn the_kept_columns_give_the_report_of_whole_rows() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = ExperimentConfig::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/smoke.json"),
        )
        .unwrap();
        let o = run_sweep(
            &cfg,
            &SweepOptions {
                out_root: Some(tmp.path().to_path_buf()),
                quiet: true,
                ..Default::default()
            },
        )
        .unwrap();
        let runs_csv = collect::collect(&o.exp_dir, None).unwrap().runs_csv;
        let render = |keep: &dyn Fn(&str) -> bool| {
            let rows = collect::read_runs_csv(&runs_csv, keep).unwrap();
            let agg = collect::aggregate(&rows);
            let ok: Vec<&Row> = rows.iter().filter(|r| collect::succeeded(r)).collect();
            let plots = [
                plots::makespan_by_policy(&ok),
                plots::cost_by_policy(&ok),
                plots::ablation_ratio(&agg),
                plots::pareto(&agg),
            ]
            .map(|svg| svg.unwrap());
            (
                rows.iter().map(Row::len).sum::<usize>(),
                page(&rows, &agg, &[], RUNS_TABLE_MAX),
                plots,
            )
        };
        let (whole_cells, whole_page, whole_plots) = render(&|_| true);
        let (kept_cells, kept_page, kept_plots) = render(&report_reads);
        assert!(
            kept_cells * 3 < whole_cells,
            "{kept_cells} of {whole_cells} cells kept"
        );
        assert_eq!(kept_page, whole_page);
        assert_eq!(kept_plots, whole_plots);
        assert!(whole_page.contains("no_hedge"), "a page with runs in it");

        // A cap below the run count lists that many runs and says so.
        let rows = collect::read_runs_csv(&runs_csv, report_reads).unwrap();
        let agg = collect::aggregate(&rows);
        let table_rows = |page: &str| {
            let table = &page[page.find("id=\"runs-table\"").unwrap()..];
            table.matches("<tr>").count() - 1 // the header's
        };
        assert_eq!(table_rows(&whole_page), rows.len());
        assert!(!whole_page.contains("Listed:"));
        let assert_capped_to_3 = |rows: &[Row], note: &str| {
            let capped = page(rows, &agg, &[], 3);
            assert_eq!(table_rows(&capped), 3);
            assert!(capped.contains(note), "{note:?} not in {capped}");
        };
        let n = rows.len();
        assert_capped_to_3(
            &rows,
            &format!("Listed: the first 3 of the {n} runs; runs.csv has every run."),
        );
        let mut rows = rows;
        rows[1].insert("exit_code", "1");
        assert_capped_to_3(
            &rows,
            &format!(
                "Listed: 3 of the {n} runs, in runs.csv's order: 1 of the 1 that failed and the first 2 that succeeded;"
            ),
        );
    }

    /// Past the cap, every failed run is listed before any successful one
    /// is, and the listed runs keep runs.csv's order.
    #[test]
    fn a_capped_table_lists_failed_runs_then_the_first_successful_ones() {
        let rows: Vec<Row> = ["0", "1", "0", "0", "0", "2", "1"]
            .iter()
            .enumerate()
            .map(|(i, code)| {
                Row::from_iter([("run_id", i.to_string()), ("exit_code", code.to_string())])
            })
            .collect();
        let ids = |max| -> Vec<String> {
            listed_runs(&rows, max)
                .iter()
                .map(|r| r["run_id"].to_string())
                .collect()
        };
        assert_eq!(ids(7), ["0", "1", "2", "3", "4", "5", "6"]);
        assert_eq!(ids(100), ids(7));
        assert_eq!(ids(6), ["0", "1", "2", "3", "5", "6"]);
        assert_eq!(ids(4), ["0", "1", "5", "6"]);
        assert_eq!(ids(2), ["1", "5"]);
        assert!(ids(0).is_empty());
    }
}
