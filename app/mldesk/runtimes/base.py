"""The one small interface every runtime implements.

A runtime runs ``python main.py ARGV`` for one execution and nothing else: it never
touches the UI or the store. The supervisor (``mldesk.engine.supervisor``) drives it:

1. ``prepare(ctx)``        make sure it can run (image present, GPU there, ...)
2. ``start(ctx)``          start the program detached; returns the runtime's handle
                           (``handles.py``; kept in the store as its ``to_json()``)
3. ``stream(ctx, handle, sink)``  copy output into ``sink`` until the program exits;
                           returns the exit code. With ``resume=True`` it continues
                           after a previous supervisor died, from what the log holds.
4. ``stop(handle, grace)`` TERM, then KILL after ``grace`` seconds (any process may
                           call it, the supervisor need not be alive)
5. ``cleanup(handle)``     remove what ``start`` created (container, ...)

Remote runtimes (SSH) also take over the workspace stages: they override
``prepare_workspace``, ``fetch_inputs`` and ``collect_outputs``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Protocol

from mldesk.agent import logstore
from mldesk.core.runopts import RunOptions
from mldesk.core.units import human_bytes
from mldesk.core.value import Value
from mldesk.runtimes.handles import Handle
from mldesk.agent.errors import UserError
from mldesk.agent.fsutil import which


class RuntimeUnavailable(UserError):
    """The runtime cannot run here; the message says why and what to do."""


class ExecutionFailed(UserError):
    """A stage failed; the message is the reason stored on the execution."""


class Sink(Protocol):
    def __call__(self, stream: int, data: bytes, ts: float | None = None) -> None: ...


class RunContext(Value):
    """What a runtime is given for one execution. Mutable: the supervisor sets
    ``options`` (``ctx.options = ctx.options.replace(...)``)."""

    _fields = __slots__ = ("exec_id", "name", "lab", "workspace", "argv", "image", "hardware", "env", "grace",
                           "network", "options", "message", "log_path", "set_note", "exec_dir", "set_state")

    def __init__(
        self,
        exec_id: str,
        name: str,
        lab: Path,
        workspace: Path,
        argv: list[str],
        image: str | None,
        hardware: str,
        env: dict[str, str],
        grace: float = 10.0,
        network: str = "none",
        options: RunOptions | None = None,  # None: RunOptions()
        message: Callable[[str], None] = print,
        log_path: Path | None = None,
        # a transient status shown on the execution (e.g. "reconnecting"); None clears it
        set_note: Callable[[str | None], None] = lambda note: None,
        # the execution's own folder on this machine (outputs/ and the log live there)
        exec_dir: Path | None = None,
        # a started execution waiting in a scheduler's queue (a Slurm job pending):
        # set_state("queued", reason="Resources"); set_state("running", reason=None)
        set_state: Callable[..., None] = lambda state, **changes: None,
    ):
        self.exec_id = exec_id
        self.name = name
        self.lab = lab
        self.workspace = workspace
        self.argv = argv
        self.image = image
        self.hardware = hardware
        self.env = env
        self.grace = grace
        self.network = network
        self.options = RunOptions() if options is None else options
        self.message = message
        self.log_path = log_path
        self.set_note = set_note
        self.exec_dir = exec_dir
        self.set_state = set_state

    def program_env(self) -> dict[str, str]:
        """What the program's environment holds (see ``mldesk.agent.envpolicy``): on
        the local process runtime a few variables of ours (PATH, HOME, locale...),
        never secrets; in a container nothing of the host's."""
        base: dict[str, str] = {}
        if self.options.runtime == "process" and not self.options.host_profile:
            import os

            from mldesk.agent.envpolicy import host_env

            base = host_env(os.environ)
        return {
            **base,
            **self.env,
            "PYTHONUNBUFFERED": "1",
            "MLDESK_EXECUTION_ID": self.exec_id,
            "MLDESK_EXECUTION_NAME": self.name,
        }


