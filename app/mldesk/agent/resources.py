"""Resource samples of one execution: CPU and memory of its process tree, its GPUs.

Standard library only, Python >= 3.8: this file is shipped to SSH hosts with the
agent and runs there under the host's ``python3``.

- ``query_gpus`` / ``query_compute_apps`` / ``list_gpus``: ``nvidia-smi`` with the
  CSV query formats only (``--query-gpu=...``, ``--query-compute-apps=...``, ``-L``),
  so any host with the NVIDIA driver answers; ``[N/A]``, ``[Not Supported]``, a
  missing binary or a hung driver give ``None`` values or an empty list, never an
  exception.
- ``TreeSampler``: the process tree under a root pid, from ``/proc`` (children via
  ``/proc/PID/task/TID/children``; a full scan where the kernel lacks that file): CPU %
  of the whole tree between two samples (reaped children's time included, through
  ``cutime``/``cstime``), resident memory summed.
- ``Sampler``: every ``interval`` seconds one sample of a tree and its GPUs appended
  to a JSON-lines file next to the execution's log (one ``os.write`` per line on an
  ``O_APPEND`` file, so readers never see half a line except a torn tail after a
  crash, which they skip). ``GpuCache`` lets the samplers of several executions on
  one machine share one ``nvidia-smi`` call per interval.

A sample line::

    {"t": 1764370000.123, "cpu": 99.8, "rss": 210763776, "n": 3,
     "gpu": {"0": {"util": 87.0, "mem": 1610612736, "memt": 85899345920,
                   "temp": 61.0, "pw": 213.4, "pmem": 1572864000}}}

(``pmem``: the GPU memory of the tree's own processes, where the driver reports it.)
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import subprocess
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

GPU_FIELDS = ("index", "name", "uuid", "memory.total", "memory.used", "utilization.gpu",
              "temperature.gpu", "power.draw")
APP_FIELDS = ("pid", "gpu_uuid", "used_memory")
MIB = 1024 * 1024
SMI_TIMEOUT = 5.0

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


# -- nvidia-smi ---------------------------------------------------------------------

def _smi_exe() -> Optional[str]:
    import shutil  # (when asked: importing this module stays cheap for the runner)

    return shutil.which("nvidia-smi")


def run_smi(args: List[str], timeout: float = SMI_TIMEOUT) -> Optional[str]:
    """stdout of ``nvidia-smi ARGS``; None when it is missing, fails or hangs."""
    exe = _smi_exe()
    if not exe:
        return None
    try:
        r = subprocess.run([exe] + list(args), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           stdin=subprocess.DEVNULL, universal_newlines=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    if r.returncode != 0:
        return None
    return r.stdout


def _num(text: str) -> Optional[float]:
    """A CSV value: None for ``[N/A]``, ``[Not Supported]``, ``N/A`` or garbage."""
    text = text.strip()
    if not text or text.startswith("[") or text.upper() == "N/A":
        return None
    for unit in (" MiB", " W", " %", " C"):  # in case a driver ignores nounits
        if text.endswith(unit):
            text = text[: -len(unit)]
    try:
        return float(text)
    except ValueError:
        return None


def _mib(text: str) -> Optional[int]:
    v = _num(text)
    return None if v is None else int(v * MIB)


def _rows(out: Optional[str], width: int) -> List[List[str]]:
    rows = []
    for line in (out or "").splitlines():
        if not line.strip():
            continue
        cols = [c.strip() for c in line.split(",")]
        if len(cols) > width:  # a name with a comma in it: glue it back
            extra = len(cols) - width
            cols = cols[:1] + [", ".join(cols[1:2 + extra])] + cols[2 + extra:]
        if len(cols) == width:
            rows.append(cols)
    return rows


def query_gpus(timeout: float = SMI_TIMEOUT) -> List[Dict[str, Any]]:
    """Every GPU the driver sees; empty when none, no driver or no answer."""
    out = run_smi(["--query-gpu=" + ",".join(GPU_FIELDS), "--format=csv,noheader,nounits"], timeout)
    gpus = []
    for cols in _rows(out, len(GPU_FIELDS)):
        index = _num(cols[0])
        if index is None:
            continue
        gpus.append({
            "index": int(index),
            "name": cols[1],
            "uuid": cols[2],
            "memory_total_bytes": _mib(cols[3]),
            "memory_used_bytes": _mib(cols[4]),
            "util_percent": _num(cols[5]),
            "temperature_c": _num(cols[6]),
            "power_w": _num(cols[7]),
        })
    return gpus


def query_compute_apps(timeout: float = SMI_TIMEOUT) -> List[Dict[str, Any]]:
    """The processes using a GPU: pid, the GPU's uuid, their GPU memory (None where
    the driver does not say, e.g. on some consumer cards)."""
    out = run_smi(["--query-compute-apps=" + ",".join(APP_FIELDS), "--format=csv,noheader,nounits"], timeout)
    apps = []
    for cols in _rows(out, len(APP_FIELDS)):
        pid = _num(cols[0])
        if pid is None:
            continue
        apps.append({"pid": int(pid), "gpu_uuid": cols[1], "used_memory_bytes": _mib(cols[2])})
    return apps


def list_gpus(timeout: float = SMI_TIMEOUT) -> List[Dict[str, Any]]:
    """``nvidia-smi -L``: ``GPU 0: NAME (UUID: GPU-...)`` lines -> index, name, uuid."""
    gpus = []
    for line in (run_smi(["-L"], timeout) or "").splitlines():
        line = line.strip()
        if not line.startswith("GPU "):
            continue
        head, sep, rest = line.partition(":")
        if not sep:
            continue
        try:
            index = int(head[4:].strip())
        except ValueError:
            continue
        name, uuid = rest.strip(), ""
        at = name.rfind("(UUID:")
        if at >= 0:
            uuid = name[at + 6:].rstrip(")").strip()
            name = name[:at].strip()
        gpus.append({"index": index, "name": name, "uuid": uuid})
    return gpus


class GpuCache(object):
    """One ``nvidia-smi`` query per ``max_age`` seconds for every sampler on a machine.

    With a ``path`` the answer is shared between processes through a small JSON file
    (refreshed under an ``flock``, replaced atomically); without, within this process."""

    def __init__(self, path: Optional[str] = None, max_age: float = 1.5,
                 with_apps: bool = True, timeout: float = SMI_TIMEOUT):
        self.path = path
        self.max_age = max_age
        self.with_apps = with_apps
        self.timeout = timeout
        self._mem: Optional[Dict[str, Any]] = None
        self._lock = threading.Lock()

    def _fresh(self, data: Optional[Dict[str, Any]], now: float) -> bool:
        return bool(data) and 0 <= now - data.get("t", 0) < self.max_age

    def _read(self) -> Optional[Dict[str, Any]]:
        if not self.path:
            return self._mem
        try:
            with open(self.path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def _query(self) -> Dict[str, Any]:
        gpus = query_gpus(self.timeout)
        apps = query_compute_apps(self.timeout) if (self.with_apps and gpus) else []
        return {"t": time.time(), "gpus": gpus, "apps": apps}

    def get(self) -> Dict[str, Any]:
        """``{"t", "gpus": [...], "apps": [...]}``, at most ``max_age`` old."""
        with self._lock:
            data = self._read()
            if self._fresh(data, time.time()):
                return data  # type: ignore[return-value]
            if not self.path:
                self._mem = self._query()
                return self._mem
            try:
                os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
                fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
            except OSError:
                return self._query()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                data = self._read()  # someone else may have refreshed it meanwhile
                if self._fresh(data, time.time()):
                    return data  # type: ignore[return-value]
                data = self._query()
                tmp = "%s.%d.tmp" % (self.path, os.getpid())
                try:
                    with open(tmp, "w") as f:
                        json.dump(data, f)
                    os.replace(tmp, self.path)
                except OSError:
                    pass
                return data
            finally:
                os.close(fd)


# -- the process tree -----------------------------------------------------------------

def _read_stat(pid: int) -> Optional[Tuple[int, int, int, int]]:
    """(ppid, cpu ticks incl. reaped children, start time, rss pages) of one process."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rfind(b")") + 2:].split()
    # rest[0] is field 3 (state); utime is field 14 -> rest[11]
    if rest[:1] in ([b"Z"], [b"X"]):  # exited, not yet reaped: no longer part of the program
        return None
    try:
        ticks = int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14])
        return int(rest[1]), ticks, int(rest[19]), int(rest[21])
    except (IndexError, ValueError):
        return None


