"""Read queries the desktop window needs beyond the engine facade.

No Qt here, ever (an import-linter contract keeps Qt in ``mldesk.ui``). Nothing
in this module changes an execution: it pages through the store so the window can
open fast on a store with many thousands of executions, answers "is this input in
the download cache?" for the Inputs panel, and brings back a lab's earlier files
(the backup snapshot that Restart / Restore code kept), the same way
``Engine.restore_code`` does.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from mldesk.core.store import Execution

if TYPE_CHECKING:  # pragma: no cover
    from mldesk.engine.facade import Engine


def list_page(engine: "Engine", lab: str | Path, limit: int,
              before: tuple[float, str] | None = None) -> list[Execution]:
    """The visible executions of ``lab``, newest first (the order of
    ``Engine.list``), at most ``limit`` of them, all older than ``before``
    (a ``(created_at, id)`` key) when given."""
    return engine.store.list_page(str(Path(lab).expanduser().resolve()), limit, before)


def count(engine: "Engine", lab: str | Path) -> int:
    """How many visible executions ``lab`` has."""
    return engine.store.count(str(Path(lab).expanduser().resolve()))


def input_cache_info(engine: "Engine", url: str) -> dict | None:
    """``{"cached": bool, "size": int | None, "local": bool}`` for an input URL.

    ``file://`` URLs are local files (their size is the file's); http(s) URLs are
    looked up in the download cache without touching it (a stale record only
    reads as "not cached": the download itself revalidates)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() == "file":
        path = unquote(parts.path)
        try:
            size = os.stat(path).st_size
        except OSError:
            return {"cached": False, "size": None, "local": True, "missing": True}
        return {"cached": True, "size": size, "local": True, "missing": False}
    root = engine.layout.input_cache
    meta_path = root / "urls" / (hashlib.sha256(url.encode("utf-8")).hexdigest() + ".json")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        sha, size = meta["sha256"], int(meta["size"])
        if meta.get("url") != url or len(sha) != 64:
            raise ValueError
        if os.stat(root / "blobs" / sha[:2] / sha).st_size != size:
            raise ValueError
    except (OSError, ValueError, KeyError, TypeError):
        return {"cached": False, "size": None, "local": False, "missing": False}
    return {"cached": True, "size": size, "local": False, "missing": False}


def restore_lab_backup(engine: "Engine", lab: str | Path, snapshot: str) -> str | None:
    """Make ``lab`` equal to one of its backup snapshots (``store.lab_backups``),
    keeping the current files as a new backup first; returns that backup's id
    (None when the lab already equals ``snapshot``). Like ``Engine.restore_code``,
    files matching the snapshot's ``exclude`` are left alone."""
    lab = Path(lab).expanduser().resolve()
    if not engine.snapshots.exists(snapshot):
        from mldesk.engine.facade import EngineError

        raise EngineError(f"the earlier files (snapshot {snapshot}) are no longer kept")
    exclude = engine.snapshot_exclude(SimpleNamespace(snapshot=snapshot))
    lab.mkdir(parents=True, exist_ok=True)
    with engine.snapshots.hold():
        current = engine.snapshots.create(lab, exclude)
        if current.id == snapshot:
            return None
        engine.store.add_lab_backup(current.id, str(lab), f"lab files before bringing back {snapshot}")
        engine.snapshots.restore(snapshot, lab, exclude)
    return current.id
