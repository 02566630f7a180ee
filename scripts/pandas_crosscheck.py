#!/usr/bin/env python3
"""Recomputes agentsched's published numbers with pandas, numpy and scipy, from the
definitions in the README, and reports every one that differs.

This is what a user does who checks our numbers: it shares no code with the crate.

  pandas_crosscheck.py sweep EXP_DIR...  each run's id from its meta.json; its
      summary.csv against its workflows.csv; its output_digest from its files; aggregate/runs.csv against the summaries;
      sweep_aggregate.json (per configuration n, mean, std, min, max, cv and the Student
      t interval; Pareto frontier; best per objective; paired differences; trends with
      Spearman's rho) against runs.csv; sweep_aggregate.csv and sweep_trends.csv against
      the JSON; report/index.html's tables of configurations and runs, to the digits shown.
  pandas_crosscheck.py run OUT_DIR...    a run written with --trace (simulated or
      live): tiers.csv, the summary and workflows.csv against trace.json; a live
      run's requests.jsonl against the trace; a simulated run's output_digest.
  pandas_crosscheck.py ratchet BINARY DIR  DIR/ratchet.json (train curves, proposals,
      validation gains and t intervals, cliffs, margins, actions) and the proposed
      constants, from `simulate` runs of the factory scenarios under each constant value.
  pandas_crosscheck.py eval BINARY REPORT CANDIDATE [BASELINE]  an eval report (gains,
      output_changed, mean, the veto, aggregate_score, is_acceptable), likewise.
  pandas_crosscheck.py fidelity SIM_EXP LIVE_EXP REPORT  a `fidelity --sim-exp --live-exp
      --json REPORT` report: per configuration the means, relative errors and MAPE; per
      objective both orders, the simulation's ties (margin, Welch's t), reversed pairs
      and Kendall's tau-b (scipy's kendalltau when nothing ties).

  pandas_crosscheck.py fidelity-run LIVE_DIR SIM_DIR REPORT  a `fidelity --live --sim
      --json REPORT` report: every value from the two runs' summary.csv and tiers.csv,
      relative errors, MAPE and the verdict.

Exit status: 0 when everything agrees, 1 when something differs (each difference
printed), 2 on bad usage.
"""
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser

import numpy as np
import pandas as pd
from scipy import stats

# Times in the files are microseconds printed as milliseconds with three decimals,
# costs nano-dollars printed exactly, so the two sides differ only by float rounding.
REL = 1e-9


def shown(v):
    """A value as the files print it (numpy scalars as plain numbers)."""
    return repr(v.item() if isinstance(v, np.generic) else v)


class Checker:
    def __init__(self):
        self.mismatches = []
        self.checked = 0

    def close(self, ours, theirs, what, rel=REL):
        """Equal within `rel`; two missing values (None or NaN) are equal too."""
        self.checked += 1
        missing = [v is None or (isinstance(v, float) and math.isnan(v)) for v in (ours, theirs)]
        if any(missing):
            if not all(missing):
                self.mismatches.append(f"{what}: agentsched {shown(ours)}, pandas {shown(theirs)}")
            return
        if not math.isclose(float(ours), float(theirs), rel_tol=rel, abs_tol=1e-9):
            self.mismatches.append(f"{what}: agentsched {shown(ours)}, pandas {shown(theirs)}")

    def same(self, ours, theirs, what):
        self.checked += 1
        if ours != theirs:
            self.mismatches.append(f"{what}: agentsched {shown(ours)}, pandas {shown(theirs)}")


HEADLINE = ["makespan_mean_ms", "makespan_p50_ms", "makespan_p95_ms", "makespan_p99_ms",
            "cost_mean", "cost_total", "queue_wait_p95_ms", "throughput_wf_per_s"]


def check_summary_against_workflows(c, out, name):
    w = pd.read_csv(f"{out}/workflows.csv")
    s = pd.read_csv(f"{out}/summary.csv").iloc[0]
    ok = w[w.status == "ok"]
    c.same(list(w.workflow_id), sorted(w.workflow_id), f"{name}: workflows.csv in id order")
    for q in (50, 95, 99):
        c.close(s[f"makespan_p{q}_ms"], np.percentile(ok.makespan_ms, q), f"{name}: makespan_p{q}_ms")
    c.close(s.makespan_mean_ms, ok.makespan_ms.mean(), f"{name}: makespan_mean_ms")
    c.close(s.makespan_max_ms, ok.makespan_ms.max(), f"{name}: makespan_max_ms")
    # Failed workflows were paid for: the cost columns count them.
    c.close(s.cost_total, w.cost.sum(), f"{name}: cost_total")
    c.close(s.cost_mean, w.cost.mean(), f"{name}: cost_mean")
    c.close(s.cost_p50, np.percentile(w.cost, 50), f"{name}: cost_p50")
    c.close(s.workflows, len(w), f"{name}: workflows")
    c.close(s.completed, len(ok), f"{name}: completed")
    c.close(s.failed, (w.status == "failed").sum(), f"{name}: failed")
    for col, wcol in [("retries", "retries"), ("hedges", "hedges_launched"), ("calls", "calls"),
                      ("attempts", "attempts"), ("escalations", "escalations"),
                      ("cancellations", "cancellations"), ("rate_limited", "rate_limited"),
                      ("wasted_ms", "wasted_ms")]:
        c.close(s[col], w[wcol].sum(), f"{name}: {col} = sum of workflows.csv {wcol}")
    return s


class Tables(HTMLParser):
    """The report's tables: (heading above it, rows of cell texts), the header row first."""

    def __init__(self, html):
        super().__init__()
        self.tables, self.heading, self.row, self.cell, self.in_heading = [], "", None, None, False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append((self.heading, []))
        elif tag == "tr" and self.tables:
            self.row = []
            self.tables[-1][1].append(self.row)
        elif tag in ("td", "th") and self.row is not None:
            self.cell = ""
        elif tag == "h2":
            self.in_heading, self.heading = True, ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.row.append(self.cell.strip())
            self.cell = None
        elif tag == "h2":
            self.in_heading = False

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data
        if self.in_heading:
            self.heading += data


