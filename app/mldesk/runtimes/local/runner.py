"""This machine as a host reached without SSH: local executions run through the agent's runner.

The supervisor forks the runner before it starts a thread (``prefork`` ->
``runner.fork_ready``: detached, its own session, none of the supervisor's files); where
it cannot fork, ``prepare_workspace`` starts ``python -m mldesk.agent supervise HOME ID
run wait``. Either waits for ``start``, which writes the spec: the runner
(``mldesk.agent.runner``, the same code SSH hosts run) starts the program, pumps its
output into ``executions/<id>/run/log.bin`` and keeps ``run/status.json``; a forked one
pokes a pipe per log write and ends a done pipe, which ``stream`` waits on between looks. ``stream`` copies that log's records into the
execution's log from a byte offset (``mldesk.runtimes.relay``: checkpoint + matcher),
so a supervisor that was killed is replaced by one that continues where the copy
stopped, with no line lost or doubled, while the program never noticed.
"""

from __future__ import annotations

import os
import select
import threading
import time
from pathlib import Path
from typing import Any

from mldesk.agent import containers, logstore, runner
from mldesk.agent.fsutil import kill_group, read_json
from mldesk.runtimes.base import ExecutionFailed, RunContext, Runtime, Sink
from mldesk.runtimes.handles import LocalHandle
from mldesk.runtimes.relay import resume_point, write_checkpoint


CHECKPOINT = "relay.json"  # in run/: (runner log offset, local log size)
CHECKPOINT_INTERVAL = 0.5
POLL_MIN, POLL_MAX = 0.005, 0.02  # how often an idle log is looked at (backs off)
READ_MAX = 4 << 20
LOST_CONFIRM = 1.0  # a runner gone without a final status, seen this long: lost


def paths_of(root: str | os.PathLike, exec_id: str) -> runner.Paths:
    return runner.Paths(str(root), exec_id, runner.LOCAL_STATE)


