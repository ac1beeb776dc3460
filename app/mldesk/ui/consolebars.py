"""The bar over the console's text: "N lines not shown" with Show all / Save log (find: :mod:`.findbar`)."""

from __future__ import annotations

from mldesk.ui.qt import QtWidgets, Qt


class SkipBar(QtWidgets.QFrame):
    """"N lines not shown" with **Show all** and **Save log as…**."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("consoleSkipBar")
        self.label = QtWidgets.QLabel(self)
        self.label.setObjectName("consoleSkipLabel")
        self.show_all = QtWidgets.QPushButton("Show all", self)
        self.show_all.setObjectName("consoleShowAll")
        self.save_log = QtWidgets.QPushButton("Save log as\u2026", self)
        self.save_log.setObjectName("consoleSaveLog")
        for btn in (self.show_all, self.save_log):
            btn.setCursor(Qt.PointingHandCursor)
            btn.setAutoDefault(False)
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(10, 4, 6, 4)
        layout.setSpacing(6)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.show_all)
        layout.addWidget(self.save_log)