def _children(pid: int) -> Optional[List[int]]:
    """Direct children of ``pid`` (None: the kernel has no ``children`` files)."""
    kids: List[int] = []
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError as exc:
        return [] if exc.errno in (errno.ENOENT, errno.ESRCH) else None
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/children" % (pid, tid), "rb") as f:
                kids.extend(int(x) for x in f.read().split())
        except FileNotFoundError:
            if not os.path.exists("/proc/%d/task/%s" % (pid, tid)):
                continue  # the thread ended
            return None
        except (OSError, ValueError):
            continue
    return kids


def tree_pids(root: int) -> List[int]:
    """``root`` and all its descendants now alive (empty when ``root`` is gone)."""
    if not os.path.exists("/proc/%d" % root):
        return []
    pids, todo, seen = [], [root], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        pids.append(pid)
        kids = _children(pid)
        if kids is None:
            return _tree_by_scan(root)
        todo.extend(kids)
    return pids


def _tree_by_scan(root: int) -> List[int]:
    parent: Dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _read_stat(int(name))
            if st is not None:
                parent[int(name)] = st[0]
    kids: Dict[int, List[int]] = {}
    for pid, ppid in parent.items():
        kids.setdefault(ppid, []).append(pid)
    out, todo = [], [root] if root in parent else []
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, ()))
    return out


