"""The filter box over the execution sidebar: hides the rows that do not match (name, state, host, parameter).

A sweep's header stays while any of its trials matches (collapsed or not)."""

from __future__ import annotations

from mldesk.engine.values import Execution
from mldesk.ui import fmt
from mldesk.ui.qt import QtCore, QtWidgets


def matches(ex: Execution, text: str) -> bool:
    """Every word of ``text`` appears (case-insensitively) in the name, id, state, host,
    runtime, arguments or sweep (``sweep ID``) of ``ex``."""
    hay = " ".join([ex.name, ex.id, ex.state, fmt.STATE_LABELS.get(ex.state, ex.state), ex.host or "",
                    ex.runtime or "", fmt.params_line(ex), ex.reason or "",
                    f"sweep {ex.sweep}" if getattr(ex, "sweep", None) else ""]).lower()
    return all(word in hay for word in text.lower().split())


class SidebarFilter(QtCore.QObject):
    """Applies ``edit``'s text to ``view``'s rows (those loaded so far), now and as rows change."""

    def __init__(self, edit: QtWidgets.QLineEdit, view: QtWidgets.QListView):
        super().__init__(edit)
        self.edit, self.view = edit, view
        model = view.model()
        edit.textChanged.connect(self.apply)
        for signal in (model.rowsInserted, model.rowsRemoved, model.modelReset, model.dataChanged):
            signal.connect(lambda *_a: self.apply())

    def apply(self) -> None:
        text = self.edit.text().strip()
        model = self.view.model()
        for row in range(model.rowCount()):
            if not text:
                self.view.setRowHidden(row, False)
                continue
            sweep = model.sweep_at(row)
            group = model.group(sweep) if sweep is not None else None
            if group is not None:
                hide = not any(matches(t, text) for t in group.trials)
            else:
                ex = model.execution(row)
                hide = ex is None or not matches(ex, text)
            self.view.setRowHidden(row, hide)

    def visible_ids(self) -> list[str]:
        model = self.view.model()
        return [model.execution(r).id for r in range(model.rowCount())
                if not self.view.isRowHidden(r) and model.execution(r) is not None]
