"""The engine floor: the facade (``Engine``), the supervisor and the read queries; the
only door for the front ends (``mldesk.cli``, ``mldesk.ui``).

Front ends import from here (or from ``mldesk.engine.values``, ``.labs``, ``.queries``,
``.hosts``, ``.events``), never from ``mldesk.core``, ``mldesk.runtimes`` or
``mldesk.agent`` (an import-linter contract checks it). What lower floors own but front
ends need, value types, error types and small pure helpers, is re-exported below on
purpose, each name listed once in ``EXPORTS``. Imports are lazy (PEP 562): the CLI's
start-up pays only for what a command uses.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> module that owns it
EXPORTS: dict[str, str] = {
    # the facade and its events
    "Engine": "mldesk.engine.facade",
    "EngineError": "mldesk.engine.errors",
    "LocalInputsNeedConsent": "mldesk.engine.facade",
    "Event": "mldesk.engine.events",
    "EventKind": "mldesk.engine.events",
    "DEFAULT_SETTINGS": "mldesk.engine.facade",
    "DEFAULT_IMAGE_ALIASES": "mldesk.engine.facade",
    "NAME_MAX": "mldesk.engine.facade",
    # errors: one root, and the kinds a front end formats specially
    "UserError": "mldesk.agent.errors",
    "ConfigError": "mldesk.core.labconfig",
    # GPUs: the --gpus option's syntax (N or I,J)
    "parse_gpus_option": "mldesk.core.labconfig",
    # executions as value objects
    "Execution": "mldesk.core.store",
    "State": "mldesk.core.store",
    "ACTIVE_STATES": "mldesk.core.store",
    "FINAL_STATES": "mldesk.core.store",
    # log records
    "Record": "mldesk.agent.logstore",
    "STDOUT": "mldesk.agent.logstore",
    "STDERR": "mldesk.agent.logstore",
    "MLDESK": "mldesk.agent.logstore",
    "write_program_output": "mldesk.agent.logstore",
    "write_tail": "mldesk.agent.logstore",
    # formatting
    "human_bytes": "mldesk.core.units",
    "human_duration": "mldesk.core.units",
    # experiments: overrides and sweeps, metrics, the compare table
    "ParamError": "mldesk.core.params",
    "parse_set": "mldesk.core.params",
    "parse_sweep": "mldesk.core.params",
    "summarize": "mldesk.core.metrics",
    "default_goal": "mldesk.core.metrics",
    "table_columns": "mldesk.core.compare",
    "best_rows": "mldesk.core.compare",
    "table_csv": "mldesk.core.compare",
    "safe_name": "mldesk.core.export",
    # labs
    "TEMPLATES": "mldesk.templates",
    "create_lab": "mldesk.templates",
    "data_home": "mldesk.core.paths",
}

__all__ = sorted(EXPORTS)


def __getattr__(name: str) -> Any:
    module = EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mldesk.engine' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), "home" if name == "data_home" else name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
