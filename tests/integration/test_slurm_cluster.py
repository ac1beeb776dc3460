"""The test Slurm cluster itself (scripts/ci/slurm.sh), used the way the slurm
runtime uses it: commands over the test sshd, the login node. These pin down what
the runtime relies on: a batch job submitted over SSH runs and its output file is
on the shared file system, and two jobs with one (fake) GPU each get different
CUDA_VISIBLE_DEVICES.
"""

from __future__ import annotations

import shlex
import textwrap

import pytest

pytestmark = [pytest.mark.ssh, pytest.mark.slurm]


def _job_dir(tmp_path, name: str):
    d = tmp_path / name
    d.mkdir()
    return d


def test_sbatch_wait_over_ssh_runs_the_script(slurm_host, tmp_path):
    d = _job_dir(tmp_path, "job")
    (d / "job.sh").write_text(textwrap.dedent("""\
        #!/bin/sh
        echo "hello from $SLURM_JOB_ID on $SLURMD_NODENAME"
        echo "to stderr" >&2
        exit 0
    """))
    proc = slurm_host.ssh(
        f"cd {shlex.quote(str(d))} && sbatch --wait --parsable -p {slurm_host.partition} "
        f"--job-name=mldesk-test --output=out.txt --error=err.txt job.sh")
    job_id = proc.stdout.strip().split(";")[0]
    assert job_id.isdigit()
    assert (d / "out.txt").read_text() == f"hello from {job_id} on {slurm_host.node}\n"
    assert (d / "err.txt").read_text() == "to stderr\n"


def test_sbatch_wait_reports_the_exit_code(slurm_host, tmp_path):
    d = _job_dir(tmp_path, "job3")
    (d / "job.sh").write_text("#!/bin/sh\necho failing\nexit 3\n")
    proc = slurm_host.ssh(f"cd {shlex.quote(str(d))} && sbatch --wait -o out.txt job.sh", check=False)
    assert proc.returncode == 3
    assert (d / "out.txt").read_text() == "failing\n"


def test_two_one_gpu_jobs_get_different_devices(slurm_host, tmp_path):
    """Both jobs hold their GPU at the same time (each waits for the other's file), so
    they cannot have been given the same device one after the other."""
    assert slurm_host.gpus >= 2
    d = _job_dir(tmp_path, "gpus")
    (d / "job.sh").write_text(textwrap.dedent("""\
        #!/bin/sh
        echo "$CUDA_VISIBLE_DEVICES" > "dev.$1"
        other=$((3 - $1))
        i=0
        while [ ! -e "dev.$other" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
        [ -e "dev.$other" ] || { echo "never ran together" >&2; exit 1; }
    """))
    q = shlex.quote(str(d))
    name = shlex.quote(f"mldesk-gpus-{tmp_path.name}")
    slurm_host.ssh(
        f"cd {q} && sbatch --parsable -J {name} --gres=gpu:1 -o out.1 job.sh 1 >/dev/null && "
        f"sbatch --wait -J {name} --gres=gpu:1 -o out.2 job.sh 2 && "
        # the first job may still be completing: wait for it too
        f"while squeue -h -n {name} -o %i | grep -q .; do sleep 0.2; done")
    devs = {(d / "dev.1").read_text().strip(), (d / "dev.2").read_text().strip()}
    assert devs == {"0", "1"}, devs
