"""The experiments in the main window (issues 13 and 14): the Metrics tab follows a real
process-runtime execution live, Compare of 4 executions, Compare code, Run with…
(overrides and a sweep), the sidebar's live figures and the host chooser's status."""

from __future__ import annotations

import re
import time

from mldesk.ui.experiments import CompareWindow, DiffWindow
from mldesk.ui.models import ExtraRole
from mldesk.ui.qt import QtCore, QtWidgets
from tests.gui.windowkit import make_lab, open_window, wait_final, wait_for  # noqa: F401 - fixtures

# prints a metric line every `delay` seconds; takes --lr and --epochs
TRAIN = """
import argparse, time
p = argparse.ArgumentParser()
p.add_argument("--lr", type=float, default=0.1)
p.add_argument("--epochs", type=int, default=3)
p.add_argument("--delay", type=float, default=0.0)
a = p.parse_args()
for e in range(1, a.epochs + 1):
    print(f"epoch {e}/{a.epochs} loss: {round(1.0 / (e * a.lr * 10), 4)}", flush=True)
    time.sleep(a.delay)
print(f"acc={a.lr}", flush=True)
"""

YAML = ("hardwareType: cpu\nparameters:\n  - pass-as: '--lr=0.1'\n  - pass-as: '--epochs=3'\n"
        "  - pass-as: '--delay={delay}'\nmetrics:\n  primary: loss\n")


def _run(qtbot, window, **overrides):
    ex = window.engine.run(window.lab, runtime="process", overrides=overrides or None)
    window.model.upsert(ex)
    return ex


def test_metrics_tab_updates_live(qtbot, open_window, make_lab):
    lab = make_lab(TRAIN, YAML.format(delay=0.0))
    window = open_window(lab)
    ex = _run(qtbot, window, epochs="40", delay="0.15")
    window.select_execution(ex.id, show_code=False)
    tab = window.metrics_tab
    window.bottom_tabs.setCurrentWidget(window.metrics_tab.page)
    assert window.bottom_tabs.tabText(window.bottom_tabs.currentIndex()) == "Metrics"
    assert tab.exec_id == ex.id
    # points arrive while it runs, in several polls
    wait_for(qtbot, lambda: window.metrics_view.point_count("loss", ex.id) >= 3, 30, "first loss points")
    seen = window.metrics_view.point_count("loss", ex.id)
    assert window.model.get(ex.id).active, "the execution ended before the test saw live points"
    wait_for(qtbot, lambda: window.metrics_view.point_count("loss", ex.id) > seen, 20, "more loss points")
    # the running row: its progress line, the primary metric
    wait_for(qtbot, lambda: re.match(r"epoch \d+/40 \u00b7 loss \d", window.model.extra(ex.id) or ""), 20,
             "the row's progress")
    assert window.metrics_view.primary == ("loss", "min")
    final = wait_final(qtbot, window, ex.id, 60)
    assert final.state == "finished", final.reason
    wait_for(qtbot, lambda: window.metrics_view.point_count("loss", ex.id) == 40, 20, "all 40 loss points")
    wait_for(qtbot, lambda: window.metrics_view.point_count("acc", ex.id) == 1, 20, "the last line's acc")
    wait_for(qtbot, lambda: not window.metrics_tab._timer.isActive(), 10, "polling to stop")  # ended: not polled
    window.metrics_view.flush()
    assert window.metrics_view.plotted_count("loss", ex.id) == 40
    # the sidebar row shows the primary metric's latest value
    wait_for(qtbot, lambda: "loss 0.025" in (window.model.index_of(ex.id).data(ExtraRole) or ""), 20,
             "the row's primary metric")
    # and the end-of-run summary of what it used (it ran ~6 s: sampled every 2 s)
    wait_for(qtbot, lambda: re.search(r"peak \d", window.model.index_of(ex.id).data(ExtraRole) or ""), 20,
             "the row's peak memory")


