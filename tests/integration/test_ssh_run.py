"""Executions on an SSH host (the test sshd on 127.0.0.1:2222, scripts/ci/sshd.sh):
a full run with inputs and outputs on the process and the Docker runtime, parameters
with shell metacharacters, Stop, Restart, outputs while running, content-addressed
upload (only changed files are sent), and resume after the local supervisor died.

The "remote" host shares this machine's file system: each test gets its own remote
work folder under tmp_path, so tests never share blobs or executions there.
"""

from __future__ import annotations

import json
import os
import signal
import textwrap
import time
from pathlib import Path

import pytest

from mldesk.agent import logstore
from mldesk.engine.facade import Engine
from tests.integration.conftest import CHECKPOINT_ON_TERM
from mldesk.core.hosts import HostProfile
from tests.helpers.httpserver import HTTPTestServer
from tests.integration.conftest import program_output, wait_final, wait_state

pytestmark = pytest.mark.ssh

NASTY = ["; rm -rf ~", "$(id)", "`id`", "a b", "it's", 'say "hi"', "line1\nline2", "*", "$HOME", "ü€",
         "&& echo pwned", "| cat /etc/passwd", "> /tmp/x", "'", '"', "\\", "--flag=$(whoami)"]


# -- helpers shared by the test_ssh_* modules -----------------------------------------------

