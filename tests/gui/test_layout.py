"""Issue 11 items 1-2: no text widens the window; the window shrinks to 1024x700 with its panes
usable and collapsible; a failed execution shows a banner with its whole reason and next steps."""

from __future__ import annotations

import time

from mldesk.engine.facade import Engine
from mldesk.engine.values import Execution
from mldesk.ui import failure
from mldesk.ui.qt import QtCore, QtGui, QtWidgets, Qt
from tests.gui.windowkit import make_lab, open_window, wait_for  # noqa: F401 - fixtures

LONG_NAME = "a-very-long-execution-name-" + "x" * 173  # 200 characters
LONG_REASON = ("Docker image mldesk-test/" + "y" * 300 + " is not on this machine and could not be pulled: "
               + " ".join(f"word{i}" for i in range(300)))[:2000]


def failed_execution(home, lab, *, name=LONG_NAME, reason=LONG_REASON, host="local") -> Execution:
    from mldesk.core.store import new_execution_id  # test set-up only: a row straight into the store

    eng = Engine(home)
    try:
        snap = eng.snapshots.create(lab).id
        now = time.time()
        ex = Execution(id=new_execution_id(now), name=name, lab=str(lab.resolve()), host=host, runtime="docker",
                       image="x", hardware="cpu", state="failed", exit_code=None, reason=reason,
                       created_at=now, started_at=now, finished_at=now + 1, snapshot=snap)
        return eng.store.insert_execution(ex)
    finally:
        eng.close()


def test_long_name_and_reason_keep_the_window_within_the_screen(qtbot, open_window, make_lab, mldesk_home):
    lab = make_lab("print('x')\n", name="lab-" + "n" * 150)
    ex = failed_execution(mldesk_home, lab)
    window = open_window(lab)
    window.resize(1024, 700)
    wait_for(qtbot, lambda: window.model.get(ex.id) is not None, 5, "the execution")
    window.select_execution(ex.id, show_code=False)
    window.show_banner("Something about " + LONG_NAME, LONG_REASON, "error")
    QtWidgets.QApplication.processEvents()
    hint = window.minimumSizeHint()
    assert hint.width() <= 1024 and hint.height() <= 700, hint
    assert window.width() == 1024  # the long texts did not widen it (the offscreen screen is smaller)
    assert window.console_title.text().startswith(LONG_NAME)  # the whole text, shown elided
    assert window.console_title.is_elided() and LONG_NAME in window.console_title.toolTip()
    # still resizable down to 1024x700, with every pane usable
    window.resize(1024, 700)
    QtWidgets.QApplication.processEvents()
    assert (window.width(), window.height()) == (1024, 700)
    for pane in (window.left_pane, window.center_split, window.right_pane):
        assert pane.isVisible() and pane.width() >= 140


def test_side_panes_collapse_with_ctrl_b(qtbot, open_window, make_lab):
    window = open_window(make_lab("print('x')\n"))
    window.activateWindow()
    assert window.left_pane.isVisible() and window.right_pane.isVisible()
    window.act_files_pane.trigger()
    assert not window.left_pane.isVisible() and not window.act_files_pane.isChecked()
    window.act_exec_pane.trigger()
    assert not window.right_pane.isVisible()
    window.act_files_pane.trigger()
    window.act_exec_pane.trigger()
    assert window.left_pane.isVisible() and window.right_pane.isVisible()
    keys = {s.toString() for s in window.act_files_pane.shortcuts()}
    assert "Ctrl+B" in keys
    assert "Ctrl+," in {s.toString() for s in window.act_settings.shortcuts()}


def test_failure_banner_shows_the_whole_reason_and_next_steps(qtbot, open_window, make_lab, mldesk_home):
    lab = make_lab("print('x')\n")
    ex = failed_execution(mldesk_home, lab, name="broken", reason=LONG_REASON)
    window = open_window(lab)
    wait_for(qtbot, lambda: window.model.get(ex.id) is not None, 5, "the execution")
    window.select_execution(ex.id, show_code=False)
    banner = window.failure_banner
    assert banner.isVisible()
    assert banner.reason.toPlainText().startswith(LONG_REASON + "\n")  # whole, not cut; then the hint
    assert banner.reason.toPlainText().endswith("run on the process runtime.")
    labels = [b.text() for b in banner.buttons()]
    assert labels == ["Open image settings", "Run on the process runtime", "Restart"]
    # the next step acts: Run on the process runtime switches the runtime and runs
    runs = []
    window.commands.run = lambda: runs.append(window.runbar.runtime_choice)
    banner.buttons()[1].click()
    assert runs == ["process"]


