"""Live figures on the sidebar's rows: primary metric, progress (``engine.progress_line``), CPU / GPU use.

:class:`RowInfo` asks the engine every :attr:`RowInfo.INTERVAL_MS`, on a worker
thread, for what changed: new metric points of the running executions
(``engine.metrics_since``, incremental) and their latest resource sample
(``engine.stats``); finished executions are read once (``engine.primary_metric``).
The text goes to the model (``ExecutionModel.set_extra``), which the row paints.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from mldesk.ui.metricstab import read_since
from mldesk.ui.qt import QtCore

if TYPE_CHECKING:  # pragma: no cover
    from mldesk.ui.mainwindow import MainWindow


def number(v) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if math.isnan(f) or math.isinf(f):
        return str(f)
    return f"{f:.4g}"


def _last(series) -> float | None:
    try:
        return float(series[-1][1]) if series else None
    except (TypeError, ValueError, IndexError):
        return None


def summary_text(summary: dict) -> str:
    """``peak 1.2 GB · GPU 73%``: the end-of-run summary of ``engine.resource_summary``."""
    from mldesk.engine import human_bytes

    parts = []
    peak = (summary or {}).get("peak_rss_bytes")
    if peak:
        parts.append(f"peak {human_bytes(peak)}")
    utils = [g.get("mean_util_percent") for g in ((summary or {}).get("gpu") or {}).values()]
    utils = [u for u in utils if u is not None]
    if utils:
        parts.append(f"GPU {sum(utils) / len(utils):.0f}% mean")
    return " \u00b7 ".join(parts)


def resource_text(stats: dict) -> str:
    """``CPU 98% · GPU 54%`` from the latest samples of ``engine.stats``."""
    parts = []
    cpu = _last((stats or {}).get("cpu_percent"))
    if cpu is not None:
        parts.append(f"CPU {cpu:.0f}%")
    utils = [u for u in (_last(g.get("util_percent")) for g in ((stats or {}).get("gpu") or {}).values())
             if u is not None]
    if utils:
        parts.append(f"GPU {sum(utils) / len(utils):.0f}%")
    return " \u00b7 ".join(parts)


def _better(best, value, goal: str):
    """The better of ``best`` (None: none yet) and ``value`` for ``goal`` ("min"/"max")."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return best
    if math.isnan(v):
        return best
    if best is None:
        return v
    return min(best, v) if goal == "min" else max(best, v)


class _Live:
    __slots__ = ("offset", "primary", "goal", "best", "value", "step", "res", "progress")

    def __init__(self) -> None:
        self.offset = 0
        self.primary: str | None = None
        self.goal = "min"
        self.best = None
        self.value = None
        self.step = None
        self.res = ""
        self.progress = ""


class RowInfo(QtCore.QObject):
    INTERVAL_MS = 2000
    #: finished executions read per round (the rest follow in later rounds)
    FINAL_PER_ROUND = 20

    def __init__(self, window: "MainWindow"):
        super().__init__(window)
        self.w = window
        self.engine = window.engine
        self.jobs = window.jobs
        self.live: dict[str, _Live] = {}
        self.done: set[str] = set()
        self.rounds = 0
        self._busy = False
        self._timer = QtCore.QTimer(self)
        self._timer.setInterval(self.INTERVAL_MS)
        self._timer.timeout.connect(self.refresh)
        window.model.modelReset.connect(self._reset)

    def start(self) -> None:
        self._timer.start()
        QtCore.QTimer.singleShot(500, self.refresh)

    def stop(self) -> None:
        self._timer.stop()

    def _reset(self) -> None:
        self.live.clear()
        self.done.clear()

    def refresh(self) -> None:
        if self._busy or self.jobs.closed:
            return
        model = self.w.model
        active, final = [], []
        for ex in model.executions():
            if ex.active and ex.state != "queued":
                active.append(ex.id)
            elif ex.final and ex.id not in self.done and len(final) < self.FINAL_PER_ROUND:
                final.append(ex.id)
        if not active and not final:
            return
        for ex_id in active:
            self.live.setdefault(ex_id, _Live())
        self._busy = True
        self.jobs.start(self._round(active, final), "reading the executions' figures")

    def _gather(self, active: list[str], final: list[str]) -> tuple[dict, dict]:  # worker thread
        live_out, final_out = {}, {}
        for ex_id in active:
            st = self.live.get(ex_id) or _Live()
            try:
                ex = self.engine.get(ex_id)
                if st.primary is None:
                    cfg = self.engine.metrics_config(ex)
                    st.goal = "min" if cfg.lower_is_better else "max"
                    st.primary = cfg.primary or ""
                points, offset = read_since(self.engine, ex_id, st.offset)
                value, step, best = st.value, st.step, st.best
                for p in points:
                    if st.primary and p[0] == st.primary:
                        value = p[2]
                        best = _better(best, value, st.goal)
                    step = p[1] if p[1] is not None else step
                res = resource_text(self.engine.stats(ex_id))
                try:
                    progress = self.engine.progress_line(ex_id) or ""  # epoch 3/10 · 56%
                except Exception:  # noqa: BLE001 - no log yet
                    progress = ""
            except Exception:  # noqa: BLE001 - a row without figures is fine
                continue
            live_out[ex_id] = (offset, value, step, res, progress, best)
        for ex_id in final:
            try:
                primary = self.engine.primary_metric(ex_id)
            except Exception:  # noqa: BLE001
                primary = None
            try:
                used = summary_text(self.engine.resource_summary(ex_id))
            except Exception:  # noqa: BLE001 - no samples
                used = ""
            final_out[ex_id] = (primary, used)
        return live_out, final_out

    async def _round(self, active: list[str], final: list[str]) -> None:
        try:
            live_out, final_out = await self.jobs.call(self._gather, active, final)
        finally:
            self._busy = False
        self.rounds += 1
        model = self.w.model
        for ex_id, (offset, value, step, res, progress, best) in live_out.items():
            st = self.live.setdefault(ex_id, _Live())
            st.offset, st.value, st.step, st.res, st.progress, st.best = offset, value, step, res, progress, best
            if st.primary and best is not None:  # the sweep's header shows its trials' best
                model.set_metric(ex_id, st.primary, best, st.goal)
            parts = []
            if progress:
                parts.append(progress)
            if st.primary and value is not None:
                parts.append(f"{st.primary} {number(value)}")
            if step is not None and not progress:
                parts.append(f"step {number(step)}")
            if res:
                parts.append(res)
            model.set_extra(ex_id, " \u00b7 ".join(parts))
        for ex_id, (primary, used) in final_out.items():
            self.done.add(ex_id)
            self.live.pop(ex_id, None)
            text = ""
            if primary and primary.get("best") is not None:
                model.set_metric(ex_id, primary["key"], primary["best"], primary.get("goal") or "min")
            if primary and primary.get("last") is not None:
                text = f"{primary['key']} {number(primary['last'])}"
                if primary.get("best") is not None and primary["best"] != primary["last"]:
                    text += f" (best {number(primary['best'])})"
            if used:  # the end-of-run summary: peak memory, mean GPU use
                text = f"{text} \u00b7 {used}" if text else used
            model.set_extra(ex_id, text)

