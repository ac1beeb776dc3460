"""The welcome screen (no lab open) and the New lab dialog."""

from __future__ import annotations

from pathlib import Path

import mldesk
from mldesk.engine.labs import TEMPLATES
from mldesk.ui.qt import QtCore, QtGui, QtWidgets, Qt, Signal


class NewLabDialog(QtWidgets.QDialog):
    """Template, parent folder and name of a new lab."""

    def __init__(self, parent: QtWidgets.QWidget | None = None, folder: Path | None = None,
                 template: str = "xor"):
        super().__init__(parent)
        self.setObjectName("newLabDialog")
        self.setWindowTitle("New lab")
        self.setMinimumWidth(560)
        self.templates = QtWidgets.QListWidget(self)
        self.templates.setObjectName("templateList")
        self.templates.setSpacing(2)
        for name, description in TEMPLATES.items():
            item = QtWidgets.QListWidgetItem(f"{name}\n{description}")
            item.setData(Qt.UserRole, name)
            item.setSizeHint(QtCore.QSize(100, 48))
            self.templates.addItem(item)
            if name == template:
                self.templates.setCurrentItem(item)
        self.templates.setFixedHeight(48 * len(TEMPLATES) + 12)
        self.name = QtWidgets.QLineEdit(self)
        self.name.setObjectName("labName")
        self.name.setPlaceholderText("my-experiment")
        self.folder = QtWidgets.QLineEdit(str(folder or Path.home() / "mldesk-labs"), self)
        self.folder.setObjectName("labFolder")
        browse = QtWidgets.QPushButton("Choose\u2026", self)
        browse.clicked.connect(self._browse)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.folder, 1)
        row.addWidget(browse)
        self.where = QtWidgets.QLabel(self)
        self.where.setForegroundRole(QtGui.QPalette.PlaceholderText)
        self.where.setWordWrap(True)
        form = QtWidgets.QFormLayout()
        form.addRow("Template", self.templates)
        form.addRow("Name", self.name)
        form.addRow("In folder", row)
        form.addRow("", self.where)
        self.buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.Cancel, self)
        self.create_button = self.buttons.addButton("Create lab", QtWidgets.QDialogButtonBox.AcceptRole)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.buttons)
        self.name.textChanged.connect(self._update)
        self.folder.textChanged.connect(self._update)
        self.name.setText(self._free_name())
        self._update()

    def _free_name(self) -> str:
        base = Path(self.folder.text()).expanduser()
        for i in range(1, 1000):
            name = "my-lab" if i == 1 else f"my-lab-{i}"
            if not (base / name).exists():
                return name
        return "my-lab"

    def _browse(self) -> None:
        path = QtWidgets.QFileDialog.getExistingDirectory(self, "Folder for the new lab", self.folder.text())
        if path:
            self.folder.setText(path)

    def template(self) -> str:
        item = self.templates.currentItem()
        return item.data(Qt.UserRole) if item else "empty"

    def path(self) -> Path:
        return Path(self.folder.text()).expanduser() / self.name.text().strip()

    def problem(self) -> str:
        name = self.name.text().strip()
        if not name:
            return "Give the lab a name."
        if "/" in name or "\\" in name or name in (".", ".."):
            return "The name is a folder name: no slashes."
        path = self.path()
        if path.exists() and any(path.iterdir()):
            return f"{path} already exists and is not empty."
        return ""

    def _update(self) -> None:
        problem = self.problem()
        self.where.setText(problem or f"Creates {self.path()}")
        self.create_button.setEnabled(not problem)


class _RecentDelegate(QtWidgets.QStyledItemDelegate):
    """Lab name (bold) over its folder (muted)."""

    def sizeHint(self, option, index) -> QtCore.QSize:
        return QtCore.QSize(200, option.fontMetrics.height() * 2 + 22)

    def paint(self, p: QtGui.QPainter, option, index) -> None:
        p.save()
        p.setRenderHint(QtGui.QPainter.Antialiasing)
        pal = option.palette
        r = option.rect.adjusted(0, 1, 0, -1)
        if option.state & (QtWidgets.QStyle.State_MouseOver | QtWidgets.QStyle.State_Selected):
            bg = QtGui.QColor(pal.color(QtGui.QPalette.Highlight))
            bg.setAlpha(28)
            p.setPen(Qt.NoPen)
            p.setBrush(bg)
            p.drawRoundedRect(r, 6, 6)
        name, path, missing = index.data(Qt.UserRole + 1) or ("", "", False)
        bold = QtGui.QFont(option.font)
        bold.setWeight(QtGui.QFont.DemiBold)
        fm = option.fontMetrics
        text_r = r.adjusted(12, 8, -12, -8)
        p.setFont(bold)
        p.setPen(pal.color(QtGui.QPalette.PlaceholderText) if missing else pal.color(QtGui.QPalette.Text))
        p.drawText(text_r.adjusted(0, 0, 0, -fm.height()), Qt.AlignLeft | Qt.AlignTop,
                   name + ("  (missing)" if missing else ""))
        p.setFont(option.font)
        p.setPen(pal.color(QtGui.QPalette.PlaceholderText))
        p.drawText(text_r.adjusted(0, fm.height() + 2, 0, 0), Qt.AlignLeft | Qt.AlignTop,
                   fm.elidedText(path, Qt.ElideMiddle, text_r.width()))
        p.restore()


