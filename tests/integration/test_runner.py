"""Local executions run through the agent's runner (this machine as a host without SSH):
the supervisor can die and be replaced mid-run with no line lost or doubled, the
runner's log is byte-exact on both runtimes, partial lines arrive while the program
runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from mldesk.agent import logstore
from tests.integration.conftest import program_output, wait_final, wait_state
from tests.integration.test_ssh_run import (  # noqa: F401 - fixtures
    PRINTER, _alive, expected_printer, isolated_home, remote_runtime,
)


def wait_for(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def messages(engine, exec_id: str) -> str:
    with engine.log_reader(exec_id) as reader:
        return b"".join(r.data for r in reader.iter_records(0) if r.stream == logstore.MLDESK).decode()


def test_supervisor_killed_mid_run_resumes_exactly(engine, make_lab, runtime):
    """SIGKILL the supervisor twice while the program prints (partial lines too); the
    program keeps running, the reattached supervisors continue from a byte offset of
    the runner's log: the output is exact, the execution finishes normally."""
    n = 400
    lab = make_lab(PRINTER, f"parameters:\n  - pass-as: '{n} 0.01'\n")
    ex = engine.run(lab, runtime=runtime)
    wait_state(engine, ex.id, "running", timeout=60)
    for round_ in range(2):
        wait_for(lambda: program_output(engine, ex.id).count(b"\n") > 80 * (round_ + 1), 30, "some output")
        pid = engine.store.get(ex.id).supervisor_pid
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not _alive(pid), 10, "the supervisor to die")
        time.sleep(0.3)  # the program goes on printing meanwhile
        wait_for(lambda: engine.reattach_one(ex.id), 10, "its lock to be free for a new supervisor")
    final = wait_final(engine, ex.id, timeout=60)
    assert final.state == "finished", final.reason
    assert final.exit_code == 0
    got, want = program_output(engine, ex.id), expected_printer(n)
    if got != want:
        import difflib

        diff = list(difflib.unified_diff(want.decode().splitlines(), got.decode().splitlines(), lineterm="", n=1))
        raise AssertionError("output differs:\n" + "\n".join(diff[:40]))
    assert messages(engine, ex.id).count("mldesk reattached") == 2


RANDOM_BYTES = """
import os, sys
data = open("blob.bin", "rb").read()
out = sys.stdout.buffer
for i in range(0, len(data), 4096):
    out.write(data[i:i + 4096])
out.flush()
sys.stderr.buffer.write(b"\\xff\\xfe err \\x80\\n")
"""


def test_log_is_byte_exact(engine, make_lab, runtime, tmp_path):
    """200 KB of random bytes (invalid UTF-8) come back as the same bytes."""
    blob = os.urandom(200_000)
    lab = make_lab(RANDOM_BYTES)
    (lab / "blob.bin").write_bytes(blob)
    ex = engine.run(lab, runtime=runtime)
    final = wait_final(engine, ex.id, timeout=60)
    assert final.state == "finished", final.reason
    with engine.log_reader(ex.id) as reader:
        records = list(reader.iter_records(0))
    out = b"".join(r.data for r in records if r.stream == logstore.STDOUT)
    err = b"".join(r.data for r in records if r.stream == logstore.STDERR)
    assert out == blob
    assert err == b"\xff\xfe err \x80\n"


PROGRESS = """
import sys, time
sys.stdout.write("epoch 1: 10%")
sys.stdout.flush()
time.sleep(30)
"""


def test_partial_line_is_live(engine, make_lab, runtime):
    """A progress bar without a newline reaches the log while the program runs."""
    lab = make_lab(PROGRESS)
    ex = engine.run(lab, runtime=runtime)
    wait_state(engine, ex.id, "running", timeout=60)
    wait_for(lambda: b"epoch 1: 10%" in program_output(engine, ex.id), 15, "the partial line")
    assert engine.store.get(ex.id).state == "running"
    engine.stop(ex.id)
    final = wait_final(engine, ex.id, timeout=30)
    assert final.state == "stopped"


