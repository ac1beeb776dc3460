"""The detached process that owns one execution: ``python -m mldesk.engine.supervisor ID``.

It outlives whoever started it (own session, no terminal), holds the execution's
writer lock for its whole life (so exactly one process ever writes its log), runs
the stages, copies the program's output into the log as it arrives and writes the
final state. Started again on an execution that is not final (the previous
supervisor died), it resumes from the stage the store records.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

from mldesk.agent import logstore
from mldesk.core.paths import Layout
from mldesk.core.snapshots import SnapshotStore
from mldesk.core.store import ACTIVE_STATES, Execution, Store
from mldesk.runtimes import get_runtime
from mldesk.runtimes.base import ExecutionFailed, RunContext, RuntimeUnavailable, exit_reason

STOP_POLL = 0.2


class StopRequested(Exception):
    pass


def try_lock(path: Path) -> int | None:
    """Take the writer lock; None when another live process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def is_supervised(layout: Layout, exec_id: str) -> bool:
    """Is a live supervisor holding this execution's writer lock?"""
    fd = try_lock(layout.writer_lock(exec_id))
    if fd is None:
        return True
    os.close(fd)
    return False


def spawn(layout: Layout, exec_id: str, *, fork: bool = False) -> None:
    """Start a detached supervisor for ``exec_id`` and return at once.

    ``fork=True`` (the CLI) forks twice: the supervisor starts with everything
    already imported, which keeps ``mldesk run`` fast. Only a single-threaded caller
    with no SQLite connection open may do that (SQLite's locks do not survive a
    fork); everyone else starts a fresh interpreter."""
    fork = fork and hasattr(os, "fork") and threading.active_count() == 1
    exec_dir = layout.execution_dir(exec_id)
    exec_dir.mkdir(parents=True, exist_ok=True)
    if fork:
        _spawn_forked(layout, exec_id, exec_dir / "supervisor.log")
        return
    if getattr(sys, "frozen", False):
        cmd = [sys.executable, "__supervise", exec_id]
    else:
        cmd = [sys.executable, "-m", "mldesk.engine.supervisor", exec_id]
    env = dict(os.environ, MLDESK_HOME=str(layout.root))
    if not getattr(sys, "frozen", False):
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    with open(exec_dir / "supervisor.log", "ab") as log:
        subprocess.Popen(
            cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True, close_fds=True, cwd="/",
        )


def _spawn_forked(layout: Layout, exec_id: str, log_path: Path) -> None:
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    pid = os.fork()
    if pid:
        os.waitpid(pid, 0)  # the middle child exits at once
        return
    code = 1
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        # the grandchild: no terminal, no inherited pipes or files (the caller's
        # SQLite connection included: it is never touched here)
        os.chdir("/")
        null = os.open(os.devnull, os.O_RDONLY)
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.closerange(3, 65536)
        sys.stdin = open(0, closefd=False)
        sys.stdout = open(1, "w", buffering=1, closefd=False)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        code = supervise(layout, exec_id)
    except BaseException:  # noqa: BLE001 - a forked child must never return
        traceback.print_exc()
    finally:
        os._exit(code)


def supervise(layout: Layout, exec_id: str) -> int:
    """Run the supervisor for ``exec_id`` unless another one holds its lock."""
    lock = try_lock(layout.writer_lock(exec_id))
    if lock is None:
        return 0  # another supervisor owns it
    try:
        return Supervisor(layout, exec_id).run()
    finally:
        os.close(lock)


def start_metrics(exec_dir: Path, config: dict | None) -> subprocess.Popen | None:
    """Start the execution's metrics scanner (``mldesk.core.metrics.follow``): a
    low-priority child that tails the log this supervisor writes, so scanning never
    slows the ingest down and every runtime's output (SSH hosts' copied back
    included) is scanned the same way. It stops when its pipe closes."""
    if getattr(sys, "frozen", False):
        cmd = [sys.executable, "__metrics", str(exec_dir)]
    else:
        cmd = [sys.executable, "-m", "mldesk.core.metrics", "follow", str(exec_dir)]
    env = dict(os.environ)
    if not getattr(sys, "frozen", False):
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, env=env, close_fds=True, cwd="/")
        proc.stdin.write(json.dumps(config or {}).encode() + b"\n")
        proc.stdin.flush()
        return proc
    except OSError as exc:  # metrics are computed on first request instead
        print(f"metrics scanner could not start: {exc}", file=sys.stderr)
        return None


