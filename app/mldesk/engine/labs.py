"""Labs for the front ends: ml.yaml check and edit, templates, recent labs and a lab's earlier files.

The value types and errors of ``ml.yaml`` (``ConfigError``, ``InputSpec``, ``Problem``)
are re-exported here so that front ends never import ``mldesk.core``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mldesk.core.labconfig import (  # noqa: F401 - value types and functions, exported to front ends
    DEFAULT_EXCLUDE, ConfigError, InputSpec, LabConfig, Problem, add_inputs, find_config, load_lab_config,
    parse_config, remove_input, replace_input, validate_input_name,
)
from mldesk.core.labconfig import _url_problem
from mldesk.engine.queries import restore_lab_backup  # noqa: F401 - re-exported
from mldesk.templates import TEMPLATES, create_lab  # noqa: F401 - re-exported

if TYPE_CHECKING:  # pragma: no cover
    from mldesk.engine.facade import Engine


def url_problem(url: str) -> tuple[str, str] | None:
    """(message, hint) when ``url`` cannot be fetched as an input (the check ml.yaml gets), else None."""
    return _url_problem(url)


def recent_labs(engine: "Engine", limit: int = 10) -> list[str]:
    """The labs opened or run most recently, newest first."""
    return engine.store.recent_labs(limit)


def touch_recent_lab(engine: "Engine", lab: str | Path) -> None:
    engine.store.touch_recent_lab(str(lab))


def lab_backups(engine: "Engine", lab: str | Path) -> list[dict]:
    """The earlier files of ``lab`` kept by Restart / Restore code, newest first:
    ``{"snapshot", "created_at", "reason"}`` each."""
    return engine.store.lab_backups(str(lab))
