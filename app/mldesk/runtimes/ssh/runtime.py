"""The ``ssh`` runtime: executions on a remote host, over SSH (paramiko).

The supervisor drives it like the local runtimes; it takes over the workspace stages:

* ``prepare_workspace``: connect, make sure mldesk's agent (the stdlib-only ``mldesk.agent``
  package) is on the host, then
  upload the snapshot content-addressed: one channel carries the manifest up, the
  list of blobs the host lacks down, then only those blobs up (raw, in that order);
  the agent verifies each (sha256), stores it in ``WORKDIR/blobs`` and materialises
  the workspace. Bytes sent are counted (``upload.json`` in the execution's folder).
* ``fetch_inputs``: the agent downloads on the host with ``inputs.py`` (atomic,
  retried, cached there); progress lines come back as JSON.
* ``start``: the agent starts a detached supervising agent (own session, stdio to
  files), which runs ``python main.py ARGV`` (process: own process group; docker:
  ``docker run -d`` with the local runtime's hardening) and writes the program's
  output into ``log.bin`` on the host, in mldesk's log format, and its state into
  ``status.json``. The run survives the SSH link and the app.
* ``stream``: ``agent.py follow ID OFFSET`` sends the host's log from byte
  OFFSET as raw records (plus heartbeats); each record becomes one ``sink(stream,
  data, ts)`` call with the host's timestamp, so the local log holds the same
  records. A link that stays silent for ~2 keepalives is declared dead; the runtime
  reconnects with backoff (the execution shows "reconnecting to HOST (attempt n)")
  and resumes at the exact byte offset: nothing lost, nothing doubled.

  Resume after the *local* supervisor died: ``remote_log.json`` (written atomically
  after copied records are in the local log) holds ``(remote offset R, local log
  size L)``: everything of the host's log before R is in the local log before L.
  Records copied after the last checkpoint are in the local log after L; the new
  supervisor follows from R and drops the host's records that equal (stream,
  timestamp, data) the next copied record after L, so exactly the missing ones are
  added. The checkpoint is only ever behind the local log, never ahead of it.
* ``collect_outputs``: changed files of ``outputs/`` come back (every
  ``outputs_interval`` seconds while running, and completely at the end); the agent
  opens everything with O_NOFOLLOW relative to its folder, so no link is followed and
  nothing outside outputs/ is read.
* ``stop``: the agent's stop request; the supervising agent sends TERM to the
  program's group (or ``docker stop -t GRACE``), KILL after the grace period. A stop
  asked while the link is down is sent as soon as it is back.

The stages live in their own modules, composed here: ``session.py`` (the connection,
reconnects, the retry-on-link-loss helper), ``upload.py`` (snapshot, image, inputs),
``follow.py`` (start, log follow and resume, resource samples), ``outputs.py``
(outputs sync); ``client.py`` is the agent client, ``transport.py`` paramiko.
"""

from __future__ import annotations

import threading
import time

from mldesk.runtimes.base import RunContext, Runtime, RuntimeUnavailable
from mldesk.runtimes.ssh.client import (  # noqa: F401 - the agent client, re-exported
    AGENT_ENTRY, agent_argv, agent_sources, agent_version, ensure_agent, probe, slurm_info,
)
from mldesk.runtimes.handles import SshHandle
from mldesk.runtimes.ssh.follow import CHECKPOINT, FollowStages, _Matcher  # noqa: F401 - re-exported
from mldesk.runtimes.ssh.outputs import OutputStages, _local_state, _OutputWriter  # noqa: F401 - re-exported
from mldesk.runtimes.ssh.session import HostLink
from mldesk.runtimes.ssh.upload import UploadStages


class SshRuntime(HostLink, UploadStages, FollowStages, OutputStages, Runtime):
    name = "ssh"
    handle_type = SshHandle

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._conn = None
        self._profile = None
        self._ctx: RunContext | None = None
        self._handle: SshHandle | None = None
        self._offset = 0
        self._pending_stop: float | None = None
        self._stop_asked_at: float | None = None
        self._stop_sent = False
        self._streaming = False
        self._final_collected = False
        self._connected_once = False
        self._checkpoint_at = 0.0
        self._ex = None
        self._wake = threading.Event()
        self._shown_state: tuple[str | None, str | None] = (None, None)

    # -- stop / cleanup ----------------------------------------------------------------------
    def _send_stop(self, conn, handle: SshHandle, grace: float) -> None:
        r = conn.run(agent_argv(conn, "stop", handle.workdir, handle.exec_id, grace), timeout=60.0)
        if r.code != 0:
            from mldesk.runtimes.ssh.transport import HostError

            raise HostError(f"stop on {conn.profile.name} failed: "
                            f"{(r.stderr.strip().splitlines() or ['exit code %d' % r.code])[-1]}")
        self._stop_sent = True

    def stop(self, handle: SshHandle, grace: float) -> None:
        from mldesk.runtimes.ssh.transport import HostError

        if not handle.exec_id:
            return
        self._pending_stop = grace
        if self._stop_asked_at is None:
            self._stop_asked_at = time.monotonic()
        self._wake.set()
        with self._lock:
            conn = self._conn if self._conn is not None and self._conn.alive else None
        try:
            if conn is None:
                profile = self._profile or self._load_profile(handle.profile)
                conn = self._new_connection(profile)
                if not self._streaming:
                    try:
                        self._send_stop(conn, handle, grace)
                    finally:
                        conn.close()
                    return
                with self._lock:
                    if self._conn is None:
                        self._conn = conn
            self._send_stop(conn, handle, grace)
        except (HostError, OSError) as exc:
            if self._streaming:
                ctx = self._ctx
                if ctx is not None:
                    ctx.message(f"cannot reach {handle.host} right now ({exc}); the stop will be sent "
                                "as soon as the connection is back")
                return
            raise RuntimeUnavailable(f"cannot stop the program on {handle.host}: {exc}") from None

    def cleanup(self, handle: SshHandle) -> None:
        try:
            if handle.exec_id and not handle.keep_workspace and self._final_collected:
                # (when the outputs could not all be collected, the host's copy stays)
                self._remove_remote(handle.exec_id, handle.workdir)
        finally:
            with self._lock:
                conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

    def _remove_remote(self, exec_id: str, workdir: str | None) -> None:
        with self._lock:
            conn = self._conn if self._conn is not None and self._conn.alive else None
        if conn is None:
            return
        try:
            info = ensure_agent(conn)
            conn.run(agent_argv(conn, "cleanup", workdir or info["workdir"], exec_id), timeout=120.0)
        except Exception:  # noqa: BLE001 - the execution's result stands
            pass


__all__ = ["SshRuntime", "agent_argv", "agent_sources", "agent_version", "ensure_agent", "probe"]
