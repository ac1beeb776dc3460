"""Item models over the store: the executions of the open lab, newest first.

:class:`ExecutionModel` loads a page of executions when the lab opens and more as
the view scrolls (``canFetchMore``/``fetchMore``), so a lab with 10,000 executions
opens as fast as an empty one. Engine events then update it incrementally: one
``beginInsertRows``/``beginRemoveRows``/``dataChanged`` per event, never a reset.
Updates are idempotent and ordered by the store's ``seq``, so an event that arrives
late (or twice) never takes a row back to an older state.

Sweeps: the trials of one sweep are grouped under a header row (``SweepRole`` holds
the sweep id, ``execution(row)`` is None for it) that sits where the sweep's newest
trial would sit; a collapsed sweep shows only its header (its trials are no rows
then, but still loaded: ``executions()``, ``get()``). The rows are derived from the
loaded executions after each change and the model emits only the rows that differ
(one remove and/or one insert), never a reset. Row figures (:mod:`.rowinfo`) give
each trial's primary metric (``set_metric``): the header shows the group's best.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from mldesk.engine import queries as uiquery
from mldesk.engine.facade import Engine
from mldesk.engine.values import Execution
from mldesk.ui import fmt
from mldesk.ui.qt import QtCore, Qt, Signal

ExecutionRole = Qt.UserRole + 1
IdRole = Qt.UserRole + 2
StateRole = Qt.UserRole + 3
ActiveRole = Qt.UserRole + 4
#: live figures of a row (primary metric, step, CPU / GPU): see :mod:`mldesk.ui.rowinfo`
ExtraRole = Qt.UserRole + 5
#: the sweep id of a sweep's header row (None on execution rows)
SweepRole = Qt.UserRole + 6


_GROUP_LABELS = {"queued": "queued", "preparing": "starting", "fetching": "starting", "running": "running",
                 "collecting": "collecting", "finished": "done", "failed": "failed", "stopped": "stopped"}
_GROUP_ORDER = ["running", "collecting", "starting", "queued", "done", "failed", "stopped"]


@dataclass
class SweepGroup:
    """One sweep's header: its loaded trials (newest first) and what the header shows."""

    sweep: str
    trials: list[Execution] = field(default_factory=list)
    collapsed: bool = False
    #: (metric key, best value, goal "min"/"max") over the trials' primary metric, or None
    best: tuple[str, float, str] | None = None

    @property
    def short(self) -> str:
        return self.sweep[-5:]

    @property
    def ids(self) -> list[str]:
        return [t.id for t in self.trials]

    @property
    def active(self) -> bool:
        return any(t.active for t in self.trials)

    def state(self) -> str:
        """One state for the header's icon: active if any trial is, else failed if any
        failed, else stopped if any stopped, else finished."""
        states = {t.state for t in self.trials}
        for s in ("running", "collecting", "fetching", "preparing", "queued", "failed", "stopped"):
            if s in states:
                return s
        return "finished"

    def summary(self) -> str:
        """``4 trials · 2 running · 2 done``."""
        counts = Counter(_GROUP_LABELS.get(t.state, t.state) for t in self.trials)
        n = len(self.trials)
        parts = [f"{n} trial{'s' if n != 1 else ''}"]
        for label in _GROUP_ORDER:
            if counts.get(label):
                parts.append(f"{counts[label]} {label}")
        return " \u00b7 ".join(parts)

    def varied(self) -> list[str]:
        """The parameters the trials differ in (``lr``, ``epochs``)."""
        keys: list[str] = []
        for t in self.trials:
            for k in (t.overrides or {}):
                if k not in keys:
                    keys.append(k)
        return [k for k in keys if len({(t.overrides or {}).get(k) for t in self.trials}) > 1]

    def best_text(self) -> str:
        """``best val/loss 0.213`` (empty without a primary metric)."""
        if self.best is None:
            return ""
        from mldesk.ui.rowinfo import number

        return f"best {self.best[0]} {number(self.best[1])}"

    def title(self) -> str:
        varied = " \u00d7 ".join(self.varied())
        return f"Sweep {self.short}" + (f" \u00b7 {varied}" if varied else "")


def _key(ex: Execution) -> tuple[float, str]:
    return (ex.created_at, ex.id)


