"""The one find bar (mldesk.ui.findbar) in the code view: typing finds from the current
match, Enter / Shift+Enter go to the next / previous match (wrapping around), a query
without matches says so, Esc closes it and gives the editor its focus back. The
console's use of it is tested in test_console.py."""

from __future__ import annotations

from mldesk.ui.console import Console
from mldesk.ui.findbar import FindBar
from mldesk.ui.qt import QtGui, Qt
from tests.gui.windowkit import make_lab, open_window, wait_for  # noqa: F401 - fixtures


def test_code_find_bar(qtbot, open_window, make_lab):
    lab = make_lab("a = 'x'\nprint(a)\nb = 'y'\nprint(b)\nprint(a, b)\n")
    window = open_window(lab)
    window.code.open_file("main.py")
    editor = window.code.current_editor()
    editor.setFocus()
    qtbot.waitUntil(editor.hasFocus)
    bar = window.code.find_bar
    assert isinstance(bar, FindBar) and bar.objectName() == "codeFindBar"
    assert isinstance(window.console.findChild(FindBar, "consoleFindBar"), FindBar)  # the same class
    assert Console is type(window.console)
    qtbot.keyClick(editor, Qt.Key_F, Qt.ControlModifier)
    assert bar.isVisible() and bar.field.hasFocus()
    qtbot.keyClicks(bar.field, "print")
    assert editor.textCursor().selectedText() == "print" and editor.textCursor().blockNumber() == 1
    qtbot.keyClick(bar.field, Qt.Key_Return)
    assert editor.textCursor().blockNumber() == 3
    qtbot.keyClick(bar.field, Qt.Key_Return)
    assert editor.textCursor().blockNumber() == 4
    qtbot.keyClick(bar.field, Qt.Key_Return)  # wraps around
    assert editor.textCursor().blockNumber() == 1
    qtbot.keyClick(bar.field, Qt.Key_Return, Qt.ShiftModifier)  # previous, wrapping back
    assert editor.textCursor().blockNumber() == 4
    qtbot.keyClicks(bar.field, "(a")  # typing goes on from the current match
    assert editor.textCursor().selectedText() == "print(a" and editor.textCursor().blockNumber() == 4
    bar.field.setText("absent")
    assert bar.count.text() == "No matches"
    bar.field.clear()
    assert bar.count.text() == ""
    qtbot.keyClick(bar.field, Qt.Key_Escape)
    assert not bar.isVisible()
    wait_for(qtbot, editor.hasFocus, 2, "the editor's focus")
    # a one-line selection is the next query
    cursor = editor.textCursor()
    cursor.setPosition(0)
    cursor.setPosition(1, QtGui.QTextCursor.KeepAnchor)
    editor.setTextCursor(cursor)
    qtbot.keyClick(editor, Qt.Key_F, Qt.ControlModifier)
    assert bar.field.text() == "a" and bar.field.selectedText() == "a"