def shown_close(c, text, value, what):
    """A number as the report shows it: equal to `value` up to the digits it prints."""
    if text == "" and value is None:
        return
    decimals = len(text.split(".")[1]) if "." in text else 0
    c.checked += 1
    if value is None or abs(float(text) - value) > 0.5 * 10 ** -decimals * (1 + 1e-9) + 1e-12 * abs(value):
        c.mismatches.append(f"{what}: the report shows {text}, pandas {value!r}")


def check_report(c, exp, runs, agg):
    tables = {h: rows for h, rows in Tables(open(f"{exp}/report/index.html").read()).tables}
    conf_rows = tables["Configurations (across seeds)"]
    header, by_label = conf_rows[0], {x["label"]: x for x in agg["configurations"]}
    c.same(sorted(r[0] for r in conf_rows[1:]), sorted(by_label), f"{exp}: the report's configurations")
    for row in conf_rows[1:]:
        conf = by_label[row[0]]
        for col, text in zip(header[1:], row[1:]):
            what = f"{exp}: report, {row[0]}, {col}"
            if col == "n":
                c.same(int(text), conf["metrics"]["makespan_p95_ms"]["n"], what)
            elif col == "Pareto":
                c.same(text == "yes", conf["on_pareto_front"], what)
            elif col.endswith(" mean"):
                shown_close(c, text, conf["metrics"][col[:-5]]["mean"], what)
            elif col.endswith(" 95% CI") and text:
                low, high = text.strip("[]").split(", ")
                st = conf["metrics"][col[:-7]]
                shown_close(c, low, st["ci95_low"], what + " low")
                shown_close(c, high, st["ci95_high"], what + " high")
    run_rows = tables["Runs"]
    by_id = runs.set_index("run_id")
    c.same(len(run_rows) - 1, len(runs), f"{exp}: the report's runs")
    for row in run_rows[1:]:
        for col, text in zip(run_rows[0][1:], row[1:]):
            if col == "error":
                # Why a failed run failed: runs.csv's `error`, else its `collect_error`.
                r = by_id.loc[row[0]]
                failed = r.exit_code != "0" or r.get("collect_error", "") != ""
                want = (r.get("error", "") or r.get("collect_error", "") or "no message (stderr.txt is empty)") if failed else ""
                c.same(text, want, f"{exp}: report, run {row[0]}, error")
                continue
            want = by_id.loc[row[0], col]
            try:
                shown_close(c, text, float(want), f"{exp}: report, run {row[0]}, {col}")
            except ValueError:
                c.same(text, want, f"{exp}: report, run {row[0]}, {col}")
    return len(conf_rows) - 1


def direction(seq):
    """As the README defines it: strictly up, strictly down, all equal, or anything else."""
    steps = list(zip(seq, seq[1:]))
    if len(seq) < 2 or any(math.isnan(x) for x in seq):
        return "non_monotonic"
    if all(b > a for a, b in steps):
        return "rises"
    if all(b < a for a, b in steps):
        return "falls"
    if all(b == a for a, b in steps):
        return "flat"
    return "non_monotonic"


def output_digest(out):
    """`output_digest`: SHA-1 over the SHA-1s of workflows.csv, tiers.csv and summary.csv
    with its wall_time_s cell written as 0, and without the columns a live run appends
    (summary.json's `live_columns`) (README: Outputs)."""
    sha = lambda b: hashlib.sha1(b).digest()  # noqa: E731
    lines = open(f"{out}/summary.csv", "rb").read().split(b"\n")
    head, row = lines[0].split(b","), lines[1].split(b",")
    row[head.index(b"wall_time_s")] = b"0"
    # A sweep's simulated runs have no summary.json (the seed's layout); nothing appended there.
    has_json = os.path.exists(f"{out}/summary.json")
    appended = json.load(open(f"{out}/summary.json")).get("live_columns", []) if has_json else []
    keep = [i for i, h in enumerate(head) if h.decode() not in appended]
    summary = b",".join(head[i] for i in keep) + b"\n" + b",".join(row[i] for i in keep) + b"\n"
    return hashlib.sha1(sha(open(f"{out}/workflows.csv", "rb").read())
                        + sha(open(f"{out}/tiers.csv", "rb").read()) + sha(summary)).hexdigest()


def configuration_runs(ok_runs, config):
    sel = ok_runs
    for k, v in config.items():
        sel = sel[sel[k] == v]
    return sel


