"""The main window on a real engine and the real process runtime (one test on Docker):
run, live output, stop, restart, rename, remove with undo and purge, the snapshot code
view, a 200,000-line log, and closing/reopening while an execution runs."""

from __future__ import annotations

import time

import pytest

from mldesk.agent import logstore
from mldesk.ui.qt import QtCore, QtWidgets, Qt
from tests.gui.windowkit import (  # noqa: F401 - fixtures
    PRINTER,
    console_text,
    make_lab,
    open_window,
    program_lines,
    wait_final,
    wait_for,
)


def test_run_shows_execution_live_output_and_final_state(qtbot, open_window, make_lab):
    lab = make_lab(PRINTER, "parameters:\n  - pass-as: '8 0.15'\n")
    window = open_window(lab)
    assert window.findChild(QtWidgets.QToolButton, "runButton") is window.run_button
    for name in ("stopButton", "hostChooser", "fileTree", "codeEditor", "executionList", "console",
                 "inputsPanel", "outputsPanel"):
        assert window.findChild(QtCore.QObject, name) is not None, name
    qtbot.mouseClick(window.run_button, Qt.LeftButton)
    wait_for(qtbot, lambda: window.model.rowCount() == 1, 10.0, "the execution in the sidebar")
    ex = window.model.execution(0)
    assert ex.runtime == "process" and ex.lab == str(lab.resolve())
    # live: some lines arrive while it still runs
    wait_for(qtbot, lambda: "line 2" in console_text(window), 10, "live output")
    assert window.model.get(ex.id).active
    assert window.stop_button.isEnabled()
    final = wait_final(qtbot, window, ex.id)
    assert final.state == "finished" and final.exit_code == 0
    wait_for(qtbot, lambda: "finished (exit code 0)" in console_text(window), 5, "the final message")
    assert program_lines(console_text(window)) == [f"line {i}" for i in range(8)]
    assert "Finished" in window.console_title.text()
    assert not window.stop_button.isEnabled()
    # the code view stayed on the editable lab files
    assert not window.code.in_snapshot() and not window.code.current_editor().isReadOnly()


def test_stop(qtbot, open_window, make_lab):
    lab = make_lab(PRINTER, "parameters:\n  - pass-as: '100000 0.05'\n")
    window = open_window(lab)
    window.engine.set_setting("stop_grace", 2.0)
    qtbot.keyClick(window.code.current_editor(), Qt.Key_Return, Qt.ControlModifier)  # Ctrl+Enter
    wait_for(qtbot, lambda: window.model.rowCount() == 1, 2, "the execution")
    first = window.model.execution(0)
    wait_for(qtbot, lambda: "line 3" in console_text(window), 15, "output")
    qtbot.mouseClick(window.stop_button, Qt.LeftButton)
    final = wait_final(qtbot, window, first.id, 20)
    assert final.state == "stopped"
    assert window.engine.get(first.id).state == "stopped"
    assert not window.stop_button.isEnabled()
    # Ctrl+. stops the selected execution too
    window.run()
    wait_for(qtbot, lambda: window.model.rowCount() == 2, 2, "the second execution")
    second = window.model.execution(0)
    wait_for(qtbot, lambda: window.model.get(second.id).state == "running", 15, "running")
    qtbot.keyClick(window.execution_list, Qt.Key_Period, Qt.ControlModifier)
    assert wait_final(qtbot, window, second.id, 20).state == "stopped"


