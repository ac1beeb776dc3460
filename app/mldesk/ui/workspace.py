"""The window's panes laid out: lab files (left), code over Output / Outputs / Inputs (centre), executions (right).

``build_workspace(window)`` creates the widgets and sets them as attributes of the
window (the names tests and controllers use); it connects nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mldesk.ui.codeview import CodeArea
from mldesk.ui.console import Console
from mldesk.ui.failure import FailureBanner
from mldesk.ui.filetree import FileTree
from mldesk.ui.inputs import InputsPanel
from mldesk.ui.outputs import OutputsPanel
from mldesk.ui.qt import QtCore, QtGui, QtWidgets, Qt
from mldesk.ui.sidefilter import SidebarFilter
from mldesk.ui.sidebar import ExecutionList, UndoBar
from mldesk.ui.widgets import ElidedLabel, MessageBar, SectionHeader

if TYPE_CHECKING:  # pragma: no cover
    from mldesk.ui.mainwindow import MainWindow

#: The narrowest the side panes get (the window stays usable at 1024 px; Ctrl+B hides them).
LEFT_MIN, RIGHT_MIN = 150, 220


def _placeholder(text: str, parent: QtWidgets.QWidget) -> QtWidgets.QLabel:
    label = QtWidgets.QLabel(text, parent)
    label.setAlignment(Qt.AlignCenter)
    label.setWordWrap(True)
    label.setForegroundRole(QtGui.QPalette.PlaceholderText)
    label.setSizePolicy(QtWidgets.QSizePolicy.Ignored, QtWidgets.QSizePolicy.Ignored)
    return label


class _CornerFit(QtCore.QObject):
    """Keeps the tab bar's corner (the console title) from pushing the tabs out of view."""

    def __init__(self, tabs: QtWidgets.QTabWidget, label: ElidedLabel, max_hint: int):
        super().__init__(tabs)
        self.tabs, self.label, self.max_hint = tabs, label, max_hint
        tabs.installEventFilter(self)

    def eventFilter(self, obj: QtCore.QObject, event: QtCore.QEvent) -> bool:  # noqa: N802
        if event.type() in (QtCore.QEvent.Resize, QtCore.QEvent.LayoutRequest):
            # QTabWidget gives its corner the corner's size hint: keep that within the room left
            room = self.tabs.width() - self.tabs.tabBar().sizeHint().width() - 40
            self.label.set_max_hint(min(self.max_hint, room))
        return False


