"""Feeds one execution's log into the Console.

Opening an execution: a log under :data:`SMALL` lines is shown whole; a larger one
as its first :data:`HEAD` lines, a banner with the number of lines skipped, its last
:data:`TAIL` lines. Then the engine follows the log from exactly the byte offset
after the last record read, and live records are appended. Every record carries its
offset, so a late event (from before a re-follow) is dropped and a gap is filled
from the file: no line is lost or shown twice.
"""

from __future__ import annotations

import logging
from typing import Iterable

from mldesk.engine.values import Record
from mldesk.engine.facade import Engine
from mldesk.ui.console import Console
from mldesk.ui.aio import Jobs
from mldesk.ui.facade import EngineBridge
from mldesk.ui.qt import QtCore, Signal

log = logging.getLogger("mldesk.ui")

SMALL = 5000
HEAD = 1000
TAIL = 1000
#: Bytes read per step while "Show all" loads a whole log.
SHOW_ALL_CHUNK = 2 << 20
#: A log this large is shown as head + tail even with few (very long) lines.
SMALL_BYTES = 8 << 20


def _grouped(records: Iterable[Record]):
    """Consecutive records of one stream joined: fewer, larger appends."""
    stream, parts = None, []
    for r in records:
        if r.stream != stream and parts:
            yield stream, b"".join(parts)
            parts = []
        stream = r.stream
        parts.append(r.data)
    if parts:
        yield stream, b"".join(parts)


class LogView(QtCore.QObject):
    """Owns what the console shows; one execution at a time."""

    #: (exec id, total lines, lines skipped) after an execution was opened.
    opened = Signal(str, int, int)
    loadingChanged = Signal(bool)

    def __init__(self, engine: Engine, bridge: EngineBridge, console: Console, jobs: Jobs,
                 parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.engine = engine
        self.console = console
        self.jobs = jobs
        self.exec_id: str | None = None
        self.offset = 0
        self.skipped = 0
        self._default_max_lines = console.max_lines()
        console.set_keep_head(HEAD)  # live following trims the middle, never the first lines
        self._loading: dict | None = None
        self._load_timer = QtCore.QTimer(self)
        self._load_timer.setSingleShot(True)
        self._load_timer.timeout.connect(self._load_step)
        bridge.log.connect(self._on_log)

    # -- opening ------------------------------------------------------------------
    def show(self, exec_id: str | None) -> None:
        """Show ``exec_id``'s log (None: nothing), then follow it."""
        self._stop_loading()
        if self.exec_id is not None:
            self.engine.unfollow(self.exec_id)
        self.exec_id = exec_id
        self.offset = 0
        self.skipped = 0
        self.console.reset()
        self.console.set_max_lines(self._default_max_lines)
        if exec_id is None:
            return
        with self.engine.log_reader(exec_id) as reader:
            total = reader.total_lines()
            if total < SMALL and reader.size() < SMALL_BYTES:
                offset = 0
                while True:
                    records, offset = reader.read_from(offset)
                    if not records:
                        break
                    self._append(records)
            else:
                head, _ = reader.head(HEAD)
                tail, start = reader.tail(TAIL)
                self._append(head)
                self.skipped = max(0, total - HEAD - TAIL)
                self.console.add_skip_banner(self.skipped)
                self._append(tail)
                offset = tail[-1].end if tail else start
        self.offset = offset
        self.engine.follow(exec_id, offset)
        self.opened.emit(exec_id, total, self.skipped)

    def _append(self, records: list[Record]) -> None:
        for stream, data in _grouped(records):
            self.console.append(stream, data)

    # -- live records -----------------------------------------------------------------
    def _on_log(self, exec_id: str, records: list, offset: int) -> None:
        if exec_id != self.exec_id or self._loading is not None or not records:
            return
        if records[-1].end <= self.offset:
            return  # from before a re-follow: already shown
        if records[0].offset > self.offset:
            # A gap (should not happen): read it from the file rather than lose it.
            with self.engine.log_reader(exec_id) as reader:
                pos = self.offset
                while pos < records[0].offset:
                    got, pos = reader.read_from(pos, max_bytes=records[0].offset - pos)
                    if not got:
                        break
                    self._append([r for r in got if r.end <= records[0].offset])
            self.offset = records[0].offset
        fresh = [r for r in records if r.offset >= self.offset]
        if fresh:
            self._append(fresh)
            self.offset = fresh[-1].end

    # -- show all ------------------------------------------------------------------------
    def show_all(self) -> None:
        """Replace the head/tail view by the whole log (loaded in steps), then follow."""
        exec_id = self.exec_id
        if exec_id is None:
            return
        self._stop_loading()
        self.engine.unfollow(exec_id)
        reader = self.engine.log_reader(exec_id)
        total = reader.total_lines()
        self.console.reset()
        self.console.set_max_lines(max(self._default_max_lines, total + 10_000))
        self.skipped = 0
        self._loading = {"reader": reader, "offset": 0, "exec_id": exec_id}
        self.loadingChanged.emit(True)
        self._load_step()

    def _load_step(self) -> None:
        state = self._loading
        if state is None:
            return
        reader = state["reader"]
        records, nxt = reader.read_from(state["offset"], SHOW_ALL_CHUNK)
        if records:
            self._append(records)
            state["offset"] = nxt
            # let the console render before reading more (bounded memory)
            delay = 0 if self.console.pending_chars() < 8 * SHOW_ALL_CHUNK else 50
            self._load_timer.start(delay)
            return
        self._loading = None
        reader.close()
        self.offset = nxt
        self.engine.follow(state["exec_id"], nxt)
        self.loadingChanged.emit(False)

    def is_loading(self) -> bool:
        return self._loading is not None

    def _stop_loading(self) -> None:
        self._load_timer.stop()
        if self._loading is not None:
            self._loading["reader"].close()
            self._loading = None
            self.loadingChanged.emit(False)

    def close(self) -> None:
        self._stop_loading()
        if self.exec_id is not None:
            self.engine.unfollow(self.exec_id)
            self.exec_id = None
