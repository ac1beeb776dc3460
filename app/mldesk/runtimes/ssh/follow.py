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
        def start(conn):
            info = ensure_agent(conn)
            return info, conn.run(agent_argv(conn, "start", info["workdir"], ctx.exec_id),
                                  input=json.dumps(spec).encode(), timeout=330.0)

        try:
            info, r = self._retry_on_link_loss(ctx, self._connection(ctx), start, attempts=3, give_up_after=120.0,
                                               failed=f"could not start the program on {profile.name}")
        except HostError as exc:
            raise ExecutionFailed(str(exc)) from None
        try:
            status = json.loads(r.stdout.decode("utf-8", "replace").strip().splitlines()[-1])
        except (ValueError, IndexError):
            err = (r.stderr.strip().splitlines() or [f"exit code {r.code}"])[-1]
            raise ExecutionFailed(f"mldesk's agent on {profile.name} could not start the program: {err}") from None
        if status.get("state") == "failed":
            raise ExecutionFailed(status.get("error") or "the program could not be started on the host")
        handle = SshHandle(
            host=profile.name, profile=profile.to_dict(), exec_id=ctx.exec_id,
            workdir=info["workdir"], runtime=runtime, keep_workspace=bool(ctx.options.keep_workspace),
            log_dir=str(ctx.exec_dir) if ctx.exec_dir is not None else None,
            **{key: status[key] for key in ("pid", "pgid", "container", "slurm_job") if status.get(key)},
        )
        if handle.slurm_job:
            handle = handle.replace(state=status.get("state"))
        self._handle = handle
        if handle.slurm_job:
            ctx.message(f"submitted to Slurm on {profile.name} as job {handle.slurm_job}")
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
        syncer = _OutputSync(self, ctx, float(profile.outputs_interval or 0))
        syncer.start()
        samples = _ResourceSync(self, ctx, handle, RESOURCES_INTERVAL)
        samples.start()
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
        keepalive = max(0.5, float(profile.keepalive or 10.0))
        heartbeat = max(0.25, keepalive / 2)
        dead_after = max(2.0, 2 * keepalive + 1)
        p = conn.open(agent_argv(conn, "follow", handle.workdir, handle.exec_id, self._offset, heartbeat),
                      timeout=dead_after, window_size=8 << 20)
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
                    return json.loads(payload)
                # H: a heartbeat, nothing to do
        finally:
            p.close()

    def _on_status(self, ctx: RunContext, status: dict[str, Any]) -> None:
        """A Slurm job's state changed: queued (with Slurm's reason) or running."""
        state, reason = status.get("state"), status.get("reason")
        if (state, reason) == self._shown_state:
            return
        self._shown_state = (state, reason)
        if state == "queued":
            ctx.message(f"queued by Slurm (job {status.get('slurm_job')}): {reason or 'pending'}")
            ctx.set_state("queued", reason=reason)
        elif state == "running":
            ctx.message(f"Slurm job {status.get('slurm_job')} is running")
            changes: dict[str, Any] = {"reason": None}
            if status.get("started_at"):
                changes["started_at"] = status["started_at"]
            ctx.set_state("running", **changes)


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