def test_metrics_tab_shows_a_finished_execution_and_switches(qtbot, open_window, make_lab):
    lab = make_lab(TRAIN, YAML.format(delay=0.0))
    window = open_window(lab)
    a = _run(qtbot, window, epochs="5")
    b = _run(qtbot, window, epochs="2")
    for ex in (a, b):
        wait_final(qtbot, window, ex.id, 60)
    window.bottom_tabs.setCurrentWidget(window.metrics_tab.page)
    window.select_execution(a.id, show_code=False)
    wait_for(qtbot, lambda: window.metrics_view.point_count("loss", a.id) == 5, 20, "a's history")
    window.select_execution(b.id, show_code=False)
    wait_for(qtbot, lambda: window.metrics_view.point_count("loss", b.id) == 2, 20, "b's history")
    assert window.metrics_view.point_count("loss", a.id) == 0  # only the selected execution


def _select(window, ids):
    lst, model = window.execution_list, window.model
    sel = QtCore.QItemSelection()
    for i in ids:
        idx = model.index_of(i)
        sel.select(idx, idx)
    lst.selectionModel().select(sel, QtCore.QItemSelectionModel.ClearAndSelect)


def _tool_windows(kind):
    return [w for w in QtWidgets.QApplication.topLevelWidgets() if isinstance(w, kind) and w.isVisible()]


def test_compare_four_executions(qtbot, open_window, make_lab):
    lab = make_lab(TRAIN, YAML.format(delay=0.0))
    window = open_window(lab)
    runs = [_run(qtbot, window, lr=lr) for lr in ("0.1", "0.2", "0.5", "1")]
    for ex in runs:
        wait_final(qtbot, window, ex.id, 60)
    _select(window, [e.id for e in runs])
    assert window.act_compare.isEnabled()
    assert not window.act_compare_sweep.isEnabled()
    window.act_compare.trigger()
    wins = _tool_windows(CompareWindow)
    assert len(wins) == 1
    win = wins[0]
    wait_for(qtbot, lambda: win.loaded, 30, "the compare rows")
    view = win.view
    assert view.model.rowCount() == 4
    assert sorted(r["id"] for r in view.model.rows) == sorted(e.id for e in runs)
    assert {r["params"]["lr"] for r in view.model.rows} == {"0.1", "0.2", "0.5", "1"}
    assert set(view.charts.keys()) >= {"loss", "acc"}
    # the lowest last loss is lr=1 (1 / (3 * 1 * 10))
    best = view.best_cells()
    lr1 = next(e.id for e in runs if e.overrides.get("lr") == "1")
    assert any(lr1 in ids for title, ids in best.items() if title.startswith("loss"))
    win.close()


def test_compare_code_between_two_and_with_the_lab(qtbot, open_window, make_lab):
    lab = make_lab(TRAIN, YAML.format(delay=0.0))
    window = open_window(lab)
    a = _run(qtbot, window)
    wait_final(qtbot, window, a.id, 60)
    (lab / "main.py").write_text((lab / "main.py").read_text() + "print('changed')\n")
    b = _run(qtbot, window, lr="0.3")
    wait_final(qtbot, window, b.id, 60)
    _select(window, [a.id, b.id])
    assert window.act_compare_code.isEnabled()
    window.act_compare_code.trigger()
    wait_for(qtbot, lambda: _tool_windows(DiffWindow), 30, "the diff window")
    view = _tool_windows(DiffWindow)[0].view
    assert ("M", "main.py") in view.changed_files()
    assert ("lr", "0.1", "0.3") in [tuple(p) for p in view.changed_params()]
    for w in _tool_windows(DiffWindow):
        w.close()
    # one execution: compared with the lab
    (lab / "extra.py").write_text("x = 1\n")
    _select(window, [b.id])
    assert window.act_compare_code.text().startswith("Compare code with the lab")
    window.act_compare_code.trigger()
    wait_for(qtbot, lambda: _tool_windows(DiffWindow), 30, "the diff window with the lab")
    assert ("A", "extra.py") in _tool_windows(DiffWindow)[0].view.changed_files()


