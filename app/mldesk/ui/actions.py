"""Execution actions: run, stop, restart, restore code, rename, remove with undo, save log, the menus' enabled states.

Every engine call that can take a while is an async slot: it runs on a worker thread
(``jobs.call``) and its result comes back on the GUI thread; errors a user can cause
become banners (see :mod:`mldesk.ui.errors`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from mldesk.engine import LocalInputsNeedConsent, labs, queries
from mldesk.engine.values import Execution
from mldesk.ui import fmt
from mldesk.ui.errors import describe, is_user_error, report_unexpected
from mldesk.ui.qt import QtCore, QtWidgets

if TYPE_CHECKING:  # pragma: no cover
    from mldesk.ui.mainwindow import MainWindow


class ExecutionActions(QtCore.QObject):
    """The commands of the Execution menu, the toolbar and the sidebar's menus."""

    def __init__(self, window: "MainWindow"):
        super().__init__(window)
        self.w = window
        self.engine = window.engine
        self.jobs = window.jobs
        self.restart_box: QtWidgets.QMessageBox | None = None
        self.pending_removal: list[str] = []
        self.execution_menu: QtWidgets.QMenu | None = None

    # -- enabled states ------------------------------------------------------------
    def update(self) -> None:
        w = self.w
        has_lab = w.lab is not None
        sel = w.selected()
        one = sel[0] if len(sel) == 1 else None
        w.act_run.setEnabled(has_lab)
        w.run_button.setEnabled(has_lab and w.run_button.text() == "Run")
        can_stop = any(e.active and not e.stop_requested_at for e in sel)
        w.act_stop.setEnabled(can_stop)
        w.stop_button.setEnabled(can_stop)
        w.act_restart.setEnabled(one is not None)
        w.act_rename.setEnabled(one is not None)
        w.act_remove.setEnabled(bool(sel) and all(e.final for e in sel))
        w.act_show_code.setEnabled(one is not None)
        w.act_open_outputs.setEnabled(one is not None)
        for a in (w.act_save, w.act_save_all, w.act_new_file, w.act_lab_files, w.act_backups):
            a.setEnabled(has_lab)

    def show_menu(self, global_pos: QtCore.QPoint, targets: list[str] | None = None) -> None:
        """The execution menu; ``targets`` (a row's three dots) instead of the selection."""
        w = self.w
        w.selection.menu_targets = targets
        self.update()
        menu = QtWidgets.QMenu(w)
        menu.setObjectName("executionMenu")
        for a in (w.act_stop, w.act_restart, w.act_rename, w.act_remove, None,
                  w.act_show_code, w.act_open_outputs):
            menu.addSeparator() if a is None else menu.addAction(a)
        if getattr(w, "experiments", None) is not None:
            w.experiments.add_to_menu(menu)
        self.execution_menu = menu
        menu.popup(global_pos)
        menu.aboutToHide.connect(menu.deleteLater)
        if targets is not None:
            # the chosen action runs right after the menu hides; then the selection counts again
            menu.aboutToHide.connect(lambda: QtCore.QTimer.singleShot(0, self._end_menu_targets))

    def _end_menu_targets(self) -> None:
        self.w.selection.menu_targets = None
        self.update()

    def ask_local_inputs(self, exc: "LocalInputsNeedConsent") -> None:
        """file:// inputs outside the lab: name them and ask once per lab and file."""
        w = self.w
        listing = "\n".join(exc.paths[:20]) + (f"\n\u2026 and {len(exc.paths) - 20} more" if len(exc.paths) > 20 else "")
        answer = self.confirm_local_inputs(
            "ml.yaml lists these local files outside the lab as inputs:\n\n" + listing +
            "\n\nThe lab's program will be able to read them, and send them wherever its network "
            "reaches. Allow this lab to read them?")
        if answer:
            self.engine.allow_local_inputs(exc.lab, exc.paths)
            self.run()
        else:
            w.show_banner("The execution was not started", "The local files were not allowed.", "info")

    def confirm_local_inputs(self, text: str) -> bool:
        """The consent question (tests replace this)."""
        answer = QtWidgets.QMessageBox.question(
            self.w, "Let this lab read files outside it?", text,
            QtWidgets.QMessageBox.Yes | QtWidgets.QMessageBox.Cancel, QtWidgets.QMessageBox.Cancel)
        return answer == QtWidgets.QMessageBox.Yes

    # -- run -----------------------------------------------------------------------------
    def run(self) -> None:
        w = self.w
        if w.lab is None or not w.run_button.isEnabled():
            return
        if w.code.unsaved() and not w.code.save_all():
            return
        w.banner.hide()
        w.runbar.set_starting(True)
        self.jobs.start(self._run(w.lab, w.runbar.host(), w.runbar.runtime_choice), "starting the execution")

    async def _run(self, lab: Path, host: str, runtime: str | None) -> None:
        try:
            ex = await self.jobs.call(self.engine.run, lab, host=host, runtime=runtime)
        except Exception as exc:  # noqa: BLE001 - shown: a banner, ml.yaml's problems, or a bug report
            self._started_or_failed(None, exc)
            return
        self._started_or_failed(ex, None)

    def _started_or_failed(self, ex: Execution | None, exc: BaseException | None) -> None:
        w = self.w
        w.runbar.set_starting(False)
        self.update()
        if ex is not None:
            w.model.upsert(ex)
            w.select_execution(ex.id, show_code=False)
            w.bottom_tabs.setCurrentIndex(0)
        elif isinstance(exc, labs.ConfigError):
            w.labctl.show_config_problems(exc)
        elif isinstance(exc, LocalInputsNeedConsent):
            self.ask_local_inputs(exc)
        elif is_user_error(exc):
            w.show_banner("The execution was not started", describe(exc), "error")
        else:
            report_unexpected(exc, w, "starting the execution")

    # -- stop ------------------------------------------------------------------------------
    def stop_selected(self) -> None:
        w = self.w
        targets = [e for e in w.selected() if e.active]
        if not targets and w.logview.exec_id:
            ex = w.model.get(w.logview.exec_id)
            targets = [ex] if ex is not None and ex.active else []
        for ex in targets:
            self.jobs.start(self._stop(ex.id), f"stopping {ex.name}")
        w.stop_button.setEnabled(False)

    async def _stop(self, exec_id: str) -> None:
        self.w.model.upsert(await self.jobs.call(self.engine.stop, exec_id))

    # -- restart / restore -------------------------------------------------------------------
    def restart_selected(self) -> None:
        ex = self.w.current_execution()
        if ex is not None:
            self.restart(ex.id)

    def restart(self, exec_id: str) -> None:
        """Restart: ask first only when the lab differs from the snapshot."""
        if self.w.code.unsaved() and not self.w.code.save_all():
            return
        self.jobs.start(self._restart(exec_id), "comparing the lab with the execution's code")

    async def _restart(self, exec_id: str) -> None:
        differs = await self.jobs.call(self.engine.lab_differs, exec_id)
        if differs:
            self._confirm_restart(exec_id)
        else:
            self.jobs.start(self._do_restart(exec_id), "restarting the execution")

    def _confirm_restart(self, exec_id: str) -> None:
        ex = self.w.model.get(exec_id)
        name = ex.name if ex else exec_id
        box = QtWidgets.QMessageBox(self.w)
        box.setObjectName("restartConfirm")
        box.setIcon(QtWidgets.QMessageBox.Question)
        box.setWindowTitle("Restart execution")
        ran = f"{ex.host} \u00b7 {ex.runtime}" if ex else "where it ran"
        box.setText(f"Restart \u201c{fmt.elide(name, 80)}\u201d with its code on {ran}?")
        box.setInformativeText(
            f"The lab's files are replaced by the code of this execution, then it runs again on {ran}, "
            "where it ran. Your current files are kept as a recoverable snapshot (File \u203a Earlier lab files).")
        bar = self.w.runbar
        there = (bar.host(), bar.effective_runtime())
        if ex is not None and there != (ex.host, ex.runtime) and there[1]:
            other = QtWidgets.QCheckBox(f"Run on {there[0]} \u00b7 {there[1]} instead (the toolbar's choice)", box)
            other.setObjectName("restartElsewhere")
            box.setCheckBox(other)
        restart = box.addButton("Restart", QtWidgets.QMessageBox.AcceptRole)
        box.addButton(QtWidgets.QMessageBox.Cancel)
        box.setDefaultButton(restart)

        def finished(_result: int) -> None:
            self.restart_box = None
            if box.clickedButton() is restart:
                where = None
                if box.checkBox() is not None and box.checkBox().isChecked():
                    where = (bar.host(), bar.runtime_choice)
                self.jobs.start(self._do_restart(exec_id, where), "restarting the execution")

        box.finished.connect(finished)
        self.restart_box = box
        box.open()

    async def _do_restart(self, exec_id: str, where: tuple[str, str | None] | None = None) -> None:
        """Restart where it ran, or on ``where`` (host, runtime) when the user chose so."""
        kwargs = {"host": where[0], "runtime": where[1]} if where else {}
        try:
            ex, backup = await self.jobs.call(self.engine.restart, exec_id, **kwargs)
        except Exception as exc:  # noqa: BLE001 - shown like a failed Run
            self._started_or_failed(None, exc)
            return
        w = self.w
        self._lab_replaced()
        self._started_or_failed(ex, None)
        if backup:
            w.show_banner("Restarted with the execution's code",
                          "Your previous files were kept as a snapshot; bring them back from "
                          "File \u203a Earlier lab files.", "info",
                          [("Bring them back", lambda b=backup: self.restore_backup(b))])

    def _lab_replaced(self) -> None:
        w = self.w
        w.show_lab_files()
        w.code.reload_all()
        w.inputs_panel.reload()

    def restore_code(self, exec_id: str) -> None:
        """"Restore this code": the lab's files become the execution's snapshot."""
        if self.w.code.unsaved() and not self.w.code.save_all():
            return
        self.jobs.start(self._restore_code(exec_id), "restoring the execution's code")

    async def _restore_code(self, exec_id: str) -> None:
        backup = await self.jobs.call(self.engine.restore_code, exec_id)
        self._lab_replaced()
        if backup:
            self.w.show_banner("The lab now has the execution's code",
                               "Your previous files were kept as a snapshot.", "success",
                               [("Bring them back", lambda b=backup: self.restore_backup(b))], timeout=15)
        else:
            self.w.show_banner("The lab already had exactly this code.", "", "info", timeout=6)

    def restore_backup(self, snapshot: str) -> None:
        w = self.w
        if w.lab is None or (w.code.unsaved() and not w.code.save_all()):
            return
        self.jobs.start(self._restore_backup(w.lab, snapshot), "bringing back the earlier files")

    async def _restore_backup(self, lab: Path, snapshot: str) -> None:
        await self.jobs.call(labs.restore_lab_backup, self.engine, lab, snapshot)
        self._lab_replaced()
        self.w.show_banner("Your earlier files are back.", "", "success", timeout=6)

    def backups_dialog(self) -> None:
        w = self.w
        if w.lab is None:
            return
        backups = labs.lab_backups(self.engine, w.lab)
        if not backups:
            QtWidgets.QMessageBox.information(
                w, "Earlier lab files",
                "No earlier files are kept for this lab. They are kept whenever Restart or "
                "\u201cRestore this code\u201d replaces the lab's files.")
            return
        items = [f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(b['created_at']))} \u2014 {b['reason']}"
                 for b in backups]
        item, ok = QtWidgets.QInputDialog.getItem(w, "Earlier lab files",
                                                  "Bring back the lab's files as they were at:", items, 0, False)
        if ok and item in items:
            self.restore_backup(backups[items.index(item)]["snapshot"])

    # -- rename / remove ------------------------------------------------------------------
    def rename_selected(self) -> None:
        w = self.w
        ex = w.current_execution()
        if ex is None:
            return
        w.model.reveal(ex.id)  # the one trial of a collapsed sweep's selected header
        idx = w.model.index_of(ex.id)
        w.execution_list.setFocus()
        w.execution_list.select_only(idx)
        w.execution_list.edit(idx)

    def rename(self, exec_id: str, name: str) -> None:
        try:
            self.w.model.upsert(self.engine.rename(exec_id, name))
        except Exception as exc:  # noqa: BLE001
            if not is_user_error(exc):
                raise
            self.w.show_banner("The execution was not renamed", describe(exc), "error")

    def remove_selected(self) -> None:
        w = self.w
        sel = w.selected()
        if not sel:
            return
        active = [e for e in sel if e.active]
        final = [e for e in sel if e.final]
        if active:
            names = ", ".join(fmt.elide(e.name, 40) for e in active[:3]) + ("\u2026" if len(active) > 3 else "")
            w.show_banner(f"{names} {'is' if len(active) == 1 else 'are'} still running",
                          "Stop it first (Ctrl+.); running executions cannot be removed.", "warning")
        if final:
            self.remove(final)

    def remove(self, executions: list[Execution]) -> None:
        """Hide at once, with Undo; removed for good when the Undo bar expires."""
        w = self.w
        w.undo_bar.finish_now()
        hidden = []
        for ex in executions:
            try:
                self.engine.hide(ex.id)
            except Exception as exc:  # noqa: BLE001
                if not is_user_error(exc):
                    raise
                w.show_banner(f"{fmt.elide(ex.name, 60)} was not removed", describe(exc), "error")
                continue
            hidden.append(ex)
            w.model.remove(ex.id)
            if w.logview.exec_id == ex.id:
                w.selection.on_removed_event(ex.id)
        if not hidden:
            return
        self.pending_removal = [e.id for e in hidden]
        text = (f"Removed \u201c{hidden[0].name}\u201d" if len(hidden) == 1
                else f"Removed {len(hidden)} executions")
        w.undo_bar.start(text, float(self.engine.setting("undo_seconds") or 5.0))

    def undo_remove(self) -> None:
        ids, self.pending_removal = self.pending_removal, []
        for exec_id in ids:
            try:
                self.engine.unhide(exec_id)
                self.w.model.upsert(self.engine.get(exec_id))
            except Exception as exc:  # noqa: BLE001 - removed by the CLI meanwhile
                if not is_user_error(exc):
                    raise
                self.w.show_banner("Could not bring the execution back", describe(exc), "error")
        if len(ids) == 1:
            self.w.select_execution(ids[0], show_code=False)

    def commit_remove(self) -> None:
        ids, self.pending_removal = self.pending_removal, []
        if ids:
            self.jobs.start(self._remove(ids), "removing executions")

    async def _remove(self, ids: list[str]) -> None:
        for exec_id in ids:
            await self.jobs.call(self.engine.remove, exec_id)

    # -- code / outputs / log -----------------------------------------------------------------
    def show_code_selected(self) -> None:
        ex = self.w.current_execution()
        if ex is not None:
            self.w.select_execution(ex.id, show_code=True)

    def open_outputs_selected(self) -> None:
        ex = self.w.current_execution()
        if ex is None:
            return
        folder = self.engine.outputs_dir(ex.id)
        if not folder.is_dir():
            self.w.show_banner("This execution has no outputs yet.",
                               "Files that main.py writes to outputs/ are collected when it ends.", "info",
                               timeout=8)
            return
        self.w.outputs_panel.launch(folder)

    def save_log_dialog(self) -> None:
        exec_id = self.w.logview.exec_id
        if exec_id is None:
            return
        ex = self.w.model.get(exec_id)
        default = str(Path.home() / f"{(ex.name if ex else exec_id).lstrip('#')[:80]}.log")
        program = "Program output as plain text, without colour codes (*.log *.txt)"
        raw = "Program output as written, with colour codes (*.log *.txt)"
        everything = "Everything, with mldesk's messages (*.log *.txt)"
        path, chosen = QtWidgets.QFileDialog.getSaveFileName(self.w, "Save log as", default,
                                                             f"{program};;{raw};;{everything}")
        if path:
            self.save_log(exec_id, path, include_mldesk=chosen == everything, plain=chosen != raw)

    def save_log(self, exec_id: str, path: str, include_mldesk: bool = False, plain: bool = True) -> None:
        self.jobs.start(self._save_log(exec_id, path, include_mldesk, plain), f"saving the log to {path}")

    async def _save_log(self, exec_id: str, path: str, include_mldesk: bool, plain: bool) -> None:
        try:
            n = await self.jobs.call(queries.save_log, self.engine, exec_id, path,
                                     include_mldesk=include_mldesk, plain=plain)
        except Exception as exc:  # noqa: BLE001
            if not is_user_error(exc):
                raise
            self.w.show_banner("The log was not saved", describe(exc), "error")
            return
        self.w.show_banner("Log saved.", f"{fmt.size(n)} written to {path}.", "success", timeout=6)