@pytest.fixture
def isolated_home(tmp_path, monkeypatch) -> Path:
    """HOME in tmp_path: no ~/.ssh/config, known_hosts or keys of the machine leak in
    (the supervisors started by the tests inherit it)."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.delenv("MLDESK_SSH_CONFIG", raising=False)
    monkeypatch.delenv("MLDESK_SSH_KNOWN_HOSTS", raising=False)
    return home


def trust_host(engine: Engine, server, host: str | None = None, port: int | None = None) -> None:
    """Put the test sshd's host key into mldesk's known_hosts (as `hosts test
    --accept-fingerprint` would)."""
    host = host or server.host
    port = port or server.port
    name = host if port == 22 else f"[{host}]:{port}"
    with open(engine.layout.known_hosts, "a") as f:
        f.write(f"{name} {server.host_key_line}\n")


def add_host(engine: Engine, server, name: str, workdir: Path, *, trust: bool = True, **kw) -> HostProfile:
    opts = dict(key=str(server.key_path), workdir=str(workdir), runtime="process", network="none",
                keepalive=2.0, connect_timeout=5.0, outputs_interval=30.0)
    opts.update(kw)
    profile = HostProfile.from_url(name, f"ssh://{server.user}@{server.host}:{server.port}", **opts)
    engine.store.put_host(name, profile.to_dict())
    if trust:
        trust_host(engine, server)
    return profile


def stop_all(engine: Engine, timeout: float = 30.0) -> None:
    for ex in engine.store.list(include_hidden=True):
        if ex.active:
            engine.stop(ex.id)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(e.active for e in engine.store.list(include_hidden=True)):
        time.sleep(0.1)


def lab_in(tmp_path: Path, main: str, yaml: str = "", name: str = "lab", **files) -> Path:
    lab = tmp_path / name
    lab.mkdir(parents=True, exist_ok=True)
    (lab / "main.py").write_text(textwrap.dedent(main))
    (lab / "ml.yaml").write_text("dockerImageId: test-python\n" + textwrap.dedent(yaml))
    for fname, text in files.items():
        (lab / fname).write_text(text)
    return lab


def wait_for(pred, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def messages(engine: Engine, exec_id: str) -> str:
    with engine.log_reader(exec_id) as reader:
        return b"".join(r.data for r in reader.iter_records() if r.stream == logstore.MLDESK).decode()


# -- fixtures ---------------------------------------------------------------------------------

@pytest.fixture(params=["process", "docker"])
def remote_runtime(request):
    if request.param == "docker":
        request.getfixturevalue("python_image")
    return request.param


@pytest.fixture
def sshe(mldesk_home, isolated_home, sshd_server):
    eng = Engine(mldesk_home)
    eng.set_setting("image_aliases", {"test-python": "mldesk-test/python:latest"})
    eng.set_setting("stop_grace", 5.0)
    eng.set_setting("input_timeout", 5.0)
    eng.set_setting("input_retries", 1)
    yield eng
    stop_all(eng)
    eng.close()


@pytest.fixture
def remote_dir(tmp_path) -> Path:
    d = tmp_path / "remote-workdir"
    d.mkdir()
    return d


# -- tests --------------------------------------------------------------------------------------

def test_full_run_with_inputs_outputs_and_nasty_parameters(sshe, sshd_server, remote_dir, remote_runtime, tmp_path):
    add_host(sshe, sshd_server, "box", remote_dir, runtime=remote_runtime)
    data = os.urandom(300_000)
    yaml_lines = ["parameters:"]
    for arg in NASTY:
        yaml_lines.append("  - pass-as: " + json.dumps("'" + arg.replace("'", "'\\''") + "'"))
    local_file = tmp_path / "on my laptop.txt"
    local_file.write_text("from this computer")
    with HTTPTestServer() as srv:
        url = srv.serve("/data.bin", data)
        yaml_lines += ["inputs:", "  - name: data.bin", f"    url: {url}",
                       "  - name: local.txt", f"    url: {local_file.as_uri()}"]
        lab = lab_in(tmp_path, """
            import hashlib, json, os, sys
            os.makedirs("outputs/sub", exist_ok=True)
            open("outputs/argv.json", "w").write(json.dumps(sys.argv[1:]))
            open("outputs/sub/digest.txt", "w").write(hashlib.sha256(open("inputs/data.bin", "rb").read()).hexdigest())
            open("outputs/local.txt", "w").write(open("inputs/local.txt").read())
            os.symlink("/etc/passwd", "outputs/passwd-link")
            os.symlink("/etc", "outputs/etc-link")
            print("hello from", os.environ["MLDESK_EXECUTION_ID"], os.environ["PYTHONUNBUFFERED"])
            print("to stderr", file=sys.stderr)
            """, "\n".join(yaml_lines) + "\n", helper="not used\n")
        ex = sshe.run(lab, host="box", allow_local_inputs=True)  # local.txt is outside the lab
        assert ex.host == "box" and ex.runtime == remote_runtime
        final = wait_final(sshe, ex.id, timeout=90)
        assert srv.hits("/data.bin") >= 1
    assert final.state == "finished", (final.reason, messages(sshe, ex.id))
    assert final.exit_code == 0
    assert f"read local file {local_file}" in messages(sshe, ex.id)  # always named (SPEC 10a)
    out = sshe.outputs_dir(ex.id)
    assert json.loads((out / "argv.json").read_text()) == NASTY
    import hashlib

    assert (out / "sub" / "digest.txt").read_text() == hashlib.sha256(data).hexdigest()
    assert (out / "local.txt").read_text() == "from this computer"
    assert not (out / "passwd-link").exists() and not (out / "passwd-link").is_symlink()
    assert not (out / "etc-link").exists()
    log = program_output(sshe, ex.id)
    assert sorted(log.splitlines()) == sorted([f"hello from {ex.id} 1".encode(), b"to stderr"])
    msgs = messages(sshe, ex.id)
    assert f"{remote_runtime} runtime" in msgs and "finished" in msgs
    assert "outputs/passwd-link: symbolic link" in msgs
    assert "sent local.txt from this computer" in msgs
    # the host's copy is removed once everything came back; blobs and the input cache stay
    deadline = time.monotonic() + 30  # the outcome is recorded first, then the host is cleaned up
    while (remote_dir / "executions" / ex.id).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not (remote_dir / "executions" / ex.id).exists()
    assert any((remote_dir / "blobs").rglob("*")) and any((remote_dir / "cache" / "inputs").rglob("*"))
    upload = json.loads((sshe.layout.execution_dir(ex.id) / "upload.json").read_text())
    assert upload["blobs_sent"] == 3


def test_stop_keeps_checkpoint(sshe, sshd_server, remote_dir, remote_runtime, tmp_path):
    add_host(sshe, sshd_server, "box", remote_dir, runtime=remote_runtime, stop_grace=5.0)
    lab = lab_in(tmp_path, CHECKPOINT_ON_TERM)
    ex = sshe.run(lab, host="box")
    wait_state(sshe, ex.id, "running", timeout=60)
    wait_for(lambda: b"ready" in program_output(sshe, ex.id), 30, "the program to print ready")
    t0 = time.monotonic()
    sshe.stop(ex.id)
    final = wait_final(sshe, ex.id, timeout=30)
    assert final.state == "stopped" and final.exit_code == 143, final.reason
    assert time.monotonic() - t0 < 10
    out = sshe.outputs_dir(ex.id)
    assert (out / "checkpoint.txt").read_text() == "saved at term"
    assert (out / "early.txt").read_text() == "early"
    assert b"checkpoint written" in program_output(sshe, ex.id)


def test_restart_runs_the_snapshot_again(sshe, sshd_server, remote_dir, tmp_path):
    add_host(sshe, sshd_server, "box", remote_dir)
    lab = lab_in(tmp_path, "print('version one')\n", extra="keep me\n")
    first = wait_final(sshe, sshe.run(lab, host="box").id, timeout=60)
    assert first.state == "finished", first.reason
    (lab / "main.py").write_text("print('version two')\n")
    second, backup = sshe.restart(first.id)
    assert backup is not None and second.host == "box" and second.snapshot == first.snapshot
    final = wait_final(sshe, second.id, timeout=60)
    assert final.state == "finished", final.reason
    assert program_output(sshe, final.id) == b"version one\n"
    # nothing changed on the host's side: the restart sent no file contents again
    upload = json.loads((sshe.layout.execution_dir(second.id) / "upload.json").read_text())
    assert upload["blobs_sent"] == 0


def test_outputs_come_back_while_running(sshe, sshd_server, remote_dir, tmp_path):
    add_host(sshe, sshd_server, "box", remote_dir, outputs_interval=0.5)
    lab = lab_in(tmp_path, """
        import os, time
        open("outputs/progress.txt", "w").write("epoch 1")
        print("wrote", flush=True)
        while not os.path.exists("release"):
            time.sleep(0.05)
        open("outputs/progress.txt", "w").write("epoch 2, done")
        """)
    ex = sshe.run(lab, host="box")
    wait_state(sshe, ex.id, "running", timeout=60)
    progress = sshe.outputs_dir(ex.id) / "progress.txt"
    wait_for(lambda: progress.exists() and progress.read_text() == "epoch 1", 20, "outputs while running")
    assert sshe.store.get(ex.id).state == "running"
    (remote_dir / "executions" / ex.id / "workspace" / "release").write_text("")
    final = wait_final(sshe, ex.id, timeout=60)
    assert final.state == "finished", final.reason
    assert progress.read_text() == "epoch 2, done"


PRINTER = """
import sys, time
n, delay = int(sys.argv[1]), float(sys.argv[2])
for i in range(n):
    sys.stdout.write("line %05d %s\\n" % (i, "x" * (i % 23)))
    sys.stdout.flush()
    if i % 50 == 7:
        sys.stdout.write("partial %d..." % i)
        sys.stdout.flush()
        time.sleep(0.08)
        sys.stdout.write("done\\n")
        sys.stdout.flush()
    time.sleep(delay)
