"""The execution lifecycle on real runtimes: states, exit codes, stop, restart,
rename, remove with GC, parameters, reattach after killing the following CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.integration.conftest import (
    CHECKPOINT_ON_TERM, cli, cli_popen, program_output, wait_final, wait_state,
)

PRINTER = """
import sys, time
n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
delay = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
for i in range(n):
    print(f"line {i} " + "x" * (i % 17), flush=True)
    if i % 7 == 3:
        print(f"warning {i}", file=sys.stderr, flush=True)
    time.sleep(delay)
sys.stdout.write("no newline at the end")
"""


def test_finished_with_outputs_and_log(engine, make_lab, runtime):
    lab = make_lab("""
        import os, sys
        print("hello from", os.environ["MLDESK_EXECUTION_ID"], os.environ["PYTHONUNBUFFERED"])
        print("to stderr", file=sys.stderr)
        os.makedirs("outputs/sub", exist_ok=True)
        open("outputs/result.txt", "w").write("42")
        open("outputs/sub/deep.txt", "w").write("deep")
        """)
    ex = engine.run(lab, runtime=runtime)
    assert ex.state == "preparing" and ex.runtime == runtime
    final = wait_final(engine, ex.id)
    assert final.state == "finished", final.reason
    assert final.exit_code == 0 and final.started_at and final.finished_at >= final.started_at
    out = program_output(engine, ex.id)
    # across two pipes the order of near-simultaneous lines is the runtime's call
    assert sorted(out.splitlines()) == sorted([f"hello from {ex.id} 1".encode(), b"to stderr"])
    from mldesk.agent import logstore

    with engine.log_reader(ex.id) as reader:
        records = list(reader.iter_records())
    assert b"".join(r.data for r in records if r.stream == logstore.STDERR) == b"to stderr\n"
    outputs = engine.outputs_dir(ex.id)
    assert (outputs / "result.txt").read_text() == "42"
    assert (outputs / "sub" / "deep.txt").read_text() == "deep"
    # the stage messages say which runtime ran it
    messages = b"".join(r.data for r in records if r.stream == logstore.MLDESK).decode()
    assert f"{runtime} runtime" in messages and "finished" in messages
    # the final state is recorded first, then the workspace goes (issue 12: a big
    # workspace must not hold the outcome back)
    deadline = time.monotonic() + 30
    while engine.layout.workspace(ex.id).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not engine.layout.workspace(ex.id).exists(), "workspace is removed after collection"


@pytest.mark.parametrize("code,state", [(0, "finished"), (3, "failed"), (1, "failed")])
def test_exit_codes_to_states(engine, make_lab, runtime, code, state):
    lab = make_lab(f"import sys\nprint('bye')\nsys.exit({code})\n")
    final = wait_final(engine, engine.run(lab, runtime=runtime).id)
    assert (final.state, final.exit_code) == (state, code)
    if state == "failed":
        assert final.reason == f"exit code {code}"


def test_crash_records_exit_code_and_traceback(engine, make_lab, runtime):
    lab = make_lab("raise ValueError('boom')\n")
    final = wait_final(engine, engine.run(lab, runtime=runtime).id)
    assert final.state == "failed" and final.exit_code == 1
    assert b"ValueError: boom" in program_output(engine, final.id)


def test_parameters_reach_argv_verbatim(engine, make_lab, runtime):
    nasty = ["; rm -rf ~", "$(id)", "`id`", "a b", "it's", 'say "hi"', "line1\nline2", "*", "$HOME", "ü€"]
    yaml_lines = ["parameters:"]
    for arg in nasty:
        quoted = "'" + arg.replace("'", "'\\''") + "'"  # one shell word
        yaml_lines.append("  - pass-as: " + json.dumps(quoted))
    lab = make_lab("import sys, json\nopen('outputs/argv.json','w').write(json.dumps(sys.argv[1:]))\n",
                   "\n".join(yaml_lines) + "\n")
    final = wait_final(engine, engine.run(lab, runtime=runtime).id)
    assert final.state == "finished", final.reason
    assert json.loads((engine.outputs_dir(final.id) / "argv.json").read_text()) == nasty


def test_stop_keeps_checkpoint(engine, make_lab, runtime):
    lab = make_lab(CHECKPOINT_ON_TERM)
    ex = engine.run(lab, runtime=runtime)
    wait_state(engine, ex.id, "running")
    deadline = time.monotonic() + 30
    while b"ready" not in program_output(engine, ex.id):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    engine.stop(ex.id)
    final = wait_final(engine, ex.id)
    assert final.state == "stopped" and final.exit_code == 143
    assert (engine.outputs_dir(ex.id) / "checkpoint.txt").read_text() == "saved at term"
    assert (engine.outputs_dir(ex.id) / "early.txt").read_text() == "early"
    assert b"checkpoint written" in program_output(engine, ex.id)


def test_stop_escalates_to_kill_after_grace(engine, make_lab, runtime):
    engine.set_setting("stop_grace", 1.0)
    lab = make_lab("""
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("stubborn", flush=True)
        while True:
            time.sleep(0.05)
        """)
    ex = engine.run(lab, runtime=runtime)
    wait_state(engine, ex.id, "running")
    deadline = time.monotonic() + 30  # SIGTERM is ignored once it has printed
    while b"stubborn" not in program_output(engine, ex.id):
        assert time.monotonic() < deadline, "the program never started"
        time.sleep(0.05)
    engine.stop(ex.id)
    final = wait_final(engine, ex.id, timeout=30)
    assert final.state == "stopped" and final.exit_code == 137  # KILLed after the grace


def test_restart_restores_snapshot_and_keeps_edit(engine, make_lab, runtime):
    lab = make_lab("print('version one')\n", extra="keep me\n")
    first = wait_final(engine, engine.run(lab, runtime=runtime).id)
    assert program_output(engine, first.id) == b"version one\n"
    (lab / "main.py").write_text("print('version two')\n")
    (lab / "new.txt").write_text("added later\n")
    (lab / "extra").unlink()
    assert engine.lab_differs(first.id)
    second, backup = engine.restart(first.id)
    assert backup is not None and second.id != first.id
    assert (lab / "main.py").read_text() == "print('version one')\n"
    assert (lab / "extra").read_text() == "keep me\n" and not (lab / "new.txt").exists()
    assert second.snapshot == first.snapshot
    final = wait_final(engine, second.id)
    assert program_output(engine, final.id) == b"version one\n"
    # the edit is recoverable from the backup snapshot
    assert engine.snapshots.read_file(backup, "main.py") == b"print('version two')\n"
    assert engine.snapshots.read_file(backup, "new.txt") == b"added later\n"
    assert any(b["snapshot"] == backup for b in engine.store.lab_backups(str(lab)))
    # a restart of an unchanged lab asks nothing and backs nothing up
    assert not engine.lab_differs(first.id)
    third, backup2 = engine.restart(first.id)
    assert backup2 is None
    wait_final(engine, third.id)


def test_rename_and_remove_with_gc(engine, make_lab, runtime, mldesk_home):
    lab = make_lab("open('outputs/o.txt','w').write('o')\nprint('x')\n", big="unique content " * 1000)
    ex = wait_final(engine, engine.run(lab, runtime=runtime).id)
    engine.rename(ex.id, "my nice run")
    assert engine.get("my nice run").id == ex.id
    assert engine.get(ex.id[:17]).id == ex.id
    blobs_before = {p.name for p in engine.layout.blobs.rglob("*") if p.is_file() and len(p.name) == 64}
    assert len(blobs_before) >= 3
    engine.remove(ex.id)
    assert engine.store.get(ex.id) is None
    assert not engine.layout.execution_dir(ex.id).exists()
    blobs_after = {p.name for p in engine.layout.blobs.rglob("*") if p.is_file() and len(p.name) == 64}
    assert blobs_after == set(), "every blob was only referenced by the removed execution"
    assert not any(engine.layout.snapshots.glob("*.json"))


def test_remove_refuses_running(engine, make_lab, runtime):
    lab = make_lab("import time\nprint('run', flush=True)\ntime.sleep(60)\n")
    ex = engine.run(lab, runtime=runtime)
    wait_state(engine, ex.id, "running")
    from mldesk.engine.facade import EngineError

    with pytest.raises(EngineError, match="stop it first"):
        engine.remove(ex.id)
    engine.stop(ex.id)
    wait_final(engine, ex.id)


@pytest.mark.parametrize("stage", ["preparing", "fetching", "running", "collecting"])
def test_killing_the_following_cli_loses_nothing(engine, make_lab, runtime, mldesk_home, tmp_path, stage):
    """SIGKILL `mldesk run` (which follows the log) during a stage; the execution
    goes on and `mldesk logs` equals what the script prints when run directly."""
    big_outputs = "\nimport os\nfor i in range(200):\n    open(f'outputs/f{i}.bin','wb').write(os.urandom(20000))\n"
    yaml = "parameters:\n  - pass-as: '300 0.005'\n"
    server = None
    if stage == "fetching":  # an input that takes ~1 s to arrive
        from tests.helpers.httpserver import HTTPTestServer

        server = HTTPTestServer().start()
        url = server.slow("/slow.bin", b"x" * 320_000, chunk=16_000, interval=0.05)
        yaml += f"inputs:\n  - name: slow.bin\n    url: {url}\n"
    lab = make_lab(PRINTER + big_outputs, yaml)
    # run the script directly with both streams on one pipe: the reference output
    (lab / "outputs").mkdir(exist_ok=True)
    direct = subprocess.run([sys.executable, "-u", "main.py", "300", "0"], cwd=lab, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, check=True)
    import shutil

    shutil.rmtree(lab / "outputs")
    proc = cli_popen("run", str(lab), "--runtime", runtime, home=mldesk_home)
    deadline = time.monotonic() + 60
    exec_id = None
    while time.monotonic() < deadline:
        rows = engine.store.list()
        if rows:
            exec_id = rows[0].id
            seen = rows[0].state
            if seen == stage or (stage != "preparing" and rows[0].final):
                break
        time.sleep(0.002)
    assert exec_id, "the execution appeared"
    if stage in ("preparing", "fetching", "running"):
        assert seen == stage, f"killed while {seen}, not {stage}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    cli("ls", home=mldesk_home, check=True)  # any later mldesk process reattaches
    final = wait_final(engine, exec_id)
    assert final.state == "finished", final.reason
    logs = cli("logs", exec_id, home=mldesk_home, check=True).stdout
    lines = sorted(logs.split(b"\n"))
    assert lines == sorted(direct.stdout.split(b"\n")), "same lines (stdout/stderr interleaving may differ)"
    stdout_only = subprocess.run([sys.executable, "-u", "main.py", "300", "0"], cwd=lab, capture_output=True)
    from mldesk.agent import logstore

    with engine.log_reader(exec_id) as reader:
        got = b"".join(r.data for r in reader.iter_records() if r.stream == logstore.STDOUT)
    assert got == stdout_only.stdout, "stdout byte for byte"
    shutil.rmtree(lab / "outputs", ignore_errors=True)
    if server is not None:
        assert server.hits("/slow.bin") >= 1
        server.stop()


def test_cli_logs_byte_for_byte_single_stream(engine, make_lab, runtime, mldesk_home):
    lab = make_lab("""
        import sys
        for i in range(2000):
            sys.stdout.write(f"{i:05d} " + "é" * (i % 13) + ("\\r" if i % 100 == 0 else "\\n"))
        sys.stdout.write("tail without newline")
        """)
    (lab / "outputs").mkdir()
    direct = subprocess.run([sys.executable, "-u", "main.py"], cwd=lab, capture_output=True, check=True).stdout
    (lab / "outputs").rmdir()
    res = cli("run", str(lab), "--runtime", runtime, home=mldesk_home)
    assert res.returncode == 0, res.stderr.decode()
    assert res.stdout == direct
    exec_id = engine.store.list()[0].id
    assert cli("logs", exec_id, home=mldesk_home, check=True).stdout == direct
    lines = [line + b"\n" for line in direct.split(b"\n")]
    lines[-1] = lines[-1][:-1]  # the unterminated last line
    head = cli("logs", exec_id, "--head", "3", home=mldesk_home, check=True).stdout
    assert head == b"".join(lines[:3])
    tail = cli("logs", exec_id, "--tail", "2", home=mldesk_home, check=True).stdout
    assert tail == b"".join(lines[-2:])


def test_two_clis_race_on_one_execution(engine, make_lab, runtime, mldesk_home):
    lab = make_lab("import time\nprint('up', flush=True)\ntime.sleep(120)\n")
    ex = engine.run(lab, runtime=runtime)
    wait_state(engine, ex.id, "running")
    procs = [cli_popen("stop", ex.id, home=mldesk_home) for _ in range(2)]
    procs += [cli_popen("rename", ex.id, f"name {i}", home=mldesk_home) for i in range(2)]
    results = [(p.wait(60), p.stdout.read(), p.stderr.read()) for p in procs]
    for code, out, err in results:
        assert code == 0, err
        assert b"Traceback" not in err
    final = wait_final(engine, ex.id)
    assert final.state == "stopped" and final.name in ("name 0", "name 1")
    rms = [cli_popen("rm", ex.id, home=mldesk_home) for _ in range(3)]
    outcomes = [(p.wait(60), p.stderr.read()) for p in rms]
    assert sorted(c for c, _ in outcomes) == [0, 1, 1]
    for code, err in outcomes:
        assert b"Traceback" not in err
        if code:
            assert err.startswith(b"mldesk: error:") and err.count(b"\n") == 1
    assert engine.store.get(ex.id) is None


def test_run_json_detach_and_show(engine, make_lab, runtime, mldesk_home):
    lab = make_lab("print('json')\n")
    res = cli("run", str(lab), "--runtime", runtime, "--detach", "--json", "--name", "j1", home=mldesk_home,
              check=True)
    rec = json.loads(res.stdout)
    for key in ("id", "name", "lab", "host", "runtime", "image", "state", "exit_code", "reason",
                "created_at", "started_at", "finished_at", "snapshot"):
        assert key in rec
    assert rec["lab"] == str(lab.resolve()) and rec["name"] == "j1" and rec["runtime"] == runtime
    wait_final(engine, rec["id"])
    shown = json.loads(cli("show", "j1", "--json", home=mldesk_home, check=True).stdout)
    assert shown["state"] == "finished" and shown["exit_code"] == 0
    listed = json.loads(cli("ls", "--json", home=mldesk_home, check=True).stdout)
    assert [r["id"] for r in listed] == [rec["id"]]
    out = cli("outputs", rec["id"], home=mldesk_home, check=True)
    assert b"has no outputs" in out.stdout or b"folder:" in out.stdout


def test_background_child_holding_the_pipes_does_not_hang(engine, make_lab, runtime):
    """A program that leaves a child behind (holding stdout) still finishes, and
    (process runtime) the child is ended with it."""
    lab = make_lab("""
        import subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
        open("outputs/child.pid", "w").write(str(child.pid))
        print("parent done", flush=True)
        """)
    final = wait_final(engine, engine.run(lab, runtime=runtime).id, timeout=30)
    assert final.state == "finished" and final.exit_code == 0
    assert program_output(engine, final.id) == b"parent done\n"
    if runtime == "process":
        pid = int((engine.outputs_dir(final.id) / "child.pid").read_text())
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
            status = open(f"/proc/{pid}/stat").read().split()[2] if os.path.exists(f"/proc/{pid}/stat") else "X"
            if status == "Z":
                break
            time.sleep(0.1)
        assert not os.path.exists(f"/proc/{pid}") or status == "Z", "the left-behind child was killed"


TREE_THEN_VANDALISE = """
import hashlib, os, stat, sys
def digest():
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(".")):
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            h.update(f"{p} {stat.S_IFMT(st.st_mode)} {stat.S_IMODE(st.st_mode):o}".encode())
            if stat.S_ISLNK(st.st_mode):
                h.update(os.readlink(p).encode())
            elif stat.S_ISREG(st.st_mode):
                h.update(open(p, "rb").read())
    return h.hexdigest()
