"""Reused workspaces (core/workspaces.py): the next run of a lab gets exactly a fresh
copy of its snapshot, whatever the last program did to the kept workspace."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from mldesk.core import workspaces
from mldesk.core.snapshots import SnapshotStore
from mldesk.core.workspaces import WorkspacePool, held_by_a_process, read_record, valid_record
from tests.helpers.fstree import tree as _tree


def tree(root):
    return _tree(root, detail=True)


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setattr(workspaces, "MIN_FILES", 1)  # these small trees are kept too
    lab = tmp_path / "lab"
    for i in range(30):
        p = lab / "data" / f"d{i % 3}" / f"f{i}.txt"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"file {i}\n" * 10)
    (lab / "main.py").write_text("print('hi')\n")
    (lab / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(lab / "run.sh", 0o755)
    os.symlink("data/d0/f0.txt", lab / "first")
    snaps = SnapshotStore(tmp_path / "blobs", tmp_path / "snapshots")
    pool = WorkspacePool(tmp_path / "pool", snaps)
    (tmp_path / "ex").mkdir()
    return lab, snaps, pool, tmp_path


def fresh(snaps, snap_id, dest):
    snaps.materialize(snap_id, dest, owner_only=True)
    return tree(dest)


def test_first_run_copies_and_records(env):
    lab, snaps, pool, tmp = env
    snap = snaps.create(lab)
    ws = tmp / "ex" / "ws1"
    reused, total, record = pool.materialize(snap.id, ws, lab=str(lab))
    assert (reused, total) == (0, 32)
    assert tree(ws) == fresh(snaps, snap.id, tmp / "expected")
    assert valid_record(record)
    assert set(record["files"]) == {r for r, e in snaps.manifest(snap.id).items() if e[0] != "link"}
    assert all(v[2] < record["marker"] for v in record["files"].values())


def test_reused_workspace_is_exactly_a_fresh_copy_after_a_hostile_program(env):
    lab, snaps, pool, tmp = env
    snap = snaps.create(lab)
    ws1 = tmp / "ex" / "ws1"
    rec1 = pool.materialize(snap.id, ws1, lab=str(lab))[2]
    inodes = {p: os.lstat(ws1 / p).st_ino for p in ("main.py", "data/d1/f1.txt", "data/d2/f29.txt")}
    # what a program may do to its workspace
    victim = ws1 / "data/d0/f3.txt"
    st = os.stat(victim)
    victim.write_text("FILE 3\n" * 10)  # same size, then the old mtime back
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.chmod(ws1 / "data/d0/f6.txt", 0o777)  # mode
    os.chmod(ws1 / "data/d0/f9.txt", 0o4700)  # set-uid
    (ws1 / "data/d1/f4.txt").unlink()  # deleted
    (ws1 / "data/d1/f7.txt").unlink()
    os.symlink("/etc/passwd", ws1 / "data/d1/f7.txt")  # a file replaced by a link
    os.link(ws1 / "data/d2/f5.txt", tmp / "outside-link")  # a hard link kept outside
    (ws1 / "extra.txt").write_text("left behind")
    (ws1 / "outputs" / "deep").mkdir(parents=True)
    (ws1 / "outputs" / "deep" / "model.bin").write_bytes(b"x" * 100)
    locked = ws1 / "locked"
    locked.mkdir()
    (locked / "inner").write_text("x")
    os.chmod(locked, 0)
    os.chmod(ws1 / "data" / "d2", 0o755)  # a folder's mode
    os.unlink(ws1 / "first")
    (ws1 / "first").write_text("not a link any more")
    os.rename(ws1 / "data/d0/f12.txt", ws1 / "data/d0/f12.tmp")  # renamed away and back
    os.rename(ws1 / "data/d0/f12.tmp", ws1 / "data/d0/f12.txt")
    assert pool.retire(ws1, rec1, lab=str(lab)) is True
    assert not ws1.exists()
    changed = {"data/d0/f3.txt", "data/d0/f6.txt", "data/d0/f9.txt", "data/d1/f4.txt",
               "data/d1/f7.txt", "data/d2/f5.txt", "data/d0/f12.txt"}
    # kept is only what is provably as mldesk wrote it: the outputs (collected), the
    # extra files and folders, the changed files are gone already (no room taken)
    manifest = snaps.manifest(snap.id)
    kept = tree(next(pool.root.iterdir()) / "tree")
    assert {r for r, v in kept.items() if v[0] != "dir"} == \
        {r for r, e in manifest.items() if e[0] != "link"} - changed
    assert {r for r, v in kept.items() if v[0] == "dir"} == {"data", "data/d0", "data/d1", "data/d2"}

    ws2 = tmp / "ex" / "ws2"
    reused, total, _ = pool.materialize(snap.id, ws2, lab=str(lab))
    assert (reused, total) == (total - len(changed), 32)
    assert tree(ws2) == fresh(snaps, snap.id, tmp / "expected")
    for rel, ino in inodes.items():  # the untouched files were kept, not copied
        assert os.lstat(ws2 / rel).st_ino == ino
    assert (tmp / "outside-link").read_text() == "file 5\n" * 10  # never written through
    assert not any(pool.root.iterdir())  # claimed: the lab's next run finds none


def test_a_changed_snapshot_replaces_only_what_changed(env):
    lab, snaps, pool, tmp = env
    snap = snaps.create(lab)
    ws1 = tmp / "ex" / "ws1"
    assert pool.retire(ws1, pool.materialize(snap.id, ws1, lab=str(lab))[2], lab=str(lab))
    (lab / "main.py").write_text("print('changed')\n")
    (lab / "data" / "d1" / "f1.txt").unlink()
    (lab / "new" / "sub").mkdir(parents=True)
    (lab / "new" / "sub" / "n.txt").write_text("new")
    snap2 = snaps.create(lab)
    ws2 = tmp / "ex" / "ws2"
    reused, total, rec2 = pool.materialize(snap2.id, ws2, lab=str(lab))
    assert (reused, total) == (30, 32)
    assert tree(ws2) == fresh(snaps, snap2.id, tmp / "expected")
    assert set(rec2["files"]) == {r for r, e in snaps.manifest(snap2.id).items() if e[0] != "link"}


def test_a_file_written_in_the_records_last_tick_is_not_trusted(env):
    """ctime has a clock tick's resolution: a file whose recorded ctime is not older
    than the record's marker could have been changed unnoticed."""
    lab, snaps, pool, tmp = env
    snap = snaps.create(lab)
    ws1 = tmp / "ex" / "ws1"
    rec = pool.materialize(snap.id, ws1, lab=str(lab))[2]
    rec["marker"] = rec["files"]["main.py"][2]  # as if main.py was written in the marker's tick
    assert pool.retire(ws1, rec, lab=str(lab))
    reused, total, _ = pool.materialize(snap.id, tmp / "ex" / "ws2", lab=str(lab))
    assert reused < total
    assert tree(tmp / "ex" / "ws2") == fresh(snaps, snap.id, tmp / "expected")


