"""The ``process`` runtime: ``python main.py ARGV`` with this machine's Python, no container.

The agent's runner runs it (``mldesk.runtimes.local.runner``): in its own process
group (so Stop reaches everything it spawned), detached from the supervisor, with
its stdout and stderr pumped into the runner's log, from which the supervisor copies.
A supervisor killed meanwhile is replaced by one that continues the copy; the
program never notices. Whatever it leaves running in its group ends with it.
"""

from __future__ import annotations

from typing import Any

from mldesk.runtimes.base import ExecutionFailed, RunContext, nvidia_gpus, which_python
from mldesk.runtimes.handles import ProcessHandle
from mldesk.runtimes.local.runner import RunnerRuntime


class ProcessRuntime(RunnerRuntime):
    name = "process"
    handle_type = ProcessHandle

    def prepare(self, ctx: RunContext) -> None:
        if ctx.hardware == "gpu" and not nvidia_gpus():
            raise ExecutionFailed(
                "hardwareType is gpu but this host has no NVIDIA GPU (nvidia-smi found none); "
                "set hardwareType: cpu in ml.yaml or run on a GPU host"
            )

    def spec(self, ctx: RunContext) -> dict[str, Any]:
        return {"python": which_python(ctx.lab, ctx.options.python), "kill_leftovers": True}

    def sample_root(self, handle: ProcessHandle):
        """The program's pid (the runner's status, in the handle): its process tree is sampled."""
        return handle.pid
