"""The Hosts dialog: add, edit, remove and test SSH host profiles.

``HostsDialog(engine, parent=None)`` lists the host profiles (``engine.profiles``); it emits
``hostsChanged`` whenever one is added, edited or removed (the main window refills its
host chooser). Testing a host is an async slot: it connects on a worker thread (the window stays live) and
reports OS, Python, Docker, GPUs and free disk. An unknown host key is shown with its
SHA256 fingerprint in :class:`HostKeyDialog` and remembered only if the user accepts
it; a changed key is refused with a warning naming both fingerprints. Passwords and
key passphrases are asked for in a password field and kept in the OS keyring (the
dialog says so when there is no keyring).
"""

from __future__ import annotations

import threading
from typing import Any

from mldesk.engine import hosts

from mldesk.ui.aio import Jobs
from mldesk.ui.qt import QtCore, QtGui, QtWidgets, Qt, Signal

COLUMNS = ("Name", "Address", "Runtime", "GPUs", "Work folder")


class HostKeyDialog(QtWidgets.QDialog):
    """Asks whether to trust an unknown host key; shows its fingerprint."""

    def __init__(self, label: str, key_type: str, fingerprint: str, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Unknown host key")
        self.fingerprint = fingerprint
        lay = QtWidgets.QVBoxLayout(self)
        text = QtWidgets.QLabel(
            f"<p>mldesk has never connected to <b>{_esc(label)}</b> before: its host key is not in "
            "~/.ssh/known_hosts nor in mldesk's own list.</p>"
            f"<p>Its {_esc(key_type)} key fingerprint is:</p>")
        text.setWordWrap(True)
        lay.addWidget(text)
        fp = QtWidgets.QLineEdit(fingerprint)
        fp.setReadOnly(True)
        fp.setObjectName("fingerprint")
        fp.setFont(QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont))
        fp.setMinimumWidth(QtGui.QFontMetrics(fp.font()).horizontalAdvance(fingerprint) + 24)
        lay.addWidget(fp)
        self.setMinimumWidth(560)
        hint = QtWidgets.QLabel(
            "Compare it with the host's own, e.g. <tt>ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub</tt> "
            "run on the host. Accept only if they are the same: a different key may mean someone is "
            "intercepting the connection.")
        hint.setWordWrap(True)
        lay.addWidget(hint)
        buttons = QtWidgets.QDialogButtonBox()
        self.accept_button = buttons.addButton("Accept and remember", QtWidgets.QDialogButtonBox.AcceptRole)
        self.reject_button = buttons.addButton("Cancel", QtWidgets.QDialogButtonBox.RejectRole)
        self.reject_button.setDefault(True)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)


def _esc(text: str) -> str:
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))


