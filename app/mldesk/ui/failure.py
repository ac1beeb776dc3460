"""The failure banner above a failed execution's console: the whole reason and the next step as buttons."""

from __future__ import annotations

import re

from mldesk.engine.values import Execution
from mldesk.ui.qt import QtCore, QtGui, QtWidgets, Qt, Signal
from mldesk.ui.widgets import ElidedLabel, is_dark

# next-step keys the window acts on
IMAGE_SETTINGS = "image-settings"
RUN_PROCESS = "run-process"
EDIT_HOST = "edit-host"
OPEN_INPUTS = "open-inputs"
RESTART = "restart"

_DOCKER_DOWN = re.compile(r"docker (daemon )?(is not available|does not answer|is not running)|"
                          r"connection to the docker daemon|docker on \S+ is not available", re.I)
_IMAGE = re.compile(r"image \S+ is not on .* could not be pulled|pull access denied|manifest unknown|"
                    r"no such image", re.I)
_HOST = re.compile(r"\b(unreachable|connection refused|could not connect|cannot connect|timed out connecting|"
                   r"authentication failed|host key|no route to host|name or service not known|lost \S+ for)\b",
                   re.I)
_INPUT = re.compile(r"\binput '.*' \(.*\) failed|fetching the inputs", re.I)


def next_steps(ex: Execution) -> tuple[str, list[tuple[str, str]]]:
    """(a sentence on what to do, [(button label, key)]) for a failed execution."""
    reason = ex.reason or ""
    remote = ex.host not in (None, "", "local")
    if _INPUT.search(reason):
        return ("Check the input's URL and that it can be reached, then run again.",
                [("Open inputs", OPEN_INPUTS)])
    if _DOCKER_DOWN.search(reason):
        how = ("Start Docker on that host (e.g. `sudo systemctl start docker`), or set the host's runtime "
               "to process." if remote else
               "Start the Docker daemon (e.g. `sudo systemctl start docker`, or open Docker Desktop), "
               "or run on the process runtime.")
        steps = [("Edit host", EDIT_HOST)] if remote else [("Run on the process runtime", RUN_PROCESS)]
        return how, steps
    if _IMAGE.search(reason):
        return ("The image could not be found or pulled: check its name in Settings \u203a Images (or ml.yaml's "
                "dockerImageId), or run on the process runtime.",
                [("Open image settings", IMAGE_SETTINGS)] + ([] if remote else
                                                             [("Run on the process runtime", RUN_PROCESS)]))
    if remote and _HOST.search(reason):
        return (f"Check that {ex.host} is reachable and its profile is right, then run again.",
                [("Edit host", EDIT_HOST)])
    if ex.exit_code not in (None, 0):
        return ("main.py ended with an error: the traceback in the output below says where.", [])
    return ("", [])


class FailureBanner(QtWidgets.QFrame):
    """Shown above the console of a failed execution; hidden for every other state."""

    actionRequested = Signal(str, str)  # key, execution id

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("failureBanner")
        self.exec_id: str | None = None
        self._shown_reason: str | None = None
        self.title = ElidedLabel("", self)
        self.title.setObjectName("failureTitle")
        f = self.title.font()
        f.setWeight(QtGui.QFont.DemiBold)
        self.title.setFont(f)
        self.reason = QtWidgets.QPlainTextEdit(self)
        self.reason.setObjectName("failureReason")
        self.reason.setReadOnly(True)
        self.reason.setFrameShape(QtWidgets.QFrame.NoFrame)
        self.reason.setLineWrapMode(QtWidgets.QPlainTextEdit.WidgetWidth)
        self.reason.setWordWrapMode(QtGui.QTextOption.WrapAtWordBoundaryOrAnywhere)
        self.reason.setVerticalScrollBarPolicy(Qt.ScrollBarAsNeeded)
        self.reason.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.reason.setSizePolicy(QtWidgets.QSizePolicy.Ignored, QtWidgets.QSizePolicy.Fixed)
        self.reason.viewport().setAutoFillBackground(False)
        self.reason.document().setDocumentMargin(2)
        self.hint = ElidedLabel("", self, max_hint=2000)  # one line; the whole text in its tooltip
        self.hint.setObjectName("failureHint")
        self._buttons = QtWidgets.QHBoxLayout()
        self._buttons.setSpacing(6)
        self.hint.hide()  # its text is the reason box's last paragraph (whole at any width)
        self._buttons.insertStretch(0, 1)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(12, 4, 8, 5)
        lay.setSpacing(2)
        lay.addWidget(self.title)
        lay.addWidget(self.reason)
        lay.addLayout(self._buttons)
        self._button_widgets: list[QtWidgets.QPushButton] = []
        self._restyle()
        self.hide()

    def show_for(self, ex: Execution | None) -> None:
        if ex is None or ex.state != "failed":
            self.exec_id = None
            self.hide()
            return
        if self.exec_id == ex.id and self._shown_reason == ex.reason and self.isVisible():
            return
        self._shown_reason = ex.reason
        self.exec_id = ex.id
        self.title.setText(f"{ex.name} failed")
        reason = ex.reason or "It failed without saying why; the output below may tell."
        hint, steps = next_steps(ex)
        self.reason.setPlainText(reason)
        if hint:
            cursor = self.reason.textCursor()
            cursor.movePosition(QtGui.QTextCursor.End)
            italic = QtGui.QTextCharFormat()
            italic.setFontItalic(True)
            cursor.insertBlock()
            cursor.insertText(hint, italic)
            self.reason.moveCursor(QtGui.QTextCursor.Start)
        self.reason.setToolTip("")
        self.hint.setText(hint)
        for b in self._button_widgets:
            self._buttons.removeWidget(b)
            b.hide()
            b.deleteLater()
        self._button_widgets = []
        for label, key in steps + [("Restart", RESTART)]:
            b = QtWidgets.QPushButton(label, self)
            b.setObjectName(f"failureAction-{key}")
            b.setAutoDefault(False)
            b.clicked.connect(lambda _c=False, k=key, i=ex.id: self.actionRequested.emit(k, i))
            self._buttons.addWidget(b)
            self._button_widgets.append(b)
        self.show()
        self._fit_reason()

    def buttons(self) -> list[QtWidgets.QPushButton]:
        return list(self._button_widgets)

    def _fit_reason(self) -> None:
        """As tall as the wrapped reason and hint, up to three lines (then it scrolls)."""
        doc = self.reason.document()
        lines = 0
        block = doc.begin()
        while block.isValid():
            layout = block.layout()
            lines += max(1, layout.lineCount() if layout is not None else 1)
            block = block.next()
        lines = max(1, min(3, lines))
        fm = self.reason.fontMetrics()
        height = lines * fm.lineSpacing() + 2 * int(doc.documentMargin()) + 4
        self.reason.setFixedHeight(height)

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:
        super().resizeEvent(event)
        if self.isVisible():
            QtCore.QTimer.singleShot(0, self._fit_reason)

    def _restyle(self) -> None:
        dark = is_dark(self.parentWidget() or self)
        bg, border, accent = (("#3a1f1f", "#6b3333", "#ff8a80") if dark else ("#fdecec", "#f3b9b9", "#b3261e"))
        sheet = (f"#failureBanner {{ background: {bg}; border: none; border-bottom: 1px solid {border}; }}"
                 f"#failureTitle {{ color: {accent}; }}"
                 f"#failureReason {{ background: transparent; }}")
        if sheet != self.styleSheet():  # setting it changes the palette: no loop
            self.setStyleSheet(sheet)

    def changeEvent(self, event: QtCore.QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QtCore.QEvent.PaletteChange:
            self._restyle()
