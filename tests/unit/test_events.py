"""The engine's event kinds and the input-progress feed the watcher runs."""

from __future__ import annotations

import json
import os

from mldesk.engine.events import Event, EventKind, ProgressFeed


def test_event_kinds_are_their_old_strings():
    assert EventKind.LOG == "log" and f"{EventKind.PROGRESS}" == "progress"
    assert Event(EventKind.ADDED, "x").kind == "added"


def test_progress_feed_emits_changes_and_an_empty_event_at_the_end(tmp_path):
    events: list[Event] = []
    feed = ProgressFeed(lambda exec_id: tmp_path / f"{exec_id}.json", events.append)
    feed.poll(["a"])  # no file yet: nothing known
    assert [(e.kind, e.exec_id, e.progress) for e in events] == [(EventKind.PROGRESS, "a", {})]
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"x.csv": {"state": "downloading", "done": 1, "total": 2}}))
    feed.poll(["a"])
    assert events[-1].progress == {"x.csv": {"state": "downloading", "done": 1, "total": 2}}
    n = len(events)
    feed.poll(["a"])  # unchanged: no event
    assert len(events) == n
    path.write_text(json.dumps({"x.csv": {"state": "done", "done": 2, "total": 2}}))
    os.utime(path, ns=(1, 10**18))
    feed.poll(["a"])
    assert events[-1].progress["x.csv"]["state"] == "done"
    feed.poll([])  # it stopped fetching
    assert (events[-1].exec_id, events[-1].progress) == ("a", {})
    n = len(events)
    feed.poll([])
    assert len(events) == n
