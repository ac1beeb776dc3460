"""The hosts' status: a dot per host (reachable, not, not known yet) and its GPUs.

:class:`HostStatus` calls ``engine.host_status()`` (which probes SSH hosts: slow) on
a worker thread when the window starts, every :attr:`HostStatus.INTERVAL_MS` and when
the hosts dialog opens, and decorates the run bar's host chooser and the hosts
dialog's table with the answers: never blocking the UI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mldesk.engine.values import human_bytes
from mldesk.ui.widgets import paint_icon
from mldesk.ui.qt import QtCore, QtGui, Qt

if TYPE_CHECKING:  # pragma: no cover
    from mldesk.ui.mainwindow import MainWindow

COLORS = {True: "#2e9e4f", False: "#d93b3b", None: "#9aa0a6"}


def dot_icon(reachable: bool | None, size: int = 10) -> QtGui.QIcon:
    return paint_icon("disc", COLORS[reachable], size)


def describe_host(st: dict | None) -> str:
    if st is None:
        return "Status not known yet (checking\u2026)"
    if not st.get("reachable"):
        return "Not reachable" + (f": {st['error']}" if st.get("error") else "")
    lines = ["Reachable"]
    gpus = st.get("gpus") or []
    if gpus:
        lines.append(f"{len(gpus)} GPU{'s' if len(gpus) != 1 else ''}:")
        for g in gpus:
            mem = ""
            if g.get("memory_total_bytes"):
                mem = f", {human_bytes(g.get('memory_used_bytes') or 0)} / {human_bytes(g['memory_total_bytes'])}"
            util = f", {g['util_percent']:.0f}% busy" if g.get("util_percent") is not None else ""
            held = " (held by an mldesk execution)" if g.get("held_by") else ""
            lines.append(f"  {g.get('index')}: {g.get('name') or 'GPU'}{mem}{util}{held}")
    else:
        lines.append("No GPU")
    running = st.get("running") or 0
    lines.append(f"{running} mldesk execution{'s' if running != 1 else ''} running")
    return "\n".join(lines)


class HostStatus(QtCore.QObject):
    INTERVAL_MS = 300_000  # SSH hosts get a test login each time: every 5 min, plus on use

    def __init__(self, window: "MainWindow"):
        super().__init__(window)
        self.w = window
        self.engine = window.engine
        self.jobs = window.jobs
        self.status: dict[str, dict] = {}
        self.dialog = None  # the open hosts dialog, decorated too
        self.rounds = 0
        self._busy = False
        self._timer = QtCore.QTimer(self)
        self._timer.setInterval(self.INTERVAL_MS)
        self._timer.timeout.connect(self.refresh)
        window.runbar.hostsFilled.connect(self.decorate)
        window.runbar.host_chooser.activated.connect(lambda _i: self.refresh())

    def start(self) -> None:
        self.decorate()
        self._timer.start()
        self.refresh()

    def stop(self) -> None:
        self._timer.stop()

    def refresh(self) -> None:
        if self._busy or self.jobs.closed:
            return
        self._busy = True
        self.jobs.start(self._refresh(), "checking the hosts")

    async def _refresh(self) -> None:
        try:
            result = await self.jobs.call(self.engine.host_status)
        finally:
            self._busy = False
        self.status = {st["name"]: st for st in result or []}
        self.rounds += 1
        self.decorate()
        if self.dialog is not None:
            self.decorate_dialog(self.dialog)

    def decorate(self) -> None:
        chooser = self.w.runbar.host_chooser
        for i in range(chooser.count()):
            name = chooser.itemData(i)
            st = self.status.get(name)
            reachable = None if st is None else bool(st.get("reachable"))
            chooser.setItemIcon(i, dot_icon(reachable))
            base = name if name != "local" else "local (this computer)"
            gpus = len((st or {}).get("gpus") or [])
            chooser.setItemText(i, base + (f"  \u00b7  {gpus} GPU{'s' if gpus != 1 else ''}" if gpus else ""))
            chooser.setItemData(i, describe_host(st), Qt.ToolTipRole)

    # -- the hosts dialog -----------------------------------------------------------------
    def attach_dialog(self, dialog) -> None:
        """Decorate the hosts dialog now and after each check while it is open (and check now)."""
        self.dialog = dialog
        dialog.hostsChanged.connect(lambda: self.decorate_dialog(dialog))
        dialog.finished.connect(lambda _r: setattr(self, "dialog", None) if self.dialog is dialog else None)
        self.decorate_dialog(dialog)
        self.refresh()

    def decorate_dialog(self, dialog) -> None:
        table = dialog.table
        gpu_col = next((c for c in range(table.columnCount())
                        if table.horizontalHeaderItem(c).text() == "GPUs"), None)
        for row in range(table.rowCount()):
            item = table.item(row, 0)
            if item is None:
                continue
            st = self.status.get(item.data(Qt.UserRole))
            item.setIcon(dot_icon(None if st is None else bool(st.get("reachable"))))
            tip = describe_host(st)
            for col in range(table.columnCount()):
                if table.item(row, col) is not None:
                    table.item(row, col).setToolTip(tip)
            if gpu_col is not None and st is not None and st.get("reachable") and table.item(row, gpu_col):
                gpus = st.get("gpus") or []
                busy = sum(1 for g in gpus if g.get("held_by"))
                table.item(row, gpu_col).setText(
                    (f"{len(gpus)}" + (f" ({busy} held)" if busy else "")) if gpus else "none")
