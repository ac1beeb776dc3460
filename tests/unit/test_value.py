"""``mldesk.core.value``: the records on the run path behave as the dataclasses they
replaced (repr, ==, hash, replace, frozen), and nothing ``mldesk run`` imports pulls
in ``dataclasses`` or ``inspect`` (~8 ms of start-up on every run)."""

from __future__ import annotations

import copy
import inspect
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import mldesk
from mldesk.core.labconfig import InputSpec, LabConfig, Problem
from mldesk.core.metricsconfig import MetricsConfig
from mldesk.core.params import Flag
from mldesk.core.runopts import RunOptions
from mldesk.core.snapshots import SnapshotInfo
from mldesk.core.store import Execution, StartClaim
from mldesk.core.value import FrozenValue, Value
from mldesk.engine.events import Event, EventKind
from mldesk.runtimes.base import RunContext
from mldesk.runtimes.handles import DockerHandle, Handle, LocalHandle, ProcessHandle, SshHandle


# -- the base, on classes of its own ------------------------------------------------------
class Point(FrozenValue):
    _fields = __slots__ = ("x", "y")

    def __init__(self, x, y=0):
        self._set("x", x)
        self._set("y", y)


class Point3(Point):
    __slots__ = ("z", "note")
    _fields = Point._fields + __slots__
    _no_compare = frozenset({"note"})

    def __init__(self, x, y=0, z=0, note=None):
        Point.__init__(self, x, y)
        self._set("z", z)
        self._set("note", note)


class Box(Value):
    _fields = __slots__ = ("items", "label")

    def __init__(self, items=None, label=""):
        self.items = [] if items is None else items
        self.label = label


def test_repr_like_a_dataclass():
    assert repr(Point(1, "a")) == "Point(x=1, y='a')"
    assert repr(Point3(1, note={"k": 1})) == "Point3(x=1, y=0, z=0, note={'k': 1})"
    assert repr(Box()) == "Box(items=[], label='')"


def test_eq_compares_the_fields_of_the_same_class_only():
    assert Point(1, 2) == Point(1, 2) and not Point(1, 2) != Point(1, 2)
    assert Point(1, 2) != Point(1, 3)
    assert Point(1, 2) != Point3(1, 2)  # a subclass is another class (as dataclasses)
    assert Point(1, 2) != (1, 2)
    assert Point(1, 2).__eq__((1, 2)) is NotImplemented
    assert Point3(1, 2, 3, note="a") == Point3(1, 2, 3, note="b")  # _no_compare
    assert Point3(1, 2, 3) != Point3(1, 2, 4)
    assert Box([1], "a") == Box([1], "a") != Box([2], "a")


def test_frozen_values_hash_and_mutable_ones_do_not():
    assert hash(Point(1, 2)) == hash(Point(1, 2))
    assert len({Point(1, 2), Point(1, 2), Point(2, 1)}) == 2
    assert hash(Point3(1, note="a")) == hash(Point3(1, note=["unhashable"]))  # _no_compare
    with pytest.raises(TypeError):
        hash(Point([1]))  # a list inside (as a frozen dataclass)
    assert Box.__hash__ is None
    with pytest.raises(TypeError):
        hash(Box())


def test_frozen_refuses_assignment():
    p = Point(1, 2)
    with pytest.raises(AttributeError, match="cannot assign to field 'x'"):
        p.x = 5  # type: ignore[misc]
    with pytest.raises(AttributeError, match="cannot delete field 'x'"):
        del p.x
    with pytest.raises(AttributeError):
        p.other = 1  # type: ignore[attr-defined]
    assert p == Point(1, 2)
    b = Box()
    b.label = "changed"  # mutable
    assert b.label == "changed"
    with pytest.raises(AttributeError):  # slots: no attribute besides the fields
        b.typo = 1  # type: ignore[attr-defined]


def test_replace():
    p = Point3(1, 2, 3, note="n")
    r = p.replace(z=9)
    assert type(r) is Point3 and (r.x, r.y, r.z, r.note) == (1, 2, 9, "n") and p.z == 3
    b = Box([1], "a")
    assert b.replace(label="b") == Box([1], "b") and b.label == "a"
    with pytest.raises(TypeError, match="nope"):
        p.replace(nope=1)
    with pytest.raises(TypeError):
        Point(1).replace(z=1)  # Point3's field, not Point's


