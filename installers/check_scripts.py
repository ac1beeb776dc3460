"""Check the installer scripts that cannot run on this machine, and the ones that can.

    python installers/check_scripts.py                  # all checks
    python installers/check_scripts.py --require-bundle # also fail when dist/mldesk is missing

- ``installers/windows/mldesk.iss`` (Inno Setup): parses into its sections; [Setup]
  has the required keys (per-user install, AppId GUID, uninstaller icon, ...);
  its default version is ``mldesk.__version__``; every ``Source:`` path and the
  setup icon exist (the bundle after ``packaging/build.sh``, the icon in the
  repository); the Start menu entry and every command start an executable the
  PyInstaller spec builds; every ``Tasks:`` and ``Check:`` it names is defined.
- ``installers/macos/build_app.sh``: ``bash -n``; the Info.plist it writes
  (``--plist-only``) is a valid plist with the right identifier, executable, icon
  and version; the .icns it copies is a well-formed icns file.
- The shell scripts of packaging/, installers/linux/ and scripts/ci/package.sh
  pass ``bash -n``; the files the .deb build copies exist.

Standard library only. Exit status 0 when every check passed.
"""

from __future__ import annotations

import argparse
import glob
import os
import plistlib
import re
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ISS = ROOT / "installers" / "windows" / "mldesk.iss"
MAC_SCRIPT = ROOT / "installers" / "macos" / "build_app.sh"
SPEC = ROOT / "packaging" / "mldesk.spec"
APP_ID = "io.mldesk.MLDesk"
SHELL_SCRIPTS = [
    "packaging/build.sh", "installers/linux/build_deb.sh", "installers/linux/test_deb.sh",
    "installers/macos/build_app.sh", "scripts/ci/package.sh",
]
DEB_INPUTS = [
    "resources/io.mldesk.MLDesk.desktop", "resources/io.mldesk.MLDesk.metainfo.xml",
    "resources/mldesk-lab.xml", f"resources/icons/hicolor/scalable/apps/{APP_ID}.svg",
] + [f"resources/icons/hicolor/{n}x{n}/apps/{APP_ID}.png" for n in (16, 24, 32, 48, 64, 128, 256, 512)]

ISS_REQUIRED_SETUP = {
    "AppId": r"\{\{[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}\}",
    "AppName": r".+",
    "AppVersion": r".+",
    "AppPublisher": r".+",
    "DefaultDirName": r"\{autopf\}\\.+",
    "PrivilegesRequired": r"lowest",
    "OutputDir": r".+",
    "OutputBaseFilename": r".+",
    "SetupIconFile": r".+\.ico",
    "UninstallDisplayIcon": r"\{app\}\\.+\.exe",
    "ArchitecturesInstallIn64BitMode": r".+",
    "WizardStyle": r".+",
}


def source_version() -> str:
    text = (ROOT / "app" / "mldesk" / "__init__.py").read_text()
    return re.search(r'^__version__\s*=\s*["\']([^"\']+)["\']', text, re.M).group(1)


class Results:
    def __init__(self):
        self.items: list[tuple[str, bool | None, str]] = []

    def add(self, name: str, ok: bool | None, detail: str = "") -> None:
        self.items.append((name, ok, detail))

    @property
    def failed(self) -> list[tuple[str, bool | None, str]]:
        return [i for i in self.items if i[1] is False]


# -- Inno Setup ------------------------------------------------------------------------
def split_entry(line: str) -> dict[str, str]:
    """``Name: "a; b"; Flags: x`` -> {"Name": "a; b", "Flags": "x"} ("" is a quote)."""
    fields, key, buf, i, quoted = {}, None, "", 0, False
    while i < len(line):
        c = line[i]
        if quoted:
            if c == '"' and line[i + 1:i + 2] == '"':
                buf += '"'
                i += 1
            elif c == '"':
                quoted = False
            else:
                buf += c
        elif c == '"':
            quoted = True
        elif c == ":" and key is None:
            key, buf = buf.strip(), ""
        elif c == ";":
            if key is None:
                raise ValueError(f"no 'Name:' before ';' in {line!r}")
            fields[key] = buf.strip()
            key, buf = None, ""
        else:
            buf += c
        i += 1
    if quoted:
        raise ValueError(f"unterminated quote in {line!r}")
    if key is not None:
        fields[key] = buf.strip()
    elif buf.strip():
        raise ValueError(f"text without a 'Name:' in {line!r}")
    return fields