@pytest.mark.parametrize("how", ["cwd", "open-file"])
def test_a_workspace_a_process_still_holds_is_not_kept(env, how):
    lab, snaps, pool, tmp = env
    snap = snaps.create(lab)
    ws1 = tmp / "ex" / "ws1"
    rec1 = pool.materialize(snap.id, ws1, lab=str(lab))[2]
    code = ("import sys, time; f = open(sys.argv[1], 'r+'); print('ready', flush=True); time.sleep(60)"
            if how == "open-file" else "import time; print('ready', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(ws1 / "data/d0/f0.txt")],
                            cwd=ws1 if how == "cwd" else tmp, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "ready\n"
        assert held_by_a_process(ws1)
        assert pool.retire(ws1, rec1, lab=str(lab)) is False
    finally:
        proc.kill()
        proc.wait()
    assert not ws1.exists()
    assert not (pool.root.exists() and any(pool.root.iterdir()))
    assert not held_by_a_process(tmp / "ex")


def test_a_missing_or_broken_record_means_a_fresh_copy(env):
    lab, snaps, pool, tmp = env
    snap = snaps.create(lab)
    ws1 = tmp / "ex" / "ws1"
    pool.materialize(snap.id, ws1, lab=str(lab))
    assert pool.retire(ws1, None, lab=str(lab)) is False  # (a supervisor that took over)
    assert not ws1.exists()
    ws2 = tmp / "ex" / "ws2"
    assert pool.retire(ws2, pool.materialize(snap.id, ws2, lab=str(lab))[2], lab=str(lab))
    entry = next(p for p in pool.root.iterdir())
    assert read_record(entry / "record") is not None
    (entry / "record").write_bytes(b"\0garbage")  # broken while kept
    assert pool.materialize(snap.id, tmp / "ex" / "ws3", lab=str(lab))[:2] == (0, 32)
    assert tree(tmp / "ex" / "ws3") == fresh(snaps, snap.id, tmp / "expected")


def test_pool_keeps_the_most_recent_few(env, monkeypatch):
    lab, snaps, pool, tmp = env
    snap = snaps.create(lab)
    for i in range(4):
        ws = tmp / "ex" / f"ws{i}"
        rec = pool.materialize(snap.id, ws, lab=str(tmp / f"lab{i}"))[2]
        assert pool.retire(ws, rec, lab=str(tmp / f"lab{i}"))
        time.sleep(0.01)
    kept = sorted(os.listdir(pool.root))
    assert len(kept) == workspaces.KEEP
    # the most recent labs' workspaces are the ones kept
    assert pool.materialize(snap.id, tmp / "ex" / "a", lab=str(tmp / "lab3"))[0] == 32
    assert pool.materialize(snap.id, tmp / "ex" / "b", lab=str(tmp / "lab0"))[0] == 0
    pool.prune(keep=0, max_age=0)
    assert os.listdir(pool.root) == []


def test_two_runs_of_a_lab_retiring_at_once_leave_one_and_no_litter(env, monkeypatch):
    lab, snaps, pool, tmp = env
    snap = snaps.create(lab)
    recs = [pool.materialize(snap.id, tmp / "ex" / f"ws{i}", lab=str(lab))[2] for i in range(2)]
    real_rename = os.rename

    def racing_rename(src, dst):  # the other run's retire lands between our two renames
        if str(dst) == str(pool.root / workspaces._key(str(lab))) and str(src).startswith(str(pool.root / ".new")):
            monkeypatch.setattr(os, "rename", real_rename)
            assert pool.retire(tmp / "ex" / "ws1", recs[1], lab=str(lab))
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", racing_rename)
    assert pool.retire(tmp / "ex" / "ws0", recs[0], lab=str(lab)) is False
    assert sorted(os.listdir(pool.root)) == [workspaces._key(str(lab))]
    assert not (tmp / "ex" / "ws0").exists()


LOCKED_OUT = r"""
import os, sys
from pathlib import Path
from mldesk.core.snapshots import SnapshotStore
from mldesk.core import workspaces
from mldesk.core.workspaces import WorkspacePool
workspaces.MIN_FILES = 1
tmp = Path(sys.argv[1])
lab = tmp / "lab"
(lab / "sub").mkdir(parents=True)
(lab / "main.py").write_text("x")
(lab / "sub" / "a.txt").write_text("a")
snaps = SnapshotStore(tmp / "blobs", tmp / "snapshots")
pool = WorkspacePool(tmp / "pool", snaps)
snap = snaps.create(lab)
(tmp / "ex").mkdir()
ws1 = tmp / "ex" / "ws1"
rec = pool.materialize(snap.id, ws1, lab=str(lab))[2]
cache = tmp / "cache-file"
cache.write_text("input")
os.chmod(cache, 0o400)
(ws1 / "inputs").mkdir()
os.link(cache, ws1 / "inputs" / "data.csv")   # as inputs are hard-linked from the cache
os.chmod(ws1 / "inputs", 0o500)                # a folder it cannot delete from
(ws1 / "locked" / "deeper").mkdir(parents=True)
(ws1 / "locked" / "deeper" / "f").write_text("f")
os.chmod(ws1 / "locked" / "deeper", 0)         # nor read
os.chmod(ws1 / "locked", 0o100)
os.chmod(ws1 / "sub", 0o500)                   # a folder of the lab made read-only
assert pool.retire(ws1, rec, lab=str(lab))
reused, total, _ = pool.materialize(snap.id, tmp / "ex" / "ws2", lab=str(lab))
print(reused, total, oct(os.stat(cache).st_mode & 0o777), sorted(os.listdir(tmp / "ex" / "ws2")),
      os.listdir(tmp / "pool"))
"""


def test_folders_a_program_locked_are_removed_as_its_user_and_the_input_cache_is_untouched(tmp_path):
    """As an unprivileged user (root ignores permissions): folders made unreadable or
    read-only are emptied, and a hard link to a read-only cache file is removed
    without making that file writable."""
    import tempfile

    work = tempfile.mkdtemp(prefix="mldesk-ws-")
    try:
        cmd = [sys.executable, "-c", LOCKED_OUT, work]
        if os.getuid() == 0:
            os.chown(work, 65534, 65534)
            cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd="/")
        assert out.returncode == 0, out.stderr
        assert out.stdout.split("\n")[0] == "2 2 0o400 ['main.py', 'sub'] []"
    finally:
        subprocess.run(["rm", "-rf", work])


def test_a_small_workspace_is_not_kept(env, monkeypatch):
    """Copying a few files costs less than keeping them: no record, deleted as before."""
    lab, snaps, pool, tmp = env
    snap = snaps.create(lab)
    monkeypatch.setattr(workspaces, "MIN_FILES", 33)
    ws = tmp / "ex" / "ws1"
    assert pool.materialize(snap.id, ws, lab=str(lab))[2] is None
    monkeypatch.setattr(workspaces, "MIN_FILES", 32)
    assert valid_record(pool.materialize(snap.id, tmp / "ex" / "ws2", lab=str(lab))[2])
    monkeypatch.setattr(workspaces, "MIN_FILES", 10**6)
    monkeypatch.setattr(workspaces, "MIN_BYTES", sum(e[1] for e in snaps.manifest(snap.id).values() if e[0] != "link"))
    assert valid_record(pool.materialize(snap.id, tmp / "ex" / "ws3", lab=str(lab))[2])