def end_metrics(proc: subprocess.Popen | None, *, complete: bool) -> None:
    """Tell the scanner the log is complete (``F``: partial last lines count) or only
    that this supervisor is going away; it finishes on its own."""
    if proc is None:
        return
    try:
        if complete:
            proc.stdin.write(b"F")
        proc.stdin.close()
    except OSError:
        pass


class Supervisor:
    def __init__(self, layout: Layout, exec_id: str):
        self.layout = layout
        self.exec_id = exec_id
        self.store = Store(layout.db)
        self.snapshots = SnapshotStore(layout.blobs, layout.snapshots)
        self.stop_event = threading.Event()
        self.done = threading.Event()
        self.handle: dict = {}
        self.runtime = None
        self._progress: dict[str, dict] = {}
        self._progress_written = 0.0
        self._plock = threading.Lock()
        self._metrics: subprocess.Popen | None = None
        self._finished = False
        self.gpus: list[int] = []
        self.sampler = None

    # -- helpers -------------------------------------------------------------
    def set_state(self, state: str, **changes) -> Execution | None:
        return self.store.update(self.exec_id, state=state, **changes)

    def _watch_stop(self) -> None:
        """Poll the store for a stop request (from any process) and act on it."""
        store = Store(self.layout.db)
        try:
            while not self.done.wait(STOP_POLL):
                try:
                    ex = store.get(self.exec_id)
                except sqlite3.Error as exc:  # e.g. locked for long: try again, never give up
                    print(f"stop watch: {exc}", file=sys.stderr)
                    continue
                if ex is None or ex.stop_requested_at:
                    self.stop_event.set()
                    if self.handle and self.runtime is not None:
                        self.writer.message("stop requested: sending SIGTERM, "
                                            f"SIGKILL after {self.ctx.grace:g} s")
                        try:
                            self.runtime.stop(self.handle, self.ctx.grace)
                        except Exception as exc:  # noqa: BLE001 - shown in the log
                            self.writer.message(f"stop failed: {exc}")
                    return
        finally:
            store.close()

    def check_stop(self) -> None:
        if self.stop_event.is_set():
            raise StopRequested()

    def on_progress(self, p) -> None:
        with self._plock:
            self._progress[p.name] = {
                "state": p.state, "done": p.done, "total": p.total, "rate": p.rate, "eta": p.eta,
            }
            now = time.monotonic()
            if now - self._progress_written < 0.25 and p.state not in ("done", "failed", "cached"):
                return
            self._progress_written = now
            path = self.layout.progress_path(self.exec_id)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self._progress))
            os.replace(tmp, path)

    # -- the stages ----------------------------------------------------------
    def run(self) -> int:
        ex = self.store.get(self.exec_id)
        if ex is None or ex.final:
            return 0
        self.store.update(self.exec_id, supervisor_pid=os.getpid())
        try:
            self.writer = logstore.LogWriter(self.layout.log_path(self.exec_id))
        except (OSError, logstore.LogCorrupt) as exc:  # never leave it active forever
            self.store.update(self.exec_id, state="failed", finished_at=time.time(), only_if_state=ACTIVE_STATES,
                              reason=f"mldesk cannot write this execution's log: {exc}")
            return 1
        self._metrics = start_metrics(self.layout.execution_dir(ex.id), ex.options.get("metrics"))
        opts = ex.options
        self.ctx = RunContext(
            exec_id=ex.id, name=ex.name, lab=Path(ex.lab), workspace=self.layout.workspace(ex.id),
            argv=list(ex.argv), image=ex.image, hardware=ex.hardware, env={},
            grace=float(opts.get("grace", 10.0)), network=opts.get("network", "bridge"),
            options=dict(opts, snapshot=ex.snapshot, runtime=ex.runtime), message=self.writer.message, log_path=self.layout.log_path(ex.id),
            set_note=lambda note: self.store.update(self.exec_id, note=note),
            exec_dir=self.layout.execution_dir(ex.id),
            set_state=lambda state, **kw: self.store.update(
                self.exec_id, state=state, only_if_state=("queued", "running"), **kw),
        )
        threading.Thread(target=self._watch_stop, name="stop-watch", daemon=True).start()
        self.handle = dict(ex.handle)
        code: int | None = ex.exit_code
        try:
            self.runtime = get_runtime("ssh" if ex.host != "local" else ex.runtime)
            started = ex.state == "running" or (ex.state == "queued" and ex.handle.get("slurm_job"))
            if not started and ex.state in ("queued", "preparing", "fetching"):
                code = self._fresh_run(ex)
            elif started:
                self.writer.message(f"mldesk reattached to execution {ex.id}")
                self.gpus = self.store.gpus_of(ex.id)
                self._start_sampler()
                code = self.runtime.stream(self.ctx, self.handle, self.writer.write, resume=True)
            self._stop_sampler()
            self._collect(final=True, code=code)
            if self.stop_event.is_set():
                self._finish("stopped", code, "stopped by the user")
            elif code == 0:
                self._finish("finished", code, None)
            else:
                self._finish("failed", code, exit_reason(code))
        except StopRequested:
            self._collect(final=True, code=code)
            self._finish("stopped", None, "stopped by the user before the program started")
        except (ExecutionFailed, RuntimeUnavailable) as exc:
            self._collect(final=True, code=code)
            if self.stop_event.is_set():
                self._finish("stopped", code, "stopped by the user")
            else:
                self._finish("failed", code, str(exc))
        except Exception as exc:  # noqa: BLE001 - never leave an execution hanging
            traceback.print_exc()
            self._finish("failed", code, f"internal error in mldesk: {type(exc).__name__}: {exc} "
                                        f"(details in {self.layout.execution_dir(ex.id) / 'supervisor.log'})")
        finally:
            self.done.set()
            self._stop_sampler()
            self._cleanup()
            self.writer.close()
            end_metrics(self._metrics, complete=self._finished)
        return 0

    def _cleanup(self) -> None:
        """Remove the container (or the like) and the workspace; idempotent."""
        if self.handle and self.runtime is not None:
            try:
                self.runtime.cleanup(self.handle)
            except Exception:  # noqa: BLE001 - the execution's result stands
                traceback.print_exc()
            self.handle = {}
        if not self.ctx.options.get("keep_workspace") and self.ctx.workspace.exists():
            shutil.rmtree(self.ctx.workspace, ignore_errors=True)

    def _wait_for_slot(self, ex: Execution) -> None:
        """Wait in ``queued`` until the host has a free slot (max parallel) and the
        GPUs asked for; the store takes them in one transaction (see
        ``Store.claim_start``), so no other mldesk process can take them too."""
        limit = int(ex.options.get("max_parallel") or 0)
        host_gpus = list(ex.options.get("host_gpus") or [])
        said = None
        while True:
            self.check_stop()
            claim = self.store.claim_start(ex.id, max_parallel=limit, gpus=ex.options.get("gpus"),
                                           host_gpus=host_gpus)
            if claim.ok:
                self._use_gpus(claim.gpus, host_gpus)
                return
            if claim.impossible:
                raise ExecutionFailed(claim.reason or "the execution cannot be queued")
            if claim.reason != said:
                self.writer.message(f"queued: {claim.reason}")
                said = claim.reason
            time.sleep(0.5)

    def _use_gpus(self, gpus: list[int], host_gpus: list[int]) -> None:
        """The program sees only its GPUs (nvidia-smi indices, numbered like CUDA)."""
        self.gpus = list(gpus)
        if gpus or host_gpus:
            self.ctx.env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpus)
            self.ctx.env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        self.ctx.options["gpu_ids"] = list(gpus)
        if gpus:
            self.writer.message(f"GPUs {', '.join(map(str, gpus))} of {self.store.get(self.exec_id).host}"
                                if len(gpus) > 1 else
                                f"GPU {gpus[0]} of {self.store.get(self.exec_id).host}")

    def _start_sampler(self) -> None:
        """Resource samples every 2 s into resources.jsonl, next to the log."""
        if self.sampler is not None or self.runtime is None or not self.handle:
            return
        try:
            root = self.runtime.sample_root(self.handle)
        except Exception:  # noqa: BLE001 - no samples is no reason to fail
            traceback.print_exc()
            return
        if root is None:
            return
        from mldesk.agent.resources import GpuCache, Sampler

        cache = GpuCache(str(self.layout.root / "cache" / "gpus.json")) if self.gpus else None
        kwargs = {"root": root} if callable(root) else {"root_pid": int(root)}
        self.sampler = Sampler(str(self.layout.resources_path(self.exec_id)), gpus=self.gpus,
                               interval=float(self.ctx.options.get("sample_interval") or 2.0),
                               gpu_cache=cache, **kwargs).start()

    def _stop_sampler(self) -> None:
        if self.sampler is not None:
            self.sampler.stop()
            self.sampler = None

    def _fresh_run(self, ex: Execution) -> int:
        msg = self.writer.message
        self._wait_for_slot(ex)
        self.set_state("preparing")
        where = f"image {ex.image}" if ex.runtime == "docker" else "the host's Python"
        msg(f"preparing execution {ex.id} on {ex.host} with the {ex.runtime} runtime ({where})")
        self.runtime.prepare_workspace(self.ctx, lambda dest: self.snapshots.materialize(ex.snapshot, dest))
        self.runtime.prepare(self.ctx)
        self.check_stop()
        if ex.inputs:
            self.set_state("fetching")
            msg(f"fetching {len(ex.inputs)} input(s)")
            cancel = threading.Event()
            watcher = threading.Thread(
                target=lambda: (self.stop_event.wait(), cancel.set()), daemon=True)
            watcher.start()
            self.runtime.fetch_inputs(
                self.ctx, [(i["name"], i["url"]) for i in ex.inputs],
                self.layout.input_cache, self.on_progress, cancel)
            self.check_stop()
        self.handle = self.runtime.start(self.ctx)
        if self.handle.get("state") == "queued":  # a scheduler's (Slurm's) queue
            self.set_state("queued", handle=self.handle)
        else:
            self.set_state("running", started_at=time.time(), handle=self.handle)
        self._start_sampler()
        msg("running: python main.py " + shlex.join(self.ctx.argv))
        if self.stop_event.is_set():  # asked while starting: the watcher may have missed the handle
            self.runtime.stop(self.handle, self.ctx.grace)
        return self.runtime.stream(self.ctx, self.handle, self.writer.write)

    def _collect(self, final: bool, code: int | None = None) -> None:
        if not self.ctx.workspace.exists() or self.runtime is None:
            return
        self.set_state("collecting", exit_code=code)  # a resumed supervisor needs the code
        try:
            self.runtime.collect_outputs(self.ctx, self.layout.outputs(self.exec_id), final=final)
        except OSError as exc:
            self.writer.message(f"collecting outputs failed: {exc}")

    def _finish(self, state: str, code: int | None, reason: str | None) -> None:
        self._finished = True
        if state == "failed":
            self.writer.message(f"failed: {reason}")
        elif state == "stopped":
            self.writer.message("stopped" + (f" (exit code {code})" if code is not None else ""))
        else:
            self.writer.message("finished (exit code 0)")
        self.done.set()
        self._cleanup()
        self.writer.flush()
        self.store.update(self.exec_id, state=state, exit_code=code, reason=reason, note=None,
                          finished_at=time.time(), only_if_state=ACTIVE_STATES)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m mldesk.engine.supervisor EXECUTION_ID", file=sys.stderr)
        return 2
    return supervise(Layout(), argv[0])


if __name__ == "__main__":
    raise SystemExit(main())
