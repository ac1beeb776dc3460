"""Copying a runner's log into the execution's log, resumable: checkpoint and duplicate matcher.

A runner (``mldesk.agent.runner``, on this machine or on a host) writes the program's
output into its own log; the supervisor copies its records into the execution's log,
each with the runner's timestamp. A checkpoint file (written atomically after copied
records are in the local log) holds ``(runner log offset R, local log size L)``:
everything of the runner's log before R is in the local log before L. Records copied
after the last checkpoint are in the local log after L; a supervisor that takes over
follows from R and drops the runner's records that equal (stream, timestamp, data) the
next copied record after L, so exactly the missing ones are added. The checkpoint is
only ever behind the local log, never ahead of it.
"""

from __future__ import annotations

import json
from pathlib import Path

from mldesk.agent import logstore
from mldesk.agent.fsutil import write_json


class Matcher:
    """Drops the runner's records that the local log already holds (see the module doc)."""

    def __init__(self, records: list[tuple[int, float, bytes]]):
        self.local = records
        self.i = 0
        self.active = bool(records)

    def seen(self, stream: int, ts: float, data: bytes) -> bool:
        if not self.active:
            return False
        local = self.local
        while self.i < len(local) and local[self.i] != (stream, ts, data) and local[self.i][0] == logstore.MLDESK:
            self.i += 1  # a message of the local supervisor, not a copy
        if self.i < len(local) and local[self.i] == (stream, ts, data):
            self.i += 1
            return True
        self.active = False
        return False


def write_checkpoint(path: Path, offset: int, local_size: int) -> None:
    write_json(path, {"remote_offset": offset, "local_size": local_size})


def resume_point(checkpoint: Path | None, log_path: Path | None) -> tuple[int, Matcher]:
    """(offset in the runner's log to follow from, matcher for the records after it)."""
    remote, local = 0, 0
    if checkpoint is not None:
        try:
            data = json.loads(Path(checkpoint).read_text())
            remote, local = int(data["remote_offset"]), int(data["local_size"])
        except (OSError, ValueError, KeyError, TypeError):
            remote, local = 0, 0
    copied: list[tuple[int, float, bytes]] = []
    if log_path is not None and Path(log_path).exists():
        with logstore.LogReader(log_path) as reader:
            try:
                copied = [(r.stream, r.ts, r.data) for r in reader.iter_records(local)]
            except logstore.LogCorrupt:
                remote = 0
                copied = [(r.stream, r.ts, r.data) for r in reader.iter_records(0)]
    return remote, Matcher(copied)


__all__ = ["Matcher", "resume_point", "write_checkpoint"]
