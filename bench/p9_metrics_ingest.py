"""P9: log ingest with metrics on vs off. A program prints N lines of metrics (Keras,
key=value and tqdm-style lines, on stdout and stderr) as fast as it can; mldesk's
pipe pump (the local process runtime's and the SSH agent's) stores them in a log,
(a) alone and (b) with the supervisor's metrics scanner following the log (the same
child process a supervisor starts). Goal: ingest throughput with metrics on >= 0.9x
of off. Also printed: how long after the ingest the metrics were complete, and the
scanner's own speed."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, median, table, verdict  # noqa: E402

sys.path.insert(0, str(ROOT / "app"))
from mldesk.agent import logstore  # noqa: E402
from mldesk.core import metrics  # noqa: E402
from mldesk.engine.supervisor import end_metrics, start_metrics  # noqa: E402

LINES = int(os.environ.get("P9_LINES", 300_000))
RUNS = int(os.environ.get("P9_RUNS", 5))

PRINTER = f"""
import sys
out, err = sys.stdout.write, sys.stderr.write
for i in range({LINES}):
    k = i % 3
    if k == 0:
        out("epoch %d step %d loss=0.%06d acc=0.%04d lr: 0.001\\n" % (i // 100, i, i, i % 10000))
    elif k == 1:
        out("32/32 [====] - 1s 5ms/step - loss: 0.%06d - accuracy: 0.8125 - val_loss: 0.5\\n" % i)
    else:
        err("\\r 50%%|#####     | 16/32 [00:01<00:01, 9.9it/s, train_loss=0.%04d]\\n" % (i % 10000))
"""
POINTS = sum(3 if i % 3 == 0 else 3 if i % 3 == 1 else 1 for i in range(LINES))


def ingest(tmp: Path, on: bool) -> tuple[float, float]:
    """(seconds to store the output, seconds until the metrics were complete)."""
    exec_dir = Path(tempfile.mkdtemp(dir=tmp))
    writer = logstore.LogWriter(exec_dir / "log.bin")
    follower = start_metrics(exec_dir, {}) if on else None
    time.sleep(0.3)  # the scanner has started (as in a supervisor, long before the program prints)
    proc = subprocess.Popen([sys.executable, "-c", PRINTER], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    t0 = time.perf_counter()
    logstore.pump(proc.stdout, proc.stderr, writer.write, proc)
    proc.wait()
    t_ingest = time.perf_counter() - t0
    writer.close()
    assert writer.lines == LINES
    t_done = t_ingest
    if follower is not None:
        end_metrics(follower, complete=True)
        follower.wait()
        t_done = time.perf_counter() - t0
        n = len(metrics.read_points(exec_dir))
        assert n == POINTS, (n, POINTS)
    return t_ingest, t_done


def scan_speed(tmp: Path) -> float:
    """Lines/s of a scan of a stored log from scratch (first request of an old log)."""
    exec_dir = Path(tempfile.mkdtemp(dir=tmp))
    with logstore.LogWriter(exec_dir / "log.bin") as w:
        proc = subprocess.Popen([sys.executable, "-c", PRINTER], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        logstore.pump(proc.stdout, proc.stderr, w.write, proc)
        proc.wait()
    t0 = time.perf_counter()
    metrics.read_metrics(exec_dir, final=True)
    return LINES / (time.perf_counter() - t0)


def main() -> int:
    off, on, done = [], [], []
    with tempfile.TemporaryDirectory(prefix="mldesk-p9-") as tmp:
        ingest(Path(tmp), False)  # warm-up
        for i in range(RUNS):  # interleaved, in alternating order, so machine noise hits both alike
            for flag in ((False, True) if i % 2 == 0 else (True, False)):
                a, b = ingest(Path(tmp), flag)
                if flag:
                    on.append(a)
                    done.append(b)
                else:
                    off.append(a)
        speed = scan_speed(Path(tmp))
    o, n, d = median(off), median(on), median(done)
    ratio = o / n
    print(table([
        ("metrics off", f"{o:.2f}", f"{LINES / o / 1e3:.0f}k", "1.00x", "", ""),
        ("metrics on (ingest)", f"{n:.2f}", f"{LINES / n / 1e3:.0f}k", f"{ratio:.2f}x", ">= 0.9x", verdict(ratio >= 0.9)),
        ("metrics on: all values stored", f"{d:.2f}", f"{LINES / d / 1e3:.0f}k", f"{o / d:.2f}x", "", ""),
        ("scan of a stored log (first request)", "", f"{speed / 1e3:.0f}k", "", "", ""),
    ], ("P9 case", "seconds", "lines/s", "throughput ratio", "goal", "result")))
    print(f"P9 ratio (ingest throughput with metrics on / off): {ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
