"""Settings dialog (image aliases, stop grace period, theme, ...) and themes."""

from __future__ import annotations

from mldesk.engine import UserError
from mldesk.engine.facade import DEFAULT_IMAGE_ALIASES, Engine
from mldesk.ui.qt import QtGui, QtWidgets, Qt

THEMES = ("system", "light", "dark")
_SYSTEM_PALETTE: QtGui.QPalette | None = None
_SYSTEM_STYLE: str | None = None


def _dark_palette() -> QtGui.QPalette:
    p = QtGui.QPalette()
    c = QtGui.QColor
    roles = {
        QtGui.QPalette.Window: c("#24272d"),
        QtGui.QPalette.WindowText: c("#e3e6eb"),
        QtGui.QPalette.Base: c("#1c1e23"),
        QtGui.QPalette.AlternateBase: c("#23262c"),
        QtGui.QPalette.ToolTipBase: c("#2d3139"),
        QtGui.QPalette.ToolTipText: c("#e3e6eb"),
        QtGui.QPalette.PlaceholderText: c("#8b919b"),
        QtGui.QPalette.Text: c("#e3e6eb"),
        QtGui.QPalette.Button: c("#2d3139"),
        QtGui.QPalette.ButtonText: c("#e3e6eb"),
        QtGui.QPalette.BrightText: c("#ff6b6b"),
        QtGui.QPalette.Light: c("#3a3f48"),
        QtGui.QPalette.Midlight: c("#32363e"),
        QtGui.QPalette.Mid: c("#3b4049"),
        QtGui.QPalette.Dark: c("#15171a"),
        QtGui.QPalette.Shadow: c("#0b0c0e"),
        QtGui.QPalette.Highlight: c("#3d7be0"),
        QtGui.QPalette.HighlightedText: c("#ffffff"),
        QtGui.QPalette.Link: c("#7ab0ff"),
        QtGui.QPalette.LinkVisited: c("#b48cf2"),
    }
    for role, color in roles.items():
        p.setColor(role, color)
    for role in (QtGui.QPalette.Text, QtGui.QPalette.ButtonText, QtGui.QPalette.WindowText):
        p.setColor(QtGui.QPalette.Disabled, role, c("#6c727c"))
    return p


def _light_palette() -> QtGui.QPalette:
    p = QtWidgets.QStyleFactory.create("Fusion").standardPalette()
    p.setColor(QtGui.QPalette.Window, QtGui.QColor("#f3f4f6"))
    p.setColor(QtGui.QPalette.Base, QtGui.QColor("#ffffff"))
    p.setColor(QtGui.QPalette.AlternateBase, QtGui.QColor("#f6f7f9"))
    p.setColor(QtGui.QPalette.Button, QtGui.QColor("#f7f8fa"))
    p.setColor(QtGui.QPalette.Highlight, QtGui.QColor("#2f6fdb"))
    p.setColor(QtGui.QPalette.PlaceholderText, QtGui.QColor("#7a808a"))
    p.setColor(QtGui.QPalette.Mid, QtGui.QColor("#c9cdd3"))
    return p


def apply_theme(theme: str) -> None:
    """``system`` (the desktop's look), ``light`` or ``dark`` (Fusion, our palettes)."""
    global _SYSTEM_PALETTE, _SYSTEM_STYLE
    app = QtWidgets.QApplication.instance()
    if app is None:
        return
    if _SYSTEM_PALETTE is None:
        _SYSTEM_PALETTE = QtGui.QPalette(app.palette())
        _SYSTEM_STYLE = app.style().name()
    hints = QtGui.QGuiApplication.styleHints()
    scheme = getattr(Qt, "ColorScheme", None)
    if theme == "dark":
        app.setStyle("Fusion")
        if scheme is not None and hasattr(hints, "setColorScheme"):
            hints.setColorScheme(scheme.Dark)
        app.setPalette(_dark_palette())
    elif theme == "light":
        app.setStyle("Fusion")
        if scheme is not None and hasattr(hints, "setColorScheme"):
            hints.setColorScheme(scheme.Light)
        app.setPalette(_light_palette())
    else:
        if scheme is not None and hasattr(hints, "unsetColorScheme"):
            hints.unsetColorScheme()
        if _SYSTEM_STYLE:
            app.setStyle(_SYSTEM_STYLE)
        app.setPalette(_SYSTEM_PALETTE)


