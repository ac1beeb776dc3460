"""The execution model and sidebar: newest first, paging, incremental updates (never a
reset per event), the delegate's texts, the context menu and the three-dots button."""

from __future__ import annotations

import time

import pytest

from mldesk.engine.facade import Engine
from mldesk.core.store import Execution, new_execution_id
from mldesk.ui import fmt
from mldesk.ui.models import ExecutionModel, ExecutionRole
from mldesk.ui.qt import Qt
from mldesk.ui.sidebar import ExecutionList
from tests.gui.windowkit import make_lab, open_window, wait_for  # noqa: F401 - fixtures


@pytest.fixture
def engine(mldesk_home):
    eng = Engine(mldesk_home)
    yield eng
    eng.close()


def insert(engine: Engine, lab, *, state="finished", created=None, name=None, snapshot="0" * 24,
           started=None, finished=None) -> Execution:
    """An execution written straight into the store (no supervisor: tests only)."""
    created = time.time() if created is None else created
    ex = Execution(
        id=new_execution_id(created), name=name or "", lab=str(lab.resolve()), host="local",
        runtime="process", image=None, hardware="cpu", state=state,
        exit_code=0 if state == "finished" else None, reason=None, created_at=created,
        started_at=started if started is not None else created,
        finished_at=finished if finished is not None else (created + 5 if state in ("finished", "failed") else None),
        snapshot=snapshot)
    if not ex.name:
        ex.name = f"#{ex.id}"
    return engine.store.insert_execution(ex)


class Spy:
    def __init__(self, model):
        self.events = []
        model.modelReset.connect(lambda: self.events.append("reset"))
        model.rowsInserted.connect(lambda _p, a, b: self.events.append(("inserted", a, b)))
        model.rowsRemoved.connect(lambda _p, a, b: self.events.append(("removed", a, b)))
        model.dataChanged.connect(lambda a, b, _r=None: self.events.append(("changed", a.row())))


def test_newest_first_and_paging(engine, tmp_path):
    lab = tmp_path / "lab"
    lab.mkdir()
    other = tmp_path / "other"
    other.mkdir()
    base = time.time() - 10_000
    for i in range(450):
        insert(engine, lab, created=base + i, name=f"run {i}")
    insert(engine, other, created=base + 5000, name="elsewhere")
    model = ExecutionModel(engine)
    model.set_lab(lab)
    assert model.rowCount() == ExecutionModel.FIRST_PAGE and model.total() == 450
    assert model.canFetchMore()
    while model.canFetchMore():
        model.fetchMore()
    names = [model.data(model.index(r, 0)) for r in range(model.rowCount())]
    assert names == [f"run {i}" for i in range(449, -1, -1)]
    created = [model.execution(r).created_at for r in range(model.rowCount())]
    assert created == sorted(created, reverse=True)
    assert model.row_of(model.execution(123).id) == 123


def test_updates_are_incremental(engine, tmp_path):
    lab = tmp_path / "lab"
    lab.mkdir()
    old = insert(engine, lab, created=time.time() - 100, name="old")
    model = ExecutionModel(engine)
    model.set_lab(lab)
    spy = Spy(model)
    seq0 = engine.store.seq()
    new = insert(engine, lab, state="running", name="new", created=time.time())
    model.upsert(new)
    model.upsert(new)  # twice: idempotent
    assert spy.events == [("inserted", 0, 0), ("changed", 0)]
    assert model.execution(0).id == new.id and model.rowCount() == 2
    renamed = engine.store.update(new.id, name="renamed")
    model.upsert(renamed)
    model.upsert(new)  # a late, older event changes nothing
    assert model.execution(0).name == "renamed"
    engine.store.update(old.id, name="changed elsewhere")
    model.resync(seq0)  # what the watcher missed before it started
    assert model.get(old.id).name == "changed elsewhere"
    model.remove(old.id)
    model.remove(old.id)
    other_lab = insert(engine, tmp_path, name="another lab")
    model.upsert(other_lab)
    assert "reset" not in spy.events
    assert ("removed", 1, 1) in spy.events and model.rowCount() == 1
    ended = []
    model.ended.connect(lambda a, b: ended.append((a.state, b.state)))
    model.upsert(engine.store.update(new.id, state="finished", finished_at=time.time()))
    assert ended == [("running", "finished")]


def test_texts():
    now = time.time()
    running = Execution(id="x", name="n", lab="/l", host="local", runtime="process", image=None,
                        hardware="gpu", state="running", exit_code=None, reason=None,
                        created_at=now - 300, started_at=now - 180, finished_at=None, snapshot="0")
    assert fmt.run_line(running, now) == "running for 3 min"
    assert fmt.ago(running.created_at, now) == "5 min ago"
    assert fmt.where_line(running) == "local \u00b7 process \u00b7 GPU"
    done = Execution(**{**running.to_dict(), "state": "finished", "finished_at": now - 180 + 2 * 3600 + 4 * 60})
    assert fmt.run_line(done, now) == "ran for 2 h 4 min"
    failed = Execution(**{**running.to_dict(), "state": "failed", "reason": "exit code 3",
                          "finished_at": now - 170})
    assert fmt.run_line(failed, now) == "failed after 10 s"
    assert fmt.state_line(failed) == "Failed: exit code 3"


