"""The agent's commands: ``python3 agent.py COMMAND ARGS...`` on a host.

Standard library only, Python >= 3.8. mldesk copies the ``mldesk.agent`` package to
``WORKDIR/agent/<hash>/`` on the host (with a small ``agent.py`` launcher) and runs it
there over SSH; every command line is built from an argument list and
quoted with ``shlex.quote``, never pasted together from user text.

Host layout (``WORKDIR``, default ``~/.mldesk``)::

    blobs/ab/<sha256>                 snapshot file contents (content-addressed, read-only)
    cache/inputs/...                  the input download cache (see inputs.py)
    executions/<id>/spec.json         what to run (argv, env, runtime, image, ...)
    executions/<id>/workspace/        the snapshot + inputs/ + outputs/
    executions/<id>/log.bin           the program's output, logstore format
    executions/<id>/status.json       state, pids / container, exit code (written atomically)
    executions/<id>/stop.json         a stop request (the supervising agent acts on it)
    executions/<id>/agent.log         the supervising agent's own stdout/stderr

Commands (binary frames on stdin/stdout are ``u32 len | payload``, little endian; the
streams of ``follow`` and ``outputs`` are ``u8 type | u32 len | payload``):

    probe WORKDIR                      JSON: OS, Python, Docker, GPUs, free disk
    upload WORKDIR ID                  frame manifest in, frame {missing} out, the missing
                                       blobs in (in that order, raw), frame {ok} out; then
                                       the workspace is materialised
    put-input WORKDIR ID NAME SHA SIZE a file input from the user's machine (see there)
    fetch WORKDIR ID TIMEOUT RETRIES   one JSON line of [[name, url], ...] in, JSON lines out
                                       (progress, messages, then done or error); a
                                       "cancel" line (or EOF) on stdin cancels
    start WORKDIR ID                   spec JSON in; starts the supervising agent detached
                                       (own session, stdio to files), prints its status
                                       (runtime ``slurm``: the status once sbatch took the job)
    supervise WORKDIR ID               (detached) run the program, write log and status
    follow WORKDIR ID OFFSET HEARTBEAT the log from byte OFFSET: frames L (raw records),
                                       H (heartbeat), S (status JSON when its state or
                                       reason changed: a Slurm job queued/running),
                                       E (final status JSON, last)
    stop WORKDIR ID GRACE              ask for a stop (TERM, KILL after GRACE seconds)
    slurm-info WORKDIR SHARED_CHECK    the profile's Slurm settings (JSON) in; JSON out: sinfo
                                       partitions, scontrol config values and,
                                       when SHARED_CHECK is 1, whether a tiny job sees the
                                       work folder (the ``slurm`` runtime: slurm.py)
    outputs WORKDIR ID                 JSON in ({have, limits}); the changed files of
                                       outputs/ out (frames F, D, f, S, Z)
    resources WORKDIR ID OFFSET        the complete lines of resources.jsonl (the program's
                                       CPU, memory and GPU samples) from byte OFFSET, raw
    cleanup WORKDIR ID                 remove the execution's folder (and container)
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import platform
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time

from mldesk.agent import logstore, resources, slurm

CHUNK = 1 << 20
FINAL_STATES = ("exited", "failed", "stopped")


# The folder that holds the ``mldesk`` package this agent was imported from (on a host:
# WORKDIR/agent/<hash>; locally: the installed app), so a detached agent finds it too.
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def agent_command(*args):
    """argv that runs another agent command with this Python and this package."""
    return [sys.executable, "-m", "mldesk.agent"] + [str(a) for a in args]


def agent_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = PACKAGE_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


class AgentError(Exception):
    pass


# -- paths --------------------------------------------------------------------------------

def _hexname(text, what):
    if not text or not all(c in "0123456789abcdef" for c in text):
        raise AgentError("invalid %s %r" % (what, text))
    return text


class Paths(object):
    def __init__(self, workdir, exec_id=None):
        self.workdir = os.path.abspath(os.path.expanduser(workdir))
        self.blobs = os.path.join(self.workdir, "blobs")
        self.input_cache = os.path.join(self.workdir, "cache", "inputs")
        if exec_id is not None:
            if not exec_id or not all(c.isalnum() or c in "-_" for c in exec_id):
                raise AgentError("invalid execution id %r" % exec_id)
            self.exec_dir = os.path.join(self.workdir, "executions", exec_id)
            self.workspace = os.path.join(self.exec_dir, "workspace")
            self.log = os.path.join(self.exec_dir, "log.bin")
            self.status = os.path.join(self.exec_dir, "status.json")
            self.spec = os.path.join(self.exec_dir, "spec.json")
            self.stop = os.path.join(self.exec_dir, "stop.json")
            self.agent_log = os.path.join(self.exec_dir, "agent.log")
            self.resources = os.path.join(self.exec_dir, resources.SAMPLES_FILE)

    def blob(self, sha):
        _hexname(sha, "blob id")
        if len(sha) != 64:
            raise AgentError("invalid blob id %r" % sha)
        return os.path.join(self.blobs, sha[:2], sha)


def write_json(path, data):
    d = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def safe_rel(rel):
    """A manifest path: relative, no '..', no empty parts."""
    if not isinstance(rel, str) or not rel or rel.startswith("/") or "\0" in rel:
        raise AgentError("invalid path in manifest: %r" % (rel,))
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise AgentError("invalid path in manifest: %r" % (rel,))
    return os.path.join(*parts)


# -- stdio framing -------------------------------------------------------------------------

_IN = sys.stdin.buffer if hasattr(sys.stdin, "buffer") else None
_OUT = sys.stdout.buffer if hasattr(sys.stdout, "buffer") else None


def read_exact(n):
    parts = []
    got = 0
    while got < n:
        b = _IN.read(n - got)
        if not b:
            raise AgentError("stdin ended early (%d of %d bytes)" % (got, n))
        parts.append(b)
        got += len(b)
    return b"".join(parts)


def read_frame():
    size = int.from_bytes(read_exact(4), "little")
    return read_exact(size)


def write_frame(payload):
    _OUT.write(len(payload).to_bytes(4, "little") + payload)
    _OUT.flush()


def write_typed(kind, payload=b""):
    _OUT.write(kind + len(payload).to_bytes(4, "little"))
    if payload:
        _OUT.write(payload)


def jline(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


# -- processes -----------------------------------------------------------------------------

def proc_start_time(pid):
    """The process's start time in clock ticks since boot (guards against pid reuse);
    None when it does not exist or is a zombie (dead, where nobody reaps orphans); 0
    where /proc is missing but the pid exists."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read()
        fields = data[data.rfind(b")") + 2:].split()
        if fields[0] in (b"Z", b"X"):
            return None
        return int(fields[19])
    except (OSError, ValueError, IndexError):
        pass
    if os.path.isdir("/proc/self"):
        return None
    try:
        os.kill(pid, 0)
        return 0
    except ProcessLookupError:
        return None
    except PermissionError:
        return 0


