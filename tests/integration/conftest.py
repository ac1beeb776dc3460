"""Fixtures for running real executions on both local runtimes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from mldesk.engine.facade import Engine
from tests.conftest import SSHServer, _unavailable

APP = str(Path(__file__).resolve().parents[2] / "app")

# A program that saves a checkpoint into outputs/ when it gets SIGTERM (Stop tests).
CHECKPOINT_ON_TERM = """
import signal, sys, time
def on_term(signum, frame):
    open("outputs/checkpoint.txt", "w").write("saved at term")
    print("got SIGTERM, checkpoint written", flush=True)
    sys.exit(143)
signal.signal(signal.SIGTERM, on_term)
open("outputs/early.txt", "w").write("early")
print("ready", flush=True)
while True:
    time.sleep(0.05)
"""


@pytest.fixture(params=["process", "docker"])
def runtime(request):
    """Each test using this runs once on the process runtime and once on Docker
    (the test Python image, network none)."""
    if request.param == "docker":
        request.getfixturevalue("python_image")
    return request.param


@pytest.fixture
def engine(mldesk_home, runtime):
    eng = Engine(mldesk_home)
    if runtime == "docker":
        eng.set_setting("image_aliases", {"test-python": "mldesk-test/python:latest"})
        eng.set_setting("local_network", "none")
    eng.set_setting("stop_grace", 5.0)
    eng.set_setting("input_timeout", 2.0)
    eng.set_setting("input_retries", 1)
    yield eng
    # never leave an execution running behind a test
    for ex in eng.store.list(include_hidden=True):
        if ex.active:
            eng.stop(ex.id)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(e.active for e in eng.store.list(include_hidden=True)):
        time.sleep(0.1)
    eng.close()


@pytest.fixture
def make_lab(tmp_path):
    """make_lab(main_py, ml_yaml=None, **files) -> Path of a new lab."""
    counter = iter(range(1000))

    def make(main: str, ml_yaml: str | None = None, **files: str) -> Path:
        lab = tmp_path / f"lab{next(counter)}"
        lab.mkdir()
        (lab / "main.py").write_text(textwrap.dedent(main))
        yaml = "dockerImageId: test-python\n" + textwrap.dedent(ml_yaml or "")
        (lab / "ml.yaml").write_text(yaml)
        for name, text in files.items():
            (lab / name).write_text(textwrap.dedent(text))
        return lab

    return make


def wait_final(engine: Engine, exec_id: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ex = engine.store.get(exec_id)
        if ex is not None and ex.final:
            return ex
        time.sleep(0.05)
    ex = engine.store.get(exec_id)
    log = engine.layout.execution_dir(exec_id) / "supervisor.log"
    raise AssertionError(f"{exec_id} still {ex.state if ex else 'gone'} after {timeout} s; "
                         f"supervisor log: {log.read_text() if log.exists() else '-'}")


def wait_state(engine: Engine, exec_id: str, state: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ex = engine.store.get(exec_id)
        if ex.state == state:
            return ex
        if ex.final:
            raise AssertionError(f"{exec_id} ended {ex.state} ({ex.reason}) before reaching {state}")
        time.sleep(0.02)
    raise AssertionError(f"{exec_id} never reached {state}")


def program_output(engine: Engine, exec_id: str) -> bytes:
    import io

    from mldesk.agent import logstore

    buf = io.BytesIO()
    with engine.log_reader(exec_id) as reader:
        logstore.write_program_output(reader, buf)
    return buf.getvalue()


def cli(*args: str, home: Path, check: bool = False, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, MLDESK_HOME=str(home), PYTHONPATH=APP)
    proc = subprocess.run([sys.executable, "-m", "mldesk", *args], env=env, capture_output=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"mldesk {' '.join(args)} exited {proc.returncode}: {proc.stderr.decode()}")
    return proc


def cli_popen(*args: str, home: Path, **kw) -> subprocess.Popen:
    env = dict(os.environ, MLDESK_HOME=str(home), PYTHONPATH=APP)
    return subprocess.Popen([sys.executable, "-m", "mldesk", *args], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


# --- Slurm ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlurmHost:
    """The single-node test cluster (scripts/ci/slurm.sh) behind its login node, the
    test sshd. ``ssh(cmd)`` runs a shell command there the way a user's SSH session
    would (no SLURM_CONF passed along: the login node must find the cluster itself)."""

    server: SSHServer
    partition: str
    node: str
    gpus: int

    def ssh(self, command: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        s = self.server
        known = Path(os.environ.get("MLDESK_TEST_SSH_KNOWN_HOSTS", ""))
        argv = ["ssh", "-i", str(s.key_path), "-p", str(s.port), "-o", "BatchMode=yes",
                "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"UserKnownHostsFile={known}", "-F", "/dev/null", f"{s.user}@{s.host}", command]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                              stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise AssertionError(f"ssh {command!r} exited {proc.returncode}: {proc.stderr}")
        return proc


@pytest.fixture(scope="session")
def slurm_host(sshd_server) -> SlurmHost:
    """The test Slurm cluster, reached through the test sshd; skips (fails under
    MLDESK_REQUIRE_SLURM=1) when it is not running."""
    hint = 'scripts/ci/slurm.sh start; eval "$(scripts/ci/slurm.sh env)"'
    env = os.environ
    if not env.get("MLDESK_TEST_SLURM_PARTITION"):
        _unavailable("MLDESK_REQUIRE_SLURM", f"MLDESK_TEST_SLURM_* not set: {hint}")
    host = SlurmHost(sshd_server, env["MLDESK_TEST_SLURM_PARTITION"], env.get("MLDESK_TEST_SLURM_NODE", ""),
                     int(env.get("MLDESK_TEST_SLURM_GPUS", "0")))
    deadline = time.monotonic() + 20  # a node busy with another run's jobs is fine; down is not
    while True:
        probe = host.ssh(f"sinfo -h -p {host.partition} -o %T", timeout=30, check=False)
        states = [st.rstrip("*~#!%$@^-") for st in probe.stdout.split()]
        ok = probe.returncode == 0 and any(st in ("idle", "mixed", "allocated", "completing") for st in states)
        if ok or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if not ok:
        _unavailable("MLDESK_REQUIRE_SLURM",
                     f"the test Slurm cluster does not answer over SSH (sinfo: {probe.returncode} "
                     f"{probe.stdout.strip()} {probe.stderr.strip()}): {hint}")
    return host
