#!/usr/bin/env bash
# Stop the single-node SLURM started by cluster/slurm_local_up.sh: cancel its jobs, then SIGTERM
# exactly the PIDs from the PID files the up script configured (never by process name), wait for
# them, and restore /etc/slurm/slurm.conf. Safe to call when nothing runs.
#   sudo cluster/slurm_local_down.sh            # keeps $SLURM_LOCAL_DIR/log for inspection
#   SLURM_LOCAL_PURGE=1 cluster/slurm_local_down.sh   # also deletes the state dir
set -uo pipefail

STATE_DIR=${SLURM_LOCAL_DIR:-/tmp/imrepro-slurm}
WAIT_S=${SLURM_LOCAL_WAIT_S:-30}
ETC_CONF=/etc/slurm/slurm.conf
CONF="$STATE_DIR/etc/slurm.conf"

say() { echo "[slurm_local_down] $*"; }

if [[ ! -d $STATE_DIR ]]; then
    say "nothing to stop ($STATE_DIR does not exist)"
    exit 0
fi

pid_of() {  # pid_of FILE: print the PID in FILE if it names a live process
    local pid
    [[ -s "$1" ]] || return 1
    pid=$(cat "$1")
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# Cancel queued and running jobs while slurmctld still answers (ours only: same config).
if pid_of "$STATE_DIR/run/slurmctld.pid" >/dev/null && command -v scancel >/dev/null; then
    jobs=$(squeue -h -o %i 2>/dev/null | tr '\n' ' ')
    if [[ -n ${jobs// /} ]]; then
        say "cancelling jobs: $jobs"
        # shellcheck disable=SC2086
        scancel $jobs 2>/dev/null || true
        for _ in $(seq 20); do
            [[ -z $(squeue -h -o %i 2>/dev/null) ]] && break
            sleep 0.5
        done
    fi
fi

# slurmd first (it reports to slurmctld), then slurmctld, then munged (only if we started it).
for name in slurmd slurmctld munge/munged; do
    pidfile="$STATE_DIR/run/$name.pid"
    if pid=$(pid_of "$pidfile"); then
        say "stopping ${name#munge/} (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        t0=$SECONDS
        while kill -0 "$pid" 2>/dev/null; do
            if ((SECONDS - t0 >= WAIT_S)); then
                say "WARNING: ${name#munge/} (pid $pid) still alive after ${WAIT_S}s; sending SIGKILL"
                kill -KILL "$pid" 2>/dev/null || true
                break
            fi
            sleep 0.2
        done
    fi
    rm -f "$pidfile"
done

# Restore /etc/slurm/slurm.conf: remove our link, put back what the up script moved aside.
if [[ -L $ETC_CONF && $(readlink "$ETC_CONF") == "$CONF" ]]; then
    rm -f "$ETC_CONF"
    if [[ -e $ETC_CONF.imrepro-orig ]]; then
        mv "$ETC_CONF.imrepro-orig" "$ETC_CONF"
        say "restored the original $ETC_CONF"
    fi
fi

if [[ ${SLURM_LOCAL_PURGE:-0} == 1 ]]; then
    rm -rf "${STATE_DIR:?}"
    say "stopped; removed $STATE_DIR"
else
    rm -rf "${STATE_DIR:?}/state/"* "${STATE_DIR:?}/spool/"*
    say "stopped; logs kept in $STATE_DIR/log"
fi
