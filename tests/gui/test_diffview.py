"""The Diff view: parameters and ml.yaml first, changed files, unified and side by side."""

from __future__ import annotations

from mldesk.ui.diffview import DiffView, side_rows, unified_rows

A = {
    "ml.yaml": b"parameters:\n  - pass-as: --lr=0.01\n",
    "main.py": b"import math\n\ndef f(x):\n    return x * 2\n\nprint(f(1))\n",
    "same.py": b"x = 1\n",
    "gone.txt": b"bye\n",
    "blob.bin": b"\x00\x01",
}
B = {
    "ml.yaml": b"parameters:\n  - pass-as: --lr=0.1\n",
    "main.py": b"import math\n\ndef f(x):\n    return x * 3\n\nprint(f(1))\n",
    "same.py": b"x = 1\n",
    "new/util.py": b"def g():\n    pass\n",
    "blob.bin": b"\x00\x02",
}


def _tree(root, files):
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def test_changed_files_listed_with_params_and_ml_yaml_first(qtbot):
    view = DiffView()
    qtbot.addWidget(view)
    view.show()
    view.set_trees(A, B, {"lr": "0.01", "epochs": "5"}, {"lr": "0.1", "epochs": "5"}, labels=("#1", "#2"))
    assert view.entries() == ["", "ml.yaml", "blob.bin", "gone.txt", "main.py", "new/util.py"]
    assert view.changed_files() == [("M", "ml.yaml"), ("M", "blob.bin"), ("D", "gone.txt"),
                                    ("M", "main.py"), ("A", "new/util.py")]
    assert view.changed_params() == [("lr", "0.01", "0.1")]
    # the parameters are shown first
    assert view.stack.currentWidget() is view.params_table
    t = view.params_table
    assert [t.item(0, c).text() for c in range(3)] == ["lr", "0.01", "0.1"]
    assert t.item(0, 0).font().bold() and not t.item(1, 0).font().bold()


def test_unified_and_side_by_side(qtbot, tmp_path):
    view = DiffView()
    qtbot.addWidget(view)
    view.show()
    view.set_trees(_tree(tmp_path / "a", A), _tree(tmp_path / "b", B))
    assert view.entries()[0] == "ml.yaml"  # no parameters given: ml.yaml first
    assert view.select("main.py")
    assert view.stack.currentWidget() is view.unified
    text = view.unified_text().splitlines()
    assert "    return x * 2" in text and "    return x * 3" in text
    kinds = dict(zip(text, view.unified.kinds))
    assert kinds["    return x * 2"] == "-" and kinds["    return x * 3"] == "+"
    assert view.unified.highlighter.lexer is not None  # Pygments, by file name
    view.set_mode("side")
    assert view.stack.currentWidget() is view.side
    assert "    return x * 2" in view.left.toPlainText()
    assert "    return x * 3" in view.right.toPlainText()
    assert view.left.document().blockCount() == view.right.document().blockCount()
    view.select("blob.bin")
    view.set_mode("unified")
    assert "Binary file differs" in view.unified_text()
    view.select("new/util.py")
    assert "def g():" in view.unified_text()


def test_no_differences(qtbot):
    view = DiffView()
    qtbot.addWidget(view)
    view.set_trees({"a.py": b"x\n"}, {"a.py": b"x\n"})
    assert view.entries() == [] and view.stack.currentWidget() is view.empty


def test_row_builders():
    a, b = ["1", "2", "3"], ["1", "two", "3", "4"]
    rows = unified_rows(a, b)
    assert rows[0][0] == "@"
    assert [(k, t) for k, _o, _n, t in rows[1:]] == [(" ", "1"), ("-", "2"), ("+", "two"), (" ", "3"), ("+", "4")]
    left, right = side_rows(a, b)
    assert len(left) == len(right)
    assert [k for k, _n, _t in left] == ["@", " ", "-", " ", "~"]
    assert [k for k, _n, _t in right] == ["@", " ", "+", " ", "+"]


def test_missing_trees_and_params_only(qtbot):
    view = DiffView()
    qtbot.addWidget(view)
    view.set_trees(None, {"a.py": b"x\n"}, None, {"lr": "0.1"})
    assert view.entries() == ["", "a.py"]
    assert view.changed_params() == [("lr", None, "0.1")]
    view.select("a.py")
    assert "x" in view.unified_text()


def test_changes_given_by_the_caller(qtbot):
    view = DiffView()
    qtbot.addWidget(view)
    view.set_trees(A, B, changes=[("M", "main.py"), ("M", "ml.yaml")])
    assert view.entries() == ["ml.yaml", "main.py"]  # ml.yaml first all the same


def test_engine_diff_result(qtbot):
    """engine.diff's shape: changed params only, files with unified diff text (None: binary)."""
    import difflib

    old = A["main.py"].decode().splitlines(keepends=True)
    new = B["main.py"].decode().splitlines(keepends=True)
    text = "".join(difflib.unified_diff(old, new, "ab12/main.py", "lab/main.py"))
    result = {"a": "ab12", "b": "lab", "params": [("lr", "0.01", "0.1"), ("seed", None, "3")],
              "files": [{"path": "main.py", "status": "changed", "diff": text},
                        {"path": "ml.yaml", "status": "changed", "diff": "--- a\n+++ b\n@@ -1 +1 @@\n-x: 1\n+x: 2\n"},
                        {"path": "blob.bin", "status": "added", "diff": None}]}
    view = DiffView()
    qtbot.addWidget(view)
    view.show()
    view.set_diff(result)
    assert view.entries() == ["", "ml.yaml", "blob.bin", "main.py"]
    assert view.changed_files()[1] == ("A", "blob.bin")
    assert view.changed_params() == [("lr", "0.01", "0.1"), ("seed", None, "3")]
    assert "ab12" in view.header.label.text() and "lab" in view.header.label.text()
    view.select("main.py")
    lines = view.unified_text().splitlines()
    assert lines == [r[3] for r in unified_rows([l.rstrip("\n") for l in old], [l.rstrip("\n") for l in new])]
    numbers = view.unified.numbers
    assert ("4", "", "-") in numbers and ("", "4", "+") in numbers  # line numbers from the hunk header
    view.set_mode("side")
    assert "    return x * 2" in view.left.toPlainText() and "    return x * 3" in view.right.toPlainText()
    assert view.left.document().blockCount() == view.right.document().blockCount()
    view.select("blob.bin")
    assert "Binary" in view.unified_text()
    view.select("ml.yaml")
    assert view.right.toPlainText().splitlines()[1:] == ["x: 2"]