def test_failure_next_steps_per_cause(mldesk_home, tmp_path):
    def steps(reason, host="local", exit_code=None):
        ex = Execution(id="x", name="n", lab="/l", host=host, runtime="docker", image=None, hardware="cpu",
                       state="failed", exit_code=exit_code, reason=reason, created_at=0, started_at=0,
                       finished_at=1, snapshot="0")
        return [k for _label, k in failure.next_steps(ex)[1]]

    assert steps("the Docker daemon does not answer (refused); start it or use --runtime process") == [
        failure.RUN_PROCESS]
    assert steps("input 'data.csv' (https://x/data.csv) failed: HTTP 404") == [failure.OPEN_INPUTS]
    assert steps("could not connect to gpu1: connection refused", host="gpu1") == [failure.EDIT_HOST]
    assert steps("main.py exited with code 1", exit_code=1) == []


def test_inputs_button_opens_the_inputs_tab(qtbot, open_window, make_lab, mldesk_home):
    lab = make_lab("print('x')\n")
    ex = failed_execution(mldesk_home, lab, name="no-data", reason="input 'd.csv' (https://example.org/d.csv) "
                          "failed: HTTP 404 Not Found")
    window = open_window(lab)
    wait_for(qtbot, lambda: window.model.get(ex.id) is not None, 5, "the execution")
    window.select_execution(ex.id, show_code=False)
    button = next(b for b in window.failure_banner.buttons() if b.text() == "Open inputs")
    qtbot.mouseClick(button, Qt.LeftButton)
    assert window.bottom_tabs.currentWidget() is window.inputs_panel


def test_transient_banner_times_out(qtbot, open_window, make_lab):
    window = open_window(make_lab("print('x')\n"))
    window.show_banner("Log saved.", "1 kB written.", "success", timeout=0.2)
    assert window.banner.isVisible()
    qtbot.waitUntil(lambda: not window.banner.isVisible(), timeout=3000)
    window.show_banner("Not started", "A problem.", "error")
    assert not window.banner.is_transient()
    assert QtCore.QSize  # keep the import used


def test_save_log_as_plain_text_without_colour_codes(qtbot, open_window, make_lab, tmp_path):
    from tests.gui.windowkit import wait_final

    window = open_window(make_lab("import sys\nprint('\\x1b[31mred\\x1b[0m plain')\n"
                                  "sys.stderr.write(' 50%|##\\r100%|####\\n')\n"))
    window.run()
    wait_for(qtbot, lambda: window.model.rowCount() == 1, 5, "the execution")
    ex = wait_final(qtbot, window, window.model.execution(0).id)
    plain, raw = tmp_path / "plain.log", tmp_path / "raw.log"
    window.save_log(ex.id, str(plain))
    wait_for(qtbot, lambda: window.banner.isVisible() and "saved" in window.banner.title.text(), 5, "saved")
    window.save_log(ex.id, str(raw), plain=False)
    wait_for(qtbot, lambda: raw.exists() and raw.stat().st_size > 0, 5, "the raw log")
    assert plain.read_text() == "red plain\n100%|####\n"
    assert "\x1b[31m" in raw.read_text()


def test_traceback_links_open_the_snapshot_at_the_line(qtbot, open_window, make_lab):
    from tests.gui.windowkit import wait_final

    lab = make_lab("import helper\n\nhelper.boom()\n")
    (lab / "helper.py").write_text("x = 1\n\n\ndef boom():\n    raise ValueError('bad value')\n")
    window = open_window(lab)
    window.run()
    wait_for(qtbot, lambda: window.model.rowCount() == 1, 5, "the execution")
    ex = wait_final(qtbot, window, window.model.execution(0).id)
    assert ex.state == "failed"
    window.select_execution(ex.id, show_code=False)
    wait_for(qtbot, lambda: "ValueError: bad value" in window.console.plain_text(), 5, "the traceback")
    window.console.flush_now()
    doc = window.console.text_edit().document()
    block = doc.begin()
    while block.isValid() and 'helper.py", line 5' not in block.text():
        block = block.next()
    assert block.isValid()
    col = block.text().index("File")
    cursor = QtGui.QTextCursor(block)
    cursor.setPosition(block.position() + col + 2)
    text = window.console.text_edit()
    text.ensureCursorVisible()
    text.setTextCursor(cursor)
    rect = text.cursorRect(cursor)
    assert window.console.link_at(rect.center()) is not None
    path, line = window.console.link_at(rect.center())
    assert path.endswith("helper.py") and line == 5
    qtbot.mouseClick(text.viewport(), Qt.LeftButton, pos=rect.center())
    assert window.code.in_snapshot()
    editor = window.code.current_editor()
    assert editor.textCursor().blockNumber() == 4
    assert "raise ValueError" in editor.textCursor().block().text()


