"""The outcome of a run survives a locked store and a full disk (issue 10 item 3).

Real parts: another process holding SQLite's write lock (``BEGIN EXCLUSIVE``) for
longer than the store's busy timeout, and a small tmpfs as MLDESK_HOME."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mldesk.engine.facade import Engine
from tests.integration.conftest import cli, wait_final, wait_state
from tests.integration.test_ssh_run import isolated_home  # noqa: F401 - fixture for the SSH cases

pytestmark = pytest.mark.slow

BUSY_TIMEOUT = 30.0  # the store's busy timeout (Store(timeout=...))

ENDS_SOON = """
import os, time
open("outputs/result.txt", "w").write("42")
print("ready", flush=True)
while not os.path.exists(GO_FILE):
    time.sleep(0.05)
print("done", flush=True)
"""

LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


def _hold_lock(db: Path, seconds: float) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", LOCKER, str(db), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "locked"
    return p


def _lab(tmp_path: Path, main: str) -> Path:
    lab = tmp_path / "lab"
    lab.mkdir()
    (lab / "main.py").write_text(main)
    return lab


def test_locked_store_at_the_end_keeps_a_finished_run(mldesk_home, tmp_path, monkeypatch):
    go = tmp_path / "go"
    eng = Engine(mldesk_home)
    try:
        ex = eng.run(_lab(tmp_path, f"GO_FILE = {str(go)!r}\n" + ENDS_SOON), runtime="process")
        wait_state(eng, ex.id, "running")
        locker = _hold_lock(eng.layout.db, BUSY_TIMEOUT + 5)
        go.touch()  # the program ends while the store is locked
        final = wait_final(eng, ex.id, timeout=BUSY_TIMEOUT + 60)
        locker.wait(10)
        assert final.state == "finished", final.reason
        assert final.exit_code == 0 and final.reason is None
        assert (eng.outputs_dir(ex.id) / "result.txt").read_text() == "42"
    finally:
        eng.close()


def test_store_unavailable_keeps_the_outcome_beside_the_execution(mldesk_home, tmp_path, monkeypatch):
    go = tmp_path / "go"
    monkeypatch.setenv("MLDESK_STORE_PATIENCE", "0")  # give up on the store at once
    eng = Engine(mldesk_home)
    try:
        ex = eng.run(_lab(tmp_path, f"GO_FILE = {str(go)!r}\n" + ENDS_SOON), runtime="process")
        wait_state(eng, ex.id, "running")
        locker = _hold_lock(eng.layout.db, BUSY_TIMEOUT + 8)
        go.touch()
        outcome = eng.layout.execution_dir(ex.id) / "outcome.json"
        deadline = time.monotonic() + BUSY_TIMEOUT + 6
        while not outcome.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert outcome.exists(), "the outcome was not kept beside the execution"
        assert eng.store.get(ex.id).active  # the store has not heard of it yet
        locker.wait(30)
        # the next mldesk process applies it
        r = cli("show", ex.id, home=mldesk_home)
        assert r.returncode == 0, r.stderr
        final = eng.store.get(ex.id)
        assert final.state == "finished" and final.exit_code == 0, final
        assert not outcome.exists()
        assert (eng.outputs_dir(ex.id) / "result.txt").read_text() == "42"
    finally:
        eng.close()


FLOOD = """
import sys
line = "x" * 1000 + "\\n"
for i in range(60_000):  # 60 MB into a 20 MB disk
    sys.stdout.write(line)
