"""The detached process that owns one execution: ``python -m mldesk.engine.supervisor ID``.

It outlives whoever started it (own session, no terminal), holds the execution's
writer lock for its whole life (so exactly one process ever writes its log), runs
the stages, copies the program's output into the log as it arrives and writes the
final state. Started again on an execution that is not final (the previous
supervisor died), it resumes from the stage the store records. The row's options
and handle are read into their types (``RunOptions.from_json``,
``Runtime.load_handle``), rows of earlier versions included.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shlex
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mldesk.agent import logstore
from mldesk.agent.fsutil import which as fsutil_which
from mldesk.core.paths import Layout, no_space_message
from mldesk.core.runopts import RunOptions
from mldesk.core.snapshots import SnapshotStore
from mldesk.core.store import ACTIVE_STATES, Execution, Store
from mldesk.runtimes import get_runtime
from mldesk.runtimes.base import ExecutionFailed, RunContext, RuntimeUnavailable, exit_reason

if TYPE_CHECKING:
    import subprocess

    from mldesk.runtimes.handles import Handle

STOP_POLL = 0.2
METRICS_DELAY = 1.0  # seconds before a supervisor starts its metrics scanner


class StopRequested(Exception):
    pass


def print_exc() -> None:
    """The current exception's traceback, into the supervisor's log. (``traceback``
    and ``subprocess`` are imported on use: each run's start pays for every import.)"""
    import traceback

    traceback.print_exc()


def try_lock(path: Path) -> int | None:
    """Take the writer lock; None when another live process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
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


def spawn(layout: Layout, exec_id: str, *, fork: bool = False) -> int | None:
    """Start a detached supervisor for ``exec_id`` and return at once.

    ``fork=True`` (the CLI) forks twice: the supervisor starts with everything
    already imported, which keeps ``mldesk run`` fast. Only a single-threaded caller
    with no SQLite connection open may do that (SQLite's locks do not survive a
    fork); everyone else starts a fresh interpreter. A forked supervisor's start
    returns the read end of a pipe that reaches its end (EOF) as soon as the
    supervisor has recorded the final state (or died): a follower waits on it
    instead of polling the store (``Engine.wait_for_change``)."""
    fork = fork and hasattr(os, "fork") and threading.active_count() == 1
    exec_dir = layout.execution_dir(exec_id)
    exec_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if fork:
        return _spawn_forked(layout, exec_id, exec_dir / "supervisor.log")
    if getattr(sys, "frozen", False):
        cmd = [sys.executable, "__supervise", exec_id]
    else:
        cmd = [sys.executable, "-m", "mldesk.engine.supervisor", exec_id]
    env = dict(os.environ, MLDESK_HOME=str(layout.root))
    if not getattr(sys, "frozen", False):
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    import subprocess

    fd = os.open(exec_dir / "supervisor.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with open(fd, "ab") as log:
        subprocess.Popen(
            cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True, close_fds=True, cwd="/",
        )
    return None


def _spawn_forked(layout: Layout, exec_id: str, log_path: Path) -> int:
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    ended_r, ended_w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(ended_w)
        os.waitpid(pid, 0)  # the middle child exits at once
        return ended_r
    code = 1
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        # the grandchild: no terminal, no inherited pipes or files (the caller's
        # SQLite connection included: it is never touched here)
        os.chdir("/")
        null = os.open(os.devnull, os.O_RDONLY)
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.dup2(ended_w, 3, inheritable=False)  # the follower's pipe: news, EOF at the end
        fcntl.fcntl(3, fcntl.F_SETFL, fcntl.fcntl(3, fcntl.F_GETFL) | os.O_NONBLOCK)
        os.closerange(4, 65536)
        sys.stdin = open(0, closefd=False)
        sys.stdout = QuietStream(open(1, "w", buffering=1, closefd=False))
        sys.stderr = QuietStream(open(2, "w", buffering=1, closefd=False))
        code = supervise(layout, exec_id, ended_fd=3)
    except BaseException:  # noqa: BLE001 - a forked child must never return
        print_exc()
    finally:
        os._exit(code)


def supervise(layout: Layout, exec_id: str, ended_fd: int | None = None) -> int:
    """Run the supervisor for ``exec_id`` unless another one holds its lock.
    ``ended_fd`` is closed once the final state is recorded (see ``spawn``)."""
    os.umask(0o077)  # everything it writes under MLDESK_HOME is owner-only
    lock = try_lock(layout.writer_lock(exec_id))
    if lock is None:
        return 0  # another supervisor owns it
    try:
        sup = Supervisor(layout, exec_id)
        sup.ended_fd = ended_fd
        return sup.run()
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
    nice = fsutil_which("nice")
    if nice:  # low priority from its first instruction (follow() nices itself too)
        cmd = [nice, "-n", "10", *cmd]
    import subprocess

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
        self.handle: Handle | None = None  # the runtime's, once started
        self.runtime = None
        self._progress: dict[str, dict] = {}
        self._progress_written = 0.0
        self._plock = threading.Lock()
        self._metrics: subprocess.Popen | None = None
        self._mlock = threading.Lock()
        self._metrics_ended = False
        self._finished = False
        self.gpus: list[int] = []
        self.sampler = None
        self.log_error: OSError | None = None
        self.keep_workspace = False
        self._ws_record: dict | None = None  # what _materialize wrote (core/workspaces.py)
        self._reserve = layout.execution_dir(exec_id) / "space.reserve"
        self.ended_fd: int | None = None  # closed once the outcome is recorded (spawn's pipe)

    # -- helpers -------------------------------------------------------------
    def _start_metrics(self, ex: Execution) -> None:
        """The metrics scanner, once the execution has lasted METRICS_DELAY (a short
        one is scanned on the first request instead: no extra process to start)."""
        with self._mlock:
            if not self._metrics_ended:
                self._metrics = start_metrics(self.layout.execution_dir(ex.id), RunOptions.from_json(ex.options).metrics)

    def _prefork_runner(self, ex: Execution) -> None:
        """A local runtime's runner, forked from this process while it is still
        single-threaded, so it is ready when the workspace is (no interpreter start-up
        between the workspace and the program's start)."""
        try:
            self.runtime = get_runtime(ex.runtime)
        except Exception:  # noqa: BLE001 - the stages below report it
            return
        prefork = getattr(self.runtime, "prefork", None)
        if prefork is not None:
            prefork(self.layout.root, ex.id)

    def set_state(self, state: str, **changes) -> Execution | None:
        return self.store.update(self.exec_id, state=state, **changes)

    def _watch_stop(self) -> None:
        """Poll the store for a stop request (from any process) and act on it."""
        store = None  # opened at the first look, not while the execution is being started
        try:
            while not self.done.wait(STOP_POLL):
                if store is None:
                    store = Store(self.layout.db)
                try:
                    ex = store.get(self.exec_id)
                except sqlite3.Error as exc:  # e.g. locked for long: try again, never give up
                    print(f"stop watch: {exc}", file=sys.stderr)
                    continue
                if ex is None or ex.stop_requested_at:
                    self.stop_event.set()
                    if self.handle and self.runtime is not None:
                        self.message("stop requested: sending SIGTERM, "
                                     f"SIGKILL after {self.ctx.grace:g} s")
                        try:
                            self.runtime.stop(self.handle, self.ctx.grace)
                        except Exception as exc:  # noqa: BLE001 - shown in the log
                            self.message(f"stop failed: {exc}")
                    return
        finally:
            if store is not None:
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
        if apply_outcome(self.layout, self.store, self.exec_id):
            return 0  # an earlier supervisor ended it while the store was unavailable
        if ex.host == "local" and ex.state in ("queued", "preparing", "fetching") and not ex.handle:
            self._prefork_runner(ex)  # before any thread of ours starts
        self._patient("recording the supervisor", lambda: self.store.update(self.exec_id, supervisor_pid=os.getpid()))
        self._make_reserve()
        try:
            self.writer = logstore.LogWriter(self.layout.log_path(self.exec_id))
        except (OSError, logstore.LogCorrupt) as exc:  # never leave it active forever
            self._release_reserve()
            self._record_final("failed", None, f"mldesk cannot write this execution's log: {_os_reason(exc)}")
            return 1
        self._metrics_timer = threading.Timer(METRICS_DELAY, self._start_metrics, (ex,))
        self._metrics_timer.daemon = True
        self._metrics_timer.start()
        opts = RunOptions.from_json(ex.options)
        self.ctx = RunContext(
            exec_id=ex.id, name=ex.name, lab=Path(ex.lab), workspace=self.layout.workspace(ex.id),
            argv=list(ex.argv), image=ex.image, hardware=ex.hardware, env={},
            grace=float(opts.grace), network=opts.network,
            options=opts.replace(snapshot=ex.snapshot, runtime=ex.runtime), message=self.message,
            log_path=self.layout.log_path(ex.id),
            set_note=self._set_note,
            exec_dir=self.layout.execution_dir(ex.id),
            set_state=lambda state, **kw: self.store.update(
                self.exec_id, state=state, only_if_state=("queued", "running"), **kw),
        )
        threading.Thread(target=self._watch_stop, name="stop-watch", daemon=True).start()
        code: int | None = ex.exit_code
        # the outcome is decided first, recorded last: nothing in between may lose it
        state, reason = "failed", None
        try:
            self.runtime = self.runtime or get_runtime("ssh" if ex.host != "local" else ex.runtime)
            self.handle = self.runtime.load_handle(ex.handle)  # (any earlier mldesk's)
            started = ex.state == "running" or (ex.state == "queued" and self.handle is not None
                                                and self.handle.in_scheduler)
            if not started and ex.state in ("queued", "preparing", "fetching"):
                code = self._fresh_run(ex)
            elif started:
                self.message(f"mldesk reattached to execution {ex.id}")
                self.gpus = self.store.gpus_of(ex.id)
                self._start_sampler()
                code = self.runtime.stream(self.ctx, self.handle, self._sink, resume=True)
            self._stop_sampler()
            if self.log_error is not None:
                state, reason = "failed", self._log_error_reason()
            elif self.stop_event.is_set():
                state, reason = "stopped", "stopped by the user"
            elif code == 0:
                state, reason = "finished", None
            else:
                state, reason = "failed", exit_reason(code)
        except StopRequested:
            state, reason, code = "stopped", "stopped by the user before the program started", None
        except (ExecutionFailed, RuntimeUnavailable) as exc:
            if self.stop_event.is_set():
                state, reason = "stopped", "stopped by the user"
            elif self.log_error is not None:  # the log could not be written: that ended it
                state, reason = "failed", self._log_error_reason()
            else:
                state, reason = "failed", str(exc)
        except Exception as exc:  # noqa: BLE001 - never leave an execution hanging
            print_exc()
            state, reason = "failed", self._internal_reason(exc)
        try:
            problem = self._collect(final=True, code=code)
            if problem:
                state, reason = "failed", problem if state == "finished" or reason is None else f"{reason}; {problem}"
            self._finish(state, code, reason)
        finally:
            self.done.set()
            self._stop_sampler()
            self._cleanup()
            self.writer.close()
            with self._mlock:
                self._metrics_timer.cancel()
                end_metrics(self._metrics, complete=self._finished)
                self._metrics_ended = True
        return 0

    def _internal_reason(self, exc: BaseException) -> str:
        if _is_no_space(exc):
            return no_space_message(getattr(exc, "filename", None) or self.layout.root)
        return (f"internal error in mldesk: {type(exc).__name__}: {exc} "
                f"(details in {self.layout.execution_dir(self.exec_id) / 'supervisor.log'})")

    # -- never losing the outcome ----------------------------------------------
    def _poke(self) -> None:
        """A byte into the follower's pipe (``spawn``): there is news in the log."""
        if self.ended_fd is None:
            return
        try:
            os.write(self.ended_fd, b"!")
        except BlockingIOError:  # full: the follower is behind and will look anyway
            pass
        except OSError:  # the follower is gone (detached, ended)
            try:
                os.close(self.ended_fd)
            except OSError:
                pass
            self.ended_fd = None

    def message(self, text: str) -> None:
        """A stage message in the log; a log that cannot be written (full disk) does
        not stop the supervisor (the reason is recorded on the execution)."""
        try:
            self.writer.message(text)
            self._poke()
        except (OSError, ValueError) as exc:
            print(f"log message lost ({exc}): {text}", file=sys.stderr)
            if isinstance(exc, OSError) and self.log_error is None:
                self.log_error = exc

    def _sink(self, stream: int, data: bytes, ts: float | None = None) -> int | None:
        """The program's output into the log (returns the log's new end offset, for the
        runtimes' resume checkpoints). When the log cannot be written (full disk) the
        program is stopped: its output could no longer be recorded."""
        if self.log_error is not None:
            return None
        try:
            end = self.writer.write(stream, data, ts)
            self._poke()
            return end
        except OSError as exc:
            self.log_error = exc
            print(f"writing the log failed: {exc}", file=sys.stderr)
            if self.handle and self.runtime is not None:
                try:
                    self.runtime.stop(self.handle, 0.0)
                except Exception:  # noqa: BLE001 - the reason is recorded anyway
                    print_exc()

    def _log_error_reason(self) -> str:
        exc = self.log_error
        path = self.layout.log_path(self.exec_id)
        if _is_no_space(exc):
            return no_space_message(path) + " (the program was stopped: its output could no longer be recorded)"
        return f"cannot write the log {path}: {_os_reason(exc)} (the program was stopped)"

    def _set_note(self, note: str | None) -> None:
        try:
            with self.store.brief():  # a status line: a busy store must not hold the run up
                self.store.update(self.exec_id, note=note)
        except sqlite3.Error as exc:  # a status line only
            print(f"note not recorded ({exc}): {note}", file=sys.stderr)

    def _patient(self, what: str, fn):
        """Run a store write, retrying while the store is busy, locked or full for up
        to ``store_patience()`` seconds; then raise :class:`StoreUnavailable`."""
        deadline = time.monotonic() + store_patience()
        delay = 0.2
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if time.monotonic() >= deadline:
                    raise StoreUnavailable(f"{what}: {exc}") from exc
                print(f"{what}: {exc}; trying again", file=sys.stderr)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _make_reserve(self) -> None:
        """A little space set aside while the program runs, given back before the
        outcome is written: a disk the program filled still takes the final state."""
        try:
            fd = os.open(self._reserve, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                try:  # the blocks, without writing them (~20 us instead of ~0.2-1.2 ms)
                    os.posix_fallocate(fd, 0, RESERVE_BYTES)
                except (AttributeError, OSError) as exc:
                    if getattr(exc, "errno", None) == errno.ENOSPC:
                        raise
                    os.write(fd, b"\0" * RESERVE_BYTES)  # a file system that cannot allocate
            finally:
                os.close(fd)
        except OSError:
            self._release_reserve()

    def _release_reserve(self) -> None:
        try:
            os.unlink(self._reserve)
        except OSError:
            pass

    def _record_final(self, state: str, code: int | None, reason: str | None) -> None:
        """The final state into the store, patiently; when the store stays
        unavailable, into ``outcome.json`` beside the execution for the next mldesk
        process to apply (``Engine.recover``)."""
        self._release_reserve()
        changes = dict(state=state, exit_code=code, reason=reason, note=None, finished_at=time.time())
        try:
            self._patient("recording the outcome", lambda: self.store.update(
                self.exec_id, only_if_state=ACTIVE_STATES, **changes))
            return
        except StoreUnavailable as exc:
            print(f"{exc}: keeping the outcome in {outcome_path(self.layout, self.exec_id)}", file=sys.stderr)
        write_outcome(self.layout, self.exec_id, changes)

    def _cleanup(self) -> None:
        """Remove the container (or the like) and the workspace; idempotent."""
        if self.handle and self.runtime is not None:
            try:
                self.runtime.cleanup(self.handle)
            except Exception:  # noqa: BLE001 - the execution's result stands
                print_exc()
            self.handle = None
        if self._workspace_kept():
            self._strip_workspace()
        elif self.ctx.workspace.exists():
            record, self._ws_record = self._ws_record, None
            if self.exec_local() and record is not None:
                from mldesk.core.workspaces import WorkspacePool

                try:  # kept for the lab's next run, or removed
                    WorkspacePool(self.layout.workspace_pool, self.snapshots).retire(
                        self.ctx.workspace, record, lab=str(self.ctx.lab))
                    return
                except Exception:  # noqa: BLE001 - the execution's result stands
                    print_exc()
            import shutil

            shutil.rmtree(self.ctx.workspace, ignore_errors=True)

    def _wait_for_slot(self, ex: Execution) -> None:
        """Wait in ``queued`` until the host has a free slot (max parallel) and the
        GPUs asked for; the store takes them in one transaction (see
        ``Store.claim_start``), so no other mldesk process can take them too."""
        opts = self.ctx.options
        # a Slurm job array's trial: Slurm keeps the limit (--array=...%K)
        limit = 0 if opts.slurm_array else int(opts.max_parallel or 0)
        host_gpus = list(opts.host_gpus or [])
        said = None
        while True:
            self.check_stop()
            claim = self.store.claim_start(ex.id, max_parallel=limit, gpus=opts.gpus,
                                           host_gpus=host_gpus)
            if claim.ok:
                self._use_gpus(claim.gpus, host_gpus)
                return
            if claim.impossible:
                raise ExecutionFailed(claim.reason or "the execution cannot be queued")
            if claim.reason != said:
                self.message(f"queued: {claim.reason}")
                said = claim.reason
            time.sleep(0.5)

    def _use_gpus(self, gpus: list[int], host_gpus: list[int]) -> None:
        """The program sees only its GPUs (nvidia-smi indices, numbered like CUDA)."""
        self.gpus = list(gpus)
        if gpus or host_gpus:
            self.ctx.env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpus)
            self.ctx.env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        self.ctx.options = self.ctx.options.replace(gpu_ids=list(gpus))
        if gpus:
            self.message(f"GPUs {', '.join(map(str, gpus))} of {self.store.get(self.exec_id).host}"
                                if len(gpus) > 1 else
                                f"GPU {gpus[0]} of {self.store.get(self.exec_id).host}")

    def _start_sampler(self) -> None:
        """Resource samples every 2 s into resources.jsonl, next to the log."""
        if self.sampler is not None or self.runtime is None or not self.handle:
            return
        try:
            root = self.runtime.sample_root(self.handle)
        except Exception:  # noqa: BLE001 - no samples is no reason to fail
            print_exc()
            return
        if root is None:
            return
        from mldesk.agent.resources import GpuCache, Sampler

        cache = GpuCache(str(self.layout.root / "cache" / "gpus.json")) if self.gpus else None
        kwargs = {"root": root} if callable(root) else {"root_pid": int(root)}
        self.sampler = Sampler(str(self.layout.resources_path(self.exec_id)), gpus=self.gpus,
                               interval=float(self.ctx.options.sample_interval or 2.0),
                               gpu_cache=cache, **kwargs).start()

    def _stop_sampler(self) -> None:
        if self.sampler is not None:
            self.sampler.stop()
            self.sampler = None

    def _fresh_run(self, ex: Execution) -> int:
        msg = self.message
        self._wait_for_slot(ex)
        self.set_state("preparing")
        where = f"image {ex.image}" if ex.runtime == "docker" else "the host's Python"
        msg(f"preparing execution {ex.id} on {ex.host} with the {ex.runtime} runtime ({where})")
        for rel, target in self.snapshots.outside_links(ex.snapshot)[:20]:
            msg(f"warning: {rel} is a link to {target}, outside the lab; it is copied as a link, "
                "so in a container or on another host it will not resolve")
        self.runtime.prepare_workspace(self.ctx, lambda dest: self._materialize(ex, dest))
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
        if self.handle.queued:  # a scheduler's (Slurm's) queue
            self._patient("recording the start", lambda: self.set_state("queued", handle=self.handle.to_json()))
        else:
            self._patient("recording the start", lambda: self.set_state("running", started_at=time.time(),
                                                                        handle=self.handle.to_json()))
        self._start_sampler()
        msg("running: python main.py " + shlex.join(self.ctx.argv))
        if self.stop_event.is_set():  # asked while starting: the watcher may have missed the handle
            self.runtime.stop(self.handle, self.ctx.grace)
        return self.runtime.stream(self.ctx, self.handle, self._sink)

    def _materialize(self, ex: Execution, dest: Path) -> None:
        """The workspace: a copy of the snapshot; on this machine from the lab's last
        finished workspace where it can be (core/workspaces.py)."""
        if ex.host != "local":
            self.snapshots.materialize(ex.snapshot, dest, owner_only=True)
            return
        from mldesk.core.workspaces import WorkspacePool

        # the record stays in this process (out of the program's reach) until _cleanup
        reused, total, self._ws_record = WorkspacePool(self.layout.workspace_pool, self.snapshots).materialize(
            ex.snapshot, dest, lab=ex.lab)
        if reused:
            rest = f", {total - reused:,} copied" if reused < total else ""
            self.message(f"workspace: {reused:,} of {total:,} files reused from the lab's last "
                         f"workspace (each checked unchanged){rest}")

    def _collect(self, final: bool, code: int | None = None) -> str | None:
        """Collect outputs/ (before anything else can fail). Returns a reason when
        they could not all be collected (the workspace is then kept)."""
        if not self.ctx.workspace.exists() or self.runtime is None:
            return None
        try:  # a status only: a busy store must not hold the outputs back
            with self.store.brief():
                self.store.update(self.exec_id, state="collecting", exit_code=code,
                                  only_if_state=ACTIVE_STATES)
        except sqlite3.Error as exc:
            print(f"state 'collecting' not recorded: {exc}", file=sys.stderr)
        dest = self.layout.outputs(self.exec_id)
        try:
            self.runtime.collect_outputs(self.ctx, dest, final=final)
        except OSError as exc:
            self.keep_workspace = True
            where = f"; what was not collected is still in {self.ctx.workspace}" if self.exec_local() else ""
            if _is_no_space(exc):
                problem = no_space_message(dest) + " while collecting outputs" + where
            else:
                problem = f"collecting outputs failed: {_os_reason(exc)}{where}"
            self.message(problem)
            return problem
        return None

    def exec_local(self) -> bool:
        return self.runtime is not None and getattr(self.runtime, "name", "") != "ssh"

    def _finish(self, state: str, code: int | None, reason: str | None) -> None:
        self._finished = True
        if state == "failed":
            self.message(f"failed: {reason}")
        elif state == "stopped":
            self.message("stopped" + (f" (exit code {code})" if code is not None else ""))
        else:
            self.message("finished (exit code 0)")
        self.done.set()
        if self._workspace_kept():
            self._strip_workspace()  # before anyone is told it is over
        self._record_final(state, code, reason)  # first the outcome, then the cleanup
        if self.ended_fd is not None:  # a follower (the CLI) need not wait for the cleanup
            try:
                os.close(self.ended_fd)
            except OSError:
                pass
            self.ended_fd = None

    def _workspace_kept(self) -> bool:
        return bool(self.ctx.options.keep_workspace or self.keep_workspace) and self.ctx.workspace.exists()

    def _strip_workspace(self) -> None:
        from mldesk.agent.outputs import strip_special_bits

        strip_special_bits(self.ctx.workspace)  # a kept workspace: owner-only, never set-uid


class StoreUnavailable(Exception):
    """The store stayed locked, busy or full for longer than the patience."""


RESERVE_BYTES = 1 << 20
DEFAULT_STORE_PATIENCE = 600.0  # seconds of retrying a store write before outcome.json


def store_patience() -> float:
    try:
        return float(os.environ.get("MLDESK_STORE_PATIENCE", DEFAULT_STORE_PATIENCE))
    except ValueError:
        return DEFAULT_STORE_PATIENCE


def _is_no_space(exc: BaseException | None) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
    return isinstance(exc, sqlite3.OperationalError) and "full" in str(exc)


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror + (f": {exc.filename}" if exc.filename else "")
    return str(exc)


def outcome_path(layout: Layout, exec_id: str) -> Path:
    return layout.execution_dir(exec_id) / "outcome.json"


def write_outcome(layout: Layout, exec_id: str, changes: dict) -> None:
    path = outcome_path(layout, exec_id)
    tmp = path.with_name(".outcome.json.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(changes, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        print_exc()  # nothing more we can do: a later supervisor decides


def apply_outcome(layout: Layout, store: Store, exec_id: str) -> bool:
    """Apply an ``outcome.json`` left by a supervisor that could not reach the
    store; True when there was one (the execution is final now)."""
    path = outcome_path(layout, exec_id)
    try:
        changes = json.loads(path.read_text())
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        return False
    allowed = {"state", "exit_code", "reason", "note", "finished_at"}
    store.update(exec_id, only_if_state=ACTIVE_STATES, **{k: v for k, v in changes.items() if k in allowed})
    try:
        path.unlink()
    except OSError:
        pass
    return True


class QuietStream:
    """The supervisor's stdout/stderr (``supervisor.log``, beside the execution) that
    never raise: on the disk a program filled, a print must not end the supervisor
    before it records the outcome. What cannot be written is dropped."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except (OSError, ValueError):
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except (OSError, ValueError):
            pass

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    sys.stdout, sys.stderr = QuietStream(sys.stdout), QuietStream(sys.stderr)
    if len(argv) != 1:
        print("usage: python -m mldesk.engine.supervisor EXECUTION_ID", file=sys.stderr)
        return 2
    return supervise(Layout(), argv[0])


if __name__ == "__main__":
    raise SystemExit(main())
