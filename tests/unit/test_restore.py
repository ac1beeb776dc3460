"""Restore never loses files (issue 10 item 7): all or nothing, excluded paths never
touched, deleted files always in a backup that the CLI lists and brings back."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mldesk.core.labconfig import load_lab_config
from mldesk.core.store import Execution, new_execution_id
from mldesk.engine.facade import Engine, EngineError

APP = str(Path(__file__).resolve().parents[2] / "app")


def _cli(*args, home):
    env = dict(os.environ, MLDESK_HOME=str(home), PYTHONPATH=APP)
    return subprocess.run([sys.executable, "-m", "mldesk", *args], capture_output=True, text=True, env=env,
                          timeout=60)


def _execution_of(eng: Engine, lab: Path, exclude=None) -> Execution:
    """A finished execution whose snapshot is the lab as it is now."""
    with eng.snapshots.hold():
        snap = eng.snapshots.create(lab, exclude if exclude is not None else load_lab_config(lab).exclude)
    now = time.time()
    ex = Execution(id=new_execution_id(now), name="x", lab=str(lab), host="local", runtime="process",
                   image=None, hardware="cpu", state="finished", exit_code=0, reason=None,
                   created_at=now, started_at=now, finished_at=now, snapshot=snap.id)
    eng.store.insert_execution(ex)
    return ex


@pytest.fixture
def eng(mldesk_home):
    e = Engine(mldesk_home)
    yield e
    e.close()


@pytest.fixture
def lab(tmp_path):
    lab = tmp_path / "lab"
    lab.mkdir()
    (lab / "main.py").write_text("v1\n")
    return lab


def test_files_not_in_the_snapshot_are_backed_up_and_come_back_from_the_cli(eng, lab, mldesk_home):
    ex = _execution_of(eng, lab)
    (lab / "main.py").write_text("v2 unsaved work\n")
    (lab / "notes.txt").write_text("new file, not in the snapshot")
    backup = eng.restore_code(ex.id)
    assert (lab / "main.py").read_text() == "v1\n" and not (lab / "notes.txt").exists()
    r = _cli("backups", str(lab), home=mldesk_home)
    assert r.returncode == 0 and backup in r.stdout, r.stderr
    r = _cli("restore", backup[:10], home=mldesk_home)
    assert r.returncode == 0, r.stderr
    assert (lab / "main.py").read_text() == "v2 unsaved work\n"
    assert (lab / "notes.txt").read_text() == "new file, not in the snapshot"


def test_excluded_paths_are_never_touched(eng, lab):
    (lab / "ml.yaml").write_text("exclude: ['*.tmp']\n")  # outputs/, inputs/, dotfiles NOT excluded here
    (lab / "outputs").mkdir()
    (lab / "outputs" / "old.txt").write_text("snapshot's outputs")
    (lab / ".env").write_text("A=1")
    ex = _execution_of(eng, lab)
    assert "outputs/old.txt" in eng.snapshots.manifest(ex.snapshot)  # the snapshot holds them
    # the user's current lab: other outputs, a venv, inputs, an edited dotfile, a new exclude glob
    (lab / "outputs" / "old.txt").write_text("my newer result")
    (lab / "outputs" / "new.txt").write_text("mine")
    (lab / ".env").write_text("A=2")
    (lab / ".venv" / "bin").mkdir(parents=True)
    (lab / ".venv" / "bin" / "python").write_text("venv")
    (lab / "inputs").mkdir()
    (lab / "inputs" / "data.csv").write_text("data")
    (lab / "ml.yaml").write_text("exclude: ['*.tmp', '*.ckpt']\n")
    (lab / "model.ckpt").write_text("checkpoint")
    (lab / "main.py").write_text("v2\n")
    eng.restore_code(ex.id)
    assert (lab / "main.py").read_text() == "v1\n"
    assert (lab / "ml.yaml").read_text() == "exclude: ['*.tmp']\n"
    assert (lab / "outputs" / "old.txt").read_text() == "my newer result"
    assert (lab / "outputs" / "new.txt").read_text() == "mine"
    assert (lab / ".env").read_text() == "A=2"
    assert (lab / ".venv" / "bin" / "python").read_text() == "venv"
    assert (lab / "inputs" / "data.csv").read_text() == "data"
    assert (lab / "model.ckpt").read_text() == "checkpoint"


def test_snapshot_link_meeting_a_real_folder_is_swapped_in(eng, lab, tmp_path):
    (lab / "data").symlink_to(tmp_path)
    ex = _execution_of(eng, lab)
    (lab / "data").unlink()
    (lab / "data").mkdir()
    (lab / "data" / "a.txt").write_text("a")
    backup = eng.restore_code(ex.id)
    assert (lab / "data").is_symlink()
    assert "data/a.txt" in eng.snapshots.manifest(backup)


def test_conflict_stops_before_changing_anything(eng, lab, tmp_path):
    (lab / "data").symlink_to(tmp_path)
    (lab / "b.py").write_text("b1")
    ex = _execution_of(eng, lab)
    (lab / "data").unlink()
    (lab / "data").mkdir()
    (lab / "data" / ".cache").write_text("excluded: never touched, so the folder cannot go")
    (lab / "b.py").write_text("b2")
    (lab / "main.py").write_text("v2\n")
    with pytest.raises(EngineError, match="nothing was changed") as err:
        eng.restore_code(ex.id)
    assert "data" in str(err.value)
    assert (lab / "main.py").read_text() == "v2\n" and (lab / "b.py").read_text() == "b2"
    assert (lab / "data" / ".cache").exists()
    assert not any(p.name.startswith(".mldesk-restore") for p in lab.iterdir())


def test_file_where_a_folder_goes(eng, lab):
    (lab / "pkg").mkdir()
    (lab / "pkg" / "mod.py").write_text("m")
    ex = _execution_of(eng, lab)
    (lab / "pkg" / "mod.py").unlink()
    (lab / "pkg").rmdir()
    (lab / "pkg").write_text("a file now")
    backup = eng.restore_code(ex.id)
    assert (lab / "pkg" / "mod.py").read_text() == "m"
    assert eng.snapshots.read_file(backup, "pkg") == b"a file now"


def test_restart_advice_names_commands_that_work(eng, lab, mldesk_home):
    ex = _execution_of(eng, lab)
    (lab / "main.py").write_text("print('v2')\n")
    eng.close()
    r = _cli("restart", ex.id, "--detach", home=mldesk_home)
    assert r.returncode == 0, r.stderr
    import re

    m = re.search(r"`mldesk restore ([0-9a-f]+)`", r.stderr)
    assert m, r.stderr
    r2 = _cli("restore", m.group(1), home=mldesk_home)
    assert r2.returncode == 0, r2.stderr
    assert (lab / "main.py").read_text() == "print('v2')\n"
