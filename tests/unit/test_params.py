"""Parameters, overrides and sweeps (mldesk.core.params)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mldesk.core.params import (
    ParamError, apply_overrides, describe, flags, grid_size, params, parse_set, parse_sweep, trials,
)

ARGV = ["--lr=0.1", "--epochs", "10", "-x", "data.csv", "--neg", "-1", "--verbose", "--flag"]


def test_params_of_each_form():
    assert params(ARGV) == {"lr": "0.1", "epochs": "10", "x": "data.csv", "neg": "-1", "verbose": "", "flag": ""}
    assert [f.form for f in flags(ARGV)] == ["eq", "sep", "sep", "sep", "alone", "alone"]
    assert params(["pos", "--a=", "--b=c=d", "-", "--"]) == {"a": "", "b": "c=d"}


def test_overrides_keep_each_form():
    out = apply_overrides(ARGV, {"lr": "0.5", "epochs": "20", "verbose": "2"})
    assert out == ["--lr=0.5", "--epochs", "20", "-x", "data.csv", "--neg", "-1", "--verbose", "2", "--flag"]
    assert params(out)["lr"] == "0.5" and params(out)["verbose"] == "2"
    assert apply_overrides(["--lr=1", "--lr", "2"], {"lr": "3"}) == ["--lr=3", "--lr", "3"]


def test_unknown_override_lists_known_names():
    with pytest.raises(ParamError, match=r"unknown parameter 'lrr' \(known: lr, epochs, x, neg, verbose, flag\)"):
        apply_overrides(ARGV, {"lrr": "1"})
    with pytest.raises(ParamError, match="no parameters"):
        apply_overrides([], {"lr": "1"})


def test_parse_set():
    assert parse_set(["lr=0.1", "--epochs=5", "s=a=b", "e="]) == {"lr": "0.1", "epochs": "5", "s": "a=b", "e": ""}
    for bad in ("lr", "=1", "--=1"):
        with pytest.raises(ParamError):
            parse_set([bad])


def test_describe():
    assert describe({"lr": "0.1", "epochs": "5"}) == "lr=0.1 epochs=5"


@pytest.mark.parametrize("spec,name,values", [
    ("lr=[0.1,0.01]", "lr", ["0.1", "0.01"]),
    ("lr=[0.1, 0.01, 0.001]", "lr", ["0.1", "0.01", "0.001"]),
    ("lr=0.1, 0.01", "lr", ["0.1", "0.01"]),
    ("epochs=1:5", "epochs", ["1", "2", "3", "4", "5"]),
    ("epochs=1:10:3", "epochs", ["1", "4", "7", "10"]),
    ("lr=0.1:0.5:0.1", "lr", ["0.1", "0.2", "0.3", "0.4", "0.5"]),
    ("epochs=range(1,5)", "epochs", ["1", "2", "3", "4"]),
    ("epochs=range(3)", "epochs", ["0", "1", "2"]),
    ("epochs=range(10, 0, -4)", "epochs", ["10", "6", "2"]),
    ("opt=['adam', \"sgd w\"]", "opt", ["adam", "sgd w"]),
    ("--lr=0.1", "lr", ["0.1"]),
    ("model=resnet:v2", "model", ["resnet:v2"]),
    ("url=http://a:8080/x", "url", ["http://a:8080/x"]),
    ("lr=[0.1,0.1]", "lr", ["0.1"]),
    ("epochs=1..3", "epochs", ["1", "2", "3"]),
    ("lr=0..1 step 0.25", "lr", ["0", "0.25", "0.5", "0.75", "1"]),
    ("lr=0..1 by 0.5", "lr", ["0", "0.5", "1"]),
    ("epochs=range[1:5:2]", "epochs", ["1", "3", "5"]),
    ("epochs=range[1:3]", "epochs", ["1", "2", "3"]),
])
def test_parse_sweep(spec, name, values):
    assert parse_sweep(spec) == (name, values)


@pytest.mark.parametrize("spec", ["lr", "=[1]", "lr=", "lr=[]", "lr=[1", "e=5:1", "e=1:5:0", "e=range(1.5,3)",
                                  "e=range()", "e=0:1000000", "e=range(1,2,3,4)", "lr=['a"])
def test_bad_sweeps(spec):
    with pytest.raises(ParamError):
        parse_sweep(spec)


def test_grid_random_and_cap():
    axes = [parse_sweep("lr=[0.1,0.01]"), parse_sweep("epochs=[5,10]")]
    assert grid_size(axes) == 4
    assert trials(axes) == [{"lr": "0.1", "epochs": "5"}, {"lr": "0.1", "epochs": "10"},
                            {"lr": "0.01", "epochs": "5"}, {"lr": "0.01", "epochs": "10"}]
    assert trials(axes, max_trials=3) == trials(axes)[:3]
    picked = trials(axes, random=3, seed=7)
    assert len(picked) == 3 and all(p in trials(axes) for p in picked) and len({tuple(p.items()) for p in picked}) == 3
    assert sorted(map(str, trials(axes, random=10))) == sorted(map(str, trials(axes)))
    assert len(trials(axes, random=3, max_trials=2)) == 2
    with pytest.raises(ParamError, match="twice"):
        trials([("a", ["1"]), ("a", ["2"])])
    with pytest.raises(ParamError):
        trials(axes, max_trials=0)


def test_huge_grid_is_not_materialized():
    axes = [(f"p{i}", [str(v) for v in range(10)]) for i in range(12)]  # 10**12 combinations
    assert grid_size(axes) == 10 ** 12
    assert len(trials(axes, random=5, seed=1)) == 5
    assert len(trials(axes, max_trials=5)) == 5


WORDS = st.text(alphabet="ab-=01.", min_size=0, max_size=6)


@settings(max_examples=300, deadline=None)
@given(st.lists(WORDS, max_size=8), st.text(alphabet="xyz019.", max_size=4))
def test_overrides_change_only_the_named_flag(argv, value):
    found = params(argv)
    for name in found:
        out = apply_overrides(argv, {name: value})
        got = params(out)
        assert got[name] == value or _swallows(value)
        assert {k: v for k, v in got.items() if k != name} == {k: v for k, v in found.items() if k != name} \
            or _swallows(value)


def _swallows(value: str) -> bool:
    return value.startswith("-")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_sweep_parser_never_crashes(spec):
    try:
        name, values = parse_sweep(spec)
    except ParamError:
        return
    assert name and values
