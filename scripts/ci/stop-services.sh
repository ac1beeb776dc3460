#!/usr/bin/env bash
# Stop exactly what scripts/ci/start-services.sh started (scripts/test.sh leaves the
# services running so that the next run starts at once): the test sshd, the netns SSH
# host, the test Slurm cluster (when its script exists), and dockerd / Xvfb only when
# start-services.sh started them (their pids are in /tmp/mldesk-ci/started.d/).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

STARTED=/tmp/mldesk-ci/started.d
log() { printf '[services] %s\n' "$*"; }

stop_pid() {  # stop_pid NAME: TERM the pid start-services.sh noted, wait, KILL
  local name=$1 file=$STARTED/$1 pid
  [[ -f $file ]] || { log "$name: not started by start-services.sh, left alone"; return; }
  pid=$(<"$file")
  if [[ -n $pid && -d /proc/$pid ]]; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 100); do [[ -d /proc/$pid ]] || break; sleep 0.1; done
    [[ -d /proc/$pid ]] && kill -KILL "$pid" 2>/dev/null
    log "$name: stopped (pid $pid)"
  else
    log "$name: already gone"
  fi
  rm -f "$file"
}

[[ -f scripts/ci/slurm.sh ]] && bash scripts/ci/slurm.sh stop
bash scripts/ci/netns-host.sh down
bash scripts/ci/sshd.sh stop
stop_pid xvfb
stop_pid dockerd