class HostEditDialog(QtWidgets.QDialog):
    """The form for one profile; ``profile()`` is the validated result."""

    def __init__(self, profile: hosts.HostProfile | None = None, taken: set[str] | None = None, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Edit host" if profile else "Add host")
        self._taken = set(taken or ()) - ({profile.name} if profile else set())
        self._result: hosts.HostProfile | None = None
        p = profile or hosts.HostProfile(name="", host="")
        form = QtWidgets.QFormLayout()
        self.name = QtWidgets.QLineEdit(p.name)
        self.name.setPlaceholderText("gpu-box")
        self.url = QtWidgets.QLineEdit(p.url if profile else "")
        self.url.setPlaceholderText("ssh://user@host:22  (host may be an alias of ~/.ssh/config)")
        self.key = QtWidgets.QLineEdit(p.key or "")
        self.key.setPlaceholderText("default: ~/.ssh/config, ssh-agent, ~/.ssh/id_*")
        browse = QtWidgets.QPushButton("Browse…")
        browse.clicked.connect(self._browse_key)
        key_row = QtWidgets.QHBoxLayout()
        key_row.addWidget(self.key, 1)
        key_row.addWidget(browse)
        self.jump = QtWidgets.QLineEdit(p.jump or "")
        self.jump.setPlaceholderText("optional: [user@]jumphost[:port]")
        self.workdir = QtWidgets.QLineEdit(p.workdir)
        self.runtime = QtWidgets.QComboBox()
        self.runtime.addItems(list(hosts.RUNTIMES))
        self.runtime.setCurrentText(p.runtime)
        self.network = QtWidgets.QComboBox()
        self.network.addItems(list(hosts.NETWORKS))
        self.network.setCurrentText(p.network)
        self.gpus = QtWidgets.QCheckBox("Give containers the host's NVIDIA GPUs")
        self.gpus.setChecked(bool(p.gpus))
        self.grace = QtWidgets.QDoubleSpinBox()
        self.grace.setRange(0, 3600)
        self.grace.setSpecialValueText("default")
        self.grace.setSuffix(" s")
        self.grace.setValue(float(p.stop_grace or 0))
        self.parallel = QtWidgets.QSpinBox()
        self.parallel.setRange(0, 1000)
        self.parallel.setSpecialValueText("no limit")
        self.parallel.setValue(int(p.max_parallel or 0))
        self.outputs_every = QtWidgets.QDoubleSpinBox()
        self.outputs_every.setRange(0, 86400)
        self.outputs_every.setSpecialValueText("only at the end")
        self.outputs_every.setSuffix(" s")
        self.outputs_every.setValue(float(p.outputs_interval))
        self.password = QtWidgets.QCheckBox("Log in with a password (kept in the OS keyring)")
        self.password.setChecked(bool(p.password))
        self.slurm_box = self._slurm_fields(p)
        self.runtime.currentTextChanged.connect(self._runtime_changed)
        form.addRow("&Name:", self.name)
        form.addRow("&Address:", self.url)
        key_label = QtWidgets.QLabel("&Key file:")
        key_label.setBuddy(self.key)
        form.addRow(key_label, key_row)
        form.addRow("&Jump host:", self.jump)
        form.addRow("&Work folder:", self.workdir)
        form.addRow("&Runtime:", self.runtime)
        form.addRow("&Network:", self.network)
        form.addRow("", self.gpus)
        form.addRow("&Stop grace:", self.grace)
        form.addRow("&Concurrency limit:", self.parallel)
        form.addRow("&Outputs every:", self.outputs_every)
        form.addRow("", self.password)
        form.addRow(self.slurm_box)
        self._runtime_changed(self.runtime.currentText())
        self._keep = p  # fields the form does not show (python, keepalive, ...)
        self.error = QtWidgets.QLabel()
        self.error.setObjectName("error")
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #c0392b")
        self.error.hide()
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.Ok | QtWidgets.QDialogButtonBox.Cancel)
        buttons.accepted.connect(self._try_accept)
        buttons.rejected.connect(self.reject)
        lay = QtWidgets.QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.error)
        lay.addWidget(buttons)

    def _slurm_fields(self, p: hosts.HostProfile) -> QtWidgets.QGroupBox:
        """Runtime slurm: the host is a Slurm login node, each execution one batch job."""
        import shlex

        box = QtWidgets.QGroupBox("Slurm (runtime slurm: the host is a login node)")
        form = QtWidgets.QFormLayout(box)
        note = QtWidgets.QLabel("The work folder must be on a file system the compute nodes share "
                                "(Test checks it with a tiny job).")
        note.setWordWrap(True)
        self.partition = QtWidgets.QLineEdit(p.slurm_partition or "")
        self.partition.setPlaceholderText("the cluster's default")
        self.time_limit = QtWidgets.QLineEdit(p.slurm_time or "")
        self.time_limit.setPlaceholderText("e.g. 1:00:00 (default: the partition's)")
        self.cpus = QtWidgets.QSpinBox()
        self.cpus.setRange(0, 4096)
        self.cpus.setSpecialValueText("default")
        self.cpus.setValue(int(p.slurm_cpus or 0))
        self.mem = QtWidgets.QLineEdit(p.slurm_mem or "")
        self.mem.setPlaceholderText("e.g. 8G (default: the partition's)")
        self.gpus_per_job = QtWidgets.QSpinBox()
        self.gpus_per_job.setRange(0, 64)
        self.gpus_per_job.setValue(int(p.slurm_gpus))
        self.gpus_per_job.setToolTip("--gres=gpu:N for labs with hardwareType: gpu")
        self.sbatch_args = QtWidgets.QLineEdit(shlex.join(p.slurm_args))
        self.sbatch_args.setPlaceholderText("e.g. --qos=debug --account=mylab")
        self.env = QtWidgets.QLineEdit(shlex.join(f"{k}={v}" for k, v in p.env.items()))
        self.env.setPlaceholderText("NAME=VALUE ... for Slurm's commands and the job")
        form.addRow(note)
        form.addRow("&Partition:", self.partition)
        form.addRow("&Time limit:", self.time_limit)
        form.addRow("&CPUs per task:", self.cpus)
        form.addRow("&Memory:", self.mem)
        form.addRow("&GPUs per job:", self.gpus_per_job)
        form.addRow("sbatch &options:", self.sbatch_args)
        form.addRow("&Environment:", self.env)
        return box

    def _runtime_changed(self, runtime: str) -> None:
        self.slurm_box.setVisible(runtime == "slurm")

    def _slurm_values(self) -> dict:
        import shlex

        try:
            args = shlex.split(self.sbatch_args.text())
            pairs = shlex.split(self.env.text())
        except ValueError as exc:
            raise hosts.HostProfileError(f"sbatch options or environment: {exc}") from None
        env = {}
        for item in pairs:
            key, sep, value = item.partition("=")
            if not sep:
                raise hosts.HostProfileError(f"environment: write NAME=VALUE, not {item!r}")
            env[key] = value
        return dict(slurm_partition=self.partition.text().strip() or None,
                    slurm_time=self.time_limit.text().strip() or None, slurm_cpus=self.cpus.value() or None,
                    slurm_mem=self.mem.text().strip() or None, slurm_gpus=self.gpus_per_job.value(),
                    slurm_args=args, env=env)

    def _browse_key(self) -> None:
        import os

        start = self.key.text() or os.path.expanduser("~/.ssh")
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Private key file", start)
        if path:
            self.key.setText(path)

    def build(self) -> hosts.HostProfile:
        """The profile the form describes (raises HostError with every problem)."""
        import os

        name = self.name.text().strip()
        if name in self._taken:
            raise hosts.HostProfileError(f"a host named '{name}' exists already")
        key = self.key.text().strip()
        prof = hosts.HostProfile.from_url(
            name, self.url.text().strip(),
            key=os.path.abspath(os.path.expanduser(key)) if key else None,
            jump=self.jump.text().strip() or None, workdir=self.workdir.text().strip() or hosts.DEFAULT_WORKDIR,
            runtime=self.runtime.currentText(), network=self.network.currentText(), gpus=self.gpus.isChecked(),
            stop_grace=self.grace.value() or None, max_parallel=self.parallel.value(),
            outputs_interval=self.outputs_every.value(), password=self.password.isChecked(),
            python=self._keep.python, keepalive=self._keep.keepalive, connect_timeout=self._keep.connect_timeout,
            reconnect_timeout=self._keep.reconnect_timeout, description=self._keep.description,
            **self._slurm_values())
        return prof

    def _try_accept(self) -> None:
        try:
            self._result = self.build()
        except hosts.HostError as exc:
            self.error.setText(str(exc))
            self.error.show()
            return
        self.accept()

    def profile(self) -> hosts.HostProfile | None:
        return self._result


