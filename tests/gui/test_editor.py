"""The code editor: highlighting, gutter, problems, files, indentation."""

from __future__ import annotations

import shutil
import stat

import pytest
from pygments.token import Keyword, Name, String

from mldesk.ui.editor import CodeEditor, Problem, lexer_for_filename
from mldesk.ui.qt import QtCore, QtGui, QtWidgets, Qt


@pytest.fixture
def editor(qtbot) -> CodeEditor:
    widget = CodeEditor()
    qtbot.addWidget(widget)
    widget.resize(700, 400)
    return widget


def format_at(editor: CodeEditor, line: int, column: int) -> QtGui.QTextCharFormat | None:
    """The highlighter's format at a 0-based line and column (None: default)."""
    block = editor.document().findBlockByNumber(line)
    ranges = block.layout().formats()
    for rng in ranges:
        if rng.start <= column < rng.start + rng.length:
            return QtGui.QTextCharFormat(rng.format)  # a copy: outlives the list
    return None


def colour_at(editor: CodeEditor, line: int, column: int) -> str | None:
    fmt = format_at(editor, line, column)
    return fmt.foreground().color().name() if fmt and fmt.hasProperty(
        QtGui.QTextFormat.ForegroundBrush) else None


# ------------------------------------------------------------- highlighting
def test_python_keyword_highlighted(editor, tmp_path):
    path = tmp_path / "main.py"
    path.write_text("import os\n\ndef main():\n    return os.getcwd()\n")
    editor.load_file(path)
    keyword = format_at(editor, 2, 0)  # "def"
    assert keyword is not None
    expected = editor.highlighter.format_for(Keyword)
    assert keyword.foreground().color() == expected.foreground().color()
    assert keyword.foreground().color() != editor.palette().color(QtGui.QPalette.Text)
    assert format_at(editor, 2, 4) is not None  # "main", a function name
    assert format_at(editor, 2, 4).foreground().color() != keyword.foreground().color()


def test_multiline_string_state_carries_over_lines(editor):
    editor.load_text('x = """start\ndef not_code(): pass\nend"""\ndef code(): pass\n', "main.py")
    string = editor.highlighter.format_for(String.Double).foreground().color()
    keyword = editor.highlighter.format_for(Keyword).foreground().color()
    assert format_at(editor, 1, 0).foreground().color() == string  # "def" inside the string
    assert format_at(editor, 2, 0).foreground().color() == string
    assert format_at(editor, 3, 0).foreground().color() == keyword  # after it: code again
    # closing the string elsewhere re-highlights the following lines
    cursor = QtGui.QTextCursor(editor.document().findBlockByNumber(0))
    cursor.movePosition(QtGui.QTextCursor.EndOfBlock)
    cursor.insertText('"""')
    assert format_at(editor, 1, 0).foreground().color() == keyword


def test_yaml_and_markdown_highlighted(editor):
    editor.load_text("hardwareType: cpu\nnote: |\n  key: not a key\n", "ML.YAML")
    tag = format_at(editor, 0, 0)
    assert tag is not None and tag.foreground().color() == \
        editor.highlighter.format_for(Name.Tag).foreground().color()
    scalar = format_at(editor, 2, 2)  # "key" inside a block scalar is not a tag
    assert scalar is None or scalar.foreground().color() != tag.foreground().color()
    editor.load_text("# Title\n\nsome *emphasis*\n", "README.md")
    assert format_at(editor, 0, 0) is not None
    assert lexer_for_filename("notes.txt") is None
    editor.load_text("def x(): pass\n", "notes.txt")
    assert format_at(editor, 0, 0) is None


def test_non_bmp_characters_keep_columns_right(editor):
    editor.load_text('s = "🚀🚀"  # done\n', "a.py")
    comment_col = len('s = "🚀🚀"  '.encode("utf-16-le")) // 2
    comment = format_at(editor, 0, comment_col)
    assert comment is not None and comment.fontItalic() == format_at(editor, 0, comment_col + 3).fontItalic()
    assert format_at(editor, 0, comment_col).foreground().color() != format_at(editor, 0, 4).foreground().color()


def test_style_follows_palette(editor):
    light = editor.highlighter.style_name()
    palette = QtGui.QPalette(editor.palette())
    palette.setColor(QtGui.QPalette.Base, QtGui.QColor("#1e1f22"))
    palette.setColor(QtGui.QPalette.Text, QtGui.QColor("#dddddd"))
    editor.setPalette(palette)
    assert editor.highlighter.style_name() != light


# -------------------------------------------------------------------- gutter
def test_line_number_area_grows_with_line_count(editor):
    editor.load_text("x\n", "a.py")
    narrow = editor.line_number_area_width()
    editor.load_text("x\n" * 1000, "a.py")
    wider = editor.line_number_area_width()
    editor.load_text("x\n" * 100_000, "a.txt")
    widest = editor.line_number_area_width()
    assert narrow < wider < widest
    assert editor.viewportMargins().left() == widest


