"""A sweep's trials grouped in the sidebar (issue 13): one header row per sweep, where
its newest trial would sit, collapsible (arrow, Left / Right), with the trials' states
and the best value of the lab's primary metric; its Compare button compares all trials.
Executions that are not trials stay plain rows."""

from __future__ import annotations

import time

import pytest

from mldesk.core.store import Execution, new_execution_id
from mldesk.engine.facade import Engine
from mldesk.ui.experiments import CompareWindow
from mldesk.ui.models import ExecutionModel, SweepRole
from mldesk.ui.qt import QtCore, QtWidgets, Qt
from mldesk.ui.sidebar import INDENT, ExecutionList
from tests.gui.windowkit import make_lab, open_window, wait_final, wait_for  # noqa: F401 - fixtures

# one metric line per epoch; loss falls with --lr, acc is --lr
TRAIN = """
import argparse
p = argparse.ArgumentParser()
p.add_argument("--lr", type=float, default=0.1)
p.add_argument("--epochs", type=int, default=2)
a = p.parse_args()
for e in range(1, a.epochs + 1):
    print(f"epoch {e}/{a.epochs} loss: {round(1.0 / (e * a.lr * 10), 4)}", flush=True)
print(f"acc={a.lr}", flush=True)
"""

YAML = "hardwareType: cpu\nparameters:\n  - pass-as: '--lr=0.1'\n  - pass-as: '--epochs=2'\nmetrics:\n  {metrics}\n"


@pytest.fixture
def engine(mldesk_home):
    eng = Engine(mldesk_home)
    yield eng
    eng.close()


def insert(engine: Engine, lab, *, created: float, state: str = "finished", sweep: str | None = None,
           name: str = "") -> Execution:
    """An execution written straight into the store (no supervisor: model tests only)."""
    ex = Execution(
        id=new_execution_id(created), name=name, lab=str(lab.resolve()), host="local", runtime="process",
        image=None, hardware="cpu", state=state, exit_code=0 if state == "finished" else None, reason=None,
        created_at=created, started_at=created, finished_at=created + 5 if state == "finished" else None,
        snapshot="0" * 24, sweep=sweep)
    ex.name = ex.name or f"#{ex.id}"
    return engine.store.insert_execution(ex)


def layout(model: ExecutionModel) -> list[str]:
    """The rows as names: ``[sweep S]`` for a header."""
    out = []
    for r in range(model.rowCount()):
        sweep = model.sweep_at(r)
        out.append(f"[sweep {sweep}]" if sweep else model.execution(r).name)
    return out


class Spy:
    def __init__(self, model):
        self.events = []
        model.modelReset.connect(lambda: self.events.append("reset"))
        model.rowsInserted.connect(lambda _p, a, b: self.events.append(("inserted", a, b)))
        model.rowsRemoved.connect(lambda _p, a, b: self.events.append(("removed", a, b)))


def test_model_groups_a_sweep_under_one_header(engine, tmp_path):
    lab = tmp_path / "lab"
    lab.mkdir()
    t0 = time.time() - 1000
    insert(engine, lab, created=t0, name="older")
    trials = [insert(engine, lab, created=t0 + 10 + i, sweep="S1", name=f"trial {i}",
                     state="running" if i < 2 else "finished") for i in range(4)]
    insert(engine, lab, created=t0 + 12.5, name="between")  # newer than trial 2, older than trial 3
    insert(engine, lab, created=t0 + 100, name="newer")
    model = ExecutionModel(engine)
    model.set_lab(lab)
    # the group sits where its newest trial (trial 3) would sit; "between" moves below it
    assert layout(model) == ["newer", "[sweep S1]", "trial 3", "trial 2", "trial 1", "trial 0", "between",
                             "older"]
    g = model.group("S1")
    assert g.ids == [t.id for t in reversed(trials)]
    assert g.summary() == "4 trials \u00b7 2 running \u00b7 2 done"
    assert g.state() == "running" and model.index(1, 0).data(Qt.DisplayRole) == g.title()
    assert model.execution(1) is None and model.ids_at(1) == g.ids and model.ids_at(0) == [model.execution(0).id]
    assert not model.flags(model.index(1, 0)) & Qt.ItemIsEditable  # a header is not renamed
    assert model.row_of(trials[3].id) == 2 and model.row_of(trials[0].id) == 5

    # a trial's new state: the header's summary follows, its row repaints
    changed = []
    model.dataChanged.connect(lambda a, _b, _r=None: changed.append(a.row()))
    trials[1] = engine.store.update(trials[1].id, state="failed", finished_at=time.time())
    model.upsert(trials[1])
    assert model.group("S1").summary() == "4 trials \u00b7 1 running \u00b7 2 done \u00b7 1 failed"
    assert 1 in changed and model.row_of(trials[1].id) in changed
    trials[1] = engine.store.update(trials[1].id, state="running", finished_at=None)
    model.upsert(trials[1])

    spy = Spy(model)
    model.set_collapsed("S1", True)
    assert layout(model) == ["newer", "[sweep S1]", "between", "older"]
    assert spy.events == [("removed", 2, 5)]
    assert model.index_of(trials[0].id).isValid() is False and model.get(trials[0].id) is not None
    assert len(model.executions()) == 7 and len(model.active_executions()) == 2
    assert model.active_rows() == [1]  # the header spins for its running trials
    # a new trial joins its (collapsed) group: no row of its own
    t4 = insert(engine, lab, created=t0 + 50, sweep="S1", name="trial 4")
    model.upsert(t4)
    assert layout(model) == ["newer", "[sweep S1]", "between", "older"]
    assert model.group("S1").summary().startswith("5 trials")
    model.reveal(trials[0].id)  # selecting a trial expands its sweep
    assert not model.is_collapsed("S1")
    assert layout(model) == ["newer", "[sweep S1]", "trial 4", "trial 3", "trial 2", "trial 1", "trial 0",
                             "between", "older"]
    # removing every trial removes the header; a plain row is never touched
    for t in trials + [t4]:
        model.remove(t.id)
    assert layout(model) == ["newer", "between", "older"]
    assert "reset" not in spy.events


