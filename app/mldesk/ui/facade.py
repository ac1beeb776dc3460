"""The Qt side of the engine facade.

:class:`EngineBridge` subscribes to the engine's events (delivered on its watcher
thread) and re-emits them as Qt signals, connected with queued connections so every
slot runs on the GUI thread. :class:`Tasks` runs blocking engine calls (snapshots,
stop, remove...) on worker threads and hands their result or error back to the GUI
thread. Neither adds any execution logic: they only carry calls and events across
threads.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

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


class Tasks(QtCore.QObject):
    """Blocking calls on worker threads; results come back on the GUI thread.

    ``submit(fn, *args, done=..., error=...)``: ``done(result)`` or ``error(exc)``
    is called on the GUI thread (an error without handler goes to ``failed``).
    Plain Python threads (no QThread), all joined by :meth:`shutdown`.
    """

    failed = Signal(object, str)  # exception, what was being done
    idle = Signal()
    _finished = Signal(object)

    def __init__(self, parent: QtCore.QObject | None = None, workers: int = 4):
        super().__init__(parent)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mldesk-ui")
        self._pending = 0
        self._lock = threading.Lock()
        self._closed = False
        self._finished.connect(self._deliver, Qt.QueuedConnection)

    @property
    def pending(self) -> int:
        return self._pending

    def submit(self, fn: Callable[..., Any], *args: Any, done: Callable[[Any], None] | None = None,
               error: Callable[[BaseException], None] | None = None, what: str = "",
               **kwargs: Any) -> Future | None:
        if self._closed:
            return None
        with self._lock:
            self._pending += 1
        future = self._pool.submit(fn, *args, **kwargs)
        future.add_done_callback(lambda f: self._finished.emit((f, done, error, what)))
        return future

    def _deliver(self, item) -> None:
        future, done, error, what = item
        with self._lock:
            self._pending -= 1
        if self._closed:
            return
        try:
            exc = future.exception()
            if exc is not None:
                if error is not None:
                    error(exc)
                else:
                    self.failed.emit(exc, what)
            elif done is not None:
                done(future.result())
        finally:
            if self._pending == 0:
                self.idle.emit()

    def shutdown(self) -> None:
        """Wait for every submitted call to finish (a removal the user asked for
        still happens); no callback runs after this."""
        self._closed = True
        self._pool.shutdown(wait=True)
