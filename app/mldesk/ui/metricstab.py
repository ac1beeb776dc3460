"""The Metrics tab: the selected execution's charts (:class:`~mldesk.ui.charts.MetricsView`), live.

:class:`MetricsTab` adds a "Metrics" tab beside Output / Outputs / Inputs and follows
the sidebar's selection:

- a running execution is polled with ``engine.metrics_since`` (only the points stored
  since the last poll) every :attr:`MetricsTab.POLL_MS` while the tab is visible, and
  its resource samples (``engine.stats``: CPU, memory, GPU) every :attr:`STATS_MS`;
- a finished one shows its stored history (one read of each);
- the primary metric (``engine.primary_metric``) is starred and shown first.

Every engine call runs on the window's worker threads (:mod:`.aio`); a result that
arrives after the selection changed is dropped (a generation counter).

The charts (pyqtgraph, numpy: over a second to import on a busy machine) are made the
first time the tab is shown, not when the window starts (P7: start-up time).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from mldesk.engine.values import Execution
from mldesk.ui.qt import QtCore, QtWidgets

if TYPE_CHECKING:  # pragma: no cover
    from mldesk.ui.mainwindow import MainWindow

#: one engine metrics read at a time per window (the scanner's cache is per execution)
METRICS_LOCK = threading.Lock()


def points_by_key(points: list) -> dict[str, list[tuple]]:
    """``[[key, step, value, time], ...]`` (``metrics_since``) -> ``{key: [(step, value, time)]}``."""
    out: dict[str, list[tuple]] = {}
    for p in points:
        try:
            key, step, value, t = p[0], p[1], p[2], (p[3] if len(p) > 3 else None)
        except (IndexError, TypeError):
            continue
        out.setdefault(str(key), []).append((step, value, t))
    return out


def read_since(engine, exec_id: str, offset: int) -> tuple[list, int]:
    """``engine.metrics_since`` under :data:`METRICS_LOCK` (worker thread)."""
    with METRICS_LOCK:
        return engine.metrics_since(exec_id, offset)


def read_all(engine, exec_id: str) -> dict[str, list]:
    """Every point of an execution (``engine.metrics``: for an ended one it waits until
    its scanner is done, so nothing printed last is missing); worker thread."""
    with METRICS_LOCK:
        return engine.metrics(exec_id)


class MetricsTab(QtCore.QObject):
    """Owns the "Metrics" page (``page``, objectName ``metricsPage``) in ``window.bottom_tabs``
    and, once made, its :class:`~mldesk.ui.charts.MetricsView` (``view``, objectName ``metricsView``)."""

    POLL_MS = 150  # <= 10 Hz: the view repaints at most ~10 times a second anyway
    STATS_MS = 2000

    def __init__(self, window: "MainWindow"):
        super().__init__(window)
        self.w = window
        self.engine = window.engine
        self.jobs = window.jobs
        self.page = QtWidgets.QWidget(window.bottom_tabs)
        self.page.setObjectName("metricsPage")
        layout = QtWidgets.QVBoxLayout(self.page)
        layout.setContentsMargins(0, 0, 0, 0)
        self._view = None
        self.primary: tuple[str, str | None] | None = None
        self.index = window.bottom_tabs.addTab(self.page, "Metrics")
        window.bottom_tabs.setTabToolTip(
            self.index, "Scalars the program prints (loss: 0.42, acc=0.9) and CPU / memory / GPU use, live")
        self.exec_id: str | None = None
        self.offset = 0
        self.generation = 0
        self.polls = 0  # completed metric polls (tests)
        self._busy = False
        self._stats_busy = False
        self._last_stats = 0.0
        self._final_read = False
        self._final_stats = False
        self._timer = QtCore.QTimer(self)
        self._timer.setInterval(self.POLL_MS)
        self._timer.timeout.connect(self._tick)
        window.execution_list.selectionModel().selectionChanged.connect(lambda *_a: self.follow_selection())
        window.model.dataChanged.connect(lambda *_a: self._state_changed())
        window.bottom_tabs.currentChanged.connect(lambda _i: self._tab_changed())

    @property
    def view(self):
        """The charts (made, with their imports, on first use)."""
        if self._view is None:
            from mldesk.ui.charts import MetricsView

            self._view = MetricsView(self.page)
            self._view.setObjectName("metricsView")
            self.page.layout().addWidget(self._view)
            ex = self._execution()
            if ex is not None:
                self._view.set_metrics({}, run=ex.id, label=ex.name)
            if self.primary:
                self._view.set_primary(self.primary)
        return self._view

    def _tab_changed(self) -> None:
        if self.visible():
            self.view  # noqa: B018 - made now
        self._tick()

    # -- what is shown -----------------------------------------------------------------
    def follow_selection(self) -> None:
        self.show(self.w.current_execution())

    def show(self, ex: Execution | None) -> None:
        if ex is not None and ex.id == self.exec_id:
            return
        self.generation += 1
        self.exec_id = ex.id if ex is not None else None
        self.offset = 0
        self._busy = self._stats_busy = False
        self._last_stats = 0.0
        self._final_read = False
        self._final_stats = False
        self.primary = None
        self._timer.stop()
        if self._view is not None:
            self._view.clear()
            if ex is not None:
                self._view.set_metrics({}, run=ex.id, label=ex.name)
        if ex is None:
            return
        self.jobs.start(self._load_primary(self.generation, ex.id), "reading the primary metric")
        self._timer.start()
        self._tick()

    def visible(self) -> bool:
        return self.w.bottom_tabs.currentWidget() is self.page

    def _execution(self) -> Execution | None:
        return self.w.model.get(self.exec_id) if self.exec_id else None

    def _state_changed(self) -> None:
        ex = self._execution()
        if ex is not None and ex.final and not self._timer.isActive() and not (self._final_read and self._final_stats):
            self._timer.start()

    # -- polling -------------------------------------------------------------------------
    def _tick(self) -> None:
        ex = self._execution()
        if ex is None:
            self._timer.stop()
            return
        if not self.visible():
            return  # caught up (incrementally) when the tab is shown
        if ex.final and self._final_read and self._final_stats:
            self._timer.stop()  # an ended execution: its whole history is shown
            return
        now = time.monotonic()
        if not self._busy and not (ex.final and self._final_read):
            self._busy = True
            self.jobs.start(self._poll(self.generation, ex.id, self.offset, ex.final), "reading metrics")
        if not self._stats_busy and not (ex.final and self._final_stats) and (
                now - self._last_stats >= self.STATS_MS / 1000 or ex.final):
            self._stats_busy = True
            self._last_stats = now
            self.jobs.start(self._poll_stats(self.generation, ex.id, ex.final), "reading resource samples")

    async def _poll(self, gen: int, exec_id: str, offset: int, final: bool) -> None:
        try:
            if final:  # the whole stored history, complete
                metrics, points, new_offset = await self.jobs.call(read_all, self.engine, exec_id), [], 0
            else:
                metrics, (points, new_offset) = None, await self.jobs.call(read_since, self.engine, exec_id, offset)
        finally:
            if gen == self.generation:
                self._busy = False
        if gen != self.generation:
            return
        self.polls += 1
        if final:
            self.view.set_metrics(metrics, run=exec_id)
            self._final_read = True
            return
        if new_offset < self.offset:  # rewritten: start over
            self.view.set_metrics(points_by_key(points), run=exec_id)
        elif points:
            self.view.append(points_by_key(points), run=exec_id)
        self.offset = new_offset

    async def _poll_stats(self, gen: int, exec_id: str, final: bool) -> None:
        try:
            stats = await self.jobs.call(self.engine.stats, exec_id)
        finally:
            if gen == self.generation:
                self._stats_busy = False
        if gen != self.generation:
            return
        if stats and (stats.get("cpu_percent") or stats.get("rss_bytes") or stats.get("gpu")):
            self.view.set_resources(stats)
        self._final_stats = final

    async def _load_primary(self, gen: int, exec_id: str) -> None:
        try:
            primary = await self.jobs.call(self.engine.primary_metric, exec_id)
        except Exception:  # noqa: BLE001 - no star is not worth a banner
            return
        if gen == self.generation and primary:
            self.primary = (primary["key"], primary.get("goal"))
            if self._view is not None:
                self._view.set_primary(self.primary)

    def close(self) -> None:
        self._timer.stop()
        self.generation += 1
