"""P3: log ingest. A container prints N lines as fast as it can and exits; then the
same container's log is read (a) by `docker logs -f > /dev/null` (baseline) and
(b) by mldesk's docker runtime into an mldesk log store, in a child process whose
peak RSS is measured. Goal: throughput >= 0.8x of the baseline, peak RSS <= 200 MB."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, median, table, tmpdir, verdict  # noqa: E402

IMAGE = "mldesk-test/python:latest"
LINES = int(os.environ.get("P3_LINES", 1_000_000))

INGEST = r"""
import sys, time
sys.path.insert(0, sys.argv[3])
from mldesk.agent.logstore import LogWriter
from mldesk.runtimes.local.docker import DockerRuntime
from mldesk.runtimes.base import RunContext
from pathlib import Path
rt = DockerRuntime()
writer = LogWriter(sys.argv[2])
ctx = RunContext(exec_id="bench", name="bench", lab=Path("."), workspace=Path("."), argv=[], image=None,
                 hardware="cpu", env={})
t0 = time.perf_counter()
code = rt.stream(ctx, {"container": sys.argv[1]}, writer.write)
print(time.perf_counter() - t0, writer.lines, code)
"""


def main() -> int:
    script = f"import sys\nw = sys.stdout.write\nfor i in range({LINES}):\n    w('step %d loss 0.%06d\\n' % (i, i))\n"
    cid = subprocess.run(["docker", "run", "-d", "--init", "--network", "none", IMAGE, "python", "-c", script],
                         check=True, capture_output=True, text=True).stdout.strip()
    try:
        subprocess.run(["docker", "wait", cid], check=True, capture_output=True)
        base, ours, rss = [], [], 0
        with tmpdir("mldesk-p3-") as tmp:
            for i in range(3):
                t0 = time.perf_counter()
                subprocess.run(["docker", "logs", "-f", cid], stdout=subprocess.DEVNULL, check=True)
                base.append(time.perf_counter() - t0)
                out = subprocess.run([sys.executable, "-c", INGEST, cid, f"{tmp}/log{i}.bin", str(ROOT / "app")],
                                     check=True, capture_output=True, text=True).stdout.split()
                ours.append(float(out[0]))
                assert int(out[1]) == LINES, out
                rss = max(rss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True)
    b, o = median(base), median(ours)
    ratio = b / o  # throughput ratio: ours relative to the baseline
    print(table([
        ("docker logs -f > /dev/null (baseline)", f"{b:.2f}", f"{LINES / b / 1e3:.0f}k", "1.00x", "", ""),
        ("mldesk docker runtime -> log store", f"{o:.2f}", f"{LINES / o / 1e3:.0f}k", f"{ratio:.2f}x", ">= 0.8x",
         verdict(ratio >= 0.8)),
        ("peak RSS of the ingesting process", f"{rss} MB", "", "", "<= 200 MB", verdict(rss <= 200)),
    ], ("P3 case", "seconds", "lines/s", "throughput ratio", "goal", "result")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
