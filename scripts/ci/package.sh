#!/usr/bin/env bash
# What CI runs for packaging (and what a release runs): every artifact is built
# from this checkout and tested the way a user gets it.
#
#   bash scripts/ci/package.sh          # all steps
#   MLDESK_CI_DEB=0 bash scripts/ci/package.sh   # without the .deb steps
#
# 1. sdist + wheel (python -m build), then the wheel installed into a fresh venv
#    (the system python3, not .venv): `mldesk --version` and `mldesk __smoke`;
# 2. the PyInstaller bundle, then packaging/smoke_test.py on it (offscreen and,
#    when Xvfb is installed, xcb);
# 3. installers/check_scripts.py (Windows/macOS scripts, shell syntax);
# 4. the .deb: build, then install / smoke test / purge on this machine (needs
#    root and apt; skipped otherwise, or with MLDESK_CI_DEB=0).
# Prints the time of each step at the end. Writes build/, dist/ and a temp dir.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export PYTHONDONTWRITEBYTECODE=1

PY=${PYTHON:-.venv/bin/python}
timings=()
current=""
step() { current=$1; printf '\n=== package: %s (t=%ss)\n' "$1" "$SECONDS"; step_t0=$SECONDS; }
done_step() { timings+=("$(printf '%5ss  %s' "$((SECONDS - step_t0))" "$current")"); }
summary() {
  local rc=$?
  printf '\n=== package: step times\n'
  printf '%s\n' "${timings[@]}"
  if ((rc != 0)); then
    printf 'package.sh: FAILED in step "%s" (exit %s) after %ss\n' "$current" "$rc" "$SECONDS" >&2
  else
    printf 'package.sh: all passed in %ss\n' "$SECONDS"
  fi
}
trap summary EXIT

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"; summary' EXIT

step setup
bash scripts/ci/setup.sh
version=$(sed -n 's/^__version__ *= *["'\'']\([^"'\'']*\)["'\''].*/\1/p' app/mldesk/__init__.py)
done_step

step "sdist + wheel"
PYTHON=$PY bash packaging/build.sh --python
done_step

step "wheel in a fresh venv"
sys_python=$(command -v python3)
"$sys_python" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q --disable-pip-version-check "dist/mldesk-$version-py3-none-any.whl"
got=$(cd "$tmp" && "$tmp/venv/bin/mldesk" --version)
[[ $got == "mldesk $version" ]] || { echo "wheel: mldesk --version says '$got', expected 'mldesk $version'" >&2; exit 1; }
echo "$got (wheel, $("$tmp/venv/bin/python" -V))"
(cd "$tmp" && QT_QPA_PLATFORM=offscreen MLDESK_HOME="$tmp/home-wheel" XDG_RUNTIME_DIR="$tmp" \
  "$tmp/venv/bin/mldesk" __smoke --template xor 2> >(grep -v '^This plugin does not support propagateSizeHints()$' >&2))
done_step

step "PyInstaller bundle"
PYTHON=$PY bash packaging/build.sh --bundle
done_step

step "frozen smoke test"
"$PY" packaging/smoke_test.py
done_step

step "installer script checks"
"$PY" installers/check_scripts.py --require-bundle
done_step

if [[ ${MLDESK_CI_DEB:-1} != 0 && $(id -u) == 0 ]] && command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null; then
  step ".deb build"
  bash installers/linux/build_deb.sh
  done_step
  step ".deb install test"
  PYTHON=$PY bash installers/linux/test_deb.sh "dist/mldesk_${version}_$(dpkg --print-architecture).deb"
  done_step
else
  echo "=== package: .deb steps skipped (need root, apt and dpkg-deb; MLDESK_CI_DEB=${MLDESK_CI_DEB:-1})"
fi
current=""
