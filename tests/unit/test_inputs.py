"""Input fetching (SPEC 4, 10): real HTTP against tests/helpers/httpserver.py on 127.0.0.1."""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

try:
    from tests.helpers.httpserver import HTTPTestServer
except ImportError:  # pytest run without the repository root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.helpers.httpserver import HTTPTestServer

from mldesk.agent import inputs
from mldesk.agent.inputs import InputError, InputsCancelled, Progress, fetch_inputs, validate_name

DATA = os.urandom(200_000)


@pytest.fixture
def srv():
    with HTTPTestServer(max_stall=5.0) as s:
        yield s


@pytest.fixture
def dest(tmp_path):
    d = tmp_path / "ws" / "inputs"
    d.mkdir(parents=True)
    return d


class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.events: list[Progress] = []
        self.lines: list[str] = []

    def progress(self, p):
        with self.lock:
            self.events.append(p)

    def message(self, line):
        with self.lock:
            self.lines.append(line)

    def states(self, name):
        return [e.state for e in self.events if e.name == name]


def fetch(specs, dest, rec=None, **kw):
    kw.setdefault("backoff", 0.01)
    kw.setdefault("timeout", 5.0)
    if rec is not None:
        kw.setdefault("on_progress", rec.progress)
        kw.setdefault("on_message", rec.message)
    return fetch_inputs(specs, dest, **kw)


def listing(d: Path) -> list[str]:
    return sorted(os.listdir(d))


# -- downloads ---------------------------------------------------------------------------

def test_parallel_downloads_overlap_in_time(srv, dest):
    names = ["a.bin", "b.bin", "c.bin"]
    datas = {n: os.urandom(64 * 1024) for n in names}
    for n in names:  # each takes ~0.3 s: 4 chunks, 0.1 s apart
        srv.slow("/" + n, datas[n], chunk=16 * 1024, interval=0.1)
    paths = fetch([(n, srv.url("/" + n)) for n in names], dest)
    assert paths == [dest / n for n in names]
    for n in names:
        assert (dest / n).read_bytes() == datas[n]
    reqs = [srv.finished_requests("/" + n)[0] for n in names]
    assert max(r.started for r in reqs) < min(r.finished for r in reqs), "downloads did not overlap"
    assert listing(dest) == names  # no temp files left


def test_accepts_inputspec_objects_tuples_and_dicts(srv, dest):
    class Spec:
        def __init__(self, name, url):
            self.name, self.url = name, url

    u = srv.serve("/d", b"data")
    paths = fetch([Spec("one", u), ("two", u), {"name": "three", "url": u}], dest)
    assert [p.name for p in paths] == ["one", "two", "three"]
    assert all(p.read_bytes() == b"data" for p in paths)


def test_progress_events_and_console_lines(srv, dest, monkeypatch):
    monkeypatch.setattr(inputs, "MESSAGE_INTERVAL", 0.2)
    data = os.urandom(160 * 1024)
    srv.slow("/slow.bin", data, chunk=8 * 1024, interval=0.05)  # ~1 s
    rec = Recorder()
    t0 = time.monotonic()
    fetch([("slow.bin", srv.url("/slow.bin"))], dest, rec)
    elapsed = time.monotonic() - t0
    ev = [e for e in rec.events if e.name == "slow.bin"]
    states = [e.state for e in ev]
    assert states[0] == "connecting" and states[-1] == "done"
    assert "downloading" in states
    dl = [e for e in ev if e.state == "downloading"]
    assert all(e.total == len(data) for e in dl)
    assert [e.done for e in dl] == sorted(e.done for e in dl)
    assert any(e.rate > 0 and e.eta is not None for e in dl)
    # throttled: about 4 a second, not one per chunk (20 chunks)
    assert len(dl) <= elapsed * 4 + 3, (len(dl), elapsed)
    assert ev[-1].done == ev[-1].total == len(data)
    fetching = [l for l in rec.lines if l.startswith("fetching slow.bin:")]
    assert fetching, rec.lines
    assert re.match(r"fetching slow\.bin: [\d.]+ (B|KB) / 163\.8 KB, [\d.]+ (B|KB|MB)/s(, ETA \d+ s)?$",
                    fetching[0]), fetching[0]
    assert any(l.startswith("fetched slow.bin: 163.8 KB") for l in rec.lines)


