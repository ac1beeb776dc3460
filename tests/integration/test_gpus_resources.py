"""GPUs and resources on real executions: the sampler on the local runtimes, the GPU
queue on a host with two fake GPUs (the only fake: nvidia-smi), Docker's device
requests, racing CLI starts, and the CLI's stats / show / hosts status."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from mldesk.agent import resources
from tests.integration.conftest import cli, cli_popen, program_output, wait_final, wait_state

MB = 1024 * 1024

HUNGRY = """
import os, time
blob = bytearray(210 * 1024 * 1024)
for i in range(0, len(blob), 4096):
    blob[i] = 1
t0, c0 = time.monotonic(), time.process_time()
while time.monotonic() - t0 < 7:
    pass
share = (time.process_time() - c0) / (time.monotonic() - t0)
print("share", round(share * 100, 1), flush=True)
"""


def is_alive(pid) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:  # a zombie (the test's own child) is not alive
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _samples(engine, exec_id):
    return resources.read_samples(str(engine.layout.resources_path(exec_id)))[0]


def test_sampler_sees_memory_and_cpu(engine, runtime, make_lab):
    """A program holding 210 MB shows >= 200 MB resident; a busy loop shows what the
    program itself measures of its CPU share (about one core on an idle machine)."""
    ex = engine.run(make_lab(HUNGRY), runtime=runtime)
    done = wait_final(engine, ex.id, timeout=120)
    assert done.state == "finished", done.reason
    own = float(program_output(engine, ex.id).decode().split()[-1])
    samples = _samples(engine, ex.id)
    assert len(samples) >= 3
    assert max(s.get("rss", 0) for s in samples) >= 200 * MB
    cpu = [s["cpu"] for s in samples if "cpu" in s]
    assert cpu and max(cpu) >= 0.6 * own and max(cpu) <= 100 * os.cpu_count() + 10
    stats = engine.stats(ex.id)
    assert stats["rss_bytes"] and stats["cpu_percent"] and stats["gpu"] == {}
    assert engine.resource_summary(ex.id)["peak_rss_bytes"] >= 200 * MB


HOLD = """
import os, time
print("CVD=" + os.environ.get("CUDA_VISIBLE_DEVICES", "-"), os.environ.get("CUDA_DEVICE_ORDER"), flush=True)
go = {go!r}
while not os.path.exists(go):
    time.sleep(0.05)
