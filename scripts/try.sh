#!/usr/bin/env bash
# The README's first command: install mldesk (Debian packages + .venv), create the
# bundled example lab (~/mldesk-example, the `xor` template) if it is not there,
# run it to completion through the CLI (on Docker when a daemon answers, else on the
# embedded process runtime), then open the desktop window on it when there is a
# display (set MLDESK_NO_GUI=1 to skip the window).
#
# One short line per step; what apt, pip and debootstrap print goes to a log file
# (its path is printed), shown only when a step fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

LOG=${MLDESK_TRY_LOG:-/tmp/mldesk-try.log}
: >"$LOG"
step() { printf '== %s\n' "$*"; }
quiet() {  # quiet LABEL CMD...: run CMD with its output in $LOG; on failure show the end
  local label=$1 t0=$SECONDS; shift
  printf '   %s ... ' "$label"
  if "$@" >>"$LOG" 2>&1 </dev/null; then
    printf 'done (%s s)\n' "$((SECONDS - t0))"
  else
    local rc=$?
    printf 'FAILED (exit %s); the last lines of %s:\n' "$rc" "$LOG"
    tail -n 25 "$LOG" | sed 's/^/   | /'
    exit "$rc"
  fi
}

step "installing mldesk (Debian packages and .venv; details in $LOG)"
quiet "packages and Python environment" bash scripts/ci/setup.sh

LAB=${MLDESK_EXAMPLE_LAB:-$HOME/mldesk-example}
MLDESK=.venv/bin/mldesk
RUNTIME=process
if docker info >/dev/null 2>&1; then
  RUNTIME=docker
  step "runtime: docker (a Docker daemon answers here)"
  # no registry needed: a local Python image, built offline (cached after the first time)
  quiet "building a small local Python image offline" bash scripts/ci/build-test-images.sh python
else
  step "runtime: process (no Docker daemon answers here, so the lab runs with this machine's python3)"
fi

if [[ ! -f $LAB/main.py ]]; then
  step "creating the example lab in $LAB"
  "$MLDESK" init "$LAB" --template xor >>"$LOG"
  if [[ $RUNTIME == docker ]]; then
    sed -i 's|^dockerImageId:.*|dockerImageId: mldesk-test/python:latest  # built offline by scripts/ci/build-test-images.sh|' "$LAB/ml.yaml"
  fi
else
  step "using the example lab in $LAB"
fi

step "running it: mldesk run $LAB --runtime $RUNTIME"
"$MLDESK" run "$LAB" --runtime "$RUNTIME" --name "example run"
"$MLDESK" ls --lab "$LAB" | head -5
if [[ -z ${MLDESK_NO_GUI:-} ]]; then
  if [[ -n ${DISPLAY:-}${WAYLAND_DISPLAY:-} ]]; then
    step "opening the window (mldesk open $LAB)"
    exec "$MLDESK" open "$LAB"
  else
    step "no display here: start the window later with  $MLDESK open $LAB"
    echo "   (or on a headless box: Xvfb :99 & DISPLAY=:99 $MLDESK open $LAB)"
  fi
fi
