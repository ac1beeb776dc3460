"""The execution sidebar: a list view with a custom delegate, and the Undo bar.

Each item shows a status icon (a spinner while the execution is active), its name,
"running for 3 min" / "ran for 2 h 4 min" with "started 5 min ago", and where it
runs (host, runtime, hardware). A three-dots button on each item opens the same
menu as a right click.

A sweep's trials sit, indented, under the sweep's header: an arrow that collapses
and expands the group (a click, or Left / Right), the sweep's id and the parameters
it varies, "4 trials · 2 running · 2 done", the best value of the lab's primary
metric over its trials, and a Compare button (one click compares all trials).
Selecting a header selects its trials for the commands (``selected_ids``): Stop,
Remove, Compare act on the whole group. The view repaints only what moves: the spinners of visible
active items ~16 times a second, the time texts once a second.
"""

from __future__ import annotations

import time

from mldesk.engine.values import Execution
from mldesk.ui import fmt
from mldesk.ui.models import ActiveRole, ExecutionModel, ExecutionRole, ExtraRole, SweepRole
from mldesk.ui.qt import QtCore, QtGui, QtWidgets, Qt, Signal

STATE_COLORS = {
    "finished": "#2e9e4f",
    "failed": "#d93b3b",
    "stopped": "#8a8f98",
    "queued": "#8a8f98",
}
ACTIVE_COLOR = "#2f7bea"

PAD = 10
ICON = 18
DOTS_W = 26
ROW_H = 66
#: how far a sweep's trials are indented under its header
INDENT = 16
ARROW = 14


def paint_status_icon(p: QtGui.QPainter, rect: QtCore.QRectF, state: str, phase: float = 0.0) -> None:
    """The status icon of ``state`` in ``rect`` (square); ``phase`` turns the spinner."""
    p.save()
    p.setRenderHint(QtGui.QPainter.Antialiasing)
    r = rect.adjusted(1, 1, -1, -1)
    c = r.center()
    w = r.width()
    if state in ("finished", "failed", "stopped"):
        color = QtGui.QColor(STATE_COLORS[state])
        p.setPen(Qt.NoPen)
        p.setBrush(color)
        p.drawEllipse(r)
        pen = QtGui.QPen(QtGui.QColor("white"), max(1.6, w * 0.12), Qt.SolidLine, Qt.RoundCap, Qt.RoundJoin)
        p.setPen(pen)
        p.setBrush(Qt.NoBrush)
        if state == "finished":
            path = QtGui.QPainterPath()
            path.moveTo(c.x() - w * 0.22, c.y() + w * 0.01)
            path.lineTo(c.x() - w * 0.06, c.y() + w * 0.17)
            path.lineTo(c.x() + w * 0.23, c.y() - w * 0.15)
            p.drawPath(path)
        elif state == "failed":
            d = w * 0.17
            p.drawLine(QtCore.QPointF(c.x() - d, c.y() - d), QtCore.QPointF(c.x() + d, c.y() + d))
            p.drawLine(QtCore.QPointF(c.x() + d, c.y() - d), QtCore.QPointF(c.x() - d, c.y() + d))
        else:
            p.setPen(Qt.NoPen)
            p.setBrush(QtGui.QColor("white"))
            d = w * 0.16
            p.drawRoundedRect(QtCore.QRectF(c.x() - d, c.y() - d, 2 * d, 2 * d), 1, 1)
    elif state == "queued":
        pen = QtGui.QPen(QtGui.QColor(STATE_COLORS["queued"]), 2, Qt.DotLine, Qt.RoundCap)
        p.setPen(pen)
        p.setBrush(Qt.NoBrush)
        p.drawEllipse(r.adjusted(1, 1, -1, -1))
    else:
        p.setBrush(Qt.NoBrush)
        ring = r.adjusted(1.5, 1.5, -1.5, -1.5)
        base = QtGui.QColor(ACTIVE_COLOR)
        base.setAlpha(55)
        p.setPen(QtGui.QPen(base, 2.4))
        p.drawEllipse(ring)
        p.setPen(QtGui.QPen(QtGui.QColor(ACTIVE_COLOR), 2.4, Qt.SolidLine, Qt.RoundCap))
        start = int(-phase * 360 * 16) % (360 * 16)
        p.drawArc(ring, start, 100 * 16)
        if state != "running":  # a small dot in the middle: not running its code yet
            p.setPen(Qt.NoPen)
            p.setBrush(QtGui.QColor(ACTIVE_COLOR))
            p.drawEllipse(c, w * 0.09, w * 0.09)
    p.restore()


