#!/usr/bin/env bash
# Build dist/mldesk_<version>_<arch>.deb from the PyInstaller bundle dist/mldesk/.
#
#   bash packaging/build.sh --bundle       # first, if dist/mldesk is not there
#   bash installers/linux/build_deb.sh     # then this (no root needed)
#   sudo bash installers/linux/test_deb.sh # install, smoke test, remove
#
# Layout of the package:
#   /opt/mldesk/                 the bundle (executable /opt/mldesk/mldesk)
#   /usr/bin/mldesk              -> /opt/mldesk/mldesk
#   /usr/share/applications/io.mldesk.MLDesk.desktop
#   /usr/share/metainfo/io.mldesk.MLDesk.metainfo.xml
#   /usr/share/mime/packages/mldesk-lab.xml           (ml.yaml opens with mldesk)
#   /usr/share/icons/hicolor/{16x16..512x512,scalable}/apps/io.mldesk.MLDesk.*
#   /usr/share/doc/mldesk/copyright
#
# Environment: BUNDLE (default dist/mldesk), OUT (default dist),
# DEB_COMPRESSION (zstd, xz or gzip; default zstd: about 1 s against 60 s for xz;
# dpkg reads zstd since Debian 12 and Ubuntu 21.10, and any system with the glibc
# the bundle needs has such a dpkg), DEB_MAINTAINER (the Maintainer field).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

BUNDLE=${BUNDLE:-dist/mldesk}
OUT=${OUT:-dist}
COMPRESSION=${DEB_COMPRESSION:-zstd}
MAINTAINER=${DEB_MAINTAINER:-mldesk developers <packaging@mldesk.io>}

die() { echo "build_deb.sh: $*" >&2; exit 1; }
command -v dpkg-deb >/dev/null || die "dpkg-deb not found (apt-get install dpkg)"
[[ -x $BUNDLE/mldesk ]] || die "no bundle at $BUNDLE; build it first: bash packaging/build.sh --bundle"

