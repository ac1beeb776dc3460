"""Errors the user sees: a ``UserError`` is a banner or dialog with its message; anything else is a bug.

A ``UserError`` (``mldesk.engine.UserError``, the root of ConfigError, EngineError,
StoreError, SnapshotError, HostError...) or an ``OSError`` is shown as a sentence with
the cause and the next step, never a traceback (:func:`is_user_error`, :func:`describe`).
Anything else is a bug: it goes to ``MLDESK_HOME/crash.log`` and the log with its
traceback, and a dialog says where the details are (:func:`report_unexpected`)."""

from __future__ import annotations

import logging
import sys
import time
import traceback
from pathlib import Path

from mldesk.engine import UserError
from mldesk.engine.labs import ConfigError
from mldesk.ui.qt import QtWidgets

log = logging.getLogger("mldesk.ui")

#: Exceptions whose message is already written for the user: the one root.
USER_ERRORS = (UserError,)


def is_user_error(exc: BaseException) -> bool:
    """True for errors a user can cause (shown as a message); False for bugs."""
    return isinstance(exc, (UserError, OSError))

_crash_log: Path | None = None
_previous_hook = None
_dialog: QtWidgets.QMessageBox | None = None  # the crash dialog being shown (kept alive here)


def describe(exc: BaseException) -> str:
    """One user-facing sentence for an expected error."""
    if isinstance(exc, ConfigError):
        n = len(exc.problems)
        first = exc.problems[0] if exc.problems else None
        where = f" (first: line {first.line}: {first.message})" if first else ""
        return f"ml.yaml has {n} problem{'s' if n != 1 else ''}{where}"
    if isinstance(exc, OSError):
        name = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        return f"{exc.strerror or exc}{name}"
    text = str(exc).strip() or type(exc).__name__
    return text[:1].upper() + text[1:]


def crash_log_path() -> Path | None:
    return _crash_log


def write_crash(exc_type, exc, tb) -> Path | None:
    """Append the traceback to crash.log; returns its path (None if unwritable)."""
    if _crash_log is None:
        return None
    try:
        _crash_log.parent.mkdir(parents=True, exist_ok=True)
        with open(_crash_log, "a", encoding="utf-8") as f:
            f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n")
            f.write("".join(traceback.format_exception(exc_type, exc, tb)))
            f.write("\n")
        return _crash_log
    except OSError:
        return None


def report_unexpected(exc: BaseException, parent: QtWidgets.QWidget | None = None, what: str = "") -> None:
    """Log ``exc`` to crash.log and say so in a (non-blocking) dialog."""
    global _dialog
    path = write_crash(type(exc), exc, exc.__traceback__)
    log.error("unexpected error%s: %s", f" while {what}" if what else "", exc,
              exc_info=(type(exc), exc, exc.__traceback__))
    app = QtWidgets.QApplication.instance()
    if app is None or _dialog is not None:
        return
    parent = parent or QtWidgets.QApplication.activeWindow()
    box = QtWidgets.QMessageBox(parent)
    box.setObjectName("crashDialog")
    box.setIcon(QtWidgets.QMessageBox.Critical)
    box.setWindowTitle("mldesk: something went wrong")
    box.setText(f"Something went wrong{' while ' + what if what else ''}: {type(exc).__name__}: {exc}"[:400])
    box.setInformativeText(
        ("The details were written to " + str(path) + ". " if path else "")
        + "Your executions are not affected. If this keeps happening, please report it with that file.")
    box.setStandardButtons(QtWidgets.QMessageBox.Ok)

    def closed(_r):
        global _dialog
        _dialog = None

    box.finished.connect(closed)
    _dialog = box
    box.open()


def _hook(exc_type, exc, tb) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        QtWidgets.QApplication.quit()
        return
    if exc is None:
        exc = exc_type()
    if exc.__traceback__ is None:
        exc = exc.with_traceback(tb)
    try:
        report_unexpected(exc)
    finally:
        if _previous_hook is not None and _previous_hook is not sys.__excepthook__:
            _previous_hook(exc_type, exc, tb)  # e.g. pytest-qt's capture: the test fails


def install_excepthook(home: Path) -> None:
    """Route uncaught exceptions (in slots, too) to crash.log and a dialog."""
    global _crash_log, _previous_hook
    _crash_log = Path(home) / "crash.log"
    if sys.excepthook is not _hook:
        _previous_hook = sys.excepthook
        sys.excepthook = _hook


def uninstall_excepthook() -> None:
    global _previous_hook
    if sys.excepthook is _hook:
        sys.excepthook = _previous_hook or sys.__excepthook__
    _previous_hook = None
