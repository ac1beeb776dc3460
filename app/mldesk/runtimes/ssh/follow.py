"""The SSH runtime's start and log follow: byte-offset copy with exact resume, resource samples."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mldesk.agent import protocol
from mldesk.runtimes.base import ExecutionFailed, RunContext, Sink
from mldesk.runtimes.handles import SshHandle
from mldesk.runtimes.relay import Matcher, resume_point, write_checkpoint
from mldesk.runtimes.ssh.client import agent_argv, ensure_agent
from mldesk.runtimes.ssh.outputs import _OutputSync

if TYPE_CHECKING:
    from mldesk.runtimes.ssh.runtime import SshRuntime

CHECKPOINT = "remote_log.json"
CHECKPOINT_INTERVAL = 0.5
RESOURCES_INTERVAL = 4.0


_Matcher = Matcher  # (the relay's; kept under its old name)


class FollowStages:
    """``SshRuntime``'s ``start`` and ``stream`` (follow, reconnect, resume)."""

    def start(self, ctx: RunContext) -> SshHandle:
        from mldesk.runtimes.ssh.transport import HostError

        self._ctx = ctx
        profile = self._profile_of(ctx)
        runtime = self._remote_runtime(ctx)
        spec = {
            "exec_id": ctx.exec_id, "name": ctx.name, "argv": list(ctx.argv), "env": ctx.program_env(),
            "runtime": runtime, "image": ctx.image, "python": profile.python or "python3",
            "network": ctx.network or profile.network, "gpus": bool(profile.gpus), "grace": ctx.grace,
            # the GPUs the queue gave it (None: no queue in between, the profile's flag decides)
            "gpu_ids": ctx.options.gpu_ids,
            "sample_interval": float(ctx.options.sample_interval or 2.0),
        }
        if runtime == "slurm":
            spec["slurm"] = profile.slurm_settings(gpu=ctx.hardware == "gpu")
            if ctx.options.slurm_gpus:  # gpus: N (ml.yaml or --gpus) -> --gres=gpu:N
                spec["slurm"]["gpus"] = int(ctx.options.slurm_gpus)
            if ctx.options.slurm_array:  # a sweep's trial: one task of the sweep's job array
                spec["slurm_array"] = dict(ctx.options.slurm_array)
        heartbeat, dead_after = _follow_timing(profile)

        def start(conn):
            # start-and-follow: the agent answers the start (B frame) and goes on as
            # ``follow`` from offset 0 on the same channel, which stream() then reads
            info = ensure_agent(conn)
            p = conn.open(agent_argv(conn, "start", info["workdir"], ctx.exec_id, 0, heartbeat,
                                     *self._follow_extra(ctx)), timeout=330.0, window_size=8 << 20)
            try:
                p.send((json.dumps(spec) + "\n").encode())
                frame = p.read_typed()
                if frame is None or frame[0] != protocol.STARTED:
                    raise p._ended("the start ended without answering" if frame is None else
                                   f"the start answered an unexpected {frame[0]!r} frame")
                status = json.loads(frame[1])
            except BaseException:
                p.close()
                raise
            p.chan.settimeout(dead_after)  # from here on a follow stream: heartbeats
            return info, conn, p, status

        try:
            info, conn, p, status = self._retry_on_link_loss(
                ctx, self._connection(ctx), start, attempts=3, give_up_after=120.0,
                failed=f"could not start the program on {profile.name}")
        except HostError as exc:
            raise ExecutionFailed(str(exc)) from None
        except ValueError:
            raise ExecutionFailed(f"mldesk's agent on {profile.name} could not start the program: "
                                  "it answered something unexpected") from None
        if status.get("state") == "failed":
            p.close()
            raise ExecutionFailed(status.get("error") or "the program could not be started on the host")
        self._started = (conn, p)
        handle = SshHandle(
            host=profile.name, profile=profile.to_dict(), exec_id=ctx.exec_id,
            workdir=info["workdir"], runtime=runtime, keep_workspace=bool(ctx.options.keep_workspace),
            log_dir=str(ctx.exec_dir) if ctx.exec_dir is not None else None,
            **{key: status[key] for key in ("pid", "pgid", "container", "slurm_job") if status.get(key)},
        )
        if handle.slurm_job or (runtime == "slurm" and status.get("state") == "queued"):
            # (queued without a job: a sweep's trial the agent submits with its job array)
            handle = handle.replace(state=status.get("state"))
        self._handle = handle
        if handle.slurm_job:
            ctx.message(f"submitted to Slurm on {profile.name} as job {handle.slurm_job}")
            return handle
        if runtime == "slurm" and handle.queued:  # a trial waiting for its job array
            ctx.message(f"on {profile.name}: {status.get('reason') or 'waiting to be submitted'}")
            return handle
        where = f"container {handle.container[:12]}" if handle.container else f"pid {handle.pid}"
        ctx.message(f"started on {profile.name} ({runtime} runtime, {where}); it runs detached there")
        return handle

    # -- the log -----------------------------------------------------------------------------
    def _checkpoint_path(self, ctx: RunContext) -> Path | None:
        return ctx.exec_dir / CHECKPOINT if ctx.exec_dir is not None else None

    def _write_checkpoint(self, ctx: RunContext, local_end: int | None, force: bool = False) -> None:
        path = self._checkpoint_path(ctx)
        if path is None:
            return
        now = time.monotonic()
        if not force and now - self._checkpoint_at < CHECKPOINT_INTERVAL:
            return
        self._checkpoint_at = now
        if local_end is None:
            try:
                local_end = os.path.getsize(ctx.log_path) if ctx.log_path else 0
            except OSError:
                local_end = 0
        write_checkpoint(path, self._offset, local_end)

    def _resume_point(self, ctx: RunContext) -> tuple[int, _Matcher | None]:
        return resume_point(self._checkpoint_path(ctx), ctx.log_path)

    def stream(self, ctx: RunContext, handle: SshHandle, sink: Sink, *, resume: bool = False) -> int:
        from mldesk.runtimes.ssh.transport import HostError, LinkLost

        self._ctx = ctx
        self._handle = handle
        if self._profile is None:
            self._profile = self._load_profile(handle.profile or ctx.options.host_profile)
        profile = self._profile
        ctx.workspace.mkdir(parents=True, exist_ok=True)
        matcher = None
        if resume:
            self._offset, matcher = self._resume_point(ctx)
        else:
            self._offset = 0
        self._streaming = True
        self._samples_done = False
        self._final_outputs = None
        syncer = _OutputSync(self, ctx, float(profile.outputs_interval or 0))
        syncer.start()
        samples = _ResourceSync(self, ctx, handle, RESOURCES_INTERVAL)
        samples.start()
        self._syncers = (syncer, samples)
        try:
            try:
                conn = self._connection(ctx, announce=resume)
            except ExecutionFailed as exc:
                conn = self._reconnect(ctx, str(exc))
            while True:
                if self._pending_stop is not None and not self._stop_sent:
                    try:
                        self._send_stop(conn, handle, self._pending_stop)
                    except (LinkLost, HostError):
                        pass
                try:
                    status = self._follow(ctx, conn, handle, sink, matcher)
                    break
                except LinkLost as exc:
                    self._drop(conn)
                    conn = self._reconnect(ctx, str(exc))
                except HostError as exc:
                    raise ExecutionFailed(str(exc)) from None
        finally:
            self._streaming = False
            syncer.stop()
            samples.stop()
            self._write_checkpoint(ctx, None, force=True)
        if not self._samples_done:
            samples.pull_once()  # the last samples, before cleanup removes them there
        state = status.get("state")
        if state == "exited":
            return int(status.get("exit_code") if status.get("exit_code") is not None else 1)
        if state == "stopped":
            raise ExecutionFailed(status.get("error") or "stopped before the program started")
        if state == "lost":
            raise ExecutionFailed(status.get("error") or
                                  f"the program on {profile.name} was lost: mldesk's agent there died without "
                                  "recording how the program ended (was the host rebooted?)")
        raise ExecutionFailed(status.get("error") or f"the program on {profile.name} failed ({state})")

    def _follow(self, ctx: RunContext, conn, handle: SshHandle, sink: Sink, matcher: _Matcher | None):
        from mldesk.runtimes.ssh.transport import LinkLost

        profile = conn.profile
        heartbeat, dead_after = _follow_timing(profile)
        started, self._started = self._started, None
        if started is not None and started[0] is conn and conn.alive and self._offset == 0:
            p = started[1]  # the start's own channel goes on as the follow
        else:
            if started is not None:
                started[1].close()
            p = conn.open(agent_argv(conn, "follow", handle.workdir, handle.exec_id, self._offset, heartbeat,
                                     *self._follow_extra(ctx)), timeout=dead_after, window_size=8 << 20)
        try:
            while True:
                frame = p.read_typed()
                if frame is None:
                    if not conn.alive:
                        raise LinkLost(f"the connection to {profile.name} broke")
                    raise p._ended("the log stream ended early")
                kind, payload = frame
                if kind == protocol.LOG:
                    local_end = None
                    n = len(payload)
                    for stream, ts, data in protocol.log_records(payload):
                        if matcher is not None and matcher.seen(stream, ts, data):
                            continue
                        ret = sink(stream, data, ts)
                        if isinstance(ret, int):
                            local_end = ret
                    self._offset += n
                    self._write_checkpoint(ctx, local_end)
                elif kind == protocol.STATUS:
                    self._on_status(ctx, json.loads(payload))
                elif kind == protocol.END:
                    status = json.loads(payload)
                    changes = self._learn_job(ctx, status)  # (it ended before a T frame said)
                    if handle.runtime == "slurm" and self._shown_state[0] != "running":
                        # a job that ended before a T frame said it ran: when it started
                        started = status.get("started_at") or status.get("submitted_at")
                        if started:
                            changes["started_at"] = started
                    if changes:
                        ctx.set_state("running", **changes)
                    if self._follow_extra(ctx):
                        self._final_over_follow(ctx, p)
                    return status
                # H: a heartbeat, nothing to do
        finally:
            p.close()

    @staticmethod
    def _follow_extra(ctx: RunContext) -> list[str]:
        """The follow's extra argument: the final outputs (and last samples) at its end."""
        return ["outputs"] if ctx.exec_dir is not None else []

    def _final_over_follow(self, ctx: RunContext, p) -> None:
        """After END, on the same channel: the last resource samples and the final
        outputs (what the final collection would fetch on channels of its own). Any
        trouble leaves them to that collection (``collect_outputs``), which retries."""
        for syncer in self._syncers:  # nothing else pulls into the same files meanwhile
            syncer.stop()
        dest = ctx.exec_dir / "outputs"
        samples = ctx.exec_dir / "resources.jsonl"
        try:
            req = self._outputs_request(ctx, dest)
            try:
                req["resources_from"] = samples.stat().st_size
            except FileNotFoundError:
                req["resources_from"] = 0
            p.send((json.dumps(req) + "\n").encode())
            frame = p.read_typed()
            if frame is None or frame[0] != protocol.SAMPLES:
                return
            if frame[1]:
                fd = os.open(samples, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                try:
                    os.write(fd, frame[1])
                finally:
                    os.close(fd)
            self._samples_done = True
            self._final_outputs = (dest, self._read_outputs(ctx, p, dest, report=True))
        except Exception:  # noqa: BLE001 - the final collection fetches them on its own
            self._final_outputs = None

    def _on_status(self, ctx: RunContext, status: dict[str, Any]) -> None:
        """A Slurm job's state changed: queued (with Slurm's reason, or waiting for the
        sweep's job array) or running. A job id first seen here (a job array's task)
        goes into the handle."""
        state, reason = status.get("state"), status.get("reason")
        if (state, reason) == self._shown_state:
            return
        self._shown_state = (state, reason)
        job = status.get("slurm_job")
        changes = self._learn_job(ctx, status)
        handle = self._handle
        if state == "queued":
            if job:
                ctx.message(f"queued by Slurm (job {job}): {reason or 'pending'}")
            else:
                ctx.message(f"on {handle.host if handle else 'the host'}: {reason or 'waiting'}")
            ctx.set_state("queued", reason=reason, **changes)
        elif state == "running":
            ctx.message(f"Slurm job {job} is running")
            changes["reason"] = None
            if status.get("started_at"):
                changes["started_at"] = status["started_at"]
            ctx.set_state("running", **changes)

    def _learn_job(self, ctx: RunContext, status: dict[str, Any]) -> dict[str, Any]:
        """A Slurm job id the handle lacks (a job array's task, submitted after the
        start answered): into a new handle (kept here: the supervisor's stop and cleanup
        need only the execution's folder on the host); returns the store change to make."""
        job = status.get("slurm_job")
        handle = self._handle
        if not job or handle is None or str(handle.slurm_job or "") == str(job):
            return {}
        self._handle = handle = handle.replace(slurm_job=str(job))
        ctx.message(f"submitted to Slurm on {handle.host} as job {job}"
                    + (" (a task of the sweep's job array)" if "_" in str(job) else ""))
        return {"handle": handle.to_json()}


def _follow_timing(profile) -> tuple[float, float]:
    """(heartbeat the agent sends, silence after which the link is taken for dead)."""
    keepalive = max(0.5, float(profile.keepalive or 10.0))
    return max(0.25, keepalive / 2), max(2.0, 2 * keepalive + 1)


class _ResourceSync(threading.Thread):
    """Appends the host's new resource samples (the agent samples the program there)
    to the local resources.jsonl every ``interval`` seconds. The local file's size is
    the offset, so a reconnect or a new supervisor continues where it stopped."""

    def __init__(self, runtime: "SshRuntime", ctx: RunContext, handle: SshHandle, interval: float):
        super().__init__(name=f"resources-{ctx.exec_id}", daemon=True)
        self.runtime = runtime
        self.ctx = ctx
        self.handle = handle
        self.interval = interval
        self.halt = threading.Event()
        self._lock = threading.Lock()

    def pull_once(self) -> None:
        conn = self.runtime._conn
        if self.ctx.exec_dir is None or conn is None or not conn.alive or not self.handle.workdir:
            return
        path = self.ctx.exec_dir / "resources.jsonl"
        with self._lock:
            try:
                offset = path.stat().st_size
            except FileNotFoundError:
                offset = 0
            try:
                r = conn.run(agent_argv(conn, "resources", self.handle.workdir, self.handle.exec_id, offset),
                             timeout=60.0)
            except Exception:  # noqa: BLE001 - the next round retries
                return
            if r.code == 0 and r.stdout:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                try:
                    os.write(fd, r.stdout)
                finally:
                    os.close(fd)

    def run(self) -> None:
        while not self.halt.wait(self.interval):
            self.pull_once()

    def stop(self) -> None:
        self.halt.set()
        if self.is_alive():
            self.join(70.0)

