"""Output collection (SPEC 6, 10): symlinks never followed, limits, incremental, full disk."""

from __future__ import annotations

import errno
import os
import socket
import stat
import time
from pathlib import Path

import pytest

from mldesk.agent import outputs
from mldesk.agent.outputs import CollectError, CollectResult, collect_outputs

LINK = "symbolic link (links are not followed)"


@pytest.fixture
def ws(tmp_path):
    src = tmp_path / "workspace" / "outputs"
    src.mkdir(parents=True)
    return src


@pytest.fixture
def dest(tmp_path):
    return tmp_path / "collected"


def write(path: Path, data: bytes, mtime: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def tree(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_nested_tree_is_copied_with_mtimes(ws, dest):
    write(ws / "model.h5", b"m" * 1000, mtime=1_600_000_000)
    write(ws / "plots" / "loss.png", b"png")
    write(ws / "a" / "b" / "c" / "deep.txt", b"deep")
    (ws / "empty").mkdir()
    os.chmod(ws / "model.h5", 0o640)
    lines = []
    r = collect_outputs(ws, dest, on_message=lines.append)
    assert isinstance(r, CollectResult)
    assert (r.files, r.bytes, r.skipped, r.copied) == (3, 1007, [], 3)
    assert tree(dest) == {"model.h5": b"m" * 1000, "plots/loss.png": b"png", "a/b/c/deep.txt": b"deep"}
    assert (dest / "empty").is_dir()
    assert os.stat(dest / "model.h5").st_mtime_ns == os.stat(ws / "model.h5").st_mtime_ns
    # the owner's bits are kept; group/other never (the store is owner-only, SPEC 10a)
    assert stat.S_IMODE(os.stat(dest / "model.h5").st_mode) == 0o600
    assert lines == []
    assert not [p for p in dest.rglob(".*")]  # no temp files


def test_symlinks_are_never_followed_nor_read(ws, dest, tmp_path, monkeypatch):
    outside = tmp_path / "secret"
    write(outside / "key.pem", b"SECRET")
    write(ws / "real.txt", b"real")
    os.symlink("/etc/passwd", ws / "passwd")
    os.symlink(outside, ws / "dirlink")
    os.symlink(outside / "key.pem", ws / "sub" / "key.pem") if (ws / "sub").mkdir() is None else None
    os.symlink("real.txt", ws / "inner-link")  # even one pointing inside outputs/
    os.symlink("/nonexistent/target", ws / "dangling")
    opened = []
    real_open = os.open

    def spy(path, flags, *a, **kw):
        opened.append(os.fspath(path))
        return real_open(path, flags, *a, **kw)

    monkeypatch.setattr(os, "open", spy)
    real_builtin_open = open
    read_paths = []

    def spy_open(file, *a, **kw):
        read_paths.append(str(file))
        return real_builtin_open(file, *a, **kw)

    monkeypatch.setattr("builtins.open", spy_open)
    lines = []
    r = collect_outputs(ws, dest, on_message=lines.append)
    monkeypatch.undo()
    assert tree(dest) == {"real.txt": b"real"}
    assert not any(p.is_symlink() for p in dest.rglob("*"))
    assert sorted(r.skipped) == sorted([("passwd", LINK), ("dirlink", LINK), ("sub/key.pem", LINK),
                                        ("inner-link", LINK), ("dangling", LINK)])
    for rel in ("passwd", "dirlink", "sub/key.pem", "inner-link", "dangling"):
        assert "skipped outputs/%s: %s" % (rel, LINK) in lines
    names = {os.path.basename(p) for p in opened} | {os.path.basename(p) for p in read_paths}
    assert not names & {"passwd", "dirlink", "key.pem", "inner-link", "dangling", "secret"}, opened
    assert "/etc/passwd" not in opened + read_paths


def test_outputs_folder_itself_a_symlink_is_not_followed(tmp_path, dest):
    outside = tmp_path / "elsewhere"
    write(outside / "x", b"x")
    link = tmp_path / "ws" / "outputs"
    link.parent.mkdir()
    os.symlink(outside, link)
    lines = []
    r = collect_outputs(link, dest, on_message=lines.append)
    assert r.files == 0 and r.skipped == [("", LINK)]
    assert lines == ["skipped outputs: " + LINK]
    assert not (dest / "x").exists()


def test_missing_outputs_folder_collects_nothing(tmp_path, dest):
    r = collect_outputs(tmp_path / "nope", dest)
    assert (r.files, r.bytes, r.skipped) == (0, 0, [])


def test_fifo_and_socket_are_skipped_without_blocking(ws, dest):
    os.mkfifo(ws / "pipe")
    s = socket.socket(socket.AF_UNIX)
    sock_path = ws / "sock"
    try:
        s.bind(str(sock_path))
    except OSError:  # path too long for AF_UNIX on some systems
        sock_path = None
    write(ws / "ok.txt", b"ok")
    lines = []
    t0 = time.monotonic()
    r = collect_outputs(ws, dest, on_message=lines.append)
    s.close()
    assert time.monotonic() - t0 < 2
    assert ("pipe", "not a regular file (named pipe)") in r.skipped
    assert "skipped outputs/pipe: not a regular file (named pipe)" in lines
    if sock_path is not None:
        assert ("sock", "not a regular file (socket)") in r.skipped
    assert tree(dest) == {"ok.txt": b"ok"}


def test_per_file_limit(ws, dest):
    write(ws / "big.bin", b"x" * 2_500_000)
    write(ws / "small.bin", b"x" * 10)
    lines = []
    r = collect_outputs(ws, dest, max_file_bytes=2_000_000, on_message=lines.append)
    assert tree(dest) == {"small.bin": b"x" * 10}
    assert r.skipped == [("big.bin", "2.5 MB is over the per-file limit of 2.0 MB")]
    assert lines == ["skipped outputs/big.bin: 2.5 MB is over the per-file limit of 2.0 MB"]


def test_file_count_limit(ws, dest):
    for i in range(7):
        write(ws / ("f%d.txt" % i), b"x")
    lines = []
    r = collect_outputs(ws, dest, max_files=5, on_message=lines.append)
    assert r.files == 5 and sorted(tree(dest)) == ["f%d.txt" % i for i in range(5)]
    assert lines == ["skipped outputs/f5.txt: over the limit of 5 files",
                     "skipped outputs/f6.txt: over the limit of 5 files"]


def test_total_size_limit(ws, dest):
    write(ws / "a.bin", b"a" * 600)
    write(ws / "b.bin", b"b" * 600)
    write(ws / "c.bin", b"c" * 300)
    lines = []
    r = collect_outputs(ws, dest, max_total_bytes=1000, on_message=lines.append)
    assert sorted(tree(dest)) == ["a.bin", "c.bin"] and r.bytes == 900
    assert lines == ["skipped outputs/b.bin: 600 B would go over the total size limit of 1.0 kB (600 B collected)"]


def test_incremental_skips_unchanged_files(ws, dest):
    write(ws / "a.txt", b"a")
    write(ws / "d" / "b.txt", b"b")
    r1 = collect_outputs(ws, dest)
    assert r1.copied == 2
    ino = os.stat(dest / "a.txt").st_ino
    r2 = collect_outputs(ws, dest)
    assert (r2.files, r2.bytes, r2.copied) == (2, 2, 0)
    assert os.stat(dest / "a.txt").st_ino == ino  # not rewritten
    write(ws / "d" / "b.txt", b"bb", mtime=time.time() + 5)
    write(ws / "new.txt", b"n")
    r3 = collect_outputs(ws, dest)
    assert r3.copied == 2 and tree(dest) == {"a.txt": b"a", "d/b.txt": b"bb", "new.txt": b"n"}
    r4 = collect_outputs(ws, dest, incremental=False)
    assert r4.copied == 3


def test_incremental_recopies_same_size_with_new_mtime(ws, dest):
    p = write(ws / "ckpt", b"v1", mtime=1_000_000)
    collect_outputs(ws, dest)
    write(p, b"v2", mtime=2_000_000)
    assert collect_outputs(ws, dest).copied == 1
    assert (dest / "ckpt").read_bytes() == b"v2"


def test_files_removed_from_outputs_stay_collected(ws, dest):
    write(ws / "epoch1.ckpt", b"1")
    collect_outputs(ws, dest)
    os.unlink(ws / "epoch1.ckpt")
    collect_outputs(ws, dest)
    assert (dest / "epoch1.ckpt").read_bytes() == b"1"


def test_file_replaced_by_folder_and_back(ws, dest):
    write(ws / "x", b"file")
    collect_outputs(ws, dest)
    os.unlink(ws / "x")
    write(ws / "x" / "inner", b"in")
    collect_outputs(ws, dest)
    assert tree(dest) == {"x/inner": b"in"}


def test_destination_inside_source_is_refused(ws):
    with pytest.raises(ValueError):
        collect_outputs(ws, ws / "copy")


def test_disk_full_removes_the_partial_file_and_says_so(ws, dest, monkeypatch):
    write(ws / "a.txt", b"a" * 10)
    write(ws / "model.h5", b"m" * 100_000)
    collect_outputs(ws, dest)  # an earlier sync, already collected
    write(ws / "model.h5", b"M" * 200_000, mtime=time.time() + 10)
    real = outputs._copy_fd

    def full(src_fd, dst_fd, size):
        os.write(dst_fd, b"M" * 4096)  # some bytes land, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(outputs, "_copy_fd", full)
    with pytest.raises(OSError) as ei:
        collect_outputs(ws, dest)
    monkeypatch.setattr(outputs, "_copy_fd", real)
    assert isinstance(ei.value, CollectError) and ei.value.errno == errno.ENOSPC
    assert str(ei.value) == "disk full while collecting outputs/model.h5: free space on %s" % dest
    assert sorted(os.listdir(dest)) == ["a.txt", "model.h5"]  # no temp file left behind
    assert (dest / "model.h5").read_bytes() == b"m" * 100_000  # the earlier copy is intact
    assert collect_outputs(ws, dest).copied == 1  # and once there is space again it goes on
    assert (dest / "model.h5").read_bytes() == b"M" * 200_000


def test_leftover_temp_files_are_swept(ws, dest):
    write(ws / "a", b"a")
    write(dest / (".a" + outputs.TMP_MARK + "xyz"), b"partial")
    collect_outputs(ws, dest)
    assert sorted(os.listdir(dest)) == ["a"]


def test_path_walk_fallback_also_refuses_links(ws, dest, tmp_path, monkeypatch):
    monkeypatch.setattr(outputs, "_FD_WALK", False)
    write(ws / "a" / "b.txt", b"b")
    os.symlink("/etc/passwd", ws / "passwd")
    os.symlink(tmp_path, ws / "a" / "up")
    lines = []
    r = collect_outputs(ws, dest, on_message=lines.append, max_files=10)
    assert tree(dest) == {"a/b.txt": b"b"}
    assert sorted(r.skipped) == [("a/up", LINK), ("passwd", LINK)]


def test_non_utf8_names(ws, dest):
    name = b"caf\xe9.txt"
    with open(os.path.join(os.fsencode(ws), name), "wb") as f:
        f.write(b"x")
    os.symlink(b"/etc/passwd", os.path.join(os.fsencode(ws), b"l\xff"))
    lines = []
    r = collect_outputs(ws, dest, on_message=lines.append)
    assert r.files == 1 and os.path.exists(os.path.join(os.fsencode(dest), name))
    assert lines and all(line.encode("utf-8") for line in lines)