def test_replaces_an_existing_file_atomically_and_keeps_it_on_failure(srv, dest):
    (dest / "x.bin").write_bytes(b"old")
    srv.serve("/x", b"new")
    fetch([("x.bin", srv.url("/x"))], dest)
    assert (dest / "x.bin").read_bytes() == b"new"
    srv.not_found("/gone")
    with pytest.raises(InputError):
        fetch([("x.bin", srv.url("/gone"))], dest)
    assert (dest / "x.bin").read_bytes() == b"new"  # nothing already there is lost
    assert listing(dest) == ["x.bin"]


# -- failures ----------------------------------------------------------------------------

def test_404_fails_with_url_and_status_and_leaves_nothing(srv, dest):
    url = srv.not_found("/missing.npz")
    rec = Recorder()
    with pytest.raises(InputError) as ei:
        fetch([("mnist.npz", url)], dest, rec, retries=3)
    msg = str(ei.value)
    assert msg.startswith("input 'mnist.npz' (%s) failed: " % url)
    assert "HTTP 404" in msg and "Not Found" in msg
    assert ei.value.name == "mnist.npz" and ei.value.url == url
    assert srv.hits("/missing.npz") == 1  # a 4xx is not retried
    assert listing(dest) == []
    assert rec.states("mnist.npz")[-1] == "failed"


def test_403_is_not_retried(srv, dest):
    srv.status("/forbidden", 403)
    with pytest.raises(InputError, match="HTTP 403"):
        fetch([("f", srv.url("/forbidden"))], dest, retries=3)
    assert srv.hits("/forbidden") == 1


def test_500_then_ok_succeeds_after_retries(srv, dest):
    srv.fail_then_ok("/flaky", DATA, fails=2)
    rec = Recorder()
    (path,) = fetch([("flaky.bin", srv.url("/flaky"))], dest, rec, retries=4, backoff=0.02)
    assert path.read_bytes() == DATA
    assert srv.hits("/flaky") == 3
    retry_lines = [l for l in rec.lines if l.startswith("retrying")]
    assert retry_lines[0] == "retrying flaky.bin in 0.02 s (attempt 2/5): HTTP 500 Internal Server Error"
    assert retry_lines[1].startswith("retrying flaky.bin in 0.04 s (attempt 3/5)")
    assert "retrying" in rec.states("flaky.bin")
    assert [e.attempt for e in rec.events if e.state == "done"] == [3]
    assert listing(dest) == ["flaky.bin"]


def test_500_forever_gives_up_after_retries(srv, dest):
    srv.fail_then_ok("/down", DATA, fails=100, status=503, headers={"Retry-After": "0"})
    with pytest.raises(InputError, match=r"HTTP 503 .*gave up after 3 attempts"):
        fetch([("d", srv.url("/down"))], dest, retries=2)
    assert srv.hits("/down") == 3
    assert listing(dest) == []


def test_backoff_is_exponential(srv, dest):
    srv.fail_then_ok("/flaky", b"x", fails=3)
    rec = Recorder()
    fetch([("f", srv.url("/flaky"))], dest, rec, retries=3, backoff=0.05)
    delays = [re.search(r" in ([\d.]+ s) ", l).group(1) for l in rec.lines if l.startswith("retrying")]
    assert delays == ["0.05 s", "0.1 s", "0.2 s"]
    starts = [r.started for r in srv.requests("/flaky")]
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert gaps[0] >= 0.045 and gaps[1] >= 0.095 and gaps[2] >= 0.19, gaps


