"""Human-readable sizes and durations, shared by the CLI, the runtimes and the UI.
(``human_bytes`` is the agent floor's one copy, ``mldesk.agent.fsutil``.)"""

from __future__ import annotations

from mldesk.agent.fsutil import human_bytes

__all__ = ["human_bytes", "human_duration"]


def human_duration(seconds: float) -> str:
    """``42 s``, ``3 min 5 s``, ``2 h 4 min``, ``3 d 2 h``."""
    seconds = int(max(0, seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min" + (f" {secs} s" if minutes < 5 and secs else "")
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h" + (f" {minutes} min" if minutes else "")
    return f"{hours // 24} d" + (f" {hours % 24} h" if hours % 24 else "")
