"""Shared set-up for the GUI tests (pytest-qt).

* Qt runs offscreen unless ``QT_QPA_PLATFORM`` says otherwise (set it to ``xcb``
  with a ``DISPLAY`` to watch or screenshot the widgets).
* Every test in this folder is marked ``gui``.
* A test that leaves a ``QThread`` running fails (napari's ``dangling_qthreads``
  idea): ``QThread.start`` is wrapped to remember each started thread and where it
  was started; after the test (and after pytest-qt closed its widgets) any thread
  still running gets a short grace period, then is asked to quit and reported.
"""

from __future__ import annotations

import os
import sys
import traceback
import weakref
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

try:  # run from a checkout without PYTHONPATH=app
    import mldesk  # noqa: F401
except ImportError:  # pragma: no cover
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "app"))

import pytest

from mldesk.ui.qt import QtCore

#: How long a thread may take to finish after the test before it counts as left running.
THREAD_GRACE_MS = 500


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.gui)


class QThreadTracker:
    """Remembers every ``QThread`` started while installed, with its call site."""

    def __init__(self) -> None:
        self._started: weakref.WeakKeyDictionary[QtCore.QThread, str] = weakref.WeakKeyDictionary()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        original = QtCore.QThread.start
        started = self._started

        def start(thread: QtCore.QThread, *args, **kwargs):
            started[thread] = "".join(traceback.format_stack(limit=6)[:-1])
            return original(thread, *args, **kwargs)

        monkeypatch.setattr(QtCore.QThread, "start", start)

    def running(self, grace_ms: int = 0) -> list[tuple[QtCore.QThread, str]]:
        """Threads still running after waiting up to ``grace_ms`` for each."""
        alive = []
        for thread, where in list(self._started.items()):
            try:
                if thread.isRunning() and not thread.wait(grace_ms):
                    alive.append((thread, where))
            except RuntimeError:  # the C++ object is gone, so is the thread
                pass
        return alive

    def stop(self, threads: list[tuple[QtCore.QThread, str]]) -> None:
        """Ask leftover threads to quit so they do not disturb later tests."""
        for thread, _ in threads:
            try:
                thread.quit()
                thread.wait(2000)
            except RuntimeError:
                pass


@pytest.fixture
def qthread_tracker(monkeypatch: pytest.MonkeyPatch) -> QThreadTracker:
    tracker = QThreadTracker()
    tracker.install(monkeypatch)
    return tracker


@pytest.fixture(autouse=True)
def _no_dangling_qthreads(qthread_tracker: QThreadTracker):
    yield
    left = qthread_tracker.running(THREAD_GRACE_MS)
    if left:
        qthread_tracker.stop(left)
        details = "\n".join(
            f"{type(t).__name__} {t.objectName()!r}, started at:\n{where}" for t, where in left
        )
        pytest.fail(f"the test left {len(left)} QThread(s) running:\n{details}", pytrace=False)