@pytest.mark.parametrize("goal, best", [("min", 0.125), ("max", 0.9)])
def test_header_best_metric_follows_the_goal(engine, tmp_path, goal, best):
    lab = tmp_path / "lab"
    lab.mkdir()
    t0 = time.time() - 100
    trials = [insert(engine, lab, created=t0 + i, sweep="S", name=f"t{i}") for i in range(3)]
    model = ExecutionModel(engine)
    model.set_lab(lab)
    header = model.header_index("S")
    changed = []
    model.dataChanged.connect(lambda a, _b, _r=None: changed.append(a.row()))
    assert model.group("S").best is None and header.data(SweepRole) == "S"
    for t, v in zip(trials, (0.5, 0.125, 0.9)):
        model.set_metric(t.id, "val/loss", v, goal)
    assert model.group("S").best == ("val/loss", best, goal)
    assert model.group("S").best_text() == f"best val/loss {best:g}"
    assert header.row() in changed  # the header repaints as its best changes
    model.set_metric(trials[0].id, "val/loss", 0.01 if goal == "min" else 2.0, goal)  # live: a better value
    assert model.group("S").best[1] == (0.01 if goal == "min" else 2.0)


def test_list_toggles_with_arrow_and_keys(qtbot, engine, tmp_path):
    lab = tmp_path / "lab"
    lab.mkdir()
    t0 = time.time() - 100
    plain = insert(engine, lab, created=t0, name="plain")
    trials = [insert(engine, lab, created=t0 + 1 + i, sweep="S", name=f"t{i}") for i in range(4)]
    model = ExecutionModel(engine)
    model.set_lab(lab)
    view = ExecutionList(model)
    qtbot.addWidget(view)
    view.resize(360, 700)
    view.show()
    qtbot.waitExposed(view)
    header = model.header_index("S")
    assert header.row() == 0 and model.rowCount() == 6
    # trials are indented under the header; the plain row is not
    def icon_left(exec_id):
        idx = model.index_of(exec_id)
        return view.delegate.icon_rect(view.visualRect(idx), idx).left()

    assert icon_left(trials[0].id) == icon_left(plain.id) + INDENT
    arrow = view.delegate.arrow_rect(view.visualRect(header))
    qtbot.mouseClick(view.viewport(), Qt.LeftButton, pos=arrow.center())
    assert model.is_collapsed("S") and model.rowCount() == 2
    assert model.execution(1).id == plain.id
    qtbot.mouseClick(view.viewport(), Qt.LeftButton, pos=arrow.center())
    assert not model.is_collapsed("S") and model.rowCount() == 6
    # keyboard: Left on a trial goes to its header, Left collapses, Right expands, Right again enters
    view.setFocus()
    view.select_only(model.index_of(trials[2].id))
    qtbot.keyClick(view, Qt.Key_Left)
    assert view.currentIndex().row() == header.row() and view.selected_ids() == [t.id for t in reversed(trials)]
    qtbot.keyClick(view, Qt.Key_Left)
    assert model.is_collapsed("S") and model.rowCount() == 2
    qtbot.keyClick(view, Qt.Key_Right)
    assert not model.is_collapsed("S") and model.rowCount() == 6
    qtbot.keyClick(view, Qt.Key_Right)
    assert model.execution(view.currentIndex().row()).id == trials[3].id
    # collapsing while a trial is current hands the selection to the header
    view.set_sweep_collapsed("S", True)
    assert view.currentIndex().row() == 0 and view.selected_ids() == [t.id for t in reversed(trials)]
    # Up/Down still move between rows, and the plain row is untouched
    qtbot.keyClick(view, Qt.Key_Down)
    assert view.selected_ids() == [plain.id]
    view.grab()  # the delegate paints a collapsed header


def _tool_windows(kind):
    return [w for w in QtWidgets.QApplication.topLevelWidgets() if isinstance(w, kind) and w.isVisible()]


def _run_sweep(qtbot, window, lrs):
    sweep, trials = window.engine.run_sweep(window.lab, [f"lr=[{','.join(lrs)}]"], runtime="process")
    for t in trials:
        window.model.upsert(t)
    return sweep, [wait_final(qtbot, window, t.id, 90) for t in trials]