def test_reset_halfway_is_retried_then_fails_cleanly(srv, dest):
    srv.reset_halfway("/reset", DATA)  # every request
    rec = Recorder()
    with pytest.raises(InputError) as ei:
        fetch([("r.bin", srv.url("/reset"))], dest, rec, retries=2)
    msg = str(ei.value)
    assert "connection reset" in msg or "connection closed" in msg, msg
    assert "gave up after 3 attempts" in msg
    assert srv.hits("/reset") == 3
    assert len([l for l in rec.lines if l.startswith("retrying r.bin")]) == 2
    assert listing(dest) == []


def test_reset_halfway_reports_how_far_it_got(srv, dest):
    srv.reset_halfway("/reset", DATA, accept_ranges=False)
    with pytest.raises(InputError) as ei:
        fetch([("r.bin", srv.url("/reset"))], dest, retries=0)
    assert re.search(r"(reset|closed) after 100\.0 KB of 200\.0 KB", str(ei.value)), str(ei.value)


def test_reset_halfway_recovers_and_resumes_with_range(srv, dest):
    srv.reset_halfway("/reset", DATA, times=1)
    (path,) = fetch([("r.bin", srv.url("/reset"))], dest, retries=2)
    assert path.read_bytes() == DATA
    reqs = srv.finished_requests("/reset")
    assert len(reqs) == 2
    assert "Range" not in reqs[0].headers
    assert reqs[1].headers.get("Range") == "bytes=%d-" % (len(DATA) // 2)
    assert reqs[1].status == 206 and reqs[1].body_bytes == len(DATA) - len(DATA) // 2
    assert listing(dest) == ["r.bin"]


def test_reset_halfway_recovers_without_range_support(srv, dest, tmp_path):
    srv.reset_halfway("/reset", DATA, times=1, accept_ranges=False)
    (path,) = fetch([("r.bin", srv.url("/reset"))], dest, retries=2, cache_dir=tmp_path / "cache")
    assert path.read_bytes() == DATA
    reqs = srv.requests("/reset")
    assert len(reqs) == 2 and "Range" not in reqs[1].headers


def test_resumed_download_is_cached_with_the_right_hash(srv, dest, tmp_path):
    cache = tmp_path / "cache"
    srv.reset_halfway("/reset", DATA, times=1)
    fetch([("r.bin", srv.url("/reset"))], dest, retries=2, cache_dir=cache)
    import hashlib
    sha = hashlib.sha256(DATA).hexdigest()
    assert (cache / "blobs" / sha[:2] / sha).read_bytes() == DATA


def test_stall_is_detected_within_the_timeout(srv, dest):
    srv.stall("/stall", DATA)
    t0 = time.monotonic()
    with pytest.raises(InputError) as ei:
        fetch([("s.bin", srv.url("/stall"))], dest, timeout=0.5, retries=0)
    elapsed = time.monotonic() - t0
    assert "no data for 0.5 s (stalled)" in str(ei.value)
    assert "after 100.0 KB of 200.0 KB" in str(ei.value)
    assert elapsed < 2.0, elapsed
    assert listing(dest) == []


def test_stall_is_retried(srv, dest):
    srv.stall("/stall", DATA, after=1000)
    t0 = time.monotonic()
    with pytest.raises(InputError, match="stalled"):
        fetch([("s.bin", srv.url("/stall"))], dest, timeout=0.3, retries=1)
    assert srv.hits("/stall") == 2
    assert time.monotonic() - t0 < 2.5
    assert listing(dest) == []


def test_short_body_is_retried_not_accepted(srv, dest):
    # headers announce 200 kB, the server sends 1 kB and closes the connection cleanly
    srv.stall("/short", DATA, after=1000, max_stall=0.05)
    with pytest.raises(InputError, match=r"connection closed after 1.0 KB of 200\.0 KB"):
        fetch([("short.bin", srv.url("/short"))], dest, retries=1)
    assert srv.hits("/short") == 2
    assert listing(dest) == []


def test_connection_refused_is_retried(dest):
    with HTTPTestServer() as s:
        url = s.url("/x")
    with pytest.raises(InputError, match="connection refused"):
        fetch([("x", url)], dest, retries=1)


def test_a_failure_cancels_the_others_and_removes_every_partial_file(srv, dest):
    srv.stall("/stall", DATA)  # would hold for max_stall (5 s) with a 10 s timeout
    srv.slow("/slow", DATA, chunk=4096, interval=0.05)
    srv.status("/missing", 404, delay=0.3)  # by then both others are mid-body
    rec = Recorder()
    t0 = time.monotonic()
    with pytest.raises(InputError) as ei:
        fetch([("stall.bin", srv.url("/stall")), ("slow.bin", srv.url("/slow")),
               ("missing.bin", srv.url("/missing"))], dest, rec, timeout=10.0)
    elapsed = time.monotonic() - t0
    assert ei.value.name == "missing.bin" and "HTTP 404" in str(ei.value)
    assert srv.requests("/stall")[0].body_bytes > 0 and srv.requests("/slow")[0].body_bytes > 0
    assert elapsed < 2.0, elapsed  # the stalled read was interrupted, not waited out
    assert listing(dest) == []
    assert not [l for l in rec.lines if l.startswith("retrying")], rec.lines
    assert rec.states("stall.bin")[-1] == rec.states("slow.bin")[-1] == "failed"
    assert [e.message for e in rec.events if e.name == "slow.bin"][-1] == "cancelled"


def test_cancel_event_stops_quickly_and_cleans_up(srv, dest):
    srv.stall("/stall", DATA)
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    rec = Recorder()
    t0 = time.monotonic()
    with pytest.raises(InputsCancelled) as ei:
        fetch([("s.bin", srv.url("/stall"))], dest, rec, timeout=10.0, cancel=cancel)
    assert time.monotonic() - t0 < 2.0
    assert isinstance(ei.value, InputError) and "cancelled" in str(ei.value)
    assert rec.states("s.bin")[-1] == "failed"
    assert listing(dest) == []


def test_disk_full_fails_cleanly_without_retrying(srv, dest, monkeypatch):
    srv.serve("/big", DATA)
    real = inputs._Fetch.new_part

    class Full:
        def __init__(self, f):
            self.f = f

        def write(self, b):
            self.f.write(b[:10])
            raise OSError(errno.ENOSPC, "No space left on device")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(inputs._Fetch, "new_part", lambda self: Full(real(self)))
    with pytest.raises(InputError, match="disk full while writing big.bin: free space on "):
        fetch([("big.bin", srv.url("/big"))], dest, retries=3)
    assert srv.hits("/big") == 1
    assert listing(dest) == []


def test_leftover_part_files_of_a_killed_fetch_are_removed(srv, dest):
    (dest / ".x.bin.part-abc123").write_bytes(b"junk")
    (dest / "other").write_bytes(b"keep")
    srv.serve("/x", b"x")
    fetch([("x.bin", srv.url("/x"))], dest)
    assert listing(dest) == ["other", "x.bin"]


# -- names and URLs ---------------------------------------------------------------------

BAD_NAMES = ["", ".", "..", "../evil", "a/b", "/etc/passwd", "a\\b", "..\\evil", "x\x00y", "a" * 256,
             "é" * 128]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_escape_attempts_are_rejected_before_anything_is_fetched(srv, dest, name):
    srv.serve("/x", b"x")
    assert validate_name(name)
    before = listing(dest.parent)
    with pytest.raises(InputError, match="invalid name"):
        fetch([("ok.bin", srv.url("/x")), (name, srv.url("/x"))], dest)
    assert srv.hits("/x") == 0
    assert listing(dest) == []
    assert listing(dest.parent) == before


def test_validate_name_accepts_plain_names():
    for name in ["mnist.npz", ".hidden", "...", "a b", "ü.csv", "a" * 255, "é" * 127]:
        assert validate_name(name) is None, name
    assert validate_name(None) and validate_name(3)


def test_duplicate_names_and_bad_schemes_are_rejected(srv, dest):
    srv.serve("/x", b"x")
    with pytest.raises(InputError, match="same name"):
        fetch([("a", srv.url("/x")), ("a", srv.url("/x"))], dest)
    with pytest.raises(InputError, match="unsupported URL scheme 'ftp'"):
        fetch([("a", "ftp://example.org/x")], dest)
    with pytest.raises(InputError, match="unsupported URL scheme"):
        fetch([("a", "/etc/passwd")], dest)
    assert srv.hits("/x") == 0


def test_long_names_get_short_temp_files(srv, dest):
    name = "n" * 255
    srv.serve("/x", b"x")
    (path,) = fetch([(name, srv.url("/x"))], dest)
    assert path.read_bytes() == b"x"


# -- file:// ----------------------------------------------------------------------------

def test_file_url_is_copied_not_linked(dest, tmp_path):
    src = tmp_path / "my data.bin"
    src.write_bytes(DATA)
    rec = Recorder()
    (path,) = fetch([("d.bin", src.as_uri())], dest, rec, cache_dir=tmp_path / "cache")
    assert path.read_bytes() == DATA
    assert os.stat(path).st_ino != os.stat(src).st_ino
    assert rec.states("d.bin")[-1] == "done"
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.json"))


def test_file_url_missing_fails_cleanly(dest, tmp_path):
    missing = tmp_path / "nope.bin"
    with pytest.raises(InputError) as ei:
        fetch([("d.bin", missing.as_uri())], dest)
    assert str(ei.value).endswith("failed: file not found: %s" % missing)
    assert listing(dest) == []


def test_file_url_of_a_folder_fails(dest, tmp_path):
    with pytest.raises(InputError, match="is a folder"):
        fetch([("d", tmp_path.as_uri())], dest)


# -- the cache ---------------------------------------------------------------------------

def blobs(cache: Path) -> list[Path]:
    return [p for p in (cache / "blobs").rglob("*") if p.is_file() and not p.name.endswith(".stat")]


def test_cache_hit_via_etag_gets_304_and_copies(srv, tmp_path):
    cache = tmp_path / "cache"
    url = srv.serve("/mnist.npz", DATA)
    ws1, ws2 = tmp_path / "w1", tmp_path / "w2"
    fetch([("mnist.npz", url)], ws1, cache_dir=cache)
    rec = Recorder()
    (path,) = fetch([("mnist.npz", url)], ws2, rec, cache_dir=cache)
    assert path.read_bytes() == DATA
    first, second = srv.requests("/mnist.npz")
    assert "If-None-Match" not in first.headers
    assert second.headers["If-None-Match"] == srv._routes["/mnist.npz"].etag
    assert second.status == 304 and second.body_bytes == 0
    (blob,) = blobs(cache)
    # copies, never hard links: a program rewriting its input must not reach the cache
    assert not os.path.samefile(path, blob) and not os.path.samefile(ws1 / "mnist.npz", blob)
    assert "mnist.npz: cached (ETag matched)" in rec.lines
    assert rec.states("mnist.npz")[-1] == "cached"
    assert [e for e in rec.events if e.state == "cached"][0].done == len(DATA)
    assert listing(ws2) == ["mnist.npz"]


def test_cache_revalidates_with_last_modified(srv, tmp_path):
    cache = tmp_path / "cache"
    url = srv.serve("/lm", DATA, etag=False)
    fetch([("lm", url)], tmp_path / "w1", cache_dir=cache)
    rec = Recorder()
    fetch([("lm", url)], tmp_path / "w2", rec, cache_dir=cache)
    second = srv.requests("/lm")[1]
    assert second.headers["If-Modified-Since"] == srv._routes["/lm"].last_modified
    assert second.status == 304
    assert any(l.startswith("lm: cached (not modified since") for l in rec.lines)


def test_changed_content_is_downloaded_again(srv, tmp_path):
    cache = tmp_path / "cache"
    url = srv.serve("/d", b"version 1")
    fetch([("d", url)], tmp_path / "w1", cache_dir=cache)
    srv.set_data("/d", b"version 2")
    (path,) = fetch([("d", url)], tmp_path / "w2", cache_dir=cache)
    assert path.read_bytes() == b"version 2"
    assert srv.requests("/d")[1].status == 200
    assert (tmp_path / "w1" / "d").read_bytes() == b"version 1"
    (path,) = fetch([("d", url)], tmp_path / "w3", cache_dir=cache)
    assert path.read_bytes() == b"version 2" and srv.requests("/d")[2].status == 304


def test_server_without_validators_is_downloaded_again_but_stored_once(srv, tmp_path):
    cache = tmp_path / "cache"
    url = srv.serve("/nv", DATA, etag=False, last_modified=False)
    fetch([("nv", url)], tmp_path / "w1", cache_dir=cache)
    fetch([("nv", url)], tmp_path / "w2", cache_dir=cache)
    r1, r2 = srv.requests("/nv")
    assert r2.status == 200 and "If-None-Match" not in r2.headers and "If-Modified-Since" not in r2.headers
    assert len(blobs(cache)) == 1
    assert (tmp_path / "w2" / "nv").read_bytes() == DATA


def test_two_urls_with_the_same_content_are_stored_once(srv, tmp_path):
    cache = tmp_path / "cache"
    srv.serve("/a", DATA)
    srv.serve("/mirror/a", DATA)
    fetch([("a", srv.url("/a")), ("b", srv.url("/mirror/a"))], tmp_path / "w", cache_dir=cache)
    assert len(blobs(cache)) == 1
    assert len(list((cache / "urls").glob("*.json"))) == 2
    rec = Recorder()
    fetch([("a", srv.url("/a")), ("b", srv.url("/mirror/a"))], tmp_path / "w2", rec, cache_dir=cache)
    assert rec.states("a")[-1] == "cached" and rec.states("b")[-1] == "cached"


def test_input_modified_in_the_workspace_leaves_the_cache_intact(srv, tmp_path):
    cache = tmp_path / "cache"
    url = srv.serve("/d", DATA)
    (p1,) = fetch([("d", url)], tmp_path / "w1", cache_dir=cache)
    time.sleep(0.01)
    with open(p1, "r+b") as f:  # a script writing into its input in place
        f.write(b"CORRUPTED")
    rec = Recorder()
    (p2,) = fetch([("d", url)], tmp_path / "w2", rec, cache_dir=cache)
    assert p2.read_bytes() == DATA
    second = srv.requests("/d")[1]
    assert second.status == 304  # the cached copy is still good
    (blob,) = blobs(cache)
    assert blob.read_bytes() == DATA and not os.path.samefile(blob, p1)
    (p3,) = fetch([("d", url)], tmp_path / "w3", cache_dir=cache)
    assert p3.read_bytes() == DATA and srv.requests("/d")[2].status == 304


def test_cache_dedup_does_not_reuse_a_blob_modified_in_place(srv, tmp_path):
    cache = tmp_path / "cache"
    srv.serve("/a", DATA)
    srv.serve("/b", DATA, etag=False, last_modified=False)
    (pa,) = fetch([("a", srv.url("/a"))], tmp_path / "w1", cache_dir=cache)
    with open(pa, "r+b") as f:
        f.write(b"CORRUPTED")  # same size, new mtime
    fetch([("b", srv.url("/b"))], tmp_path / "w2", cache_dir=cache)
    (p,) = fetch([("b", srv.url("/b"))], tmp_path / "w3", cache_dir=cache)
    assert p.read_bytes() == DATA
    (blob,) = blobs(cache)
    assert blob.read_bytes() == DATA


def test_corrupt_cache_metadata_is_ignored(srv, tmp_path):
    cache = tmp_path / "cache"
    url = srv.serve("/d", DATA)
    fetch([("d", url)], tmp_path / "w1", cache_dir=cache)
    (meta,) = (cache / "urls").glob("*.json")
    meta.write_text("{not json")
    (p,) = fetch([("d", url)], tmp_path / "w2", cache_dir=cache)
    assert p.read_bytes() == DATA and srv.requests("/d")[1].status == 200
    assert json.loads(meta.read_text())["url"] == url


def test_same_url_twice_in_one_fetch(srv, tmp_path):
    cache = tmp_path / "cache"
    url = srv.slow("/d", DATA, chunk=50_000, interval=0.02)
    paths = fetch([("a", url), ("b", url)], tmp_path / "w", cache_dir=cache)
    assert all(p.read_bytes() == DATA for p in paths)
    assert len(blobs(cache)) == 1


CHILD = r"""
import sys, json, os, time
from mldesk.agent.inputs import fetch_inputs
lines = []
open(sys.argv[4] + ".ready-" + os.path.basename(sys.argv[2]), "w").close()
deadline = time.monotonic() + 15
while not os.path.exists(sys.argv[4]) and time.monotonic() < deadline:  # start together
    time.sleep(0.005)
fetch_inputs([("d.bin", sys.argv[1])], sys.argv[2], cache_dir=sys.argv[3], on_message=lines.append,
             timeout=5, backoff=0.01)
print(json.dumps(lines))
"""


def test_two_processes_fetch_the_same_url_into_one_cache(srv, tmp_path):
    cache = tmp_path / "cache"
    url = srv.slow("/d", DATA, chunk=20_000, interval=0.04)  # ~0.4 s: the two overlap
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, url, str(tmp_path / ("w%d" % i)), str(cache), str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) for i in (1, 2)]
    deadline = time.monotonic() + 15
    while len(list(tmp_path.glob("go.ready-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    go.touch()
    for p in procs:
        out, err = p.communicate(timeout=20)
        assert p.returncode == 0, err.decode()
    r1, r2 = srv.finished_requests("/d")[:2]
    assert r1.status == r2.status == 200
    assert r1.started < r2.finished and r2.started < r1.finished  # really at the same time
    for i in (1, 2):
        assert (tmp_path / ("w%d" % i) / "d.bin").read_bytes() == DATA
    assert len(blobs(cache)) == 1
    assert not [p for p in cache.rglob("*") if p.name.startswith(".tmp")]
    meta = json.loads(next((cache / "urls").glob("*.json")).read_text())
    assert meta["url"] == url and meta["size"] == len(DATA)
    rec = Recorder()
    (p,) = fetch([("d.bin", url)], tmp_path / "w3", rec, cache_dir=cache)
    assert p.read_bytes() == DATA and rec.states("d.bin")[-1] == "cached"


def test_input_error_str():
    e = InputError("mnist.npz", "https://x/y", "HTTP 404 Not Found")
    assert str(e) == "input 'mnist.npz' (https://x/y) failed: HTTP 404 Not Found"
    assert (e.name, e.url, e.cause) == ("mnist.npz", "https://x/y", "HTTP 404 Not Found")


def test_module_is_python38_syntax():
    import ast
    for mod in ("inputs.py", "outputs.py"):
        src = (Path(inputs.__file__).parent / mod).read_text()
        ast.parse(src, feature_version=(3, 8))


def test_cached_blob_changed_in_place_is_detected_by_its_hash(tmp_path):
    """A blob rewritten with its size and mtime kept is caught by the content hash
    recorded at download, and downloaded again (issue 10 item 2)."""
    import hashlib

    from mldesk.agent.inputs import fetch_inputs
    from tests.helpers.httpserver import HTTPTestServer

    data = os.urandom(100_000)
    cache = tmp_path / "cache"
    with HTTPTestServer() as srv:
        url = srv.serve("/d.bin", data)
        fetch_inputs([("d.bin", url)], tmp_path / "ws1", cache_dir=cache)
        ws_file = tmp_path / "ws1" / "d.bin"
        blobs = [p for p in (cache / "blobs").rglob("*") if p.is_file() and p.suffix != ".stat"]
        assert len(blobs) == 1
        blob = blobs[0]
        assert os.stat(ws_file).st_ino != os.stat(blob).st_ino, "the input shares the cache's inode"
        assert not os.stat(blob).st_mode & 0o222, "cached blobs are read-only"
        st = os.stat(blob)
        os.chmod(blob, 0o644)
        with open(blob, "r+b") as f:
            f.write(b"EVIL")
        os.utime(blob, ns=(st.st_atime_ns, st.st_mtime_ns))
        messages = []
        fetch_inputs([("d.bin", url)], tmp_path / "ws2", cache_dir=cache, on_message=messages.append)
        got = (tmp_path / "ws2" / "d.bin").read_bytes()
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
        assert any("damaged" in m for m in messages), messages


# -- bounded inputs (issue 10 item 9) -------------------------------------------------

def test_dev_zero_fails_fast(tmp_path):
    from mldesk.agent.inputs import InputError, fetch_inputs

    t0 = time.monotonic()
    with pytest.raises(InputError, match="not a regular file"):
        fetch_inputs([("zero.bin", "file:///dev/zero")], tmp_path / "ws")
    assert time.monotonic() - t0 < 2
    assert os.listdir(tmp_path / "ws") == []


def test_endless_body_stops_at_the_limit(tmp_path):
    from mldesk.agent.inputs import InputError, fetch_inputs
    from tests.helpers.httpserver import HTTPTestServer

    with HTTPTestServer() as srv:
        url = srv.endless("/forever")
        t0 = time.monotonic()
        with pytest.raises(InputError, match="over the limit of"):
            fetch_inputs([("big.bin", url)], tmp_path / "ws", max_bytes=4 << 20, retries=0)
        assert time.monotonic() - t0 < 10
    assert os.listdir(tmp_path / "ws") == []  # no partial file left


def test_announced_size_over_the_limit_fails_before_reading(tmp_path):
    from mldesk.agent.inputs import InputError, fetch_inputs
    from tests.helpers.httpserver import HTTPTestServer

    with HTTPTestServer() as srv:
        url = srv.serve("/big", os.urandom(2 << 20))
        with pytest.raises(InputError, match="announced size, 2.1 MB, is over the limit"):
            fetch_inputs([("big.bin", url)], tmp_path / "ws", max_bytes=1 << 20, retries=0)
    assert os.listdir(tmp_path / "ws") == []


def test_announced_size_over_the_free_space_fails_early(tmp_path):
    import subprocess

    from mldesk.agent.inputs import InputError, fetch_inputs
    from tests.helpers.httpserver import HTTPTestServer

    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(small)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs")
    try:
        with HTTPTestServer() as srv:
            url = srv.serve("/big", os.urandom(12 << 20))
            with pytest.raises(InputError, match="not enough free space"):
                fetch_inputs([("big.bin", url)], small / "ws", retries=0)
            endless = srv.endless("/forever")
            with pytest.raises(InputError, match="almost full"):
                fetch_inputs([("big.bin", endless)], small / "ws", retries=0)
        assert os.listdir(small / "ws") == []
    finally:
        subprocess.run(["umount", "-l", str(small)])


def test_trickling_server_is_stalled_after_the_rate_window(tmp_path):
    from mldesk.agent.inputs import InputError, fetch_inputs
    from tests.helpers.httpserver import HTTPTestServer

    with HTTPTestServer(max_stall=30) as srv:
        url = srv.slow("/trickle", b"x" * 1000, chunk=1, interval=5.0)  # 1 byte every 5 s
        t0 = time.monotonic()
        with pytest.raises(InputError, match="stalled: .*at least 1.0 KB/s"):
            fetch_inputs([("t.bin", url)], tmp_path / "ws", timeout=6.0, retries=0)
        took = time.monotonic() - t0
    assert 20 <= took < 40, took  # the window: 4 x timeout
