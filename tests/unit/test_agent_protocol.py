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


def test_start_and_follow_then_samples_and_outputs_on_one_channel(tmp_path):
    """``start WORKDIR ID 0 HEARTBEAT outputs``: the start's status (B), the log stream
    (L/T/H) to its end (E); then, asked on the same stdin, the last resource samples
    (R) and the final outputs (F D f ... Z) -- what the SSH runtime reads on ONE
    channel instead of four (start, follow, resources, outputs)."""
    import sys
    from pathlib import Path

    app = str(Path(__file__).resolve().parents[2] / "app")
    ws = tmp_path / "executions" / "x1" / "workspace"
    (ws / "outputs").mkdir(parents=True)
    (ws / "main.py").write_text("print('hi')\nopen('outputs/a.txt', 'w').write('AAA')\n")
    spec = {"exec_id": "x1", "argv": [], "env": {}, "runtime": "process", "python": sys.executable,
            "sample_interval": 0.05}
    proc = subprocess.Popen([sys.executable, "-S", "-m", "mldesk.agent", "start", str(tmp_path), "x1", "0", "0.2",
                             "outputs"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, PYTHONPATH=app))
    proc.stdin.write((json.dumps(spec) + "\n").encode())
    proc.stdin.flush()

    def frame():
        head = proc.stdout.read(protocol.TYPED_HEAD_SIZE)
        if not head:
            return None
        kind, size = protocol.typed_head(head)
        return kind, proc.stdout.read(size)

    frames = []
    while True:
        f = frame()
        if f is None:
            break
        frames.append(f)
        if f[0] == protocol.END:
            proc.stdin.write(b'{"have": {}, "resources_from": 0}\n')
            proc.stdin.flush()
    assert proc.wait(30) == 0, proc.stderr.read()
    kinds = [k for k, _ in frames]
    assert kinds[0] == protocol.STARTED and json.loads(frames[0][1])["state"] in ("running", "exited")
    end = kinds.index(protocol.END)
    assert json.loads(frames[end][1])["state"] == "exited"
    assert b"".join(d for s, _, d in protocol.log_records(b"".join(p for k, p in frames[:end] if k == protocol.LOG))
                    if s == logstore.STDOUT) == b"hi\n"
    assert kinds[end + 1] == protocol.SAMPLES and kinds[-1] == protocol.TOTALS
    assert all(line.startswith(b"{") for line in frames[end + 1][1].splitlines())
    files = [json.loads(p) for k, p in frames if k == protocol.FILE]
    assert [f["path"] for f in files] == ["a.txt"]
    assert b"".join(p for k, p in frames if k == protocol.DATA) == b"AAA"
    assert json.loads(frames[-1][1])["sent"] == 1
