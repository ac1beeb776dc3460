"""Content-addressed snapshots: dedupe, exclude globs, restore, GC, stat cache."""

from __future__ import annotations

import os

import pytest

from mldesk.core.snapshots import SnapshotError, SnapshotStore
from tests.helpers.fstree import tree


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


def big_lab(root):
    """300+ files in nested folders (enough for the parallel path), odd modes, links,
    an empty file and one larger than a copy chunk."""
    files = {f"data/g{i % 7}/d{i % 3}/f{i}.bin": f"content {i}" * (i % 5) for i in range(320)}
    lab = make_lab(root, {"main.py": "print(1)", **files})
    os.chmod(lab / "main.py", 0o755)
    os.chmod(lab / "data/g1/d1/f1.bin", 0o400)
    os.chmod(lab / "data/g2/d2/f2.bin", 0o4755)  # set-uid is never materialised
    (lab / "big.bin").write_bytes(os.urandom(3 << 20))
    os.symlink("data/g0", lab / "to_dir")
    os.symlink("../outside", lab / "data/up")
    os.symlink("missing-target", lab / "dangling")
    return lab


@pytest.mark.parametrize("owner_only", [False, True])
def test_parallel_materialize_equals_one_by_one(store, tmp_path, owner_only):
    lab = big_lab(tmp_path / "lab")
    snap = store.create(lab)
    fast = tmp_path / "fast"
    store.materialize(snap.id, fast, owner_only=owner_only)
    slow = tmp_path / "slow"  # a folder that already holds a file takes the one-by-one path
    slow.mkdir()
    (slow / "main.py").write_text("old content, overwritten")
    store.materialize(snap.id, slow, owner_only=owner_only)
    t_fast, t_slow = tree(fast), tree(slow)
    assert t_fast == t_slow
    assert t_fast["main.py"] == ("file", 0o755 if not owner_only else 0o700, b"print(1)")
    assert t_fast["data/g1/d1/f1.bin"][1] == 0o600, "owner-writable, as before"
    assert t_fast["data/g2/d2/f2.bin"][1] == (0o755 if not owner_only else 0o700), "no set-uid bit"
    assert t_fast["big.bin"][2] == (lab / "big.bin").read_bytes()
    assert t_fast["to_dir"] == ("link", "data/g0") and t_fast["dangling"] == ("link", "missing-target")
    assert t_fast["data/up"] == ("link", "../outside")
    lab_files = {k: v for k, v in tree(lab).items() if v[0] != "file"}
    assert {k: v for k, v in t_fast.items() if v[0] != "file"} == lab_files
    assert sum(1 for v in t_fast.values() if v[0] == "file") == 322
    if owner_only:
        assert all(v[1] & 0o077 == 0 for v in t_fast.values() if v[0] == "file")


def test_materialize_into_empty_existing_folder_and_new_parents(store, tmp_path):
    lab = big_lab(tmp_path / "lab")
    snap = store.create(lab)
    (tmp_path / "empty").mkdir()
    store.materialize(snap.id, tmp_path / "empty")
    store.materialize(snap.id, tmp_path / "new" / "parents" / "ws")
    assert tree(tmp_path / "empty") == tree(tmp_path / "new" / "parents" / "ws") == tree(lab) | {
        "data/g2/d2/f2.bin": ("file", 0o755, (lab / "data/g2/d2/f2.bin").read_bytes()),
        "data/g1/d1/f1.bin": ("file", 0o600, (lab / "data/g1/d1/f1.bin").read_bytes())}


def test_materialize_copies_are_not_links_into_the_store(store, tmp_path):
    lab = big_lab(tmp_path / "lab")
    snap = store.create(lab)
    ws = tmp_path / "ws"
    store.materialize(snap.id, ws, owner_only=True)
    blob_inodes = {os.stat(b).st_ino for b in blob_files(store)}
    for dirpath, _, filenames in os.walk(ws):
        for name in filenames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                assert os.stat(p).st_nlink == 1 and os.stat(p).st_ino not in blob_inodes
    (ws / "main.py").write_text("changed by the program")
    assert store.read_file(snap.id, "main.py") == b"print(1)"


def test_materialize_with_a_missing_blob_names_the_file(store, tmp_path):
    lab = big_lab(tmp_path / "lab")
    snap = store.create(lab)
    sha = store.manifest(snap.id)["data/g4/d1/f151.bin"][0]
    os.chmod(store.blob_path(sha).parent, 0o700)
    store.blob_path(sha).unlink()
    with pytest.raises(SnapshotError, match=f"blob {sha} of data/g4/d1/f151.bin is missing"):
        store.materialize(snap.id, tmp_path / "ws")


def test_materialize_without_copy_file_range(store, tmp_path, monkeypatch):
    """A file system without copy_file_range (EXDEV/EOPNOTSUPP): read and write instead."""
    import errno

    lab = big_lab(tmp_path / "lab")
    snap = store.create(lab)
    calls = []

    def unsupported(*a):
        calls.append(a)
        raise OSError(errno.EOPNOTSUPP, "not supported")
    monkeypatch.setattr(os, "copy_file_range", unsupported)
    store.materialize(snap.id, tmp_path / "ws")
    assert calls, "copy_file_range was tried"
    monkeypatch.undo()
    store.materialize(snap.id, tmp_path / "ref")
    assert tree(tmp_path / "ws") == tree(tmp_path / "ref")


