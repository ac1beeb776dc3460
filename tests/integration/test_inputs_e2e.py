"""The three stages with real downloads from a local HTTP server, on both runtimes."""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from tests.helpers.httpserver import HTTPTestServer
from tests.integration.conftest import program_output, wait_final

READER = """
import hashlib, os, sys
for name in sorted(os.listdir("inputs")):
    data = open(os.path.join("inputs", name), "rb").read()
    print(name, len(data), hashlib.sha256(data).hexdigest())
open("outputs/seen.txt", "w").write(",".join(sorted(os.listdir("inputs"))))
"""


@pytest.fixture
def http():
    with HTTPTestServer(max_stall=20) as server:
        yield server


def inputs_yaml(entries):
    return "inputs:\n" + "".join(f"  - name: {n}\n    url: {u}\n" for n, u in entries)


def test_three_stages_with_inputs(engine, make_lab, runtime, http, tmp_path):
    big = os.urandom(3_000_000)
    small = b"hello input\n"
    local_file = tmp_path / "local.csv"
    local_file.write_bytes(b"a,b\n1,2\n")
    lab = make_lab(READER, inputs_yaml([
        ("big.bin", http.serve("/big", big)),
        ("small.txt", http.serve("/small", small)),
        ("local.csv", local_file.as_uri()),
    ]))
    ex = engine.run(lab, runtime=runtime, allow_local_inputs=True)  # local.csv is outside the lab
    final = wait_final(engine, ex.id)
    assert final.state == "finished", final.reason
    out = program_output(engine, ex.id).decode()
    assert f"big.bin {len(big)} {hashlib.sha256(big).hexdigest()}" in out
    assert f"small.txt {len(small)} {hashlib.sha256(small).hexdigest()}" in out
    assert "local.csv 8 " in out
    assert (engine.outputs_dir(ex.id) / "seen.txt").read_text() == "big.bin,local.csv,small.txt"
    progress = engine.input_progress(ex.id)
    assert progress["big.bin"]["state"] == "done" and progress["big.bin"]["done"] == len(big)
    # a second run revalidates from the cache instead of downloading again
    before = len(http.requests("/big")) if callable(getattr(http, "requests", None)) else None
    again = wait_final(engine, engine.run(lab, runtime=runtime).id)
    assert again.state == "finished"
    assert program_output(engine, again.id).decode() == out
    if before is not None:
        assert all(r.status in (200, 206, 304) for r in http.requests("/big"))


@pytest.mark.parametrize("kind", ["404", "reset", "stall"])
def test_failing_input_fails_execution_cleanly(engine, make_lab, runtime, http, kind):
    data = os.urandom(400_000)
    url = {
        "404": lambda: http.not_found("/missing"),
        "reset": lambda: http.reset_halfway("/reset", data),
        "stall": lambda: http.stall("/stall", data),
    }[kind]()
    lab = make_lab("print('the code must not run')\n", inputs_yaml([("ok.bin", http.serve("/ok", data)),
                                                                   ("bad.bin", url)]))
    ex = engine.run(lab, runtime=runtime)
    final = wait_final(engine, ex.id, timeout=90)
    assert final.state == "failed"
    assert url in final.reason and "bad.bin" in final.reason
    expected = {"404": "404", "reset": "reset", "stall": "stalled"}[kind]
    assert expected in final.reason.lower(), final.reason
    assert final.exit_code is None and final.started_at is None, "the code never ran"
    assert b"must not run" not in program_output(engine, ex.id)
    deadline = time.monotonic() + 30  # the outcome is recorded first, then the workspace goes
    while engine.layout.workspace(ex.id).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not engine.layout.workspace(ex.id).exists()


POISON = """
import os
path = "inputs/data.bin"
st = os.stat(path)
try:
    with open(path, "r+b") as f:
        f.write(b"EVIL")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    print("rewrote the input in place")
except OSError as exc:
    print("could not rewrite the input:", exc.strerror)
"""


def test_program_rewriting_its_input_does_not_poison_the_cache(engine, make_lab, runtime, http):
    """Issue 10 item 2: the workspace input is never a hard link into the cache."""
    data = os.urandom(200_000)
    url = http.serve("/data.bin", data)
    bad = wait_final(engine, engine.run(make_lab(POISON, inputs_yaml([("data.bin", url)])), runtime=runtime).id)
    assert bad.state == "finished", bad.reason
    out = program_output(engine, bad.id).decode()
    if runtime == "docker":
        assert "could not rewrite" in out and "Read-only" in out, out  # a read-only mount
    reader = make_lab(READER, inputs_yaml([("data.bin", url)]))
    good = wait_final(engine, engine.run(reader, runtime=runtime).id)
    assert good.state == "finished", good.reason
    assert f"data.bin {len(data)} {hashlib.sha256(data).hexdigest()}" in program_output(engine, good.id).decode()
    assert http.requests("/data.bin")[-1].status == 304, "the cached copy is used again"


def test_unbounded_inputs_fail_fast(engine, make_lab, runtime, http):
    """Issue 10 item 9: an endless body stops at the limit setting; /dev/zero at once."""
    engine.set_setting("input_max_bytes", 3 << 20)
    lab = make_lab("print('must not run')\n", inputs_yaml([("big.bin", http.endless("/forever"))]))
    final = wait_final(engine, engine.run(lab, runtime=runtime).id, timeout=30)
    assert final.state == "failed" and "over the limit of" in final.reason, final.reason
    lab = make_lab("print('must not run')\n", inputs_yaml([("zero.bin", "file:///dev/zero")]))
    t0 = time.monotonic()
    final = wait_final(engine, engine.run(lab, runtime=runtime, allow_local_inputs=True).id, timeout=30)
    assert final.state == "failed" and "not a regular file" in final.reason, final.reason
    assert time.monotonic() - t0 < 15
