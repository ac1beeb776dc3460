"""P10: charts under load, and opening a big comparison.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/p10_charts.py [--seconds 5] [--executions 4] [--rate 10000]

1. Event-loop lateness (the P5 method: a 10 ms precise QTimer heartbeat; lateness =
   how much later than 10 ms after the previous tick each tick came) of a shown
   MetricsView, idle (the baseline) and while it receives ``--executions`` runs x
   ``--rate`` points/s (each run: ``train/loss`` at the full rate plus ``val/acc`` at a
   tenth of it), delivered every 20 ms as the watcher would, in the contract's shape
   (lists of (step, value, time) tuples). Goal: p99 <= 50 ms.
2. The same with one chart already holding 1,000,000 points (clip-to-view and peak
   downsampling keep it smooth), plus the time to show it.
3. Time to open a CompareView of 20 executions x 100,000 points (construct,
   set_executions with the table rows and series, show, first full paint) against
   20 x 1,000 points in the same go. Goal: < 1 s.

The synthetic points are built before each measured phase, so only the window's
work is measured.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "app"))
sys.path.insert(0, str(ROOT / "bench"))

from p5_event_loop_lateness import heartbeat, percentile  # noqa: E402

T0 = 1_764_400_000.0


def make_points(n: int, start: int = 0, seed: float = 1.0) -> list[tuple[int, float, float]]:
    return [(s, 2.3 * math.exp(-s / (20_000 * seed)) + 0.05 + 0.01 * math.sin(s * 0.37), T0 + s * 1e-4)
            for s in range(start, start + n)]


def pump(app, until) -> None:
    while not until():
        app.processEvents()


def lateness_phase(app, view, runs: list[str], rate: int, seconds: float) -> tuple[list[float], int]:
    """Feed ``runs`` at ``rate`` points/s each for ``seconds`` while measuring lateness."""
    from mldesk.ui.qt import QtCore

    tick_ms = 20
    per_tick = max(1, rate * tick_ms // 1000)
    ticks = int(seconds * 1000 / tick_ms) + 50
    # prebuilt deltas (the core would hand these over)
    base = {r: view.point_count("train/loss", r) for r in runs}
    deltas = {r: [] for r in runs}
    for r in runs:
        for k in range(ticks):
            pts = make_points(per_tick, base[r] + k * per_tick, seed=1 + runs.index(r) * 0.3)
            deltas[r].append({"train/loss": pts, "val/acc": [(s, 1 - v / 2.5, t) for s, v, t in pts[::10]]})
    # the prebuilt tuples are the bench's, not the window's: keep the cyclic GC from
    # walking them (a real window holds its points in numpy arrays, which it never walks)
    gc.collect()
    gc.freeze()
    sent = {"n": 0, "k": 0}
    start = time.perf_counter()

    def feed():
        # catch up to where the clock says we should be (like a real watcher delivering a backlog)
        due = min(ticks, int((time.perf_counter() - start) * 1000 / tick_ms) + 1)
        while sent["k"] < due:
            for r in runs:
                d = deltas[r][sent["k"]]
                view.append(d, run=r)
                sent["n"] += len(d["train/loss"])
            sent["k"] += 1

    feeder = QtCore.QTimer()
    feeder.timeout.connect(feed)
    feeder.start(tick_ms)
    late = heartbeat(app, seconds)
    feeder.stop()
    elapsed = time.perf_counter() - start
    return late, int(sent["n"] / elapsed)


class HandlerClock:
    """CPU time (thread_time) of each MetricsView._flush slice and ChartWidget.paintEvent: how
    long the window's thread works per update, whatever else the machine runs (on a
    busy machine the wall-clock lateness adds the time other processes hold the CPU)."""

    def __init__(self) -> None:
        from mldesk.ui import charts

        self.samples: dict[str, list[float]] = {"flush": [], "paint": []}
        self._undo = []
        for cls, name, tag in ((charts.MetricsView, "_flush", "flush"), (charts.ChartWidget, "paintEvent", "paint")):
            orig = getattr(cls, name)

            def timed(self_, *a, _orig=orig, _tag=tag):
                c = time.thread_time()
                try:
                    return _orig(self_, *a)
                finally:
                    self.samples[_tag].append(time.thread_time() - c)

            setattr(cls, name, timed)
            self._undo.append((cls, name, orig))

    def close(self) -> None:
        for cls, name, orig in self._undo:
            setattr(cls, name, orig)


def open_compare(app, n_exec: int, n_points: int) -> tuple[float, float, float]:
    """(seconds to open and paint a CompareView, seconds for set_executions alone, CPU seconds)."""
    from mldesk.ui.compare import CompareView

    rows, metrics = [], {}
    for i in range(n_exec):
        ex = f"ex{i:02d}"
        loss = make_points(n_points, seed=1 + i * 0.1)
        acc = [(s, 1 - v / 2.5, t) for s, v, t in loss[:: max(1, n_points // 100)]]
        metrics[ex] = {"loss": loss, "val/acc": acc}
        vals = [p[1] for p in loss]
        rows.append({"id": ex, "name": f"trial {i + 1} lr={10 ** -(1 + i % 4)}", "state": "finished",
                     "host": "local", "runtime": "process", "duration": 60.0 + i,
                     "params": {"lr": str(10 ** -(1 + i % 4)), "epochs": str(5 + i % 3)},
                     "metrics": {"loss": {"last": vals[-1], "min": min(vals), "max": max(vals), "count": len(vals)},
                                 "val/acc": {"last": acc[-1][1], "min": acc[0][1], "max": acc[-1][1], "count": len(acc)}}})
    gc.collect()
    gc.freeze()
    t0, c0 = time.perf_counter(), time.thread_time()
    view = CompareView()
    view.resize(1280, 860)
    view.set_executions(rows, metrics, primary=("loss", "min"))
    t_set = time.perf_counter() - t0
    view.show()
    app.processEvents()
    view.grab()  # a full paint of the table and every chart
    total, cpu = time.perf_counter() - t0, time.thread_time() - c0
    view.close()
    view.deleteLater()
    app.processEvents()
    return total, t_set, cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per phase")
    parser.add_argument("--executions", type=int, default=4)
    parser.add_argument("--rate", type=int, default=10_000, help="points per second per execution")
    parser.add_argument("--compare-executions", type=int, default=20)
    parser.add_argument("--compare-points", type=int, default=100_000)
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from mldesk.ui.charts import MetricsView
    from mldesk.ui.qt import QtWidgets

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])

    # 1. live charts
    view = MetricsView()
    view.resize(1200, 900)
    view.show()
    heartbeat(app, 0.5)
    idle = heartbeat(app, args.seconds)
    runs = [f"exec{i + 1}" for i in range(args.executions)]
    for r in runs:
        view.set_metrics({}, run=r, label=r)
    flushes0 = view.flush_count
    clock = HandlerClock()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    loaded, delivered = lateness_phase(app, view, runs, args.rate, args.seconds)
    cpu_share = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    flush_cpu, paint_cpu = clock.samples["flush"][1:], clock.samples["paint"]  # [0] creates the charts
    clock.close()
    flush_rate = (view.flush_count - flushes0) / args.seconds
    points_held = sum(view.point_count("train/loss", r) for r in runs)
    points_drawn = sum(view.plotted_count("train/loss", r) for r in runs)
    view.close()

    # 2. one chart with 1,000,000 points, still receiving
    big = MetricsView()
    big.resize(1200, 900)
    pts = make_points(1_000_000)
    gc.collect()
    gc.freeze()
    t0 = time.perf_counter()
    big.set_metrics({"train/loss": pts}, run="big")
    big.flush()
    big.show()
    app.processEvents()
    big.grab()
    t_million = time.perf_counter() - t0
    chart = big.chart("train/loss")
    t0 = time.perf_counter()
    for k in range(10):  # pan/zoom: ten re-ranges, each painted
        chart.getPlotItem().setXRange(k * 50_000, k * 50_000 + 400_000, padding=0)
        chart.grab()
    t_pan = (time.perf_counter() - t0) / 10
    chart.reset_view()
    loaded_big, _ = lateness_phase(app, big, ["big"], args.rate, min(args.seconds, 3.0))
    big.close()

    # 3. compare
    small_total, small_set, small_cpu = open_compare(app, args.compare_executions, 1_000)
    big_total, big_set, big_cpu = open_compare(app, args.compare_executions, args.compare_points)

    print(f"platform {os.environ.get('QT_QPA_PLATFORM')}, heartbeat 10 ms, {args.seconds:.0f} s per phase\n")
    print(f"{'phase':<58}{'ticks':>7}{'p50':>9}{'p99':>9}{'max':>9}")
    for label, data in (
            ("idle (MetricsView shown, no data)", idle),
            (f"{args.executions} executions x {args.rate:,} points/s", loaded),
            (f"1 chart holding 1,000,000 points + {args.rate:,} points/s", loaded_big)):
        print(f"{label:<58}{len(data):>7}{percentile(data, 50) * 1000:>7.1f}ms"
              f"{percentile(data, 99) * 1000:>7.1f}ms{max(data) * 1000:>7.1f}ms")
    print(f"\npoints delivered: {delivered:,}/s in all (train/loss; plus val/acc at 1/10); "
          f"{points_held:,} train/loss points held at the end, {points_drawn:,} in the chart; "
          f"{flush_rate:.1f} chart updates/s; the process used {cpu_share:.0%} of a core "
          f"(machine load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print(f"window thread CPU per update (4 executions): flush slice p99 {percentile(flush_cpu, 99) * 1000:.1f} ms "
          f"(max {max(flush_cpu) * 1000:.1f}), chart paint p99 {percentile(paint_cpu, 99) * 1000:.1f} ms "
          f"(max {max(paint_cpu) * 1000:.1f}), {len(paint_cpu) / max(1, len(flush_cpu)):.1f} chart paints per flush")
    print(f"1,000,000-point chart: shown and painted in {t_million * 1000:.0f} ms; "
          f"a pan/zoom repaint {t_pan * 1000:.1f} ms")
    n = args.compare_executions
    print(f"\ncompare of {n} x 1,000 points:   {small_total * 1000:7.0f} ms (CPU {small_cpu * 1000:.0f} ms; "
          f"set_executions {small_set * 1000:.0f} ms)")
    print(f"compare of {n} x {args.compare_points:,} points: {big_total * 1000:7.0f} ms (CPU {big_cpu * 1000:.0f} ms; "
          f"set_executions {big_set * 1000:.0f} ms) = {big_total / small_total:.2f}x the small one")
    p99 = percentile(loaded, 99) * 1000
    idle99 = percentile(idle, 99) * 1000
    print(f"\np99 lateness under load {p99:.1f} ms ({p99 / max(idle99, 0.1):.1f}x idle; goal <= 50 ms): "
          f"{'OK' if p99 <= 50 else 'OVER BUDGET'}")
    print(f"compare open {big_total * 1000:.0f} ms (goal < 1000 ms): {'OK' if big_total < 1 else 'OVER BUDGET'}")


if __name__ == "__main__":
    main()
