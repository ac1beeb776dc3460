"""ml.yaml's ``metrics:`` section as a value (``MetricsConfig``) and the check of a
user pattern, apart from the scanner (``mldesk.core.metrics``, which re-exports them):
validating ml.yaml (``labconfig``, every ``mldesk run``) needs these, not the
scanner's compiled patterns and imports."""

from __future__ import annotations

import re
from typing import Optional, Tuple

from mldesk.core.value import FrozenValue


class MetricsConfigError(ValueError):
    pass


class MetricsConfig(FrozenValue):
    """ml.yaml's ``metrics:`` section (validated by labconfig; stored with each
    execution as ``to_dict()``).

    - ``patterns``: extra regexes (Python syntax) tried on every line before the
      defaults; each has a ``value`` group and either a ``key`` group or a fixed
      ``key`` (then ``(regex, key)``), optionally a ``step`` group.
    - ``replace_defaults``: only ``patterns`` are used (explicit step words still count).
    - ``ignore``: keys (shell-style globs: ``v_num``, ``time/*``) never recorded.
    - ``primary`` / ``goal``: the metric the window shows and compares by; ``goal``
      ``min`` (lower is better) or ``max``.
    """

    _fields = __slots__ = ("patterns", "replace_defaults", "ignore", "primary", "goal")

    def __init__(
        self,
        patterns: Tuple[Tuple[str, Optional[str]], ...] = (),
        replace_defaults: bool = False,
        ignore: Tuple[str, ...] = (),
        primary: Optional[str] = None,
        goal: Optional[str] = None,
    ):
        self._set("patterns", patterns)
        self._set("replace_defaults", replace_defaults)
        self._set("ignore", ignore)
        self._set("primary", primary)
        self._set("goal", goal)

    def to_dict(self) -> dict:
        return {
            "patterns": [[r, k] for r, k in self.patterns],
            "replace_defaults": self.replace_defaults,
            "ignore": list(self.ignore),
            "primary": self.primary,
            "goal": self.goal,
        }

    @classmethod
    def from_dict(cls, d: Optional[dict]) -> "MetricsConfig":
        if not d:
            return cls()
        return cls(
            patterns=tuple((str(r), k) for r, k in d.get("patterns") or ()),
            replace_defaults=bool(d.get("replace_defaults")),
            ignore=tuple(d.get("ignore") or ()),
            primary=d.get("primary"),
            goal=d.get("goal"),
        )

    @property
    def lower_is_better(self) -> bool:
        if self.goal:
            return self.goal == "min"
        return default_goal(self.primary or "") == "min"


def default_goal(key: str) -> str:
    """``min`` for keys that look like losses or errors, else ``max``."""
    k = key.lower()
    return "min" if any(w in k for w in ("loss", "err", "perplexity", "ppl", "mse", "mae", "rmse")) else "max"


def compile_pattern(regex: str, key: Optional[str]) -> "re.Pattern[str]":
    """Check and compile a user pattern; MetricsConfigError says what is wrong."""
    try:
        rx = re.compile(regex)
    except re.error as exc:
        raise MetricsConfigError(f"not a valid regular expression: {exc}") from None
    groups = rx.groupindex
    if "value" not in groups:
        raise MetricsConfigError("the pattern needs a (?P<value>...) group")
    if key is None and "key" not in groups:
        raise MetricsConfigError("the pattern needs a (?P<key>...) group or a fixed key")
    return rx
