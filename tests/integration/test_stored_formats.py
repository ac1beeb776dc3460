"""Executions stored by an earlier mldesk keep working: their options (a JSON dict in
the store, now read as ``RunOptions``) and their handles (now one type per runtime)
are read as they were written, by real supervisors running real programs."""

from __future__ import annotations

import time

import pytest

from mldesk.core.store import Execution, new_execution_id
from tests.integration.conftest import program_output, wait_final

# the keys Engine.run has always written (a test of the stored format: none added, none lost)
STORED_KEYS = {"gpus", "slurm_gpus", "host_gpus", "grace", "network", "max_parallel", "host_profile",
               "input_timeout", "input_retries", "input_max_bytes", "input_min_rate", "keep_workspace",
               "max_output_files", "max_output_file_bytes", "max_output_bytes", "metrics"}

PROGRAM = "import sys\nprint('hello from', sys.argv[1:], flush=True)\nopen('outputs/r.txt', 'w').write('ok')\n"


def _insert_old(engine, lab, options: dict) -> Execution:
    """An execution as an earlier mldesk inserted it, waiting for its supervisor."""
    snap = engine.snapshots.create(lab, [])
    now = time.time()
    ex = Execution(id=new_execution_id(now), name="old", lab=str(lab), host="local", runtime="process",
                   image=None, hardware="cpu", state="preparing", exit_code=None, reason=None,
                   created_at=now, started_at=None, finished_at=None, snapshot=snap.id,
                   argv=["--lr=0.1"], options=options)
    engine.layout.execution_dir(ex.id).mkdir(mode=0o700, parents=True, exist_ok=True)
    engine.store.insert_execution(ex)
    return ex


@pytest.mark.parametrize("runtime", ["process"])
def test_engine_run_stores_the_same_option_keys(engine, make_lab, runtime):
    ex = engine.run(make_lab(PROGRAM), runtime=runtime)
    assert set(engine.store.get(ex.id).options) == STORED_KEYS
    final = wait_final(engine, ex.id)
    assert final.state == "finished", final.reason
    assert not engine.layout.workspace(ex.id).exists()  # keep_workspace false (the setting's default)


@pytest.mark.parametrize("runtime", ["process"])
def test_options_row_of_an_earlier_mldesk_runs(engine, make_lab, runtime):
    """An early row: few keys (no input limits, no metrics, no slurm_gpus) and one this
    version does not know. The supervisor runs it with the defaults for the rest."""
    old = {"gpus": 0, "grace": 3.5, "network": "none", "max_parallel": 0, "host_profile": None,
           "keep_workspace": True, "a_future_option": [1, 2]}
    ex = _insert_old(engine, make_lab(PROGRAM), old)
    assert engine.reattach_one(ex.id)
    final = wait_final(engine, ex.id)
    assert final.state == "finished", final.reason
    assert b"hello from ['--lr=0.1']" in program_output(engine, ex.id)
    assert (engine.layout.outputs(ex.id) / "r.txt").read_text() == "ok"
    assert engine.layout.workspace(ex.id).is_dir()  # keep_workspace was read from the old row
    assert engine.store.get(ex.id).options == old  # the row itself is left as it was