def agent_alive(status):
    pid = (status or {}).get("agent_pid")
    if not pid:
        return False
    now = proc_start_time(pid)
    return now is not None and (not now or now == status.get("agent_start"))


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def kill_group(pgid, grace, gone=None):
    """TERM to the group, KILL after ``grace`` seconds if anything is left."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if (gone is not None and gone()) or not group_alive(pgid):
            break
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def docker(*args, **kw):
    return subprocess.run(["docker"] + list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, **kw)


def normalise_exit(code):
    return 128 - code if code < 0 else code


# -- probe ---------------------------------------------------------------------------------

def cmd_probe(workdir):
    p = Paths(workdir)
    info = {"workdir": p.workdir, "python": platform.python_version(), "python_exe": sys.executable}
    u = os.uname()
    info["kernel"] = "%s %s %s" % (u.sysname, u.release, u.machine)
    pretty = None
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    pretty = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    if pretty is None and u.sysname == "Darwin":
        pretty = "macOS " + platform.mac_ver()[0]
    info["os"] = pretty or u.sysname
    if shutil.which("docker") is None:
        info["docker"] = None
        info["docker_error"] = "docker is not installed"
    else:
        try:
            r = docker("version", "--format", "{{.Server.Version}}", timeout=15)
            if r.returncode == 0 and r.stdout.strip():
                info["docker"] = r.stdout.strip()
            else:
                info["docker"] = None
                err = (r.stderr or r.stdout).strip().splitlines()
                info["docker_error"] = err[-1] if err else "docker version failed"
        except subprocess.TimeoutExpired:
            info["docker"] = None
            info["docker_error"] = "the Docker daemon did not answer within 15 s"
    info["gpus"] = []
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            r = subprocess.run([smi, "--query-gpu=name,memory.total", "--format=csv,noheader"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                               timeout=15)
            if r.returncode == 0:
                info["gpus"] = [l.strip() for l in r.stdout.splitlines() if l.strip()]
                # index, name, memory and current use of each (mldesk hosts status)
                info["gpu_devices"] = resources.query_gpus(timeout=15)
            else:
                info["gpu_error"] = (r.stderr or r.stdout).strip()[:200]
        except (OSError, subprocess.TimeoutExpired) as exc:
            info["gpu_error"] = str(exc)
    else:
        info["gpu_error"] = "nvidia-smi not found"
    path = p.workdir
    while not os.path.isdir(path):
        path = os.path.dirname(path)
    st = os.statvfs(path)
    info["disk_free"] = st.f_bavail * st.f_frsize
    info["disk_path"] = path
    print(json.dumps(info))


# -- upload --------------------------------------------------------------------------------

def have_blob(p, sha, size):
    try:
        return os.stat(p.blob(sha)).st_size == size
    except OSError:
        return False


def reset_exec(p):
    """Make sure nothing of an earlier attempt of this execution is left: its program
    (or container) and supervising agent are killed, its folder removed."""
    status = read_json(p.status) or {}
    spec = read_json(p.spec) or {}
    if status.get("pgid") and agent_alive(status):
        kill_group(status["pgid"], 0)
    if agent_alive(status):
        try:
            os.kill(status["agent_pid"], signal.SIGKILL)
        except OSError:
            pass
    if status.get("slurm_job") and status.get("state") not in FINAL_STATES:
        slurm.cancel(status["slurm_job"], slurm.job_env(spec), kill=True)
    if spec.get("runtime") == "docker" or status.get("container"):
        try:
            docker("rm", "-f", status.get("container") or spec.get("container_name") or "", timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            pass
    if os.path.isdir(p.exec_dir):
        shutil.rmtree(p.exec_dir, ignore_errors=True)


def _disk_error(exc, what):
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return AgentError("the host's disk is full while writing %s" % what)
    return AgentError("cannot write %s on the host: %s" % (what, exc.strerror or exc))


def receive_blob(p, sha, size, buf):
    """Read ``size`` bytes of stdin into the blob store, verified (sha256): written to
    a temporary name, renamed into place only when complete and correct."""
    target = p.blob(sha)
    d = os.path.dirname(target)
    try:
        try:
            fd = os.open(target + ".in-%d" % os.getpid(), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o444)
        except FileNotFoundError:
            os.makedirs(d, exist_ok=True)
            fd = os.open(target + ".in-%d" % os.getpid(), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o444)
    except OSError as exc:
        raise _disk_error(exc, "the blob store")
    tmp = target + ".in-%d" % os.getpid()
    try:
        h = hashlib.sha256()
        left = size
        view = memoryview(buf)
        while left:
            n = _IN.readinto(view[:min(len(buf), left)])
            if not n:
                raise AgentError("the upload ended early (blob %s: %d bytes missing)" % (sha[:12], left))
            chunk = view[:n]
            h.update(chunk)
            try:
                _write_all(fd, chunk)
            except OSError as exc:
                raise _disk_error(exc, "the blob store")
            left -= n
        os.close(fd)
        fd = None
        if h.hexdigest() != sha:
            raise AgentError("the upload of blob %s arrived damaged (checksum mismatch)" % sha[:12])
        os.replace(tmp, target)
    except BaseException:
        if fd is not None:
            os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _write_all(fd, view):
    while view:
        n = os.write(fd, view)
        view = view[n:]


class Copier(object):
    """Copies blobs into the workspace in worker threads (a kernel-side copy: the
    threads run while the main thread receives the next blobs)."""

    def __init__(self, p, workers=2):
        from concurrent.futures import ThreadPoolExecutor

        self.p = p
        self.pool = ThreadPoolExecutor(max_workers=workers)
        self.futures = []

    reflink = True  # until the file system says it cannot (btrfs, xfs: instant copies)

    def _copy(self, sha, dests):
        src = self.p.blob(sha)
        for dest, mode in dests:
            try:
                if not (Copier.reflink and self._clone(src, dest)):
                    shutil.copyfile(src, dest)
                os.chmod(dest, (mode & 0o7777) | stat.S_IWUSR)
            except OSError as exc:
                raise _disk_error(exc, dest)

    @staticmethod
    def _clone(src, dest):
        """A copy-on-write clone (FICLONE) where the file system has them."""
        try:
            import fcntl
        except ImportError:
            Copier.reflink = False
            return False
        ficlone = 0x40049409
        sfd = os.open(src, os.O_RDONLY)
        try:
            dfd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                fcntl.ioctl(dfd, ficlone, sfd)
                return True
            except OSError:
                Copier.reflink = False
                return False
            finally:
                os.close(dfd)
        finally:
            os.close(sfd)

    def submit(self, sha, dests):
        self.futures.append(self.pool.submit(self._copy, sha, dests))
        if len(self.futures) > 256:  # surface errors early, keep the list short
            done = [f for f in self.futures if f.done()]
            for f in done:
                f.result()
            self.futures = [f for f in self.futures if not f.done()]

    def finish(self):
        try:
            for f in self.futures:
                f.result()
        finally:
            self.pool.shutdown(wait=True)


def cmd_upload(workdir, exec_id):
    p = Paths(workdir, exec_id)
    manifest = json.loads(read_frame().decode("utf-8"))
    files = manifest["files"]
    sizes = {}
    dests = {}
    links = []
    for rel, e in files.items():
        path = os.path.join(p.workspace, safe_rel(rel))
        if e[0] == "link":
            links.append((path, e[1]))
        else:
            sizes[e[0]] = int(e[1])
            dests.setdefault(e[0], []).append((path, int(e[2])))
    missing = [sha for sha in sorted(sizes) if not have_blob(p, sha, sizes[sha])]
    write_frame(json.dumps({"missing": missing}).encode())
    t0 = time.time()
    received = 0
    try:
        reset_exec(p)
        folders = set(os.path.dirname(path) for ds in dests.values() for path, _ in ds)
        folders.update(os.path.dirname(path) for path, _ in links)
        for d in sorted(folders):
            os.makedirs(d, exist_ok=True)
        os.makedirs(p.workspace, exist_ok=True)
        copier = Copier(p)
        try:
            miss = set(missing)
            for sha in sorted(dests):
                if sha not in miss:
                    copier.submit(sha, dests[sha])
            buf = bytearray(CHUNK)
            for sha in missing:
                receive_blob(p, sha, sizes[sha], buf)
                received += sizes[sha]
                copier.submit(sha, dests[sha])
            t_received = time.time()
        finally:
            copier.finish()
        for path, target in links:
            os.symlink(target, path)
        for sub in ("inputs", "outputs"):
            path = os.path.join(p.workspace, sub)
            if os.path.islink(path) or (os.path.exists(path) and not os.path.isdir(path)):
                os.unlink(path)
            os.makedirs(path, exist_ok=True)
    except AgentError as exc:
        write_frame(json.dumps({"error": str(exc)}).encode())
        return 1
    except OSError as exc:
        write_frame(json.dumps({"error": str(_disk_error(exc, "the workspace"))}).encode())
        return 1
    write_frame(json.dumps({"ok": True, "received": len(missing), "bytes": received, "workspace": p.workspace,
                            "receive_seconds": round(t_received - t0, 3),
                            "workspace_seconds": round(time.time() - t_received, 3)}).encode())
    return 0


# -- inputs --------------------------------------------------------------------------------

def cmd_fetch(workdir, exec_id, timeout, retries):
    from mldesk.agent import inputs

    p = Paths(workdir, exec_id)
    specs = json.loads(_IN.readline().decode("utf-8"))
    limits = {}
    if isinstance(specs, dict):  # {"specs": [...], "max_bytes": N, "min_rate": R}
        limits = {k: specs[k] for k in ("max_bytes", "min_rate") if k in specs}
        specs = specs.get("specs") or []
    cancel = threading.Event()

    def watch_stdin():
        while True:
            line = _IN.readline()
            if not line or line.strip() == b"cancel":
                cancel.set()
                return

    threading.Thread(target=watch_stdin, daemon=True).start()
    lock = threading.Lock()

    def progress(pr):
        with lock:
            jline({"progress": dict(pr._asdict())})

    def message(text):
        with lock:
            jline({"message": text})

    try:
        inputs.fetch_inputs(specs, os.path.join(p.workspace, "inputs"), cache_dir=p.input_cache,
                            on_progress=progress, on_message=message, cancel=cancel,
                            timeout=float(timeout), retries=int(retries), **limits)
    except inputs.InputsCancelled:
        jline({"cancelled": True})
        return 1
    except inputs.InputError as exc:
        jline({"error": str(exc)})
        return 1
    jline({"done": True})
    return 0


def cmd_put_input(workdir, exec_id, name, sha, size):
    """A local file input (file:// on the user's machine): frame {need} out; when the
    host lacks the blob, SIZE raw bytes in; then the blob becomes inputs/NAME (atomic)."""
    from mldesk.agent import inputs

    p = Paths(workdir, exec_id)
    problem = inputs.validate_name(name)
    if problem:
        raise AgentError("invalid input name %r: %s" % (name, problem))
    size = int(size)
    need = not have_blob(p, sha, size)
    write_frame(json.dumps({"need": need}).encode())
    try:
        if need:
            receive_blob(p, sha, size, bytearray(CHUNK))
        dest_dir = os.path.join(p.workspace, "inputs")
        os.makedirs(dest_dir, exist_ok=True)
        tmp = os.path.join(dest_dir, "." + name[:180] + ".part-mldesk")
        shutil.copyfile(p.blob(sha), tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, os.path.join(dest_dir, name))
    except AgentError as exc:
        write_frame(json.dumps({"error": str(exc)}).encode())
        return 1
    except OSError as exc:
        write_frame(json.dumps({"error": str(_disk_error(exc, "inputs/" + name))}).encode())
        return 1
    write_frame(json.dumps({"ok": True, "sent": need}).encode())
    return 0


# -- start / supervise ---------------------------------------------------------------------

def cmd_start(workdir, exec_id):
    p = Paths(workdir, exec_id)
    spec = json.loads(sys.stdin.read())
    if not os.path.isdir(p.workspace):
        jline({"state": "failed", "error": "the workspace %s is missing on the host" % p.workspace})
        return 1
    status = read_json(p.status)
    if status and (agent_alive(status) or status.get("state") in FINAL_STATES):
        jline(status)  # already started (a second start after a lost answer)
        return 0
    spec["container_name"] = "mldesk-" + exec_id
    write_json(p.spec, spec)
    proc = spawn_supervisor(p, exec_id)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status = read_json(p.status)
        if status and status.get("state") != "starting":
            jline(status)
            return 0
        if proc.poll() is not None:
            status = read_json(p.status)
            if status and status.get("state") != "starting":
                jline(status)
                return 0
            try:
                with open(p.agent_log) as f:
                    tail = f.read()[-2000:].strip().splitlines()
            except OSError:
                tail = []
            jline({"state": "failed", "error": "mldesk's agent on the host died at start: %s"
                   % (tail[-1] if tail else "exit code %s" % proc.returncode)})
            return 1
        time.sleep(0.05)
    jline({"state": "failed", "error": "the program did not start within 300 s"})
    return 1


def spawn_supervisor(p, exec_id):
    """The supervising agent, detached (own session, stdio to agent.log)."""
    with open(p.agent_log, "ab") as log:
        return subprocess.Popen(agent_command("supervise", p.workdir, exec_id),
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=p.exec_dir,
                                env=agent_env(), start_new_session=True, close_fds=True)


def slurm_resumable(status):
    """A Slurm job whose supervising agent died (killed, login node rebooted): the job
    goes on in Slurm, so a new agent can take over following it."""
    return bool(status and status.get("slurm_job") and status.get("state") in ("queued", "running")
                and not agent_alive(status))


class Supervisor(object):
    def __init__(self, p, resume=None):
        self.p = p
        self.spec = read_json(p.spec)
        self.resume = resume  # the status of a Slurm job to take over
        self.status = dict(resume or {"state": "starting", "runtime": self.spec["runtime"]},
                           agent_pid=os.getpid(), agent_start=proc_start_time(os.getpid()))
        self.stopping = threading.Event()
        self.done = threading.Event()
        self.sampler = None

    def start_sampler(self, **root):
        """Resource samples of the program (and its GPUs) every 2 s into resources.jsonl;
        the app pulls them with the ``resources`` command."""
        try:
            gpus = [int(g) for g in (self.spec.get("gpu_ids") or [])]
            cache = resources.GpuCache(os.path.join(self.p.workdir, "cache", "gpus.json")) if gpus else None
            self.sampler = resources.Sampler(self.p.resources, gpus=gpus, gpu_cache=cache,
                                             interval=float(self.spec.get("sample_interval") or 2.0),
                                             **root).start()
        except Exception:  # noqa: BLE001 - no samples is no reason to fail the program
            self.sampler = None

    def stop_sampler(self):
        if self.sampler is not None:
            self.sampler.stop()
            self.sampler = None

    def save(self, **kw):
        self.status.update(kw)
        write_json(self.p.status, self.status)

    def stop_requested(self):
        return read_json(self.p.stop)

    def run(self):
        self.save()
        if self.stop_requested() and not self.resume:
            self.save(state="stopped", exit_code=None, finished_at=time.time(),
                      error="stopped before the program started")
            return
        writer = logstore.LogWriter(self.p.log)
        try:
            if self.spec["runtime"] == "docker":
                code = self.run_docker(writer)
            elif self.spec["runtime"] == "slurm":
                code = self.run_slurm(writer)
            else:
                code = self.run_process(writer)
        except AgentError as exc:
            writer.close()
            self.save(state="failed", error=str(exc), finished_at=time.time())
            return
        except Exception as exc:  # noqa: BLE001 - recorded for the app to show
            writer.close()
            self.save(state="failed", error="mldesk's agent failed: %s: %s" % (type(exc).__name__, exc),
                      finished_at=time.time())
            raise
        writer.close()
        self.save(state="exited", exit_code=code, finished_at=time.time())

    def watch_stop(self, act):
        while not self.done.wait(0.1):
            req = self.stop_requested()
            if req:
                self.stopping.set()
                act(float(req.get("grace", 10)))
                return

    def run_process(self, writer):
        spec = self.spec
        ws = self.p.workspace
        venv = os.path.join(ws, ".venv", "bin", "python")
        python = venv if os.path.exists(venv) else (spec.get("python") or "python3")
        from mldesk.agent.envpolicy import host_env

        env = host_env(os.environ)  # never the rest of the agent's environment (SSH_AUTH_SOCK...)
        env.update(spec.get("env") or {})
        try:
            proc = subprocess.Popen([python, "main.py"] + list(spec["argv"]), cwd=ws, env=env,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, start_new_session=True, close_fds=True)
        except OSError as exc:
            raise AgentError("could not start %s on the host: %s" % (python, exc.strerror or exc))
        self.save(state="running", pid=proc.pid, pgid=proc.pid, python=python, started_at=time.time())
        self.start_sampler(root_pid=proc.pid)
        t = threading.Thread(target=self.watch_stop,
                             args=(lambda grace: kill_group(proc.pid, grace),), daemon=True)
        t.start()
        try:
            logstore.pump(proc.stdout, proc.stderr, writer.write, proc)
            code = normalise_exit(proc.wait())
        finally:
            self.done.set()
            self.stop_sampler()
        return code

    def run_slurm(self, writer):
        job = slurm.SlurmJob(self.spec, self.p.exec_dir, self.p.workspace, self.save,
                             self.stop_requested, writer.write, (logstore.STDOUT, logstore.STDERR))
        try:
            if self.resume:
                # what of the job's output files log.bin holds already: exactly its
                # stdout and stderr bytes (the agent writes nothing else there)
                done = {logstore.STDOUT: 0, logstore.STDERR: 0}
                with logstore.LogReader(self.p.log) as reader:
                    for rec in reader.iter_records():
                        if rec.stream in done:
                            done[rec.stream] += len(rec.data)
                job.take_over(self.resume, done[logstore.STDOUT], done[logstore.STDERR])
            else:
                job.submit()
            code = job.follow()
        except slurm.SlurmError as exc:
            raise AgentError(str(exc))
        finally:
            self.done.set()
        self.status["reason"] = None
        return code

    def run_docker(self, writer):
        spec = self.spec
        name = spec["container_name"]
        ws = self.p.workspace
        if ":" in ws:
            raise AgentError("the host's work folder %s holds ':', which docker -v cannot take; "
                             "choose another work folder for this host" % ws)
        cmd = ["run", "-d", "--init", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
               "--tmpfs", "/tmp:rw,exec,nosuid,size=1g", "--network", spec.get("network") or "bridge",
               "-v", ws + ":/workspace", "-v", os.path.join(ws, "inputs") + ":/workspace/inputs:ro",
               "-w", "/workspace",
               "--label", "mldesk.execution=" + spec["exec_id"], "--name", name]
        for k, v in sorted((spec.get("env") or {}).items()):
            if k != "CUDA_VISIBLE_DEVICES":  # the container numbers its own GPUs from 0
                cmd += ["-e", "%s=%s" % (k, v)]
        if os.getuid() != 0:
            cmd += ["--user", "%d:%d" % (os.getuid(), os.getgid())]
        if spec.get("gpu_ids"):  # exactly the execution's GPUs (a device request with device ids)
            cmd += ["--gpus", '"device=%s"' % ",".join(str(int(g)) for g in spec["gpu_ids"])]
        elif spec.get("gpus") and spec.get("gpu_ids") is None:
            cmd += ["--gpus", "all"]
        cmd += ["--", spec["image"], "python", "main.py"] + list(spec["argv"])  # never a flag
        r = docker(*cmd, timeout=600)
        if r.returncode != 0:
            text = (r.stderr or r.stdout).strip()
            if (spec.get("gpus") or spec.get("gpu_ids")) and ("gpu" in text.lower() or "device driver" in text):
                raise AgentError("Docker on the host cannot give the container a GPU (%s); install the "
                                 "NVIDIA Container Toolkit there, or turn GPUs off for this host" % text)
            raise AgentError("Docker on the host could not start the container: %s" % text)
        cid = r.stdout.strip().splitlines()[-1]
        self.save(state="running", container=cid, started_at=time.time())
        self.start_sampler(root=_container_root(cid, spec["exec_id"]))
        logs = subprocess.Popen(["docker", "logs", "-f", cid], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        grace_box = []

        def stop(grace):
            grace_box.append(grace)
            docker("stop", "-t", str(max(0, int(round(grace)))), cid)

        t = threading.Thread(target=self.watch_stop, args=(stop,), daemon=True)
        t.start()
        waited = {}

        def wait():
            r = docker("wait", cid)
            waited["code"] = r.stdout.strip()
            waited["err"] = r.stderr.strip()
            # `docker logs -f` ends with the container; bound it in case it does not
            deadline = time.monotonic() + 5
            while logs.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            if logs.poll() is None:
                logs.terminate()

        w = threading.Thread(target=wait, daemon=True)
        w.start()
        try:
            logstore.pump(logs.stdout, logs.stderr, writer.write)
            logs.wait()
            w.join()
        finally:
            self.done.set()
            self.stop_sampler()
        try:
            return int(waited.get("code"))
        except (TypeError, ValueError):
            raise AgentError("lost the container (docker wait: %s)" % (waited.get("err") or "no exit code"))


def _container_root(cid, exec_id):
    """The container's init pid on this host (checked by the execution id in its
    environment), looked up once and again only when that process is gone."""
    found = {}

    def root():
        pid = found.get("pid")
        if pid and os.path.exists("/proc/%d" % pid):
            return pid
        r = docker("inspect", "--format", "{{.State.Pid}}", cid, timeout=30)
        try:
            pid = int(r.stdout.strip())
        except ValueError:
            return None
        try:
            with open("/proc/%d/environ" % pid, "rb") as f:
                mine = ("MLDESK_EXECUTION_ID=%s" % exec_id).encode() in f.read().split(b"\0")
        except OSError:
            mine = False
        if pid and mine:
            found["pid"] = pid
            return pid
        return None

    return root


def cmd_supervise(workdir, exec_id):
    import fcntl

    p = Paths(workdir, exec_id)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # nohup
    # one supervising agent per execution (a Slurm take-over may be asked twice at once)
    lock = os.open(os.path.join(p.exec_dir, "supervise.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return 0
    status = read_json(p.status)
    Supervisor(p, resume=status if slurm_resumable(status) else None).run()
    return 0


# -- follow --------------------------------------------------------------------------------

def cmd_follow(workdir, exec_id, offset, heartbeat):
    p = Paths(workdir, exec_id)
    offset = int(offset)
    heartbeat = max(0.2, float(heartbeat))
    reader = None
    fd = None
    last = time.monotonic()
    write_typed(b"H")
    _OUT.flush()
    lost_since = None
    pause = 0.02
    shown = None  # (state, reason) last sent in an S frame
    takeovers = 0  # new supervising agents started for a Slurm job (a few, not a crash loop)
    try:
        while True:
            if reader is None and os.path.exists(p.log):
                reader = logstore.LogReader(p.log)
                fd = os.open(p.log, os.O_RDONLY)
            sent = False
            if reader is not None:
                records, nxt = reader.read_from(offset, 2 << 20)
                if records:
                    raw = os.pread(fd, nxt - offset, offset)
                    write_typed(b"L", raw)
                    _OUT.flush()
                    offset = nxt
                    last = time.monotonic()
                    sent = True
            if sent:
                pause = 0.02
                continue
            status = read_json(p.status)
            if status and status.get("state") in ("queued", "running") and \
                    (status.get("state"), status.get("reason")) != shown:
                shown = (status.get("state"), status.get("reason"))
                write_typed(b"S", json.dumps(status).encode())
                _OUT.flush()
                last = time.monotonic()
            if status and status.get("state") in FINAL_STATES:
                # the final status is written after the log's last record: one more look
                if reader is None and os.path.exists(p.log):
                    continue
                if reader is not None and reader.read_from(offset, 1)[0]:
                    continue
                write_typed(b"E", json.dumps(status).encode())
                _OUT.flush()
                return 0
            if status is None and not os.path.isdir(p.exec_dir):
                write_typed(b"E", json.dumps({"state": "lost", "error": "the execution's folder %s is "
                                              "gone from the host" % p.exec_dir}).encode())
                _OUT.flush()
                return 0
            if takeovers < 5 and slurm_resumable(status):
                # the job goes on in Slurm: a new supervising agent takes over following it
                spawn_supervisor(p, exec_id)
                takeovers += 1
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and not agent_alive(read_json(p.status)):
                    time.sleep(0.05)
                continue
            if status is not None and not agent_alive(status):
                # dead without a final status (host rebooted, agent killed): confirm twice
                if lost_since is None:
                    lost_since = time.monotonic()
                elif time.monotonic() - lost_since > 1.0:
                    write_typed(b"E", json.dumps(dict(status, state="lost")).encode())
                    _OUT.flush()
                    return 0
            else:
                lost_since = None
            now = time.monotonic()
            if now - last >= heartbeat:
                write_typed(b"H")
                _OUT.flush()
                last = now
            time.sleep(pause)
            pause = min(0.2, pause * 1.5)  # quick after output, easy on an idle host
    except (BrokenPipeError, ConnectionResetError):
        return 0
    finally:
        if fd is not None:
            os.close(fd)


# -- stop ------------------------------------------------------------------------------------

def cmd_stop(workdir, exec_id, grace):
    p = Paths(workdir, exec_id)
    grace = float(grace)
    if not os.path.isdir(p.exec_dir):
        jline({"ok": False, "error": "no such execution on the host"})
        return 0
    if not os.path.exists(p.stop):
        write_json(p.stop, {"grace": grace, "at": time.time()})
    status = read_json(p.status) or {}
    if status.get("state") in FINAL_STATES or agent_alive(status):
        jline({"ok": True, "agent": agent_alive(status)})
        return 0
    # the supervising agent is gone: act ourselves
    if status.get("slurm_job"):
        slurm.cancel(status["slurm_job"], slurm.job_env(read_json(p.spec) or {}))
    elif status.get("container"):
        docker("stop", "-t", str(max(0, int(round(grace)))), status["container"])
    elif status.get("pgid"):
        kill_group(status["pgid"], grace)
    jline({"ok": True, "agent": False})
    return 0


# -- outputs -----------------------------------------------------------------------------------

_O_FILE = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
_O_DIR = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_DIRECTORY", 0)
LINK_REASON = "symbolic link (links are not followed)"


def _kind(mode):
    if stat.S_ISFIFO(mode):
        return "named pipe"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


def cmd_outputs(workdir, exec_id):
    """Send the files of outputs/ that differ from what the caller has. Every folder
    and file is opened relative to its parent's descriptor with O_NOFOLLOW, so no link
    is ever followed and nothing outside outputs/ is read."""
    p = Paths(workdir, exec_id)
    req = json.loads(_IN.readline().decode("utf-8"))
    have = req.get("have") or {}
    max_files = req.get("max_files")
    max_file_bytes = req.get("max_file_bytes")
    max_total = req.get("max_total_bytes")
    root = os.path.join(p.workspace, "outputs")
    totals = {"files": 0, "bytes": 0, "sent": 0, "sent_bytes": 0}

    def skip(rel, reason):
        write_typed(b"S", json.dumps({"path": rel, "reason": reason}).encode())

    def over(size):
        if max_file_bytes is not None and size > max_file_bytes:
            return "%d bytes is over the per-file limit of %d bytes" % (size, max_file_bytes)
        if max_files is not None and totals["files"] >= max_files:
            return "over the limit of %d files" % max_files
        if max_total is not None and totals["bytes"] + size > max_total:
            return "would go over the total size limit of %d bytes" % max_total
        return None

    def send_file(rel, fd, st):
        size = st.st_size
        write_typed(b"F", json.dumps({"path": rel, "size": size, "mtime_ns": st.st_mtime_ns,
                                      "mode": stat.S_IMODE(st.st_mode)}).encode())
        done = 0
        error = None
        while done < size:
            try:
                buf = os.read(fd, min(CHUNK, size - done))
            except OSError as exc:
                error = "cannot read: %s" % (exc.strerror or exc)
                break
            if not buf:
                break  # truncated meanwhile: what was there
            write_typed(b"D", buf)
            done += len(buf)
        write_typed(b"f", json.dumps({"ok": error is None, "size": done, "error": error}).encode())
        totals["sent"] += 1
        totals["sent_bytes"] += done

    try:
        top = os.open(root, _O_DIR)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            skip("", LINK_REASON if exc.errno in (errno.ELOOP, errno.ENOTDIR) else str(exc.strerror))
        write_typed(b"Z", json.dumps(totals).encode())
        _OUT.flush()
        return 0
    stack = [(top, "")]
    while stack:
        dfd, rel_dir = stack.pop()
        try:
            names = sorted(os.listdir(dfd))
            subdirs = []
            for name in names:
                rel = rel_dir + "/" + name if rel_dir else name
                try:
                    st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                except OSError:
                    skip(rel, "vanished while collecting")
                    continue
                if stat.S_ISLNK(st.st_mode):
                    skip(rel, LINK_REASON)
                elif stat.S_ISDIR(st.st_mode):
                    try:
                        sub = os.open(name, _O_DIR, dir_fd=dfd)
                    except OSError as exc:
                        skip(rel, LINK_REASON if exc.errno in (errno.ELOOP, errno.ENOTDIR) else
                             "cannot read: %s" % exc.strerror)
                        continue
                    write_typed(b"d", json.dumps({"path": rel}).encode())
                    subdirs.append((sub, rel))
                elif stat.S_ISREG(st.st_mode):
                    reason = over(st.st_size)
                    if reason:
                        skip(rel, reason)
                        continue
                    try:
                        fd = os.open(name, _O_FILE, dir_fd=dfd)
                    except OSError as exc:
                        skip(rel, LINK_REASON if exc.errno == errno.ELOOP else "cannot read: %s" % exc.strerror)
                        continue
                    try:
                        fst = os.fstat(fd)
                        if not stat.S_ISREG(fst.st_mode):
                            skip(rel, "not a regular file (%s)" % _kind(fst.st_mode))
                            continue
                        totals["files"] += 1
                        totals["bytes"] += fst.st_size
                        if have.get(rel) == [fst.st_size, fst.st_mtime_ns]:
                            continue
                        send_file(rel, fd, fst)
                    finally:
                        os.close(fd)
                else:
                    skip(rel, "not a regular file (%s)" % _kind(st.st_mode))
            stack.extend(reversed(subdirs))
        finally:
            os.close(dfd)
    write_typed(b"Z", json.dumps(totals).encode())
    _OUT.flush()
    return 0


# -- resources -----------------------------------------------------------------------------------

def cmd_resources(workdir, exec_id, offset):
    """The complete lines of resources.jsonl from byte OFFSET on, raw (nothing when the
    file does not exist yet)."""
    p = Paths(workdir, exec_id)
    offset = max(0, int(offset))
    try:
        with open(p.resources, "rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        data = b""
    data = data[:data.rfind(b"\n") + 1]
    out = getattr(sys.stdout, "buffer", sys.stdout)
    out.write(data)
    out.flush()
    return 0


# -- cleanup -------------------------------------------------------------------------------------

def cmd_cleanup(workdir, exec_id):
    p = Paths(workdir, exec_id)
    reset_exec(p)
    jline({"ok": True})
    return 0


def cmd_slurm_info(workdir, shared_check):
    p = Paths(workdir)
    text = sys.stdin.read().strip()
    settings = json.loads(text) if text else {}
    env = slurm.job_env({"slurm": settings})
    info = slurm.cluster_info(env)
    if shared_check == "1" and not info.get("error"):
        info["shared"] = slurm.check_shared(p.workdir, settings, env)
    print(json.dumps(info))
    return 0


COMMANDS = {
    "probe": (cmd_probe, 1),
    "slurm-info": (cmd_slurm_info, 2),
    "upload": (cmd_upload, 2),
    "fetch": (cmd_fetch, 4),
    "start": (cmd_start, 2),
    "supervise": (cmd_supervise, 2),
    "follow": (cmd_follow, 4),
    "stop": (cmd_stop, 3),
    "outputs": (cmd_outputs, 2),
    "cleanup": (cmd_cleanup, 2),
    "put-input": (cmd_put_input, 5),
    "resources": (cmd_resources, 3),
}


def main(argv):
    if len(argv) < 1 or argv[0] not in COMMANDS:
        sys.stderr.write("usage: agent.py %s ...\n" % "|".join(sorted(COMMANDS)))
        return 2
    fn, nargs = COMMANDS[argv[0]]
    if len(argv) - 1 != nargs:
        sys.stderr.write("agent.py %s takes %d argument(s)\n" % (argv[0], nargs))
        return 2
    try:
        return fn(*argv[1:]) or 0
    except AgentError as exc:
        sys.stderr.write("mldesk agent: %s\n" % exc)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