class _Worker(QtCore.QObject):
    """A password question from the host test's worker thread (queued into the GUI thread)."""

    ask_secret = Signal(str, str, object)  # kind, prompt, box (a dict with an Event)


class HostsDialog(QtWidgets.QDialog):
    hostsChanged = Signal()
    testFinished = Signal(str, bool)  # name, ok

    def __init__(self, engine, parent=None):
        super().__init__(parent)
        self.engine = engine
        self.setWindowTitle("Hosts")
        self.resize(760, 480)
        self._busy: set[str] = set()
        self._worker = _Worker(self)
        self._worker.ask_secret.connect(self._ask_secret_gui)
        # a host test may hang on the network: closing the dialog cancels it, never waits for it
        self.jobs = Jobs(self, workers=2, name="mldesk-hosts")
        self._asking: list[dict] = []  # password questions a host test waits for
        self.finished.connect(self._closed)

        self.table = QtWidgets.QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.doubleClicked.connect(lambda _index: self.edit_host())
        self.table.itemSelectionChanged.connect(self._update_buttons)

        self.add_button = QtWidgets.QPushButton("&Add…")
        self.edit_button = QtWidgets.QPushButton("&Edit…")
        self.remove_button = QtWidgets.QPushButton("&Remove")
        self.test_button = QtWidgets.QPushButton("&Test")
        self.add_button.clicked.connect(lambda: self.add_host())
        self.edit_button.clicked.connect(lambda: self.edit_host())
        self.remove_button.clicked.connect(lambda: self.remove_host())
        self.test_button.clicked.connect(lambda: self.test_host())
        side = QtWidgets.QVBoxLayout()
        for b in (self.add_button, self.edit_button, self.remove_button, self.test_button):
            side.addWidget(b)
        side.addStretch(1)

        self.report = QtWidgets.QPlainTextEdit()
        self.report.setReadOnly(True)
        self.report.setObjectName("report")
        self.report.setPlaceholderText("Select a host and press Test to check the connection.")
        self.report.setFont(QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont))
        self.report.setMaximumHeight(180)

        close = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.Close)
        close.rejected.connect(self.reject)
        top = QtWidgets.QHBoxLayout()
        top.addWidget(self.table, 1)
        top.addLayout(side)
        lay = QtWidgets.QVBoxLayout(self)
        lay.addLayout(top, 1)
        lay.addWidget(QtWidgets.QLabel("Connection test:"))
        lay.addWidget(self.report)
        lay.addWidget(close)
        self.refresh()

    # -- the list ---------------------------------------------------------------------
    def profiles(self) -> dict[str, dict[str, Any]]:
        return self.engine.profiles.profiles()

    def refresh(self, select: str | None = None) -> None:
        select = select or self.selected()
        profiles = self.profiles()
        self.table.setRowCount(len(profiles))
        for row, (name, cfg) in enumerate(sorted(profiles.items())):
            values = (name, cfg.get("url") or cfg.get("host", ""), cfg.get("runtime", ""),
                      "yes" if cfg.get("gpus") else "", cfg.get("workdir", ""))
            for col, value in enumerate(values):
                item = QtWidgets.QTableWidgetItem(str(value))
                item.setData(Qt.UserRole, name)
                self.table.setItem(row, col, item)
            if name == select:
                self.table.selectRow(row)
        self.table.resizeColumnsToContents()
        self._update_buttons()

    def selected(self) -> str | None:
        items = self.table.selectedItems() if hasattr(self, "table") else []
        return items[0].data(Qt.UserRole) if items else None

    def select(self, name: str) -> None:
        for row in range(self.table.rowCount()):
            if self.table.item(row, 0).data(Qt.UserRole) == name:
                self.table.selectRow(row)
                return

    def _update_buttons(self) -> None:
        name = self.selected()
        for b in (self.edit_button, self.remove_button):
            b.setEnabled(name is not None)
        self.test_button.setEnabled(name is not None and name not in self._busy)

    # -- add / edit / remove ------------------------------------------------------------
    def _edit_dialog(self, profile: hosts.HostProfile | None) -> HostEditDialog:
        return HostEditDialog(profile, set(self.profiles()), self)

    def add_host(self, dialog: HostEditDialog | None = None) -> str | None:
        dialog = dialog or self._edit_dialog(None)
        if dialog.exec() != QtWidgets.QDialog.Accepted or dialog.profile() is None:
            return None
        return self.save_profile(dialog.profile(), test=True)

    def save_profile(self, prof: hosts.HostProfile, old_name: str | None = None, *, test: bool = False) -> str:
        """Store ``prof`` (replacing ``old_name`` when renamed) and show it."""
        self.engine.profiles.save(prof, old_name)
        self.refresh(prof.name)
        self.hostsChanged.emit()
        if test:
            self.test_host(prof.name)
        return prof.name

    def edit_host(self, name: str | None = None, dialog: HostEditDialog | None = None) -> str | None:
        name = name or self.selected()
        cfg = self.profiles().get(name or "")
        if cfg is None:
            return None
        try:
            current = hosts.HostProfile.from_dict(cfg)
        except hosts.HostError:
            current = hosts.HostProfile(name=name, host=cfg.get("host", ""))
        dialog = dialog or self._edit_dialog(current)
        if dialog.exec() != QtWidgets.QDialog.Accepted or dialog.profile() is None:
            return None
        return self.save_profile(dialog.profile(), name)

    def confirm_remove(self, name: str) -> bool:
        answer = QtWidgets.QMessageBox.question(
            self, "Remove host", f"Remove the host {name}? Its executions stay in the list; "
            "files mldesk left on the host are not touched.")
        return answer == QtWidgets.QMessageBox.Yes

    def remove_host(self, name: str | None = None) -> bool:
        name = name or self.selected()
        if not name or not self.confirm_remove(name):
            return False
        self.engine.profiles.remove(name)
        self.refresh()
        self.hostsChanged.emit()
        return True

    # -- test ---------------------------------------------------------------------------
    def confirm_host_key(self, label: str, key_type: str, fingerprint: str) -> bool:
        """The accept dialog for an unknown key (tests replace this)."""
        return HostKeyDialog(label, key_type, fingerprint, self).exec() == QtWidgets.QDialog.Accepted

    def show_error(self, title: str, text: str) -> None:
        QtWidgets.QMessageBox.warning(self, title, text)

    def test_host(self, name: str | None = None, accept_fingerprint: str | None = None) -> None:
        name = name or self.selected()
        if not name or name in self._busy:
            return
        cfg = self.profiles().get(name)
        if cfg is None:
            return
        self._busy.add(name)
        self._update_buttons()
        self.report.setPlainText(f"connecting to {name} ({cfg.get('url', '')})…")
        self.jobs.start(self._test(name, accept_fingerprint), f"testing {name}")

    async def _test(self, name: str, accept_fingerprint: str | None) -> None:
        """The host test on a worker thread; its report (or error) is shown here."""
        try:
            report = await self.jobs.call(self.engine.profiles.test, name, accept_fingerprint=accept_fingerprint,
                                          ask_secret=self._ask_secret_worker)
            result: object = (report.text(), report.info)
        except Exception as exc:  # noqa: BLE001 - shown in the dialog
            result = exc
        self._test_done(name, result)

    def _closed(self, _result: int = 0) -> None:
        """Closing cancels the host tests in flight (never waits for the network) and
        answers their password questions with "none"."""
        for box in self._asking:
            box["event"].set()
        self.jobs.shutdown(wait=False)

    def _ask_secret_worker(self, kind: str, prompt: str) -> str | None:
        box: dict[str, Any] = {"event": threading.Event(), "value": None}
        if self.jobs.closed:
            return None
        self._asking.append(box)
        try:
            self._worker.ask_secret.emit(kind, prompt, box)
            box["event"].wait(600)
        finally:
            self._asking.remove(box)
        return box["value"]

    def _ask_secret_gui(self, kind: str, prompt: str, box: dict) -> None:
        try:
            note = ""
            problem = hosts.keyring_problem()
            if problem:
                note = f"\n\n({hosts.no_keyring_message('it')})"
            text, ok = QtWidgets.QInputDialog.getText(self, "Password" if kind == "password" else "Key passphrase",
                                                      prompt + note, QtWidgets.QLineEdit.Password)
            box["value"] = text if ok else None
        finally:
            box["event"].set()

    def _test_done(self, name: str, result: object) -> None:
        self._busy.discard(name)
        self._update_buttons()
        if isinstance(result, hosts.HostKeyUnknown) and not result.accepted:
            self.report.setPlainText(str(result).replace("NAME", name))
            if self.confirm_host_key(result.label, result.key_type, result.fingerprint):
                self.test_host(name, accept_fingerprint=result.fingerprint)
                return
            self.report.appendPlainText("\nThe key was not accepted; nothing was remembered.")
            self.testFinished.emit(name, False)
            return
        if isinstance(result, hosts.HostKeyChanged):
            self.report.setPlainText(str(result))
            self.show_error("Host key changed", str(result))
            self.testFinished.emit(name, False)
            return
        if isinstance(result, BaseException):
            text = str(result).replace("NAME", name) if isinstance(result, hosts.HostError) else \
                f"{type(result).__name__}: {result}"
            self.report.setPlainText(f"{name}: {text}")
            self.testFinished.emit(name, False)
            return
        text, _info = result
        self.report.setPlainText(text)
        self.testFinished.emit(name, True)
