#!/usr/bin/env bash
# Build mldesk's release artifacts, from the repository root, with one command:
#
#   bash packaging/build.sh            # sdist + wheel (dist/*.tar.gz, dist/*.whl), then
#                                      # the PyInstaller bundle (dist/mldesk/)
#   bash packaging/build.sh --python   # only the sdist and the wheel
#   bash packaging/build.sh --bundle   # only the bundle
#
# Then: python packaging/smoke_test.py (the frozen smoke test),
#       bash installers/linux/build_deb.sh (the .deb from the bundle).
#
# The Python used is $PYTHON, else .venv/bin/python (which needs the `package`
# extra: pip install -e '.[package]'). The sdist and wheel are built from the
# files git would put in a clean clone (tracked + untracked-but-not-ignored), so
# caches and local junk never get in. Writes only build/ and dist/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY=${PYTHON:-.venv/bin/python}
do_python=1 do_bundle=1
case ${1:-} in
  --python) do_bundle=0 ;;
  --bundle) do_python=0 ;;
  "") ;;
  *) echo "usage: $0 [--python|--bundle]" >&2; exit 2 ;;
esac

log() { printf '[build] %s\n' "$*"; }
timed() {  # timed LABEL CMD...: run, then print how long it took
  local label=$1 t0=$SECONDS; shift
  "$@"
  log "$label: $((SECONDS - t0)) s"
}

[[ -x $PY ]] || { echo "build.sh: no Python at $PY (set PYTHON, or run scripts/ci/setup.sh)" >&2; exit 1; }
version=$(sed -n 's/^__version__ *= *["'\'']\([^"'\'']*\)["'\''].*/\1/p' app/mldesk/__init__.py)
[[ -n $version ]] || { echo "build.sh: no __version__ in app/mldesk/__init__.py" >&2; exit 1; }
log "mldesk $version with $("$PY" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
mkdir -p build dist

build_python() {
  local src=build/src
  rm -rf "$src" && mkdir -p "$src"
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z --cached --others --exclude-standard \
      | tar --null --ignore-failed-read -cf - -T - 2>/dev/null | tar -xf - -C "$src"
  else  # an unpacked sdist or tarball: copy what is there, minus caches
    tar --exclude=__pycache__ --exclude='*.pyc' --exclude=./build --exclude=./dist --exclude=./.venv \
      -cf - . | tar -xf - -C "$src"
  fi
  rm -f dist/mldesk-"$version".tar.gz dist/mldesk-"$version"-*.whl
  # Default build: the sdist first, then the wheel from the sdist (proves the
  # sdist is complete). Isolated: setuptools comes from the index.
  "$PY" -m build --outdir dist "$src"
  local wheel=dist/mldesk-$version-py3-none-any.whl
  [[ -f $wheel && -f dist/mldesk-$version.tar.gz ]] || { echo "build.sh: expected $wheel and the sdist" >&2; exit 1; }
  if "$PY" -m zipfile -l "$wheel" | grep -E '__pycache__|\.pyc' >/dev/null; then
    echo "build.sh: the wheel contains bytecode caches" >&2; exit 1
  fi
}

build_bundle() {
  "$PY" - <<'EOF'
import PySide6, sys
major, minor = (int(x) for x in PySide6.__version__.split(".")[:2])
if (major, minor) >= (6, 12):
    sys.exit(f"build.sh: PySide6 {PySide6.__version__} aborts on Python 3.11 (none_dealloc); use 6.11.x")
EOF
  rm -rf dist/mldesk build/pyinstaller
  "$PY" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath dist --workpath build/pyinstaller packaging/mldesk.spec
  [[ -x dist/mldesk/mldesk || -f dist/mldesk/mldesk.exe ]] || { echo "build.sh: no dist/mldesk/mldesk" >&2; exit 1; }
}

((do_python)) && timed "sdist + wheel" build_python
((do_bundle)) && timed "PyInstaller bundle" build_bundle

log "artifacts:"
for f in dist/mldesk-"$version".tar.gz dist/mldesk-"$version"-py3-none-any.whl dist/mldesk; do
  [[ -e $f ]] && log "  $(du -sh "$f" | cut -f1)  $f"
done
log "total: $SECONDS s"
