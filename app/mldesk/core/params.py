"""Parameters of an execution: the flags of its ``pass-as`` arguments, overrides
(``--set NAME=VALUE``) and sweeps (grids or random picks of several values). Pure
functions, no I/O.

A parameter is a flag in the program's arguments, named without its dashes:
``--lr=0.1`` and ``--lr 0.1`` are ``lr`` = ``"0.1"``; ``-x`` alone is ``x`` = ``""``.
Values are strings, exactly as they are passed. A word after a flag is its value
unless it starts with ``-`` and is not a number (then the flag stands alone).
Words that belong to no flag (positional arguments) are not parameters.

Sweep grammar, one ``NAME=VALUES`` per parameter:

- ``lr=[0.1, 0.01, 0.001]`` or ``lr=0.1,0.01,0.001``: these values (quotes around
  an item are removed: ``opt=['adam', "sgd"]``);
- ``epochs=1:5`` / ``lr=0.1:0.5:0.1``: ``START:STOP[:STEP]``, STOP included when the
  steps reach it (STEP defaults to 1; numbers may be floats);
- ``epochs=1..5`` / ``lr=0.1..0.5 step 0.1`` and Guild's ``range[1:5]`` /
  ``range[0:1:0.25]``: the same, ends included (the Run-with dialog's forms);
- ``epochs=range(1,5)`` / ``range(10,0,-2)``: Python's range, STOP excluded (integers);
- ``lr=0.1``: a single value.

The trials are the grid (every combination, the first parameter varying slowest) or,
with ``random=N``, N distinct combinations picked at random; ``max_trials`` caps
either.
"""

from __future__ import annotations

import itertools
import math
import re
import shlex
from typing import Iterable, Sequence

from mldesk.agent.errors import UserError
from mldesk.core.value import FrozenValue

MAX_VALUES = 10_000  # values of one parameter's range


class ParamError(UserError):
    """A user-facing problem with an override or a sweep."""


class Flag(FrozenValue):
    _fields = __slots__ = ("name", "value", "at", "form")

    def __init__(self, name: str, value: str, at: int, form: str):
        self._set("name", name)
        self._set("value", value)
        self._set("at", at)  # index of the flag's word in argv
        self._set("form", form)  # "eq" (--lr=0.1), "sep" (--lr 0.1), "alone" (-x)


# patterns, compiled on first use (re caches them): most runs never look at one, and
# compiling them cost ~0.6 ms of every CLI start
_NUMBER = r"(?i)[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|[-+]?(inf|nan)"


def _is_number(word: str) -> bool:
    return bool(re.fullmatch(_NUMBER, word))


def _flag_name(word: str) -> str | None:
    if word.startswith("--"):
        name = word[2:]
    elif word.startswith("-") and len(word) > 1 and not _is_number(word):
        name = word[1:]
    else:
        return None
    return name or None


def flags(argv: Sequence[str]) -> list[Flag]:
    """The flags of an argument list, in order."""
    out: list[Flag] = []
    i = 0
    n = len(argv)
    while i < n:
        word = argv[i]
        name = _flag_name(word)
        if name is None:
            i += 1
            continue
        if "=" in name:
            key, value = name.split("=", 1)
            if key:
                out.append(Flag(key, value, i, "eq"))
            i += 1
            continue
        if i + 1 < n and (_flag_name(argv[i + 1]) is None):
            out.append(Flag(name, argv[i + 1], i, "sep"))
            i += 2
            continue
        out.append(Flag(name, "", i, "alone"))
        i += 1
    return out


def params(argv: Sequence[str]) -> dict[str, str]:
    """``{flag name: value}`` of an argument list (a repeated flag: its last value)."""
    return {f.name: f.value for f in flags(argv)}


def parse_set(items: Iterable[str]) -> dict[str, str]:
    """``["lr=0.1", "--epochs=5"]`` -> ``{"lr": "0.1", "epochs": "5"}``."""
    out: dict[str, str] = {}
    for item in items:
        name, eq, value = item.partition("=")
        name = name.strip().lstrip("-")
        if not eq or not name:
            raise ParamError(f"'{item}' is not NAME=VALUE (e.g. --set lr=0.1)")
        out[name] = value
    return out


def _unknown(names: Iterable[str], known: Sequence[str]) -> None:
    missing = [n for n in names if n not in known]
    if missing:
        listed = ", ".join(dict.fromkeys(known)) or "none: the lab's ml.yaml has no parameters"
        raise ParamError(f"unknown parameter{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(repr(m) for m in missing)} (known: {listed})")


def apply_overrides(argv: Sequence[str], overrides: dict[str, str]) -> list[str]:
    """``argv`` with the values of the named flags replaced (every occurrence, each
    keeping its form; a flag that stood alone gets its value as the next word).
    An unknown name is a ParamError listing the known ones."""
    found = flags(argv)
    _unknown(overrides, [f.name for f in found])
    out = list(argv)
    inserts: list[tuple[int, str]] = []
    for f in found:
        if f.name not in overrides:
            continue
        value = str(overrides[f.name])
        if f.form == "eq":
            prefix = out[f.at][: len(out[f.at]) - len(f.name) - len(f.value) - 1]
            out[f.at] = f"{prefix}{f.name}={value}"
        elif f.form == "sep":
            out[f.at + 1] = value
        else:
            inserts.append((f.at + 1, value))
    for at, value in reversed(inserts):
        out.insert(at, value)
    return out


def describe(overrides: dict[str, str]) -> str:
    """A default name that says what changed: ``lr=0.1 epochs=5``."""
    return " ".join(f"{k}={v}" for k, v in overrides.items())