def check_sweep(c, exp):
    runs = pd.read_csv(f"{exp}/aggregate/runs.csv", dtype=str, keep_default_na=False)
    agg = json.load(open(f"{exp}/aggregate/sweep_aggregate.json"))
    ok_runs = runs[runs.exit_code == "0"]

    for _, r in runs.iterrows():
        # The seed's run ids: {policy}__wf{workflows}__seed{seed}__{ablation}__{h}, h the first 12
        # hex digits of the SHA-1 of the compact, key-sorted JSON of params, ablation name and flags.
        meta = json.load(open(os.path.join(exp, "runs", r.run_id, "meta.json")))
        key = {k: meta[k] for k in ("params", "ablation_name", "ablation_flags")}
        h = hashlib.sha1(json.dumps(key, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:12]
        p = meta["params"]
        c.same(r.run_id, f"{p['policy']}__wf{p['workflows']}__seed{p['seed']}__{meta['ablation_name']}__{h}",
               f"{r.run_id}: run id from meta.json")
    for _, r in runs[runs.exit_code != "0"].iterrows():
        # A failed run's `error`: the last line of its stderr.txt that starts with `error:`
        # (prefix dropped), else its last non-empty line; at most 500 characters.
        said = [x.strip() for x in open(os.path.join(exp, "runs", r.run_id, "stderr.txt")).read().splitlines()]
        said = [x for x in said if x]
        errors = [x[len("error:"):].lstrip() for x in said if x.startswith("error:")]
        want = errors[-1] if errors else (said[-1] if said else "")
        c.same(r.error, want if len(want) <= 500 else want[:500] + "\u2026", f"{r.run_id}: runs.csv error")
    for _, r in ok_runs.iterrows():
        out = os.path.join(exp, "runs", r.run_id, "out")
        s = check_summary_against_workflows(c, out, r.run_id)
        digest = output_digest(out)
        c.same(r.output_digest, digest, f"{r.run_id}: runs.csv output_digest")
        meta = json.load(open(os.path.join(exp, "runs", r.run_id, "meta.json")))
        c.same(meta["output_digest"], digest, f"{r.run_id}: meta.json output_digest")
        for col in s.index:
            if col == "wall_time_s" or col not in runs.columns:
                continue
            if isinstance(s[col], str):
                c.same(r[col], s[col], f"{r.run_id}: runs.csv {col}")
            else:
                c.close(float(r[col]), s[col], f"{r.run_id}: runs.csv {col}", rel=0)

    means = {}
    for conf in agg["configurations"]:
        label = conf["label"]
        sel = configuration_runs(ok_runs, conf["config"])
        c.same(sorted(sel.seed, key=int), sorted(conf["seeds"], key=int), f"{label}: seeds")
        for m in HEADLINE:
            x = sel[m].astype(float)
            st, n = conf["metrics"][m], len(x)
            c.close(st["n"], n, f"{label} {m}: n")
            c.close(st["mean"], x.mean(), f"{label} {m}: mean")
            c.close(st["min"], x.min(), f"{label} {m}: min")
            c.close(st["max"], x.max(), f"{label} {m}: max")
            # One seed: no spread and no interval (null), as documented.
            sd = x.std(ddof=1) if n > 1 else None
            c.close(st["std"], sd, f"{label} {m}: std (ddof=1)")
            c.close(st["cv"], None if sd is None else sd / x.mean(), f"{label} {m}: cv")
            h = None if sd is None else stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
            c.close(st["ci95_low"], None if h is None else x.mean() - h, f"{label} {m}: ci95_low")
            c.close(st["ci95_high"], None if h is None else x.mean() + h, f"{label} {m}: ci95_high")
            means[(label, m)] = x.mean()

    # sweep_aggregate.csv: the JSON's statistics, a row per configuration.
    table = pd.read_csv(f"{exp}/aggregate/sweep_aggregate.csv", dtype=str, keep_default_na=False)
    c.same(list(table.label), [conf["label"] for conf in agg["configurations"]], f"{exp}: sweep_aggregate.csv rows")
    for (_, row), conf in zip(table.iterrows(), agg["configurations"]):
        for m in HEADLINE:
            c.close(float(row.n), conf["metrics"][m]["n"], f"{conf['label']}: sweep_aggregate.csv n, {m}")
            for stat in ("mean", "std", "min", "max", "cv", "ci95_low", "ci95_high"):
                got = row[f"{m}_{stat}"]
                c.close(None if got == "" else float(got), conf["metrics"][m][stat],
                        f"{conf['label']}: sweep_aggregate.csv {m}_{stat}", rel=0)
        c.same(row.on_pareto_front, str(conf["on_pareto_front"]), f"{conf['label']}: sweep_aggregate.csv on_pareto_front")

    labels = [conf["label"] for conf in agg["configurations"]]
    point = {lab: (means[(lab, "makespan_p95_ms")], means[(lab, "cost_mean")]) for lab in labels}
    front = sorted(lab for lab in labels if not any(
        point[o][0] <= point[lab][0] and point[o][1] <= point[lab][1] and point[o] != point[lab]
        for o in labels))
    c.same(sorted(agg["pareto_frontier"]), front, f"{exp}: Pareto frontier")
    for conf in agg["configurations"]:
        c.same(conf["on_pareto_front"], conf["label"] in front, f"{conf['label']}: on_pareto_front")

    for m, best in agg["best"].items():
        pick = max if m == "throughput_wf_per_s" else min
        c.close(best["mean"], means[(pick(labels, key=lambda lab: means[(lab, m)]), m)], f"best {m}")

    for p in agg["paired_vs_baseline"]:
        what = f"paired {p['config']} vs baseline, {p['metric']}"
        conf = {x["label"]: x["config"] for x in agg["configurations"]}
        a = configuration_runs(ok_runs, conf[p["config"]]).set_index("seed")[p["metric"]].astype(float)
        b = configuration_runs(ok_runs, conf[p["baseline"]]).set_index("seed")[p["metric"]].astype(float)
        seeds = a.index.intersection(b.index)
        d = a[seeds] - b[seeds]
        c.close(p["n_pairs"], len(d), f"{what}: n_pairs")
        c.close(p["mean_diff"], d.mean(), f"{what}: mean_diff")
        h = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)) if len(d) > 1 else None
        c.close(p["ci95_low"], None if h is None else d.mean() - h, f"{what}: ci95_low")
        c.close(p["ci95_high"], None if h is None else d.mean() + h, f"{what}: ci95_high")
        c.close(p["ratio"], a[seeds].mean() / b[seeds].mean(), f"{what}: ratio of means")

    for t in agg["trends"]:
        what = f"trend {t['metric']} along {t['parameter']}"
        x, y = ok_runs[t["parameter"]].astype(float), ok_runs[t["metric"]].astype(float)
        rho = stats.spearmanr(x, y).statistic if x.nunique() > 1 and y.nunique() > 1 else None
        c.close(t["spearman_rho"], None if rho is None or math.isnan(rho) else rho, f"{what}: spearman_rho")
        c.close(t["n_runs"], len(ok_runs), f"{what}: n_runs")
        values = sorted(x.unique())
        c.same([float(v) for v in t["values"]], values, f"{what}: values")
        # Per value, the mean of the configurations' means.
        conf_means = {}
        for conf in agg["configurations"]:
            conf_means.setdefault(float(conf["config"][t["parameter"]]), []).append(means[(conf["label"], t["metric"])])
        for v, got in zip(values, t["means"]):
            c.close(got, np.mean(conf_means[v]), f"{what}: mean at {v}")
        c.same(t["direction"], direction([np.mean(conf_means[v]) for v in values]), f"{what}: direction")
        # Slices: configurations equal in every key but the parameter, each read the same way.
        slices = {}
        for conf in agg["configurations"]:
            rest = tuple(sorted((k, v) for k, v in conf["config"].items() if k != t["parameter"]))
            slices.setdefault(rest, []).append((float(conf["config"][t["parameter"]]), means[(conf["label"], t["metric"])]))
        counts = {"rises": 0, "falls": 0, "flat": 0, "non_monotonic": 0}
        for members in slices.values():
            if len(members) > 1:
                counts[direction([m for _, m in sorted(members)])] += 1
        c.same(t["slices"], counts, f"{what}: slices")
    trends = pd.read_csv(f"{exp}/aggregate/sweep_trends.csv", dtype=str, keep_default_na=False)
    c.same(len(trends), len(agg["trends"]), f"{exp}: sweep_trends.csv rows")
    for (_, row), t in zip(trends.iterrows(), agg["trends"]):
        what = f"sweep_trends.csv {t['metric']} along {t['parameter']}"
        c.same((row.parameter, row.metric, row.direction), (t["parameter"], t["metric"], t["direction"]), what)
        c.close(None if row.spearman_rho == "" else float(row.spearman_rho), t["spearman_rho"], f"{what}: spearman_rho", rel=0)
        c.same([float(v) for v in row["values"].split(";")], [float(v) for v in t["values"]], f"{what}: values")
        c.same([float(v) for v in row.means.split(";")], [float(v) for v in t["means"]], f"{what}: means")
        c.same([int(row[f"slices_{k}"]) for k in ("rises", "falls", "flat", "non_monotonic")],
               [t["slices"][k] for k in ("rises", "falls", "flat", "non_monotonic")], f"{what}: slices")
    report = ""
    if os.path.exists(f"{exp}/report/index.html"):
        check_report(c, exp, runs, agg)
        report = ", report/index.html"
    return f"{exp}: {len(runs)} runs ({len(ok_runs)} ok), {len(labels)} configurations, " \
           f"{len(agg['paired_vs_baseline'])} paired comparisons, {len(agg['trends'])} trends{report}"


