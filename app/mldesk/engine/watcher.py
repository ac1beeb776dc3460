"""The engine's event watcher: one thread that turns store changes, followed logs and
input progress into :class:`~mldesk.engine.events.Event` calls to subscribers (``WatcherMixin``)."""

from __future__ import annotations

import threading
import time
from typing import Callable

from mldesk.agent import logstore
from mldesk.core.store import Execution, Store
from mldesk.engine.events import Event, EventKind, ProgressFeed


class WatcherMixin:
    """Mixed into :class:`mldesk.engine.facade.Engine` (uses its store, layout, listeners)."""

    # -- events ---------------------------------------------------------------
    def subscribe(self, listener: Callable[[Event], None]) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener: Callable[[Event], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def follow(self, exec_id: str, offset: int = 0) -> None:
        """Deliver ``log`` events for ``exec_id`` from byte ``offset`` on."""
        with self._follow_lock:
            self._follow[exec_id] = offset

    def unfollow(self, exec_id: str) -> None:
        with self._follow_lock:
            self._follow.pop(exec_id, None)

    def _emit(self, event: Event) -> None:
        for listener in list(self._listeners):
            listener(event)

    def start_watching(self, interval: float = 0.1) -> None:
        if self._watcher is not None:
            return
        self._stop_watch.clear()
        self._watcher = threading.Thread(target=self._watch, args=(interval,), name="mldesk-watch", daemon=True)
        self._watcher.start()

    def stop_watching(self) -> None:
        if self._watcher is None:
            return
        self._stop_watch.set()
        self._watcher.join(5)
        self._watcher = None

    def _watch(self, interval: float) -> None:
        import logging

        store = Store(self.layout.db)
        log = logging.getLogger("mldesk.engine")
        known: dict[str, Execution] = {ex.id: ex for ex in store.list()}
        seq = store.seq()
        version = None
        readers: dict[str, logstore.LogReader] = {}
        last_reattach = 0.0
        progress = ProgressFeed(self.layout.progress_path, self._emit)
        try:
            while not self._stop_watch.is_set():
                try:
                    # every writer is another connection, so data_version sees them all
                    now_version = store.data_version()
                    if now_version != version:
                        version = now_version
                        rows, gone, seq = store.changes_since(seq)
                        self._diff(known, rows, gone)
                    self._pump_logs(readers)
                    progress.poll(ex.id for ex in known.values() if ex.state == "fetching")
                    if time.monotonic() - last_reattach > 2.0:
                        last_reattach = time.monotonic()
                        self.reattach()
                except Exception:  # noqa: BLE001 - keep watching; the error is logged
                    log.exception("watcher iteration failed")
                self._stop_watch.wait(interval)
        finally:
            for reader in readers.values():
                reader.close()
            store.close()

    def _diff(self, known: dict[str, Execution], rows: list[Execution], gone: list[str]) -> None:
        for ex in rows:
            old = known.get(ex.id)
            if ex.hidden:
                if old is not None:
                    del known[ex.id]
                    self._emit(Event(EventKind.REMOVED, ex.id))
                continue
            known[ex.id] = ex
            if old is None:
                self._emit(Event(EventKind.ADDED, ex.id, ex))
            elif old.name != ex.name:
                self._emit(Event(EventKind.RENAMED, ex.id, ex))
            else:
                self._emit(Event(EventKind.CHANGED, ex.id, ex))
        for exec_id in gone:
            if known.pop(exec_id, None) is not None:
                self._emit(Event(EventKind.REMOVED, exec_id))

    def _pump_logs(self, readers: dict[str, logstore.LogReader]) -> None:
        with self._follow_lock:
            follows = dict(self._follow)
        for exec_id in list(readers):
            if exec_id not in follows:
                readers.pop(exec_id).close()
        for exec_id, offset in follows.items():
            reader = readers.get(exec_id)
            if reader is None:
                reader = readers[exec_id] = self.log_reader(exec_id)
            records, new_offset = reader.read_from(offset)
            if records:
                with self._follow_lock:
                    if self._follow.get(exec_id) == offset:
                        self._follow[exec_id] = new_offset
                    else:
                        continue  # re-followed meanwhile from another offset
                self._emit(Event(EventKind.LOG, exec_id, records=records, offset=new_offset))