def parse_iss(text: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    """(preprocessor defines, {section: [lines]}); comments and blank lines dropped."""
    defines: dict[str, str] = {}
    sections: dict[str, list[str]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if current != "Code" and (not line or line.startswith(";")):
            continue
        m = re.match(r'#\s*define\s+(\w+)\s+"([^"]*)"', line)
        if m:
            defines.setdefault(m.group(1), m.group(2))
            continue
        if line.startswith("#"):
            continue
        m = re.fullmatch(r"\[(\w+)\]", line)
        if m:
            current = m.group(1)
            if current in sections:
                raise ValueError(f"section [{current}] appears twice")
            sections[current] = []
            continue
        if current is None:
            raise ValueError(f"text before the first section: {line!r}")
        sections[current].append(raw if current == "Code" else line)
    return defines, sections


def expand(value: str, defines: dict[str, str]) -> str:
    for _ in range(5):
        value = re.sub(r"\{#(\w+)\}", lambda m: defines.get(m.group(1), m.group(0)), value)
    return value


def spec_executables() -> set[str]:
    text = SPEC.read_text()
    return {m + ".exe" for m in re.findall(r'name="([\w-]+)"', text) if not m.endswith(".app")}


def check_iss(results: Results, require_bundle: bool, iss: Path = ISS) -> None:
    try:
        defines, sections = parse_iss(iss.read_text(encoding="utf-8"))
        entries = {name: [split_entry(line) for line in lines]
                   for name, lines in sections.items() if name not in ("Setup", "Code")}
    except (OSError, ValueError) as exc:
        results.add("iss: parses", False, str(exc))
        return
    results.add("iss: parses", True, f"sections {', '.join(sections)}")

    missing_sections = {"Setup", "Files", "Icons", "Languages"} - set(sections)
    results.add("iss: required sections", not missing_sections, f"missing {sorted(missing_sections)}" if missing_sections else "")

    setup = {}
    for line in sections.get("Setup", []):
        key, sep, value = line.partition("=")
        if not sep:
            results.add("iss: [Setup] lines are key=value", False, line)
            return
        setup[key.strip()] = expand(value.strip(), defines)
    bad = [f"{k} ({setup.get(k)!r})" for k, pattern in ISS_REQUIRED_SETUP.items()
           if k not in setup or not re.fullmatch(pattern, setup[k])]
    results.add("iss: [Setup] required keys", not bad, "wrong or missing: " + ", ".join(bad) if bad else
                "per-user (PrivilegesRequired=lowest), AppId GUID, uninstaller icon")

    version = source_version()
    results.add("iss: default AppVersion = mldesk.__version__", defines.get("AppVersion") == version,
                f"iss {defines.get('AppVersion')!r}, source {version!r}")

    iss_dir = ISS.parent  # paths in a copy (tests) resolve as in the original
    def local(path: str) -> Path:
        return (iss_dir / expand(path, defines).replace("\\", "/")).resolve()

    icon = local(setup.get("SetupIconFile", ""))
    results.add("iss: SetupIconFile exists", icon.is_file(), str(icon.relative_to(ROOT)) if icon.is_relative_to(ROOT) else str(icon))
    out_dir = local(setup.get("OutputDir", "."))
    results.add("iss: OutputDir is dist/", out_dir == ROOT / "dist", str(out_dir))

    bundle_built = (ROOT / "dist" / "mldesk").is_dir()
    for entry in entries.get("Files", []):
        source = local(entry.get("Source", ""))
        rel = source.relative_to(ROOT) if source.is_relative_to(ROOT) else source
        in_bundle = str(rel).startswith("dist/mldesk")
        matches = glob.glob(str(source))
        if in_bundle and not bundle_built:
            results.add(f"iss: Source {rel}", False if require_bundle else None,
                        "no bundle yet (bash packaging/build.sh --bundle)")
        else:
            results.add(f"iss: Source {rel}", bool(matches), f"{len(matches)} match(es)")
        if not entry.get("DestDir"):
            results.add(f"iss: Source {rel} has a DestDir", False)

    exes = spec_executables()
    start_menu = [e for e in entries.get("Icons", []) if e.get("Name", "").startswith("{autoprograms}")]
    results.add("iss: Start menu entry", bool(start_menu),
                expand(start_menu[0].get("Name", ""), defines) if start_menu else "none in [Icons]")
    started = [e.get("Filename", "") for e in entries.get("Icons", []) + entries.get("Run", [])]
    started += [setup.get("UninstallDisplayIcon", "")]
    started += re.findall(r'\{app\}\\[\w-]+\.exe', " ".join(e.get("ValueData", "") for e in entries.get("Registry", [])))
    wrong = sorted({expand(s, defines).rsplit("\\", 1)[-1] for s in started if s} - exes)
    results.add("iss: executables it starts are built by the spec", not wrong,
                f"not built by packaging/mldesk.spec: {wrong}" if wrong else f"spec builds {sorted(exes)}")

    tasks = {e.get("Name") for e in entries.get("Tasks", [])}
    used = {t.strip() for section in entries.values() for e in section for t in e.get("Tasks", "").split(",") if t.strip()}
    results.add("iss: every Tasks: is defined", used <= tasks, f"undefined: {sorted(used - tasks)}" if used - tasks else "")

    code = "\n".join(sections.get("Code", []))
    defined_funcs = set(re.findall(r"^\s*(?:function|procedure)\s+(\w+)", code, re.M | re.I))
    builtins = {"IsAdminInstallMode", "IsWin64", "WizardIsTaskSelected", "IsTaskSelected"}
    checks = {name for section in entries.values() for e in section
              for name in re.findall(r"\b([A-Za-z_]\w*)", re.sub(r"'[^']*'", "", e.get("Check", "")))
              if name.lower() not in ("and", "or", "not")}
    results.add("iss: every Check: function exists", checks <= defined_funcs | builtins,
                f"undefined: {sorted(checks - defined_funcs - builtins)}" if checks - defined_funcs - builtins else "")
    opens = len(re.findall(r"\b(begin|case|try)\b", code, re.I))
    closes = len(re.findall(r"\bend\b", code, re.I))
    results.add("iss: [Code] begin/end balance", opens == closes, f"{opens} begin/case/try, {closes} end")


# -- macOS -------------------------------------------------------------------------------
def check_icns(path: Path) -> str | None:
    data = path.read_bytes()
    if data[:4] != b"icns" or struct.unpack(">I", data[4:8])[0] != len(data):
        return "bad header or length"
    off, kinds = 8, []
    while off < len(data):
        kind, length = data[off:off + 4], struct.unpack(">I", data[off + 4:off + 8])[0]
        if length < 8 or off + length > len(data):
            return f"bad element {kind!r} at {off}"
        if not data[off + 8:off + 16].startswith(b"\x89PNG"):
            return f"element {kind!r} is not PNG"
        kinds.append(kind.decode())
        off += length
    return None if {"ic07", "ic08", "ic09", "ic10"} & set(kinds) else f"no large sizes: {kinds}"


def check_macos(results: Results, script: Path = MAC_SCRIPT) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        plist_path = Path(tmp) / "Info.plist"
        proc = subprocess.run(["bash", str(script), "--plist-only", str(plist_path)],
                              capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0 or not plist_path.exists():
            results.add("macos: build_app.sh --plist-only", False, proc.stderr.strip())
            return
        try:
            with open(plist_path, "rb") as f:
                plist = plistlib.load(f)
        except Exception as exc:  # noqa: BLE001 - any parse error is the finding
            results.add("macos: Info.plist is valid plist XML", False, str(exc))
            return
    results.add("macos: Info.plist is valid plist XML", True)
    version = source_version()
    want = {
        "CFBundleIdentifier": APP_ID, "CFBundleExecutable": "mldesk", "CFBundlePackageType": "APPL",
        "CFBundleVersion": version, "CFBundleIconFile": f"{APP_ID}.icns",
    }
    wrong = {k: plist.get(k) for k, v in want.items() if plist.get(k) != v}
    results.add("macos: Info.plist identifier, executable, version", not wrong,
                f"wrong: {wrong}" if wrong else f"version {version}")
    short = plist.get("CFBundleShortVersionString", "")
    results.add("macos: CFBundleShortVersionString is numeric", bool(re.fullmatch(r"\d+(\.\d+){0,2}", short))
                and version.startswith(short), short)
    exe_names = {n[:-4] for n in spec_executables()}
    results.add("macos: CFBundleExecutable is the spec's executable", plist.get("CFBundleExecutable") in exe_names)
    icns = ROOT / "resources" / "icons" / f"{APP_ID}.icns"
    problem = check_icns(icns) if icns.exists() else "missing"
    results.add("macos: resources/icons/io.mldesk.MLDesk.icns", problem is None, problem or "well-formed")


# -- shell scripts ------------------------------------------------------------------------
def check_shell(results: Results) -> None:
    for rel in SHELL_SCRIPTS:
        path = ROOT / rel
        if not path.exists():
            results.add(f"bash -n {rel}", False, "missing")
            continue
        proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        results.add(f"bash -n {rel}", proc.returncode == 0, proc.stderr.strip())
    missing = [p for p in DEB_INPUTS if not (ROOT / p).is_file()]
    results.add("deb: the files build_deb.sh copies exist", not missing, f"missing {missing}" if missing else "")


def run_checks(require_bundle: bool = False) -> Results:
    results = Results()
    check_iss(results, require_bundle)
    check_macos(results)
    check_shell(results)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--require-bundle", action="store_true", help="fail (not skip) when dist/mldesk is missing")
    args = ap.parse_args(argv)
    results = run_checks(args.require_bundle)
    for name, ok, detail in results.items:
        mark = {True: "ok  ", False: "FAIL", None: "skip"}[ok]
        print(f"{mark} {name}" + (f": {detail}" if detail else ""))
    failed = results.failed
    print(f"\n{len(results.items) - len(failed)} of {len(results.items)} checks passed" + (
        f", {len(failed)} failed" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    os.chdir(ROOT)
    raise SystemExit(main())
