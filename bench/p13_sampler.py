"""P13: the cost of resource sampling, 8 running executions (budget: < 2 % of a core).

Starts 8 process trees (each a parent with two children, like a training script with
data loader workers) and one ``Sampler`` per tree, as the supervisors do, at the
default 2 s interval. The samplers' CPU time is measured directly (thread CPU time
around each ``sample_once``) over ROUNDS rounds and expressed as a share of one core
at the 2 s interval. A second run gives every execution one of 8 fake GPUs (the
test suite's fake ``nvidia-smi``, a Python script, so far slower than the real tool:
an upper bound) sharing one ``GpuCache`` file, as supervisors on one machine do.

    PYTHONPATH=app .venv/bin/python bench/p13_sampler.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "app"))
sys.path.insert(0, str(ROOT))

from mldesk.agent import resources  # noqa: E402

N = 8
INTERVAL = 2.0
ROUNDS = int(os.environ.get("P13_ROUNDS", "20"))
TREE = ("import subprocess, sys, time\n"
        "kids = [subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']) for _ in range(2)]\n"
        "time.sleep(600)\n")


def measure(samplers) -> float:
    """CPU seconds per round (all samplers once), thread CPU time."""
    for s in samplers:
        s.sample_once()  # warm: first CPU delta, cache file
    total = 0.0
    for _ in range(ROUNDS):
        t0 = time.thread_time()
        for s in samplers:
            s.sample_once()
        total += time.thread_time() - t0
        time.sleep(0.05)
    return total / ROUNDS


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="p13-"))
    procs = [subprocess.Popen([sys.executable, "-c", TREE], start_new_session=True) for _ in range(N)]
    try:
        time.sleep(1.0)
        plain = [resources.Sampler(str(tmp / f"cpu{i}.jsonl"), root_pid=p.pid) for i, p in enumerate(procs)]
        cpu_round = measure(plain)

        from tests.helpers.fake_nvidia_smi import write_state

        bin_dir = tmp / "bin"
        bin_dir.mkdir()
        exe = bin_dir / "nvidia-smi"
        exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{ROOT / "tests/helpers/fake_nvidia_smi.py"}" "$@"\n')
        exe.chmod(0o755)
        write_state(bin_dir / "state.json", N)
        os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
        os.environ["FAKE_NVIDIA_SMI_STATE"] = str(bin_dir / "state.json")
        # max_age < the pause between rounds * N would refresh once per round, as at 2 s
        cache = str(tmp / "gpus.json")
        gpu = [resources.Sampler(str(tmp / f"gpu{i}.jsonl"), root_pid=p.pid, gpus=[i],
                                 gpu_cache=resources.GpuCache(cache, max_age=0.01))
               for i, p in enumerate(procs)]
        # the nvidia-smi children's CPU time is not thread time: count it via RUSAGE_CHILDREN
        c0 = os.times()
        gpu_round = measure(gpu)
        c1 = os.times()
        child_round = ((c1.children_user + c1.children_system) - (c0.children_user + c0.children_system)) / (ROUNDS + 1)
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, 9)
            except ProcessLookupError:
                pass
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"P13 resource sampling, {N} running executions, one sample each per {INTERVAL:g} s, {ROUNDS} rounds")
    print(f"{'case':<44}{'CPU ms/round':>14}{'share of a core':>18}")
    share = cpu_round / INTERVAL * 100
    print(f"{'process trees (/proc), no GPU':<44}{cpu_round * 1e3:>14.2f}{share:>17.2f}%")
    gshare = (gpu_round + child_round) / INTERVAL * 100
    print(f"{'+ 1 fake GPU each, one shared nvidia-smi':<44}{(gpu_round + child_round) * 1e3:>14.2f}{gshare:>17.2f}%")
    print(f"  (of which the fake nvidia-smi processes: {child_round * 1e3:.2f} ms/round; "
          "it is a Python script, the real tool differs)")
    print(f"budget < 2 %: {'PASS' if share < 2 else 'MISS'} (no GPU)")


if __name__ == "__main__":
    main()
