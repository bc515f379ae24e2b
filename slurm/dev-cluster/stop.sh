#!/usr/bin/env bash
# slurm/dev-cluster/stop.sh - stop the daemons started by start.sh, each by its PID file
# (never by process name; /proc/PID/comm is checked first).  Cancels queued/running jobs first so that no
# slurmstepd/job processes are left behind.
set -uo pipefail

alive() {
  local pf=$1 comm=$2 pid
  [ -s "$pf" ] || return 1
  pid=$(cat "$pf" 2>/dev/null) || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = "$comm" ]
}
stop_pid() {  # stop_pid PIDFILE COMM
  alive "$1" "$2" || { echo "$2: not running"; return 0; }
  local pid; pid=$(cat "$1"); kill "$pid"
  for _ in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || { echo "$2: stopped (pid $pid)"; rm -f "$1"; return 0; }
    sleep 0.1
  done
  echo "$2: did not exit after SIGTERM, sending SIGKILL (pid $pid)"; kill -9 "$pid" 2>/dev/null || true
  rm -f "$1"
}

if alive /run/slurmctld.pid slurmctld; then
  jobs=$(squeue -h -o '%A' 2>/dev/null | sort -u | tr '\n' ' ')
  if [ -n "${jobs// /}" ]; then
    echo "cancelling jobs: $jobs"
    # shellcheck disable=SC2086
    scancel $jobs 2>/dev/null || true
    for _ in $(seq 1 60); do [ -z "$(squeue -h -t R,CG -o %A 2>/dev/null)" ] && break; sleep 0.5; done
  fi
fi
stop_pid /run/slurmd.pid slurmd
stop_pid /run/slurmctld.pid slurmctld
stop_pid /run/slurmdbd.pid slurmdbd
stop_pid /run/mysqld/mysqld.pid mariadbd
stop_pid /run/munge/munged.pid munged