# -- the same runner on an SSH host ---------------------------------------------------------

def test_ssh_log_is_byte_exact_and_partial_lines_live(mldesk_home, isolated_home, sshd_server, remote_runtime,
                                                      tmp_path):
    """On a host the agent runs the same runner: random bytes come back exact, a
    partial line arrives while the program runs (both runtimes of the host)."""
    from mldesk.engine.facade import Engine
    from tests.integration.test_ssh_run import add_host, lab_in, stop_all

    eng = Engine(mldesk_home)
    eng.set_setting("image_aliases", {"test-python": "mldesk-test/python:latest"})
    eng.set_setting("stop_grace", 5.0)
    remote_dir = tmp_path / "remote-workdir"
    remote_dir.mkdir()
    try:
        add_host(eng, sshd_server, "box", remote_dir, runtime=remote_runtime)
        blob = os.urandom(200_000)
        lab = lab_in(tmp_path, RANDOM_BYTES, name="bytes")
        (lab / "blob.bin").write_bytes(blob)
        ex = eng.run(lab, host="box")
        final = wait_final(eng, ex.id, timeout=90)
        assert final.state == "finished", final.reason
        with eng.log_reader(ex.id) as reader:
            records = list(reader.iter_records(0))
        assert b"".join(r.data for r in records if r.stream == logstore.STDOUT) == blob
        assert b"".join(r.data for r in records if r.stream == logstore.STDERR) == b"\xff\xfe err \x80\n"

        lab = lab_in(tmp_path, PROGRESS, name="progress")
        ex = eng.run(lab, host="box")
        wait_state(eng, ex.id, "running", timeout=90)
        wait_for(lambda: b"epoch 1: 10%" in program_output(eng, ex.id), 20, "the partial line")
        eng.stop(ex.id)
        assert wait_final(eng, ex.id, timeout=60).state == "stopped"
    finally:
        stop_all(eng)
        eng.close()


@pytest.mark.parametrize("runtime", ["docker"])  # the earlier version's handle is a container's
def test_docker_execution_of_an_earlier_mldesk_is_waited_for(engine, make_lab, runtime):
    """A running execution whose handle is the previous version's ({container} only,
    no runner): a new supervisor waits for the container and records its exit code."""
    lab = make_lab("import time\nprint('start', flush=True)\ntime.sleep(2)\nraise SystemExit(3)\n")
    ex = engine.run(lab, runtime=runtime)
    wait_state(engine, ex.id, "running", timeout=60)
    pid = engine.store.get(ex.id).supervisor_pid
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not _alive(pid), 10, "the supervisor to die")
    handle = engine.store.get(ex.id).handle
    engine.store.update(ex.id, handle={"container": handle["container"]})
    wait_for(lambda: engine.reattach_one(ex.id), 10, "its lock to be free for a new supervisor")
    final = wait_final(engine, ex.id, timeout=60)
    assert final.state == "failed" and final.exit_code == 3, final.reason
    assert "earlier mldesk" in messages(engine, ex.id)


def _proc_field(pid: int, key: str) -> str:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return line.split()[1]
    raise AssertionError(f"no {key} for {pid}")


