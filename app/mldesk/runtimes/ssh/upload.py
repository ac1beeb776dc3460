"""The SSH runtime's stages before the start: the snapshot upload, the image check/pull, the inputs."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any, Callable

from mldesk.agent.fsutil import human_bytes as human
from mldesk.agent.fsutil import write_json as _write_json
from mldesk.runtimes.base import ExecutionFailed, RunContext
from mldesk.runtimes.ssh.client import agent_argv, ensure_agent
from mldesk.runtimes.ssh.session import _layout

PROGRESS_INTERVAL = 2.0
PROGRESS_MIN_BYTES = 16 << 20  # uploads smaller than this get no progress lines
SEND_CHUNK = 1 << 20


class UploadStages:
    """``SshRuntime``'s ``prepare_workspace`` (upload), ``prepare`` and ``fetch_inputs``."""

    def _manifest(self, ctx: RunContext) -> tuple[dict[str, list], Any]:
        from mldesk.core.paths import Layout
        from mldesk.core.snapshots import SnapshotError, SnapshotStore

        snap = ctx.options.snapshot or self._execution(ctx).snapshot
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
            if ctx.hardware == "gpu" and not (profile.slurm_gpus or ctx.options.slurm_gpus):
                raise ExecutionFailed(f"hardwareType is gpu but the Slurm host {profile.name} asks for 0 GPUs "
                                      "per job; set its GPUs per job (--gres=gpu:N) or hardwareType: cpu")
            # GPUs are the compute nodes' (--gres=gpu:N); the login node needs none
        # GPUs on other hosts: the host's probe (through the agent) told the engine which it
        # has, and the queue handed this execution its own (ctx.options.gpu_ids) before this stage

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
        timeout = float(ctx.options.input_timeout or 30.0)
        retries = int(ctx.options.input_retries if ctx.options.input_retries is not None else 4)
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
            request = {"specs": [list(s) for s in specs],  # the limits of the settings (SPEC 10a)
                       "max_bytes": ctx.options.input_max_bytes,
                       "min_rate": float(ctx.options.input_min_rate or 0.0)}
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