version=$(sed -n 's/^__version__ *= *["'\'']\([^"'\'']*\)["'\''].*/\1/p' app/mldesk/__init__.py)
[[ -n $version ]] || die "no __version__ in app/mldesk/__init__.py"
bundle_version=$("$BUNDLE/mldesk" --version 2>/dev/null | awk '{print $2}')
[[ $bundle_version == "$version" ]] || die "the bundle says version '$bundle_version', the source '$version': rebuild the bundle"
# PEP 440 pre-releases sort before the release in Debian only with a tilde: 0.2.0rc1 -> 0.2.0~rc1
debversion=$(sed -E 's/[.]?(a|b|rc|dev)([0-9]*)$/~\1\2/' <<<"$version")
arch=$(dpkg --print-architecture)
# The bundle's libraries come from the build machine: they need its glibc or newer.
glibc=$(find "$BUNDLE" -type f \( -name '*.so*' -o -name mldesk \) -exec grep -aoh 'GLIBC_2\.[0-9]*' {} + 2>/dev/null \
        | sort -t. -k2,2n -u | tail -1 | sed 's/GLIBC_//')
[[ -n $glibc ]] || glibc=2.31

stage=build/deb/mldesk_${debversion}_${arch}
rm -rf "$stage"
mkdir -p "$stage/DEBIAN" "$stage/opt" "$stage/usr/bin" "$stage/usr/share/applications" \
  "$stage/usr/share/metainfo" "$stage/usr/share/mime/packages" "$stage/usr/share/icons" \
  "$stage/usr/share/doc/mldesk"

cp -a "$BUNDLE" "$stage/opt/mldesk"
find "$stage/opt/mldesk" \( -name __pycache__ -o -name '*.pyc' \) -prune -exec rm -rf {} +
ln -s /opt/mldesk/mldesk "$stage/usr/bin/mldesk"
install -m 644 resources/io.mldesk.MLDesk.desktop "$stage/usr/share/applications/"
install -m 644 resources/io.mldesk.MLDesk.metainfo.xml "$stage/usr/share/metainfo/"
install -m 644 resources/mldesk-lab.xml "$stage/usr/share/mime/packages/"
cp -r resources/icons/hicolor "$stage/usr/share/icons/"

cat >"$stage/usr/share/doc/mldesk/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: mldesk
Comment: /opt/mldesk also contains Python, Qt (LGPL-3) and PySide6 (LGPL-3) as
 shipped in their PyPI wheels, and Python packages under their own licenses
 (their license files are inside the bundle where the packages ship them).

Files: *
Copyright: mldesk developers
License: MIT
 Permission is hereby granted, free of charge, to any person obtaining a copy
 of this software and associated documentation files (the "Software"), to deal
 in the Software without restriction, including without limitation the rights
 to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
 copies of the Software, and to permit persons to whom the Software is
 furnished to do so, subject to the following conditions:
 .
 The above copyright notice and this permission notice shall be included in all
 copies or substantial portions of the Software.
 .
 THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
 IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
 FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
 AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
 LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
 OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
 SOFTWARE.
EOF

# Permissions as dpkg expects them, whatever the umask of the build.
chmod -R u+rwX,go+rX,go-w "$stage"

installed_size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
# Depends: what the bundle does not carry. Qt's xcb platform plugin (and its GL
# integration) need the X11/GL libraries below; Wayland sessions use libwayland-*.
# The bundle carries copies of some of them too, but the system's are wanted for
# the GL driver stack, fonts (libfontconfig1 brings fontconfig-config and a font)
# and the session bus. python3 runs the labs' code (the process runtime).
cat >"$stage/DEBIAN/control" <<EOF
Package: mldesk
Version: $debversion
Architecture: $arch
Maintainer: $MAINTAINER
Installed-Size: $installed_size
Depends: libc6 (>= $glibc), python3, libegl1, libgl1, libxcb1, libx11-xcb1, libxcb-cursor0, libxcb-icccm4, libxcb-image0, libxcb-keysyms1, libxcb-randr0, libxcb-render-util0, libxcb-shape0, libxcb-xfixes0, libxcb-xkb1, libxkbcommon0, libxkbcommon-x11-0, libfontconfig1, libfreetype6, libdbus-1-3, libglib2.0-0, libwayland-client0, libwayland-cursor0, libwayland-egl1
Recommends: docker.io, python3-venv
Suggests: python3-numpy, openssh-client
Section: science
Priority: optional
Homepage: https://github.com/mldesk/mldesk
Description: run machine-learning experiments on your own hardware
 mldesk runs machine-learning experiments the way MachineLabs did, on hardware
 you control: this computer (in Docker, or with the host's Python) or GPU
 servers over SSH. Every execution keeps a snapshot of its code, its complete
 live output, its inputs and outputs; executions keep running when the window
 closes. Includes the desktop application and the mldesk command line.
 .
 Docker is recommended, not required: without it labs run with python3.
EOF

cat >"$stage/DEBIAN/postinst" <<'EOF'
#!/bin/sh
# Refresh the desktop, MIME and icon caches (dpkg triggers usually do this too).
set -e
if [ "$1" = "configure" ]; then
    if command -v update-desktop-database >/dev/null 2>&1; then
        update-desktop-database -q /usr/share/applications || true
    fi
    if command -v update-mime-database >/dev/null 2>&1; then
        update-mime-database /usr/share/mime || true
    fi
    if command -v gtk-update-icon-cache >/dev/null 2>&1 && [ -f /usr/share/icons/hicolor/index.theme ]; then
        gtk-update-icon-cache -q -t -f /usr/share/icons/hicolor || true
    fi
fi
exit 0
EOF

cat >"$stage/DEBIAN/postrm" <<'EOF'
#!/bin/sh
# After removal: refresh the caches so no stale entry points to /opt/mldesk.
# The users' data (~/.local/share/mldesk, or MLDESK_HOME) is theirs and stays.
set -e
case "$1" in
    remove|purge)
        if command -v update-desktop-database >/dev/null 2>&1; then
            update-desktop-database -q /usr/share/applications || true
        fi
        if command -v update-mime-database >/dev/null 2>&1; then
            update-mime-database /usr/share/mime || true
        fi
        if command -v gtk-update-icon-cache >/dev/null 2>&1 && [ -f /usr/share/icons/hicolor/index.theme ]; then
            gtk-update-icon-cache -q -t -f /usr/share/icons/hicolor || true
        fi
        ;;
esac
exit 0
EOF
chmod 755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/postrm"

mkdir -p "$OUT"
deb=$OUT/mldesk_${debversion}_${arch}.deb
rm -f "$deb"
t0=$SECONDS
dpkg-deb --root-owner-group -Z"$COMPRESSION" --build "$stage" "$deb" >/dev/null
echo "[deb] $deb: $(du -h "$deb" | cut -f1), installed size $((installed_size / 1024)) MiB, $COMPRESSION in $((SECONDS - t0)) s"
dpkg-deb --info "$deb" | sed -n 's/^ *\(Version\|Depends\|Recommends\): /[deb]   \1: /p'
