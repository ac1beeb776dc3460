from mldesk.ui.console import Console, STDOUT
from mldesk.ui.qt import QtWidgets

def last_visible(c):
    t = c.text_edit()
    vp = t.viewport()
    cur = t.cursorForPosition(vp.rect().bottomRight())
    return cur.position(), t.document().characterCount(), t.verticalScrollBar().value(), t.verticalScrollBar().maximum(), c.is_following()

def test_follow(qtbot):
    c = Console()
    qtbot.addWidget(c)
    c.resize(300, 250); c.show(); qtbot.waitExposed(c)
    c.append(STDOUT, b"start\n" + b"0123456789" * 20000)
    qtbot.waitUntil(lambda: c.pending_chars() == 0, timeout=20000)
    for _ in range(5): QtWidgets.QApplication.processEvents()
    print(last_visible(c))
    c.append(STDOUT, b"\nEND\n")
    qtbot.waitUntil(lambda: c.pending_chars() == 0, timeout=20000)
    for _ in range(5): QtWidgets.QApplication.processEvents()
    print(last_visible(c))
    c.resize(600, 250)
    for _ in range(5): QtWidgets.QApplication.processEvents()
    print(last_visible(c))
    assert 0
