"""A self-test of an installed or frozen mldesk: ``mldesk __smoke``.

It proves that a build works end to end on this machine, the way a user would
use it, with no test framework in the bundle:

1. the package data is there (lab templates, the application icon);
2. Qt starts (``QT_QPA_PLATFORM``, offscreen unless set) and its plugins load
   (the platform plugins xcb and offscreen exist; the SVG icon renders);
3. the desktop window opens the example lab (``--template``: empty or xor),
   its Run action starts one execution on the *process* runtime, through a
   detached supervisor (frozen: the bundle re-executed as ``mldesk __supervise``);
4. the execution finishes with exit code 0, its output is what the template
   prints, nothing went to its stderr, and the supervisor logged no error.

Every step prints one ``smoke: ...`` line on stdout; a failure prints
``smoke: FAIL ...`` on stderr and exits 1. ``packaging/smoke_test.py`` runs this
inside the frozen bundle (and the installed .deb) and also fails on any stderr
line it does not expect. Data goes to MLDESK_HOME; when that is unset, to a
temporary folder that is removed afterwards, so the user's data is never touched.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from mldesk import __version__

#: What each template's program must print (a line of its stdout, as a prefix).
EXPECTED = {
    "empty": ["arguments: ['--smoke', 'two words']"],
    "xor": ["training XOR for 300 epochs", "accuracy: 1.00"],
}
#: Outputs each template must leave (collected into the execution's outputs/).
EXPECTED_OUTPUTS = {"empty": [], "xor": ["weights.json", "loss.csv"]}


class SmokeFailure(Exception):
    pass


def say(text: str) -> None:
    print(f"smoke: {text}", flush=True)


def check(condition: bool, message: str) -> None:
    if not condition:
        raise SmokeFailure(message)


def _step_package_data() -> None:
    from importlib.resources import files

    from mldesk import resources
    from mldesk.templates import TEMPLATES

    for name in TEMPLATES:
        entries = {f.name for f in files("mldesk.templates").joinpath(name).iterdir() if f.is_file()}
        check({"main.py", "ml.yaml"} <= entries, f"template {name!r} is incomplete in this build: {sorted(entries)}")
    try:  # the SSH runtime copies these sources to hosts: a build must carry them
        from mldesk.runtimes.ssh import runtime as ssh
    except ImportError:
        ssh = None
    if ssh is not None and hasattr(ssh, "agent_sources"):
        sources = ssh.agent_sources()
        check(all(text.strip() for text in sources.values()), f"empty SSH agent sources: {sorted(sources)}")
        say(f"ok SSH agent sources: {', '.join(sorted(sources))}")
    icons = resources.icon_files()
    check(len(icons) == len(resources.ICON_SIZES) + 1,
          f"application icon files missing: found {[p.name for p in icons]} in {resources.icons_dir()}")
    say(f"ok package data: templates {', '.join(TEMPLATES)}; {len(icons)} icon files")


def _step_qt() -> None:
    from mldesk import resources
    from mldesk.ui import application
    from mldesk.ui.qt import QtCore, QtGui

    app = application()
    plugins = Path(QtCore.QLibraryInfo.path(QtCore.QLibraryInfo.LibraryPath.PluginsPath)) / "platforms"
    names = {p.name for p in plugins.glob("*.so")} | {p.name for p in plugins.glob("*.dll")} \
        | {p.name for p in plugins.glob("*.dylib")}
    wanted = {"linux": ("libqxcb.so", "libqoffscreen.so"), "win32": ("qwindows.dll", "qoffscreen.dll"),
              "darwin": ("libqcocoa.dylib", "libqoffscreen.dylib")}.get(sys.platform, ())
    missing = [n for n in wanted if n not in names]
    check(not missing, f"Qt platform plugins missing from {plugins}: {missing} (have {sorted(names)})")
    svg = [p for p in resources.icon_files() if p.suffix == ".svg"][0]
    pixmap = QtGui.QIcon(str(svg)).pixmap(64, 64)
    check(not pixmap.isNull(), f"the SVG icon does not render (Qt's svg icon engine plugin missing?): {svg}")
    icon = QtGui.QIcon()
    for path in resources.icon_files():
        icon.addFile(str(path))
    app.setWindowIcon(icon)
    say(f"ok Qt {QtCore.qVersion()} on platform '{app.platformName()}'; plugins {', '.join(wanted)}; icon renders")


def _step_environment() -> None:
    """Programs mldesk starts must not inherit the bundle's library path
    (packaging/rthook_mldesk.py restores the user's LD_LIBRARY_PATH)."""
    bundle = getattr(sys, "_MEIPASS", None)
    if not bundle:
        return
    value = os.environ.get("LD_LIBRARY_PATH", "")
    leaked = [p for p in value.split(os.pathsep) if p and Path(p).resolve().is_relative_to(Path(bundle).resolve())]
    check(not leaked, f"LD_LIBRARY_PATH still names the bundle ({value!r}): child programs would load its libraries")
    say(f"ok environment for child programs: LD_LIBRARY_PATH={value or '(unset)'}")


def _program_python() -> str | None:
    return shutil.which("python3") or shutil.which("python")


def _wait(app, until, timeout: float, what: str):
    """Process Qt events until ``until()`` returns something truthy."""
    from mldesk.ui.qt import QtCore

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        app.processEvents(QtCore.QEventLoop.AllEvents, 50)
        result = until()
        if result:
            return result
        time.sleep(0.02)
    raise SmokeFailure(f"timed out after {timeout:g} s waiting for {what}")


def _step_window_run(lab: Path, template: str, timeout: float) -> None:
    from mldesk import ui
    from mldesk.agent import logstore

    app = ui.application()
    window = ui.launch(lab, runtime="process")
    try:
        check(window.lab is not None and Path(window.lab) == lab.resolve(),
              f"the window did not open the lab {lab} (it shows {window.lab})")
        say(f"ok window opened the '{template}' lab {lab}")
        engine = window.engine
        before = {ex.id for ex in engine.list()}
        _wait(app, lambda: window.run_button.isEnabled(), 30, "the Run button to become enabled")
        window.run()  # what the Run button and Ctrl+R do

        def started():
            new = [ex for ex in engine.list() if ex.id not in before]
            return new[0] if new else None

        ex = _wait(app, started, 30, "the execution to be created")
        say(f"ok Run started execution {ex.id} ({ex.runtime} runtime)")
        check(ex.runtime == "process", f"the execution runs on the {ex.runtime} runtime, not process")
        ex = _wait(app, lambda: (e := engine.store.get(ex.id)) is not None and e.final and e,
                   timeout, f"execution {ex.id} to end")
        with engine.log_reader(ex.id) as reader:
            records = list(reader.iter_records())
        stdout = b"".join(r.data for r in records if r.stream == logstore.STDOUT).decode("utf-8", "replace")
        stderr = b"".join(r.data for r in records if r.stream == logstore.STDERR).decode("utf-8", "replace")
        stages = b"".join(r.data for r in records if r.stream == logstore.MLDESK).decode("utf-8", "replace")
        details = f"\n--- stdout\n{stdout}--- stderr\n{stderr}--- mldesk\n{stages}---"
        check(ex.state == "finished" and ex.exit_code == 0,
              f"execution {ex.id} ended {ex.state} (exit code {ex.exit_code}): {ex.reason}{details}")
        lines = stdout.splitlines()
        for want in EXPECTED[template]:
            check(any(line.startswith(want) for line in lines), f"the program's output lacks {want!r}{details}")
        check(not stderr.strip(), f"the program wrote to stderr{details}")
        python = ex.handle.get("python") or ""
        check(python and Path(python).resolve() != Path(sys.executable).resolve(),
              f"the program ran with {python!r}, not with the host's Python")
        outputs = engine.outputs_dir(ex.id)
        for name in EXPECTED_OUTPUTS[template]:
            check((outputs / name).is_file(), f"output {name} was not collected into {outputs}")
        sup_log = engine.layout.execution_dir(ex.id) / "supervisor.log"
        sup_text = sup_log.read_text(errors="replace") if sup_log.exists() else ""
        check(not sup_text.strip(), f"the supervisor wrote to {sup_log}:\n{sup_text}")
        ran = (ex.finished_at or 0) - (ex.started_at or ex.created_at)
        say(f"ok execution {ex.id} finished (exit code 0) in {ran:.2f} s with {python}; "
            f"{len(lines)} line(s) of output as expected"
            + (f"; outputs {', '.join(EXPECTED_OUTPUTS[template])}" if EXPECTED_OUTPUTS[template] else ""))
        if template == "xor":  # the template that prints metrics (loss: ...)
            # the Metrics tab charts what it printed (pyqtgraph and numpy are in the bundle)
            window.select_execution(ex.id, show_code=False)
            window.bottom_tabs.setCurrentWidget(window.metrics_tab.page)
            view = window.metrics_view
            _wait(app, lambda: view.point_count("loss", ex.id) > 0, 30, "the Metrics tab to show the loss")
            view.flush()
            check(view.plotted_count("loss", ex.id) == view.point_count("loss", ex.id),
                  "the Metrics tab did not plot every loss point")
            say(f"ok Metrics tab: {', '.join(view.keys())} ({view.point_count('loss', ex.id)} loss points)")
    finally:
        window.ask_on_close = False
        window.close()
        app.processEvents()
        window.deleteLater()
        app.processEvents()


def _prepare_lab(root: Path, template: str) -> Path:
    from mldesk.templates import create_lab

    lab = create_lab(root / f"smoke-{template}", template)
    config = lab / "ml.yaml"
    text = config.read_text()
    if template == "empty":  # parameters, so the check sees ml.yaml honoured
        text = text.replace("parameters: []", "parameters:\n  - pass-as: \"--smoke 'two words'\"")
    else:  # a shorter run of the same program
        text = text.replace("--epochs=2000", "--epochs=300")
    config.write_text(text)
    return lab


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="mldesk __smoke", description="Self-test of this mldesk build.")
    ap.add_argument("--template", choices=sorted(EXPECTED), default="empty",
                    help="the example lab to run (xor needs NumPy in the host's python3)")
    ap.add_argument("--timeout", type=float, default=120, help="seconds the execution may take")
    args = ap.parse_args(argv)

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    temp_home = None
    if not os.environ.get("MLDESK_HOME"):
        temp_home = tempfile.mkdtemp(prefix="mldesk-smoke-")
        os.environ["MLDESK_HOME"] = temp_home
    home = Path(os.environ["MLDESK_HOME"]).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    frozen = bool(getattr(sys, "frozen", False))
    t0 = time.monotonic()
    say(f"mldesk {__version__} ({'frozen bundle' if frozen else 'Python ' + sys.version.split()[0]}) "
        f"at {sys.executable}; MLDESK_HOME={home}")
    try:
        python = _program_python()
        check(python is not None, "no python3 on PATH: the process runtime cannot run the lab")
        _step_environment()
        _step_package_data()
        _step_qt()
        labs = Path(tempfile.mkdtemp(prefix="labs-", dir=home))
        lab = _prepare_lab(labs, args.template)
        _step_window_run(lab, args.template, args.timeout)
    except SmokeFailure as exc:
        print(f"smoke: FAIL {exc}", file=sys.stderr, flush=True)
        return 1
    except Exception:  # noqa: BLE001 - a crash is a failure of the build under test
        import traceback

        print("smoke: FAIL unexpected error:\n" + traceback.format_exc(), file=sys.stderr, flush=True)
        return 1
    finally:
        if temp_home:
            shutil.rmtree(temp_home, ignore_errors=True)
    say(f"passed in {time.monotonic() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