class RunnerRuntime(Runtime):
    """A local runtime whose program the agent's runner runs (subclasses say how)."""

    name = "abstract"
    handle_type = LocalHandle

    def __init__(self) -> None:
        self._ready: dict[str, Any] = {}  # exec_id -> a runner spawned early, waiting for its spec
        self._done: dict[str, int] = {}  # exec_id -> a pipe that ends when its (forked) runner ends
        self._news: dict[str, int] = {}  # exec_id -> a pipe with a byte per write to its runner's log

    def spec(self, ctx: RunContext) -> dict[str, Any]:
        raise NotImplementedError

    @staticmethod
    def _root(ctx: RunContext) -> Path:
        if ctx.exec_dir is None:
            raise ExecutionFailed("internal: the execution's folder is unknown")
        return Path(ctx.exec_dir).parent.parent

    def prefork(self, root: str | os.PathLike, exec_id: str) -> None:
        """Fork the runner now, while the caller (a supervisor that has not started a
        thread yet) is alone: it waits, ready, for ``start`` (``runner.fork_ready``)."""
        if exec_id in self._ready:
            return
        try:
            proc = runner.fork_ready(paths_of(root, exec_id))
        except (OSError, runner.AgentError):
            proc = None  # prepare_workspace spawns one then
        if proc is not None:
            self._ready[exec_id] = proc

    def prepare_workspace(self, ctx: RunContext, materialize) -> None:
        """Start the runner's interpreter now (unless one was forked already), so it
        is ready when ``start`` comes."""
        if ctx.exec_id not in self._ready:
            try:
                self._ready[ctx.exec_id] = runner.spawn(paths_of(self._root(ctx), ctx.exec_id), ready=True)
            except (OSError, runner.AgentError):
                pass  # start spawns one then
        super().prepare_workspace(ctx, materialize)

    def start(self, ctx: RunContext) -> LocalHandle:
        root = self._root(ctx)
        p = paths_of(root, ctx.exec_id)
        spec = dict(self.spec(ctx), exec_id=ctx.exec_id, name=ctx.name, argv=list(ctx.argv),
                    env=ctx.program_env(), env_exact=True, runtime=self.name, grace=ctx.grace,
                    sample=False)  # the supervisor samples (sample_root), not the runner
        proc = self._ready.pop(ctx.exec_id, None)
        try:
            status = runner.start(p, spec, proc=proc)
        except (OSError, runner.AgentError) as exc:
            raise ExecutionFailed(f"could not start mldesk's runner: {exc}") from None
        if getattr(proc, "done_fd", None) is not None:
            self._done[ctx.exec_id] = proc.done_fd
            if proc.news_fd is not None:
                self._news[ctx.exec_id] = proc.news_fd
        if status.get("state") == "failed" and not status.get("started_at"):
            raise ExecutionFailed(status.get("error") or "the program could not be started")
        return self.handle_type(exec_id=ctx.exec_id, root=str(root), runner=self.name,
                                **{key: status[key] for key in ("pid", "pgid", "python", "container")
                                   if status.get(key)})

    # -- the log ----------------------------------------------------------------------------
    def stream(self, ctx: RunContext, handle: LocalHandle, sink: Sink, *, resume: bool = False) -> int:
        if handle.legacy:
            return self._stream_legacy(ctx, handle)
        p = paths_of(handle.root, handle.exec_id)
        checkpoint = Path(p.state_dir) / CHECKPOINT
        offset, matcher = resume_point(checkpoint, ctx.log_path) if resume else (0, None)
        reader = None
        pause = POLL_MIN
        saved_at = 0.0
        saved = offset
        lost_since = None
        status = None
        note = None
        try:
            while True:
                if reader is None and os.path.exists(p.log):
                    reader = logstore.LogReader(p.log)
                if reader is not None:
                    records, nxt = reader.read_from(offset, READ_MAX)
                    if records:
                        local_end = None
                        for r in records:
                            if matcher is not None and matcher.seen(r.stream, r.ts, r.data):
                                continue
                            ret = sink(r.stream, r.data, r.ts)
                            if isinstance(ret, int):
                                local_end = ret
                        offset = nxt
                        now = time.monotonic()
                        if now - saved_at >= CHECKPOINT_INTERVAL:
                            self._checkpoint(checkpoint, ctx, offset, local_end)
                            saved_at, saved = now, offset
                        pause = POLL_MIN
                        continue
                if status is not None and status.get("state") in runner.FINAL_STATES:
                    break  # final, and the log read to its end after it was
                status = read_json(p.status)
                if status and status.get("note") != note:  # e.g. "waiting for the Docker daemon"
                    note = status.get("note")
                    ctx.set_note(note)
                if status and status.get("state") in runner.FINAL_STATES:
                    continue  # one more look: the final status is written after the last record
                if status is None and not os.path.isdir(p.state_dir):
                    raise ExecutionFailed(f"the runner's folder {p.state_dir} is gone")
                if status is not None and not runner.agent_alive(status):
                    if lost_since is None:
                        lost_since = time.monotonic()
                    elif time.monotonic() - lost_since > LOST_CONFIRM:
                        self._lost(ctx, status, p)
                else:
                    lost_since = None
                self._pause(ctx.exec_id, pause)
                pause = min(POLL_MAX, pause * 1.5)
        finally:
            self._forget_done(ctx.exec_id)
            if reader is not None:
                reader.close()
            if offset != saved:
                self._checkpoint(checkpoint, ctx, offset, None)
        return self._outcome(status)

    def _pause(self, exec_id: str, seconds: float) -> None:
        """Sleep between looks at an idle log, waking at once when the runner ends
        (its final status is then there to read: no poll interval added to the end)."""
        done, news = self._done.get(exec_id), self._news.get(exec_id)
        fds = [fd for fd in (done, news) if fd is not None]
        if not fds:
            time.sleep(seconds)
            return
        ready, _, _ = select.select(fds, [], [], seconds)
        if news in ready:  # new output: drain the pokes, copy it now
            try:
                if not os.read(news, 1 << 16):
                    self._forget(self._news, exec_id)  # the runner is gone
            except BlockingIOError:
                pass
        if done in ready:  # EOF: the runner is gone; from now on plain sleeps
            self._forget_done(exec_id)

    def _forget_done(self, exec_id: str) -> None:
        self._forget(self._done, exec_id)
        self._forget(self._news, exec_id)

    @staticmethod
    def _forget(fds: dict[str, int], exec_id: str) -> None:
        fd = fds.pop(exec_id, None)
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    @staticmethod
    def _checkpoint(path: Path, ctx: RunContext, offset: int, local_end: int | None) -> None:
        if local_end is None:
            try:
                local_end = os.path.getsize(ctx.log_path) if ctx.log_path else 0
            except OSError:
                local_end = 0
        try:
            write_checkpoint(path, offset, local_end)
        except OSError:
            pass  # a missing checkpoint only means a resumed copy starts over (matched)

    def _outcome(self, status: dict[str, Any]) -> int:
        state = status.get("state")
        if state == "failed" and status.get("no_space"):
            raise ExecutionFailed(_no_space(status["no_space"]))
        if state == "exited":
            code = status.get("exit_code")
            return int(code) if code is not None else 1
        if state == "stopped":
            raise ExecutionFailed(status.get("error") or "stopped before the program started")
        raise ExecutionFailed(status.get("error") or f"the program failed ({state})")

    def _lost(self, ctx: RunContext, status: dict[str, Any], p: runner.Paths | None = None) -> None:
        if status.get("pgid"):
            kill_group(status["pgid"], ctx.grace)
        if status.get("container"):
            containers.remove_container(status["container"])
        if p is not None and _disk_full(p.state_dir):  # it could not even record that
            raise ExecutionFailed(_no_space(p.log))
        raise ExecutionFailed("mldesk's runner for this execution died while the program ran, so its "
                              "output could no longer be recorded; the program was stopped")

    def _stream_legacy(self, ctx: RunContext, handle: LocalHandle) -> int:
        """An execution started by an mldesk without local runners: its program's pipes
        died with the supervisor that held them."""
        raise ExecutionFailed("mldesk's supervisor for this execution was killed while the program ran; "
                              "its exit code is unknown")

    # -- stop / cleanup ---------------------------------------------------------------------
    def stop(self, handle: LocalHandle, grace: float) -> None:
        if handle.legacy:
            return
        p = paths_of(handle.root, handle.exec_id)
        # the runner acts on the request; when it is gone, request_stop acts itself
        # (waiting out the grace period): never in the caller's thread
        threading.Thread(target=runner.request_stop, args=(p, grace), name=f"stop-{handle.exec_id}",
                         daemon=True).start()

    def cleanup(self, handle: LocalHandle) -> None:
        if handle.legacy:
            return
        p = paths_of(handle.root, handle.exec_id)
        status = read_json(p.status) or {}
        if status.get("state") not in runner.FINAL_STATES and runner.agent_alive(status):
            runner.request_stop(p, 0)  # the supervisor gives up on a live program: end it
            deadline = time.monotonic() + 10
            while runner.agent_alive(read_json(p.status)) and time.monotonic() < deadline:
                time.sleep(0.05)
        container = status.get("container") or handle.container
        if container:
            containers.remove_container(container)
        import shutil

        shutil.rmtree(p.state_dir, ignore_errors=True)


def _no_space(path: str) -> str:
    from mldesk.core.paths import no_space_message

    return no_space_message(path) + " (the program was stopped: its output could no longer be recorded)"


def _disk_full(path: str) -> bool:
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < (64 << 10)


__all__ = ["RunnerRuntime", "paths_of"]
