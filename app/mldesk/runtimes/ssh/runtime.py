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
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from mldesk.agent import protocol
from mldesk.agent.fsutil import human_bytes as human
from mldesk.agent.fsutil import write_json as _write_json
from mldesk.runtimes.base import ExecutionFailed, RunContext, Runtime, RuntimeUnavailable, Sink
from mldesk.runtimes.relay import Matcher, resume_point, write_checkpoint
from mldesk.runtimes.ssh.client import (  # noqa: F401 - the agent client, re-exported
    AGENT_ENTRY, agent_argv, agent_sources, agent_version, ensure_agent, probe, slurm_info,
)

CHECKPOINT = "remote_log.json"
CHECKPOINT_INTERVAL = 0.5
PROGRESS_INTERVAL = 2.0
PROGRESS_MIN_BYTES = 16 << 20  # uploads smaller than this get no progress lines
SEND_CHUNK = 1 << 20
STOP_REACH_TIMEOUT = 30.0  # after grace: how long to keep trying to deliver a stop
FINAL_RECONNECT_TIMEOUT = 60.0  # how long the final output collection keeps trying


def _layout():
    from mldesk.core.paths import Layout

    return Layout()


_Matcher = Matcher  # (the relay's; kept under its old name)


class SshRuntime(Runtime):
    name = "ssh"

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._conn = None
        self._profile = None
        self._ctx: RunContext | None = None
        self._handle: dict[str, Any] | None = None
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
            self._profile = self._load_profile(ctx.options.get("host_profile"))
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
        h = self._handle or {}
        if h.get("workdir") and h.get("exec_id"):
            return f"{h['workdir']}/executions/{h['exec_id']}"
        return None

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
        rt = ctx.options.get("runtime")
        if rt in ("docker", "process", "slurm"):
            return rt
        try:
            return self._execution(ctx).runtime
        except ExecutionFailed:
            return "docker" if ctx.image else "process"

    def _manifest(self, ctx: RunContext) -> tuple[dict[str, list], Any]:
        from mldesk.core.paths import Layout
        from mldesk.core.snapshots import SnapshotError, SnapshotStore

        snap = ctx.options.get("snapshot") or self._execution(ctx).snapshot
        layout = Layout(ctx.exec_dir.parent.parent) if ctx.exec_dir is not None else _layout()
        store = SnapshotStore(layout.blobs, layout.snapshots)
        try:
            return store.manifest(snap), store
        except SnapshotError as exc:
            raise ExecutionFailed(str(exc)) from None

    # -- stages ----------------------------------------------------------------------------
    def prepare_workspace(self, ctx: RunContext, materialize: Callable[[Path], None]) -> None:
        self._ctx = ctx
        # the supervisor collects outputs only when the (local) workspace exists
        ctx.workspace.mkdir(parents=True, exist_ok=True)
        files, store = self._manifest(ctx)
        self._retry_on_link_loss(ctx, self._connection(ctx), lambda conn: self.upload(ctx, conn, files, store),
                                 attempts=5, give_up_after=300.0,
                                 failed=f"the upload to {self._profile_of(ctx).name} failed")

    def upload(self, ctx: RunContext, conn, files: dict[str, list], store) -> dict[str, Any]:
        """Send the snapshot; returns (and writes to upload.json) what was sent."""
        from mldesk.runtimes.ssh.transport import HostError

        t0 = time.monotonic()
        wire0 = conn.bytes_sent
        info = ensure_agent(conn)
        manifest = json.dumps({"files": files}, separators=(",", ":")).encode()
        p = conn.open(agent_argv(conn, "upload", info["workdir"], ctx.exec_id),
                      timeout=max(60.0, 4 * conn.profile.keepalive))
        try:
            payload = 0
            p.send_frame(manifest)
            payload += 4 + len(manifest)
            missing = json.loads(p.read_frame())["missing"]
            sizes = {e[0]: int(e[1]) for e in files.values() if e[0] != "link"}
            total = sum(sizes.values())
            to_send = sum(sizes[s] for s in missing)
            ctx.message(f"uploading the snapshot to {conn.profile.name}: {len(files)} file(s), {human(total)}; "
                        f"the host has {len(sizes) - len(missing)} of {len(sizes)} already, "
                        f"sending {len(missing)} ({human(to_send)})")
            sent = 0
            last = time.monotonic()
            pending: list[bytes] = []  # small files go out together, in full SSH packets
            pending_size = 0
            for sha in missing:
                path = store.blob_path(sha)
                try:
                    f = open(path, "rb")
                except FileNotFoundError:
                    raise ExecutionFailed(f"blob {sha} of the snapshot is missing from {store.blobs}") from None
                with f:
                    left = sizes[sha]
                    while left:
                        chunk = f.read(min(SEND_CHUNK, left))
                        if not chunk:
                            raise ExecutionFailed(f"{path} is shorter than its snapshot says")
                        pending.append(chunk)
                        pending_size += len(chunk)
                        left -= len(chunk)
                        if pending_size >= SEND_CHUNK:
                            p.send(b"".join(pending))
                            sent += pending_size
                            pending, pending_size = [], 0
                            now = time.monotonic()
                            if to_send >= PROGRESS_MIN_BYTES and now - last >= PROGRESS_INTERVAL:
                                rate = sent / max(1e-6, now - t0)
                                ctx.message(f"uploading: {human(sent)} of {human(to_send)} ({human(rate)}/s)")
                                last = now
            if pending:
                p.send(b"".join(pending))
                sent += pending_size
            payload += sent
            # the host may take a while to make the workspace of a big lab (no output meanwhile)
            p.chan.settimeout(max(600.0, total / 50e6))
            result = json.loads(p.read_frame())
            if "error" in result:
                raise ExecutionFailed(f"the upload to {conn.profile.name} failed: {result['error']}")
        except HostError:
            raise
        finally:
            p.close()
        seconds = time.monotonic() - t0
        stats = {"files": len(files), "bytes_total": total, "blobs": len(sizes), "blobs_sent": len(missing),
                 "bytes_sent_payload": payload, "bytes_sent_wire": conn.bytes_sent - wire0,
                 "blob_bytes_sent": sent, "seconds": round(seconds, 3),
                 "host_receive_seconds": result.get("receive_seconds"),
                 "host_workspace_seconds": result.get("workspace_seconds")}
        if ctx.exec_dir is not None:
            _write_json(ctx.exec_dir / "upload.json", stats)
        ctx.message(f"uploaded {human(sent)} in {seconds:.1f} s"
                    + (f" ({human(sent / seconds)}/s)" if sent and seconds > 0 else "")
                    + f"; workspace ready on {conn.profile.name}")
        return stats

    def prepare(self, ctx: RunContext) -> None:
        conn = self._connection(ctx)
        profile = self._profile_of(ctx)
        runtime = self._remote_runtime(ctx)
        if runtime == "docker":
            r = conn.run(["docker", "version", "--format", "{{.Server.Version}}"], timeout=60.0)
            if r.code != 0:
                err = (r.stderr.strip().splitlines() or [f"exit code {r.code}"])[-1]
                if r.code == 127:
                    err = "docker is not installed there"
                elif "permission denied" in err.lower():
                    err += f"; add {conn.endpoint.user} to the docker group on the host"
                raise ExecutionFailed(f"Docker on {profile.name} is not available ({err}); start it there, "
                                      f"or run with the process runtime (mldesk run --host {profile.name} "
                                      "--runtime process)")
            r = conn.run(["docker", "image", "inspect", "--format", "{{.Id}}", ctx.image], timeout=60.0)
            if r.code != 0:
                ctx.message(f"image {ctx.image} is not on {profile.name}; pulling it there")
                self._pull(ctx, conn, ctx.image)
        elif runtime == "slurm":
            if ctx.hardware == "gpu" and not (profile.slurm_gpus or ctx.options.get("slurm_gpus")):
                raise ExecutionFailed(f"hardwareType is gpu but the Slurm host {profile.name} asks for 0 GPUs "
                                      "per job; set its GPUs per job (--gres=gpu:N) or hardwareType: cpu")
            # GPUs are the compute nodes' (--gres=gpu:N); the login node needs none
        # GPUs on other hosts: the host's probe (through the agent) told the engine which it
        # has, and the queue handed this execution its own (ctx.options["gpu_ids"]) before this stage

    def _pull(self, ctx: RunContext, conn, image: str) -> None:
        p = conn.open(["docker", "pull", image], timeout=3600.0)
        last = time.monotonic()
        try:
            p.close_stdin()
            for line in p.lines():
                now = time.monotonic()
                if now - last >= PROGRESS_INTERVAL:
                    progress = f"pulling {image} on {conn.profile.name}: {line.decode('utf-8', 'replace').strip()[:120]}"
                    ctx.message(progress)
                    ctx.set_note(progress)  # shown on the execution's row while it pulls
                    last = now
            code = p.wait(60.0)
        finally:
            p.close()
            ctx.set_note(None)
        if code != 0:
            err = (p.stderr.strip().splitlines() or [f"exit code {code}"])[-1]
            raise ExecutionFailed(f"image {image} is not on {conn.profile.name} and could not be pulled there "
                                  f"({err}); build or load it on the host, or choose another image")
        ctx.message(f"pulled {image} on {conn.profile.name}")

    def fetch_inputs(self, ctx: RunContext, specs: list, cache_dir: Path, on_progress, cancel) -> None:
        if not specs:
            return
        local, remote = _split_local_inputs(specs)

        def fetch(conn) -> None:
            nonlocal local
            for name, url, path in local:
                if cancel.is_set():
                    raise ExecutionFailed("cancelled")
                self._put_input(ctx, conn, name, url, path, on_progress)
            local = []  # sent: a retry after a lost link only fetches
            if remote:
                self._fetch(ctx, conn, remote, on_progress, cancel)

        def cancelled() -> None:
            if cancel.is_set():
                raise ExecutionFailed("cancelled")

        self._retry_on_link_loss(ctx, self._connection(ctx), fetch, attempts=5, give_up_after=300.0,
                                 failed=f"fetching the inputs on {self._profile_of(ctx).name} failed",
                                 on_lost=cancelled)

    def _put_input(self, ctx: RunContext, conn, name: str, url: str, path: Path, on_progress) -> None:
        """Send a file input that lives on this machine (file://) to the host, content-
        addressed like the snapshot: not sent again when the host has it."""
        from mldesk.agent import inputs

        h = hashlib.sha256()
        size = 0
        try:
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(SEND_CHUNK), b""):
                    h.update(chunk)
                    size += len(chunk)
        except OSError as exc:
            raise ExecutionFailed(f"input '{name}' ({url}) failed: {exc.strerror or exc}") from None
        sha = h.hexdigest()
        ctx.message(f"read local file {path} as {name}: {size} B")  # always named (SPEC 10a)
        info = ensure_agent(conn)
        t0 = time.monotonic()
        p = conn.open(agent_argv(conn, "put-input", info["workdir"], ctx.exec_id, name, sha, size),
                      timeout=max(60.0, 4 * conn.profile.keepalive))
        try:
            need = json.loads(p.read_frame()).get("need")
            if need:
                with open(path, "rb") as f:
                    left = size
                    while left:
                        chunk = f.read(min(SEND_CHUNK, left))
                        if not chunk:
                            raise ExecutionFailed(f"input '{name}' ({url}) changed while it was sent")
                        p.send(chunk)
                        left -= len(chunk)
            result = json.loads(p.read_frame())
        finally:
            p.close()
        if "error" in result:
            raise ExecutionFailed(f"input '{name}' ({url}) failed: {result['error']}")
        took = time.monotonic() - t0
        ctx.message(f"sent {name} from this computer to {conn.profile.name}: {human(size)}" if need else
                    f"{name}: {conn.profile.name} has it already (same content)")
        if on_progress is not None:
            on_progress(inputs.Progress(name, url, "done" if need else "cached", size, size,
                                        size / took if took > 0 else 0.0, 0.0, 1, ""))

    def _fetch(self, ctx: RunContext, conn, specs: list, on_progress, cancel) -> None:
        from mldesk.agent import inputs

        info = ensure_agent(conn)
        timeout = float(ctx.options.get("input_timeout") or 30.0)
        retries = int(ctx.options.get("input_retries") if ctx.options.get("input_retries") is not None else 4)
        p = conn.open(agent_argv(conn, "fetch", info["workdir"], ctx.exec_id, timeout, retries),
                      timeout=max(60.0, timeout * 4, 4 * conn.profile.keepalive))
        done = threading.Event()

        def watch_cancel() -> None:
            while not done.wait(0.1):
                if cancel.is_set():
                    try:
                        p.send(b"cancel\n")
                    except Exception:  # noqa: BLE001 - closing anyway
                        pass
                    return

        threading.Thread(target=watch_cancel, daemon=True).start()
        try:
            from mldesk.agent.inputs import DEFAULT_MAX_BYTES, DEFAULT_MIN_RATE

            request = {"specs": [list(s) for s in specs],  # the limits of the settings (SPEC 10a)
                       "max_bytes": ctx.options.get("input_max_bytes", DEFAULT_MAX_BYTES),
                       "min_rate": float(ctx.options.get("input_min_rate", DEFAULT_MIN_RATE) or 0.0)}
            p.send((json.dumps(request) + "\n").encode())
            for line in p.lines():
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if "progress" in obj:
                    if on_progress is not None:
                        try:
                            on_progress(inputs.Progress(**obj["progress"]))
                        except TypeError:
                            pass
                elif "message" in obj:
                    ctx.message(obj["message"])
                elif "error" in obj:
                    raise ExecutionFailed(obj["error"])
                elif "cancelled" in obj:
                    raise ExecutionFailed("cancelled")
                elif obj.get("done"):
                    return
            raise p._ended("the input download ended without a result")
        finally:
            done.set()
            p.close()

    def start(self, ctx: RunContext) -> dict[str, Any]:
        from mldesk.runtimes.ssh.transport import HostError

        self._ctx = ctx
        profile = self._profile_of(ctx)
        runtime = self._remote_runtime(ctx)
        spec = {
            "exec_id": ctx.exec_id, "name": ctx.name, "argv": list(ctx.argv), "env": ctx.program_env(),
            "runtime": runtime, "image": ctx.image, "python": profile.python or "python3",
            "network": ctx.network or profile.network, "gpus": bool(profile.gpus), "grace": ctx.grace,
            # the GPUs the queue gave it (None: no queue in between, the profile's flag decides)
            "gpu_ids": ctx.options.get("gpu_ids"),
            "sample_interval": float(ctx.options.get("sample_interval") or 2.0),
        }
        if runtime == "slurm":
            spec["slurm"] = profile.slurm_settings(gpu=ctx.hardware == "gpu")
            if ctx.options.get("slurm_gpus"):  # gpus: N (ml.yaml or --gpus) -> --gres=gpu:N
                spec["slurm"]["gpus"] = int(ctx.options["slurm_gpus"])
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
        handle = {
            "host": profile.name, "profile": profile.to_dict(), "exec_id": ctx.exec_id,
            "workdir": info["workdir"], "runtime": runtime, "keep_workspace": bool(ctx.options.get("keep_workspace")),
            "log_dir": str(ctx.exec_dir) if ctx.exec_dir is not None else None,
        }
        for key in ("pid", "pgid", "container", "slurm_job"):
            if status.get(key):
                handle[key] = status[key]
        self._handle = handle
        if handle.get("slurm_job"):
            handle["state"] = status.get("state")
            ctx.message(f"submitted to Slurm on {profile.name} as job {handle['slurm_job']}")
            return handle
        where = f"container {handle['container'][:12]}" if handle.get("container") else f"pid {handle.get('pid')}"
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

    def stream(self, ctx: RunContext, handle: dict[str, Any], sink: Sink, *, resume: bool = False) -> int:
        from mldesk.runtimes.ssh.transport import HostError, LinkLost

        self._ctx = ctx
        self._handle = handle
        if self._profile is None:
            self._profile = self._load_profile(handle.get("profile") or ctx.options.get("host_profile"))
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

    def _follow(self, ctx: RunContext, conn, handle: dict[str, Any], sink: Sink, matcher: _Matcher | None):
        from mldesk.runtimes.ssh.transport import LinkLost

        profile = conn.profile
        keepalive = max(0.5, float(profile.keepalive or 10.0))
        heartbeat = max(0.25, keepalive / 2)
        dead_after = max(2.0, 2 * keepalive + 1)
        p = conn.open(agent_argv(conn, "follow", handle["workdir"], handle["exec_id"], self._offset, heartbeat),
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

    # -- stop / cleanup ----------------------------------------------------------------------
    def _send_stop(self, conn, handle: dict[str, Any], grace: float) -> None:
        r = conn.run(agent_argv(conn, "stop", handle["workdir"], handle["exec_id"], grace), timeout=60.0)
        if r.code != 0:
            from mldesk.runtimes.ssh.transport import HostError

            raise HostError(f"stop on {conn.profile.name} failed: "
                            f"{(r.stderr.strip().splitlines() or ['exit code %d' % r.code])[-1]}")
        self._stop_sent = True

    def stop(self, handle: dict[str, Any], grace: float) -> None:
        from mldesk.runtimes.ssh.transport import HostError

        if not handle.get("exec_id"):
            return
        self._pending_stop = grace
        if self._stop_asked_at is None:
            self._stop_asked_at = time.monotonic()
        self._wake.set()
        with self._lock:
            conn = self._conn if self._conn is not None and self._conn.alive else None
        try:
            if conn is None:
                profile = self._profile or self._load_profile(handle.get("profile"))
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
                    ctx.message(f"cannot reach {handle.get('host')} right now ({exc}); the stop will be sent "
                                "as soon as the connection is back")
                return
            raise RuntimeUnavailable(f"cannot stop the program on {handle.get('host')}: {exc}") from None

    def cleanup(self, handle: dict[str, Any]) -> None:
        try:
            if handle.get("exec_id") and not handle.get("keep_workspace") and self._final_collected:
                # (when the outputs could not all be collected, the host's copy stays)
                self._remove_remote(handle["exec_id"], handle.get("workdir"))
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

    # -- outputs -------------------------------------------------------------------------------
    def collect_outputs(self, ctx: RunContext, dest: Path, *, final: bool) -> None:
        from mldesk.runtimes.ssh.transport import HostError, LinkLost

        self._ctx = ctx
        if not final:
            conn = self._conn
            if conn is None or not conn.alive:
                return
            self.pull_outputs(ctx, conn, dest, report=False)
            return
        if not self._connected_once and self._handle is None:
            return  # never reached the host: nothing there
        started = time.monotonic()
        last_error = ""
        conn = None
        while True:
            try:
                with self._lock:
                    conn = self._conn if self._conn is not None and self._conn.alive else None
                if conn is None:
                    conn = self._connection(ctx, announce=False)
                result = self.pull_outputs(ctx, conn, dest, report=True)
                break
            except (LinkLost, ExecutionFailed, HostError) as exc:
                last_error = str(exc)
                if conn is not None:
                    self._drop(conn)
                if time.monotonic() - started > FINAL_RECONNECT_TIMEOUT:
                    ctx.message(f"could not collect the outputs from {self._profile_of(ctx).name} ({last_error}); "
                                f"they stay on the host in {self._remote_exec_dir() or 'its work folder'}")
                    return
                ctx.set_note(f"reconnecting to {self._profile_of(ctx).name} to collect the outputs")
                time.sleep(2.0)
        ctx.set_note(None)
        self._final_collected = True
        ctx.message(f"collected {result['files']} output file(s), {human(result['bytes'])} "
                    f"({result['sent']} copied from {self._profile_of(ctx).name})")
        if self._handle is None:  # the program never started: nothing else needs the host's copy
            self._remove_remote(ctx.exec_id, None)

    def pull_outputs(self, ctx: RunContext, conn, dest: Path, *, report: bool) -> dict[str, Any]:
        """Copy the host's changed output files into ``dest``; returns the agent's totals."""
        info = ensure_agent(conn)
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        have = _local_state(dest)
        req = {"have": have, "max_files": ctx.options.get("max_output_files"),
               "max_file_bytes": ctx.options.get("max_output_file_bytes"),
               "max_total_bytes": ctx.options.get("max_output_bytes")}
        p = conn.open(agent_argv(conn, "outputs", (self._handle or {}).get("workdir") or info["workdir"], ctx.exec_id),
                      timeout=max(60.0, 4 * conn.profile.keepalive), window_size=8 << 20)
        writer = _OutputWriter(dest)
        try:
            p.send((json.dumps(req) + "\n").encode())
            while True:
                frame = p.read_typed()
                if frame is None:
                    raise p._ended("the output transfer ended early")
                kind, payload = frame
                if kind == protocol.DATA:
                    writer.data(payload)
                    continue
                obj = json.loads(payload)
                if kind == protocol.FILE:
                    writer.begin(obj)
                elif kind == protocol.FILE_END:
                    writer.end(obj, ctx.message if report else None)
                elif kind == protocol.FOLDER:
                    writer.folder(obj["path"])
                elif kind == protocol.SKIP:
                    if report:
                        ctx.message(f"skipped outputs/{obj['path']}: {obj['reason']}")
                elif kind == protocol.TOTALS:
                    return obj
        finally:
            writer.abort()
            p.close()


RESOURCES_INTERVAL = 4.0


class _ResourceSync(threading.Thread):
    """Appends the host's new resource samples (the agent samples the program there)
    to the local resources.jsonl every ``interval`` seconds. The local file's size is
    the offset, so a reconnect or a new supervisor continues where it stopped."""

    def __init__(self, runtime: "SshRuntime", ctx: RunContext, handle: dict[str, Any], interval: float):
        super().__init__(name=f"resources-{ctx.exec_id}", daemon=True)
        self.runtime = runtime
        self.ctx = ctx
        self.handle = handle
        self.interval = interval
        self.halt = threading.Event()
        self._lock = threading.Lock()

    def pull_once(self) -> None:
        conn = self.runtime._conn
        if self.ctx.exec_dir is None or conn is None or not conn.alive or not self.handle.get("workdir"):
            return
        path = self.ctx.exec_dir / "resources.jsonl"
        with self._lock:
            try:
                offset = path.stat().st_size
            except FileNotFoundError:
                offset = 0
            try:
                r = conn.run(agent_argv(conn, "resources", self.handle["workdir"], self.handle["exec_id"], offset),
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


class _OutputSync(threading.Thread):
    """Pulls the outputs every ``interval`` seconds while the program runs."""

    def __init__(self, runtime: SshRuntime, ctx: RunContext, interval: float):
        super().__init__(name=f"outputs-{ctx.exec_id}", daemon=True)
        self.runtime = runtime
        self.ctx = ctx
        self.interval = interval
        self.halt = threading.Event()

    def run(self) -> None:
        if self.interval <= 0 or self.ctx.exec_dir is None:
            return
        while not self.halt.wait(self.interval):
            conn = self.runtime._conn
            if conn is None or not conn.alive:
                continue
            try:
                self.runtime.pull_outputs(self.ctx, conn, self.ctx.exec_dir / "outputs", report=False)
            except Exception:  # noqa: BLE001 - the next round (or the final collection) retries
                pass

    def stop(self) -> None:
        self.halt.set()
        if self.is_alive():
            self.join(60.0)

    def start(self) -> None:
        if self.interval > 0:
            super().start()


def _split_local_inputs(specs: list) -> tuple[list[tuple[str, str, Path]], list]:
    """file:// inputs that exist on this machine are sent from here; everything else
    (http, https, file:// paths of the host) is fetched on the host."""
    from urllib.parse import unquote, urlsplit

    local, remote = [], []
    for name, url in specs:
        parts = urlsplit(url)
        if parts.scheme.lower() == "file" and parts.netloc in ("", "localhost"):
            path = Path(unquote(parts.path))
            if path.is_file():
                local.append((name, url, path))
                continue
        remote.append((name, url))
    return local, remote


def _local_state(dest: Path) -> dict[str, list[int]]:
    """{relpath: [size, mtime_ns]} of the regular files already collected."""
    out: dict[str, list[int]] = {}
    base = str(dest)
    for root, dirs, names in os.walk(base):
        rel_root = os.path.relpath(root, base)
        for name in names:
            path = os.path.join(root, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if not os.path.islink(path) and os.path.isfile(path):
                rel = name if rel_root == "." else f"{rel_root}/{name}".replace(os.sep, "/")
                out[rel] = [st.st_size, st.st_mtime_ns]
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
    return out


class _OutputWriter:
    """Writes files arriving from the host into the local outputs folder: each into a
    temporary name, renamed when complete, with the host's mtime (so the next sync
    can tell it is unchanged). Paths are checked to stay inside ``dest``."""

    def __init__(self, dest: Path):
        self.dest = Path(dest)
        self.real = os.path.realpath(self.dest)
        self.fd: int | None = None
        self.tmp: str | None = None
        self.meta: dict[str, Any] | None = None

    def _target(self, rel: str) -> str:
        parts = rel.split("/")
        if not rel or rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ExecutionFailed(f"the host sent an invalid output path {rel!r}")
        path = os.path.join(self.real, *parts)
        parent = os.path.realpath(os.path.dirname(path))
        if parent != self.real and not parent.startswith(self.real + os.sep):
            raise ExecutionFailed(f"output path {rel!r} would leave the outputs folder")
        return path

    def folder(self, rel: str) -> None:
        path = self._target(rel)
        if os.path.islink(path) or (os.path.exists(path) and not os.path.isdir(path)):
            os.unlink(path)
        os.makedirs(path, exist_ok=True)

    def begin(self, meta: dict[str, Any]) -> None:
        self.abort()
        path = self._target(meta["path"])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix="." + os.path.basename(path)[:100]
                                   + ".mldesk-tmp-")
        self.fd, self.tmp, self.meta = fd, tmp, dict(meta, target=path)

    def data(self, payload: bytes) -> None:
        if self.fd is None:
            return
        view = memoryview(payload)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]

    def end(self, result: dict[str, Any], message) -> None:
        if self.fd is None or self.meta is None:
            return
        os.close(self.fd)
        self.fd = None
        meta = self.meta
        if not result.get("ok"):
            os.unlink(self.tmp)
            self.tmp = None
            if message is not None:
                message(f"skipped outputs/{meta['path']}: {result.get('error')}")
            return
        os.chmod(self.tmp, (int(meta.get("mode", 0o644)) & 0o777) | 0o600)
        os.utime(self.tmp, ns=(int(meta["mtime_ns"]), int(meta["mtime_ns"])))
        target = meta["target"]
        if os.path.isdir(target) and not os.path.islink(target):
            import shutil

            shutil.rmtree(target)
        os.replace(self.tmp, target)
        self.tmp = None

    def abort(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.tmp is not None:
            try:
                os.unlink(self.tmp)
            except OSError:
                pass
            self.tmp = None


__all__ = ["SshRuntime", "agent_argv", "agent_sources", "agent_version", "ensure_agent", "probe"]
