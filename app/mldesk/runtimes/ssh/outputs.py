"""The SSH runtime's outputs sync: changed files of the host's outputs/, while running and at the end."""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mldesk.agent import protocol
from mldesk.agent.fsutil import human_bytes as human
from mldesk.runtimes.base import ExecutionFailed, RunContext
from mldesk.runtimes.ssh.client import agent_argv, ensure_agent

if TYPE_CHECKING:
    from mldesk.runtimes.ssh.runtime import SshRuntime

FINAL_RECONNECT_TIMEOUT = 60.0  # how long the final output collection keeps trying


class OutputStages:
    """``SshRuntime``'s ``collect_outputs`` (periodic and final)."""

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
        req = {"have": have, "max_files": ctx.options.max_output_files,
               "max_file_bytes": ctx.options.max_output_file_bytes,
               "max_total_bytes": ctx.options.max_output_bytes}
        p = conn.open(agent_argv(conn, "outputs", (self._handle and self._handle.workdir) or info["workdir"], ctx.exec_id),
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

