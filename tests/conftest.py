"""Fixtures shared by the whole suite.

Docker, SSH, netns and Slurm tests skip when their service is missing, except where
``scripts/test.sh`` (and CI) export MLDESK_REQUIRE_DOCKER / _SSH / _NETNS / _SLURM=1: then a
missing service fails the test, so nothing goes quietly untested.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest_plugins = ("pytester",)

BUSYBOX_IMAGE = "mldesk-test/busybox:latest"
PYTHON_IMAGE = "mldesk-test/python:latest"
# Debian 11's Python 3.9: the oldest Python the agent is run on in the tests
OLDEST_PYTHON_IMAGE = "mldesk-test/python-oldest:latest"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "allow_log_errors: the test may log ERROR records on mldesk* loggers"
    )
    config.addinivalue_line("markers", "slurm: needs the test Slurm cluster (scripts/ci/slurm.sh)")


def _unavailable(require_var: str, reason: str):
    """Fail when the environment demands the service, skip otherwise."""
    if os.environ.get(require_var) == "1":
        pytest.fail(f"{reason} ({require_var}=1)", pytrace=False)
    pytest.skip(reason)


# --- data folder -------------------------------------------------------------------


@pytest.fixture(autouse=True)
def mldesk_home(tmp_path_factory, monkeypatch) -> Path:
    """A fresh, empty MLDESK_HOME for every test."""
    home = tmp_path_factory.mktemp("mldesk-home")
    monkeypatch.setenv("MLDESK_HOME", str(home))
    return home


# --- logged errors fail the test --------------------------------------------------


class ErrorRecorder(logging.Handler):
    """Keeps ERROR-and-above records from the ``mldesk*`` loggers."""

    def __init__(self):
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s: %(message)s"))

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name.startswith("mldesk")

    def emit(self, record: logging.LogRecord) -> None:
        # Attached to two loggers (see below): keep each record once.
        if not any(r is record for r in self.records):
            self.records.append(record)

    def report(self) -> str:
        return "\n".join(self.format(r) for r in self.records)


@pytest.fixture(autouse=True)
def fail_on_log_errors(request):
    """Fail a test whose code logged an error it did not expect (qutebrowser-style).

    Mark a test ``@pytest.mark.allow_log_errors`` when logging errors is the point.
    """
    recorder = ErrorRecorder()
    # On "mldesk" too, in case the app stops its records from propagating to root.
    loggers = [logging.getLogger(), logging.getLogger("mldesk")]
    for logger in loggers:
        logger.addHandler(recorder)
    try:
        yield recorder
    finally:
        for logger in loggers:
            logger.removeHandler(recorder)
    if recorder.records and request.node.get_closest_marker("allow_log_errors") is None:
        pytest.fail(
            "errors were logged (mark the test allow_log_errors if they are expected):\n"
            + recorder.report(),
            pytrace=False,
        )


# --- Docker ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def docker_client():
    try:
        import docker

        client = docker.from_env(version="auto")
        client.ping()
    except Exception as exc:  # DockerException, requests errors, missing socket...
        _unavailable("MLDESK_REQUIRE_DOCKER", f"Docker daemon not answering: {exc}")
    yield client
    client.close()


def _image(client, tag: str) -> str:
    import docker

    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        _unavailable("MLDESK_REQUIRE_DOCKER",
                     f"test image {tag} missing: run scripts/ci/build-test-images.sh")
    return tag


@pytest.fixture(scope="session")
def busybox_image(docker_client) -> str:
    return _image(docker_client, BUSYBOX_IMAGE)


@pytest.fixture(scope="session")
def python_image(docker_client) -> str:
    return _image(docker_client, PYTHON_IMAGE)


@pytest.fixture(scope="session")
def oldest_python(docker_client, tmp_path_factory) -> Path:
    """An executable that runs ``python3 ARGS`` in a container of the oldest-Python
    image (Debian 11, Python 3.9): a stand-in for an old host's interpreter. One
    container for the session, so processes an agent command starts detached live on
    between commands, as on a host; /tmp (where tests keep their files) is at the same
    path inside; stdin is passed through; no network."""
    image = _image(docker_client, OLDEST_PYTHON_IMAGE)
    name = f"mldesk-test-oldest-{os.getpid()}"
    subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    subprocess.run(["docker", "run", "-d", "--name", name, "--network", "none", "-v", "/tmp:/tmp",
                    image, "sleep", "infinity"], check=True, capture_output=True)
    wrapper = tmp_path_factory.mktemp("oldest-python") / "python3"
    wrapper.write_text('#!/bin/sh\ncase "$PWD" in /tmp/*) w=$PWD ;; *) w=/tmp ;; esac\n'
                       f'exec docker exec -i -w "$w" {name} python3 "$@"\n')
    wrapper.chmod(0o755)
    try:
        yield wrapper
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


# --- SSH -------------------------------------------------------------------------


@dataclass(frozen=True)
class SSHServer:
    host: str
    port: int
    user: str
    key_path: Path
    host_pubkey_path: Path

    @property
    def host_key_line(self) -> str:
        """``ssh-ed25519 AAAA...``, for a known_hosts entry."""
        return " ".join(self.host_pubkey_path.read_text().split()[:2])


def _ssh_from_env(prefix: str, require_var: str, hint: str) -> SSHServer:
    env = os.environ
    host, port = env.get(f"{prefix}_HOST"), env.get(f"{prefix}_PORT")
    key = env.get("MLDESK_TEST_SSH_KEY")
    hostkey = env.get("MLDESK_TEST_SSH_HOSTKEY_PUB")
    if not (host and port and key and hostkey):
        _unavailable(require_var, f"{prefix}_* not set: {hint}")
    server = SSHServer(host, int(port), env.get("MLDESK_TEST_SSH_USER", "root"),
                       Path(key), Path(hostkey))
    for path in (server.key_path, server.host_pubkey_path):
        if not path.is_file():
            _unavailable(require_var, f"{path} missing: {hint}")
    try:
        socket.create_connection((server.host, server.port), timeout=3).close()
    except OSError as exc:
        _unavailable(require_var, f"test sshd {server.host}:{server.port} not answering ({exc}): {hint}")
    return server


@pytest.fixture(scope="session")
def sshd_server() -> SSHServer:
    """The test sshd on this machine (scripts/ci/sshd.sh): root, key only."""
    return _ssh_from_env("MLDESK_TEST_SSH", "MLDESK_REQUIRE_SSH",
                         'scripts/ci/sshd.sh start; eval "$(scripts/ci/sshd.sh env)"')


@dataclass(frozen=True)
class NetnsHost(SSHServer):
    """A "remote" sshd in network namespace (scripts/ci/netns-host.sh) whose link
    can be cut. Same file system and users as this machine; from inside, this
    machine is ``gateway`` and nothing else is reachable."""

    gateway: str = ""
    script: str = ""

    def cut(self) -> None:
        """Drop the link: packets vanish silently, like a pulled cable."""
        subprocess.run(["bash", self.script, "cut"], check=True, capture_output=True)

    def restore(self) -> None:
        subprocess.run(["bash", self.script, "restore"], check=True, capture_output=True)


@pytest.fixture
def netns_host():
    """The netns SSH host, held exclusively: the link is machine-wide state, so a
    lock keeps concurrent pytest runs from cutting it under each other's feet."""
    import fcntl

    hint = 'scripts/ci/netns-host.sh up; eval "$(scripts/ci/netns-host.sh env)" (root only)'
    script = os.environ.get("MLDESK_TEST_NETNS_SCRIPT", "")
    os.makedirs("/tmp/mldesk-ci", exist_ok=True)
    with open("/tmp/mldesk-ci/netns-test.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if script:  # whatever an interrupted run left behind
            subprocess.run(["bash", script, "restore"], capture_output=True)
        base = _ssh_from_env("MLDESK_TEST_NETNS", "MLDESK_REQUIRE_NETNS", hint)
        host = NetnsHost(**vars(base), gateway=os.environ["MLDESK_TEST_NETNS_GATEWAY"],
                         script=script)
        try:
            yield host
        finally:
            host.restore()  # never leave the link cut for the next test


# --- a fake nvidia-smi on PATH (the only fake in the suite) -------------------------


class FakeGpus:
    """Controls the fake ``nvidia-smi`` (tests/helpers/fake_nvidia_smi.py) that the
    ``fake_gpus`` fixture puts first on PATH, for this process and its children."""

    def __init__(self, state_path: Path, bin_dir: Path):
        self.state_path = state_path
        self.bin_dir = bin_dir

    def set(self, n: int | None = None, **state) -> dict:
        from tests.helpers.fake_nvidia_smi import write_state

        return write_state(self.state_path, n, **state)

    def state(self) -> dict:
        import json

        return json.loads(self.state_path.read_text())

    def update_gpu(self, index: int, **values) -> None:
        state = self.state()
        state["gpus"][index].update(values)
        self.set(**state)


@pytest.fixture
def fake_gpus(tmp_path_factory, monkeypatch) -> FakeGpus:
    """Two fake GPUs by default (``fake_gpus.set(4)`` for more)."""
    import sys

    bin_dir = tmp_path_factory.mktemp("fake-smi-bin")
    script = Path(__file__).parent / "helpers" / "fake_nvidia_smi.py"
    exe = bin_dir / "nvidia-smi"
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    exe.chmod(0o755)
    state = bin_dir / "state.json"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_NVIDIA_SMI_STATE", str(state))
    fake = FakeGpus(state, bin_dir)
    fake.set(2)
    return fake
