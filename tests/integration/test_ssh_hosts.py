"""Host profiles against the real test sshd: host keys (unknown refused, accepted with
the right fingerprint only, changed refused naming both), a wrong user key, a port
nobody listens on, ~/.ssh/config aliases, and the `mldesk hosts` CLI (no terminal:
an unknown key is refused unless --accept-fingerprint names it)."""

from __future__ import annotations

import base64
import json
import subprocess
import time

import paramiko
import pytest

from mldesk.core import hosts

from mldesk.runtimes.ssh import transport
from mldesk.core.paths import Layout
from tests.integration.conftest import cli
from tests.integration.test_ssh_run import isolated_home  # noqa: F401 - fixture

pytestmark = pytest.mark.ssh


@pytest.fixture
def profile(sshd_server, isolated_home, tmp_path):
    return hosts.HostProfile.from_url(
        "box", f"ssh://{sshd_server.user}@{sshd_server.host}:{sshd_server.port}",
        key=str(sshd_server.key_path), workdir=str(tmp_path / "remote"), connect_timeout=5.0)


def _key(line: str) -> paramiko.PKey:
    key_type, b64 = line.split()[:2]
    return paramiko.PKey.from_type_string(key_type, base64.b64decode(b64))


def _fp(server) -> str:
    return transport.fingerprint(_key(server.host_key_line))


def test_unknown_key_refused_then_accepted_with_the_right_fingerprint(profile, sshd_server, mldesk_home):
    kh = Layout(mldesk_home).known_hosts
    with pytest.raises(hosts.HostKeyUnknown) as info:
        transport.connect(profile, known_hosts=kh)
    assert info.value.fingerprint == _fp(sshd_server)
    assert _fp(sshd_server) in str(info.value) and "--accept-fingerprint" in str(info.value)
    assert not kh.exists(), "nothing is remembered without acceptance"
    # a wrong fingerprint is refused too, naming the real one
    wrong = "SHA256:" + "A" * 43
    with pytest.raises(hosts.HostKeyUnknown) as info:
        transport.connect(profile, known_hosts=kh, accept_fingerprint=wrong)
    assert wrong in str(info.value) and _fp(sshd_server) in str(info.value)
    assert not kh.exists()
    # a callback that says no refuses; the right fingerprint is accepted and remembered
    with pytest.raises(hosts.HostKeyUnknown):
        transport.connect(profile, known_hosts=kh, ask_host_key=lambda *a: False)
    conn = transport.connect(profile, known_hosts=kh, accept_fingerprint=_fp(sshd_server))
    assert conn.trust == "accepted"
    conn.close()
    assert f"[{sshd_server.host}]:{sshd_server.port} ssh-ed25519" in kh.read_text()
    conn = transport.connect(profile, known_hosts=kh)
    assert conn.trust == "known"
    conn.close()


def test_key_in_the_users_known_hosts_is_honoured(profile, sshd_server, mldesk_home, isolated_home):
    (isolated_home / ".ssh" / "known_hosts").write_text(
        f"[{sshd_server.host}]:{sshd_server.port} {sshd_server.host_key_line}\n")
    conn = transport.connect(profile, known_hosts=Layout(mldesk_home).known_hosts)
    assert conn.trust == "known"
    conn.close()


def test_changed_host_key_is_refused_naming_both_fingerprints(profile, sshd_server, mldesk_home, tmp_path):
    other = tmp_path / "other_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    old_line = " ".join(other.with_suffix(".pub").read_text().split()[:2])
    old_fp = transport.fingerprint(_key(old_line))
    kh = Layout(mldesk_home).known_hosts
    kh.write_text(f"[{sshd_server.host}]:{sshd_server.port} {old_line}\n")
    for accept in (None, _fp(sshd_server)):  # not even an explicit acceptance overrides it
        with pytest.raises(hosts.HostKeyChanged) as info:
            transport.connect(profile, known_hosts=kh, accept_fingerprint=accept, ask_host_key=lambda *a: True)
        text = str(info.value)
        assert "CHANGED" in text and old_fp in text and _fp(sshd_server) in text and str(kh) in text
    assert kh.read_text().count("\n") == 1, "the file is left alone"


