"""A dropped link to an SSH host (the sshd in network namespace mldesk-h1 at
198.18.0.2, scripts/ci/netns-host.sh): the remote execution goes on, mldesk shows
"reconnecting", reconnects by itself when the link is back and resumes the log at
the exact byte offset; Stop works after a reconnect, and a Stop asked while the link
is down is delivered when it comes back. Also ProxyJump through the 127.0.0.1 sshd.
"""

from __future__ import annotations

import os
import time

import pytest

from mldesk.core import hosts

from mldesk.runtimes.ssh import transport
from mldesk.engine.facade import Engine
from tests.helpers.httpserver import HTTPTestServer
from tests.integration.conftest import program_output, wait_final, wait_state
from tests.integration.test_ssh_run import (  # noqa: F401 - fixtures
    PRINTER, expected_printer, isolated_home, lab_in, messages, remote_dir, stop_all, trust_host, wait_for,
)

pytestmark = pytest.mark.ssh

KEEPALIVE = 1.0  # the link counts as dead after ~2 keepalives + 1 s = 3 s
CUT = 6.0  # seconds: longer than the keepalive and the dead-link detection


@pytest.fixture
def nete(mldesk_home, isolated_home, netns_host, remote_dir):
    eng = Engine(mldesk_home)
    eng.set_setting("stop_grace", 5.0)
    eng.set_setting("input_timeout", 5.0)
    eng.set_setting("input_retries", 1)
    profile = hosts.HostProfile.from_url(
        "far", f"ssh://{netns_host.user}@{netns_host.host}:{netns_host.port}", key=str(netns_host.key_path),
        workdir=str(remote_dir), runtime="process", keepalive=KEEPALIVE, connect_timeout=2.0,
        outputs_interval=1.0)
    eng.store.put_host("far", profile.to_dict())
    trust_host(eng, netns_host)
    yield eng
    netns_host.restore()
    stop_all(eng)
    eng.close()


def _notes_seen(engine: Engine, exec_id: str, seen: list, stop_at: float) -> None:
    while time.monotonic() < stop_at:
        note = engine.store.get(exec_id).note
        if note and (not seen or seen[-1] != note):
            seen.append(note)
        time.sleep(0.05)


def test_link_drop_while_printing_loses_nothing(nete, netns_host, tmp_path, remote_dir):
    n, delay = 700, 0.02  # about 15 s of output
    payload = os.urandom(50_000)
    with HTTPTestServer(host=netns_host.gateway or "198.18.0.1") as srv:
        url = srv.serve("/in.bin", payload)
        lab = lab_in(tmp_path, PRINTER + "\nimport shutil\nshutil.copy('inputs/in.bin', 'outputs/in-copy.bin')\n",
                     f"parameters:\n  - pass-as: '{n} {delay}'\ninputs:\n  - name: in.bin\n    url: {url}\n")
        ex = nete.run(lab, host="far")
        wait_state(nete, ex.id, "running", timeout=60)
    wait_for(lambda: program_output(nete, ex.id).count(b"\n") > 50, 30, "output before the cut")
    before = program_output(nete, ex.id).count(b"\n")
    netns_host.cut()
    cut_at = time.time()
    notes: list[str] = []
    _notes_seen(nete, ex.id, notes, time.monotonic() + CUT)
    during = program_output(nete, ex.id).count(b"\n")
    netns_host.restore()
    restored_at = time.time()
    final = wait_final(nete, ex.id, timeout=90)
    assert final.state == "finished", (final.reason, messages(nete, ex.id))
    assert any(note.startswith("reconnecting to far (attempt") for note in notes), notes
    assert final.note is None
    # byte for byte what the script printed, though the link was cut in the middle
    assert program_output(nete, ex.id) == expected_printer(n)
    assert during - before < 100, "the link was really cut: (almost) nothing came through"
    # the program kept running on the host meanwhile: it printed during the cut
    with nete.log_reader(ex.id) as reader:
        stamps = [r.ts for r in reader.iter_records() if r.stream == 1]
    assert any(cut_at + 1 < ts < restored_at - 1 for ts in stamps)
    msgs = messages(nete, ex.id)
    assert "lost the connection to far" in msgs and "reconnected to far" in msgs
    assert (nete.outputs_dir(ex.id) / "in-copy.bin").read_bytes() == payload


