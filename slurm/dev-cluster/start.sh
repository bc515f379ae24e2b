#!/usr/bin/env bash
# slurm/dev-cluster/start.sh - the collapse-hpc dev cluster: install, configure and start a
# single-node Slurm cluster (munged + mariadbd + slurmdbd + slurmctld + slurmd) on this
# Debian machine, without systemd and without cgroups.  `make test-slurm` runs it.
# Idempotent: daemons already running (checked through their PID files) are left alone;
# a changed slurm.conf restarts slurmctld/slurmd.  Must run as root.  Stop: stop.sh.
#
# Environment knobs:
#   LOCAL_SLURM_ACCOUNTING=1  (default) also run MariaDB + slurmdbd so that `sacct`
#                             works (submitit polls job states with sacct), with
#                             associations and QOS enforced: accounts collapse (default)
#                             and collapse-b, QOS normal (default) and short.  0 = skip.
#   LOCAL_SLURM_CPUS=N        advertise N CPUs (default 8, at least the real count);
#                             N > real cores is allowed (SlurmdParameters=config_overrides)
#                             so chains and array tasks run side by side on a 2-core box.
#   LOCAL_SLURM_RESET=1       wipe slurmctld state (queued jobs) first; job ids go on after the
#                             highest the accounting database holds (FirstJobId).
#   LOCAL_SLURM_MEMORY_KILL=1 kill a job step whose processes use more memory than the job asked
#                             for (JobAcctGatherParams=OverMemoryKill, sampled each second: cgroups
#                             are not used here). 0 (default): the test units' ~0.5-1 GB Python
#                             processes would pass DefMemPerCPU's 512 MB; a test of it sets it.
#   LOCAL_SLURM_TIMEOUT=60    seconds to wait for the node to become idle.
set -euo pipefail

[ "$(id -u)" = 0 ] || { echo "must run as root" >&2; exit 1; }
ACCT=${LOCAL_SLURM_ACCOUNTING:-1}
TIMEOUT=${LOCAL_SLURM_TIMEOUT:-60}
CLUSTER=collapse
CONF=/etc/slurm/slurm.conf
DBDCONF=/etc/slurm/slurmdbd.conf
MYSOCK=/run/mysqld/mysqld.sock
export DEBIAN_FRONTEND=noninteractive
t_start=$(date +%s)
log() { echo "[dev-cluster +$(( $(date +%s) - t_start ))s] $*"; }

# alive PIDFILE COMM -> 0 if PIDFILE names a live process whose comm is COMM
alive() {
  local pf=$1 comm=$2 pid
  [ -s "$pf" ] || return 1
  pid=$(cat "$pf" 2>/dev/null) || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = "$comm" ]
}
wait_for() {  # wait_for SECONDS CMD...
  local n=$(( $1 * 5 )); shift
  for _ in $(seq 1 "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  return 1
}

# ---------------------------------------------------------------- 1. packages
PKGS=(munge slurmctld slurmd slurm-client)
[ "$ACCT" = 1 ] && PKGS+=(slurmdbd mariadb-server)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep 'install ok installed' >/dev/null || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  # keep maintainer scripts from auto-starting daemons (we start them ourselves)
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get -o DPkg::Lock::Timeout=300 update -qq
  apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}" >/var/log/collapse-dev-cluster-apt.log 2>&1 \
    || { tail -20 /var/log/collapse-dev-cluster-apt.log >&2; exit 1; }
fi
log "slurm $(slurmd -V | awk '{print $2}')"

# ------------------------------------------------------------ 2. host + dirs
HOST=$(hostname -s)
getent hosts "$HOST" >/dev/null || echo "127.0.0.1 $HOST" >>/etc/hosts
mkdir -p /etc/slurm /var/log/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /run/munge
chown slurm:slurm /var/log/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd
chown munge:munge /run/munge; chmod 0755 /run/munge

# refuse to start if another program already holds the Slurm ports
for port in 6817 6818 6819; do
  if ss -Hltnp "sport = :$port" 2>/dev/null | grep . >/dev/null && \
     ! ss -Hltnp "sport = :$port" | grep -E '"(slurmctld|slurmd|slurmdbd)"' >/dev/null; then
    echo "port $port is in use by another program:" >&2; ss -Hltnp "sport = :$port" >&2; exit 1
  fi
done

# ------------------------------------------------------------------ 3. munge
if [ ! -s /etc/munge/munge.key ]; then
  mkdir -p /etc/munge
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge /etc/munge/munge.key; chmod 0700 /etc/munge; chmod 0400 /etc/munge/munge.key
if ! alive /run/munge/munged.pid munged; then
  log "starting munged"
  rm -f /run/munge/munged.pid
  runuser -u munge -- /usr/sbin/munged    # daemonizes itself, writes /run/munge/munged.pid
fi
wait_for 10 sh -c 'munge -n | unmunge' || { echo "munge not working" >&2; exit 1; }

