"""The Compare view with four executions: table, best cells, sorting, CSV, overlays, images."""

from __future__ import annotations

import csv
import io

import pytest

from mldesk.ui.compare import BestRole, CompareView, guess_goal, image_names
from mldesk.ui.qt import QtGui, Qt


def _rows():
    spec = [  # id, lr, epochs, loss (last, min, max), acc last, state, duration
        ("e1", "0.1", "5", (0.30, 0.25, 2.3), 0.91, "finished", 65.0),
        ("e2", "0.01", "5", (0.20, 0.20, 2.4), 0.93, "finished", 130.0),
        ("e3", "0.001", "10", (1.10, 1.05, 2.5), 0.55, "failed", None),
        ("e4", "0.01", "10", (0.22, 0.18, 2.2), 0.95, "running", 3700.0),
    ]
    rows, metrics = [], {}
    for ex, lr, ep, (last, lo, hi), acc, state, dur in spec:
        rows.append({
            "id": ex, "name": f"lr={lr}", "state": state, "host": "local", "runtime": "docker",
            "duration": dur, "params": {"lr": lr, "epochs": ep},
            "metrics": {"loss": {"last": last, "min": lo, "max": hi, "count": 3},
                        "val/acc": {"last": acc, "min": 0.1, "max": acc, "count": 2}},
        })
        metrics[ex] = {"loss": [(1, hi, 0.0), (2, lo, 1.0), (3, last, 2.0)],
                       "val/acc": [(1, 0.1, 0.0), (3, acc, 2.0)]}
    return rows, metrics


def _image(path, color):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = QtGui.QImage(40, 30, QtGui.QImage.Format_RGB32)
    img.fill(QtGui.QColor(color))
    assert img.save(str(path))


@pytest.fixture
def view(qtbot, tmp_path):
    rows, metrics = _rows()
    outputs = {}
    for i, r in enumerate(rows):
        out = tmp_path / "out" / r["id"]
        _image(out / "plots" / "confusion.png", ["red", "green", "blue", "gray"][i])
        if i == 0:
            _image(out / "only-here.png", "black")
        outputs[r["id"]] = out
    v = CompareView()
    qtbot.addWidget(v)
    v.resize(1100, 800)
    v.show()
    v.set_executions(rows, metrics, primary=("loss", "min"), outputs=outputs)
    return v


def _cell(view, row_id, title):
    m = view.model
    r = [x["id"] for x in m.rows].index(row_id)
    return m.data(m.index(r, m.column_index(title)))


def test_table_has_a_row_per_execution_with_params_and_stats(view):
    m = view.model
    assert m.rowCount() == 4
    titles = [c.title for c in m.columns]
    assert titles[:6] == ["Name", "State", "Host / runtime", "Duration", "lr", "epochs"]
    assert titles[6:9] == ["loss \u00b7 last", "loss \u00b7 min", "loss \u00b7 max"]  # primary first
    assert "val/acc \u00b7 last" in titles
    assert _cell(view, "e2", "Name") == "lr=0.01"
    assert _cell(view, "e3", "State") == "Failed"
    assert _cell(view, "e1", "Host / runtime") == "local \u00b7 docker"
    assert _cell(view, "e3", "Duration") == ""
    assert _cell(view, "e4", "epochs") == "10"
    assert _cell(view, "e4", "loss \u00b7 min") == "0.18"


def test_best_cell_per_column_is_marked(view):
    best = view.best_cells()
    assert best["loss \u00b7 last"] == ["e2"]  # lower is better (primary goal)
    assert best["loss \u00b7 min"] == ["e4"]
    assert best["loss \u00b7 max"] == ["e4"]  # every stat, as `mldesk compare` marks them
    assert best["val/acc \u00b7 last"] == ["e4"]  # higher is better (not a loss or an error)
    assert "val/acc \u00b7 min" not in best  # all equal: nothing to point out
    m = view.model
    r = [x["id"] for x in m.rows].index("e2")
    idx = m.index(r, m.column_index("loss \u00b7 last"))
    assert m.data(idx, BestRole) is True
    assert m.data(idx, Qt.FontRole).bold()
    assert m.data(m.index(0, m.column_index("loss \u00b7 last")), BestRole) is False


def test_goal_can_be_given_per_key(qtbot):
    rows, metrics = _rows()
    v = CompareView()
    qtbot.addWidget(v)
    v.set_executions(rows, metrics, goals={"loss": "max"})
    assert v.best_cells()["loss \u00b7 last"] == ["e3"]


def test_sorting_by_numbers_with_missing_values_last(view):
    col = view.model.column_index("Duration")
    view.table.sortByColumn(col, Qt.AscendingOrder)
    order = [view.proxy.index(r, 0).data() for r in range(4)]
    assert order == ["lr=0.1", "lr=0.01", "lr=0.01", "lr=0.001"]  # 65 s, 130 s, 1 h, none
    assert view.proxy.index(3, col).data() == ""
    view.table.sortByColumn(col, Qt.DescendingOrder)
    assert view.proxy.index(0, col).data() != "" and view.proxy.index(3, col).data() == ""
    loss = view.model.column_index("loss \u00b7 last")
    view.table.sortByColumn(loss, Qt.AscendingOrder)
    assert [view.proxy.index(r, loss).data() for r in range(4)] == ["0.2", "0.22", "0.3", "1.1"]