def output_tokens(scenario):
    """A call's output tokens from its node type and index, as the README's workload defines
    them: the node type's, a DAG node's own, or the research agent's Plan estimate (200 + 10K
    + 3P in iteration 0, 220 + 15K + 4P later), times `token_scale`, rounded."""
    w, types = scenario["workload"], scenario["node_types"]
    scale = w.get("token_scale", 1.0)
    p, k = w.get("pdfs", 0), w.get("subqueries", 0)

    def of(node_type, node):
        tokens = types[node_type]["output_tokens"]
        if w["template"] == "research_agent" and node_type == "Plan":
            tokens = 200 + 10 * k + 3 * p if node < 3 + 3 * p + 2 * p * k else 220 + 15 * k + 4 * p
        elif w["template"] == "dag" and w["dag"]["nodes"][node].get("output_tokens") is not None:
            tokens = w["dag"]["nodes"][node]["output_tokens"]
        return math.floor(tokens * scale + 0.5)
    return of


def check_run(c, out):
    t = pd.DataFrame(json.load(open(f"{out}/trace.json")))
    s = check_summary_against_workflows(c, out, out)
    tiers = pd.read_csv(f"{out}/tiers.csv")
    w = pd.read_csv(f"{out}/workflows.csv")
    # The trace's times are whole microseconds: compare in them, exactly.
    t["us"] = (t.t_ms * 1000).round().astype("int64")
    t["attempt"] = t.attempt.fillna(0).astype("int64") if "attempt" in t else 0  # local pools: none
    t["call"] = t.workflow.astype(str) + ":" + t.node.astype("Int64").astype(str)
    # Queue wait is from the node's latest `ready` to the attempt's start.
    t["ready_us"] = t.us.where(t.ev == "ready")
    t["ready_us"] = t.groupby("call").ready_us.ffill()
    t["attempt_key"] = t.call + ":" + t.provider.astype(str) + ":" + t.tier.astype("Int64").astype(str) \
        + ":" + t.attempt.astype(str)
    if "ttft_ms" not in t:
        t["ttft_ms"] = np.nan
    starts = t[t.ev == "start"].drop(columns=["outcome", "cost", "ttft_ms"], errors="ignore")
    ends = t[t.ev == "end"][["attempt_key", "us", "outcome", "cost", "ttft_ms"]]
    att = starts.merge(ends, on="attempt_key", suffixes=("", "_end"), how="left", validate="one_to_one")
    c.close(att.us_end.isna().sum(), 0, f"{out}: attempts started and never ended")
    att["wait_ms"] = (att.us - att.ready_us) / 1000
    att["service_us"] = att.us_end - att.us
    sim_us = round(s.sim_time_ms * 1000)

    for _, r in tiers.iterrows():
        name = f"{out}: {r.provider} tier {r.tier_id}"
        a = att[(att.provider == r.provider) & (att.tier == r.tier_id)]
        c.close(r.requests, len(a), f"{name}: requests")
        for col, outcome in [("successes", "success"), ("failures", "failure"), ("timeouts", "timeout"),
                             ("cancelled", "cancelled"), ("rate_limited", "rate_limited")]:
            c.close(r[col], (a.outcome == outcome).sum(), f"{name}: {col}")
        c.close(r.hedges, (a.start_kind == "hedge").sum(), f"{name}: hedges")
        c.close(r.escalations_in, (a.start_kind == "escalated").sum(), f"{name}: escalations_in")
        c.close(r.cost, a.cost.sum(), f"{name}: cost")
        waits = a[a.start_kind != "hedge"].wait_ms
        if len(waits):
            c.close(r.queue_wait_mean_ms, waits.mean(), f"{name}: queue_wait_mean_ms")
            c.close(r.queue_wait_p50_ms, np.percentile(waits, 50), f"{name}: queue_wait_p50_ms")
            c.close(r.queue_wait_p95_ms, np.percentile(waits, 95), f"{name}: queue_wait_p95_ms")
        ok = a[a.outcome == "success"]
        if len(ok):
            c.close(r.service_mean_ms, ok.service_us.mean() / 1000, f"{name}: service_mean_ms")
        busy = a.service_us.sum()
        c.close(r.in_flight_avg, busy / sim_us, f"{name}: in_flight_avg")
        c.close(r.utilization, busy / (r.slots * sim_us), f"{name}: utilization")

    remote_tiers = set(zip(tiers[tiers.kind == "remote"].provider, tiers[tiers.kind == "remote"].tier_id))
    rem = att[[pt in remote_tiers for pt in zip(att.provider, att.tier)]]
    c.close(s.attempts, len(rem), f"{out}: attempts")
    c.close(s.calls, rem.call.nunique(), f"{out}: calls")
    for col, mask in [("hedges", rem.start_kind == "hedge"), ("escalations", rem.start_kind == "escalated"),
                      ("failures", rem.outcome == "failure"), ("timeouts", rem.outcome == "timeout"),
                      ("cancellations", rem.outcome == "cancelled"),
                      ("rate_limited", rem.outcome == "rate_limited"),
                      ("hedge_wins", (rem.start_kind == "hedge") & (rem.outcome == "success"))]:
        c.close(s[col], mask.sum(), f"{out}: {col}")
    waits = rem[rem.start_kind != "hedge"].wait_ms
    c.close(s.queue_wait_mean_ms, waits.mean(), f"{out}: queue_wait_mean_ms")
    c.close(s.queue_wait_p95_ms, np.percentile(waits, 95), f"{out}: queue_wait_p95_ms")
    thrown = rem[rem.outcome.isin(["failure", "timeout", "cancelled"])].service_us.sum() / 1000
    c.close(s.wasted_ms, thrown + s.get("redo_wasted_ms", 0.0), f"{out}: wasted_ms")
    c.close(s.cost_total, t[t.ev == "end"].cost.sum(), f"{out}: cost_total = sum of the trace's costs")
    # A streaming scenario's time to first token and time per output token, from the
    # ends that carry `ttft_ms` (README: Scenario format, `streaming`).
    # A live run of a scenario without streaming measures TTFT itself: then the columns
    # are among those it appends (`live_columns`), and its ends carry none.
    streamed = rem[rem.ttft_ms.notna()]
    c.same(sorted(set(streamed.outcome)), ["success"] if len(streamed) else [], f"{out}: ends with ttft_ms")
    live_columns = json.load(open(f"{out}/summary.json")).get("live_columns", [])
    if "ttft_p50_ms" in s and "ttft_p50_ms" not in live_columns:
        c.close(s.ttft_p50_ms, np.percentile(streamed.ttft_ms, 50), f"{out}: ttft_p50_ms")
        c.close(s.ttft_p95_ms, np.percentile(streamed.ttft_ms, 95), f"{out}: ttft_p95_ms")
        of = output_tokens(json.load(open(f"{out}/scenario.json")))
        tokens = pd.Series([of(ty, int(n)) for ty, n in zip(streamed.node_type, streamed.node)], index=streamed.index)
        many = streamed[tokens > 1]
        tpot = ((many.service_us / 1000 - many.ttft_ms).clip(lower=0) / (tokens[tokens > 1] - 1)).mean()
        c.close(s.tpot_mean_ms, tpot, f"{out}: tpot_mean_ms")
    else:
        c.same(len(streamed), 0, f"{out}: ends with ttft_ms in a run without streaming columns")
    arrive = t[t.ev == "arrive"].set_index("workflow").us
    done = t[t.ev == "workflow_done"].set_index("workflow").us
    c.close(s.in_system_avg, (done - arrive).sum() / sim_us, f"{out}: in_system_avg")
    c.close(s.throughput_wf_per_s, s.completed / (sim_us / 1e6), f"{out}: throughput_wf_per_s")

    per_wf = rem.groupby("workflow")
    for col, series in [("attempts", per_wf.size()),
                        ("hedges_launched", per_wf.start_kind.agg(lambda k: (k == "hedge").sum())),
                        ("escalations", per_wf.start_kind.agg(lambda k: (k == "escalated").sum())),
                        ("cancellations", per_wf.outcome.agg(lambda o: (o == "cancelled").sum())),
                        ("rate_limited", per_wf.outcome.agg(lambda o: (o == "rate_limited").sum())),
                        ("queue_wait_ms", rem[rem.start_kind != "hedge"].groupby("workflow").wait_ms.sum())]:
        want = series.reindex(w.workflow_id, fill_value=0).to_numpy()
        for wid, got, exp in zip(w.workflow_id, w[col], want):
            c.close(got, exp, f"{out}: workflow {wid} {col}")
    for wid, a_ms, f_ms, m_ms in zip(w.workflow_id, w.arrival_ms, w.finish_ms, w.makespan_ms):
        c.close(a_ms, arrive[wid] / 1000, f"{out}: workflow {wid} arrival_ms")
        c.close(f_ms, done[wid] / 1000, f"{out}: workflow {wid} finish_ms")
        c.close(m_ms, (done[wid] - arrive[wid]) / 1000, f"{out}: workflow {wid} makespan_ms")

    extra = ""
    c.same(json.load(open(f"{out}/summary.json"))["output_digest"], output_digest(out), f"{out}: output_digest")
    if os.path.exists(f"{out}/requests.jsonl"):
        req = pd.read_json(f"{out}/requests.jsonl", lines=True)
        req_keys = sorted(zip(req.workflow, req.node, req.provider, req.tier, req.attempt))
        trace_keys = sorted(zip(rem.workflow, rem.node.astype(int), rem.provider, rem.tier.astype(int), rem.attempt))
        c.same(len(req_keys), len(trace_keys), f"{out}: requests.jsonl lines = remote attempts in the trace")
        c.same(req_keys, trace_keys, f"{out}: requests.jsonl attempts = the trace's")
        for _, r in tiers[tiers.kind == "remote"].iterrows():
            name = f"{out}: requests.jsonl {r.provider} tier {r.tier_id}"
            q = req[(req.provider == r.provider) & (req.tier == r.tier_id)]
            c.close(r.requests, len(q), f"{name}: requests")
            for col, outcome in [("successes", "success"), ("failures", "failure"),
                                 ("cancelled", "cancelled"), ("rate_limited", "rate_limited")]:
                c.close(r[col], (q.outcome == outcome).sum(), f"{name}: {col}")
            c.close(r.hedges, (q.role == "hedge").sum(), f"{name}: hedges")
        extra = f", {len(req)} requests"
    return f"{out}: {len(t)} trace events, {len(tiers)} tiers, {len(w)} workflows{extra}"


