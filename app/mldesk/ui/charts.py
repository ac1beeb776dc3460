"""Live metric charts (the Metrics tab) built on pyqtgraph.

:class:`MetricsView` shows one pyqtgraph plot per metric key, grouped under
headers by the key's prefix (``train/``, ``val/``, ...), plus a "System" group for
resource samples (CPU, memory, GPU).  It can hold several *runs* (executions) at
once, one colour each: the Compare view reuses it for its overlay charts.

Data arrive as the core hands them over (see the data contract in issue 13):

* ``set_metrics(metrics, run=...)`` replaces a run's data with
  ``{key: [(step, value, time), ...]}``;
* ``append(delta, run=...)`` adds new points (same shape) as they are parsed.

Points are copied into growing numpy buffers at once (cheap), and the plots are
updated by a timer at most every :attr:`MetricsView.FLUSH_INTERVAL_MS` (~10 Hz),
whatever the rate of ``append`` calls.  Every plot clips to its view and
downsamples (``peak``), so a million points stay smooth.

pyqtgraph is imported only inside ``mldesk.ui`` (it pulls in Qt).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Mapping, Sequence

import numpy as np
import pyqtgraph as pg

from mldesk.ui.qt import QtCore, QtGui, QtWidgets, Qt, Signal
from mldesk.ui.widgets import SectionHeader, is_dark

#: One colour per run (execution), in order; more runs cycle through hues.
RUN_COLORS = [
    "#2f7bea", "#e8590c", "#2b8a3e", "#c2255c", "#7048e8",
    "#0c8599", "#e67700", "#5c940d", "#862e9c", "#495057",
]

EMPTY_TEXT = (
    "<b>No metrics yet</b><br><br>"
    "Print lines like <code>loss: 0.42</code> or <code>epoch 3 acc=0.91</code> "
    "and they appear here, live."
)

#: Prefix groups shown first, in this order; other prefixes follow alphabetically.
GROUP_ORDER = ("train", "val", "valid", "validation", "eval", "test")
SYSTEM_GROUP = "\0system"
PLOT_HEIGHT = 210
MIN_PLOT_WIDTH = 360


def run_color(index: int) -> QtGui.QColor:
    if index < len(RUN_COLORS):
        return QtGui.QColor(RUN_COLORS[index])
    return QtGui.QColor.fromHsvF(((index - len(RUN_COLORS)) * 0.618034 + 0.05) % 1.0, 0.7, 0.8)


def group_of(key: str) -> str:
    """The header a key is shown under: its prefix before the first ``/`` ("" for none)."""
    return key.split("/", 1)[0] if "/" in key else ""


def _group_sort_key(group: str) -> tuple:
    if group == SYSTEM_GROUP:
        return (3, "")
    if group in GROUP_ORDER:
        return (0, GROUP_ORDER.index(group))
    if group == "":
        return (2, "")
    return (1, group)


def ema_extend(x: np.ndarray, weight: float, state: tuple[float, int]) -> tuple[np.ndarray, tuple[float, int]]:
    """Debiased exponential moving average (TensorBoard's smoothing) of ``x``,
    continuing from ``state`` = (biased accumulator, finite count so far).

    Non-finite values are skipped (they stay NaN in the result, a gap in the line).
    Vectorised in chunks short enough that ``weight ** -chunk`` cannot overflow.
    """
    out = np.full(x.shape, np.nan)
    if weight <= 0.0:
        out[:] = x
        return out, state
    acc, count = state
    mask = np.isfinite(x)
    xf = x[mask]
    if xf.size == 0:
        return out, state
    b, a = float(weight), 1.0 - float(weight)
    chunk = int(max(1, min(4096, 150.0 / -math.log10(b))))
    res = np.empty(xf.shape)
    for start in range(0, xf.size, chunk):
        c = xf[start:start + chunk]
        p = b ** np.arange(1, c.size + 1, dtype=float)
        y = p * (acc + a * np.cumsum(c / p))
        n = count + np.arange(1, c.size + 1, dtype=float)
        res[start:start + chunk] = y / (1.0 - b ** n)
        acc = float(y[-1])
        count += c.size
    out[mask] = res
    return out, (acc, count)


def _as_array(points: Sequence | np.ndarray) -> np.ndarray:
    """(n, k) float64 array of points; lists of 3-tuples take the fast path."""
    if isinstance(points, np.ndarray):
        arr = points.astype(float, copy=False)
    else:
        try:  # ~2x faster than np.asarray on a list of tuples
            if len(points[0]) != 3 or len(points[-1]) != 3:
                raise ValueError
            arr = np.fromiter(itertools.chain.from_iterable(points), dtype=float,
                              count=3 * len(points)).reshape(-1, 3)
        except (ValueError, TypeError):  # (step, value) pairs, or mixed lengths
            rows = [tuple(p) + (math.nan,) * (3 - len(p)) if len(p) < 3 else tuple(p)[:3] for p in points]
            arr = np.asarray(rows, dtype=float)
    if arr.ndim != 2:
        arr = arr.reshape(-1, arr.shape[-1] if arr.ndim else 1)
    return arr


class Series:
    """One key of one run: step, value and time in growing float64 buffers."""

    __slots__ = ("_buf", "n", "x_sorted", "t_sorted", "smooth", "smooth_n", "smooth_w", "ema")

    def __init__(self, capacity: int = 256) -> None:
        self._buf = np.empty((3, capacity))
        self.n = 0
        self.x_sorted = True  # steps never went down (clip-to-view needs sorted x)
        self.t_sorted = True
        self.smooth: np.ndarray | None = None
        self.smooth_n = 0
        self.smooth_w = 0.0
        self.ema = (0.0, 0)

    def extend(self, points: Sequence | np.ndarray) -> int:
        """Add points: a sequence of (step, value[, time]) or an (n, 2|3) array."""
        if not len(points):
            return 0
        arr = _as_array(points)
        k = arr.shape[0]
        if arr.shape[1] < 3:  # (step, value) without a time
            arr = np.hstack([arr, np.full((k, 3 - arr.shape[1]), np.nan)])
        need = self.n + k
        if need > self._buf.shape[1]:
            cap = max(need, self._buf.shape[1] * 2)
            buf = np.empty((3, cap))
            buf[:, :self.n] = self._buf[:, :self.n]
            self._buf = buf
        self._buf[:, self.n:need] = arr[:, :3].T
        if self.x_sorted:
            s = self._buf[0, max(0, self.n - 1):need]
            self.x_sorted = bool(np.all(s[1:] >= s[:-1]))
        if self.t_sorted:
            t = self._buf[2, max(0, self.n - 1):need]
            self.t_sorted = bool(np.all(t[1:] >= t[:-1]))
        self.n = need
        return k

    @property
    def step(self) -> np.ndarray:
        return self._buf[0, :self.n]

    @property
    def value(self) -> np.ndarray:
        return self._buf[1, :self.n]

    @property
    def time(self) -> np.ndarray:
        return self._buf[2, :self.n]

    def x(self, mode: str) -> np.ndarray:
        return self.time if mode == "time" else self.step

    def smoothed(self, weight: float) -> np.ndarray:
        """The values smoothed with ``weight`` (0: the raw values), computed incrementally."""
        if weight <= 0.0:
            return self.value
        if self.smooth is None or self.smooth_w != weight or self.smooth_n > self.n:
            self.smooth, self.smooth_n, self.smooth_w, self.ema = np.empty(0), 0, weight, (0.0, 0)
        if self.smooth_n < self.n:
            new, self.ema = ema_extend(self.value[self.smooth_n:], weight, self.ema)
            if self.smooth.size < self.n:
                grown = np.empty(max(self.n, 2 * self.smooth.size))
                grown[:self.smooth_n] = self.smooth[:self.smooth_n]
                self.smooth = grown
            self.smooth[self.smooth_n:self.n] = new
            self.smooth_n = self.n
        return self.smooth[:self.n]

    def summary(self) -> dict:
        """last / min / max / count of the finite values (None when there are none)."""
        v = self.value
        finite = v[np.isfinite(v)]
        return {
            "last": float(v[-1]) if v.size else None,
            "min": float(finite.min()) if finite.size else None,
            "max": float(finite.max()) if finite.size else None,
            "count": int(v.size),
        }


def _fmt_value(v: float) -> str:
    if not math.isfinite(v):
        return str(v)
    a = abs(v)
    if a != 0 and (a >= 1e6 or a < 1e-3):
        return f"{v:.4g}"
    return f"{v:.4f}".rstrip("0").rstrip(".") if a < 1000 else f"{v:,.1f}"


def _fmt_x(x: float, mode: str) -> str:
    if not math.isfinite(x):
        return str(x)
    if mode == "time":
        return time.strftime("%H:%M:%S", time.localtime(x))
    if mode == "rel":
        return f"{x:.1f} s"
    return f"step {x:g}"


class ChartWidget(pg.PlotWidget):
    """One plot: a curve (raw, and smoothed on top when smoothing) per run, a
    crosshair with a read-out of the nearest points under the mouse.

    The mouse wheel scrolls the page; Ctrl+wheel zooms; drag pans; right-drag
    zooms an axis; double-click restores the automatic range.
    """

    def __init__(self, title: str, parent: QtWidgets.QWidget | None = None, *, time_axis: bool = False):
        self._ready = False
        self._time_axis = time_axis
        axis = {"bottom": pg.DateAxisItem(orientation="bottom")} if time_axis else {}
        super().__init__(parent, axisItems=axis)
        self.key = title
        self.setObjectName("metricChart")
        self.setMinimumHeight(PLOT_HEIGHT)
        self.setMaximumHeight(PLOT_HEIGHT)
        self.setMinimumWidth(240)
        item = self.getPlotItem()
        item.setTitle(title, size="9pt")
        item.showGrid(x=True, y=True, alpha=0.15)
        for name in ("left", "bottom"):
            self._tune_axis(item.getAxis(name))
        item.setClipToView(True)
        item.setDownsampling(auto=True, mode="peak")
        item.hideButtons()
        # The view follows the data with headroom (so the axes, and the grid they draw,
        # are redrawn only when the data outgrow them, not on every update, and one
        # paint per update suffices) until the user pans or zooms.
        self._follow = True
        self._x_span: tuple[float, float] | None = None
        self._y_span: tuple[float, float] | None = None
        vb = item.getViewBox()
        vb.disableAutoRange()
        vb.sigRangeChangedManually.connect(self._manual_range)
        item.setMenuEnabled(False)
        self.setToolTip("")
        #: run -> (raw curve, smoothed curve)
        self.curves: dict[str, tuple[pg.PlotDataItem, pg.PlotDataItem]] = {}
        #: run -> (x, y shown) for the read-out
        self.display: dict[str, tuple[np.ndarray, np.ndarray, bool]] = {}
        self.labels: dict[str, str] = {}
        self.x_mode = "step"
        self.value_format = _fmt_value
        self.vline = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen((128, 128, 128, 160), width=1))
        self.vline.setZValue(50)
        self.vline.hide()
        item.addItem(self.vline, ignoreBounds=True)
        self.dots = pg.ScatterPlotItem(size=7, pen=pg.mkPen(None))
        self.dots.setZValue(60)
        item.addItem(self.dots, ignoreBounds=True)
        self.readout = pg.TextItem(anchor=(0, 1), fill=pg.mkBrush(255, 255, 255, 225), border=pg.mkPen(190, 190, 190))
        self.readout.setZValue(100)
        self.readout.hide()
        item.addItem(self.readout, ignoreBounds=True)
        self.scene().sigMouseMoved.connect(self._hover)
        self._ready = True
        self.apply_palette()

    @staticmethod
    def _tune_axis(axis: pg.AxisItem) -> None:
        # The grid is drawn by the axes across the whole plot: keep it to the major
        # and first minor ticks, and cache the axis (with its grid) as a pixmap so a
        # repaint for new points does not redraw it unless its ticks moved.
        axis.setStyle(maxTickLevel=1)
        axis.setCacheMode(QtWidgets.QGraphicsItem.DeviceCoordinateCache)

    # ------------------------------------------------------------ styling
    def apply_palette(self) -> None:
        pal = self.palette()
        dark = is_dark(self)
        self.setBackground(pal.color(QtGui.QPalette.Base))
        text = pal.color(QtGui.QPalette.Text)
        for name in ("left", "bottom"):
            ax = self.getPlotItem().getAxis(name)
            ax.setTextPen(text)
            ax.setPen(pg.mkPen(QtGui.QColor(text.red(), text.green(), text.blue(), 90)))
        self.getPlotItem().titleLabel.setAttr("color", text.name())
        self.getPlotItem().titleLabel.setText(self.getPlotItem().titleLabel.text)
        if dark:
            self.readout.fill = pg.mkBrush(40, 44, 52, 230)
            self.readout.border = pg.mkPen(90, 90, 90)
            self.readout.setColor(text)
        else:
            self.readout.fill = pg.mkBrush(255, 255, 255, 230)
            self.readout.border = pg.mkPen(190, 190, 190)
            self.readout.setColor(text)

    def changeEvent(self, event: QtCore.QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QtCore.QEvent.PaletteChange and self._ready:
            self.apply_palette()

    # ------------------------------------------------------------ data
    def curve_for(self, run: str, color: QtGui.QColor, label: str) -> tuple[pg.PlotDataItem, pg.PlotDataItem]:
        pair = self.curves.get(run)
        if pair is None:
            faint = QtGui.QColor(color)
            faint.setAlpha(70)
            raw = self.getPlotItem().plot(pen=pg.mkPen(color, width=1), name=label)
            smooth = self.getPlotItem().plot(pen=pg.mkPen(color, width=1.6))
            smooth.hide()
            raw._mldesk_colors = (QtGui.QColor(color), faint)
            raw._mldesk_faint = False
            pair = self.curves[run] = (raw, smooth)
        self.labels[run] = label
        return pair

    def set_series(self, run: str, x: np.ndarray, y: np.ndarray, smoothed: np.ndarray | None,
                   color: QtGui.QColor, label: str, x_sorted: bool = True) -> None:
        """Hand a run's points to its curves; call :meth:`fit_view` after the last run."""
        raw, smooth = self.curve_for(run, color, label)
        solid, faint = raw._mldesk_colors
        if raw._mldesk_faint != (smoothed is not None):
            raw._mldesk_faint = smoothed is not None
            raw.setPen(pg.mkPen(faint if raw._mldesk_faint else solid, width=1))
        if not x_sorted and raw.opts["clipToView"]:
            raw.setClipToView(False)  # clipping presumes x in increasing order
            smooth.setClipToView(False)
        raw.setData(x, y)
        if smoothed is None:
            smooth.hide()
            self.display[run] = (x, y, x_sorted, y)
        else:
            smooth.setData(x, smoothed)
            smooth.show()
            self.display[run] = (x, smoothed, x_sorted, y)

    def remove_run(self, run: str) -> None:
        pair = self.curves.pop(run, None)
        self.display.pop(run, None)
        self.labels.pop(run, None)
        if pair:
            for c in pair:
                self.getPlotItem().removeItem(c)

    def set_time_axis(self, on: bool) -> None:
        if on == self._time_axis:
            return
        self._time_axis = on
        axis = pg.DateAxisItem(orientation="bottom") if on else pg.AxisItem(orientation="bottom")
        self.getPlotItem().setAxisItems({"bottom": axis})
        self.apply_palette()

    def reset_view(self) -> None:
        """Fit both axes to the data again, and follow new points."""
        self._follow = True
        self._x_span = self._y_span = None
        self.fit_view()

    def _manual_range(self, *_args) -> None:
        self._follow = False

    def x_bounds(self) -> tuple[float, float] | None:
        lo = hi = None
        for x, _y, x_sorted, _raw in self.display.values():
            if x.size == 0:
                continue
            if x_sorted and math.isfinite(x[0]) and math.isfinite(x[-1]):
                a, b = float(x[0]), float(x[-1])
            else:
                finite = x[np.isfinite(x)]
                if finite.size == 0:
                    continue
                a, b = float(finite.min()), float(finite.max())
            lo = a if lo is None else min(lo, a)
            hi = b if hi is None else max(hi, b)
        return None if lo is None else (lo, hi)

    def y_bounds(self) -> tuple[float, float] | None:
        """Bounds of the raw values (in log10 when the y axis is logarithmic)."""
        log_y = self.getPlotItem().ctrl.logYCheck.isChecked()
        lo = hi = None
        for _x, _y, _s, raw in self.display.values():
            if raw.size == 0:
                continue
            v = raw[raw > 0] if log_y else raw
            with np.errstate(all="ignore"):
                a, b = np.nanmin(v, initial=np.inf), np.nanmax(v, initial=-np.inf)
            # nanmin/nanmax skip NaN but not inf
            if not (math.isfinite(a) and math.isfinite(b)):
                finite = v[np.isfinite(v)]
                if finite.size == 0:
                    continue
                a, b = finite.min(), finite.max()
            a, b = float(a), float(b)
            if log_y:
                a, b = math.log10(a), math.log10(b)
            lo = a if lo is None else min(lo, a)
            hi = b if hi is None else max(hi, b)
        return None if lo is None else (lo, hi)

    @staticmethod
    def _grow(span: tuple[float, float] | None, bounds: tuple[float, float], extra: float,
              both_sides: bool) -> tuple[float, float] | None:
        """The new span when ``bounds`` outgrew ``span`` (None: it still fits)."""
        lo, hi = bounds
        if hi <= lo:
            d = abs(lo) * 0.05 or 1.0
            lo, hi = lo - d, hi + d
        if span is not None and span[0] <= lo and hi <= span[1]:
            return None
        if span is None:
            return lo, hi
        pad = (hi - lo) * extra
        new_lo = span[0] if lo >= span[0] else (lo - pad if both_sides else lo)
        new_hi = span[1] if hi <= span[1] else hi + pad
        return new_lo, new_hi

    def fit_view(self) -> None:
        """Keep the data in view: exactly at first, then with headroom as they grow."""
        if not self._follow:
            return
        vb = self.getPlotItem().getViewBox()
        xb, yb = self.x_bounds(), self.y_bounds()
        if xb is not None:
            new = self._grow(self._x_span, xb, 0.25, both_sides=False)
            if new is not None:
                self._x_span = new
                vb.setXRange(*new, padding=0.02)
        if yb is not None:
            new = self._grow(self._y_span, yb, 0.10, both_sides=True)
            if new is not None:
                self._y_span = new
                vb.setYRange(*new, padding=0.06)

    def plotted_points(self, run: str) -> int:
        pair = self.curves.get(run)
        if pair is None or pair[0].xData is None:
            return 0
        return len(pair[0].xData)

    # ------------------------------------------------------------ mouse
    def wheelEvent(self, event: QtGui.QWheelEvent) -> None:
        if event.modifiers() & Qt.ControlModifier:
            super().wheelEvent(event)
        else:
            event.ignore()  # let the scroll area scroll the page

    def mouseDoubleClickEvent(self, event: QtGui.QMouseEvent) -> None:
        self.reset_view()
        event.accept()

    def leaveEvent(self, event: QtCore.QEvent) -> None:
        self.hide_readout()
        super().leaveEvent(event)

    def hide_readout(self) -> None:
        self.vline.hide()
        self.readout.hide()
        self.dots.setData([], [])

    def _hover(self, pos: QtCore.QPointF) -> None:
        vb = self.getPlotItem().getViewBox()
        if not self.getPlotItem().sceneBoundingRect().contains(pos) or not self.display:
            self.hide_readout()
            return
        p = vb.mapSceneToView(pos)
        self.show_readout_at(p.x())

    def show_readout_at(self, xv: float) -> str:
        """Put the crosshair at data x ``xv``; returns the read-out text (for tests)."""
        log_y = self.getPlotItem().ctrl.logYCheck.isChecked()
        rows, spots, nearest_x = [], [], None
        for run, (x, y, x_sorted, _raw) in self.display.items():
            if x.size == 0:
                continue
            if x_sorted:
                i = int(np.searchsorted(x, xv))
                if i >= x.size or (i > 0 and abs(x[i - 1] - xv) <= abs(x[i] - xv)):
                    i = max(0, i - 1) if i >= x.size else i - 1
            else:
                i = int(np.nanargmin(np.abs(x - xv))) if np.isfinite(x).any() else 0
            xi, yi = float(x[i]), float(y[i])
            if not math.isfinite(xi):
                continue
            if nearest_x is None or abs(xi - xv) < abs(nearest_x - xv):
                nearest_x = xi
            color = self.curves[run][0]._mldesk_colors[0]
            label = self.labels.get(run) or self.key
            rows.append((color, label, yi, xi))
            if math.isfinite(yi) and (not log_y or yi > 0):
                spots.append({"pos": (xi, math.log10(yi) if log_y else yi), "brush": pg.mkBrush(color)})
        if nearest_x is None:
            self.hide_readout()
            return ""
        mode = "time" if self._time_axis else self.x_mode
        head = _fmt_x(nearest_x, mode)
        lines = [head] + [f"{label}: {self.value_format(v)}" for _c, label, v, _x in rows[:12]]
        if len(rows) > 12:
            lines.append(f"… {len(rows) - 12} more")
        html = "<br>".join(
            [f"<span style='color:gray'>{head}</span>"]
            + [f"<span style='color:{c.name()}'>\u25cf</span> {_esc(label)}: <b>{self.value_format(v)}</b>"
               for c, label, v, _x in rows[:12]]
            + ([f"… {len(rows) - 12} more"] if len(rows) > 12 else []))
        self.readout.setHtml(f"<div style='font-size:8pt'>{html}</div>")
        self.vline.setPos(nearest_x)
        self.vline.show()
        self.dots.setData(spots)
        (x0, x1), (y0, y1) = self.getPlotItem().getViewBox().viewRange()
        right_half = nearest_x > (x0 + x1) / 2
        self.readout.setAnchor((1.05, 0) if right_half else (-0.05, 0))
        self.readout.setPos(nearest_x, y1)
        self.readout.show()
        return "\n".join(lines)


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class _Group(QtWidgets.QWidget):
    """A header and a grid of charts that re-flows with the width."""

    def __init__(self, title: str, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.header = SectionHeader(title, self)
        self.grid_host = QtWidgets.QWidget(self)
        self.grid = QtWidgets.QGridLayout(self.grid_host)
        self.grid.setContentsMargins(8, 0, 8, 4)
        self.grid.setSpacing(8)
        self.charts: list[ChartWidget] = []
        self.columns = 2
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.header)
        layout.addWidget(self.grid_host)

    def add(self, chart: ChartWidget) -> None:
        self.charts.append(chart)
        self.charts.sort(key=lambda c: c.key)
        self.relayout(self.columns, force=True)

    def relayout(self, columns: int, force: bool = False) -> None:
        if columns == self.columns and not force:
            return
        self.columns = columns
        for chart in self.charts:
            self.grid.removeWidget(chart)
        for i, chart in enumerate(self.charts):
            self.grid.addWidget(chart, i // columns, i % columns)
        for c in range(4):
            self.grid.setColumnStretch(c, 1 if c < columns else 0)


class MetricsView(QtWidgets.QWidget):
    """Live charts of one or more executions' scalars and resource samples.

    Signals: ``flushed()`` after the plots took in pending points.
    """

    FLUSH_INTERVAL_MS = 100
    #: work per turn of the event loop when the timer updates the charts
    SLICE_SECONDS = 0.008
    flushed = Signal()

    def __init__(self, parent: QtWidgets.QWidget | None = None, *, toolbar: bool = True,
                 empty_text: str = EMPTY_TEXT, grouped: bool = True):
        super().__init__(parent)
        self.setObjectName("metricsView")
        #: False: every metric in one grid (under "Metrics"), not grouped by prefix
        self.grouped = grouped
        #: run -> key -> Series
        self.data: dict[str, dict[str, Series]] = {}
        self.run_labels: dict[str, str] = {}
        self.run_order: list[str] = []
        self.charts: dict[str, ChartWidget] = {}
        self.groups: dict[str, _Group] = {}
        self.primary: tuple[str, str | None] | None = None
        self.resources: dict = {}
        self._dirty: set[tuple[str, str]] = set()
        #: keys whose data were replaced: fit their charts anew at the next flush
        self._refit: set[str] = set()
        self._dirty_resources = False
        self._smoothing = 0.0
        self._x_mode = "step"
        self._log_y = False
        self._last_flush = 0.0
        #: how many times the plots were updated (tests: the rate limit)
        self.flush_count = 0

        self._timer = QtCore.QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._on_timer)
        self._continuing = False

        self.toolbar = QtWidgets.QWidget(self)
        self.toolbar.setObjectName("metricsToolbar")
        bar = QtWidgets.QHBoxLayout(self.toolbar)
        bar.setContentsMargins(10, 4, 10, 4)
        bar.setSpacing(8)
        bar.addWidget(QtWidgets.QLabel("Smoothing", self.toolbar))
        self.smoothing_slider = QtWidgets.QSlider(Qt.Horizontal, self.toolbar)
        self.smoothing_slider.setObjectName("smoothingSlider")
        self.smoothing_slider.setRange(0, 99)
        self.smoothing_slider.setFixedWidth(130)
        self.smoothing_slider.setToolTip("Exponential moving average (debiased), as in TensorBoard")
        self.smoothing_label = QtWidgets.QLabel("0.00", self.toolbar)
        self.smoothing_label.setMinimumWidth(self.smoothing_label.fontMetrics().horizontalAdvance("0.000"))
        self.smoothing_slider.valueChanged.connect(lambda v: self.set_smoothing(v / 100))
        bar.addWidget(self.smoothing_slider)
        bar.addWidget(self.smoothing_label)
        bar.addSpacing(8)
        self.log_check = QtWidgets.QCheckBox("Log scale", self.toolbar)
        self.log_check.toggled.connect(self.set_log_y)
        bar.addWidget(self.log_check)
        bar.addSpacing(8)
        bar.addWidget(QtWidgets.QLabel("X axis", self.toolbar))
        self.x_combo = QtWidgets.QComboBox(self.toolbar)
        self.x_combo.addItem("Step", "step")
        self.x_combo.addItem("Wall time", "time")
        self.x_combo.currentIndexChanged.connect(lambda _i: self.set_x_mode(self.x_combo.currentData()))
        bar.addWidget(self.x_combo)
        bar.addStretch(1)
        self.legend = QtWidgets.QLabel(self)
        self.legend.setObjectName("metricsLegend")
        self.legend.setTextFormat(Qt.RichText)
        self.legend.setWordWrap(True)
        self.legend.setContentsMargins(10, 0, 10, 2)
        self.legend.hide()
        self.reset_button = QtWidgets.QToolButton(self.toolbar)
        self.reset_button.setText("Reset zoom")
        self.reset_button.setAutoRaise(True)
        self.reset_button.setToolTip("Fit every chart to its data (or double-click a chart).\n"
                                     "Drag: pan · Ctrl+wheel: zoom · right-drag: stretch an axis")
        self.reset_button.clicked.connect(self.reset_zoom)
        bar.addWidget(self.reset_button)
        self.toolbar.setVisible(toolbar)

        self.empty = QtWidgets.QLabel(empty_text, self)
        self.empty.setObjectName("metricsEmpty")
        self.empty.setAlignment(Qt.AlignCenter)
        self.empty.setWordWrap(True)
        self.empty.setTextFormat(Qt.RichText)
        self.empty.setForegroundRole(QtGui.QPalette.PlaceholderText)
        self.empty.setContentsMargins(40, 40, 40, 40)

        self.scroll = QtWidgets.QScrollArea(self)
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QtWidgets.QFrame.NoFrame)
        self.body = QtWidgets.QWidget(self.scroll)
        self.body.setObjectName("metricsBody")
        self.body_layout = QtWidgets.QVBoxLayout(self.body)
        self.body_layout.setContentsMargins(0, 0, 0, 8)
        self.body_layout.setSpacing(2)
        self.body_layout.addStretch(1)
        self.scroll.setWidget(self.body)
        self.scroll.verticalScrollBar().valueChanged.connect(self._scrolled)

        self.stack = QtWidgets.QStackedWidget(self)
        self.stack.addWidget(self.empty)
        self.stack.addWidget(self.scroll)

        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.toolbar)
        layout.addWidget(self.legend)
        layout.addWidget(self.stack, 1)

    # ------------------------------------------------------------ data in
    def set_metrics(self, metrics: Mapping[str, Sequence], run: str = "", label: str | None = None) -> None:
        """Replace everything known about ``run`` with ``metrics`` ({key: [(step, value, time)]})."""
        self._ensure_run(run, label)
        old = self.data.get(run, {})
        for key in list(old):
            if key not in metrics:
                chart = self.charts.get(key)
                if chart is not None:
                    chart.remove_run(run)
        self.data[run] = {}
        for key, points in metrics.items():
            s = self.data[run][key] = Series(max(256, len(points)))
            s.extend(points)
            self._dirty.add((run, key))
            if key in self.charts:
                self._refit.add(key)
        self._schedule()

    def append(self, delta: Mapping[str, Sequence], run: str = "") -> None:
        """Add new points ({key: [(step, value, time)]}); the plots follow within ~100 ms."""
        if not delta:
            return
        self._ensure_run(run)
        series = self.data[run]
        for key, points in delta.items():
            s = series.get(key)
            if s is None:
                s = series[key] = Series()
            if s.extend(points):
                self._dirty.add((run, key))
        self._schedule()

    def set_run_label(self, run: str, label: str) -> None:
        self._ensure_run(run, label)
        self.run_labels[run] = label
        for chart in self.charts.values():
            if run in chart.labels:
                chart.labels[run] = label
                chart.curves[run][0].opts["name"] = label
        self._update_legend()

    def remove_run(self, run: str) -> None:
        self.data.pop(run, None)
        self.run_labels.pop(run, None)
        if run in self.run_order:
            self.run_order.remove(run)
        for chart in self.charts.values():
            chart.remove_run(run)
        self._dirty = {d for d in self._dirty if d[0] != run}
        self._update_legend()

    def clear(self) -> None:
        """Forget every run, chart and resource sample (selection changed)."""
        self._timer.stop()
        self._continuing = False
        self.data.clear()
        self.run_labels.clear()
        self.run_order.clear()
        self._dirty.clear()
        self.resources = {}
        self._dirty_resources = False
        for chart in self.charts.values():
            chart.deleteLater()
        self.charts.clear()
        for group in self.groups.values():
            self.body_layout.removeWidget(group)
            group.deleteLater()
        self.groups.clear()
        self._update_legend()
        self.stack.setCurrentWidget(self.empty)

    def set_primary(self, primary: tuple[str, str | None] | None) -> None:
        """The primary metric ``(key, "min"|"max"|None)``: starred and shown first."""
        self.primary = tuple(primary) if primary else None
        for key, chart in self.charts.items():
            chart.getPlotItem().setTitle(self._title(key), size="9pt")

    def set_resources(self, samples: Mapping) -> None:
        """Resource samples: ``{"cpu_percent": [[t, v]...], "rss_bytes": [...],
        "gpu": {"0": {"util_percent": [...], "mem_used_bytes": [...]}}}`` (replaces)."""
        self.resources = dict(samples or {})
        self._dirty_resources = True
        self._schedule()

    # ------------------------------------------------------------ options
    def set_smoothing(self, weight: float) -> None:
        weight = min(0.999, max(0.0, float(weight)))
        self.smoothing_label.setText(f"{weight:.2f}")
        if round(weight * 100) != self.smoothing_slider.value():
            self.smoothing_slider.blockSignals(True)
            self.smoothing_slider.setValue(round(weight * 100))
            self.smoothing_slider.blockSignals(False)
        if weight != self._smoothing:
            self._smoothing = weight
            self._mark_all_dirty()

    def smoothing(self) -> float:
        return self._smoothing

    def set_log_y(self, on: bool) -> None:
        on = bool(on)
        if self.log_check.isChecked() != on:
            self.log_check.setChecked(on)  # comes back here
            return
        self._log_y = on
        for key, chart in self.charts.items():
            if not key.startswith(SYSTEM_GROUP):
                chart.getPlotItem().setLogMode(x=False, y=on)
                chart.reset_view()

    def log_y(self) -> bool:
        return self._log_y

    def set_x_mode(self, mode: str) -> None:
        """"step" or "time" (wall time)."""
        if mode not in ("step", "time"):
            raise ValueError(mode)
        if self.x_combo.currentData() != mode:
            self.x_combo.setCurrentIndex(self.x_combo.findData(mode))  # comes back here
            return
        if mode == self._x_mode:
            return
        self._x_mode = mode
        for key, chart in self.charts.items():
            if not key.startswith(SYSTEM_GROUP):
                chart.x_mode = mode
                chart.set_time_axis(mode == "time")
        self._mark_all_dirty()
        self.flush()
        self.reset_zoom()

    def x_mode(self) -> str:
        return self._x_mode

    def reset_zoom(self) -> None:
        for chart in self.charts.values():
            chart.reset_view()

    # ------------------------------------------------------------ queries
    def keys(self) -> list[str]:
        """Metric keys with a chart (after a flush), sorted."""
        return sorted(k for k in self.charts if not k.startswith(SYSTEM_GROUP))

    def group_titles(self) -> list[str]:
        return [self.groups[g].header.label.text() for g in sorted(self.groups, key=_group_sort_key)]

    def point_count(self, key: str, run: str = "") -> int:
        s = self.data.get(run, {}).get(key)
        return 0 if s is None else s.n

    def plotted_count(self, key: str, run: str = "") -> int:
        """Points the chart of ``key`` holds for ``run`` (before clipping/downsampling)."""
        chart = self.charts.get(key)
        return 0 if chart is None else chart.plotted_points(run)

    def chart(self, key: str) -> ChartWidget | None:
        return self.charts.get(key)

    def pending(self) -> bool:
        """Points not handed to their (visible) charts yet."""
        return bool(self._dirty) or self._dirty_resources

    # ------------------------------------------------------------ internals
    def _ensure_run(self, run: str, label: str | None = None) -> None:
        changed = False
        if run not in self.data:
            self.data[run] = {}
            if run not in self.run_order:
                self.run_order.append(run)
            changed = True
        if label is not None and self.run_labels.get(run) != label:
            self.run_labels[run] = label
            changed = True
        elif run not in self.run_labels:
            self.run_labels[run] = run
            changed = True
        if changed:
            self._update_legend()

    def _update_legend(self) -> None:
        runs = [r for r in self.run_order if r in self.data]
        if len(runs) < 2:
            self.legend.clear()
            self.legend.hide()
            return
        parts = []
        for r in runs[:12]:
            color = run_color(self.run_order.index(r)).name()
            parts.append(f"<span style='color:{color}'>\u25a0</span>&nbsp;{_esc(self.run_labels.get(r) or r).replace(' ', '&nbsp;')}")
        if len(runs) > 12:
            parts.append(f"… {len(runs) - 12} more")
        self.legend.setText(" &nbsp;&nbsp; ".join(parts))
        self.legend.show()

    def _mark_all_dirty(self) -> None:
        for run, series in self.data.items():
            for key in series:
                self._dirty.add((run, key))
        if self.resources:
            self._dirty_resources = True
        self._schedule()

    def _schedule(self) -> None:
        if self._timer.isActive():
            return
        since = (time.monotonic() - self._last_flush) * 1000
        self._timer.start(int(max(0.0, self.FLUSH_INTERVAL_MS - since)))

    def _title(self, key: str) -> str:
        if self.primary and self.primary[0] == key:
            goal = {"min": " (lower is better)", "max": " (higher is better)"}.get(self.primary[1] or "", "")
            return f"\u2605 {_esc(key)}{goal}"
        return _esc(key)

    def _group(self, name: str) -> _Group:
        group = self.groups.get(name)
        if group is None:
            if name == SYSTEM_GROUP:
                title = "System"
            elif name:
                title = name
            else:
                title = "Metrics"
            group = self.groups[name] = _Group(title, self.body)
            order = sorted(self.groups, key=_group_sort_key)
            self.body_layout.insertWidget(order.index(name), group)
            group.relayout(self._columns(), force=True)
        return group

    def _chart(self, key: str, time_axis: bool = False) -> ChartWidget:
        chart = self.charts.get(key)
        if chart is None:
            system = key.startswith(SYSTEM_GROUP)
            title = key[len(SYSTEM_GROUP) + 1:] if system else self._title(key)
            chart = self.charts[key] = ChartWidget(
                title, self.body, time_axis=time_axis or (not system and self._x_mode == "time"))
            chart.key = key
            chart.x_mode = "time" if system else self._x_mode
            if not system and self._log_y:
                chart.getPlotItem().setLogMode(x=False, y=True)
            self._group(SYSTEM_GROUP if system else (group_of(key) if self.grouped else "")).add(chart)
            self.stack.setCurrentWidget(self.scroll)
        return chart

    def flush(self) -> None:
        """Hand every pending point to the (visible) charts now."""
        self._flush(None)

    def _on_timer(self) -> None:
        self._flush(self.SLICE_SECONDS)

    def _flush(self, budget: float | None) -> None:
        """Update the charts with pending points. With a ``budget`` (the timer's way),
        stop after about that many seconds of work and go on at the next turn of the
        event loop, so that the window paints (and answers) between charts rather
        than after all of them."""
        self._timer.stop()
        if not self._continuing:
            self._last_flush = time.monotonic()
        if not self._dirty and not self._dirty_resources:
            self._continuing = False
            return
        started = time.perf_counter()
        dirty, self._dirty = self._dirty, set()
        by_key: dict[str, list[str]] = {}
        for run, key in dirty:
            by_key.setdefault(key, []).append(run)
        order = {r: i for i, r in enumerate(self.run_order)}
        keys = sorted(by_key)
        if self.primary and self.primary[0] in by_key:
            keys.remove(self.primary[0])
            keys.insert(0, self.primary[0])
        left_over = False
        for n, key in enumerate(keys):
            runs = sorted(by_key[key], key=lambda r: order.get(r, 0))
            if budget is not None and n and time.perf_counter() - started > budget:
                self._dirty.update((r, k) for k in keys[n:] for r in by_key[k])
                left_over = True
                break
            known = self.charts.get(key)
            if known is not None and not self._on_screen(known):
                self._dirty.update((r, key) for r in runs)  # drawn when scrolled to or shown
                continue
            chart = None
            for run in runs:
                s = self.data.get(run, {}).get(key)
                if s is None:
                    continue
                chart = self._chart(key)
                x = s.x(self._x_mode)
                smoothed = s.smoothed(self._smoothing) if self._smoothing > 0 else None
                x_sorted = s.t_sorted if self._x_mode == "time" else s.x_sorted
                chart.set_series(run, x, s.value, smoothed, run_color(order.get(run, 0)),
                                 self.run_labels.get(run) or key, x_sorted)
            if chart is not None:
                if key in self._refit:
                    self._refit.discard(key)
                    chart.reset_view()
                else:
                    chart.fit_view()
        if left_over:
            self._continuing = True
            self._timer.start(0)  # the rest after the window had a turn
            return
        self._continuing = False
        if self._dirty_resources:
            self._dirty_resources = False
            self._flush_resources()
        self._relayout_groups()
        self.flush_count += 1
        self.flushed.emit()

    def _flush_resources(self) -> None:
        res = self.resources
        plots: list[tuple[str, str, list[tuple[str, Sequence]]]] = []
        if res.get("cpu_percent"):
            plots.append(("CPU %", "", [("CPU %", res["cpu_percent"])]))
        if res.get("rss_bytes"):
            plots.append(("Memory (RSS)", "B", [("RSS", res["rss_bytes"])]))
        gpus = res.get("gpu") or {}
        util = [(f"GPU {i}", g.get("util_percent")) for i, g in sorted(gpus.items()) if g.get("util_percent")]
        mem = [(f"GPU {i}", g.get("mem_used_bytes")) for i, g in sorted(gpus.items()) if g.get("mem_used_bytes")]
        if util:
            plots.append(("GPU utilisation %", "", util))
        if mem:
            plots.append(("GPU memory", "B", mem))
        for order, (title, unit, curves) in enumerate(plots):
            chart = self._chart(f"{SYSTEM_GROUP}/{order} {title}", time_axis=True)
            shown = title
            if len(curves) > 1:  # a small legend in the title: which colour is which GPU
                shown += "&nbsp;&nbsp;" + "&nbsp; ".join(
                    f"<span style='color:{run_color(i).name()}'>\u25a0</span>&nbsp;{_esc(label)}"
                    for i, (label, _p) in enumerate(curves))
            chart.getPlotItem().setTitle(shown, size="9pt")
            if unit:
                chart.getPlotItem().getAxis("left").setLabel(units=unit)
                chart.getPlotItem().getAxis("left").enableAutoSIPrefix(True)
                chart.value_format = _fmt_bytes
            for i, (label, pts) in enumerate(curves):
                arr = np.asarray(pts, dtype=float).reshape(-1, 2)
                chart.set_series(label, arr[:, 0], arr[:, 1], None, run_color(i), label,
                                 bool(np.all(np.diff(arr[:, 0]) >= 0)))
            chart.reset_view()

    def _on_screen(self, chart: ChartWidget) -> bool:
        """Whether a chart can be seen: charts scrolled out of view, or in a hidden
        tab, keep their new points pending until they come into view."""
        if not self.isVisible():
            return False
        if not chart.isVisible():
            return True  # just added: the layout shows it on the next turn of the loop
        viewport = self.scroll.viewport()
        rect = QtCore.QRect(chart.mapTo(viewport, QtCore.QPoint(0, 0)), chart.size())
        return rect.intersects(viewport.rect())

    def _scrolled(self, _value: int = 0) -> None:
        if self._dirty:
            self._schedule()

    def showEvent(self, event: QtGui.QShowEvent) -> None:
        super().showEvent(event)
        if self._dirty or self._dirty_resources:
            self._schedule()

    def _columns(self) -> int:
        width = self.width() - self.scroll.verticalScrollBar().sizeHint().width()
        return max(1, min(4, width // MIN_PLOT_WIDTH))

    def _relayout_groups(self) -> None:
        cols = self._columns()
        for group in self.groups.values():
            group.relayout(cols)

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:
        super().resizeEvent(event)
        self._relayout_groups()
        if self._dirty:
            self._schedule()


def _fmt_bytes(v: float) -> str:
    if not math.isfinite(v):
        return str(v)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(v) < 1024 or unit == "TB":
            return f"{v:.0f} {unit}" if unit == "B" else f"{v:.1f} {unit}"
        v /= 1024
    return str(v)


__all__ = ["MetricsView", "ChartWidget", "Series", "ema_extend", "run_color", "group_of", "RUN_COLORS"]
