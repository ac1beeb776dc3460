"""The bars around the console's text: find (Ctrl+F) and "N lines not shown" with Show all / Save log."""

from __future__ import annotations

from mldesk.ui.qt import QtCore, QtWidgets, Qt, Signal


class FindBar(QtWidgets.QFrame):
    """Find field with previous/next, a match count and a close button."""

    search = Signal(str, bool)  # text, backward
    closed = Signal()

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("consoleFindBar")
        self.field = QtWidgets.QLineEdit(self)
        self.field.setObjectName("consoleFindField")
        self.field.setPlaceholderText("Find in output")
        self.field.setClearButtonEnabled(True)
        self.field.setMinimumWidth(220)
        self.count = QtWidgets.QLabel(self)
        self.count.setObjectName("consoleFindCount")
        self.count.setMinimumWidth(90)
        prev_btn = self._button("\u25b2", "Previous match (Shift+Enter)", True)
        next_btn = self._button("\u25bc", "Next match (Enter)", False)
        close_btn = QtWidgets.QToolButton(self)
        close_btn.setAutoRaise(True)
        close_btn.setText("\u2715")
        close_btn.setToolTip("Close (Esc)")
        close_btn.clicked.connect(self.closed)

        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(6, 3, 6, 3)
        layout.setSpacing(4)
        layout.addWidget(self.field)
        layout.addWidget(prev_btn)
        layout.addWidget(next_btn)
        layout.addWidget(self.count)
        layout.addStretch(1)
        layout.addWidget(close_btn)

        self.field.textChanged.connect(lambda text: self.search.emit(text, False))
        self.field.returnPressed.connect(self._on_return)
        self.field.installEventFilter(self)

    def _button(self, glyph: str, tip: str, backward: bool) -> QtWidgets.QToolButton:
        btn = QtWidgets.QToolButton(self)
        btn.setText(glyph)
        btn.setToolTip(tip)
        btn.setAutoRaise(True)
        btn.clicked.connect(lambda: self.search.emit(self.field.text(), backward))
        return btn

    def _on_return(self) -> None:
        backward = bool(QtWidgets.QApplication.keyboardModifiers() & Qt.ShiftModifier)
        self.search.emit(self.field.text(), backward)

    def eventFilter(self, obj: QtCore.QObject, event: QtCore.QEvent) -> bool:
        if obj is self.field and event.type() == QtCore.QEvent.KeyPress:
            if event.key() == Qt.Key_Escape:
                self.closed.emit()
                return True
        return super().eventFilter(obj, event)


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