def build_workspace(w: "MainWindow") -> QtWidgets.QWidget:
    work = QtWidgets.QWidget(w)
    w.banner = MessageBar(work)
    w.banner.setObjectName("windowBanner")

    # left: lab header + files
    left = w.left_pane = QtWidgets.QWidget(work)
    left.setObjectName("labPanel")
    ll = QtWidgets.QVBoxLayout(left)
    ll.setContentsMargins(0, 0, 0, 0)
    ll.setSpacing(0)
    w.lab_header = SectionHeader("Lab", left)
    w.new_file_button = QtWidgets.QToolButton(left)
    w.new_file_button.setText("+")
    w.new_file_button.setToolTip("New file in the lab")
    w.new_file_button.setAutoRaise(True)
    w.lab_header.add(w.new_file_button)
    w.lab_button = QtWidgets.QPushButton(left)
    w.lab_button.setObjectName("labButton")
    w.lab_button.setCheckable(True)
    w.lab_button.setCursor(Qt.PointingHandCursor)
    w.lab_button.setToolTip("The lab's files (editable). Click to leave an execution's code.")
    w.lab_button.setSizePolicy(QtWidgets.QSizePolicy.Ignored, QtWidgets.QSizePolicy.Fixed)
    w.lab_button.setStyleSheet(
        "QPushButton#labButton { text-align: left; padding: 6px 10px; margin: 0 6px 4px 6px;"
        " border: 1px solid transparent; border-radius: 6px; font-weight: 600; }"
        "QPushButton#labButton:checked { background: palette(midlight); border-color: palette(mid); }"
        "QPushButton#labButton:hover { border-color: palette(mid); }")
    w.file_tree = FileTree(left)
    ll.addWidget(w.lab_header)
    ll.addWidget(w.lab_button)
    ll.addWidget(w.file_tree, 1)

    # centre: code above, tabs below
    w.code = CodeArea(work)
    w.code.setObjectName("codeArea")
    w.console = Console(work)
    w.console_title = ElidedLabel("", work, max_hint=260)  # leaves the tabs their room
    w.console_title.setObjectName("consoleTitle")
    w.console_placeholder = _placeholder(
        "Press Run (Ctrl+Enter) to start an execution, or select one in the sidebar to see its output.", work)
    w.failure_banner = FailureBanner(work)
    w.console_page = QtWidgets.QWidget(work)
    cp = QtWidgets.QVBoxLayout(w.console_page)
    cp.setContentsMargins(0, 0, 0, 0)
    cp.setSpacing(0)
    cp.addWidget(w.failure_banner)
    cp.addWidget(w.console, 1)
    w.console_stack = QtWidgets.QStackedWidget(work)
    w.console_stack.addWidget(w.console_placeholder)
    w.console_stack.addWidget(w.console_page)
    w.inputs_panel = InputsPanel(w.engine, work)
    w.outputs_panel = OutputsPanel(w.engine, work)
    w.bottom_tabs = QtWidgets.QTabWidget(work)
    w.bottom_tabs.setObjectName("bottomTabs")
    w.bottom_tabs.setDocumentMode(True)
    w.bottom_tabs.addTab(w.console_stack, "Output")
    w.bottom_tabs.addTab(w.outputs_panel, "Outputs")
    w.bottom_tabs.addTab(w.inputs_panel, "Inputs")
    corner = QtWidgets.QWidget(work)
    cl = QtWidgets.QHBoxLayout(corner)
    cl.setContentsMargins(0, 0, 10, 0)
    cl.addWidget(w.console_title)
    w.bottom_tabs.setCornerWidget(corner, Qt.TopRightCorner)
    _CornerFit(w.bottom_tabs, w.console_title, 260)
    w.center_split = QtWidgets.QSplitter(Qt.Vertical, work)
    w.center_split.setObjectName("centerSplitter")
    w.center_split.addWidget(w.code)
    w.center_split.addWidget(w.bottom_tabs)
    w.center_split.setStretchFactor(0, 3)
    w.center_split.setStretchFactor(1, 2)
    w.center_split.setChildrenCollapsible(False)

    # right: executions
    right = w.right_pane = QtWidgets.QWidget(work)
    right.setObjectName("executionPanel")
    rl = QtWidgets.QVBoxLayout(right)
    rl.setContentsMargins(0, 0, 0, 0)
    rl.setSpacing(0)
    w.exec_header = SectionHeader("Executions", right)
    w.exec_count = QtWidgets.QLabel(right)
    w.exec_count.setForegroundRole(QtGui.QPalette.PlaceholderText)
    w.exec_header.add(w.exec_count)
    w.execution_list = ExecutionList(w.model, right)
    w.exec_filter = QtWidgets.QLineEdit(right)
    w.exec_filter.setObjectName("executionFilter")
    w.exec_filter.setPlaceholderText("Filter: name, state, parameter\u2026")
    w.exec_filter.setClearButtonEnabled(True)
    w.exec_filter.setToolTip("Show only the executions whose name, state, host or arguments contain every word")
    w.sidebar_filter = SidebarFilter(w.exec_filter, w.execution_list)
    filter_row = QtWidgets.QWidget(right)
    fl = QtWidgets.QHBoxLayout(filter_row)
    fl.setContentsMargins(8, 0, 8, 4)
    fl.addWidget(w.exec_filter)
    w.exec_empty = _placeholder(
        "No executions yet.\n\nPress Run to start one: it snapshots the lab's files and runs main.py.", right)
    w.exec_empty.setMargin(18)
    w.exec_stack = QtWidgets.QStackedWidget(right)
    w.exec_stack.addWidget(w.execution_list)
    w.exec_stack.addWidget(w.exec_empty)
    w.undo_bar = UndoBar(right)
    rl.addWidget(w.exec_header)
    rl.addWidget(filter_row)
    rl.addWidget(w.exec_stack, 1)
    rl.addWidget(w.undo_bar)

    w.main_split = QtWidgets.QSplitter(Qt.Horizontal, work)
    w.main_split.setObjectName("mainSplitter")
    for i, pane in enumerate((left, w.center_split, right)):
        w.main_split.addWidget(pane)
        w.main_split.setStretchFactor(i, int(pane is w.center_split))
    w.main_split.setChildrenCollapsible(False)
    w.main_split.setSizes([230, 820, 330])
    w.center_split.setSizes([470, 330])
    left.setMinimumWidth(LEFT_MIN)
    right.setMinimumWidth(RIGHT_MIN)

    wl = QtWidgets.QVBoxLayout(work)
    wl.setContentsMargins(0, 0, 0, 0)
    wl.setSpacing(0)
    wl.addWidget(w.banner)
    wl.addWidget(w.main_split, 1)
    return work