class Simulations:
    """Runs `simulate` on factory scenarios under given constants, each pair once, two at a
    time, and reads the objective's inputs and the output digest from its files."""

    def __init__(self, binary, policy, work):
        self.binary, self.policy, self.work = binary, policy, work
        self.done = {}

    def _one(self, job):
        seed_id, constants = job
        d = os.path.join(self.work, f"{seed_id}-{abs(hash(constants))}")
        os.makedirs(d, exist_ok=True)
        with open(f"{d}/scenario.json", "w") as f:
            subprocess.run([self.binary, "factory", "create", "--seed-id", str(seed_id)], stdout=f, check=True)
        with open(f"{d}/constants.json", "w") as f:
            f.write(constants)
        subprocess.run([self.binary, "simulate", "--scenario", f"{d}/scenario.json", "--policy", self.policy,
                        "--constants", f"{d}/constants.json", "--quiet", "--out", f"{d}/out"], check=True)
        summary = pd.read_csv(f"{d}/out/summary.csv").iloc[0]
        digest = json.load(open(f"{d}/out/summary.json"))["output_digest"]
        return job, (float(summary.makespan_p95_ms), float(summary.cost_mean), digest)

    def run(self, jobs):
        todo = sorted({j for j in jobs if j not in self.done})
        with ThreadPoolExecutor(max_workers=2) as pool:
            for job, result in pool.map(self._one, todo):
                self.done[job] = result

    def gain(self, objective, run, reference):
        """1 - J, with J the weighted ratios to the reference (README: Tuning constants)."""
        wl, wc = {"balanced": (0.5, 0.5), "latency": (1.0, 0.0), "cost": (0.0, 1.0)}[objective]
        (p95, cost, _), (p95_ref, cost_ref, _) = self.done[run], self.done[reference]

        def ratio(x, r):
            return x / r if r > 0 else (1.0 if x <= 0 else math.inf)
        j = wl * ratio(p95, p95_ref) + wc * ratio(cost, cost_ref)
        return 1 - j if math.isfinite(j) else -1.0


