"""P1: a trivial execution on Docker, `mldesk run --runtime docker` (following it to the
end) vs a raw `docker run --rm` of the same script in the same image: wall time
(goal <= 1.3x), and the time from Run to the program's first output line (the CLI
prints it; the window reads the same log). Needs dockerd and the test image
(scripts/ci/build-test-images.sh).

P1_RUNS=N changes the number of interleaved runs (default 7); P1_OTHER_APP=/path/app
also times another checkout's app (e.g. main) in the same go, for a before/after."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MLDESK, ROOT, env_for, median, table, timed, tmpdir, verdict  # noqa: E402

IMAGE = "mldesk-test/python:latest"
RUNS = int(os.environ.get("P1_RUNS", 7))
FIRST_LINE = "import time\nprint('first line', flush=True)\ntime.sleep(0.3)\n"


def first_line(cmd, **kw) -> float:
    """Seconds from starting ``cmd`` to the first line on its stdout."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, **kw)
    proc.stdout.readline()
    t = time.perf_counter() - t0
    proc.stdout.read()
    proc.wait()
    return t


def main() -> int:
    # an installed app runs from cached bytecode: let this checkout have it too
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "app")], stdout=subprocess.DEVNULL)
    other = os.environ.get("P1_OTHER_APP")
    if other:
        subprocess.run([sys.executable, "-m", "compileall", "-q", other], stdout=subprocess.DEVNULL)
    with tmpdir("mldesk-p1-") as tmp:
        tmp = Path(tmp)
        lab = tmp / "lab"
        lab.mkdir()
        (lab / "main.py").write_text("print('hello from a container')\n")
        (lab / "ml.yaml").write_text(f"dockerImageId: {IMAGE}\n")
        lab2 = tmp / "lab2"
        lab2.mkdir()
        (lab2 / "main.py").write_text(FIRST_LINE)
        (lab2 / "ml.yaml").write_text(f"dockerImageId: {IMAGE}\n")
        env = env_for(tmp / "home")
        subprocess.run([*MLDESK, "settings", "local_network", "none"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        envs = {"mldesk": env}
        if other:
            envs["other"] = dict(env, MLDESK_HOME=str(tmp / "home-other"), PYTHONPATH=other)
            subprocess.run([*MLDESK, "settings", "local_network", "none"], env=envs["other"], check=True,
                           stdout=subprocess.DEVNULL)

        def raw(lab_dir):
            return ["docker", "run", "--rm", "--init", "--network", "none", "-v", f"{lab_dir}:/workspace",
                    "-w", "/workspace", IMAGE, "python", "main.py"]

        def ours(lab_dir):
            return [*MLDESK, "run", str(lab_dir), "--runtime", "docker"]

        timed(raw(lab))  # warm every path once
        for e in envs.values():
            timed(ours(lab), env=e)
        total = {"raw": [], **{k: [] for k in envs}}
        first = {"raw": [], **{k: [] for k in envs}}
        for _ in range(RUNS):  # interleaved so drift hits all alike
            total["raw"].append(timed(raw(lab)))
            first["raw"].append(first_line(raw(lab2)))
            for k, e in envs.items():
                total[k].append(timed(ours(lab), env=e))
                first[k].append(first_line(ours(lab2), env=e))
    r, fr = median(total["raw"]), median(first["raw"])
    rows = [("docker run --rm (baseline)", f"{r * 1000:.0f}", "1.00x", f"{fr * 1000:.0f}", "1.00x", "", "")]
    for k in envs:
        o, fo = median(total[k]), median(first[k])
        label = "mldesk run --runtime docker" + (f" ({other})" if k == "other" else "")
        rows.append((label, f"{o * 1000:.0f}", f"{o / r:.2f}x", f"{fo * 1000:.0f}", f"{fo / fr:.2f}x",
                     "<= 1.3x", verdict(o / r <= 1.3)))
    print(table(rows, ("P1 case", "total ms", "ratio", "first line ms", "ratio", "goal", "result")))
    print(f"(app: {ROOT / 'app'}; {RUNS} runs each, medians)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
