#!/usr/bin/env bash
# The README's first command: install mldesk (Debian packages + .venv), create the
# bundled example lab (~/mldesk-example, the `xor` template) if it is not there,
# run it to completion through the CLI (on Docker when a daemon answers, else on the
# embedded process runtime), then open the desktop window on it when there is a
# display (set MLDESK_NO_GUI=1 to skip the window).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/ci/setup.sh
LAB=${MLDESK_EXAMPLE_LAB:-$HOME/mldesk-example}
MLDESK=.venv/bin/mldesk
DOCKER_UP=
if docker info >/dev/null 2>&1; then
  DOCKER_UP=1
  # no registry needed: a local Python+NumPy image, built offline (cached)
  bash scripts/ci/build-test-images.sh
fi
if [[ ! -f $LAB/main.py ]]; then
  "$MLDESK" init "$LAB" --template xor
  if [[ -n $DOCKER_UP ]]; then
    sed -i 's|^dockerImageId:.*|dockerImageId: mldesk-test/python:latest  # built offline by scripts/ci/build-test-images.sh|' "$LAB/ml.yaml"
  fi
fi
echo "== running the example lab $LAB (mldesk run)"
"$MLDESK" run "$LAB" --name "example run"
"$MLDESK" ls --lab "$LAB" | head -5
if [[ -z ${MLDESK_NO_GUI:-} ]]; then
  if [[ -n ${DISPLAY:-}${WAYLAND_DISPLAY:-} ]]; then
    echo "== opening the window (mldesk open $LAB)"
    exec "$MLDESK" open "$LAB"
  else
    echo "== no display here: start the window later with  $MLDESK open $LAB"
    echo "   (or on a headless box: Xvfb :99 & DISPLAY=:99 $MLDESK open $LAB)"
  fi
fi
