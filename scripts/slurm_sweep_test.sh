#!/usr/bin/env bash
# Sharded sweeps on a real Slurm cluster: installs Debian's Slurm + munge, starts a
# single-node cluster on 127.0.0.1 (private munged, configs and state under one
# temporary directory, nothing in /etc), runs an experiment as a 4-task job array
# (`--shard $SLURM_ARRAY_TASK_ID/4`, all tasks into one directory), collects it, and
# checks that runs.csv, sweep_aggregate.{json,csv} and sweep_trends.csv equal a single-machine sweep's
# except the timing columns. Stops every daemon it started, by PID, pass or fail.
#
# Usage: scripts/slurm_sweep_test.sh BIN [CONFIG] [SHARDS]
#   BIN     the agentsched binary (e.g. target/release/agentsched)
#   CONFIG  experiment config          [scenarios/default.json]
#   SHARDS  job array size             [4]
# Env: SLURM_TEST_CTLD_PORT/SLURM_TEST_SLURMD_PORT [6817/6818], SLURM_TEST_TIMEOUT [180],
#      SLURM_TEST_KEEP=1 keeps the work directory (logs, outputs).
# Needs root (slurmd runs jobs as root here) and apt access to Debian's packages.
set -euo pipefail

BIN=$(realpath "${1:?usage: $0 BIN [CONFIG] [SHARDS]}")
CONFIG=$(realpath "${2:-scenarios/default.json}")
SHARDS=${3:-4}
CTLD_PORT=${SLURM_TEST_CTLD_PORT:-6817}
SLURMD_PORT=${SLURM_TEST_SLURMD_PORT:-6818}
TIMEOUT=${SLURM_TEST_TIMEOUT:-180}
PKGS=(slurmctld slurmd slurm-client munge)

log() { printf '[slurm-test %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }
[ "$(id -u)" -eq 0 ] || die "must run as root (slurmd runs the jobs)"
[ -x "$BIN" ] || die "$BIN is not an executable"

# poll every 0.2 s until the command succeeds, at most $1 seconds
wait_for() {
  local t=$1 what=$2 end; shift 2
  end=$(($(date +%s) + t))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -le "$end" ] || { log "timeout (${t}s) waiting for: $what"; return 1; }
    sleep 0.2
  done
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

install_slurm() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null &&
     command -v sbatch >/dev/null && command -v munged >/dev/null; then
    log "slurm present: $(slurmd -V)"; return 0
  fi
  export DEBIAN_FRONTEND=noninteractive
  # postinst scripts would start system daemons with /etc configs; a policy-rc.d
  # that exits 101 stops that (container images ship one; add it only if missing)
  local added=0 rc=1 try
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; added=1
  fi
  for try in 1 2 3; do
    rc=0
    { apt-get update -q && apt-get install -y -q --no-install-recommends "${PKGS[@]}"; } >/dev/null || rc=$?
    [ $rc -eq 0 ] && break
    log "apt-get attempt $try failed (rc=$rc)"; sleep $((try * 5))
  done
  [ $added -eq 1 ] && rm -f /usr/sbin/policy-rc.d
  [ $rc -eq 0 ] || die "apt-get install ${PKGS[*]} failed (rc=$rc)"
  log "installed: $(slurmd -V)"
}

DIR=$(mktemp -d /tmp/agentsched-slurm.XXXXXX)
CONF=$DIR/etc/slurm.conf
SOCK=$DIR/run/munge.socket.2
NODE=$(uname -n); NODE=${NODE%%.*}

# PID recorded in run/NAME.pid is alive and still our daemon (guards against PID reuse)
our_pid() {
  local f=$DIR/run/$1.pid pid
  [ -s "$f" ] || return 1
  pid=$(cat "$f")
  tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q -- "$1.*$DIR" || return 1
  echo "$pid"
}

# job processes of this cluster that outlived slurmd (slurmstepd double-forks away):
# found by SLURM_CONF=<our conf> in their environment, never by name
leftovers() {
  local d p st
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    [ "$p" = $$ ] && continue
    st=$(sed 's/.*) //' "$d/stat" 2>/dev/null) || continue
    case "${st%% *}" in Z|X|x) continue ;; esac
    tr '\0' '\n' 2>/dev/null <"$d/environ" | grep -qx "SLURM_CONF=$CONF" || continue
    if tr '\0' ' ' 2>/dev/null <"$d/cmdline" | grep -q '^slurmstepd' ||
       tr '\0' '\n' 2>/dev/null <"$d/environ" | grep -q '^SLURM_JOB_ID='; then echo "$p"; fi
  done
  return 0
}

