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
import re
from pathlib import Path
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
    (None when the lab already equals ``snapshot``). The same all-or-nothing restore
    as ``Engine.restore_backup`` (excluded paths never touched)."""
    _backup, new = engine.restore_backup(snapshot, lab)
    return new


# -- what else the window reads: store feed, snapshot files, data folder ----------------
def seq(engine: "Engine") -> int:
    """The store's change counter now (for :func:`changes_since`)."""
    return engine.store.seq()


def changes_since(engine: "Engine", since: int) -> tuple[list[Execution], list[str], int]:
    """(changed executions, removed ids, new counter) since counter ``since``."""
    return engine.store.changes_since(since)


def active_count(engine: "Engine") -> int:
    """How many executions (of any lab) are queued, starting, running or ending."""
    from mldesk.core.store import ACTIVE_STATES

    return len(engine.store.list(states=ACTIVE_STATES))


def snapshot_files(engine: "Engine", snapshot: str) -> dict[str, list]:
    """The manifest of a code snapshot: ``{relative path: entry}``."""
    return engine.snapshots.manifest(snapshot)


def read_snapshot_file(engine: "Engine", snapshot: str, rel: str) -> bytes:
    return engine.snapshots.read_file(snapshot, rel)


def default_home() -> Path:
    """The data folder an engine opened without a path uses (MLDESK_HOME or the platform's)."""
    from mldesk.core.paths import home

    return home()


def data_root(engine: "Engine") -> Path:
    """The data folder (MLDESK_HOME): crash.log and window.ini live here."""
    return engine.layout.root


def default_local_runtime() -> str:
    """The runtime "automatic" picks on this computer now (``docker`` when Docker answers)."""
    from mldesk import runtimes

    return runtimes.default_local_runtime()


_ANSI = re.compile(rb"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")


def plain_text(data: bytes) -> bytes:
    """Complete lines of terminal output as plain text: colour and cursor codes removed,
    a line rewritten with carriage returns (progress bars) kept as it ended."""
    out = []
    for line in _ANSI.sub(b"", data).split(b"\n"):
        if b"\r" in line:
            parts = [p for p in line.split(b"\r") if p]
            line = parts[-1] if parts else b""
        out.append(line)
    return b"\n".join(out)


def save_log(engine: "Engine", exec_id: str, path: str | Path, *, include_mldesk: bool = False,
             plain: bool = False) -> int:
    """Write an execution's whole log to ``path`` (program output; mldesk's messages too
    if asked), as written or, with ``plain``, as plain text without colour codes; returns
    the bytes written."""
    from mldesk.agent import logstore

    with engine.log_reader(exec_id) as reader, open(path, "wb") as f:
        if not plain:
            return logstore.write_program_output(reader, f, include_mldesk=include_mldesk)
        wanted = (logstore.STDOUT, logstore.STDERR, logstore.MLDESK) if include_mldesk else (
            logstore.STDOUT, logstore.STDERR)
        total, offset, carry = 0, 0, b""
        while True:
            records, offset = reader.read_from(offset)
            if not records:
                break
            data = carry + b"".join(r.data for r in records if r.stream in wanted)
            cut = data.rfind(b"\n") + 1
            carry = data[cut:]
            chunk = plain_text(data[:cut])
            f.write(chunk)
            total += len(chunk)
        if carry:
            chunk = plain_text(carry)
            f.write(chunk)
            total += len(chunk)
        return total
