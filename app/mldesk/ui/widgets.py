"""Small shared widgets: the message banner, an elided label, a section header, icon helpers.

No text in them sets a minimum width: long texts wrap or are elided, with the whole
text in the tooltip (a 2,000-character reason must not widen the window)."""

from __future__ import annotations

from typing import Callable

from mldesk.ui.qt import QtCore, QtGui, QtWidgets, Qt, Signal

# (background, border, accent) per level, for light and dark palettes
_LEVELS = {
    "info": (("#eaf2fe", "#b9d3fb", "#1f5fbf"), ("#1c2a3d", "#2f4a70", "#8cbcff")),
    "success": (("#e9f6ee", "#b6e0c4", "#1e7a3c"), ("#1b2f23", "#2f5a3d", "#7ed39a")),
    "warning": (("#fff6e0", "#f0d58f", "#8a5a00"), ("#352c18", "#665228", "#f2c46a")),
    "error": (("#fdecec", "#f3b9b9", "#b3261e"), ("#3a1f1f", "#6b3333", "#ff8a80")),
}


def is_dark(widget: QtWidgets.QWidget | None = None) -> bool:
    pal = widget.palette() if widget is not None else QtWidgets.QApplication.palette()
    return pal.color(QtGui.QPalette.Window).lightness() < 128


def no_min_width(widget: QtWidgets.QWidget) -> QtWidgets.QWidget:
    """Let layouts shrink ``widget`` below its text's width (it wraps or clips instead)."""
    policy = widget.sizePolicy()
    policy.setHorizontalPolicy(QtWidgets.QSizePolicy.Ignored)
    widget.setSizePolicy(policy)
    return widget


class ElidedLabel(QtWidgets.QLabel):
    """One line of plain text that never sets a minimum width: elided with "…" when
    narrow, the whole text in the tooltip then. ``text()`` is the whole text."""

    def __init__(self, text: str = "", parent: QtWidgets.QWidget | None = None,
                 mode: Qt.TextElideMode = Qt.ElideRight, max_hint: int = 480):
        super().__init__(parent)
        self._full = ""
        self._tip = ""
        self._mode = mode
        self._max_hint = max_hint
        self.setTextFormat(Qt.PlainText)
        # Preferred, with a minimum size hint of 0: layouts give it its text's width when
        # there is room and shrink it to nothing when there is not
        self.setSizePolicy(QtWidgets.QSizePolicy.Preferred, QtWidgets.QSizePolicy.Preferred)
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt's name
        if (text or "") == self._full:
            return
        self._full = text or ""
        self._elide()
        self.updateGeometry()  # its size hint follows the whole text (the layout may give it room)

    def text(self) -> str:
        return self._full

    def set_max_hint(self, width: int) -> None:
        """The widest its size hint gets (a layout that sizes by hints then leaves room)."""
        width = max(0, int(width))
        if width != self._max_hint:
            self._max_hint = width
            self.updateGeometry()

    def setToolTip(self, tip: str) -> None:  # noqa: N802
        self._tip = tip or ""
        self._elide()

    def is_elided(self) -> bool:
        return QtWidgets.QLabel.text(self) != self._full.replace("\n", " ")

    def _elide(self) -> None:
        one_line = self._full.replace("\n", " ")
        width = max(0, self.contentsRect().width())
        shown = self.fontMetrics().elidedText(one_line, self._mode, width) if width else ""
        QtWidgets.QLabel.setText(self, shown)
        elided = shown != one_line
        QtWidgets.QLabel.setToolTip(self, self._tip or (self._full if elided else ""))

    def sizeHint(self) -> QtCore.QSize:  # noqa: N802
        fm = self.fontMetrics()
        m = self.contentsMargins()
        width = min(self._max_hint, fm.horizontalAdvance(self._full.replace("\n", " ")) + 4)
        return QtCore.QSize(width + m.left() + m.right(), fm.height() + m.top() + m.bottom())

    def minimumSizeHint(self) -> QtCore.QSize:  # noqa: N802
        return QtCore.QSize(0, self.sizeHint().height())

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._elide()


