"""The ``mldesk`` command: the window with no arguments (or ``mldesk open``), the CLI
otherwise; ``__supervise``, ``__metrics``, ``__agent`` and ``__smoke`` for detached
supervisors, their metrics scanners, local runners and build checks.

It sits above both front ends so that neither imports the other: the CLI gets the
window as a callable. Start-up cost matters, so everything is imported on use.
"""

from __future__ import annotations

import sys
from pathlib import Path


def open_window(lab: str | None) -> int:
    """Start the desktop window (on ``lab``, a folder or its ml.yaml)."""
    try:
        from mldesk import ui
    except ImportError as exc:
        print(f"mldesk: error: the desktop window needs PySide6 ({exc}); install mldesk with its "
              f"dependencies", file=sys.stderr)
        return 1
    if lab and Path(lab).is_file():  # a file manager opens the lab's ml.yaml
        lab = str(Path(lab).parent)
    return ui.main(lab=lab)


def main(argv: list[str] | None = None) -> int:
    entry = argv is None  # the process's entry point (not a test calling in)
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["__smoke"]:  # self-test of a build (packaging/smoke_test.py)
        from mldesk.smoke import main as smoke

        return smoke(argv[1:])
    if argv[:1] == ["__agent"]:  # a local runner (the frozen app has no `python -m mldesk.agent`)
        from mldesk.agent.main import main as agent

        return agent(argv[1:])
    if argv[:1] == ["__supervise"]:  # the frozen app has no `python -m`
        from mldesk.engine.supervisor import main as supervise

        return supervise(argv[1:])
    if argv[:1] == ["__metrics"]:  # the metrics scanner of a supervisor (frozen app)
        from mldesk.core.metrics import main as metrics

        return metrics(["follow", *argv[1:]])
    from mldesk.cli.main import main as cli_main

    code = cli_main(argv, open_window=open_window)
    if entry and argv[:1] != ["open"]:
        _quick_exit(code)
    return code


def _quick_exit(code) -> None:
    """End a CLI process without the interpreter's teardown (module and object
    finalisation, ~20 ms after every command, e.g. after `mldesk run` has printed
    the outcome). Nothing of mldesk's needs it: the store's changes are committed,
    the output is flushed here. Not while another thread runs (it might have work
    left) or when the output cannot be flushed (the normal exit reports that)."""
    import os
    import threading

    if threading.active_count() != 1:
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return
    os._exit(code if isinstance(code, int) else (0 if code is None else 1))


if __name__ == "__main__":
    raise SystemExit(main())