def test_blob_removed_behind_the_stores_back_heals_on_the_next_snapshot(store, tmp_path):
    lab = make_lab(tmp_path / "lab", {"main.py": "print(1)", "data.txt": "precious"})
    s1 = store.create(lab)
    blob = store.blob_path(store.manifest(s1.id)["data.txt"][0])
    blob.unlink()  # not through gc: the stat cache still says "stored"
    s2 = store.create(lab)
    assert s2.id == s1.id, "a cache hit is trusted (no look into the store per file)"
    with pytest.raises(SnapshotError, match="of data.txt is missing from the store"):
        store.materialize(s2.id, tmp_path / "ws1")
    s3 = store.create(lab)  # the missing blob's cache entry was forgotten: stored again
    assert s3.id == s1.id and blob.read_bytes() == b"precious"
    store.materialize(s3.id, tmp_path / "ws2")
    assert (tmp_path / "ws2" / "data.txt").read_text() == "precious"


def test_gc_forgets_only_the_cache_entries_of_removed_blobs(store, tmp_path, monkeypatch):
    lab = make_lab(tmp_path / "lab", {"keep.txt": "kept", "gone.txt": "old"})
    store.create(lab)
    other = make_lab(tmp_path / "other", {"keep.txt": "kept"})
    s2 = store.create(other)
    removed, freed = store.gc({s2.id})  # the blob "old" goes; lab's stat cache still names it
    assert removed == 1 and freed == len("old")
    stored = []
    real = store._store_blob
    monkeypatch.setattr(store, "_store_blob", lambda path: stored.append(path.name) or real(path))
    s3 = store.create(lab)
    assert stored == ["gone.txt"], "keep.txt still hit the cache, gone.txt was stored again"
    store.materialize(s3.id, tmp_path / "ws")
    assert (tmp_path / "ws" / "gone.txt").read_text() == "old"


def test_stat_cache_from_an_earlier_version_is_used_then_replaced(store, tmp_path, monkeypatch):
    import json

    lab = make_lab(tmp_path / "lab", {"main.py": "print(1)", "sub/a.txt": "a"})
    first = store.create(lab)
    cache = store._cache_file(lab.resolve())
    legacy = cache.with_suffix(".json")  # what mldesk wrote before (JSON)
    legacy.write_text(json.dumps(store._load_cache(cache)))
    cache.unlink()
    calls = []
    monkeypatch.setattr(store, "_store_blob", lambda path: calls.append(path))
    assert store.create(lab).id == first.id and calls == [], "the JSON cache was read"
    (lab / "new.txt").write_text("new")
    monkeypatch.undo()
    store.create(lab)
    assert cache.exists() and not legacy.exists()


@pytest.mark.parametrize("garbage", [b"", b"\x00\x01garbage", b"{not json", b"\xe9"])
def test_unreadable_stat_cache_means_hashing_again(store, tmp_path, garbage):
    lab = make_lab(tmp_path / "lab", {"main.py": "print(1)"})
    first = store.create(lab)
    store._cache_file(lab.resolve()).write_bytes(garbage)
    assert store.create(lab).id == first.id
    assert store.read_file(first.id, "main.py") == b"print(1)"


def test_exclude_patterns_match_names_and_paths_like_fnmatch(store, tmp_path):
    lab = make_lab(tmp_path / "lab", {
        "main.py": "", "a[1].txt": "", "a1.txt": "", "logs/x.log": "", "deep/logs/y.log": "",
        "keep/x.LOG": "", "ckpt/e1.pt": "", "ckpt/best.pt": "", "star*.md": "",
    })
    snap = store.create(lab, exclude=("a[1].txt", "*.log", "ckpt/e?.pt", "star[*].md"))
    assert sorted(store.manifest(snap.id)) == ["a[1].txt", "ckpt/best.pt", "keep/x.LOG", "main.py"]


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o477])
def test_blobs_are_owner_read_only_whatever_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        store = SnapshotStore(tmp_path / "blobs", tmp_path / "snapshots")
        lab = make_lab(tmp_path / "lab", {f"f{i}.txt": f"content {i}" for i in range(100)})
        (lab / "big.bin").write_bytes(os.urandom(3 << 20))  # the streaming path
        store.create(lab)
    finally:
        os.umask(old)
    modes = {os.stat(b).st_mode & 0o777 for b in blob_files(store)}
    assert modes == {0o400}


def test_a_blob_folder_removed_while_the_store_is_open_is_made_again(store, tmp_path):
    import shutil

    lab = make_lab(tmp_path / "lab", {"a.txt": "one"})
    s1 = store.create(lab)
    store.gc(set())  # gc keeps the sub-folders; remove them as a user might
    for sub in store.blobs.iterdir():
        if sub.is_dir():
            shutil.rmtree(sub)
    import hashlib

    prefix = hashlib.sha256(b"one").hexdigest()[:2]
    other = next(t for t in (f"two {i}" for i in range(100000))
                 if hashlib.sha256(t.encode()).hexdigest()[:2] == prefix)  # its blob goes in the same sub-folder
    (lab / "a.txt").write_text(other)
    s2 = store.create(lab)  # the same store object remembers having made that folder
    assert s2.id != s1.id and store.read_file(s2.id, "a.txt") == other.encode()
