"""Item models over the store: the executions of the open lab, newest first.

:class:`ExecutionModel` loads a page of executions when the lab opens and more as
the view scrolls (``canFetchMore``/``fetchMore``), so a lab with 10,000 executions
opens as fast as an empty one. Engine events then update it incrementally: one
``beginInsertRows``/``beginRemoveRows``/``dataChanged`` per event, never a reset.
Updates are idempotent and ordered by the store's ``seq``, so an event that arrives
late (or twice) never takes a row back to an older state.
"""

from __future__ import annotations

import bisect
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


def _key(ex: Execution) -> tuple[float, str]:
    return (ex.created_at, ex.id)


class ExecutionModel(QtCore.QAbstractListModel):
    """Rows are executions of one lab, newest first."""

    #: rows loaded when a lab opens (a screenful or three), then per fetchMore
    FIRST_PAGE = 60
    PAGE = 200

    renameRequested = Signal(str, str)  # id, new name
    countChanged = Signal(int)
    #: An execution went from an active state to a final one: (old, new).
    ended = Signal(object, object)

    def __init__(self, engine: Engine, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.engine = engine
        self.lab: str | None = None
        # Stored oldest first, so new executions append; row r is _asc[n - 1 - r].
        self._asc: list[Execution] = []
        self._keys: list[tuple[float, str]] = []
        self._by_id: dict[str, Execution] = {}
        self._more = False
        self._total = 0
        self._extra: dict[str, str] = {}

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
        n = len(self._asc)
        self.beginInsertRows(QtCore.QModelIndex(), n, n + len(page) - 1)
        older = list(reversed(page))
        self._asc[:0] = older
        self._keys[:0] = [_key(e) for e in older]
        self._by_id.update((e.id, e) for e in older)
        self.endInsertRows()

    # -- Qt model interface ----------------------------------------------------------
    def rowCount(self, parent: QtCore.QModelIndex = QtCore.QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._asc)

    def execution(self, row: int) -> Execution | None:
        n = len(self._asc)
        return self._asc[n - 1 - row] if 0 <= row < n else None

    def data(self, index: QtCore.QModelIndex, role: int = Qt.DisplayRole):
        ex = self.execution(index.row()) if index.isValid() else None
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

    def flags(self, index: QtCore.QModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.NoItemFlags
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
        ex = self._by_id.get(exec_id)
        if ex is None:
            return -1
        i = bisect.bisect_left(self._keys, _key(ex))
        return len(self._asc) - 1 - i

    def index_of(self, exec_id: str) -> QtCore.QModelIndex:
        row = self.row_of(exec_id)
        return self.index(row, 0) if row >= 0 else QtCore.QModelIndex()

    def get(self, exec_id: str) -> Execution | None:
        return self._by_id.get(exec_id)

    def executions(self) -> list[Execution]:
        """The loaded rows, newest first."""
        return list(reversed(self._asc))

    def total(self) -> int:
        return self._total

    def active_rows(self) -> list[int]:
        n = len(self._asc)
        return [n - 1 - i for i, e in enumerate(self._asc) if e.active]

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
            row = self.row_of(ex.id)
            i = len(self._asc) - 1 - row
            self._asc[i] = ex
            self._by_id[ex.id] = ex
            idx = self.index(row, 0)
            self.dataChanged.emit(idx, idx)
            if old.active and ex.final:
                self.ended.emit(old, ex)
            return
        key = _key(ex)
        if self._more and self._keys and key < self._keys[0]:
            return  # older than the loaded page: fetchMore will bring it
        i = bisect.bisect_left(self._keys, key)
        n = len(self._asc)
        row = n - i  # rows are reversed: inserting at i puts it at row n - i
        self.beginInsertRows(QtCore.QModelIndex(), row, row)
        self._asc.insert(i, ex)
        self._keys.insert(i, key)
        self._by_id[ex.id] = ex
        self.endInsertRows()
        self._total += 1
        self.countChanged.emit(self._total)

    def remove(self, exec_id: str) -> None:
        row = self.row_of(exec_id)
        if row < 0:
            return
        i = len(self._asc) - 1 - row
        self.beginRemoveRows(QtCore.QModelIndex(), row, row)
        del self._asc[i]
        del self._keys[i]
        del self._by_id[exec_id]
        self.endRemoveRows()
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