def test_wrong_user_key_gives_a_clear_auth_error(profile, sshd_server, mldesk_home, tmp_path):
    wrong = tmp_path / "id_wrong"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True)
    profile.key = str(wrong)
    kh = Layout(mldesk_home).known_hosts
    kh.write_text(f"[{sshd_server.host}]:{sshd_server.port} {sshd_server.host_key_line}\n")
    with pytest.raises(hosts.HostAuthError) as info:
        transport.connect(profile, known_hosts=kh)
    text = str(info.value)
    assert str(wrong) in text and "refused" in text and "authorized_keys" in text and "--key" in text
    profile.key = str(tmp_path / "missing_key")
    with pytest.raises(hosts.HostAuthError, match="does not exist"):
        transport.connect(profile, known_hosts=kh)


def test_nothing_listening_is_a_clear_error(profile, mldesk_home):
    profile.port = 1
    t0 = time.monotonic()
    with pytest.raises(hosts.HostUnreachable, match="refused the connection"):
        transport.connect(profile, known_hosts=Layout(mldesk_home).known_hosts)
    assert time.monotonic() - t0 < 3


def test_ssh_config_alias_is_resolved(sshd_server, isolated_home, mldesk_home, tmp_path):
    (isolated_home / ".ssh" / "config").write_text(
        "Host gpubox\n"
        f"    HostName {sshd_server.host}\n"
        f"    Port {sshd_server.port}\n"
        f"    User {sshd_server.user}\n"
        f"    IdentityFile {sshd_server.key_path}\n")
    prof = hosts.HostProfile.from_url("gpubox", "ssh://gpubox", workdir=str(tmp_path / "r"))
    ep = transport.resolve(prof)
    assert (ep.hostname, ep.port, ep.user, ep.key_files) == (
        sshd_server.host, sshd_server.port, sshd_server.user, [str(sshd_server.key_path)])
    kh = Layout(mldesk_home).known_hosts
    kh.write_text(f"[{sshd_server.host}]:{sshd_server.port} {sshd_server.host_key_line}\n")
    conn = transport.connect(prof, known_hosts=kh)
    try:
        assert conn.run(["true"]).code == 0
    finally:
        conn.close()


def test_hosts_cli(sshd_server, isolated_home, mldesk_home, tmp_path):
    url = f"ssh://{sshd_server.user}@{sshd_server.host}:{sshd_server.port}"
    workdir = str(tmp_path / "remote")
    fp = _fp(sshd_server)
    # no terminal, no flag: saved, but the key is not checked (nor accepted)
    r = cli("hosts", "add", "box", url, "--key", str(sshd_server.key_path), "--runtime", "process",
            "--workdir", workdir, "--network", "none", home=mldesk_home)
    assert r.returncode == 0, r.stderr
    assert b"hosts test box" in r.stdout
    r = cli("hosts", "test", "box", home=mldesk_home)
    assert r.returncode == 3
    assert fp.encode() in r.stderr and b"not accepted" in r.stderr
    assert not Layout(mldesk_home).known_hosts.exists()
    r = cli("hosts", "test", "box", "--accept-fingerprint", "SHA256:" + "B" * 43, home=mldesk_home)
    assert r.returncode == 3 and not Layout(mldesk_home).known_hosts.exists()
    r = cli("hosts", "test", "box", "--accept-fingerprint", fp, home=mldesk_home)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    for word in ("OS", "Python", "Docker", "GPUs", "Disk", fp):
        assert word in out
    r = cli("hosts", "test", "box", "--json", home=mldesk_home)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["python"] and info["disk_free"] > 0 and "gpus" in info and "docker" in info
    # `hosts add` with the flag connects and accepts; a wrong one saves nothing
    r = cli("hosts", "add", "box2", url, "--key", str(sshd_server.key_path), "--workdir", workdir,
            "--accept-fingerprint", "SHA256:" + "C" * 43, home=mldesk_home)
    assert r.returncode == 3 and b"not saved" in r.stderr
    r = cli("hosts", "add", "box2", url, "--key", str(sshd_server.key_path), "--workdir", workdir, "--gpus",
            "--accept-fingerprint", fp, home=mldesk_home)
    assert r.returncode == 0, r.stderr
    r = cli("hosts", "ls", "--json", home=mldesk_home)
    listed = {h["name"]: h for h in json.loads(r.stdout)}
    assert set(listed) == {"local", "box", "box2"}
    assert listed["box"]["runtime"] == "process" and listed["box"]["network"] == "none"
    assert listed["box2"]["gpus"] is True and listed["box2"]["port"] == sshd_server.port
    r = cli("hosts", "ls", home=mldesk_home)
    assert b"box2" in r.stdout and url.encode() in r.stdout
    assert cli("hosts", "rm", "box2", home=mldesk_home).returncode == 0
    r = cli("hosts", "rm", "box2", home=mldesk_home)
    assert r.returncode == 1 and b"unknown host" in r.stderr
    r = cli("hosts", "add", "bad", "ftp://x", home=mldesk_home)
    assert r.returncode == 1 and b"ssh://" in r.stderr
    r = cli("hosts", "add", "local", url, home=mldesk_home)
    assert r.returncode == 1 and b"this computer" in r.stderr


