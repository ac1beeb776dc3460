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
import tempfile
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


def test_stop_keeps_checkpoint(slurme, slurm_host, shared_dir, tmp_path):
    """scancel: Slurm sends SIGTERM to the job's processes; the program writes its
    checkpoint into outputs/ and exits 143, which comes back with the outputs."""
    add_slurm_host(slurme, slurm_host, shared_dir, stop_grace=5.0)
    lab = lab_in(tmp_path, CHECKPOINT_ON_TERM)
    ex = slurme.run(lab, host="cluster")
    wait_state(slurme, ex.id, "running", timeout=60)
    wait_for(lambda: b"ready" in program_output(slurme, ex.id), 60, "the program to print ready")
    job = slurme.store.get(ex.id).public()["slurm_job"]
    slurme.stop(ex.id)
    final = wait_final(slurme, ex.id, timeout=60)
    assert final.state == "stopped" and final.exit_code == 143, (final.reason, messages(slurme, ex.id))
    out = slurme.outputs_dir(ex.id)
    assert (out / "checkpoint.txt").read_text() == "saved at term"
    assert (out / "early.txt").read_text() == "early"
    assert b"checkpoint written" in program_output(slurme, ex.id)
    assert not squeue_has(slurm_host, job)


def test_stop_kills_a_program_ignoring_sigterm_after_the_grace(slurme, slurm_host, shared_dir, tmp_path):
    add_slurm_host(slurme, slurm_host, shared_dir, stop_grace=1.0)
    lab = lab_in(tmp_path, """
        import signal, time
        signal.signal(signal.SIGTERM, lambda *a: print("ignoring SIGTERM", flush=True))
        print("ready", flush=True)
        while True:
            time.sleep(0.05)
        """)
    ex = slurme.run(lab, host="cluster")
    wait_for(lambda: b"ready" in program_output(slurme, ex.id), 60, "the program to print ready")
    job = slurme.store.get(ex.id).public()["slurm_job"]
    slurme.stop(ex.id)
    final = wait_final(slurme, ex.id, timeout=60)
    assert final.state == "stopped", (final.reason, messages(slurme, ex.id))
    assert b"ignoring SIGTERM" in program_output(slurme, ex.id)
    wait_for(lambda: not squeue_has(slurm_host, job), 30, "the job to leave the queue")


def test_pending_on_resources_is_queued_with_slurms_reason_then_runs(slurme, slurm_host, shared_dir, tmp_path):
    """Another job holds both (fake) GPUs: a GPU lab's job waits with reason
    Resources, shown as state queued; once the GPUs are free it runs and finishes."""
    blocker_dir = tmp_path / "blocker"
    blocker_dir.mkdir()
    blocker = slurm_host.ssh(
        f"cd {blocker_dir} && sbatch --parsable -J mldesk-test-blocker -p {slurm_host.partition} "
        f"--gres=gpu:{slurm_host.gpus} -o /dev/null --wrap 'sleep 600'").stdout.strip().split(";")[0]
    try:
        wait_for(lambda: slurm_host.ssh(f"squeue -h -j {blocker} -o %T").stdout.strip() == "RUNNING", 60,
                 "the blocking job to run")
        add_slurm_host(slurme, slurm_host, shared_dir)
        lab = lab_in(tmp_path, """
            import os
            print("gpu", os.environ.get("CUDA_VISIBLE_DEVICES"))
            """, "hardwareType: gpu\n")
        ex = slurme.run(lab, host="cluster")
        queued = wait_for(lambda: (lambda e: e if e.state == "queued" and e.reason else None)(
            slurme.store.get(ex.id)), 60,
            f"state queued with a reason ({slurme.store.get(ex.id)}, {messages(slurme, ex.id)})")
        # Resources; Priority when another run's job waits on the same cluster too
        assert queued.reason in ("Resources", "Priority"), queued.reason
        shown = json.loads(cli("show", ex.id, "--json", home=slurme.layout.root, check=True).stdout)
        assert shown["state"] == "queued" and shown["reason"] in ("Resources", "Priority")
        assert shown["slurm_job"].isdigit()
        assert f"queued by Slurm (job {shown['slurm_job']}): {queued.reason}" in messages(slurme, ex.id)
    finally:
        slurm_host.ssh(f"scancel {blocker}", check=False)
    final = wait_final(slurme, ex.id, timeout=90)
    assert final.state == "finished" and final.reason is None, (final.reason, messages(slurme, ex.id))
    assert program_output(slurme, ex.id) in (b"gpu 0\n", b"gpu 1\n")