def test_csv_export_content_and_no_overwrite(view, tmp_path):
    target = tmp_path / "compare.csv"
    seen = []
    view.exported.connect(seen.append)
    view.export_csv(target)
    rows = list(csv.reader(io.StringIO(target.read_text())))
    # the same CSV as `mldesk compare --csv`
    assert rows[0] == ["id", "name", "state", "host", "runtime", "duration", "lr", "epochs",
                       "loss last", "loss min", "loss max", "val/acc last", "val/acc min", "val/acc max"]
    assert rows[1] == ["e1", "lr=0.1", "finished", "local", "docker", "65.0", "0.1", "5",
                       "0.3", "0.25", "2.3", "0.91", "0.1", "0.91"]
    assert rows[3][5] == ""  # no duration
    assert len(rows) == 5
    assert seen == [str(target)]
    with pytest.raises(FileExistsError):
        view.export_csv(target)  # a new file only, unless the dialog confirmed
    target.write_text("old")
    view.export_csv(target, overwrite=True)
    assert target.read_text().startswith("id,name")


def test_export_button_writes_where_the_dialog_says(view, tmp_path, monkeypatch):
    from mldesk.ui.qt import QtWidgets

    target = tmp_path / "picked.csv"
    monkeypatch.setattr(QtWidgets.QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a, **k: (str(target), "CSV files (*.csv)")))
    view.export_button.click()
    assert target.read_text() == view.csv_text()
    monkeypatch.setattr(QtWidgets.QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: ("", "")))
    assert view.export_dialog() is None  # cancelled: nothing written


def test_overlay_chart_per_metric_one_curve_per_execution(view):
    charts = view.charts
    assert charts.keys() == ["loss", "val/acc"]
    for ex in ("e1", "e2", "e3", "e4"):
        assert charts.plotted_count("loss", ex) == 3
    colours = {c[0].opts["pen"].color().name() for c in charts.chart("loss").curves.values()}
    assert len(colours) == 4
    assert "lr=0.001" in charts.legend.text()


def test_images_of_the_same_name_side_by_side(view, qtbot):
    assert view.images.names() == ["plots/confusion.png"]
    assert len(view.images.cells) == 4
    assert all(not label.pixmap().isNull() for _ex, label in view.images.cells)
    assert [ex for ex, _l in view.images.cells] == ["e1", "e2", "e3", "e4"]


def test_live_points_reach_the_overlay(view, qtbot):
    view.append_metrics("e4", {"loss": [(4, 0.21, 3.0)]})
    qtbot.waitUntil(lambda: view.charts.plotted_count("loss", "e4") == 4, timeout=3000)


def test_goal_guess_and_image_names(tmp_path):
    assert guess_goal("val_loss") == "min" and guess_goal("train/error") == "min"
    assert guess_goal("accuracy") == "max" and guess_goal("val/acc") == "max"
    assert guess_goal("lr") == "max"  # the CLI's rule: anything not a loss or an error
    assert image_names({}) == []


def test_sparse_rows_and_odd_values(qtbot, tmp_path):
    v = CompareView()
    qtbot.addWidget(v)
    v.show()
    rows = [
        {"id": "a"},
        {"id": "b", "name": "b", "params": None, "metrics": {"loss": {"last": float("nan"), "min": None, "max": "x"}}},
        {"id": "c", "name": "c", "duration": "soon", "metrics": {"loss": {"last": 0.5, "min": float("-inf"), "max": 0.5}}},
    ]
    v.set_executions(rows, {"b": {"loss": []}})
    assert v.model.rowCount() == 3
    assert _cell(v, "a", "Name") == "a"
    assert _cell(v, "c", "Duration") == ""
    assert v.best_cells() == {}  # fewer than two comparable values per column
    for col in range(v.model.columnCount()):
        v.table.sortByColumn(col, Qt.AscendingOrder)
    v.export_csv(tmp_path / "sparse.csv")
    assert (tmp_path / "sparse.csv").read_text().count("\n") == 4


def test_primary_and_overrides_come_with_the_rows(qtbot):
    rows, metrics = _rows()
    for r in rows:
        r["primary"] = {"key": "val/acc", "goal": "min"}  # as engine.compare gives it
    rows[1]["overrides"] = {"lr": "0.01"}
    v = CompareView()
    qtbot.addWidget(v)
    v.set_executions(rows, metrics)
    assert [c.title for c in v.model.columns][6] == "val/acc \u00b7 last"  # the primary first
    assert v.best_cells()["val/acc \u00b7 last"] == ["e3"]  # its goal: lower is better
    m = v.model
    idx = m.index(1, m.column_index("lr"))
    assert m.data(idx, Qt.FontRole).italic() and "Run with" in m.data(idx, Qt.ToolTipRole)
    assert m.data(m.index(0, m.column_index("lr")), Qt.FontRole) is None
    assert "\u2605 val/acc" in v.charts.chart("val/acc").getPlotItem().titleLabel.text
