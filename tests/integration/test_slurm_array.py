"""A sweep's trials as ONE Slurm job array, at the agent's level (``agent/slurm.py``
``ArrayRendezvous``) on the test cluster: the supervising agents of the trials meet in
the work folder's ``arrays/<sweep>/`` and one of them submits them all. What must hold
when a trial's agent dies while it waits, a trial is stopped before the submission,
or a trial comes after it. (The whole path, from ``mldesk run --sweep`` on, is in
test_slurm_run.)

The agents run here, as the SSH host's would run on the login node (this machine is
both); the work folder is under tmp_path, which the cluster's node shares.
"""

from __future__ import annotations

import os
import signal

import pytest

from mldesk.agent import runner
from mldesk.agent.fsutil import read_json
from tests.integration.test_ssh_run import _alive, wait_for

pytestmark = [pytest.mark.slurm]

TRIAL = """import os, sys
print("trial", sys.argv[1], os.environ["MLDESK_EXECUTION_ID"], os.environ.get("SLURM_ARRAY_TASK_ID"))
"""


def make_trials(slurm_host, workdir, n, *, quiet=120.0, sweep="sweep1"):
    trials = []
    for i in range(n):
        p = runner.Paths(str(workdir), f"t{i}")
        os.makedirs(p.workspace)
        with open(os.path.join(p.workspace, "main.py"), "w") as f:
            f.write(TRIAL)
        spec = {"exec_id": p.exec_id, "argv": [str(i)], "env": {"MLDESK_EXECUTION_ID": p.exec_id},
                "runtime": "slurm", "python": "python3", "slurm": {"partition": slurm_host.partition},
                "slurm_array": {"id": sweep, "index": i, "size": n, "parallel": 0, "quiet": quiet}}
        trials.append((p, spec))
    return trials


def status(p):
    return read_json(p.status) or {}


def wait_end(trials, timeout=90):
    wait_for(lambda: all(status(p).get("state") in runner.FINAL_STATES for p, _ in trials), timeout,
             f"the trials to end ({[status(p) for p, _ in trials]})")
    return [status(p) for p, _ in trials]


def output(p):
    with open(os.path.join(p.exec_dir, "slurm.out")) as f:
        return f.read()


def array_of(slurm_host, job):
    fields = dict(t.split("=", 1) for t in slurm_host.ssh(f"scontrol show job -o {job}").stdout.split() if "=" in t)
    return fields["ArrayJobId"], fields["ArrayTaskId"]


def test_a_waiting_trials_agent_killed_rejoins_the_array(slurm_host, tmp_path):
    trials = make_trials(slurm_host, tmp_path / "wd", 3)
    for p, spec in trials[:2]:
        st = runner.start(p, spec)
        assert st["state"] == "queued" and st["array_wait"] and "slurm_job" not in st, st
        assert "other trials" in st["reason"], st
    p0 = trials[0][0]
    agent = status(p0)["agent_pid"]
    os.kill(agent, signal.SIGKILL)
    wait_for(lambda: not _alive(agent), 10, "the agent to die")
    assert runner.slurm_resumable(status(p0))
    runner.spawn(p0)  # what the agent's follow does for it
    wait_for(lambda: status(p0).get("agent_pid") != agent and runner.agent_alive(status(p0)), 30, "a new agent")
    assert status(p0)["state"] == "queued" and "slurm_job" not in status(p0)
    runner.start(*trials[2])  # the last one: now they are all ready
    finals = wait_end(trials)
    assert [f["state"] for f in finals] == ["exited"] * 3 and [f["exit_code"] for f in finals] == [0] * 3, finals
    jobs = [f["slurm_job"] for f in finals]
    arrays = [array_of(slurm_host, j) for j in jobs]
    assert len({a for a, _ in arrays}) == 1 and [t for _, t in arrays] == ["0", "1", "2"], (jobs, arrays)
    assert jobs == [f"{arrays[0][0]}_{i}" for i in range(3)]
    for i, (p, _) in enumerate(trials):
        assert output(p) == f"trial {i} t{i} {i}\n"


def test_a_trial_stopped_while_waiting_is_withdrawn(slurm_host, tmp_path):
    trials = make_trials(slurm_host, tmp_path / "wd", 3)
    for p, spec in trials[:2]:
        runner.start(p, spec)
    p1 = trials[1][0]
    assert runner.request_stop(p1, 5.0)["ok"]
    wait_for(lambda: status(p1).get("state") == "stopped", 30, "the stop")
    assert status(p1)["error"] == "stopped before the program started" and "slurm_job" not in status(p1)
    runner.start(*trials[2])  # ready + stopped: all accounted for, no waiting out the quiet time
    finals = wait_end(trials, timeout=60)
    assert [f["state"] for f in finals] == ["exited", "stopped", "exited"], finals
    submitted = read_json(tmp_path / "wd" / "arrays" / "sweep1" / "job.json")
    assert submitted["tasks"] == [0, 2]
    assert {array_of(slurm_host, finals[i]["slurm_job"])[0] for i in (0, 2)} == {submitted["job"]}
    assert output(trials[0][0]) == "trial 0 t0 0\n" and output(trials[2][0]) == "trial 2 t2 2\n"
    assert output(p1) == ""


def test_a_late_trial_runs_as_a_job_of_its_own(slurm_host, tmp_path):
    """Nothing came for ``quiet`` seconds: the ready trials go as an array; one that
    comes after that is submitted alone (it still runs, as its own job)."""
    trials = make_trials(slurm_host, tmp_path / "wd", 3, quiet=1.0)
    for p, spec in trials[:2]:
        runner.start(p, spec)
    wait_for(lambda: all(status(p).get("slurm_job") for p, _ in trials[:2]), 30, "the array's submission")
    runner.start(*trials[2])
    finals = wait_end(trials)
    assert [f["state"] for f in finals] == ["exited"] * 3, finals
    a0, a1 = (array_of(slurm_host, f["slurm_job"])[0] for f in finals[:2])
    assert a0 == a1 and "_" not in finals[2]["slurm_job"], finals
    assert output(trials[2][0]) == "trial 2 t2 None\n"


def test_leaving_removes_the_array_folder_with_the_last_trial(slurm_host, tmp_path):
    trials = make_trials(slurm_host, tmp_path / "wd", 2)
    for p, spec in trials:
        runner.start(p, spec)
    wait_end(trials)
    folder = tmp_path / "wd" / "arrays" / "sweep1"
    runner.reset_exec(trials[0][0])  # the agent's cleanup
    assert sorted(os.listdir(folder / "tasks")) == ["1"]
    runner.reset_exec(trials[1][0])
    assert not folder.exists()
