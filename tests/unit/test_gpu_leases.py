"""GPU leases in the store: one transaction takes them when an execution leaves
``queued``; final states free them; first come, first served; never two holders of
one GPU, whichever process asks (real SQLite, real processes)."""

from __future__ import annotations

import errno
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from mldesk.core.store import MIGRATIONS, Execution, Store

HOST = "gpu-box"


def make(exec_id, *, gpus=1, created=None, host=HOST, state="preparing"):
    return Execution(
        id=exec_id, name=f"#{exec_id}", lab="/lab", host=host, runtime="process", image=None,
        hardware="gpu" if gpus else "cpu", state=state, exit_code=None, reason=None,
        created_at=created if created is not None else time.time(), started_at=None, finished_at=None,
        snapshot="ab" * 12, options={"gpus": gpus},
    )


def test_migration_is_one_self_contained_step(tmp_path):
    steps = [m for m in MIGRATIONS if "gpu_leases" in m]
    assert len(steps) == 1 and "ALTER TABLE" not in steps[0]
    store = Store(tmp_path / "db")
    assert store.conn.execute("SELECT COUNT(*) FROM gpu_leases").fetchone()[0] == 0
    store.close()


def test_two_of_three_run_third_waits_with_reason_then_starts(tmp_path):
    store = Store(tmp_path / "db")
    for i in range(3):
        store.insert_execution(make(f"e{i}", created=100.0 + i))
    a = store.claim_start("e0", gpus=1, host_gpus=[0, 1])
    b = store.claim_start("e1", gpus=1, host_gpus=[0, 1])
    c = store.claim_start("e2", gpus=1, host_gpus=[0, 1])
    assert a.ok and b.ok and not c.ok
    assert {a.gpus[0], b.gpus[0]} == {0, 1}
    assert c.reason == "waiting for 1 free GPU on gpu-box (2 of 2 busy)"
    ex = store.get("e2")
    assert ex.state == "queued" and ex.reason == c.reason
    assert store.gpu_leases() == {HOST: {a.gpus[0]: "e0", b.gpus[0]: "e1"}}
    store.update("e0", state="stopped")  # any final state frees them, in the same commit
    c = store.claim_start("e2", gpus=1, host_gpus=[0, 1])
    assert c.ok and c.gpus == a.gpus
    ex = store.get("e2")
    assert ex.state == "preparing" and ex.reason is None
    assert store.gpus_of("e0") == a.gpus  # still says what it held once ended
    assert store.gpu_leases(HOST) == {HOST: {a.gpus[0]: "e2", b.gpus[0]: "e1"}}


def test_first_come_first_served(tmp_path):
    """A later execution asking for 1 GPU does not overtake an earlier one asking for 2."""
    store = Store(tmp_path / "db")
    store.insert_execution(make("e0", gpus=1, created=1.0))
    store.insert_execution(make("e1", gpus=2, created=2.0))
    store.insert_execution(make("e2", gpus=1, created=3.0))
    assert store.claim_start("e0", gpus=1, host_gpus=[0, 1]).ok
    w = store.claim_start("e1", gpus=2, host_gpus=[0, 1])
    assert not w.ok and w.reason == "waiting for 2 free GPUs on gpu-box (1 of 2 busy)"
    late = store.claim_start("e2", gpus=1, host_gpus=[0, 1])
    assert not late.ok and "1 earlier execution first" in late.reason
    store.update("e0", state="finished")
    assert store.claim_start("e1", gpus=2, host_gpus=[0, 1]).gpus == [0, 1]


def test_specific_indices_and_impossible_requests(tmp_path):
    store = Store(tmp_path / "db")
    store.insert_execution(make("e0", gpus=[2], created=1.0))
    store.insert_execution(make("e1", gpus=[0, 2], created=2.0))
    store.insert_execution(make("e2", gpus=[5], created=3.0))
    store.insert_execution(make("e3", gpus=4, created=4.0))
    assert store.claim_start("e0", gpus=[2], host_gpus=[0, 1, 2]).gpus == [2]
    w = store.claim_start("e1", gpus=[0, 2], host_gpus=[0, 1, 2])
    assert not w.ok and w.reason == "waiting for GPU 0, 2 on gpu-box (1 of 3 busy)"
    bad = store.claim_start("e2", gpus=[5], host_gpus=[0, 1, 2])
    assert bad.impossible and "has no GPU 5" in bad.reason
    big = store.claim_start("e3", gpus=4, host_gpus=[0, 1, 2])
    assert big.impossible and "asks for 4 GPUs but gpu-box has 3" in big.reason


