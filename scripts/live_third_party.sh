#!/usr/bin/env bash
# Live runs of the research agent against third-party OpenAI-compatible servers from PyPI,
# each started here on 127.0.0.1 and stopped by PID:
#   - llmock 0.2.2: every tier; then again with 20% injected 429s (retry-after honoured);
#   - stubllm 0.1.5: every tier (fixture-free answers, streams without usage: a no_usage warning);
#   - guidellm 0.8.1's mock server for the llm tiers (TTFT and inter-token gaps), stubllm for
#     the embeddings (guidellm serves none).
# Checks: every workflow completes, one requests.jsonl line per attempt, no error kinds
# except the injected ones; guidellm's 16-token answers are warned of as short, stubllm's
# answers without usage as unmetered.  Usage: scripts/live_third_party.sh [BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/agentsched}
CACHE=${LIVE_SERVERS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/agentsched-live-servers}
WORK=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

venv() { # NAME SPEC -> path of a virtualenv with SPEC installed
  local v="$CACHE/venv-$1"
  if [ ! -f "$v/.installed" ]; then
    mkdir -p "$CACHE"; python3 -m venv "$v" >&2
    "$v/bin/pip" install -q --disable-pip-version-check "$2" >&2
    touch "$v/.installed"
  fi
  echo "$v"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_up() { # URL: up to 60 s
  for _ in $(seq 1 120); do
    curl -fsS -m 2 "$1/models" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  echo "server at $1 did not come up"; return 1
}

endpoints() { # BASE_URL MODEL -> endpoints.json for every tier of the default scenario
  python3 - "$1" "$2" <<'EOF'
import json, sys
base, model = sys.argv[1], sys.argv[2]
tier = {"base_url": base, "model": model, "models": {"small": model + "-small"}}
embed = {"base_url": base, "model": "text-embedding-3-small"}
print(json.dumps({"providers": {"llm_provider": [tier, tier], "embed_provider": [embed, embed]}}))
EOF
}

check() { # OUT_DIR WORKFLOWS ALLOWED_ERRORS_REGEX
  python3 - "$@" <<'EOF'
import csv, json, re, sys
out, n, allowed = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = next(csv.DictReader(open(f"{out}/summary.csv")))
lines = [json.loads(l) for l in open(f"{out}/requests.jsonl")]
assert int(s["completed"]) == n, f"{out}: completed {s['completed']} of {n}"
assert len(lines) == int(s["attempts"]), f"{out}: {len(lines)} request lines, {s['attempts']} attempts"
errors = sorted({l["error"] for l in lines if l["error"]})
bad = [e for e in errors if not re.fullmatch(allowed, e)]
assert not bad, f"{out}: unexpected errors {bad}"
print(f"{out}: {n} workflows, {len(lines)} attempts, 429s {s['http_429']}, "
      f"makespan p50 {float(s['makespan_p50_ms']):.0f} ms, ttft p50 {s['ttft_p50_ms']} ms, errors {errors}")
EOF
}

run() { # ENDPOINTS OUT TIME_SCALE [extra flags]
  local ep=$1 out=$2 scale=$3; shift 3
  timeout 300 "$BIN" live run --endpoints "$ep" --workflows 4 --pdfs 2 --subqueries 2 \
    --time-scale "$scale" --quiet --out "$out" "$@"
}

echo "== llmock 0.2.2"
V=$(venv llmock "llmock==0.2.2")
P=$(free_port)
"$V/bin/llmock" serve --host 127.0.0.1 --port "$P" --log-level warning --latency-ms 5 > "$WORK/llmock.log" 2>&1 &
pids+=($!)
wait_up "http://127.0.0.1:$P/v1"
endpoints "http://127.0.0.1:$P/v1" gpt-4o-mini > "$WORK/llmock.json"
run "$WORK/llmock.json" "$WORK/llmock" 20
check "$WORK/llmock" 4 '^$'
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true

echo "== llmock 0.2.2 with 20% 429s"
P=$(free_port)
"$V/bin/llmock" serve --host 127.0.0.1 --port "$P" --log-level warning --latency-ms 5 --error-rate-429 0.2 > "$WORK/llmock429.log" 2>&1 &
pids+=($!)
wait_up "http://127.0.0.1:$P/v1"
endpoints "http://127.0.0.1:$P/v1" gpt-4o-mini > "$WORK/llmock429.json"
run "$WORK/llmock429.json" "$WORK/llmock429" 20 --policy fifo_cheapest
check "$WORK/llmock429" 4 'rate_limited'
python3 -c "import csv,sys; s=next(csv.DictReader(open('$WORK/llmock429/summary.csv'))); assert int(s['rate_limited'])>0, 'no 429 seen'"
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true

echo "== stubllm 0.1.5"
V=$(venv stubllm "stubllm==0.1.5")
P=$(free_port)
"$V/bin/stubllm" serve --host 127.0.0.1 --port "$P" --log-level warning > "$WORK/stub.log" 2>&1 &
pids+=($!)
wait_up "http://127.0.0.1:$P/v1"
endpoints "http://127.0.0.1:$P/v1" gpt-4o > "$WORK/stub.json"
# stubllm paces its stream (20 ms a chunk): a small time scale keeps the tiers' timeouts above that.
run "$WORK/stub.json" "$WORK/stub" 4
check "$WORK/stub" 4 '^$'
# Its streams carry no usage chunk: the run warns that the llm tiers' costs are estimates.
python3 -c "import json; w=json.load(open('$WORK/stub/summary.json')).get('no_usage', []); assert any(x.startswith('llm_provider tier ') and 'reported no token usage' in x for x in w), w"
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
echo "== guidellm 0.8.1 mock-server (llm tiers: TTFT 20 ms, ITL 1 ms) + stubllm (embeddings)"
# guidellm without torch (368 MB instead of 5.9 GB): --no-deps plus its light dependencies.
G="$CACHE/venv-guidellm"
if [ ! -f "$G/.installed" ]; then
  python3 -m venv "$G" >&2
  "$G/bin/pip" install -q --disable-pip-version-check --no-deps "guidellm==0.8.1" >&2
  "$G/bin/pip" install -q --disable-pip-version-check "click~=8.4.0" "culsans~=0.10.0" eval_type_backport faker ftfy \
    httpx loguru more-itertools msgpack numpy protobuf pydantic pydantic-settings pyyaml rich sanic \
    tabulate transformers typing-extensions uvloop websockets >&2
  touch "$G/.installed"
fi
PG=$(free_port); PS=$(free_port)
"$G/bin/guidellm" mock-server --host 127.0.0.1 --port "$PG" --workers 1 --model mock-model \
  --ttft-ms 20 --itl-ms 1 --output-tokens 16 > "$WORK/guidellm.log" 2>&1 &
pids+=($!)
"$V/bin/stubllm" serve --host 127.0.0.1 --port "$PS" --log-level warning > "$WORK/stub2.log" 2>&1 &
pids+=($!)
wait_up "http://127.0.0.1:$PG/v1"
wait_up "http://127.0.0.1:$PS/v1"
python3 - "http://127.0.0.1:$PG/v1" "http://127.0.0.1:$PS/v1" > "$WORK/guidellm.json" <<'EOF'
import json, sys
llm = {"base_url": sys.argv[1], "model": "mock-model"}
embed = {"base_url": sys.argv[2], "model": "text-embedding-3-small"}
print(json.dumps({"providers": {"llm_provider": [llm, llm], "embed_provider": [embed, embed]}}))
EOF
run "$WORK/guidellm.json" "$WORK/guidellm" 4
check "$WORK/guidellm" 4 '^$'
# guidellm paces real token timings: the first token comes after its TTFT (20 ms = 80 scenario ms at N = 4).
python3 -c "import csv; s=next(csv.DictReader(open('$WORK/guidellm/summary.csv'))); t=float(s['ttft_p50_ms']); assert t >= 72, t"
# It answers 16 tokens where ExtractEvidence asks for 150 and DecideNext for 50: the run warns
# of answers that stopped short, naming the llm tiers.
python3 -c "import json; w=json.load(open('$WORK/guidellm/summary.json')).get('short_answers', []); assert any(x.startswith('llm_provider tier ') and 'stopped short' in x for x in w), w"
echo "live runs against third-party servers: ok"
