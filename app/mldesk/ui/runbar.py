"""The toolbar's run bar: Run and Stop buttons, the host and runtime choosers, the "N running" label.

It owns where the next execution runs, by one rule: Run uses what the toolbar shows.
``host()`` and ``runtime_choice`` (None: automatic, i.e. Docker if it answers on this
computer, the host profile's runtime on an SSH host); ``effective_runtime()`` is what the
button shows. The choice is remembered per lab (``remember`` / ``recall``).
"""

from __future__ import annotations

from mldesk.engine import queries
from mldesk.engine.facade import Engine
from mldesk.engine.values import Execution
from mldesk.ui.qt import QtCore, QtGui, QtWidgets, Qt, Signal
from mldesk.ui.widgets import paint_icon

RUNTIME_CHOICES = (("Automatic", None), ("Docker", "docker"), ("Process (plain Python)", "process"))


def _spaced(parent: QtWidgets.QWidget, widget: QtWidgets.QWidget, left: int) -> QtWidgets.QWidget:
    holder = QtWidgets.QWidget(parent)
    lay = QtWidgets.QHBoxLayout(holder)
    lay.setContentsMargins(left, 0, 0, 0)
    lay.setSpacing(0)
    lay.addWidget(widget)
    return holder


class RunBar(QtCore.QObject):
    """Builds the main toolbar's controls into ``toolbar`` and keeps them current."""

    #: the host chooser was filled again (its items decorated by :mod:`.hoststatus`)
    hostsFilled = Signal()

    def __init__(self, engine: Engine, toolbar: QtWidgets.QToolBar, runtime: str | None,
                 parent: QtWidgets.QWidget):
        super().__init__(parent)
        self.engine = engine
        self.runtime_choice = runtime
        self.auto_runtime: str | None = None
        self._forced_runtime = runtime  # from the command line: wins over what a lab remembers
        self._settings = None
        self._lab_key: str | None = None
        self._wanted_host: str | None = None  # remembered for the lab, before the hosts are listed
        w = parent
        tb = toolbar
        self.run_button = QtWidgets.QToolButton(w)
        self.run_button.setObjectName("runButton")
        self.run_button.setText("Run")
        self.run_button.setIcon(paint_icon("run", "#2e9e4f"))
        self.run_button.setToolTip("Run the lab (Ctrl+Enter): snapshot its files and start an execution")
        self.stop_button = QtWidgets.QToolButton(w)
        self.stop_button.setObjectName("stopButton")
        self.stop_button.setText("Stop")
        self.stop_button.setIcon(paint_icon("stop", "#d93b3b"))
        self.stop_button.setToolTip("Stop the selected execution (Ctrl+.)")
        for b in (self.run_button, self.stop_button):
            b.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
            b.setAutoRaise(True)
            b.setMinimumHeight(30)
            f = b.font()
            f.setWeight(QtGui.QFont.DemiBold)
            b.setFont(f)
        tb.addWidget(_spaced(w, self.run_button, 6))
        tb.addWidget(self.stop_button)
        tb.addSeparator()
        host_label = QtWidgets.QLabel("Host", w)
        host_label.setContentsMargins(8, 0, 4, 0)
        host_label.setForegroundRole(QtGui.QPalette.PlaceholderText)
        tb.addWidget(host_label)
        self.host_chooser = QtWidgets.QComboBox(w)
        self.host_chooser.setObjectName("hostChooser")
        self.host_chooser.setToolTip("Where executions run")
        self.host_chooser.setSizeAdjustPolicy(QtWidgets.QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.host_chooser.setMinimumContentsLength(21)
        self.host_chooser.currentIndexChanged.connect(self._host_changed)
        tb.addWidget(self.host_chooser)
        runtime_label = QtWidgets.QLabel("Runtime", w)
        runtime_label.setContentsMargins(14, 0, 0, 0)
        runtime_label.setForegroundRole(QtGui.QPalette.PlaceholderText)
        tb.addWidget(runtime_label)
        self.runtime_button = QtWidgets.QToolButton(w)
        self.runtime_button.setObjectName("runtimeIndicator")
        self.runtime_button.setPopupMode(QtWidgets.QToolButton.InstantPopup)
        self.runtime_button.setToolButtonStyle(Qt.ToolButtonTextOnly)
        self.runtime_button.setAutoRaise(False)  # a framed drop-down: it looks like the control it is
        self.runtime_button.setMinimumWidth(90)
        self.runtime_menu = QtWidgets.QMenu(self.runtime_button)
        group = QtGui.QActionGroup(self)
        self.runtime_actions: dict[str | None, QtGui.QAction] = {}
        for label, value in RUNTIME_CHOICES:
            act = self.runtime_menu.addAction(label)
            act.setCheckable(True)
            act.setChecked(value == self.runtime_choice)
            act.triggered.connect(lambda _c=False, v=value: self.set_runtime(v))
            group.addAction(act)
            self.runtime_actions[value] = act
        self.runtime_button.setMenu(self.runtime_menu)
        tb.addWidget(_spaced(w, self.runtime_button, 2))
        spacer = QtWidgets.QWidget(w)
        spacer.setSizePolicy(QtWidgets.QSizePolicy.Expanding, QtWidgets.QSizePolicy.Preferred)
        tb.addWidget(spacer)
        self.running_label = QtWidgets.QLabel(w)
        self.running_label.setObjectName("runningLabel")
        self.running_label.setContentsMargins(0, 0, 10, 0)
        tb.addWidget(self.running_label)
        self.update_runtime_button()

    # -- host ----------------------------------------------------------------------
    def fill_hosts(self) -> None:
        current = self.host_chooser.currentData()
        self.host_chooser.blockSignals(True)
        self.host_chooser.clear()
        for name, info in self.engine.hosts().items():
            label = name if name != "local" else "local (this computer)"
            self.host_chooser.addItem(label, name)
            self.host_chooser.setItemData(self.host_chooser.count() - 1,
                                          info.get("description", "") or name, Qt.ToolTipRole)
        want = self._wanted_host or current or "local"
        self._wanted_host = None
        i = self.host_chooser.findData(want)
        self.host_chooser.setCurrentIndex(max(0, i))
        self.host_chooser.blockSignals(False)
        self.hostsFilled.emit()

    def host(self) -> str:
        return self.host_chooser.currentData() or "local"

    def set_host(self, name: str) -> bool:
        i = self.host_chooser.findData(name)
        if i < 0:
            return False
        self.host_chooser.setCurrentIndex(i)
        self.update_runtime_button()
        return True

    def host_runtime(self, host: str | None = None) -> str | None:
        """The runtime "automatic" means on ``host``: its profile's, or this computer's probe."""
        host = host or self.host()
        if host == "local":
            return self.auto_runtime
        return (self.engine.hosts().get(host) or {}).get("runtime") or "docker"

    def _host_changed(self, _index: int) -> None:
        self.update_runtime_button()
        self._save()

    # -- remembered per lab ------------------------------------------------------------
    def recall(self, settings, lab) -> None:
        """Show what ``lab`` ran with last (host and runtime), if that host still exists."""
        import hashlib

        self._settings = settings
        self._lab_key = "labs/" + hashlib.sha1(str(lab).encode()).hexdigest()[:16]
        host = settings.value(self._lab_key + "/host")
        runtime = settings.value(self._lab_key + "/runtime")
        if host and self.host_chooser.findData(str(host)) < 0:
            self._wanted_host = str(host)  # the host list is filled after the first paint
        self.host_chooser.blockSignals(True)
        if not (host and self.set_host(str(host))):
            self.set_host("local")
        self.host_chooser.blockSignals(False)
        if self._forced_runtime is None:
            self.set_runtime(runtime if runtime in ("docker", "process") else None, save=False)
        self.update_runtime_button()

    def _save(self) -> None:
        if self._settings is None or self._lab_key is None:
            return
        self._settings.setValue(self._lab_key + "/host", self.host())
        self._settings.setValue(self._lab_key + "/runtime", self.runtime_choice or "")

    # -- runtime ---------------------------------------------------------------------
    async def probe_runtime(self, jobs) -> None:
        """What "automatic" picks here (Docker answers or not), on a worker thread."""
        try:
            self.auto_runtime = await jobs.call(queries.default_local_runtime)
        except Exception:  # noqa: BLE001 - no answer: the button keeps saying "checking"
            return
        self.update_runtime_button()

    def set_runtime(self, runtime: str | None, save: bool = True) -> None:
        self.runtime_choice = runtime
        act = self.runtime_actions.get(runtime)
        if act is not None:
            act.setChecked(True)
        self.update_runtime_button()
        if save:
            self._save()

    def effective_runtime(self) -> str | None:
        return self.runtime_choice or self.host_runtime()

    def update_runtime_button(self) -> None:
        rt = self.effective_runtime()
        self.runtime_button.setText(rt or "\u2026")
        if self.runtime_choice:
            how = "chosen by you"
        elif self.host() != "local":
            how = f"the runtime of the host {self.host()}"
        else:
            how = "picked automatically: " + ("Docker answers" if rt == "docker" else "no Docker daemon answers")
        self.runtime_button.setToolTip(f"Runtime: {rt or 'checking'} ({how}). Click to choose.")

    # -- state ------------------------------------------------------------------------
    def set_starting(self, starting: bool) -> None:
        self.run_button.setText("Starting\u2026" if starting else "Run")
        if starting:
            self.run_button.setEnabled(False)

    def show_running(self, active: list[Execution]) -> None:
        running = sum(1 for e in active if e.state == "running")
        parts = [f"{running} running"] if running else []
        if len(active) - running:
            parts.append(f"{len(active) - running} starting or ending")
        self.running_label.setText("  \u00b7  ".join(parts))
