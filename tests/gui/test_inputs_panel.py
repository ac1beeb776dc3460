"""The Inputs panel: ml.yaml's inputs as a table; drops of files and links add entries
and keep the file's comments; broken files are refused untouched; progress."""

from __future__ import annotations

import pytest

from mldesk.core import labconfig
from mldesk.engine.facade import Engine
from mldesk.ui.inputs import COL_CACHED, COL_NAME, COL_PROGRESS, COL_SIZE, COL_URL, InputsPanel, name_for_url
from mldesk.ui.qt import QtCore, QtGui, QtWidgets, Qt
from tests.gui.windowkit import make_lab, open_window, wait_for  # noqa: F401 - fixtures

YAML = """\
# Training data for the experiment: keep this comment
hardwareType: cpu   # cpu is enough
inputs:
  # the labels come first
  - name: labels.csv
    url: https://example.org/labels.csv
"""


@pytest.fixture
def engine(mldesk_home):
    eng = Engine(mldesk_home)
    yield eng
    eng.close()


@pytest.fixture
def panel(qtbot, engine, tmp_path):
    lab = tmp_path / "lab"
    lab.mkdir()
    (lab / "main.py").write_text("print('x')\n")
    (lab / "ml.yaml").write_text(YAML)
    widget = InputsPanel(engine)
    qtbot.addWidget(widget)
    widget.resize(900, 300)
    widget.set_lab(lab)
    widget.show()
    return widget


