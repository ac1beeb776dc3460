"""The Metrics tab's charts (MetricsView): live updates, rate limit, grouping, options."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mldesk.ui.charts import MetricsView, Series, ema_extend, group_of


def _points(start: int, n: int, t0: float = 1_700_000_000.0):
    return [(s, 1.0 / (s + 1), t0 + s) for s in range(start, start + n)]


def test_points_arriving_grow_the_plot_data(qtbot):
    view = MetricsView()
    qtbot.addWidget(view)
    view.resize(1000, 900)
    view.show()
    assert view.stack.currentWidget() is view.empty
    assert "No metrics yet" in view.empty.text()

    view.append({"loss": _points(0, 10), "val/acc": [(0, 0.5, 1.0)]})
    qtbot.waitUntil(lambda: view.plotted_count("loss") == 10, timeout=3000)
    assert view.stack.currentWidget() is view.scroll
    assert view.keys() == ["loss", "val/acc"]
    view.append({"loss": _points(10, 25)})
    qtbot.waitUntil(lambda: view.plotted_count("loss") == 35, timeout=3000)
    assert view.point_count("loss") == 35
    qtbot.waitUntil(lambda: view.plotted_count("val/acc") == 1, timeout=3000)  # drawn when in view
    # a key that appears later gets its own chart, in its group
    view.append({"train/loss": _points(0, 3)})
    qtbot.waitUntil(lambda: "train/loss" in view.keys(), timeout=3000)
    assert view.group_titles() == ["TRAIN", "VAL", "METRICS"]


def test_flushes_are_coalesced(qtbot):
    """Many small deltas in one go reach the plots in one flush, not one each."""
    view = MetricsView()
    qtbot.addWidget(view)
    view.show()
    view.flush()  # the first flush may happen at once; measure from here
    before = view.flush_count
    for i in range(200):
        view.append({"loss": _points(i, 1)})
    assert view.flush_count == before  # nothing drawn synchronously
    assert view.pending()
    with qtbot.waitSignal(view.flushed, timeout=3000):
        pass
    assert view.flush_count == before + 1
    assert view.plotted_count("loss") == 200
    assert not view.pending()


def test_smoothing_log_scale_and_wall_time(qtbot):
    view = MetricsView()
    qtbot.addWidget(view)
    view.show()
    view.set_metrics({"loss": [(s, 10.0 - s, 1000.0 + 2 * s) for s in range(10)]})
    view.flush()
    chart = view.chart("loss")
    raw, smooth = chart.curves[""]
    assert not smooth.isVisible()
    view.smoothing_slider.setValue(60)
    assert view.smoothing() == 0.6
    qtbot.waitUntil(lambda: smooth.isVisible(), timeout=3000)
    assert smooth.yData[0] == pytest.approx(10.0)  # debiased: the first value is the first point
    assert smooth.yData[-1] > 1.0  # lags behind the raw line going down
    view.log_check.setChecked(True)
    assert chart.getPlotItem().ctrl.logYCheck.isChecked()
    view.set_x_mode("time")
    assert view.x_combo.currentData() == "time"
    assert list(raw.xData[:2]) == [1000.0, 1002.0]
    view.set_x_mode("step")
    assert list(raw.xData[:2]) == [0.0, 1.0]


def test_hover_readout_names_the_nearest_point(qtbot):
    view = MetricsView()
    qtbot.addWidget(view)
    view.show()
    view.set_metrics({"loss": [(s, s * 0.5, 0.0) for s in range(0, 100, 10)]})
    view.flush()
    text = view.chart("loss").show_readout_at(41)
    assert "step 40" in text and "loss: 20" in text
    assert view.chart("loss").readout.isVisible()


def test_several_runs_get_a_colour_each_and_a_legend(qtbot):
    view = MetricsView()
    qtbot.addWidget(view)
    view.show()
    view.set_metrics({"loss": _points(0, 5)}, run="a", label="lr=0.1")
    view.set_metrics({"loss": _points(0, 7)}, run="b", label="lr=0.01")
    view.flush()
    assert view.plotted_count("loss", "a") == 5 and view.plotted_count("loss", "b") == 7
    assert "lr=0.1" in view.legend.text() and "lr=0.01" in view.legend.text()
    pens = {run: c[0].opts["pen"].color().name() for run, c in view.chart("loss").curves.items()}
    assert pens["a"] != pens["b"]


def test_system_group_takes_resource_samples(qtbot):
    view = MetricsView()
    qtbot.addWidget(view)
    view.show()
    t = [1000.0 + i for i in range(5)]
    view.set_resources({
        "cpu_percent": [[x, 50.0] for x in t],
        "rss_bytes": [[x, 1e9] for x in t],
        "gpu": {"0": {"util_percent": [[x, 90.0] for x in t], "mem_used_bytes": [[x, 4e9] for x in t]}},
    })
    view.flush()
    assert view.group_titles() == ["SYSTEM"]
    titles = sorted(c.getPlotItem().titleLabel.text.split("&nbsp;")[0] for c in view.charts.values())
    assert titles == ["CPU %", "GPU memory", "GPU utilisation %", "Memory (RSS)"]
    assert view.keys() == []  # not metric keys


def test_clear_returns_to_the_empty_state(qtbot):
    view = MetricsView()
    qtbot.addWidget(view)
    view.set_metrics({"loss": _points(0, 5)})
    view.flush()
    view.clear()
    assert view.keys() == [] and view.stack.currentWidget() is view.empty


def test_series_and_ema_helpers():
    s = Series(capacity=2)
    s.extend([(0, 1.0, 5.0), (1, float("nan"), 6.0)])
    s.extend([(2, 3.0)])  # no time
    assert s.n == 3 and s.x_sorted
    assert math.isnan(s.time[2])
    assert s.summary() == {"last": 3.0, "min": 1.0, "max": 3.0, "count": 3}
    x = np.array([1.0, 2.0, float("nan"), 4.0] * 500)
    whole, _ = ema_extend(x, 0.9, (0.0, 0))
    a, state = ema_extend(x[:777], 0.9, (0.0, 0))
    b, _ = ema_extend(x[777:], 0.9, state)
    assert np.allclose(np.concatenate([a, b]), whole, equal_nan=True)
    # the loop formula
    acc, n, ref = 0.0, 0, []
    for v in x:
        if math.isnan(v):
            ref.append(float("nan"))
            continue
        acc, n = 0.9 * acc + 0.1 * v, n + 1
        ref.append(acc / (1 - 0.9 ** n))
    assert np.allclose(whole, ref, equal_nan=True)
    assert group_of("train/loss") == "train" and group_of("loss") == ""


def test_charts_out_of_view_catch_up_when_scrolled_to(qtbot):
    view = MetricsView()
    qtbot.addWidget(view)
    view.resize(500, 400)  # one column; about one chart in view
    view.show()
    keys = ["a/loss", "b/loss", "c/loss", "d/loss"]
    view.set_metrics({k: _points(0, 5) for k in keys})
    view.flush()
    qtbot.waitUntil(lambda: all(view.chart(k).isVisible() for k in keys), timeout=3000)
    qtbot.wait(50)  # the layout settles
    view.append({k: _points(5, 5) for k in keys})
    view.flush()
    assert view.plotted_count("a/loss") == 10  # in view: drawn
    assert view.plotted_count("d/loss") == 5  # out of view: waits
    assert view.pending()
    bar = view.scroll.verticalScrollBar()
    bar.setValue(bar.maximum())
    qtbot.waitUntil(lambda: view.plotted_count("d/loss") == 10, timeout=3000)


def test_a_hidden_view_draws_when_shown(qtbot):
    view = MetricsView()
    qtbot.addWidget(view)
    view.resize(800, 600)
    view.show()
    view.set_metrics({"loss": _points(0, 5)})
    view.flush()
    view.hide()  # another tab is in front
    view.append({"loss": _points(5, 5)})
    view.flush()
    assert view.plotted_count("loss") == 5
    view.show()
    qtbot.waitUntil(lambda: view.plotted_count("loss") == 10, timeout=3000)


def test_arrays_pairs_and_missing_times(qtbot):
    view = MetricsView()
    qtbot.addWidget(view)
    view.show()
    view.append({"loss": np.array([[0, 1.0, 10.0], [1, 0.5, 11.0]])})
    view.append({"acc": [(0, 0.1), (1, float("nan")), (2, float("inf"))]})  # no times, odd values
    view.flush()
    assert view.plotted_count("loss") == 2 and view.plotted_count("acc") == 3
    view.set_x_mode("time")  # "acc" has no wall times: nothing to draw, nothing breaks
    view.set_log_y(True)
    view.set_smoothing(0.9)
    view.flush()
    assert view.chart("acc").show_readout_at(0) is not None
    view.set_x_mode("step")
    assert view.plotted_count("acc") == 3
