"""Experiments end to end on real runtimes: metrics from printed output, overrides,
sweeps through the host's queue, compare and diff (issue 13)."""

from __future__ import annotations

import json
import math
import time

import pytest

from tests.integration.conftest import cli, wait_final

# Prints metrics in the styles ML programs use, to stdout and stderr (tqdm-like with
# \r redraws and ANSI), and a --lr flag that must not become a metric (it is in
# mldesk's own "running: python main.py --lr=0.1" stage line).
METRICS_PROGRAM = r"""
import argparse, json, sys
p = argparse.ArgumentParser()
p.add_argument("--lr", type=float)
p.add_argument("--epochs", type=int)
a = p.parse_args()
expected = {}
def rec(key, step, value):
    expected.setdefault(key, []).append([step, value])
for e in range(1, a.epochs + 1):
    loss = round(1.0 / (e * a.lr * 10), 4)
    print(f"epoch {e} loss={loss} train/acc={e / 10}", flush=True)
    rec("loss", e, loss); rec("train/acc", e, e / 10)
    for pct in (25, 50, 100):  # a progress bar on stderr, redrawn; only its final state counts
        sys.stderr.write(f"\r\x1b[32m{pct}%|##| [00:0{e}<00:00, val_loss={loss * pct / 100:.4f}]\x1b[0m")
        sys.stderr.flush()
    sys.stderr.write("\n")
    rec("val_loss", e, round(loss, 4))
print("32/32 [====] - 1s 5ms/step - accuracy: 0.8125 - top5: nan")
rec("accuracy", 1, 0.8125); rec("top5", 1, float("nan"))
print({"eval_loss": 0.25, "epoch": float(a.epochs)})
rec("eval_loss", a.epochs, 0.25)
print("12:30:01 http://host:8080/ cuda:0 100% done skipped=1")
print(json.dumps(expected), file=open("outputs/expected.json", "w"))
sys.stdout.write("final: 7")  # no newline at the end: still counts once the execution is over
"""


def _nan_equal(a, b) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_metrics_equal_what_was_printed(engine, make_lab, runtime, mldesk_home):
    lab = make_lab(METRICS_PROGRAM, "parameters:\n  - pass-as: '--lr=0.1'\n  - pass-as: '--epochs 3'\n"
                                    "metrics:\n  primary: loss\n  ignore: [skipped]\n")
    ex = engine.run(lab, runtime=runtime)
    final = wait_final(engine, ex.id)
    assert engine.primary_metric(ex.id) == {"key": "loss", "goal": "min", "last": 0.3333, "best": 0.3333}
    assert final.state == "finished", final.reason
    expected = json.loads((engine.outputs_dir(ex.id) / "expected.json").read_text())
    expected["final"] = [[1, 7.0]]
    expected["val_loss"] = [[s, round(v, 4)] for s, v in expected["val_loss"]]
    got = json.loads(cli("metrics", ex.id, "--json", home=mldesk_home, check=True).stdout)
    assert _nan_equal(got, expected), {k: (got.get(k), expected.get(k)) for k in {*got, *expected}
                                       if not _nan_equal(got.get(k), expected.get(k))}
    assert "lr" not in got  # mldesk's stage line is never scanned
    pts, offset = engine.metrics_since(ex.id)  # what a live chart polls
    assert len(pts) == sum(map(len, got.values())) and engine.metrics_since(ex.id, offset) == ([], offset)
    assert math.isnan(got["top5"][0][1])
    # the scanner followed the log while it was written (its cursor is at the end)
    cursor = json.loads((engine.layout.execution_dir(ex.id) / "metrics.cursor.json").read_text())
    assert cursor["offset"] == engine.layout.log_path(ex.id).stat().st_size
    csv_rows = cli("metrics", ex.id, "--csv", "--key", "loss", home=mldesk_home, check=True).stdout.decode().splitlines()
    assert csv_rows[0] == "key,step,value,time"
    assert [r.split(",")[:3] for r in csv_rows[1:]] == [["loss", "1", "1.0"], ["loss", "2", "0.5"],
                                                        ["loss", "3", "0.3333"]]
    bad = cli("metrics", ex.id, "--key", "nope", home=mldesk_home)
    assert bad.returncode == 1 and b"known: " in bad.stderr and b"train/acc" in bad.stderr