class MessageBar(QtWidgets.QFrame):
    """A banner: what happened (bold) and what to do next, with optional actions."""

    closed = Signal()

    def __init__(self, parent: QtWidgets.QWidget | None = None, *, closable: bool = True):
        super().__init__(parent)
        self.setObjectName("messageBar")
        self.level = "info"
        self.title = QtWidgets.QLabel(self)
        self.title.setObjectName("messageTitle")
        self.title.setTextFormat(Qt.PlainText)
        self.title.setWordWrap(True)
        self.text = QtWidgets.QLabel(self)
        self.text.setObjectName("messageText")
        self.text.setTextFormat(Qt.PlainText)
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextSelectableByMouse)
        no_min_width(self.title)
        no_min_width(self.text)
        self.key: str | None = None  # what the message is about (e.g. "config"), to clear it when that is fixed
        self._timer = QtCore.QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.dismiss)
        texts = QtWidgets.QVBoxLayout()
        texts.setSpacing(1)
        texts.setContentsMargins(0, 0, 0, 0)
        texts.addWidget(self.title)
        texts.addWidget(self.text)
        self._buttons = QtWidgets.QHBoxLayout()
        self._buttons.setSpacing(6)
        self._close = QtWidgets.QToolButton(self)
        self._close.setAutoRaise(True)
        self._close.setText("\u2715")
        self._close.setToolTip("Dismiss")
        self._close.setObjectName("messageClose")
        self._close.clicked.connect(self.dismiss)
        self._close.setVisible(closable)
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(12, 7, 6, 7)
        layout.setSpacing(10)
        layout.addLayout(texts, 1)
        layout.addLayout(self._buttons)
        layout.addWidget(self._close, 0, Qt.AlignTop)
        self._action_buttons: list[QtWidgets.QPushButton] = []
        self.hide()

    def show_message(self, title: str, text: str = "", level: str = "info",
                     actions: list[tuple[str, Callable[[], None]]] | None = None, *,
                     timeout: float | None = None, key: str | None = None) -> None:
        """Show a message; with ``timeout`` (seconds) it goes away by itself (transient news
        such as "Log saved."); ``key`` names what it is about (see :meth:`clear`)."""
        self.level = level
        self.key = key
        if text and text.rstrip()[-1:] not in (".", "!", "?", "\u2026", ":", ")"):
            text = text.rstrip() + "."  # texts are sentences
        if timeout is None and level == "success":
            timeout = 8.0  # good news does not stay: it would be stale soon
        self.title.setText(title)
        self.title.setToolTip(title if len(title) > 80 else "")
        self.text.setText(text)
        self.text.setToolTip(text if len(text) > 200 else "")
        self._timer.stop()
        if timeout:
            self._timer.start(int(timeout * 1000))
        self.text.setVisible(bool(text))
        for btn in self._action_buttons:
            self._buttons.removeWidget(btn)
            btn.hide()
            btn.deleteLater()
        self._action_buttons = []
        for label, slot in actions or []:
            btn = QtWidgets.QPushButton(label, self)
            btn.setAutoDefault(False)
            btn.setCursor(Qt.PointingHandCursor)
            btn.clicked.connect(lambda _checked=False, s=slot: s())  # not the checked flag as an argument
            self._buttons.addWidget(btn, 0, Qt.AlignVCenter)
            self._action_buttons.append(btn)
        self._restyle()
        self.show()

    def buttons(self) -> list[QtWidgets.QPushButton]:
        return list(self._action_buttons)

    def dismiss(self) -> None:
        self._timer.stop()
        self.hide()
        self.closed.emit()

    def clear(self, key: str) -> bool:
        """Hide the message if it is about ``key``; True when it was."""
        if self.isVisible() and self.key == key:
            self.dismiss()
            return True
        return False

    def is_transient(self) -> bool:
        return self._timer.isActive()

    def _restyle(self) -> None:
        bg, border, accent = _LEVELS[self.level][int(is_dark(self.parentWidget() or self))]
        sheet = (f"#{self.objectName()} {{ background: {bg}; border: none; border-bottom: 1px solid {border}; }}"
                 f"#messageTitle {{ color: {accent}; font-weight: 600; }}")
        if sheet != self.styleSheet():  # setting it changes the palette: no loop
            self.setStyleSheet(sheet)

    def changeEvent(self, event: QtCore.QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QtCore.QEvent.PaletteChange and self.isVisible():
            self._restyle()


class SectionHeader(QtWidgets.QWidget):
    """A small caps title with optional widgets on the right."""

    def __init__(self, title: str, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.label = QtWidgets.QLabel(title.upper(), self)
        font = self.label.font()
        font.setPointSizeF(max(7.0, font.pointSizeF() - 1))
        font.setWeight(QtGui.QFont.DemiBold)
        font.setLetterSpacing(QtGui.QFont.PercentageSpacing, 106)
        self.label.setFont(font)
        self.label.setForegroundRole(QtGui.QPalette.PlaceholderText)
        self.layout_ = QtWidgets.QHBoxLayout(self)
        self.layout_.setContentsMargins(12, 8, 8, 6)
        self.layout_.setSpacing(6)
        self.layout_.addWidget(self.label)
        self.layout_.addStretch(1)

    def add(self, widget: QtWidgets.QWidget) -> QtWidgets.QWidget:
        self.layout_.addWidget(widget)
        return widget


def tool_button(text: str, tip: str, icon: QtGui.QIcon | None = None,
                parent: QtWidgets.QWidget | None = None) -> QtWidgets.QToolButton:
    btn = QtWidgets.QToolButton(parent)
    btn.setText(text)
    btn.setToolTip(tip)
    btn.setAutoRaise(True)
    if icon is not None and not icon.isNull():
        btn.setIcon(icon)
        btn.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
    return btn


def paint_icon(kind: str, color: str | QtGui.QColor, size: int = 16) -> QtGui.QIcon:
    """Simple vector icons that look the same on every desktop: run, stop."""
    pm = QtGui.QPixmap(size * 2, size * 2)
    pm.setDevicePixelRatio(2)
    pm.fill(Qt.transparent)
    p = QtGui.QPainter(pm)
    p.setRenderHint(QtGui.QPainter.Antialiasing)
    p.setPen(Qt.NoPen)
    p.setBrush(QtGui.QColor(color))
    s = float(size)
    if kind == "run":
        path = QtGui.QPainterPath()
        path.moveTo(s * 0.26, s * 0.16)
        path.lineTo(s * 0.84, s * 0.5)
        path.lineTo(s * 0.26, s * 0.84)
        path.closeSubpath()
        p.drawPath(path)
    elif kind == "stop":
        p.drawRoundedRect(QtCore.QRectF(s * 0.22, s * 0.22, s * 0.56, s * 0.56), s * 0.08, s * 0.08)
    elif kind == "dot":
        p.drawEllipse(QtCore.QRectF(s * 0.3, s * 0.3, s * 0.4, s * 0.4))
    elif kind == "disc":  # a full-size dot (host status)
        p.drawEllipse(QtCore.QRectF(1, 1, s - 2, s - 2))
    p.end()
    return QtGui.QIcon(pm)


__all__ = ["MessageBar", "ElidedLabel", "SectionHeader", "tool_button", "paint_icon", "is_dark", "no_min_width"]
