#!/usr/bin/env bash
# Finish dist/mldesk.app and build dist/mldesk-<version>-macos-<arch>.dmg, on a Mac,
# from the PyInstaller output (bash packaging/build.sh --bundle: on macOS the spec
# also makes dist/mldesk.app, with PyInstaller's own bundle layout: executable in
# Contents/MacOS, libraries in Contents/Frameworks, data in Contents/Resources,
# as codesign requires).
#
#   bash installers/macos/build_app.sh                   # .app + .dmg (macOS only)
#   bash installers/macos/build_app.sh --app-only        # just the .app
#   bash installers/macos/build_app.sh --plist-only FILE # write Info.plist to FILE
#                                                        # (any OS; used by the checks)
#
# Steps: write the complete Info.plist (identifier, version from
# app/mldesk/__init__.py, icon, minimum macOS, category), sign, verify, run the
# frozen smoke test against the .app's executable, then the drag-to-install .dmg.
# Signing: CODESIGN_IDENTITY="Developer ID Application: ..." signs with the hardened
# runtime (then notarize the .dmg with `xcrun notarytool submit --wait` and
# `xcrun stapler staple`); without it the app is signed ad hoc, enough to run it
# on the Mac that built it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

OUT=${OUT:-dist}
APP_ID=io.mldesk.MLDesk
MIN_MACOS=${MIN_MACOS:-12.0}

die() { echo "build_app.sh: $*" >&2; exit 1; }

version=$(sed -n 's/^__version__ *= *["'\'']\([^"'\'']*\)["'\''].*/\1/p' app/mldesk/__init__.py)
[[ -n $version ]] || die "no __version__ in app/mldesk/__init__.py"
# CFBundleShortVersionString must be numbers only: 0.2.0rc1 -> 0.2.0
short_version=$(sed -E 's/^([0-9]+(\.[0-9]+){0,2}).*/\1/' <<<"$version")
year=$(date +%Y)

write_plist() {  # write_plist FILE
  cat >"$1" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>CFBundleDevelopmentRegion</key>
  <string>en</string>
  <key>CFBundleDisplayName</key>
  <string>mldesk</string>
  <key>CFBundleExecutable</key>
  <string>mldesk</string>
  <key>CFBundleIconFile</key>
  <string>$APP_ID.icns</string>
  <key>CFBundleIdentifier</key>
  <string>$APP_ID</string>
  <key>CFBundleInfoDictionaryVersion</key>
  <string>6.0</string>
  <key>CFBundleName</key>
  <string>mldesk</string>
  <key>CFBundlePackageType</key>
  <string>APPL</string>
  <key>CFBundleShortVersionString</key>
  <string>$short_version</string>
  <key>CFBundleVersion</key>
  <string>$version</string>
  <key>LSApplicationCategoryType</key>
  <string>public.app-category.developer-tools</string>
  <key>LSMinimumSystemVersion</key>
  <string>$MIN_MACOS</string>
  <key>NSHighResolutionCapable</key>
  <true/>
  <key>NSPrincipalClass</key>
  <string>NSApplication</string>
  <key>NSRequiresAquaSystemAppearance</key>
  <false/>
  <key>NSHumanReadableCopyright</key>
  <string>© $year mldesk developers, MIT License</string>
</dict>
</plist>
EOF
}

case ${1:-} in
  --plist-only)
    [[ -n ${2:-} ]] || die "usage: $0 --plist-only FILE"
    write_plist "$2"
    exit 0 ;;
  --app-only|"") ;;
  *) die "usage: $0 [--app-only | --plist-only FILE]" ;;
esac

[[ $(uname -s) == Darwin ]] || die "builds the .app and .dmg on macOS only (this is $(uname -s)); --plist-only works anywhere"
app=$OUT/mldesk.app
[[ -x $app/Contents/MacOS/mldesk ]] || die "no $app from PyInstaller; run on this Mac: bash packaging/build.sh --bundle"
bundle_version=$("$app/Contents/MacOS/mldesk" --version | awk '{print $2}')
[[ $bundle_version == "$version" ]] || die "the app is version '$bundle_version', the source '$version': rebuild it"

write_plist "$app/Contents/Info.plist"
plutil -lint "$app/Contents/Info.plist" >/dev/null
cp resources/icons/$APP_ID.icns "$app/Contents/Resources/$APP_ID.icns"

if [[ -n ${CODESIGN_IDENTITY:-} ]]; then
  codesign --force --deep --options runtime --timestamp --sign "$CODESIGN_IDENTITY" "$app"
else
  codesign --force --deep --sign - "$app"  # ad hoc
fi
codesign --verify --deep --strict "$app"

# The same smoke test as on Linux, against the .app's executable.
if [[ ${SKIP_SMOKE:-0} != 1 ]]; then
  QT_QPA_PLATFORM=offscreen MLDESK_HOME=$(mktemp -d) "$app/Contents/MacOS/mldesk" __smoke
fi
echo "[macos] $app ($(du -sh "$app" | cut -f1))"
[[ ${1:-} == --app-only ]] && exit 0

dmg=$OUT/mldesk-$version-macos-$(uname -m).dmg
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp -R "$app" "$stage/"
ln -s /Applications "$stage/Applications"   # drag-to-install
rm -f "$dmg"
hdiutil create -volname "mldesk $version" -srcfolder "$stage" -fs HFS+ -format UDZO -ov "$dmg" >/dev/null
hdiutil verify "$dmg" >/dev/null
if [[ -n ${CODESIGN_IDENTITY:-} ]]; then
  codesign --sign "$CODESIGN_IDENTITY" --timestamp "$dmg"
fi
echo "[macos] $dmg ($(du -h "$dmg" | cut -f1))"
