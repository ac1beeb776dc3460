"""Closing the window: ask when executions run on or files are unsaved, then shut down what it started."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mldesk.engine import queries
from mldesk.ui.qt import QtGui, QtWidgets

if TYPE_CHECKING:  # pragma: no cover
    from mldesk.ui.mainwindow import MainWindow


class CloseGuard:
    """``close_event`` decides whether ``window`` may close now; ``box`` is the question shown."""

    def __init__(self, window: "MainWindow"):
        self.window = window
        self.ask_on_close = True
        self.box: QtWidgets.QMessageBox | None = None
        self.confirmed = False

    def _active_count(self) -> int:
        try:
            return queries.active_count(self.window.engine)
        except Exception:  # noqa: BLE001 - closing must work even with a broken store
            return 0

    def close_event(self, event: QtGui.QCloseEvent) -> bool:
        """True when the window may close now; else the event is ignored and a question shown."""
        if self.confirmed:
            return True
        active = self._active_count()
        unsaved = self.window.code.unsaved()
        if (active and self.ask_on_close) or unsaved:
            event.ignore()
            self.ask(active, unsaved)
            return False
        return True

    def ask(self, active: int, unsaved: list) -> None:
        if self.box is not None:
            self.box.raise_()
            return
        box = QtWidgets.QMessageBox(self.window)
        box.setObjectName("closeConfirm")
        box.setWindowTitle("Close mldesk")
        box.setIcon(QtWidgets.QMessageBox.Information if not unsaved else QtWidgets.QMessageBox.Warning)
        lines = []
        if active:
            s = "s keep" if active != 1 else " keeps"
            lines.append(f"{active} execution{s} running.")
        if unsaved:
            names = ", ".join(e.property("rel") for e in unsaved[:3])
            lines.append(f"Unsaved changes in {names}.")
        box.setText(" ".join(lines))
        if active:
            box.setInformativeText(
                "They run on without this window and will be here, live, when you open mldesk again "
                "(their output is kept meanwhile).")
        if unsaved:
            save = box.addButton("Save and close", QtWidgets.QMessageBox.AcceptRole)
            discard = box.addButton("Close without saving", QtWidgets.QMessageBox.DestructiveRole)
        else:
            save = box.addButton("Close window", QtWidgets.QMessageBox.AcceptRole)
            discard = None
        box.addButton(QtWidgets.QMessageBox.Cancel)
        box.setDefaultButton(save)

        def finished(_r: int) -> None:
            self.box = None
            clicked = box.clickedButton()
            if clicked is save:
                if unsaved and not self.window.code.save_all():
                    return
            elif clicked is not discard or discard is None:
                return
            self.confirmed = True
            self.window.close()

        box.finished.connect(finished)
        self.box = box
        box.open()