def test_run_with_overrides(engine, make_lab, runtime, mldesk_home):
    lab = make_lab("import sys; print(' '.join(sys.argv[1:]))\n",
                   "parameters:\n  - pass-as: '--lr=0.1'\n  - pass-as: '--epochs 3'\n  - pass-as: '-v'\n")
    res = cli("run", str(lab), "--runtime", runtime, "--set", "epochs=20", "--set", "lr=0.5", "--detach", "--json",
              home=mldesk_home, check=True)
    rec = json.loads(res.stdout)
    assert rec["name"] == "epochs=20 lr=0.5" and rec["overrides"] == {"epochs": "20", "lr": "0.5"}
    assert wait_final(engine, rec["id"]).state == "finished"
    shown = json.loads(cli("show", rec["id"], "--json", home=mldesk_home, check=True).stdout)
    assert shown["params"] == {"lr": "0.5", "epochs": "20", "v": ""}
    assert shown["overrides"] == {"epochs": "20", "lr": "0.5"} and shown["sweep"] is None
    assert cli("logs", rec["id"], home=mldesk_home, check=True).stdout == b"--lr=0.5 --epochs 20 -v\n"
    # an unknown name: one line listing the known ones, nothing started
    before = len(engine.list())
    bad = cli("run", str(lab), "--runtime", runtime, "--set", "epoch=5", home=mldesk_home)
    assert bad.returncode != 0
    assert bad.stderr.decode().strip().splitlines() == [
        "mldesk: error: unknown parameter 'epoch' (known: lr, epochs, v); nothing was started"]
    assert len(engine.list()) == before
    # restart keeps the overrides
    again, _ = engine.restart(rec["id"])
    assert again.overrides == {"epochs": "20", "lr": "0.5"} and again.argv == ["--lr=0.5", "--epochs", "20", "-v"]
    wait_final(engine, again.id)


# Each trial marks itself alive in a shared folder, notes how many trials are alive,
# and waits until it has seen two alive (or all four have started): so with max
# parallel 2 the first two provably run together, and none ever sees three.
QUEUE_PROGRAM = r"""
import argparse, os, time, uuid
p = argparse.ArgumentParser()
p.add_argument("--shared"); p.add_argument("--lr"); p.add_argument("--epochs")
a = p.parse_args()
me = uuid.uuid4().hex
open(os.path.join(a.shared, me + ".started"), "w").close()
alive = os.path.join(a.shared, me + ".alive")
open(alive, "w").close()
seen = 0
deadline = time.time() + 60
while time.time() < deadline:
    names = os.listdir(a.shared)
    seen = max(seen, sum(n.endswith(".alive") for n in names))
    if seen >= 2 or sum(n.endswith(".started") for n in names) >= 4:
        break
    time.sleep(0.05)
open(os.path.join(a.shared, me + ".seen"), "w").write(str(seen))
print(f"loss: {float(a.lr) * int(a.epochs)}")
os.remove(alive)
"""