def test_restart_restores_snapshot_into_editor_and_starts_new_execution(qtbot, open_window, make_lab):
    v1 = "print('version one')\n"
    v2 = "print('version two')\n"
    lab = make_lab(v1)
    window = open_window(lab)
    window.run()
    wait_for(qtbot, lambda: window.model.rowCount() == 1, 2, "the execution")
    first = wait_final(qtbot, window, window.model.execution(0).id)
    # the user edits main.py in the editor and saves it
    editor = window.code.editor_for("main.py")
    editor.setPlainText(v2)
    window.save()
    assert (lab / "main.py").read_text() == v2
    window.select_execution(first.id, show_code=False)
    window.restart_selected()
    wait_for(qtbot, lambda: window.restart_box is not None, 5,
             f"the restart question (banner: {window.banner.title.text()!r} {window.banner.text.text()!r}, "
             f"rows {window.model.rowCount()}, selected {window.selected_ids()})")
    assert "recoverable snapshot" in window.restart_box.informativeText()
    restart_button = next(b for b in window.restart_box.buttons() if b.text() == "Restart")
    restart_button.click()
    wait_for(qtbot, lambda: window.model.rowCount() == 2, 5, "the new execution")
    second = window.model.execution(0)
    assert second.id != first.id and second.snapshot == first.snapshot
    assert (lab / "main.py").read_text() == v1
    wait_for(qtbot, lambda: window.code.editor_for("main.py").toPlainText() == v1, 3, "the editor to reload")
    assert not window.code.editor_for("main.py").is_modified
    backups = window.engine.store.lab_backups(str(lab.resolve()))
    assert len(backups) == 1
    assert window.engine.snapshots.read_file(backups[0]["snapshot"], "main.py").decode() == v2
    assert wait_final(qtbot, window, second.id).state == "finished"
    wait_for(qtbot, lambda: "version one" in console_text(window), 5, "its output")

    # equal lab and snapshot: Restart asks nothing
    window.select_execution(second.id, show_code=False)
    window.restart_selected()
    wait_for(qtbot, lambda: window.model.rowCount() == 3, 5, "a third execution")
    assert window.restart_box is None
    wait_final(qtbot, window, window.model.execution(0).id)


def test_rename_with_f2(qtbot, open_window, make_lab):
    window = open_window(make_lab("print('hi')\n"))
    window.run()
    wait_for(qtbot, lambda: window.model.rowCount() == 1, 2, "the execution")
    ex = wait_final(qtbot, window, window.model.execution(0).id)
    window.select_execution(ex.id, show_code=False)
    window.execution_list.setFocus()
    qtbot.keyClick(window.execution_list, Qt.Key_F2)
    editor = window.execution_list.findChild(QtWidgets.QLineEdit, "renameEditor")
    assert editor is not None and editor.isVisible()
    assert editor.text() == ex.name
    editor.selectAll()
    qtbot.keyClicks(editor, "baseline run")
    qtbot.keyClick(editor, Qt.Key_Return)
    wait_for(qtbot, lambda: window.model.get(ex.id).name == "baseline run", 3, "the new name")
    assert window.engine.get(ex.id).name == "baseline run"
    # a name that is too long is refused with a banner, the old one stays
    window.rename(ex.id, "x" * 101)
    assert window.banner.isVisible() and "100 characters" in window.banner.text.text()
    assert window.engine.get(ex.id).name == "baseline run"


def _finished_execution(qtbot, window):
    before = window.model.rowCount()
    window.run()
    wait_for(qtbot, lambda: window.model.rowCount() == before + 1, 2, "the execution")
    return wait_final(qtbot, window, window.model.execution(0).id)


def test_remove_then_undo(qtbot, open_window, make_lab):
    window = open_window(make_lab("print('hi')\n"))
    window.engine.set_setting("undo_seconds", 30.0)
    ex = _finished_execution(qtbot, window)
    window.select_execution(ex.id, show_code=False)
    window.execution_list.setFocus()
    qtbot.keyClick(window.execution_list, Qt.Key_Delete)
    assert window.model.rowCount() == 0
    assert window.undo_bar.isVisible() and ex.name in window.undo_bar.label.text()
    assert window.engine.store.get(ex.id).hidden == 1
    seen = []
    window.bridge.added.connect(seen.append)
    window.bridge.changed.connect(seen.append)
    qtbot.mouseClick(window.undo_bar.button, Qt.LeftButton)
    assert window.model.rowCount() == 1 and window.model.execution(0).id == ex.id
    assert not window.undo_bar.isVisible()
    # the watcher reports the execution back (added, or changed if it never saw it hidden): no change
    wait_for(qtbot, lambda: any(e.id == ex.id and not e.hidden for e in seen), 5, "the watcher's event")
    assert window.model.rowCount() == 1
    assert window.engine.store.get(ex.id).hidden == 0


def test_remove_then_purge(qtbot, open_window, make_lab):
    window = open_window(make_lab("import os\nos.makedirs('outputs', exist_ok=True)\n"
                                  "open('outputs/a.txt', 'w').write('a')\n"))
    window.engine.set_setting("undo_seconds", 1.0)
    ex = _finished_execution(qtbot, window)
    exec_dir = window.engine.layout.execution_dir(ex.id)
    assert exec_dir.exists()
    window.select_execution(ex.id, show_code=False)
    window.remove_selected()
    assert window.model.rowCount() == 0 and window.undo_bar.isVisible()
    wait_for(qtbot, lambda: window.engine.store.get(ex.id) is None, 5, "the record to be purged")
    wait_for(qtbot, lambda: not exec_dir.exists(), 5, "the execution folder to go")
    assert not window.undo_bar.isVisible() and window.model.rowCount() == 0