def test_sbatch_missing_is_a_clear_error(slurme, slurm_host, shared_dir, tmp_path):
    add_slurm_host(slurme, slurm_host, shared_dir, env={"PATH": "/nonexistent"})
    ex = slurme.run(lab_in(tmp_path, "print('never')\n"), host="cluster")
    final = wait_final(slurme, ex.id, timeout=60)
    assert final.state == "failed"
    assert "sbatch was not found" in final.reason, final.reason


def test_work_folder_not_shared_is_a_clear_error(slurme, slurm_host, tmp_path):
    """The login node sees this folder, the compute node does not (slurm.sh)."""
    root = Path(os.environ["MLDESK_TEST_SLURM_LOGIN_ONLY"])
    root.mkdir(parents=True, exist_ok=True)
    login_only = Path(tempfile.mkdtemp(prefix=tmp_path.name + "-", dir=root))  # unique: runs may repeat
    try:
        add_slurm_host(slurme, slurm_host, login_only)
        ex = slurme.run(lab_in(tmp_path, "print('never')\n"), host="cluster")
        final = wait_final(slurme, ex.id, timeout=90)
        assert final.state == "failed"
        assert "file system the compute nodes share" in final.reason, final.reason
    finally:
        import shutil

        shutil.rmtree(login_only, ignore_errors=True)


def test_cli_hosts_add_and_test_a_slurm_host(slurme, slurm_host, shared_dir, tmp_path):
    from tests.integration.test_ssh_run import trust_host

    s = slurm_host.server
    home = slurme.layout.root
    out = cli("hosts", "add", "cluster", f"ssh://{s.user}@{s.host}:{s.port}", "--key", str(s.key_path),
              "--runtime", "slurm", "--workdir", str(shared_dir), "--partition", slurm_host.partition,
              "--time", "0:10:00", "--sbatch-arg=--comment=mldesk-test", "--no-check", home=home, check=True)
    assert b"slurm runtime" in out.stdout
    profile = slurme.profiles.get("cluster")
    assert (profile.runtime, profile.slurm_partition, profile.slurm_time, profile.slurm_args) == (
        "slurm", slurm_host.partition, "0:10:00", ["--comment=mldesk-test"])
    trust_host(slurme, s)
    text = cli("hosts", "test", "cluster", home=home, check=True).stdout.decode()
    assert f"Partition {slurm_host.partition} (default)" in text, text
    assert "KillWait 10 sec" in text and "MinJobAge 300 sec" in text, text
    assert "gpu:2" in text, text
    assert "Shared    yes" in text and "warning" not in text, text
    report = json.loads(cli("hosts", "test", "cluster", "--json", home=home, check=True).stdout)
    assert [p["name"] for p in report["slurm"]["partitions"]] == [slurm_host.partition]
    status = cli("hosts", "status", "cluster", home=home, check=True).stdout.decode()
    assert f"Slurm partition {slurm_host.partition}: 1 node(s)" in status and "gpu:2" in status, status
    # and the run uses the profile's settings
    ex = slurme.run(lab_in(tmp_path, """
        import os
        print(os.environ["SLURM_JOB_PARTITION"])
        """), host="cluster")
    final = wait_final(slurme, ex.id, timeout=90)
    assert final.state == "finished", (final.reason, messages(slurme, ex.id))
    job = final.public()["slurm_job"]
    assert program_output(slurme, ex.id) == f"{slurm_host.partition}\n".encode()
    shown = slurm_host.ssh(f"scontrol show job -o {job}").stdout
    assert "TimeLimit=00:10:00" in shown and "Comment=mldesk-test" in shown, shown


def test_cli_hosts_test_warns_when_the_work_folder_is_not_shared(slurme, slurm_host, tmp_path):
    from tests.integration.test_ssh_run import trust_host

    s = slurm_host.server
    root = Path(os.environ["MLDESK_TEST_SLURM_LOGIN_ONLY"])
    root.mkdir(parents=True, exist_ok=True)
    login_only = Path(tempfile.mkdtemp(prefix=tmp_path.name + "-", dir=root))  # unique: runs may repeat
    try:
        cli("hosts", "add", "cluster", f"ssh://{s.user}@{s.host}:{s.port}", "--key", str(s.key_path),
            "--runtime", "slurm", "--workdir", str(login_only), "--no-check", home=slurme.layout.root, check=True)
        trust_host(slurme, s)
        text = cli("hosts", "test", "cluster", home=slurme.layout.root, check=True).stdout.decode()
        assert "warning: a test job" in text and "not on a file system the compute nodes share" in text, text
    finally:
        import shutil

        shutil.rmtree(login_only, ignore_errors=True)


