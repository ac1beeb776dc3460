"""``outputs --to`` / ``code --to``: never delete or overwrite what is at the
destination (SPEC 10a, issue 10 item 1)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mldesk.core.store import Execution, new_execution_id
from mldesk.engine.facade import Engine, EngineError

APP = str(Path(__file__).resolve().parents[2] / "app")


@pytest.fixture
def done(mldesk_home, tmp_path):
    """An engine and a finished execution (not run: record, snapshot and outputs
    made by hand) with outputs model.bin, logs/a.txt and a sparse file."""
    eng = Engine(mldesk_home)
    lab = tmp_path / "lab"
    (lab / "pkg").mkdir(parents=True)
    (lab / "main.py").write_text("print('hi')\n")
    (lab / "pkg" / "util.py").write_text("X = 1\n")
    with eng.snapshots.hold():
        snap = eng.snapshots.create(lab)
    now = time.time()
    ex = Execution(id=new_execution_id(now), name="x", lab=str(lab), host="local", runtime="process",
                   image=None, hardware="cpu", state="finished", exit_code=0, reason=None,
                   created_at=now, started_at=now, finished_at=now, snapshot=snap.id)
    eng.store.insert_execution(ex)
    out = eng.outputs_dir(ex.id)
    (out / "logs").mkdir(parents=True)
    (out / "model.bin").write_bytes(b"weights")
    (out / "logs" / "a.txt").write_text("log a")
    with open(out / "sparse.bin", "wb") as f:
        f.truncate(64 << 20)
        f.seek(32 << 20)
        f.write(b"middle")
    yield eng, ex
    eng.close()


def _cli(*args, home):
    env = dict(os.environ, MLDESK_HOME=str(home), PYTHONPATH=APP)
    return subprocess.run([sys.executable, "-m", "mldesk", *args], capture_output=True, text=True, env=env,
                          timeout=60)


def test_folder_named_like_an_output_file_is_not_removed(done, tmp_path):
    eng, ex = done
    dest = tmp_path / "dest"
    (dest / "model.bin").mkdir(parents=True)
    (dest / "model.bin" / "precious.txt").write_text("mine")
    (dest / "logs").mkdir()
    (dest / "logs" / "a.txt").write_text("my own log")
    with pytest.raises(EngineError) as err:
        eng.export_outputs(ex.id, dest)
    text = str(err.value)
    assert "model.bin" in text and "logs/a.txt" in text and "nothing was copied" in text
    assert (dest / "model.bin" / "precious.txt").read_text() == "mine"
    assert (dest / "logs" / "a.txt").read_text() == "my own log"
    assert not (dest / "sparse.bin").exists()  # stopped before writing anything


def test_overwrite_replaces_files_never_folders(done, tmp_path):
    eng, ex = done
    dest = tmp_path / "dest"
    (dest / "logs").mkdir(parents=True)
    (dest / "logs" / "a.txt").write_text("old")
    (dest / "mine.txt").write_text("untouched")
    eng.export_outputs(ex.id, dest, overwrite=True)
    assert (dest / "logs" / "a.txt").read_text() == "log a"
    assert (dest / "mine.txt").read_text() == "untouched"
    (dest / "model.bin").unlink()
    (dest / "model.bin").mkdir()
    (dest / "model.bin" / "keep").write_text("k")
    with pytest.raises(EngineError, match="folders are never replaced"):
        eng.export_outputs(ex.id, dest, overwrite=True)
    assert (dest / "model.bin" / "keep").read_text() == "k"


def test_new_names_are_copied_and_sparse_stays_sparse(done, tmp_path):
    eng, ex = done
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "other.txt").write_text("other")
    files, size = eng.export_outputs(ex.id, dest)
    assert files == 3
    assert (dest / "model.bin").read_bytes() == b"weights"
    assert (dest / "other.txt").read_text() == "other"
    st = os.stat(dest / "sparse.bin")
    assert st.st_size == 64 << 20
    assert st.st_blocks * 512 < 1 << 20, "the sparse output was written out in full"


def test_a_file_given_as_the_folder_is_an_error(done, tmp_path):
    eng, ex = done
    target = tmp_path / "afile"
    target.write_text("not a folder")
    with pytest.raises(EngineError, match="is a file, not a folder"):
        eng.export_outputs(ex.id, target)
    with pytest.raises(EngineError, match="is a file, not a folder"):
        eng.export_code(ex.id, target)
    assert target.read_text() == "not a folder"


def test_destination_inside_the_execution_is_a_one_line_error(done, mldesk_home):
    eng, ex = done
    inside = eng.outputs_dir(ex.id) / "sub"
    r = _cli("outputs", ex.id, "--to", str(inside), home=mldesk_home)
    assert r.returncode == 1
    assert "internal error" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "inside" in r.stderr
    assert not inside.exists()


def test_link_in_the_way_is_a_conflict_not_followed(done, tmp_path):
    eng, ex = done
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "logs").symlink_to(elsewhere)
    with pytest.raises(EngineError, match="a link is there"):
        eng.export_outputs(ex.id, dest, overwrite=True)
    assert list(elsewhere.iterdir()) == []


def test_code_export_never_overwrites(done, tmp_path, mldesk_home):
    eng, ex = done
    dest = tmp_path / "code"
    (dest / "pkg").mkdir(parents=True)
    (dest / "pkg" / "util.py").write_text("MINE = 1\n")
    r = _cli("code", ex.id, "--to", str(dest), home=mldesk_home)
    assert r.returncode == 1, r.stderr
    assert "pkg/util.py" in r.stderr
    assert (dest / "pkg" / "util.py").read_text() == "MINE = 1\n"
    assert not (dest / "main.py").exists()
    r = _cli("code", ex.id, "--to", str(dest), "--overwrite", home=mldesk_home)
    assert r.returncode == 0, r.stderr
    assert (dest / "pkg" / "util.py").read_text() == "X = 1\n"
    assert (dest / "main.py").read_text() == "print('hi')\n"


def test_code_listing_escapes_control_characters(mldesk_home, tmp_path):
    eng = Engine(mldesk_home)
    lab = tmp_path / "lab"
    lab.mkdir()
    (lab / "main.py").write_text("")
    (lab / "evil\x1b]0;pwned\x07\nname.py").write_text("")
    with eng.snapshots.hold():
        snap = eng.snapshots.create(lab)
    now = time.time()
    ex = Execution(id=new_execution_id(now), name="x", lab=str(lab), host="local", runtime="process",
                   image=None, hardware="cpu", state="finished", exit_code=0, reason=None,
                   created_at=now, started_at=now, finished_at=now, snapshot=snap.id)
    eng.store.insert_execution(ex)
    eng.close()
    r = _cli("code", ex.id, home=mldesk_home)
    assert r.returncode == 0, r.stderr
    assert "\x1b" not in r.stdout and "\x07" not in r.stdout
    assert "evil\\x1b]0;pwned\\x07\\x0aname.py" in r.stdout
    assert len(r.stdout.strip().splitlines()) == 2


def test_collected_outputs_lose_setuid_bits(tmp_path):
    from mldesk.agent.outputs import collect_outputs

    src = tmp_path / "outputs"
    src.mkdir()
    shell = src / "shell"
    shell.write_bytes(b"#!/bin/sh\n")
    os.chmod(shell, 0o6755)
    assert os.stat(shell).st_mode & stat.S_ISUID
    collect_outputs(src, tmp_path / "dest")
    mode = os.stat(tmp_path / "dest" / "shell").st_mode
    assert not mode & (stat.S_ISUID | stat.S_ISGID)


def test_logs_tail_of_a_1gb_last_line_uses_bounded_memory(done, mldesk_home):
    """``mldesk logs --tail N`` streams: a 1 GB last line is not held in memory."""
    import resource

    from mldesk.agent import logstore

    eng, ex = done
    path = eng.layout.log_path(ex.id)
    block = b"y" * (1 << 20)
    with logstore.LogWriter(path) as w:
        w.write(logstore.STDOUT, b"first line\nsecond line\n")
        for _ in range(1024):
            w.write(logstore.STDOUT, block)
        w.write(logstore.STDOUT, b"\n")
    env = dict(os.environ, MLDESK_HOME=str(mldesk_home), PYTHONPATH=APP)
    proc = subprocess.Popen([sys.executable, "-m", "mldesk", "logs", "--tail", "1", ex.id], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    size = 0
    while True:
        chunk = proc.stdout.read(1 << 20)
        if not chunk:
            break
        size += len(chunk)
    assert proc.wait(120) == 0, proc.stderr.read()
    assert size == (1 << 30) + 1
    # peak memory of the command alone (a fresh parent whose only child it is)
    meter = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    r = subprocess.run([sys.executable, "-c", meter, sys.executable, "-m", "mldesk", "logs", "--tail", "2", ex.id],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) < 150 * 1024, f"peak RSS {int(r.stdout) // 1024} MB"
