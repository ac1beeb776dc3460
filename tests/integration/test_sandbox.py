"""Trust boundaries on real runtimes (SPEC 10a, issue 10 items 5 and 6): the store
is owner-only, nothing set-uid comes back, the environment is a deliberate set."""

from __future__ import annotations

import os
import stat

import pytest

from mldesk.engine.facade import Engine
from tests.integration.conftest import program_output, wait_final

SETUID = """
import os
for path in ("outputs/shell", "kept"):
    open(path, "w").write("#!/bin/sh\\n")
    os.chmod(path, 0o6755)
    print(path, oct(os.stat(path).st_mode & 0o7777), flush=True)
"""


def _loose(root):
    """Entries under ``root`` that group or others can access."""
    bad = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [""] + dirnames + filenames:
            path = os.path.join(dirpath, name) if name else dirpath
            st = os.lstat(path)
            if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o077:
                bad.append((path, oct(st.st_mode & 0o7777)))
    return bad


def test_store_is_owner_only_and_nothing_setuid_comes_back(engine, make_lab, runtime, mldesk_home):
    os.chmod(mldesk_home, 0o755)  # a store made by an older mldesk: tightened on start
    engine.set_setting("keep_workspace", True)
    ex = engine.run(make_lab(SETUID), runtime=runtime)
    final = wait_final(engine, ex.id)
    assert final.state == "finished", final.reason
    assert "0o6755" in program_output(engine, ex.id).decode()  # the program did set the bits
    shell = engine.outputs_dir(ex.id) / "shell"
    assert not shell.stat().st_mode & (stat.S_ISUID | stat.S_ISGID)
    kept = engine.layout.workspace(ex.id) / "kept"
    assert kept.exists() and not kept.stat().st_mode & (stat.S_ISUID | stat.S_ISGID)
    Engine(mldesk_home).close()  # another mldesk process starts: tightens what is there
    assert stat.S_IMODE(os.stat(mldesk_home).st_mode) == 0o700
    top = [(p, m) for p, m in _loose(mldesk_home) if os.path.dirname(p) in (str(mldesk_home), "")]
    assert top == [], top
    if runtime == "process":  # files the supervisor wrote (the container writes as itself)
        assert _loose(mldesk_home) == []


READS_SECRET = """
print(open("inputs/weights.bin").read())
"""


def test_local_file_outside_the_lab_needs_consent(engine, make_lab, runtime, tmp_path, mldesk_home):
    from mldesk.engine.facade import LocalInputsNeedConsent
    from tests.integration.conftest import cli

    secret = tmp_path / "home" / ".ssh" / "id_rsa"
    secret.parent.mkdir(parents=True)
    secret.write_text("PRIVATE KEY")
    lab = make_lab(READS_SECRET, f"inputs:\n  - name: weights.bin\n    url: {secret.as_uri()}\n")
    with pytest.raises(LocalInputsNeedConsent) as err:
        engine.run(lab, runtime=runtime)
    assert err.value.paths == [str(secret)]
    r = cli("run", str(lab), "--runtime", runtime, home=mldesk_home)
    assert r.returncode == 1
    text = r.stderr.decode()
    assert str(secret) in text and "--allow-local-inputs" in text and len(text.strip().splitlines()) == 1
    assert engine.list() == [], "nothing was started"
    ex = engine.run(lab, runtime=runtime, allow_local_inputs=True)
    final = wait_final(engine, ex.id)
    assert final.state == "finished", final.reason
    from mldesk.agent import logstore

    with engine.log_reader(ex.id) as reader:
        messages = b"".join(r.data for r in reader.iter_records() if r.stream == logstore.MLDESK).decode()
    assert f"read local file {secret}" in messages, messages
    # consent is remembered for this lab and path
    again = wait_final(engine, engine.run(lab, runtime=runtime).id)
    assert again.state == "finished"
    # another lab asking for the same file is asked again
    other = make_lab(READS_SECRET, f"inputs:\n  - name: weights.bin\n    url: {secret.as_uri()}\n")
    with pytest.raises(LocalInputsNeedConsent):
        engine.run(other, runtime=runtime)


def test_files_inside_the_lab_need_no_consent(engine, make_lab, runtime):
    lab = make_lab(READS_SECRET, "")
    (lab / "data.txt").write_text("mine")
    with open(lab / "ml.yaml", "a") as f:
        f.write(f"inputs:\n  - name: weights.bin\n    url: {(lab / 'data.txt').as_uri()}\n")
    final = wait_final(engine, engine.run(lab, runtime=runtime).id)
    assert final.state == "finished", final.reason


NET = """
import os
print("interfaces:", sorted(os.listdir("/sys/class/net")))
"""


def test_lab_turns_the_container_network_off(mldesk_home, make_lab, python_image):
    """ml.yaml's network: (the container's network) wins over the host's setting."""
    engine = Engine(mldesk_home)
    engine.set_setting("local_network", "bridge")
    engine.set_setting("image_aliases", {"test-python": python_image})
    try:
        ex = engine.run(make_lab(NET, "network: none\n"), runtime="docker")
        final = wait_final(engine, ex.id)
        assert final.state == "finished", final.reason
        assert "interfaces: ['lo']" in program_output(engine, ex.id).decode()
    finally:
        engine.close()


ENV = """
import json, os
print("ENV", json.dumps(sorted(os.environ)))
"""


def test_program_environment_is_a_deliberate_set(engine, make_lab, runtime, monkeypatch):
    """PATH, HOME and LANG on the process runtime; secrets of the caller never."""
    monkeypatch.setenv("LANG", "C.UTF-8")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t")
    monkeypatch.setenv("SSH_AUTH_SOCK", "/tmp/agent.sock")
    ex = engine.run(make_lab(ENV), runtime=runtime)
    final = wait_final(engine, ex.id)
    assert final.state == "finished", final.reason
    import json

    line = next(l for l in program_output(engine, ex.id).decode().splitlines() if l.startswith("ENV "))
    names = set(json.loads(line[4:]))
    assert {"PYTHONUNBUFFERED", "MLDESK_EXECUTION_ID", "MLDESK_EXECUTION_NAME"} <= names
    assert not names & {"AWS_SECRET_ACCESS_KEY", "SSH_AUTH_SOCK", "MLDESK_HOME", "PYTHONPATH"}
    if runtime == "process":
        assert {"PATH", "HOME", "LANG"} <= names


def test_link_out_of_the_lab_is_named_in_a_warning(engine, make_lab, runtime, tmp_path):
    from mldesk.agent import logstore

    lab = make_lab("print('ok')\n")
    (lab / "data").symlink_to(tmp_path)
    (lab / "sibling").symlink_to("../elsewhere")
    (lab / "inside").symlink_to("main.py")
    final = wait_final(engine, engine.run(lab, runtime=runtime).id)
    assert final.state == "finished", final.reason
    with engine.log_reader(final.id) as reader:
        messages = b"".join(r.data for r in reader.iter_records() if r.stream == logstore.MLDESK).decode()
    assert f"warning: data is a link to {tmp_path}, outside the lab" in messages
    assert "warning: sibling is a link to ../elsewhere" in messages
    assert "inside is a link" not in messages
