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
    start WORKDIR ID OFFSET HEARTBEAT [outputs]
                                       the same, spec as one line in, status as frame B out,
                                       then ``follow`` on the same channel
    supervise WORKDIR ID               (detached) run the program, write log and status
    follow WORKDIR ID OFFSET HEARTBEAT the log from byte OFFSET: frames L (raw records),
                                       H (heartbeat), T (status JSON when its state or
                                       reason changed: a Slurm job queued/running),
                                       E (final status JSON, last)
    follow WORKDIR ID OFFSET HEARTBEAT outputs
                                       the same, then after E one ``outputs`` request line
                                       in and the final outputs out (as ``outputs``; with
                                       "resources_from": N first an R frame: the samples
                                       from byte N, as ``resources``)
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

import hashlib
import json
import os
import platform
import shutil
import stat
import subprocess
import sys
import threading
import time

from mldesk.agent import logstore, protocol, resources, runner, slurm
from mldesk.agent.fsutil import is_disk_full, read_json
from mldesk.agent.containers import docker
from mldesk.agent.runner import FINAL_STATES, AgentError, Paths, agent_alive, reset_exec, slurm_resumable

CHUNK = 1 << 20


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
    return read_exact(protocol.frame_length(read_exact(protocol.LENGTH.size)))


def write_frame(payload):
    _OUT.write(protocol.frame(payload))
    _OUT.flush()


def write_typed(kind, payload=b""):
    _OUT.write(protocol.typed(kind, payload))


def jline(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


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


def _disk_error(exc, what):
    if is_disk_full(exc):
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

def cmd_start(workdir, exec_id, offset=None, heartbeat=None, final_outputs=""):
    """Without OFFSET: spec JSON in (to EOF), the status line out. With OFFSET and
    HEARTBEAT (start-and-follow: one channel, one Python start for both): the spec as
    one line in, a STARTED frame with the status out, then ``follow`` from OFFSET."""
    p = Paths(workdir, exec_id)
    if offset is None:
        spec = json.loads(sys.stdin.read())
        status = runner.start(p, spec)
        jline(status)
        return 1 if status.get("state") == "failed" and not status.get("agent_pid") else 0
    spec = json.loads(_IN.readline().decode("utf-8"))
    status = runner.start(p, spec)
    write_typed(protocol.STARTED, json.dumps(status).encode())
    _OUT.flush()
    if status.get("state") == "failed" and not status.get("agent_pid"):
        return 1
    return cmd_follow(workdir, exec_id, offset, heartbeat, final_outputs)


def cmd_supervise(workdir, exec_id, state="", wait=""):
    return runner.supervise(Paths(workdir, exec_id, state or None), wait=(wait == "wait"))


# -- follow --------------------------------------------------------------------------------

def cmd_follow(workdir, exec_id, offset, heartbeat, final_outputs=""):
    """``final_outputs`` "outputs": after END, one request line in (as ``outputs``
    reads it; an empty line or EOF: none) and the outputs out on this channel."""
    p = Paths(workdir, exec_id)
    offset = int(offset)
    heartbeat = max(0.2, float(heartbeat))
    reader = None
    fd = None
    last = time.monotonic()
    write_typed(protocol.HEARTBEAT)
    _OUT.flush()
    lost_since = None
    pause = 0.02
    shown = None  # (state, reason) last sent in a T frame
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
                    write_typed(protocol.LOG, raw)
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
                write_typed(protocol.STATUS, json.dumps(status).encode())
                _OUT.flush()
                last = time.monotonic()
            if status and status.get("state") in FINAL_STATES:
                # the final status is written after the log's last record: one more look
                if reader is None and os.path.exists(p.log):
                    continue
                if reader is not None and reader.read_from(offset, 1)[0]:
                    continue
                write_typed(protocol.END, json.dumps(status).encode())
                _OUT.flush()
                if final_outputs == "outputs":
                    if fd is not None:
                        os.close(fd)
                        fd = None
                    _send_outputs(p, _IN.readline())
                return 0
            if status is None and not os.path.isdir(p.exec_dir):
                write_typed(protocol.END, json.dumps({"state": "lost", "error": "the execution's folder %s is "
                                              "gone from the host" % p.exec_dir}).encode())
                _OUT.flush()
                return 0
            if takeovers < 5 and slurm_resumable(status):
                # the job goes on in Slurm: a new supervising agent takes over following it
                runner.spawn(p)
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
                    write_typed(protocol.END, json.dumps(dict(status, state="lost")).encode())
                    _OUT.flush()
                    return 0
            else:
                lost_since = None
            now = time.monotonic()
            if now - last >= heartbeat:
                write_typed(protocol.HEARTBEAT)
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
    r = runner.request_stop(p, float(grace))
    if not r.get("ok"):
        r["error"] = "no such execution on the host"
    jline(r)
    return 0


# -- outputs -----------------------------------------------------------------------------------

def cmd_outputs(workdir, exec_id):
    """Send the files of outputs/ that differ from what the caller has (the one
    symlink-safe walk of ``outputs``: nothing outside outputs/ is read)."""
    _send_outputs(Paths(workdir, exec_id), _IN.readline())
    return 0


def _send_outputs(p, request_line):
    from mldesk.agent import outputs

    if not request_line.strip():
        return
    req = json.loads(request_line.decode("utf-8"))
    if req.get("resources_from") is not None:  # the follow's end: the last samples first
        write_typed(protocol.SAMPLES, _resource_lines(p, req["resources_from"]))
    outputs.send_outputs(os.path.join(p.workspace, "outputs"), write_typed, have=req.get("have") or {},
                         max_files=req.get("max_files"), max_file_bytes=req.get("max_file_bytes"),
                         max_total_bytes=req.get("max_total_bytes"))
    _OUT.flush()


# -- resources -----------------------------------------------------------------------------------

def cmd_resources(workdir, exec_id, offset):
    """The complete lines of resources.jsonl from byte OFFSET on, raw (nothing when the
    file does not exist yet)."""
    out = getattr(sys.stdout, "buffer", sys.stdout)
    out.write(_resource_lines(Paths(workdir, exec_id), offset))
    out.flush()
    return 0


def _resource_lines(p, offset):
    offset = max(0, int(offset))
    try:
        with open(p.resources, "rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        data = b""
    return data[:data.rfind(b"\n") + 1]


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
    "start": (cmd_start, (2, 4, 5)),
    "supervise": (cmd_supervise, (2, 3, 4)),
    "follow": (cmd_follow, (4, 5)),
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
    nargs = nargs if isinstance(nargs, tuple) else (nargs,)
    if len(argv) - 1 not in nargs:
        sys.stderr.write("agent.py %s takes %s argument(s)\n" % (argv[0], " or ".join(map(str, nargs))))
        return 2
    try:
        return fn(*argv[1:]) or 0
    except AgentError as exc:
        sys.stderr.write("mldesk agent: %s\n" % exc)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