def test_resumed_supervisor_keeps_its_gpus_and_stale_leases_are_freed(tmp_path):
    store = Store(tmp_path / "db")
    store.insert_execution(make("e0", created=1.0))
    store.insert_execution(make("e1", created=2.0))
    assert store.claim_start("e0", gpus=1, host_gpus=[0]).gpus == [0]
    assert store.claim_start("e0", gpus=1, host_gpus=[0]).gpus == [0]  # a resumed supervisor
    assert not store.claim_start("e1", gpus=1, host_gpus=[0]).ok
    # a final state written behind the store's back (an old mldesk): the next claim frees it
    store.conn.execute("UPDATE executions SET state = 'failed' WHERE id = 'e0'")
    assert store.claim_start("e1", gpus=1, host_gpus=[0]).gpus == [0]
    store.update("e1", state="finished")
    store.delete_execution("e1")
    assert store.gpus_of("e1") == []


def test_max_parallel_applies_on_top(tmp_path):
    store = Store(tmp_path / "db")
    store.insert_execution(make("e0", gpus=0, created=1.0))
    store.insert_execution(make("e1", gpus=1, created=2.0))
    assert store.claim_start("e0", max_parallel=1, gpus=0, host_gpus=[0, 1]).ok
    w = store.claim_start("e1", max_parallel=1, gpus=1, host_gpus=[0, 1])
    assert not w.ok and w.reason == "waiting for a free slot on gpu-box (1 of 1 running)"
    store.update("e0", state="finished")
    assert store.claim_start("e1", max_parallel=1, gpus=1, host_gpus=[0, 1]).ok


def test_other_hosts_are_separate(tmp_path):
    store = Store(tmp_path / "db")
    store.insert_execution(make("e0", created=1.0))
    store.insert_execution(make("e1", created=2.0, host="other"))
    assert store.claim_start("e0", gpus=1, host_gpus=[0]).gpus == [0]
    assert store.claim_start("e1", gpus=1, host_gpus=[0]).gpus == [0]


# -- racing processes ------------------------------------------------------------------------

def _race_worker(db: str, exec_id: str, marks: str, barrier, hold: float) -> None:
    """Claim until granted; while holding, own an O_EXCL marker file per GPU: a second
    holder of the same GPU would find the file there and record the clash."""
    store = Store(db)
    barrier.wait()
    while True:
        claim = store.claim_start(exec_id, gpus=1, host_gpus=[0, 1])
        if claim.ok:
            break
        time.sleep(0.005)
    store.update(exec_id, state="running")
    for gpu in claim.gpus:
        try:
            fd = os.open(os.path.join(marks, f"gpu{gpu}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            os.write(fd, exec_id.encode())
            os.close(fd)
        except OSError as exc:
            assert exc.errno == errno.EEXIST
            Path(marks, f"clash-{exec_id}").write_text(str(gpu))
    Path(marks, f"got-{exec_id}").write_text(",".join(map(str, claim.gpus)))
    time.sleep(hold)
    for gpu in claim.gpus:
        os.unlink(os.path.join(marks, f"gpu{gpu}"))
    store.update(exec_id, state="finished")  # frees the GPU in the same commit
    store.close()


@pytest.mark.parametrize("n", [8])
def test_racing_processes_never_share_a_gpu(tmp_path, n):
    db = str(tmp_path / "db")
    store = Store(db)
    for i in range(n):
        store.insert_execution(make(f"e{i}", created=float(i)))
    store.close()
    marks = tmp_path / "marks"
    marks.mkdir()
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(n)
    procs = [ctx.Process(target=_race_worker, args=(db, f"e{i}", str(marks), barrier, 0.05)) for i in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert sorted(p.name for p in marks.iterdir() if p.name.startswith("clash")) == []
    assert len([p for p in marks.iterdir() if p.name.startswith("got-")]) == n
    store = Store(db)
    assert all(store.get(f"e{i}").state == "finished" for i in range(n))
    assert store.gpu_leases() == {}
    assert all(len(store.gpus_of(f"e{i}")) == 1 for i in range(n))


def _claim_once(db: str, exec_id: str, barrier, out: str) -> None:
    store = Store(db)
    barrier.wait()
    claim = store.claim_start(exec_id, gpus=1, host_gpus=[0, 1, 2])
    Path(out, exec_id).write_text(",".join(map(str, claim.gpus)) if claim.ok else "queued")


def test_simultaneous_single_claims_hand_out_each_gpu_once(tmp_path):
    db = str(tmp_path / "db")
    store = Store(db)
    n = 8
    for i in range(n):
        store.insert_execution(make(f"e{i}", created=float(i)))
    out = tmp_path / "out"
    out.mkdir()
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(n)
    procs = [ctx.Process(target=_claim_once, args=(db, f"e{i}", barrier, str(out))) for i in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    got = [f.read_text() for f in out.iterdir()]
    granted = [g for g in got if g != "queued"]
    assert granted and len(set(granted)) == len(granted)  # an earlier one may still be unchecked
    for i in range(n):  # the rest ask again, in queue order: the first ones get the rest
        store.claim_start(f"e{i}", gpus=1, host_gpus=[0, 1, 2])
    held = store.gpu_leases()[HOST]
    assert sorted(held) == [0, 1, 2] and len(set(held.values())) == 3
    assert len([e for e in store.list() if e.state == "queued"]) == n - 3
