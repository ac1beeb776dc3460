"""Docker faults give clear errors: daemon not running, image missing, GPU absent."""

from __future__ import annotations

import pytest

from mldesk.engine.facade import Engine, EngineError
from tests.integration.conftest import cli, wait_final


@pytest.fixture
def lab(tmp_path):
    lab = tmp_path / "lab"
    lab.mkdir()
    (lab / "main.py").write_text("print('hi')\n")
    return lab


def test_daemon_not_running_is_a_clear_error(lab, mldesk_home, monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such-docker.sock")
    with pytest.raises(EngineError, match="Docker daemon is not running.*--runtime process"):
        Engine(mldesk_home).run(lab, runtime="docker")
    res = cli("run", str(lab), "--runtime", "docker", home=mldesk_home)
    err = res.stderr.decode()
    assert res.returncode == 1 and err.startswith("mldesk: error: the Docker daemon is not running")
    assert err.count("\n") == 1 and "Traceback" not in err
    # with no daemon the local default is the embedded process runtime
    res = cli("run", str(lab), home=mldesk_home)
    assert res.returncode == 0 and res.stdout == b"hi\n"
    assert b"process runtime" in res.stderr


def test_image_missing_fails_with_reason(lab, mldesk_home, docker_client):
    # a registry on a closed local port: the pull fails without leaving this machine
    (lab / "ml.yaml").write_text("dockerImageId: 127.0.0.1:9/mldesk-test/does-not-exist:1.0\n")
    engine = Engine(mldesk_home)
    engine.set_setting("local_network", "none")
    ex = engine.run(lab, runtime="docker")
    final = wait_final(engine, ex.id)
    assert final.state == "failed"
    assert "127.0.0.1:9/mldesk-test/does-not-exist:1.0" in final.reason
    assert "could not be pulled" in final.reason and "docker load" in final.reason
    res = cli("show", ex.id, home=mldesk_home, check=True)
    assert b"could not be pulled" in res.stdout


def test_gpu_requested_without_gpu(lab, mldesk_home, busybox_image, fake_gpus):
    fake_gpus.set(0)  # a host without GPUs, whether or not this machine has one
    (lab / "ml.yaml").write_text("dockerImageId: mldesk-test/busybox:latest\nhardwareType: GPU\n")
    engine = Engine(mldesk_home)
    engine.set_setting("local_network", "none")
    # hardwareType: gpu means gpus: 1; a host without one refuses it at Run time
    with pytest.raises(EngineError, match="1 GPU asked for, but local has no GPUs") as err:
        engine.run(lab, runtime="docker")
    assert "hardwareType" in str(err.value) and "\n" not in str(err.value)
    assert engine.list() == []


def test_gpu_requested_on_process_runtime_without_gpu(lab, mldesk_home, fake_gpus):
    fake_gpus.set(0)  # a host without GPUs, whether or not this machine has one
    (lab / "ml.yaml").write_text("hardwareType: gpu\n")
    engine = Engine(mldesk_home)
    with pytest.raises(EngineError, match="nvidia-smi found none"):
        engine.run(lab, runtime="process")
    assert engine.list() == []
