"""RunOptions: the typed options of an execution read every stored row (older ones,
newer ones with keys this version does not know) and write the same JSON as before."""

from __future__ import annotations

import json
import time

import pytest

from mldesk.agent import inputs
from mldesk.core.runopts import RunOptions
from mldesk.core.store import Execution, Store

# what Engine.run stored before RunOptions existed (a local process run, then an SSH one)
OLD_LOCAL = {
    "gpus": 0, "slurm_gpus": 0, "host_gpus": [], "grace": 10.0, "network": "bridge", "max_parallel": 0,
    "host_profile": None, "input_timeout": 30.0, "input_retries": 4, "input_max_bytes": 50 * 1024 ** 3,
    "input_min_rate": 1024, "keep_workspace": False, "max_output_files": None,
    "max_output_file_bytes": None, "max_output_bytes": None,
    "metrics": {"patterns": [], "builtin": True},
}
# an early store's row: fewer keys (no slurm_gpus, no inputs limits, no metrics)
OLDEST = {"gpus": [1], "grace": 3.5, "network": "none", "max_parallel": 2,
          "host_profile": {"name": "box", "hostname": "10.0.0.2"}}


def test_defaults_are_the_ones_the_runtimes_used():
    o = RunOptions()
    assert (o.grace, o.network, o.input_timeout, o.input_retries, o.sample_interval, o.docker_wait) == \
        (10.0, "bridge", 30.0, 4, 2.0, 600.0)
    assert o.gpu_ids is None and o.host_profile is None and o.extra == {}
    # the same limits as the downloader's own defaults (not imported there: import cost)
    assert o.input_max_bytes == inputs.DEFAULT_MAX_BYTES and o.input_min_rate == inputs.DEFAULT_MIN_RATE


def test_a_row_of_this_format_round_trips_to_the_same_json():
    o = RunOptions.from_json(OLD_LOCAL)
    assert o.metrics == {"patterns": [], "builtin": True} and o.input_min_rate == 1024 and o.extra == {}
    assert o.to_json() == OLD_LOCAL
    assert json.loads(json.dumps(o.to_json())) == OLD_LOCAL


def test_an_old_row_with_fewer_keys_takes_the_defaults():
    o = RunOptions.from_json(OLDEST)
    assert o.gpus == [1] and o.grace == 3.5 and o.network == "none" and o.max_parallel == 2
    assert o.host_profile == {"name": "box", "hostname": "10.0.0.2"}
    assert o.slurm_gpus == 0 and o.input_retries == 4 and o.metrics is None and o.keep_workspace is False
    assert RunOptions.from_json(None) == RunOptions() == RunOptions.from_json({})


def test_unknown_keys_are_kept_and_written_back():
    row = dict(OLD_LOCAL, slurm_reservation="maint", future={"x": 1})
    o = RunOptions.from_json(row)
    assert o.extra == {"slurm_reservation": "maint", "future": {"x": 1}}
    assert not hasattr(o, "slurm_reservation")
    assert o.to_json() == row


def test_a_sweep_trials_slurm_array_is_stored_only_when_set():
    o = RunOptions.from_json(OLD_LOCAL)
    assert o.slurm_array is None and "slurm_array" not in o.to_json()
    arr = {"id": "s1", "index": 2, "size": 4, "parallel": 2}
    o = o.replace(slurm_array=arr)
    assert o.to_json()["slurm_array"] == arr and RunOptions.from_json(o.to_json()).slurm_array == arr


def test_values_are_taken_as_stored():
    """No coercion on reading: the runtimes decide what a None means, as before."""
    o = RunOptions.from_json({"input_timeout": None, "input_retries": None, "sample_interval": 0})
    assert o.input_timeout is None and o.input_retries is None and o.sample_interval == 0


def test_supervisor_fields_are_stored_only_when_set():
    o = RunOptions.from_json(OLD_LOCAL)
    assert o.to_json().keys() == OLD_LOCAL.keys()
    ctx_opts = o.replace(snapshot="ab" * 12, runtime="process", gpu_ids=[0])
    assert ctx_opts.to_json() == dict(OLD_LOCAL, snapshot="ab" * 12, runtime="process", gpu_ids=[0])
    assert RunOptions(docker_wait=5.0, python="/usr/bin/python3").to_json()["docker_wait"] == 5.0
    assert o.snapshot is None  # replace made a new value


def test_frozen():
    o = RunOptions()
    with pytest.raises(AttributeError):  # (dataclasses.FrozenInstanceError is one)
        o.grace = 1.0  # type: ignore[misc]


def test_an_old_row_in_a_store_loads(tmp_path):
    """A row as an earlier mldesk wrote it (the options column is plain JSON)."""
    store = Store(tmp_path / "mldesk.db")
    try:
        ex = Execution(id="20250101-000000-old01", name="old", lab="/lab", host="local", runtime="process",
                       image=None, hardware="cpu", state="finished", exit_code=0, reason=None,
                       created_at=time.time(), started_at=None, finished_at=None, snapshot="ab" * 12)
        store.insert_execution(ex)
        store.conn.execute("UPDATE executions SET options = ? WHERE id = ?",
                           (json.dumps(dict(OLDEST, gone_key=True)), ex.id))
        o = RunOptions.from_json(store.get(ex.id).options)
    finally:
        store.close()
    assert o.gpus == [1] and o.grace == 3.5 and o.input_timeout == 30.0 and o.extra == {"gone_key": True}
