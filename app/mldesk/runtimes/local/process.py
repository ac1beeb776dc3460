"""The ``process`` runtime: ``python main.py ARGV`` with the host's Python, no container.

The program runs in its own process group (so Stop reaches everything it spawned)
with its stdout and stderr on two pipes that the supervisor reads together.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from typing import Any

from mldesk.agent.logstore import pump
from mldesk.runtimes.base import (
    ExecutionFailed, RunContext, Runtime, Sink, nvidia_gpus, pid_belongs_to, which_python,
)



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

    def sample_root(self, handle: dict[str, Any]):
        return handle.get("pid")

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