def test_cli_refuses_slurm_flags_without_the_slurm_runtime(slurme, slurm_host, shared_dir):
    s = slurm_host.server
    out = cli("hosts", "add", "box", f"ssh://{s.user}@{s.host}:{s.port}", "--runtime", "process",
              "--partition", "debug", "--no-check", home=slurme.layout.root)
    assert out.returncode == 1 and b"only go with --runtime slurm" in out.stderr


def test_resume_after_the_local_supervisor_was_killed(slurme, slurm_host, shared_dir, tmp_path):
    """SIGKILL the local supervisor twice while the job prints; the reattached
    supervisors resume from the host's log: not a line lost or doubled."""
    from tests.integration.test_ssh_run import PRINTER, _alive, expected_printer

    add_slurm_host(slurme, slurm_host, shared_dir)
    n = 400
    ex = slurme.run(lab_in(tmp_path, PRINTER, f"parameters:\n  - pass-as: '{n} 0.012'\n"), host="cluster")
    wait_state(slurme, ex.id, "running", timeout=60)
    for round_ in range(2):
        wait_for(lambda: program_output(slurme, ex.id).count(b"\n") > 80 * (round_ + 1), 60, "some output")
        pid = slurme.store.get(ex.id).supervisor_pid
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not _alive(pid), 10, "the supervisor to die")
        wait_for(lambda: slurme.reattach_one(ex.id), 10, "its lock to be free for a new supervisor")
    final = wait_final(slurme, ex.id, timeout=90)
    assert final.state == "finished", (final.reason, messages(slurme, ex.id))
    assert program_output(slurme, ex.id) == expected_printer(n)
    assert messages(slurme, ex.id).count("mldesk reattached") == 2


def test_resume_while_the_job_is_still_queued(slurme, slurm_host, shared_dir, tmp_path):
    """The local supervisor dies while Slurm holds the job back: the reattached one
    follows the same job (no second submission) through queued to finished."""
    from tests.integration.test_ssh_run import _alive

    blocker = slurm_host.ssh(
        f"sbatch --parsable -J mldesk-test-blocker -p {slurm_host.partition} --gres=gpu:{slurm_host.gpus} "
        f"-o /dev/null --chdir=/tmp --wrap 'sleep 600'").stdout.strip().split(";")[0]
    try:
        add_slurm_host(slurme, slurm_host, shared_dir)
        ex = slurme.run(lab_in(tmp_path, "print('ran once')\n", "hardwareType: gpu\n"), host="cluster")
        queued = wait_for(lambda: (lambda e: e if e.state == "queued" and e.reason else None)(
            slurme.store.get(ex.id)), 60, "state queued with a reason")
        job = queued.public()["slurm_job"]
        pid = queued.supervisor_pid
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not _alive(pid), 10, "the supervisor to die")
        wait_for(lambda: slurme.reattach_one(ex.id), 10, "its lock to be free for a new supervisor")
        assert slurme.store.get(ex.id).state == "queued"
    finally:
        slurm_host.ssh(f"scancel {blocker}", check=False)
    final = wait_final(slurme, ex.id, timeout=90)
    assert final.state == "finished", (final.reason, messages(slurme, ex.id))
    assert final.public()["slurm_job"] == job
    assert program_output(slurme, ex.id) == b"ran once\n"


