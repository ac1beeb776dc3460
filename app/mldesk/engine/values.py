"""Value types, states and errors the engine deliberately exports to the front ends (no behaviour here)."""

from __future__ import annotations

from mldesk.agent.errors import UserError
from mldesk.agent.logstore import MLDESK, STDERR, STDOUT, Record
from mldesk.core.snapshots import SnapshotError
from mldesk.core.store import ACTIVE_STATES, FINAL_STATES, STATES, Execution, StoreError
from mldesk.core.units import human_bytes, human_duration
from mldesk.engine.events import Event, EventKind

__all__ = [
    "UserError", "StoreError", "SnapshotError", "Execution", "ACTIVE_STATES", "FINAL_STATES", "STATES",
    "Record", "STDOUT", "STDERR", "MLDESK", "human_bytes", "human_duration", "Event", "EventKind",
]
