"""Content-addressed snapshots: dedupe, exclude globs, restore, GC, stat cache."""

from __future__ import annotations

import os

import pytest

from mldesk.core.snapshots import SnapshotError, SnapshotStore


@pytest.fixture
def store(tmp_path):
    return SnapshotStore(tmp_path / "blobs", tmp_path / "snapshots")


def blob_files(store):
    return sorted(p for p in store.blobs.rglob("*") if p.is_file() and len(p.name) == 64)


def make_lab(root, files):
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_same_content_same_id_and_stored_once(store, tmp_path):
    a = make_lab(tmp_path / "a", {"main.py": "print(1)", "data/x.txt": "same", "data/y.txt": "same"})
    b = make_lab(tmp_path / "b", {"main.py": "print(1)", "data/x.txt": "same", "data/y.txt": "same"})
    sa, sb = store.create(a), store.create(b)
    assert sa.id == sb.id
    assert len(blob_files(store)) == 2, "two distinct contents, stored once each"
    assert sb.new_bytes == 0


def test_unchanged_lab_resnapshot_reads_nothing(store, tmp_path, monkeypatch):
    lab = make_lab(tmp_path / "lab", {"main.py": "x" * 10000, "big.bin": "y" * 100000})
    first = store.create(lab)
    calls = []
    monkeypatch.setattr(store, "_store_blob", lambda path: calls.append(path))
    again = store.create(lab)
    assert again.id == first.id and calls == [], "the stat cache avoided hashing"


def test_change_is_picked_up(store, tmp_path):
    lab = make_lab(tmp_path / "lab", {"main.py": "print(1)"})
    s1 = store.create(lab)
    (lab / "main.py").write_text("print(2)")
    os.utime(lab / "main.py", ns=(1, 1))  # even with an old mtime: size+mtime+inode changed
    s2 = store.create(lab)
    assert s1.id != s2.id
    assert store.read_file(s2.id, "main.py") == b"print(2)"
    assert store.read_file(s1.id, "main.py") == b"print(1)"


def test_exclude_globs(store, tmp_path):
    lab = make_lab(tmp_path / "lab", {
        "main.py": "", ".git/config": "", "__pycache__/m.pyc": "", "sub/__pycache__/n.pyc": "",
        "data/keep.csv": "", "data/skip.npz": "", "notes.md": "",
    })
    snap = store.create(lab, exclude=(".*", "__pycache__", "data/*.npz"))
    assert sorted(store.manifest(snap.id)) == ["data/keep.csv", "main.py", "notes.md"]


def test_symlinks_are_recorded_not_followed(store, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("do not copy")
    lab = make_lab(tmp_path / "lab", {"main.py": ""})
    os.symlink(secret, lab / "link")
    snap = store.create(lab)
    assert store.manifest(snap.id)["link"] == ["link", str(secret)]
    assert all(b.read_bytes() != b"do not copy" for b in blob_files(store))


def test_materialize_and_restore(store, tmp_path):
    lab = make_lab(tmp_path / "lab", {"main.py": "v1", "sub/a.txt": "a", ".hidden": "mine"})
    os.chmod(lab / "main.py", 0o755)
    snap = store.create(lab, exclude=(".*",))
    out = tmp_path / "out"
    store.materialize(snap.id, out)
    assert (out / "main.py").read_text() == "v1" and (out / "sub/a.txt").read_text() == "a"
    assert os.stat(out / "main.py").st_mode & 0o111
    assert not (out / ".hidden").exists()
    # edit the lab, then restore: files back, new ones gone, excluded ones untouched
    (lab / "main.py").write_text("v2")
    (lab / "sub/a.txt").unlink()
    (lab / "new/deep").mkdir(parents=True)
    (lab / "new/deep/b.txt").write_text("b")
    (lab / ".hidden").write_text("still mine")
    store.restore(snap.id, lab, exclude=(".*",))
    assert (lab / "main.py").read_text() == "v1" and (lab / "sub/a.txt").read_text() == "a"
    assert not (lab / "new").exists()
    assert (lab / ".hidden").read_text() == "still mine"
    assert store.create(lab, exclude=(".*",)).id == snap.id


def test_gc_removes_only_unreferenced(store, tmp_path):
    lab = make_lab(tmp_path / "lab", {"main.py": "shared", "only1.txt": "one"})
    s1 = store.create(lab)
    (lab / "only1.txt").unlink()
    (lab / "only2.txt").write_text("two")
    s2 = store.create(lab)
    assert len(blob_files(store)) == 3
    removed, freed = store.gc({s2.id})
    assert removed == 1 and freed == len("one")
    assert not store.exists(s1.id) and store.exists(s2.id)
    assert sorted(b.read_text() for b in blob_files(store)) == ["shared", "two"]
    store.gc(set())
    assert blob_files(store) == []


def test_cache_hit_with_blob_gone_rehashes(store, tmp_path):
    lab = make_lab(tmp_path / "lab", {"main.py": "content"})
    s1 = store.create(lab)
    store.gc(set())  # blobs gone, stat cache still says "known"
    s2 = store.create(lab)
    assert s2.id == s1.id and store.read_file(s2.id, "main.py") == b"content"


def test_errors_are_clear(store, tmp_path):
    with pytest.raises(SnapshotError, match="does not exist"):
        store.create(tmp_path / "nope")
    with pytest.raises(SnapshotError, match="invalid snapshot id"):
        store.manifest("../../etc/passwd")
    with pytest.raises(SnapshotError, match="missing"):
        store.manifest("abc123")