# --------------------------------------------------- 4. accounting (optional)
if [ "$ACCT" = 1 ]; then
  mkdir -p /run/mysqld; chown mysql:mysql /run/mysqld
  [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
  if ! alive /run/mysqld/mysqld.pid mariadbd; then
    log "starting mariadbd"
    setsid -f /usr/sbin/mariadbd --user=mysql --skip-networking --socket=$MYSOCK \
      --pid-file=/run/mysqld/mysqld.pid --innodb-buffer-pool-size=128M \
      --innodb-lock-wait-timeout=900 >/var/log/slurm/mariadb.log 2>&1 </dev/null
  fi
  wait_for 30 mariadb-admin --socket=$MYSOCK ping || { tail /var/log/slurm/mariadb.log >&2; exit 1; }
  mariadb --socket=$MYSOCK -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmdbpw';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
  cat >$DBDCONF <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=slurm
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurmdbpw
StorageLoc=slurm_acct_db
EOF
  chown slurm:slurm $DBDCONF; chmod 0600 $DBDCONF
  if ! alive /run/slurmdbd.pid slurmdbd; then
    log "starting slurmdbd"
    slurmdbd
  fi
fi

# ------------------------------------------------------------- 5. slurm.conf
read -r D_CPUS D_BOARDS D_SOCKETS D_CORES D_THREADS D_MEM < <(slurmd -C | head -1 | awk '{
  for (i=1;i<=NF;i++) { split($i,kv,"="); v[kv[1]]=kv[2] }
  print v["CPUs"], v["Boards"], v["SocketsPerBoard"], v["CoresPerSocket"], v["ThreadsPerCore"], v["RealMemory"] }')
MEM=$(( D_MEM * 9 / 10 ))            # leave headroom: memory reported can drift a bit
CPUS=${LOCAL_SLURM_CPUS:-8}
[ "$CPUS" -ge "$D_CPUS" ] || CPUS=$D_CPUS
LOCAL_SLURM_CPUS=$CPUS
if [ "$LOCAL_SLURM_CPUS" != "$D_CPUS" ]; then
  NODE_HW="CPUs=$LOCAL_SLURM_CPUS Boards=1 SocketsPerBoard=1 CoresPerSocket=$LOCAL_SLURM_CPUS ThreadsPerCore=1"
  OVERRIDES="SlurmdParameters=config_overrides"
else
  NODE_HW="CPUs=$D_CPUS Boards=$D_BOARDS SocketsPerBoard=$D_SOCKETS CoresPerSocket=$D_CORES ThreadsPerCore=$D_THREADS"
  OVERRIDES=""
fi
MEMORY_KILL=""
if [ "${LOCAL_SLURM_MEMORY_KILL:-0}" = 1 ]; then
  [ "$ACCT" = 1 ] || { echo "LOCAL_SLURM_MEMORY_KILL=1 needs LOCAL_SLURM_ACCOUNTING=1 (jobacct_gather)" >&2; exit 1; }
  MEMORY_KILL="JobAcctGatherParams=OverMemoryKill
JobAcctGatherFrequency=task=1"
fi
if [ "$ACCT" = 1 ]; then
  ACCT_CONF="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
JobAcctGatherType=jobacct_gather/linux
$MEMORY_KILL
# sacct shows each job's comment: submit puts a generation's afterok dependency there
AccountingStoreFlags=job_comment
# as on a real cluster, a job must charge an account its user may use and a QOS that exists, within the
# limits sacctmgr sets (MaxSubmitJobs of a user, MaxSubmitPU of a QOS: none unless a test sets them)
AccountingStorageEnforce=associations,limits,qos"
else
  ACCT_CONF="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
fi
# A job id names one job: where slurmctld's state starts afresh (a first start, LOCAL_SLURM_RESET=1) while
# the accounting database keeps earlier jobs, ids go on after the highest it holds (sacct -j gives an id's
# newest job only; tests read jobs by id). Otherwise the setting of the last fresh start stays.
FIRST_JOB_ID=$(sed -n 's/^FirstJobId=//p' $CONF 2>/dev/null || true)
if [ "$ACCT" = 1 ] && { [ "${LOCAL_SLURM_RESET:-0}" = 1 ] || [ ! -f /var/lib/slurm/slurmctld/job_state ]; }; then
  HIGHEST=$(mariadb --socket=$MYSOCK -N -e "SELECT COALESCE(MAX(id_job),0) FROM slurm_acct_db.${CLUSTER}_job_table" \
            2>/dev/null || echo 0)
  FIRST_JOB_ID=$(( HIGHEST + 1 ))
fi
NEWCONF=$(cat <<EOF
# generated by collapse-hpc slurm/dev-cluster/start.sh
ClusterName=$CLUSTER
FirstJobId=${FIRST_JOB_ID:-1}
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
CredType=cred/munge
# requeued jobs become eligible again after cred_expire+1 s (default 120 s)
AuthInfo=cred_expire=10
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobCompType=jobcomp/none
$ACCT_CONF
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
DependencyParameters=kill_invalid_depend
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=512
ReturnToService=2
MinJobAge=600
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
$OVERRIDES
# gpu as on a GPU cluster, yet no node has one: a gres asked for but offered by no node (a typo
# of a type, gpu:h1000) is answered by sbatch --test-only as drained nodes are; scratch:ssd:2 is
# one the node has (a count, no device files), which submit's check of gres must let through
GresTypes=gpu,scratch
NodeName=$HOST NodeAddr=127.0.0.1 $NODE_HW RealMemory=$MEM Gres=scratch:ssd:2 State=UNKNOWN
# preemption as on clusters with a scavenger tier: a job of partition urgent (higher PriorityTier) that
# needs the node requeues the jobs of debug running there (Slurm signals them, then requeues them) and
# cancels those of scavenger (they end PREEMPTED)
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP PriorityTier=1
PartitionName=scavenger Nodes=ALL Default=NO MaxTime=INFINITE State=UP PriorityTier=1 PreemptMode=CANCEL
PartitionName=urgent Nodes=ALL Default=NO MaxTime=INFINITE State=UP PriorityTier=2
EOF
)
NEWGRES="NodeName=$HOST Name=scratch Type=ssd Count=2"
CONF_CHANGED=0
if [ ! -f $CONF ] || [ "$(cat $CONF)" != "$NEWCONF" ]; then
  printf '%s\n' "$NEWCONF" >$CONF; CONF_CHANGED=1
fi
if [ ! -f /etc/slurm/gres.conf ] || [ "$(cat /etc/slurm/gres.conf)" != "$NEWGRES" ]; then
  printf '%s\n' "$NEWGRES" >/etc/slurm/gres.conf; CONF_CHANGED=1
fi
# cgroup.conf is not read with proctrack/linuxproc + task/none; none is written.

if [ "$ACCT" = 1 ]; then
  wait_for 30 sacctmgr -n show cluster || { tail /var/log/slurm/slurmdbd.log >&2; exit 1; }
  sacctmgr -n -P show cluster format=cluster | grep -x "$CLUSTER" >/dev/null || sacctmgr -i add cluster "$CLUSTER" >/dev/null
  # accounts and QOS the Slurm tests charge: every local user may use "collapse" (the default) and
  # "collapse-b", under QOS normal (the default) or "short"; anything else sbatch refuses
  sacctmgr -n -P show qos format=name | grep -x short >/dev/null || sacctmgr -i add qos short >/dev/null
  for a in collapse collapse-b; do
    sacctmgr -n -P show account "$a" format=account | grep -x "$a" >/dev/null \
      || sacctmgr -i add account "$a" cluster="$CLUSTER" >/dev/null
  done
  for u in root $(getent passwd | awk -F: '$3 >= 1000 && $3 < 65534 {print $1}'); do
    sacctmgr -n -P show assoc user="$u" format=account | grep -x collapse-b >/dev/null && continue
    sacctmgr -i add user "$u" account=collapse,collapse-b defaultaccount=collapse cluster="$CLUSTER" >/dev/null
    sacctmgr -i modify user "$u" set qos=normal,short defaultqos=normal >/dev/null
  done
fi

# ------------------------------------------------------- 6. slurmctld/slurmd
stop_pid() {  # stop_pid PIDFILE COMM
  alive "$1" "$2" || return 0
  local pid; pid=$(cat "$1"); kill "$pid"
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}
if [ "$CONF_CHANGED" = 1 ] || [ "${LOCAL_SLURM_RESET:-0}" = 1 ]; then
  stop_pid /run/slurmd.pid slurmd; stop_pid /run/slurmctld.pid slurmctld
fi
if [ "${LOCAL_SLURM_RESET:-0}" = 1 ]; then
  rm -rf /var/lib/slurm/slurmctld/* /var/lib/slurm/slurmd/*
fi
if ! alive /run/slurmctld.pid slurmctld; then
  log "starting slurmctld"
  slurmctld            # daemonizes, drops to SlurmUser=slurm
fi
wait_for 30 scontrol ping || { tail /var/log/slurm/slurmctld.log >&2; exit 1; }
if ! alive /run/slurmd.pid slurmd; then
  log "starting slurmd"
  slurmd               # daemonizes, stays root (needed to launch jobs as other users)
fi

# --------------------------------------------------------- 7. wait for idle
node_ok() { sinfo -h -n "$HOST" -o '%T' | grep -Ex 'idle|mixed|allocated|completing' >/dev/null; }
for i in $(seq 1 $(( TIMEOUT * 2 ))); do
  node_ok && break
  st=$(sinfo -h -n "$HOST" -o '%T' 2>/dev/null || true)
  case "$st" in drain*|down*) scontrol update nodename="$HOST" state=resume 2>/dev/null || true;; esac
  sleep 0.5
done
node_ok || { sinfo -N -l >&2; tail -n 20 /var/log/slurm/slurmd.log >&2; exit 1; }
sinfo
log "cluster ready"
