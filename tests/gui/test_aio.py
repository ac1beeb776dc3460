"""The window's async slots (ui.aio.Jobs): results and errors come back on the GUI thread; shutdown
cancels the tasks and waits for the blocking calls already running."""

from __future__ import annotations

import threading
import time

from mldesk.engine import UserError
from mldesk.ui.aio import Jobs
from mldesk.ui.qt import QtWidgets


def test_call_result_comes_back_on_the_gui_thread(qtbot):
    jobs = Jobs()
    seen = []

    async def slot():
        worker = await jobs.call(lambda: threading.current_thread())
        seen.append((worker is threading.main_thread(), threading.current_thread() is threading.main_thread()))

    jobs.start(slot())
    qtbot.waitUntil(lambda: bool(seen), timeout=3000)
    assert seen == [(False, True)]
    jobs.shutdown()


def test_errors_go_to_failed_with_what_was_being_done(qtbot):
    jobs = Jobs()

    def boom():
        raise UserError("no such thing")

    with qtbot.waitSignal(jobs.failed, timeout=3000) as sig:
        jobs.run(boom, what="looking it up")
    exc, what = sig.args
    assert isinstance(exc, UserError) and what == "looking it up"
    jobs.shutdown()


def test_shutdown_cancels_the_slots_and_waits_for_running_calls(qtbot):
    jobs = Jobs()
    started, finished, after = threading.Event(), [], []

    def slow():
        started.set()
        time.sleep(0.3)
        finished.append(True)

    async def slot():
        await jobs.call(slow)
        after.append("ui code ran")

    jobs.start(slot())
    qtbot.waitUntil(started.is_set, timeout=3000)
    jobs.shutdown()
    assert finished == [True]  # the blocking call was waited for
    for _ in range(5):
        QtWidgets.QApplication.processEvents()
    assert after == []  # but no UI code ran after shutdown
    assert jobs.start(slot()) is None


def test_a_second_app_hands_its_lab_to_the_running_one(qtbot, tmp_path):
    from mldesk.ui import single

    name = single.server_name(tmp_path)
    assert not single.forward(name, "nobody listens", timeout_ms=200)
    got = []
    server = single.InstanceServer(name, got.append)
    assert server.listening()
    assert single.forward(name, "/some/lab")
    qtbot.waitUntil(lambda: got == ["/some/lab"], timeout=3000)
    server.close()
