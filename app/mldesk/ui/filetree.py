"""The lab's file tree, or a snapshot's (read-only) files."""

from __future__ import annotations

from pathlib import Path

from mldesk.ui.qt import QtCore, QtGui, QtWidgets, Qt, Signal

PathRole = Qt.UserRole + 1
HIDDEN_NAMES = {"__pycache__", ".git", ".venv", ".mypy_cache", ".pytest_cache", ".ipynb_checkpoints"}


class _LabFilter(QtCore.QSortFilterProxyModel):
    """Hides caches and dot folders; keeps folders first, then names A-Z."""

    def __init__(self, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.root_path = ""

    def filterAcceptsRow(self, row: int, parent: QtCore.QModelIndex) -> bool:
        src = self.sourceModel()
        idx = src.index(row, 0, parent)
        name = src.fileName(idx)
        path = src.filePath(idx)
        if not self.root_path or not path.startswith(self.root_path + "/"):
            return True  # the lab folder itself and its ancestors
        return name not in HIDDEN_NAMES and not name.startswith(".")

    def lessThan(self, left: QtCore.QModelIndex, right: QtCore.QModelIndex) -> bool:
        src = self.sourceModel()
        ld, rd = src.isDir(left), src.isDir(right)
        if ld != rd:
            return ld
        return src.fileName(left).lower() < src.fileName(right).lower()


class _Icons(QtGui.QAbstractFileIconProvider):
    """The style's folder and file icons (the desktop theme may have none)."""

    def __init__(self):
        super().__init__()
        style = QtWidgets.QApplication.style()
        self.folder = style.standardIcon(QtWidgets.QStyle.SP_DirIcon)
        self.file = style.standardIcon(QtWidgets.QStyle.SP_FileIcon)

    def icon(self, what):
        if isinstance(what, QtCore.QFileInfo):
            return self.folder if what.isDir() else self.file
        return self.folder if what == QtGui.QAbstractFileIconProvider.IconType.Folder else self.file


class FileTree(QtWidgets.QTreeView):
    """objectName ``fileTree``. ``fileActivated(rel_path)`` in both modes."""

    fileActivated = Signal(str)
    newFileRequested = Signal()

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("fileTree")
        self.setAccessibleName("Lab files")
        self.setHeaderHidden(True)
        self.setFrameShape(QtWidgets.QFrame.NoFrame)
        self.setUniformRowHeights(True)
        self.setAnimated(False)
        self.setIndentation(14)
        self.setContextMenuPolicy(Qt.CustomContextMenu)
        self.customContextMenuRequested.connect(self._menu)
        self.activated.connect(self._on_activated)
        self.clicked.connect(self._on_activated)
        self.lab: Path | None = None
        self.snapshot_files: dict[str, list] | None = None
        self._fs: QtWidgets.QFileSystemModel | None = None
        self._proxy: _LabFilter | None = None
        self._snap_model = QtGui.QStandardItemModel(self)
        self._icons = _Icons()
        self.setStyleSheet("QTreeView#fileTree::item { padding: 2px 0; }")

    # -- modes ---------------------------------------------------------------------
    def show_lab(self, lab: Path | str) -> None:
        self.lab = Path(lab)
        self.snapshot_files = None
        if self._fs is None:
            self._fs = QtWidgets.QFileSystemModel(self)
            self._fs.setReadOnly(True)
            self._fs.setIconProvider(self._icons)
            self._fs.setFilter(QtCore.QDir.AllDirs | QtCore.QDir.Files | QtCore.QDir.NoDotAndDotDot
                               | QtCore.QDir.Hidden)
            self._proxy = _LabFilter(self)
            self._proxy.setSourceModel(self._fs)
            self._proxy.setDynamicSortFilter(True)
        self._proxy.root_path = str(self.lab)
        root = self._fs.setRootPath(str(self.lab))
        self.setModel(self._proxy)
        self.setRootIndex(self._proxy.mapFromSource(root))
        self.sortByColumn(0, Qt.AscendingOrder)
        self.setSortingEnabled(True)
        for col in (1, 2, 3):
            self.hideColumn(col)

    def show_snapshot(self, files: dict[str, list]) -> None:
        """A snapshot manifest ``{rel path: entry}`` as a tree."""
        self.snapshot_files = files
        self.setSortingEnabled(False)
        model = self._snap_model
        model.clear()
        folders: dict[str, QtGui.QStandardItem] = {"": model.invisibleRootItem()}
        folder_icon, file_icon = self._icons.folder, self._icons.file

        def folder(rel: str) -> QtGui.QStandardItem:
            if rel in folders:
                return folders[rel]
            parent_rel, _, name = rel.rpartition("/")
            item = QtGui.QStandardItem(folder_icon, name)
            item.setEditable(False)
            item.setData("", PathRole)
            folder(parent_rel).appendRow(item)
            folders[rel] = item
            return item

        def order(rel: str) -> list:  # folders first at every level, then A-Z
            parts = rel.lower().split("/")
            return [(0, part) for part in parts[:-1]] + [(1, parts[-1])]

        for rel in sorted(files, key=order):
            parent_rel, _, name = rel.rpartition("/")
            item = QtGui.QStandardItem(file_icon, name)
            item.setEditable(False)
            item.setData(rel, PathRole)
            if files[rel][0] == "link":
                item.setToolTip(f"symbolic link to {files[rel][1]}")
                item.setForeground(self.palette().color(QtGui.QPalette.PlaceholderText))
            folder(parent_rel).appendRow(item)
        self.setModel(model)
        self.setRootIndex(QtCore.QModelIndex())
        self.expandAll()

    def is_snapshot(self) -> bool:
        return self.snapshot_files is not None

    # -- selection -------------------------------------------------------------------
    def rel_path(self, index: QtCore.QModelIndex) -> str | None:
        if not index.isValid():
            return None
        if self.is_snapshot():
            rel = index.data(PathRole)
            return rel or None
        src = self._proxy.mapToSource(index)
        if self._fs.isDir(src):
            return None
        try:
            return str(Path(self._fs.filePath(src)).relative_to(self.lab))
        except ValueError:
            return None

    def select_path(self, rel: str) -> None:
        if self.is_snapshot():
            matches = self._snap_model.match(self._snap_model.index(0, 0), PathRole, rel, 1,
                                             Qt.MatchExactly | Qt.MatchRecursive)
            if matches:
                self.setCurrentIndex(matches[0])
        elif self._fs is not None and self.lab is not None:
            src = self._fs.index(str(self.lab / rel))
            if src.isValid():
                self.setCurrentIndex(self._proxy.mapFromSource(src))

    def _on_activated(self, index: QtCore.QModelIndex) -> None:
        rel = self.rel_path(index)
        if rel:
            self.fileActivated.emit(rel)

    def _menu(self, pos: QtCore.QPoint) -> None:
        if self.is_snapshot() or self.lab is None:
            return
        menu = QtWidgets.QMenu(self)
        menu.addAction("New file\u2026", self.newFileRequested.emit)
        menu.addAction("Open lab folder", lambda: QtGui.QDesktopServices.openUrl(
            QtCore.QUrl.fromLocalFile(str(self.lab))))
        menu.exec(self.viewport().mapToGlobal(pos))
        menu.deleteLater()