def t_interval(gains):
    """Mean and 95% Student t interval (None with fewer than two values)."""
    x = pd.Series(gains, dtype=float)
    if len(x) < 2:
        return x.mean(), None, None
    h = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return x.mean(), x.mean() - h, x.mean() + h


def constants_json(values):
    return json.dumps(values, sort_keys=True)


def check_ratchet(c, binary, out, work):
    r = json.load(open(f"{out}/ratchet.json"))
    sims = Simulations(binary, r["policy"], work)
    current = {d["constant"]: d["current"] for d in r["decisions"]}
    base = constants_json(current)
    train, validation = r["train_seeds"], r["validation_seeds"]
    jobs = [(k, base) for k in train + validation]
    variant = {}
    for d in r["decisions"]:
        for v, _ in d["train_curve"]:
            variant[(d["constant"], v)] = constants_json({**current, d["constant"]: v})
            jobs += [(k, variant[(d["constant"], v)]) for k in train]
        jobs += [(k, variant[(d["constant"], d["proposed"])]) for k in validation]
    sims.run(jobs)
    proposed_constants = dict(current)
    for d in r["decisions"]:
        name, what = d["constant"], f"{out}: ratchet {d['constant']}"
        curve = []
        for v, got in d["train_curve"]:
            mean = np.mean([sims.gain(r["objective"], (k, variant[(name, v)]), (k, base)) for k in train])
            c.close(got, mean, f"{what}: mean train gain at {v}")
            curve.append((v, mean))
        best_v, best = curve[0]
        for v, m in curve[1:]:
            if m > best:
                best_v, best = v, m  # ties keep the first, as documented
        c.same(d["proposed"], best_v, f"{what}: proposed (the best train value)")
        c.close(d["train_delta"], best, f"{what}: train_delta")
        is_current = best_v == d["current"]
        gains = [sims.gain(r["objective"], (k, variant[(name, best_v)]), (k, base)) for k in validation]
        mean, low, high = (0.0, 0.0, 0.0) if is_current else t_interval(gains)
        c.close(d["validation_delta"], mean, f"{what}: validation_delta")
        c.close(d["validation_ci95"][0], low, f"{what}: validation_ci95 low")
        c.close(d["validation_ci95"][1], high, f"{what}: validation_ci95 high")
        # Cliffs on J = 1 - gain; margin 10% of the swept range (README: ratchet).
        j = [(v, 1 - m) for v, m in curve]
        cliffs = [(a[0], b[0]) for a, b in zip(j, j[1:])
                  if not abs(a[1] - b[1]) / min(a[1], b[1]) <= 0.15]
        c.same([(x["from"], x["to"]) for x in d["cliffs"]], cliffs, f"{what}: cliffs")
        values = [v for v, _ in curve]
        margin = 0.1 * (max(values) - min(values))
        c.close(d["margin_required"], margin, f"{what}: margin_required")
        distance = min((min(abs(best_v - a), abs(best_v - b)) for a, b in cliffs), default=None)
        c.close(d["cliff_distance"], distance, f"{what}: cliff_distance")
        if all(abs(m) < 0.005 for _, m in curve) and abs(mean) < 0.005:
            action = "no_sensitivity"
        elif is_current or (distance is not None and distance < margin):
            action = "reject"
        else:
            action = "accept" if mean > r["threshold"] and low is not None and low > 0 else "reject"
        c.same(d["action"], action, f"{what}: action")
        if action == "accept":
            proposed_constants[name] = best_v
    c.same(r["proposed_constants"] | proposed_constants, r["proposed_constants"],
           f"{out}: proposed_constants hold the accepted values")
    written = json.load(open(f"{out}/proposed_constants.json"))
    c.same({k: written[k] for k in proposed_constants}, proposed_constants, f"{out}: proposed_constants.json")
    return f"{out}: ratchet of {len(r['decisions'])} constants, {len(train)} train / {len(validation)} " \
           f"validation scenarios, {len(sims.done)} simulations"