def _header_text(window, sweep):
    return window.model.header_index(sweep).data(Qt.DisplayRole)


def test_sweep_header_best_and_compare_in_the_window(qtbot, open_window, make_lab):
    lab = make_lab(TRAIN, YAML.format(metrics="primary: loss"))
    window = open_window(lab)
    window.resize(1200, 900)
    plain = window.engine.run(lab, runtime="process", name="plain")
    window.model.upsert(plain)
    wait_final(qtbot, window, plain.id, 60)
    sweep, trials = _run_sweep(qtbot, window, ["0.1", "0.2", "0.5", "1"])
    model, view = window.model, window.execution_list
    assert all(t.state == "finished" for t in trials), [t.reason for t in trials]
    # one header, its 4 trials under it, then the older plain execution
    header = model.header_index(sweep)
    assert header.row() == 0
    assert sorted(model.ids_at(0)) == sorted(t.id for t in trials)
    assert sorted(model.execution(r).id for r in range(1, 5)) == sorted(t.id for t in trials)
    assert model.execution(5).id == plain.id and model.rowCount() == 6
    assert "lr" in _header_text(window, sweep)
    # the best primary metric (loss: lower is better) over the trials, as the engine computes it
    expected = min(window.engine.primary_metric(t.id)["best"] for t in trials)
    assert expected == pytest.approx(0.05)  # lr=1, epoch 2: 1 / (2 * 1 * 10)
    wait_for(qtbot, lambda: model.group(sweep).best is not None and model.group(sweep).best[1] == expected, 30,
             "the header's best loss")
    assert model.group(sweep).best_text() == "best loss 0.05"
    assert model.group(sweep).summary() == "4 trials \u00b7 4 done"
    # collapse and expand with the arrow
    arrow = view.delegate.arrow_rect(view.visualRect(header))
    qtbot.mouseClick(view.viewport(), Qt.LeftButton, pos=arrow.center())
    assert model.rowCount() == 2 and model.execution(1).id == plain.id
    qtbot.mouseClick(view.viewport(), Qt.LeftButton, pos=arrow.center())
    assert model.rowCount() == 6
    # the header selected: its trials are the selection (Compare, Stop, Remove act on them)
    view.select_only(header)
    assert sorted(window.selected_ids()) == sorted(t.id for t in trials)
    assert window.act_compare.isEnabled() and window.act_compare_sweep.isEnabled()
    view.selectionModel().clearSelection()
    # one click on the header's Compare button: a compare window of exactly those 4
    compare = view.delegate.compare_rect(view.visualRect(header))
    qtbot.mouseClick(view.viewport(), Qt.LeftButton, pos=compare.center())
    wait_for(qtbot, lambda: any(w.loaded for w in _tool_windows(CompareWindow)), 30, "the sweep's compare")
    wins = _tool_windows(CompareWindow)
    assert len(wins) == 1
    assert sorted(r["id"] for r in wins[0].view.model.rows) == sorted(t.id for t in trials)
    assert window.selected_ids() == []  # the button does not change the selection
    # the plain execution is a row of its own, as before
    assert window.select_execution(plain.id, show_code=False) and window.selected_ids() == [plain.id]
    # the filter keeps the header while a trial matches
    window.exec_filter.setText("lr=0.5")
    assert [t.id for t in trials if t.overrides["lr"] == "0.5"] == window.sidebar_filter.visible_ids()
    assert not view.isRowHidden(header.row()) and view.isRowHidden(model.row_of(plain.id))
    window.exec_filter.setText("plain")
    assert view.isRowHidden(header.row()) and window.sidebar_filter.visible_ids() == [plain.id]
    window.exec_filter.clear()


def test_sweep_header_best_when_higher_is_better(qtbot, open_window, make_lab):
    lab = make_lab(TRAIN, YAML.format(metrics="primary: acc\n  goal: max"))
    window = open_window(lab)
    sweep, trials = _run_sweep(qtbot, window, ["0.3", "0.7", "0.5"])
    expected = max(window.engine.primary_metric(t.id)["best"] for t in trials)
    assert expected == pytest.approx(0.7)
    wait_for(qtbot, lambda: (model_best := window.model.group(sweep).best) is not None and model_best[1] == expected,
             30, "the header's best acc")
    assert window.model.group(sweep).best == ("acc", expected, "max")
    # a selected trial of a collapsed sweep expands it
    window.execution_list.set_sweep_collapsed(sweep, True)
    assert window.model.rowCount() == 1
    assert window.select_execution(trials[1].id, show_code=False)
    assert window.model.rowCount() == 4 and window.selected_ids() == [trials[1].id]
    # removing the sweep (header selected) and undoing it brings the group back
    window.execution_list.select_only(window.model.header_index(sweep))
    window.remove_selected()
    assert window.model.rowCount() == 0
    window.undo_remove()
    wait_for(qtbot, lambda: window.model.rowCount() == 4, 5, "the trials back")
    assert window.model.sweep_at(0) == sweep
    QtCore.QCoreApplication.processEvents()