@pytest.mark.parametrize("runtime", ["process"])  # the trials share a host folder
def test_sweep_runs_through_the_queue_and_compares(engine, make_lab, runtime, mldesk_home, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    engine.set_setting("local_max_parallel", 2)
    lab = make_lab(QUEUE_PROGRAM, f"parameters:\n  - pass-as: '--shared {shared}'\n  - pass-as: '--lr=0.1'\n"
                                  f"  - pass-as: '--epochs 1'\n")
    res = cli("run", str(lab), "--runtime", runtime, "--sweep", "lr=[0.1,0.01]", "--sweep", "epochs=[5,10]",
              "--detach", "--json", home=mldesk_home, check=True)
    out = json.loads(res.stdout)
    assert set(out) == {"sweep", "ids"} and len(out["ids"]) == 4
    finals = [wait_final(engine, i, timeout=120) for i in out["ids"]]
    assert all(f.state == "finished" for f in finals), [f.reason for f in finals]
    seen = sorted(int(p.read_text()) for p in shared.glob("*.seen"))
    assert len(seen) == 4 and max(seen) == 2, seen  # two at a time, never three
    assert len({f.snapshot for f in finals}) == 1  # one snapshot for all trials
    assert {f.sweep for f in finals} == {out["sweep"]}
    listed = json.loads(cli("ls", "--sweep", out["sweep"], "--json", home=mldesk_home, check=True).stdout)
    assert sorted(r["id"] for r in listed) == sorted(out["ids"])
    rows = json.loads(cli("compare", *out["ids"], "--json", home=mldesk_home, check=True).stdout)
    assert [r["id"] for r in rows] == out["ids"]
    assert all(set(r) == {"id", "name", "state", "params", "metrics"} for r in rows)
    got = {(r["params"]["lr"], r["params"]["epochs"]): r["metrics"]["loss"] for r in rows}
    assert got == {(lr, ep): {"last": float(lr) * int(ep), "min": float(lr) * int(ep), "max": float(lr) * int(ep),
                              "count": 1}
                   for lr in ("0.1", "0.01") for ep in ("5", "10")}
    assert {r["name"] for r in rows} == {f"lr={lr} epochs={ep}" for lr in ("0.1", "0.01") for ep in ("5", "10")}
    assert all(r["params"]["shared"] == str(shared) for r in rows)
    assert engine.primary_metric(out["ids"][0]) is None  # ml.yaml names no primary metric
    table = cli("compare", "--sweep", out["sweep"][:12], "--csv", home=mldesk_home, check=True).stdout.decode()
    assert table.splitlines()[0] == ("id,name,state,host,runtime,duration,shared,lr,epochs,loss last,loss min,"
                                     "loss max")
    assert len(table.splitlines()) == 5


def test_diff_against_another_execution_and_the_lab(engine, make_lab, runtime, mldesk_home):
    lab = make_lab("print('one')\n", "parameters:\n  - pass-as: '--lr=0.1'\n")
    a = engine.run(lab, runtime=runtime)
    wait_final(engine, a.id)
    (lab / "main.py").write_text("print('two')\n")
    (lab / "ml.yaml").write_text((lab / "ml.yaml").read_text().replace("0.1", "0.2"))
    out = cli("diff", a.id, home=mldesk_home, check=True).stdout.decode()
    assert "lr: 0.1 -> 0.2" in out and "-print('one')" in out and "+print('two')" in out
    assert out.index("ml.yaml") < out.index("main.py")  # parameters and ml.yaml first
    b = engine.run(lab, runtime=runtime)
    wait_final(engine, b.id)
    assert cli("diff", a.id, b.id, "--params", home=mldesk_home, check=True).stdout.decode() == \
        f"parameters ({a.id} -> {b.id}):\n  lr: 0.1 -> 0.2\n"
    code = json.loads(cli("diff", a.id, b.id, "--code", "--json", home=mldesk_home, check=True).stdout)
    assert [f["path"] for f in code["files"]] == ["ml.yaml", "main.py"] and "params" not in code


@pytest.mark.parametrize("runtime", ["process"])
def test_metrics_are_stored_live_while_it_runs(engine, make_lab, runtime, tmp_path):
    """Nobody asks for the metrics: the supervisor's scanner stores them as the program
    prints (what the window's live charts read), before the program ends."""
    go = tmp_path / "go"
    lab = make_lab(f"""
        import os, time
        for i in range(5):
            print(f"step {{i}} loss={{i / 10}}", flush=True)
        while not os.path.exists({str(go)!r}):
            time.sleep(0.05)
        print("loss=9", flush=True)
        """)
    ex = engine.run(lab, runtime=runtime)
    path = engine.layout.execution_dir(ex.id) / "metrics.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not path.exists() or path.read_bytes().count(b"\n") < 5):
        time.sleep(0.05)
    assert engine.store.get(ex.id).state == "running"
    assert engine.progress_line(ex.id) == "step 4"
    assert [json.loads(line)[:3] for line in path.read_bytes().splitlines()] == \
        [["loss", i, i / 10] for i in range(5)]
    go.touch()
    wait_final(engine, ex.id)
    assert engine.metrics(ex.id)["loss"][-1][:2] == (6, 9.0)


@pytest.mark.parametrize("runtime", ["process"])
def test_attached_sweep_waits_for_every_trial(engine, make_lab, runtime, mldesk_home):
    lab = make_lab("import sys; print('x:', sys.argv[1].split('=')[1])\n", "parameters:\n  - pass-as: '--x=0'\n")
    res = cli("run", str(lab), "--runtime", runtime, "--sweep", "x=1..3", "--max-trials", "2", "--json",
              "--name", "grid", home=mldesk_home)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    rows = [engine.get(i) for i in out["ids"]]
    assert [r.state for r in rows] == ["finished", "finished"]  # all final when the command returns
    assert [r.name for r in rows] == ["grid x=1", "grid x=2"] and [r.overrides for r in rows] == [{"x": "1"}, {"x": "2"}]
    assert [engine.metrics(r)["x"][0][1] for r in rows] == [1.0, 2.0]
    bad = cli("run", str(lab), "--runtime", runtime, "--sweep", "y=[1,2]", home=mldesk_home)
    assert bad.returncode != 0 and b"unknown parameter 'y' (known: x)" in bad.stderr