class SettingsDialog(QtWidgets.QDialog):
    """Edits the engine's settings; Apply/OK write them to the store."""

    def __init__(self, engine: Engine, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("settingsDialog")
        self.setWindowTitle("Settings")
        self.setMinimumSize(640, 480)
        self.engine = engine

        # -- images
        self.aliases = QtWidgets.QTableWidget(0, 2, self)
        self.aliases.setObjectName("imageAliases")
        self.aliases.setHorizontalHeaderLabels(["dockerImageId in ml.yaml", "Docker image"])
        self.aliases.verticalHeader().hide()
        self.aliases.horizontalHeader().setSectionResizeMode(0, QtWidgets.QHeaderView.Interactive)
        self.aliases.horizontalHeader().setSectionResizeMode(1, QtWidgets.QHeaderView.Stretch)
        self.aliases.horizontalHeader().resizeSection(0, 250)
        self.aliases.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectRows)
        self.aliases.verticalHeader().setDefaultSectionSize(28)
        add = QtWidgets.QPushButton("Add", self)
        add.clicked.connect(self._add_alias)
        remove = QtWidgets.QPushButton("Remove", self)
        remove.clicked.connect(self._remove_alias)
        defaults = QtWidgets.QPushButton("Restore defaults", self)
        defaults.clicked.connect(lambda: self._fill_aliases(DEFAULT_IMAGE_ALIASES))
        row = QtWidgets.QHBoxLayout()
        row.addWidget(add)
        row.addWidget(remove)
        row.addStretch(1)
        row.addWidget(defaults)
        images = QtWidgets.QWidget(self)
        il = QtWidgets.QVBoxLayout(images)
        note = QtWidgets.QLabel(
            "A lab's <code>dockerImageId</code> is looked up here; anything not listed is used as a "
            "Docker image reference as it is.", images)
        note.setWordWrap(True)
        il.addWidget(note)
        il.addWidget(self.aliases, 1)
        il.addLayout(row)

        # -- executions
        self.grace = QtWidgets.QDoubleSpinBox(self)
        self.grace.setObjectName("stopGrace")
        self.grace.setRange(0, 3600)
        self.grace.setDecimals(1)
        self.grace.setSuffix(" s")
        self.grace.setToolTip("Time between SIGTERM and SIGKILL when you stop an execution")
        self.network = QtWidgets.QComboBox(self)
        self.network.addItems(["bridge", "none", "host"])
        self.parallel = QtWidgets.QSpinBox(self)
        self.parallel.setRange(0, 1000)
        self.parallel.setSpecialValueText("no limit")
        self.undo = QtWidgets.QDoubleSpinBox(self)
        self.undo.setRange(1, 60)
        self.undo.setDecimals(0)
        self.undo.setSuffix(" s")
        self.keep = QtWidgets.QCheckBox("Keep each execution's workspace folder after it ends", self)
        runs = QtWidgets.QWidget(self)
        form = QtWidgets.QFormLayout(runs)
        form.setFieldGrowthPolicy(QtWidgets.QFormLayout.FieldsStayAtSizeHint)
        form.addRow("Stop grace period", self.grace)
        form.addRow("", self._hint("Stop sends SIGTERM, so a script can save a checkpoint, then SIGKILL after this."))
        form.addRow("Container network", self.network)
        form.addRow("Parallel executions", self.parallel)
        form.addRow("", self._hint("More executions wait as \u201cqueued\u201d."))
        form.addRow("Undo remove for", self.undo)
        form.addRow("", self.keep)

        # -- appearance
        self.theme = QtWidgets.QComboBox(self)
        self.theme.setObjectName("themeChooser")
        self.theme.addItem("System", "system")
        self.theme.addItem("Light", "light")
        self.theme.addItem("Dark", "dark")
        look = QtWidgets.QWidget(self)
        lf = QtWidgets.QFormLayout(look)
        lf.setFieldGrowthPolicy(QtWidgets.QFormLayout.FieldsStayAtSizeHint)
        lf.addRow("Theme", self.theme)

        self.tabs = QtWidgets.QTabWidget(self)
        self.tabs.addTab(images, "Images")
        self.tabs.addTab(runs, "Executions")
        self.tabs.addTab(look, "Appearance")
        self.error = QtWidgets.QLabel(self)
        self.error.setStyleSheet("color: #c62828;")
        self.error.setWordWrap(True)
        self.error.hide()
        self.buttons = QtWidgets.QDialogButtonBox(
            QtWidgets.QDialogButtonBox.Ok | QtWidgets.QDialogButtonBox.Cancel | QtWidgets.QDialogButtonBox.Apply, self)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.buttons.button(QtWidgets.QDialogButtonBox.Apply).clicked.connect(self.apply)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(self.error)
        layout.addWidget(self.buttons)
        self.load()

    def show_tab(self, name: str) -> None:
        """Bring a tab forward by its name: "images", "executions" or "appearance"."""
        for i in range(self.tabs.count()):
            if self.tabs.tabText(i).lower() == name.lower():
                self.tabs.setCurrentIndex(i)

    def _hint(self, text: str) -> QtWidgets.QLabel:
        label = QtWidgets.QLabel(text, self)
        label.setForegroundRole(QtGui.QPalette.PlaceholderText)
        return label

    # -- aliases ------------------------------------------------------------------
    def _fill_aliases(self, aliases: dict) -> None:
        self.aliases.setRowCount(0)
        for alias, image in aliases.items():
            self._append_alias(alias, image)

    def _append_alias(self, alias: str = "", image: str = "") -> int:
        row = self.aliases.rowCount()
        self.aliases.insertRow(row)
        self.aliases.setItem(row, 0, QtWidgets.QTableWidgetItem(alias))
        self.aliases.setItem(row, 1, QtWidgets.QTableWidgetItem(image))
        return row

    def _add_alias(self) -> None:
        row = self._append_alias()
        self.aliases.setCurrentCell(row, 0)
        self.aliases.editItem(self.aliases.item(row, 0))

    def _remove_alias(self) -> None:
        rows = sorted({i.row() for i in self.aliases.selectedIndexes()}, reverse=True)
        for row in rows:
            self.aliases.removeRow(row)

    def alias_table(self) -> dict[str, str]:
        out = {}
        for row in range(self.aliases.rowCount()):
            a = (self.aliases.item(row, 0).text() if self.aliases.item(row, 0) else "").strip()
            b = (self.aliases.item(row, 1).text() if self.aliases.item(row, 1) else "").strip()
            if a and b:
                out[a] = b
        return out

    # -- load / apply -----------------------------------------------------------------
    def load(self) -> None:
        e = self.engine
        self._fill_aliases(e.setting("image_aliases") or {})
        self.grace.setValue(float(e.setting("stop_grace") or 0))
        self.network.setCurrentText(e.setting("local_network") or "bridge")
        self.parallel.setValue(int(e.setting("local_max_parallel") or 0))
        self.undo.setValue(float(e.setting("undo_seconds") or 5))
        self.keep.setChecked(bool(e.setting("keep_workspace")))
        i = self.theme.findData(e.setting("theme") or "system")
        self.theme.setCurrentIndex(max(0, i))

    def values(self) -> dict:
        return {
            "image_aliases": self.alias_table(),
            "stop_grace": float(self.grace.value()),
            "local_network": self.network.currentText(),
            "local_max_parallel": int(self.parallel.value()),
            "undo_seconds": float(self.undo.value()),
            "keep_workspace": self.keep.isChecked(),
            "theme": self.theme.currentData(),
        }

    def apply(self) -> bool:
        try:
            for key, value in self.values().items():
                if self.engine.setting(key) != value:
                    self.engine.set_setting(key, value)
        except (UserError, OSError) as exc:
            self.error.setText(f"Settings were not saved: {exc}")
            self.error.show()
            return False
        self.error.hide()
        apply_theme(self.theme.currentData())
        return True

    def accept(self) -> None:
        if self.apply():
            super().accept()


def about_text() -> str:
    import mldesk
    from mldesk.ui.qt import BINDING_VERSION, QT_VERSION

    return (
        f"<h3>mldesk {mldesk.__version__}</h3>"
        "<p>Run machine-learning experiments \u2014 MachineLabs-style executions \u2014 on your own "
        "hardware: Docker, plain Python, or GPU servers over SSH.</p>"
        f"<p style='color:gray'>Qt {QT_VERSION} \u00b7 PySide6 {BINDING_VERSION}</p>"
    )


__all__ = ["SettingsDialog", "apply_theme", "about_text", "THEMES"]
