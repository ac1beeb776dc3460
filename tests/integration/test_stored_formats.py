"""Executions stored by an earlier mldesk keep working: their options (a JSON dict in
the store, now read as ``RunOptions``) and their handles (now one type per runtime)
are read as they were written, by real supervisors running real programs."""

from __future__ import annotations

import time

import pytest

from mldesk.core.store import Execution, new_execution_id
from tests.integration.conftest import program_output, wait_final
from tests.integration.test_ssh_run import isolated_home, remote_dir, sshe  # noqa: F401 - fixtures

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
    # keep_workspace false (the setting's default): removed in the cleanup, which comes
    # after the final state is recorded
    deadline = time.monotonic() + 30
    while engine.layout.workspace(ex.id).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not engine.layout.workspace(ex.id).exists()


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


def _wait(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _kill_supervisor(engine, exec_id: str) -> None:
    import os
    import signal

    from tests.integration.test_ssh_run import _alive

    pid = engine.store.get(exec_id).supervisor_pid
    os.kill(pid, signal.SIGKILL)
    _wait(lambda: not _alive(pid), 10, "the supervisor to die")


@pytest.mark.parametrize("runtime", ["process"])
def test_a_process_handle_of_the_previous_version_is_resumed(engine, make_lab, runtime, tmp_path):
    """The supervisor is SIGKILLed while the program runs; the row then holds a handle
    written as the previous version wrote it (a literal dict). A new supervisor reads
    it, continues the copy of the runner's log and records the exit code."""
    go = tmp_path / "go"
    lab = make_lab(f"import os, time\nprint('first', flush=True)\n"
                   f"while not os.path.exists({str(go)!r}):\n    time.sleep(0.05)\n"
                   "print('second', flush=True)\nraise SystemExit(7)\n")
    ex = engine.run(lab, runtime=runtime)
    _wait(lambda: b"first" in program_output(engine, ex.id), 60, "the first line")
    stored = engine.store.get(ex.id).handle
    assert set(stored) == {"exec_id", "root", "runner", "pid", "pgid", "python"}  # the format is unchanged
    _kill_supervisor(engine, ex.id)
    old = {"exec_id": ex.id, "root": str(engine.layout.root), "runner": "process",
           "pid": stored["pid"], "pgid": stored["pgid"], "python": stored["python"]}
    engine.store.update(ex.id, handle=old)
    _wait(lambda: engine.reattach_one(ex.id), 10, "its lock to be free for a new supervisor")
    go.write_text("")
    final = wait_final(engine, ex.id)
    assert final.state == "failed" and final.exit_code == 7, final.reason
    assert program_output(engine, ex.id) == b"first\nsecond\n"


@pytest.mark.ssh
def test_an_ssh_handle_of_the_previous_version_is_resumed(sshe, sshd_server, remote_dir, tmp_path):
    """The same on an SSH host: the new supervisor reaches the host with the profile
    stored in the old handle and follows the host's log from the checkpoint."""
    from tests.integration.test_ssh_run import PRINTER, add_host, expected_printer, lab_in, messages

    add_host(sshe, sshd_server, "box", remote_dir)
    n = 300
    lab = lab_in(tmp_path, PRINTER, f"parameters:\n  - pass-as: '{n} 0.012'\n")
    ex = sshe.run(lab, host="box")
    _wait(lambda: program_output(sshe, ex.id).count(b"\n") > 60, 60, "some output")
    stored = sshe.store.get(ex.id).handle
    assert set(stored) == {"host", "profile", "exec_id", "workdir", "runtime", "keep_workspace", "log_dir",
                           "pid", "pgid"}  # the format is unchanged
    _kill_supervisor(sshe, ex.id)
    old = {"host": "box", "profile": stored["profile"], "exec_id": ex.id, "workdir": stored["workdir"],
           "runtime": "process", "keep_workspace": False, "log_dir": stored["log_dir"],
           "pid": stored["pid"], "pgid": stored["pgid"]}
    sshe.store.update(ex.id, handle=old)
    _wait(lambda: sshe.reattach_one(ex.id), 10, "its lock to be free for a new supervisor")
    final = wait_final(sshe, ex.id, timeout=60)
    assert final.state == "finished", final.reason
    assert program_output(sshe, ex.id) == expected_printer(n)
    assert "mldesk reattached" in messages(sshe, ex.id)
    # cleaned up on the host with the old handle (after the outcome is recorded)
    _wait(lambda: not (remote_dir / "executions" / ex.id).exists(), 30, "the host's copy to be removed")