def test_hosts_dialog_accepts_an_unknown_key_only_when_the_user_says_so(qtbot, sshd_server, isolated_home,
                                                                         mldesk_home, profile):
    import os

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from mldesk.engine.facade import Engine
    from mldesk.ui.hosts_dialog import HostsDialog

    eng = Engine(mldesk_home)
    try:
        dlg = HostsDialog(eng)
        qtbot.addWidget(dlg)
        dlg.save_profile(profile)
        asked = []
        dlg.confirm_host_key = lambda label, key_type, fp: asked.append(fp) or False
        with qtbot.waitSignal(dlg.testFinished, timeout=20000) as sig:
            dlg.test_host("box")
        assert sig.args == ["box", False] and asked == [_fp(sshd_server)]
        assert "not accepted" in dlg.report.toPlainText()
        assert not eng.layout.known_hosts.exists()
        dlg.confirm_host_key = lambda label, key_type, fp: asked.append(fp) or True
        with qtbot.waitSignal(dlg.testFinished, timeout=20000) as sig:
            dlg.test_host("box")
        assert sig.args == ["box", True], dlg.report.toPlainText()
        report = dlg.report.toPlainText()
        assert "Python" in report and "Docker" in report and "GPUs" in report and "Disk" in report
        assert sshd_server.host_key_line.split()[1] in eng.layout.known_hosts.read_text()
        # known now: no question asked
        dlg.confirm_host_key = lambda *a: pytest.fail("asked again for a known key")
        with qtbot.waitSignal(dlg.testFinished, timeout=20000) as sig:
            dlg.test_host("box")
        assert sig.args == ["box", True]
    finally:
        eng.close()


def test_big_stdout_and_stderr_together_do_not_deadlock(profile, sshd_server, mldesk_home):
    kh = Layout(mldesk_home).known_hosts
    kh.write_text(f"[{sshd_server.host}]:{sshd_server.port} {sshd_server.host_key_line}\n")
    conn = transport.connect(profile, known_hosts=kh)
    try:
        script = ("import sys\n"
                  "for i in range(400):\n"
                  "    sys.stdout.write('o' * 10000 + '\\n'); sys.stderr.write('é' * 5000 + '\\n')\n")
        t0 = time.monotonic()
        r = conn.run(["python3", "-c", script], timeout=60)
        assert r.code == 0 and time.monotonic() - t0 < 30
        assert len(r.stdout) == 400 * 10001  # > 2 MiB on each stream, read together
        assert r.stderr.endswith("é" * 5000 + "\n") and "\ufffd" not in r.stderr  # decoded across packets
    finally:
        conn.close()


def test_terminal_question_accepts_an_unknown_key(sshd_server, isolated_home, mldesk_home, tmp_path):
    """At a terminal `hosts test` shows the fingerprint and asks; "no" refuses, "yes" accepts."""
    import os
    import pty
    import sys

    url = f"ssh://{sshd_server.user}@{sshd_server.host}:{sshd_server.port}"
    r = cli("hosts", "add", "box", url, "--key", str(sshd_server.key_path), "--workdir", str(tmp_path / "r"),
            home=mldesk_home)
    assert r.returncode == 0, r.stderr

    def at_terminal(answer: bytes) -> tuple[int, bytes]:
        from tests.integration.conftest import APP

        pid, fd = pty.fork()
        if pid == 0:  # the child: mldesk at a terminal
            os.environ.update(MLDESK_HOME=str(mldesk_home), PYTHONPATH=APP)
            os.execv(sys.executable, [sys.executable, "-m", "mldesk", "hosts", "test", "box"])
        out = b""
        answered = False
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
            if not answered and b"[yes/no]" in out:
                os.write(fd, answer + b"\n")
                answered = True
        os.close(fd)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status), out

    code, out = at_terminal(b"no")
    assert code == 3 and _fp(sshd_server).encode() in out
    assert not Layout(mldesk_home).known_hosts.exists()
    code, out = at_terminal(b"yes")
    assert code == 0, out.decode(errors="replace")
    assert b"Python" in out and Layout(mldesk_home).known_hosts.exists()
