"""Trust boundaries on an SSH host (issue 10 items 2 and 5, the environment): a
program rewriting its input does not poison the host's cache, nothing set-uid comes
back, and the agent's environment is not passed on."""

from __future__ import annotations

import json
import stat

import pytest

from tests.helpers.httpserver import HTTPTestServer
from tests.integration.conftest import program_output, wait_final
from tests.integration.test_ssh_run import (  # noqa: F401 - fixtures
    add_host, isolated_home, lab_in, remote_dir, remote_runtime, sshe,
)

pytestmark = pytest.mark.ssh

HOSTILE = """
import hashlib, json, os
path = "inputs/data.bin"
data = open(path, "rb").read()
print("DIGEST", hashlib.sha256(data).hexdigest())
st = os.stat(path)
try:
    with open(path, "r+b") as f:
        f.write(b"EVIL")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    print("rewrote the input")
except OSError as exc:
    print("could not rewrite the input:", exc.strerror)
open("outputs/shell", "w").write("#!/bin/sh\\n")
os.chmod("outputs/shell", 0o6755)
print("ENV", json.dumps(sorted(os.environ)))
"""


def test_hostile_program_on_a_host(sshe, sshd_server, remote_dir, remote_runtime, tmp_path):
    import hashlib
    import os

    add_host(sshe, sshd_server, "box", remote_dir, runtime=remote_runtime)
    data = os.urandom(100_000)
    with HTTPTestServer() as srv:
        url = srv.serve("/data.bin", data)
        yaml = f"inputs:\n  - name: data.bin\n    url: {url}\n"
        digests = []
        for i in range(2):
            lab = lab_in(tmp_path, HOSTILE, yaml, name=f"lab{i}")
            final = wait_final(sshe, sshe.run(lab, host="box").id, timeout=90)
            assert final.state == "finished", final.reason
            out = program_output(sshe, final.id).decode()
            digests.append(next(l.split()[1] for l in out.splitlines() if l.startswith("DIGEST ")))
            shell = sshe.outputs_dir(final.id) / "shell"
            assert shell.exists() and not shell.stat().st_mode & (stat.S_ISUID | stat.S_ISGID)
            names = set(json.loads(next(l[4:] for l in out.splitlines() if l.startswith("ENV "))))
            assert "SSH_AUTH_SOCK" not in names and "SSH_CONNECTION" not in names, names
            assert "MLDESK_EXECUTION_ID" in names
        assert digests == [hashlib.sha256(data).hexdigest()] * 2, "the host's cache was poisoned"


def test_input_limit_applies_on_the_host(sshe, sshd_server, remote_dir, tmp_path):
    """The input_max_bytes setting reaches the host's download (issue 10 item 9)."""
    add_host(sshe, sshd_server, "box", remote_dir, runtime="process")
    sshe.set_setting("input_max_bytes", 2 << 20)
    with HTTPTestServer() as srv:
        lab = lab_in(tmp_path, "print('must not run')\n",
                     f"inputs:\n  - name: big.bin\n    url: {srv.endless('/forever')}\n")
        final = wait_final(sshe, sshe.run(lab, host="box").id, timeout=60)
    assert final.state == "failed" and "over the limit of 2.1 MB" in final.reason, final.reason