"""


@pytest.fixture
def small_home(tmp_path, monkeypatch):
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    home = tmp_path / "small-home"
    home.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(home)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.strip()}")
    monkeypatch.setenv("MLDESK_HOME", str(home))
    try:
        yield home
    finally:
        subprocess.run(["umount", "-l", str(home)], capture_output=True)


def test_full_disk_ends_the_run_with_a_clear_reason(small_home, tmp_path):
    lab = _lab(tmp_path, FLOOD)
    r = cli("run", str(lab), "--runtime", "process", "--detach", home=small_home, timeout=60)
    assert r.returncode == 0, r.stderr
    exec_id = r.stdout.decode().strip()
    eng = Engine(small_home)
    try:
        final = wait_final(eng, exec_id, timeout=60)
        assert final.state == "failed"
        assert "no space left on" in final.reason and str(small_home) in final.reason, final.reason
        assert "internal error" not in final.reason and "unknown" not in final.reason
    finally:
        eng.close()
    # later commands still work, and removing the run frees the disk
    for args in (("ls",), ("show", exec_id), ("logs", "--tail", "2", exec_id)):
        r = cli(*args, home=small_home)
        assert r.returncode == 0, (args, r.stderr)
    assert cli("rm", exec_id, home=small_home).returncode == 0
    ok = _lab(tmp_path / "again", "print('room again')\n") if (tmp_path / "again").mkdir() is None else None
    r = cli("run", str(ok), "--runtime", "process", home=small_home, timeout=60)
    assert r.returncode == 0, r.stderr
    assert b"room again" in r.stdout


# -- the same on Docker and on an SSH host ------------------------------------------------

WAITS_FOR_GO = """
import os, time
open("outputs/result.txt", "w").write("42")
print("ready", flush=True)
while not os.path.exists("go"):  # created in the workspace by the test
    time.sleep(0.05)
print("done", flush=True)
"""


@pytest.mark.parametrize("where", ["docker", "ssh-process", "ssh-docker"])
def test_outcome_survives_an_unavailable_store_on_every_runtime(where, mldesk_home, tmp_path, monkeypatch, request):
    monkeypatch.setenv("MLDESK_STORE_PATIENCE", "0")
    if where.endswith("docker"):
        request.getfixturevalue("python_image")
    eng = Engine(mldesk_home)
    try:
        eng.set_setting("image_aliases", {"test-python": "mldesk-test/python:latest"})
        eng.set_setting("local_network", "none")
        lab = _lab(tmp_path, WAITS_FOR_GO)
        (lab / "ml.yaml").write_text("dockerImageId: test-python\n")
        if where == "docker":
            ex = eng.run(lab, runtime="docker")
            workspace = eng.layout.workspace(ex.id)
        else:
            from tests.integration.test_ssh_run import add_host

            request.getfixturevalue("isolated_home")
            remote = tmp_path / "remote"
            remote.mkdir()
            add_host(eng, request.getfixturevalue("sshd_server"), "box", remote, runtime=where.split("-")[1])
            ex = eng.run(lab, host="box")
            workspace = remote / "executions" / ex.id / "workspace"
        wait_state(eng, ex.id, "running", timeout=60)
        locker = _hold_lock(eng.layout.db, BUSY_TIMEOUT + 8)
        (workspace / "go").touch()
        outcome = eng.layout.execution_dir(ex.id) / "outcome.json"
        deadline = time.monotonic() + BUSY_TIMEOUT + 6
        while not outcome.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert outcome.exists(), "the outcome was not kept beside the execution"
        locker.wait(30)
        assert cli("ls", home=mldesk_home).returncode == 0  # the next mldesk process applies it
        final = eng.store.get(ex.id)
        assert final.state == "finished" and final.exit_code == 0, final
        assert (eng.outputs_dir(ex.id) / "result.txt").read_text() == "42"
    finally:
        eng.close()


def test_full_disk_on_docker(small_home, tmp_path, request):
    request.getfixturevalue("python_image")
    lab = _lab(tmp_path, FLOOD)
    (lab / "ml.yaml").write_text("dockerImageId: test-python\n")
    eng = Engine(small_home)
    try:
        eng.set_setting("image_aliases", {"test-python": "mldesk-test/python:latest"})
        eng.set_setting("local_network", "none")
        final = wait_final(eng, eng.run(lab, runtime="docker").id, timeout=90)
        assert final.state == "failed"
        assert "no space left on" in final.reason and str(small_home) in final.reason, final.reason
    finally:
        eng.close()
    assert cli("ls", home=small_home).returncode == 0