"""


def _gpu_lab(make_lab, tmp_path, name, yaml="gpus: 1\n"):
    go = tmp_path / f"go-{name}"
    return make_lab(HOLD.format(go=str(go)), yaml), go


def _wait_reason(engine, exec_id, reason, timeout=10.0):
    """The queued reason is refreshed on each claim (every 0.5 s): wait for this one."""
    deadline = time.monotonic() + timeout
    ex = engine.store.get(exec_id)
    while ex.reason != reason and time.monotonic() < deadline:
        time.sleep(0.05)
        ex = engine.store.get(exec_id)
    assert ex.state == "queued" and ex.reason == reason, (ex.state, ex.reason)
    return ex


def _cvd(engine, exec_id, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = program_output(engine, exec_id).decode()
        if "CVD=" in out:
            line = out.split("CVD=", 1)[1].splitlines()[0]
            assert line.endswith("PCI_BUS_ID")
            return line.split()[0]
        time.sleep(0.05)
    raise AssertionError(f"{exec_id} printed no CUDA_VISIBLE_DEVICES")


@pytest.mark.parametrize("runtime", ["process"])
def test_gpu_queue_two_gpus_three_executions(engine, make_lab, tmp_path, fake_gpus, mldesk_home):
    labs = [_gpu_lab(make_lab, tmp_path, str(i)) for i in range(3)]
    exs = []
    for lab, _ in labs:
        exs.append(engine.run(lab, runtime="process"))
        time.sleep(0.01)  # a clear queue order
    a, b = wait_state(engine, exs[0].id, "running"), wait_state(engine, exs[1].id, "running")
    wait_state(engine, exs[2].id, "queued")
    third = _wait_reason(engine, exs[2].id, "waiting for 1 free GPU on local (2 of 2 busy)")
    cvd = {_cvd(engine, a.id), _cvd(engine, b.id)}
    assert cvd == {"0", "1"}
    assert sorted(engine.gpus_of(a.id) + engine.gpus_of(b.id)) == [0, 1]
    shown = json.loads(cli("show", third.id, "--json", home=mldesk_home, check=True).stdout)
    assert shown["state"] == "queued" and shown["reason"] == third.reason and shown["gpus"] == []
    # the first ends: its GPU goes to the third
    labs[0][1].touch()
    assert wait_final(engine, a.id).state == "finished"
    wait_state(engine, third.id, "running", timeout=10)
    freed = engine.gpus_of(a.id)
    assert _cvd(engine, third.id) == str(freed[0]) and engine.gpus_of(third.id) == freed
    assert engine.store.get(third.id).reason is None
    shown = json.loads(cli("show", a.id, "--json", home=mldesk_home, check=True).stdout)
    assert shown["gpus"] == freed  # what it held, once ended
    for _, go in labs:
        go.touch()
    assert all(wait_final(engine, e.id).state == "finished" for e in exs)
    assert engine.store.gpu_leases() == {}


@pytest.mark.parametrize("runtime", ["process"])
def test_stop_and_dead_supervisor_free_gpus(engine, make_lab, tmp_path, fake_gpus):
    fake_gpus.set(1)
    (lab1, go1), (lab2, go2), (lab3, go3) = (_gpu_lab(make_lab, tmp_path, str(i)) for i in range(3))
    first = engine.run(lab1, runtime="process")
    wait_state(engine, first.id, "running")
    second = engine.run(lab2, runtime="process")
    wait_state(engine, second.id, "queued")
    engine.stop(first.id)
    assert wait_final(engine, first.id).state == "stopped"
    wait_state(engine, second.id, "running", timeout=10)
    assert _cvd(engine, second.id) == "0"
    third = engine.run(lab3, runtime="process")
    wait_state(engine, third.id, "queued")
    # the supervisor of the running one dies: the program runs on (the runner holds it)
    # and keeps its GPU; a new supervisor (here: reattach) follows it to its end, then
    # the GPU goes on
    pid = engine.store.get(second.id).supervisor_pid
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while is_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    deadline = time.monotonic() + 10  # its lock is free for a new supervisor a moment later
    while not engine.reattach_one(second.id):
        assert time.monotonic() < deadline, "no new supervisor could take over"
        time.sleep(0.05)
    deadline = time.monotonic() + 30
    while engine.store.get(second.id).supervisor_pid in (None, pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    assert engine.store.get(second.id).state == "running"
    assert engine.store.get(third.id).state == "queued" and engine.gpus_of(second.id) == [0]
    go2.touch()
    assert wait_final(engine, second.id).state == "finished"
    assert "CVD=0" in program_output(engine, second.id).decode()
    wait_state(engine, third.id, "running", timeout=10)
    assert engine.gpus_of(third.id) == [0]
    go3.touch()
    assert wait_final(engine, third.id).state == "finished"


@pytest.mark.parametrize("runtime", ["process"])
def test_too_many_gpus_is_refused_at_run_time(engine, make_lab, tmp_path, fake_gpus, mldesk_home):
    lab, _ = _gpu_lab(make_lab, tmp_path, "x", yaml="gpus: 3\n")
    r = cli("run", str(lab), "--runtime", "process", home=mldesk_home)
    assert r.returncode != 0
    err = r.stderr.decode().strip()
    assert err.count("\n") == 0 and "3 GPUs asked for, but local has 2 GPUs" in err
    r = cli("run", str(lab), "--runtime", "process", "--gpus", "0,7", home=mldesk_home)
    assert r.returncode != 0 and "GPU 7" in r.stderr.decode()
    r = cli("run", str(lab), "--gpus", "two", home=mldesk_home)
    assert r.returncode == 2
    assert engine.list() == []  # nothing started
    bad = make_lab("print(1)", "gpus: [0, zero]\n")
    r = cli("run", str(bad), "--runtime", "process", home=mldesk_home)
    assert r.returncode == 2 and "ml.yaml:2:" in r.stderr.decode()


@pytest.mark.parametrize("runtime", ["process"])
def test_racing_cli_starts_never_share_a_gpu(engine, make_lab, tmp_path, fake_gpus, mldesk_home):
    """Six `mldesk run --gpus 1` at once, from six processes, on two GPUs."""
    go = tmp_path / "go-all"
    lab = make_lab(HOLD.format(go=str(go)))
    procs = [cli_popen("run", str(lab), "--runtime", "process", "--gpus", "1", "-d", home=mldesk_home)
             for _ in range(6)]
    ids = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        ids.append(out.decode().strip())
    seen_running: set[str] = set()
    deadline = time.monotonic() + 120
    released: set[str] = set()
    while len(released) < len(ids) and time.monotonic() < deadline:
        rows = {i: engine.store.get(i) for i in ids}
        holding = {i: engine.gpus_of(i) for i, ex in rows.items() if ex.state == "running"}
        held = [g for i, gs in holding.items() if not rows[i].final for g in gs]
        assert len(held) == len(set(held)) <= 2, holding  # never one GPU for two
        cvds = [_cvd(engine, i) for i in holding]
        assert len(cvds) == len(set(cvds)), cvds
        for i in holding:
            if i not in seen_running:
                seen_running.add(i)
        # end one running execution at a time, so the queued ones move up
        for i, ex in rows.items():
            if ex.final:
                released.add(i)
        if holding and not go.exists():
            victim = sorted(holding)[0]
            engine.stop(victim)
            wait_final(engine, victim)
            released.add(victim)
        time.sleep(0.1)
    assert seen_running == set(ids)
    assert engine.store.gpu_leases() == {}


@pytest.mark.parametrize("runtime", ["process"])
def test_stats_and_hosts_status_cli(engine, make_lab, tmp_path, fake_gpus, mldesk_home):
    fake_gpus.update_gpu(1, util=73, memory_used=4096)
    lab, go = _gpu_lab(make_lab, tmp_path, "s", yaml="gpus: [1]\n")
    ex = engine.run(lab, runtime="process")
    wait_state(engine, ex.id, "running")
    assert _cvd(engine, ex.id) == "1"
    status = json.loads(cli("hosts", "status", "local", "--json", home=mldesk_home, check=True).stdout)
    assert status[0]["name"] == "local" and status[0]["reachable"] is True and status[0]["running"] == 1
    gpus = {g["index"]: g for g in status[0]["gpus"]}
    assert set(gpus) == {0, 1} and gpus[1]["util_percent"] == 73
    assert gpus[1]["memory_used_bytes"] == 4096 * MB and gpus[1]["memory_total_bytes"] == 16384 * MB
    assert gpus[1]["name"] == "NVIDIA Fake GPU"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(_samples(engine, ex.id)) < 2:
        time.sleep(0.1)
    go.touch()
    assert wait_final(engine, ex.id).state == "finished"
    data = json.loads(cli("stats", ex.id, "--json", home=mldesk_home, check=True).stdout)
    assert set(data) >= {"cpu_percent", "rss_bytes", "gpu"} and list(data["gpu"]) == ["1"]
    point = data["gpu"]["1"]["util_percent"][0]
    assert point[1] == 73 and point[0] > 1e9
    assert data["gpu"]["1"]["mem_used_bytes"][0][1] == 4096 * MB
    assert data["rss_bytes"] and all(v > 0 for _, v in data["rss_bytes"])
    csv_out = cli("stats", ex.id, "--csv", home=mldesk_home, check=True).stdout.decode().splitlines()
    assert csv_out[0].startswith("t,cpu_percent,rss_bytes,") and "gpu1_util_percent" in csv_out[0]
    text = cli("show", ex.id, home=mldesk_home, check=True).stdout.decode()
    assert "gpus:        1" in text and "peak memory" in text and "mean utilisation 73 %" in text


def test_docker_device_requests(docker_client, python_image, tmp_path):
    """The container the runner creates asks Docker for exactly the execution's GPUs
    (inspected, no GPU needed); CUDA_VISIBLE_DEVICES is not passed in (the container
    numbers its GPUs from 0)."""
    from mldesk.agent import dockerapi
    from mldesk.core.runopts import RunOptions
    from mldesk.runtimes.base import RunContext
    from mldesk.runtimes.local.docker import DockerRuntime

    ctx = RunContext(exec_id="20990101-000000-gpu01", name="g", lab=tmp_path, workspace=tmp_path,
                     argv=[], image=python_image, hardware="gpu",
                     env={"CUDA_VISIBLE_DEVICES": "0,2", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"},
                     options=RunOptions(gpu_ids=[0, 2]))
    rt = DockerRuntime()
    config = rt.container_config(ctx)
    api = dockerapi.DockerAPI()
    cid = api.create(f"mldesk-{ctx.exec_id}", config)
    try:
        info = docker_client.api.inspect_container(cid)
        (req,) = info["HostConfig"]["DeviceRequests"]
        assert req["DeviceIDs"] == ["0", "2"] and req["Capabilities"] == [["gpu"]] and not req.get("Count")
        env = dict(e.split("=", 1) for e in info["Config"]["Env"])
        assert "CUDA_VISIBLE_DEVICES" not in env and env["MLDESK_EXECUTION_ID"] == ctx.exec_id
        assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    finally:
        api.remove(cid)
    # the same through the docker CLI (a host whose daemon the Engine API client cannot reach)
    from mldesk.agent import containers

    spec = dict(rt.spec(ctx), exec_id=ctx.exec_id, argv=[], env=ctx.program_env(),
                container_name=f"mldesk-{ctx.exec_id}")
    args = containers.docker_run_args(spec, str(tmp_path))
    assert args[args.index("--gpus") + 1] == '"device=0,2"'
    assert not any(a.startswith("CUDA_VISIBLE_DEVICES=") for a in args)
    # no GPU queue in between (gpu_ids None): all of them
    ctx.options = ctx.options.replace(gpu_ids=None)
    (req,) = rt.container_config(ctx)["HostConfig"]["DeviceRequests"]
    assert req["Count"] == -1 and "DeviceIDs" not in req
    # no GPUs asked for: no device request at all
    ctx.options = ctx.options.replace(gpu_ids=[])
    assert "DeviceRequests" not in rt.container_config(ctx)["HostConfig"]
    assert "--gpus" not in containers.docker_run_args(dict(spec, gpu_ids=[]), str(tmp_path))


@pytest.mark.parametrize("runtime", ["docker"])
def test_docker_gpu_run_without_nvidia_runtime_fails_clearly(engine, make_lab, tmp_path, fake_gpus):
    """On this machine Docker has no NVIDIA runtime: a GPU execution fails with the
    next step, and its GPU is free again at once."""
    lab, _ = _gpu_lab(make_lab, tmp_path, "d")
    ex = engine.run(lab, runtime="docker")
    done = wait_final(engine, ex.id, timeout=120)
    assert done.state == "failed" and "NVIDIA Container Toolkit" in done.reason
    assert engine.gpus_of(ex.id) == [0] and engine.store.gpu_leases() == {}


@pytest.mark.parametrize("runtime", ["process"])
def test_max_parallel_still_applies(engine, make_lab, tmp_path):
    engine.set_setting("local_max_parallel", 1)
    (lab1, go1), (lab2, go2) = (_gpu_lab(make_lab, tmp_path, str(i), yaml="") for i in range(2))
    first = engine.run(lab1, runtime="process")
    wait_state(engine, first.id, "running")
    second = engine.run(lab2, runtime="process")
    wait_state(engine, second.id, "queued")
    _wait_reason(engine, second.id, "waiting for a free slot on local (1 of 1 running)")
    go1.touch()
    wait_final(engine, first.id)
    wait_state(engine, second.id, "running", timeout=10)
    go2.touch()
    assert wait_final(engine, second.id).state == "finished"


@pytest.mark.parametrize("runtime", ["process"])
def test_sweep_trials_fill_the_free_gpus(engine, make_lab, tmp_path, fake_gpus):
    go = tmp_path / "go-sweep"
    lab = make_lab(HOLD.format(go=str(go)) + "\nimport sys\nprint('args', sys.argv[1:])\n",
                   "gpus: 1\nparameters:\n  - pass-as: '--lr=0.1'\n")
    sweep, trials = engine.run_sweep(lab, ["lr=[0.1,0.01,0.001]"], runtime="process")
    assert len(trials) == 3
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rows = [engine.store.get(t.id) for t in trials]
        if sorted(r.state for r in rows) == ["queued", "running", "running"]:
            break
        time.sleep(0.1)
    running = [r for r in rows if r.state == "running"]
    assert len(running) == 2 and {_cvd(engine, r.id) for r in running} == {"0", "1"}
    (waiting,) = [r for r in rows if r.state == "queued"]
    _wait_reason(engine, waiting.id, "waiting for 1 free GPU on local (2 of 2 busy)")
    go.touch()
    assert all(wait_final(engine, t.id).state == "finished" for t in trials)
    assert len(engine.gpus_of(waiting.id)) == 1
