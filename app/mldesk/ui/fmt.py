"""Human-readable durations, ages, sizes and execution summaries (no Qt here)."""

from __future__ import annotations

import time

from mldesk.engine.values import Execution
from mldesk.engine.values import human_bytes, human_duration

STATE_LABELS = {
    "queued": "Queued",
    "preparing": "Preparing",
    "fetching": "Fetching inputs",
    "running": "Running",
    "collecting": "Collecting outputs",
    "finished": "Finished",
    "failed": "Failed",
    "stopped": "Stopped",
}


duration = human_duration


def ago(ts: float | None, now: float | None = None) -> str:
    if not ts:
        return ""
    now = time.time() if now is None else now
    seconds = now - ts
    if seconds < 10:
        return "just now"
    if seconds < 60:
        return f"{int(seconds)} s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400 * 2:
        hours = int(seconds // 3600)
        return f"{hours} h ago"
    if seconds < 86400 * 30:
        return f"{int(seconds // 86400)} days ago"
    return time.strftime("%d %b %Y", time.localtime(ts))


def elide(text: str, n: int) -> str:
    """``text`` cut to ``n`` characters with "…" (for dialog texts; widgets elide by width)."""
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: max(0, n - 1)] + "…"


def size(n: float | None) -> str:
    return "" if n is None else human_bytes(n)


def clock(ts: float | None) -> str:
    """``14:05`` today, ``25 Nov 14:05`` before."""
    if not ts:
        return ""
    lt = time.localtime(ts)
    if time.strftime("%Y%m%d", lt) == time.strftime("%Y%m%d"):
        return time.strftime("%H:%M", lt)
    return time.strftime("%d %b %H:%M", lt)


def run_line(ex: Execution, now: float | None = None) -> str:
    """``running for 3 min`` / ``ran for 2 h 4 min`` / ``waiting in the queue``; while
    active, the runtime's note wins (``pulling python:3.12-slim: 12.0 MB / 45.1 MB``,
    ``reconnecting to gpu1 (attempt 3)``), and a queued one says what it waits for."""
    now = time.time() if now is None else now
    if ex.active and ex.note:
        return ex.note
    if ex.state == "queued":
        return ex.reason or "waiting in the queue"
    if ex.active:
        if ex.state == "running" and ex.started_at:
            return f"running for {duration(now - ex.started_at)}"
        return STATE_LABELS.get(ex.state, ex.state).lower() + "\u2026"
    start = ex.started_at or ex.created_at
    end = ex.finished_at or start
    word = {"finished": "ran", "failed": "failed after", "stopped": "stopped after"}.get(ex.state, "ran")
    if ex.state == "failed" and not ex.started_at:
        return "failed before it started"
    return f"{word} {'for ' if word == 'ran' else ''}{duration(end - start)}"


def name_parts(ex: Execution) -> tuple[str, str]:
    """(what to emphasise, what to mute) of an execution's name: a default name
    ``#20261129-203430-vxtb5`` reads as ``#vxtb5`` with its date muted."""
    if ex.name == f"#{ex.id}" and "-" in ex.id:
        head, _, tail = ex.id.rpartition("-")
        return f"#{tail}", f"  {head}"
    return ex.name, ""


def params_line(ex: Execution) -> str:
    """The arguments main.py gets (``--lr=0.1 --epochs=8``), "" when none."""
    return " ".join(ex.argv or [])


def where_line(ex: Execution) -> str:
    """``local · process · CPU``."""
    return " \u00b7 ".join([ex.host, ex.runtime, (ex.hardware or "cpu").upper()])


def state_line(ex: Execution) -> str:
    label = STATE_LABELS.get(ex.state, ex.state)
    if ex.state == "failed" and ex.reason:
        return f"{label}: {ex.reason}"
    if ex.state in ("finished", "stopped") and ex.exit_code not in (None, 0):
        return f"{label} (exit code {ex.exit_code})"
    return label


def tooltip(ex: Execution) -> str:
    lines = [f"<b>{_esc(ex.name)}</b>", f"id {ex.id}", state_line(ex), where_line(ex)]
    if ex.image:
        lines.append(f"image {_esc(ex.image)}")
    if ex.argv:
        lines.append("arguments " + _esc(" ".join(ex.argv)))
    lines.append(f"started {clock(ex.created_at)} ({ago(ex.created_at)})")
    return "<br>".join(lines)


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
