#!/usr/bin/env bash
# Install the .deb on this machine, test the installed copy, remove it again.
#
#   sudo bash installers/linux/test_deb.sh [dist/mldesk_<version>_<arch>.deb]
#
# 1. apt-get install ./mldesk_*.deb (apt brings the Depends it lacks);
# 2. the files are where they belong; desktop file and metainfo validate in place;
#    the MIME database maps ml.yaml to application/x-mldesk-lab; every library
#    the installed Qt plugins need (xcb, wayland, offscreen) resolves;
# 3. `mldesk --version` from PATH, then packaging/smoke_test.py against
#    /usr/bin/mldesk (offscreen, and on xcb under Xvfb when it is installed);
# 4. apt-get remove --purge: nothing is left under /opt/mldesk, no /usr/bin/mldesk,
#    no desktop file, icon, metainfo or MIME entry of ours.
# Needs root and apt. Refuses to run over an mldesk that was installed before
# (it would remove it), unless MLDESK_TEST_DEB_FORCE=1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

die() { echo "test_deb.sh: FAILED: $*" >&2; exit 1; }
step() { printf '\n== %s (t=%ss)\n' "$*" "$SECONDS"; }
[[ $(id -u) == 0 ]] || die "needs root (apt-get install)"

deb=${1:-}
if [[ -z $deb ]]; then
  shopt -s nullglob
  debs=(dist/mldesk_*.deb)
  ((${#debs[@]} == 1)) || die "expected exactly one dist/mldesk_*.deb, found ${#debs[@]}; pass the file"
  deb=${debs[0]}
fi
[[ -f $deb ]] || die "no such file: $deb"
deb=$(realpath "$deb")
PY=${PYTHON:-.venv/bin/python}
[[ -x $PY ]] || PY=python3

if dpkg-query -W -f='${db:Status-Status}' mldesk 2>/dev/null | grep -qx installed; then
  [[ ${MLDESK_TEST_DEB_FORCE:-0} == 1 ]] || die "mldesk is already installed; this test removes it at the end (set MLDESK_TEST_DEB_FORCE=1 to go on)"
fi

removed=0
cleanup() {
  if ((removed == 0)); then
    echo "test_deb.sh: removing mldesk after a failure" >&2
    apt-get remove --purge -y -qq mldesk >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
step "apt-get install $deb"
t0=$SECONDS
apt_install() { apt-get install -y -qq --no-install-recommends -o Dpkg::Use-Pty=0 "$deb" </dev/null; }
if ! apt_install; then  # a fresh machine may have no package lists yet for the Depends
  echo "   apt-get install failed; updating the package lists and trying again"
  apt-get update -qq </dev/null
  apt_install
fi
echo "   installed in $((SECONDS - t0)) s"
version=$(dpkg-query -W -f='${Version}' mldesk)

step "installed files"
files=(
  /opt/mldesk/mldesk /usr/bin/mldesk
  /usr/share/applications/io.mldesk.MLDesk.desktop
  /usr/share/metainfo/io.mldesk.MLDesk.metainfo.xml
  /usr/share/mime/packages/mldesk-lab.xml
  /usr/share/icons/hicolor/scalable/apps/io.mldesk.MLDesk.svg
  /usr/share/doc/mldesk/copyright
)
for size in 16 24 32 48 64 128 256 512; do
  files+=("/usr/share/icons/hicolor/${size}x${size}/apps/io.mldesk.MLDesk.png")
done
for f in "${files[@]}"; do [[ -e $f ]] || die "missing after install: $f"; done
[[ $(readlink /usr/bin/mldesk) == /opt/mldesk/mldesk ]] || die "/usr/bin/mldesk does not point at /opt/mldesk/mldesk"
echo "   ${#files[@]} files in place; /usr/bin/mldesk -> /opt/mldesk/mldesk"
if command -v desktop-file-validate >/dev/null; then
  out=$(desktop-file-validate /usr/share/applications/io.mldesk.MLDesk.desktop 2>&1) || die "desktop-file-validate: $out"
  grep -E "error|warning" <<<"$out" && die "desktop-file-validate complained"
  echo "   desktop-file-validate: ok"
fi
if command -v appstreamcli >/dev/null; then
  appstreamcli validate --no-net /usr/share/metainfo/io.mldesk.MLDesk.metainfo.xml >/dev/null \
    || die "appstreamcli validate failed"
  echo "   appstreamcli validate: ok"
fi
grep -q '^80:application/x-mldesk-lab:ml.yaml$' /usr/share/mime/globs2 \
  || die "the MIME database has no ml.yaml glob (did postinst run update-mime-database?)"
echo "   MIME: ml.yaml -> application/x-mldesk-lab"
if [[ -f /usr/share/applications/mimeinfo.cache ]]; then
  grep -q '^application/x-mldesk-lab=.*io.mldesk.MLDesk.desktop' /usr/share/applications/mimeinfo.cache \
    || die "mimeinfo.cache does not offer io.mldesk.MLDesk.desktop for application/x-mldesk-lab"
  echo "   desktop database: application/x-mldesk-lab opens with io.mldesk.MLDesk.desktop"
fi
missing=$(cd /opt/mldesk/_internal && for f in PySide6/Qt/plugins/platforms/*.so PySide6/Qt/plugins/xcbglintegrations/*.so \
            PySide6/Qt/plugins/wayland-*/*.so PySide6/Qt/plugins/iconengines/*.so PySide6/Qt/plugins/imageformats/*.so; do
            LD_LIBRARY_PATH=$PWD ldd "$f" | sed -n "s|^\s*\(.*\) => not found|$f: \1|p"; done)
[[ -z $missing ]] || die "libraries the Qt plugins need are missing (add them to Depends):
$missing"
echo "   every library of the Qt platform plugins resolves"

step "mldesk --version"
source_version=$(sed -n 's/^__version__ *= *["'\'']\([^"'\'']*\)["'\''].*/\1/p' app/mldesk/__init__.py)
got=$(cd / && mldesk --version)
echo "   $got (package version $version)"
[[ $got == "mldesk $source_version" ]] || die "mldesk --version says '$got', the source is $source_version"

step "smoke test of the installed copy"
"$PY" packaging/smoke_test.py --exe /usr/bin/mldesk

step "apt-get remove --purge mldesk"
apt-get remove --purge -y -qq -o Dpkg::Use-Pty=0 mldesk </dev/null
removed=1
left=()
for f in /opt/mldesk /usr/bin/mldesk "${files[@]}"; do
  [[ -e $f || -L $f ]] && left+=("$f")
done
((${#left[@]} == 0)) || die "left behind after purge: ${left[*]}"
if grep -q 'x-mldesk-lab' /usr/share/mime/globs2 2>/dev/null; then
  die "the MIME database still knows application/x-mldesk-lab after purge"
fi
if dpkg-query -W mldesk >/dev/null 2>&1 && [[ $(dpkg-query -W -f='${db:Status-Status}' mldesk) != not-installed ]]; then
  die "dpkg still lists mldesk: $(dpkg-query -W -f='${db:Status-Status}' mldesk)"
fi
echo "   nothing left under /opt/mldesk, no /usr/bin/mldesk, caches updated"

printf '\ntest_deb.sh: all passed in %s s (%s)\n' "$SECONDS" "$(basename "$deb")"
