"""Fast checks of the packaging files (resources/, packaging/, installers/).

The builds themselves (wheel, PyInstaller bundle, .deb) are proven by
scripts/ci/package.sh; here: the version lives in one place, the desktop
integration files are valid, the icons have the right sizes, the installer
scripts pass installers/check_scripts.py, and a built wheel (when there is one)
carries the right version and package data.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import struct
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
import zipfile
from configparser import ConfigParser
from pathlib import Path

import pytest

import mldesk
from mldesk import resources

ROOT = Path(__file__).resolve().parents[2]
RES = ROOT / "resources"
APP_ID = "io.mldesk.MLDesk"
DESKTOP = RES / f"{APP_ID}.desktop"
METAINFO = RES / f"{APP_ID}.metainfo.xml"
MIME = RES / "mldesk-lab.xml"
MIME_NS = "{http://www.freedesktop.org/standards/shared-mime-info}"
SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def load_check_scripts():
    spec = importlib.util.spec_from_file_location("check_scripts", ROOT / "installers" / "check_scripts.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def desktop_entry() -> dict[str, str]:
    parser = ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str
    parser.read(DESKTOP, encoding="utf-8")
    return dict(parser["Desktop Entry"])


# -- the version: one place ---------------------------------------------------------------
def test_version_is_defined_once():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"], "pyproject must not hard-code the version"
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "mldesk.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+([ab]|rc|\.dev)?\d*", mldesk.__version__)
    # the packaging scripts read it from app/mldesk/__init__.py, never spell it out
    for rel in ("packaging/build.sh", "installers/linux/build_deb.sh", "installers/macos/build_app.sh",
                "scripts/ci/package.sh", "packaging/mldesk.spec"):
        assert mldesk.__version__ not in (ROOT / rel).read_text(), f"{rel} hard-codes the version"


def test_metainfo_newest_release_is_the_version():
    releases = ET.parse(METAINFO).getroot().find("releases")
    assert releases is not None and len(releases), "metainfo has no <releases>"
    assert releases[0].get("version") == mldesk.__version__, (
        "add a <release> for the new version on top of resources/io.mldesk.MLDesk.metainfo.xml")


def newest(pattern: str) -> Path | None:
    found = sorted((ROOT / "dist").glob(pattern), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def test_built_wheel_matches_the_version_and_has_package_data(tmp_path):
    """A wheel built now from the files a clean clone has (as packaging/build.sh does:
    tracked and untracked-not-ignored files, no caches); dist/ may hold none, or a stale one."""
    src = tmp_path / "src"
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    proc = subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path), str(src)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel = next(tmp_path.glob("mldesk-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
        version = re.search(r"^Version: (.+)$", zf.read(meta).decode(), re.M).group(1).strip()
    assert version == mldesk.__version__, f"{wheel.name} is {version}: stale, rebuild it"
    for name in ("mldesk/templates/xor/main.py", "mldesk/templates/empty/ml.yaml",
                 f"mldesk/resources/icons/{APP_ID}-256.png", f"mldesk/resources/icons/{APP_ID}.svg"):
        assert name in names, f"{name} missing from {wheel.name}"
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")], "bytecode in the wheel"


# -- desktop integration --------------------------------------------------------------------
def test_desktop_file_fields():
    entry = desktop_entry()
    assert entry["Type"] == "Application"
    assert entry["Icon"] == APP_ID
    assert entry["Exec"].split()[0] == "mldesk" and entry["Exec"].split()[-1] in ("%f", "%F", "%u", "%U")
    assert "application/x-mldesk-lab" in entry["MimeType"].split(";")
    assert entry["Terminal"] == "false"


def test_desktop_exec_is_a_command_the_cli_accepts():
    """The menu starts `mldesk open` with no file; a file manager adds .../ml.yaml."""
    from mldesk.cli.main import build_parser

    words = [w for w in desktop_entry()["Exec"].split() if not w.startswith("%")][1:]
    parser = build_parser()
    for extra in ([], ["/tmp/some-lab/ml.yaml"]):
        try:
            args = parser.parse_args(words + extra)
        except SystemExit:
            pytest.fail(f"`mldesk {' '.join(words + extra)}` is rejected by the CLI "
                        "(the `open` command must take an optional lab folder or ml.yaml file)")
        assert args.command == "open"


@pytest.mark.skipif(not shutil.which("desktop-file-validate"), reason="desktop-file-validate not installed")
def test_desktop_file_validates():
    proc = subprocess.run(["desktop-file-validate", str(DESKTOP)], capture_output=True, text=True)
    problems = [line for line in (proc.stdout + proc.stderr).splitlines() if "error:" in line or "warning:" in line]
    assert proc.returncode == 0 and not problems, proc.stdout + proc.stderr


@pytest.mark.skipif(not shutil.which("appstreamcli"), reason="appstreamcli (appstream) not installed")
def test_metainfo_validates():
    proc = subprocess.run(["appstreamcli", "validate", "--no-net", str(METAINFO)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_metainfo_fields():
    root = ET.parse(METAINFO).getroot()
    assert root.get("type") == "desktop-application"
    assert root.findtext("id") == APP_ID
    assert root.find("launchable").text == DESKTOP.name
    assert root.find("content_rating") is not None
    assert root.find("description") is not None
    mediatypes = [m.text for m in root.iter("mediatype")]
    assert "application/x-mldesk-lab" in mediatypes


def test_metainfo_screenshot_is_in_the_repository():
    urls = [img.text.strip() for img in ET.parse(METAINFO).getroot().iter("image")]
    assert urls, "metainfo has no screenshot"
    for url in urls:
        assert url.startswith("https://"), url
        rel = url.split("/main/", 1)[-1]
        assert rel == "resources/screenshots/main-window.png", url
        assert (ROOT / rel).is_file(), f"{rel} is missing: make it with scripts/ui_screenshots.py"


def test_mime_type_definition():
    root = ET.parse(MIME).getroot()
    types = root.findall(f"{MIME_NS}mime-type")
    assert [t.get("type") for t in types] == ["application/x-mldesk-lab"]
    globs = [g.get("pattern") for g in types[0].findall(f"{MIME_NS}glob")]
    assert globs == ["ml.yaml"]
    assert types[0].find(f"{MIME_NS}sub-class-of").get("type") in ("application/x-yaml", "application/yaml")


@pytest.mark.skipif(not shutil.which("update-mime-database"), reason="shared-mime-info not installed")
def test_mime_database_maps_ml_yaml(tmp_path):
    packages = tmp_path / "mime" / "packages"
    packages.mkdir(parents=True)
    shutil.copy(MIME, packages)
    system = Path("/usr/share/mime/packages/freedesktop.org.xml")
    if system.exists():
        shutil.copy(system, packages)
    proc = subprocess.run(["update-mime-database", str(tmp_path / "mime")], capture_output=True, text=True)
    assert proc.returncode == 0 and "mldesk-lab" not in proc.stderr, proc.stderr
    globs = (tmp_path / "mime" / "globs2").read_text()
    assert re.search(r"^\d+:application/x-mldesk-lab:ml\.yaml$", globs, re.M), globs


# -- icons ----------------------------------------------------------------------------------------
def test_icon_png_sizes():
    for size in SIZES:
        theme = RES / "icons" / "hicolor" / f"{size}x{size}" / "apps" / f"{APP_ID}.png"
        package = ROOT / "app" / "mldesk" / "resources" / "icons" / f"{APP_ID}-{size}.png"
        assert png_size(theme) == (size, size), theme
        assert package.read_bytes() == theme.read_bytes(), f"{package} differs: run resources/render_icons.py"
    svg = ET.parse(RES / "icons" / f"{APP_ID}.svg").getroot()
    assert svg.get("viewBox") == "0 0 512 512"
    assert (RES / "icons" / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg").read_bytes() == \
        (RES / "icons" / f"{APP_ID}.svg").read_bytes()


def test_runtime_icon_files():
    files = resources.icon_files()
    assert [p.name for p in files] == [f"{APP_ID}-{n}.png" for n in SIZES] + [f"{APP_ID}.svg"]
    assert resources.APP_ID == APP_ID


def test_windows_icon_holds_every_size_up_to_256():
    data = (RES / "icons" / f"{APP_ID}.ico").read_bytes()
    reserved, kind, count = struct.unpack("<HHH", data[:6])
    assert (reserved, kind) == (0, 1)
    sizes = []
    for i in range(count):
        w, h, _c, _r, _p, _b, length, offset = struct.unpack("<BBBBHHII", data[6 + 16 * i:22 + 16 * i])
        assert data[offset:offset + 8] == b"\x89PNG\r\n\x1a\n" and offset + length <= len(data)
        sizes.append(w or 256)
    assert sizes == [s for s in SIZES if s <= 256]


def test_rendered_icons_are_up_to_date():
    pytest.importorskip("PySide6.QtSvg")
    proc = subprocess.run([sys.executable, str(RES / "render_icons.py"), "--check"],
                          capture_output=True, text=True, env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, "stale icon files (run resources/render_icons.py):\n" + proc.stdout + proc.stderr


# -- installer scripts -------------------------------------------------------------------------
def test_check_scripts_pass():
    results = load_check_scripts().run_checks(require_bundle=False)
    failed = [f"{name}: {detail}" for name, ok, detail in results.failed]
    assert not failed, "\n".join(failed)


@pytest.mark.parametrize("mutation, finding", [
    (("PrivilegesRequired=lowest", "PrivilegesRequired=admin"), "[Setup] required keys"),
    (('#define AppGuiExe "mldesk-gui.exe"', '#define AppGuiExe "mldesk-window.exe"'), "executables it starts"),
    (('#define AppVersion "', '#define AppVersion "9.9.9'), "default AppVersion"),
    (("Tasks: desktopicon", "Tasks: desktopicons"), "every Tasks: is defined"),
    (("io.mldesk.MLDesk.ico", "missing.ico"), "SetupIconFile exists"),
    (("Check: NeedsAddPath(", "Check: NeedAddPath("), "every Check: function exists"),
])
def test_check_scripts_catch_broken_iss(tmp_path, mutation, finding):
    check_scripts = load_check_scripts()
    text = check_scripts.ISS.read_text(encoding="utf-8")
    assert mutation[0] in text
    broken = tmp_path / "mldesk.iss"
    broken.write_text(text.replace(mutation[0], mutation[1], 1), encoding="utf-8")
    results = check_scripts.Results()
    check_scripts.check_iss(results, require_bundle=False, iss=broken)
    assert any(finding in name for name, _ok, _d in results.failed), results.items


def test_spec_bakes_in_no_build_machine_paths():
    text = (ROOT / "packaging" / "mldesk.spec").read_text()
    assert not re.search(r"['\"](/(home|root|work|usr|opt|tmp)/|[A-Z]:\\\\)", text), "absolute path in the spec"


def test_smoke_command_is_wired():
    from mldesk import launcher as cli

    with pytest.raises(SystemExit) as exc:
        cli.main(["__smoke", "--help"])
    assert exc.value.code == 0


def test_smoke_test_allows_only_listed_stderr_lines():
    spec = importlib.util.spec_from_file_location("smoke_test", ROOT / "packaging" / "smoke_test.py")
    smoke_test = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(smoke_test)
    text = ("This plugin does not support propagateSizeHints()\n\n"
            "qt.qpa.plugin: Could not load the Qt platform plugin \"xcb\"\n"
            "Traceback (most recent call last):\n")
    assert smoke_test.unexpected_stderr(text) == [
        "qt.qpa.plugin: Could not load the Qt platform plugin \"xcb\"", "Traceback (most recent call last):"]
