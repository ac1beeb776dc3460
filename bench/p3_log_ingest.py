"""P3: ingest of a program printing N short lines (default 1,500,000) as fast as it can.

* Docker: `mldesk run --runtime docker` (following it, output to /dev/null) vs
  `docker run --rm` of the same script in the same image with its output to /dev/null;
* process: `mldesk run --runtime process` (same) vs `python main.py > /dev/null`.

Goal: throughput >= 0.8x of the baseline on both; peak RSS of every mldesk process
(CLI, supervisor, runner) <= 200 MB. mldesk gives programs PYTHONUNBUFFERED=1 (output
is live), which makes a Python program flush on every write; the baselines are shown
both plain and with that variable, so the program's own cost is told apart from
mldesk's. P3_LINES=N for another line count, P3_RUNS=N runs (default 3)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MLDESK, ROOT, env_for, median, table, tmpdir, verdict  # noqa: E402

IMAGE = "mldesk-test/python:latest"
LINES = int(os.environ.get("P3_LINES", 1_500_000))
RUNS = int(os.environ.get("P3_RUNS", 3))
MAIN = ("import sys\nw = sys.stdout.write\nfor i in range(%d):\n    w('step %%d loss 0.%%06d\\n' %% (i, i))\n"
        % LINES)


class PeakRss(threading.Thread):
    """Samples VmHWM of every process whose environment holds MLDESK_HOME=home."""

    def __init__(self, home: Path):
        super().__init__(daemon=True)
        self.marker = f"MLDESK_HOME={home}".encode()
        self.peak_kb = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(0.1):
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    with open(f"/proc/{pid}/environ", "rb") as f:
                        if self.marker not in f.read().split(b"\0"):
                            continue
                    with open(f"/proc/{pid}/status") as f:
                        for line in f:
                            if line.startswith("VmHWM:"):
                                self.peak_kb = max(self.peak_kb, int(line.split()[1]))
                except OSError:
                    continue

    def stop(self) -> int:
        self.halt.set()
        self.join()
        return self.peak_kb // 1024


def timed_null(cmd, **kw) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    return time.perf_counter() - t0


def main() -> int:
    # an installed app runs from cached bytecode: let this checkout have it too
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "app")], stdout=subprocess.DEVNULL)
    rows = []
    rss = 0
    with tmpdir("mldesk-p3-") as tmp:
        tmp = Path(tmp)
        lab = tmp / "lab"
        lab.mkdir()
        (lab / "main.py").write_text(MAIN)
        (lab / "ml.yaml").write_text(f"dockerImageId: {IMAGE}\n")
        home = tmp / "home"
        env = env_for(home)
        subprocess.run([*MLDESK, "settings", "local_network", "none"], env=env, check=True, stdout=subprocess.DEVNULL)
        docker_base = ["docker", "run", "--rm", "--init", "--network", "none", "-v", f"{lab}:/workspace", "-w",
                       "/workspace"]
        cases = {
            "docker": {
                "base": docker_base + [IMAGE, "python", "main.py"],
                "base_unbuf": docker_base + ["-e", "PYTHONUNBUFFERED=1", IMAGE, "python", "main.py"],
                "ours": [*MLDESK, "run", str(lab), "--runtime", "docker"],
            },
            "process": {
                "base": [sys.executable, "main.py"],
                "base_unbuf": [sys.executable, "main.py"],
                "ours": [*MLDESK, "run", str(lab), "--runtime", "process"],
            },
        }
        plain_env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
        for name, c in cases.items():
            times = {"base": [], "base_unbuf": [], "ours": []}
            for _ in range(RUNS):
                times["base"].append(timed_null(c["base"], cwd=lab, env=plain_env))
                times["base_unbuf"].append(timed_null(c["base_unbuf"], cwd=lab,
                                                      env=dict(plain_env, PYTHONUNBUFFERED="1")))
                sampler = PeakRss(home)
                sampler.start()
                times["ours"].append(timed_null(c["ours"], env=env))
                rss = max(rss, sampler.stop())
            b, bu, o = median(times["base"]), median(times["base_unbuf"]), median(times["ours"])
            rows.append((f"{name}: baseline to /dev/null", f"{b:.2f}", f"{LINES / b / 1e3:.0f}k", "1.00x", "", ""))
            rows.append((f"{name}: baseline, PYTHONUNBUFFERED=1", f"{bu:.2f}", f"{LINES / bu / 1e3:.0f}k",
                         f"{b / bu:.2f}x", "", ""))
            rows.append((f"{name}: mldesk run (following)", f"{o:.2f}", f"{LINES / o / 1e3:.0f}k", f"{b / o:.2f}x",
                         ">= 0.8x", verdict(b / o >= 0.8)))
            rows.append((f"{name}: mldesk vs the unbuffered baseline", "", "", f"{bu / o:.2f}x", "", ""))
    rows.append(("peak RSS of any mldesk process", f"{rss} MB", "", "", "<= 200 MB", verdict(rss <= 200)))
    print(table(rows, ("P3 case", "seconds", "lines/s", "throughput ratio", "goal", "result")))
    print(f"({LINES} lines, {RUNS} runs each, medians)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