class TreeSampler(object):
    """CPU % and RSS of a process tree; CPU % is over the time since the last sample
    (None on the first one)."""

    def __init__(self, root: int):
        self.root = root
        self._last: Dict[Tuple[int, int], int] = {}
        self._last_t: Optional[float] = None

    def sample(self) -> Optional[Dict[str, Any]]:
        """``{"cpu": %, "rss": bytes, "n": processes, "pids": [...]}``; None when the
        root process is gone."""
        now = time.monotonic()
        pids = tree_pids(self.root)
        ticks: Dict[Tuple[int, int], int] = {}
        rss = 0
        alive = []
        for pid in pids:
            st = _read_stat(pid)
            if st is None:
                continue
            ticks[(pid, st[2])] = st[1]
            rss += st[3] * _PAGE
            alive.append(pid)
        if not alive:
            return None
        cpu = None
        if self._last_t is not None and now > self._last_t:
            delta = 0
            for key, t in ticks.items():
                delta += max(0, t - self._last.get(key, 0))
            cpu = round(100.0 * delta / _CLK_TCK / (now - self._last_t), 1)
        self._last, self._last_t = ticks, now
        return {"cpu": cpu, "rss": rss, "n": len(alive), "pids": alive}


# -- the sampler ------------------------------------------------------------------------

def gpu_entry(gpu: Dict[str, Any], pmem: Optional[int] = None) -> Dict[str, Any]:
    e = {"util": gpu.get("util_percent"), "mem": gpu.get("memory_used_bytes"),
         "memt": gpu.get("memory_total_bytes"), "temp": gpu.get("temperature_c"),
         "pw": gpu.get("power_w")}
    if pmem is not None:
        e["pmem"] = pmem
    return e


