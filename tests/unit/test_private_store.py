"""MLDESK_HOME is owner-only (SPEC 10a, issue 10 item 5)."""

from __future__ import annotations

import os
import stat

from mldesk.engine.facade import Engine


def _mode(p):
    return stat.S_IMODE(os.stat(p).st_mode)


def test_new_store_is_owner_only(tmp_path, monkeypatch):
    home = tmp_path / "new-home"
    monkeypatch.setenv("MLDESK_HOME", str(home))
    os.umask(0o022)
    lab = tmp_path / "lab"
    lab.mkdir()
    (lab / "main.py").write_text("SECRET = 1\n")
    os.chmod(lab / "main.py", 0o600)
    eng = Engine()
    with eng.snapshots.hold():
        eng.snapshots.create(lab)
    eng.close()
    assert _mode(home) == 0o700
    assert _mode(home / "mldesk.db") == 0o600
    blobs = [p for p in (home / "blobs").rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert blobs and all(_mode(b) & 0o077 == 0 for b in blobs)
    for d in (home / "blobs", home / "snapshots"):
        assert _mode(d) == 0o700


def test_existing_store_is_tightened_on_start(tmp_path):
    home = tmp_path / "old-home"
    Engine(home).close()
    os.chmod(home, 0o755)
    os.chmod(home / "mldesk.db", 0o644)
    os.chmod(home / "blobs", 0o755)
    Engine(home).close()
    assert _mode(home) == 0o700
    assert _mode(home / "mldesk.db") == 0o600
    assert _mode(home / "blobs") == 0o700