def drop(panel: QtWidgets.QWidget, mime: QtCore.QMimeData) -> bool:
    """Drag ``mime`` over ``panel`` and drop it, as a file manager or browser would."""
    pos = panel.rect().center()
    enter = QtGui.QDragEnterEvent(pos, Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QtWidgets.QApplication.sendEvent(panel, enter)
    if not enter.isAccepted():
        return False
    event = QtGui.QDropEvent(QtCore.QPointF(pos), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QtWidgets.QApplication.sendEvent(panel, event)
    return event.isAccepted()


def table_rows(panel) -> list[tuple[str, str]]:
    t = panel.table
    return [(t.item(r, COL_NAME).text(), t.item(r, COL_URL).text()) for r in range(t.rowCount())]


def test_lists_inputs_of_ml_yaml(panel):
    assert table_rows(panel) == [("labels.csv", "https://example.org/labels.csv")]
    assert panel.table.item(0, COL_CACHED).text() == "not yet"
    assert panel.stack.currentWidget() is panel.table


def test_drop_files_adds_file_urls_and_keeps_comments(panel, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    first = data / "train data.csv"
    first.write_text("a,b\n1,2\n")
    clash = data / "labels.csv"  # same name as an existing input
    clash.write_text("x\n")
    mime = QtCore.QMimeData()
    mime.setUrls([QtCore.QUrl.fromLocalFile(str(first)), QtCore.QUrl.fromLocalFile(str(clash))])
    assert drop(panel, mime)
    text = (panel.lab / "ml.yaml").read_text()
    assert text.startswith(YAML.rstrip("\n").split("\n")[0])
    for comment in ("# Training data for the experiment: keep this comment", "# cpu is enough",
                    "# the labels come first"):
        assert comment in text
    specs = labconfig.load_lab_config(panel.lab).inputs
    assert [s.name for s in specs] == ["labels.csv", "train data.csv", "labels-2.csv"]
    assert specs[1].url == first.resolve().as_uri() and "%20" in specs[1].url
    assert specs[2].url == clash.resolve().as_uri()
    assert [name for name, _ in table_rows(panel)] == ["labels.csv", "train data.csv", "labels-2.csv"]
    # local files: "local file" and their size
    assert panel.table.item(1, COL_CACHED).text() == "local file"
    assert panel.table.item(1, COL_SIZE).text() == "8 B"
    assert panel.bar.isVisible() and "Added 2 inputs" in panel.bar.title.text()


def test_drop_http_links(panel):
    mime = QtCore.QMimeData()
    mime.setUrls([QtCore.QUrl("https://example.org/data/mnist.npz?download=1")])
    assert drop(panel, mime)
    mime = QtCore.QMimeData()
    mime.setText("https://example.org/sets/")  # a browser's plain-text link, no file name
    assert drop(panel, mime)
    specs = labconfig.load_lab_config(panel.lab).inputs
    assert [(s.name, s.url) for s in specs[1:]] == [
        ("mnist.npz", "https://example.org/data/mnist.npz?download=1"),
        ("sets", "https://example.org/sets/"),
    ]
    assert "# the labels come first" in (panel.lab / "ml.yaml").read_text()


def test_drop_of_folder_or_unsupported_url_is_not_added(panel, tmp_path):
    mime = QtCore.QMimeData()
    mime.setUrls([QtCore.QUrl("ftp://example.org/x.csv")])
    assert not drop(panel, mime)
    mime = QtCore.QMimeData()
    mime.setUrls([QtCore.QUrl.fromLocalFile(str(tmp_path))])
    assert not drop(panel, mime)
    assert (panel.lab / "ml.yaml").read_text() == YAML


def test_broken_ml_yaml_is_left_untouched(panel, tmp_path):
    broken = "inputs:\n  - name: a\n    url: [unclosed\n"
    (panel.lab / "ml.yaml").write_text(broken)
    panel.reload()
    assert panel.bar.isVisible() and "errors" in panel.bar.title.text()
    assert panel.table.rowCount() == 0
    f = tmp_path / "x.csv"
    f.write_text("1\n")
    mime = QtCore.QMimeData()
    mime.setUrls([QtCore.QUrl.fromLocalFile(str(f))])
    drop(panel, mime)
    assert (panel.lab / "ml.yaml").read_text() == broken
    assert panel.bar.isVisible() and panel.bar.level == "error"


def test_edit_and_remove_keep_comments(panel, tmp_path):
    assert panel._write(labconfig.replace_input, "labels.csv",
                        labconfig.InputSpec("y.csv", "https://example.org/y.csv"))
    assert table_rows(panel) == [("y.csv", "https://example.org/y.csv")]
    assert "# the labels come first" in (panel.lab / "ml.yaml").read_text()
    panel.add_specs([("z.csv", "https://example.org/z.csv")])
    panel.table.selectRow(0)
    panel.remove_selected()
    assert table_rows(panel) == [("z.csv", "https://example.org/z.csv")]
    assert "# Training data for the experiment: keep this comment" in (panel.lab / "ml.yaml").read_text()


def test_remove_last_input_with_comment_above(panel):
    panel.table.selectRow(0)
    panel.remove_selected()
    assert panel.table.rowCount() == 0 and panel.stack.currentWidget() is panel.empty


def test_download_progress_is_shown(panel):
    panel.set_progress({"labels.csv": {"state": "downloading", "done": 500_000, "total": 1_000_000,
                                       "rate": 250_000, "eta": 2.0}})
    item = panel.table.item(0, COL_PROGRESS)
    assert item.text().startswith("50%") and "250.0 KB/s" in item.text() and "2 s left" in item.text()
    panel.grab()  # the progress delegate paints
    panel.set_progress({"labels.csv": {"state": "done", "done": 1_000_000, "total": 1_000_000}})
    assert panel.table.item(0, COL_PROGRESS).text().startswith("done")
    panel.set_progress({})
    assert panel.table.item(0, COL_PROGRESS).text() == ""


def test_input_dialog_checks_like_ml_yaml(qtbot, panel):
    from mldesk.ui.inputs import InputDialog

    dialog = InputDialog(panel, taken={"labels.csv"})
    qtbot.addWidget(dialog)
    dialog.url.setText("https://example.org/a/b/train.csv")
    dialog._url_edited(dialog.url.text())
    assert dialog.name.text() == "train.csv" and dialog.problem_text() == ""
    dialog.name.setText("../x")
    assert "plain file name" in dialog.problem_text()
    dialog.name.setText("LABELS.csv")
    assert "already exists" in dialog.problem_text()
    dialog.url.setText("ftp://example.org/x")
    assert "scheme" in dialog.problem_text()


def test_name_for_url():
    assert name_for_url("https://example.org/a%20b.csv?x=1") == "a b.csv"
    assert name_for_url("https://example.org/") == "example.org"


def test_drop_in_the_window_reloads_the_editor(qtbot, open_window, make_lab, tmp_path):
    lab = make_lab("print('x')\n", YAML)
    window = open_window(lab)
    editor = window.code.editor_for("ml.yaml")
    f = tmp_path / "extra.bin"
    f.write_bytes(b"\0" * 10)
    mime = QtCore.QMimeData()
    mime.setUrls([QtCore.QUrl.fromLocalFile(str(f))])
    window.bottom_tabs.setCurrentWidget(window.inputs_panel)
    assert drop(window.inputs_panel, mime)
    wait_for(qtbot, lambda: "extra.bin" in editor.toPlainText(), 3, "the editor to show the new input")
    assert not editor.is_modified


def test_ml_yaml_changed_elsewhere_is_read_again(qtbot, panel):
    text = YAML + "  - name: more.csv\n    url: https://example.org/more.csv\n"
    (panel.lab / "ml.yaml").write_text(text)
    wait_for(qtbot, lambda: panel.table.rowCount() == 2, 3, "the panel to re-read ml.yaml")
    assert table_rows(panel)[1] == ("more.csv", "https://example.org/more.csv")


def _drag(kind, widget, mime):
    from mldesk.ui.qt import QtCore, QtGui, Qt

    pos = QtCore.QPointF(10, 10)
    if kind == "enter":
        return QtGui.QDragEnterEvent(pos.toPoint(), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    return QtGui.QDropEvent(pos, Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)


def test_drop_anywhere_on_the_window_adds_an_input_once(qtbot, open_window, make_lab, tmp_path):
    from mldesk.ui.qt import QtCore, QtWidgets

    data = tmp_path / "train data.csv"
    data.write_text("a,b\n1,2\n")
    window = open_window(make_lab("print('x')\n"))
    mime = QtCore.QMimeData()
    mime.setUrls([QtCore.QUrl.fromLocalFile(str(data))])
    target = window.code  # not the Inputs panel
    enter = _drag("enter", target, mime)
    QtWidgets.QApplication.sendEvent(target, enter)
    assert enter.isAccepted()
    assert window.bottom_tabs.currentWidget() is window.inputs_panel  # forward on hover
    QtWidgets.QApplication.sendEvent(target, _drag("drop", target, mime))
    assert window.inputs_panel.names() == ["train data.csv"]
    # shown decoded, as written in the tooltip
    item = window.inputs_panel.table.item(0, 1)
    assert item.text() == data.as_uri().replace("%20", " ") and item.toolTip() == data.as_uri()
    # the same file again: said so, not added as train data-2.csv
    QtWidgets.QApplication.sendEvent(target, _drag("enter", target, mime))
    QtWidgets.QApplication.sendEvent(target, _drag("drop", target, mime))
    assert window.inputs_panel.names() == ["train data.csv"]
    assert window.inputs_panel.bar.isVisible() and "already" in window.inputs_panel.bar.text.text()


def test_add_dialog_shows_no_error_before_anything_is_typed(qtbot):
    from mldesk.ui.inputs import InputDialog

    dialog = InputDialog(None)
    qtbot.addWidget(dialog)
    assert dialog.problem.text() == ""
    assert not dialog.buttons.button(dialog.buttons.StandardButton.Ok).isEnabled()
    dialog.url.setText("ftp://x")
    assert dialog.problem.text() != ""
