"""P2: re-snapshot of an unchanged 1 GiB lab (goal <= 0.2 s) and the disk growth
over 10 such snapshots (goal ~0). Baseline: the first snapshot of the same lab."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "app"))
from _common import median, table, tmpdir, verdict  # noqa: E402

from mldesk.core.snapshots import SnapshotStore  # noqa: E402

SIZE = 1 << 30


def du(path: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


def main() -> int:
    size = int(os.environ.get("P2_BYTES", SIZE))
    with tmpdir("mldesk-p2-") as tmp:
        tmp = Path(tmp)
        lab = tmp / "lab"
        (lab / "data").mkdir(parents=True)
        block = os.urandom(1 << 20)
        n_big = 8
        for i in range(n_big):  # 8 large files + many small ones, like a real lab
            with open(lab / "data" / f"shard{i}.bin", "wb") as f:
                for j in range(size // n_big // len(block)):
                    f.write(block[j % 7:] + block[:j % 7])
        for i in range(2000):
            (lab / f"src{i // 100}").mkdir(exist_ok=True)
            (lab / f"src{i // 100}" / f"m{i}.py").write_text(f"print({i})\n" * 20)
        store = SnapshotStore(tmp / "blobs", tmp / "snapshots")
        t0 = time.perf_counter()
        first = store.create(lab)
        t_first = time.perf_counter() - t0
        disk0 = du(tmp / "blobs") + du(tmp / "snapshots")
        times = []
        for _ in range(10):
            t0 = time.perf_counter()
            again = store.create(lab)
            times.append(time.perf_counter() - t0)
            assert again.id == first.id
        growth = du(tmp / "blobs") + du(tmp / "snapshots") - disk0
    t = median(times)
    print(table([
        ("first snapshot (hash + store)", f"{t_first:.2f} s", f"{first.bytes / 2**30:.2f} GiB, {first.files} files", "", ""),
        ("re-snapshot, unchanged (median of 10)", f"{t:.3f} s", f"{t / t_first:.4f}x of first", "<= 0.2 s", verdict(t <= 0.2)),
        ("disk growth over 10 re-snapshots", f"{growth} B", "", "~0", verdict(growth < 1 << 20)),
    ], ("P2 case", "value", "note", "goal", "result")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
