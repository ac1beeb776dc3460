"""Files and links dropped anywhere on the window become inputs; the Inputs tab comes forward on hover."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mldesk.ui.qt import QtCore, QtWidgets

if TYPE_CHECKING:  # pragma: no cover
    from mldesk.ui.mainwindow import MainWindow

_DRAG = (QtCore.QEvent.DragEnter, QtCore.QEvent.DragMove, QtCore.QEvent.Drop)


class DropZone(QtCore.QObject):
    """An application event filter for drags over ``window`` (outside the Inputs panel,
    which handles its own): URL drags are taken as inputs, text drags are left alone."""

    def __init__(self, window: "MainWindow"):
        super().__init__(window)
        self.w = window
        window.setAcceptDrops(True)  # a drop always has a taker, whatever widget is under it
        QtWidgets.QApplication.instance().installEventFilter(self)

    def close(self) -> None:
        app = QtWidgets.QApplication.instance()
        if app is not None:
            app.removeEventFilter(self)

    def eventFilter(self, obj: QtCore.QObject, event: QtCore.QEvent) -> bool:  # noqa: N802
        if event.type() not in _DRAG or not isinstance(obj, QtWidgets.QWidget):
            return False
        w = self.w
        panel = w.inputs_panel
        if obj.window() is not w or obj is panel or panel.isAncestorOf(obj):
            return False
        mime = event.mimeData()
        if mime is None or not mime.hasUrls() or not panel._acceptable(mime):  # noqa: SLF001
            return False
        if event.type() == QtCore.QEvent.Drop:
            panel.drop(mime)
        elif w.bottom_tabs.currentWidget() is not panel:
            w.bottom_tabs.setCurrentWidget(panel)  # where the inputs will show
        event.acceptProposedAction()
        return True