sys.stdout.write("the end, no newline")
"""


def expected_printer(n: int) -> bytes:
    out = []
    for i in range(n):
        out.append(b"line %05d %s\n" % (i, b"x" * (i % 23)))
        if i % 50 == 7:
            out.append(b"partial %d...done\n" % i)
    out.append(b"the end, no newline")
    return b"".join(out)


def test_resume_after_the_local_supervisor_was_killed(sshe, sshd_server, remote_dir, tmp_path):
    """SIGKILL the local supervisor twice while the remote program prints; the
    reattached supervisors resume from the host's log: not a line lost or doubled."""
    add_host(sshe, sshd_server, "box", remote_dir)
    n = 400
    lab = lab_in(tmp_path, PRINTER, f"parameters:\n  - pass-as: '{n} 0.012'\n")
    ex = sshe.run(lab, host="box")
    wait_state(sshe, ex.id, "running", timeout=60)
    for round_ in range(2):
        wait_for(lambda: program_output(sshe, ex.id).count(b"\n") > 80 * (round_ + 1), 30, "some output")
        pid = sshe.store.get(ex.id).supervisor_pid
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not _alive(pid), 10, "the supervisor to die")
        time.sleep(0.3)
        assert sshe.reattach_one(ex.id)
    final = wait_final(sshe, ex.id, timeout=60)
    assert final.state == "finished", final.reason
    assert program_output(sshe, ex.id) == expected_printer(n)
    assert messages(sshe, ex.id).count("mldesk reattached") == 2


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (our child) counts as dead
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


