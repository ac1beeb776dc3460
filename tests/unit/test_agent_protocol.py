"""The wire protocol (defined once in mldesk.agent.protocol) and the agent's fs helpers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from mldesk.agent import fsutil, logstore, protocol


def test_frames_round_trip():
    payload = b"\x00\xffhello"
    f = protocol.frame(payload)
    assert protocol.frame_length(f[:protocol.LENGTH.size]) == len(payload) and f[4:] == payload
    t = protocol.typed(protocol.SKIP, payload)
    assert protocol.typed_head(t[:protocol.TYPED_HEAD_SIZE]) == (protocol.SKIP, len(payload))
    assert len(set(protocol.KINDS)) == len(protocol.KINDS)


def test_log_records_parse_the_log_store_format(tmp_path):
    path = tmp_path / "log.bin"
    with logstore.LogWriter(path) as w:
        w.write(logstore.STDOUT, b"a\nb\n", 1.5)
        w.write(logstore.STDERR, b"\xff err", 2.5)
        w.message("stage")
    raw = path.read_bytes()
    got = list(protocol.log_records(raw))
    assert [(s, ts) for s, ts, _ in got[:2]] == [(1, 1.5), (2, 2.5)]
    assert [d for _, _, d in got] == [b"a\nb\n", b"\xff err", b"stage\n"]
    assert logstore.HEADER_SIZE == protocol.LOG_HEADER_SIZE == 21


def test_fsutil_atomic_json_and_helpers(tmp_path):
    p = tmp_path / "s.json"
    fsutil.write_json(p, {"a": 1})
    assert fsutil.read_json(p) == {"a": 1} and fsutil.read_json(tmp_path / "none") is None
    assert [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")] == []
    assert fsutil.human_bytes(999) == "999 B" and fsutil.human_bytes(163_800) == "163.8 KB"
    assert fsutil.normalise_exit(-15) == 143 and fsutil.normalise_exit(3) == 3


def test_kill_group_escalates_and_pid_alive_sees_zombies():
    proc = subprocess.Popen(["sh", "-c", "trap '' TERM; sleep 30 & wait"], start_new_session=True)
    start = fsutil.proc_start_time(proc.pid)
    assert fsutil.pid_alive(proc.pid, start)
    t0 = time.monotonic()
    fsutil.kill_group(proc.pid, 0.3)
    assert time.monotonic() - t0 < 5
    deadline = time.monotonic() + 5
    while fsutil.pid_alive(proc.pid, start) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not fsutil.pid_alive(proc.pid, start), "an unreaped child (zombie) is not alive"
    assert proc.wait() in (-signal.SIGTERM, -signal.SIGKILL)
    deadline = time.monotonic() + 5
    while fsutil.group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not fsutil.group_alive(proc.pid), "the sleep (TERM ignored, inherited) was killed after the grace"