class _CardButton(QtWidgets.QPushButton):
    """A large button with a bold title and a muted line under it."""

    def __init__(self, title: str, text: str, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setMinimumHeight(68)
        self.setCursor(Qt.PointingHandCursor)
        self.setSizePolicy(QtWidgets.QSizePolicy.Expanding, QtWidgets.QSizePolicy.Fixed)
        head = QtWidgets.QLabel(title, self)
        f = head.font()
        f.setWeight(QtGui.QFont.DemiBold)
        f.setPointSizeF(f.pointSizeF() * 1.12)
        head.setFont(f)
        sub = QtWidgets.QLabel(text, self)
        sub.setForegroundRole(QtGui.QPalette.PlaceholderText)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(18, 10, 18, 10)
        lay.setSpacing(3)
        lay.addWidget(head)
        lay.addWidget(sub)
        for label in (head, sub):
            label.setAttribute(Qt.WA_TransparentForMouseEvents)

    def sizeHint(self) -> QtCore.QSize:
        return self.layout().sizeHint().expandedTo(QtCore.QSize(220, 68))


class WelcomePage(QtWidgets.QWidget):
    """Shown when no lab is open."""

    newLabRequested = Signal()
    openLabRequested = Signal()
    recentLabRequested = Signal(str)

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("welcomePage")
        title = QtWidgets.QLabel("mldesk", self)
        font = title.font()
        font.setPointSizeF(font.pointSizeF() * 2.6)
        font.setWeight(QtGui.QFont.Bold)
        title.setFont(font)
        subtitle = QtWidgets.QLabel(
            "Edit a lab, press Run, and watch your experiments \u2014 on Docker or plain Python, "
            "on this computer.", self)
        subtitle.setWordWrap(True)
        subtitle.setForegroundRole(QtGui.QPalette.PlaceholderText)
        sub_font = subtitle.font()
        sub_font.setPointSizeF(sub_font.pointSizeF() * 1.1)
        subtitle.setFont(sub_font)

        self.new_button = self._big_button("New lab from template\u2026",
                                           "Start from an empty lab or a runnable example", "newLabButton")
        self.new_button.clicked.connect(self.newLabRequested)
        self.open_button = self._big_button("Open lab\u2026", "A folder with main.py and ml.yaml", "openLabButton")
        self.open_button.clicked.connect(self.openLabRequested)

        recent_title = QtWidgets.QLabel("Recent labs", self)
        rf = recent_title.font()
        rf.setWeight(QtGui.QFont.DemiBold)
        recent_title.setFont(rf)
        self.recent = QtWidgets.QListWidget(self)
        self.recent.setObjectName("recentLabs")
        self.recent.setFrameShape(QtWidgets.QFrame.NoFrame)
        self.recent.setItemDelegate(_RecentDelegate(self.recent))
        self.recent.setMouseTracking(True)
        self.recent.viewport().setAttribute(Qt.WA_Hover, True)
        self.recent.setStyleSheet("QListWidget#recentLabs { background: transparent; }")
        self.recent.setVerticalScrollBarPolicy(Qt.ScrollBarAsNeeded)
        self.recent.itemActivated.connect(lambda item: self.recentLabRequested.emit(item.data(Qt.UserRole)))
        self.recent.itemClicked.connect(lambda item: self.recentLabRequested.emit(item.data(Qt.UserRole)))
        self.recent.setCursor(Qt.PointingHandCursor)
        self.no_recent = QtWidgets.QLabel("Labs you open appear here.", self)
        self.no_recent.setForegroundRole(QtGui.QPalette.PlaceholderText)

        version = QtWidgets.QLabel(f"version {mldesk.__version__}", self)
        version.setForegroundRole(QtGui.QPalette.PlaceholderText)

        column = QtWidgets.QVBoxLayout()
        column.setSpacing(10)
        column.addWidget(title)
        column.addWidget(subtitle)
        column.addSpacing(22)
        buttons = QtWidgets.QHBoxLayout()
        buttons.setSpacing(12)
        buttons.addWidget(self.new_button)
        buttons.addWidget(self.open_button)
        column.addLayout(buttons)
        column.addSpacing(26)
        column.addWidget(recent_title)
        column.addWidget(self.recent)
        column.addWidget(self.no_recent)
        column.addStretch(1)
        column.addWidget(version)
        holder = QtWidgets.QWidget(self)
        holder.setMaximumWidth(720)
        holder.setLayout(column)
        outer = QtWidgets.QHBoxLayout(self)
        outer.setContentsMargins(40, 56, 40, 28)
        outer.addStretch(1)
        outer.addWidget(holder, 4)
        outer.addStretch(1)

    def _big_button(self, title: str, text: str, name: str) -> QtWidgets.QPushButton:
        btn = _CardButton(title, text, self)
        btn.setObjectName(name)
        btn.setAccessibleName(title)
        return btn

    def set_recent(self, labs: list[str]) -> None:
        self.recent.clear()
        home = str(Path.home())
        for lab in labs:
            shown = "~" + lab[len(home):] if lab.startswith(home + "/") else lab
            item = QtWidgets.QListWidgetItem(Path(lab).name)
            item.setData(Qt.UserRole, lab)
            item.setData(Qt.UserRole + 1, (Path(lab).name, shown, not Path(lab).is_dir()))
            item.setToolTip(lab)
            self.recent.addItem(item)
        row_h = self.recent.sizeHintForRow(0) if labs else 0
        self.recent.setFixedHeight(min(len(labs), 8) * row_h + 4)
        self.recent.setVisible(bool(labs))
        self.no_recent.setVisible(not labs)


__all__ = ["WelcomePage", "NewLabDialog"]
