"""File-system and process helpers of the agent floor (stdlib only): atomic writes, sizes, group kill, exit codes.

Standard library only, Python >= 3.8: shipped to SSH hosts with the rest of
``mldesk.agent``. Everything above (core, runtimes, engine, front ends) imports these
instead of keeping its own copy.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import time

__all__ = [
    "mkstemp", "which", "process_umask", "write_json", "read_json", "write_bytes", "unlink_quiet", "human_bytes", "is_disk_full",
    "group_alive", "kill_group", "normalise_exit", "proc_start_time", "pid_alive",
]


# -- atomic writes -----------------------------------------------------------------------

def mkstemp(folder, prefix=".tmp-", mode=0o600):
    """``tempfile.mkstemp`` without importing ``tempfile`` (with ``shutil`` and
    ``random`` ~4 ms of a CLI start): a new file ``prefix + 12 random hex digits``
    in ``folder``, created exclusively; returns (fd, path)."""
    folder = os.fspath(folder) or "."
    for _ in range(100):
        path = os.path.join(folder, prefix + os.urandom(6).hex())
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode), path
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no unused temporary name", folder)


def which(name):
    """``shutil.which(name)`` for a plain command name, without importing
    ``shutil`` (its archive support loads zlib, bz2 and lzma)."""
    for folder in os.environ.get("PATH", os.defpath).split(os.pathsep):
        path = os.path.join(folder or ".", name)
        if os.access(path, os.X_OK) and not os.path.isdir(path):
            return path
    return None


def process_umask(default=None):
    """This process's umask, read without changing it (``/proc/self/status``; setting
    it to read it back would race with other threads); ``default`` where unknown."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return default


def write_bytes(path, data, mode=None):
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder,
    renamed over the target only when complete (a reader sees old or new, never half)."""
    path = os.fspath(path)
    fd, tmp = mkstemp(os.path.dirname(path) or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        unlink_quiet(tmp)
        raise


def write_json(path, data):
    """Write ``data`` as JSON to ``path`` atomically (see :func:`write_bytes`)."""
    write_bytes(path, json.dumps(data).encode("utf-8"))


def read_json(path):
    """The JSON in ``path``, or None when it is missing or unreadable."""
    try:
        with open(os.fspath(path), "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError):
        return None


def unlink_quiet(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def is_disk_full(exc):
    return getattr(exc, "errno", None) in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


# -- sizes -------------------------------------------------------------------------------

def human_bytes(n):
    """``512 B``, ``12.3 KB``, ``4.1 GB`` (powers of 1000, like file managers)."""
    n = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return "%d B" % n if unit == "B" else "%.1f %s" % (n, unit)
        n /= 1000.0
    return "%.1f TB" % n  # pragma: no cover


# -- processes ---------------------------------------------------------------------------

def normalise_exit(code):
    """Popen gives -SIG for a signal death; shells and Docker say 128+SIG."""
    return 128 - code if code < 0 else code


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def kill_group(pgid, grace, gone=None):
    """TERM to the process group, KILL after ``grace`` seconds if anything is left
    (``gone()``, when given, may end the wait early)."""
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


def pid_alive(pid, start_time):
    """Is ``pid`` still the process that had ``start_time`` (see proc_start_time)?"""
    if not pid:
        return False
    now = proc_start_time(pid)
    if now is not None and os.path.isdir("/proc/self"):
        try:  # a zombie (our own child not reaped yet) is not alive
            with open("/proc/%d/stat" % pid, "rb") as f:
                data = f.read()
            if data[data.rfind(b")") + 2:data.rfind(b")") + 3] == b"Z":
                return False
        except OSError:
            return False
    return now is not None and (not now or now == start_time)
