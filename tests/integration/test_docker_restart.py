"""The Docker daemon stopped and restarted while a container runs (SPEC 10, issue 10 item 4).

A private dockerd (its own data root, socket and containerd; no bridge) is stopped by
the test and started again, so the machine's daemon and other tests are untouched.
The program is a shell script (the test image's ``python`` runs ``sh``) that writes a
checkpoint into outputs/ on SIGTERM.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from mldesk.agent import dockerapi
from mldesk.engine.facade import Engine
from tests.conftest import BUSYBOX_IMAGE
from tests.integration.conftest import program_output, wait_final, wait_state

SHPYTHON = "mldesk-test/shpython:latest"

CHECKPOINT_SH = """\
trap 'echo "saved at term" > outputs/checkpoint.txt; echo "got SIGTERM, checkpoint written"; exit 143' TERM
echo ready
i=0
while [ $i -lt ${1:-100000} ]; do
  i=$((i + 1))
  echo "tick $i"
  sleep 0.1
done
echo "the end"
"""


class PrivateDockerd:
    def __init__(self, base: Path, live_restore: bool):
        self.base = base
        self.sock = base / "docker.sock"
        self.pidfile = base / "dockerd.pid"
        self.host = f"unix://{self.sock}"
        self.live_restore = live_restore
        self.proc: subprocess.Popen | None = None

    def docker(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", "-H", self.host, *args], capture_output=True, timeout=120, **kw)

    def start(self) -> None:
        args = ["dockerd", "--data-root", str(self.base / "data"), "--exec-root", str(self.base / "exec"),
                "--pidfile", str(self.pidfile), "-H", self.host, "--bridge", "none", "--iptables=false"]
        if self.live_restore:
            args.append("--live-restore")
        log = open(self.base / "dockerd.log", "ab")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                     start_new_session=True)
        log.close()
        deadline = time.monotonic() + 60
        api = dockerapi.DockerAPI(self.host)
        while not api.ping():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = (self.base / "dockerd.log").read_text()[-2000:]
                pytest.fail(f"private dockerd did not start: {tail}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


@pytest.fixture
def private_dockerd(request, busybox_image):
    if os.geteuid() != 0 or not shutil.which("dockerd"):
        pytest.skip("needs root and dockerd to run a private Docker daemon")
    os.makedirs("/tmp/mldesk-ci", exist_ok=True)
    base = Path(subprocess.check_output(["mktemp", "-d", "/tmp/mldesk-ci/dockerd-XXXXXX"], text=True).strip())
    d = PrivateDockerd(base, live_restore=request.param)
    try:
        d.start()
        # the busybox test image plus a `python` that runs sh: a few MB, no registry
        save = subprocess.Popen(["docker", "save", busybox_image], stdout=subprocess.PIPE)
        load = subprocess.run(["docker", "-H", d.host, "load"], stdin=save.stdout, capture_output=True,
                              timeout=120)
        save.wait(60)
        assert load.returncode == 0, load.stderr
        shim = base / "python"
        shim.write_text('#!/bin/sh\nexec sh "$@"\n')
        shim.chmod(0o755)
        assert d.docker("create", "--name", "shim", busybox_image, "true").returncode == 0
        assert d.docker("cp", str(shim), "shim:/bin/python").returncode == 0
        assert d.docker("commit", "shim", SHPYTHON).returncode == 0
        d.docker("rm", "-f", "shim")
        yield d
    finally:
        try:
            if d.proc is None:
                d.start()  # whatever the test did: stop it cleanly (containers, mounts)
            for cid in d.docker("ps", "-aq").stdout.decode().split():
                d.docker("rm", "-f", cid)
        except BaseException:  # noqa: BLE001 - the cleanup below still runs
            pass
        d.stop()
        # dockerd bind-mounts its data root on itself: unmount before removing (never
        # remove through a mount)
        with open("/proc/mounts") as f:
            mounts = [line.split()[1] for line in f if line.split()[1].startswith(str(base) + "/")]
        for mount in sorted(mounts, reverse=True):
            subprocess.run(["umount", "-l", mount], capture_output=True)
        subprocess.run(["rm", "-rf", "--one-file-system", str(base)], capture_output=True)


def _lab(tmp_path: Path, ticks: int) -> Path:
    lab = tmp_path / "lab"
    lab.mkdir()
    (lab / "main.py").write_text(CHECKPOINT_SH)
    (lab / "ml.yaml").write_text(f"dockerImageId: {SHPYTHON}\nparameters:\n  - pass-as: '{ticks}'\n")
    return lab


def _wait(cond, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _stop_daemon_mid_run(engine, exec_id, dockerd) -> None:
    """Once the program is printing, stop the daemon and wait for the supervisor's note."""
    wait_state(engine, exec_id, "running", timeout=60)
    _wait(lambda: b"tick 3\n" in program_output(engine, exec_id), 30, "the program's output")
    dockerd.stop()
    _wait(lambda: "waiting" in (engine.store.get(exec_id).note or ""), 30, "the note about the daemon")


