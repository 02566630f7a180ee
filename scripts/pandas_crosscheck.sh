#!/usr/bin/env bash
# Our numbers, recomputed with pandas/numpy/scipy (from PyPI, pinned) from the README's
# definitions by scripts/pandas_crosscheck.py, which shares no code with the crate:
#   - sweeps: the default experiment; a numeric matrix (tier-1 slots x policies x workflows,
#     5 seeds, two ablations); one seed per configuration (no spread, null intervals); one whose
#     runs partly fail. Each run's summary against its workflows.csv, runs.csv against the
#     summaries, and sweep_aggregate.json (stats, t intervals, Pareto, best, paired, Spearman).
#   - runs written with --trace: every policy, heavy tails, model routing (redos), streaming,
#     provider-enforced 429s, fork-join, M/M/8, a live run against the emulator on
#     127.0.0.1 (stopped by PID) and a streaming one in process: tiers.csv, the summary and
#     workflows.csv against trace.json, requests.jsonl against the trace, each output_digest.
#   - ratchets (defaults; poor constants, so that one is accepted; the latency objective) and
#     evals (acceptable; vetoed), against `simulate` runs of the factory scenarios.
#   - `fidelity --sim-exp --live-exp` reports (means, errors, MAPE, orders, ties, tau), and
#     `fidelity --live` of the live run against a simulation of its scenario.
# Then shows the check has teeth: one number changed in a copy of a run, of an aggregate,
# of a ratchet and of a report must each be reported. Usage: scripts/pandas_crosscheck.sh [BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${1:-target/release/agentsched}")
CHECK=$(realpath scripts/pandas_crosscheck.py)
SCENARIOS=$(realpath scenarios)
CACHE=${PANDAS_VENV_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/agentsched-pandas}
WORK=$(mktemp -d); EMU=
trap '[ -n "$EMU" ] && kill "$EMU" 2>/dev/null; rm -rf "$WORK"' EXIT

V="$CACHE/venv"
if [ ! -f "$V/.installed" ]; then
  mkdir -p "$CACHE"; python3 -m venv "$V"
  "$V/bin/pip" install -q --disable-pip-version-check "pandas==3.1.1" "numpy==2.4.6" "scipy==1.17.1"
  touch "$V/.installed"
fi
PY="$V/bin/python"
cd "$WORK"

echo "== sweeps"
cat > numeric.json <<'EOF'
{"name": "numeric", "common_args": {"iters": 2, "subqueries": 3, "pdfs": 4},
 "matrix": {"providers.llm_provider.tiers.1.slots": [1, 2, 4, 8], "policy": ["fifo_cheapest", "full"],
            "workflows": [10, 30], "seeds": [1, 2, 3, 4, 5],
            "ablations": [{"name": "baseline", "flags": []}, {"name": "no_hedge", "flags": ["--disable_hedging"]}]}}
EOF
cat > one_seed.json <<'EOF'
{"name": "one_seed", "common_args": {"iters": 1, "pdfs": 3},
 "matrix": {"workflows": [5, 20], "policy": ["dag_cheapest", "dag_escalation"], "seeds": [7],
            "ablations": [{"name": "baseline", "flags": []}, {"name": "no_escalation", "flags": ["--disable_escalation"]}]}}
EOF
cat > partly_failing.json <<'EOF'
{"name": "partly_failing", "common_args": {"iters": 1},
 "matrix": {"pdfs": [0, 2], "workflows": [3, 5], "policy": ["full", "fifo_cheapest"], "seeds": [1, 2]}}
EOF
"$BIN" sweep --out-root sweeps --quiet
for c in numeric one_seed; do "$BIN" sweep --config $c.json --out-root sweeps --report --quiet; done
# pdfs = 0 is refused by the scenario check: those runs fail (exit 1), the rest aggregate.
rc=0; "$BIN" sweep --config partly_failing.json --out-root sweeps --report --quiet 2>/dev/null || rc=$?
[ "$rc" -eq 1 ] || { echo "partly_failing: sweep exited $rc, expected 1 (some runs fail)"; exit 1; }
"$BIN" collect --exp-dir sweeps/default > /dev/null
"$PY" "$CHECK" sweep sweeps/default sweeps/numeric sweeps/one_seed sweeps/partly_failing