def test_stop_after_a_reconnect_and_while_the_link_is_down(nete, netns_host, tmp_path):
    lab = lab_in(tmp_path, """
        import signal, sys, time
        def on_term(signum, frame):
            open("outputs/checkpoint.txt", "w").write("saved")
            print("got SIGTERM", flush=True)
            sys.exit(143)
        signal.signal(signal.SIGTERM, on_term)
        i = 0
        while True:
            print("tick", i, flush=True)
            i += 1
            time.sleep(0.1)
        """)
    # 1. Stop after a reconnect
    ex = nete.run(lab, host="far")
    wait_state(nete, ex.id, "running", timeout=60)
    wait_for(lambda: b"tick 3\n" in program_output(nete, ex.id), 30, "ticks")
    netns_host.cut()
    wait_for(lambda: (nete.store.get(ex.id).note or "").startswith("reconnecting"), 15, "reconnecting note")
    netns_host.restore()
    wait_for(lambda: "reconnected to far" in messages(nete, ex.id), 30, "the reconnect")
    count = program_output(nete, ex.id).count(b"tick")
    wait_for(lambda: program_output(nete, ex.id).count(b"tick") > count + 3, 15, "ticks after the reconnect")
    nete.stop(ex.id)
    final = wait_final(nete, ex.id, timeout=30)
    assert final.state == "stopped" and final.exit_code == 143, final.reason
    assert (nete.outputs_dir(ex.id) / "checkpoint.txt").read_text() == "saved"
    ticks = [line for line in program_output(nete, ex.id).splitlines() if line.startswith(b"tick")]
    assert ticks == [b"tick %d" % i for i in range(len(ticks))], "no tick lost or doubled"

    # 2. Stop while the link is down: sent as soon as the link is back
    ex2 = nete.run(lab, host="far")
    wait_state(nete, ex2.id, "running", timeout=60)
    wait_for(lambda: b"tick 3\n" in program_output(nete, ex2.id), 30, "ticks")
    netns_host.cut()
    wait_for(lambda: (nete.store.get(ex2.id).note or "").startswith("reconnecting"), 15, "reconnecting note")
    nete.stop(ex2.id)
    time.sleep(1.0)
    assert nete.store.get(ex2.id).active, "cannot have stopped while the host was unreachable"
    netns_host.restore()
    final2 = wait_final(nete, ex2.id, timeout=60)
    assert final2.state == "stopped" and final2.exit_code == 143, final2.reason
    assert b"got SIGTERM" in program_output(nete, ex2.id)


def test_host_down_is_a_clear_error_within_the_connect_timeout(nete, netns_host, mldesk_home):
    netns_host.cut()
    profile = hosts.load_profile(nete.store.get_host("far"))
    t0 = time.monotonic()
    with pytest.raises(hosts.HostUnreachable) as info:
        transport.connect(profile, known_hosts=nete.layout.known_hosts, timeout=2.0)
    took = time.monotonic() - t0
    assert took < 3.5
    text = str(info.value)
    assert "no answer" in text and "198.18.0.2" in text and "2 s" in text


def test_proxyjump_through_another_sshd(nete, netns_host, sshd_server):
    """ProxyJump: reach the namespace host through the 127.0.0.1 sshd (both keys checked)."""
    trust_host(nete, sshd_server)
    profile = hosts.HostProfile.from_url(
        "hop", f"ssh://{netns_host.user}@{netns_host.host}:{netns_host.port}", key=str(netns_host.key_path),
        jump=f"{sshd_server.user}@{sshd_server.host}:{sshd_server.port}", connect_timeout=5.0)
    conn = transport.connect(profile, known_hosts=nete.layout.known_hosts)
    try:
        r = conn.run(["sh", "-c", "ip -o -4 addr show | grep -c 198.18.0.2"])
        assert r.code == 0 and r.stdout.strip() == b"1"
        assert conn.jumps and conn.jumps[0].endpoint.port == sshd_server.port
    finally:
        conn.close()
