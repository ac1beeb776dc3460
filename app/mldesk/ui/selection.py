"""What the sidebar's selection shows: the execution's console, snapshot code and outputs, or the lab's files."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from mldesk.engine import queries
from mldesk.engine.values import Execution
from mldesk.ui import fmt
from mldesk.ui.errors import describe
from mldesk.ui.qt import QtCore, QtGui

if TYPE_CHECKING:  # pragma: no cover
    from mldesk.ui.mainwindow import MainWindow


def snapshot_path(path: str, files: dict) -> str | None:
    """The snapshot file a traceback's path names: the longest tail of ``path`` that is
    a file of the snapshot (the program ran in a workspace or container elsewhere)."""
    parts = PurePosixPath(path.replace("\\", "/")).parts
    for i in range(len(parts)):
        rel = "/".join(p for p in parts[i:] if p != "/")
        if rel in files:
            return rel
    return None


class SelectionController(QtCore.QObject):
    """Follows the sidebar's selection and switches the code, console and outputs views."""

    def __init__(self, window: "MainWindow"):
        super().__init__(window)
        self.w = window
        self.code_follows_selection = True
        #: while a row's three-dots menu is open: the executions it acts on (not the selection)
        self.menu_targets: list[str] | None = None

    def selected(self) -> list[Execution]:
        w = self.w
        ids = self.menu_targets if self.menu_targets is not None else w.execution_list.selected_ids()
        return [e for e in (w.model.get(i) for i in ids) if e is not None]

    def current(self) -> Execution | None:
        sel = self.selected()
        return sel[0] if len(sel) == 1 else None

    def select(self, exec_id: str, *, show_code: bool = True) -> bool:
        w = self.w
        w.model.reveal(exec_id)  # a trial of a collapsed sweep: expand it
        idx = w.model.index_of(exec_id)
        if not idx.isValid():
            return False
        self.code_follows_selection = show_code
        try:
            w.execution_list.select_only(idx)
            w.execution_list.scrollTo(idx)
            # selectionChanged does not fire when it was already selected
            self.apply(force_code=show_code)
        finally:
            self.code_follows_selection = True
        return True

    def on_list_clicked(self, index: QtCore.QModelIndex) -> None:
        """A click on the (already) selected execution still switches the code view."""
        w = self.w
        ex = self.current()
        if ex is not None and w.model.row_of(ex.id) == index.row() and not (
                w.code.in_snapshot() and w.code.snapshot_of.id == ex.id):
            self.apply(force_code=True)

    def apply(self, force_code: bool | None = None) -> None:
        w = self.w
        ex = self.current()
        show_code = self.code_follows_selection if force_code is None else force_code
        if ex is None:
            if not self.selected():
                self.show_lab_files(clear_selection=False)
            w.commands.update()
            return
        if w.logview.exec_id != ex.id:
            w.logview.show(ex.id)
        w.console_stack.setCurrentWidget(w.console_page)
        self.update_title(ex)
        w.outputs_panel.set_execution(ex)
        if show_code:
            self.show_snapshot(ex)
        elif w.code.in_snapshot():
            self.show_lab_files(clear_selection=False)
        if w.bottom_tabs.currentWidget() is w.inputs_panel and ex.state != "fetching":
            w.bottom_tabs.setCurrentIndex(0)
        w.commands.update()

    def update_title(self, ex: Execution | None) -> None:
        w = self.w
        if ex is None:
            w.console_title.setText("")
            w.console_title.setToolTip("")
            w.failure_banner.show_for(None)
            return
        w.console_title.setText(f"{ex.name}  \u00b7  {fmt.state_line(ex)}")
        w.console_title.setToolTip(f"{ex.name}\n{fmt.state_line(ex)}" + (f"\n{ex.reason}" if ex.reason else ""))
        w.failure_banner.show_for(ex)

    def show_snapshot(self, ex: Execution) -> None:
        w = self.w
        engine = w.engine
        try:
            files = queries.snapshot_files(engine, ex.snapshot)
        except Exception as exc:  # noqa: BLE001 - SnapshotError, OSError, bad JSON
            w.show_banner("This execution's code cannot be shown", describe(exc), "error")
            return
        w.code.show_snapshot(ex, files, lambda rel, s=ex.snapshot: queries.read_snapshot_file(engine, s, rel))
        w.file_tree.show_snapshot(files)
        w.lab_button.setChecked(False)

    def open_source(self, path: str, line: int) -> bool:
        """A traceback link: the shown execution's snapshot opens at ``path``:``line``."""
        w = self.w
        ex = w.model.get(w.logview.exec_id) if w.logview.exec_id else None
        if ex is None:
            return False
        try:
            files = queries.snapshot_files(w.engine, ex.snapshot)
        except Exception as exc:  # noqa: BLE001 - SnapshotError, OSError
            w.show_banner("This execution's code cannot be shown", describe(exc), "error")
            return False
        rel = snapshot_path(path, files)
        if rel is None:
            w.show_banner(f"{PurePosixPath(path).name} is not part of this execution's code.",
                          "Only the lab's files are kept with an execution (not Python's or a library's).",
                          "info", timeout=8)
            return False
        self.select(ex.id, show_code=True)
        editor = w.code.open_snapshot_file(rel)
        if editor is None:
            return False
        block = editor.document().findBlockByNumber(max(0, line - 1))
        editor.setTextCursor(QtGui.QTextCursor(block))
        editor.centerCursor()
        return True

    def show_lab_files(self, clear_selection: bool = True) -> None:
        """Back to the lab's editable files (the sidebar selection is cleared)."""
        w = self.w
        if w.lab is None:
            return
        if clear_selection and w.code.in_snapshot():
            w.execution_list.selectionModel().clearSelection()
        w.code.show_lab()
        if w.file_tree.is_snapshot() or w.file_tree.lab != w.lab:
            w.file_tree.show_lab(w.lab)
        w.lab_button.setChecked(True)

    def open_tree_file(self, rel: str) -> None:
        w = self.w
        if w.file_tree.is_snapshot():
            w.code.open_snapshot_file(rel)
        else:
            w.code.open_file(rel)

    def on_removed_event(self, exec_id: str) -> None:
        w = self.w
        w.model.remove(exec_id)
        if w.logview.exec_id == exec_id and w.model.get(exec_id) is None:
            self.clear_console()
            w.outputs_panel.set_execution(None)

    def clear_console(self) -> None:
        w = self.w
        w.logview.show(None)
        w.console_stack.setCurrentWidget(w.console_placeholder)
        self.update_title(None)