def status_icon(state: str, size: int = 16) -> QtGui.QIcon:
    pm = QtGui.QPixmap(size * 2, size * 2)
    pm.setDevicePixelRatio(2)
    pm.fill(Qt.transparent)
    p = QtGui.QPainter(pm)
    paint_status_icon(p, QtCore.QRectF(0, 0, size, size), state, 0.1)
    p.end()
    return QtGui.QIcon(pm)


def _mix(a: QtGui.QColor, b: QtGui.QColor, t: float) -> QtGui.QColor:
    return QtGui.QColor(
        round(a.red() + (b.red() - a.red()) * t),
        round(a.green() + (b.green() - a.green()) * t),
        round(a.blue() + (b.blue() - a.blue()) * t),
    )


class ExecutionDelegate(QtWidgets.QStyledItemDelegate):
    """Paints one execution; a line edit over the name for rename (F2)."""

    dotsClicked = Signal(QtCore.QModelIndex, QtCore.QPoint)
    #: a sweep header's arrow (collapse / expand) and its Compare button
    toggleClicked = Signal(str)
    compareClicked = Signal(str)

    def __init__(self, parent: QtWidgets.QAbstractItemView):
        super().__init__(parent)
        self._view = parent
        self.hover_dots = QtCore.QPersistentModelIndex()
        self.hover_compare = QtCore.QPersistentModelIndex()

    # -- geometry -----------------------------------------------------------------
    def sizeHint(self, option, index) -> QtCore.QSize:
        fm = option.fontMetrics
        return QtCore.QSize(200, max(ROW_H, PAD * 2 + fm.height() * 3 + 8))

    def _rects(self, rect: QtCore.QRect, fm: QtGui.QFontMetrics, indent: int = 0):
        inner = rect.adjusted(PAD + indent, PAD - 2, -4, -PAD + 2)
        line_h = fm.height()
        icon = QtCore.QRectF(inner.left(), inner.top() + (line_h + 3 - ICON) / 2 + 1, ICON, ICON)
        text_left = inner.left() + ICON + 10
        dots = QtCore.QRect(inner.right() - DOTS_W + 1, inner.top() - 1, DOTS_W, line_h + 6)
        name = QtCore.QRect(text_left, inner.top(), dots.left() - text_left - 2, line_h + 3)
        second = QtCore.QRect(text_left, name.bottom() + 3, inner.right() - text_left - 6, line_h)
        third = QtCore.QRect(text_left, second.bottom() + 2, inner.right() - text_left - 6, line_h)
        return icon, name, dots, second, third

    def dots_rect(self, option_rect: QtCore.QRect) -> QtCore.QRect:
        return self._rects(option_rect, self._view.fontMetrics())[2]

    @staticmethod
    def _indent(index) -> int:
        ex = index.data(ExecutionRole)
        return INDENT if ex is not None and ex.sweep else 0

    def icon_rect(self, option_rect: QtCore.QRect, index) -> QtCore.QRectF:
        """Where the status icon (spinner) of ``index`` is painted."""
        if index.data(SweepRole):
            return self.header_rects(option_rect, self._view.fontMetrics())["icon"]
        return self._rects(option_rect, self._view.fontMetrics(), self._indent(index))[0]

    def header_rects(self, rect: QtCore.QRect, fm: QtGui.QFontMetrics) -> dict:
        """A sweep header's parts: arrow, icon, title, compare (button), dots, second, third."""
        icon, name, dots, second, third = self._rects(rect, fm, ARROW + 2)
        arrow = QtCore.QRect(rect.left() + PAD - 3, int(icon.top()) - 1, ARROW + 4, ICON + 2)
        label_w = fm.horizontalAdvance("Compare") + 16
        compare = QtCore.QRect(dots.left() - label_w - 2, name.top() - 1, label_w, name.height() + 2)
        title = QtCore.QRect(name.left(), name.top(), compare.left() - name.left() - 6, name.height())
        return {"arrow": arrow, "icon": icon, "title": title, "compare": compare, "dots": dots,
                "second": second, "third": third}

    def compare_rect(self, option_rect: QtCore.QRect) -> QtCore.QRect:
        return self.header_rects(option_rect, self._view.fontMetrics())["compare"]

    def arrow_rect(self, option_rect: QtCore.QRect) -> QtCore.QRect:
        return self.header_rects(option_rect, self._view.fontMetrics())["arrow"]

    # -- painting -------------------------------------------------------------------
    def _card(self, p: QtGui.QPainter, option, rect: QtCore.QRect, card: QtCore.QRect) -> None:
        """The row's background: selected, hovered, or a hairline under it."""
        pal = option.palette
        base = pal.color(QtGui.QPalette.Base)
        text_color = pal.color(QtGui.QPalette.Text)
        highlight = pal.color(QtGui.QPalette.Highlight)
        if option.state & QtWidgets.QStyle.State_Selected:
            p.setPen(Qt.NoPen)
            p.setBrush(_mix(base, highlight, 0.18))
            p.drawRoundedRect(card, 6, 6)
            p.setBrush(highlight)
            p.drawRoundedRect(QtCore.QRect(card.left(), card.top() + 8, 3, card.height() - 16), 1.5, 1.5)
        elif option.state & QtWidgets.QStyle.State_MouseOver:
            p.setPen(Qt.NoPen)
            p.setBrush(_mix(base, text_color, 0.05))
            p.drawRoundedRect(card, 6, 6)
        else:  # a hairline between items
            p.setPen(QtGui.QPen(_mix(base, text_color, 0.08), 1))
            p.drawLine(card.left() + 8, rect.bottom(), card.right() - 8, rect.bottom())

    def _paint_dots(self, p: QtGui.QPainter, option, index, dots: QtCore.QRect) -> None:
        pal = option.palette
        base = pal.color(QtGui.QPalette.Base)
        text_color = pal.color(QtGui.QPalette.Text)
        on_dots = self.hover_dots.isValid() and self.hover_dots.row() == index.row()
        if on_dots:
            p.setPen(Qt.NoPen)
            p.setBrush(_mix(base, text_color, 0.12))
            p.drawRoundedRect(dots.adjusted(2, 1, -2, -1), 4, 4)
        if option.state & (QtWidgets.QStyle.State_Selected | QtWidgets.QStyle.State_MouseOver) or on_dots:
            dot_color = text_color
        else:
            dot_color = _mix(base, text_color, 0.45)
        p.setPen(Qt.NoPen)
        p.setBrush(dot_color)
        cx = dots.center().x() + 0.5
        cy = dots.center().y() + 0.5
        for dy in (-5, 0, 5):
            p.drawEllipse(QtCore.QPointF(cx, cy + dy), 1.7, 1.7)

    def _paint_header(self, p: QtGui.QPainter, option, index, sweep: str) -> None:
        """A sweep's header: arrow, state, "Sweep k3f9q · lr × epochs", [Compare],
        "4 trials · 2 running · 2 done", "best loss 0.213"."""
        model = index.model()
        g = model.group(sweep) if hasattr(model, "group") else None
        if g is None:
            return
        pal = option.palette
        base = pal.color(QtGui.QPalette.Base)
        text_color = pal.color(QtGui.QPalette.Text)
        highlight = pal.color(QtGui.QPalette.Highlight)
        muted = _mix(base, text_color, 0.62)
        rect = option.rect
        self._card(p, option, rect, rect.adjusted(4, 2, -4, -2))
        fm = option.fontMetrics
        r = self.header_rects(rect, fm)
        # the arrow: right (collapsed) or down (expanded)
        a = QtCore.QRectF(r["arrow"]).center()
        d = 3.6
        path = QtGui.QPainterPath()
        if g.collapsed:
            path.moveTo(a.x() - d * 0.6, a.y() - d)
            path.lineTo(a.x() + d * 0.8, a.y())
            path.lineTo(a.x() - d * 0.6, a.y() + d)
        else:
            path.moveTo(a.x() - d, a.y() - d * 0.6)
            path.lineTo(a.x(), a.y() + d * 0.8)
            path.lineTo(a.x() + d, a.y() - d * 0.6)
        p.setPen(QtGui.QPen(_mix(base, text_color, 0.7), 1.6, Qt.SolidLine, Qt.RoundCap, Qt.RoundJoin))
        p.setBrush(Qt.NoBrush)
        p.drawPath(path)
        paint_status_icon(p, r["icon"], g.state(), spinner_phase())
        # the title: "Sweep k3f9q" bold, the varied parameters muted
        bold = QtGui.QFont(option.font)
        bold.setWeight(QtGui.QFont.DemiBold)
        fm_bold = QtGui.QFontMetrics(bold)
        head = f"Sweep {g.short}"
        title = r["title"]
        p.setFont(bold)
        p.setPen(text_color)
        shown = fm_bold.elidedText(head, Qt.ElideRight, title.width())
        p.drawText(title, Qt.AlignLeft | Qt.AlignVCenter, shown)
        varied = " \u00d7 ".join(g.varied())
        if varied and shown == head:
            rest = title.adjusted(fm_bold.horizontalAdvance(head), 0, 0, 0)
            p.setFont(option.font)
            p.setPen(muted)
            p.drawText(rest, Qt.AlignLeft | Qt.AlignVCenter,
                       fm.elidedText(" \u00b7 " + varied, Qt.ElideRight, rest.width()))
        # the Compare button
        cmp_r = r["compare"]
        on_compare = self.hover_compare.isValid() and self.hover_compare.row() == index.row()
        link = QtGui.QColor(highlight)
        p.setFont(option.font)
        p.setPen(QtGui.QPen(_mix(base, link, 0.55 if on_compare else 0.35), 1))
        p.setBrush(_mix(base, link, 0.16) if on_compare else Qt.NoBrush)
        p.drawRoundedRect(QtCore.QRectF(cmp_r).adjusted(0.5, 0.5, -0.5, -0.5), 4, 4)
        p.setPen(_mix(text_color, link, 0.75))
        p.drawText(cmp_r, Qt.AlignCenter, "Compare")
        # the summary and the best metric
        p.setPen(muted)
        p.drawText(r["second"], Qt.AlignLeft | Qt.AlignVCenter,
                   fm.elidedText(g.summary(), Qt.ElideRight, r["second"].width()))
        best = g.best_text()
        if best:
            p.setPen(text_color)
            p.drawText(r["third"], Qt.AlignLeft | Qt.AlignVCenter,
                       fm.elidedText(best, Qt.ElideRight, r["third"].width()))
        else:
            p.setPen(muted)
            p.drawText(r["third"], Qt.AlignLeft | Qt.AlignVCenter, "no primary metric yet")
        self._paint_dots(p, option, index, r["dots"])

    def paint(self, p: QtGui.QPainter, option: QtWidgets.QStyleOptionViewItem, index) -> None:
        sweep = index.data(SweepRole)
        if sweep:
            p.save()
            p.setRenderHint(QtGui.QPainter.Antialiasing)
            self._paint_header(p, option, index, sweep)
            p.restore()
            return
        ex: Execution | None = index.data(ExecutionRole)
        if ex is None:
            return
        p.save()
        p.setRenderHint(QtGui.QPainter.Antialiasing)
        pal = option.palette
        rect = option.rect
        base = pal.color(QtGui.QPalette.Base)
        text_color = pal.color(QtGui.QPalette.Text)
        indent = INDENT if ex.sweep else 0
        self._card(p, option, rect, rect.adjusted(4 + indent, 2, -4, -2))
        if indent:  # a guide line: this row is one of the sweep above
            p.setPen(QtGui.QPen(_mix(base, text_color, 0.16), 1))
            x = rect.left() + PAD + ARROW // 2 - 1
            p.drawLine(x, rect.top(), x, rect.bottom())

        fm = option.fontMetrics
        icon, name_r, dots, second, third = self._rects(rect, fm, indent)
        paint_status_icon(p, icon, ex.state, (time.monotonic() * 1.1) % 1.0)

        bold = QtGui.QFont(option.font)
        bold.setWeight(QtGui.QFont.DemiBold)
        p.setFont(bold)
        p.setPen(text_color)
        shown, muted_part = fmt.name_parts(ex)
        fm_bold = QtGui.QFontMetrics(bold)
        name = fm_bold.elidedText(shown, Qt.ElideRight, name_r.width())
        p.drawText(name_r, Qt.AlignLeft | Qt.AlignVCenter, name)
        if muted_part and name == shown:
            rest_r = name_r.adjusted(fm_bold.horizontalAdvance(shown), 0, 0, 0)
            p.setFont(option.font)
            p.setPen(_mix(base, text_color, 0.62))
            p.drawText(rest_r, Qt.AlignLeft | Qt.AlignVCenter,
                       QtGui.QFontMetrics(option.font).elidedText(muted_part, Qt.ElideRight, rest_r.width()))
            p.setPen(text_color)

        muted = _mix(base, text_color, 0.62)
        small = QtGui.QFont(option.font)
        p.setFont(small)
        now = time.time()
        run = fmt.run_line(ex, now)
        color = QtGui.QColor(STATE_COLORS.get(ex.state, ACTIVE_COLOR)) if ex.state != "finished" else text_color
        if ex.state in ("stopped", "queued"):
            color = text_color
        started = "started " + fmt.ago(ex.created_at, now)
        fm_small = QtGui.QFontMetrics(small)
        run_w = fm_small.horizontalAdvance(run)
        p.setPen(color)
        p.drawText(second, Qt.AlignLeft | Qt.AlignVCenter, fm_small.elidedText(run, Qt.ElideRight, second.width()))
        rest = second.adjusted(run_w, 0, 0, 0)
        if rest.width() > 20:
            p.setPen(muted)
            p.drawText(rest, Qt.AlignLeft | Qt.AlignVCenter,
                       fm_small.elidedText(" \u00b7 " + started, Qt.ElideRight, rest.width()))
        p.setPen(muted)
        where = fmt.where_line(ex)
        if ex.argv:
            where += "  \u00b7  " + fmt.params_line(ex)
        if ex.state == "failed" and ex.reason:
            where = ex.reason + "  \u00b7  " + where
        extra = index.data(ExtraRole)
        if extra:  # live figures: primary metric, step, CPU / GPU
            where = extra + "  \u00b7  " + where
        p.drawText(third, Qt.AlignLeft | Qt.AlignVCenter, fm_small.elidedText(where, Qt.ElideRight, third.width()))

        self._paint_dots(p, option, index, dots)
        p.restore()

    # -- clicks on the dots ---------------------------------------------------------
    def editorEvent(self, event, model, option, index) -> bool:
        if event.type() in (QtCore.QEvent.MouseButtonPress, QtCore.QEvent.MouseButtonRelease,
                            QtCore.QEvent.MouseButtonDblClick):
            pos = event.position().toPoint()
            sweep = index.data(SweepRole)
            if sweep and event.button() == Qt.LeftButton:
                for part, signal in (("arrow", self.toggleClicked), ("compare", self.compareClicked)):
                    if self.header_rects(option.rect, self._view.fontMetrics())[part].contains(pos):
                        if event.type() == QtCore.QEvent.MouseButtonRelease:
                            signal.emit(sweep)
                        return True
                if event.type() == QtCore.QEvent.MouseButtonDblClick:
                    self.toggleClicked.emit(sweep)
                    return True
            dots = self.dots_rect(option.rect)
            if dots.contains(pos) and event.button() == Qt.LeftButton:
                if event.type() == QtCore.QEvent.MouseButtonRelease:
                    self.dotsClicked.emit(QtCore.QModelIndex(index), self._view.viewport().mapToGlobal(
                        QtCore.QPoint(dots.left(), dots.bottom())))
                return True
        return super().editorEvent(event, model, option, index)

    # -- rename editor ---------------------------------------------------------------
    def createEditor(self, parent, option, index) -> QtWidgets.QWidget:
        editor = QtWidgets.QLineEdit(parent)
        editor.setObjectName("renameEditor")
        editor.setMaxLength(100)
        editor.setFrame(True)
        return editor

    def setEditorData(self, editor, index) -> None:
        editor.setText(index.data(Qt.EditRole) or "")
        editor.selectAll()

    def setModelData(self, editor, model, index) -> None:
        model.setData(index, editor.text(), Qt.EditRole)

    def updateEditorGeometry(self, editor, option, index) -> None:
        _icon, name_r, _dots, _s, _t = self._rects(option.rect, option.fontMetrics, self._indent(index))
        editor.setGeometry(name_r.adjusted(-4, -3, 0, 3))


