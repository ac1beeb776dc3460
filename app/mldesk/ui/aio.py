"""The window's slow work as asyncio tasks on the qasync event loop (no QThreads, no bare threads).

``event_loop()`` is the qasync loop the application runs (``ui.main`` installs it; a
window or dialog used without ``main`` -- tests, benchmarks -- gets one attached to the
already running Qt event loop). :class:`Jobs` starts coroutines as tasks on it and
keeps track of them:

- ``await jobs.call(fn, *args)`` runs a blocking engine call on a worker thread (what
  ``asyncio.to_thread`` does, on the owner's own pool so that closing can wait for it);
- ``jobs.start(coro, what)`` runs an async slot; an exception it lets out is emitted as
  ``failed(exc, what)`` (the owner shows a ``UserError`` as a banner, reports a bug);
- ``jobs.shutdown()`` cancels every task (no UI code runs after it) and waits for the
  blocking calls already started (a removal the user asked for still happens).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable, TypeVar

from mldesk.ui.qt import QtCore, QtWidgets, Signal

log = logging.getLogger("mldesk.ui")
T = TypeVar("T")

_loop: asyncio.AbstractEventLoop | None = None


def install(loop: asyncio.AbstractEventLoop) -> None:
    """Use ``loop`` (the application's qasync loop, before it runs) for every window."""
    global _loop
    _loop = loop


def event_loop() -> asyncio.AbstractEventLoop:
    """The qasync loop of this application (attached to the running Qt loop if none was installed)."""
    global _loop
    if _loop is not None and not _loop.is_closed():
        return _loop
    running = asyncio._get_running_loop()  # noqa: SLF001 - None outside a running loop, no warning
    if running is not None:
        _loop = running
        return running
    import qasync

    app = QtWidgets.QApplication.instance()
    if app is None:  # pragma: no cover - every caller made the application first
        raise RuntimeError("no QApplication")
    _loop = qasync.QEventLoop(app, already_running=True)
    asyncio.set_event_loop(_loop)
    return _loop


class Jobs(QtCore.QObject):
    """Async slots and blocking calls of one owner (the window, a dialog)."""

    failed = Signal(object, str)  # exception, what was being done
    idle = Signal()

    def __init__(self, parent: QtCore.QObject | None = None, workers: int = 4, name: str = "mldesk-ui"):
        super().__init__(parent)
        self.loop = event_loop()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._tasks: set[asyncio.Task] = set()
        self._closed = False

    @property
    def pending(self) -> int:
        """Tasks not finished yet."""
        return len(self._tasks)

    @property
    def closed(self) -> bool:
        return self._closed

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on a worker thread; its result or exception comes back here.
        Cancelling the awaiting task does not interrupt the call (shutdown waits for it)."""
        if self._closed:
            raise asyncio.CancelledError()
        inner = asyncio.wrap_future(self._pool.submit(functools.partial(fn, *args, **kwargs)), loop=self.loop)
        inner.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved even when abandoned
        return await asyncio.shield(inner)

    def start(self, coro: Awaitable[Any], what: str = "") -> asyncio.Task | None:
        """Run ``coro`` as a task; None (and the coroutine closed) after shutdown."""
        if self._closed:
            getattr(coro, "close", lambda: None)()
            return None
        task = self.loop.create_task(self._guard(coro, what))
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def run(self, fn: Callable[..., Any], *args: Any, what: str = "", **kwargs: Any) -> asyncio.Task | None:
        """Fire and forget a blocking call (its error goes to ``failed``)."""
        return self.start(self.call(fn, *args, **kwargs), what)

    async def _guard(self, coro: Awaitable[Any], what: str) -> Any:
        try:
            return await coro
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - handed to the owner: banner or bug report
            if not self._closed:
                self.failed.emit(exc, what)
            else:
                log.debug("after shutdown, %s failed: %s", what or "a task", exc)
            return None

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not self._tasks and not self._closed:
            self.idle.emit()

    def shutdown(self, wait: bool = True) -> None:
        """Cancel every task (their UI code does not run); with ``wait``, block until the
        blocking calls already started have finished."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