def test_link_cut_mid_job_loses_nothing(mldesk_home, isolated_home, slurm_host, netns_host, shared_dir, tmp_path):
    """The login node is the netns SSH host (its Slurm commands reach slurmctld over
    the same link, through slurm.sh's relay). Cut the link while the job prints: the job
    runs on, mldesk reconnects by itself and the log is complete and exact."""
    from mldesk.core.hosts import HostProfile
    from tests.integration.test_ssh_run import PRINTER, expected_printer, trust_host

    eng = Engine(mldesk_home)
    try:
        profile = HostProfile.from_url(
            "far-cluster", f"ssh://{netns_host.user}@{netns_host.host}:{netns_host.port}",
            key=str(netns_host.key_path), workdir=str(shared_dir), runtime="slurm",
            slurm_partition=slurm_host.partition, keepalive=1.0, connect_timeout=2.0)
        eng.store.put_host("far-cluster", profile.to_dict())
        trust_host(eng, netns_host)
        n = 700
        ex = eng.run(lab_in(tmp_path, PRINTER, f"parameters:\n  - pass-as: '{n} 0.02'\n"), host="far-cluster")
        wait_state(eng, ex.id, "running", timeout=60)
        wait_for(lambda: program_output(eng, ex.id).count(b"\n") > 50, 60, "output before the cut")
        netns_host.cut()
        cut_at = time.time()
        try:
            wait_for(lambda: (eng.store.get(ex.id).note or "").startswith("reconnecting"), 30,
                     "mldesk to notice the cut")
            time.sleep(3)  # the job keeps printing into the shared work folder meanwhile
        finally:
            netns_host.restore()
        restored_at = time.time()
        final = wait_final(eng, ex.id, timeout=120)
        assert final.state == "finished", (final.reason, messages(eng, ex.id))
        assert program_output(eng, ex.id) == expected_printer(n)
        with eng.log_reader(ex.id) as reader:
            stamps = [r.ts for r in reader.iter_records() if r.stream == 1]
        assert any(cut_at + 1 < ts < restored_at - 1 for ts in stamps), "the job printed during the cut"
        msgs = messages(eng, ex.id)
        assert "lost the connection to far-cluster" in msgs and "reconnected to far-cluster" in msgs
    finally:
        stop_all(eng)
        eng.close()


def test_restart_runs_the_snapshot_again_as_a_new_job(slurme, slurm_host, shared_dir, tmp_path):
    add_slurm_host(slurme, slurm_host, shared_dir)
    lab = lab_in(tmp_path, "print('version 1')\n")
    first = wait_final(slurme, slurme.run(lab, host="cluster").id, timeout=90)
    assert first.state == "finished", first.reason
    (lab / "main.py").write_text("print('version 2')\n")
    again, backup = slurme.restart(first.id)
    assert backup is not None and again.runtime == "slurm"
    second = wait_final(slurme, again.id, timeout=90)
    assert second.state == "finished", (second.reason, messages(slurme, again.id))
    assert program_output(slurme, again.id) == b"version 1\n"
    assert second.public()["slurm_job"] != first.public()["slurm_job"]


def test_stop_while_queued_cancels_the_job(slurme, slurm_host, shared_dir, tmp_path):
    blocker = slurm_host.ssh(
        f"sbatch --parsable -J mldesk-test-blocker -p {slurm_host.partition} --gres=gpu:{slurm_host.gpus} "
        f"-o /dev/null --chdir=/tmp --wrap 'sleep 600'").stdout.strip().split(";")[0]
    try:
        add_slurm_host(slurme, slurm_host, shared_dir)
        ex = slurme.run(lab_in(tmp_path, "print('never')\n", "gpus: 1\n"), host="cluster")
        queued = wait_for(lambda: (lambda e: e if e.state == "queued" and e.reason else None)(
            slurme.store.get(ex.id)), 60, "state queued with a reason")
        job = queued.public()["slurm_job"]
        slurme.stop(ex.id)
        final = wait_final(slurme, ex.id, timeout=60)
        assert final.state == "stopped", (final.reason, messages(slurme, ex.id))
        assert program_output(slurme, ex.id) == b""
        wait_for(lambda: not squeue_has(slurm_host, job), 30, "the job to leave the queue")
    finally:
        slurm_host.ssh(f"scancel {blocker}", check=False)


ARRAY_TRIAL = r"""
import argparse, os, sys, time
p = argparse.ArgumentParser()
p.add_argument("--shared"); p.add_argument("--lr")
a = p.parse_args()
print("trial", a.lr, os.environ["MLDESK_EXECUTION_ID"], os.environ.get("SLURM_ARRAY_TASK_ID"), flush=True)
os.makedirs("outputs", exist_ok=True)
open("outputs/result.txt", "w").write(a.lr)
open(os.path.join(a.shared, "started-" + a.lr), "w").close()
while not os.path.exists(os.path.join(a.shared, "go-" + a.lr)):
    time.sleep(0.05)
print("loss:", float(a.lr) * 10, flush=True)
"""


def array_job_of(slurm_host, job: str) -> tuple[str, str]:
    """(ArrayJobId, ArrayTaskId) of a job as Slurm records it."""
    fields = dict(t.split("=", 1) for t in slurm_host.ssh(f"scontrol show job -o {job}").stdout.split() if "=" in t)
    return fields.get("ArrayJobId", ""), fields.get("ArrayTaskId", "")