def test_run_with_overrides_and_sweep(qtbot, open_window, make_lab):
    lab = make_lab(TRAIN, YAML.format(delay=0.0))
    window = open_window(lab)
    dialog = window.experiments.run_with()
    assert dialog is not None and dialog.isVisible()
    dialog.set_value("lr", "0.25")
    dialog.accept()
    wait_for(qtbot, lambda: window.model.total() == 1, 30, "the execution")
    ex = window.model.executions()[0]
    assert ex.overrides == {"lr": "0.25"}
    assert "--lr=0.25" in ex.argv
    assert "lr=0.25" in ex.name
    wait_final(qtbot, window, ex.id, 60)

    dialog = window.experiments.run_with()
    dialog.set_sweep(True)
    dialog.set_value("epochs", "1, 2")
    assert dialog.trial_count() == 2
    dialog.accept()
    wait_for(qtbot, lambda: window.experiments.last_sweep is not None, 30, "the sweep's trials")
    wait_for(qtbot, lambda: window.model.total() == 3, 10, "the trials in the sidebar")
    sweep, trials = window.experiments.last_sweep
    assert len(trials) == 2 and all(t.sweep == sweep for t in trials)
    assert sorted(t.overrides["epochs"] for t in trials) == ["1", "2"]
    for t in trials:
        wait_final(qtbot, window, t.id, 60)
    # the trials sit under their sweep's header (which names the sweep), not repeated in each row
    header = window.model.header_index(sweep)
    assert header.isValid() and window.model.sweep_at(header.row()) == sweep
    assert sorted(window.model.ids_at(header.row())) == sorted(t.id for t in trials)
    assert all(window.model.index_of(t.id).row() > header.row() for t in trials)
    wait_for(qtbot, lambda: all(window.model.index_of(t.id).data(ExtraRole) for t in trials), 20,
             "the trials' rows to show their end-of-run summary")
    assert not any("sweep" in window.model.index_of(t.id).data(ExtraRole) for t in trials)
    window.select_execution(trials[0].id, show_code=False)
    assert window.act_compare_sweep.isEnabled()
    window.act_select_sweep.trigger()
    assert sorted(window.selected_ids()) == sorted(t.id for t in trials)
    window.act_filter_sweep.trigger()
    assert sorted(window.sidebar_filter.visible_ids()) == sorted(t.id for t in trials)
    window.exec_filter.setText(sweep[-5:])  # the short id the rows show
    assert sorted(window.sidebar_filter.visible_ids()) == sorted(t.id for t in trials)
    window.exec_filter.clear()
    assert len(window.sidebar_filter.visible_ids()) == 3
    window.act_compare_sweep.trigger()
    wait_for(qtbot, lambda: any(w.loaded for w in _tool_windows(CompareWindow)), 30, "the sweep compare")
    assert _tool_windows(CompareWindow)[0].view.model.rowCount() == 2


def test_run_with_unknown_error_is_a_banner(qtbot, open_window, make_lab):
    lab = make_lab(TRAIN, YAML.format(delay=0.0))
    window = open_window(lab)
    window.experiments.start({"overrides": {"nope": "1"}})
    wait_for(qtbot, lambda: window.banner.isVisible(), 20, "the error banner")
    assert window.model.total() == 0
    assert window.run_button.text() == "Run"


def test_host_chooser_shows_status(qtbot, open_window, make_lab, monkeypatch):
    window = open_window(make_lab())
    hs = window.host_status
    wait_for(qtbot, lambda: hs.rounds >= 1, 30, "the first host status")
    chooser = window.host_chooser
    i = chooser.findData("local")
    assert not chooser.itemIcon(i).isNull()
    assert chooser.itemData(i, QtCore.Qt.ToolTipRole).startswith("Reachable")
    # the probe runs off the UI thread: a slow one does not block the window
    calls = []

    def slow(name=None):
        calls.append(time.monotonic())
        time.sleep(1.0)
        return [{"name": "local", "reachable": True, "running": 0,
                 "gpus": [{"index": 0, "name": "Fake GPU", "memory_total_bytes": 8 << 30,
                           "memory_used_bytes": 1 << 30, "util_percent": 12.0, "held_by": None}]}]

    monkeypatch.setattr(window.engine, "host_status", slow)
    t0 = time.monotonic()
    hs.refresh()
    assert time.monotonic() - t0 < 0.5
    wait_for(qtbot, lambda: hs.rounds >= 2, 20, "the second host status")
    assert "1 GPU" in chooser.itemText(i)
    assert "Fake GPU" in chooser.itemData(i, QtCore.Qt.ToolTipRole)


