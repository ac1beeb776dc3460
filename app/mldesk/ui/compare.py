"""The Compare view: several executions side by side.

* an overlay chart per metric (one colour per execution, a legend), reusing
  :class:`mldesk.ui.charts.MetricsView`;
* a sortable table, one row per execution: name, state, host/runtime, duration,
  each parameter, each metric's last / min / max, the best cell of each metric
  column marked (lower or higher is better: the primary metric's goal, a goal
  given per key, or a guess from the key's name);
* "Export CSV…" of that table;
* output images of the same name side by side.

Rows come from the core (issue 13's compare rows)::

    {"id", "name", "state", "host", "runtime", "duration": seconds | None,
     "params": {flag: str}, "metrics": {key: {"last", "min", "max", "count"}}}
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from mldesk.ui import fmt
from mldesk.ui.charts import MetricsView, run_color
from mldesk.ui.qt import QtCore, QtGui, QtWidgets, Qt, Signal
from mldesk.ui.widgets import SectionHeader, is_dark

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".svg"}
STATS = ("last", "min", "max")
#: Role holding a cell's raw value (numbers for sorting, None for missing).
RawRole = Qt.UserRole + 1
#: Role: True on the best cell of a metric column.
BestRole = Qt.UserRole + 2

def guess_goal(key: str) -> str:
    """The direction the CLI uses for a key without a goal: "min" for losses and
    errors, else "max" (``mldesk.engine.default_goal``)."""
    from mldesk.engine import default_goal

    return default_goal(key)


def primary_of(rows: Sequence[Mapping]) -> tuple[str, str | None] | None:
    """The primary metric named by the rows (``engine.compare``'s ``"primary"``)."""
    for r in rows:
        p = r.get("primary")
        if isinstance(p, Mapping) and p.get("key"):
            return p["key"], p.get("goal")
        if isinstance(p, (tuple, list)) and p and p[0]:
            return p[0], (p[1] if len(p) > 1 else None)
    return None


def _num(v) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f


def _fmt_num(v: float | None) -> str:
    if v is None:
        return ""
    if not math.isfinite(v):
        return str(v)
    a = abs(v)
    if a != 0 and (a >= 1e6 or a < 1e-3):
        return f"{v:.4g}"
    if a >= 1000:
        return f"{v:,.1f}"
    return f"{v:.4f}".rstrip("0").rstrip(".")


class Column:
    __slots__ = ("title", "kind", "key", "stat", "goal")

    def __init__(self, title: str, kind: str, key: str = "", stat: str = "", goal: str | None = None):
        self.title, self.kind, self.key, self.stat, self.goal = title, kind, key, stat, goal


class CompareModel(QtCore.QAbstractTableModel):
    """One row per execution; columns: fixed, parameters, metric stats."""

    def __init__(self, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.rows: list[dict] = []
        self.columns: list[Column] = []
        self.best: dict[int, set[int]] = {}  # column -> rows holding its best value
        self.goals: dict[str, str | None] = {}
        self.primary: tuple[str, str | None] | None = None

    def set_rows(self, rows: Sequence[Mapping], primary: tuple[str, str | None] | None = None,
                 goals: Mapping[str, str | None] | None = None) -> None:
        self.beginResetModel()
        self.rows = [dict(r) for r in rows]
        if primary is None:
            primary = primary_of(self.rows)
        self.primary = primary
        params: list[str] = []
        keys: list[str] = []
        for r in self.rows:
            for p in (r.get("params") or {}):
                if p not in params:
                    params.append(p)
            for k in (r.get("metrics") or {}):
                if k not in keys:
                    keys.append(k)
        keys.sort()
        if primary and primary[0] in keys:  # the primary metric first
            keys.remove(primary[0])
            keys.insert(0, primary[0])
        self.goals = {}
        for k in keys:
            goal = (goals or {}).get(k)
            if goal is None and primary and primary[0] == k:
                goal = primary[1]
            if goal is None:
                goal = guess_goal(k)
            self.goals[k] = goal
        self.columns = [Column("Name", "name"), Column("State", "state"), Column("Host / runtime", "where"),
                        Column("Duration", "duration")]
        self.columns += [Column(p, "param", p) for p in params]
        for k in keys:
            for stat in STATS:
                self.columns.append(Column(f"{k} \u00b7 {stat}", "metric", k, stat, self.goals[k]))
        self._find_best()
        self.endResetModel()

    def _find_best(self) -> None:
        """The best cell of each metric column, as the CLI marks them (every stat,
        lower or higher is better); nothing when all comparable values are equal."""
        self.best = {}
        for c, col in enumerate(self.columns):
            if col.kind != "metric" or col.goal not in ("min", "max"):
                continue
            values = [(self.raw(r, c), r) for r in range(len(self.rows))]
            values = [(v, r) for v, r in values if v is not None and not math.isnan(v)]
            if len(values) < 2:
                continue
            best = min(v for v, _ in values) if col.goal == "min" else max(v for v, _ in values)
            rows = {r for v, r in values if v == best}
            if len(rows) < len(values):
                self.best[c] = rows

    def raw(self, row: int, col: int):
        r, c = self.rows[row], self.columns[col]
        if c.kind == "name":
            return r.get("name") or r.get("id", "")
        if c.kind == "state":
            return r.get("state") or ""
        if c.kind == "where":
            return " \u00b7 ".join(x for x in (r.get("host"), r.get("runtime")) if x)
        if c.kind == "duration":
            return _num(r.get("duration"))
        if c.kind == "param":
            v = (r.get("params") or {}).get(c.key)
            return None if v is None else str(v)
        stats = (r.get("metrics") or {}).get(c.key) or {}
        return _num(stats.get(c.stat))

    def overridden(self, row: int, flag: str) -> bool:
        return flag in (self.rows[row].get("overrides") or {})

    def is_best(self, row: int, col: int) -> bool:
        return row in self.best.get(col, ())

    def column_index(self, title: str) -> int:
        for i, c in enumerate(self.columns):
            if c.title == title:
                return i
        raise KeyError(title)

    # --------------------------------------------------------- Qt model API
    def rowCount(self, parent=QtCore.QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent=QtCore.QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.columns)

    def data(self, index: QtCore.QModelIndex, role: int = Qt.DisplayRole):
        if not index.isValid():
            return None
        row, col = index.row(), index.column()
        c = self.columns[col]
        if role == Qt.DisplayRole:
            v = self.raw(row, col)
            if c.kind == "duration":
                return "" if v is None else fmt.duration(v)
            if c.kind == "state":
                return fmt.STATE_LABELS.get(v, v)
            if c.kind == "metric":
                return _fmt_num(v)
            return "" if v is None else str(v)
        if role == RawRole:
            return self.raw(row, col)
        if role == BestRole:
            return self.is_best(row, col)
        if role == Qt.FontRole and self.is_best(row, col):
            f = QtGui.QFont()
            f.setBold(True)
            return f
        if role == Qt.FontRole and c.kind == "param" and self.overridden(row, c.key):
            f = QtGui.QFont()
            f.setItalic(True)
            return f
        if role == Qt.BackgroundRole and self.is_best(row, col):
            dark = is_dark()
            return QtGui.QBrush(QtGui.QColor("#1f3a29" if dark else "#d9f2e1"))
        if role == Qt.ForegroundRole and self.is_best(row, col):
            return QtGui.QBrush(QtGui.QColor("#7ed39a" if is_dark() else "#1e6b36"))
        if role == Qt.DecorationRole and c.kind == "name":
            pm = QtGui.QPixmap(10, 10)
            pm.fill(run_color(row))
            return pm
        if role == Qt.TextAlignmentRole:
            if c.kind in ("metric", "duration"):
                return int(Qt.AlignRight | Qt.AlignVCenter)
            return int(Qt.AlignLeft | Qt.AlignVCenter)
        if role == Qt.ToolTipRole:
            if c.kind == "param" and self.overridden(row, c.key):
                return f"{c.key} was set for this execution (Run with\u2026), not taken from ml.yaml"
            if self.is_best(row, col):
                return f"Best {c.key} {c.stat} ({'lower' if c.goal == 'min' else 'higher'} is better)"
            if c.kind == "metric":
                stats = (self.rows[row].get("metrics") or {}).get(c.key) or {}
                if stats.get("count") is not None:
                    return f"{c.key}: {stats.get('count')} values"
        return None

    def headerData(self, section: int, orientation, role: int = Qt.DisplayRole):
        if orientation != Qt.Horizontal or not (0 <= section < len(self.columns)):
            return None
        c = self.columns[section]
        if role == Qt.DisplayRole:
            return c.title
        if role == Qt.ToolTipRole and c.kind == "metric":
            return {"min": f"{c.key}: lower is better", "max": f"{c.key}: higher is better"}.get(
                c.goal or "", f"{c.key}: no direction known")
        return None

    # --------------------------------------------------------- CSV
    def csv_text(self) -> str:
        """The table as CSV, exactly as ``mldesk compare --csv`` writes it."""
        from mldesk.engine import table_csv

        return table_csv([{**r, "params": r.get("params") or {},
                           "metrics": {k: (v if isinstance(v, Mapping) else {})
                                       for k, v in (r.get("metrics") or {}).items()}}
                          for r in self.rows])


class _SortProxy(QtCore.QSortFilterProxyModel):
    """Sorts on raw values; numbers as numbers, missing values always last."""

    def lessThan(self, left: QtCore.QModelIndex, right: QtCore.QModelIndex) -> bool:
        a = self.sourceModel().data(left, RawRole)
        b = self.sourceModel().data(right, RawRole)
        asc = self.sortOrder() == Qt.AscendingOrder
        if a is None or (isinstance(a, float) and math.isnan(a)):
            return not asc  # missing last whatever the order
        if b is None or (isinstance(b, float) and math.isnan(b)):
            return asc
        if isinstance(a, float) and isinstance(b, float):
            return a < b
        fa, fb = _num(a), _num(b)
        if fa is not None and fb is not None:  # numeric parameters
            return fa < fb
        return str(a).lower() < str(b).lower()


def image_names(outputs: Mapping[str, str | os.PathLike]) -> list[str]:
    """Relative paths of image files that at least two of the outputs folders hold."""
    seen: dict[str, int] = {}
    for folder in outputs.values():
        root = Path(folder)
        if not root.is_dir():
            continue
        for dirpath, _dirs, files in os.walk(root):
            for f in files:
                if Path(f).suffix.lower() in IMAGE_SUFFIXES:
                    rel = (Path(dirpath) / f).relative_to(root).as_posix()
                    seen[rel] = seen.get(rel, 0) + 1
    multi = len([f for f in outputs.values() if Path(f).is_dir()]) > 1
    return sorted(n for n, c in seen.items() if c >= 2 or not multi)


class ImagesPane(QtWidgets.QWidget):
    """Output images of the same name, one per execution, side by side."""

    THUMB = 320

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.outputs: dict[str, Path] = {}
        self.labels: dict[str, str] = {}
        self.order: list[str] = []
        self.combo = QtWidgets.QComboBox(self)
        self.combo.setObjectName("imageChooser")
        self.combo.setMinimumContentsLength(24)
        self.combo.currentIndexChanged.connect(lambda _i: self.show_image(self.combo.currentText()))
        self.note = QtWidgets.QLabel(self)
        self.note.setForegroundRole(QtGui.QPalette.PlaceholderText)
        top = QtWidgets.QHBoxLayout()
        top.setContentsMargins(10, 6, 10, 6)
        top.addWidget(QtWidgets.QLabel("Image", self))
        top.addWidget(self.combo)
        top.addWidget(self.note, 1)
        self.strip = QtWidgets.QWidget(self)
        self.strip_layout = QtWidgets.QHBoxLayout(self.strip)
        self.strip_layout.setContentsMargins(10, 0, 10, 10)
        self.strip_layout.setSpacing(12)
        self.strip_layout.addStretch(1)
        scroll = QtWidgets.QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QtWidgets.QFrame.NoFrame)
        scroll.setWidget(self.strip)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addLayout(top)
        layout.addWidget(scroll, 1)
        self.cells: list[tuple[str, QtWidgets.QLabel]] = []

    def set_outputs(self, outputs: Mapping[str, str | os.PathLike], labels: Mapping[str, str], order: Sequence[str]) -> None:
        self.outputs = {k: Path(v) for k, v in outputs.items()}
        self.labels = dict(labels)
        self.order = [e for e in order if e in self.outputs]
        names = image_names(self.outputs)
        self.combo.blockSignals(True)
        self.combo.clear()
        self.combo.addItems(names)
        self.combo.blockSignals(False)
        self.combo.setEnabled(bool(names))
        if not names:
            self.note.setText("No output images with the same name in these executions.")
        else:
            self.note.setText(f"{len(names)} image{'s' if len(names) != 1 else ''} in common")
        self.show_image(names[0] if names else "")

    def names(self) -> list[str]:
        return [self.combo.itemText(i) for i in range(self.combo.count())]

    def show_image(self, name: str) -> None:
        while self.strip_layout.count() > 1:
            item = self.strip_layout.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        self.cells = []
        if not name:
            return
        for i, ex_id in enumerate(self.order):
            box = QtWidgets.QWidget(self.strip)
            v = QtWidgets.QVBoxLayout(box)
            v.setContentsMargins(0, 0, 0, 0)
            v.setSpacing(4)
            color = run_color(i).name()
            cap = QtWidgets.QLabel(f"<span style='color:{color}'>\u25a0</span> {_esc(self.labels.get(ex_id, ex_id))}", box)
            cap.setTextFormat(Qt.RichText)
            img = QtWidgets.QLabel(box)
            img.setObjectName("compareImage")
            img.setAlignment(Qt.AlignCenter)
            img.setMinimumSize(self.THUMB // 2, self.THUMB // 2)
            path = self.outputs[ex_id] / name
            reader = QtGui.QImageReader(str(path))
            reader.setAutoTransform(True)
            size = reader.size()
            if size.isValid() and (size.width() > self.THUMB or size.height() > self.THUMB):
                reader.setScaledSize(size.scaled(self.THUMB, self.THUMB, Qt.KeepAspectRatio))
            image = reader.read() if path.is_file() else QtGui.QImage()
            if image.isNull():
                img.setText("no such image" if not path.is_file() else "cannot read this image")
                img.setForegroundRole(QtGui.QPalette.PlaceholderText)
                img.setFrameShape(QtWidgets.QFrame.StyledPanel)
            else:
                img.setPixmap(QtGui.QPixmap.fromImage(image))
            img.setToolTip(str(path))
            v.addWidget(cap)
            v.addWidget(img, 0, Qt.AlignTop | Qt.AlignLeft)
            v.addStretch(1)
            self.strip_layout.insertWidget(self.strip_layout.count() - 1, box)
            self.cells.append((ex_id, img))


def _esc(text: str) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class CompareView(QtWidgets.QWidget):
    """Executions compared: table on top; overlay charts and output images below.

    Signals: ``exported(str)`` after the CSV was written (its path);
    ``executionActivated(str)`` when a row is double-clicked (execution id).
    """

    exported = Signal(str)
    executionActivated = Signal(str)

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("compareView")
        self.model = CompareModel(self)
        self.proxy = _SortProxy(self)
        self.proxy.setSourceModel(self.model)
        self.table = QtWidgets.QTableView(self)
        self.table.setObjectName("compareTable")
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(-1, Qt.AscendingOrder)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectRows)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(self.table.fontMetrics().height() + 10)
        self.table.horizontalHeader().setHighlightSections(False)
        self.table.horizontalHeader().setSectionResizeMode(QtWidgets.QHeaderView.Interactive)
        self.table.setHorizontalScrollMode(QtWidgets.QAbstractItemView.ScrollPerPixel)
        self.table.setWordWrap(False)
        self.table.doubleClicked.connect(self._activated)

        self.title = SectionHeader("Compare", self)
        self.export_button = QtWidgets.QPushButton("Export CSV\u2026", self.title)
        self.export_button.setObjectName("exportCsv")
        self.export_button.setAutoDefault(False)
        self.export_button.clicked.connect(self.export_dialog)
        self.title.add(self.export_button)

        self.charts = MetricsView(self, grouped=False, empty_text="<b>No metrics to overlay</b><br><br>"
                                  "None of these executions printed metrics such as <code>loss: 0.42</code>.")
        self.images = ImagesPane(self)
        self.tabs = QtWidgets.QTabWidget(self)
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.charts, "Charts")
        self.tabs.addTab(self.images, "Output images")

        top = QtWidgets.QWidget(self)
        tl = QtWidgets.QVBoxLayout(top)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.setSpacing(0)
        tl.addWidget(self.title)
        tl.addWidget(self.table, 1)
        self.splitter = QtWidgets.QSplitter(Qt.Vertical, self)
        self.splitter.addWidget(top)
        self.splitter.addWidget(self.tabs)
        self.splitter.setStretchFactor(0, 2)
        self.splitter.setStretchFactor(1, 3)
        self.splitter.setChildrenCollapsible(False)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.splitter)
        self.ids: list[str] = []

    # ------------------------------------------------------------ data in
    def set_executions(self, rows: Sequence[Mapping], metrics: Mapping[str, Mapping[str, Sequence]] | None = None,
                       *, primary: tuple[str, str | None] | None = None,
                       goals: Mapping[str, str | None] | None = None,
                       outputs: Mapping[str, str | os.PathLike] | None = None) -> None:
        """Show ``rows`` (compare rows), their metric series ``{exec_id: {key: [(step, value, time)]}}``
        for the overlay charts, and their outputs folders ``{exec_id: path}`` for the images."""
        self.ids = [r["id"] for r in rows]
        self.model.set_rows(rows, primary=primary, goals=goals)
        primary = self.model.primary
        self.title.label.setText(f"COMPARE \u00b7 {len(rows)} EXECUTIONS")
        self._size_columns()
        self.table.setCurrentIndex(QtCore.QModelIndex())
        self.charts.clear()
        self.charts.set_primary(primary)
        labels = {r["id"]: (r.get("name") or r["id"]) for r in rows}
        for ex_id in self.ids:  # colours follow the row order
            self.charts.set_metrics((metrics or {}).get(ex_id, {}), run=ex_id, label=labels[ex_id])
        self.charts.flush()
        self.images.set_outputs(outputs or {}, labels, self.ids)
        self.tabs.setTabEnabled(1, bool(outputs))
        self._size_splitter()

    def _size_splitter(self) -> None:
        rows = min(max(self.model.rowCount(), 2), 10)
        want = (self.title.sizeHint().height() + self.table.horizontalHeader().sizeHint().height()
                + rows * self.table.verticalHeader().defaultSectionSize() + 2 * self.table.frameWidth() + 18)
        total = max(self.splitter.height(), 600)
        want = min(want, int(total * 0.45))
        self.splitter.setSizes([want, total - want])

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:
        super().resizeEvent(event)
        if not getattr(self, "_sized_once", False) and self.model.rowCount():
            self._sized_once = True
            self._size_splitter()

    def append_metrics(self, exec_id: str, delta: Mapping[str, Sequence]) -> None:
        """New points of one execution (live overlay while some still run)."""
        self.charts.append(delta, run=exec_id)

    def set_outputs(self, outputs: Mapping[str, str | os.PathLike]) -> None:
        labels = {r["id"]: (r.get("name") or r["id"]) for r in self.model.rows}
        self.images.set_outputs(outputs, labels, self.ids)
        self.tabs.setTabEnabled(1, bool(outputs))

    # ------------------------------------------------------------ export
    def csv_text(self) -> str:
        return self.model.csv_text()

    def export_csv(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the table as CSV to ``path``: a new file, unless ``overwrite`` (the
        file dialog asked). Written to a temporary file first, then moved in place."""
        path = Path(path)
        data = self.csv_text().encode("utf-8")
        if not overwrite:
            with open(path, "xb") as f:  # FileExistsError rather than overwrite
                f.write(data)
        else:
            fd, tmp = tempfile.mkstemp(prefix=".mldesk-", suffix=".csv", dir=str(path.parent))
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        self.exported.emit(str(path))
        return path

    def export_dialog(self) -> str | None:
        """Ask where to save (the dialog confirms overwriting), then write."""
        start = str(Path.home() / "compare.csv")
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Export comparison as CSV", start,
                                                        "CSV files (*.csv);;All files (*)")
        if not path:
            return None
        try:
            self.export_csv(path, overwrite=True)  # the dialog confirmed an existing file
        except OSError as exc:
            QtWidgets.QMessageBox.warning(self, "Could not export the table",
                                          f"{path} could not be written: {exc.strerror or exc}.\n"
                                          "Choose another folder or file name.")
            return None
        return path

    # ------------------------------------------------------------ misc
    def best_cells(self) -> dict[str, list[str]]:
        """Column title -> ids of the executions holding its best value (tests, tooltips)."""
        return {self.model.columns[c].title: sorted(self.model.rows[r]["id"] for r in rows)
                for c, rows in self.model.best.items()}

    def _size_columns(self) -> None:
        header = self.table.horizontalHeader()
        fm = self.table.fontMetrics()
        for c, col in enumerate(self.model.columns):
            width = fm.horizontalAdvance(col.title) + 28
            for r in range(min(50, self.model.rowCount())):
                text = self.model.data(self.model.index(r, c)) or ""
                width = max(width, fm.horizontalAdvance(str(text)) + (34 if col.kind == "name" else 20))
            header.resizeSection(c, min(width, 260))

    def _activated(self, index: QtCore.QModelIndex) -> None:
        src = self.proxy.mapToSource(index)
        if src.isValid():
            self.executionActivated.emit(self.model.rows[src.row()]["id"])


__all__ = ["CompareView", "CompareModel", "ImagesPane", "guess_goal", "primary_of", "image_names", "RawRole", "BestRole"]