def test_runner_is_forked_from_the_supervisor_holding_none_of_its_files(engine, make_lab, runtime):
    """The local runner is a fork of its supervisor (no interpreter start between the
    workspace and the program), detached in its own session, with none of the
    supervisor's descriptors: not its writer lock (a killed supervisor must free it
    for the next one) nor the store."""
    lab = make_lab("import time\nprint('up', flush=True)\ntime.sleep(60)\n")
    ex = engine.run(lab, runtime=runtime)
    wait_for(lambda: b"up" in program_output(engine, ex.id), 60, "the program's first line")
    sup = engine.store.get(ex.id).supervisor_pid
    status = json.loads((engine.layout.execution_dir(ex.id) / "run" / "status.json").read_text())
    runner_pid = status["agent_pid"]
    assert int(_proc_field(runner_pid, "PPid")) == sup
    with open(f"/proc/{runner_pid}/cmdline", "rb") as a, open(f"/proc/{sup}/cmdline", "rb") as b:
        assert a.read() == b.read()  # the supervisor's own command line: forked, not a new interpreter
    assert os.getsid(runner_pid) == runner_pid
    fd_dir = f"/proc/{runner_pid}/fd"
    targets = [os.readlink(os.path.join(fd_dir, n)) for n in os.listdir(fd_dir)]
    assert not [t for t in targets if t.endswith("writer.lock") or "mldesk.db" in t], targets
    # and the supervisor killed now is replaced: the lock was only ever its own
    os.kill(sup, signal.SIGKILL)
    wait_for(lambda: not _alive(sup), 10, "the supervisor to die")
    wait_for(lambda: engine.reattach_one(ex.id), 10, "its lock to be free for a new supervisor")
    engine.stop(ex.id)
    final = wait_final(engine, ex.id, timeout=60)
    assert final.state == "stopped", final.reason


WAIT_FOR_END = """
import sys
from mldesk.engine.facade import Engine
eng = Engine(sys.argv[1])
eng.fork_supervisors = True  # as the CLI does
ex = eng.run(sys.argv[2], runtime=sys.argv[3])
while not eng.lookup(ex.id).final:  # wakes on news and at the end, never after an hour
    eng.wait_for_change(ex.id, 3600)
print(eng.lookup(ex.id).state)
"""


def test_a_forked_supervisor_wakes_its_follower_when_the_outcome_is_recorded(engine, make_lab, runtime):
    """The CLI's follower does not poll for the end: ``wait_for_change`` returns as
    soon as the supervisor it forked has written to the log or recorded the final state
    (this would sleep an hour otherwise and the test time out)."""
    import subprocess
    import sys

    from tests.integration.conftest import APP

    lab = make_lab("print('done')\n")
    proc = subprocess.run([sys.executable, "-c", WAIT_FOR_END, str(engine.layout.root), str(lab), runtime],
                          env=dict(os.environ, PYTHONPATH=APP), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "finished"


def test_a_container_left_with_the_executions_name_is_replaced(python_image, docker_client, tmp_path):
    """The runner creates the container first and removes a same-named one only when
    the daemon says the name is taken (an earlier attempt's, created but never
    started): the program then runs, in a container of its own."""
    from mldesk.agent import runner
    from mldesk.agent.fsutil import read_json

    p = runner.Paths(str(tmp_path / "wd"), "left-1", "run")
    os.makedirs(p.workspace)
    with open(os.path.join(p.workspace, "main.py"), "w") as f:
        f.write("print('ran in a new container')\n")
    left = docker_client.containers.create(python_image, ["python", "-c", "pass"], name="mldesk-left-1")
    try:
        spec = {"exec_id": p.exec_id, "name": "left", "argv": [], "env": {"MLDESK_EXECUTION_ID": p.exec_id},
                "env_exact": True, "runtime": "docker", "image": python_image, "network": "none",
                "gpus": False, "grace": 1.0, "sample": False, "docker_wait": 5.0}
        runner.start(p, spec)
        wait_for(lambda: (read_json(p.status) or {}).get("state") in runner.FINAL_STATES, 60,
                 "the runner to end")
        status = read_json(p.status)
        assert status["state"] == "exited" and status["exit_code"] == 0, status
        assert status["container"] != left.id
        with logstore.LogReader(p.log) as reader:
            assert b"ran in a new container" in b"".join(r.data for r in reader.iter_records())
    finally:
        subprocess.run(["docker", "rm", "-f", "mldesk-left-1"], capture_output=True)
