"""Handles, one type per runtime: every handle an earlier mldesk stored reads back
into its type and is written out again under the same keys."""

from __future__ import annotations

import json

import pytest

from mldesk.runtimes import get_runtime
from mldesk.runtimes.handles import DockerHandle, LocalHandle, ProcessHandle, SshHandle

# literal handles as the previous version stored them (executions.handle)
OLD_PROCESS = {"exec_id": "20261129-101500-abcde", "root": "/home/u/.local/share/mldesk", "runner": "process",
               "pid": 4242, "pgid": 4242, "python": "/usr/bin/python3"}
OLD_DOCKER = {"exec_id": "20261129-101500-abcdf", "root": "/home/u/.local/share/mldesk", "runner": "docker",
              "container": "3f2a" * 16}
OLD_DOCKER_BEFORE_RUNNERS = {"container": "9c1e" * 16}  # an mldesk without local runners
OLD_SSH = {"host": "box", "profile": {"name": "box", "hostname": "10.0.0.2", "port": 22, "user": "u"},
           "exec_id": "20261129-101500-abcdg", "workdir": "/home/u/.mldesk", "runtime": "process",
           "keep_workspace": False, "log_dir": "/home/me/.local/share/mldesk/executions/20261129-101500-abcdg",
           "pid": 999, "pgid": 999}
OLD_SLURM = {"host": "cluster", "profile": {"name": "cluster"}, "exec_id": "20261129-101500-abcdh",
             "workdir": "/shared/u/.mldesk", "runtime": "slurm", "keep_workspace": True, "log_dir": "/x",
             "slurm_job": 1234, "state": "queued"}


@pytest.mark.parametrize("runtime,data,cls", [
    ("process", OLD_PROCESS, ProcessHandle), ("docker", OLD_DOCKER, DockerHandle),
    ("docker", OLD_DOCKER_BEFORE_RUNNERS, DockerHandle), ("ssh", OLD_SSH, SshHandle), ("ssh", OLD_SLURM, SshHandle),
])
def test_old_handles_load_into_their_runtimes_type_and_round_trip(runtime, data, cls):
    h = get_runtime(runtime).load_handle(json.loads(json.dumps(data)))
    assert type(h) is cls and h.extra == {}
    assert h.to_json() == data


def test_fields_and_properties():
    p = ProcessHandle.from_json(OLD_PROCESS)
    assert (p.pid, p.pgid, p.root, p.runner, p.container) == (4242, 4242, OLD_PROCESS["root"], "process", None)
    assert not p.legacy and not p.in_scheduler and not p.queued
    legacy = DockerHandle.from_json(OLD_DOCKER_BEFORE_RUNNERS)
    assert legacy.legacy and legacy.container == "9c1e" * 16 and legacy.exec_id is None
    s = SshHandle.from_json(OLD_SSH)
    assert s.remote_exec_dir == "/home/u/.mldesk/executions/20261129-101500-abcdg"
    assert not s.in_scheduler and not s.queued and s.slurm_job is None
    j = SshHandle.from_json(OLD_SLURM)
    assert j.in_scheduler and j.queued and j.keep_workspace
    assert not j.replace(state="running").queued and j.queued  # frozen: replace makes a new one
    assert SshHandle.from_json({"exec_id": "x"}).remote_exec_dir is None  # no workdir
    with pytest.raises(AttributeError):  # (dataclasses.FrozenInstanceError is one)
        p.pid = 1  # type: ignore[misc]


def test_not_started_is_no_handle():
    for name in ("process", "docker", "ssh"):
        assert get_runtime(name).load_handle({}) is None
        assert get_runtime(name).load_handle(None) is None


def test_unknown_keys_are_kept():
    data = dict(OLD_SSH, array_task=3, future={"a": 1})
    h = SshHandle.from_json(data)
    assert h.extra == {"array_task": 3, "future": {"a": 1}} and h.to_json() == data


def test_a_new_handle_writes_only_what_is_set():
    assert LocalHandle(exec_id="e", root="/r", runner="process", pid=5).to_json() == \
        {"exec_id": "e", "root": "/r", "runner": "process", "pid": 5}
    assert SshHandle(exec_id="e", host="h", workdir="/w").to_json() == \
        {"exec_id": "e", "host": "h", "workdir": "/w", "keep_workspace": False}
