"""The Run with… dialog: overrides for one run, sweeps, the count preview, validation."""

from __future__ import annotations

import pytest

from mldesk.ui.qt import QtWidgets, Qt
from mldesk.ui.runwith import RunWithDialog, SweepValueError, parse_values, sweep_specs, trial_count

PARAMS = [("lr", "0.01"), ("epochs", "10"), ("optimizer", "adam")]


@pytest.fixture
def dialog(qtbot):
    d = RunWithDialog(PARAMS, lab_name="mnist")
    qtbot.addWidget(d)
    d.show()
    return d


def test_lists_the_labs_parameters_with_their_values(dialog):
    assert list(dialog.rows) == ["lr", "epochs", "optimizer"]
    assert [r.edit.text() for r in dialog.rows.values()] == ["0.01", "10", "adam"]
    assert dialog.value() == {"overrides": {}}
    assert not any(r.error.isVisible() for r in dialog.rows.values())


def test_overrides_for_one_run(qtbot, dialog):
    edit = dialog.rows["lr"].edit
    edit.selectAll()
    qtbot.keyClicks(edit, "0.1")
    assert dialog.default_name() == "lr=0.1"
    assert "lr=0.1" in dialog.preview.text()
    qtbot.mouseClick(dialog.run_button, Qt.LeftButton)
    assert dialog.result() == QtWidgets.QDialog.Accepted
    assert dialog.result_value() == {"overrides": {"lr": "0.1"}}


def test_no_error_before_typing_then_inline(qtbot, dialog):
    edit = dialog.rows["epochs"].edit
    assert not dialog.rows["epochs"].error.isVisible()
    edit.selectAll()
    qtbot.keyClick(edit, Qt.Key_Backspace)  # cleared by the user
    assert dialog.rows["epochs"].error.isVisible()
    assert "Enter a value" in dialog.rows["epochs"].error.text()
    assert not dialog.run_button.isEnabled()
    qtbot.keyClicks(edit, "20")
    assert not dialog.rows["epochs"].error.isVisible()
    assert dialog.run_button.isEnabled()


def test_sweep_grid_with_count_preview(qtbot, dialog):
    dialog.sweep_button.click()
    assert dialog.sweep_box.isVisible()
    assert "1 trial" in dialog.preview.text()
    dialog.set_value("lr", "0.1, 0.01, 0.001")
    dialog.set_value("epochs", "5:15:5")
    assert dialog.trial_count() == 9
    assert "9 trials" in dialog.preview.text() and "3 \u00d7 3" in dialog.preview.text()
    assert dialog.rows["lr"].count.text() == "\u00d7 3"
    dialog.max_spin.setValue(4)
    assert dialog.trial_count() == 4 and "capped" in dialog.preview.text()
    qtbot.mouseClick(dialog.run_button, Qt.LeftButton)
    assert dialog.result_value() == {
        "sweep": {"lr": ["0.1", "0.01", "0.001"], "epochs": ["5", "10", "15"]},
        "random": None, "max_trials": 4,
    }


def test_sweep_random_combinations(qtbot, dialog):
    dialog.set_sweep(True)
    dialog.set_value("lr", "1:10")
    dialog.set_value("optimizer", "adam, sgd")
    dialog.random_radio.setChecked(True)
    dialog.random_spin.setValue(5)
    assert dialog.trial_count() == 5
    assert "5 trials" in dialog.preview.text() and "20 combinations" in dialog.preview.text()
    dialog.accept()
    value = dialog.result_value()
    assert value["random"] == 5 and value["max_trials"] == 100
    assert value["sweep"] == {"lr": [str(i) for i in range(1, 11)], "optimizer": ["adam", "sgd"]}


def test_sweep_bad_list_is_shown_and_blocks_run(qtbot, dialog):
    dialog.set_sweep(True)
    edit = dialog.rows["lr"].edit
    edit.selectAll()
    qtbot.keyClicks(edit, "[0.1, 0.2")  # no closing ]
    assert dialog.rows["lr"].error.isVisible()
    assert not dialog.run_button.isEnabled()
    assert "Fix the values" in dialog.preview.text()
    dialog.accept()
    assert dialog.result_value() is None and dialog.isVisible()