class Runtime:
    name = "abstract"
    handle_type: type[Handle] = Handle

    def load_handle(self, data: dict[str, Any] | None) -> Handle | None:
        """The handle a started execution's row holds (any earlier mldesk's), or None
        when it has none (``{}``: not started)."""
        return self.handle_type.from_json(data) if data else None

    def available(self) -> str | None:
        """None when usable, else a one-line reason with the next step."""
        return None

    def prepare(self, ctx: RunContext) -> None:
        pass

    def start(self, ctx: RunContext) -> Handle:
        raise NotImplementedError

    def stream(self, ctx: RunContext, handle: Handle, sink: Sink, *, resume: bool = False) -> int:
        raise NotImplementedError

    def stop(self, handle: Handle, grace: float) -> None:
        raise NotImplementedError

    def cleanup(self, handle: Handle) -> None:
        pass

    def sample_root(self, handle: Handle):
        """What the resource sampler of this machine watches: the pid of the program's
        process tree here, a callable returning it (it may change or appear late), or
        None when the program does not run on this machine (sampled elsewhere)."""
        return None

    # local workspace stages; remote runtimes override these
    def prepare_workspace(self, ctx: RunContext, materialize: Callable[[Path], None]) -> None:
        if ctx.workspace.exists():
            import shutil

            shutil.rmtree(ctx.workspace)
        materialize(ctx.workspace)
        for sub in ("inputs", "outputs"):
            (ctx.workspace / sub).mkdir(exist_ok=True)

    def fetch_inputs(self, ctx: RunContext, specs: list, cache_dir: Path, on_progress, cancel) -> None:
        from mldesk.agent import inputs

        if not specs:
            return
        try:
            inputs.fetch_inputs(
                specs, ctx.workspace / "inputs", cache_dir=cache_dir, on_progress=on_progress,
                on_message=ctx.message, cancel=cancel,
                timeout=float(ctx.options.input_timeout),
                retries=int(ctx.options.input_retries),
                max_bytes=ctx.options.input_max_bytes,
                min_rate=float(ctx.options.input_min_rate or 0.0),
            )
        except inputs.InputError as exc:
            raise ExecutionFailed(str(exc)) from None

    def collect_outputs(self, ctx: RunContext, dest: Path, *, final: bool) -> None:
        from mldesk.agent import outputs

        src = ctx.workspace / "outputs"
        if not src.is_dir():
            return
        result = outputs.collect_outputs(
            src, dest, on_message=ctx.message,
            max_files=ctx.options.max_output_files,
            max_file_bytes=ctx.options.max_output_file_bytes,
            max_total_bytes=ctx.options.max_output_bytes,
        )
        if final:
            ctx.message(f"collected {result.files} output file(s), {human_bytes(result.bytes)}")


def exit_reason(code: int | None) -> str:
    if code is None:
        return "the program's exit code is unknown"
    if code > 128 and code - 128 < 65:
        import signal

        try:
            return f"exit code {code} (killed by {signal.Signals(code - 128).name})"
        except ValueError:
            pass
    return f"exit code {code}"


def stream_names() -> dict[int, str]:
    return {logstore.STDOUT: "stdout", logstore.STDERR: "stderr", logstore.MLDESK: "mldesk"}


def which_python(lab: Path, configured: str | None = None) -> str:
    """The lab's .venv python, else the host profile's, else python3 on PATH."""
    venv = lab / ".venv" / "bin" / "python"
    if venv.exists():
        return str(venv)
    if configured:
        return configured
    found = which("python3") or which("python")
    if not found:
        raise RuntimeUnavailable(
            "no python3 on PATH for the process runtime: install Python 3 or create "
            "a .venv in the lab (python3 -m venv .venv)"
        )
    return found


def nvidia_gpus() -> list[str]:
    """Names of the NVIDIA GPUs on this machine (empty when none / no driver)."""
    import subprocess

    exe = which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run([exe, "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def pid_belongs_to(pid: int, exec_id: str) -> bool:
    """True when process ``pid`` was started for execution ``exec_id`` (guards pid reuse)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f"MLDESK_EXECUTION_ID={exec_id}".encode() in f.read().split(b"\0")
    except OSError:
        return False


__all__ = [
    "ExecutionFailed", "RunContext", "Runtime", "RuntimeUnavailable", "Sink",
    "exit_reason", "nvidia_gpus", "pid_belongs_to", "which_python",
]
