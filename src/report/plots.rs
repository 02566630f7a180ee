//! The report's figures, drawn with plotters into SVG strings.

use std::collections::BTreeMap;

use plotters::coord::Shift;
use plotters::coord::cartesian::Cartesian2d;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::policy::PolicyKind;
use crate::sweep::collect::{Aggregate, Row, num};

type PlotResult = Result<String, String>;

fn e<E: std::fmt::Display>(err: E) -> String {
    err.to_string()
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn mean(xs: &[f64]) -> f64 {
    let v: Vec<f64> = xs.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Policies in the users' order, unknown names after.
fn policies(rows: &[&Row]) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for p in PolicyKind::ALL {
        if rows
            .iter()
            .any(|r| r.get("policy").is_some_and(|x| x == p.name()))
        {
            seen.push(p.name().into());
        }
    }
    for r in rows {
        if let Some(p) = r.get("policy")
            && !seen.iter().any(|s| s == p)
        {
            seen.push(p.to_string());
        }
    }
    seen
}

/// Baseline-ablation rows if there are any, else all; grouped by workload size.
fn facets<'a>(rows: &[&'a Row]) -> BTreeMap<u64, Vec<&'a Row>> {
    let has_baseline = rows
        .iter()
        .any(|r| r.get("ablation_name").is_some_and(|a| a == "baseline"));
    let mut out: BTreeMap<u64, Vec<&Row>> = BTreeMap::new();
    for r in rows {
        if has_baseline && r.get("ablation_name").is_none_or(|a| a != "baseline") {
            continue;
        }
        let wf = r.get("workflows").and_then(|w| w.parse().ok()).unwrap_or(0);
        out.entry(wf).or_default().push(r);
    }
    out
}

fn policy_means(rows: &[&Row], pols: &[String], metric: &str) -> Vec<f64> {
    pols.iter()
        .map(|p| {
            mean(
                &rows
                    .iter()
                    .filter(|r| r.get("policy") == Some(p.as_str()))
                    .map(|r| num(r, metric))
                    .collect::<Vec<_>>(),
            )
        })
        .collect()
}

fn upper(vals: impl Iterator<Item = f64>) -> f64 {
    let m = vals.filter(|x| x.is_finite()).fold(0.0f64, f64::max);
    if m <= 0.0 { 1.0 } else { m * 1.1 }
}

type Area<'b> = DrawingArea<SVGBackend<'b>, Shift>;
type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A chart with one category per x position (labels under integer x) and
/// a y axis from 0 to `ymax`, mesh drawn.
fn categorical<'a, 'b>(
    area: &'a Area<'b>,
    caption: &str,
    labels: &[String],
    ymax: f64,
    y_desc: &str,
) -> Result<Chart<'a, 'b>, String> {
    let n = labels.len().max(1) as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(-0.5f64..(n - 0.5), 0f64..ymax)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_labels(labels.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc(y_desc)
        .disable_x_mesh()
        .draw()
        .map_err(e)?;
    Ok(chart)
}

/// One panel per workload size, side by side; `panel` draws each.
fn faceted(
    rows: &[&Row],
    mut panel: impl FnMut(&Area<'_>, u64, &[&Row]) -> Result<(), String>,
) -> PlotResult {
    let groups = facets(rows);
    let mut svg = String::new();
    {
        let width = 420 * groups.len().max(1) as u32;
        let root = SVGBackend::with_string(&mut svg, (width, 380)).into_drawing_area();
        root.fill(&WHITE).map_err(e)?;
        let panels = root.split_evenly((1, groups.len().max(1)));
        for ((wf, g), area) in groups.iter().zip(panels.iter()) {
            panel(area, *wf, g)?;
        }
        root.present().map_err(e)?;
    }
    Ok(svg)
}

/// Makespan p50/p95/p99 (seconds) by policy, one panel per workload size.
pub fn makespan_by_policy(rows: &[&Row]) -> PlotResult {
    let pols = policies(rows);
    faceted(rows, |area, wf, g| {
        let series: Vec<(&str, Vec<f64>)> =
            ["makespan_p50_ms", "makespan_p95_ms", "makespan_p99_ms"]
                .iter()
                .map(|m| {
                    (
                        *m,
                        policy_means(g, &pols, m)
                            .into_iter()
                            .map(|x| x / 1000.0)
                            .collect(),
                    )
                })
                .collect();
        // Headroom above the data keeps the legend clear of the points.
        let ymax = upper(series.iter().flat_map(|(_, v)| v.iter().copied())) * 1.25;
        let mut chart = categorical(
            area,
            &format!("workflows = {wf}"),
            &pols,
            ymax,
            "makespan (s)",
        )?;
        for (k, (name, vals)) in series.iter().enumerate() {
            let color = COLORS[k];
            let pts: Vec<(f64, f64)> = vals
                .iter()
                .enumerate()
                .filter(|(_, v)| v.is_finite())
                .map(|(i, v)| (i as f64, *v))
                .collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(e)?
                .label(name.trim_start_matches("makespan_").trim_end_matches("_ms"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                });
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))
                .map_err(e)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(e)?;
        Ok(())
    })
}

/// Bars at category positions, coloured by `color(i, value)`.
fn bars(
    chart: &mut Chart<'_, '_>,
    values: &[f64],
    color: impl Fn(usize, f64) -> RGBColor,
) -> Result<(), String> {
    chart
        .draw_series(
            values
                .iter()
                .enumerate()
                .filter(|(_, v)| v.is_finite())
                .map(|(i, &v)| {
                    Rectangle::new(
                        [(i as f64 - 0.3, 0.0), (i as f64 + 0.3, v)],
                        color(i, v).filled(),
                    )
                }),
        )
        .map_err(e)?;
    Ok(())
}

/// Mean cost per workflow by policy, one panel per workload size.
pub fn cost_by_policy(rows: &[&Row]) -> PlotResult {
    let pols = policies(rows);
    faceted(rows, |area, wf, g| {
        let costs = policy_means(g, &pols, "cost_mean");
        let mut chart = categorical(
            area,
            &format!("workflows = {wf}"),
            &pols,
            upper(costs.iter().copied()),
            "cost per workflow ($)",
        )?;
        bars(&mut chart, &costs, |i, _| COLORS[i % COLORS.len()])
    })
}

/// p95 makespan of each ablation over its baseline (policy `full`, or every
/// policy when the sweep has no `full`), per workload size.
pub fn ablation_ratio(agg: &Aggregate) -> PlotResult {
    let mut entries: Vec<(String, f64)> = agg
        .paired
        .iter()
        .filter(|p| p["metric"] == "makespan_p95_ms")
        .filter(|p| p["policy"] == "full" || !agg.paired.iter().any(|q| q["policy"] == "full"))
        .map(|p| {
            let label = format!(
                "{} wf{}{}",
                p["ablation"].as_str().unwrap_or(""),
                p["workflows"].as_str().unwrap_or(""),
                if p["policy"] == "full" {
                    String::new()
                } else {
                    format!(" {}", p["policy"].as_str().unwrap_or(""))
                }
            );
            (label, p["ratio"].as_f64().unwrap_or(f64::NAN))
        })
        .collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 380)).into_drawing_area();
        root.fill(&WHITE).map_err(e)?;
        let caption = if entries.is_empty() {
            "no ablations with a baseline in this sweep"
        } else {
            "p95 makespan: ablation / baseline"
        };
        let labels: Vec<String> = entries.iter().map(|b| b.0.clone()).collect();
        let ratios: Vec<f64> = entries.iter().map(|b| b.1).collect();
        let mut chart = categorical(
            &root,
            caption,
            &labels,
            upper(ratios.iter().copied()).max(1.2),
            "ratio",
        )?;
        bars(&mut chart, &ratios, |_, r| {
            if r > 1.0 { COLORS[3] } else { COLORS[2] }
        })?;
        let n = labels.len().max(1) as f64;
        chart
            .draw_series(LineSeries::new(
                vec![(-0.5, 1.0), (n - 0.5, 1.0)],
                BLACK.stroke_width(1),
            ))
            .map_err(e)?;
        root.present().map_err(e)?;
    }
    Ok(svg)
}

