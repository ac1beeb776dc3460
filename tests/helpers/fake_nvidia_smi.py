"""A fake ``nvidia-smi`` for machines without a GPU.

It answers only the query formats mldesk uses, and fails (exit 2) on anything else,
so mldesk cannot quietly start depending on another one:

- ``--query-gpu=FIELDS --format=csv[,noheader][,nounits]``
- ``--query-compute-apps=FIELDS --format=csv[,noheader][,nounits]``
- ``-L``

The GPUs come from the JSON file named by ``FAKE_NVIDIA_SMI_STATE``; a test edits it
while executions run::

    {"gpus": [{"name": "Fake GPU", "uuid": "GPU-fake-0", "memory_total": 16384,
               "memory_used": 10, "util": 0, "temp": 40, "power": 50.5}, ...],
     "apps": [{"pid": 123, "gpu_uuid": "GPU-fake-0", "used_memory": 1000}],
     "hang": 0, "fail": false}

Memory in MiB, like the real tool; any value may be a string such as
``"[N/A]"`` or ``"[Not Supported]"``. ``hang`` makes it sleep that many seconds first
(a hung driver); ``fail`` makes it exit 9 with the driver's error message.
"""

from __future__ import annotations

import json
import os
import sys
import time

STATE_ENV = "FAKE_NVIDIA_SMI_STATE"

GPU_FIELDS = {
    "index": ("index", None),
    "name": ("name", None),
    "uuid": ("uuid", None),
    "memory.total": ("memory_total", "MiB"),
    "memory.used": ("memory_used", "MiB"),
    "utilization.gpu": ("util", "%"),
    "temperature.gpu": ("temp", None),
    "power.draw": ("power", "W"),
}
APP_FIELDS = {
    "pid": ("pid", None),
    "gpu_uuid": ("gpu_uuid", None),
    "used_memory": ("used_memory", "MiB"),
}


def default_gpu(index: int) -> dict:
    return {"name": "NVIDIA Fake GPU", "uuid": f"GPU-fake-{index:04d}", "memory_total": 16384,
            "memory_used": 1, "util": 0, "temp": 35, "power": 40.0}


def write_state(path, n: int | None = None, **state) -> dict:
    """Write the state file: ``n`` default GPUs unless ``gpus`` is given."""
    if "gpus" not in state:
        state["gpus"] = [default_gpu(i) for i in range(n or 0)]
    state.setdefault("apps", [])
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(state, f)
    os.replace(tmp, path)
    return state


def _load() -> dict:
    path = os.environ.get(STATE_ENV)
    if not path:
        return {"gpus": [], "apps": []}
    with open(path) as f:
        return json.load(f)


def _fmt(value, unit, units: bool) -> str:
    if isinstance(value, str) and value.startswith("["):
        return value
    if isinstance(value, float):
        value = f"{value:.2f}"
    return f"{value} {unit}" if (unit and units) else str(value)


def _table(fields: list[str], known: dict, rows: list[dict], fmt: set[str]) -> int:
    if any(f not in known for f in fields):
        bad = next(f for f in fields if f not in known)
        print(f'Field "{bad}" is not a valid field to query.', file=sys.stderr)
        return 2
    units = "nounits" not in fmt
    if "noheader" not in fmt:
        print(", ".join(f + (f" [{known[f][1]}]" if known[f][1] and units else "") for f in fields))
    for row in rows:
        print(", ".join(_fmt(row.get(known[f][0], "[N/A]"), known[f][1], units) for f in fields))
    return 0


def main(argv: list[str]) -> int:
    state = _load()
    if state.get("hang"):
        time.sleep(float(state["hang"]))
    if state.get("fail"):
        print("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.")
        return 9
    gpus = [dict(g, index=g.get("index", i)) for i, g in enumerate(state.get("gpus", []))]
    if argv == ["-L"]:
        for g in gpus:
            print(f"GPU {g['index']}: {g['name']} (UUID: {g['uuid']})")
        return 0
    if len(argv) == 2 and argv[1].startswith("--format="):
        fmt = argv[1][len("--format="):].split(",")
        if fmt[0] != "csv" or not set(fmt[1:]) <= {"noheader", "nounits"}:
            print(f"unsupported format {argv[1]}", file=sys.stderr)
            return 2
        query, _, fields = argv[0].partition("=")
        if query == "--query-gpu":
            return _table(fields.split(","), GPU_FIELDS, gpus, set(fmt))
        if query == "--query-compute-apps":
            return _table(fields.split(","), APP_FIELDS, state.get("apps", []), set(fmt))
    print(f"fake nvidia-smi: unsupported arguments {argv!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