def test_remove_refuses_running_and_multi_select(qtbot, open_window, make_lab):
    window = open_window(make_lab("print('hi')\n"))
    window.engine.set_setting("undo_seconds", 30.0)
    a = _finished_execution(qtbot, window)
    b = _finished_execution(qtbot, window)
    window.execution_list.selectAll()
    assert set(window.selected_ids()) == {a.id, b.id}
    window.remove_selected()
    assert window.model.rowCount() == 0 and "2 executions" in window.undo_bar.label.text()
    window.undo_bar.button.click()
    assert window.model.rowCount() == 2


def test_code_view_shows_snapshot_while_lab_differs(qtbot, open_window, make_lab):
    v1 = "print('the code that ran')\n"
    lab = make_lab(v1, helper_py="X = 1\n")
    window = open_window(lab)
    ex = _finished_execution(qtbot, window)
    (lab / "main.py").write_text("print('edited since')\n")
    (lab / "new_file.py").write_text("Y = 2\n")
    wait_for(qtbot, lambda: "edited since" in window.code.editor_for("main.py").toPlainText(), 3,
             "the editor to reload the changed file")
    # clicking the execution shows its snapshot, read-only, with the banner
    rect = window.execution_list.visualRect(window.model.index_of(ex.id))
    qtbot.mouseClick(window.execution_list.viewport(), Qt.LeftButton, pos=rect.center())
    assert window.code.in_snapshot()
    editor = window.code.current_editor()
    assert editor.toPlainText() == v1 and editor.isReadOnly()
    assert window.code.snapshot_bar.isVisible()
    assert window.code.snapshot_bar.title.text().startswith("Code as of")
    assert window.file_tree.is_snapshot() and "new_file.py" not in window.file_tree.snapshot_files
    assert set(window.file_tree.snapshot_files) == {"main.py", "ml.yaml", "helper_py"}
    assert not window.code.save()  # read-only: nothing is written
    assert (lab / "main.py").read_text() == "print('edited since')\n"
    # back to the lab: editable files
    qtbot.mouseClick(window.lab_button, Qt.LeftButton)
    assert not window.code.in_snapshot() and not window.file_tree.is_snapshot()
    assert window.code.current_editor().toPlainText() == "print('edited since')\n"
    assert not window.code.current_editor().isReadOnly()
    # and "Restore this code" from the banner brings the snapshot back into the lab
    window.select_execution(ex.id)
    restore = next(b for b in window.code.snapshot_bar.buttons() if b.text() == "Restore this code")
    restore.click()
    wait_for(qtbot, lambda: (lab / "main.py").read_text() == v1, 5, "the restored file")
    wait_for(qtbot, lambda: window.code.editor_for("main.py").toPlainText() == v1, 3, "the editor")
    assert not (lab / "new_file.py").exists()
    assert len(window.engine.store.lab_backups(str(lab.resolve()))) == 1


def test_large_log_opens_with_head_tail_banner(qtbot, open_window, make_lab, tmp_path):
    lab = make_lab("""
        import sys
        w = sys.stdout.write
        for i in range(200000):
            w(f"row {i}\\n")
    """)
    window = open_window(lab)
    window.run()
    wait_for(qtbot, lambda: window.model.rowCount() == 1, 2, "the execution")
    ex = wait_final(qtbot, window, window.model.execution(0).id, 60)
    window.show_lab_files()
    window.logview.show(None)
    with window.engine.log_reader(ex.id) as reader:
        total = reader.total_lines()
    assert total > 200_000
    started = time.perf_counter()
    window.select_execution(ex.id, show_code=False)
    opened = time.perf_counter() - started
    assert opened < 1.0, f"opening took {opened:.2f} s"
    text = console_text(window)
    rows = program_lines(text, "row ")
    assert len(rows) == 2000 - (total - 200_000)  # the head also holds mldesk's first messages
    assert rows[-1] == "row 199999"
    assert window.logview.skipped == total - 2000
    assert f"{total - 2000:,} lines not shown" in text
    skip_bar = window.console.findChild(QtWidgets.QFrame, "consoleSkipBar")
    assert skip_bar.isVisible()
    # Save log as...: the whole program output
    out = tmp_path / "saved.log"
    window.save_log(ex.id, str(out))
    wait_for(qtbot, lambda: window.banner.isVisible() and "Log saved" in window.banner.title.text(), 10, "saving")
    lines = out.read_text().splitlines()
    assert len(lines) == 200_000 and lines[0] == "row 0" and lines[-1] == "row 199999"
    # Show all: the whole log in the view, then following again
    window.logview.show_all()
    wait_for(qtbot, lambda: not window.logview.is_loading(), 20, "show all")
    window.console.flush_now()
    assert window.console.lines_rendered() >= total - 1
    assert window.logview.offset > 0