def test_window_start_does_not_import_the_charts(tmp_path):
    """pyqtgraph and numpy take a second or more to import: not before the Metrics tab is shown (P7)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    app = Path(__file__).resolve().parents[2] / "app"
    code = (
        "import sys\n"
        "from mldesk import ui\n"
        f"w = ui.launch(None, home={str(tmp_path / 'home')!r}, runtime='process')\n"
        "a = ui.application(); a.processEvents()\n"
        "before = 'pyqtgraph' in sys.modules\n"
        "w.bottom_tabs.setCurrentWidget(w.metrics_tab.page); a.processEvents()\n"
        "print(before, 'pyqtgraph' in sys.modules, w.metrics_view.objectName())\n"
        "w.ask_on_close = False; w.shutdown()\n"
    )
    env = dict(os.environ, PYTHONPATH=str(app), QT_QPA_PLATFORM="offscreen")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True", "metricsView"], out.stdout + out.stderr


def test_compare_follows_a_running_execution(qtbot, open_window, make_lab):
    lab = make_lab(TRAIN, YAML.format(delay=0.0))
    window = open_window(lab)
    done = _run(qtbot, window)
    wait_final(qtbot, window, done.id, 60)
    live = _run(qtbot, window, epochs="30", delay="0.2")
    wait_for(qtbot, lambda: (window.model.get(live.id) or live).state == "running", 30, "the second to run")
    _select(window, [done.id, live.id])
    # the context menu offers Compare for two
    window.commands.show_menu(window.execution_list.mapToGlobal(QtCore.QPoint(10, 10)))
    texts = [a.text() for a in window.execution_menu.actions() if not a.isSeparator()]
    window.execution_menu.close()
    assert "Compare" in texts and "Compare code\u2026" in texts
    win = window.experiments.compare_selected()
    wait_for(qtbot, lambda: win.loaded, 30, "the compare rows")
    assert win.active == {live.id}
    first = win.view.charts.point_count("loss", live.id)
    wait_for(qtbot, lambda: win.view.charts.point_count("loss", live.id) > first, 30, "the overlay to grow")
    wait_final(qtbot, window, live.id, 60)
    wait_for(qtbot, lambda: not win.active, 20, "the compare to notice the end")
    assert win.view.charts.point_count("loss", live.id) == 30
    states = {r["id"]: r["state"] for r in win.view.model.rows}
    assert states[live.id] == "finished"
    win.close()


def test_hosts_dialog_shows_status(qtbot, open_window, make_lab, monkeypatch):
    from mldesk.engine.hosts import HostProfile
    from mldesk.ui.hosts_dialog import HostsDialog

    window = open_window(make_lab())
    window.engine.profiles.save(HostProfile(name="gpu-box", host="127.0.0.1", port=1, runtime="process"))
    window.runbar.fill_hosts()

    def status(name=None):
        return [{"name": "local", "reachable": True, "running": 0, "gpus": []},
                {"name": "gpu-box", "reachable": True, "running": 1,
                 "gpus": [{"index": 0, "name": "Fake GPU", "memory_total_bytes": 8 << 30,
                           "memory_used_bytes": 1 << 30, "util_percent": 50.0, "held_by": "x"},
                          {"index": 1, "name": "Fake GPU", "memory_total_bytes": 8 << 30,
                           "memory_used_bytes": 0, "util_percent": 0.0, "held_by": None}]}]

    hs = window.host_status
    wait_for(qtbot, lambda: hs.rounds >= 1 and not hs._busy, 30, "the first host check to end")
    monkeypatch.setattr(window.engine, "host_status", status)
    dialog = HostsDialog(window.engine, window)
    qtbot.addWidget(dialog)
    rounds = window.host_status.rounds
    window.host_status.attach_dialog(dialog)
    wait_for(qtbot, lambda: window.host_status.rounds > rounds, 20, "the host check")
    assert dialog.table.item(0, 0).text() == "gpu-box"
    assert not dialog.table.item(0, 0).icon().isNull()
    assert dialog.table.item(0, 3).text() == "2 (1 held)"
    assert "Fake GPU" in dialog.table.item(0, 0).toolTip()
    i = window.host_chooser.findData("gpu-box")
    assert "2 GPUs" in window.host_chooser.itemText(i)
    dialog.reject()


def test_resource_text():
    from mldesk.ui.rowinfo import resource_text

    assert resource_text({"cpu_percent": [[0, 50], [1, 98.4]], "gpu": {"0": {"util_percent": [[1, 40]]},
                                                                       "1": {"util_percent": [[1, 60]]}}}) \
        == "CPU 98% \u00b7 GPU 50%"
