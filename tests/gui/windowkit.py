"""Fixtures and helpers for the main-window tests: real engine (MLDESK_HOME in a
temporary folder, see tests/conftest.py), real process runtime.

Import the fixtures into a test module with ``from tests.gui.windowkit import *``.
Every window a test opens is shut down after it, and every execution it started is
stopped and waited for, so nothing outlives the test.
"""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from mldesk.engine.facade import Engine
from mldesk.ui.qt import QtCore, QtWidgets

__all__ = ["make_lab", "open_window", "wait_final", "wait_for", "console_text", "program_lines",
           "PRINTER"]

#: prints ``line 0`` .. ``line N-1`` (argv[1]) with a delay (argv[2]) between lines
PRINTER = """
import sys, time
n = int(sys.argv[1]) if len(sys.argv) > 1 else 5
delay = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
for i in range(n):
    print(f"line {i}", flush=True)
    time.sleep(delay)
"""


@pytest.fixture
def make_lab(tmp_path):
    """make_lab(main_py, ml_yaml=None, name=None, **files) -> Path of a new lab."""
    counter = iter(range(1000))

    def make(main: str = PRINTER, ml_yaml: str | None = None, name: str | None = None, **files: str) -> Path:
        lab = tmp_path / (name or f"lab{next(counter)}")
        lab.mkdir()
        (lab / "main.py").write_text(textwrap.dedent(main).lstrip())
        (lab / "ml.yaml").write_text(textwrap.dedent(ml_yaml or "hardwareType: cpu\n"))
        for fname, text in files.items():
            (lab / fname).write_text(textwrap.dedent(text))
        return lab

    return make


def _stop_everything(home: Path) -> None:
    eng = Engine(home)
    try:
        for ex in eng.store.list(include_hidden=True):
            if ex.active:
                eng.stop(ex.id)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(e.active for e in eng.store.list(include_hidden=True)):
            time.sleep(0.05)
    finally:
        eng.close()


@pytest.fixture
def open_window(qtbot, mldesk_home):
    """open_window(lab=None, runtime="process", **kw) -> a shown MainWindow."""
    from mldesk import ui

    windows = []

    def open_(lab=None, runtime: str | None = "process", ask_on_close: bool = False, **kw):
        window = ui.launch(lab, home=mldesk_home, runtime=runtime, **kw)
        window.ask_on_close = ask_on_close
        qtbot.addWidget(window)
        windows.append(window)
        qtbot.waitExposed(window)
        qtbot.waitUntil(lambda: window._started, timeout=3000)
        return window

    yield open_
    _stop_everything(mldesk_home)
    for window in windows:
        for box in (window.close_box, window.restart_box):
            if box is not None:
                box.done(0)
        window.shutdown()


def wait_for(qtbot, condition, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        qtbot.wait(20)
    assert condition(), f"timed out after {timeout} s waiting for {what}"


def wait_final(qtbot, window, exec_id: str, timeout: float = 30.0):
    """Wait until the sidebar shows ``exec_id`` in a final state; returns it."""
    def done():
        ex = window.model.get(exec_id)
        return ex is not None and ex.final

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not done():
        qtbot.wait(20)
    ex = window.model.get(exec_id)
    if not done():
        log = window.engine.layout.execution_dir(exec_id) / "supervisor.log"
        raise AssertionError(f"{exec_id} is {ex.state if ex else 'gone'} after {timeout} s; supervisor log: "
                             f"{log.read_text() if log.exists() else '-'}")
    return ex


def console_text(window) -> str:
    window.console.flush_now()
    return window.console.plain_text()


def program_lines(text: str, prefix: str = "line ") -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


def click(qtbot, widget) -> None:
    qtbot.mouseClick(widget, QtCore.Qt.LeftButton)


def active_modal() -> QtWidgets.QWidget | None:
    return QtWidgets.QApplication.activeModalWidget()