def check_eval(c, binary, report, candidate, baseline, work):
    e = json.load(open(report))
    defaults = {k: v["default"] for k, v in json.loads(subprocess.run(
        [binary, "constants", "--json"], capture_output=True, check=True).stdout).items()}
    base = constants_json(defaults | (json.load(open(baseline)) if baseline else {}))
    cand = constants_json(defaults | json.load(open(candidate)))
    ids = [int(b["name"].removeprefix("factory_")) for b in e["benchmarks"]]
    sims = Simulations(binary, e["policy"], work)
    sims.run([(k, base) for k in ids] + [(k, cand) for k in ids])
    gains = []
    for k, b in zip(ids, e["benchmarks"]):
        g = sims.gain(e["objective"], (k, cand), (k, base))
        gains.append(g)
        c.close(b["perf_gain"], g, f"{report}: {b['name']} perf_gain")
        c.close(b["score"], g, f"{report}: {b['name']} score")
        c.same(b["output_changed"], sims.done[(k, cand)][2] != sims.done[(k, base)][2],
               f"{report}: {b['name']} output_changed")
    mean, low, _ = t_interval(gains)
    c.close(e["mean_gain"], mean, f"{report}: mean_gain")
    # One scenario regressing by more than 5% vetoes: the score is then 0.
    score = 0.0 if any(g < -0.05 for g in gains) else low
    c.close(e["aggregate_score"], score, f"{report}: aggregate_score")
    c.same(e["is_acceptable"], score is not None and score > 0, f"{report}: is_acceptable")
    return f"{report}: eval on {len(ids)} validation scenarios, {len(sims.done)} simulations"


def within_margin(a, b, margin):
    return abs(a - b) <= margin * max(abs(a), abs(b))


def welch_differ(a, b):
    """Means differ at 95% by Welch's t test, degrees of freedom rounded down; with fewer
    than three runs a side the margin alone decides (README: fidelity)."""
    if len(a) < 3 or len(b) < 3:
        return True
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    if va + vb == 0:
        return a.mean() != b.mean()
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return abs(a.mean() - b.mean()) > stats.t.ppf(0.975, max(1, math.floor(df))) * math.sqrt(va + vb)