def test_ml_yaml_banner_clears_when_the_file_is_fixed_and_saved(qtbot, open_window, make_lab):
    lab = make_lab("print('x')\n", ml_yaml="hardwareType: tpu\n")
    window = open_window(lab)
    window.run()
    wait_for(qtbot, lambda: window.banner.isVisible() and "ml.yaml" in window.banner.title.text(), 10, "banner")
    editor = window.code.editor_for("ml.yaml")
    editor.setPlainText("hardwareType: cpu\n")
    window.code.save(editor)
    wait_for(qtbot, lambda: not window.banner.isVisible(), 5, "the banner to go")


def test_snapshot_banner_follows_a_rename_and_tabs_stay_open(qtbot, open_window, make_lab):
    from tests.gui.windowkit import wait_final

    lab = make_lab("print('x')\n")
    (lab / "helper.py").write_text("X = 1\n")
    window = open_window(lab)
    window.code.open_file("ml.yaml")
    window.code.open_file("helper.py")
    window.run()
    wait_for(qtbot, lambda: window.model.rowCount() == 1, 5, "the execution")
    ex = wait_final(qtbot, window, window.model.execution(0).id)
    window.select_execution(ex.id, show_code=True)
    assert window.code.in_snapshot()
    open_tabs = {e.property("rel") for e in window.code.editors(window.code.snap_tabs)}
    assert {"ml.yaml", "helper.py"} <= open_tabs
    assert window.code.current_editor().property("rel") == "helper.py"
    window.rename(ex.id, "renamed run")
    wait_for(qtbot, lambda: "renamed run" in window.code.snapshot_bar.title.text(), 5, "the banner to follow")


def test_where_it_runs_one_rule(qtbot, open_window, make_lab, tmp_path):
    """Run uses the toolbar (remembered per lab); Restart runs where it ran unless the user
    ticks the toolbar's choice in its dialog, which names host and runtime."""
    from tests.gui.windowkit import wait_final

    lab = make_lab("print('v1')\n")
    window = open_window(lab, runtime=None)
    window.runbar.set_runtime("process")
    window.run()
    wait_for(qtbot, lambda: window.model.rowCount() == 1, 5, "the execution")
    first = wait_final(qtbot, window, window.model.execution(0).id)
    assert (first.host, first.runtime) == ("local", "process")
    window.shutdown()
    again = open_window(lab, runtime=None)  # the lab remembers the runtime chosen for it
    assert again.runbar.runtime_choice == "process" and again.runtime_button.text() == "process"
    assert not again.runtime_button.autoRaise()  # a framed drop-down, not flat text
    # the lab differs: the dialog says where it runs again and offers the toolbar's choice
    (lab / "main.py").write_text("print('v2')\n")
    again.runbar.set_runtime("docker")
    again.restart(first.id)
    wait_for(qtbot, lambda: again.restart_box is not None, 5, "the restart question")
    box = again.restart_box
    assert "local \u00b7 process" in box.text()
    assert box.checkBox() is not None and "local \u00b7 docker" in box.checkBox().text()
    box.done(0)


def test_choosing_a_host_shows_its_runtime(qtbot, open_window, make_lab):
    window = open_window(make_lab("print('x')\n"), runtime=None)
    window.engine.store.put_host("gpu1", {"name": "gpu1", "host": "gpu1.example.org", "runtime": "process"})
    window.runbar.fill_hosts()
    window.runbar.set_runtime(None)
    assert window.runbar.set_host("gpu1")
    assert window.runtime_button.text() == "process"
    assert "gpu1" in window.runtime_button.toolTip()
