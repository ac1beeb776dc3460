"""Handles: what a runtime's ``start`` returns and ``stream``/``stop``/``cleanup`` take, one type per runtime.

The store keeps a handle as JSON (``executions.handle``) and a supervisor that resumes
an execution started by an earlier mldesk reads it back with ``Runtime.load_handle``:
``from_json`` takes the keys as they were written (a missing one is ``None``; keys
this version does not know are kept in ``extra`` and written back); ``to_json``
writes every field that is set, under the same keys as before.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

H = TypeVar("H", bound="Handle")


@dataclass(frozen=True)
class Handle:
    """The common part: which execution. Frozen (a new one with ``replace``)."""

    exec_id: str | None = None
    # keys this version does not know, kept as they were
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_json(cls: type[H], data: dict[str, Any] | None) -> H:
        data = dict(data or {})
        known = {f.name for f in dataclasses.fields(cls) if f.name != "extra"}
        values = {k: data.pop(k) for k in list(data) if k in known}
        return cls(**values, extra=data)

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name != "extra" and getattr(self, f.name) is not None}
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out

    def replace(self: H, **changes: Any) -> H:
        return dataclasses.replace(self, **changes)

    @property
    def in_scheduler(self) -> bool:
        """Submitted to a scheduler's queue (a Slurm job): started, though it may wait."""
        return False

    @property
    def queued(self) -> bool:
        """Still waiting in that queue when ``start`` returned."""
        return False


@dataclass(frozen=True)
class LocalHandle(Handle):
    """A program run on this machine by the agent's runner (``runtimes/local/runner.py``).
    ``root`` (the data folder) is ``None`` for an execution started by an mldesk
    before local runners (its handle was ``{container}`` or ``{pid, pgid}``)."""

    root: str | None = None
    runner: str | None = None  # the runtime's name: process | docker
    pid: int | None = None
    pgid: int | None = None
    python: str | None = None
    container: str | None = None

    @property
    def legacy(self) -> bool:
        return self.root is None


@dataclass(frozen=True)
class ProcessHandle(LocalHandle):
    """The ``process`` runtime's: the program's pid and process group."""


@dataclass(frozen=True)
class DockerHandle(LocalHandle):
    """The ``docker`` runtime's: the container (a legacy one is followed through Docker)."""


@dataclass(frozen=True)
class SshHandle(Handle):
    """The ``ssh`` runtime's (process, docker or slurm on the host): where the agent
    keeps the execution (``workdir``), the host's profile to reach it again, and what
    the agent started (``pid``/``pgid``, ``container``, ``slurm_job`` + its ``state``)."""

    host: str | None = None
    profile: dict[str, Any] | None = None
    workdir: str | None = None
    runtime: str | None = None  # on the host: process | docker | slurm
    keep_workspace: bool = False
    log_dir: str | None = None
    pid: int | None = None
    pgid: int | None = None
    container: str | None = None
    slurm_job: int | str | None = None
    state: str | None = None  # a Slurm job's state at submission (queued | running)

    @property
    def in_scheduler(self) -> bool:
        return bool(self.slurm_job)

    @property
    def queued(self) -> bool:
        return self.state == "queued"

    @property
    def remote_exec_dir(self) -> str | None:
        if self.workdir and self.exec_id:
            return f"{self.workdir}/executions/{self.exec_id}"
        return None


__all__ = ["DockerHandle", "Handle", "LocalHandle", "ProcessHandle", "SshHandle"]
