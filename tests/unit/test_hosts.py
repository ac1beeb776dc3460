"""Host profiles without a network: addresses, validation, ~/.ssh/config resolution,
the host-key policy, keyring fallbacks, the remote agent run locally (upload, outputs,
start/follow/stop), log resume matching, and the Hosts dialog."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import paramiko
import pytest

from mldesk.agent import logstore
from mldesk.core import hosts
from mldesk.runtimes.ssh import transport
from mldesk.runtimes.ssh import runtime as ssh

# The agent runs on hosts with any Python >= 3.8 (its code is parsed as 3.8 below); the
# agent's commands run both on this Python and in a Debian 11 container (Python 3.9, the
# oldest one tested: the `oldest_python` fixture).

# -- addresses and profiles ------------------------------------------------------------------


@pytest.mark.parametrize("url,expected", [
    ("ssh://host", (None, "host", None)),
    ("ssh://me@host:2222", ("me", "host", 2222)),
    ("me@10.0.0.1", ("me", "10.0.0.1", None)),
    ("ssh://[::1]:22", (None, "::1", 22)),
    ("ssh://a.b-c@gpu.example.org/", ("a.b-c", "gpu.example.org", None)),
])
def test_parse_url(url, expected):
    assert hosts.parse_url(url) == expected


@pytest.mark.parametrize("url,fragment", [
    ("ftp://host", "ssh://"), ("ssh://", "empty"), ("ssh://host:99999", "out of range"),
    ("ssh://host:x", "not a number"), ("ssh://host/path", "path"), ("ssh://@host", "empty user"),
])
def test_parse_url_errors(url, fragment):
    with pytest.raises(hosts.HostProfileError, match=fragment):
        hosts.parse_url(url)


def test_profile_validation_and_round_trip():
    p = hosts.HostProfile.from_url("gpu1", "ssh://me@box:2200", runtime="process", gpus=True, network="none",
                                   workdir="/data/mldesk", max_parallel=2)
    d = p.to_dict()
    assert d["url"] == "ssh://me@box:2200" and d["runtime"] == "process"
    assert hosts.HostProfile.from_dict(d) == p
    assert hosts.HostProfile.from_dict({**d, "unknown_future_key": 1}) == p
    for bad, fragment in [({"name": "local"}, "this computer"), ({"name": "a b"}, "letters"),
                          ({"runtime": "kubernetes"}, "runtime"), ({"network": "overlay"}, "network"),
                          ({"max_parallel": -1}, "concurrency"), ({"keepalive": -2}, "keepalive"),
                          ({"slurm_time": "1 h"}, "time limit"), ({"slurm_cpus": 0}, "CPUs"),
                          ({"slurm_gpus": -1}, "GPUs"), ({"slurm_args": ["qos=x"]}, "start with '-'"),
                          ({"env": {"A B": "x"}}, "environment")]:
        with pytest.raises(hosts.HostProfileError, match=fragment):
            hosts.HostProfile.from_dict({**d, **bad})


def test_ssh_config_resolution(tmp_path, monkeypatch):
    cfg = tmp_path / "config"
    cfg.write_text(
        "Host gpu\n  HostName 10.1.2.3\n  Port 2201\n  User alice\n  IdentityFile ~/keys/gpu_key\n"
        "  ProxyJump bastion.example.org\n  IdentitiesOnly yes\n"
        "Host *\n  User fallback\n")
    monkeypatch.setenv("HOME", str(tmp_path))
    ep = transport.resolve(hosts.HostProfile(name="g", host="gpu"), cfg)
    assert (ep.hostname, ep.port, ep.user) == ("10.1.2.3", 2201, "alice")
    assert ep.key_files == [str(tmp_path / "keys" / "gpu_key")] and ep.explicit_keys and ep.identities_only
    assert ep.jump == "bastion.example.org"
    # what the profile sets wins, as on the ssh command line
    ep = transport.resolve(hosts.HostProfile(name="g", host="gpu", port=22, user="bob", key="/k", jump="j"), cfg)
    assert (ep.port, ep.user, ep.key_files, ep.jump) == (22, "bob", ["/k"], "j")
    ep = transport.resolve(hosts.HostProfile(name="o", host="other.org"), cfg)
    assert (ep.hostname, ep.port, ep.user, ep.key_files, ep.explicit_keys) == ("other.org", 22, "fallback", [], False)
    ep = transport.resolve(hosts.HostProfile(name="o", host="other.org"), tmp_path / "missing")
    assert ep.user  # the local user name


# -- host keys --------------------------------------------------------------------------------


def _keygen(path: Path) -> paramiko.PKey:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return paramiko.PKey.from_path(str(path))


def test_fingerprint_matches_ssh_keygen(tmp_path):
    key = _keygen(tmp_path / "k")
    out = subprocess.run(["ssh-keygen", "-lf", str(tmp_path / "k.pub")], capture_output=True, text=True,
                         check=True).stdout
    assert transport.fingerprint(key) == out.split()[1]
    assert hosts.normalise_fingerprint("sha256:" + out.split()[1][7:] + "=") == out.split()[1]


class FakeTransport:
    def __init__(self, key):
        self.key = key

    def get_remote_server_key(self):
        return self.key


def test_host_key_policy(tmp_path):
    server = _keygen(tmp_path / "server")
    other = _keygen(tmp_path / "other")
    own = tmp_path / "mldesk_known_hosts"
    user = tmp_path / "user_known_hosts"
    kh = transport.KnownHosts(own, user)
    ep = transport.Endpoint(alias="h", hostname="h.example", port=2222, user="u")
    t = FakeTransport(server)
    fp = transport.fingerprint(server)
    check = lambda **kw: transport.check_host_key(t, ep, kh, label="h", **{"accept_fingerprint": None, "ask": None, **kw})  # noqa: E731
    # unknown: refused with the fingerprint, nothing remembered
    with pytest.raises(hosts.HostKeyUnknown) as info:
        check()
    assert info.value.fingerprint == fp and fp in str(info.value) and not own.exists()
    with pytest.raises(hosts.HostKeyUnknown, match="not the accepted"):
        check(accept_fingerprint=transport.fingerprint(other))
    asked = []
    with pytest.raises(hosts.HostKeyUnknown):
        check(ask=lambda *a: asked.append(a) or False)
    assert asked == [("h", "ssh-ed25519", fp)] and not own.exists()
    # accepted: remembered in mldesk's file, then known
    assert check(accept_fingerprint=fp) == "accepted"
    assert own.read_text().startswith("[h.example]:2222 ssh-ed25519 ")
    assert check() == "known"
    assert check(ask=lambda *a: pytest.fail("must not ask for a known key")) == "known"
    # known, but the caller vouches for another key: refused
    with pytest.raises(hosts.HostKeyUnknown):
        check(accept_fingerprint=transport.fingerprint(other))
    # changed: refused naming both fingerprints, even when the new one is "accepted"
    t.key = other
    with pytest.raises(hosts.HostKeyChanged) as info:
        check(accept_fingerprint=transport.fingerprint(other), ask=lambda *a: True)
    assert fp in str(info.value) and transport.fingerprint(other) in str(info.value)
    # the user's own (hashed) known_hosts counts as well
    own.unlink()
    user.write_text(f"[h.example]:2222 {other.get_name()} {other.get_base64()}\n")
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(user)], check=True, capture_output=True)
    assert "h.example" not in user.read_text()
    assert check() == "known"
    t.key = server
    with pytest.raises(hosts.HostKeyChanged, match=str(user)):
        check()


# -- secrets ----------------------------------------------------------------------------------


class MemoryKeyring:
    """A keyring backend in memory."""

    def __init__(self):
        import keyring.backend

        class Backend(keyring.backend.KeyringBackend):
            priority = 10
            store: dict = {}

            def get_password(self, service, username):
                return self.store.get((service, username))

            def set_password(self, service, username, password):
                self.store[(service, username)] = password

            def delete_password(self, service, username):
                self.store.pop((service, username), None)

        self.backend = Backend()


@pytest.fixture
def no_keyring(monkeypatch):
    import keyring
    from keyring.backends import fail

    old = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    yield
    keyring.set_keyring(old)


@pytest.fixture
def memory_keyring():
    import keyring

    old = keyring.get_keyring()
    mem = MemoryKeyring()
    keyring.set_keyring(mem.backend)
    yield mem.backend
    keyring.set_keyring(old)


def _encrypted_key(tmp_path: Path, passphrase: str) -> Path:
    path = tmp_path / "enc"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-f", str(path)], check=True)
    return path


def test_no_keyring_says_why_and_what_to_do(tmp_path, no_keyring):
    assert hosts.keyring_problem() == "no OS keyring backend was found"
    msg = hosts.no_keyring_message("key passphrases")
    assert "asks each time" in msg and "keyrings.alt" in msg and "ssh-add" in msg
    assert hosts.get_secret("x") is None and hosts.set_secret("x", "y") is False
    key = _encrypted_key(tmp_path, "s3cret")
    with pytest.raises(hosts.HostAuthError) as info:
        transport._load_key(str(key), None)  # a supervisor: nobody to ask
    assert "passphrase" in str(info.value) and "keyring" in str(info.value) and "ssh-add" in str(info.value)
    answers = iter(["wrong", "s3cret"])
    loaded = transport._load_key(str(key), lambda kind, prompt: next(answers))
    assert loaded.get_name() == "ssh-ed25519"


def test_passphrase_is_kept_in_the_keyring(tmp_path, memory_keyring):
    key = _encrypted_key(tmp_path, "pw")
    assert hosts.keyring_problem() is None
    transport._load_key(str(key), lambda kind, prompt: "pw")
    assert memory_keyring.store[("mldesk", hosts.passphrase_secret_name(str(key)))] == "pw"
    # next time nobody needs to be asked
    assert transport._load_key(str(key), None).get_name() == "ssh-ed25519"


# -- the agent, run locally ---------------------------------------------------------------------


def test_agent_files_are_python38_and_stdlib_only():
    for name, text in ssh.agent_sources().items():
        tree = ast.parse(text, filename=name, feature_version=(3, 8))
        for node in ast.walk(tree):
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                mods = [(node.module or "").split(".")[0]]
            for mod in mods:
                full = node.module if isinstance(node, ast.ImportFrom) else mod
                if mod == "mldesk":  # only the shipped package itself
                    assert full == "mldesk.agent" or full.startswith("mldesk.agent."), f"{name} imports {full}"
                    continue
                assert mod in sys.stdlib_module_names, f"{name} imports {mod}"
    assert len(ssh.agent_version()) == 16


@pytest.fixture(params=["current", "oldest"])
def agent(request, tmp_path):
    """Runs the agent's commands as on a host: with this Python, or Debian 11's 3.9."""
    python = sys.executable if request.param == "current" else str(request.getfixturevalue("oldest_python"))
    d = tmp_path / "agent"
    d.mkdir()
    for name, text in ssh.agent_sources().items():
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_text(text)
    work = tmp_path / "work"

    def run(*args, input=b"", check=True):
        r = subprocess.run([python, str(d / ssh.AGENT_ENTRY), *map(str, args)], input=input,
                           capture_output=True, timeout=60)
        if check:
            assert r.returncode == 0, r.stderr.decode()
        return r

    run.work = work
    run.dir = d
    run.python = python  # the agent's Python
    run.program_python = sys.executable if request.param == "current" else "python3"  # as seen by the agent
    return run


def _frame(b: bytes) -> bytes:
    return struct.pack("<I", len(b)) + b


def _frames(data: bytes) -> list[bytes]:
    out = []
    while data:
        n = struct.unpack_from("<I", data)[0]
        out.append(data[4:4 + n])
        data = data[4 + n:]
    return out


def _typed(data: bytes) -> list[tuple[bytes, bytes]]:
    out = []
    while data:
        n = struct.unpack_from("<I", data, 1)[0]
        out.append((data[:1], data[5:5 + n]))
        data = data[5 + n:]
    return out


def _upload(agent, exec_id, files: dict[str, bytes | tuple], have_all=False):
    manifest = {}
    blobs = {}
    for rel, content in files.items():
        if isinstance(content, tuple):  # ("link", target)
            manifest[rel] = list(content)
            continue
        sha = hashlib.sha256(content).hexdigest()
        manifest[rel] = [sha, len(content), 0o755 if rel.endswith(".sh") else 0o644]
        blobs[sha] = content
    proc = subprocess.Popen([agent.python, str(agent.dir / ssh.AGENT_ENTRY), "upload", str(agent.work), exec_id],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)

    def read_exact(n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            more = proc.stdout.read(n - len(buf))
            assert more, proc.stderr.read().decode()
            buf += more
        return buf

    proc.stdin.write(_frame(json.dumps({"files": manifest}).encode()))
    n = struct.unpack("<I", read_exact(4))[0]
    missing = json.loads(read_exact(n))["missing"]
    out, err = proc.communicate(b"".join(blobs[s] for s in missing), timeout=60)
    assert proc.returncode == 0, err.decode()
    frames = _frames(out)
    return missing, json.loads(frames[0])


def test_agent_upload_is_content_addressed(agent):
    files = {"main.py": b"print('hi')\n", "run.sh": b"#!/bin/sh\n", "sub/dir/data.bin": os.urandom(3000),
             "copy.bin": b"same", "copy2.bin": b"same", "link": ("link", "main.py")}
    missing, result = _upload(agent, "e1", files)
    assert len(missing) == 4 and result["ok"]
    ws = agent.work / "executions" / "e1" / "workspace"
    for rel, content in files.items():
        if isinstance(content, tuple):
            assert os.readlink(ws / rel) == "main.py"
        else:
            assert (ws / rel).read_bytes() == content
    assert os.stat(ws / "run.sh").st_mode & 0o111 and (ws / "inputs").is_dir() and (ws / "outputs").is_dir()
    # a second upload with one changed file: only that blob is missing
    files["sub/dir/data.bin"] = os.urandom(3000)
    missing, result = _upload(agent, "e2", files)
    assert missing == [hashlib.sha256(files["sub/dir/data.bin"]).hexdigest()]
    assert (agent.work / "executions" / "e2" / "workspace" / "sub/dir/data.bin").read_bytes() == files["sub/dir/data.bin"]
    # a damaged transfer is refused, never stored under the wrong name
    content = b"x" * 100
    sha = hashlib.sha256(content).hexdigest()
    body = _frame(json.dumps({"files": {"f": [sha, 100, 0o644]}}).encode()) + b"y" * 100
    r = agent("upload", agent.work, "e3", input=body, check=False)
    assert "damaged" in json.loads(_frames(r.stdout)[1])["error"]
    assert not (agent.work / "blobs" / sha[:2] / sha).exists()
    for bad in ("../escape", "/abs", "a//b"):
        r = agent("upload", agent.work, "e4", input=_frame(json.dumps({"files": {bad: ["link", "x"]}}).encode()),
                  check=False)
        assert r.returncode != 0 and b"invalid path" in r.stderr


def test_agent_outputs_skip_links_and_unchanged(agent, tmp_path):
    _upload(agent, "o1", {"main.py": b""})
    out = agent.work / "executions" / "o1" / "workspace" / "outputs"
    (out / "deep" / "er").mkdir(parents=True)
    (out / "a.txt").write_text("A")
    (out / "deep" / "er" / "b.bin").write_bytes(os.urandom(3 << 20))
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read")
    (out / "link.txt").symlink_to(secret)
    (out / "dirlink").symlink_to(tmp_path)
    r = agent("outputs", agent.work, "o1", input=b'{"have": {}}\n')
    frames = _typed(r.stdout)
    kinds = [k for k, _ in frames]
    sent = {json.loads(p)["path"] for k, p in frames if k == b"F"}
    skipped = {json.loads(p)["path"]: json.loads(p)["reason"] for k, p in frames if k == b"S"}
    assert sent == {"a.txt", "deep/er/b.bin"}
    assert set(skipped) == {"link.txt", "dirlink"} and "not followed" in skipped["link.txt"]
    assert b"do not read" not in r.stdout
    data = b"".join(p for k, p in frames if k == b"D")
    assert len(data) == 1 + (3 << 20)
    assert kinds[-1] == b"Z" and json.loads(frames[-1][1])["files"] == 2
    st = (out / "deep" / "er" / "b.bin").stat()
    have = {"deep/er/b.bin": [st.st_size, st.st_mtime_ns]}
    r = agent("outputs", agent.work, "o1", input=(json.dumps({"have": have}) + "\n").encode())
    assert {json.loads(p)["path"] for k, p in _typed(r.stdout) if k == b"F"} == {"a.txt"}
    r = agent("outputs", agent.work, "o1", input=b'{"have": {}, "max_file_bytes": 10}\n')
    skipped = {json.loads(p)["path"]: json.loads(p)["reason"] for k, p in _typed(r.stdout) if k == b"S"}
    assert "per-file limit" in skipped["deep/er/b.bin"]


def test_agent_start_follow_and_stop(agent, tmp_path):
    main = b"import sys,time\nprint('out', sys.argv[1:], flush=True)\nprint('err', file=sys.stderr, flush=True)\n" \
           b"time.sleep(float(sys.argv[1]))\n"
    _upload(agent, "s1", {"main.py": main})
    spec = {"exec_id": "s1", "name": "n", "argv": ["0.2"], "env": {"MLDESK_EXECUTION_ID": "s1"},
            "runtime": "process", "python": agent.program_python, "grace": 1}
    r = agent("start", agent.work, "s1", input=json.dumps(spec).encode())
    status = json.loads(r.stdout)
    assert status["state"] in ("running", "exited") and status["pid"]
    r = agent("follow", agent.work, "s1", 0, 0.2)
    frames = _typed(r.stdout)
    assert frames[-1][0] == b"E" and json.loads(frames[-1][1])["exit_code"] == 0
    raw = b"".join(p for k, p in frames if k == b"L")
    log = agent.work / "executions" / "s1" / "log.bin"
    assert raw == log.read_bytes()
    # following from an offset in the middle gives exactly the rest
    with logstore.LogReader(log) as reader:
        records = list(reader.iter_records())
    r = agent("follow", agent.work, "s1", records[0].end, 0.2)
    assert b"".join(p for k, p in _typed(r.stdout) if k == b"L") == log.read_bytes()[records[0].end:]
    # stop: TERM to the program's group
    _upload(agent, "s2", {"main.py": main})
    spec.update(exec_id="s2", argv=["60"])
    status = json.loads(agent("start", agent.work, "s2", input=json.dumps(spec).encode()).stdout)
    t0 = time.monotonic()
    assert json.loads(agent("stop", agent.work, "s2", 1).stdout)["ok"]
    frames = _typed(agent("follow", agent.work, "s2", 0, 0.2).stdout)
    final = json.loads(frames[-1][1])
    assert final["state"] == "exited" and final["exit_code"] == 143 and time.monotonic() - t0 < 10
    # cleanup removes the execution's folder, blobs stay
    agent("cleanup", agent.work, "s2")
    assert not (agent.work / "executions" / "s2").exists() and any((agent.work / "blobs").iterdir())


# -- resume matching and output paths ------------------------------------------------------------


def test_matcher_skips_exactly_what_the_local_log_holds():
    M = logstore.MLDESK
    local = [(1, 1.0, b"a\n"), (M, 1.5, b"stop requested\n"), (2, 2.0, b"b\n")]
    m = ssh._Matcher(local)
    assert m.seen(1, 1.0, b"a\n") and m.seen(2, 2.0, b"b\n")
    assert not m.seen(1, 3.0, b"c\n") and not m.seen(1, 1.0, b"a\n")  # stops matching for good
    m = ssh._Matcher([(1, 1.0, b"a\n")])
    assert not m.seen(1, 1.0001, b"a\n")  # same text, another record: kept
    assert not ssh._Matcher([]).seen(1, 1.0, b"a\n")


def test_output_writer_refuses_paths_leaving_outputs(tmp_path):
    w = ssh._OutputWriter(tmp_path / "outputs")
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outputs" / "evil").symlink_to(tmp_path / "outside")
    for bad in ("../x", "/etc/passwd", "a/../../x", "evil/x"):
        with pytest.raises(Exception, match="invalid|leave"):
            w.begin({"path": bad, "size": 1, "mtime_ns": 0, "mode": 0o644})
    w.begin({"path": "ok/f.txt", "size": 2, "mtime_ns": 1_600_000_000_000_000_000, "mode": 0o600})
    w.data(b"hi")
    w.end({"ok": True}, None)
    assert (tmp_path / "outputs" / "ok" / "f.txt").read_text() == "hi"
    assert (tmp_path / "outputs" / "ok" / "f.txt").stat().st_mtime_ns == 1_600_000_000_000_000_000
    assert ssh._local_state(tmp_path / "outputs") == {"ok/f.txt": [2, 1_600_000_000_000_000_000]}


# -- CLI without a network --------------------------------------------------------------------------


def test_hosts_add_no_check_ls_rm(mldesk_home):
    from mldesk.cli.main import main

    assert main(["hosts", "add", "g", "ssh://u@h:2200", "--runtime", "process", "--no-check"]) == 0
    assert main(["hosts", "add", "bad name", "ssh://h", "--no-check"]) == 1
    from mldesk.core.store import Store
    from mldesk.core.paths import Layout

    store = Store(Layout(mldesk_home).db)
    try:
        assert store.get_host("g")["port"] == 2200 and store.get_host("g")["runtime"] == "process"
    finally:
        store.close()
    assert main(["hosts", "rm", "g"]) == 0
    assert main(["hosts", "rm", "g"]) == 1


# -- the dialog ---------------------------------------------------------------------------------------


@pytest.fixture
def qt_engine(mldesk_home):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    pytest.importorskip("pytestqt")
    from mldesk.engine.facade import Engine

    eng = Engine(mldesk_home)
    yield eng
    eng.close()


def test_hosts_dialog_add_edit_remove_and_failed_test(qtbot, qt_engine):
    from mldesk.ui.hosts_dialog import HostEditDialog, HostKeyDialog, HostsDialog

    dlg = HostsDialog(qt_engine)
    qtbot.addWidget(dlg)
    assert dlg.table.rowCount() == 0 and not dlg.test_button.isEnabled()
    form = HostEditDialog(None, set(), dlg)
    qtbot.addWidget(form)
    form.name.setText("gpu")
    form.url.setText("ftp://nope")
    form._try_accept()
    assert form.profile() is None and "ssh://" in form.error.text()
    form.url.setText("ssh://me@127.0.0.1:1")
    form.runtime.setCurrentText("process")
    form.gpus.setChecked(True)
    prof = form.build()
    changed = []
    dlg.hostsChanged.connect(lambda: changed.append(1))
    with qtbot.waitSignal(dlg.testFinished, timeout=15000) as sig:
        dlg.save_profile(prof, test=True)
    assert sig.args == ["gpu", False]
    assert "refused" in dlg.report.toPlainText()
    assert changed and qt_engine.store.get_host("gpu")["gpus"] is True
    assert dlg.table.item(0, 0).text() == "gpu" and dlg.selected() == "gpu"
    # a duplicate name is refused by the form
    dup = HostEditDialog(None, {"gpu"}, dlg)
    qtbot.addWidget(dup)
    dup.name.setText("gpu")
    dup.url.setText("ssh://x")
    with pytest.raises(hosts.HostProfileError, match="exists"):
        dup.build()
    # edit = rename
    edit = HostEditDialog(hosts.HostProfile.from_dict(qt_engine.store.get_host("gpu")), {"gpu"}, dlg)
    qtbot.addWidget(edit)
    assert edit.url.text() == "ssh://me@127.0.0.1:1" and edit.gpus.isChecked()
    edit.name.setText("gpu2")
    dlg.save_profile(edit.build(), "gpu")
    assert set(qt_engine.store.hosts()) == {"gpu2"}
    dlg.confirm_remove = lambda name: True
    assert dlg.remove_host("gpu2") and dlg.table.rowCount() == 0
    keydlg = HostKeyDialog("box (root@h)", "ssh-ed25519", "SHA256:abc", dlg)
    qtbot.addWidget(keydlg)
    assert keydlg.findChild(type(form.name), "fingerprint").text() == "SHA256:abc"


def test_slurm_profile_settings_round_trip():
    p = hosts.HostProfile.from_url("cluster", "ssh://me@login:22", runtime="slurm", workdir="/shared/me",
                                   slurm_partition="gpu", slurm_time="1:00:00", slurm_cpus=4, slurm_mem="8G",
                                   slurm_gpus=2, slurm_args=["--qos=debug", "--account=lab"],
                                   env={"PATH": "/opt/slurm/bin:/usr/bin"})
    assert hosts.HostProfile.from_dict(p.to_dict()) == p
    assert p.slurm_settings(gpu=True) == {
        "partition": "gpu", "time": "1:00:00", "cpus": 4, "mem": "8G", "gpus": 2,
        "sbatch_args": ["--qos=debug", "--account=lab"], "env": {"PATH": "/opt/slurm/bin:/usr/bin"}}
    assert p.slurm_settings(gpu=False)["gpus"] == 0