stop_cluster() {
  local fail=0 n pid i left
  export SLURM_CONF=$CONF
  if our_pid slurmctld >/dev/null; then
    scancel --quiet --full $(squeue -h -o %i 2>/dev/null) 2>/dev/null || true
    wait_for 15 "queue empty" bash -c '[ -z "$(squeue -h 2>/dev/null)" ]' || true
  fi
  for n in slurmd slurmctld munged; do
    pid=$(our_pid "$n") || continue
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 100); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
    [ -d "/proc/$pid" ] && { kill -KILL "$pid" 2>/dev/null || true; sleep 0.5; }
    if [ -d "/proc/$pid" ]; then log "$n ($pid) survived SIGKILL"; fail=1; else log "stopped $n (pid $pid)"; fi
  done
  left=$(leftovers | tr '\n' ' ')
  if [ -n "${left// }" ]; then
    log "killing leftover job processes by PID: $left"
    kill -KILL $left 2>/dev/null || true; sleep 0.5
    [ -z "$(leftovers)" ] || { log "still alive: $(leftovers | tr '\n' ' ')"; fail=1; }
  fi
  for i in $(seq 50); do port_open "$CTLD_PORT" || port_open "$SLURMD_PORT" || break; sleep 0.1; done
  if port_open "$CTLD_PORT" || port_open "$SLURMD_PORT"; then log "ports still open"; fail=1; fi
  return $fail
}