def test_cancel_gives_nothing(qtbot, dialog):
    dialog.set_value("lr", "0.5")
    dialog.reject()
    assert dialog.result_value() is None


@pytest.mark.parametrize("text, values", [
    ("0.1, 0.01, 0.001", ["0.1", "0.01", "0.001"]),
    ("[0.1,0.01]", ["0.1", "0.01"]),
    ("1:4", ["1", "2", "3", "4"]),
    ("0:1:0.25", ["0", "0.25", "0.5", "0.75", "1"]),  # whole values as the program gets them
    ("0.1:0.3:0.1", ["0.1", "0.2", "0.3"]),
    ("range(4)", ["0", "1", "2", "3"]),
    ("range(10, 0, -4)", ["10", "6", "2"]),
    ("adam, 'sgd'", ["adam", "sgd"]),
    ("['a,b', c]", ["a,b", "c"]),
    ("1, 1, 2", ["1", "2"]),
    ("http://host:80", ["http://host:80"]),
    ("7", ["7"]),
])
def test_parse_values(text, values):
    assert parse_values(text) == values


@pytest.mark.parametrize("text", ["", "[1,,", "1:5:0", "0:1000000:0.001", "range(1.5, 3)", "5:1", "[1, 2"])
def test_parse_values_rejects(text):
    with pytest.raises(SweepValueError):
        parse_values(text)


SPECS = ["0.1, 0.01, 0.001", "[0.1,0.01]", "1:4", "0:1:0.25", "0.1:0.3:0.1", "1e-3:3e-3:1e-3", "range(4)",
         "range(10, 0, -4)", "adam, 'sgd'", "['a,b', c]", "1, 1, 2", "http://host:80", "7", "-1:1:0.5",
         "", "[1,,", "1:5:0", "range(1.5, 3)", "5:1", "[1, 2", "0:100000:1"]


@pytest.mark.parametrize("text", SPECS)
def test_same_reading_as_the_cli(text):
    """The dialog reads every value list exactly as `mldesk run --sweep` does."""
    from mldesk.core.params import ParamError, parse_sweep

    try:
        cli = parse_sweep(f"p={text}")[1]
    except ParamError:
        cli = None
    try:
        ours = parse_values(text)
    except SweepValueError:
        ours = None
    assert ours == cli


def test_sweep_specs_read_back_by_the_cli():
    from mldesk.core.params import parse_sweep

    sweep = {"lr": ["0.1", "0.01"], "opt": ["adam", "it's", "a,b", "x y"]}
    assert [parse_sweep(spec) for spec in sweep_specs(sweep)] == list(sweep.items())


def test_trial_count():
    assert trial_count({"a": ["1", "2"], "b": ["1", "2", "3"]}, None, 100) == (6, 6)
    assert trial_count({"a": ["1", "2"], "b": ["1", "2", "3"]}, 4, 100) == (4, 6)
    assert trial_count({"a": ["1", "2"], "b": ["1", "2", "3"]}, None, 5) == (5, 6)
    assert trial_count({}, None, 10) == (1, 1)


def test_a_lab_without_parameters(qtbot):
    d = RunWithDialog([])
    qtbot.addWidget(d)
    d.set_sweep(True)
    d.accept()
    assert d.result_value() == {"sweep": {}, "random": None, "max_trials": 100}


def test_ask_returns_the_choice(qtbot):
    from mldesk.ui.qt import QtCore

    def fill():
        d = next(w for w in QtWidgets.QApplication.topLevelWidgets()
                 if isinstance(w, RunWithDialog) and w.isVisible())
        d.set_value("epochs", "20")
        d.accept()

    QtCore.QTimer.singleShot(0, fill)
    assert RunWithDialog.ask(PARAMS) == {"overrides": {"epochs": "20"}}
