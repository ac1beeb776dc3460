"""The window's actions, shortcuts and menu bar (File, Execution, View, Help)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mldesk.ui.qt import QtGui, Qt

if TYPE_CHECKING:  # pragma: no cover
    from mldesk.ui.mainwindow import MainWindow


def build_actions(w: "MainWindow") -> None:
    """Create the window's actions (``window.act_*``), their shortcuts, and the menu bar."""
    def action(text, slot, shortcut=None, name=None, context=Qt.WindowShortcut, widget=None, checkable=False):
        act = QtGui.QAction(text, widget or w)
        if shortcut is not None:
            shortcuts = shortcut if isinstance(shortcut, (list, tuple)) else [shortcut]
            act.setShortcuts([QtGui.QKeySequence(s) for s in shortcuts])
            act.setShortcutContext(context)
        if name:
            act.setObjectName(name)
        act.setCheckable(checkable)
        act.triggered.connect(lambda _checked=False: slot())
        (widget or w).addAction(act)
        return act

    a, lc, c = w.commands, w.labctl, w.code
    w.act_run = action("Run", a.run, ["Ctrl+Return", "Ctrl+Enter"], "actionRun")
    w.act_stop = action("Stop", a.stop_selected, "Ctrl+.", "actionStop")
    w.act_restart = action("Restart", a.restart_selected, None, "actionRestart")
    w.act_rename = action("Edit (rename)\u2026", a.rename_selected, "F2", "actionRename")
    w.act_remove = action("Remove", a.remove_selected, QtGui.QKeySequence.Delete, "actionRemove",
                             context=Qt.WidgetWithChildrenShortcut, widget=w.execution_list)
    w.act_show_code = action("Show code", a.show_code_selected, None, "actionShowCode")
    w.act_open_outputs = action("Open outputs folder", a.open_outputs_selected, None, "actionOpenOutputs")
    w.act_save = action("Save", lc.save, QtGui.QKeySequence.Save, "actionSave")
    w.act_save_all = action("Save all", c.save_all, "Ctrl+Shift+S", "actionSaveAll")
    w.act_find = action("Find\u2026", c.open_find, QtGui.QKeySequence.Find, "actionFindCode",
                           context=Qt.WidgetWithChildrenShortcut, widget=c)
    w.act_new_lab = action("New lab\u2026", lc.new_lab_dialog, QtGui.QKeySequence.New, "actionNewLab")
    w.act_open_lab = action("Open lab\u2026", lc.open_lab_dialog, QtGui.QKeySequence.Open, "actionOpenLab")
    w.act_lab_files = action("Lab files", w.show_lab_files, "Ctrl+Shift+L", "actionLabFiles")
    w.act_settings = action("Settings\u2026", w.open_settings, ["Ctrl+,", QtGui.QKeySequence.Preferences],
                               "actionSettings")
    w.act_hosts = action("Hosts\u2026", w.open_hosts, None, "actionHosts")
    w.act_about = action("About mldesk", w.about, None, "actionAbout")
    w.act_quit = action("Quit", w.close, QtGui.QKeySequence.Quit, "actionQuit")
    w.act_new_file = action("New file\u2026", lc.new_file_dialog, None, "actionNewFile")
    w.act_backups = action("Earlier lab files\u2026", a.backups_dialog, None, "actionBackups")
    w.act_files_pane = action("Files pane", lambda: w.toggle_pane(w.left_pane), "Ctrl+B",
                                 "actionFilesPane", checkable=True)
    w.act_exec_pane = action("Executions pane", lambda: w.toggle_pane(w.right_pane), "Ctrl+Alt+B",
                                "actionExecutionsPane", checkable=True)
    for act in (w.act_files_pane, w.act_exec_pane):
        act.setChecked(True)

    w.run_button.clicked.connect(a.run)
    w.stop_button.clicked.connect(a.stop_selected)
    mb = w.menuBar()
    m = mb.addMenu("&File")
    m.addActions([w.act_new_lab, w.act_open_lab])
    w.recent_menu = m.addMenu("Open recent")
    w.recent_menu.aboutToShow.connect(lambda: lc.fill_recent_menu(w.recent_menu))
    m.addSeparator()
    m.addActions([w.act_new_file, w.act_save, w.act_save_all, w.act_backups])
    m.addSeparator()
    m.addActions([w.act_hosts, w.act_settings])
    m.addSeparator()
    m.addAction(w.act_quit)
    m = mb.addMenu("&Execution")
    m.addActions([w.act_run, w.act_stop, w.act_restart])
    m.addSeparator()
    m.addActions([w.act_rename, w.act_remove, w.act_show_code, w.act_open_outputs])
    m = mb.addMenu("&View")
    m.addActions([w.act_lab_files, w.act_find])
    m.addSeparator()
    m.addActions([w.act_files_pane, w.act_exec_pane])
    mb.addMenu("&Help").addAction(w.act_about)
