"""The window's experiment commands: Compare, Compare sweep, Compare code, Run with….

:class:`ExperimentsController` adds the actions (Execution menu, the sidebar's context
menu, shortcuts) and opens:

- a :class:`CompareWindow` (:class:`~mldesk.ui.compare.CompareView` over
  ``engine.compare`` rows, each execution's metric series and outputs folder; the
  running ones keep growing, polled with ``engine.metrics_since``);
- a :class:`DiffWindow` (:class:`~mldesk.ui.diffview.DiffView` over ``engine.diff``)
  between two selected executions, or the selected one and its lab;
- the :class:`~mldesk.ui.runwith.RunWithDialog` over the lab's parameters
  (``engine.lab_params``): overrides -> ``engine.run(..., overrides=...)``, a sweep ->
  ``engine.run_sweep(...)`` (through the host's queue).

Every engine call runs on the window's worker threads; problems are banners.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mldesk.engine import labs
from mldesk.engine.values import Execution
from mldesk.ui import fmt
from mldesk.ui.aio import Jobs
from mldesk.ui.errors import describe, is_user_error, report_unexpected
from mldesk.ui.metricstab import points_by_key, read_all, read_since
from mldesk.ui.qt import QtCore, QtGui, QtWidgets, Qt, Signal
from mldesk.ui.runwith import RunWithDialog, sweep_specs

if TYPE_CHECKING:  # pragma: no cover
    from mldesk.ui.mainwindow import MainWindow


FINAL = ("finished", "failed", "stopped")


# -- the windows -------------------------------------------------------------------------
class _ToolWindow(QtWidgets.QWidget):
    """A top-level window owned by the main window (closed with it)."""

    closed = Signal()

    def __init__(self, parent: QtWidgets.QWidget, title: str, size: tuple[int, int]):
        super().__init__(parent, Qt.Window)
        self.setAttribute(Qt.WA_DeleteOnClose, True)
        self.setWindowTitle(title)
        self.resize(*size)
        close = QtGui.QAction(self)
        close.setShortcuts([QtGui.QKeySequence(QtGui.QKeySequence.Close), QtGui.QKeySequence("Esc")])
        close.triggered.connect(self.close)
        self.addAction(close)

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        self.closed.emit()
        super().closeEvent(event)


class CompareWindow(_ToolWindow):
    """Executions compared; running ones are followed (metrics every second)."""

    POLL_MS = 1000

    def __init__(self, engine, jobs: Jobs, ids: list[str], parent: QtWidgets.QWidget, title: str = ""):
        super().__init__(parent, title or f"Compare {len(ids)} executions \u2014 mldesk", (1100, 760))
        from mldesk.ui.compare import CompareView  # pyqtgraph: imported when first needed

        self.setObjectName("compareWindow")
        self.engine, self.jobs, self.ids = engine, jobs, list(ids)
        self.view = CompareView(self)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.view)
        self.offsets: dict[str, int] = {}
        self.active: set[str] = set()
        self.loaded = False
        self._busy = False
        self._timer = QtCore.QTimer(self)
        self._timer.setInterval(self.POLL_MS)
        self._timer.timeout.connect(self._tick)

    def load(self) -> None:
        self.jobs.start(self._load(), "reading the executions to compare")

    @staticmethod
    def _read(engine, ids: list[str]) -> tuple[list[dict], dict, dict, dict]:
        rows = engine.compare(ids)
        metrics, offsets, outputs = {}, {}, {}
        for row in rows:
            ex_id = row["id"]
            if row.get("state") in FINAL:
                metrics[ex_id] = read_all(engine, ex_id)
            else:
                points, offsets[ex_id] = read_since(engine, ex_id, 0)
                metrics[ex_id] = points_by_key(points)
            folder = engine.outputs_dir(ex_id)
            if folder.is_dir():
                outputs[ex_id] = str(folder)
        return rows, metrics, offsets, outputs

    async def _load(self) -> None:
        rows, metrics, offsets, outputs = await self.jobs.call(self._read, self.engine, self.ids)
        self.offsets = offsets
        self.active = {r["id"] for r in rows if r.get("state") not in FINAL}
        self.view.set_executions(rows, metrics, outputs=outputs)
        self.loaded = True
        if self.active:
            self._timer.start()

    def _tick(self) -> None:
        if self._busy or not self.active:
            return
        self._busy = True
        self.jobs.start(self._poll(), "following the compared executions")

    @staticmethod
    def _read_new(engine, offsets: dict[str, int]) -> tuple[dict, dict, set, dict]:
        """New points of the running executions; all of those that ended meanwhile."""
        deltas, new_offsets, still, ended = {}, {}, set(), {}
        for ex_id, off in offsets.items():
            if engine.get(ex_id).active:
                still.add(ex_id)
                points, new_offsets[ex_id] = read_since(engine, ex_id, off)
                deltas[ex_id] = points_by_key(points)
            else:
                ended[ex_id] = read_all(engine, ex_id)
        return deltas, new_offsets, still, ended

    async def _poll(self) -> None:
        try:
            deltas, offsets, still, ended = await self.jobs.call(
                self._read_new, self.engine, {i: self.offsets.get(i, 0) for i in self.active})
            for ex_id, delta in deltas.items():
                if delta:
                    self.view.append_metrics(ex_id, delta)
            for ex_id, metrics in ended.items():
                self.view.charts.set_metrics(metrics, run=ex_id)
            self.offsets.update(offsets)
            if still != self.active:
                rows = await self.jobs.call(self.engine.compare, self.ids)  # states, durations, last values
                self.view.model.set_rows(rows, primary=self.view.model.primary)
                self.active = still
        finally:
            self._busy = False
        if not self.active:
            self._timer.stop()

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        self._timer.stop()
        super().closeEvent(event)


class DiffWindow(_ToolWindow):
    def __init__(self, parent: QtWidgets.QWidget, title: str):
        super().__init__(parent, title, (1100, 720))
        self.setObjectName("diffWindow")
        from mldesk.ui.diffview import DiffView

        self.view = DiffView(self)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.view)


# -- the controller -----------------------------------------------------------------------
class ExperimentsController(QtCore.QObject):
    """Compare / Compare sweep / Compare code / Run with… for one main window."""

    def __init__(self, window: "MainWindow"):
        super().__init__(window)
        self.w = window
        self.engine = window.engine
        self.jobs = window.jobs
        self.windows: list[_ToolWindow] = []
        self.run_with_dialog: RunWithDialog | None = None
        self.last_sweep: tuple[str, list[Execution]] | None = None

        def action(text, slot, shortcut=None, name=None, tip=""):
            act = QtGui.QAction(text, window)
            if shortcut:
                shortcuts = shortcut if isinstance(shortcut, (list, tuple)) else [shortcut]
                act.setShortcuts([QtGui.QKeySequence(s) for s in shortcuts])
            act.setObjectName(name or "")
            act.setToolTip(tip or text)
            act.triggered.connect(lambda _c=False: slot())
            window.addAction(act)
            return act

        w = window
        w.act_run_with = action("Run with\u2026", self.run_with, ["Ctrl+Shift+Return", "Ctrl+Shift+Enter"],
                                "actionRunWith", "Run the lab with other parameter values, or a sweep")
        w.act_compare = action("Compare", self.compare_selected, "Ctrl+Shift+M", "actionCompare",
                               "Compare the selected executions: parameters, metrics, outputs")
        w.act_compare_sweep = action("Compare sweep", self.compare_sweep, None, "actionCompareSweep",
                                     "Compare every trial of the selected execution's sweep")
        w.act_select_sweep = action("Select sweep", self.select_sweep, None, "actionSelectSweep",
                                    "Select every trial of the selected execution's sweep")
        w.act_filter_sweep = action("Show only this sweep", self.filter_sweep, None, "actionFilterSweep",
                                    "Filter the sidebar to the trials of the selected execution's sweep")
        w.act_compare_code = action("Compare code\u2026", self.compare_code, "Ctrl+Shift+D", "actionCompareCode",
                                    "The code and parameters of two executions, or of one and the lab")
        self.actions = [w.act_compare, w.act_compare_sweep, w.act_select_sweep, w.act_filter_sweep,
                        w.act_compare_code]
        self._add_to_menus()
        w.execution_list.selectionModel().selectionChanged.connect(lambda *_a: self.update())
        w.model.dataChanged.connect(lambda *_a: self.update())
        w.labOpened.connect(lambda *_a: self.update())
        self.update()

    def _add_to_menus(self) -> None:
        w = self.w
        for act in w.menuBar().actions():
            menu = act.menu()
            if menu is None or act.text().replace("&", "") != "Execution":
                continue
            menu.insertAction(w.act_stop, w.act_run_with)
            menu.addSeparator()
            menu.addActions(self.actions)
            break

    def add_to_menu(self, menu: QtWidgets.QMenu) -> None:
        """The sidebar's context menu gets the compare actions that apply."""
        self.update()
        enabled = [a for a in self.actions if a.isEnabled()]
        if enabled:
            menu.addSeparator()
            menu.addActions(enabled)

    def update(self) -> None:
        w = self.w
        sel = w.selected()
        w.act_run_with.setEnabled(w.lab is not None)
        w.act_compare.setEnabled(len(sel) >= 2)
        sweep = self._sweep_of(sel)
        w.act_compare_sweep.setEnabled(sweep is not None)
        w.act_select_sweep.setEnabled(sweep is not None)
        w.act_filter_sweep.setEnabled(sweep is not None and hasattr(w, "exec_filter"))
        w.act_compare_code.setEnabled(len(sel) in (1, 2))
        w.act_compare_code.setText("Compare code with the lab\u2026" if len(sel) == 1 else "Compare code\u2026")

    @staticmethod
    def _sweep_of(sel: list[Execution]) -> str | None:
        sweeps = {e.sweep for e in sel}
        return sel[0].sweep if sel and len(sweeps) == 1 and sel[0].sweep else None

    def _show(self, win: _ToolWindow) -> None:
        self.windows.append(win)
        win.closed.connect(lambda: self.windows.remove(win) if win in self.windows else None)
        win.show()
        win.raise_()
        win.activateWindow()

    # -- compare ----------------------------------------------------------------------------
    def compare_selected(self) -> CompareWindow | None:
        sel = self.w.selected()
        if len(sel) < 2:
            self.w.show_banner("Select two or more executions to compare",
                               "Ctrl-click or Shift-click them in the sidebar.", "info", timeout=6)
            return None
        return self.compare([e.id for e in sel])

    def compare(self, ids: list[str], title: str = "") -> CompareWindow:
        win = CompareWindow(self.engine, self.jobs, ids, self.w, title)
        win.view.executionActivated.connect(lambda ex_id: self.w.select_execution(ex_id, show_code=False))
        self._show(win)
        win.load()
        return win

    def sweep_trials(self, sweep: str) -> list[Execution]:
        return [e for e in self.w.model.executions() if e.sweep == sweep]

    def compare_sweep(self) -> CompareWindow | None:
        sweep = self._sweep_of(self.w.selected())
        if sweep is None:
            return None
        self.compare_sweep_id(sweep)
        return None

    def compare_sweep_id(self, sweep: str) -> None:
        """Compare every trial of ``sweep`` (the sidebar header's Compare button)."""
        self.jobs.start(self._compare_sweep(sweep), "reading the sweep's trials")

    async def _compare_sweep(self, sweep: str) -> None:
        trials = await self.jobs.call(self.engine.list, sweep=sweep)
        ids = [e.id for e in sorted(trials, key=lambda e: (e.created_at, e.id))]
        if ids:
            self.compare(ids, f"Compare sweep {sweep} ({len(ids)} trials) \u2014 mldesk")

    def select_sweep(self) -> None:
        sweep = self._sweep_of(self.w.selected())
        if sweep is None:
            return
        lst, model = self.w.execution_list, self.w.model
        model.set_collapsed(sweep, False)  # the trials need their rows
        selection = QtCore.QItemSelection()
        for ex in self.sweep_trials(sweep):
            idx = model.index_of(ex.id)
            if idx.isValid():
                selection.select(idx, idx)
        lst.selectionModel().select(selection, QtCore.QItemSelectionModel.ClearAndSelect)

    def filter_sweep(self) -> None:
        """The sidebar's filter box shows only this sweep's trials (clear it to see all)."""
        sweep = self._sweep_of(self.w.selected())
        if sweep is not None and hasattr(self.w, "exec_filter"):
            self.w.exec_filter.setText(f"sweep {sweep}")

    # -- compare code --------------------------------------------------------------------------
    def compare_code(self) -> None:
        sel = self.w.selected()
        if len(sel) not in (1, 2):
            self.w.show_banner("Select one execution (compared with the lab) or two", "", "info", timeout=6)
            return
        # older first: "what changed from A to B"
        a, b = sorted(sel, key=lambda e: (e.created_at, e.id)) if len(sel) == 2 else (sel[0], None)
        self.jobs.start(self._compare_code(a, b), "comparing the code")

    async def _compare_code(self, a: Execution, b: Execution | None) -> None:
        try:
            result = await self.jobs.call(self.engine.diff, a.id, b.id if b else None)
        except Exception as exc:  # noqa: BLE001
            if not is_user_error(exc):
                raise
            self.w.show_banner("The code could not be compared", describe(exc), "error")
            return
        labels = (fmt.elide(a.name, 40), fmt.elide(b.name, 40) if b else "the lab")
        win = DiffWindow(self.w, f"Compare code: {labels[0]} \u2192 {labels[1]} \u2014 mldesk")
        win.view.set_diff(result, labels)
        self._show(win)

    # -- run with ---------------------------------------------------------------------------------
    def run_with(self) -> RunWithDialog | None:
        """Ask for overrides or a sweep (the dialog opens window-modal; ``run_with_dialog``)."""
        w = self.w
        if w.lab is None:
            return None
        if w.code.unsaved() and not w.code.save_all():
            return None
        try:
            params = self.engine.lab_params(w.lab)
        except labs.ConfigError as exc:
            w.labctl.show_config_problems(exc)
            return None
        except Exception as exc:  # noqa: BLE001
            if not is_user_error(exc):
                raise
            w.show_banner("The lab's parameters could not be read", describe(exc), "error")
            return None
        if not params:
            w.show_banner("This lab has no parameters to change",
                          "Give main.py options in ml.yaml's parameters (for example --lr=0.1); "
                          "Run with\u2026 then lets you change them for one execution or sweep them.",
                          "info", timeout=10)
            return None
        dialog = RunWithDialog(list(params.items()), w, lab_name=Path(w.lab).name)
        dialog.setWindowModality(Qt.WindowModal)
        self.run_with_dialog = dialog

        def finished(result: int) -> None:
            if self.run_with_dialog is dialog:
                self.run_with_dialog = None
            choice = dialog.result_value() if result == QtWidgets.QDialog.Accepted else None
            dialog.deleteLater()
            if choice is not None:
                self.start(choice)

        dialog.finished.connect(finished)
        dialog.open()
        return dialog

    def start(self, choice: dict) -> None:
        """Start what the dialog chose (``{"overrides"}`` or ``{"sweep", "random", "max_trials"}``)."""
        w = self.w
        if w.lab is None:
            return
        w.banner.hide()
        w.runbar.set_starting(True)
        host, runtime = w.runbar.host(), w.runbar.runtime_choice
        if "sweep" in choice:
            self.jobs.start(self._run_sweep(w.lab, choice, host, runtime), "starting the sweep")
        else:
            self.jobs.start(self._run(w.lab, choice.get("overrides") or {}, host, runtime),
                            "starting the execution")

    async def _run(self, lab: Path, overrides: dict, host: str, runtime: str | None) -> None:
        try:
            ex = await self.jobs.call(self.engine.run, lab, host=host, runtime=runtime,
                                      overrides=overrides or None)
        except Exception as exc:  # noqa: BLE001 - shown like a failed Run
            self.w.commands._started_or_failed(None, exc)
            return
        self.w.commands._started_or_failed(ex, None)

    async def _run_sweep(self, lab: Path, choice: dict, host: str, runtime: str | None) -> None:
        w = self.w
        try:
            sweep, executions = await self.jobs.call(
                self.engine.run_sweep, lab, sweep_specs(choice.get("sweep") or {}), host=host, runtime=runtime,
                max_trials=choice.get("max_trials"), random=choice.get("random"))
        except Exception as exc:  # noqa: BLE001
            w.runbar.set_starting(False)
            w.commands.update()
            if isinstance(exc, labs.ConfigError):
                w.labctl.show_config_problems(exc)
            elif is_user_error(exc):
                w.show_banner("The sweep was not started", describe(exc), "error")
            else:
                report_unexpected(exc, w, "starting the sweep")
            return
        self.last_sweep = (sweep, executions)
        w.runbar.set_starting(False)
        for ex in executions:
            w.model.upsert(ex)
        w.commands.update()
        if executions:
            w.select_execution(executions[0].id, show_code=False)
        n = len(executions)
        w.show_banner(f"Sweep started: {n} trial{'s' if n != 1 else ''}",
                      "They run through the host's queue; select one and choose Compare sweep to compare them.",
                      "success", [("Compare sweep", lambda s=sweep: self.jobs.start(
                          self._compare_sweep(s), "reading the sweep's trials"))], timeout=12)

    def close(self) -> None:
        for win in list(self.windows):
            win.close()