class ExecutionModel(QtCore.QAbstractListModel):
    """Rows are executions of one lab, newest first; a sweep's trials under its header."""

    #: rows loaded when a lab opens (a screenful or three), then per fetchMore
    FIRST_PAGE = 60
    PAGE = 200

    renameRequested = Signal(str, str)  # id, new name
    countChanged = Signal(int)
    #: An execution went from an active state to a final one: (old, new).
    ended = Signal(object, object)
    #: a sweep's header was collapsed (True) or expanded (False): (sweep id, collapsed)
    collapsedChanged = Signal(str, bool)

    def __init__(self, engine: Engine, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.engine = engine
        self.lab: str | None = None
        # Stored oldest first, so new executions append.
        self._asc: list[Execution] = []
        self._keys: list[tuple[float, str]] = []
        self._by_id: dict[str, Execution] = {}
        self._more = False
        self._total = 0
        self._extra: dict[str, str] = {}
        #: the rows, newest first: an execution id, or ("sweep", id) for a sweep's header
        self._rows: list = []
        self._pos: dict = {}
        self._groups: dict[str, SweepGroup] = {}
        #: collapsed sweeps (kept for the window's session, across labs)
        self._collapsed: set[str] = set()
        #: each execution's primary metric: (key, best value, goal)
        self._metric: dict[str, tuple[str, float, str]] = {}

    # -- loading -------------------------------------------------------------------
    def set_lab(self, lab: str | Path | None) -> None:
        self.beginResetModel()
        self.lab = str(Path(lab).expanduser().resolve()) if lab else None
        self._asc, self._keys, self._by_id = [], [], {}
        self._more = False
        self._total = 0
        if self.lab:
            page = uiquery.list_page(self.engine, self.lab, self.FIRST_PAGE)
            self._set_rows(page)
            self._more = len(page) == self.FIRST_PAGE
            self._total = uiquery.count(self.engine, self.lab) if self._more else len(page)
        self._set_display(self._layout())
        self.endResetModel()
        self.countChanged.emit(self._total)

    def _set_rows(self, newest_first: list[Execution]) -> None:
        rows = list(reversed(newest_first))
        self._asc = rows
        self._keys = [_key(e) for e in rows]
        self._by_id = {e.id: e for e in rows}

    def canFetchMore(self, parent: QtCore.QModelIndex = QtCore.QModelIndex()) -> bool:
        return not parent.isValid() and self._more

    def fetchMore(self, parent: QtCore.QModelIndex = QtCore.QModelIndex()) -> None:
        if parent.isValid() or not self._more or not self.lab:
            return
        before = self._keys[0] if self._keys else None
        raw = uiquery.list_page(self.engine, self.lab, self.PAGE, before)
        self._more = len(raw) == self.PAGE
        page = [e for e in raw if e.id not in self._by_id]
        if not page:
            return
        older = list(reversed(page))
        self._asc[:0] = older
        self._keys[:0] = [_key(e) for e in older]
        self._by_id.update((e.id, e) for e in older)
        self._relayout()

    # -- the rows: executions, sweeps' headers --------------------------------------------
    def _layout(self) -> list:
        """The rows for what is loaded: newest first, a sweep where its newest trial is."""
        groups: dict[str, SweepGroup] = {}
        for ex in reversed(self._asc):
            if ex.sweep:
                g = groups.get(ex.sweep)
                if g is None:
                    g = groups[ex.sweep] = SweepGroup(ex.sweep, collapsed=ex.sweep in self._collapsed)
                g.trials.append(ex)
        rows: list = []
        for ex in reversed(self._asc):
            if not ex.sweep:
                rows.append(ex.id)
                continue
            g = groups[ex.sweep]
            if g.trials[0] is not ex:
                continue
            rows.append(("sweep", ex.sweep))
            if not g.collapsed:
                rows.extend(t.id for t in g.trials)
        for g in groups.values():
            g.best = self._best(g)
        self._groups = groups
        return rows

    def _set_display(self, rows: list) -> None:
        self._rows = rows
        self._pos = {k: i for i, k in enumerate(rows)}

    def _relayout(self) -> None:
        """Move from the current rows to those of what is loaded now: one remove of the
        rows that differ and one insert of the new ones (a common head and tail stay)."""
        old, new = self._rows, self._layout()
        n_old, n_new = len(old), len(new)
        head = 0
        while head < n_old and head < n_new and old[head] == new[head]:
            head += 1
        tail = 0
        while tail < n_old - head and tail < n_new - head and old[n_old - 1 - tail] == new[n_new - 1 - tail]:
            tail += 1
        if n_old - tail > head:
            self.beginRemoveRows(QtCore.QModelIndex(), head, n_old - tail - 1)
            self._set_display(old[:head] + old[n_old - tail:])
            self.endRemoveRows()
        if n_new - tail > head:
            self.beginInsertRows(QtCore.QModelIndex(), head, n_new - tail - 1)
            self._set_display(new)
            self.endInsertRows()
        self._set_display(new)

    def _changed(self, key) -> None:
        row = self._pos.get(key)
        if row is not None:
            idx = self.index(row, 0)
            self.dataChanged.emit(idx, idx)

    def group(self, sweep: str) -> SweepGroup | None:
        """A sweep's header data (its loaded trials), or None."""
        return self._groups.get(sweep)

    def sweep_at(self, row: int) -> str | None:
        """The sweep id of a header row, or None."""
        key = self._rows[row] if 0 <= row < len(self._rows) else None
        return key[1] if isinstance(key, tuple) else None

    def is_collapsed(self, sweep: str) -> bool:
        return sweep in self._collapsed

    def set_collapsed(self, sweep: str, collapsed: bool) -> None:
        """Collapse (hide the trials of) or expand a sweep's header."""
        if (sweep in self._collapsed) == collapsed:
            return
        if collapsed:
            self._collapsed.add(sweep)
        else:
            self._collapsed.discard(sweep)
        self._relayout()
        self._changed(("sweep", sweep))
        self.collapsedChanged.emit(sweep, collapsed)

    def reveal(self, exec_id: str) -> None:
        """Expand the sweep ``exec_id`` is a trial of, so that it has a row."""
        ex = self._by_id.get(exec_id)
        if ex is not None and ex.sweep and ex.sweep in self._collapsed:
            self.set_collapsed(ex.sweep, False)

    def ids_at(self, row: int) -> list[str]:
        """The executions a row stands for: its own, or a header's trials."""
        key = self._rows[row] if 0 <= row < len(self._rows) else None
        if key is None:
            return []
        if isinstance(key, tuple):
            g = self._groups.get(key[1])
            return g.ids if g else []
        return [key]

    # -- Qt model interface ----------------------------------------------------------
    def rowCount(self, parent: QtCore.QModelIndex = QtCore.QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def execution(self, row: int) -> Execution | None:
        """The execution of ``row`` (None for a sweep's header)."""
        key = self._rows[row] if 0 <= row < len(self._rows) else None
        return self._by_id.get(key) if isinstance(key, str) else None

    def data(self, index: QtCore.QModelIndex, role: int = Qt.DisplayRole):
        if not index.isValid():
            return None
        sweep = self.sweep_at(index.row())
        if sweep is not None:
            return self._header_data(self._groups.get(sweep), role)
        ex = self.execution(index.row())
        if ex is None:
            return None
        if role in (Qt.DisplayRole, Qt.EditRole):
            return ex.name
        if role == ExecutionRole:
            return ex
        if role == IdRole:
            return ex.id
        if role == StateRole:
            return ex.state
        if role == ActiveRole:
            return ex.active
        if role == ExtraRole:
            return self._extra.get(ex.id, "")
        if role == Qt.ToolTipRole:
            return fmt.tooltip(ex)
        if role == Qt.AccessibleTextRole:
            return f"{ex.name}, {fmt.state_line(ex)}, {fmt.run_line(ex)}"
        return None

    @staticmethod
    def _header_data(g: SweepGroup | None, role: int):
        if g is None:
            return None
        if role == SweepRole:
            return g.sweep
        if role == Qt.DisplayRole:
            return g.title()
        if role == StateRole:
            return g.state()
        if role == ActiveRole:
            return g.active
        if role == ExtraRole:
            return g.best_text()
        if role in (Qt.ToolTipRole, Qt.AccessibleTextRole):
            text = ", ".join(x for x in (g.title(), g.summary(), g.best_text()) if x)
            if role == Qt.AccessibleTextRole:
                return text + (", collapsed" if g.collapsed else ", expanded")
            return f"Sweep {g.sweep}\n{g.summary()}" + (f"\n{g.best_text()}" if g.best else "")
        return None

    def flags(self, index: QtCore.QModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.NoItemFlags
        if self.sweep_at(index.row()) is not None:
            return Qt.ItemIsEnabled | Qt.ItemIsSelectable
        return Qt.ItemIsEnabled | Qt.ItemIsSelectable | Qt.ItemIsEditable

    def setData(self, index: QtCore.QModelIndex, value, role: int = Qt.EditRole) -> bool:
        ex = self.execution(index.row()) if index.isValid() else None
        if ex is None or role != Qt.EditRole:
            return False
        name = str(value).strip()
        if name and name != ex.name:
            self.renameRequested.emit(ex.id, name)
        return True

    # -- lookups ---------------------------------------------------------------------
    def row_of(self, exec_id: str) -> int:
        """The row of an execution; -1 if not loaded, or a trial of a collapsed sweep."""
        return self._pos.get(exec_id, -1)

    def index_of(self, exec_id: str) -> QtCore.QModelIndex:
        row = self.row_of(exec_id)
        return self.index(row, 0) if row >= 0 else QtCore.QModelIndex()

    def header_index(self, sweep: str) -> QtCore.QModelIndex:
        row = self._pos.get(("sweep", sweep), -1)
        return self.index(row, 0) if row >= 0 else QtCore.QModelIndex()

    def get(self, exec_id: str) -> Execution | None:
        return self._by_id.get(exec_id)

    def executions(self) -> list[Execution]:
        """The loaded executions, newest first (collapsed trials too)."""
        return list(reversed(self._asc))

    def total(self) -> int:
        return self._total

    def active_rows(self) -> list[int]:
        """The rows with a spinner: active executions, sweeps with an active trial."""
        rows = []
        for i, key in enumerate(self._rows):
            if isinstance(key, tuple):
                g = self._groups.get(key[1])
                active = g is not None and g.active
            else:
                ex = self._by_id.get(key)
                active = ex is not None and ex.active
            if active:
                rows.append(i)
        return rows

    def active_executions(self) -> list[Execution]:
        """The loaded active executions, newest first (collapsed trials too)."""
        return [e for e in reversed(self._asc) if e.active]

    def set_extra(self, exec_id: str, text: str) -> None:
        """The row's live figures (``ExtraRole``): painted under its name."""
        if self._extra.get(exec_id, "") == text:
            return
        self._extra[exec_id] = text
        idx = self.index_of(exec_id)
        if idx.isValid():
            self.dataChanged.emit(idx, idx, [ExtraRole])

    def extra(self, exec_id: str) -> str:
        return self._extra.get(exec_id, "")

    def set_metric(self, exec_id: str, key: str, value: float | None, goal: str) -> None:
        """An execution's primary metric (its best value so far, ``goal`` "min" or
        "max"): its sweep's header shows the best of its trials."""
        if value is None or key is None:
            return
        try:
            value = float(value)
        except (TypeError, ValueError):
            return
        if value != value:  # NaN
            return
        item = (key, value, goal)
        if self._metric.get(exec_id) == item:
            return
        self._metric[exec_id] = item
        ex = self._by_id.get(exec_id)
        g = self._groups.get(ex.sweep) if ex is not None and ex.sweep else None
        if g is not None:
            best = self._best(g)
            if best != g.best:
                g.best = best
                self._changed(("sweep", g.sweep))

    def metric(self, exec_id: str) -> tuple[str, float, str] | None:
        return self._metric.get(exec_id)

    def _best(self, g: SweepGroup) -> tuple[str, float, str] | None:
        """The best value of the trials' primary metric (the key most of them name)."""
        items = [m for m in (self._metric.get(t.id) for t in g.trials) if m is not None]
        if not items:
            return None
        key = Counter(m[0] for m in items).most_common(1)[0][0]
        goal = next(m[2] for m in items if m[0] == key)
        values = [m[1] for m in items if m[0] == key]
        return key, (min(values) if goal == "min" else max(values)), goal

    # -- incremental updates -------------------------------------------------------------
    def upsert(self, ex: Execution | None) -> None:
        """Insert or update one execution (from an event, a command's result or a
        resync); ignores other labs, hidden rows and anything older than what we hold."""
        if ex is None or self.lab is None or ex.lab != self.lab:
            return
        if ex.hidden:
            self.remove(ex.id)
            return
        old = self._by_id.get(ex.id)
        if old is not None:
            if ex.seq and old.seq and ex.seq < old.seq:
                return  # a late event: we already show something newer
            i = bisect.bisect_left(self._keys, _key(old))
            self._asc[i] = ex
            self._by_id[ex.id] = ex
            g = self._groups.get(ex.sweep) if ex.sweep else None
            if g is not None:
                g.trials = [ex if t.id == ex.id else t for t in g.trials]
                self._changed(("sweep", ex.sweep))
            self._changed(ex.id)
            if old.active and ex.final:
                self.ended.emit(old, ex)
            return
        key = _key(ex)
        if self._more and self._keys and key < self._keys[0]:
            return  # older than the loaded page: fetchMore will bring it
        i = bisect.bisect_left(self._keys, key)
        self._asc.insert(i, ex)
        self._keys.insert(i, key)
        self._by_id[ex.id] = ex
        self._relayout()
        if ex.sweep:
            self._changed(("sweep", ex.sweep))
        self._total += 1
        self.countChanged.emit(self._total)

    def remove(self, exec_id: str) -> None:
        ex = self._by_id.get(exec_id)
        if ex is None:
            return
        i = bisect.bisect_left(self._keys, _key(ex))
        del self._asc[i]
        del self._keys[i]
        del self._by_id[exec_id]
        self._relayout()
        if ex.sweep:
            self._changed(("sweep", ex.sweep))
        self._total = max(0, self._total - 1)
        self.countChanged.emit(self._total)

    def resync(self, since_seq: int) -> int:
        """Apply every change the store saw after ``since_seq`` (idempotent); returns
        the store's current seq. Covers events the watcher could not see because
        they happened before it took its first look."""
        rows, gone, now = uiquery.changes_since(self.engine, since_seq)
        for ex in rows:
            self.upsert(ex)
        for exec_id in gone:
            self.remove(exec_id)
        return now
