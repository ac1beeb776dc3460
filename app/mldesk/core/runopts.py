"""``RunOptions``: the typed options of one execution, from ``Engine.run`` through the supervisor to the runtimes.

The store keeps them as JSON (``executions.options``, the same keys as the fields);
``from_json`` reads any stored row, older ones included: a key that is missing takes
the field's default, a value is taken as stored, and keys this version does not know
are kept in ``extra`` and written back by ``to_json`` (a row written by a newer
mldesk loses nothing when this one rewrites it). Runtimes that need one of those
read ``extra``, never a string key of their own.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# = mldesk.agent.inputs.DEFAULT_MAX_BYTES / DEFAULT_MIN_RATE (a test keeps them equal; not
# imported: that module is big and the CLI starts for every command)
DEFAULT_MAX_BYTES = 50 * 1024 ** 3
DEFAULT_MIN_RATE = 1024.0
_STORED = {"stored": True}  # written by Engine.run (always in to_json, as before)


@dataclass(frozen=True)
class RunOptions:
    """One execution's options. Frozen: change one with ``replace``. (Lists and dicts
    inside are plain JSON values; treat them as read-only.)"""

    # GPUs and the host's queue
    gpus: int | list[int] = field(default=0, metadata=_STORED)  # asked for: a count or indices
    slurm_gpus: int = field(default=0, metadata=_STORED)  # Slurm's --gres=gpu:N (the cluster picks)
    host_gpus: list[int] = field(default_factory=list, metadata=_STORED)  # the host's GPU indices
    max_parallel: int | None = field(default=0, metadata=_STORED)  # 0: no limit
    # how it runs
    grace: float = field(default=10.0, metadata=_STORED)  # seconds between TERM and KILL
    network: str = field(default="bridge", metadata=_STORED)
    host_profile: dict[str, Any] | None = field(default=None, metadata=_STORED)  # None: this machine
    # inputs
    input_timeout: float | None = field(default=30.0, metadata=_STORED)
    input_retries: int | None = field(default=4, metadata=_STORED)
    input_max_bytes: int | None = field(default=DEFAULT_MAX_BYTES, metadata=_STORED)
    input_min_rate: float | None = field(default=DEFAULT_MIN_RATE, metadata=_STORED)
    # outputs and the workspace
    keep_workspace: bool = field(default=False, metadata=_STORED)
    max_output_files: int | None = field(default=None, metadata=_STORED)
    max_output_file_bytes: int | None = field(default=None, metadata=_STORED)
    max_output_bytes: int | None = field(default=None, metadata=_STORED)
    metrics: dict[str, Any] | None = field(default=None, metadata=_STORED)  # MetricsConfig.to_dict()
    # set by the supervisor for the runtimes (not stored unless set)
    snapshot: str | None = None
    runtime: str | None = None
    gpu_ids: list[int] | None = None  # the queue's GPUs for it; None: no queue in between
    # rarely set (tests, benchmarks): not stored unless different from the default
    python: str | None = None  # the process runtime's interpreter when the lab has no .venv
    sample_interval: float | None = 2.0  # resource samples, seconds
    docker_wait: float = 600.0  # how long the runner waits for a restarting Docker daemon
    # keys this version does not know, kept as they were
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def replace(self, **changes: Any) -> "RunOptions":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> "RunOptions":
        """The options of a stored row (``None`` or ``{}``: the defaults)."""
        data = dict(data or {})
        known = {f.name for f in dataclasses.fields(cls) if f.name != "extra"}
        values = {k: data.pop(k) for k in list(data) if k in known}
        return cls(**values, extra=data)

    def to_json(self) -> dict[str, Any]:
        """What the store keeps: the fields ``Engine.run`` has always written, the
        others only when set, then the unknown keys read with the row."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if f.metadata.get("stored") or value != _default(f):
                out[f.name] = value
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


__all__ = ["RunOptions"]
