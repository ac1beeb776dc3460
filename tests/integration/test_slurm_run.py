"""Executions on a Slurm host: the test cluster (scripts/ci/slurm.sh) behind its login
node, the test sshd. Each execution is one batch job; the agent follows the job's
output files into the log, shows a pending job as queued with Slurm's reason, stops
with scancel and reads the end from the job's exit-code file.

The cluster's node is this machine, so the work folder (under tmp_path) is shared
with it, except $MLDESK_TEST_SLURM_LOGIN_ONLY, which slurmd cannot see.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from mldesk.engine.facade import Engine
from tests.integration.conftest import (CHECKPOINT_ON_TERM, cli, program_output, wait_final,
                                        wait_state)
from tests.integration.test_ssh_run import add_host, isolated_home, lab_in, messages, stop_all, wait_for  # noqa: F401

pytestmark = [pytest.mark.ssh, pytest.mark.slurm]


@pytest.fixture
def slurme(mldesk_home, isolated_home, slurm_host):
    eng = Engine(mldesk_home)
    eng.set_setting("stop_grace", 5.0)
    yield eng
    stop_all(eng)
    eng.close()


@pytest.fixture
def shared_dir(tmp_path) -> Path:
    d = tmp_path / "cluster-workdir"
    d.mkdir()
    return d


def add_slurm_host(engine, slurm_host, workdir, name="cluster", **kw):
    kw.setdefault("slurm_partition", slurm_host.partition)
    return add_host(engine, slurm_host.server, name, workdir, runtime="slurm", **kw)


def squeue_has(slurm_host, job: str) -> bool:
    out = slurm_host.ssh(f"squeue -h -j {job} -o %T", check=False).stdout.strip()
    return out in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING")


def test_run_to_completion_with_live_output(slurme, slurm_host, shared_dir, tmp_path):
    add_slurm_host(slurme, slurm_host, shared_dir)
    lab = lab_in(tmp_path, """
        import os, sys, time
        print("job", os.environ["SLURM_JOB_ID"], "on", os.environ["SLURMD_NODENAME"])
        print("to stderr", file=sys.stderr)
        os.makedirs("outputs", exist_ok=True)
        open("outputs/result.txt", "w").write("42")
        while not os.path.exists("go"):
            time.sleep(0.05)
        print("done", sys.argv[1:])
        """, "parameters:\n  - pass-as: \"--lr=0.1\"\n")
    ex = slurme.run(lab, host="cluster")
    assert ex.runtime == "slurm"
    # live: the first line is in the local log while the job still runs
    wait_for(lambda: b"job " in program_output(slurme, ex.id), 60, "the job's first line")
    running = wait_state(slurme, ex.id, "running", timeout=30)
    job = running.public()["slurm_job"]
    assert job.isdigit()
    assert squeue_has(slurm_host, job)
    ws = shared_dir / "executions" / ex.id / "workspace"
    (ws / "go").write_text("")
    final = wait_final(slurme, ex.id, timeout=90)
    assert final.state == "finished" and final.exit_code == 0, (final.reason, messages(slurme, ex.id))
    log = program_output(slurme, ex.id)
    assert sorted(log.splitlines()) == sorted([
        f"job {job} on {slurm_host.node}".encode(), b"to stderr", b"done ['--lr=0.1']"])
    assert (slurme.outputs_dir(ex.id) / "result.txt").read_text() == "42"
    assert f"job {job}" in messages(slurme, ex.id)
    shown = json.loads(cli("show", ex.id, "--json", home=slurme.layout.root, check=True).stdout)
    assert shown["slurm_job"] == job and shown["state"] == "finished"


@pytest.mark.parametrize("body,state,code", [
    ("sys.exit(0)", "finished", 0),
    ("sys.exit(3)", "failed", 3),
    ("os.kill(os.getpid(), signal.SIGKILL)", "failed", 128 + signal.SIGKILL),
])
def test_exit_codes(slurme, slurm_host, shared_dir, tmp_path, body, state, code):
    add_slurm_host(slurme, slurm_host, shared_dir)
    lab = lab_in(tmp_path, f"""
        import os, signal, sys
        print("about to end", flush=True)
        {body}
        """)
    ex = slurme.run(lab, host="cluster")
    final = wait_final(slurme, ex.id, timeout=90)
    assert (final.state, final.exit_code) == (state, code), (final.reason, messages(slurme, ex.id))
    assert program_output(slurme, ex.id) == b"about to end\n"
