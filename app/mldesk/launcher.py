"""The ``mldesk`` command: the window with no arguments (or ``mldesk open``), the CLI
otherwise; ``__supervise``, ``__metrics`` and ``__smoke`` for detached supervisors, their metrics
scanners and build checks.

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
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["__smoke"]:  # self-test of a build (packaging/smoke_test.py)
        from mldesk.smoke import main as smoke

        return smoke(argv[1:])
    if argv[:1] == ["__supervise"]:  # the frozen app has no `python -m`
        from mldesk.engine.supervisor import main as supervise

        return supervise(argv[1:])
    if argv[:1] == ["__metrics"]:  # the metrics scanner of a supervisor (frozen app)
        from mldesk.core.metrics import main as metrics

        return metrics(["follow", *argv[1:]])
    from mldesk.cli.main import main as cli_main

    return cli_main(argv, open_window=open_window)


if __name__ == "__main__":
    raise SystemExit(main())
