#!/usr/bin/env bash
# Live vs simulated on the default research-agent scenario, over several seeds: for each seed the
# emulator on 127.0.0.1 (stopped by PID), `live run` against it and `simulate` of the same scenario
# and seed. Prints each seed's relative errors and those of the means over the seeds; exits 1 if
# the mean makespan p50 or p95 is off by more than TOL percent.
# (One seed alone is chaotic: in the simulator itself, scaling one tier's latency by 1.001 moves
# this scenario's p95 by up to 11%. Compare means over seeds.)
# Usage: scripts/live_agreement.sh [BINARY] [TIME_SCALE=25] [TOL=5] [SEEDS="1 2 3 4"] [WORKFLOWS=50]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${1:-target/release/agentsched}"); TS=${2:-25}; TOL=${3:-5}; SEEDS=${4:-1 2 3 4}; WF=${5:-50}
D=$(mktemp -d); EP=
trap '[ -n "$EP" ] && kill "$EP" 2>/dev/null; rm -rf "$D"' EXIT
cd "$D"
for seed in $SEEDS; do
  rm -f ep.json
  "$BIN" emulate --workflows "$WF" --seed "$seed" --time-scale "$TS" --write-endpoints ep.json > emulator.log 2>&1 &
  EP=$!
  for _ in $(seq 1 50); do [ -f ep.json ] && break; sleep 0.1; done
  timeout 300 "$BIN" live run --endpoints ep.json --workflows "$WF" --seed "$seed" --time-scale "$TS" --out "live$seed" --quiet
  kill "$EP"; wait "$EP" 2>/dev/null || true; EP=
  "$BIN" simulate --workflows "$WF" --seed "$seed" --out "sim$seed" --quiet
done
python3 - "$TS" "$TOL" $SEEDS <<'PY'
import csv, sys
ts, tol, seeds = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
keys = ["makespan_p50_ms", "makespan_p95_ms", "cost_mean"]
row = lambda p: next(csv.DictReader(open(p)))
live = {s: row(f"live{s}/summary.csv") for s in seeds}
sim = {s: row(f"sim{s}/summary.csv") for s in seeds}
for s in seeds:
    print(f"seed {s}: " + ", ".join(f"{k} {100 * (float(live[s][k]) / float(sim[s][k]) - 1):+.1f}%" for k in keys))
mean = lambda d, k: sum(float(d[s][k]) for s in seeds) / len(seeds)
err = {k: 100 * (mean(live, k) / mean(sim, k) - 1) for k in keys}
print(f"live vs simulate at --time-scale {ts}, mean over seeds {' '.join(seeds)}: "
      + ", ".join(f"{k} {v:+.1f}%" for k, v in err.items()))
bad = [k for k in keys[:2] if abs(err[k]) > tol]
if bad:
    sys.exit(f"off by more than {tol}%: {bad}")
PY
