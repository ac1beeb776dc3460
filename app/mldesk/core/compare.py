"""Comparing executions: the compare table (parameters and last/min/max per metric,
the best cell per column), its CSV, and diffs of parameters and code. Pure functions
on plain data; the engine gathers the data (mldesk.engine.facade)."""

from __future__ import annotations

import csv
import difflib
import io
import math
from typing import Callable, Iterable, Sequence

STATS = ("last", "min", "max")


def table_columns(rows: Sequence[dict]) -> tuple[list[str], list[str]]:
    """(parameter names, metric keys) over all rows, in order of first appearance."""
    params: dict[str, None] = {}
    keys: dict[str, None] = {}
    for row in rows:
        params.update(dict.fromkeys(row.get("params", {})))
        keys.update(dict.fromkeys(row.get("metrics", {})))
    return list(params), list(keys)


def _number(v) -> float | None:
    if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)):
        return float(v)
    return None


def best_rows(rows: Sequence[dict], key: str, stat: str, lower_is_better: bool) -> list[int]:
    """Indexes of the rows holding the best ``stat`` of metric ``key`` (ties: all)."""
    values = [(i, _number(row.get("metrics", {}).get(key, {}).get(stat))) for i, row in enumerate(rows)]
    values = [(i, v) for i, v in values if v is not None]
    if not values:
        return []
    pick = min if lower_is_better else max
    target = pick(v for _, v in values)
    return [i for i, v in values if v == target]


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    return str(v)


def table_csv(rows: Sequence[dict]) -> str:
    """The compare table as CSV: ``id,name,state,host,runtime,duration``, one
    column per parameter, then ``KEY last,KEY min,KEY max`` per metric."""
    params, keys = table_columns(rows)
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["id", "name", "state", "host", "runtime", "duration"] + params
               + [f"{k} {s}" for k in keys for s in STATS])
    for row in rows:
        m = row.get("metrics", {})
        w.writerow([row.get("id"), row.get("name"), row.get("state"), row.get("host", ""), row.get("runtime", ""),
                    _cell(row.get("duration"))]
                   + [row.get("params", {}).get(p, "") for p in params]
                   + [_cell(m.get(k, {}).get(s)) for k in keys for s in STATS])
    return out.getvalue()


# -- diffs ------------------------------------------------------------------------------
def diff_params(a: dict[str, str], b: dict[str, str]) -> list[tuple[str, str | None, str | None]]:
    """``(name, value in a, value in b)`` for each parameter that differs (None: absent)."""
    out = []
    for name in list(dict.fromkeys([*a, *b])):
        va, vb = a.get(name), b.get(name)
        if va != vb:
            out.append((name, va, vb))
    return out


def _text(data: bytes | None) -> list[str] | None:
    """Lines of a text file; None for binary data."""
    if data is None:
        return []
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8").splitlines(keepends=True)
    except UnicodeDecodeError:
        return None


def diff_files(
    files_a: dict[str, list],
    files_b: dict[str, list],
    read_a: Callable[[str], bytes],
    read_b: Callable[[str], bytes],
    *,
    label_a: str = "a",
    label_b: str = "b",
    context: int = 3,
) -> list[dict]:
    """The files that differ between two snapshot manifests (``{rel: [sha, size, mode]
    or ["link", target]}``), each ``{"path", "status": added|removed|changed,
    "diff": unified diff text, or None for binary files}``, ml.yaml first."""
    out = []
    paths = sorted(set(files_a) | set(files_b), key=lambda p: (p.lower() != "ml.yaml", p))
    for path in paths:
        ea, eb = files_a.get(path), files_b.get(path)
        if ea == eb or (ea and eb and ea[0] == eb[0] and ea[0] != "link"):
            continue
        status = "added" if ea is None else "removed" if eb is None else "changed"

        def content(entry, read):
            if entry is None:
                return None
            if entry[0] == "link":
                return f"-> {entry[1]}\n".encode()
            return read(path)

        la, lb = _text(content(ea, read_a)), _text(content(eb, read_b))
        if la is None or lb is None:
            text = None
        else:
            text = "".join(difflib.unified_diff(
                la, lb, f"{label_a}/{path}" if ea else "/dev/null", f"{label_b}/{path}" if eb else "/dev/null",
                n=context))
            if text and not text.endswith("\n"):
                text += "\n"
        out.append({"path": path, "status": status, "diff": text})
    return out


def format_params_diff(changes: Iterable[tuple[str, str | None, str | None]], label_a: str, label_b: str) -> str:
    lines = []
    for name, va, vb in changes:
        lines.append(f"{name}: {'(absent)' if va is None else va} -> {'(absent)' if vb is None else vb}")
    return "\n".join(lines) + ("\n" if lines else "")
