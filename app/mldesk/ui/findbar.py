"""The one find bar (Ctrl+F) of the console and the code view: a field, previous / next,
a match count and a close button; and the wrap-around search both do with it."""

from __future__ import annotations

from mldesk.ui.qt import QtCore, QtGui, QtWidgets, Qt, Signal


def find_wrapping(doc: QtGui.QTextDocument, text: str, cursor: QtGui.QTextCursor,
                  backward: bool = False) -> QtGui.QTextCursor:
    """The next (or previous) match of ``text`` after ``cursor`` in ``doc``, wrapping
    around at the end (start); a null cursor when there is none. Case-insensitive."""
    flags = QtGui.QTextDocument.FindFlag(0)
    if backward:
        flags |= QtGui.QTextDocument.FindBackward
    match = doc.find(text, cursor, flags)
    if match.isNull():  # wrap around
        start = QtGui.QTextCursor(doc)
        start.movePosition(QtGui.QTextCursor.End if backward else QtGui.QTextCursor.Start)
        match = doc.find(text, start, flags)
    return match


class FindBar(QtWidgets.QFrame):
    """Find field with previous/next, a match count and a close button.

    ``search(text, backward, typed)`` asks the owner to find: on every edit of the
    field (``typed``: search again from the start of the current match), Enter /
    Shift+Enter and the arrows. ``closed``: the close button or Esc in the field; the
    owner hides the bar. Object names: ``<name>FindBar``, ``<name>FindField``,
    ``<name>FindCount``.
    """

    search = Signal(str, bool, bool)  # text, backward, typed
    closed = Signal()

    def __init__(self, parent: QtWidgets.QWidget | None = None, *, name: str, placeholder: str,
                 field_width: int = 220, count_width: int = 0, margin_left: int = 6) -> None:
        super().__init__(parent)
        self.setObjectName(f"{name}FindBar")
        self.field = QtWidgets.QLineEdit(self)
        self.field.setObjectName(f"{name}FindField")
        self.field.setPlaceholderText(placeholder)
        self.field.setClearButtonEnabled(True)
        self.field.setMinimumWidth(field_width)
        self.count = QtWidgets.QLabel(self)
        self.count.setObjectName(f"{name}FindCount")
        if count_width:
            self.count.setMinimumWidth(count_width)
        prev_btn = self._button("\u25b2", "Previous match (Shift+Enter)", True)
        next_btn = self._button("\u25bc", "Next match (Enter)", False)
        close_btn = QtWidgets.QToolButton(self)
        close_btn.setAutoRaise(True)
        close_btn.setText("\u2715")
        close_btn.setToolTip("Close (Esc)")
        close_btn.clicked.connect(self.closed)

        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(margin_left, 3, 6, 3)
        layout.setSpacing(4)
        layout.addWidget(self.field)
        layout.addWidget(prev_btn)
        layout.addWidget(next_btn)
        layout.addWidget(self.count)
        layout.addStretch(1)
        layout.addWidget(close_btn)

        self.field.textChanged.connect(lambda text: self.search.emit(text, False, True))
        self.field.returnPressed.connect(self._on_return)
        self.field.installEventFilter(self)

    def _button(self, glyph: str, tip: str, backward: bool) -> QtWidgets.QToolButton:
        btn = QtWidgets.QToolButton(self)
        btn.setText(glyph)
        btn.setToolTip(tip)
        btn.setAutoRaise(True)
        btn.clicked.connect(lambda: self.search.emit(self.field.text(), backward, False))
        return btn

    def _on_return(self) -> None:
        backward = bool(QtWidgets.QApplication.keyboardModifiers() & Qt.ShiftModifier)
        self.search.emit(self.field.text(), backward, False)

    def open_with(self, selected: str) -> None:
        """Show the bar, focused, with ``selected`` (a selection of one line) as the query."""
        if selected and "\u2029" not in selected:
            self.field.setText(selected)
        self.show()
        self.field.setFocus()
        self.field.selectAll()

    def eventFilter(self, obj: QtCore.QObject, event: QtCore.QEvent) -> bool:
        if obj is self.field and event.type() == QtCore.QEvent.KeyPress:
            if event.key() == Qt.Key_Escape:
                self.closed.emit()
                return True
        return super().eventFilter(obj, event)


__all__ = ["FindBar", "find_wrapping"]
