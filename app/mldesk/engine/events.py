"""The engine's event types (``EventKind``, ``Event``) and the watcher's input-progress feed.

Events are delivered to ``Engine.subscribe`` listeners on the watcher thread:

- ``ADDED`` / ``CHANGED`` / ``RENAMED``: ``execution`` is the new row
- ``REMOVED``: removed or hidden (pending undo)
- ``LOG``: ``records`` of a followed execution, ``offset`` after them
- ``PROGRESS``: ``progress`` is the input-download progress of an execution that is
  fetching its inputs (``{input name: {state, done, total, rate, eta}}``); an empty dict
  when it stopped fetching.

``EventKind`` is a ``str`` enum, so ``event.kind == "log"`` keeps working.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Callable, Iterable

from mldesk.core.store import Execution
from mldesk.core.value import Value


class EventKind(str, Enum):
    ADDED = "added"
    CHANGED = "changed"
    RENAMED = "renamed"
    REMOVED = "removed"
    LOG = "log"
    PROGRESS = "progress"

    def __str__(self) -> str:  # f"{kind}" reads as the plain value
        return self.value


class Event(Value):
    _fields = __slots__ = ("kind", "exec_id", "execution", "records", "offset", "progress")

    def __init__(self, kind: EventKind, exec_id: str, execution: Execution | None = None,
                 records: list | None = None, offset: int = 0, progress: dict | None = None):
        self.kind = kind
        self.exec_id = exec_id
        self.execution = execution
        self.records = [] if records is None else records  # None: []
        self.offset = offset
        self.progress = progress


class ProgressFeed:
    """Turns ``progress.json`` files of fetching executions into ``PROGRESS`` events.

    ``poll(fetching)`` is called by the watcher each tick with the ids of executions
    in the ``fetching`` state; it stats their progress files and emits an event when
    one changed, and one empty event when an execution stopped fetching."""

    def __init__(self, path_of: Callable[[str], Path], emit: Callable[[Event], None]):
        self._path_of = path_of
        self._emit = emit
        self._seen: dict[str, tuple[int, int] | None] = {}

    def poll(self, fetching: Iterable[str]) -> None:
        now = set(fetching)
        for exec_id in list(self._seen):
            if exec_id not in now:
                del self._seen[exec_id]
                self._emit(Event(EventKind.PROGRESS, exec_id, progress={}))
        for exec_id in now:
            path = self._path_of(exec_id)
            try:
                st = path.stat()
                stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
            except OSError:
                stamp = None
            if exec_id in self._seen and self._seen[exec_id] == stamp:
                continue
            self._seen[exec_id] = stamp
            try:
                progress = json.loads(path.read_text()) if stamp is not None else {}
            except (OSError, ValueError):
                progress = {}
            self._emit(Event(EventKind.PROGRESS, exec_id, progress=progress))