# The issue asks for a 1 GiB lab; 256 MiB keeps this test at a few seconds in CI
# (bench/p6_upload.py does the same with 1 GiB). The property checked is the same:
# the second upload sends the changed file and (almost) nothing else.
BIG_LAB_MB = int(os.environ.get("MLDESK_TEST_BIG_LAB_MB", "256"))


def _big_lab(lab: Path, total_mb: int) -> None:
    block = os.urandom(1 << 20)
    for i in range(total_mb // 8):
        with open(lab / f"data-{i:04d}.bin", "wb") as f:
            f.write(b"%08d" % i)  # a different content (blob) per file
            for _ in range(8):
                f.write(block)


def test_second_upload_sends_only_the_changed_file(sshe, sshd_server, remote_dir, tmp_path):
    add_host(sshe, sshd_server, "box", remote_dir)
    lab = lab_in(tmp_path, "import os\nprint(len(os.listdir('.')))\n", "exclude: ['.*']\n")
    _big_lab(lab, BIG_LAB_MB)
    (lab / "weights.bin").write_bytes(os.urandom(10_000_000))
    first = wait_final(sshe, sshe.run(lab, host="box").id, timeout=120)
    assert first.state == "finished", first.reason
    up1 = json.loads((sshe.layout.execution_dir(first.id) / "upload.json").read_text())
    assert up1["blob_bytes_sent"] >= BIG_LAB_MB << 20
    (lab / "weights.bin").write_bytes(os.urandom(10_000_000))  # one changed 10 MB file
    second = wait_final(sshe, sshe.run(lab, host="box").id, timeout=120)
    assert second.state == "finished", second.reason
    up2 = json.loads((sshe.layout.execution_dir(second.id) / "upload.json").read_text())
    assert up2["blobs_sent"] == 1 and up2["blob_bytes_sent"] == 10_000_000
    # every byte that went over the wire during the upload, SSH framing included
    assert up2["bytes_sent_wire"] < 11_000_000, up2
    assert program_output(sshe, second.id) == program_output(sshe, first.id)


def test_unknown_host_key_fails_the_execution(sshe, sshd_server, remote_dir, tmp_path):
    add_host(sshe, sshd_server, "stranger", remote_dir, trust=False)
    lab = lab_in(tmp_path, "print('never runs')\n")
    final = wait_final(sshe, sshe.run(lab, host="stranger").id, timeout=60)
    assert final.state == "failed"
    assert "not known" in final.reason and "SHA256:" in final.reason and "--accept-fingerprint" in final.reason
    assert program_output(sshe, final.id) == b""
    assert not (remote_dir / "executions").exists(), "nothing was run or uploaded"