def test_a_four_trial_sweep_is_one_job_array(slurme, slurm_host, shared_dir, tmp_path):
    """A 4-trial sweep with max parallel 2 is ONE sbatch --array=0-3%2: each trial is its
    own execution (own task, log, outputs, metrics); the tasks Slurm holds back are
    queued with its reason; stopping one task leaves the others running."""
    shared = tmp_path / "shared"
    shared.mkdir()
    add_slurm_host(slurme, slurm_host, shared_dir, max_parallel=2)
    lab = lab_in(tmp_path, ARRAY_TRIAL, f"parameters:\n  - pass-as: '--shared {shared}'\n  - pass-as: '--lr=0'\n")
    sweep, executions = slurme.run_sweep(lab, ["lr=[1,2,3,4]"], host="cluster")
    assert len(executions) == 4
    by_lr = {e.overrides["lr"]: e for e in executions}
    wait_for(lambda: len(list(shared.glob("started-*"))) == 2, 120,
             f"two trials to run ({[(e.state, e.reason) for e in map(slurme.store.get, [x.id for x in executions])]})")
    # the other two are held back by Slurm (%2): queued with its reason
    held = wait_for(lambda: (lambda es: es if len(es) == 2 else None)(
        [e for e in map(slurme.store.get, [x.id for x in executions])
         if e.state == "queued" and e.reason == "JobArrayTaskLimit"]), 60, "two tasks queued by Slurm")
    shown = json.loads(cli("show", held[0].id, "--json", home=slurme.layout.root, check=True).stdout)
    assert shown["state"] == "queued" and shown["reason"] == "JobArrayTaskLimit", shown
    jobs = {e.overrides["lr"]: wait_for(lambda: slurme.store.get(e.id).public().get("slurm_job"), 30, "a job id")
            for e in executions}
    arrays = {lr: array_job_of(slurm_host, job) for lr, job in jobs.items()}
    array_ids = {a for a, _ in arrays.values()}
    assert len(array_ids) == 1 and "" not in array_ids, arrays  # one sbatch
    (array_id,) = array_ids
    assert sorted(jobs.values()) == sorted(f"{array_id}_{t}" for _, t in arrays.values()), (jobs, arrays)
    assert sorted(t for _, t in arrays.values()) == ["0", "1", "2", "3"]
    assert len(slurm_host.ssh(f"squeue -h -r -j {array_id} -o %i").stdout.split()) == 4
    # stop one running task: the others keep running
    running = sorted(p.name.split("-", 1)[1] for p in shared.glob("started-*"))
    victim, other = by_lr[running[0]], by_lr[running[1]]
    slurme.stop(victim.id)
    final = wait_final(slurme, victim.id, timeout=60)
    assert final.state == "stopped", (final.reason, messages(slurme, victim.id))
    assert squeue_has(slurm_host, jobs[running[1]]) and slurme.store.get(other.id).state == "running"
    assert not squeue_has(slurm_host, jobs[running[0]])
    for lr in ("1", "2", "3", "4"):
        (shared / f"go-{lr}").write_text("")
    finals = {lr: wait_final(slurme, e.id, timeout=120) for lr, e in by_lr.items()}
    for lr, f in finals.items():
        if lr == running[0]:
            continue
        assert f.state == "finished", (lr, f.reason, messages(slurme, f.id))
        assert (slurme.outputs_dir(f.id) / "result.txt").read_text() == lr
        task = arrays[lr][1]
        assert program_output(slurme, f.id) == f"trial {lr} {f.id} {task}\nloss: {float(lr) * 10}\n".encode()
        assert f.public()["slurm_job"] == jobs[lr]
    rows = json.loads(cli("compare", "--sweep", sweep, "--json", home=slurme.layout.root, check=True).stdout)
    assert sorted(r["id"] for r in rows) == sorted(e.id for e in executions)
    for r in rows:
        lr = r["params"]["lr"]
        if lr != running[0]:
            assert r["metrics"]["loss"]["last"] == float(lr) * 10, r
    # a restart of one trial is a job of its own
    again, _ = slurme.restart(by_lr["4"].id)
    second = wait_final(slurme, again.id, timeout=90)
    assert second.state == "finished", (second.reason, messages(slurme, again.id))
    assert "_" not in second.public()["slurm_job"]
    # the array's folder on the login node goes with its last trial
    wait_for(lambda: not (shared_dir / "arrays" / sweep).exists(), 30, "the array's folder to go")