def test_list_paints_and_spins_while_active(qtbot, engine, tmp_path):
    lab = tmp_path / "lab"
    lab.mkdir()
    insert(engine, lab, state="failed", name="broken", created=time.time() - 60)
    insert(engine, lab, state="finished", name="done", created=time.time() - 30)
    model = ExecutionModel(engine)
    model.set_lab(lab)
    view = ExecutionList(model)
    qtbot.addWidget(view)
    view.resize(320, 400)
    view.show()
    qtbot.waitExposed(view)
    assert not view._spin.isActive()
    model.upsert(insert(engine, lab, state="running", name="busy"))
    assert view._spin.isActive()
    image = view.grab().toImage()
    assert not image.isNull()
    assert model.data(model.index(0, 0), ExecutionRole).name == "busy"
    assert "busy" in model.data(model.index(0, 0), Qt.ToolTipRole)
    busy = model.execution(0)
    model.upsert(engine.store.update(busy.id, state="finished", finished_at=time.time()))
    qtbot.waitUntil(lambda: not view._spin.isActive(), timeout=2000)


def test_context_menu_and_three_dots(qtbot, open_window, make_lab, mldesk_home):
    lab = make_lab("print('x')\n")
    eng = Engine(mldesk_home)
    snap = eng.snapshots.create(lab).id
    first = insert(eng, lab, name="first", snapshot=snap, created=time.time() - 20)
    second = insert(eng, lab, name="second", snapshot=snap, created=time.time() - 10)
    eng.close()
    window = open_window(lab)
    opened = []
    window.outputs_panel.open_url = lambda url: opened.append(url.toLocalFile())
    assert [window.model.execution(r).name for r in range(2)] == ["second", "first"]
    # the three dots of the second row open the menu for that row
    idx = window.model.index_of(first.id)
    rect = window.execution_list.visualRect(idx)
    dots = window.execution_list.delegate.dots_rect(rect)
    qtbot.mouseClick(window.execution_list.viewport(), Qt.LeftButton, pos=dots.center())
    menu = window.execution_menu
    assert menu.isVisible()
    texts = [a.text() for a in menu.actions() if not a.isSeparator()]
    assert texts[:6] == ["Stop", "Restart", "Edit (rename)\u2026", "Remove", "Show code", "Open outputs folder"]
    assert texts[6:] == ["Compare code with the lab\u2026"]  # the experiments' actions that apply
    enabled = {a.text(): a.isEnabled() for a in menu.actions()[:8] if not a.isSeparator()}
    assert enabled == {"Stop": False, "Restart": True, "Edit (rename)\u2026": True, "Remove": True,
                       "Show code": True, "Open outputs folder": True}
    assert window.selected_ids() == []  # the dots do not change the selection
    # Show code (from that menu): the snapshot of that row, read-only
    next(a for a in menu.actions() if a.text() == "Show code").trigger()
    menu.close()
    assert window.code.in_snapshot() and window.code.current_editor().toPlainText() == "print('x')\n"
    assert window.code.snapshot_of.id == first.id
    window.select_execution(first.id, show_code=False)
    # Open outputs folder: none yet -> a banner, nothing opened
    window.act_open_outputs.trigger()
    assert not opened and window.banner.isVisible()
    window.engine.outputs_dir(first.id).mkdir(parents=True)
    window.act_open_outputs.trigger()
    assert opened == [str(window.engine.outputs_dir(first.id))]
    # a right click selects the row under the mouse
    rect = window.execution_list.visualRect(window.model.index_of(second.id))
    window.execution_list._on_context_menu(rect.center())
    assert window.selected_ids() == [second.id]
    window.execution_menu.close()


def test_sidebar_shows_new_execution_from_the_cli_side(qtbot, open_window, make_lab, mldesk_home):
    """An execution started by another process (here: another Engine) appears through
    the engine's events, within a second."""
    lab = make_lab("print('from elsewhere')\n")
    window = open_window(lab)
    other = Engine(mldesk_home)
    try:
        ex = other.run(lab, runtime="process", name="started elsewhere")
        wait_for(qtbot, lambda: window.model.get(ex.id) is not None, 1.0, "the event")
        wait_for(qtbot, lambda: window.model.get(ex.id).final, 20, "its end")
    finally:
        other.close()


def test_filter_box_and_readable_default_names(qtbot, open_window, make_lab, mldesk_home):
    from mldesk.ui import fmt

    lab = make_lab("print('x')\n")
    eng = Engine(mldesk_home)
    snap = eng.snapshots.create(lab).id
    a = insert(eng, lab, name="baseline", snapshot=snap, created=time.time() - 30)
    b = insert(eng, lab, snapshot=snap, created=time.time() - 20)  # a default name: #<id>
    c = insert(eng, lab, name="sweep", state="failed", snapshot=snap, created=time.time() - 10)
    eng.store.update(c.id, argv=["--lr=0.1"])
    eng.close()
    window = open_window(lab)
    wait_for(qtbot, lambda: window.model.rowCount() == 3, 5, "the executions")
    window.exec_filter.setText("failed")
    assert window.sidebar_filter.visible_ids() == [c.id]
    window.exec_filter.setText("lr=0.1")
    assert window.sidebar_filter.visible_ids() == [c.id]
    window.exec_filter.setText("BASE")
    assert window.sidebar_filter.visible_ids() == [a.id]
    window.exec_filter.clear()
    assert len(window.sidebar_filter.visible_ids()) == 3
    shown, muted = fmt.name_parts(window.model.get(b.id))
    assert shown == "#" + b.id.rsplit("-", 1)[1] and b.id.rsplit("-", 1)[0] in muted
    assert fmt.name_parts(window.model.get(a.id)) == ("baseline", "")
    window.execution_list.grab()  # the delegate paints both kinds of names