def test_close_and_reopen_while_running_loses_no_line(qtbot, open_window, make_lab):
    n = 120
    lab = make_lab(PRINTER, f"parameters:\n  - pass-as: '{n} 0.025'\n")
    window = open_window(lab, ask_on_close=True)
    window.run()
    wait_for(qtbot, lambda: window.model.rowCount() == 1, 2, "the execution")
    exec_id = window.model.execution(0).id
    wait_for(qtbot, lambda: "line 10" in console_text(window), 10, "output")
    # closing says the execution keeps running
    window.close()
    assert window.isVisible() and window.close_box is not None
    assert "keeps running" in window.close_box.text()
    assert "open mldesk again" in window.close_box.informativeText()
    close_button = next(b for b in window.close_box.buttons() if b.text() == "Close window")
    close_button.click()
    wait_for(qtbot, lambda: not window.isVisible(), 3, "the window to close")
    assert window._shut_down
    log_path = window.engine.layout.log_path(exec_id)
    size = log_path.stat().st_size
    wait_for(qtbot, lambda: log_path.stat().st_size > size, 10, "output while no window is open")
    again = open_window(lab)
    wait_for(qtbot, lambda: again.model.get(exec_id) is not None, 3, "the execution after reopening")
    again.select_execution(exec_id, show_code=False)
    final = wait_final(qtbot, again, exec_id, 30)
    assert final.state == "finished"
    wait_for(qtbot, lambda: f"line {n - 1}" in console_text(again), 5, "the last line")
    wait_for(qtbot, lambda: again.logview.offset == again.engine.layout.log_path(exec_id).stat().st_size, 5,
             "the console to have read the whole log")
    assert program_lines(console_text(again)) == [f"line {i}" for i in range(n)]
    # and the console shows exactly what the log holds
    with again.engine.log_reader(exec_id) as reader:
        stored = [line for line in b"".join(r.data for r in reader.iter_records() if r.stream != logstore.MLDESK)
                  .decode().splitlines()]
    assert program_lines(console_text(again)) == stored


def test_ml_yaml_errors_inline_and_run_refused(qtbot, open_window, make_lab):
    lab = make_lab("print('x')\n", "hardwareType: tpu\nparameters:\n  - flag: 1\n")
    window = open_window(lab)
    editor = window.code.editor_for("ml.yaml")
    assert editor is not None
    lines = sorted(p.line for p in editor.problems())
    assert 1 in lines and 3 in lines
    window.run()
    wait_for(qtbot, window.banner.isVisible, 5, "the banner")
    assert "ml.yaml has" in window.banner.title.text()
    assert window.model.rowCount() == 0
    assert window.run_button.isEnabled() and window.run_button.text() == "Run"
    # fixing it in the editor clears the marks
    editor.setPlainText("hardwareType: cpu\n")
    wait_for(qtbot, lambda: not editor.problems(), 3, "problems to clear")


def test_welcome_screen_and_new_lab(qtbot, open_window, tmp_path):
    window = open_window(None)
    assert window.pages.currentWidget() is window.welcome
    assert not window.run_button.isEnabled()
    assert window.create_lab(tmp_path / "fresh", "empty")
    assert window.pages.currentWidget() is window.workspace
    assert window.code.editor_for("main.py") is not None
    assert window.model.rowCount() == 0 and window.exec_stack.currentWidget() is window.exec_empty
    # next time, the last lab opens directly
    window.shutdown()
    again = open_window(None)
    assert again.lab == (tmp_path / "fresh").resolve()


def test_window_state_is_remembered(qtbot, open_window, make_lab):
    lab = make_lab("print('x')\n")
    window = open_window(lab)
    window.resize(780, 560)
    window.main_split.setSizes([170, 350, 260])
    sizes = window.main_split.sizes()
    window.close()
    again = open_window(lab)
    assert again.size() == QtCore.QSize(780, 560)
    assert again.main_split.sizes() == sizes


