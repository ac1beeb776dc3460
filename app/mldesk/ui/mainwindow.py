"""The main window: lab files and code, toolbar, execution sidebar, and the
Output / Outputs / Inputs tabs.

It adds no execution logic: it shows the store (through :class:`ExecutionModel`
and the engine's events) and calls the engine's commands, the slow ones on worker
threads (:class:`Tasks`), whose results come back on the GUI thread.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from mldesk.core import labconfig
from mldesk.engine import queries as uiquery
from mldesk.engine.facade import Engine, LocalInputsNeedConsent
from mldesk.core.store import ACTIVE_STATES, Execution
from mldesk.ui import fmt
from mldesk.ui.codeview import CodeArea
from mldesk.ui.console import Console
from mldesk.ui.errors import USER_ERRORS, describe, report_unexpected
from mldesk.ui.facade import EngineBridge, Tasks
from mldesk.ui.filetree import FileTree
from mldesk.ui.inputs import InputsPanel
from mldesk.ui.logview import LogView
from mldesk.ui.models import ExecutionModel
from mldesk.ui.outputs import OutputsPanel
from mldesk.ui.qt import QtCore, QtGui, QtWidgets, Qt, Signal
from mldesk.ui.settings import SettingsDialog, about_text, apply_theme
from mldesk.ui.sidebar import ExecutionList, UndoBar
from mldesk.ui.welcome import NewLabDialog, WelcomePage
from mldesk.ui.widgets import MessageBar, SectionHeader, paint_icon

log = logging.getLogger("mldesk.ui")

RUNTIME_CHOICES = (("Automatic", None), ("Docker", "docker"), ("Process (plain Python)", "process"))


class MainWindow(QtWidgets.QMainWindow):
    """One window on one engine; shows one lab at a time (or the welcome page)."""

    labOpened = Signal(str)
    #: emitted once, at the first paint (the start-up benchmark listens)
    firstPainted = Signal()

    def __init__(self, engine: Engine, *, owns_engine: bool = True, runtime: str | None = None,
                 parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("mainWindow")
        self.engine = engine
        self.owns_engine = owns_engine
        self.runtime_choice = runtime
        self.auto_runtime: str | None = None
        self.lab: Path | None = None
        self.notifications: list[tuple[str, str]] = []
        self.ask_on_close = True
        self.close_box: QtWidgets.QMessageBox | None = None
        self.restart_box: QtWidgets.QMessageBox | None = None
        self._closing = False
        self._shut_down = False
        self._close_confirmed = False
        self._pending_removal: list[str] = []
        self._code_follows_selection = True
        self._started = False
        self.first_paint_at: float | None = None
        self._tray: QtWidgets.QSystemTrayIcon | None = None
        self._progress_exec: str | None = None

        self.window_settings = QtCore.QSettings(str(engine.layout.root / "window.ini"),
                                                QtCore.QSettings.IniFormat)
        self.tasks = Tasks(self)
        self.tasks.failed.connect(self._task_failed)
        self.bridge = EngineBridge(engine, self)
        self.model = ExecutionModel(engine, self)
        self._seq0 = engine.store.seq()

        self._build()
        self._build_actions()
        self._connect()
        self._restore_window_state()
        self.show_welcome()
        self._update_runtime_button()

        self._progress_timer = QtCore.QTimer(self)
        self._progress_timer.setInterval(400)
        self._progress_timer.timeout.connect(self._poll_progress)
        self._start_timer = QtCore.QTimer(self)
        self._start_timer.setSingleShot(True)
        self._start_timer.timeout.connect(self._start_background)

    # ================================================================== building
    def _build(self) -> None:
        self.setWindowTitle("mldesk")
        self.setUnifiedTitleAndToolBarOnMac(True)

        # -- toolbar
        tb = self.toolbar = QtWidgets.QToolBar("Main", self)
        tb.setObjectName("mainToolBar")
        tb.setMovable(False)
        tb.setIconSize(QtCore.QSize(16, 16))
        tb.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        self.addToolBar(Qt.TopToolBarArea, tb)
        self.run_button = QtWidgets.QToolButton(self)
        self.run_button.setObjectName("runButton")
        self.run_button.setText("Run")
        self.run_button.setIcon(paint_icon("run", "#2e9e4f"))
        self.run_button.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        self.run_button.setToolTip("Run the lab (Ctrl+Enter): snapshot its files and start an execution")
        self.run_button.setAutoRaise(True)
        self.stop_button = QtWidgets.QToolButton(self)
        self.stop_button.setObjectName("stopButton")
        self.stop_button.setText("Stop")
        self.stop_button.setIcon(paint_icon("stop", "#d93b3b"))
        self.stop_button.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        self.stop_button.setToolTip("Stop the selected execution (Ctrl+.)")
        self.stop_button.setAutoRaise(True)
        for b in (self.run_button, self.stop_button):
            b.setMinimumHeight(30)
            f = b.font()
            f.setWeight(QtGui.QFont.DemiBold)
            b.setFont(f)
        tb.addWidget(self._spaced(self.run_button, 6))
        tb.addWidget(self.stop_button)
        tb.addSeparator()
        host_label = QtWidgets.QLabel("Host", self)
        host_label.setContentsMargins(8, 0, 4, 0)
        host_label.setForegroundRole(QtGui.QPalette.PlaceholderText)
        tb.addWidget(host_label)
        self.host_chooser = QtWidgets.QComboBox(self)
        self.host_chooser.setObjectName("hostChooser")
        self.host_chooser.setToolTip("Where executions run")
        self.host_chooser.setSizeAdjustPolicy(QtWidgets.QComboBox.AdjustToContents)
        tb.addWidget(self.host_chooser)
        runtime_label = QtWidgets.QLabel("Runtime", self)
        runtime_label.setContentsMargins(14, 0, 0, 0)
        runtime_label.setForegroundRole(QtGui.QPalette.PlaceholderText)
        tb.addWidget(runtime_label)
        self.runtime_button = QtWidgets.QToolButton(self)
        self.runtime_button.setObjectName("runtimeIndicator")
        self.runtime_button.setPopupMode(QtWidgets.QToolButton.InstantPopup)
        self.runtime_button.setAutoRaise(True)
        self.runtime_menu = QtWidgets.QMenu(self.runtime_button)
        group = QtGui.QActionGroup(self)
        self.runtime_actions: dict[str | None, QtGui.QAction] = {}
        for label, value in RUNTIME_CHOICES:
            act = self.runtime_menu.addAction(label)
            act.setCheckable(True)
            act.setChecked(value == self.runtime_choice)
            act.triggered.connect(lambda _c=False, v=value: self.set_runtime(v))
            group.addAction(act)
            self.runtime_actions[value] = act
        self.runtime_button.setMenu(self.runtime_menu)
        tb.addWidget(self._spaced(self.runtime_button, 2))
        spacer = QtWidgets.QWidget(self)
        spacer.setSizePolicy(QtWidgets.QSizePolicy.Expanding, QtWidgets.QSizePolicy.Preferred)
        tb.addWidget(spacer)
        self.running_label = QtWidgets.QLabel(self)
        self.running_label.setObjectName("runningLabel")
        self.running_label.setContentsMargins(0, 0, 10, 0)
        tb.addWidget(self.running_label)

        # -- pages
        self.pages = QtWidgets.QStackedWidget(self)
        self.setCentralWidget(self.pages)
        self.welcome = WelcomePage(self)
        self.pages.addWidget(self.welcome)
        work = self.workspace = QtWidgets.QWidget(self)
        self.pages.addWidget(work)
        self.banner = MessageBar(work)
        self.banner.setObjectName("windowBanner")

        # left: lab header + files
        left = QtWidgets.QWidget(work)
        left.setObjectName("labPanel")
        ll = QtWidgets.QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.setSpacing(0)
        self.lab_header = SectionHeader("Lab", left)
        self.new_file_button = QtWidgets.QToolButton(left)
        self.new_file_button.setText("+")
        self.new_file_button.setToolTip("New file in the lab")
        self.new_file_button.setAutoRaise(True)
        self.lab_header.add(self.new_file_button)
        self.lab_button = QtWidgets.QPushButton(left)
        self.lab_button.setObjectName("labButton")
        self.lab_button.setCheckable(True)
        self.lab_button.setCursor(Qt.PointingHandCursor)
        self.lab_button.setToolTip("The lab's files (editable). Click to leave an execution's code.")
        self.lab_button.setStyleSheet(
            "QPushButton#labButton { text-align: left; padding: 6px 10px; margin: 0 6px 4px 6px;"
            " border: 1px solid transparent; border-radius: 6px; font-weight: 600; }"
            "QPushButton#labButton:checked { background: palette(midlight); border-color: palette(mid); }"
            "QPushButton#labButton:hover { border-color: palette(mid); }")
        self.file_tree = FileTree(left)
        ll.addWidget(self.lab_header)
        ll.addWidget(self.lab_button)
        ll.addWidget(self.file_tree, 1)

        # center: code above, tabs below
        self.code = CodeArea(work)
        self.code.setObjectName("codeArea")
        self.console = Console(work)
        self.console_title = QtWidgets.QLabel(work)
        self.console_title.setObjectName("consoleTitle")
        self.console_title.setTextFormat(Qt.PlainText)
        self.console_placeholder = QtWidgets.QLabel(
            "Press Run (Ctrl+Enter) to start an execution, or select one in the sidebar to see its output.",
            work)
        self.console_placeholder.setAlignment(Qt.AlignCenter)
        self.console_placeholder.setWordWrap(True)
        self.console_placeholder.setForegroundRole(QtGui.QPalette.PlaceholderText)
        self.console_stack = QtWidgets.QStackedWidget(work)
        self.console_stack.addWidget(self.console_placeholder)
        self.console_stack.addWidget(self.console)
        output_page = QtWidgets.QWidget(work)
        ol = QtWidgets.QVBoxLayout(output_page)
        ol.setContentsMargins(0, 0, 0, 0)
        ol.setSpacing(0)
        ol.addWidget(self.console_stack, 1)
        self.inputs_panel = InputsPanel(self.engine, work)
        self.outputs_panel = OutputsPanel(self.engine, work)
        self.bottom_tabs = QtWidgets.QTabWidget(work)
        self.bottom_tabs.setObjectName("bottomTabs")
        self.bottom_tabs.setDocumentMode(True)
        self.bottom_tabs.addTab(output_page, "Output")
        self.bottom_tabs.addTab(self.outputs_panel, "Outputs")
        self.bottom_tabs.addTab(self.inputs_panel, "Inputs")
        corner = QtWidgets.QWidget(work)
        cl = QtWidgets.QHBoxLayout(corner)
        cl.setContentsMargins(0, 0, 10, 0)
        cl.addWidget(self.console_title)
        self.bottom_tabs.setCornerWidget(corner, Qt.TopRightCorner)
        self.center_split = QtWidgets.QSplitter(Qt.Vertical, work)
        self.center_split.setObjectName("centerSplitter")
        self.center_split.addWidget(self.code)
        self.center_split.addWidget(self.bottom_tabs)
        self.center_split.setStretchFactor(0, 3)
        self.center_split.setStretchFactor(1, 2)
        self.center_split.setChildrenCollapsible(False)

        # right: executions
        right = QtWidgets.QWidget(work)
        right.setObjectName("executionPanel")
        rl = QtWidgets.QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.setSpacing(0)
        self.exec_header = SectionHeader("Executions", right)
        self.exec_count = QtWidgets.QLabel(right)
        self.exec_count.setForegroundRole(QtGui.QPalette.PlaceholderText)
        self.exec_header.add(self.exec_count)
        self.execution_list = ExecutionList(self.model, right)
        self.exec_empty = QtWidgets.QLabel(
            "No executions yet.\n\nPress Run to start one: it snapshots the lab's files and runs main.py.",
            right)
        self.exec_empty.setAlignment(Qt.AlignCenter)
        self.exec_empty.setWordWrap(True)
        self.exec_empty.setMargin(18)
        self.exec_empty.setForegroundRole(QtGui.QPalette.PlaceholderText)
        self.exec_stack = QtWidgets.QStackedWidget(right)
        self.exec_stack.addWidget(self.execution_list)
        self.exec_stack.addWidget(self.exec_empty)
        self.undo_bar = UndoBar(right)
        rl.addWidget(self.exec_header)
        rl.addWidget(self.exec_stack, 1)
        rl.addWidget(self.undo_bar)

        self.main_split = QtWidgets.QSplitter(Qt.Horizontal, work)
        self.main_split.setObjectName("mainSplitter")
        self.main_split.addWidget(left)
        self.main_split.addWidget(self.center_split)
        self.main_split.addWidget(right)
        self.main_split.setStretchFactor(0, 0)
        self.main_split.setStretchFactor(1, 1)
        self.main_split.setStretchFactor(2, 0)
        self.main_split.setChildrenCollapsible(False)
        self.main_split.setSizes([230, 820, 330])
        self.center_split.setSizes([470, 330])
        left.setMinimumWidth(160)
        right.setMinimumWidth(240)

        wl = QtWidgets.QVBoxLayout(work)
        wl.setContentsMargins(0, 0, 0, 0)
        wl.setSpacing(0)
        wl.addWidget(self.banner)
        wl.addWidget(self.main_split, 1)

        self.status = QtWidgets.QStatusBar(self)
        self.setStatusBar(self.status)
        self.lab_path_label = QtWidgets.QLabel(self)
        self.lab_path_label.setForegroundRole(QtGui.QPalette.PlaceholderText)
        self.status.addWidget(self.lab_path_label, 1)
        self._restyle()

    def _spaced(self, widget: QtWidgets.QWidget, left: int) -> QtWidgets.QWidget:
        holder = QtWidgets.QWidget(self)
        lay = QtWidgets.QHBoxLayout(holder)
        lay.setContentsMargins(left, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(widget)
        return holder

    def _restyle(self) -> None:
        mid = self.palette().color(QtGui.QPalette.Mid).name()
        self.main_split.setStyleSheet(f"QSplitter#mainSplitter::handle {{ background: {mid}; }}")
        self.main_split.setHandleWidth(1)
        self.center_split.setStyleSheet(f"QSplitter#centerSplitter::handle {{ background: {mid}; }}")
        self.center_split.setHandleWidth(1)
        self.toolbar.setStyleSheet(f"QToolBar#mainToolBar {{ border-bottom: 1px solid {mid}; spacing: 4px;"
                                   " padding: 3px 4px; }")

    def changeEvent(self, event: QtCore.QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QtCore.QEvent.PaletteChange and hasattr(self, "main_split"):
            self._restyle()

    def _build_actions(self) -> None:
        def action(text, slot, shortcut=None, name=None, tip=None, context=Qt.WindowShortcut, widget=None):
            act = QtGui.QAction(text, widget or self)
            if shortcut is not None:
                if isinstance(shortcut, (list, tuple)):
                    act.setShortcuts([QtGui.QKeySequence(s) for s in shortcut])
                else:
                    act.setShortcut(QtGui.QKeySequence(shortcut))
                act.setShortcutContext(context)
            if name:
                act.setObjectName(name)
            if tip:
                act.setToolTip(tip)
            act.triggered.connect(lambda _checked=False: slot())
            (widget or self).addAction(act)
            return act

        self.act_run = action("Run", self.run, ["Ctrl+Return", "Ctrl+Enter"], "actionRun")
        self.act_stop = action("Stop", self.stop_selected, "Ctrl+.", "actionStop")
        self.act_restart = action("Restart", self.restart_selected, None, "actionRestart")
        self.act_rename = action("Edit (rename)\u2026", self.rename_selected, "F2", "actionRename")
        self.act_remove = action("Remove", self.remove_selected, QtGui.QKeySequence.Delete, "actionRemove",
                                 context=Qt.WidgetWithChildrenShortcut, widget=self.execution_list)
        self.act_show_code = action("Show code", self.show_code_selected, None, "actionShowCode")
        self.act_open_outputs = action("Open outputs folder", self.open_outputs_selected, None, "actionOpenOutputs")
        self.act_save = action("Save", self.save, QtGui.QKeySequence.Save, "actionSave")
        self.act_save_all = action("Save all", self.code.save_all, "Ctrl+Shift+S", "actionSaveAll")
        self.act_find = action("Find\u2026", self.code.open_find, QtGui.QKeySequence.Find, "actionFindCode",
                               context=Qt.WidgetWithChildrenShortcut, widget=self.code)
        self.act_new_lab = action("New lab\u2026", self.new_lab_dialog, QtGui.QKeySequence.New, "actionNewLab")
        self.act_open_lab = action("Open lab\u2026", self.open_lab_dialog, QtGui.QKeySequence.Open, "actionOpenLab")
        self.act_lab_files = action("Lab files", self.show_lab_files, "Ctrl+Shift+L", "actionLabFiles")
        self.act_settings = action("Settings\u2026", self.open_settings, QtGui.QKeySequence.Preferences, "actionSettings")
        self.act_hosts = action("Hosts\u2026", self.open_hosts, None, "actionHosts")
        self.act_about = action("About mldesk", self.about, None, "actionAbout")
        self.act_quit = action("Quit", self.close, QtGui.QKeySequence.Quit, "actionQuit")
        self.act_new_file = action("New file\u2026", self.new_file_dialog, None, "actionNewFile")
        self.act_backups = action("Earlier lab files\u2026", self.backups_dialog, None, "actionBackups")

        self.run_button.clicked.connect(self.run)
        self.stop_button.clicked.connect(self.stop_selected)

        mb = self.menuBar()
        m = mb.addMenu("&File")
        for a in (self.act_new_lab, self.act_open_lab):
            m.addAction(a)
        self.recent_menu = m.addMenu("Open recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        m.addSeparator()
        for a in (self.act_new_file, self.act_save, self.act_save_all, self.act_backups):
            m.addAction(a)
        m.addSeparator()
        m.addAction(self.act_hosts)
        m.addAction(self.act_settings)
        m.addSeparator()
        m.addAction(self.act_quit)
        m = mb.addMenu("&Execution")
        for a in (self.act_run, self.act_stop, self.act_restart):
            m.addAction(a)
        m.addSeparator()
        for a in (self.act_rename, self.act_remove, self.act_show_code, self.act_open_outputs):
            m.addAction(a)
        m = mb.addMenu("&View")
        m.addAction(self.act_lab_files)
        m.addAction(self.act_find)
        m = mb.addMenu("&Help")
        m.addAction(self.act_about)

    def _connect(self) -> None:
        b = self.bridge
        b.added.connect(self.model.upsert)
        b.changed.connect(self.model.upsert)
        b.renamed.connect(self.model.upsert)
        b.removed.connect(self._on_removed_event)
        self.logview = LogView(self.engine, b, self.console, self.tasks, self)
        self.console.showAllRequested.connect(self.logview.show_all)
        self.console.saveLogRequested.connect(self.save_log_dialog)

        self.model.renameRequested.connect(self.rename)
        self.model.countChanged.connect(self._on_count)
        self.model.ended.connect(self._on_ended)
        self.model.dataChanged.connect(self._on_rows_changed)
        self.model.rowsInserted.connect(self._on_rows_changed)
        self.model.rowsRemoved.connect(self._on_rows_changed)
        self.model.modelReset.connect(self._on_rows_changed)
        sel = self.execution_list.selectionModel()
        sel.selectionChanged.connect(self._on_selection_changed)
        self.execution_list.menuRequested.connect(self._show_menu)
        self.execution_list.clicked.connect(self._on_list_clicked)
        self.undo_bar.undo.connect(self.undo_remove)
        self.undo_bar.expired.connect(self._commit_remove)

        self.file_tree.fileActivated.connect(self._open_tree_file)
        self.file_tree.newFileRequested.connect(self.new_file_dialog)
        self.new_file_button.clicked.connect(self.new_file_dialog)
        self.lab_button.clicked.connect(self.show_lab_files)
        self.code.restoreRequested.connect(self.restore_code)
        self.code.labRequested.connect(self.show_lab_files)
        self.code.configSaved.connect(self.inputs_panel.reload)
        self.code.message.connect(self.show_banner)
        self.inputs_panel.configWritten.connect(self._config_written)
        self.outputs_panel.message.connect(self.show_banner)

        self.welcome.newLabRequested.connect(self.new_lab_dialog)
        self.welcome.openLabRequested.connect(self.open_lab_dialog)
        self.welcome.recentLabRequested.connect(self.open_lab)

    # ================================================================ start-up
    def showEvent(self, event: QtGui.QShowEvent) -> None:
        super().showEvent(event)
        if not self._started:
            self._start_timer.start(300)  # in case no paint event ever comes (hidden tests)

    def event(self, e: QtCore.QEvent) -> bool:
        result = super().event(e)
        if e.type() == QtCore.QEvent.UpdateRequest and self.first_paint_at is None:
            # the whole first frame was painted and flushed just now
            self.first_paint_at = time.perf_counter()
            self.firstPainted.emit()
            QtCore.QTimer.singleShot(0, self._start_background)
        return result

    def _start_background(self) -> None:
        """After the first paint: the engine's watcher, recovery, runtime probe."""
        if self._started or self._shut_down:
            return
        self._started = True
        self._start_timer.stop()
        self.bridge.start()
        seq0 = self._seq0
        QtCore.QTimer.singleShot(700, lambda: self._resync(seq0))
        self.tasks.submit(self.engine.recover, what="reattaching to running executions")
        from mldesk import runtimes

        self.tasks.submit(runtimes.default_local_runtime, done=self._on_auto_runtime, error=lambda _e: None)
        self._fill_hosts()

    def _resync(self, seq0: int) -> None:
        if not self._shut_down:
            self.model.resync(seq0)

    def _fill_hosts(self) -> None:
        current = self.host_chooser.currentData()
        self.host_chooser.blockSignals(True)
        self.host_chooser.clear()
        for name, info in self.engine.hosts().items():
            label = name if name != "local" else "local (this computer)"
            self.host_chooser.addItem(label, name)
            self.host_chooser.setItemData(self.host_chooser.count() - 1, info.get("description", ""), Qt.ToolTipRole)
        i = self.host_chooser.findData(current or "local")
        self.host_chooser.setCurrentIndex(max(0, i))
        self.host_chooser.blockSignals(False)

    def host(self) -> str:
        return self.host_chooser.currentData() or "local"

    def _on_auto_runtime(self, name: str) -> None:
        self.auto_runtime = name
        self._update_runtime_button()

    def set_runtime(self, runtime: str | None) -> None:
        self.runtime_choice = runtime
        act = self.runtime_actions.get(runtime)
        if act is not None:
            act.setChecked(True)
        self._update_runtime_button()

    def effective_runtime(self) -> str | None:
        return self.runtime_choice or self.auto_runtime

    def _update_runtime_button(self) -> None:
        rt = self.effective_runtime()
        self.runtime_button.setText(rt or "\u2026")
        how = "chosen by you" if self.runtime_choice else "picked automatically: " + (
            "Docker answers" if rt == "docker" else "no Docker daemon answers")
        self.runtime_button.setToolTip(f"Runtime: {rt or 'checking'} ({how}). Click to choose.")

    # ============================================================= labs / pages
    def show_welcome(self) -> None:
        self.lab = None
        self.lab_path_label.setText("")
        self.welcome.set_recent(self.engine.store.recent_labs())
        self.pages.setCurrentWidget(self.welcome)
        self.setWindowTitle("mldesk")
        self._update_actions()

    def open_lab(self, path: str | Path) -> bool:
        path = Path(path).expanduser()
        if not path.is_dir():
            if self.pages.currentWidget() is self.welcome:
                QtWidgets.QMessageBox.warning(self, "Lab not found",
                                              f"{path} does not exist (any more). Choose another lab.")
            else:
                self.show_banner("Lab not found", f"{path} does not exist. Choose another lab.", "error")
            return False
        path = path.resolve()
        if self.lab is not None and path != self.lab and self.code.unsaved():
            answer = QtWidgets.QMessageBox.question(
                self, "Unsaved changes", "Save the changes to the open lab's files first?",
                QtWidgets.QMessageBox.Save | QtWidgets.QMessageBox.Discard | QtWidgets.QMessageBox.Cancel)
            if answer == QtWidgets.QMessageBox.Cancel:
                return False
            if answer == QtWidgets.QMessageBox.Save and not self.code.save_all():
                return False
        self.undo_bar.finish_now()
        self.lab = path
        try:
            self.engine.store.touch_recent_lab(str(path))
        except Exception as exc:  # noqa: BLE001 - a busy store must not stop the lab from opening
            log.warning("could not record recent lab: %s", exc)
        self.pages.setCurrentWidget(self.workspace)
        self.banner.hide()
        self.logview.show(None)
        self.console_stack.setCurrentWidget(self.console_placeholder)
        self.console_title.setText("")
        self.file_tree.show_lab(path)
        self.code.set_lab(path)
        self.inputs_panel.set_lab(path)
        self.outputs_panel.set_lab(path)
        self.outputs_panel.set_execution(None)
        self.model.set_lab(path)
        self.lab_button.setText(path.name)
        self.lab_button.setChecked(True)
        self.lab_path_label.setText(str(path))
        self.setWindowTitle(f"{path.name} \u2014 mldesk")
        self._update_actions()
        self.labOpened.emit(str(path))
        return True

    def open_lab_dialog(self) -> None:
        start = str(self.lab.parent if self.lab else Path.home())
        path = QtWidgets.QFileDialog.getExistingDirectory(self, "Open lab", start)
        if path:
            if not (Path(path) / "main.py").exists():
                answer = QtWidgets.QMessageBox.question(
                    self, "No main.py", f"{path} has no main.py, so it cannot run yet. Open it anyway?")
                if answer != QtWidgets.QMessageBox.Yes:
                    return
            self.open_lab(path)

    def new_lab_dialog(self) -> None:
        dialog = NewLabDialog(self)
        if dialog.exec() != QtWidgets.QDialog.Accepted:
            return
        self.create_lab(dialog.path(), dialog.template())

    def create_lab(self, path: Path, template: str) -> bool:
        from mldesk.templates import create_lab

        try:
            create_lab(path, template)
        except (ValueError, OSError) as exc:
            QtWidgets.QMessageBox.warning(self, "The lab was not created", f"{describe(exc)}.")
            return False
        return self.open_lab(path)

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        labs = self.engine.store.recent_labs()
        for lab in labs:
            act = self.recent_menu.addAction(f"{Path(lab).name}  \u2014  {lab}")
            act.triggered.connect(lambda _c=False, p=lab: self.open_lab(p))
        if not labs:
            self.recent_menu.addAction("(none yet)").setEnabled(False)

    def new_file_dialog(self) -> None:
        if self.lab is None:
            return
        name, ok = QtWidgets.QInputDialog.getText(self, "New file", "File name (relative to the lab):")
        name = name.strip()
        if not ok or not name:
            return
        target = (self.lab / name).resolve()
        if self.lab not in target.parents:
            self.show_banner("The file was not created", "Give a path inside the lab folder.", "error")
            return
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch(exist_ok=True)
        except OSError as exc:
            self.show_banner("The file was not created", describe(exc), "error")
            return
        self.show_lab_files()
        self.code.open_file(str(target.relative_to(self.lab)))

    # ================================================================ banners
    def show_banner(self, title: str, text: str = "", level: str = "error", actions=None) -> None:
        if self.pages.currentWidget() is self.welcome:
            if level == "error":
                QtWidgets.QMessageBox.warning(self, title, text or title)
            return
        self.banner.show_message(title, text, level, actions)

    def _task_failed(self, exc: BaseException, what: str) -> None:
        if isinstance(exc, USER_ERRORS) or isinstance(exc, OSError):
            self.show_banner(f"Failed {what}" if what else "That did not work", describe(exc), "error")
        else:
            report_unexpected(exc, self, what)

    # ============================================================ selection
    def selected_ids(self) -> list[str]:
        return self.execution_list.selected_ids()

    def selected(self) -> list[Execution]:
        return [e for e in (self.model.get(i) for i in self.selected_ids()) if e is not None]

    def current_execution(self) -> Execution | None:
        sel = self.selected()
        return sel[0] if len(sel) == 1 else None

    def select_execution(self, exec_id: str, *, show_code: bool = True) -> bool:
        idx = self.model.index_of(exec_id)
        if not idx.isValid():
            return False
        self._code_follows_selection = show_code
        try:
            self.execution_list.select_only(idx)
            self.execution_list.scrollTo(idx)
            # selectionChanged does not fire when it was already selected
            self._apply_selection(force_code=show_code)
        finally:
            self._code_follows_selection = True
        return True

    def _on_list_clicked(self, index: QtCore.QModelIndex) -> None:
        """A click on the (already) selected execution still switches the code view."""
        ex = self.current_execution()
        if ex is not None and self.model.row_of(ex.id) == index.row() and not (
                self.code.in_snapshot() and self.code.snapshot_of.id == ex.id):
            self._apply_selection(force_code=True)

    def _on_selection_changed(self, *_args) -> None:
        self._apply_selection()

    def _apply_selection(self, force_code: bool | None = None) -> None:
        ex = self.current_execution()
        show_code = self._code_follows_selection if force_code is None else force_code
        if ex is None:
            if not self.selected():
                self.show_lab_files(clear_selection=False)
            self._update_actions()
            return
        if self.logview.exec_id != ex.id:
            self.logview.show(ex.id)
        self.console_stack.setCurrentWidget(self.console)
        self._update_console_title(ex)
        self.outputs_panel.set_execution(ex)
        if show_code:
            self._show_snapshot(ex)
        elif self.code.in_snapshot():
            self.show_lab_files(clear_selection=False)
        if self.bottom_tabs.currentWidget() is self.inputs_panel and ex.state != "fetching":
            self.bottom_tabs.setCurrentIndex(0)
        self._update_actions()

    def _update_console_title(self, ex: Execution | None) -> None:
        if ex is None:
            self.console_title.setText("")
            return
        self.console_title.setText(f"{ex.name}  \u00b7  {fmt.state_line(ex)}")

    def _show_snapshot(self, ex: Execution) -> None:
        try:
            files = self.engine.snapshots.manifest(ex.snapshot)
        except Exception as exc:  # noqa: BLE001 - SnapshotError, OSError, bad JSON
            self.show_banner("This execution's code cannot be shown", describe(exc), "error")
            return
        snaps = self.engine.snapshots
        self.code.show_snapshot(ex, files, lambda rel, s=ex.snapshot: snaps.read_file(s, rel))
        self.file_tree.show_snapshot(files)
        self.lab_button.setChecked(False)

    def show_lab_files(self, clear_selection: bool = True) -> None:
        """Back to the lab's editable files (the sidebar selection is cleared)."""
        if self.lab is None:
            return
        if clear_selection and self.code.in_snapshot():
            self.execution_list.selectionModel().clearSelection()
        self.code.show_lab()
        if self.file_tree.is_snapshot() or self.file_tree.lab != self.lab:
            self.file_tree.show_lab(self.lab)
        self.lab_button.setChecked(True)

    def _open_tree_file(self, rel: str) -> None:
        if self.file_tree.is_snapshot():
            self.code.open_snapshot_file(rel)
        else:
            self.code.open_file(rel)

    # =========================================================== model events
    def _on_removed_event(self, exec_id: str) -> None:
        self.model.remove(exec_id)
        if self.logview.exec_id == exec_id and self.model.get(exec_id) is None:
            self.logview.show(None)
            self.console_stack.setCurrentWidget(self.console_placeholder)
            self.console_title.setText("")
            self.outputs_panel.set_execution(None)

    def _on_count(self, n: int) -> None:
        self.exec_count.setText(str(n) if n else "")
        self.exec_stack.setCurrentWidget(self.execution_list if n or self.model.rowCount() else self.exec_empty)

    def _on_rows_changed(self, *args) -> None:
        self._update_running()
        self._update_actions()
        ex = self.model.get(self.logview.exec_id) if self.logview.exec_id else None
        if ex is not None:
            self._update_console_title(ex)
            if self.outputs_panel.execution is not None and self.outputs_panel.execution.id == ex.id \
                    and self.outputs_panel.execution.state != ex.state:
                self.outputs_panel.set_execution(ex)
        fetching = any(e.state == "fetching" for e in self._loaded_active())
        if fetching and not self._progress_timer.isActive():
            self._progress_timer.start()
            self._poll_progress()

    def _loaded_active(self) -> list[Execution]:
        return [e for e in (self.model.execution(r) for r in self.model.active_rows()) if e is not None]

    def _update_running(self) -> None:
        active = self._loaded_active()
        running = sum(1 for e in active if e.state == "running")
        if active:
            parts = [f"{running} running"] if running else []
            if len(active) - running:
                parts.append(f"{len(active) - running} starting or ending")
            self.running_label.setText("  \u00b7  ".join(parts))
        else:
            self.running_label.setText("")

    def _on_ended(self, old: Execution, new: Execution) -> None:
        if self.outputs_panel.execution is not None and self.outputs_panel.execution.id == new.id:
            self.outputs_panel.set_execution(new)
        self.inputs_panel.reload()  # the download cache may hold the inputs now
        if not self.isActiveWindow():
            self.notify(new)

    def notify(self, ex: Execution) -> None:
        """A desktop notification that ``ex`` ended (tray message where there is a tray)."""
        title = f"{ex.name} {fmt.STATE_LABELS.get(ex.state, ex.state).lower()}"
        text = f"{fmt.run_line(ex)} \u00b7 {Path(ex.lab).name}"
        if ex.state == "failed" and ex.reason:
            text = f"{ex.reason} \u00b7 {Path(ex.lab).name}"
        self.notifications.append((title, text))
        if QtWidgets.QSystemTrayIcon.isSystemTrayAvailable():
            if self._tray is None:
                self._tray = QtWidgets.QSystemTrayIcon(self.windowIcon(), self)
                self._tray.setToolTip("mldesk")
                self._tray.messageClicked.connect(self._raise_window)
                self._tray.show()
            icon = (QtWidgets.QSystemTrayIcon.Information if ex.state == "finished"
                    else QtWidgets.QSystemTrayIcon.Warning)
            self._tray.showMessage(title, text, icon, 8000)
        QtWidgets.QApplication.alert(self)

    def _raise_window(self) -> None:
        self.show()
        self.raise_()
        self.activateWindow()

    def _poll_progress(self) -> None:
        fetching = [e for e in self._loaded_active() if e.state == "fetching"]
        if not fetching:
            self._progress_timer.stop()
            if self._progress_exec is not None:
                self._progress_exec = None
                self.inputs_panel.set_progress({})
                self.inputs_panel.reload()
            return
        current = self.current_execution()
        ex = current if current is not None and current.state == "fetching" else fetching[0]
        self._progress_exec = ex.id
        self.inputs_panel.set_progress(self.engine.input_progress(ex.id))

    # ================================================================ actions
    def _update_actions(self) -> None:
        has_lab = self.lab is not None
        sel = self.selected()
        one = sel[0] if len(sel) == 1 else None
        self.act_run.setEnabled(has_lab)
        self.run_button.setEnabled(has_lab)
        can_stop = any(e.active and not e.stop_requested_at for e in sel)
        self.act_stop.setEnabled(can_stop)
        self.stop_button.setEnabled(can_stop)
        self.act_restart.setEnabled(one is not None)
        self.act_rename.setEnabled(one is not None)
        self.act_remove.setEnabled(bool(sel) and all(e.final for e in sel))
        self.act_show_code.setEnabled(one is not None)
        self.act_open_outputs.setEnabled(one is not None)
        for a in (self.act_save, self.act_save_all, self.act_new_file, self.act_lab_files, self.act_backups):
            a.setEnabled(has_lab)

    def _show_menu(self, global_pos: QtCore.QPoint) -> None:
        self._update_actions()
        menu = QtWidgets.QMenu(self)
        menu.setObjectName("executionMenu")
        for a in (self.act_stop, self.act_restart, self.act_rename, self.act_remove, None,
                  self.act_show_code, self.act_open_outputs):
            menu.addSeparator() if a is None else menu.addAction(a)
        self.execution_menu = menu
        menu.popup(global_pos)
        menu.aboutToHide.connect(menu.deleteLater)

    # -- run / stop / restart --------------------------------------------------------
    def save(self) -> None:
        if self.lab is not None:
            self.code.save()

    def run(self) -> None:
        if self.lab is None or not self.run_button.isEnabled():
            return
        if self.code.unsaved() and not self.code.save_all():
            return
        self.banner.hide()
        self.run_button.setEnabled(False)
        self.run_button.setText("Starting\u2026")
        self.tasks.submit(self.engine.run, self.lab, host=self.host(), runtime=self.runtime_choice,
                          done=self._on_started, error=self._on_run_error)

    def _run_finished(self) -> None:
        self.run_button.setText("Run")
        self._update_actions()

    def _on_started(self, ex: Execution) -> None:
        self._run_finished()
        self.model.upsert(ex)
        self.select_execution(ex.id, show_code=False)
        self.bottom_tabs.setCurrentIndex(0)

    def _on_run_error(self, exc: BaseException) -> None:
        self._run_finished()
        if isinstance(exc, labconfig.ConfigError):
            errors = [p for p in exc.problems if p.severity == "error"] or exc.problems
            self.show_lab_files()
            config = labconfig.find_config(self.lab) if self.lab else None
            if config is not None:
                editor = self.code.open_file(config.name)
                if editor is not None:
                    editor.set_problems([(p.line, p.column, p.message + (f" ({p.hint})" if p.hint else ""),
                                          p.severity) for p in exc.problems])
                    cursor = editor.textCursor()
                    block = editor.document().findBlockByNumber(max(0, errors[0].line - 1))
                    cursor.setPosition(block.position())
                    editor.setTextCursor(cursor)
            first = errors[0]
            self.show_banner(
                f"Not started: ml.yaml has {len(errors)} error{'s' if len(errors) != 1 else ''}",
                f"Line {first.line}: {first.message}. {first.hint[:1].upper() + first.hint[1:] if first.hint else ''}"
                " The problems are underlined in ml.yaml.", "error")
        elif isinstance(exc, LocalInputsNeedConsent):
            self._ask_local_inputs(exc)
        elif isinstance(exc, USER_ERRORS) or isinstance(exc, OSError):
            self.show_banner("The execution was not started", describe(exc), "error")
        else:
            report_unexpected(exc, self, "starting the execution")

    def _ask_local_inputs(self, exc: LocalInputsNeedConsent) -> None:
        """file:// inputs outside the lab: name them and ask once per lab and file."""
        listing = "\n".join(exc.paths[:20]) + (f"\n\u2026 and {len(exc.paths) - 20} more" if len(exc.paths) > 20 else "")
        answer = QtWidgets.QMessageBox.question(
            self, "Let this lab read files outside it?",
            "ml.yaml lists these local files outside the lab as inputs:\n\n" + listing +
            "\n\nThe lab's program will be able to read them, and send them wherever its network "
            "reaches. Allow this lab to read them?",
            QtWidgets.QMessageBox.Yes | QtWidgets.QMessageBox.Cancel, QtWidgets.QMessageBox.Cancel)
        if answer == QtWidgets.QMessageBox.Yes:
            self.engine.allow_local_inputs(exc.lab, exc.paths)
            self.run()
        else:
            self.show_banner("The execution was not started", "The local files were not allowed.", "info")

    def stop_selected(self) -> None:
        targets = [e for e in self.selected() if e.active]
        if not targets and self.logview.exec_id:
            ex = self.model.get(self.logview.exec_id)
            targets = [ex] if ex is not None and ex.active else []
        for ex in targets:
            self.tasks.submit(self.engine.stop, ex.id, done=self.model.upsert, what=f"stopping {ex.name}")
        self.stop_button.setEnabled(False)

    def restart_selected(self) -> None:
        ex = self.current_execution()
        if ex is not None:
            self.restart(ex.id)

    def restart(self, exec_id: str) -> None:
        """Restart: ask first only when the lab differs from the snapshot."""
        if self.code.unsaved() and not self.code.save_all():
            return
        self.tasks.submit(self.engine.lab_differs, exec_id,
                          done=lambda differs: self._confirm_restart(exec_id, differs),
                          what="comparing the lab with the execution's code")

    def _confirm_restart(self, exec_id: str, differs: bool) -> None:
        if not differs:
            self._do_restart(exec_id)
            return
        ex = self.model.get(exec_id)
        name = ex.name if ex else exec_id
        box = QtWidgets.QMessageBox(self)
        box.setObjectName("restartConfirm")
        box.setIcon(QtWidgets.QMessageBox.Question)
        box.setWindowTitle("Restart execution")
        box.setText(f"Restart \u201c{name}\u201d with its code?")
        box.setInformativeText(
            "The lab's files are replaced by the code of this execution, then it runs again. "
            "Your current files are kept as a recoverable snapshot (File \u203a Earlier lab files).")
        restart = box.addButton("Restart", QtWidgets.QMessageBox.AcceptRole)
        box.addButton(QtWidgets.QMessageBox.Cancel)
        box.setDefaultButton(restart)

        def finished(_result: int) -> None:
            self.restart_box = None
            if box.clickedButton() is restart:
                self._do_restart(exec_id)

        box.finished.connect(finished)
        self.restart_box = box
        box.open()

    def _do_restart(self, exec_id: str) -> None:
        self.tasks.submit(self.engine.restart, exec_id, done=self._on_restarted, error=self._on_run_error)

    def _on_restarted(self, result) -> None:
        ex, backup = result
        self.show_lab_files()
        self.code.reload_all()
        self.inputs_panel.reload()
        self.model.upsert(ex)
        self.select_execution(ex.id, show_code=False)
        self.bottom_tabs.setCurrentIndex(0)
        if backup:
            self.show_banner("Restarted with the execution's code",
                             "Your previous files were kept as a snapshot; bring them back from "
                             "File \u203a Earlier lab files.", "info",
                             [("Bring them back", lambda b=backup: self.restore_backup(b))])

    def restore_code(self, exec_id: str) -> None:
        """"Restore this code": the lab's files become the execution's snapshot."""
        if self.code.unsaved() and not self.code.save_all():
            return
        self.tasks.submit(self.engine.restore_code, exec_id, done=self._on_code_restored,
                          what="restoring the execution's code")

    def _on_code_restored(self, backup: str | None) -> None:
        self.show_lab_files()
        self.code.reload_all()
        self.inputs_panel.reload()
        if backup:
            self.show_banner("The lab now has the execution's code",
                             "Your previous files were kept as a snapshot.", "success",
                             [("Bring them back", lambda b=backup: self.restore_backup(b))])
        else:
            self.show_banner("The lab already had exactly this code", "", "info")

    def restore_backup(self, snapshot: str) -> None:
        if self.lab is None:
            return
        if self.code.unsaved() and not self.code.save_all():
            return
        self.tasks.submit(uiquery.restore_lab_backup, self.engine, self.lab, snapshot,
                          done=lambda _b: (self.show_lab_files(), self.code.reload_all(), self.inputs_panel.reload(),
                                           self.show_banner("Your earlier files are back", "", "success")),
                          what="bringing back the earlier files")

    def backups_dialog(self) -> None:
        if self.lab is None:
            return
        backups = self.engine.store.lab_backups(str(self.lab))
        if not backups:
            QtWidgets.QMessageBox.information(
                self, "Earlier lab files",
                "No earlier files are kept for this lab. They are kept whenever Restart or "
                "\u201cRestore this code\u201d replaces the lab's files.")
            return
        items = [f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(b['created_at']))} \u2014 {b['reason']}"
                 for b in backups]
        item, ok = QtWidgets.QInputDialog.getItem(self, "Earlier lab files",
                                                  "Bring back the lab's files as they were at:", items, 0, False)
        if ok and item in items:
            self.restore_backup(backups[items.index(item)]["snapshot"])

    # -- rename / remove ------------------------------------------------------------
    def rename_selected(self) -> None:
        ex = self.current_execution()
        if ex is None:
            return
        idx = self.model.index_of(ex.id)
        self.execution_list.setFocus()
        self.execution_list.select_only(idx)
        self.execution_list.edit(idx)

    def rename(self, exec_id: str, name: str) -> None:
        try:
            self.model.upsert(self.engine.rename(exec_id, name))
        except USER_ERRORS as exc:
            self.show_banner("The execution was not renamed", describe(exc), "error")

    def remove_selected(self) -> None:
        sel = self.selected()
        if not sel:
            return
        active = [e for e in sel if e.active]
        final = [e for e in sel if e.final]
        if active:
            names = ", ".join(e.name for e in active[:3]) + ("\u2026" if len(active) > 3 else "")
            self.show_banner(f"{names} {'is' if len(active) == 1 else 'are'} still running",
                             "Stop it first (Ctrl+.); running executions cannot be removed.", "warning")
        if not final:
            return
        self.remove(final)

    def remove(self, executions: list[Execution]) -> None:
        """Hide at once, with Undo; removed for good when the Undo bar expires."""
        self.undo_bar.finish_now()
        hidden = []
        for ex in executions:
            try:
                self.engine.hide(ex.id)
            except USER_ERRORS as exc:
                self.show_banner(f"{ex.name} was not removed", describe(exc), "error")
                continue
            hidden.append(ex)
            self.model.remove(ex.id)
            if self.logview.exec_id == ex.id:
                self._on_removed_event(ex.id)
        if not hidden:
            return
        self._pending_removal = [e.id for e in hidden]
        text = (f"Removed \u201c{hidden[0].name}\u201d" if len(hidden) == 1
                else f"Removed {len(hidden)} executions")
        self.undo_bar.start(text, float(self.engine.setting("undo_seconds") or 5.0))

    def undo_remove(self) -> None:
        ids, self._pending_removal = self._pending_removal, []
        for exec_id in ids:
            try:
                self.engine.unhide(exec_id)
            except Exception as exc:  # noqa: BLE001 - removed by the CLI meanwhile
                self.show_banner("Could not bring the execution back", describe(exc), "error")
                continue
            self.model.upsert(self.engine.store.get(exec_id))
        if len(ids) == 1:
            self.select_execution(ids[0], show_code=False)

    def _commit_remove(self) -> None:
        ids, self._pending_removal = self._pending_removal, []
        if not ids:
            return
        engine = self.engine

        def work() -> None:
            for exec_id in ids:
                engine.remove(exec_id)

        self.tasks.submit(work, what="removing executions")

    # -- code / outputs ------------------------------------------------------------------
    def show_code_selected(self) -> None:
        ex = self.current_execution()
        if ex is not None:
            self.select_execution(ex.id, show_code=True)

    def open_outputs_selected(self) -> None:
        ex = self.current_execution()
        if ex is None:
            return
        folder = self.engine.outputs_dir(ex.id)
        if not folder.is_dir():
            self.show_banner("This execution has no outputs yet",
                             "Files that main.py writes to outputs/ are collected when it ends.", "info")
            return
        self.outputs_panel.open_url(QtCore.QUrl.fromLocalFile(str(folder)))

    def _config_written(self) -> None:
        """The Inputs panel rewrote ml.yaml: the editor shows the new text."""
        config = labconfig.find_config(self.lab) if self.lab else None
        if config is None:
            return
        editor = self.code.editor_for(config.name)
        if editor is not None and not editor.is_modified:
            self.code.reload(editor)

    def save_log_dialog(self) -> None:
        exec_id = self.logview.exec_id
        if exec_id is None:
            return
        ex = self.model.get(exec_id)
        default = str(Path.home() / f"{(ex.name if ex else exec_id).lstrip('#')}.log")
        program = "Program output: stdout and stderr (*.log *.txt)"
        everything = "Everything, with mldesk's messages (*.log *.txt)"
        path, chosen = QtWidgets.QFileDialog.getSaveFileName(self, "Save log as", default,
                                                             f"{program};;{everything}")
        if path:
            self.save_log(exec_id, path, include_mldesk=chosen == everything)

    def save_log(self, exec_id: str, path: str, include_mldesk: bool = False) -> None:
        self.logview.save_log(
            exec_id, path, include_mldesk=include_mldesk,
            done=lambda n: self.show_banner("Log saved", f"{fmt.size(n)} written to {path}", "success"),
            error=lambda exc: self.show_banner("The log was not saved", describe(exc), "error"))

    # ================================================================= dialogs
    def open_settings(self) -> None:
        dialog = SettingsDialog(self.engine, self)
        dialog.exec()

    def open_hosts(self) -> None:
        """The SSH host profiles (add, edit, test); the host chooser follows."""
        from mldesk.ui.hosts_dialog import HostsDialog

        dialog = HostsDialog(self.engine, self)
        dialog.hostsChanged.connect(self._fill_hosts)
        dialog.exec()
        self._fill_hosts()

    def about(self) -> None:
        QtWidgets.QMessageBox.about(self, "About mldesk", about_text() + (
            f"<p>Data folder: {self.engine.layout.root}</p>"))

    # ========================================================= window state
    def _restore_window_state(self) -> None:
        s = self.window_settings
        geometry = s.value("geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            screen = QtGui.QGuiApplication.primaryScreen()
            avail = screen.availableGeometry() if screen else QtCore.QRect(0, 0, 1600, 1000)
            self.resize(min(1440, int(avail.width() * 0.9)), min(900, int(avail.height() * 0.9)))
        for key, splitter in (("mainSplitter", self.main_split), ("centerSplitter", self.center_split),
                              ("outputsSplitter", self.outputs_panel.splitter)):
            state = s.value(key)
            if state is not None:
                splitter.restoreState(state)
        theme = self.engine.setting("theme") or "system"
        if theme != "system":
            apply_theme(theme)

    def save_window_state(self) -> None:
        s = self.window_settings
        s.setValue("geometry", self.saveGeometry())
        s.setValue("mainSplitter", self.main_split.saveState())
        s.setValue("centerSplitter", self.center_split.saveState())
        s.setValue("outputsSplitter", self.outputs_panel.splitter.saveState())
        s.sync()

    # ================================================================= closing
    def _active_count(self) -> int:
        try:
            return len(self.engine.store.list(states=ACTIVE_STATES))
        except Exception:  # noqa: BLE001 - closing must work even with a broken store
            return 0

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        if self._shut_down:
            event.accept()
            return
        if not self._close_confirmed:
            active = self._active_count()
            unsaved = self.code.unsaved()
            if (active and self.ask_on_close) or unsaved:
                event.ignore()
                self._ask_close(active, unsaved)
                return
        self.shutdown()
        event.accept()

    def _ask_close(self, active: int, unsaved: list) -> None:
        if self.close_box is not None:
            self.close_box.raise_()
            return
        box = QtWidgets.QMessageBox(self)
        box.setObjectName("closeConfirm")
        box.setWindowTitle("Close mldesk")
        box.setIcon(QtWidgets.QMessageBox.Information if not unsaved else QtWidgets.QMessageBox.Warning)
        lines = []
        if active:
            s = "s keep" if active != 1 else " keeps"
            lines.append(f"{active} execution{s} running.")
        if unsaved:
            names = ", ".join(e.property("rel") for e in unsaved[:3])
            lines.append(f"Unsaved changes in {names}.")
        box.setText(" ".join(lines))
        if active:
            box.setInformativeText(
                "They run on without this window and will be here, live, when you open mldesk again "
                "(their output is kept meanwhile).")
        if unsaved:
            save = box.addButton("Save and close", QtWidgets.QMessageBox.AcceptRole)
            discard = box.addButton("Close without saving", QtWidgets.QMessageBox.DestructiveRole)
        else:
            save = box.addButton("Close window", QtWidgets.QMessageBox.AcceptRole)
            discard = None
        box.addButton(QtWidgets.QMessageBox.Cancel)
        box.setDefaultButton(save)

        def finished(_r: int) -> None:
            self.close_box = None
            clicked = box.clickedButton()
            if clicked is save:
                if unsaved and not self.code.save_all():
                    return
            elif clicked is not discard or discard is None:
                return
            self._close_confirmed = True
            self.close()

        box.finished.connect(finished)
        self.close_box = box
        box.open()

    def shutdown(self) -> None:
        """Stop everything this window started; executions keep running."""
        if self._shut_down:
            return
        self._shut_down = True
        try:
            self.save_window_state()
        except Exception as exc:  # noqa: BLE001
            log.warning("could not save the window state: %s", exc)
        self._progress_timer.stop()
        self._start_timer.stop()
        self.undo_bar.finish_now()  # a pending removal happens now
        self.logview.close()
        self.bridge.close()
        self.tasks.shutdown()
        if self._tray is not None:
            self._tray.hide()
        if self.owns_engine:
            self.engine.close()
