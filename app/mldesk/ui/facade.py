"""The engine's events as Qt signals on the GUI thread (:class:`EngineBridge`).

It subscribes to the engine's events (delivered on its watcher thread) and re-emits
them through a queued connection, so every slot runs on the GUI thread. It adds no
execution logic. (Blocking engine calls are async slots: see :mod:`mldesk.ui.aio`.)
"""

from __future__ import annotations

import logging

from mldesk.engine.facade import Engine
from mldesk.engine.values import Event, EventKind
from mldesk.ui.qt import QtCore, Qt, Signal

log = logging.getLogger("mldesk.ui")


class EngineBridge(QtCore.QObject):
    """Engine events as Qt signals (GUI thread)."""

    added = Signal(object)  # Execution
    changed = Signal(object)  # Execution
    renamed = Signal(object)  # Execution
    removed = Signal(str)  # execution id
    log = Signal(str, object, int)  # execution id, [Record], offset after them
    progress = Signal(str, object)  # execution id, {input name: progress} ({}: no longer fetching)

    _event = Signal(object)  # internal: watcher thread -> GUI thread

    def __init__(self, engine: Engine, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.engine = engine
        self._closed = False
        self._event.connect(self._dispatch, Qt.QueuedConnection)
        engine.subscribe(self._on_event)

    def start(self, interval: float = 0.1) -> None:
        self.engine.start_watching(interval)

    def _on_event(self, event: Event) -> None:  # watcher thread
        if not self._closed:
            self._event.emit(event)

    def _dispatch(self, event: Event) -> None:  # GUI thread
        if self._closed:
            return
        kind = event.kind
        if kind == EventKind.LOG:
            self.log.emit(event.exec_id, event.records, event.offset)
        elif kind == EventKind.ADDED:
            self.added.emit(event.execution)
        elif kind == EventKind.CHANGED:
            self.changed.emit(event.execution)
        elif kind == EventKind.RENAMED:
            self.renamed.emit(event.execution)
        elif kind == EventKind.REMOVED:
            self.removed.emit(event.exec_id)
        elif kind == EventKind.PROGRESS:
            self.progress.emit(event.exec_id, event.progress or {})

    def close(self) -> None:
        """Stop listening (and the engine's watcher thread, joined)."""
        if self._closed:
            return
        self._closed = True
        self.engine.unsubscribe(self._on_event)
        self.engine.stop_watching()
