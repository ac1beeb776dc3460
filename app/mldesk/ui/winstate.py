"""The window's remembered state: geometry, splitter positions, collapsed panes, theme (window.ini)."""

from __future__ import annotations

from mldesk.engine import queries
from mldesk.engine.facade import Engine
from mldesk.ui.qt import QtCore, QtGui, QtWidgets
from mldesk.ui.settings import apply_theme


class WindowState:
    """Restores and saves ``window``'s state in MLDESK_HOME/window.ini."""

    def __init__(self, engine: Engine, window: QtWidgets.QMainWindow,
                 splitters: dict[str, QtWidgets.QSplitter]):
        self.engine = engine
        self.window = window
        self.splitters = splitters
        self.settings = QtCore.QSettings(str(queries.data_root(engine) / "window.ini"), QtCore.QSettings.IniFormat)

    def restore(self) -> None:
        s = self.settings
        geometry = s.value("geometry")
        if geometry is not None:
            self.window.restoreGeometry(geometry)
        else:
            screen = QtGui.QGuiApplication.primaryScreen()
            avail = screen.availableGeometry() if screen else QtCore.QRect(0, 0, 1600, 1000)
            self.window.resize(min(1440, int(avail.width() * 0.9)), min(900, int(avail.height() * 0.9)))
        for key, splitter in self.splitters.items():
            state = s.value(key)
            if state is not None:
                splitter.restoreState(state)
        theme = self.engine.setting("theme") or "system"
        if theme != "system":
            apply_theme(theme)

    def save(self) -> None:
        s = self.settings
        s.setValue("geometry", self.window.saveGeometry())
        for key, splitter in self.splitters.items():
            s.setValue(key, splitter.saveState())
        s.sync()
