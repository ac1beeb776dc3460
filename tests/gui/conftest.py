"""Shared set-up for the GUI tests (pytest-qt).

* Qt runs offscreen unless ``QT_QPA_PLATFORM`` says otherwise (set it to ``xcb``
  with a ``DISPLAY`` to watch or screenshot the widgets).
* Every test in this folder is marked ``gui``.
* The window starts no ``QThread`` (its slow work runs as async slots on the qasync
  loop, blocking calls on a plain thread pool it shuts down on close), so there is no
  dangling-QThread guard: ``test_window.py`` checks that closing waits for that pool.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

try:  # run from a checkout without PYTHONPATH=app
    import mldesk  # noqa: F401
except ImportError:  # pragma: no cover
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "app"))

import pytest  # noqa: E402


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.gui)
