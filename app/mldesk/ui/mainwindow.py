"""The main window: wires the panes (:mod:`.workspace`), the run bar, and the controllers that do the work.

It adds no execution logic. What each part owns:

- :mod:`.runbar`      Run / Stop, host and runtime choosers, the "N running" label
- :mod:`.actions`     execution commands (run, stop, restart, rename, remove + undo, save log)
- :mod:`.labctl`      the open lab (welcome page, open / create / recent, new file, ml.yaml problems)
- :mod:`.selection`   what the sidebar's selection shows (console, snapshot code, outputs)
- :mod:`.closeguard`  the question on close; :mod:`.winstate` geometry and splitters;
  :mod:`.notify` desktop notifications; :mod:`.aio` the async slots and their shutdown
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from mldesk.engine import labs, queries
from mldesk.engine.facade import Engine
from mldesk.engine.values import Execution
from mldesk.ui import failure
from mldesk.ui.actions import ExecutionActions
from mldesk.ui.aio import Jobs
from mldesk.ui.closeguard import CloseGuard
from mldesk.ui.dropzone import DropZone
from mldesk.ui.errors import describe, is_user_error, report_unexpected
from mldesk.ui.facade import EngineBridge
from mldesk.ui.labctl import LabController
from mldesk.ui.logview import LogView
from mldesk.ui.menus import build_actions
from mldesk.ui.models import ExecutionModel
from mldesk.ui.notify import Notifier
from mldesk.ui.qt import QtCore, QtGui, QtWidgets, Qt, Signal
from mldesk.ui.runbar import RUNTIME_CHOICES, RunBar  # noqa: F401 - RUNTIME_CHOICES re-exported
from mldesk.ui.selection import SelectionController
from mldesk.ui.settings import SettingsDialog, about_text
from mldesk.ui.welcome import WelcomePage
from mldesk.ui.winstate import WindowState
from mldesk.ui.workspace import build_workspace

log = logging.getLogger("mldesk.ui")


class MainWindow(QtWidgets.QMainWindow):
    """One window on one engine; shows one lab at a time (or the welcome page)."""

    labOpened = Signal(str)
    #: emitted once, at the first paint (the start-up benchmark listens)
    firstPainted = Signal()

    def __init__(self, engine: Engine, *, owns_engine: bool = True, runtime: str | None = None,
                 parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("mainWindow")
        self.setWindowTitle("mldesk")
        self.engine = engine
        self.owns_engine = owns_engine
        self.lab: Path | None = None
        self._shut_down = False
        self._started = False
        self.first_paint_at: float | None = None
        self._progress_exec: str | None = None

        self.jobs = Jobs(self)
        self.jobs.failed.connect(self._job_failed)
        self.bridge = EngineBridge(engine, self)
        self.model = ExecutionModel(engine, self)
        self._seq0 = queries.seq(engine)

        self.toolbar = QtWidgets.QToolBar("Main", self)
        self.toolbar.setObjectName("mainToolBar")
        self.toolbar.setMovable(False)
        self.toolbar.setIconSize(QtCore.QSize(16, 16))
        self.addToolBar(Qt.TopToolBarArea, self.toolbar)
        self.runbar = RunBar(engine, self.toolbar, runtime, self)
        for name in ("run_button", "stop_button", "host_chooser", "runtime_button", "running_label"):
            setattr(self, name, getattr(self.runbar, name))
        self.pages = QtWidgets.QStackedWidget(self)
        self.setCentralWidget(self.pages)
        self.welcome = WelcomePage(self)
        self.pages.addWidget(self.welcome)
        self.workspace = build_workspace(self)
        self.pages.addWidget(self.workspace)
        self.lab_path_label = QtWidgets.QLabel(self)
        self.lab_path_label.setForegroundRole(QtGui.QPalette.PlaceholderText)
        self.lab_path_label.setSizePolicy(QtWidgets.QSizePolicy.Ignored, QtWidgets.QSizePolicy.Preferred)
        self.setStatusBar(QtWidgets.QStatusBar(self))
        self.statusBar().addWidget(self.lab_path_label, 1)
        self.setMinimumSize(640, 480)
        self._restyle()

        self.logview = LogView(engine, self.bridge, self.console, self.jobs, self)
        self.notifier = Notifier(self)
        self.dropzone = DropZone(self)
        self.notifications = self.notifier.sent
        self.guard = CloseGuard(self)
        self.selection = SelectionController(self)
        self.commands = ExecutionActions(self)
        self.labctl = LabController(self)
        self.winstate = WindowState(engine, self, {"mainSplitter": self.main_split, "centerSplitter": self.center_split,
                                                   "outputsSplitter": self.outputs_panel.splitter})
        build_actions(self)
        self._connect()
        self._add_experiments()
        self.winstate.restore()
        self.labctl.show_welcome()
        self._start_timer = QtCore.QTimer(self)
        self._start_timer.setSingleShot(True)
        self._start_timer.timeout.connect(self._start_background)

    # -- delegation kept for callers and tests ------------------------------------------
    def __getattr__(self, name: str):
        for part in ("commands", "labctl", "selection", "runbar"):
            obj = self.__dict__.get(part)
            if obj is not None and name in _DELEGATED.get(part, ()):
                return getattr(obj, name)
        raise AttributeError(name)

    @property
    def ask_on_close(self) -> bool:
        return self.guard.ask_on_close

    @ask_on_close.setter
    def ask_on_close(self, value: bool) -> None:
        self.guard.ask_on_close = value

    @property
    def close_box(self) -> QtWidgets.QMessageBox | None:
        return self.guard.box

    @property
    def restart_box(self) -> QtWidgets.QMessageBox | None:
        return self.commands.restart_box

    @property
    def metrics_view(self):
        """The Metrics tab's charts (made on first use: pyqtgraph is imported then)."""
        return self.metrics_tab.view

    @property
    def execution_menu(self) -> QtWidgets.QMenu | None:
        return self.commands.execution_menu

    def selected_ids(self) -> list[str]:
        return self.execution_list.selected_ids()

    def selected(self) -> list[Execution]:
        return self.selection.selected()

    def current_execution(self) -> Execution | None:
        return self.selection.current()

    def select_execution(self, exec_id: str, *, show_code: bool = True) -> bool:
        return self.selection.select(exec_id, show_code=show_code)

    def host(self) -> str:
        return self.runbar.host()

    # -- building ------------------------------------------------------------------------
    def _restyle(self) -> None:
        mid = self.palette().color(QtGui.QPalette.Mid).name()
        for split in (self.main_split, self.center_split):
            split.setStyleSheet(f"QSplitter#{split.objectName()}::handle {{ background: {mid}; }}")
            split.setHandleWidth(1)
        self.toolbar.setStyleSheet(f"QToolBar#mainToolBar {{ border-bottom: 1px solid {mid}; spacing: 4px;"
                                   " padding: 3px 4px; }")

    def changeEvent(self, event: QtCore.QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QtCore.QEvent.PaletteChange and hasattr(self, "main_split"):
            self._restyle()

    def _connect(self) -> None:
        b, a, sel, lc = self.bridge, self.commands, self.selection, self.labctl
        b.added.connect(self.model.upsert)
        b.changed.connect(self.model.upsert)
        b.renamed.connect(self.model.upsert)
        b.removed.connect(sel.on_removed_event)
        b.progress.connect(self._on_progress)
        self.console.showAllRequested.connect(self.logview.show_all)
        self.console.saveLogRequested.connect(a.save_log_dialog)
        self.console.sourceRequested.connect(sel.open_source)
        self.model.renameRequested.connect(a.rename)
        self.model.countChanged.connect(self._on_count)
        self.model.ended.connect(self._on_ended)
        for signal in (self.model.dataChanged, self.model.rowsInserted, self.model.rowsRemoved,
                       self.model.modelReset):
            signal.connect(self._on_rows_changed)
        self.execution_list.selectionModel().selectionChanged.connect(lambda *_a: sel.apply())
        self.execution_list.menuRequested.connect(a.show_menu)
        self.execution_list.compareSweepRequested.connect(lambda sweep: self.experiments.compare_sweep_id(sweep))
        self.execution_list.clicked.connect(sel.on_list_clicked)
        self.undo_bar.undo.connect(a.undo_remove)
        self.undo_bar.expired.connect(a.commit_remove)
        self.file_tree.fileActivated.connect(sel.open_tree_file)
        self.file_tree.newFileRequested.connect(lc.new_file_dialog)
        self.new_file_button.clicked.connect(lc.new_file_dialog)
        self.lab_button.clicked.connect(lambda: self.show_lab_files())
        self.code.restoreRequested.connect(a.restore_code)
        self.code.labRequested.connect(lambda: self.show_lab_files())
        self.code.configSaved.connect(self.inputs_panel.reload)
        self.code.configSaved.connect(self._config_saved)
        self.code.message.connect(self.show_banner)
        self.inputs_panel.configWritten.connect(lc.config_written)
        self.outputs_panel.message.connect(self.show_banner)
        self.failure_banner.actionRequested.connect(self._failure_action)
        self.welcome.newLabRequested.connect(lc.new_lab_dialog)
        self.welcome.openLabRequested.connect(lc.open_lab_dialog)
        self.welcome.recentLabRequested.connect(lc.open_lab)

    def _add_experiments(self) -> None:
        """Metrics tab, Compare / Compare code / Run with…, row figures, host status."""
        from mldesk.ui.experiments import ExperimentsController
        from mldesk.ui.hoststatus import HostStatus
        from mldesk.ui.metricstab import MetricsTab
        from mldesk.ui.rowinfo import RowInfo

        self.metrics_tab = MetricsTab(self)
        self.experiments = ExperimentsController(self)
        self.row_info = RowInfo(self)
        self.host_status = HostStatus(self)

    # -- start-up ------------------------------------------------------------------------
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
        QtCore.QTimer.singleShot(700, lambda: None if self._shut_down else self.model.resync(seq0))
        self.jobs.run(self.engine.recover, what="reattaching to running executions")
        self.jobs.start(self.runbar.probe_runtime(self.jobs), "checking for Docker")
        self.runbar.fill_hosts()
        self.row_info.start()
        self.host_status.start()

    # -- banners and errors ----------------------------------------------------------------
    def show_banner(self, title: str, text: str = "", level: str = "error", actions=None, *,
                    timeout: float | None = None, key: str | None = None) -> None:
        if self.pages.currentWidget() is self.welcome:
            if level == "error":
                QtWidgets.QMessageBox.warning(self, title, text or title)
            return
        self.banner.show_message(title, text, level, actions, timeout=timeout, key=key)

    def _job_failed(self, exc: BaseException, what: str) -> None:
        if is_user_error(exc):
            self.show_banner(f"Failed {what}" if what else "That did not work", describe(exc), "error")
        else:
            report_unexpected(exc, self, what)

    def _config_saved(self) -> None:
        """ml.yaml was saved: its error banner goes once the file has no errors."""
        if self.banner.key != "config" or self.lab is None:
            return
        try:
            labs.load_lab_config(self.lab)
        except labs.ConfigError:
            return
        except OSError:
            return
        self.banner.clear("config")

    def _failure_action(self, key: str, exec_id: str) -> None:
        ex = self.model.get(exec_id)
        if key == failure.OPEN_INPUTS:
            self.bottom_tabs.setCurrentWidget(self.inputs_panel)
        elif key == failure.IMAGE_SETTINGS:
            self.open_settings("images")
        elif key == failure.EDIT_HOST:
            self.open_hosts(ex.host if ex else None)
        elif key == failure.RUN_PROCESS:
            self.runbar.set_runtime("process")
            self.commands.run()
        elif key == failure.RESTART:
            self.commands.restart(exec_id)

    # -- model events ------------------------------------------------------------------------
    def _on_count(self, n: int) -> None:
        self.exec_count.setText(str(n) if n else "")
        self.exec_stack.setCurrentWidget(self.execution_list if n or self.model.rowCount() else self.exec_empty)

    def _on_rows_changed(self, *args) -> None:
        active = self.model.active_executions()
        self.runbar.show_running(active)
        self.commands.update()
        snap = self.code.snapshot_of
        if snap is not None and (now := self.model.get(snap.id)) is not None:
            self.code.execution_changed(now)  # e.g. renamed: the snapshot banner follows
        ex = self.model.get(self.logview.exec_id) if self.logview.exec_id else None
        if ex is not None:
            self.selection.update_title(ex)
            shown = self.outputs_panel.execution
            if shown is not None and shown.id == ex.id and shown.state != ex.state:
                self.outputs_panel.set_execution(ex)

    def _on_ended(self, old: Execution, new: Execution) -> None:
        if self.outputs_panel.execution is not None and self.outputs_panel.execution.id == new.id:
            self.outputs_panel.set_execution(new)
        self.inputs_panel.reload()  # the download cache may hold the inputs now
        if not self.isActiveWindow():
            self.notifier.notify(new)

    def notify(self, ex: Execution) -> None:
        self.notifier.notify(ex)

    def _on_progress(self, exec_id: str, progress: dict) -> None:
        """Input downloads (engine events): the panel shows the selected fetching
        execution, else the one that reported last; {} means it stopped fetching."""
        if progress:
            current = self.current_execution()
            if self._progress_exec not in (None, exec_id) and current is not None and \
                    current.id == self._progress_exec and current.state == "fetching":
                return  # the selected execution's progress has the panel
            self._progress_exec = exec_id
            self.inputs_panel.set_progress(progress)
        elif self._progress_exec == exec_id:
            self._progress_exec = None
            self.inputs_panel.set_progress({})
            self.inputs_panel.reload()

    # -- view -----------------------------------------------------------------------------------
    def toggle_pane(self, pane: QtWidgets.QWidget, visible: bool | None = None) -> None:
        """Hide or show a side pane (Ctrl+B files, Ctrl+Alt+B executions)."""
        visible = not pane.isVisible() if visible is None else visible
        pane.setVisible(visible)
        (self.act_files_pane if pane is self.left_pane else self.act_exec_pane).setChecked(visible)

    # -- dialogs --------------------------------------------------------------------------------
    def open_settings(self, tab: str | None = None) -> None:
        dialog = SettingsDialog(self.engine, self)
        if tab is not None and hasattr(dialog, "show_tab"):
            dialog.show_tab(tab)
        dialog.exec()

    def open_hosts(self, select: str | None = None) -> None:
        """The SSH host profiles (add, edit, test); the host chooser follows."""
        from mldesk.ui.hosts_dialog import HostsDialog

        dialog = HostsDialog(self.engine, self)
        dialog.hostsChanged.connect(self.runbar.fill_hosts)
        self.host_status.attach_dialog(dialog)
        if select:
            dialog.select(select)
        dialog.exec()
        self.runbar.fill_hosts()

    def about(self) -> None:
        QtWidgets.QMessageBox.about(self, "About mldesk", about_text() + (
            f"<p>Data folder: {queries.data_root(self.engine)}</p>"))

    def save_window_state(self) -> None:
        self.winstate.save()

    # -- closing --------------------------------------------------------------------------------
    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        if self._shut_down or self.guard.close_event(event):
            self.shutdown()
            event.accept()

    def shutdown(self) -> None:
        """Stop everything this window started (cancel its tasks, wait for the engine calls
        already running); executions keep running."""
        if self._shut_down:
            return
        self._shut_down = True
        try:
            self.winstate.save()
        except Exception as exc:  # noqa: BLE001
            log.warning("could not save the window state: %s", exc)
        self._start_timer.stop()
        self.undo_bar.finish_now()  # a pending removal happens now
        self.metrics_tab.close()
        self.row_info.stop()
        self.host_status.stop()
        self.experiments.close()
        self.logview.close()
        self.bridge.close()
        self.jobs.shutdown()
        self.notifier.close()
        self.dropzone.close()
        if self.owns_engine:
            self.engine.close()


#: Methods of the controllers the window answers for (``window.run()`` etc.).
_DELEGATED = {
    "commands": {"run", "stop_selected", "restart_selected", "restart", "restore_code", "restore_backup",
                "backups_dialog", "rename_selected", "rename", "remove_selected", "remove", "undo_remove",
                "show_code_selected", "open_outputs_selected", "save_log_dialog", "save_log"},
    "labctl": {"show_welcome", "open_lab", "open_lab_dialog", "new_lab_dialog", "create_lab", "new_file_dialog",
               "save"},
    "selection": {"show_lab_files"},
    "runbar": {"set_runtime", "effective_runtime", "runtime_choice", "auto_runtime"},
}