def check_fidelity(c, sim_exp, live_exp, report):
    f = json.load(open(report))
    margin = f["tolerances"]["tie_margin"]

    def side(exp):
        runs = pd.read_csv(f"{exp}/aggregate/runs.csv", dtype=str, keep_default_na=False)
        agg = json.load(open(f"{exp}/aggregate/sweep_aggregate.json"))
        ok = runs[runs.exit_code == "0"]
        out = {}
        for conf in agg["configurations"]:
            key = tuple(sorted((k, v) for k, v in conf["config"].items() if k != "time_scale"))
            out[key] = (conf["label"], configuration_runs(ok, conf["config"]))
        return out
    sim, live = side(sim_exp), side(live_exp)
    # In the report's order: exact ties in a ranking keep it.
    position = {x["label"]: i for i, x in enumerate(f["configurations"])}
    keys = sorted(set(sim) & set(live), key=lambda k: position.get(sim[k][0], len(position)))
    c.same(sorted(x["label"] for x in f["configurations"]), sorted(sim[k][0] for k in keys),
           f"{report}: matched configurations")
    by_label = {x["label"]: x for x in f["configurations"]}
    mapes = []
    for k in keys:
        label, s_runs, l_runs = sim[k][0], sim[k][1], live[k][1]
        errors = []
        for m in f["headline"]:
            got = next(x for x in by_label[label]["metrics"] if x["metric"] == m)
            sv, lv = s_runs[m].astype(float).mean(), l_runs[m].astype(float).mean()
            c.close(got["simulated"], sv, f"{label}: {m} simulated mean")
            c.close(got["live"], lv, f"{label}: {m} live mean")
            c.close(got["rel_error"], (lv - sv) / abs(sv), f"{label}: {m} rel_error")
            errors.append(abs((lv - sv) / abs(sv)))
        mapes.append(np.mean(errors))
        c.close(by_label[label]["mape"], mapes[-1], f"{label}: MAPE")
    c.close(f["mape"], np.mean(mapes), f"{report}: mean MAPE")

    for r in f["rankings"]:
        o = r["objective"]
        higher = o.startswith("throughput")
        labels = [sim[k][0] for k in keys]
        s_runs = [sim[k][1][o].astype(float) for k in keys]
        xs = [x.mean() for x in s_runs]
        ys = [live[k][1][o].astype(float).mean() for k in keys]
        n = len(keys)

        def order(v):
            return sorted(range(n), key=lambda i: (-v[i] if higher else v[i], i))
        sim_order = order(xs)
        c.same(r["simulated_order"], [labels[i] for i in sim_order], f"{report} {o}: simulated order")
        c.same(r["live_order"], [labels[i] for i in order(ys)], f"{report} {o}: live order")
        sim_rank = {i: pos for pos, i in enumerate(sim_order)}

        def sim_tied(i, j):
            return within_margin(xs[i], xs[j], margin) or not welch_differ(s_runs[i], s_runs[j])
        ties, reversed_, conc, disc, tx, ty = set(), set(), 0, 0, 0, 0
        for i in range(n):
            for j in range(i + 1, n):
                first, second = (i, j) if sim_rank[i] < sim_rank[j] else (j, i)
                if sim_tied(i, j):
                    ties.add((labels[first], labels[second]))
                    continue
                if not (ys[first] > ys[second] if higher else ys[first] < ys[second]):
                    reversed_.add((labels[first], labels[second]))
                dx = np.sign(xs[i] - xs[j])
                dy = 0 if within_margin(ys[i], ys[j], margin) else np.sign(ys[i] - ys[j])
                if dx == 0 and dy == 0:
                    continue
                if dx == 0:
                    tx += 1
                elif dy == 0:
                    ty += 1
                elif dx == dy:
                    conc += 1
                else:
                    disc += 1
        nx, ny = conc + disc + tx, conc + disc + ty
        tau = (conc - disc) / math.sqrt(nx * ny) if nx and ny else None
        c.close(r["kendall_tau"], tau, f"{report} {o}: Kendall tau-b over the pairs the simulation separates")
        c.same(sorted(map(tuple, r["simulated_ties"])), sorted(ties), f"{report} {o}: simulated ties")
        c.same(sorted(map(tuple, r["reversed_pairs"])), sorted(reversed_), f"{report} {o}: reversed pairs")
        if margin == 0 and all(len(x) < 3 for x in s_runs):
            # No ties: the plain tau-b of the configuration means, as scipy computes it.
            c.close(r["kendall_tau"], stats.kendalltau(xs, ys).statistic, f"{report} {o}: scipy kendalltau")
    return f"{report}: {len(keys)} configurations matched, {len(f['rankings'])} rankings"


def check_fidelity_run(c, live_dir, sim_dir, report):
    f = json.load(open(report))
    tol = f["tolerances"]
    sides = {}
    for name, d in (("simulated", sim_dir), ("live", live_dir)):
        sides[name] = (pd.read_csv(f"{d}/summary.csv").iloc[0], pd.read_csv(f"{d}/tiers.csv"))

    def value(name, scope, metric):
        summary, tiers = sides[name]
        if scope == "run":
            return float(summary[metric])
        kind, where = scope.split(" ", 1)
        provider, tier = (where.rsplit("/", 1) + ["0"])[:2] if kind == "tier" else (where, "0")
        row = tiers[(tiers.provider == provider) & (tiers.tier_id == int(tier))]
        c.same(len(row), 1, f"{report}: one tiers.csv row for {scope}")
        return float(row.iloc[0][metric])
    headline = []
    for m in f["metrics"]:
        what = f"{report}: {m['scope']} {m['metric']}"
        sv, lv = value("simulated", m["scope"], m["metric"]), value("live", m["scope"], m["metric"])
        c.close(m["simulated"], sv, f"{what} simulated")
        c.close(m["live"], lv, f"{what} live")
        # Equal values are no error, even at zero; a change from zero has no relative size.
        rel = 0.0 if sv == lv else ((lv - sv) / abs(sv) if sv != 0 else None)
        c.close(m["rel_error"], rel, f"{what} rel_error")
        c.same(m["headline"], m["scope"] == "run" and m["metric"] in f["headline"], f"{what} headline")
        if m["headline"]:
            headline.append(rel)
    mape = np.mean([abs(r) for r in headline]) if all(r is not None for r in headline) else None
    c.close(f["mape"], mape, f"{report}: MAPE over the headline metrics")
    ok = mape is not None and mape <= tol["max_mape"] and all(abs(r) <= tol["max_error"] for r in headline)
    c.same(f["pass"], ok, f"{report}: verdict")
    return f"{report}: {len(f['metrics'])} metrics of {live_dir} against {sim_dir}"


USAGE = __doc__


def main(argv):
    mode, args = (argv[1], argv[2:]) if len(argv) > 2 else (None, [])
    arity = {"sweep": (1, None), "run": (1, None), "ratchet": (2, 2), "eval": (3, 4), "fidelity": (3, 3),
             "fidelity-run": (3, 3)}
    if mode not in arity or len(args) < arity[mode][0] or (arity[mode][1] and len(args) > arity[mode][1]):
        print(USAGE, file=sys.stderr)
        return 2
    c = Checker()
    if mode in ("sweep", "run"):
        for d in args:
            print((check_sweep if mode == "sweep" else check_run)(c, d.rstrip("/")))
    elif mode == "fidelity":
        print(check_fidelity(c, args[0].rstrip("/"), args[1].rstrip("/"), args[2]))
    elif mode == "fidelity-run":
        print(check_fidelity_run(c, args[0].rstrip("/"), args[1].rstrip("/"), args[2]))
    else:
        binary = os.path.realpath(args[0])
        with tempfile.TemporaryDirectory() as work:
            if mode == "ratchet":
                print(check_ratchet(c, binary, args[1].rstrip("/"), work))
            else:
                print(check_eval(c, binary, args[1], args[2], args[3] if len(args) > 3 else None, work))
    for m in c.mismatches[:50]:
        print("MISMATCH", m if len(m) <= 400 else m[:400] + " ...")
    print(f"{c.checked} values checked, {len(c.mismatches)} differ")
    return 1 if c.mismatches else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
