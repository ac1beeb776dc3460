"""The append-only execution log (mldesk.agent.logstore)."""

from __future__ import annotations

import multiprocessing
import os
import random
import shutil
import statistics
import struct
import subprocess
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from unittest import mock

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mldesk.agent import logstore
from mldesk.agent.logstore import (
    MAX_DATA,
    MLDESK,
    STDERR,
    STDOUT,
    LogCorrupt,
    LogReader,
    LogWriter,
    Record,
    write_program_output,
)

HDR = struct.Struct("<IBdQ")
OVERHEAD = 25


# -- helpers ----------------------------------------------------------------------


def split_lines(data: bytes) -> list[bytes]:
    """The log's notion of lines: split on b"\\n" (kept); a final fragment is a line."""
    parts = data.split(b"\n")
    lines = [p + b"\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def byte_streams(pairs) -> list[tuple[int, bytes]]:
    """(stream, data) pairs merged where the stream does not change, empties dropped."""
    out: list[tuple[int, bytes]] = []
    for s, d in pairs:
        if not d:
            continue
        if out and out[-1][0] == s:
            out[-1] = (s, out[-1][1] + d)
        else:
            out.append((s, d))
    return out


def recs_pairs(records) -> list[tuple[int, bytes]]:
    return byte_streams((r.stream, r.data) for r in records)


def slice_pairs(pairs, start: int, stop: int) -> list[tuple[int, bytes]]:
    """Byte range [start, stop) of the concatenated pairs, with streams."""
    out = []
    pos = 0
    for s, d in pairs:
        lo, hi = max(start, pos), min(stop, pos + len(d))
        if lo < hi:
            out.append((s, d[lo - pos : hi - pos]))
        pos += len(d)
    return byte_streams(out)


def parse_raw(path) -> list[tuple[int, int, float, int, bytes, int]]:
    """Parse a log file by hand: (offset, stream, ts, lines_before, data, end)."""
    raw = Path(path).read_bytes()
    out = []
    pos = 0
    while pos < len(raw):
        length, stream, ts, lines_before = HDR.unpack_from(raw, pos)
        data = raw[pos + 21 : pos + 21 + length]
        (trail,) = struct.unpack_from("<I", raw, pos + 21 + length)
        assert trail == length
        out.append((pos, stream, ts, lines_before, data, pos + OVERHEAD + length))
        pos += OVERHEAD + length
    assert pos == len(raw)
    return out


def check_head_tail(reader: LogReader, writes, n: int, m: int) -> None:
    """head(n) and tail(m) against the reference slices of ``writes``."""
    pairs = byte_streams(writes)
    full = b"".join(d for _, d in pairs)
    lines = split_lines(full)
    total = len(lines)
    assert reader.total_lines() == total

    recs, nxt = reader.head(n)
    want = b"".join(lines[:n]) if n > 0 else b""
    assert b"".join(r.data for r in recs) == want
    assert recs_pairs(recs) == slice_pairs(pairs, 0, len(want))
    if recs:
        assert nxt == recs[-1].end
        assert recs[0].offset == 0
    else:
        assert nxt == 0
    for a, b in zip(recs, recs[1:]):
        assert a.end == b.offset

    recs, start = reader.tail(m)
    want = b"".join(lines[max(0, total - m) :]) if m > 0 else b""
    assert b"".join(r.data for r in recs) == want
    assert recs_pairs(recs) == slice_pairs(pairs, len(full) - len(want), len(full))
    if recs:
        assert start == recs[0].offset
        assert recs[-1].end == reader.size()
    else:
        assert start == reader.size()
    for a, b in zip(recs, recs[1:]):
        assert a.end == b.offset


def write_all(path, writes, ts0: float = 1000.0) -> LogWriter:
    w = LogWriter(path)
    for i, (s, d) in enumerate(writes):
        w.write(s, d, ts0 + i)
    return w


# -- format and round trip ----------------------------------------------------------


def test_round_trip_streams_ts_data(tmp_path):
    path = tmp_path / "log.bin"
    writes = [
        (STDOUT, b"hello\n", 1.5),
        (STDERR, b"oops: \xff\xfe binary\n", 2.25),
        (STDOUT, b"no newline", 3.0),
        (MLDESK, "stage \u2713\n".encode(), 4.0),
        (STDOUT, b" continued\nmore\n", 5.0),
    ]
    with LogWriter(path) as w:
        ends = [w.write(s, d, ts) for s, d, ts in writes]
        assert w.write(STDOUT, b"") == ends[-1]  # empty data writes nothing
        assert w.size == os.path.getsize(path) == ends[-1]
        assert w.lines == 5
    with LogReader(path) as r:
        recs, nxt = r.read_from(0)
        assert nxt == r.size() == ends[-1]
        assert [(x.stream, x.data, x.ts) for x in recs] == [(s, d, ts) for s, d, ts in writes]
        assert [x.end for x in recs] == ends
        assert [x.offset for x in recs] == [0] + ends[:-1]
        assert isinstance(recs[0], Record) and isinstance(recs[0].data, bytes)
        assert list(r.iter_records()) == recs
        assert list(r.iter_records(recs[2].offset)) == recs[2:]
        assert r.total_lines() == 5
        assert r.read_from(nxt) == ([], nxt)


def test_exact_byte_format(tmp_path):
    path = tmp_path / "log.bin"
    with LogWriter(path) as w:
        w.write(STDOUT, b"a\nb\n", 10.0)
        w.write(STDERR, b"c", 11.0)
        w.write(MLDESK, b"d\ne\n", 12.0)
    raw = path.read_bytes()
    expect = b"".join(
        [
            struct.pack("<IBdQ", 4, 1, 10.0, 0) + b"a\nb\n" + struct.pack("<I", 4),
            struct.pack("<IBdQ", 1, 2, 11.0, 2) + b"c" + struct.pack("<I", 1),
            struct.pack("<IBdQ", 4, 3, 12.0, 2) + b"d\ne\n" + struct.pack("<I", 4),
        ]
    )
    assert raw == expect


def test_default_ts_message_and_bad_stream(tmp_path):
    path = tmp_path / "log.bin"
    with LogWriter(path) as w:
        t0 = time.time()
        w.write(STDOUT, bytearray(b"x\n"))
        w.message("Preparing")
        w.message("Done\n")
        w.flush()
        w.sync()
        with pytest.raises(ValueError):
            w.write(7, b"x")
    recs = list(LogReader(path).iter_records())
    assert recs[0].ts >= t0 - 1 and recs[0].ts <= time.time() + 1
    assert [(x.stream, x.data) for x in recs] == [
        (STDOUT, b"x\n"),
        (MLDESK, b"Preparing\n"),
        (MLDESK, b"Done\n"),
    ]


def test_big_write_is_split_into_records(tmp_path):
    path = tmp_path / "log.bin"
    line = b"0123456789" * 7 + b"abcdefghi\n"  # 80 bytes
    big = line * 40000  # 3.2 MB
    blob = bytes(random.Random(1).getrandbits(8) for _ in range(100)) * 25000  # 2.5 MB
    with LogWriter(path, fsync=True) as w:
        w.write(STDOUT, big, 1.0)
        w.write(STDERR, blob, 2.0)
        assert w.lines == big.count(b"\n") + blob.count(b"\n") + (0 if blob.endswith(b"\n") else 1)
    raw = parse_raw(path)
    assert all(0 < len(d) <= MAX_DATA for _, _, _, _, d, _ in raw)
    assert len(raw) >= 6
    out = b"".join(d for _, s, _, _, d, _ in raw if s == STDOUT)
    assert out == big
    # cuts are made after a newline when there is one in reach: whole lines per record
    assert all(d.endswith(b"\n") for _, s, _, _, d, _ in raw if s == STDOUT)
    assert b"".join(d for _, s, _, _, d, _ in raw if s == STDERR) == blob
    nl = 0
    for _, _, _, lines_before, d, _ in raw:
        assert lines_before == nl
        nl += d.count(b"\n")


def test_lines_before_under_concurrent_threads(tmp_path):
    path = tmp_path / "log.bin"
    w = LogWriter(path)

    def pump(stream):
        for i in range(500):
            w.write(stream, b"line %d\n" % i * (1 + i % 3))

    threads = [threading.Thread(target=pump, args=(s,)) for s in (STDOUT, STDERR, MLDESK)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    w.close()
    nl = 0
    for _, _, _, lines_before, d, _ in parse_raw(path):
        assert lines_before == nl
        nl += d.count(b"\n")
    assert LogReader(path).total_lines() == nl


def test_reader_before_the_file_exists(tmp_path):
    path = tmp_path / "log.bin"
    r = LogReader(path)
    assert r.size() == 0
    assert r.total_lines() == 0
    assert r.head(10) == ([], 0)
    assert r.tail(10) == ([], 0)
    assert r.read_from(0) == ([], 0)
    assert list(r.iter_records()) == []
    with LogWriter(path) as w:
        w.write(STDOUT, b"late\n")
    assert r.size() > 0
    assert [x.data for x in r.read_from(0)[0]] == [b"late\n"]
    assert r.total_lines() == 1
    r.close()
    r.close()


def test_write_program_output(tmp_path):
    path = tmp_path / "log.bin"
    with LogWriter(path) as w:
        w.message("Starting")
        w.write(STDOUT, b"out1\n")
        w.write(STDERR, b"err1\n")
        w.message("Collecting")
        second = w.write(STDOUT, b"x" * (5 << 20))  # several records, several batches
        w.write(STDOUT, b"tail")
    r = LogReader(path)
    out = tmp_path / "out.txt"
    with open(out, "wb") as f:
        n = write_program_output(r, f)
    assert out.read_bytes() == b"out1\nerr1\n" + b"x" * (5 << 20) + b"tail"
    assert n == out.stat().st_size
    with open(out, "wb") as f:
        n = write_program_output(r, f, include_mldesk=True)
    assert out.read_bytes().startswith(b"Starting\nout1\nerr1\nCollecting\nxxx")
    with open(out, "wb") as f:
        assert write_program_output(r, f, offset=second) == 4
    assert out.read_bytes() == b"tail"


# -- head / tail / total_lines ------------------------------------------------------

CASES = {
    "empty": [],
    "one line": [(STDOUT, b"only\n")],
    "unterminated": [(STDOUT, b"a\nb\nc")],
    "just newlines": [(STDOUT, b"\n\n\n"), (STDERR, b"\n")],
    "mixed streams": [
        (STDOUT, b"o1\no2\n"),
        (STDERR, b"e1\n"),
        (MLDESK, b"m1\n"),
        (STDOUT, b"o3\n"),
        (STDERR, b"e2\ne3\ne4\n"),
    ],
    "lines spanning records": [
        (STDOUT, b"start of a "),
        (STDERR, b"long "),
        (STDOUT, b"line\nnext "),
        (STDOUT, b"one\n"),
        (STDERR, b"x"),
        (STDOUT, b"y"),
        (MLDESK, b"z\n"),
        (STDOUT, b"last without newline"),
    ],
    "empty lines between": [(STDOUT, b"a\n\n"), (STDERR, b"\nb\n\n"), (STDOUT, b"\n")],
}


@pytest.mark.parametrize("name", list(CASES))
def test_head_tail_total_exact(tmp_path, name):
    writes = CASES[name]
    path = tmp_path / "log.bin"
    write_all(path, writes).close()
    r = LogReader(path)
    total = len(split_lines(b"".join(d for _, d in writes)))
    for n in range(0, total + 3):
        for m in range(0, total + 3):
            check_head_tail(r, writes, n, m)


@pytest.mark.parametrize("block", [3, 16, 1 << 17])
def test_head_tail_with_small_read_blocks(tmp_path, block):
    """Chunked reading inside records (blocks smaller than records and lines)."""
    rnd = random.Random(block)
    writes = []
    for _ in range(60):
        n = rnd.randrange(1, 200)
        writes.append((rnd.choice((STDOUT, STDERR, MLDESK)), bytes(rnd.choice(b"ab\n") for _ in range(n))))
    path = tmp_path / "log.bin"
    write_all(path, writes).close()
    total = len(split_lines(b"".join(d for _, d in writes)))
    with mock.patch.object(logstore, "_BLOCK", block):
        r = LogReader(path)
        for n in list(range(0, 12)) + [total // 2, total - 1, total, total + 5]:
            check_head_tail(r, writes, n, n)
            check_head_tail(r, writes, n, total - n if n <= total else 0)


def test_head_trims_last_record_and_gives_continue_offset(tmp_path):
    path = tmp_path / "log.bin"
    with LogWriter(path) as w:
        e1 = w.write(STDOUT, b"1\n2\n3\n", 1.0)
        e2 = w.write(STDERR, b"4\n5\n", 2.0)
    r = LogReader(path)
    recs, nxt = r.head(4)
    assert recs == [
        Record(STDOUT, 1.0, b"1\n2\n3\n", 0, e1),
        Record(STDERR, 2.0, b"4\n", e1, e2),
    ]
    assert nxt == e2
    recs, nxt = r.head(3)
    assert [x.data for x in recs] == [b"1\n2\n3\n"] and nxt == e1
    recs, start = r.tail(3)
    assert recs == [Record(STDOUT, 1.0, b"3\n", 0, e1), Record(STDERR, 2.0, b"4\n5\n", e1, e2)]
    assert start == 0
    recs, start = r.tail(2)
    assert recs == [Record(STDERR, 2.0, b"4\n5\n", e1, e2)] and start == e1
    assert [x.data for x in r.tail(100)[0]] == [b"1\n2\n3\n", b"4\n5\n"]


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    writes=st.lists(
        st.tuples(
            st.sampled_from([STDOUT, STDERR, MLDESK]),
            st.binary(min_size=0, max_size=40).map(lambda b: b.replace(b"\x00", b"\n")),
        ),
        max_size=40,
    ),
    block=st.sampled_from([1, 5, 64, 1 << 17]),
    data=st.data(),
)
def test_property_head_plus_tail_equal_line_slices(writes, block, data):
    full = b"".join(d for _, d in writes)
    total = len(split_lines(full))
    n = data.draw(st.integers(0, total), label="n")
    m = data.draw(st.integers(0, total - n), label="m")
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "log.bin")
        write_all(path, writes).close()
        with mock.patch.object(logstore, "_BLOCK", block), LogReader(path) as r:
            check_head_tail(r, writes, n, m)
            head = b"".join(x.data for x in r.head(n)[0])
            tail = b"".join(x.data for x in r.tail(m)[0])
            lines = split_lines(full)
            assert split_lines(head) + split_lines(tail) == lines[:n] + lines[total - m :]


# -- partial records, concurrency, recovery -------------------------------------------


def _sample_writes(seed: int, count: int, big: bool = False):
    rnd = random.Random(seed)
    out = []
    for i in range(count):
        stream = rnd.choice((STDOUT, STDOUT, STDERR, MLDESK))
        r = rnd.random()
        if big and r < 0.02:
            size = rnd.randrange(MAX_DATA, 2 * MAX_DATA + 1000)  # split by the writer
        elif big and r < 0.25:
            size = rnd.randrange(20000, 300000)
        else:
            size = rnd.randrange(1, 400)
        line = b"%d:%d " % (seed, i)
        body = (line * (size // len(line) + 1))[:size]
        if rnd.random() < 0.7:
            body = body[:-1] + b"\n"
        out.append((stream, body))
    return out


def test_every_prefix_of_the_file_shows_only_complete_records(tmp_path, monkeypatch):
    """Whatever prefix of the file is visible (a writer mid-record, or one that died),
    readers see exactly the complete records in it."""
    monkeypatch.setattr(LogReader, "TORN_WAIT", 0.0)
    src = tmp_path / "full.bin"
    writes = _sample_writes(3, 12)
    write_all(src, writes).close()
    raw = src.read_bytes()
    recs = parse_raw(src)
    ends = [e for *_, e in recs]
    path = tmp_path / "log.bin"
    for k in range(len(raw) + 1):
        path.write_bytes(raw[:k])
        complete = [e for e in ends if e <= k]
        last = complete[-1] if complete else 0
        with LogReader(path) as r:
            got, nxt = r.read_from(0)
            assert [x.end for x in got] == complete
            assert nxt == last
            assert r.size() == last
            n_complete = len(complete)
            pairs = [(s, d) for _, s, _, _, d, _ in recs[:n_complete]]
            full = b"".join(d for _, d in pairs)
            assert r.total_lines() == len(split_lines(full))
            assert b"".join(x.data for x in r.tail(3)[0]) == b"".join(split_lines(full)[-3:])
            # from every boundary before the cut
            for b in [0] + complete:
                got, nxt = r.read_from(b, max_bytes=1)
                assert nxt == (b if b == last else next(e for e in complete if e > b))


def test_read_from_every_boundary(tmp_path):
    path = tmp_path / "log.bin"
    writes = _sample_writes(5, 200, big=True)
    write_all(path, writes).close()
    raw = parse_raw(path)
    r = LogReader(path)
    full = b"".join(d for _, d in writes)
    for i, (off, *_rest) in enumerate(raw):
        for max_bytes in (1, 100, 4 << 20):
            got, nxt = r.read_from(off, max_bytes)
            assert got and got[0].offset == off
            assert [x.offset for x in got] == [x[0] for x in raw[i : i + len(got)]]
        rest = b"".join(x.data for x in r.iter_records(off))
        assert full.endswith(rest) and len(rest) == sum(len(x[4]) for x in raw[i:])


def _writer_proc(path: str, seed: int, count: int) -> None:
    w = LogWriter(path)
    rnd = random.Random(seed + 1)
    for s, d in _sample_writes(seed, count, big=True):
        w.write(s, d)
        if rnd.random() < 0.05:
            time.sleep(0.001)
    w.close()


def test_concurrent_writer_process_never_yields_partial_records(tmp_path):
    path = str(tmp_path / "log.bin")
    seed, count = 11, 3000
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=_writer_proc, args=(path, seed, count))
    proc.start()
    r = LogReader(path)
    rnd = random.Random(0)
    got: list[Record] = []
    offset = 0
    tails = []
    polls = torn_seen = 0
    deadline = time.monotonic() + 120
    while True:
        alive = proc.is_alive()
        try:
            fsize = os.path.getsize(path)
        except FileNotFoundError:
            fsize = 0
        recs, nxt = r.read_from(offset, max_bytes=rnd.choice((1, 4096, 1 << 20, 4 << 20)))
        polls += 1
        for x in recs:
            assert x.offset == offset
            assert x.end == offset + len(x.data) + OVERHEAD
            assert 0 < len(x.data) <= MAX_DATA
            offset = x.end
        assert nxt == offset
        if fsize > offset and not recs:
            torn_seen += 1
        got.extend(recs)
        if polls % 50 == 0:
            with LogReader(path) as fresh:
                size = fresh.size()
                t, start = fresh.tail(5)
                tails.append((size, t))
                assert fresh.total_lines() >= 0
        if not alive and not recs:
            break
        assert time.monotonic() < deadline
    proc.join()
    assert proc.exitcode == 0
    expect = _sample_writes(seed, count, big=True)
    assert recs_pairs(got) == byte_streams(expect)
    assert offset == os.path.getsize(path)
    # what fresh readers saw mid-write was true then and is still true now
    by_offset = {x.offset: x for x in got}
    for size, t in tails:
        for x in t:
            whole = by_offset[x.offset]
            assert whole.end == x.end and whole.data.endswith(x.data)
        if t:
            assert t[-1].end >= size  # tail() looked again, the writer went on
    print("polls", polls, "reads that stopped at an incomplete record", torn_seen)


def test_size_waits_for_a_record_being_written(tmp_path):
    path = tmp_path / "log.bin"
    with LogWriter(path) as w:
        w.write(STDOUT, b"one\n")
        end = w.write(STDOUT, b"two\n" * 1000)
    raw = path.read_bytes()
    cut = len(raw) - 700
    path.write_bytes(raw[:cut])
    r = LogReader(path)
    r.TORN_WAIT = 2.0

    def finish():
        time.sleep(0.05)
        with open(path, "ab") as f:
            f.write(raw[cut:])

    t = threading.Thread(target=finish)
    t.start()
    assert r.size() == end  # waited for the rest instead of scanning
    t.join()


@pytest.mark.parametrize(
    "garbage",
    [
        "partial header",
        "header only",
        "partial data",
        "no trailer",
        "zeros",
        "zeroed record",
    ],
)
def test_torn_tail_is_ignored_by_readers_and_truncated_on_reopen(tmp_path, garbage):
    path = tmp_path / "log.bin"
    with LogWriter(path) as w:
        w.write(STDOUT, b"a\nb\n")
        w.write(STDERR, b"partial line")
        good = w.size
    rec = struct.pack("<IBdQ", 10, STDOUT, 5.0, 2) + b"0123456789" + struct.pack("<I", 10)
    tail = {
        "partial header": rec[:7],
        "header only": rec[:21],
        "partial data": rec[:26],
        "no trailer": rec[:-1],
        "zeros": b"\0" * 300,
        "zeroed record": rec[:21] + b"\0" * 14,
    }[garbage]
    with open(path, "ab") as f:
        f.write(tail)
    r = LogReader(path)
    r.TORN_WAIT = 0.01
    assert r.size() == good
    recs, nxt = r.read_from(0)
    assert [x.data for x in recs] == [b"a\nb\n", b"partial line"] and nxt == good
    assert r.total_lines() == 3
    assert [x.data for x in r.tail(1)[0]] == [b"partial line"]
    assert [x.data for x in r.head(5)[0]] == [b"a\nb\n", b"partial line"]
    with LogWriter(path) as w:
        assert w.size == good == os.path.getsize(path)
        assert w.lines == 3
        w.write(STDOUT, b" end\nnew\n")
    raw = parse_raw(path)  # a clean file again
    assert raw[-1][3] == 2  # lines_before continues
    r2 = LogReader(path)
    assert r2.total_lines() == 4
    assert b"".join(x.data for x in r2.tail(2)[0]) == b"partial line end\nnew\n"
    recs, nxt = r.read_from(good)  # the old reader goes on from where it was
    assert [x.data for x in recs] == [b" end\nnew\n"]


def test_corrupt_trailer_raises_with_offset(tmp_path):
    path = tmp_path / "log.bin"
    with LogWriter(path) as w:
        e1 = w.write(STDOUT, b"first\n")
        e2 = w.write(STDOUT, b"second\n")
        w.write(STDOUT, b"third\n")
    raw = bytearray(path.read_bytes())
    raw[e2 - 4 : e2] = struct.pack("<I", 99)  # the second record's trailing length
    path.write_bytes(bytes(raw))
    r = LogReader(path)
    with pytest.raises(LogCorrupt) as exc:
        r.read_from(0)
    assert exc.value.offset == e1
    assert str(e1) in str(exc.value) and "log.bin" in str(exc.value)
    with pytest.raises(LogCorrupt):
        r.head(10)
    with pytest.raises(LogCorrupt):
        r.tail(10)
    with pytest.raises(LogCorrupt):
        list(r.iter_records())
    assert [x.data for x in r.read_from(e2)[0]] == [b"third\n"]


def test_writer_refuses_to_truncate_damage(tmp_path):
    path = tmp_path / "log.bin"
    with LogWriter(path) as w:
        good = w.write(STDOUT, b"x\n")
    with open(path, "ab") as f:
        f.write(b"\x07" * (MAX_DATA + 1000))
    with pytest.raises(LogCorrupt) as exc:
        LogWriter(path)
    assert exc.value.offset == good
    assert os.path.getsize(path) == good + MAX_DATA + 1000  # nothing thrown away


# -- size independence ---------------------------------------------------------------


def _line_block(k: int) -> bytes:
    lines = [b"block %06d\n" % k]
    for i in range(13000):
        lines.append(b"epoch %3d step %6d loss=%.6f acc=%.4f lr=1.0e-04 [%6d/%6d]   \n" % (k % 100, i, 1.0 / (i + 1), i / 13000, i, 13000))
    return b"".join(lines)


def test_large_log_head_tail_are_fast_and_read_little(tmp_path):
    path = tmp_path / "big.bin"
    blocks = [_line_block(k) for k in range(4)]
    assert len(blocks[0]) <= MAX_DATA
    nblocks = 300 * 1000 * 1000 // len(blocks[0])
    with LogWriter(path) as w:
        for k in range(nblocks):
            w.write(STDOUT if k % 7 else STDERR, blocks[k % 4], float(k))
    size = os.path.getsize(path)
    assert size > 290_000_000
    lines_per_block = blocks[0].count(b"\n")

    # independent count of what the reader reads, through os.pread itself
    # (where there is one: Windows reads with lseek + read)
    counted = [0]
    real_pread = getattr(os, "pread", None)

    def counting_pread(fd, n, off):
        b = real_pread(fd, n, off)
        counted[0] += len(b)
        return b

    proc = psutil.Process()
    rss0 = proc.memory_info().rss
    times = []
    patch = mock.patch.object(os, "pread", counting_pread) if real_pread else mock.MagicMock()
    with patch:
        for _ in range(7):
            t0 = time.perf_counter()
            with LogReader(path) as r:
                head, _ = r.head(1000)
                tail, _ = r.tail(1000)
            times.append(time.perf_counter() - t0)
        counted[0] = 0
        with LogReader(path) as r:
            r.tail(1000)
            tail_bytes = r.bytes_read
            assert counted[0] == tail_bytes or not real_pread
            r.head(1000)
            head_bytes = r.bytes_read - tail_bytes
            total = r.total_lines()
            all_bytes = r.bytes_read
    rss_growth = proc.memory_info().rss - rss0

    assert statistics.median(times) < 0.05, times
    assert tail_bytes < 2_000_000 and head_bytes < 2_000_000 and all_bytes < 4_000_000
    assert rss_growth < 20_000_000, rss_growth
    assert total == nblocks * lines_per_block
    first = blocks[0].splitlines(keepends=True)
    last = blocks[(nblocks - 1) % 4].splitlines(keepends=True)
    assert b"".join(x.data for x in head) == b"".join(first[:1000])
    assert b"".join(x.data for x in tail) == b"".join(last[-1000:])


def test_batched_writes_from_four_writers_read_back(tmp_path):
    """4 writers x 50k lines in batches: every record is there (the speed of this is
    measured by bench/p3 and bench/p9, not asserted here)."""
    batch = b"".join(b"step %6d loss=0.123456 acc=0.9876 lr=1.0e-04 some more text here\n" % i for i in range(500))
    paths = [tmp_path / ("log%d.bin" % i) for i in range(4)]
    writers = [LogWriter(p) for p in paths]
    for _ in range(100):  # 4 x 50k lines
        for w in writers:
            w.write(STDOUT, batch)
    for w in writers:
        w.close()
    n = sum(len(LogReader(p).read_from(0)[0]) for p in paths)
    assert n == 400
    assert all(LogReader(p).total_lines() == 50_000 for p in paths)


# -- stdlib only, Python 3.8 ----------------------------------------------------------


def test_module_is_stdlib_only_and_runs_on_old_python(tmp_path, oldest_python):
    """On Debian 11's Python 3.9 (the oldest the agent is tested on), in a container."""
    src = Path(logstore.__file__).read_text()
    for line in src.splitlines():
        if line.startswith(("import ", "from ")):
            mod = line.split()[1]
            assert mod.split(".")[0] in {"__future__", "os", "selectors", "struct", "threading", "time",
                                         "typing"} or mod == "mldesk.agent", line
    pythons = [str(oldest_python)]
    script = textwrap.dedent(
        """
        import sys
        sys.path.insert(0, sys.argv[1])  # the folder that holds the mldesk package
        import mldesk.agent.logstore as m
        p = sys.argv[2]
        with m.LogWriter(p) as w:
            w.write(m.STDOUT, b"a\\nb\\n" * 1000); w.message("hi"); w.write(m.STDERR, b"x" * 3000000)
        r = m.LogReader(p)
        assert r.total_lines() == 2002, r.total_lines()
        assert b"".join(x.data for x in r.head(1)[0]) == b"a\\n"
        assert b"".join(x.data for x in r.tail(2)[0]) == b"hi\\n" + b"x" * 3000000
        print("ok", sys.version_info[:2])
        """
    )
    for exe in pythons:
        p = tmp_path / ("log-%s.bin" % os.path.basename(exe))
        root = tmp_path / "pkg"  # under /tmp, which the container sees: the agent package as shipped
        if not root.exists():
            (root / "mldesk").mkdir(parents=True)
            (root / "mldesk" / "__init__.py").write_text("")
            shutil.copytree(Path(logstore.__file__).parent, root / "mldesk" / "agent",
                            ignore=shutil.ignore_patterns("__pycache__"))
        res = subprocess.run(
            [exe, "-c", script, str(root), str(p)], capture_output=True, text=True, timeout=120
        )
        assert res.returncode == 0, res.stderr
        assert res.stdout.startswith("ok (3, 9)")


def test_write_tail_streams_the_same_bytes_as_tail(tmp_path):
    import io
    import random

    from mldesk.agent import logstore

    rng = random.Random(7)
    path = tmp_path / "log.bin"
    with logstore.LogWriter(path) as w:
        for _ in range(300):
            stream = rng.choice((logstore.STDOUT, logstore.STDERR, logstore.MLDESK))
            w.write(stream, b"".join(rng.choice([b"a", b"bb", b"\n", b"ccc\n"]) for _ in range(rng.randint(1, 50))))
    with logstore.LogReader(path) as r:
        for n in (0, 1, 2, 5, 17, 100, 10_000):
            for streams in ((logstore.STDOUT, logstore.STDERR), (logstore.STDOUT,)):
                buf = io.BytesIO()
                logstore.write_tail(r, buf, n, streams)
                assert buf.getvalue() == b"".join(rec.data for rec in r.tail(n, streams)[0]), (n, streams)