# ------------------------------------------------------------------ problems
def test_problems_underline_and_tooltip(qtbot, editor):
    editor.load_text("dockerImageId: x\nhardwareType: cpux\nmounts: []\n", "ml.yaml")
    editor.set_problems([
        (2, 15, "hardwareType must be cpu or gpu", "error"),
        Problem(3, 0, "unknown key 'mounts' (ignored)", "warning"),
    ])
    wavy = [sel for sel in editor.extraSelections()
            if sel.format.underlineStyle() == QtGui.QTextCharFormat.SpellCheckUnderline]
    assert len(wavy) == 2
    error, warning = wavy
    assert error.cursor.blockNumber() == 1 and error.cursor.selectedText() == "cpux"
    assert warning.cursor.selectedText() == "mounts: []"
    assert error.format.underlineColor() != warning.format.underlineColor()
    assert "hardwareType must be cpu or gpu" in editor.problem_text(2)
    assert editor.problem_text(1) is None

    editor.show()
    qtbot.waitExposed(editor)
    rect = editor.blockBoundingGeometry(editor.document().findBlockByNumber(1)).translated(
        editor.contentOffset())
    pos = QtCore.QPoint(40, int(rect.center().y()))
    viewport = editor.viewport()
    event = QtGui.QHelpEvent(QtCore.QEvent.ToolTip, pos, viewport.mapToGlobal(pos))
    QtWidgets.QApplication.sendEvent(viewport, event)
    qtbot.waitUntil(QtWidgets.QToolTip.isVisible)
    assert "hardwareType must be cpu or gpu" in QtWidgets.QToolTip.text()
    QtWidgets.QToolTip.hideText()

    editor.set_problems([])
    assert not [sel for sel in editor.extraSelections()
                if sel.format.underlineStyle() == QtGui.QTextCharFormat.SpellCheckUnderline]


def test_problem_past_the_end_is_clamped(editor):
    editor.load_text("a: 1\n", "ml.yaml")
    editor.set_problems([(99, 1, "unexpected end", "error")])
    assert len(editor.extraSelections()) == 2  # current line + the problem


# ----------------------------------------------------------------- files
def test_load_edit_save(qtbot, editor, tmp_path):
    path = tmp_path / "main.py"
    path.write_bytes(b"print(1)\r\nprint(2)\r\n")
    path.chmod(0o751)
    editor.load_file(path)
    assert editor.path == path and not editor.is_modified
    with qtbot.waitSignal(editor.modificationChanged) as changed:
        editor.textCursor().insertText("# hi\n")
    assert changed.args == [True] and editor.is_modified
    with qtbot.waitSignal(editor.modificationChanged) as saved:
        assert editor.save()
    assert saved.args == [False] and not editor.is_modified
    assert path.read_bytes() == b"# hi\r\nprint(1)\r\nprint(2)\r\n"  # line endings kept
    assert stat.S_IMODE(path.stat().st_mode) == 0o751
    assert [p.name for p in tmp_path.iterdir()] == ["main.py"]  # no temp file left


def test_save_failure_reported(editor, tmp_path):
    folder = tmp_path / "lab"
    folder.mkdir()
    (folder / "a.py").write_text("x = 1\n")
    editor.load_file(folder / "a.py")
    editor.textCursor().insertText("y = 2\n")
    shutil.rmtree(folder)
    folder.write_text("a file where the folder was")  # fails even for root
    assert not editor.save()
    assert "a.py" in editor.last_error and editor.is_modified


def test_save_without_path_fails_cleanly(editor):
    editor.load_text("x = 1\n", "snapshot.py")
    assert not editor.save() and editor.last_error


def test_non_utf8_file_opens_read_only(editor, tmp_path):
    path = tmp_path / "data.py"
    path.write_bytes(b"x = '\xff\xfe'\n")
    editor.load_file(path)
    assert editor.decoding_error and editor.isReadOnly()
    assert not editor.save()
    assert path.read_bytes() == b"x = '\xff\xfe'\n"


# --------------------------------------------------------------- editing
def test_tab_inserts_spaces_and_shift_tab_dedents(qtbot, editor):
    editor.load_text("a\nb\n", "a.py")
    editor.setFocus()
    qtbot.keyClick(editor, Qt.Key_Tab)
    assert editor.document().findBlockByNumber(0).text() == "    a"
    editor.selectAll()
    qtbot.keyClick(editor, Qt.Key_Tab)
    assert editor.toPlainText() == "        a\n    b\n"
    editor.selectAll()
    qtbot.keyClick(editor, Qt.Key_Backtab)
    assert editor.toPlainText() == "    a\nb\n"
    assert editor.tabStopDistance() == 4 * editor.fontMetrics().horizontalAdvance(" ")


def test_enter_keeps_indentation_and_backspace_removes_a_level(qtbot, editor):
    editor.load_text("def f():", "a.py")
    cursor = editor.textCursor()
    cursor.movePosition(QtGui.QTextCursor.End)
    editor.setTextCursor(cursor)
    qtbot.keyClick(editor, Qt.Key_Return)
    qtbot.keyClicks(editor, "x = 1")
    qtbot.keyClick(editor, Qt.Key_Return)
    assert editor.toPlainText() == "def f():\n    x = 1\n    "
    qtbot.keyClick(editor, Qt.Key_Backspace)
    assert editor.toPlainText() == "def f():\n    x = 1\n"


def test_monospace_font(editor):
    metrics = editor.fontMetrics()
    assert metrics.horizontalAdvance("iiii") == metrics.horizontalAdvance("WWWW")
