"""Lab templates: created by `mldesk init`, valid ml.yaml, and the XOR example runs."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from mldesk.core.labconfig import load_lab_config
from mldesk.templates import TEMPLATES, create_lab


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_template_creates_a_valid_lab(tmp_path, template):
    lab = create_lab(tmp_path / "lab", template)
    assert lab == tmp_path / "lab"
    assert {p.name for p in lab.iterdir()} == {"main.py", "ml.yaml"}
    config = load_lab_config(lab)
    assert config.warnings == () and config.hardware_type == "cpu"
    assert config.docker_image_id == "python:3.12-slim" and config.inputs == ()
    assert config.argv() == (["--epochs=2000"] if template == "xor" else [])


def test_create_lab_refuses_to_overwrite(tmp_path):
    (tmp_path / "main.py").write_text("mine")
    with pytest.raises(ValueError, match="already has main.py"):
        create_lab(tmp_path, "xor")
    assert (tmp_path / "main.py").read_text() == "mine" and not (tmp_path / "ml.yaml").exists()


def test_create_lab_unknown_template(tmp_path):
    with pytest.raises(ValueError, match="unknown template 'nope'; choose one of: empty, xor"):
        create_lab(tmp_path, "nope")


def test_empty_template_runs(tmp_path):
    lab = create_lab(tmp_path, "empty")
    out = subprocess.run([sys.executable, "main.py", "--x=1"], cwd=lab, capture_output=True, text=True, check=True)
    assert "['--x=1']" in out.stdout


def test_xor_learns_and_writes_outputs(tmp_path):
    lab = create_lab(tmp_path, "xor")
    (lab / "outputs").mkdir()
    result = subprocess.run([sys.executable, "-I", "main.py", *load_lab_config(lab).argv()], cwd=lab,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "epoch 100/2000 loss: " in result.stdout
    assert lines[-1] == "accuracy: 1.00"
    assert (lab / "outputs" / "weights.json").stat().st_size > 0
    loss = (lab / "outputs" / "loss.csv").read_text().splitlines()
    assert loss[0] == "epoch,loss" and len(loss) == 2001 and loss[1].startswith("1,")
    assert float(loss[-1].split(",")[1]) < float(loss[1].split(",")[1])


def test_xor_checkpoints_on_sigterm(tmp_path):
    lab = create_lab(tmp_path, "xor")
    (lab / "outputs").mkdir()
    proc = subprocess.Popen([sys.executable, "-I", "main.py", "--epochs", "10000000"], cwd=lab,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("training XOR for 10000000 epochs")
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 143
    finally:
        proc.kill()
        proc.wait()
    assert "saved outputs/checkpoint.json" in proc.stdout.read()
    proc.stdout.close()
    assert (lab / "outputs" / "checkpoint.json").stat().st_size > 0
    assert not (lab / "outputs" / "weights.json").exists()