print("tree", digest(), flush=True)
# what a program may leave behind for the next run
st = os.stat("data/a.txt")
open("data/a.txt", "w").write("A" * len(open("data/b.txt").read()))
os.utime("data/a.txt", ns=(st.st_atime_ns, st.st_mtime_ns))
os.chmod("data/b.txt", 0o777)
os.remove("data/c.txt")
os.makedirs("data/junk/deeper")
open("data/junk/deeper/x", "w").write("x")
open("extra.txt", "w").write("extra")
open("outputs/o.txt", "w").write("o")
"""


def test_next_run_gets_an_exact_copy_reusing_the_last_workspace(engine, make_lab, runtime):
    """Issue 12 (P12): the workspace of a lab's finished run is kept and brought back to
    a fresh copy for its next run; whatever the program changed is replaced."""
    from mldesk.agent import logstore

    files = {f"f{i}.txt": f"content {i}\n" * 5 for i in range(600)}  # kept from 500 files on
    lab = make_lab(TREE_THEN_VANDALISE, **files)
    (lab / "data").mkdir()
    for name in "abc":
        (lab / "data" / f"{name}.txt").write_text(f"{name} " * 100)
    trees = []
    for run in range(3):
        ex = wait_final(engine, engine.run(lab, runtime=runtime).id)
        assert ex.state == "finished", ex.reason
        out = program_output(engine, ex.id).decode()
        trees.append(out.split()[1])
        assert (engine.outputs_dir(ex.id) / "o.txt").read_text() == "o"
        deadline = time.monotonic() + 30  # the cleanup (after the final state) keeps it
        while engine.layout.workspace(ex.id).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        with engine.log_reader(ex.id) as reader:
            messages = b"".join(r.data for r in reader.iter_records() if r.stream == logstore.MLDESK).decode()
        total = len(files) + 5  # main.py, ml.yaml, data/a.txt, b.txt, c.txt
        if run == 0:
            assert "reused" not in messages
        else:  # a.txt (content), b.txt (mode), c.txt (removed) are copied again
            assert f"workspace: {total - 3:,} of {total:,} files reused" in messages, messages
    assert trees[0] == trees[1] == trees[2]