# -- sweeps ---------------------------------------------------------------------------
def _fmt(x) -> str:
    """A range value as the program gets it: ``0.25``, and ``1`` rather than ``1.0``."""
    if isinstance(x, int):
        return str(x)
    x = round(x, 12)
    return str(int(x)) if x.is_integer() else repr(x)


def _num(text: str, spec: str) -> float | int:
    t = text.strip()
    try:
        return int(t)
    except ValueError:
        pass
    try:
        v = float(t)
    except ValueError:
        raise ParamError(f"'{t}' in '{spec}' is not a number") from None
    if not math.isfinite(v):
        raise ParamError(f"'{t}' in '{spec}' is not a finite number")
    return v


def _steps(start, stop, step, spec: str, inclusive: bool) -> list[str]:
    if step == 0:
        raise ParamError(f"the step in '{spec}' is 0")
    count = (stop - start) / step
    if count < 0:
        return []
    n = int(math.floor(count + 1e-9)) + 1 if inclusive else int(math.ceil(count - 1e-9))
    if n > MAX_VALUES:
        raise ParamError(f"'{spec}' has {n} values; at most {MAX_VALUES}")
    return [_fmt(start + i * step) for i in range(n)]


def _split_list(body: str) -> list[str]:
    try:
        lex = shlex.shlex(body, posix=True, punctuation_chars=False)
        lex.whitespace = ","
        lex.whitespace_split = True
        items = [t.strip() for t in lex]
    except ValueError as exc:
        raise ParamError(f"cannot read the list '[{body}]': {exc}") from None
    return [t for t in items if t != ""]


_NUM_RE = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_RANGE_DOTS = rf"(?i)\s*(?P<a>{_NUM_RE})\s*\.\.\s*(?P<b>{_NUM_RE})\s*(?:(?:step|by)\s+(?P<s>\S+)\s*)?"
_RANGE_GUILD = r"(?i)\s*range\s*\[\s*(?P<a>[^:\]]+):(?P<b>[^:\]]+)(?::(?P<s>[^:\]]+))?\s*\]\s*"


def _is_range(body: str) -> bool:
    parts = body.split(":")
    return len(parts) in (2, 3) and all(re.fullmatch(_NUMBER, p.strip()) for p in parts)


def parse_sweep(spec: str) -> tuple[str, list[str]]:
    """``"lr=[0.1,0.01]"`` -> ``("lr", ["0.1", "0.01"])`` (see the module docstring)."""
    name, eq, body = spec.partition("=")
    name = name.strip().lstrip("-")
    body = body.strip()
    if not eq or not name:
        raise ParamError(f"'{spec}' is not NAME=VALUES (e.g. --sweep 'lr=[0.1,0.01]')")
    if not body:
        raise ParamError(f"'{spec}' has no values")
    dots = re.fullmatch(_RANGE_DOTS, body)
    guild = re.fullmatch(_RANGE_GUILD, body)
    m = re.fullmatch(r"range\((.*)\)", body)
    if dots or guild:
        g = dots or guild
        nums = [_num(g.group("a"), spec), _num(g.group("b"), spec)]
        step = _num(g.group("s"), spec) if g.group("s") else 1
        values = _steps(nums[0], nums[1], step, spec, inclusive=True)
    elif m:
        parts = [p for p in m.group(1).split(",")]
        if not 1 <= len(parts) <= 3:
            raise ParamError(f"'{spec}': range takes 1 to 3 numbers: range(START, STOP[, STEP])")
        nums = [_num(p, spec) for p in parts]
        if not all(isinstance(v, int) for v in nums):
            raise ParamError(f"'{spec}': range takes whole numbers; use START:STOP:STEP for fractions")
        if len(nums) == 1:
            nums = [0, nums[0]]
        values = _steps(nums[0], nums[1], nums[2] if len(nums) == 3 else 1, spec, inclusive=False)
    elif body.startswith("["):
        if not body.endswith("]"):
            raise ParamError(f"'{spec}': the list has no closing ]")
        values = _split_list(body[1:-1])
    elif _is_range(body):
        nums = [_num(p, spec) for p in body.split(":")]
        values = _steps(nums[0], nums[1], nums[2] if len(nums) == 3 else 1, spec, inclusive=True)
    else:
        values = _split_list(body)
    if not values:
        raise ParamError(f"'{spec}' gives no values")
    return name, list(dict.fromkeys(values))


def grid_size(axes: Sequence[tuple[str, Sequence[str]]]) -> int:
    return math.prod(len(v) for _, v in axes) if axes else 0


def trials(axes: Sequence[tuple[str, Sequence[str]]], *, random: int | None = None,
           max_trials: int | None = None, seed: int | None = None) -> list[dict[str, str]]:
    """The trials of a sweep: one ``{name: value}`` per execution."""
    if not axes:
        return []
    names = [n for n, _ in axes]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ParamError(f"parameter '{dup}' is swept twice; give all its values in one --sweep")
    total = grid_size(axes)
    limit = total
    if random is not None:
        if random < 1:
            raise ParamError("--random needs a number of trials >= 1")
        limit = min(limit, random)
    if max_trials is not None:
        if max_trials < 1:
            raise ParamError("--max-trials needs a number >= 1")
        limit = min(limit, max_trials)
    if random is None:
        combos = itertools.islice(itertools.product(*[v for _, v in axes]), limit)
        return [dict(zip(names, c)) for c in combos]
    import random as _random  # (only sweeps with random picks need it: a lean CLI start)

    rng = _random.Random(seed)
    picks = rng.sample(range(total), limit)
    out = []
    for index in picks:
        combo = []
        for _, values in reversed(axes):
            index, r = divmod(index, len(values))
            combo.append(values[r])
        out.append(dict(zip(names, reversed(combo))))
    return out