def test_a_trial_stopped_before_the_submission_leaves_the_array(slurme, slurm_host, shared_dir, tmp_path):
    """Stop one trial of a 4-trial sweep at once: the other three are still one job
    array and finish; the stopped one never runs."""
    add_slurm_host(slurme, slurm_host, shared_dir)
    lab = lab_in(tmp_path, """
        import sys
        print("trial", sys.argv[1])
        """, "parameters:\n  - pass-as: '--lr=0'\n")
    sweep, executions = slurme.run_sweep(lab, ["lr=[1,2,3,4]"], host="cluster")
    slurme.stop(executions[3].id)
    finals = [wait_final(slurme, ex.id, timeout=120) for ex in executions]
    assert [f.state for f in finals] == ["finished"] * 3 + ["stopped"], [(f.state, f.reason) for f in finals]
    assert sorted(program_output(slurme, f.id) for f in finals[:3]) == [b"trial --lr=%d\n" % i for i in (1, 2, 3)]
    arrays = {array_job_of(slurm_host, f.public()["slurm_job"])[0] for f in finals[:3]}
    assert len(arrays) == 1 and "" not in arrays, arrays
    assert program_output(slurme, finals[3].id) == b""


def test_a_trials_supervisor_killed_before_the_submission_still_joins_the_array(slurme, slurm_host, shared_dir,
                                                                                tmp_path):
    """SIGKILL one trial's local supervisor as soon as it runs (before or while it waits
    for the others on the login node); the reattached one goes on where it was (a new
    upload, or following the same waiting agent): still one job array, all finish."""
    from tests.integration.test_ssh_run import _alive

    add_slurm_host(slurme, slurm_host, shared_dir)
    lab = lab_in(tmp_path, """
        import sys
        print("trial", sys.argv[1])
        """, "parameters:\n  - pass-as: '--lr=0'\n")
    sweep, executions = slurme.run_sweep(lab, ["lr=[1,2,3]"], host="cluster")
    victim = executions[0]
    pid = wait_for(lambda: slurme.store.get(victim.id).supervisor_pid, 30, "the supervisor to run")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not _alive(pid), 10, "the supervisor to die")
    wait_for(lambda: slurme.reattach_one(victim.id), 10, "its lock to be free for a new supervisor")
    finals = [wait_final(slurme, ex.id, timeout=120) for ex in executions]
    assert [f.state for f in finals] == ["finished"] * 3, [(f.state, f.reason, messages(slurme, f.id)) for f in finals]
    assert [program_output(slurme, f.id) for f in finals] == [b"trial --lr=%d\n" % i for i in (1, 2, 3)]
    arrays = {array_job_of(slurm_host, f.public()["slurm_job"])[0] for f in finals}
    assert len(arrays) == 1 and "" not in arrays, ([f.public()["slurm_job"] for f in finals], arrays)


def test_a_new_agent_takes_over_when_the_login_nodes_agent_dies(slurme, slurm_host, shared_dir, tmp_path):
    """SIGKILL the supervising agent on the login node while the job prints (a login
    node reboot would do the same): the job goes on in Slurm, a new agent takes over
    following it from the bytes log.bin already holds: nothing lost or doubled."""
    from tests.integration.test_ssh_run import PRINTER, _alive, expected_printer

    add_slurm_host(slurme, slurm_host, shared_dir)
    n = 700  # about 15 s of output
    ex = slurme.run(lab_in(tmp_path, PRINTER, f"parameters:\n  - pass-as: '{n} 0.02'\n"), host="cluster")
    wait_state(slurme, ex.id, "running", timeout=60)
    status_path = shared_dir / "executions" / ex.id / "status.json"
    for round_ in range(2):
        wait_for(lambda: program_output(slurme, ex.id).count(b"\n") > 80 * (round_ + 1), 60, "some output")
        agent = json.loads(status_path.read_text())["agent_pid"]
        os.kill(agent, signal.SIGKILL)
        wait_for(lambda: not _alive(agent), 10, "the agent to die")
        wait_for(lambda: json.loads(status_path.read_text())["agent_pid"] != agent, 30, "a new agent")
    final = wait_final(slurme, ex.id, timeout=90)
    assert final.state == "finished", (final.reason, messages(slurme, ex.id))
    assert program_output(slurme, ex.id) == expected_printer(n)