def test_to_dict_and_copies():
    b = Box([1, 2], "a")
    assert b.to_dict() == {"items": [1, 2], "label": "a"}
    assert b.to_dict()["items"] is b.items  # shallow
    assert list(Point3(1).to_dict()) == ["x", "y", "z", "note"]
    for value in (Point3(1, [2], note={"k": 1}), b):
        for other in (copy.copy(value), copy.deepcopy(value), pickle.loads(pickle.dumps(value))):
            assert type(other) is type(value) and other == value and repr(other) == repr(value)


# -- mldesk's records ---------------------------------------------------------------------
CLASSES = [
    RunOptions, InputSpec, Problem, LabConfig, Flag, MetricsConfig, SnapshotInfo, StartClaim, Execution,  # core
    Event, RunContext,  # engine, runtimes
    Handle, LocalHandle, ProcessHandle, DockerHandle, SshHandle,  # handles
]
MUTABLE = {StartClaim, Execution, Event, RunContext}


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_fields_are_the_init_parameters_and_the_slots(cls):
    params = list(inspect.signature(cls).parameters)
    assert tuple(params) == cls._fields
    slots = [s for k in cls.__mro__ for s in k.__dict__.get("__slots__", ())]
    assert sorted(slots) == sorted(cls._fields)  # every field a slot, once; no __dict__
    assert not hasattr(cls(**{p: 0 for p in params}), "__dict__")
    values = {p: object() for p in params}  # each parameter lands in its own field
    obj = cls(**values)
    assert all(getattr(obj, p) is values[p] for p in params)
    assert issubclass(cls, Value) and issubclass(cls, FrozenValue) == (cls not in MUTABLE)
    if cls in MUTABLE:
        with pytest.raises(TypeError):
            hash(obj)


def test_problems_sort_by_their_fields_in_order():
    a = Problem(2, 1, "b", "", "error")
    b = Problem(1, 9, "z", "", "warning")
    c = Problem(2, 1, "a", "", "error")
    d = Problem(2, 1, "a", "h", "error")
    assert sorted([a, b, c, d]) == [b, c, d, a]
    assert b < a and a > b and c <= c and d >= c and not a < a
    with pytest.raises(TypeError):
        assert a < (2, 1, "b", "", "error")


def test_core_records():
    assert repr(InputSpec("data.csv", "u")) == "InputSpec(name='data.csv', url='u')"
    assert StartClaim(True).gpus == [] and StartClaim(True).gpus is not StartClaim(True).gpus
    assert RunOptions(extra={"k": 1}) == RunOptions() and RunOptions().extra is not RunOptions().extra
    assert hash(LabConfig()) == hash(LabConfig()) and LabConfig().metrics == MetricsConfig()
    assert len({Flag("lr", "1", 0, "eq"), Flag("lr", "1", 0, "eq")}) == 1
    with pytest.raises(TypeError):
        RunOptions().replace(gpu=1)


def test_engine_records():
    ctx = RunContext("x", "n", Path("l"), Path("w"), [], None, "cpu", {})
    assert ctx.options == RunOptions()
    ctx.options = ctx.options.replace(gpu_ids=[0])  # mutable: the supervisor does this
    assert ctx.options.gpu_ids == [0]
    assert Event(EventKind.LOG, "x").records == [] and Event(EventKind.LOG, "x") == Event(EventKind.LOG, "x")


def test_handles():
    assert ProcessHandle("x", pid=1) != DockerHandle("x", pid=1) and LocalHandle("x") != Handle("x")
    assert SshHandle("x", {"new": 1}, host="h") == SshHandle("x", host="h")  # extra is not compared
    assert hash(DockerHandle("x", {"a": 1})) == hash(DockerHandle("x"))
    assert repr(Handle("x")) == "Handle(exec_id='x', extra={})"
    r = SshHandle("x", {"k": 1}, state="queued").replace(state="running")
    assert type(r) is SshHandle and r.state == "running" and r.extra == {"k": 1}


RUN_PATH = ("mldesk.cli.main, mldesk.engine.facade, mldesk.engine.supervisor, mldesk.runtimes, "
            "mldesk.runtimes.local.docker, mldesk.runtimes.handles")


def _imported(code: str) -> set[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(mldesk.__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", code], env=env, capture_output=True,
                         text=True, timeout=60, check=True)
    names = set()
    for line in out.stderr.splitlines():  # "import time: self [us] | cumulative | name"
        if line.startswith("import time:") and line.count("|") == 2:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


def test_the_run_path_imports_neither_dataclasses_nor_inspect():
    names = _imported(f"import {RUN_PATH}") - _imported("pass")  # (less what the interpreter's site imports)
    assert {"mldesk.runtimes.handles", "mldesk.core.value"} <= names  # (the parsing works)
    assert not names & {"dataclasses", "inspect"}, sorted(names)
