"""The Outputs panel: the files an execution left in ``outputs/``.

Name, size and modified time; double-click opens a file with the desktop's default
application; images (and small text files) are previewed; Open folder; Copy into
lab (keeps the file's relative path).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from mldesk.engine.facade import Engine
from mldesk.engine.values import Execution
from mldesk.ui import fmt
from mldesk.ui.qt import QtCore, QtGui, QtWidgets, Qt, Signal, monospace_font
from mldesk.ui.widgets import MessageBar

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".svg", ".ico", ".ppm", ".pgm"}
TEXT_SUFFIXES = {".txt", ".csv", ".tsv", ".json", ".log", ".md", ".yaml", ".yml", ".py", ".ini", ".cfg"}
MAX_ENTRIES = 10_000
RelRole = Qt.UserRole + 1


class _Preview(QtWidgets.QStackedWidget):
    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("outputPreview")
        self.image = QtWidgets.QLabel(self)
        self.image.setObjectName("outputImagePreview")
        self.image.setAlignment(Qt.AlignCenter)
        self.image.setMinimumSize(120, 120)
        self.image.setSizePolicy(QtWidgets.QSizePolicy.Ignored, QtWidgets.QSizePolicy.Ignored)
        self.text = QtWidgets.QPlainTextEdit(self)
        self.text.setReadOnly(True)
        self.text.setFont(monospace_font(-1))
        self.text.setLineWrapMode(QtWidgets.QPlainTextEdit.NoWrap)
        self.text.setFrameShape(QtWidgets.QFrame.NoFrame)
        self.none = QtWidgets.QLabel("Select a file to preview it", self)
        self.none.setAlignment(Qt.AlignCenter)
        self.none.setWordWrap(True)
        self.none.setForegroundRole(QtGui.QPalette.PlaceholderText)
        for w in (self.none, self.image, self.text):
            self.addWidget(w)
        self._pixmap: QtGui.QPixmap | None = None

    def clear(self, message: str = "Select a file to preview it") -> None:
        self._pixmap = None
        self.none.setText(message)
        self.setCurrentWidget(self.none)

    def show_file(self, path: Path) -> None:
        suffix = path.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            pm = QtGui.QPixmap(str(path))
            if pm.isNull():
                self.clear(f"{path.name} could not be read as an image")
                return
            self._pixmap = pm
            self.image.setToolTip(f"{path.name}: {pm.width()} \u00d7 {pm.height()} px")
            self.setCurrentWidget(self.image)
            self._rescale()
            return
        if suffix in TEXT_SUFFIXES:
            try:
                with open(path, "rb") as f:
                    data = f.read(256 << 10)
            except OSError as exc:
                self.clear(f"{path.name} could not be read: {exc.strerror}")
                return
            if b"\0" not in data[:8192]:
                text = data.decode("utf-8", "replace")
                if len(data) == 256 << 10:
                    text += "\n\u2026 (preview shows the first 256 KB)"
                self.text.setPlainText(text)
                self.setCurrentWidget(self.text)
                return
        self.clear(f"No preview for {path.name}.\nDouble-click to open it.")

    def _rescale(self) -> None:
        if self._pixmap is None:
            return
        size = self.image.size() - QtCore.QSize(16, 16)
        pm = self._pixmap
        if pm.width() > size.width() or pm.height() > size.height():
            pm = pm.scaled(size, Qt.KeepAspectRatio, Qt.SmoothTransformation)
        elif pm.width() * 2 <= size.width() and pm.height() * 2 <= size.height() and pm.width() < 128:
            # tiny images (icons, 28x28 samples): scale up crisply
            factor = max(1, min(size.width() // pm.width(), size.height() // pm.height(), 8))
            pm = pm.scaled(pm.size() * factor, Qt.KeepAspectRatio, Qt.FastTransformation)
        self.image.setPixmap(pm)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._rescale()


class _OutputsTree(QtWidgets.QTreeWidget):
    """The outputs list; its files can be dragged out (to a file manager, a mail...)."""

    def __init__(self, panel: "OutputsPanel"):
        super().__init__(panel)
        self.panel = panel
        self.setDragEnabled(True)
        self.setDragDropMode(QtWidgets.QAbstractItemView.DragOnly)

    def mimeTypes(self) -> list[str]:  # noqa: N802 - Qt's name
        return ["text/uri-list"]

    def mimeData(self, items) -> QtCore.QMimeData:  # noqa: N802
        mime = QtCore.QMimeData()
        root = self.panel.root
        if root is not None:
            mime.setUrls([QtCore.QUrl.fromLocalFile(str(root / it.data(0, RelRole)))
                          for it in items if it.data(0, RelRole)])
        return mime


class OutputsPanel(QtWidgets.QWidget):
    """objectName ``outputsPanel``."""

    message = Signal(str, str, str)  # title, text, level
    copiedIntoLab = Signal(str)  # rel path

    def __init__(self, engine: Engine, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("outputsPanel")
        self.setAccessibleName("Outputs")
        self.engine = engine
        self.execution: Execution | None = None
        self.lab: Path | None = None
        self.root: Path | None = None
        self.open_url = QtGui.QDesktopServices.openUrl  # replaced in tests

        self.bar = MessageBar(self)
        self.title = QtWidgets.QLabel(self)
        self.title.setObjectName("outputsTitle")
        self.title.setTextFormat(Qt.PlainText)
        self.open_button = QtWidgets.QPushButton("Open", self)
        self.open_button.setToolTip("Open the selected file with its default application")
        self.open_button.clicked.connect(self.open_selected)
        self.folder_button = QtWidgets.QPushButton("Open folder", self)
        self.folder_button.setObjectName("openOutputsFolder")
        self.folder_button.clicked.connect(self.open_folder)
        self.copy_button = QtWidgets.QPushButton("Copy into lab", self)
        self.copy_button.setObjectName("copyIntoLab")
        self.copy_button.setToolTip("Copy the selected file into the lab folder, at the same relative path")
        self.copy_button.clicked.connect(self._copy_clicked)
        top = QtWidgets.QHBoxLayout()
        top.setContentsMargins(10, 6, 8, 6)
        top.setSpacing(6)
        top.addWidget(self.title, 1)
        top.addWidget(self.open_button)
        top.addWidget(self.copy_button)
        top.addWidget(self.folder_button)

        self.tree = _OutputsTree(self)
        self.tree.setObjectName("outputsTree")
        self.tree.setContextMenuPolicy(Qt.CustomContextMenu)
        self.tree.customContextMenuRequested.connect(self._show_menu)
        self.tree.setHeaderLabels(["Name", "Size", "Modified"])
        self.tree.setRootIsDecorated(True)
        self.tree.setUniformRowHeights(True)
        self.tree.setAlternatingRowColors(True)
        self.tree.setFrameShape(QtWidgets.QFrame.NoFrame)
        self.tree.setSortingEnabled(True)
        self.tree.sortByColumn(0, Qt.AscendingOrder)
        header = self.tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QtWidgets.QHeaderView.Stretch)
        header.setSectionResizeMode(1, QtWidgets.QHeaderView.ResizeToContents)
        header.setSectionResizeMode(2, QtWidgets.QHeaderView.ResizeToContents)
        self.tree.itemDoubleClicked.connect(lambda item, _c: self.open_item(item))
        self.tree.itemSelectionChanged.connect(self._on_selection)
        self.preview = _Preview(self)
        self.empty = QtWidgets.QLabel(self)
        self.empty.setAlignment(Qt.AlignCenter)
        self.empty.setWordWrap(True)
        self.empty.setForegroundRole(QtGui.QPalette.PlaceholderText)
        self.list_stack = QtWidgets.QStackedWidget(self)
        self.list_stack.addWidget(self.tree)
        self.list_stack.addWidget(self.empty)
        self.splitter = QtWidgets.QSplitter(Qt.Horizontal, self)
        self.splitter.setObjectName("outputsSplitter")
        self.splitter.addWidget(self.list_stack)
        self.splitter.addWidget(self.preview)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setChildrenCollapsible(False)

        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.bar)
        layout.addLayout(top)
        layout.addWidget(self.splitter, 1)
        self.set_execution(None)

    # -- content -------------------------------------------------------------------
    def set_lab(self, lab: Path | str | None) -> None:
        self.lab = Path(lab) if lab else None

    def set_execution(self, ex: Execution | None) -> None:
        changed = (ex.id if ex else None) != (self.execution.id if self.execution else None)
        self.execution = ex
        self.root = self.engine.outputs_dir(ex.id) if ex is not None else None
        if changed:
            self.bar.hide()
        self.refresh()

    def refresh(self) -> None:
        ex = self.execution
        selected = self.selected_rel()
        self.tree.clear()
        self.preview.clear()
        if ex is None:
            self.title.setText("")
            self._empty("Select an execution in the sidebar to see its outputs.")
            self._update_buttons()
            return
        files = self._scan()
        total = sum(size for _rel, size, _m in files)
        n = len(files)
        self.title.setText(f"{ex.name} \u2014 {n} file{'s' if n != 1 else ''}, {fmt.size(total)}"
                           if n else ex.name)
        if not files:
            if ex.active:
                self._empty("Files that main.py writes to outputs/ appear here when the execution ends.")
            else:
                self._empty("This execution left no files in outputs/.")
            self._update_buttons()
            return
        self.list_stack.setCurrentWidget(self.tree)
        self.tree.setSortingEnabled(False)
        folders: dict[str, QtWidgets.QTreeWidgetItem] = {}
        provider = QtWidgets.QFileIconProvider()
        folder_icon = provider.icon(QtWidgets.QFileIconProvider.Folder)
        file_icon = provider.icon(QtWidgets.QFileIconProvider.File)

        def parent_for(rel: str) -> QtWidgets.QTreeWidgetItem | None:
            folder = rel.rpartition("/")[0]
            if not folder:
                return None
            if folder not in folders:
                item = QtWidgets.QTreeWidgetItem([folder.rsplit("/", 1)[-1], "", ""])
                item.setIcon(0, folder_icon)
                item.setData(0, RelRole, "")
                up = parent_for(folder)
                (up.addChild(item) if up is not None else self.tree.addTopLevelItem(item))
                folders[folder] = item
            return folders[folder]

        for rel, size, mtime in files:
            item = _Item([rel.rsplit("/", 1)[-1], fmt.size(size), time.strftime("%Y-%m-%d %H:%M", time.localtime(mtime))])
            item.setIcon(0, file_icon)
            item.setData(0, RelRole, rel)
            item.setData(1, Qt.UserRole, size)
            item.setData(2, Qt.UserRole, mtime)
            item.setTextAlignment(1, Qt.AlignRight | Qt.AlignVCenter)
            item.setToolTip(0, rel)
            up = parent_for(rel)
            (up.addChild(item) if up is not None else self.tree.addTopLevelItem(item))
        self.tree.setSortingEnabled(True)
        self.tree.setRootIsDecorated(bool(folders))
        self.tree.expandAll()
        if selected:
            self.select(selected)
        self._update_buttons()

    def _empty(self, text: str) -> None:
        self.empty.setText(text)
        self.list_stack.setCurrentWidget(self.empty)

    def _scan(self) -> list[tuple[str, int, float]]:
        root = self.root
        out: list[tuple[str, int, float]] = []
        if root is None or not root.is_dir():
            return out
        stack = [(root, "")]
        while stack and len(out) < MAX_ENTRIES:
            folder, prefix = stack.pop()
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                rel = prefix + entry.name
                if entry.is_dir(follow_symlinks=False):
                    stack.append((Path(entry.path), rel + "/"))
                elif entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    out.append((rel, st.st_size, st.st_mtime))
        out.sort()
        return out

    # -- selection ---------------------------------------------------------------------
    def selected_rel(self) -> str | None:
        items = self.tree.selectedItems()
        rel = items[0].data(0, RelRole) if items else None
        return rel or None

    def select(self, rel: str) -> bool:
        it = QtWidgets.QTreeWidgetItemIterator(self.tree)
        while it.value() is not None:
            if it.value().data(0, RelRole) == rel:
                self.tree.setCurrentItem(it.value())
                return True
            it += 1
        return False

    def _on_selection(self) -> None:
        rel = self.selected_rel()
        if rel and self.root is not None:
            self.preview.show_file(self.root / rel)
        else:
            self.preview.clear()
        self._update_buttons()

    def _update_buttons(self) -> None:
        has_file = self.selected_rel() is not None
        self.open_button.setEnabled(has_file)
        self.copy_button.setEnabled(has_file and self.lab is not None)
        self.folder_button.setEnabled(self.root is not None and self.root.is_dir())

    # -- actions -------------------------------------------------------------------------
    def launch(self, path: Path) -> bool:
        """Open ``path`` with the desktop's default application; when nothing can, say so
        with the path and a Copy path button."""
        ok = self.open_url(QtCore.QUrl.fromLocalFile(str(path)))
        if ok is False:
            what = "folder" if path.is_dir() else "file"
            self.bar.show_message(
                f"Nothing could open the {what} {path.name}",
                f"No application is set up to open it here. It is at {path}", "warning",
                [("Copy path", lambda p=path: self.copy_path(p))])
            return False
        return True

    def copy_path(self, path: Path) -> None:
        QtGui.QGuiApplication.clipboard().setText(str(path))
        self.bar.show_message("Path copied.", str(path), "success", timeout=4)

    def open_item(self, item: QtWidgets.QTreeWidgetItem) -> None:
        rel = item.data(0, RelRole)
        if rel and self.root is not None:
            self.launch(self.root / rel)

    def open_selected(self) -> None:
        items = self.tree.selectedItems()
        if items:
            self.open_item(items[0])

    def open_folder(self) -> None:
        if self.root is not None and self.root.is_dir():
            self.launch(self.root)

    def context_menu(self) -> QtWidgets.QMenu:
        """Open, Open folder, Copy path, Copy into lab: for the selected file."""
        rel = self.selected_rel()
        menu = QtWidgets.QMenu(self)
        menu.setObjectName("outputsMenu")
        path = self.root / rel if rel and self.root is not None else None
        for label, slot, enabled in (
                ("Open", self.open_selected, path is not None),
                ("Open folder", lambda: self.launch(path.parent) if path else None, path is not None),
                ("Copy path", lambda: self.copy_path(path) if path else None, path is not None),
                ("Copy into lab", self._copy_clicked, path is not None and self.lab is not None)):
            act = menu.addAction(label)
            act.setEnabled(enabled)
            act.triggered.connect(lambda _c=False, s=slot: s())
        return menu

    def _show_menu(self, pos: QtCore.QPoint) -> None:
        item = self.tree.itemAt(pos)
        if item is not None:
            self.tree.setCurrentItem(item)
        menu = self.context_menu()
        menu.popup(self.tree.viewport().mapToGlobal(pos))
        menu.aboutToHide.connect(menu.deleteLater)

    def _copy_clicked(self) -> None:
        rel = self.selected_rel()
        if rel is None or self.lab is None:
            return
        target = self.lab / rel
        if target.exists():
            answer = QtWidgets.QMessageBox.question(
                self, "Replace file?", f"The lab already has {rel}. Replace it with this output?",
                QtWidgets.QMessageBox.Yes | QtWidgets.QMessageBox.Cancel, QtWidgets.QMessageBox.Cancel)
            if answer != QtWidgets.QMessageBox.Yes:
                return
        self.copy_into_lab(rel, overwrite=True)

    def copy_into_lab(self, rel: str, overwrite: bool = False) -> Path | None:
        if self.lab is None or self.root is None:
            return None
        src, dst = self.root / rel, self.lab / rel
        if dst.exists() and not overwrite:
            return None
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
        except OSError as exc:
            self.bar.show_message(f"{rel} was not copied into the lab",
                                  f"{exc.strerror or exc}. Check that the lab folder is writable.", "error")
            return None
        self.bar.show_message(f"Copied {rel} into the lab", str(dst), "success")
        self.copiedIntoLab.emit(rel)
        return dst


class _Item(QtWidgets.QTreeWidgetItem):
    """Sorts size and time columns by value, folders first."""

    def __lt__(self, other: QtWidgets.QTreeWidgetItem) -> bool:
        tree = self.treeWidget()
        col = tree.sortColumn() if tree is not None else 0
        if col in (1, 2):
            a, b = self.data(col, Qt.UserRole), other.data(col, Qt.UserRole)
            if a is not None and b is not None:
                return a < b
        return self.text(0).lower() < other.text(0).lower()