class ExecutionList(QtWidgets.QListView):
    """The sidebar's list (objectName ``executionList``)."""

    #: global position, and the ids the menu acts on (None: the selection)
    menuRequested = Signal(QtCore.QPoint, object)
    #: a sweep header's Compare button: the sweep id
    compareSweepRequested = Signal(str)

    def __init__(self, model: ExecutionModel, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("executionList")
        self.setAccessibleName("Executions")
        self.setModel(model)
        self.delegate = ExecutionDelegate(self)
        self.setItemDelegate(self.delegate)
        self.setSelectionMode(QtWidgets.QAbstractItemView.ExtendedSelection)
        self.setEditTriggers(QtWidgets.QAbstractItemView.EditKeyPressed)
        self.setUniformItemSizes(True)
        self.setMouseTracking(True)
        self.setVerticalScrollMode(QtWidgets.QAbstractItemView.ScrollPerPixel)
        self.setFrameShape(QtWidgets.QFrame.NoFrame)
        self.setContextMenuPolicy(Qt.CustomContextMenu)
        self.customContextMenuRequested.connect(self._on_context_menu)
        self.delegate.dotsClicked.connect(self._on_dots)
        self.delegate.toggleClicked.connect(self.toggle_sweep)
        self.delegate.compareClicked.connect(self.compareSweepRequested)
        self.viewport().setAttribute(Qt.WA_Hover, True)

        self._spin = QtCore.QTimer(self)
        self._spin.setInterval(60)
        self._spin.timeout.connect(self._repaint_spinners)
        self._clock = QtCore.QTimer(self)
        self._clock.setInterval(1000)
        self._clock.timeout.connect(self.viewport().update)
        self._clock.start()
        model.rowsInserted.connect(self._check_spin)
        model.dataChanged.connect(self._check_spin)
        model.modelReset.connect(self._check_spin)

    def _visible_rows(self) -> range:
        top = self.indexAt(QtCore.QPoint(4, 2))
        if not top.isValid():
            return range(0)
        bottom = self.indexAt(QtCore.QPoint(4, self.viewport().height() - 2))
        last = bottom.row() if bottom.isValid() else self.model().rowCount() - 1
        return range(top.row(), last + 1)

    def _check_spin(self, *args) -> None:
        active = bool(self.model().active_executions())
        if active and not self._spin.isActive():
            self._spin.start()
        elif not active and self._spin.isActive():
            self._spin.stop()

    def _repaint_spinners(self) -> None:
        model = self.model()
        any_active = False
        for row in self._visible_rows():
            idx = model.index(row, 0)
            if idx.data(ActiveRole):
                any_active = True
                icon = self.delegate.icon_rect(self.visualRect(idx), idx)
                self.viewport().update(icon.toAlignedRect().adjusted(-2, -2, 2, 2))
        if not any_active and not model.active_rows():
            self._spin.stop()

    def select_only(self, index: QtCore.QModelIndex) -> None:
        """Make ``index`` current and the only selected row (whatever keys are held:
        ``setCurrentIndex`` would toggle it while Ctrl is down)."""
        self.selectionModel().setCurrentIndex(
            index, QtCore.QItemSelectionModel.ClearAndSelect | QtCore.QItemSelectionModel.Rows)

    def selected_ids(self) -> list[str]:
        """The selected executions, top to bottom; a sweep's header stands for its trials."""
        rows = sorted(i.row() for i in self.selectionModel().selectedRows())
        model = self.model()
        ids: list[str] = []
        for r in rows:
            for exec_id in model.ids_at(r):
                if exec_id not in ids:
                    ids.append(exec_id)
        return ids

    # -- sweeps' headers ---------------------------------------------------------------
    def toggle_sweep(self, sweep: str) -> None:
        self.set_sweep_collapsed(sweep, not self.model().is_collapsed(sweep))

    def set_sweep_collapsed(self, sweep: str, collapsed: bool) -> None:
        """Collapse or expand a sweep; a trial that was current hands that to the header."""
        model = self.model()
        current = model.execution(self.currentIndex().row()) if self.currentIndex().isValid() else None
        model.set_collapsed(sweep, collapsed)
        header = model.header_index(sweep)
        if collapsed and current is not None and current.sweep == sweep and header.isValid():
            self.select_only(header)

    def keyPressEvent(self, event: QtGui.QKeyEvent) -> None:
        """Left / Right collapse / expand a sweep like a tree (Left on a trial goes to its header)."""
        key = event.key()
        idx = self.currentIndex()
        if key in (Qt.Key_Left, Qt.Key_Right) and idx.isValid() and not event.modifiers() & ~Qt.KeypadModifier:
            model = self.model()
            sweep = model.sweep_at(idx.row())
            ex = model.execution(idx.row())
            if sweep is not None:
                collapsed = model.is_collapsed(sweep)
                if key == Qt.Key_Left and not collapsed:
                    self.set_sweep_collapsed(sweep, True)
                elif key == Qt.Key_Right and collapsed:
                    self.set_sweep_collapsed(sweep, False)
                elif key == Qt.Key_Right:
                    self.select_only(model.index(idx.row() + 1, 0))
                event.accept()
                return
            if ex is not None and ex.sweep and key == Qt.Key_Left:
                header = model.header_index(ex.sweep)
                if header.isValid():
                    self.select_only(header)
                    self.scrollTo(header)
                event.accept()
                return
        super().keyPressEvent(event)

    def _on_context_menu(self, pos: QtCore.QPoint) -> None:
        idx = self.indexAt(pos)
        if idx.isValid() and not self.selectionModel().isSelected(idx):
            self.select_only(idx)
        if self.selected_ids():
            self.menuRequested.emit(self.viewport().mapToGlobal(pos), None)

    def _on_dots(self, index: QtCore.QModelIndex, global_pos: QtCore.QPoint) -> None:
        """The three dots: a menu for that row (all selected rows if it is one of them);
        the selection stays as it is."""
        ids = self.model().ids_at(index.row())
        if not ids:
            return
        targets = None if self.selectionModel().isSelected(index) else ids
        self.menuRequested.emit(global_pos, targets)

    def mouseMoveEvent(self, event: QtGui.QMouseEvent) -> None:
        pos = event.position().toPoint()
        idx = self.indexAt(pos)
        on = idx.isValid() and self.delegate.dots_rect(self.visualRect(idx)).contains(pos)
        new = QtCore.QPersistentModelIndex(idx) if on else QtCore.QPersistentModelIndex()
        on_cmp = idx.isValid() and bool(idx.data(SweepRole)) and \
            self.delegate.compare_rect(self.visualRect(idx)).contains(pos)
        new_cmp = QtCore.QPersistentModelIndex(idx) if on_cmp else QtCore.QPersistentModelIndex()
        for attr, value in (("hover_dots", new), ("hover_compare", new_cmp)):
            old = getattr(self.delegate, attr)
            if value != old:
                setattr(self.delegate, attr, value)
                for i in (old, value):
                    if i.isValid():
                        self.viewport().update(self.visualRect(self.model().index(i.row(), 0)))
        if on_cmp:
            self.viewport().setCursor(Qt.PointingHandCursor)
        else:
            self.viewport().unsetCursor()
        super().mouseMoveEvent(event)

    def leaveEvent(self, event) -> None:
        if self.delegate.hover_dots.isValid() or self.delegate.hover_compare.isValid():
            self.delegate.hover_dots = QtCore.QPersistentModelIndex()
            self.delegate.hover_compare = QtCore.QPersistentModelIndex()
            self.viewport().update()
        super().leaveEvent(event)


class UndoBar(QtWidgets.QFrame):
    """"Removed 2 executions  [Undo]" with a shrinking line for the time left."""

    undo = Signal()
    expired = Signal()

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("undoBar")
        self.label = QtWidgets.QLabel(self)
        self.label.setObjectName("undoLabel")
        self.label.setTextFormat(Qt.PlainText)
        self.button = QtWidgets.QPushButton("Undo", self)
        self.button.setObjectName("undoButton")
        self.button.setCursor(Qt.PointingHandCursor)
        self.button.clicked.connect(self._on_undo)
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(12, 8, 8, 10)
        layout.setSpacing(8)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.button)
        self._timer = QtCore.QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._on_expired)
        self._tick = QtCore.QTimer(self)
        self._tick.setInterval(50)
        self._tick.timeout.connect(self.update)
        self._deadline = 0.0
        self._seconds = 5.0
        self.hide()

    def start(self, text: str, seconds: float) -> None:
        self.label.setText(text)
        self._seconds = max(0.5, float(seconds))
        self._deadline = time.monotonic() + self._seconds
        self._timer.start(int(self._seconds * 1000))
        self._tick.start()
        self.show()

    def is_pending(self) -> bool:
        return self._timer.isActive()

    def _on_undo(self) -> None:
        self._timer.stop()
        self._tick.stop()
        self.hide()
        self.undo.emit()

    def _on_expired(self) -> None:
        self._tick.stop()
        self.hide()
        self.expired.emit()

    def finish_now(self) -> None:
        """Let the removal happen now (the window closes, or another removal comes)."""
        if self._timer.isActive():
            self._timer.stop()
            self._on_expired()

    def paintEvent(self, event) -> None:
        p = QtGui.QPainter(self)
        p.setRenderHint(QtGui.QPainter.Antialiasing)
        bg = QtGui.QColor("#323841")
        p.fillRect(self.rect(), bg)
        left = max(0.0, self._deadline - time.monotonic()) / self._seconds
        p.fillRect(QtCore.QRectF(0, self.height() - 3, self.width() * left, 3), QtGui.QColor("#6aa8ff"))
        p.end()

    def showEvent(self, event) -> None:
        self.label.setStyleSheet("color: #f2f4f7;")
        self.button.setStyleSheet(
            "QPushButton { color: #8cc0ff; font-weight: 600; background: transparent; border: none;"
            " padding: 4px 10px; } QPushButton:hover { background: rgba(255,255,255,0.08); border-radius: 4px; }"
        )
        super().showEvent(event)


def spinner_phase() -> float:
    return (time.monotonic() * 1.1) % 1.0


__all__ = ["ExecutionDelegate", "ExecutionList", "UndoBar", "paint_status_icon", "status_icon",
           "spinner_phase"]
