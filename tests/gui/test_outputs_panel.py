"""The Outputs panel of a real execution: list, image preview, open, copy into lab."""

from __future__ import annotations

from mldesk.ui.qt import QtGui
from tests.gui.windowkit import make_lab, open_window, wait_final, wait_for  # noqa: F401 - fixtures


def test_outputs_listed_previewed_opened_and_copied(qtbot, open_window, make_lab, tmp_path):
    lab = make_lab("""
        import os, shutil
        os.makedirs("outputs/plots", exist_ok=True)
        shutil.copy("picture.png", "outputs/plots/loss.png")
        open("outputs/metrics.csv", "w").write("epoch,loss\\n1,0.5\\n")
        print("done")
    """)
    image = QtGui.QImage(64, 48, QtGui.QImage.Format_RGB32)
    image.fill(QtGui.QColor("#2f7bea"))
    assert image.save(str(lab / "picture.png"))
    window = open_window(lab)
    opened = []
    window.outputs_panel.open_url = lambda url: opened.append(url.toLocalFile())
    panel = window.outputs_panel
    window.run()
    wait_for(qtbot, lambda: window.model.rowCount() == 1, 2, "the execution")
    ex = window.model.execution(0)
    window.bottom_tabs.setCurrentWidget(panel)
    assert panel.execution is not None and panel.execution.id == ex.id
    wait_final(qtbot, window, ex.id)
    wait_for(qtbot, lambda: panel.select("plots/loss.png"), 5, "the outputs to be listed")
    assert "2 files" in panel.title.text()
    # image preview
    assert panel.preview.currentWidget() is panel.preview.image
    assert not panel.preview.image.pixmap().isNull()
    # text preview
    assert panel.select("metrics.csv")
    assert panel.preview.currentWidget() is panel.preview.text
    assert "epoch,loss" in panel.preview.text.toPlainText()
    # double-click opens with the desktop's application
    item = panel.tree.currentItem()
    panel.tree.itemDoubleClicked.emit(item, 0)
    assert opened == [str(window.engine.outputs_dir(ex.id) / "metrics.csv")]
    panel.open_folder()
    assert opened[-1] == str(window.engine.outputs_dir(ex.id))
    # copy into the lab, at the same relative path
    assert panel.select("plots/loss.png")
    dst = panel.copy_into_lab("plots/loss.png")
    assert dst == lab / "plots" / "loss.png" and dst.read_bytes() == (lab / "picture.png").read_bytes()
    assert panel.copy_into_lab("plots/loss.png") is None  # exists: not overwritten without asking
    assert panel.bar.isVisible()


def test_no_outputs_message(qtbot, open_window, make_lab):
    window = open_window(make_lab("print('nothing')\n"))
    window.run()
    wait_for(qtbot, lambda: window.model.rowCount() == 1, 2, "the execution")
    ex = wait_final(qtbot, window, window.model.execution(0).id)
    panel = window.outputs_panel
    wait_for(qtbot, lambda: panel.execution is not None and panel.execution.final, 3, "the final state")
    assert panel.list_stack.currentWidget() is panel.empty
    assert "no files" in panel.empty.text()
    assert ex.state == "finished"


def test_open_that_cannot_launch_says_so_menu_and_drag_out(qtbot, open_window, make_lab):
    from mldesk.ui.qt import QtWidgets

    lab = make_lab("""
        import os
        os.makedirs("outputs", exist_ok=True)
        open("outputs/model.bin", "wb").write(b"\\0" * 10)
    """)
    window = open_window(lab)
    panel = window.outputs_panel
    panel.open_url = lambda url: False  # no application can open anything here
    window.run()
    wait_for(qtbot, lambda: window.model.rowCount() == 1, 2, "the execution")
    ex = wait_final(qtbot, window, window.model.execution(0).id)
    window.select_execution(ex.id, show_code=False)
    window.bottom_tabs.setCurrentWidget(panel)
    wait_for(qtbot, lambda: panel.select("model.bin"), 5, "the outputs to be listed")
    panel.open_selected()
    path = window.engine.outputs_dir(ex.id) / "model.bin"
    assert panel.bar.isVisible() and "Nothing could open" in panel.bar.title.text()
    assert str(path) in panel.bar.text.text()
    copy = next(b for b in panel.bar.buttons() if b.text() == "Copy path")
    copy.click()
    assert QtWidgets.QApplication.clipboard().text() == str(path)
    # the context menu
    menu = panel.context_menu()
    assert [a.text() for a in menu.actions()] == ["Open", "Open folder", "Copy path", "Copy into lab"]
    assert all(a.isEnabled() for a in menu.actions())
    menu.deleteLater()
    # dragging files out gives the file manager their paths
    mime = panel.tree.mimeData([panel.tree.currentItem()])
    assert [u.toLocalFile() for u in mime.urls()] == [str(path)]
