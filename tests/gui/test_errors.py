"""Errors: user errors read as sentences; an unexpected exception goes to crash.log
and a dialog (never a traceback on screen)."""

from __future__ import annotations

import sys

import pytest

from mldesk.core import labconfig
from mldesk.engine.facade import EngineError
from mldesk.ui import errors
from mldesk.ui.qt import QtWidgets


def test_describe_user_errors():
    problem = labconfig.Problem(3, 5, "hardwareType must be cpu or gpu, not 'tpu'", "use cpu or gpu", "error")
    assert errors.describe(labconfig.ConfigError([problem])) == \
        "ml.yaml has 1 problem (first: line 3: hardwareType must be cpu or gpu, not 'tpu')"
    assert errors.describe(EngineError("execution x is running; stop it first")) == \
        "Execution x is running; stop it first"
    assert "No such file" in errors.describe(FileNotFoundError(2, "No such file or directory", "/x"))


@pytest.mark.allow_log_errors
def test_unexpected_exception_goes_to_crash_log_and_a_dialog(qtbot, mldesk_home, monkeypatch):
    seen = []
    monkeypatch.setattr(sys, "excepthook", lambda *a: seen.append(a))
    errors.install_excepthook(mldesk_home)
    try:
        try:
            raise RuntimeError("boom in a slot")
        except RuntimeError:
            exc_type, exc, tb = sys.exc_info()
        sys.excepthook(exc_type, exc, tb)
        log = (mldesk_home / "crash.log").read_text()
        assert "RuntimeError: boom in a slot" in log and "Traceback" in log
        box = next(w for w in QtWidgets.QApplication.topLevelWidgets() if w.objectName() == "crashDialog"
                   and w.isVisible())
        assert "boom in a slot" in box.text() and "crash.log" in box.informativeText()
        assert "Traceback" not in box.text() + box.informativeText()
        box.done(0)
        assert seen and seen[0][1] is exc  # the previous hook still hears of it
    finally:
        errors.uninstall_excepthook()
