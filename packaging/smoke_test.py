"""Smoke test of the FROZEN mldesk: the PyInstaller bundle, or an installed copy.

    .venv/bin/python packaging/smoke_test.py                      # dist/mldesk/mldesk
    .venv/bin/python packaging/smoke_test.py --exe /usr/bin/mldesk  # the installed .deb

Runs the executable the way a user's desktop would, offscreen, with a temporary
MLDESK_HOME (and XDG folders), so no data of the user is touched:

1. the bundle's files: templates, icons, the Qt platform plugins xcb, wayland
   and offscreen, no dangling symlinks;
2. no path of the build machine inside it: the code objects' file names are
   relative and no file names the checkout or the build venv (needs PyInstaller
   importable, i.e. the build venv; skipped otherwise, or with --no-path-check);
3. ``mldesk --version`` prints the version from app/mldesk/__init__.py;
4. ``mldesk __smoke`` (app/mldesk/smoke.py): the window opens the example lab,
   Run starts one execution on the process runtime, it finishes with the
   expected output; on the offscreen platform, and again on xcb under Xvfb when
   Xvfb is installed (--xvfb auto|yes|no).

Every line the executable writes to stderr must match ALLOWED_STDERR; anything
else fails the test (new warnings get looked at, not ignored). Exit status 0 when
everything passed. Each step prints its time.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: stderr lines that are expected, as regular expressions (matched in full).
#: Keep it short: a line belongs here only when it is understood and harmless.
ALLOWED_STDERR = [
    # Qt's offscreen platform plugin cannot pass window size hints to a window
    # manager (there is none); printed once per top-level window (Qt 6.11).
    r"This plugin does not support propagateSizeHints\(\)",
]


def version_from_source() -> str:
    text = (ROOT / "app" / "mldesk" / "__init__.py").read_text()
    match = re.search(r'^__version__\s*=\s*["\']([^"\']+)["\']', text, re.M)
    if not match:
        raise SystemExit("smoke_test: no __version__ in app/mldesk/__init__.py")
    return match.group(1)


class Failed(Exception):
    pass


def step(name):
    def wrap(fn):
        def run(*args, **kwargs):
            t0 = time.monotonic()
            print(f"== {name}", flush=True)
            result = fn(*args, **kwargs)
            print(f"   ok ({time.monotonic() - t0:.1f} s)", flush=True)
            return result
        return run
    return wrap


def check(condition: bool, message: str) -> None:
    if not condition:
        raise Failed(message)


def unexpected_stderr(text: str) -> list[str]:
    patterns = [re.compile(p) for p in ALLOWED_STDERR]
    return [line for line in text.splitlines()
            if line.strip() and not any(p.fullmatch(line.strip()) for p in patterns)]


# -- the bundle's files -------------------------------------------------------------
def bundle_dirs(exe: Path) -> tuple[Path, Path]:
    """(folder of the executable, folder of the bundled files)."""
    top = exe.resolve().parent
    internal = top / "_internal"
    return top, internal if internal.is_dir() else top


@step("bundle contents")
def check_contents(exe: Path) -> None:
    _top, internal = bundle_dirs(exe)
    for template in ("empty", "xor"):
        for name in ("main.py", "ml.yaml"):
            check((internal / "mldesk" / "templates" / template / name).is_file(),
                  f"template file mldesk/templates/{template}/{name} is not in the bundle ({internal})")
    caches = list((internal / "mldesk").rglob("__pycache__"))
    check(not caches, f"__pycache__ folders in the bundle's package data: {caches[:3]}")
    icons = sorted(p.name for p in (internal / "mldesk" / "resources" / "icons").glob("*"))
    check(len(icons) >= 9, f"icons missing from the bundle: {icons}")
    if sys.platform.startswith("linux"):
        plugins = internal / "PySide6" / "Qt" / "plugins"
        for rel in ("platforms/libqxcb.so", "platforms/libqoffscreen.so", "platforms/libqwayland.so",
                    "xcbglintegrations/libqxcb-glx-integration.so", "iconengines/libqsvgicon.so",
                    "imageformats/libqsvg.so"):
            check((plugins / rel).is_file(), f"Qt plugin {rel} is not in the bundle")
        dangling = [p for p in internal.rglob("*") if p.is_symlink() and not p.exists()]
        check(not dangling, f"dangling symlinks in the bundle: {dangling[:5]}")
    print(f"   templates, {len(icons)} icon files, Qt plugins xcb/offscreen/wayland present")


# -- build-machine paths --------------------------------------------------------------
def _code_filenames(code: types.CodeType, out: set[str]) -> None:
    out.add(code.co_filename)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _code_filenames(const, out)


@step("no build-machine paths")
def check_paths(exe: Path) -> None:
    import marshal

    from PyInstaller.archive.readers import CArchiveReader, ZlibArchiveReader

    top, _internal = bundle_dirs(exe)
    archive = CArchiveReader(str(exe.resolve()))
    filenames: set[str] = set()
    for name in archive.toc:
        if name.endswith(".pyz"):
            with tempfile.NamedTemporaryFile(suffix=".pyz", delete=False) as f:
                f.write(archive.extract(name))
            try:
                pyz = ZlibArchiveReader(f.name)
                for module in pyz.toc:
                    try:
                        code = pyz.extract(module)
                    except Exception:  # noqa: BLE001 - a package entry without code
                        continue
                    if isinstance(code, types.CodeType):
                        _code_filenames(code, filenames)
            finally:
                os.unlink(f.name)
        else:
            data = archive.extract(name)
            if isinstance(data, bytes):
                try:
                    code = marshal.loads(data)
                except Exception:  # noqa: BLE001 - not a code object (data, binary)
                    continue
                if isinstance(code, types.CodeType):
                    _code_filenames(code, filenames)
    absolute = sorted(f for f in filenames if os.path.isabs(f))
    check(not absolute, f"{len(absolute)} module(s) carry absolute source paths, e.g. {absolute[:3]}")
    # The checkout and the venv that built it must not be named by any file.
    needles = {str(ROOT).encode(), str(Path(sys.prefix)).encode()} - {b"/", b"/usr", b"/usr/local"}
    hits = []
    for path in top.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            hits += [f"{path.relative_to(top)}: {n.decode()}" for n in needles if n in data]
    check(not hits, "files naming the build machine's paths:\n  " + "\n  ".join(hits[:10]))
    print(f"   {len(filenames)} code file names, all relative; no file names {', '.join(n.decode() for n in needles)}")


# -- running it -------------------------------------------------------------------------
def clean_env(home: Path, platform: str, display: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "QT_", "MLDESK_", "XDG_")) and k not in ("DISPLAY", "WAYLAND_DISPLAY", "VIRTUAL_ENV")}
    runtime_dir = home / "xdg-runtime"
    runtime_dir.mkdir(mode=0o700, exist_ok=True)
    env.update({
        "MLDESK_HOME": str(home / "mldesk-home"),
        "QT_QPA_PLATFORM": platform,
        "XDG_RUNTIME_DIR": str(runtime_dir),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "XDG_DATA_HOME": str(home / "data"),
    })
    if display:
        env["DISPLAY"] = display
    # the venv's bin must not shadow the host's python3 for the process runtime
    venv_bin = str(Path(sys.prefix) / "bin")
    if sys.prefix != sys.base_prefix:
        env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    return env


def run(cmd: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    print("   $ " + " ".join(cmd), flush=True)
    try:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise Failed(f"{cmd[0]} ran past {timeout:g} s:\n{exc.stdout or ''}{exc.stderr or ''}") from None


def report(proc: subprocess.CompletedProcess, what: str) -> None:
    bad = unexpected_stderr(proc.stderr)
    for line in proc.stdout.splitlines():
        print(f"   | {line}")
    for line in proc.stderr.splitlines():
        print(f"   ! {line}" + ("   <- unexpected" if line in bad else "   (allowed)"))
    check(proc.returncode == 0, f"{what} exited with status {proc.returncode}")
    check(not bad, f"{what} wrote {len(bad)} unexpected line(s) to stderr: {bad[:5]}")


@step("mldesk --version")
def check_version(exe: Path, home: Path) -> None:
    proc = run([str(exe), "--version"], clean_env(home, "offscreen"), 60)
    report(proc, "mldesk --version")
    want = f"mldesk {version_from_source()}"
    check(proc.stdout.strip() == want, f"--version printed {proc.stdout.strip()!r}, expected {want!r}")


def pick_template(choice: str, env: dict[str, str]) -> str:
    if choice != "auto":
        return choice
    # the xor template is plain Python: any python3 on PATH runs it
    return "xor" if shutil.which("python3", path=env.get("PATH")) else "empty"


def gui_smoke(exe: Path, home: Path, platform: str, template: str, timeout: float, display: str | None = None):
    env = clean_env(home, platform, display)
    template = pick_template(template, env)
    proc = run([str(exe), "__smoke", "--template", template, "--timeout", str(timeout)], env, timeout + 60)
    report(proc, f"mldesk __smoke ({platform})")
    check("smoke: passed" in proc.stdout, "the smoke test did not report 'smoke: passed'")


class Xvfb:
    def __init__(self):
        self.proc = None
        self.display = None

    def __enter__(self):
        for n in range(90, 110):
            if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
                self.display = f":{n}"
                break
        else:
            raise Failed("no free X display number for Xvfb")
        self.proc = subprocess.Popen(["Xvfb", self.display, "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not Path(f"/tmp/.X11-unix/X{self.display[1:]}").exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise Failed(f"Xvfb {self.display} did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_exe = ROOT / "dist" / "mldesk" / ("mldesk.exe" if os.name == "nt" else "mldesk")
    ap.add_argument("--exe", type=Path, default=default_exe, help=f"the executable (default {default_exe})")
    ap.add_argument("--template", choices=("auto", "empty", "xor"), default="auto",
                    help="example lab (auto: xor when the host's python3 has NumPy, else empty)")
    ap.add_argument("--xvfb", choices=("auto", "yes", "no"), default="auto",
                    help="also run the GUI smoke on the xcb platform under Xvfb")
    ap.add_argument("--no-path-check", action="store_true", help="skip the build-machine path scan")
    ap.add_argument("--timeout", type=float, default=180, help="seconds the execution may take")
    args = ap.parse_args(argv)

    exe = args.exe if args.exe.is_absolute() else Path.cwd() / args.exe
    if not exe.exists():
        print(f"smoke_test: {exe} does not exist; build it first: bash packaging/build.sh", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    home = Path(tempfile.mkdtemp(prefix="mldesk-smoke-test-"))
    try:
        check_contents(exe)
        if args.no_path_check:
            print("== no build-machine paths: skipped (--no-path-check)")
        else:
            try:
                import PyInstaller.archive.readers  # noqa: F401
            except ImportError:
                print("== no build-machine paths: skipped (PyInstaller is not importable here; "
                      "run with the build venv's python)")
            else:
                check_paths(exe)
        check_version(exe, home)
        step("GUI smoke, offscreen")(gui_smoke)(exe, home, "offscreen", args.template, args.timeout)
        use_xvfb = args.xvfb == "yes" or (args.xvfb == "auto" and shutil.which("Xvfb") and sys.platform.startswith("linux"))
        if use_xvfb:
            with Xvfb() as x:
                step(f"GUI smoke, xcb on Xvfb {x.display}")(gui_smoke)(
                    exe, home, "xcb", args.template, args.timeout, x.display)
        else:
            why = "--xvfb no" if args.xvfb == "no" else "no Xvfb on PATH"
            print(f"== GUI smoke, xcb: skipped ({why})")
    except Failed as exc:
        print(f"\nsmoke_test: FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print(f"\nsmoke_test: all passed in {time.monotonic() - t0:.1f} s ({exe})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
