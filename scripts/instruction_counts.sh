#!/usr/bin/env bash
# Instructions (cachegrind's I refs) of the core models that the README's table lists,
# for one build of `examples/one_run`, or for two side by side with the change.
#
#   scripts/instruction_counts.sh                      # target/release/examples/one_run
#   scripts/instruction_counts.sh OLD_ONE_RUN NEW_ONE_RUN
#
# Build with `cargo build --release --example one_run`; keep a copy of the binary
# before a change (cp target/release/examples/one_run /tmp/one_run.before).
# Counts do not drift with the machine's load as times do, so a change on the
# event loop's path gets counted before it lands: LLVM's inlining there moves
# whole percents on small edits (docs/performance.md, session 38).
# Needs valgrind; not run by CI. About ten seconds a binary here.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v valgrind >/dev/null || { echo "instruction_counts.sh: needs valgrind" >&2; exit 3; }
if [ $# -gt 2 ]; then
  echo "usage: $0 [ONE_RUN | OLD_ONE_RUN NEW_ONE_RUN]" >&2
  exit 2
fi
bins=("$@")
[ ${#bins[@]} -gt 0 ] || bins=(target/release/examples/one_run)
for b in "${bins[@]}"; do
  [ -x "$b" ] || { echo "instruction_counts.sh: $b: not an executable (build it with cargo build --release --example one_run)" >&2; exit 2; }
done

models=("research 1000 full" "research 1000 dag_escalation" "research 1000 fifo_cheapest"
  "mmc 200000" "fork_join 20000")

# count BIN ARGS...: the run's instructions, or the reason it failed.
count() {
  local bin=$1 out
  shift
  out=$(valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null "$bin" "$@" 2>&1) || {
    echo "instruction_counts.sh: $bin $*: failed:" >&2
    echo "$out" | tail -5 >&2
    exit 4
  }
  echo "$out" | awk '/I *refs/ { gsub(",", "", $NF); print $NF }'
}

if [ ${#bins[@]} -eq 1 ]; then
  printf '%-30s %15s\n' model instructions
  for m in "${models[@]}"; do
    # shellcheck disable=SC2086 # a model is its words
    printf '%-30s %15s\n' "$m" "$(count "${bins[0]}" $m)"
  done
else
  printf '%-30s %15s %15s %8s\n' model old new change
  for m in "${models[@]}"; do
    # shellcheck disable=SC2086
    old=$(count "${bins[0]}" $m)
    # shellcheck disable=SC2086
    new=$(count "${bins[1]}" $m)
    printf '%-30s %15s %15s %8s\n' "$m" "$old" "$new" \
      "$(awk -v o="$old" -v n="$new" 'BEGIN { printf "%+.2f%%", (n - o) / o * 100 }')"
  done
fi
