#!/usr/bin/env bash
# Start what the test suite talks to, each only if it is not already there:
#   dockerd (no systemd here; log /tmp/mldesk-ci/dockerd.log), Xvfb on :99,
#   the test sshd on 127.0.0.1:2222 (sshd.sh) and the netns SSH host on
#   198.18.0.2 (netns-host.sh; skip with MLDESK_CI_NETNS=0), and a single-node
#   Slurm cluster whose login node is that sshd (slurm.sh).
# Daemons are detached (setsid, stdio to files) so the calling CI step can end, and
# keep running afterwards: scripts/ci/stop-services.sh stops exactly what this script
# started (it notes dockerd's and Xvfb's pids in /tmp/mldesk-ci/started.d/; a daemon
# that was already running is left alone).
# Extra dockerd flags, if a machine needs them: MLDESK_DOCKERD_ARGS="--storage-driver=vfs".
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

LOGDIR=/tmp/mldesk-ci
mkdir -p "$LOGDIR"
exec 9>"$LOGDIR/services.lock"
flock -w 300 9 || { echo "start-services.sh: $LOGDIR/services.lock still held after 300 s" >&2; exit 1; }

log() { printf '[services] %s\n' "$*"; }
STARTED=$LOGDIR/started.d
mkdir -p "$STARTED"

# --- Docker ------------------------------------------------------------------
if docker info >/dev/null 2>&1; then
  log "dockerd: already answering"
else
  log "dockerd: starting (log $LOGDIR/dockerd.log)"
  # shellcheck disable=SC2086
  # 9>&-: the daemon must not inherit (and hold forever) our lock.
  setsid dockerd ${MLDESK_DOCKERD_ARGS:-} >>"$LOGDIR/dockerd.log" 2>&1 </dev/null 9>&- &
  echo $! >"$STARTED/dockerd"
  ok=
  for _ in $(seq 60); do
    if docker info >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.5
  done
  if [[ -z $ok ]]; then
    log "dockerd did not answer within 30 s; last log lines:"
    tail -n 30 "$LOGDIR/dockerd.log" >&2 || true
    exit 1
  fi
  log "dockerd: started, server $(docker version --format '{{.Server.Version}}')"
fi

# --- Xvfb :99 ------------------------------------------------------------------
xvfb_pid() {
  local pid
  [[ -f /tmp/.X99-lock ]] || return 1
  pid=$(tr -d ' \n' </tmp/.X99-lock)
  [[ -n $pid && -d /proc/$pid ]] && grep -q Xvfb "/proc/$pid/comm" && echo "$pid"
}
if pid=$(xvfb_pid); then
  log "Xvfb :99: already running (pid $pid)"
else
  rm -f /tmp/.X99-lock /tmp/.X11-unix/X99   # stale, its server is gone
  setsid Xvfb :99 -screen 0 1280x1024x24 -nolisten tcp >>"$LOGDIR/xvfb.log" 2>&1 </dev/null 9>&- &
  for _ in $(seq 50); do
    [[ -S /tmp/.X11-unix/X99 ]] && break
    sleep 0.1
  done
  if [[ ! -S /tmp/.X11-unix/X99 ]]; then
    log "Xvfb did not start; see $LOGDIR/xvfb.log"
    tail -n 20 "$LOGDIR/xvfb.log" >&2 || true
    exit 1
  fi
  xvfb_pid >"$STARTED/xvfb" || true
  log "Xvfb :99: started (pid $(xvfb_pid || echo '?'), log $LOGDIR/xvfb.log)"
fi

# --- test SSH hosts --------------------------------------------------------------
bash scripts/ci/sshd.sh start 9>&-
if [[ ${MLDESK_CI_NETNS:-1} != 0 ]]; then
  bash scripts/ci/netns-host.sh up 9>&-
else
  log "netns SSH host: skipped (MLDESK_CI_NETNS=0)"
fi

# --- Slurm (single node, login node = the test sshd) -------------------------------
bash scripts/ci/slurm.sh start 9>&-
