"""The SQLite store: migrations, several processes at once, change feed, resolve."""

from __future__ import annotations

import multiprocessing
import sqlite3
import time

import pytest

from mldesk.core.store import MIGRATIONS, Execution, Store, StoreError, new_execution_id


def make(exec_id, name=None, state="finished", created=None):
    return Execution(
        id=exec_id, name=name or f"#{exec_id}", lab="/lab", host="local", runtime="process", image=None,
        hardware="cpu", state=state, exit_code=0, reason=None, created_at=created or time.time(),
        started_at=None, finished_at=None, snapshot="ab" * 12,
    )


def test_schema_version_and_wal(tmp_path):
    store = Store(tmp_path / "db.sqlite")
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()
    Store(tmp_path / "db.sqlite").close()  # reopening migrates nothing and works


def test_newer_schema_is_refused(tmp_path):
    conn = sqlite3.connect(tmp_path / "db.sqlite")
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 5}")
    conn.close()
    with pytest.raises(StoreError, match="newer mldesk"):
        Store(tmp_path / "db.sqlite")


def test_ids_sort_by_time():
    a = new_execution_id(1_700_000_000)
    b = new_execution_id(1_700_000_001)
    assert a < b and len(a) == len("20231114-221320-abcde")


def test_resolve_by_id_prefix_and_name(tmp_path):
    store = Store(tmp_path / "db")
    store.insert_execution(make("20261125-100000-aaaaa", "first"))
    store.insert_execution(make("20261125-100000-aabbb", "second"))
    store.insert_execution(make("20261125-110000-ccccc", "first"))
    assert store.resolve("20261125-11").id == "20261125-110000-ccccc"
    assert store.resolve("second").id == "20261125-100000-aabbb"
    with pytest.raises(StoreError, match="matches 2"):
        store.resolve("20261125-100000-aa")
    with pytest.raises(StoreError, match="matches 2"):
        store.resolve("first")
    with pytest.raises(StoreError, match="no execution"):
        store.resolve("zzz")
    with pytest.raises(StoreError, match="no execution"):
        store.resolve("%")  # LIKE wildcards are literal


def test_changes_since_and_tombstones(tmp_path):
    store = Store(tmp_path / "db")
    seq0 = store.seq()
    store.insert_execution(make("20261125-100000-aaaaa"))
    store.update("20261125-100000-aaaaa", name="renamed")
    rows, gone, seq1 = store.changes_since(seq0)
    assert [r.name for r in rows] == ["renamed"] and gone == []
    store.delete_execution("20261125-100000-aaaaa")
    rows, gone, seq2 = store.changes_since(seq1)
    assert rows == [] and gone == ["20261125-100000-aaaaa"] and seq2 > seq1


def test_update_only_if_state(tmp_path):
    store = Store(tmp_path / "db")
    store.insert_execution(make("20261125-100000-aaaaa", state="running"))
    assert store.update("20261125-100000-aaaaa", state="stopped", only_if_state=("finished",)) is None
    assert store.update("20261125-100000-aaaaa", state="stopped", only_if_state=("running",)).state == "stopped"


def _hammer(path, worker, n):
    store = Store(path)
    for i in range(n):
        store.insert_execution(make(f"20261125-1000{worker:02d}-{i:05d}"))
        store.update(f"20261125-1000{worker:02d}-{i:05d}", name=f"w{worker}-{i}")
    store.close()


def test_several_processes_at_once(tmp_path):
    path = tmp_path / "db"
    Store(path).close()
    procs = [multiprocessing.get_context("spawn").Process(target=_hammer, args=(path, w, 100)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    store = Store(path)
    rows = store.list()
    assert len(rows) == 400 and all(r.name.startswith("w") for r in rows)
    assert store.seq() == 800 + len(MIGRATIONS) * 0


def test_claim_removal_only_once(tmp_path):
    store = Store(tmp_path / "db")
    store.insert_execution(make("20261125-100000-aaaaa"))
    assert store.claim_removal("20261125-100000-aaaaa")
    assert not store.claim_removal("20261125-100000-aaaaa")
    store.insert_execution(make("20261125-100000-bbbbb", state="running"))
    assert not store.claim_removal("20261125-100000-bbbbb")


def test_overrides_and_sweep_migration_keeps_old_rows(tmp_path):
    """A store written before overrides/sweeps existed opens with them empty."""
    path = tmp_path / "db.sqlite"
    conn = sqlite3.connect(path)
    version = next(i for i, m in enumerate(MIGRATIONS) if "ADD COLUMN overrides" in m)
    for number in range(version):
        conn.executescript(MIGRATIONS[number])
    conn.execute(f"PRAGMA user_version = {version}")
    conn.execute("UPDATE meta SET value = 1 WHERE key = 'seq'")
    conn.execute("INSERT INTO executions (id, name, lab, runtime, state, created_at, snapshot, seq) "
                 "VALUES ('old', 'old run', '/lab', 'process', 'finished', 1.0, 'snap', 1)")
    conn.commit()
    conn.close()
    store = Store(path)
    old = store.get("old")
    assert old.overrides == {} and old.sweep is None and old.name == "old run"
    new = make(new_execution_id())
    new.overrides, new.sweep = {"lr": "0.1"}, "sweep-1"
    store.insert_execution(new)
    assert store.get(new.id).overrides == {"lr": "0.1"}
    assert [e.id for e in store.list(sweep="sweep-1")] == [new.id]
    assert store.get(new.id).public()["sweep"] == "sweep-1"
    store.close()


def test_list_hidden_only(tmp_path):
    from mldesk.core.store import Hidden

    store = Store(tmp_path / "db.sqlite")
    for i, hidden in enumerate([Hidden.SHOWN, Hidden.PENDING_UNDO, Hidden.SHOWN, Hidden.REMOVING]):
        store.insert_execution(make(f"e{i}", created=1000.0 + i))
        if hidden:
            store.update(f"e{i}", hidden=hidden, hidden_at=5.0)
    assert [e.id for e in store.list(hidden_only=True)] == ["e3", "e1"]
    assert [e.id for e in store.list(hidden_only=True, include_hidden=True)] == ["e3", "e1"]
    assert [e.id for e in store.list()] == ["e2", "e0"]
    assert [e.id for e in store.list(include_hidden=True)] == ["e3", "e2", "e1", "e0"]
    store.close()
