"""P1: wall time of a trivial execution on Docker (`mldesk run --runtime docker`,
following it to the end) vs a raw `docker run --rm` of the same script in the same
image. Goal: <= 1.3x. Needs dockerd and the test image (scripts/ci/build-test-images.sh)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MLDESK, env_for, median, table, timed, tmpdir, verdict  # noqa: E402

IMAGE = "mldesk-test/python:latest"
RUNS = 7


def main() -> int:
    with tmpdir("mldesk-p1-") as tmp:
        tmp = Path(tmp)
        lab = tmp / "lab"
        lab.mkdir()
        (lab / "main.py").write_text("print('hello from a container')\n")
        (lab / "ml.yaml").write_text(f"dockerImageId: {IMAGE}\n")
        env = env_for(tmp / "home")
        import subprocess

        subprocess.run([*MLDESK, "settings", "local_network", "none"], env=env, check=True)
        raw_cmd = ["docker", "run", "--rm", "--init", "--network", "none", "-v", f"{lab}:/workspace",
                   "-w", "/workspace", IMAGE, "python", "main.py"]
        ours_cmd = [*MLDESK, "run", str(lab), "--runtime", "docker"]
        timed(raw_cmd)  # warm both paths once
        timed(ours_cmd, env=env)
        raw, ours = [], []
        for _ in range(RUNS):  # interleaved so drift hits both alike
            raw.append(timed(raw_cmd))
            ours.append(timed(ours_cmd, env=env))
    r, o = median(raw), median(ours)
    ratio = o / r
    print(table([
        ("docker run --rm (baseline)", f"{r * 1000:.0f}", "1.00x", "", ""),
        ("mldesk run --runtime docker", f"{o * 1000:.0f}", f"{ratio:.2f}x", "<= 1.3x", verdict(ratio <= 1.3)),
    ], ("P1 case", "median ms", "ratio", "goal", "result")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