/// Each configuration at (cost mean, makespan p95 mean) with 95% CI
/// whiskers on both axes; the Pareto frontier in red, joined by a line.
pub fn pareto(agg: &Aggregate) -> PlotResult {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(e)?;
        let pts: Vec<(f64, f64, f64, f64, f64, f64, bool)> = agg
            .configs
            .iter()
            .map(|c| {
                let (m, k) = (&c.metrics["makespan_p95_ms"], &c.metrics["cost_mean"]);
                let lo = |d: f64, x: f64| if d.is_finite() { d } else { x };
                (
                    k.mean,
                    lo(k.ci95_low, k.mean),
                    lo(k.ci95_high, k.mean),
                    m.mean / 1000.0,
                    lo(m.ci95_low, m.mean) / 1000.0,
                    lo(m.ci95_high, m.mean) / 1000.0,
                    c.pareto,
                )
            })
            .filter(|p| p.0.is_finite() && p.3.is_finite())
            .collect();
        let xmax = upper(pts.iter().map(|p| p.2));
        let ymax = upper(pts.iter().map(|p| p.5));
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "cost vs makespan p95 (mean over seeds, 95% CI)",
                ("sans-serif", 16),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..xmax, 0f64..ymax)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc("cost per workflow ($)")
            .y_desc("makespan p95 (s)")
            .draw()
            .map_err(e)?;
        let grey = RGBColor(120, 120, 120);
        chart
            .draw_series(
                pts.iter()
                    .map(|p| ErrorBar::new_vertical(p.0, p.4, p.3, p.5, grey.stroke_width(1), 6)),
            )
            .map_err(e)?;
        chart
            .draw_series(
                pts.iter()
                    .map(|p| ErrorBar::new_horizontal(p.3, p.1, p.0, p.2, grey.stroke_width(1), 6)),
            )
            .map_err(e)?;
        chart
            .draw_series(pts.iter().map(|p| {
                Circle::new(
                    (p.0, p.3),
                    4,
                    if p.6 {
                        COLORS[3].filled()
                    } else {
                        COLORS[0].filled()
                    },
                )
            }))
            .map_err(e)?;
        let mut front: Vec<(f64, f64)> = pts.iter().filter(|p| p.6).map(|p| (p.0, p.3)).collect();
        front.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(front, COLORS[3].stroke_width(2)))
            .map_err(e)?;
        root.present().map_err(e)?;
    }
    Ok(svg)
}
