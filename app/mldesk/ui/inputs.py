"""The Inputs panel: the ``inputs`` of ml.yaml as a table, edited in place.

Add, edit and remove go through ``labconfig.add_inputs`` / ``replace_input`` /
``remove_input``, which keep the file's comments and order. Dropping files from a
file manager or links from a browser adds entries (local files as ``file://``
URLs). While an execution fetches its inputs, each row shows its download progress.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from urllib.parse import unquote, urlsplit

from mldesk.engine import labs as labconfig
from mldesk.engine import queries as uiquery
from mldesk.engine.facade import Engine
from mldesk.ui import fmt
from mldesk.ui.qt import QtCore, QtGui, QtWidgets, Qt, Signal
from mldesk.ui.widgets import MessageBar, is_dark

ProgressRole = Qt.UserRole + 10
COL_NAME, COL_URL, COL_CACHED, COL_SIZE, COL_PROGRESS = range(5)


def name_for_url(url: str) -> str:
    """A plain file name for ``url``: its last path segment, else its host."""
    parts = urlsplit(url)
    name = unquote(posixpath.basename(parts.path.rstrip("/")))
    name = name.replace("\\", "_").replace("/", "_").strip()
    if not name or name in (".", ".."):
        name = (parts.hostname or "download").replace(":", "_")
    return name[:200]


def unique_name(name: str, taken: set[str]) -> str:
    """``name``, or ``stem-2.ext``... when a case-insensitive twin is taken."""
    folded = {t.casefold() for t in taken}
    if name.casefold() not in folded:
        return name
    stem, dot, ext = name.partition(".") if not name.startswith(".") else (name, "", "")
    i = 2
    while True:
        candidate = f"{stem}-{i}{dot}{ext}"
        if candidate.casefold() not in folded:
            return candidate
        i += 1


def specs_from_mime(mime: QtCore.QMimeData) -> tuple[list[tuple[str, str]], list[str]]:
    """(name, url) pairs for what was dropped, and why anything was left out."""
    urls: list[QtCore.QUrl] = list(mime.urls()) if mime.hasUrls() else []
    if not urls and mime.hasText():
        for word in mime.text().split():
            url = QtCore.QUrl(word.strip())
            if url.scheme().lower() in ("http", "https", "file"):
                urls.append(url)
    out: list[tuple[str, str]] = []
    skipped: list[str] = []
    for url in urls:
        if url.isLocalFile():
            path = Path(url.toLocalFile())
            if path.is_dir():
                skipped.append(f"{path.name}: a folder cannot be an input (drop the files in it)")
                continue
            out.append((path.name, path.resolve().as_uri()))
        elif url.scheme().lower() in ("http", "https"):
            text = url.toString(QtCore.QUrl.FullyEncoded)
            out.append((name_for_url(text), text))
        else:
            skipped.append(f"{url.toString()}: only http, https and local files can be inputs")
    return out, skipped


class _ProgressDelegate(QtWidgets.QStyledItemDelegate):
    def paint(self, p: QtGui.QPainter, option, index) -> None:
        prog = index.data(ProgressRole)
        if not prog:
            super().paint(p, option, index)
            return
        self.initStyleOption(option, index)
        style = option.widget.style() if option.widget else QtWidgets.QApplication.style()
        style.drawPrimitive(QtWidgets.QStyle.PE_PanelItemViewItem, option, p, option.widget)
        p.save()
        p.setRenderHint(QtGui.QPainter.Antialiasing)
        r = option.rect.adjusted(6, 0, -6, 0)
        bar = QtCore.QRectF(r.left(), r.bottom() - 7, r.width(), 4)
        track = QtGui.QColor(option.palette.color(QtGui.QPalette.Text))
        track.setAlpha(40)
        p.setPen(Qt.NoPen)
        p.setBrush(track)
        p.drawRoundedRect(bar, 2, 2)
        frac = prog.get("fraction")
        color = QtGui.QColor("#d93b3b" if prog.get("state") == "failed" else "#2f7bea")
        if prog.get("state") in ("done", "cached"):
            color = QtGui.QColor("#2e9e4f")
            frac = 1.0
        if frac is not None:
            p.setBrush(color)
            p.drawRoundedRect(QtCore.QRectF(bar.left(), bar.top(), max(4.0, bar.width() * frac), 4), 2, 2)
        p.setPen(option.palette.color(QtGui.QPalette.Text))
        p.drawText(QtCore.QRect(r.left(), r.top(), r.width(), r.height() - 9), Qt.AlignLeft | Qt.AlignVCenter,
                   option.fontMetrics.elidedText(index.data(Qt.DisplayRole) or "", Qt.ElideRight, r.width()))
        p.restore()


class InputDialog(QtWidgets.QDialog):
    """Name + URL of one input, checked as ml.yaml would check them."""

    def __init__(self, parent: QtWidgets.QWidget | None, name: str = "", url: str = "",
                 taken: set[str] | None = None, title: str = "Add input"):
        super().__init__(parent)
        self.setWindowTitle(title)
        self.setMinimumWidth(520)
        self._taken = {t.casefold() for t in (taken or set())}
        self.name = QtWidgets.QLineEdit(name, self)
        self.name.setPlaceholderText("data.csv")
        self.url = QtWidgets.QLineEdit(url, self)
        self.url.setPlaceholderText("https://example.org/data.csv or file:///path/to/data.csv")
        browse = QtWidgets.QPushButton("Choose file\u2026", self)
        browse.clicked.connect(self._browse)
        url_row = QtWidgets.QHBoxLayout()
        url_row.addWidget(self.url, 1)
        url_row.addWidget(browse)
        self.problem = QtWidgets.QLabel(self)
        self.problem.setStyleSheet("color: #c62828;")
        self.problem.setWordWrap(True)
        form = QtWidgets.QFormLayout()
        form.addRow("URL", url_row)
        form.addRow("Name", self.name)
        hint = QtWidgets.QLabel("Saved as <code>inputs/NAME</code> before <code>main.py</code> starts.", self)
        hint.setForegroundRole(QtGui.QPalette.PlaceholderText)
        form.addRow("", hint)
        self.buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.Ok | QtWidgets.QDialogButtonBox.Cancel, self)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.problem)
        layout.addWidget(self.buttons)
        self.url.textEdited.connect(self._url_edited)
        self.name.textChanged.connect(self._check)
        self.url.textChanged.connect(self._check)
        self._name_touched = bool(name)
        self.name.textEdited.connect(lambda _t: setattr(self, "_name_touched", True))
        self._check()

    def _browse(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Choose an input file")
        if path:
            self.url.setText(Path(path).resolve().as_uri())
            self._url_edited(self.url.text())

    def _url_edited(self, text: str) -> None:
        if not self._name_touched and text.strip():
            self.name.setText(name_for_url(text.strip()))

    def problem_text(self) -> str:
        name, url = self.name.text().strip(), self.url.text().strip()
        if not url:
            return "Enter the URL to download from."
        why = labconfig.url_problem(url)  # the same check ml.yaml gets
        if why:
            return f"{why[0]}: {why[1]}."
        bad = labconfig.validate_input_name(name)
        if bad:
            return bad[0].upper() + bad[1:] + "."
        if name.casefold() in self._taken:
            return f"An input named {name} already exists; choose another name."
        return ""

    def _check(self) -> None:
        text = self.problem_text()
        # nothing typed yet: no error to show (OK stays disabled until the URL is valid)
        untouched = not self.url.text().strip() and not self.name.text().strip()
        self.problem.setText("" if untouched else text)
        self.buttons.button(QtWidgets.QDialogButtonBox.Ok).setEnabled(not text)

    def spec(self) -> labconfig.InputSpec:
        return labconfig.InputSpec(self.name.text().strip(), self.url.text().strip())


class InputsPanel(QtWidgets.QWidget):
    """objectName ``inputsPanel``."""

    #: ml.yaml was rewritten by the panel (the editor reloads it).
    configWritten = Signal()

    def __init__(self, engine: Engine, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("inputsPanel")
        self.setAccessibleName("Inputs")
        self.engine = engine
        self.lab: Path | None = None
        self.inputs: list[labconfig.InputSpec] = []
        self.progress: dict[str, dict] = {}
        self.setAcceptDrops(True)

        self.bar = MessageBar(self)
        self.table = QtWidgets.QTableWidget(0, 5, self)
        self.table.setObjectName("inputsTable")
        self.table.setHorizontalHeaderLabels(["Name", "URL", "Cached", "Size", "Download"])
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setShowGrid(False)
        self.table.setWordWrap(False)
        self.table.setFrameShape(QtWidgets.QFrame.NoFrame)
        self.table.verticalHeader().setDefaultSectionSize(30)
        self.table.setItemDelegateForColumn(COL_PROGRESS, _ProgressDelegate(self.table))
        header = self.table.horizontalHeader()
        header.setHighlightSections(False)
        header.setDefaultAlignment(Qt.AlignLeft | Qt.AlignVCenter)
        header.setSectionResizeMode(COL_NAME, QtWidgets.QHeaderView.Interactive)
        header.setSectionResizeMode(COL_URL, QtWidgets.QHeaderView.Stretch)
        header.setSectionResizeMode(COL_CACHED, QtWidgets.QHeaderView.ResizeToContents)
        header.setSectionResizeMode(COL_SIZE, QtWidgets.QHeaderView.ResizeToContents)
        header.setSectionResizeMode(COL_PROGRESS, QtWidgets.QHeaderView.Interactive)
        header.resizeSection(COL_NAME, 180)
        header.resizeSection(COL_PROGRESS, 210)
        self.table.doubleClicked.connect(lambda _i: self.edit_selected())
        self.table.itemSelectionChanged.connect(self._update_buttons)
        # drops land on the table's viewport: let them through to the panel
        self.table.setAcceptDrops(False)
        self.table.viewport().setAcceptDrops(False)

        self.add_button = QtWidgets.QPushButton("Add\u2026", self)
        self.add_button.setObjectName("addInputButton")
        self.add_button.clicked.connect(self.add_dialog)
        self.edit_button = QtWidgets.QPushButton("Edit\u2026", self)
        self.edit_button.setObjectName("editInputButton")
        self.edit_button.clicked.connect(self.edit_selected)
        self.remove_button = QtWidgets.QPushButton("Remove", self)
        self.remove_button.setObjectName("removeInputButton")
        self.remove_button.clicked.connect(self.remove_selected)
        self.hint = QtWidgets.QLabel("Drop files or links here to add inputs", self)
        self.hint.setForegroundRole(QtGui.QPalette.PlaceholderText)
        self.hint.setSizePolicy(QtWidgets.QSizePolicy.Ignored, QtWidgets.QSizePolicy.Preferred)
        self.hint.setMinimumWidth(40)
        buttons = QtWidgets.QHBoxLayout()
        buttons.setContentsMargins(8, 6, 8, 6)
        buttons.setSpacing(6)
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.edit_button)
        buttons.addWidget(self.remove_button)
        buttons.addSpacing(12)
        buttons.addWidget(self.hint, 1)

        self.empty = QtWidgets.QLabel(
            "<div style='font-size:13pt'>No inputs yet</div>"
            "<div>Drop files from your file manager or links from your browser here,<br>"
            "or click <b>Add\u2026</b>. They are downloaded into <code>inputs/</code> before "
            "<code>main.py</code> runs.</div>", self)
        self.empty.setAlignment(Qt.AlignCenter)
        self.empty.setWordWrap(True)
        self.empty.setForegroundRole(QtGui.QPalette.PlaceholderText)
        self.stack = QtWidgets.QStackedWidget(self)
        self.stack.addWidget(self.table)
        self.stack.addWidget(self.empty)

        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.bar)
        layout.addLayout(buttons)
        layout.addWidget(self.stack, 1)
        self._drag_active = False
        self._update_buttons()
        # ml.yaml edited elsewhere (another editor, git checkout...): read it again
        self._watcher = QtCore.QFileSystemWatcher(self)
        self._watcher.fileChanged.connect(lambda _p: self._reload_timer.start())
        self._watcher.directoryChanged.connect(lambda _p: self._reload_timer.start())
        self._reload_timer = QtCore.QTimer(self)
        self._reload_timer.setSingleShot(True)
        self._reload_timer.setInterval(200)
        self._reload_timer.timeout.connect(self._reload_if_changed)
        self._seen_text: str | None = None

    # -- data ----------------------------------------------------------------------
    def set_lab(self, lab: Path | str | None) -> None:
        self.lab = Path(lab) if lab else None
        self.progress = {}
        watched = self._watcher.files() + self._watcher.directories()
        if watched:
            self._watcher.removePaths(watched)
        if self.lab is not None and self.lab.is_dir():
            self._watcher.addPath(str(self.lab))
        self.reload()

    def _config_text(self) -> str | None:
        path = labconfig.find_config(self.lab) if self.lab is not None and self.lab.is_dir() else None
        if path is None:
            return None
        try:
            return path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None

    def _watch_config(self) -> None:
        config = labconfig.find_config(self.lab) if self.lab is not None and self.lab.is_dir() else None
        if config is not None and str(config) not in self._watcher.files():
            self._watcher.addPath(str(config))

    def _reload_if_changed(self) -> None:
        self._watch_config()
        if self._config_text() != self._seen_text:
            self.reload()

    def reload(self) -> None:
        """Read ml.yaml again (after an edit, here or in the editor)."""
        self.bar.hide()
        self.inputs = []
        self._seen_text = self._config_text()
        self._watch_config()
        if self.lab is not None:
            try:
                self.inputs = list(labconfig.load_lab_config(self.lab).inputs)
            except labconfig.ConfigError as exc:
                first = exc.problems[0]
                more = f" (and {len(exc.problems) - 1} more)" if len(exc.problems) > 1 else ""
                self.bar.show_message(
                    "ml.yaml has errors, so its inputs cannot be shown",
                    f"Line {first.line}: {first.message}{more}. Fix ml.yaml in the editor; "
                    "the list comes back when it is valid.", "warning")
        self._fill()

    def _fill(self) -> None:
        t = self.table
        t.setRowCount(len(self.inputs))
        for row, spec in enumerate(self.inputs):
            info = uiquery.input_cache_info(self.engine, spec.url) or {}
            if info.get("local"):
                cached = "missing" if info.get("missing") else "local file"
            else:
                cached = "\u2713 cached" if info.get("cached") else "not yet"
            shown_url = unquote(spec.url)  # decoded for reading; the tooltip has it as written
            cells = [spec.name, shown_url, cached, fmt.size(info.get("size")), ""]
            for col, text in enumerate(cells):
                item = t.item(row, col)
                if item is None:
                    item = QtWidgets.QTableWidgetItem()
                    t.setItem(row, col, item)
                item.setText(text)
                item.setToolTip({COL_NAME: text, COL_URL: spec.url}.get(col, ""))
            if info.get("missing"):
                t.item(row, COL_CACHED).setForeground(QtGui.QColor("#c62828"))
            elif info.get("cached"):
                t.item(row, COL_CACHED).setForeground(QtGui.QColor("#2e9e4f" if not is_dark(self) else "#7ed39a"))
            else:
                t.item(row, COL_CACHED).setData(Qt.ForegroundRole, None)
        self._apply_progress()
        self.stack.setCurrentWidget(self.table if self.inputs else self.empty)
        self._update_buttons()

    def names(self) -> list[str]:
        return [s.name for s in self.inputs]

    def selected(self) -> labconfig.InputSpec | None:
        rows = self.table.selectionModel().selectedRows()
        return self.inputs[rows[0].row()] if rows and rows[0].row() < len(self.inputs) else None

    def _update_buttons(self) -> None:
        has_lab = self.lab is not None
        self.add_button.setEnabled(has_lab)
        self.edit_button.setEnabled(has_lab and self.selected() is not None)
        self.remove_button.setEnabled(has_lab and self.selected() is not None)

    # -- progress ---------------------------------------------------------------------
    def set_progress(self, progress: dict[str, dict]) -> None:
        """``engine.input_progress(id)`` of the execution fetching now ({} clears)."""
        if progress == self.progress:
            return
        self.progress = dict(progress)
        self._apply_progress()

    def _apply_progress(self) -> None:
        for row, spec in enumerate(self.inputs):
            item = self.table.item(row, COL_PROGRESS)
            if item is None:
                continue
            p = self.progress.get(spec.name)
            if not p:
                item.setText("")
                item.setData(ProgressRole, None)
                continue
            state, done, total = p.get("state", ""), p.get("done") or 0, p.get("total")
            frac = (done / total) if total else None
            if state in ("done", "cached"):
                text = "cached" if state == "cached" else f"done, {fmt.size(done)}"
            elif state == "failed":
                text = "failed"
            elif state in ("connecting", "retrying"):
                text = state + "\u2026"
            else:
                parts = [f"{frac:.0%}" if frac is not None else fmt.size(done)]
                if p.get("rate"):
                    parts.append(fmt.size(p["rate"]) + "/s")
                if p.get("eta"):
                    parts.append(fmt.duration(p["eta"]) + " left")
                text = " \u00b7 ".join(parts)
            item.setText(text)
            item.setData(ProgressRole, {"state": state, "fraction": frac})

    # -- editing -------------------------------------------------------------------------
    def _write(self, fn, *args) -> bool:
        try:
            fn(self.lab, *args)
        except labconfig.ConfigError as exc:
            first = exc.problems[0]
            self.bar.show_message(
                "ml.yaml was not changed",
                f"{first.message} (line {first.line}). {first.hint[:1].upper() + first.hint[1:] if first.hint else ''}".strip(),
                "error")
            return False
        except OSError as exc:
            self.bar.show_message("ml.yaml could not be written",
                                  f"{exc.strerror or exc}. Check that the lab folder is writable.", "error")
            return False
        self.reload()
        self.configWritten.emit()
        return True

    def add_specs(self, pairs: list[tuple[str, str]], already: list[str] | None = None) -> list[str]:
        """Add (name, url) entries, renaming name clashes; a URL that is an input already
        is not added twice (it is listed in ``already``). Returns the names added."""
        if self.lab is None or not pairs:
            return []
        taken = set(self.names())
        known = {s.url: s.name for s in self.inputs}
        specs = []
        for name, url in pairs:
            if url in known:
                if already is not None:
                    already.append(f"{unquote(url)} is already the input {known[url]}")
                continue
            known[url] = name
            name = unique_name(name, taken)
            taken.add(name)
            specs.append(labconfig.InputSpec(name, url))
        if not specs:
            return []
        return [s.name for s in specs] if self._write(labconfig.add_inputs, specs) else []

    def add_dialog(self) -> None:
        if self.lab is None:
            return
        dialog = InputDialog(self, taken=set(self.names()))
        if dialog.exec() == QtWidgets.QDialog.Accepted:
            spec = dialog.spec()
            self._write(labconfig.add_inputs, [spec])

    def edit_selected(self) -> None:
        spec = self.selected()
        if spec is None:
            return
        dialog = InputDialog(self, spec.name, spec.url, set(self.names()) - {spec.name}, "Edit input")
        if dialog.exec() == QtWidgets.QDialog.Accepted:
            self._write(labconfig.replace_input, spec.name, dialog.spec())

    def remove_selected(self) -> None:
        spec = self.selected()
        if spec is not None:
            self._write(labconfig.remove_input, spec.name)

    # -- drag and drop ---------------------------------------------------------------------
    def _acceptable(self, mime: QtCore.QMimeData) -> bool:
        if self.lab is None:
            return False
        return bool(specs_from_mime(mime)[0])

    def dragEnterEvent(self, event: QtGui.QDragEnterEvent) -> None:
        if self._acceptable(event.mimeData()):
            event.acceptProposedAction()
            self._set_drag(True)
        else:
            event.ignore()

    def dragMoveEvent(self, event: QtGui.QDragMoveEvent) -> None:
        if self._acceptable(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragLeaveEvent(self, event) -> None:
        self._set_drag(False)

    def dropEvent(self, event: QtGui.QDropEvent) -> None:
        self._set_drag(False)
        added = self.drop(event.mimeData())
        if added:
            event.acceptProposedAction()
        else:
            event.ignore()

    def drop(self, mime: QtCore.QMimeData) -> list[str]:
        """Add what ``mime`` holds (file URLs, http links); returns the names added."""
        pairs, skipped = specs_from_mime(mime)
        already: list[str] = []
        added = self.add_specs(pairs, already)
        if already and not added and not skipped:
            self.bar.show_message("Nothing was added", "; ".join(already) + ".", "info", timeout=10)
        elif already:
            skipped = skipped + already
        if skipped and not self.bar.isVisible():
            self.bar.show_message("Some items were not added", "; ".join(skipped), "warning")
        elif added:
            self.bar.show_message(
                f"Added {len(added)} input{'s' if len(added) != 1 else ''} to ml.yaml",
                ", ".join(added), "success")
        return added

    def _set_drag(self, on: bool) -> None:
        self._drag_active = on
        if on:
            color = self.palette().color(QtGui.QPalette.Highlight).name()
            self.stack.setStyleSheet(f"QStackedWidget {{ border: 2px dashed {color}; border-radius: 6px; }}")
            self.hint.setText("Release to add to ml.yaml")
        else:
            self.stack.setStyleSheet("")
            self.hint.setText("Drop files or links here to add inputs")
