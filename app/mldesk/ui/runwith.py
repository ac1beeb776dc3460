"""The "Run with…" dialog: parameter overrides for one run, or a sweep.

Given the lab's parameters as ``[(flag, value), ...]`` (flag = the option name
without dashes, value = the lab's value as a string), the dialog lets the user

* **Single run**: edit values; :meth:`RunWithDialog.result_value` gives
  ``{"overrides": {flag: str}}`` (only the values that differ from the lab's);
* **Sweep**: per parameter a value list (``0.1, 0.01, 0.001`` or ``[0.1, 0.01]``) or
  a range (``1:5``, ``0.1:0.5:0.1``, ``range(1, 5)``): the CLI's ``--sweep`` grammar,
  expanded to the grid or N random combinations, capped by "max trials"; gives
  ``{"sweep": {flag: [str, ...]}, "random": N | None, "max_trials": N}`` (only the
  parameters whose values differ from the lab's); :func:`sweep_specs` turns the
  ``sweep`` part into ``engine.run_sweep``'s specs.

The lab's ml.yaml is never changed. Problems are shown inline under the field,
only once the user has typed in it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from mldesk.ui.qt import QtGui, QtWidgets, Qt, Signal, monospace_font
from mldesk.ui.widgets import is_dark

DEFAULT_MAX_TRIALS = 100



class SweepValueError(ValueError):
    """A value list or range that cannot be read (the message is for the user)."""


def parse_values(text: str) -> list[str]:
    """The values a sweep field stands for, as strings; raises :class:`SweepValueError`.

    The CLI's ``--sweep`` grammar, read by the same code (``mldesk.engine.parse_sweep``):
    ``0.1, 0.01`` / ``[0.1, 0.01]`` (quotes around an item are removed) -> these
    values; ``1:5`` / ``0.1:0.5:0.1`` -> START:STOP[:STEP], STOP included when the
    steps reach it; ``range(1, 5)`` -> Python's range (integers, STOP excluded);
    anything else -> one value. Repeated values count once.
    """
    from mldesk.engine import ParamError, parse_sweep

    body = text.strip()
    if not body:
        raise SweepValueError("enter a value, a list like 0.1, 0.01 or a range like 1:5")
    try:
        return parse_sweep(f"p={body}")[1]
    except ParamError as exc:
        # the engine's message names the whole spec ('p=...'); the field is the spec here
        message = str(exc).replace(f"'p={body}': ", "").replace(f" in 'p={body}'", "").replace(f"'p={body}' ", "")
        raise SweepValueError(message[:1].upper() + message[1:] if message else "cannot read the values") from None


def sweep_specs(sweep: dict[str, list[str]]) -> list[str]:
    """``{"lr": ["0.1", "0.01"]}`` -> ``["lr=['0.1','0.01']"]``: the CLI's ``--sweep``
    specs for ``engine.run_sweep`` / ``engine.sweep_preview``, quoted so that any value
    reads back unchanged."""
    def q(v: str) -> str:
        return "'" + v.replace("'", "'\"'\"'") + "'" if "'" in v else "'" + v + "'"
    return [f"{name}=[{','.join(q(v) for v in values)}]" for name, values in sweep.items()]


def trial_count(sweep: dict[str, list[str]], random: int | None, max_trials: int) -> tuple[int, int]:
    """(trials that would run, size of the full grid)."""
    grid = math.prod(len(v) for v in sweep.values()) if sweep else 1
    n = min(grid, random) if random else grid
    return min(n, max_trials), grid


class _ParamRow:
    def __init__(self, dialog: "RunWithDialog", flag: str, value: str):
        self.flag, self.lab_value = flag, value
        self.label = QtWidgets.QLabel(f"--{flag}", dialog)
        self.label.setFont(monospace_font())
        self.edit = QtWidgets.QLineEdit(value, dialog)
        self.edit.setObjectName(f"param_{flag}")
        self.edit.setFont(monospace_font())
        self.edit.setToolTip(f"The lab's value: {value}" if value else "The lab gives no value")
        self.edit.setPlaceholderText(value or "(no value)")
        self.edit.setClearButtonEnabled(True)
        self.count = QtWidgets.QLabel(dialog)
        self.count.setMinimumWidth(self.count.fontMetrics().horizontalAdvance("× 10000"))
        self.count.setForegroundRole(QtGui.QPalette.PlaceholderText)
        self.error = QtWidgets.QLabel(dialog)
        self.error.setObjectName(f"error_{flag}")
        self.error.setWordWrap(True)
        self.error.hide()
        self.reset = QtWidgets.QToolButton(dialog)
        self.reset.setText("\u21ba")
        self.reset.setAutoRaise(True)
        self.reset.setToolTip(f"Back to the lab's value ({value})")
        self.reset.clicked.connect(self._reset)
        self.touched = False
        self.edit.textEdited.connect(self._touch)

    def _touch(self, _text: str) -> None:
        self.touched = True

    def _reset(self) -> None:
        self.edit.setText(self.lab_value)
        self.touched = True


class RunWithDialog(QtWidgets.QDialog):
    """Parameter overrides for one run, or a sweep. ``exec()`` then :meth:`result_value`.

    Signals: ``previewChanged(str)`` whenever the count/name preview changes.
    """

    previewChanged = Signal(str)

    def __init__(self, params: Sequence[tuple[str, str]], parent: QtWidgets.QWidget | None = None, *,
                 lab_name: str = "", sweep: bool = False, max_trials: int = DEFAULT_MAX_TRIALS):
        super().__init__(parent)
        self.setObjectName("runWithDialog")
        self.setWindowTitle("Run with\u2026")
        self.setModal(True)
        self.params = [(str(f), "" if v is None else str(v)) for f, v in params]
        self._result: dict | None = None

        title = QtWidgets.QLabel(f"Run {lab_name} with\u2026" if lab_name else "Run with\u2026", self)
        f = title.font()
        f.setPointSizeF(f.pointSizeF() + 3)
        f.setWeight(QtGui.QFont.DemiBold)
        title.setFont(f)
        sub = QtWidgets.QLabel("Values for this execution only: the lab's ml.yaml is not changed.", self)
        sub.setForegroundRole(QtGui.QPalette.PlaceholderText)

        self.single_button = QtWidgets.QPushButton("Single run", self)
        self.sweep_button = QtWidgets.QPushButton("Sweep", self)
        self.mode_group = QtWidgets.QButtonGroup(self)
        for i, b in enumerate((self.single_button, self.sweep_button)):
            b.setCheckable(True)
            b.setAutoDefault(False)
            self.mode_group.addButton(b, i)
        self.single_button.setChecked(True)
        self.mode_group.idToggled.connect(lambda _i, on: on and self._mode_changed())
        modes = QtWidgets.QHBoxLayout()
        modes.setSpacing(0)
        modes.addWidget(self.single_button)
        modes.addWidget(self.sweep_button)
        modes.addStretch(1)

        self.hint = QtWidgets.QLabel(self)
        self.hint.setWordWrap(True)
        self.hint.setForegroundRole(QtGui.QPalette.PlaceholderText)

        grid_host = QtWidgets.QWidget(self)
        grid = QtWidgets.QGridLayout(grid_host)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setHorizontalSpacing(8)
        grid.setVerticalSpacing(2)
        grid.setColumnStretch(1, 1)
        self.rows: dict[str, _ParamRow] = {}
        for i, (flag, value) in enumerate(self.params):
            row = _ParamRow(self, flag, value)
            self.rows[flag] = row
            grid.addWidget(row.label, 2 * i, 0)
            grid.addWidget(row.edit, 2 * i, 1)
            grid.addWidget(row.count, 2 * i, 2)
            grid.addWidget(row.reset, 2 * i, 3)
            grid.addWidget(row.error, 2 * i + 1, 1, 1, 3)
            row.edit.textChanged.connect(self._validate)
        if not self.params:
            none = QtWidgets.QLabel("This lab has no parameters. Add some to ml.yaml under <code>parameters:</code>.", self)
            none.setTextFormat(Qt.RichText)
            grid.addWidget(none, 0, 0, 1, 4)
        scroll = QtWidgets.QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QtWidgets.QFrame.NoFrame)
        scroll.setWidget(grid_host)
        scroll.setMinimumHeight(min(320, 40 + 34 * max(1, len(self.params))))

        self.sweep_box = QtWidgets.QGroupBox("Sweep", self)
        self.grid_radio = QtWidgets.QRadioButton("Every combination (grid)", self.sweep_box)
        self.random_radio = QtWidgets.QRadioButton("Random combinations:", self.sweep_box)
        self.grid_radio.setChecked(True)
        self.random_spin = QtWidgets.QSpinBox(self.sweep_box)
        self.random_spin.setObjectName("randomTrials")
        self.random_spin.setRange(1, 100_000)
        self.random_spin.setValue(10)
        self.random_spin.setEnabled(False)
        self.random_radio.toggled.connect(self.random_spin.setEnabled)
        self.max_spin = QtWidgets.QSpinBox(self.sweep_box)
        self.max_spin.setObjectName("maxTrials")
        self.max_spin.setRange(1, 100_000)
        self.max_spin.setValue(max_trials)
        sweep_layout = QtWidgets.QGridLayout(self.sweep_box)
        sweep_layout.addWidget(self.grid_radio, 0, 0, 1, 2)
        sweep_layout.addWidget(self.random_radio, 1, 0)
        sweep_layout.addWidget(self.random_spin, 1, 1)
        sweep_layout.addWidget(QtWidgets.QLabel("Max trials:", self.sweep_box), 2, 0)
        sweep_layout.addWidget(self.max_spin, 2, 1)
        sweep_layout.setColumnStretch(2, 1)
        for w in (self.grid_radio, self.random_radio):
            w.toggled.connect(self._validate)
        for s in (self.random_spin, self.max_spin):
            s.valueChanged.connect(self._validate)

        self.preview = QtWidgets.QLabel(self)
        self.preview.setObjectName("runWithPreview")
        self.preview.setWordWrap(True)
        self.preview.setTextFormat(Qt.RichText)

        self.buttons = QtWidgets.QDialogButtonBox(self)
        self.run_button = self.buttons.addButton("Run", QtWidgets.QDialogButtonBox.AcceptRole)
        self.run_button.setDefault(True)
        self.buttons.addButton(QtWidgets.QDialogButtonBox.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)

        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(18, 16, 18, 14)
        layout.setSpacing(8)
        layout.addWidget(title)
        layout.addWidget(sub)
        layout.addSpacing(4)
        layout.addLayout(modes)
        layout.addWidget(self.hint)
        layout.addWidget(scroll, 1)
        layout.addWidget(self.sweep_box)
        layout.addWidget(self.preview)
        layout.addWidget(self.buttons)
        self.resize(560, self.sizeHint().height())
        if sweep:
            self.sweep_button.setChecked(True)
        self._mode_changed()

    # ------------------------------------------------------------ API
    @classmethod
    def ask(cls, params: Sequence[tuple[str, str]], parent: QtWidgets.QWidget | None = None,
            **kwargs) -> dict | None:
        """Show the dialog modally; the choice (see :meth:`value`) or None when cancelled."""
        dialog = cls(params, parent, **kwargs)
        try:
            return dialog.result_value() if dialog.exec() == QtWidgets.QDialog.Accepted else None
        finally:
            dialog.deleteLater()

    def is_sweep(self) -> bool:
        return self.sweep_button.isChecked()

    def set_sweep(self, on: bool) -> None:
        (self.sweep_button if on else self.single_button).setChecked(True)

    def set_value(self, flag: str, text: str) -> None:
        """Type ``text`` into a parameter's field (as the user would)."""
        row = self.rows[flag]
        row.touched = True
        row.edit.setText(text)

    def errors(self) -> dict[str, str]:
        """Problems per flag (whether shown yet or not)."""
        errs = {}
        for flag, row in self.rows.items():
            err = self._row_error(row)
            if err:
                errs[flag] = err
        return errs

    def overrides(self) -> dict[str, str]:
        return {flag: row.edit.text().strip() for flag, row in self.rows.items()
                if row.edit.text().strip() != row.lab_value}

    def sweep_values(self) -> dict[str, list[str]]:
        out = {}
        for flag, row in self.rows.items():
            try:
                values = parse_values(row.edit.text()) if row.edit.text().strip() else [row.lab_value]
            except SweepValueError:
                continue
            if values != [row.lab_value]:
                out[flag] = values
        return out

    def random_trials(self) -> int | None:
        return self.random_spin.value() if self.random_radio.isChecked() else None

    def max_trials(self) -> int:
        return self.max_spin.value()

    def trial_count(self) -> int:
        return trial_count(self.sweep_values(), self.random_trials(), self.max_trials())[0]

    def default_name(self) -> str:
        """What the execution's name would say changed (``lr=0.1, epochs=20``)."""
        if self.is_sweep():
            sweep = self.sweep_values()
            return ", ".join(f"{k}=[{','.join(v)}]" if len(v) > 1 else f"{k}={v[0]}" for k, v in sweep.items())
        return ", ".join(f"{k}={v}" for k, v in self.overrides().items())

    def value(self) -> dict:
        """The current choice in the documented shape (also valid before accept)."""
        if self.is_sweep():
            return {"sweep": self.sweep_values(), "random": self.random_trials(), "max_trials": self.max_trials()}
        return {"overrides": self.overrides()}

    def result_value(self) -> dict | None:
        """The choice once accepted; None when cancelled."""
        return self._result

    def accept(self) -> None:
        if self.errors():
            for row in self.rows.values():
                row.touched = True
            self._validate()
            return
        if self.is_sweep() and self.trial_count() < 1:
            return
        self._result = self.value()
        super().accept()

    # ------------------------------------------------------------ internals
    def _mode_changed(self) -> None:
        sweep = self.is_sweep()
        self.sweep_box.setVisible(sweep)
        if sweep:
            self.hint.setText("One value, a list <code>0.1, 0.01, 0.001</code>, or a range <code>1:5</code>, "
                              "<code>0.1:0.5:0.1</code> (stop included), <code>range(1, 5)</code>: "
                              "as with mldesk run --sweep.")
        else:
            self.hint.setText("Change any value; the execution's name will say what changed.")
        self.hint.setTextFormat(Qt.RichText)
        self.run_button.setText("Run sweep" if sweep else "Run")
        self._validate()
        self.layout().activate()
        if self.height() < self.sizeHint().height():
            self.resize(self.width(), self.sizeHint().height())

    def _row_error(self, row: _ParamRow) -> str:
        text = row.edit.text().strip()
        if not text:
            return "" if not row.lab_value else f"Enter a value (the lab's is {row.lab_value})."
        if self.is_sweep():
            try:
                parse_values(text)
            except SweepValueError as exc:
                return str(exc)[0].upper() + str(exc)[1:] + "."
        return ""

    def _validate(self) -> None:
        sweep = self.is_sweep()
        dark = is_dark(self)
        error_color = "#ff8a80" if dark else "#b3261e"
        any_error = False
        for row in self.rows.values():
            err = self._row_error(row)
            any_error = any_error or bool(err)
            show = bool(err) and row.touched
            row.error.setText(err)
            row.error.setStyleSheet(f"color: {error_color};")
            row.error.setVisible(show)
            row.edit.setStyleSheet(f"QLineEdit {{ border: 1px solid {error_color}; }}" if show else "")
            changed = row.edit.text().strip() != row.lab_value
            font = row.label.font()
            font.setBold(changed)
            row.label.setFont(font)
            row.reset.setVisible(changed)
            count = ""
            if sweep and not err:
                n = len(parse_values(row.edit.text())) if row.edit.text().strip() else 1
                count = f"\u00d7 {n}" if n > 1 else ""
            row.count.setText(count)
            row.count.setVisible(sweep)
        if sweep:
            trials, grid = trial_count(self.sweep_values(), self.random_trials(), self.max_trials())
            random = self.random_trials()
            sizes = [len(v) for v in self.sweep_values().values()]
            shape = " \u00d7 ".join(str(s) for s in sizes) if sizes else "1"
            if any_error:
                text = "Fix the values marked above to see how many trials would run."
            elif random:
                text = f"<b>{trials} trial{'s' if trials != 1 else ''}</b> picked at random from {grid:,} combinations ({shape})"
            else:
                text = f"<b>{trials} trial{'s' if trials != 1 else ''}</b> ({shape} grid)"
            if not any_error and trials < min(grid, random or grid):
                text += f", capped by max trials ({self.max_trials()})"
            if not any_error and grid == 1:
                text += " \u2014 give a parameter several values to sweep it"
            self.preview.setText(text)
            self.run_button.setEnabled(not any_error and trials >= 1)
        else:
            name = self.default_name()
            self.preview.setText(f"Execution name: <b>{_esc(name)}</b>" if name and not any_error
                                 else ("" if any_error else "Same values as the lab."))
            self.run_button.setEnabled(not any_error)
        self.previewChanged.emit(self.preview.text())


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


__all__ = ["RunWithDialog", "parse_values", "sweep_specs", "trial_count", "SweepValueError"]
