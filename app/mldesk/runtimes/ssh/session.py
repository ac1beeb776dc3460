"""The SSH runtime's link to its host: profile, connection, reconnect with backoff, retry of a stage on link loss."""

from __future__ import annotations

import time
from typing import Any, Callable

from mldesk.runtimes.base import ExecutionFailed, RunContext
from mldesk.runtimes.ssh.client import ensure_agent

STOP_REACH_TIMEOUT = 30.0  # after grace: how long to keep trying to deliver a stop


def _layout():
    from mldesk.core.paths import Layout

    return Layout()


class HostLink:
    """``SshRuntime``'s connection to the host (its state is set up in ``runtime.py``):
    one live connection, reconnects with backoff, and the execution's record."""

    # -- profile, connection ------------------------------------------------------------
    def _load_profile(self, data: dict[str, Any] | None):
        from mldesk.runtimes.ssh.transport import HostError, load_profile

        if not data:
            raise ExecutionFailed("this execution has no host profile (was the host removed?)")
        try:
            return load_profile(data)
        except HostError as exc:
            raise ExecutionFailed(str(exc)) from None

    def _profile_of(self, ctx: RunContext):
        if self._profile is None:
            self._profile = self._load_profile(ctx.options.host_profile)
        return self._profile

    def _new_connection(self, profile):
        from mldesk.runtimes.ssh import transport

        conn = transport.connect(profile, known_hosts=_layout().known_hosts)
        ensure_agent(conn)
        return conn

    def _connection(self, ctx: RunContext, *, announce: bool = True):
        """The live connection, connecting once if there is none (errors raise)."""
        from mldesk.runtimes.ssh.transport import HostError

        with self._lock:
            if self._conn is not None and self._conn.alive:
                return self._conn
        profile = self._profile_of(ctx)
        if announce and not self._connected_once:
            ctx.message(f"connecting to {profile.name} ({profile.url})")
        try:
            conn = self._new_connection(profile)
        except HostError as exc:
            raise ExecutionFailed(str(exc)) from None
        with self._lock:
            old, self._conn = self._conn, conn
        if old is not None:
            old.close()
        if announce and not self._connected_once:
            info = conn.agent_info or {}
            ctx.message(f"connected to {conn.endpoint.label} ({conn.login}); work folder "
                        f"{info.get('workdir')}, Python {info.get('version')}")
        self._connected_once = True
        return conn

    def _drop(self, conn) -> None:
        with self._lock:
            if self._conn is conn:
                self._conn = None
        if conn is not None:
            conn.close()

    def _reconnect(self, ctx: RunContext, reason: str, *, give_up_after: float | None = None):
        """Reconnect with backoff, showing "reconnecting" on the execution meanwhile."""
        from mldesk.runtimes.ssh.transport import HostAuthError, HostError, HostKeyError, wait_with_backoff

        profile = self._profile_of(ctx)
        ctx.message(f"lost the connection to {profile.name} ({reason}); the execution goes on there; "
                    "reconnecting")
        started = time.monotonic()
        limit = give_up_after if give_up_after is not None else (profile.reconnect_timeout or None)
        attempt = 0
        try:
            while True:
                attempt += 1
                ctx.set_note(f"reconnecting to {profile.name} (attempt {attempt})")
                try:
                    conn = self._new_connection(profile)
                except (HostKeyError, HostAuthError) as exc:
                    raise ExecutionFailed(str(exc)) from None
                except HostError as exc:
                    last = str(exc)
                else:
                    with self._lock:
                        old, self._conn = self._conn, conn
                    if old is not None:
                        old.close()
                    ctx.message(f"reconnected to {profile.name} after {time.monotonic() - started:.0f} s "
                                f"(attempt {attempt})")
                    return conn
                waited = time.monotonic() - started
                if self._stop_asked_at is not None and not self._stop_sent and \
                        time.monotonic() - self._stop_asked_at > (self._pending_stop or 0) + STOP_REACH_TIMEOUT:
                    raise ExecutionFailed(
                        f"could not reach {profile.name} to stop the program ({last}); it may still be "
                        f"running there, in {self._remote_exec_dir() or 'the host work folder'}")
                if limit and waited > limit:
                    raise ExecutionFailed(f"lost {profile.name} for {waited:.0f} s and gave up reconnecting "
                                          f"({last}); the program may still be running there")
                # (a Stop asked meanwhile wakes this up: it is delivered at the next attempt)
                wait_with_backoff(attempt, max(2.0, min(15.0, profile.keepalive * 3)), self._wake)
                self._wake.clear()
        finally:
            ctx.set_note(None)

    def _retry_on_link_loss(self, ctx: RunContext, conn, op: Callable[[Any], Any], *, attempts: int,
                            give_up_after: float, failed: str, on_lost: Callable[[], None] | None = None):
        """``op(conn)``; when the link is lost, drop it, reconnect (with backoff, showing
        "reconnecting" on the execution) and call ``op`` again on the new connection, up
        to ``attempts`` times; then ``ExecutionFailed("{failed}: {why}")``. ``on_lost``
        runs first after each loss (it may raise to stop retrying)."""
        from mldesk.runtimes.ssh.transport import LinkLost

        for attempt in range(1, attempts + 1):
            try:
                return op(conn)
            except LinkLost as exc:
                if on_lost is not None:
                    on_lost()
                if attempt == attempts:
                    raise ExecutionFailed(f"{failed}: {exc}") from None
                self._drop(conn)
                conn = self._reconnect(ctx, str(exc), give_up_after=give_up_after)

    def _remote_exec_dir(self) -> str | None:
        return self._handle.remote_exec_dir if self._handle is not None else None

    # -- the execution record (snapshot id, runtime) ---------------------------------------
    def _execution(self, ctx: RunContext):
        if self._ex is None:
            from mldesk.core.paths import Layout
            from mldesk.core.store import Store

            root = ctx.exec_dir.parent.parent if ctx.exec_dir is not None else None
            store = Store(Layout(root).db)
            try:
                self._ex = store.get(ctx.exec_id)
            finally:
                store.close()
            if self._ex is None:
                raise ExecutionFailed(f"execution {ctx.exec_id} is not in the store")
        return self._ex

    def _remote_runtime(self, ctx: RunContext) -> str:
        rt = ctx.options.runtime
        if rt in ("docker", "process", "slurm"):
            return rt
        try:
            return self._execution(ctx).runtime
        except ExecutionFailed:
            return "docker" if ctx.image else "process"
