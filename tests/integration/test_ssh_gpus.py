"""GPUs and resources on an SSH host (the test sshd) with fake GPUs: the host's Python
is a wrapper that puts the fake nvidia-smi first on PATH there, so the agent (and the
program) see the fake GPUs as a real host's would be seen."""

from __future__ import annotations

import json

import pytest

from mldesk.agent import resources
from tests.integration.conftest import cli, program_output, wait_final, wait_state
from tests.integration.test_gpus_resources import _wait_reason
from tests.integration.test_ssh_run import (  # noqa: F401 - fixtures
    add_host, isolated_home, lab_in, remote_dir, sshe,
)

pytestmark = pytest.mark.ssh

MB = 1024 * 1024

PROGRAM = """
import os, time
print("CVD=" + os.environ.get("CUDA_VISIBLE_DEVICES", "-"), flush=True)
blob = bytearray(210 * 1024 * 1024)
for i in range(0, len(blob), 4096):
    blob[i] = 1
t0 = time.monotonic()
while time.monotonic() - t0 < 6:
    pass
"""


@pytest.fixture
def gpu_python(tmp_path, fake_gpus):
    """The host's Python: python3 with the fake nvidia-smi first on PATH."""
    wrapper = tmp_path / "python-with-fake-gpus"
    wrapper.write_text(f'#!/bin/sh\nexport PATH="{fake_gpus.bin_dir}:$PATH" '
                       f'FAKE_NVIDIA_SMI_STATE="{fake_gpus.state_path}"\nexec python3 "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


def test_gpu_queue_and_samples_on_an_ssh_host(sshe, sshd_server, remote_dir, tmp_path, fake_gpus, gpu_python,
                                              mldesk_home):
    fake_gpus.set(1)
    fake_gpus.update_gpu(0, util=64, memory_used=3000)
    add_host(sshe, sshd_server, "gpu-box", remote_dir, runtime="process", python=gpu_python)
    lab = lab_in(tmp_path, PROGRAM, "gpus: 1\n")
    first = sshe.run(lab, host="gpu-box")
    wait_state(sshe, first.id, "running", timeout=60)
    second = sshe.run(lab, host="gpu-box")
    wait_state(sshe, second.id, "queued", timeout=60)
    _wait_reason(sshe, second.id, "waiting for 1 free GPU on gpu-box (1 of 1 busy)")
    status = json.loads(cli("hosts", "status", "gpu-box", "--json", home=mldesk_home, check=True).stdout)
    (box,) = status
    assert box["reachable"] and box["running"] == 1
    assert [(g["index"], g["name"], g["util_percent"]) for g in box["gpus"]] == [(0, "NVIDIA Fake GPU", 64)]
    assert box["gpus"][0]["memory_used_bytes"] == 3000 * MB
    for ex in (first, second):
        done = wait_final(sshe, ex.id, timeout=120)
        assert done.state == "finished", done.reason
        assert "CVD=0" in program_output(sshe, ex.id).decode()
        assert sshe.gpus_of(ex.id) == [0]
        # sampled on the host by the agent, pulled back with the log
        samples = resources.read_samples(str(sshe.layout.resources_path(ex.id)))[0]
        assert len(samples) >= 2
        assert max(s.get("rss", 0) for s in samples) >= 200 * MB
        assert any(s.get("gpu", {}).get("0", {}).get("util") == 64 for s in samples)
        assert sshe.stats(ex.id)["cpu_percent"]
    assert sshe.store.gpu_leases() == {}


def test_too_many_gpus_for_an_ssh_host(sshe, sshd_server, remote_dir, tmp_path, fake_gpus, gpu_python,
                                       mldesk_home):
    fake_gpus.set(2)
    add_host(sshe, sshd_server, "gpu-box", remote_dir, runtime="process", python=gpu_python)
    lab = lab_in(tmp_path, PROGRAM, "gpus: 3\n")
    r = cli("run", str(lab), "--host", "gpu-box", home=mldesk_home)
    assert r.returncode != 0 and "3 GPUs asked for, but gpu-box has 2 GPUs" in r.stderr.decode()
    assert sshe.list() == []


def test_samples_from_an_ssh_docker_host(sshe, sshd_server, remote_dir, tmp_path, python_image):
    """The agent samples a container's process tree on the host (no GPU)."""
    add_host(sshe, sshd_server, "box", remote_dir, runtime="docker")
    lab = lab_in(tmp_path, PROGRAM)
    ex = sshe.run(lab, host="box")
    done = wait_final(sshe, ex.id, timeout=180)
    assert done.state == "finished", done.reason
    assert "CVD=-" in program_output(sshe, ex.id).decode()
    samples = resources.read_samples(str(sshe.layout.resources_path(ex.id)))[0]
    assert len(samples) >= 2 and max(s.get("rss", 0) for s in samples) >= 200 * MB
    assert sshe.gpus_of(ex.id) == []
