"""Handles: what a runtime's ``start`` returns and ``stream``/``stop``/``cleanup`` take, one type per runtime.

The store keeps a handle as JSON (``executions.handle``) and a supervisor that resumes
an execution started by an earlier mldesk reads it back with ``Runtime.load_handle``:
``from_json`` takes the keys as they were written (a missing one is ``None``; keys
this version does not know are kept in ``extra`` and written back); ``to_json``
writes every field that is set, under the same keys as before.
"""

from __future__ import annotations

from typing import Any, TypeVar

from mldesk.core.value import FrozenValue

H = TypeVar("H", bound="Handle")


class Handle(FrozenValue):
    """The common part: which execution. Frozen (a new one with ``replace``)."""

    _fields = ("exec_id", "extra")
    __slots__ = _fields
    _no_compare = frozenset({"extra"})  # (in every subclass too)

    def __init__(self, exec_id: str | None = None,
                 # keys this version does not know, kept as they were (None: {}); not compared
                 extra: dict[str, Any] | None = None):
        self._set("exec_id", exec_id)
        self._set("extra", {} if extra is None else extra)

    @classmethod
    def from_json(cls: type[H], data: dict[str, Any] | None) -> H:
        data = dict(data or {})
        values = {k: data.pop(k) for k in list(data) if k in cls._fields and k != "extra"}
        return cls(**values, extra=data)

    def to_json(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self._fields
               if name != "extra" and getattr(self, name) is not None}
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out

    @property
    def in_scheduler(self) -> bool:
        """Submitted to a scheduler's queue (a Slurm job): started, though it may wait."""
        return False

    @property
    def queued(self) -> bool:
        """Still waiting in that queue when ``start`` returned."""
        return False


class LocalHandle(Handle):
    """A program run on this machine by the agent's runner (``runtimes/local/runner.py``).
    ``root`` (the data folder) is ``None`` for an execution started by an mldesk
    before local runners (its handle was ``{container}`` or ``{pid, pgid}``)."""

    __slots__ = ("root", "runner", "pid", "pgid", "python", "container")
    _fields = Handle._fields + __slots__

    def __init__(self, exec_id: str | None = None, extra: dict[str, Any] | None = None,
                 root: str | None = None,
                 runner: str | None = None,  # the runtime's name: process | docker
                 pid: int | None = None, pgid: int | None = None, python: str | None = None,
                 container: str | None = None):
        Handle.__init__(self, exec_id, extra)
        self._set("root", root)
        self._set("runner", runner)
        self._set("pid", pid)
        self._set("pgid", pgid)
        self._set("python", python)
        self._set("container", container)

    @property
    def legacy(self) -> bool:
        return self.root is None


class ProcessHandle(LocalHandle):
    """The ``process`` runtime's: the program's pid and process group."""

    __slots__ = ()


class DockerHandle(LocalHandle):
    """The ``docker`` runtime's: the container (a legacy one is followed through Docker)."""

    __slots__ = ()


class SshHandle(Handle):
    """The ``ssh`` runtime's (process, docker or slurm on the host): where the agent
    keeps the execution (``workdir``), the host's profile to reach it again, and what
    the agent started (``pid``/``pgid``, ``container``, ``slurm_job`` + its ``state``)."""

    __slots__ = ("host", "profile", "workdir", "runtime", "keep_workspace", "log_dir", "pid", "pgid", "container",
                 "slurm_job", "state")
    _fields = Handle._fields + __slots__

    def __init__(self, exec_id: str | None = None, extra: dict[str, Any] | None = None,
                 host: str | None = None, profile: dict[str, Any] | None = None, workdir: str | None = None,
                 runtime: str | None = None,  # on the host: process | docker | slurm
                 keep_workspace: bool = False, log_dir: str | None = None,
                 pid: int | None = None, pgid: int | None = None, container: str | None = None,
                 slurm_job: int | str | None = None,
                 state: str | None = None):  # a Slurm job's state at submission (queued | running)
        Handle.__init__(self, exec_id, extra)
        self._set("host", host)
        self._set("profile", profile)
        self._set("workdir", workdir)
        self._set("runtime", runtime)
        self._set("keep_workspace", keep_workspace)
        self._set("log_dir", log_dir)
        self._set("pid", pid)
        self._set("pgid", pgid)
        self._set("container", container)
        self._set("slurm_job", slurm_job)
        self._set("state", state)

    @property
    def in_scheduler(self) -> bool:
        # (a Slurm host's: submitted, or a sweep's trial the agent there submits with its job array)
        return bool(self.slurm_job) or self.runtime == "slurm"

    @property
    def queued(self) -> bool:
        return self.state == "queued"

    @property
    def remote_exec_dir(self) -> str | None:
        if self.workdir and self.exec_id:
            return f"{self.workdir}/executions/{self.exec_id}"
        return None


__all__ = ["DockerHandle", "Handle", "LocalHandle", "ProcessHandle", "SshHandle"]
