"""P11: a trivial execution on a Slurm host, `mldesk run LAB --host cluster` (snapshot,
upload, sbatch, follow, outputs, cleanup), vs `sbatch --wait` of the same script over
the same kind of SSH connection (mldesk's paramiko transport: connect, log in, run
`sbatch --wait`, log out). Goal: <= 1.3x. Runs alternate and the medians are compared.

The cluster is the test one (``bash scripts/ci/slurm.sh start``) behind the test sshd
(``eval "$(bash scripts/ci/sshd.sh env)"; eval "$(bash scripts/ci/slurm.sh env)"``).
P11_RUNS sets the number of rounds (default 5).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "app"))
from _common import MLDESK, env_for, median, table, timed, tmpdir, verdict  # noqa: E402

from mldesk.core.hosts import HostProfile  # noqa: E402
from mldesk.engine.facade import Engine  # noqa: E402
from mldesk.runtimes.ssh import transport  # noqa: E402

RUNS = int(os.environ.get("P11_RUNS", "5"))
SCRIPT = "print('hello')\n"


def need(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        sys.exit(f"p11: {name} is not set: run `eval \"$(bash scripts/ci/sshd.sh env)\"; "
                 f"eval \"$(bash scripts/ci/slurm.sh env)\"` first")
    return value


def main() -> int:
    host, port = need("MLDESK_TEST_SSH_HOST"), int(need("MLDESK_TEST_SSH_PORT"))
    user, key = os.environ.get("MLDESK_TEST_SSH_USER", "root"), need("MLDESK_TEST_SSH_KEY")
    hostkey = " ".join(Path(need("MLDESK_TEST_SSH_HOSTKEY_PUB")).read_text().split()[:2])
    partition = need("MLDESK_TEST_SLURM_PARTITION")
    with tmpdir("mldesk-p11-") as tmp:
        tmp = Path(tmp)
        home, lab, workdir, plain = tmp / "home", tmp / "lab", tmp / "workdir", tmp / "plain"
        for d in (lab, workdir, plain):
            d.mkdir()
        (lab / "main.py").write_text(SCRIPT)
        (lab / "ml.yaml").write_text("hardwareType: cpu\n")
        (plain / "main.py").write_text(SCRIPT)
        (plain / "job.sh").write_text("#!/bin/sh\nexec python3 main.py\n")
        engine = Engine(home)
        profile = HostProfile.from_url("cluster", f"ssh://{user}@{host}:{port}", key=key, runtime="slurm",
                                       workdir=str(workdir), slurm_partition=partition)
        engine.profiles.save(profile)
        with open(engine.layout.known_hosts, "a") as f:
            f.write(f"[{host}]:{port} {hostkey}\n")
        known = engine.layout.known_hosts
        engine.close()

        def baseline() -> float:
            t0 = time.perf_counter()
            conn = transport.connect(profile, known_hosts=known)
            try:
                r = conn.run(["sh", "-c", f"cd {plain} && sbatch --wait -p {partition} -o out.txt job.sh"],
                             timeout=300.0)
            finally:
                conn.close()
            if r.code != 0:
                raise SystemExit(f"p11: sbatch --wait failed: {r.stderr}")
            return time.perf_counter() - t0

        env = env_for(home)
        ours_cmd = [*MLDESK, "run", str(lab), "--host", "cluster"]
        timed(ours_cmd, env=env)  # warm-up: the agent is installed on the host once
        baseline()
        ours, theirs = [], []
        for _ in range(RUNS):
            theirs.append(baseline())
            ours.append(timed(ours_cmd, env=env))
    b, o = median(theirs), median(ours)
    ratio = o / b
    print(table([
        ("sbatch --wait over SSH (baseline)", f"{b * 1000:.0f}", "1.00x", "", ""),
        ("mldesk run --host (slurm)", f"{o * 1000:.0f}", f"{ratio:.2f}x", "<= 1.3x", verdict(ratio <= 1.3)),
    ], ("P11 case", "median ms", "ratio", "goal", "result")))
    print(f"runs: baseline {', '.join(f'{x:.2f}' for x in theirs)} s; mldesk {', '.join(f'{x:.2f}' for x in ours)} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
