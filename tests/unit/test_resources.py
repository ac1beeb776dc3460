"""mldesk.agent.resources: nvidia-smi probes (against the fake), /proc tree sampling,
the sample file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from mldesk.agent import resources


def test_query_gpus_parses_the_fake(fake_gpus):
    fake_gpus.set(2)
    fake_gpus.update_gpu(1, util=87, memory_used=2048, power=213.4, temp=61)
    gpus = resources.query_gpus()
    assert [g["index"] for g in gpus] == [0, 1]
    g = gpus[1]
    assert g["name"] == "NVIDIA Fake GPU" and g["uuid"] == "GPU-fake-0001"
    assert g["util_percent"] == 87 and g["memory_used_bytes"] == 2048 * 1024 * 1024
    assert g["memory_total_bytes"] == 16384 * 1024 * 1024
    assert g["temperature_c"] == 61 and g["power_w"] == pytest.approx(213.4)


def test_not_available_values_are_none(fake_gpus):
    fake_gpus.set(gpus=[{"name": "GeForce, Special", "uuid": "GPU-x", "memory_total": 8192,
                         "memory_used": "[N/A]", "util": "[Not Supported]", "temp": 50,
                         "power": "[N/A]"}])
    (g,) = resources.query_gpus()
    assert g["name"] == "GeForce, Special"
    assert g["memory_used_bytes"] is None and g["util_percent"] is None and g["power_w"] is None
    assert g["memory_total_bytes"] == 8192 * 1024 * 1024


def test_compute_apps_and_list(fake_gpus):
    fake_gpus.set(2, apps=[{"pid": 4242, "gpu_uuid": "GPU-fake-0001", "used_memory": 100},
                           {"pid": 4243, "gpu_uuid": "GPU-fake-0000", "used_memory": "[N/A]"}])
    apps = resources.query_compute_apps()
    assert apps == [{"pid": 4242, "gpu_uuid": "GPU-fake-0001", "used_memory_bytes": 100 * 1024 * 1024},
                    {"pid": 4243, "gpu_uuid": "GPU-fake-0000", "used_memory_bytes": None}]
    assert resources.list_gpus() == [
        {"index": 0, "name": "NVIDIA Fake GPU", "uuid": "GPU-fake-0000"},
        {"index": 1, "name": "NVIDIA Fake GPU", "uuid": "GPU-fake-0001"},
    ]


def test_units_and_header_are_understood(fake_gpus):
    """A driver that ignores nounits still parses (the fake prints units without it)."""
    out = subprocess.run(["nvidia-smi", "--query-gpu=index,memory.used,utilization.gpu",
                          "--format=csv"], capture_output=True, text=True, check=True).stdout
    header, first = out.splitlines()[:2]
    assert header == "index, memory.used [MiB], utilization.gpu [%]"
    cols = [c.strip() for c in first.split(",")]
    assert resources._num(cols[1]) == 1 and resources._num(cols[2]) == 0


def test_fake_refuses_other_queries(fake_gpus):
    for args in (["-q"], ["-q", "-x"], ["--query-gpu=index", "--format=json"], ["--query-gpu=bogus",
                                                                             "--format=csv"]):
        assert subprocess.run(["nvidia-smi", *args], capture_output=True).returncode != 0


def test_missing_failing_or_hung_driver(fake_gpus, monkeypatch, tmp_path):
    fake_gpus.set(2, fail=True)
    assert resources.query_gpus() == [] and resources.list_gpus() == []
    fake_gpus.set(2, hang=5)
    assert resources.query_gpus(timeout=0.5) == []
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi at all
    assert resources.query_gpus() == [] and resources.query_compute_apps() == []
    assert resources.run_smi(["-L"]) is None


TREE = r"""
import os, subprocess, sys, time
blob = bytearray(%d)
for i in range(0, len(blob), 4096):
    blob[i] = 1
