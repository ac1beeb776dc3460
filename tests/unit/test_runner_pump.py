"""The runner's pumps: the Docker attach stream and the record batching (logstore.Batcher)."""

from __future__ import annotations

import os
import socket
import threading
import time

from mldesk.agent import containers, dockerapi, logstore


def frame(stream: int, data: bytes) -> bytes:
    return dockerapi.FRAME_HEAD.pack(stream, len(data)) + data


def run_pump(script):
    """Feed frames through a socketpair with pauses; returns [(stream, data, t)]."""
    a, b = socket.socketpair()
    got = []
    t0 = time.monotonic()

    def feed():
        for item in script:
            if isinstance(item, float):
                time.sleep(item)
            else:
                b.sendall(item)
        b.close()

    threading.Thread(target=feed, daemon=True).start()
    containers.pump_attach(a, b"", lambda s, d, ts=None: got.append((s, d, time.monotonic() - t0)))
    a.close()
    return got


def test_attach_pump_is_byte_exact_in_odd_pieces():
    blob = os.urandom(300_000)
    frames = b"".join(frame(1, blob[i:i + 1000]) for i in range(0, len(blob), 1000)) + frame(2, b"\xff\n")
    # cut the byte stream at odd places, with pauses around the flush timeouts
    script = []
    for i, j in enumerate(range(0, len(frames), 7919)):
        script.append(frames[j:j + 7919])
        if i % 5 == 0:
            script.append(logstore.LINE_FLUSH * (i % 3))
    got = run_pump(script)
    assert b"".join(d for s, d, _ in got if s == 1) == blob
    assert b"".join(d for s, d, _ in got if s == 2) == b"\xff\n"
    assert len(got) < 200, "batched into few records"


def test_partial_line_arrives_while_the_stream_is_open():
    got = run_pump([frame(1, b"epoch 1: 10%"), 0.5, frame(1, b"\r epoch 1: 20%\n")])
    first = got[0]
    assert first[:2] == (1, b"epoch 1: 10%")
    assert first[2] < 0.4, "stored after PARTIAL_FLUSH, not at the newline"
    assert b"".join(d for _, d, _ in got) == b"epoch 1: 10%\r epoch 1: 20%\n"


def test_other_stream_does_not_break_a_partial_line():
    """stdout's line in two writes with a stderr line between (two pipes): the
    stdout line stays whole; complete lines keep their order across streams."""
    got = run_pump([frame(1, b"line 1\n"), frame(1, b"line 2 xx"), frame(2, b"warning 2\n"),
                    frame(1, b"\n"), frame(1, b"line 3\n")])
    out = b"".join(d for s, d, _ in got if s == 1)
    err = b"".join(d for s, d, _ in got if s == 2)
    assert out == b"line 1\nline 2 xx\nline 3\n" and err == b"warning 2\n"
    order = [d for _, d, _ in got]
    assert order.index(b"line 1\n") < order.index(b"warning 2\n")


def test_batcher_keeps_big_lines_whole_and_bounded():
    records = []
    b = logstore.Batcher(lambda s, d: records.append((s, d)))
    now = time.monotonic()
    big = b"y" * (3 << 20)
    for i in range(0, len(big), 65536):
        b.add(1, big[i:i + 65536], now)
    b.add(1, b"\n", now)
    b.close()
    assert b"".join(d for _, d in records) == big + b"\n"
    assert max(len(d) for _, d in records) <= logstore.MAX_DATA + 65536


def test_batcher_stores_the_first_line_at_once_then_batches():
    """A line after a quiet spell is stored at once (Run to the first line without
    the batching wait); the lines right after it wait and go as one record."""
    records = []
    b = logstore.Batcher(lambda s, d: records.append((s, d)))
    now = time.monotonic()
    b.add(1, b"first", now)
    assert records == []  # a partial line waits
    b.add(1, b" line\n", now)
    assert records == [(1, b"first line\n")]
    for i in range(5):
        b.add(1, b"more %d\n" % i, now)
    assert len(records) == 1  # batched: stored by tick() after LINE_FLUSH
    assert b.timeout(now) is not None and b.timeout(now) <= logstore.LINE_FLUSH + 1e-6  # (float sums)
    b.tick(time.monotonic() + logstore.LINE_FLUSH)
    assert records[1:] == [(1, b"more 0\nmore 1\nmore 2\nmore 3\nmore 4\n")]
    later = time.monotonic() + 10 * logstore.LINE_FLUSH  # after a pause: at once again
    b.add(2, b"after a pause\n", later)
    assert records[-1] == (2, b"after a pause\n")
