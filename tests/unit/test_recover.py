"""Engine.recover (every CLI command and the window start with it): hidden rows whose
undo window died with the process that hid them come back, interrupted removals are
finished, recent hidden rows and every visible one are left alone."""

from __future__ import annotations

import time

from mldesk.core.store import Execution, Hidden
from mldesk.engine.facade import Engine


def row(exec_id: str, created: float) -> Execution:
    return Execution(
        id=exec_id, name=f"#{exec_id}", lab="/lab", host="local", runtime="process", image=None,
        hardware="cpu", state="finished", exit_code=0, reason=None, created_at=created,
        started_at=None, finished_at=None, snapshot="ab" * 12,
    )


def test_recover_unhides_stale_finishes_removals_and_leaves_the_rest(tmp_path):
    engine = Engine(tmp_path / "home")
    now = time.time()
    for i in range(50):  # history
        engine.store.insert_execution(row(f"v{i:02d}", now - 1000 + i))
    cases = {
        "stale-undo": (Hidden.PENDING_UNDO, now - 120),
        "fresh-undo": (Hidden.PENDING_UNDO, now - 5),
        "stale-removing": (Hidden.REMOVING, now - 120),
        "fresh-removing": (Hidden.REMOVING, now - 5),
    }
    for exec_id, (hidden, at) in cases.items():
        engine.store.insert_execution(row(exec_id, now - 500))
        engine.layout.execution_dir(exec_id).mkdir(parents=True)
        engine.store.update(exec_id, hidden=hidden, hidden_at=at)
    assert engine.recover() == []
    assert engine.store.get("stale-undo").hidden == Hidden.SHOWN
    assert engine.store.get("fresh-undo").hidden == Hidden.PENDING_UNDO
    assert engine.store.get("stale-removing") is None
    assert not engine.layout.execution_dir("stale-removing").exists()
    assert engine.store.get("fresh-removing").hidden == Hidden.REMOVING
    assert engine.layout.execution_dir("fresh-removing").exists()
    assert len(engine.list()) == 51  # the history and the one that came back
    engine.close()
