"""The open lab: welcome page, open / create / recent labs, new file, save, and ml.yaml's problems shown in the editor."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from mldesk.engine import labs
from mldesk.ui.errors import describe
from mldesk.ui.qt import QtCore, QtWidgets
from mldesk.ui.welcome import NewLabDialog

if TYPE_CHECKING:  # pragma: no cover
    from mldesk.ui.mainwindow import MainWindow

log = logging.getLogger("mldesk.ui")


class LabController(QtCore.QObject):
    """Which lab the window shows (``window.lab``) and the File menu's lab commands."""

    def __init__(self, window: "MainWindow"):
        super().__init__(window)
        self.w = window
        self.engine = window.engine

    def show_welcome(self) -> None:
        w = self.w
        w.lab = None
        w.lab_path_label.setText("")
        w.welcome.set_recent(labs.recent_labs(self.engine))
        w.pages.setCurrentWidget(w.welcome)
        w.setWindowTitle("mldesk")
        w.commands.update()

    def open_lab(self, path: str | Path) -> bool:
        w = self.w
        path = Path(path).expanduser()
        if not path.is_dir():
            if w.pages.currentWidget() is w.welcome:
                QtWidgets.QMessageBox.warning(w, "Lab not found",
                                              f"{path} does not exist (any more). Choose another lab.")
            else:
                w.show_banner("Lab not found", f"{path} does not exist. Choose another lab.", "error")
            return False
        path = path.resolve()
        if w.lab is not None and path != w.lab and w.code.unsaved():
            answer = QtWidgets.QMessageBox.question(
                w, "Unsaved changes", "Save the changes to the open lab's files first?",
                QtWidgets.QMessageBox.Save | QtWidgets.QMessageBox.Discard | QtWidgets.QMessageBox.Cancel)
            if answer == QtWidgets.QMessageBox.Cancel:
                return False
            if answer == QtWidgets.QMessageBox.Save and not w.code.save_all():
                return False
        w.undo_bar.finish_now()
        w.lab = path
        try:
            labs.touch_recent_lab(self.engine, path)
        except Exception as exc:  # noqa: BLE001 - a busy store must not stop the lab from opening
            log.warning("could not record recent lab: %s", exc)
        w.pages.setCurrentWidget(w.workspace)
        w.banner.hide()
        w.selection.clear_console()
        w.file_tree.show_lab(path)
        w.code.set_lab(path)
        w.inputs_panel.set_lab(path)
        w.outputs_panel.set_lab(path)
        w.outputs_panel.set_execution(None)
        w.model.set_lab(path)
        w.runbar.recall(w.winstate.settings, path)  # where this lab ran last
        w.lab_button.setText(path.name)
        w.lab_button.setToolTip(f"{path}\nThe lab's files (editable). Click to leave an execution's code.")
        w.lab_button.setChecked(True)
        w.lab_path_label.setText(str(path))
        w.setWindowTitle(f"{path.name} \u2014 mldesk")
        w.commands.update()
        w.labOpened.emit(str(path))
        return True

    def open_lab_dialog(self) -> None:
        w = self.w
        start = str(w.lab.parent if w.lab else Path.home())
        path = QtWidgets.QFileDialog.getExistingDirectory(w, "Open lab", start)
        if path:
            if not (Path(path) / "main.py").exists():
                answer = QtWidgets.QMessageBox.question(
                    w, "No main.py", f"{path} has no main.py, so it cannot run yet. Open it anyway?")
                if answer != QtWidgets.QMessageBox.Yes:
                    return
            self.open_lab(path)

    def new_lab_dialog(self) -> None:
        dialog = NewLabDialog(self.w)
        if dialog.exec() != QtWidgets.QDialog.Accepted:
            return
        self.create_lab(dialog.path(), dialog.template())

    def create_lab(self, path: Path, template: str) -> bool:
        try:
            labs.create_lab(path, template)
        except (ValueError, OSError) as exc:
            QtWidgets.QMessageBox.warning(self.w, "The lab was not created", f"{describe(exc)}.")
            return False
        return self.open_lab(path)

    def fill_recent_menu(self, menu: QtWidgets.QMenu) -> None:
        menu.clear()
        recent = labs.recent_labs(self.engine)
        for lab in recent:
            act = menu.addAction(f"{Path(lab).name}  \u2014  {lab}")
            act.triggered.connect(lambda _c=False, p=lab: self.open_lab(p))
        if not recent:
            menu.addAction("(none yet)").setEnabled(False)

    def new_file_dialog(self) -> None:
        w = self.w
        if w.lab is None:
            return
        name, ok = QtWidgets.QInputDialog.getText(w, "New file", "File name (relative to the lab):")
        name = name.strip()
        if not ok or not name:
            return
        target = (w.lab / name).resolve()
        if w.lab not in target.parents:
            w.show_banner("The file was not created", "Give a path inside the lab folder.", "error")
            return
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch(exist_ok=True)
        except OSError as exc:
            w.show_banner("The file was not created", describe(exc), "error")
            return
        w.show_lab_files()
        w.code.open_file(str(target.relative_to(w.lab)))

    def save(self) -> None:
        if self.w.lab is not None:
            self.w.code.save()

    def config_written(self) -> None:
        """The Inputs panel rewrote ml.yaml: the editor shows the new text."""
        w = self.w
        config = labs.find_config(w.lab) if w.lab else None
        if config is None:
            return
        editor = w.code.editor_for(config.name)
        if editor is not None and not editor.is_modified:
            w.code.reload(editor)

    def show_config_problems(self, exc: "labs.ConfigError") -> None:
        """Run refused by ml.yaml: open it with the problems underlined, and say so."""
        w = self.w
        errors = [p for p in exc.problems if p.severity == "error"] or exc.problems
        w.show_lab_files()
        config = labs.find_config(w.lab) if w.lab else None
        if config is not None:
            editor = w.code.open_file(config.name)
            if editor is not None:
                editor.set_problems([(p.line, p.column, p.message + (f" ({p.hint})" if p.hint else ""),
                                      p.severity) for p in exc.problems])
                cursor = editor.textCursor()
                block = editor.document().findBlockByNumber(max(0, errors[0].line - 1))
                cursor.setPosition(block.position())
                editor.setTextCursor(cursor)
        first = errors[0]
        hint = first.hint[:1].upper() + first.hint[1:] if first.hint else ""
        if hint and not hint.endswith("."):
            hint += "."
        w.show_banner(
            f"Not started: ml.yaml has {len(errors)} error{'s' if len(errors) != 1 else ''}",
            f"Line {first.line}: {first.message}. {hint} The problems are underlined in ml.yaml.".replace("  ", " "),
            "error", key="config")
