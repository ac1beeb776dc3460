"""The ``process`` runtime: ``python main.py ARGV`` with the host's Python, no container.

The program runs in its own process group (so Stop reaches everything it spawned)
with its stdout and stderr on two pipes that the supervisor reads together.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import threading
import time
from typing import Any

from mldesk.core import logstore
from mldesk.runtimes.base import (
    ExecutionFailed, RunContext, Runtime, Sink, nvidia_gpus, pid_belongs_to, which_python,
)

READ = 1 << 16
PARTIAL_FLUSH = 0.05  # seconds a line without "\n" waits before it is stored anyway
DRAIN = 0.5  # after the program exited, pipes quiet this long are done with


class ProcessRuntime(Runtime):
    name = "process"

    def __init__(self) -> None:
        self._procs: dict[str, subprocess.Popen] = {}

    def prepare(self, ctx: RunContext) -> None:
        if ctx.hardware == "gpu" and not nvidia_gpus():
            raise ExecutionFailed(
                "hardwareType is gpu but this host has no NVIDIA GPU (nvidia-smi found none); "
                "set hardwareType: cpu in ml.yaml or run on a GPU host"
            )

    def start(self, ctx: RunContext) -> dict[str, Any]:
        python = which_python(ctx.lab, ctx.options.get("python"))
        try:
            proc = subprocess.Popen(
                [python, "main.py", *ctx.argv], cwd=ctx.workspace, env=ctx.program_env(),
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                start_new_session=True, close_fds=True,
            )
        except OSError as exc:
            raise ExecutionFailed(f"could not start {python}: {exc.strerror}") from None
        self._procs[ctx.exec_id] = proc
        return {"pid": proc.pid, "pgid": proc.pid, "python": python, "exec_id": ctx.exec_id}

    def stream(self, ctx: RunContext, handle: dict[str, Any], sink: Sink, *, resume: bool = False) -> int:
        proc = self._procs.get(ctx.exec_id)
        if proc is None:  # a previous supervisor died: its pipes died with it
            pgid = handle.get("pgid")
            if pgid and pid_belongs_to(pgid, ctx.exec_id):
                terminate_group(pgid, ctx.grace)  # synchronously: this process exits next
                raise ExecutionFailed(
                    "mldesk's supervisor for this execution was killed while the program ran, "
                    "so its output could no longer be recorded; the program was stopped"
                )
            raise ExecutionFailed(
                "mldesk's supervisor for this execution was killed while the program ran; "
                "its exit code is unknown"
            )
        pump(proc.stdout, proc.stderr, sink, proc)
        return normalise_exit(proc.wait())

    def stop(self, handle: dict[str, Any], grace: float) -> None:
        pgid = handle.get("pgid")
        if pgid:
            threading.Thread(target=terminate_group, args=(pgid, grace), name=f"kill-{pgid}",
                             daemon=True).start()

    def cleanup(self, handle: dict[str, Any]) -> None:
        """Whatever the program left running in its process group (a tensorboard it
        started, workers) ends with it. Only for a program this supervisor started:
        its group id cannot have been reused while we held the child."""
        proc = self._procs.pop(handle.get("exec_id", ""), None) or next(
            (p for p in self._procs.values() if p.pid == handle.get("pgid")), None)
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def terminate_group(pgid: int, grace: float) -> None:
    """SIGTERM to the group, SIGKILL after ``grace`` seconds if any member is left."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def normalise_exit(code: int) -> int:
    """Popen gives -SIG for a signal death; shells and Docker say 128+SIG."""
    return 128 - code if code < 0 else code


def pump(out, err, sink: Sink, proc: subprocess.Popen | None = None) -> None:
    """Copy two pipes into ``sink`` in arrival order until both are closed, or, when
    ``proc`` has exited, until they stay quiet for DRAIN seconds (a background child
    of the program may hold them open forever).

    Complete lines are stored as soon as they arrive, many per record; a partial line
    (a progress bar redrawn with "\\r") is stored after PARTIAL_FLUSH seconds.
    """
    sel = selectors.DefaultSelector()
    pending = {logstore.STDOUT: b"", logstore.STDERR: b""}
    since = {logstore.STDOUT: 0.0, logstore.STDERR: 0.0}
    for f, stream in ((out, logstore.STDOUT), (err, logstore.STDERR)):
        os.set_blocking(f.fileno(), False)
        sel.register(f, selectors.EVENT_READ, stream)
    open_count = 2
    exited_at = None
    while open_count:
        waiting = [s for s in pending if pending[s]]
        timeout = None if proc is None else 0.25
        if waiting:
            timeout = max(0.0, min(since[s] for s in waiting) + PARTIAL_FLUSH - time.monotonic())
        ready = sel.select(timeout)
        if proc is not None:
            if exited_at is None and proc.poll() is not None:
                exited_at = time.monotonic()
            # quiet for DRAIN after the exit, or still written to by a child 4x that long
            if exited_at is not None and time.monotonic() - exited_at > (DRAIN if not ready else 4 * DRAIN):
                break
        for key, _ in ready:
            stream = key.data
            try:
                chunk = os.read(key.fileobj.fileno(), READ)
            except BlockingIOError:
                continue
            if not chunk:
                sel.unregister(key.fileobj)
                open_count -= 1
                if pending[stream]:
                    sink(stream, pending[stream])
                    pending[stream] = b""
                continue
            data = pending[stream] + chunk
            cut = data.rfind(b"\n") + 1
            if cut:
                sink(stream, data[:cut])
            if not pending[stream] or cut:
                since[stream] = time.monotonic()
            pending[stream] = data[cut:]
        now = time.monotonic()
        for stream in pending:
            if pending[stream] and now - since[stream] >= PARTIAL_FLUSH:
                sink(stream, pending[stream])
                pending[stream] = b""
    for stream, data in pending.items():
        if data:
            sink(stream, data)
    sel.close()