def test_notification_when_an_execution_ends_unfocused(qtbot, open_window, make_lab):
    window = open_window(make_lab("import time\ntime.sleep(0.5)\n"))
    other = QtWidgets.QWidget()
    qtbot.addWidget(other)
    other.show()
    other.activateWindow()
    qtbot.waitUntil(lambda: not window.isActiveWindow(), timeout=2000)
    ex = _finished_execution(qtbot, window)
    assert any(ex.name in title and "finished" in title for title, _ in window.notifications)
    # focused: no notification
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=2000)
    before = len(window.notifications)
    _finished_execution(qtbot, window)
    assert len(window.notifications) == before


def test_settings_dialog_writes_settings(qtbot, open_window, make_lab):
    from mldesk.ui.settings import SettingsDialog

    window = open_window(make_lab("print('x')\n"))
    dialog = SettingsDialog(window.engine, window)
    qtbot.addWidget(dialog)
    dialog.grace.setValue(3.5)
    row = dialog._append_alias("test-python", "mldesk-test/python:latest")
    assert row >= 4
    assert dialog.apply()
    assert window.engine.setting("stop_grace") == 3.5
    assert window.engine.setting("image_aliases")["test-python"] == "mldesk-test/python:latest"


@pytest.mark.docker
def test_run_on_docker(qtbot, open_window, make_lab, python_image, mldesk_home):
    from mldesk.engine.facade import Engine

    eng = Engine(mldesk_home)
    eng.set_setting("image_aliases", {"test-python": python_image})
    eng.set_setting("local_network", "none")
    eng.close()
    lab = make_lab("import sys\nprint('hello from docker', sys.version_info[0])\n", "dockerImageId: test-python\n")
    window = open_window(lab, runtime="docker")
    window.run()
    wait_for(qtbot, lambda: window.model.rowCount() == 1, 3, "the execution")
    ex = window.model.execution(0)
    assert ex.runtime == "docker" and ex.image == python_image
    final = wait_final(qtbot, window, ex.id, 90)
    assert final.state == "finished", final.reason
    wait_for(qtbot, lambda: "hello from docker 3" in console_text(window), 5, "its output")


def test_editor_tabs_unsaved_marker_save_and_find(qtbot, open_window, make_lab):
    lab = make_lab("print('one')\n", notes_md="# Notes\n")
    window = open_window(lab)
    tabs = window.code.lab_tabs
    assert [tabs.tabText(i) for i in range(tabs.count())] == ["main.py", "ml.yaml"]
    window.file_tree.fileActivated.emit("notes_md")
    assert tabs.tabText(tabs.currentIndex()) == "notes_md"
    window.code.open_file("main.py")
    editor = window.code.current_editor()
    editor.setFocus()
    qtbot.keyClicks(editor, "x = 1")
    qtbot.keyClick(editor, Qt.Key_Return)
    assert tabs.tabText(tabs.indexOf(editor)) == "main.py \u25cf"
    qtbot.keyClick(editor, Qt.Key_S, Qt.ControlModifier)
    assert (lab / "main.py").read_text() == "x = 1\nprint('one')\n"
    assert tabs.tabText(tabs.indexOf(editor)) == "main.py"
    # Ctrl+F in the editor opens the code find bar and finds
    qtbot.keyClick(editor, Qt.Key_F, Qt.ControlModifier)
    assert window.code.find_bar.isVisible()
    window.code.find_bar.field.setText("print")
    assert editor.textCursor().selectedText() == "print"
    # Run saves unsaved edits first: the execution runs what the editor shows
    qtbot.keyClicks(editor, "  # edited")
    assert editor.is_modified
    window.run()
    wait_for(qtbot, lambda: window.model.rowCount() == 1, 2, "the execution")
    assert not editor.is_modified and "# edited" in (lab / "main.py").read_text()
    ex = wait_final(qtbot, window, window.model.execution(0).id)
    assert "# edited" in window.engine.snapshots.read_file(ex.snapshot, "main.py").decode()


def test_about_and_hosts(qtbot, open_window, make_lab):
    import mldesk
    from mldesk.ui.settings import about_text

    window = open_window(make_lab("print('x')\n"))
    assert mldesk.__version__ in about_text()
    assert [window.host_chooser.itemData(i) for i in range(window.host_chooser.count())] == ["local"]
    assert window.host() == "local"
    assert window.runtime_button.text() == "process"
