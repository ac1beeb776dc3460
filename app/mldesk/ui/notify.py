"""Desktop notifications that an execution ended (a tray message where there is a tray)."""

from __future__ import annotations

from pathlib import Path

from mldesk.engine.values import Execution
from mldesk.ui import fmt
from mldesk.ui.qt import QtCore, QtWidgets


class Notifier(QtCore.QObject):
    """Keeps what it said in ``sent`` (tests read it); clicking a message raises the window."""

    def __init__(self, window: QtWidgets.QMainWindow):
        super().__init__(window)
        self.window = window
        self.sent: list[tuple[str, str]] = []
        self._tray: QtWidgets.QSystemTrayIcon | None = None

    def notify(self, ex: Execution) -> None:
        title = f"{ex.name} {fmt.STATE_LABELS.get(ex.state, ex.state).lower()}"
        text = f"{fmt.run_line(ex)} \u00b7 {Path(ex.lab).name}"
        if ex.state == "failed" and ex.reason:
            text = f"{ex.reason} \u00b7 {Path(ex.lab).name}"
        self.sent.append((title, text))
        if QtWidgets.QSystemTrayIcon.isSystemTrayAvailable():
            if self._tray is None:
                self._tray = QtWidgets.QSystemTrayIcon(self.window.windowIcon(), self)
                self._tray.setToolTip("mldesk")
                self._tray.messageClicked.connect(self.raise_window)
                self._tray.show()
            icon = (QtWidgets.QSystemTrayIcon.Information if ex.state == "finished"
                    else QtWidgets.QSystemTrayIcon.Warning)
            self._tray.showMessage(title, text, icon, 8000)
        QtWidgets.QApplication.alert(self.window)

    def raise_window(self) -> None:
        self.window.show()
        self.window.raise_()
        self.window.activateWindow()

    def close(self) -> None:
        if self._tray is not None:
            self._tray.hide()
