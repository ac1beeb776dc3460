"""P4: opening a log costs the same whatever its size.

Builds a 1 MiB and a 1 GiB execution log (realistic ~80-byte training-log lines,
written in large records, as the supervisor does under a flood) in a temporary
folder, then measures what opening an execution does to it: a fresh ``LogReader``,
``head(1000)`` and ``tail(1000)``. Median of 20 runs, with the page cache warm and
cold (``/proc/sys/vm/drop_caches`` when allowed, else ``posix_fadvise(DONTNEED)`` on
the log file, else cold is not measured).

Goal: the 1 GiB log within 1.5x of the 1 MiB log, and under 150 ms.

    PYTHONPATH=app .venv/bin/python bench/p4_log_head_tail.py [--dir DIR] [--runs N]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time

from mldesk.agent.logstore import STDERR, STDOUT, LogReader, LogWriter

MiB = 1 << 20
GiB = 1 << 30
RECORD = 256 << 10  # bytes of lines per write: one record each
N_LINES = 1000
GOAL_RATIO = 1.5
GOAL_MS = 150.0


def make_blocks(count: int, seed: int = 4) -> list[tuple[int, bytes]]:
    """``count`` distinct ~RECORD-byte blocks of training-log-like lines."""
    rnd = random.Random(seed)
    blocks = []
    step = 0
    for b in range(count):
        if b % 9 == 4:
            stream = STDERR
            lines = []
            size = 0
            while size < RECORD - 200:
                step += 1
                line = (
                    "/opt/venv/lib/python3.11/site-packages/torch/utils/data.py:%d: UserWarning: "
                    "batch %d smaller than expected\n" % (rnd.randrange(100, 900), step)
                ).encode()
                lines.append(line)
                size += len(line)
        else:
            stream = STDOUT
            lines = []
            size = 0
            while size < RECORD - 200:
                step += 1
                line = (
                    "epoch %3d step %7d/%d loss=%.6f acc=%.4f lr=%.2e %5.3fs/it\n"
                    % (
                        step // 10000,
                        step,
                        10_000_000,
                        rnd.random() * 2,
                        rnd.random(),
                        1e-4 * rnd.random(),
                        rnd.random(),
                    )
                ).encode()
                lines.append(line)
                size += len(line)
        blocks.append((stream, b"".join(lines)))
    return blocks


def build(path: str, size: int, blocks: list[tuple[int, bytes]]) -> tuple[float, int, int, int]:
    t0 = time.perf_counter()
    with LogWriter(path) as w:
        i = 0
        ts = 1.7e9
        while True:
            stream, data = blocks[i % len(blocks)]
            if w.size + len(data) + 25 > size:
                break
            w.write(stream, data, ts)
            ts += 0.25
            i += 1
        os.fsync(w._f.fd)  # so DONTNEED can drop the pages (dirty ones stay)
        lines = w.lines
    return time.perf_counter() - t0, os.path.getsize(path), lines, i


def drop_cache(path: str) -> str | None:
    """Evict the log from the page cache; the method used, or None if impossible."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return "drop_caches"
    except OSError:
        pass
    if hasattr(os, "posix_fadvise"):
        try:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fdatasync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
            return "posix_fadvise(DONTNEED)"
        except OSError:
            pass
    return None


def open_head_tail(path: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    r = LogReader(path)
    head, _ = r.head(N_LINES)
    tail, _ = r.tail(N_LINES)
    nbytes = r.bytes_read
    r.close()
    dt = time.perf_counter() - t0
    assert sum(x.data.count(b"\n") for x in head) == N_LINES
    assert sum(x.data.count(b"\n") for x in tail) == N_LINES
    return dt * 1000, nbytes


def measure(path: str, runs: int, cold: bool) -> tuple[float, int, str | None]:
    times = []
    method = None
    nbytes = 0
    if not cold:
        open_head_tail(path)  # warm up
    for _ in range(runs):
        if cold:
            method = drop_cache(path)
            if method is None:
                return float("nan"), 0, None
        ms, nbytes = open_head_tail(path)
        times.append(ms)
    return statistics.median(times), nbytes, method


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", help="where to build the logs (default: a temp dir)")
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="mldesk-p4-", dir=args.dir)
    try:
        blocks = make_blocks(64)
        paths = {}
        print("building logs in %s ..." % tmp)
        for label, size in (("1 MiB", MiB), ("1 GiB", GiB)):
            path = os.path.join(tmp, "log-%s.bin" % label.replace(" ", ""))
            secs, real, lines, records = build(path, size, blocks)
            paths[label] = path
            print(
                "  %-5s log: %12d bytes, %10d lines, %5d records, built in %.2f s"
                % (label, real, lines, records, secs)
            )

        results = {}
        methods = set()
        for mode in ("warm", "cold"):
            for label in ("1 MiB", "1 GiB"):
                med, nbytes, method = measure(paths[label], args.runs, cold=(mode == "cold"))
                results[(mode, label)] = (med, nbytes)
                if method:
                    methods.add(method)

        print()
        print(
            "open + head(%d) + tail(%d), fresh LogReader each run, median of %d runs"
            % (N_LINES, N_LINES, args.runs)
        )
        if methods:
            print("cold = page cache dropped before each run with %s" % ", ".join(sorted(methods)))
        header = ("case", "median ms", "bytes read", "ratio 1GiB/1MiB", "goal", "result")
        rows = []
        for mode in ("warm", "cold"):
            small, _ = results[(mode, "1 MiB")]
            for label in ("1 MiB", "1 GiB"):
                med, nbytes = results[(mode, label)]
                if med != med:  # nan
                    rows.append(("%s %s" % (mode, label), "n/a", "-", "-", "-", "not measured"))
                    continue
                if label == "1 MiB":
                    ok = med < GOAL_MS
                    rows.append(
                        ("%s %s" % (mode, label), "%.3f" % med, str(nbytes), "-", "< %.0f ms" % GOAL_MS,
                         "PASS" if ok else "MISS")
                    )
                else:
                    ratio = med / small
                    ok = ratio <= GOAL_RATIO and med < GOAL_MS
                    rows.append(
                        ("%s %s" % (mode, label), "%.3f" % med, str(nbytes), "%.2fx" % ratio,
                         "<= %.1fx and < %.0f ms" % (GOAL_RATIO, GOAL_MS), "PASS" if ok else "MISS")
                    )
        widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
        line = "  ".join("%-*s" % (w, h) for w, h in zip(widths, header))
        print(line)
        print("-" * len(line))
        for r in rows:
            print("  ".join("%-*s" % (w, c) for w, c in zip(widths, r)))
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