echo "== runs with --trace (simulated and live)"
sim() { local out=$1; shift; "$BIN" simulate "$@" --trace --quiet --out "runs/$out"; }
for p in fifo_cheapest dag_cheapest dag_escalation full; do sim "$p" --policy "$p" --workflows 30; done
sim routing --policy full --enable-model-routing --workflows 30
sim heavy_tail --policy dag_escalation --workflows 40 --heavy-tail-prob 0.1
sim streaming --scenario "$SCENARIOS/streaming.json" --workflows 30
sim rate_limited --scenario "$SCENARIOS/dag_example.json" --workflows 1000
sim fork_join --scenario "$SCENARIOS/fork_join.json" --workflows 500
sim mmc --scenario "$SCENARIOS/mmc.json" --workflows 5000
"$BIN" emulate --time-scale 50 --write-endpoints ep.json > emulator.log 2>&1 &
EMU=$!
for _ in $(seq 1 50); do [ -f ep.json ] && break; sleep 0.1; done
timeout 120 "$BIN" live run --endpoints ep.json --time-scale 50 --workflows 10 --trace --quiet --out runs/live
kill "$EMU"; wait "$EMU" 2>/dev/null || true; EMU=
# A streaming scenario live (the provider model in process): its digest leaves out fewer
# columns, since the simulator writes TTFT columns of its own.
timeout 120 "$BIN" live run --in-process --scenario "$SCENARIOS/streaming.json" --time-scale 1000 --workflows 10 --trace --quiet --out runs/live_streaming
"$PY" "$CHECK" run runs/*

echo "== ratchet and eval, against simulate runs of the factory scenarios"
# Poor starting constants, so that the ratchet accepts a change (routing_threshold).
echo '{"max_in_flight": 4, "hedge_stretch": 5.0, "escalation_threshold_s": 20.0, "routing_threshold": 0.0}' > poor.json
echo '{"max_in_flight": 1}' > starved.json
"$BIN" ratchet --n-seeds 10 --out ratchet_default > /dev/null
"$BIN" ratchet --n-seeds 20 --constants poor.json --out ratchet_poor > /dev/null
"$BIN" ratchet --n-seeds 16 --objective latency --out ratchet_latency > /dev/null
grep -q '"action": "accept"' ratchet_poor/ratchet.json || { echo "ratchet_poor accepted nothing: the accept path went unchecked"; exit 1; }
for r in ratchet_default ratchet_poor ratchet_latency; do "$PY" "$CHECK" ratchet "$BIN" "$r"; done
"$BIN" eval --candidate ratchet_poor/proposed_constants.json --baseline poor.json --n-seeds 20 --report eval_ok.json > /dev/null
rc=0; "$BIN" eval --candidate starved.json --n-seeds 20 --report eval_veto.json > /dev/null || rc=$?
[ "$rc" -eq 1 ] || { echo "eval of starved.json exited $rc, expected 1 (a regression vetoes)"; exit 1; }
"$PY" "$CHECK" eval "$BIN" eval_ok.json ratchet_poor/proposed_constants.json poor.json
"$PY" "$CHECK" eval "$BIN" eval_veto.json starved.json

echo "== fidelity of two experiments (rankings, ties, Kendall's tau)"
# The comparison's arithmetic does not depend on where the runs came from: two simulated
# sweeps of one matrix on other seeds stand in for live (3 seeds a side: margin and Welch's
# t decide the ties; 2 seeds and no margin: plain tau-b, as scipy's kendalltau).
"$PY" - "$SCENARIOS/default.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
for name, seeds in [("other_seeds", [4, 5, 6]), ("two_a", [1, 2]), ("two_b", [3, 4])]:
    d["name"], d["matrix"]["seeds"] = name, seeds
    json.dump(d, open(f"{name}.json", "w"))
EOF
for c in other_seeds two_a two_b; do "$BIN" sweep --config $c.json --out-root sweeps --quiet; "$BIN" collect --exp-dir sweeps/$c > /dev/null; done
verdict() { # a fidelity verdict may pass (0) or fail (1); anything else is an error
  local rc=0; "$@" > /dev/null || rc=$?
  [ "$rc" -le 1 ] || { echo "$* exited $rc"; exit 1; }
}
verdict "$BIN" fidelity --sim-exp sweeps/default --live-exp sweeps/other_seeds --json fidelity3.json
verdict "$BIN" fidelity --sim-exp sweeps/two_a --live-exp sweeps/two_b --tie-margin 0 --json fidelity2.json
"$PY" "$CHECK" fidelity sweeps/default sweeps/other_seeds fidelity3.json
"$PY" "$CHECK" fidelity sweeps/two_a sweeps/two_b fidelity2.json
# And the live run above against a simulation of its scenario.
"$BIN" simulate --scenario runs/live/scenario.json --quiet --out live_simulated
verdict "$BIN" fidelity --live runs/live --sim live_simulated --json fidelity_run.json
"$PY" "$CHECK" fidelity-run runs/live live_simulated fidelity_run.json

echo "== the check has teeth: a changed number is reported"
cp -r runs/full broken_run
sed -i '2s/^\([^,]*,[^,]*,[^,]*,[^,]*,[^,]*,[^,]*,[^,]*,\)\([0-9]*\)/\1999999/' broken_run/tiers.csv
cp -r sweeps/numeric broken_sweep
"$PY" - broken_sweep/aggregate/sweep_aggregate.json <<'EOF'
import json, sys
p = sys.argv[1]; d = json.load(open(p))
d["configurations"][0]["metrics"]["makespan_p95_ms"]["ci95_high"] *= 1.000001
json.dump(d, open(p, "w"))
EOF
cp -r ratchet_poor broken_ratchet
"$PY" - broken_ratchet/ratchet.json <<'EOF'
import json, sys
p = sys.argv[1]; d = json.load(open(p))
d["decisions"][0]["train_curve"][1][1] += 1e-6
json.dump(d, open(p, "w"))
EOF
cp -r sweeps/numeric broken_report
"$PY" - broken_report/report/index.html <<'EOF'
import re, sys
p = sys.argv[1]; html = open(p).read()
at = html.index("Configurations (across seeds)")
# The first configuration's p50 mean (its third cell), one more in its last shown digit.
m = list(re.finditer(r"<td>([^<]*)</td>", html[at:]))[2]
text = m.group(1)
bumped = text[:-1] + str((int(text[-1]) + 1) % 10)
html = html[:at + m.start(1)] + bumped + html[at + m.end(1):]
open(p, "w").write(html)
EOF
for args in "run broken_run" "sweep broken_sweep" "ratchet $BIN broken_ratchet" "sweep broken_report"; do
  rc=0; "$PY" "$CHECK" $args > teeth.log || rc=$?
  grep -q MISMATCH teeth.log && [ "$rc" -eq 1 ] || { cat teeth.log; echo "a changed number in $args went unreported"; exit 1; }
  echo "$args: $(grep -c MISMATCH teeth.log) difference(s) reported, as expected: $(grep -m1 MISMATCH teeth.log)"
done
echo "pandas cross-check passed"