def _messages(engine: Engine, exec_id: str) -> str:
    from mldesk.agent import logstore

    with engine.log_reader(exec_id) as reader:
        return b"".join(r.data for r in reader.iter_records(0) if r.stream == logstore.MLDESK).decode()


@pytest.mark.parametrize("private_dockerd", [False], indirect=True, ids=["containers-die"])
def test_daemon_stopped_mid_run_keeps_checkpoint_and_says_so(private_dockerd, tmp_path, monkeypatch, mldesk_home):
    """Without live-restore the daemon's shutdown ends the container (SIGTERM: the
    program writes its checkpoint). The supervisor says it waits for the daemon,
    finds the container dead when the daemon is back, records why, collects the
    checkpoint and removes the container; the log is kept."""
    monkeypatch.setenv("DOCKER_HOST", private_dockerd.host)
    engine = Engine(mldesk_home)
    engine.set_setting("local_network", "none")
    try:
        ex = engine.run(_lab(tmp_path, 100000), runtime="docker")
        _stop_daemon_mid_run(engine, ex.id, private_dockerd)
        assert engine.store.get(ex.id).state == "running"
        time.sleep(1.0)
        private_dockerd.start()
        final = wait_final(engine, ex.id, timeout=90)
        assert final.state == "failed"
        assert "Docker daemon stopped" in final.reason and "143" in final.reason, final.reason
        assert not final.note
        out = program_output(engine, ex.id)
        assert out.startswith(b"ready\ntick 1\n") and b"got SIGTERM, checkpoint written\n" in out
        assert "waiting up to" in _messages(engine, ex.id)
        checkpoint = engine.layout.outputs(ex.id) / "checkpoint.txt"
        assert checkpoint.read_text() == "saved at term\n"
        # the outcome is recorded first, then the container is removed
        _wait(lambda: dockerapi.DockerAPI(private_dockerd.host).inspect(f"mldesk-{ex.id}") is None, 30,
              "the container to be removed")
    finally:
        engine.close()


@pytest.mark.parametrize("private_dockerd", [True], indirect=True, ids=["live-restore"])
def test_daemon_restarted_with_live_restore_picks_the_container_up(private_dockerd, tmp_path, monkeypatch,
                                                                  mldesk_home):
    """With live-restore the container outlives the daemon: the runner waits, attaches
    again when the daemon is back and the execution finishes normally."""
    monkeypatch.setenv("DOCKER_HOST", private_dockerd.host)
    engine = Engine(mldesk_home)
    engine.set_setting("local_network", "none")
    try:
        ex = engine.run(_lab(tmp_path, 60), runtime="docker")
        _stop_daemon_mid_run(engine, ex.id, private_dockerd)
        private_dockerd.start()
        final = wait_final(engine, ex.id, timeout=90)
        assert final.state == "finished", final.reason
        out = program_output(engine, ex.id)
        assert out.startswith(b"ready\ntick 1\n") and out.endswith(b"tick 60\nthe end\n")
        assert "following it again" in _messages(engine, ex.id)
        # the outcome is recorded first, then the container is removed
        _wait(lambda: dockerapi.DockerAPI(private_dockerd.host).inspect(f"mldesk-{ex.id}") is None, 30,
              "the container to be removed")
    finally:
        engine.close()
