"""The compare table, its CSV and diffs (mldesk.core.compare)."""

from __future__ import annotations

import csv
import io
import math

from mldesk.core.compare import best_rows as best, diff_files, diff_params, table_columns as columns, table_csv as to_csv

ROWS = [
    {"id": "a", "name": "lr=0.1", "state": "finished", "host": "local", "runtime": "process", "duration": 1.5,
     "params": {"lr": "0.1", "epochs": "5"},
     "metrics": {"loss": {"last": 0.3, "min": 0.2, "max": 0.9, "count": 3}}},
    {"id": "b", "name": "lr=0.01", "state": "failed", "host": "gpu1", "runtime": "docker", "duration": None,
     "params": {"lr": "0.01", "epochs": "5", "extra": ""},
     "metrics": {"loss": {"last": 0.2, "min": 0.2, "max": math.inf, "count": 2},
                 "val/acc": {"last": math.nan, "min": 0.5, "max": 0.5, "count": 1}}},
    {"id": "c", "name": "#c", "state": "running", "params": {}, "metrics": {}},
]


def test_columns_in_order_of_first_appearance():
    assert columns(ROWS) == (["lr", "epochs", "extra"], ["loss", "val/acc"])


def test_best_cells_lower_or_higher_is_better_ties_and_nan():
    assert best(ROWS, "loss", "last", lower_is_better=True) == [1]
    assert best(ROWS, "loss", "min", lower_is_better=True) == [0, 1]  # a tie marks both
    assert best(ROWS, "loss", "max", lower_is_better=False) == [1]
    assert best(ROWS, "val/acc", "last", lower_is_better=False) == []  # nan is never best
    assert best(ROWS, "nope", "last", lower_is_better=True) == []


def test_csv():
    rows = list(csv.reader(io.StringIO(to_csv(ROWS))))
    assert rows[0] == ["id", "name", "state", "host", "runtime", "duration", "lr", "epochs", "extra",
                       "loss last", "loss min", "loss max", "val/acc last", "val/acc min", "val/acc max"]
    assert rows[1] == ["a", "lr=0.1", "finished", "local", "process", "1.5", "0.1", "5", "", "0.3", "0.2", "0.9",
                       "", "", ""]
    assert rows[2][9:] == ["0.2", "0.2", "inf", "nan", "0.5", "0.5"]
    assert rows[3][:3] == ["c", "#c", "running"] and len(rows) == 4


def test_diff_params():
    assert diff_params({"lr": "0.1", "a": "1", "gone": "x"}, {"lr": "0.2", "a": "1", "new": ""}) == [
        ("lr", "0.1", "0.2"), ("gone", "x", None), ("new", None, "")]


def test_diff_files_statuses_binary_links_and_ml_yaml_first():
    blobs = {"1": b"print(1)\n", "2": b"print(2)\n", "y1": b"a: 1\n", "y2": b"a: 2\n", "bin": b"\0\1", "bin2": b"\0\2"}
    fa = {"main.py": ["1", 9, 0o644], "ml.yaml": ["y1", 5, 0o644], "gone.py": ["1", 9, 0o644],
          "w.bin": ["bin", 2, 0o644], "same.py": ["1", 9, 0o644], "l": ["link", "main.py"]}
    fb = {"main.py": ["2", 9, 0o644], "ml.yaml": ["y2", 5, 0o644], "new.py": ["2", 9, 0o644],
          "w.bin": ["bin2", 2, 0o644], "same.py": ["1", 9, 0o755], "l": ["link", "new.py"]}
    read = lambda rel, files: blobs[files[rel][0]]  # noqa: E731
    out = diff_files(fa, fb, lambda r: read(r, fa), lambda r: read(r, fb), label_a="A", label_b="B")
    by = {f["path"]: f for f in out}
    assert [f["path"] for f in out] == ["ml.yaml", "gone.py", "l", "main.py", "new.py", "w.bin"]
    assert by["ml.yaml"]["diff"].splitlines()[:2] == ["--- A/ml.yaml", "+++ B/ml.yaml"]
    assert "-print(1)\n+print(2)\n" in by["main.py"]["diff"]
    assert by["gone.py"]["status"] == "removed" and "+++ /dev/null" in by["gone.py"]["diff"]
    assert by["new.py"]["status"] == "added" and "--- /dev/null" in by["new.py"]["diff"]
    assert by["w.bin"] == {"path": "w.bin", "status": "changed", "diff": None}
    assert "--> main.py\n+-> new.py\n" in by["l"]["diff"]
    assert "same.py" not in by  # only its mode changed
