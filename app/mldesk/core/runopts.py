"""``RunOptions``: the typed options of one execution, from ``Engine.run`` through the supervisor to the runtimes.

The store keeps them as JSON (``executions.options``, the same keys as the fields);
``from_json`` reads any stored row, older ones included: a key that is missing takes
the field's default, a value is taken as stored, and keys this version does not know
are kept in ``extra`` and written back by ``to_json`` (a row written by a newer
mldesk loses nothing when this one rewrites it). Runtimes that need one of those
read ``extra``, never a string key of their own.
"""

from __future__ import annotations

from typing import Any

from mldesk.core.value import FrozenValue

# = mldesk.agent.inputs.DEFAULT_MAX_BYTES / DEFAULT_MIN_RATE (a test keeps them equal; not
# imported: that module is big and the CLI starts for every command)
DEFAULT_MAX_BYTES = 50 * 1024 ** 3
DEFAULT_MIN_RATE = 1024.0
# written by Engine.run: always in to_json, as before (the other fields only when they
# differ from __init__'s default)
_STORED = frozenset({
    "gpus", "slurm_gpus", "host_gpus", "max_parallel", "grace", "network", "host_profile",
    "input_timeout", "input_retries", "input_max_bytes", "input_min_rate", "keep_workspace",
    "max_output_files", "max_output_file_bytes", "max_output_bytes", "metrics",
})


class RunOptions(FrozenValue):
    """One execution's options. Frozen: change one with ``replace``. (Lists and dicts
    inside are plain JSON values; treat them as read-only.)"""

    _fields = (
        "gpus", "slurm_gpus", "host_gpus", "max_parallel", "grace", "network", "host_profile",
        "input_timeout", "input_retries", "input_max_bytes", "input_min_rate", "keep_workspace",
        "max_output_files", "max_output_file_bytes", "max_output_bytes", "metrics",
        "snapshot", "runtime", "gpu_ids", "slurm_array", "python", "sample_interval", "docker_wait",
        "extra",
    )
    __slots__ = _fields
    _no_compare = frozenset({"extra"})

    def __init__(
        self,
        # GPUs and the host's queue
        gpus: int | list[int] = 0,  # asked for: a count or indices
        slurm_gpus: int = 0,  # Slurm's --gres=gpu:N (the cluster picks)
        host_gpus: list[int] | None = None,  # the host's GPU indices (None: [])
        max_parallel: int | None = 0,  # 0: no limit
        # how it runs
        grace: float = 10.0,  # seconds between TERM and KILL
        network: str = "bridge",
        host_profile: dict[str, Any] | None = None,  # None: this machine
        # inputs
        input_timeout: float | None = 30.0,
        input_retries: int | None = 4,
        input_max_bytes: int | None = DEFAULT_MAX_BYTES,
        input_min_rate: float | None = DEFAULT_MIN_RATE,
        # outputs and the workspace
        keep_workspace: bool = False,
        max_output_files: int | None = None,
        max_output_file_bytes: int | None = None,
        max_output_bytes: int | None = None,
        metrics: dict[str, Any] | None = None,  # MetricsConfig.to_dict()
        # set by the supervisor for the runtimes (not stored unless set)
        snapshot: str | None = None,
        runtime: str | None = None,
        gpu_ids: list[int] | None = None,  # the queue's GPUs for it; None: no queue in between
        # a sweep's trial on a Slurm host: one task of the sweep's job array (not stored unless set):
        # {"id": sweep id, "index": i, "size": N, "parallel": K or 0}
        slurm_array: dict[str, Any] | None = None,
        # rarely set (tests, benchmarks): not stored unless different from the default
        python: str | None = None,  # the process runtime's interpreter when the lab has no .venv
        sample_interval: float | None = 2.0,  # resource samples, seconds
        docker_wait: float = 600.0,  # how long the runner waits for a restarting Docker daemon
        # keys this version does not know, kept as they were (None: {}); not compared
        extra: dict[str, Any] | None = None,
    ):
        self._set("gpus", gpus)
        self._set("slurm_gpus", slurm_gpus)
        self._set("host_gpus", [] if host_gpus is None else host_gpus)
        self._set("max_parallel", max_parallel)
        self._set("grace", grace)
        self._set("network", network)
        self._set("host_profile", host_profile)
        self._set("input_timeout", input_timeout)
        self._set("input_retries", input_retries)
        self._set("input_max_bytes", input_max_bytes)
        self._set("input_min_rate", input_min_rate)
        self._set("keep_workspace", keep_workspace)
        self._set("max_output_files", max_output_files)
        self._set("max_output_file_bytes", max_output_file_bytes)
        self._set("max_output_bytes", max_output_bytes)
        self._set("metrics", metrics)
        self._set("snapshot", snapshot)
        self._set("runtime", runtime)
        self._set("gpu_ids", gpu_ids)
        self._set("slurm_array", slurm_array)
        self._set("python", python)
        self._set("sample_interval", sample_interval)
        self._set("docker_wait", docker_wait)
        self._set("extra", {} if extra is None else extra)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> "RunOptions":
        """The options of a stored row (``None`` or ``{}``: the defaults)."""
        data = dict(data or {})
        values = {k: data.pop(k) for k in list(data) if k in cls._fields and k != "extra"}
        return cls(**values, extra=data)

    def to_json(self) -> dict[str, Any]:
        """What the store keeps: the fields ``Engine.run`` has always written, the
        others only when set, then the unknown keys read with the row."""
        out: dict[str, Any] = {}
        for name in self._fields:
            if name == "extra":
                continue
            value = getattr(self, name)
            if name in _STORED or value != getattr(_DEFAULTS, name):
                out[name] = value
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out


_DEFAULTS = RunOptions()  # each field's default, for to_json


__all__ = ["RunOptions"]
