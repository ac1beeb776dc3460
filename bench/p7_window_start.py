"""P7: window start to first paint, 10,000 executions in the store vs an empty store.

    .venv/bin/python bench/p7_window_start.py [--runs 7] [--executions 10000]

Each measurement is a fresh process (QT_QPA_PLATFORM defaults to offscreen): the time
from calling ``mldesk.ui.launch()`` to the end of the window's first paint (the first
frame flushed). The stores are prepared once; the executions are inserted straight
into the store (all of one lab, in final states). Goal: ratio <= 1.2 and < 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(home: str, lab: str) -> None:
    sys.path.insert(0, str(ROOT / "app"))
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    t0 = time.perf_counter()
    from mldesk import ui

    window = ui.launch(lab, home=home, runtime="process")
    app = ui.application()
    deadline = time.perf_counter() + 20
    while window.first_paint_at is None and time.perf_counter() < deadline:
        app.processEvents()
    t1 = window.first_paint_at
    rows = window.model.rowCount()
    total = window.model.total()
    window.ask_on_close = False
    window.shutdown()
    print(json.dumps({"seconds": (t1 - t0) if t1 else None, "rows": rows, "total": total}))


def prepare(base: Path, n: int) -> tuple[str, str]:
    sys.path.insert(0, str(ROOT / "app"))
    from mldesk.engine.facade import Engine
    from mldesk.core.store import Execution, new_execution_id

    home = base / f"home-{n}"
    lab = base / "lab"
    lab.mkdir(exist_ok=True)
    (lab / "main.py").write_text("print('hello')\n")
    (lab / "ml.yaml").write_text("hardwareType: cpu\n")
    eng = Engine(home)
    snap = eng.snapshots.create(lab).id
    now = time.time() - n * 60
    states = ("finished", "failed", "stopped")
    for i in range(n):
        t = now + i * 60
        eng.store.insert_execution(Execution(
            id=new_execution_id(t), name=f"run {i}", lab=str(lab.resolve()), host="local",
            runtime="process", image=None, hardware="cpu", state=states[i % 3],
            exit_code=0 if i % 3 == 0 else 1, reason=None if i % 3 == 0 else "exit code 1",
            created_at=t, started_at=t + 1, finished_at=t + 30, snapshot=snap,
            argv=["--epochs=10"], inputs=[]))
    eng.store.touch_recent_lab(str(lab.resolve()))
    eng.close()
    return str(home), str(lab)


def measure(home: str, lab: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "app"))
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    out = subprocess.run([sys.executable, __file__, "--child", home, lab], env=env,
                         capture_output=True, text=True, timeout=120)
    lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"child failed ({out.returncode}): {out.stderr[-2000:]}")
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--executions", type=int, default=10_000)
    parser.add_argument("--child", nargs=2, metavar=("HOME", "LAB"))
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory(prefix="mldesk-p7-") as tmp:
        base = Path(tmp)
        t = time.perf_counter()
        empty = prepare(base, 0)
        full = prepare(base, args.executions)
        print(f"prepared stores in {time.perf_counter() - t:.1f} s "
              f"(0 and {args.executions:,} executions), platform {os.environ.get('QT_QPA_PLATFORM', 'offscreen')}")
        measure(*empty)  # warm the file system caches
        results: dict[str, list[float]] = {"empty": [], "full": []}
        info = {}
        for _ in range(args.runs):
            for key, (home, lab) in (("empty", empty), ("full", full)):
                r = measure(home, lab)
                results[key].append(r["seconds"])
                info[key] = r
        med = {k: statistics.median(v) for k, v in results.items()}
        ratio = med["full"] / med["empty"]
        print()
        print(f"{'store':<28}{'median':>10}{'min':>10}{'max':>10}   rows shown / in lab")
        for key, label in (("empty", "empty store"), ("full", f"{args.executions:,} executions")):
            v = results[key]
            print(f"{label:<28}{med[key] * 1000:>8.0f}ms{min(v) * 1000:>8.0f}ms{max(v) * 1000:>8.0f}ms"
                  f"   {info[key]['rows']} / {info[key]['total']}")
        ok = ratio <= 1.2 and med["full"] < 1.0
        print(f"\nratio {ratio:.2f}x (goal <= 1.2x), {med['full'] * 1000:.0f} ms (goal < 1000 ms): "
              f"{'OK' if ok else 'OVER BUDGET'}")


if __name__ == "__main__":
    main()