on_exit() {
  local rc=$?
  trap - EXIT
  if [ $rc -ne 0 ]; then
    log "failed (rc=$rc); last log lines:"
    tail -n 15 "$DIR"/log/*.log "$DIR"/log/task-*.log 2>/dev/null >&2 || true
  fi
  stop_cluster || rc=1
  if [ "${SLURM_TEST_KEEP:-0}" = 1 ] || [ $rc -ne 0 ]; then log "kept $DIR"; else rm -rf -- "$DIR"; fi
  exit $rc
}

start_cluster() {
  command -v slurmctld >/dev/null || die "slurm is not installed"
  port_open "$CTLD_PORT" && die "port $CTLD_PORT is in use (set SLURM_TEST_CTLD_PORT)"
  port_open "$SLURMD_PORT" && die "port $SLURMD_PORT is in use (set SLURM_TEST_SLURMD_PORT)"
  mkdir -p "$DIR"/{etc,run,log,state,spool,munge}
  chmod 755 "$DIR" "$DIR/run"   # munged refuses a socket directory writable by others
  chmod 700 "$DIR/munge"
  mungekey --create --keyfile="$DIR/munge/munge.key" >/dev/null 2>&1 || die "mungekey failed"
  local hw; hw=$(slurmd -C | head -1 | sed 's/^NodeName=[^ ]* //')
  [ -n "$hw" ] || die "slurmd -C printed nothing"
  # the node's hardware line is slurmd -C's own, so the node is never drained for a
  # mismatch; one core per task, so 2 shards run at once on 2 cores
  cat >"$CONF" <<EOF
ClusterName=agentsched-ci
SlurmctldHost=${NODE}(127.0.0.1)
SlurmctldPort=${CTLD_PORT}
SlurmdPort=${SLURMD_PORT}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=${SOCK}
StateSaveLocation=${DIR}/state
SlurmdSpoolDir=${DIR}/spool
SlurmctldPidFile=${DIR}/run/slurmctld.slurm.pid
SlurmdPidFile=${DIR}/run/slurmd.slurm.pid
SlurmctldLogFile=${DIR}/log/slurmctld.log
SlurmdLogFile=${DIR}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=${DIR}/log/jobcomp.log
MpiDefault=none
SwitchType=switch/none
MailProg=/bin/true
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
NodeName=${NODE} NodeAddr=127.0.0.1 ${hw} State=UNKNOWN
PartitionName=ci Nodes=${NODE} Default=YES MaxTime=INFINITE State=UP
EOF
  export SLURM_CONF=$CONF
  # each daemon in the foreground, in its own session, not holding our stdout
  setsid munged --foreground --key-file="$DIR/munge/munge.key" --socket="$SOCK" \
    --pid-file="$DIR/run/munged.own.pid" --log-file="$DIR/log/munged.log" \
    --seed-file="$DIR/munge/munged.seed" </dev/null >"$DIR/log/munged.out" 2>&1 &
  echo $! >"$DIR/run/munged.pid"
  wait_for 20 "munged socket" test -S "$SOCK" || die "munged did not start"
  setsid slurmctld -D -f "$CONF" </dev/null >"$DIR/log/slurmctld.out" 2>&1 &
  echo $! >"$DIR/run/slurmctld.pid"
  setsid slurmd -D -f "$CONF" -N "$NODE" </dev/null >"$DIR/log/slurmd.out" 2>&1 &
  echo $! >"$DIR/run/slurmd.pid"
  wait_for "$TIMEOUT" "slurmctld answers" scontrol ping || die "slurmctld did not come up"
  wait_for "$TIMEOUT" "node $NODE idle" bash -c "sinfo -h -n '$NODE' -o %T | grep -qx idle" ||
    die "node $NODE never became idle: $(sinfo -N -h 2>&1)"
  local n; for n in munged slurmctld slurmd; do our_pid "$n" >/dev/null || die "$n is not running"; done
  log "cluster up: $(sinfo -h -o '%P %D %T %c cpus')"
}

install_slurm
trap on_exit EXIT
t0=$(date +%s)
start_cluster

# the reference: the same experiment on one machine, all cores
log "single-machine sweep of $CONFIG"
"$BIN" sweep --config "$CONFIG" --out-root "$DIR/single" --quiet
"$BIN" collect --exp-dir "$DIR"/single/* >/dev/null

# the job array: every task writes into the same experiment directory
log "job array of $SHARDS shards"
job=$(sbatch --parsable --array=1-"$SHARDS" -J agentsched-sweep -c 1 \
  -o "$DIR/log/task-%a.log" \
  --wrap "exec '$BIN' sweep --config '$CONFIG' --out-root '$DIR/array' --jobs 1 --shard \$SLURM_ARRAY_TASK_ID/$SHARDS") ||
  die "sbatch failed"
# squeue polling notices the end sooner than sbatch --wait's back-off
wait_for "$TIMEOUT" "array job $job finished" bash -c "[ -z \"\$(squeue -h -j $job 2>/dev/null)\" ]" ||
  die "array job $job did not finish: $(squeue 2>&1)"
ok=$(grep -c "ArrayJobId=$job .*JobState=COMPLETED\|JobState=COMPLETED.*ArrayJobId=$job " "$DIR/log/jobcomp.log" || true)
ok0=$(grep "ArrayJobId=$job " "$DIR/log/jobcomp.log" | grep -c "JobState=COMPLETED.*ExitCode=0:0" || true)
[ "$ok0" -eq "$SHARDS" ] || { cat "$DIR/log/jobcomp.log" >&2; die "$ok0 of $SHARDS tasks completed with exit 0 ($ok COMPLETED)"; }
for k in $(seq 1 "$SHARDS"); do
  grep -q "shard $k/$SHARDS" "$DIR/log/task-$k.log" ||
    { cat "$DIR/log/task-$k.log" >&2; die "task $k's log does not name shard $k/$SHARDS"; }
done
"$BIN" collect --exp-dir "$DIR"/array/* >/dev/null

# equal except what measures the machine: wall clocks, start/end times, run paths
python3 - "$DIR"/single/*/aggregate "$DIR"/array/*/aggregate <<'PY'
import csv, json, sys
a, b = sys.argv[1], sys.argv[2]
timing = {"wall_time_s", "sim_wall_time_s", "start_time_unix_s", "end_time_unix_s", "run_dir"}
def rows(d):
    with open(f"{d}/runs.csv", newline="") as f:
        r = list(csv.DictReader(f))
    return {x["run_id"]: {k: v for k, v in x.items() if k not in timing} for x in r}
ra, rb = rows(a), rows(b)
assert len(ra) > 0, "empty runs.csv"
assert ra.keys() == rb.keys(), f"run ids differ: {sorted(ra.keys() ^ rb.keys())[:5]}"
bad = [(i, k) for i in ra for k in ra[i] if ra[i][k] != rb[i][k]]
assert not bad, f"{len(bad)} cells differ, e.g. {bad[:5]}"
assert all(x["exit_code"] == "0" for x in ra.values()), "a reference run failed"
with open(f"{a}/sweep_aggregate.json") as f: ja = json.load(f)
with open(f"{b}/sweep_aggregate.json") as f: jb = json.load(f)
assert ja == jb, "sweep_aggregate.json differs"
for name in ("sweep_aggregate.csv", "sweep_trends.csv"):
    assert open(f"{a}/{name}").read() == open(f"{b}/{name}").read(), f"{name} differs"
print(f"[slurm-test] {len(ra)} runs: runs.csv ({len(next(iter(ra.values())))} columns compared), "
      f"sweep_aggregate.json, sweep_aggregate.csv and sweep_trends.csv equal the single-machine sweep", file=sys.stderr)
PY
log "PASSED in $(($(date +%s) - t0)) s (cluster start included)"
