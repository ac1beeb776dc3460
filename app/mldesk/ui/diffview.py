"""The Diff view ("Compare code"): two executions' code, or one and the lab.

Left, a list: the parameters first (when given), then ``ml.yaml`` (when it
changed), then every changed file with A/M/D. Right, the selected entry: a table
of the parameters, or the file's diff, unified or side by side, with syntax
highlighting by the same Pygments highlighter as the code editor.

Trees are ``{relative path: bytes}`` or folders (read on demand).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from mldesk.ui.editor import DARK_STYLE, LIGHT_STYLE, PygmentsHighlighter, lexer_for_filename
from mldesk.ui.qt import QtCore, QtGui, QtWidgets, Qt, Signal, monospace_font
from mldesk.ui.widgets import SectionHeader, is_dark

#: Files larger than this are not diffed line by line.
MAX_DIFF_BYTES = 4 << 20
CONTEXT = 3
SKIP_DIRS = {".git", "__pycache__", ".ipynb_checkpoints", ".mypy_cache", ".pytest_cache"}
PARAMS_ENTRY = "\0params"

Tree = Mapping[str, bytes] | str | os.PathLike | None


def _loader(tree: Tree) -> tuple[dict[str, int], Callable[[str], bytes]]:
    """(path -> size, read(path)) of a tree given as a mapping or a folder."""
    if tree is None:
        return {}, lambda p: b""
    if isinstance(tree, Mapping):
        files = {str(k).replace("\\", "/"): len(v) for k, v in tree.items()}
        return files, lambda p: bytes(tree[p])
    root = Path(tree)
    files: dict[str, int] = {}
    if root.is_dir():
        for dirpath, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
            for n in names:
                full = Path(dirpath) / n
                try:
                    if full.is_file():
                        files[full.relative_to(root).as_posix()] = full.stat().st_size
                except OSError:
                    pass
    return files, lambda p: (root / p).read_bytes()


def is_ml_yaml(path: str) -> bool:
    return "/" not in path and path.lower() == "ml.yaml"


def _binary(data: bytes) -> bool:
    return b"\0" in data[:8192]


def _lines(data: bytes) -> list[str]:
    return data.decode("utf-8", errors="replace").splitlines()


def unified_rows(a: list[str], b: list[str], context: int = CONTEXT) -> list[tuple[str, int | None, int | None, str]]:
    """(kind, old line no, new line no, text); kind in " ", "-", "+", "@" (hunk header)."""
    rows = []
    sm = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for group in sm.get_grouped_opcodes(context):
        i1, i2, j1, j2 = group[0][1], group[-1][2], group[0][3], group[-1][4]
        rows.append(("@", None, None, f"@@ -{i1 + 1},{i2 - i1} +{j1 + 1},{j2 - j1} @@"))
        for tag, a1, a2, b1, b2 in group:
            if tag == "equal":
                for k in range(a2 - a1):
                    rows.append((" ", a1 + k + 1, b1 + k + 1, a[a1 + k]))
                continue
            for k in range(a1, a2):
                rows.append(("-", k + 1, None, a[k]))
            for k in range(b1, b2):
                rows.append(("+", None, k + 1, b[k]))
    return rows


def side_rows(a: list[str], b: list[str], context: int = CONTEXT):
    """Two aligned columns: lists of (kind, line no, text); kind " ", "-", "+", "~" (filler), "@"."""
    left, right = [], []
    sm = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for group in sm.get_grouped_opcodes(context):
        i1, i2, j1, j2 = group[0][1], group[-1][2], group[0][3], group[-1][4]
        left.append(("@", None, f"@@ -{i1 + 1},{i2 - i1}"))
        right.append(("@", None, f"@@ +{j1 + 1},{j2 - j1}"))
        for tag, a1, a2, b1, b2 in group:
            if tag == "equal":
                for k in range(a2 - a1):
                    left.append((" ", a1 + k + 1, a[a1 + k]))
                    right.append((" ", b1 + k + 1, b[b1 + k]))
                continue
            n = max(a2 - a1, b2 - b1)
            for k in range(n):
                left.append(("-", a1 + k + 1, a[a1 + k]) if a1 + k < a2 else ("~", None, ""))
                right.append(("+", b1 + k + 1, b[b1 + k]) if b1 + k < b2 else ("~", None, ""))
    return left, right


_HUNK = re.compile(r"^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@")


def rows_from_unified(text: str) -> list[tuple[str, int | None, int | None, str]]:
    """:func:`unified_rows` read back from unified diff text (``engine.diff``'s)."""
    rows: list[tuple[str, int | None, int | None, str]] = []
    old = new = 0
    in_hunk = False
    for line in text.splitlines():
        m = _HUNK.match(line)
        if m:
            old, new, in_hunk = int(m.group(1)), int(m.group(2)), True
            rows.append(("@", None, None, line))
        elif not in_hunk or line.startswith("\\"):
            continue  # the ---/+++ header; "\ No newline at end of file"
        elif line.startswith("-"):
            rows.append(("-", old, None, line[1:]))
            old += 1
        elif line.startswith("+"):
            rows.append(("+", None, new, line[1:]))
            new += 1
        else:
            rows.append((" ", old, new, line[1:]))
            old += 1
            new += 1
    return rows


def side_from_unified(rows: list[tuple[str, int | None, int | None, str]]):
    """Two aligned columns (as :func:`side_rows`) from unified rows."""
    left: list = []
    right: list = []
    i = 0
    while i < len(rows):
        kind, o, n, text = rows[i]
        if kind == " ":
            left.append((" ", o, text))
            right.append((" ", n, text))
            i += 1
            continue
        if kind == "@":
            m = re.match(r"^@@ (-\S+) (\+\S+) @@", text)
            left.append(("@", None, f"@@ {m.group(1)}" if m else text))
            right.append(("@", None, f"@@ {m.group(2)}" if m else text))
            i += 1
            continue
        minus, plus = [], []
        while i < len(rows) and rows[i][0] == "-":
            minus.append(rows[i])
            i += 1
        while i < len(rows) and rows[i][0] == "+":
            plus.append(rows[i])
            i += 1
        for k in range(max(len(minus), len(plus))):
            left.append(("-", minus[k][1], minus[k][3]) if k < len(minus) else ("~", None, ""))
            right.append(("+", plus[k][2], plus[k][3]) if k < len(plus) else ("~", None, ""))
    return left, right


_COLORS = {  # kind -> (light, dark) background
    "-": ("#fde8e8", "#43262a"),
    "+": ("#e4f6e8", "#1f3a29"),
    "@": ("#eef2f8", "#262c36"),
    "~": ("#f4f4f4", "#24262b"),
}


class _Gutter(QtWidgets.QWidget):
    def __init__(self, pane: "DiffPane"):
        super().__init__(pane)
        self.pane = pane

    def sizeHint(self) -> QtCore.QSize:
        return QtCore.QSize(self.pane.gutter_width(), 0)

    def paintEvent(self, event: QtGui.QPaintEvent) -> None:
        self.pane.paint_gutter(event)


class DiffPane(QtWidgets.QPlainTextEdit):
    """Read-only diff text: coloured line backgrounds, old/new numbers in the gutter."""

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setReadOnly(True)
        self.setLineWrapMode(QtWidgets.QPlainTextEdit.NoWrap)
        self.setFont(monospace_font())
        self.setObjectName("diffPane")
        self.highlighter = PygmentsHighlighter(self.document())
        self.numbers: list[tuple[str, str, str]] = []  # per block: (old, new, marker)
        self.kinds: list[str] = []
        self._number_cols = 2
        self.gutter = _Gutter(self)
        self.updateRequest.connect(self._update_gutter)
        self._apply_style()

    def _apply_style(self) -> None:
        self.highlighter.set_style(DARK_STYLE if is_dark(self) else LIGHT_STYLE)

    def set_rows(self, kinds: list[str], numbers: list[tuple[str, str, str]], text: list[str],
                 file_name: str, number_cols: int = 2) -> None:
        self.kinds, self.numbers, self._number_cols = kinds, numbers, number_cols
        self.highlighter.set_lexer(lexer_for_filename(file_name), rehighlight=False)
        self.setPlainText("\n".join(text))
        self.setViewportMargins(self.gutter_width(), 0, 0, 0)
        self._mark()

    def set_message(self, text: str) -> None:
        self.kinds, self.numbers = [], []
        self.highlighter.set_lexer(None, rehighlight=False)
        self.setPlainText(text)
        self.setViewportMargins(self.gutter_width(), 0, 0, 0)
        self.setExtraSelections([])

    def _mark(self) -> None:
        dark = int(is_dark(self))
        sels = []
        doc = self.document()
        for i, kind in enumerate(self.kinds):
            colors = _COLORS.get(kind)
            if not colors:
                continue
            sel = QtWidgets.QTextEdit.ExtraSelection()
            sel.format.setBackground(QtGui.QColor(colors[dark]))
            sel.format.setProperty(QtGui.QTextFormat.FullWidthSelection, True)
            if kind == "@":
                sel.format.setForeground(QtGui.QColor("#6a7a90"))
            cur = QtGui.QTextCursor(doc.findBlockByNumber(i))
            sel.cursor = cur
            sels.append(sel)
        self.setExtraSelections(sels)

    def gutter_width(self) -> int:
        if not self.numbers:
            return 6
        digits = max(3, max((len(o) for o, _n, _m in self.numbers), default=1),
                     max((len(n) for _o, n, _m in self.numbers), default=1))
        cw = self.fontMetrics().horizontalAdvance("9")
        return 10 + cw * (digits * self._number_cols + self._number_cols) + cw * 2

    def _update_gutter(self, rect: QtCore.QRect, dy: int) -> None:
        if dy:
            self.gutter.scroll(0, dy)
        else:
            self.gutter.update(0, rect.y(), self.gutter.width(), rect.height())

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:
        super().resizeEvent(event)
        cr = self.contentsRect()
        self.gutter.setGeometry(QtCore.QRect(cr.left(), cr.top(), self.gutter_width(), cr.height()))

    def paint_gutter(self, event: QtGui.QPaintEvent) -> None:
        p = QtGui.QPainter(self.gutter)
        pal = self.palette()
        p.fillRect(event.rect(), pal.color(QtGui.QPalette.AlternateBase))
        p.setFont(self.font())
        dim = pal.color(QtGui.QPalette.PlaceholderText)
        cw = self.fontMetrics().horizontalAdvance("9")
        width = self.gutter_width()
        col = (width - 10 - 2 * cw) // max(1, self._number_cols)
        block = self.firstVisibleBlock()
        top = round(self.blockBoundingGeometry(block).translated(self.contentOffset()).top())
        dark = int(is_dark(self))
        while block.isValid() and top <= event.rect().bottom():
            height = round(self.blockBoundingRect(block).height())
            i = block.blockNumber()
            if i < len(self.numbers):
                old, new, marker = self.numbers[i]
                kind = self.kinds[i] if i < len(self.kinds) else " "
                if kind in _COLORS:
                    p.fillRect(0, top, width, height, QtGui.QColor(_COLORS[kind][dark]))
                p.setPen(dim)
                x = 4
                texts = [old, new][: self._number_cols]
                for t in texts:
                    p.drawText(x, top, col, height, Qt.AlignRight | Qt.AlignVCenter, t)
                    x += col
                if marker:
                    p.setPen(QtGui.QColor({"-": "#c0392b", "+": "#1e8a3c"}.get(marker, dim.name())))
                    p.drawText(x + cw // 2, top, 2 * cw, height, Qt.AlignLeft | Qt.AlignVCenter, marker)
            block = block.next()
            top += height
        p.end()

    def changeEvent(self, event: QtCore.QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QtCore.QEvent.PaletteChange and hasattr(self, "highlighter"):
            self._apply_style()
            self._mark()


class DiffView(QtWidgets.QWidget):
    """Changed files and parameters between two trees ("A" -> "B").

    Signals: ``entrySelected(str)``: the file path shown ("" for the parameters).
    """

    entrySelected = Signal(str)

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("diffView")
        self.labels = ("A", "B")
        self._a_files: dict[str, int] = {}
        self._b_files: dict[str, int] = {}
        self._read_a: Callable[[str], bytes] = lambda p: b""
        self._read_b: Callable[[str], bytes] = lambda p: b""
        self.params_a: dict[str, str] | None = None
        self.params_b: dict[str, str] | None = None
        self.changes: list[tuple[str, str]] = []  # (status A/M/D, path)
        #: path -> unified diff text (None: binary) when set from engine.diff's result
        self._given: dict[str, str | None] | None = None
        self.current = ""
        self.mode = "unified"

        self.header = SectionHeader("Compare code", self)
        self.unified_button = QtWidgets.QToolButton(self.header)
        self.unified_button.setText("Unified")
        self.side_button = QtWidgets.QToolButton(self.header)
        self.side_button.setText("Side by side")
        group = QtWidgets.QButtonGroup(self)
        for b in (self.unified_button, self.side_button):
            b.setCheckable(True)
            b.setAutoRaise(True)
            group.addButton(b)
            self.header.add(b)
        self.unified_button.setChecked(True)
        self.unified_button.clicked.connect(lambda: self.set_mode("unified"))
        self.side_button.clicked.connect(lambda: self.set_mode("side"))

        self.list = QtWidgets.QListWidget(self)
        self.list.setObjectName("diffFiles")
        self.list.setMinimumWidth(180)
        self.list.setStyleSheet("QListWidget#diffFiles::item { padding: 3px 6px; }")
        self.list.currentItemChanged.connect(self._item_changed)

        self.title = QtWidgets.QLabel(self)
        self.title.setObjectName("diffTitle")
        self.title.setTextFormat(Qt.RichText)
        self.title.setContentsMargins(8, 4, 8, 4)

        self.params_table = QtWidgets.QTableWidget(self)
        self.params_table.setObjectName("paramsDiff")
        self.params_table.setColumnCount(3)
        self.params_table.verticalHeader().hide()
        self.params_table.setEditTriggers(QtWidgets.QAbstractItemView.NoEditTriggers)
        for c in (1, 2):
            self.params_table.horizontalHeader().setSectionResizeMode(c, QtWidgets.QHeaderView.Stretch)
        self.params_table.setSelectionMode(QtWidgets.QAbstractItemView.NoSelection)

        self.unified = DiffPane(self)
        self.left = DiffPane(self)
        self.right = DiffPane(self)
        self.left.verticalScrollBar().valueChanged.connect(self.right.verticalScrollBar().setValue)
        self.right.verticalScrollBar().valueChanged.connect(self.left.verticalScrollBar().setValue)
        self.left.horizontalScrollBar().valueChanged.connect(self.right.horizontalScrollBar().setValue)
        self.right.horizontalScrollBar().valueChanged.connect(self.left.horizontalScrollBar().setValue)
        side = QtWidgets.QSplitter(Qt.Horizontal, self)
        side.addWidget(self.left)
        side.addWidget(self.right)
        self.side = side

        self.empty = QtWidgets.QLabel("<b>No differences</b><br><br>The code and the parameters are the same.", self)
        self.empty.setAlignment(Qt.AlignCenter)
        self.empty.setTextFormat(Qt.RichText)
        self.empty.setForegroundRole(QtGui.QPalette.PlaceholderText)

        self.stack = QtWidgets.QStackedWidget(self)
        for w in (self.empty, self.params_table, self.unified, self.side):
            self.stack.addWidget(w)
        right = QtWidgets.QWidget(self)
        rl = QtWidgets.QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.setSpacing(0)
        rl.addWidget(self.title)
        rl.addWidget(self.stack, 1)
        self.splitter = QtWidgets.QSplitter(Qt.Horizontal, self)
        self.splitter.addWidget(self.list)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([220, 800])
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.header)
        layout.addWidget(self.splitter, 1)

    # ------------------------------------------------------------ API
    def set_trees(self, a: Tree, b: Tree, params_a: Mapping[str, str] | None = None,
                  params_b: Mapping[str, str] | None = None, labels: tuple[str, str] = ("A", "B"),
                  changes: list[tuple[str, str]] | None = None) -> None:
        """Compare tree ``a`` (old) with ``b`` (new); parameters shown first when given.

        Without ``changes`` the changed files are found by comparing the trees here
        (sizes, then bytes of same-size files: fine for a lab's code, slow for a
        100,000-file lab); a caller that knows them already (snapshot manifests with
        hashes) passes ``[(status, path), ...]`` with status "A", "M" or "D"."""
        self.labels = labels
        self._given = None
        self._a_files, self._read_a = _loader(a)
        self._b_files, self._read_b = _loader(b)
        self.params_a = None if params_a is None else {str(k): str(v) for k, v in params_a.items()}
        self.params_b = None if params_b is None else {str(k): str(v) for k, v in params_b.items()}
        if changes is None:
            self.changes = self._changed()
        else:
            self.changes = sorted(((st, p) for st, p in changes),
                                  key=lambda sp: (not is_ml_yaml(sp[1]), sp[1].count("/"), sp[1]))
        self._fill_list()

    def set_diff(self, result: Mapping, labels: tuple[str, str] | None = None) -> None:
        """Show ``engine.diff(a, b)``'s result: ``{"a", "b", "params": [(name, va, vb)],
        "files": [{"path", "status": added|removed|changed, "diff": text or None}]}``.
        Only the parameters that differ are listed (that is what the engine gives)."""
        self.labels = labels or (str(result.get("a", "A")), str(result.get("b", "B")))
        params = list(result.get("params") or [])
        self.params_a = {name: va for name, va, _vb in params if va is not None}
        self.params_b = {name: vb for name, _va, vb in params if vb is not None}
        status = {"added": "A", "removed": "D", "changed": "M"}
        files = list(result.get("files") or [])
        self._given = {f["path"]: f.get("diff") for f in files}
        self._a_files, self._b_files = {}, {}
        self.changes = sorted(((status.get(f.get("status"), "M"), f["path"]) for f in files),
                              key=lambda sp: (not is_ml_yaml(sp[1]), sp[1].count("/"), sp[1]))
        self._fill_list()

    def _fill_list(self) -> None:
        labels = self.labels
        self.header.label.setText(f"COMPARE CODE \u00b7 {labels[0]} \u2192 {labels[1]}")
        self.list.blockSignals(True)
        self.list.clear()
        if self.params_a is not None or self.params_b is not None:
            n = len(self.changed_params())
            item = QtWidgets.QListWidgetItem(f"Parameters \u00b7 {n} changed" if n else "Parameters \u00b7 same")
            item.setData(Qt.UserRole, PARAMS_ENTRY)
            f = item.font()
            f.setBold(bool(n))
            item.setFont(f)
            self.list.addItem(item)
        colors = {"A": "#1e8a3c", "M": "#b07d00", "D": "#c0392b"}
        for status, path in self.changes:
            item = QtWidgets.QListWidgetItem(f"{status}  {path}")
            item.setData(Qt.UserRole, path)
            item.setForeground(QtGui.QColor(colors[status]))
            item.setToolTip({"A": "added in ", "M": "changed in ", "D": "removed in "}[status] + labels[1])
            self.list.addItem(item)
        self.list.blockSignals(False)
        if self.list.count():
            self.list.setCurrentRow(0)
        else:
            self.title.setText("")
            self.stack.setCurrentWidget(self.empty)

    def changed_files(self) -> list[tuple[str, str]]:
        """(status, path): "A" added in B, "M" modified, "D" removed; ml.yaml first."""
        return list(self.changes)

    def changed_params(self) -> list[tuple[str, str | None, str | None]]:
        a, b = self.params_a or {}, self.params_b or {}
        keys = list(a) + [k for k in b if k not in a]
        return [(k, a.get(k), b.get(k)) for k in keys if a.get(k) != b.get(k)]

    def entries(self) -> list[str]:
        """The list as shown: "" for the parameters, then the paths."""
        out = []
        for i in range(self.list.count()):
            v = self.list.item(i).data(Qt.UserRole)
            out.append("" if v == PARAMS_ENTRY else v)
        return out

    def select(self, path: str) -> bool:
        """Show ``path`` ("" for the parameters)."""
        want = PARAMS_ENTRY if path == "" else path
        for i in range(self.list.count()):
            if self.list.item(i).data(Qt.UserRole) == want:
                self.list.setCurrentRow(i)
                return True
        return False

    def set_mode(self, mode: str) -> None:
        """"unified" or "side" (side by side)."""
        if mode not in ("unified", "side"):
            raise ValueError(mode)
        self.mode = mode
        (self.unified_button if mode == "unified" else self.side_button).setChecked(True)
        self._show(self.current)

    def unified_text(self) -> str:
        return self.unified.toPlainText()

    # ------------------------------------------------------------ internals
    def _changed(self) -> list[tuple[str, str]]:
        out = []
        for path in sorted(set(self._a_files) | set(self._b_files)):
            in_a, in_b = path in self._a_files, path in self._b_files
            if in_a and not in_b:
                out.append(("D", path))
            elif in_b and not in_a:
                out.append(("A", path))
            elif self._a_files[path] != self._b_files[path]:
                out.append(("M", path))
            else:
                try:
                    same = self._read_a(path) == self._read_b(path)
                except OSError:
                    same = False
                if not same:
                    out.append(("M", path))
        out.sort(key=lambda sp: (not is_ml_yaml(sp[1]), sp[1].count("/"), sp[1]))
        return out

    def _item_changed(self, current: QtWidgets.QListWidgetItem | None, _prev=None) -> None:
        if current is None:
            return
        v = current.data(Qt.UserRole)
        self._show("" if v == PARAMS_ENTRY else v)

    def _show(self, path: str) -> None:
        self.current = path
        if path == "" and (self.params_a is not None or self.params_b is not None):
            self._show_params()
        elif path:
            self._show_file(path)
        self.entrySelected.emit(path)

    def _show_params(self) -> None:
        a, b = self.params_a or {}, self.params_b or {}
        keys = list(a) + [k for k in b if k not in a]
        t = self.params_table
        t.clear()
        t.setHorizontalHeaderLabels(["Parameter", self.labels[0], self.labels[1]])
        t.setRowCount(len(keys))
        dark = int(is_dark(self))
        for r, k in enumerate(keys):
            va, vb = a.get(k), b.get(k)
            changed = va != vb
            cells = [k, "\u2014" if va is None else va, "\u2014" if vb is None else vb]
            for c, text in enumerate(cells):
                item = QtWidgets.QTableWidgetItem(text)
                if changed:
                    f = item.font()
                    f.setBold(True)
                    item.setFont(f)
                    if c == 1:
                        item.setBackground(QtGui.QColor(_COLORS["-"][dark]))
                    elif c == 2:
                        item.setBackground(QtGui.QColor(_COLORS["+"][dark]))
                else:
                    item.setForeground(self.palette().color(QtGui.QPalette.PlaceholderText))
                t.setItem(r, c, item)
        t.resizeColumnToContents(0)
        n = len(self.changed_params())
        self.title.setText(f"<b>Parameters</b> \u00b7 {n} changed" if n else "<b>Parameters</b> \u00b7 the same")
        self.stack.setCurrentWidget(self.params_table)

    def _read(self, path: str) -> tuple[bytes | None, bytes | None, str]:
        """(old, new, problem) of a path; None where the file is absent."""
        a = b = None
        for side, files, read in (("a", self._a_files, self._read_a), ("b", self._b_files, self._read_b)):
            if path not in files:
                continue
            if files[path] > MAX_DIFF_BYTES:
                return None, None, f"Too large to compare line by line ({files[path] / 1e6:.1f} MB)."
            try:
                data = read(path)
            except OSError as exc:
                return None, None, f"Could not read {path}: {exc.strerror or exc}."
            if side == "a":
                a = data
            else:
                b = data
        if (a is not None and _binary(a)) or (b is not None and _binary(b)):
            sa = "absent" if a is None else f"{len(a):,} bytes"
            sb = "absent" if b is None else f"{len(b):,} bytes"
            return None, None, f"Binary file differs ({sa} \u2192 {sb})."
        return a, b, ""

    def _show_file(self, path: str) -> None:
        status = next((s for s, p in self.changes if p == path), "M")
        words = {"A": "added", "M": "changed", "D": "removed"}[status]
        self.title.setText(f"<b>{_esc(path)}</b> \u00b7 {words}")
        if self._given is not None:
            text = self._given.get(path)
            if text is None:
                self.unified.set_message("Binary file differs.")
                self.stack.setCurrentWidget(self.unified)
                return
            rows = rows_from_unified(text)
        else:
            a, b, problem = self._read(path)
            if problem:
                self.unified.set_message(problem)
                self.stack.setCurrentWidget(self.unified)
                return
            rows = unified_rows(_lines(a) if a is not None else [], _lines(b) if b is not None else [])
        if self.mode == "unified":
            kinds = [r[0] for r in rows]
            numbers = [("" if r[1] is None else str(r[1]), "" if r[2] is None else str(r[2]),
                        r[0] if r[0] in "+-" else "") for r in rows]
            self.unified.set_rows(kinds, numbers, [r[3] for r in rows], path, 2)
            self.stack.setCurrentWidget(self.unified)
        else:
            left, right = side_from_unified(rows)
            for pane, rows in ((self.left, left), (self.right, right)):
                pane.set_rows([r[0] for r in rows],
                              [("" if r[1] is None else str(r[1]), "", r[0] if r[0] in "+-" else "") for r in rows],
                              [r[2] for r in rows], path, 1)
            self.stack.setCurrentWidget(self.side)


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


__all__ = ["DiffView", "DiffPane", "unified_rows", "side_rows", "rows_from_unified", "side_from_unified"]