class Sampler(object):
    """Appends a sample of a process tree (``root_pid``, or whatever ``root`` returns
    at each tick: a container's init pid, say) and of the GPUs ``gpus`` (nvidia-smi
    indices) to ``path`` every ``interval`` seconds, on a daemon thread."""

    def __init__(self, path: str, root_pid: Optional[int] = None, gpus: Optional[List[int]] = None,
                 interval: float = 2.0, gpu_cache: Optional[GpuCache] = None,
                 root: Optional[Callable[[], Optional[int]]] = None):
        self.path = str(path)
        self.gpus = [int(g) for g in (gpus or [])]
        self.interval = float(interval)
        self.gpu_cache = gpu_cache if gpu_cache is not None else (GpuCache() if self.gpus else None)
        self._root_fn = root
        self._tree = TreeSampler(root_pid) if root_pid else None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._fd: Optional[int] = None

    def _current_tree(self) -> Optional[TreeSampler]:
        if self._root_fn is not None:
            try:
                pid = self._root_fn()
            except Exception:  # noqa: BLE001 - e.g. the container is gone
                pid = None
            if pid and (self._tree is None or self._tree.root != pid):
                self._tree = TreeSampler(pid)
        return self._tree

    def sample_once(self) -> Optional[Dict[str, Any]]:
        """Take one sample and append it; returns it (None when there was nothing to
        sample: no process and no GPU)."""
        t = time.time()
        sample: Dict[str, Any] = {"t": round(t, 3)}
        pids: List[int] = []
        tree = self._current_tree()
        if tree is not None:
            s = tree.sample()
            if s is not None:
                if s["rss"]:  # 0 pages: caught mid-exec (no memory map yet), not a measurement
                    sample["rss"] = s["rss"]
                sample["n"] = s["n"]
                if s["cpu"] is not None:
                    sample["cpu"] = s["cpu"]
                pids = s["pids"]
        if self.gpus and self.gpu_cache is not None:
            data = self.gpu_cache.get()
            by_index = {g["index"]: g for g in data.get("gpus", [])}
            mine = set(pids)
            gpu: Dict[str, Any] = {}
            for index in self.gpus:
                g = by_index.get(index)
                if g is None:
                    continue
                pmem = None
                if mine:
                    used = [a["used_memory_bytes"] for a in data.get("apps", [])
                            if a["pid"] in mine and a["gpu_uuid"] == g.get("uuid")
                            and a["used_memory_bytes"] is not None]
                    if used:
                        pmem = sum(used)
                gpu[str(index)] = gpu_entry(g, pmem)
            if gpu:
                sample["gpu"] = gpu
        if len(sample) == 1:
            return None
        self.append(sample)
        return sample

    def append(self, sample: Dict[str, Any]) -> None:
        line = (json.dumps(sample, separators=(",", ":")) + "\n").encode()
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:  # a torn last line (a writer died mid-line) must not glue onto ours
                if os.fstat(self._fd).st_size > 0:
                    with open(self.path, "rb") as f:
                        f.seek(-1, os.SEEK_END)
                        if f.read(1) != b"\n":
                            os.write(self._fd, b"\n")
            except OSError:
                pass
        os.write(self._fd, line)

    def _loop(self) -> None:
        while True:
            try:
                self.sample_once()
            except Exception:  # noqa: BLE001 - samples are best effort, never fatal
                pass
            if self._stop.wait(self.interval):
                return

    def start(self) -> "Sampler":
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="resource-sampler", daemon=True)
            self._thread.start()
        return self

    def stop(self, final_sample: bool = False) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(SMI_TIMEOUT + 1)
            self._thread = None
        if final_sample:
            try:
                self.sample_once()
            except Exception:  # noqa: BLE001
                pass
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


# -- reading samples back ---------------------------------------------------------------

def read_samples(path: str, offset: int = 0) -> Tuple[List[Dict[str, Any]], int]:
    """The complete sample lines from byte ``offset`` on, and the offset after them
    (a torn or unreadable line is skipped)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return [], offset
    end = data.rfind(b"\n") + 1
    samples = []
    for line in data[:end].splitlines():
        try:
            s = json.loads(line)
        except ValueError:
            continue
        if isinstance(s, dict) and "t" in s:
            samples.append(s)
    return samples, offset + end


def series(samples: List[Dict[str, Any]]) -> Dict[str, Any]:
    """``{"cpu_percent": [[t, v]...], "rss_bytes": [...], "gpu": {"0": {"util_percent",
    "mem_used_bytes", "mem_total_bytes", "temperature_c", "power_w"}}}``."""
    out: Dict[str, Any] = {"cpu_percent": [], "rss_bytes": [], "gpu": {}}
    keys = (("util", "util_percent"), ("mem", "mem_used_bytes"), ("memt", "mem_total_bytes"),
            ("temp", "temperature_c"), ("pw", "power_w"), ("pmem", "process_mem_bytes"))
    for s in samples:
        t = s["t"]
        if s.get("cpu") is not None:
            out["cpu_percent"].append([t, s["cpu"]])
        if s.get("rss") is not None:
            out["rss_bytes"].append([t, s["rss"]])
        for index, g in (s.get("gpu") or {}).items():
            dest = out["gpu"].setdefault(str(index), {"util_percent": [], "mem_used_bytes": []})
            for short, long in keys:
                if g.get(short) is not None:
                    dest.setdefault(long, []).append([t, g[short]])
    return out


def summary(samples: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Peaks and means for an end-of-run summary."""
    s = series(samples)
    cpu = [v for _, v in s["cpu_percent"]]
    rss = [v for _, v in s["rss_bytes"]]
    out: Dict[str, Any] = {
        "samples": len(samples),
        "peak_rss_bytes": max(rss) if rss else None,
        "mean_cpu_percent": round(sum(cpu) / len(cpu), 1) if cpu else None,
        "peak_cpu_percent": max(cpu) if cpu else None,
        "gpu": {},
    }
    for index, g in s["gpu"].items():
        util = [v for _, v in g.get("util_percent", [])]
        mem = [v for _, v in g.get("mem_used_bytes", [])]
        out["gpu"][index] = {
            "mean_util_percent": round(sum(util) / len(util), 1) if util else None,
            "peak_mem_used_bytes": max(mem) if mem else None,
        }
    return out