kids = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) for _ in range(2)]
print("ready", flush=True)
time.sleep(60)
"""


def test_tree_sampler_sums_the_tree():
    proc = subprocess.Popen([sys.executable, "-c", TREE % (80 * 1024 * 1024)], stdout=subprocess.PIPE,
                            start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == b"ready"
        sampler = resources.TreeSampler(proc.pid)
        first = sampler.sample()
        assert first["cpu"] is None
        assert first["n"] == 3 and proc.pid in first["pids"]
        assert first["rss"] >= 80 * 1024 * 1024
        second = sampler.sample()
        assert second["cpu"] is not None and second["cpu"] >= 0
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()
    assert resources.TreeSampler(proc.pid).sample() is None


def test_tree_sampler_by_scan_matches_children_files():
    proc = subprocess.Popen([sys.executable, "-c", TREE % 1024], stdout=subprocess.PIPE,
                            start_new_session=True)
    try:
        proc.stdout.readline()
        assert sorted(resources.tree_pids(proc.pid)) == sorted(resources._tree_by_scan(proc.pid))
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()


def test_busy_loop_shows_about_one_core():
    """Compared with psutil's CPU times over the same interval, not with a fixed 100 %:
    the machine may be busy with other work."""
    import psutil

    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
    try:
        ps = psutil.Process(proc.pid)
        sampler = resources.TreeSampler(proc.pid)
        t0, c0 = time.monotonic(), sum(ps.cpu_times()[:2])
        sampler.sample()
        time.sleep(1.0)
        cpu = sampler.sample()["cpu"]
        t1, c1 = time.monotonic(), sum(ps.cpu_times()[:2])
        expected = 100.0 * (c1 - c0) / (t1 - t0)
        assert cpu > 10 and abs(cpu - expected) <= 15, (cpu, expected)
    finally:
        proc.kill()
        proc.wait()


def test_sampler_appends_lines_with_gpus(fake_gpus, tmp_path):
    fake_gpus.set(3, apps=[{"pid": os.getpid(), "gpu_uuid": "GPU-fake-0002", "used_memory": 300}])
    fake_gpus.update_gpu(2, util=55, memory_used=1000)
    path = tmp_path / "resources.jsonl"
    path.write_bytes(b'{"t": 1, "cpu": 5')  # a torn line left by a writer that died
    sampler = resources.Sampler(str(path), root_pid=os.getpid(), gpus=[0, 2], interval=0.05)
    sampler.sample_once()
    sampler.sample_once()
    sampler.stop()
    samples, offset = resources.read_samples(str(path))
    assert offset == path.stat().st_size and len(samples) == 2
    s = samples[1]
    assert set(s["gpu"]) == {"0", "2"}
    assert s["gpu"]["2"]["util"] == 55 and s["gpu"]["2"]["mem"] == 1000 * 1024 * 1024
    assert s["gpu"]["2"]["pmem"] == 300 * 1024 * 1024 and "pmem" not in s["gpu"]["0"]
    assert s["rss"] > 0 and "cpu" in s
    series = resources.series(samples)
    assert set(series) == {"cpu_percent", "rss_bytes", "gpu"}
    assert series["gpu"]["2"]["util_percent"][-1] == [s["t"], 55]
    assert len(series["rss_bytes"]) == 2 and len(series["cpu_percent"]) == 1
    summ = resources.summary(samples)
    assert summ["gpu"]["2"]["mean_util_percent"] == 55 and summ["peak_rss_bytes"] >= s["rss"]
    # compact lines
    last = path.read_bytes().splitlines()[-1]
    assert b" " not in last and json.loads(last) == s


def test_sampler_thread_stops_and_reads_incrementally(tmp_path):
    path = tmp_path / "r.jsonl"
    sampler = resources.Sampler(str(path), root_pid=os.getpid(), interval=0.02).start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(resources.read_samples(str(path))[0]) < 3:
        time.sleep(0.02)
    sampler.stop(final_sample=True)
    samples, offset = resources.read_samples(str(path))
    assert len(samples) >= 4
    more, offset2 = resources.read_samples(str(path), offset)
    assert more == [] and offset2 == offset


def test_sampler_with_nothing_to_sample_writes_nothing(tmp_path):
    path = tmp_path / "r.jsonl"
    sampler = resources.Sampler(str(path), root=lambda: None)
    assert sampler.sample_once() is None
    assert not path.exists()


def test_a_tree_without_memory_maps_records_no_rss(tmp_path):
    """A process caught mid-exec has no memory map yet (0 pages): that is no RSS
    measurement, so the sample has none (a chart would show a false drop to 0).
    Kernel threads (children of kthreadd, pid 2) are real processes with 0 pages."""
    if not os.path.exists("/proc/2/stat") or b"(kthreadd)" not in open("/proc/2/stat", "rb").read():
        pytest.skip("no kthreadd at pid 2 in this kernel/container")
    tree = resources.TreeSampler(2).sample()
    assert tree is not None and tree["rss"] == 0 and tree["n"] >= 1
    path = tmp_path / "r.jsonl"
    sample = resources.Sampler(str(path), root_pid=2).sample_once()
    assert sample is not None and "rss" not in sample and sample["n"] >= 1
    own = resources.Sampler(str(tmp_path / "own.jsonl"), root_pid=os.getpid()).sample_once()
    assert own["rss"] > 0


def test_gpu_cache_file_is_shared(fake_gpus, tmp_path):
    cache_path = str(tmp_path / "gpus.json")
    a = resources.GpuCache(cache_path, max_age=30)
    b = resources.GpuCache(cache_path, max_age=30)
    first = a.get()
    assert len(first["gpus"]) == 2
    fake_gpus.set(4)
    assert b.get() == first  # fresh enough: not asked again
    assert len(resources.GpuCache(cache_path, max_age=0).get()["gpus"]) == 4


def test_agent_resources_is_stdlib_only():
    """Shipped to SSH hosts: only the standard library may be imported."""
    import ast

    tree = ast.parse(open(resources.__file__).read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    assert names <= set(sys.stdlib_module_names) | {"__future__"}


def test_an_exited_unreaped_process_is_not_sampled():
    """A zombie (exited, its parent has not waited yet) holds no memory and no longer
    counts: the root looks gone, rather than a sample of 0 bytes."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with open(f"/proc/{proc.pid}/stat", "rb") as f:
            if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                break
        time.sleep(0.01)
    try:
        assert resources.TreeSampler(proc.pid).sample() is None
    finally:
        proc.wait()
