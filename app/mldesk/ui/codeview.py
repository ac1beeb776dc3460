"""The Code view: tabs of the lab's files (editable), or of an execution's snapshot
(read-only, under a banner "code as of <time>" with "Restore this code").

Open lab files are watched: a file changed on disk is reloaded when it has no
unsaved edits, otherwise a bar offers to reload it or keep the edits. ml.yaml is
checked as it is edited and its problems are shown inline at their line.
"""

from __future__ import annotations

from pathlib import Path

from mldesk.engine import labs as labconfig
from mldesk.engine.values import Execution
from mldesk.ui import fmt
from mldesk.ui.editor import CodeEditor
from mldesk.ui.findbar import FindBar, find_wrapping
from mldesk.ui.qt import QtCore, QtWidgets, Qt, Signal
from mldesk.ui.widgets import MessageBar

#: Files larger than this open only after a question (or not at all when binary).
MAX_OPEN_BYTES = 8 << 20
UNSAVED = "\u25cf"


def looks_binary(data: bytes) -> bool:
    return b"\0" in data[:8192]


class CodeArea(QtWidgets.QWidget):
    """Editable lab tabs, or read-only snapshot tabs, plus banners and find."""

    restoreRequested = Signal(str)  # execution id
    labRequested = Signal()
    #: the lab's ml.yaml was saved (the Inputs panel re-reads it)
    configSaved = Signal()
    message = Signal(str, str, str)  # title, text, level

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.lab: Path | None = None
        self.snapshot_of: Execution | None = None
        self._read_snapshot = None  # callable(rel) -> bytes

        self.snapshot_bar = MessageBar(self, closable=False)
        self.snapshot_bar.setObjectName("snapshotBanner")
        self.disk_bar = MessageBar(self)
        self.disk_bar.setObjectName("diskChangedBar")
        self.info_bar = MessageBar(self)

        self.lab_tabs = self._tabs("labTabs", closable=True)
        self.snap_tabs = self._tabs("snapshotTabs", closable=True)
        self.stack = QtWidgets.QStackedWidget(self)
        self.stack.addWidget(self.lab_tabs)
        self.stack.addWidget(self.snap_tabs)
        self.find_bar = FindBar(self, name="code", placeholder="Find in file", field_width=240, margin_left=8)
        self.find_bar.hide()
        self.find_bar.search.connect(lambda _text, backward, typed: self.find_next(backward, restart=typed))
        self.find_bar.closed.connect(self.close_find)

        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.snapshot_bar)
        layout.addWidget(self.disk_bar)
        layout.addWidget(self.info_bar)
        layout.addWidget(self.stack, 1)
        layout.addWidget(self.find_bar)

        self.watcher = QtCore.QFileSystemWatcher(self)
        self.watcher.fileChanged.connect(self._on_file_changed)
        self._changed_pending: set[str] = set()
        self._reload_timer = QtCore.QTimer(self)
        self._reload_timer.setSingleShot(True)
        self._reload_timer.setInterval(150)  # editors write in several steps: settle first
        self._reload_timer.timeout.connect(self._process_changes)
        self._check_timer = QtCore.QTimer(self)
        self._check_timer.setSingleShot(True)
        self._check_timer.setInterval(350)
        self._check_timer.timeout.connect(self._check_configs)

    def _add_close_button(self, tabs: QtWidgets.QTabWidget, index: int) -> None:
        """A plain "×" (the style's close icon is a coloured box on bare desktops)."""
        btn = QtWidgets.QToolButton(tabs)
        btn.setObjectName("tabCloseButton")
        btn.setText("\u00d7")
        btn.setAutoRaise(True)
        btn.setToolTip("Close")
        btn.setFixedSize(18, 18)
        btn.setCursor(Qt.PointingHandCursor)
        btn.setStyleSheet("QToolButton#tabCloseButton { border: none; border-radius: 3px; font-size: 13px;"
                          " padding: 0 0 1px 0; color: palette(placeholder-text); }"
                          "QToolButton#tabCloseButton:hover { background: palette(midlight); color: palette(text); }")
        bar = tabs.tabBar()
        bar.setTabButton(index, QtWidgets.QTabBar.RightSide, btn)

        def close() -> None:
            for i in range(bar.count()):
                if bar.tabButton(i, QtWidgets.QTabBar.RightSide) is btn:
                    self._close_tab(tabs, i)
                    return

        btn.clicked.connect(close)

    def _tabs(self, name: str, closable: bool) -> QtWidgets.QTabWidget:
        tabs = QtWidgets.QTabWidget(self)
        tabs.setObjectName(name)
        tabs.setDocumentMode(True)
        tabs.setMovable(True)
        tabs.setUsesScrollButtons(True)
        tabs.setElideMode(Qt.ElideMiddle)
        tabs.tabCloseRequested.connect(lambda i, t=tabs: self._close_tab(t, i))
        return tabs

    # -- editors -------------------------------------------------------------------
    def editors(self, tabs: QtWidgets.QTabWidget | None = None) -> list[CodeEditor]:
        tabs = tabs or self.lab_tabs
        return [tabs.widget(i) for i in range(tabs.count())]

    def current_editor(self) -> CodeEditor | None:
        tabs = self.stack.currentWidget()
        w = tabs.currentWidget() if tabs is not None else None
        return w if isinstance(w, CodeEditor) else None

    def editor_for(self, rel: str, tabs: QtWidgets.QTabWidget | None = None) -> CodeEditor | None:
        for ed in self.editors(tabs):
            if ed.property("rel") == rel:
                return ed
        return None

    def unsaved(self) -> list[CodeEditor]:
        return [e for e in self.editors() if e.is_modified]

    def in_snapshot(self) -> bool:
        return self.snapshot_of is not None

    # -- the lab ----------------------------------------------------------------------
    def set_lab(self, lab: Path | str | None) -> None:
        """Open another lab: closes every tab (the caller saved or asked first)."""
        self.show_lab()
        for tabs in (self.lab_tabs, self.snap_tabs):
            while tabs.count():
                w = tabs.widget(0)
                tabs.removeTab(0)
                w.deleteLater()
        if self.watcher.files():
            self.watcher.removePaths(self.watcher.files())
        self.lab = Path(lab) if lab else None
        self.disk_bar.hide()
        self.info_bar.hide()
        if self.lab is not None:
            for rel in ("main.py",):
                if (self.lab / rel).is_file():
                    self.open_file(rel)
            config = labconfig.find_config(self.lab)
            if config is not None:
                self.open_file(config.name, focus=False)
                self.lab_tabs.setCurrentIndex(0)

    def open_file(self, rel: str, focus: bool = True) -> CodeEditor | None:
        """Open (or switch to) a lab file in an editable tab."""
        if self.lab is None:
            return None
        if self.in_snapshot():
            return self.open_snapshot_file(rel)
        existing = self.editor_for(rel)
        if existing is not None:
            if focus:
                self.lab_tabs.setCurrentWidget(existing)
            return existing
        path = self.lab / rel
        try:
            size = path.stat().st_size
            if size > MAX_OPEN_BYTES:
                self.message.emit(f"{rel} is too large to edit here ({fmt.size(size)})",
                                  "Open it with another program from the lab folder.", "warning")
                return None
            with open(path, "rb") as f:
                head = f.read(8192)
            if looks_binary(head):
                self.message.emit(f"{rel} is not a text file",
                                  "Binary files cannot be edited here; open the lab folder to use them.", "info")
                return None
        except OSError as exc:
            self.message.emit(f"{rel} could not be opened", f"{exc.strerror or exc}.", "error")
            return None
        editor = CodeEditor(self.lab_tabs)
        editor.setProperty("rel", rel)
        try:
            editor.load_file(path)
        except OSError as exc:
            editor.deleteLater()
            self.message.emit(f"{rel} could not be opened", f"{exc.strerror or exc}.", "error")
            return None
        editor.modificationChanged.connect(lambda _m, e=editor: self._update_tab(e))
        if self._is_config(rel):
            editor.textChanged.connect(self._check_timer.start)
        index = self.lab_tabs.addTab(editor, rel.rsplit("/", 1)[-1])
        self.lab_tabs.setTabToolTip(index, str(path))
        self._add_close_button(self.lab_tabs, index)
        self._update_tab(editor)
        self.watcher.addPath(str(path))
        if self._is_config(rel):
            self._check_config(editor)
        if focus:
            self.lab_tabs.setCurrentWidget(editor)
        return editor

    def _is_config(self, rel: str) -> bool:
        return "/" not in rel and rel.lower() == "ml.yaml"

    def _update_tab(self, editor: CodeEditor) -> None:
        tabs = self.lab_tabs
        i = tabs.indexOf(editor)
        if i < 0:
            return
        name = (editor.property("rel") or "").rsplit("/", 1)[-1]
        tabs.setTabText(i, f"{name} {UNSAVED}" if editor.is_modified else name)

    def _close_tab(self, tabs: QtWidgets.QTabWidget, index: int) -> None:
        editor = tabs.widget(index)
        if tabs is self.lab_tabs and editor.is_modified:
            box = QtWidgets.QMessageBox(
                QtWidgets.QMessageBox.Warning, "Unsaved changes",
                f"{editor.property('rel')} has unsaved changes.",
                QtWidgets.QMessageBox.Save | QtWidgets.QMessageBox.Discard | QtWidgets.QMessageBox.Cancel, self)
            box.setInformativeText("Save them before closing the tab?")
            answer = box.exec()
            if answer == QtWidgets.QMessageBox.Cancel:
                return
            if answer == QtWidgets.QMessageBox.Save and not self.save(editor):
                return
        tabs.removeTab(index)
        if tabs is self.lab_tabs and editor.path is not None:
            self.watcher.removePath(str(editor.path))
        editor.deleteLater()

    # -- saving --------------------------------------------------------------------------
    def save(self, editor: CodeEditor | None = None) -> bool:
        editor = editor or self.current_editor()
        if editor is None:
            return False
        if self.snap_tabs.indexOf(editor) >= 0:
            self.message.emit("This is an execution's code and cannot be changed",
                              "Use \u201cRestore this code\u201d to bring it back into the lab, "
                              "or go back to the lab's files.", "info")
            return False
        if not editor.save():
            self.message.emit("The file was not saved", editor.last_error or "", "error")
            return False
        if self._is_config(editor.property("rel") or ""):
            self.configSaved.emit()
        return True

    def save_all(self) -> bool:
        ok = True
        for editor in self.unsaved():
            ok = self.save(editor) and ok
        return ok

    # -- changes on disk -----------------------------------------------------------------
    def _on_file_changed(self, path: str) -> None:
        self._changed_pending.add(path)
        self._reload_timer.start()

    def _process_changes(self) -> None:
        paths, self._changed_pending = self._changed_pending, set()
        for path in paths:
            if Path(path).exists() and path not in self.watcher.files():
                self.watcher.addPath(path)  # an atomic rename dropped the watch
            editor = next((e for e in self.editors() if e.path and str(e.path) == path), None)
            if editor is not None:
                self._disk_changed(editor)

    def _disk_changed(self, editor: CodeEditor) -> None:
        path = editor.path
        try:
            data = path.read_bytes()
        except OSError:
            return  # deleted: keep the text; saving writes it back
        text = data.decode("utf-8", "replace").replace("\r\n", "\n")
        if text == editor.toPlainText():
            return  # our own save, or no real change
        if not editor.is_modified:
            self.reload(editor)
        else:
            rel = editor.property("rel")
            self.disk_bar.show_message(
                f"{rel} changed on disk", "You have unsaved edits in it. Reload the file (losing the edits) "
                "or keep your version (saving it overwrites the file).", "warning",
                [("Reload", lambda e=editor: (self.reload(e), self.disk_bar.hide())),
                 ("Keep mine", self.disk_bar.hide)])

    def reload(self, editor: CodeEditor) -> None:
        """Load the editor's file again, keeping the cursor and scroll position."""
        pos = editor.textCursor().position()
        scroll = editor.verticalScrollBar().value()
        try:
            editor.load_file(editor.path)
        except OSError:
            return
        cursor = editor.textCursor()
        cursor.setPosition(min(pos, len(editor.toPlainText())))
        editor.setTextCursor(cursor)
        editor.verticalScrollBar().setValue(scroll)
        if self._is_config(editor.property("rel") or ""):
            self._check_config(editor)
        self._update_tab(editor)

    def reload_all(self) -> None:
        """After the lab's files were replaced (Restore / Restart): reload every
        open file; close tabs of files that no longer exist."""
        for editor in self.editors():
            if editor.path is not None and editor.path.exists():
                self.reload(editor)
            else:
                i = self.lab_tabs.indexOf(editor)
                self.lab_tabs.removeTab(i)
                editor.deleteLater()
        if self.lab is not None and self.lab_tabs.count() == 0 and (self.lab / "main.py").is_file():
            self.open_file("main.py")

    # -- ml.yaml problems --------------------------------------------------------------------
    def _check_configs(self) -> None:
        for editor in self.editors():
            if self._is_config(editor.property("rel") or ""):
                self._check_config(editor)

    def _check_config(self, editor: CodeEditor) -> None:
        try:
            config = labconfig.parse_config(editor.toPlainText())
            problems = list(config.warnings)
        except labconfig.ConfigError as exc:
            problems = exc.problems
        editor.set_problems([(p.line, p.column, f"{p.message}" + (f" ({p.hint})" if p.hint else ""),
                              p.severity) for p in problems])

    # -- snapshot mode -------------------------------------------------------------------------
    def show_snapshot(self, ex: Execution, files: dict[str, list], read) -> None:
        """Show ``ex``'s code read-only; ``read(rel) -> bytes`` reads a file of it."""
        same = self.snapshot_of is not None and self.snapshot_of.snapshot == ex.snapshot
        current = self.current_editor()
        focus = current.property("rel") if current is not None else None
        # the tabs open now (the lab's, or the previous snapshot's) stay open, ml.yaml too
        want = [e.property("rel") for e in self.editors(self.snap_tabs if self.in_snapshot() else self.lab_tabs)]
        if not same:
            while self.snap_tabs.count():
                w = self.snap_tabs.widget(0)
                self.snap_tabs.removeTab(0)
                w.deleteLater()
        self.snapshot_of = ex
        self._read_snapshot = read
        self._snapshot_files = files
        self._show_snapshot_bar(ex)
        self.stack.setCurrentWidget(self.snap_tabs)
        if not same:
            opened = [rel for rel in dict.fromkeys(want) if rel and rel in files and files[rel][0] != "link"
                      and self.open_snapshot_file(rel) is not None]
            for rel in [focus, "main.py"] + opened:
                if rel and rel in files and self.open_snapshot_file(rel) is not None:
                    break
            else:
                first = next((r for r in sorted(files) if files[r][0] != "link"), None)
                if first:
                    self.open_snapshot_file(first)

    def _show_snapshot_bar(self, ex: Execution) -> None:
        when = fmt.clock(ex.created_at)
        self.snapshot_bar.show_message(
            f"Code as of {when} \u2014 {ex.name}",
            "The files exactly as they were when this execution started (read-only).",
            "info", [("Restore this code", lambda: self.restoreRequested.emit(ex.id)),
                     ("Back to lab files", self.labRequested.emit)])

    def execution_changed(self, ex: Execution) -> None:
        """The shown snapshot's execution changed (renamed): its banner follows."""
        if self.snapshot_of is not None and self.snapshot_of.id == ex.id and self.snapshot_of.name != ex.name:
            self.snapshot_of = ex
            if self.in_snapshot():
                self._show_snapshot_bar(ex)

    def open_snapshot_file(self, rel: str) -> CodeEditor | None:
        existing = self.editor_for(rel, self.snap_tabs)
        if existing is not None:
            self.snap_tabs.setCurrentWidget(existing)
            return existing
        try:
            data = self._read_snapshot(rel)
        except Exception as exc:  # noqa: BLE001 - a missing blob is the user's to know
            self.message.emit(f"{rel} could not be read from the snapshot", str(exc), "error")
            return None
        editor = CodeEditor(self.snap_tabs)
        editor.setProperty("rel", rel)
        if looks_binary(data[:8192]):
            editor.load_text(f"({rel} is a binary file of {fmt.size(len(data))})", "")
        else:
            editor.load_text(data[:MAX_OPEN_BYTES].decode("utf-8", "replace"), rel.rsplit("/", 1)[-1])
        editor.setReadOnly(True)
        i = self.snap_tabs.addTab(editor, rel.rsplit("/", 1)[-1])
        self.snap_tabs.setTabToolTip(i, f"{rel} (read-only)")
        self._add_close_button(self.snap_tabs, i)
        self.snap_tabs.setCurrentWidget(editor)
        return editor

    def show_lab(self) -> None:
        self.snapshot_of = None
        self.snapshot_bar.hide()
        self.stack.setCurrentWidget(self.lab_tabs)

    # -- find -------------------------------------------------------------------------------------
    def open_find(self) -> None:
        editor = self.current_editor()
        self.find_bar.open_with(editor.textCursor().selectedText() if editor is not None else "")

    def close_find(self) -> None:
        self.find_bar.hide()
        editor = self.current_editor()
        if editor is not None:
            editor.setFocus()

    def find_next(self, backward: bool = False, restart: bool = False) -> bool:
        """Select the next (previous) match of the find bar's text in the current file,
        wrapping around; ``restart``: from the start of the current match (typing)."""
        editor = self.current_editor()
        text = self.find_bar.field.text()
        if editor is None or not text:
            self.find_bar.count.setText("")
            return False
        cursor = editor.textCursor()
        if restart:
            cursor.setPosition(cursor.selectionStart())
        match = find_wrapping(editor.document(), text, cursor, backward)
        if match.isNull():
            self.find_bar.count.setText("No matches")
            return False
        editor.setTextCursor(match)
        editor.ensureCursorVisible()
        self.find_bar.count.setText("")
        return True
