"""The ``docker`` runtime (docker-py): the lab's code in a detached container.

The workspace is bind-mounted at /workspace; the container runs with tini as PID 1
(``init``), all capabilities dropped, ``no-new-privileges``, a tmpfs /tmp and the
configured network. Output is copied from the container's log (timestamps on, the
two streams told apart) into mldesk's log as it arrives; a supervisor that takes
over after another one died continues after the last stored timestamp.
"""

from __future__ import annotations

import os
import struct
import sys
import threading
import time
from datetime import datetime, timezone
from typing import Any

from mldesk.agent import logstore
from mldesk.runtimes.base import ExecutionFailed, RunContext, Runtime, RuntimeUnavailable, Sink

WORKDIR = "/workspace"
_HDR = struct.Struct(">BxxxI")


def _docker():
    """docker-py, imported without its SSH transport unless DOCKER_HOST needs it:
    that transport pulls in paramiko, 130 ms of every local run's start-up."""
    if "docker" not in sys.modules and not os.environ.get("DOCKER_HOST", "").startswith("ssh://"):
        sys.modules.setdefault("docker.transport.sshconn", None)
    import docker

    return docker


def _docker_error_text(exc: Exception) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc).strip()


_seconds_cache: dict[bytes, float] = {}


def parse_ts(text: bytes) -> float:
    """RFC 3339 with nanoseconds (Docker's log timestamps) -> float seconds.
    The whole-second part changes once a second, so it is cached."""
    main, _, frac = text.rstrip(b"Z").partition(b".")
    base = _seconds_cache.get(main)
    if base is None:
        if len(_seconds_cache) > 64:
            _seconds_cache.clear()
        base = datetime.strptime(main.decode(), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
        _seconds_cache[main] = base
    return base + (float(b"0." + frac) if frac else 0.0)


class DockerRuntime(Runtime):
    name = "docker"

    def __init__(self, client=None) -> None:
        self._client = client

    @property
    def client(self):
        if self._client is None:
            docker = _docker()
            try:
                self._client = docker.from_env(version="auto", timeout=60)
            except docker.errors.DockerException as exc:
                raise RuntimeUnavailable(
                    f"Docker is not available ({_docker_error_text(exc)}); start the Docker daemon "
                    "or run with --runtime process"
                ) from None
        return self._client

    def available(self) -> str | None:
        try:
            self.client.ping()
        except RuntimeUnavailable as exc:
            return str(exc)
        except Exception as exc:  # noqa: BLE001 - any transport error means "not answering"
            return f"the Docker daemon does not answer ({_docker_error_text(exc)}); start it or use --runtime process"
        return None

    # -- image ----------------------------------------------------------------
    def prepare(self, ctx: RunContext) -> None:
        docker = _docker()

        reason = self.available()
        if reason:
            raise ExecutionFailed(reason)
        image = ctx.image
        try:
            self.client.images.get(image)
            return
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.APIError as exc:
            raise ExecutionFailed(f"cannot inspect image {image}: {_docker_error_text(exc)}") from None
        ctx.message(f"image {image} is not on this machine; pulling it")
        self._pull(ctx, image)

    def _pull(self, ctx: RunContext, image: str) -> None:
        docker = _docker()

        repo, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "latest")
        layers: dict[str, tuple[int, int]] = {}
        last = 0.0
        try:
            for event in self.client.api.pull(repo, tag=tag or "latest", stream=True, decode=True):
                if "error" in event:
                    raise docker.errors.APIError(event["error"])
                detail = event.get("progressDetail") or {}
                if event.get("id") and detail.get("total"):
                    layers[event["id"]] = (detail.get("current", 0), detail["total"])
                now = time.monotonic()
                if layers and now - last > 2:
                    done = sum(c for c, _ in layers.values())
                    total = sum(t for _, t in layers.values())
                    ctx.message(f"pulling {image}: {done / 1e6:.1f} MB / {total / 1e6:.1f} MB")
                    last = now
        except docker.errors.DockerException as exc:
            raise ExecutionFailed(
                f"image {image} is not on this machine and could not be pulled "
                f"({_docker_error_text(exc)}); build or load it (docker build / docker load), "
                "or choose another image in ml.yaml or in the image alias table"
            ) from None
        ctx.message(f"pulled {image}")

    # -- running ----------------------------------------------------------------
    def container_kwargs(self, ctx: RunContext) -> dict[str, Any]:
        """What ``containers.create`` gets for this execution."""
        from docker.types import DeviceRequest

        env = ctx.program_env()
        # the container sees only its GPUs, numbered from 0: NVIDIA's runtime sets
        # NVIDIA_VISIBLE_DEVICES; the host's CUDA numbering would hide them
        env.pop("CUDA_VISIBLE_DEVICES", None)
        kwargs: dict[str, Any] = dict(
            command=["python", "main.py", *ctx.argv],
            working_dir=WORKDIR,
            # inputs are read-only to the program (SPEC 10a)
            volumes={str(ctx.workspace): {"bind": WORKDIR, "mode": "rw"},
                     str(ctx.workspace / "inputs"): {"bind": WORKDIR + "/inputs", "mode": "ro"}},
            environment=env,
            init=True,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            tmpfs={"/tmp": "rw,exec,nosuid,size=1g"},
            network_mode=ctx.network,
            labels={"mldesk.execution": ctx.exec_id},
            name=f"mldesk-{ctx.exec_id}",
        )
        if os.getuid() != 0:
            kwargs["user"] = f"{os.getuid()}:{os.getgid()}"
        gpu_ids = ctx.options.get("gpu_ids")
        if gpu_ids:
            kwargs["device_requests"] = [DeviceRequest(device_ids=[str(g) for g in gpu_ids],
                                                       capabilities=[["gpu"]])]
        elif ctx.hardware == "gpu" and gpu_ids is None:  # no GPU queue in between: all of them
            kwargs["device_requests"] = [DeviceRequest(count=-1, capabilities=[["gpu"]])]
        return kwargs

    def start(self, ctx: RunContext) -> dict[str, Any]:
        docker = _docker()

        kwargs = self.container_kwargs(ctx)
        try:  # a supervisor that died between starting it and recording it: adopt it
            return {"container": self.client.containers.get(kwargs["name"]).id}
        except docker.errors.NotFound:
            pass
        try:
            container = self.client.containers.create(ctx.image, **kwargs)
            container.start()
        except docker.errors.APIError as exc:
            text = _docker_error_text(exc)
            self.cleanup({"container": kwargs["name"]})  # created but not started
            if "device_requests" in kwargs and ("device driver" in text or "gpu" in text.lower()):
                raise ExecutionFailed(
                    f"hardwareType is gpu but Docker cannot give this container a GPU ({text}); "
                    "install the NVIDIA Container Toolkit on this host or set hardwareType: cpu"
                ) from None
            raise ExecutionFailed(f"Docker could not start the container: {text}") from None
        return {"container": container.id}

    def stream(self, ctx: RunContext, handle: dict[str, Any], sink: Sink, *, resume: bool = False) -> int:
        docker = _docker()

        try:
            container = self.client.containers.get(handle["container"])
        except docker.errors.NotFound:
            raise ExecutionFailed(
                "the container of this execution is gone (removed, or the Docker daemon lost it)"
            ) from None
        since = 0.0
        if resume and ctx.log_path is not None:
            since = last_program_ts(ctx.log_path)
        last = [since]  # timestamp of the newest frame stored
        res = self._logs(container.id, since, follow=True)
        done = threading.Event()
        errors: list[BaseException] = []

        def reader() -> None:
            try:
                copy_frames(body_chunks(res), sink, skip_until=since, last=last)
            except BaseException as exc:  # noqa: BLE001 - reported by the caller
                if not done.is_set():
                    errors.append(exc)
            finally:
                done.set()

        thread = threading.Thread(target=reader, name=f"logs-{ctx.exec_id}", daemon=True)
        thread.start()
        status = self._wait(container)
        # docker-py's follow can hang after the container exits: bound it
        if not done.wait(5.0):
            done.set()
            res.close()
        thread.join(2.0)
        if errors:
            raise ExecutionFailed(f"lost the container's log stream: {errors[0]}")
        # a follow stream can end before the daemon stored the last (partial) line:
        # read once more, without follow, after the newest frame we have
        tail = self._logs(container.id, last[0], follow=False)
        copy_frames(body_chunks(tail), sink, skip_until=last[0], last=last)
        return status

    def _logs(self, container_id: str, since: float, *, follow: bool):
        api = self.client.api
        params = {"stdout": 1, "stderr": 1, "follow": int(follow), "timestamps": 1}
        if since:
            params["since"] = f"{since:.9f}"
        res = api._get(api._url("/containers/{0}/logs", container_id), params=params, stream=True)
        api._raise_for_status(res)
        return res

    def _wait(self, container) -> int:
        docker = _docker()
        import requests

        while True:
            try:
                return int(container.wait(timeout=3600)["StatusCode"])
            except (requests.exceptions.ConnectionError, requests.exceptions.ReadTimeout):
                try:
                    container.reload()
                except docker.errors.NotFound:
                    raise ExecutionFailed("the container disappeared while it ran") from None
                except docker.errors.DockerException:
                    raise ExecutionFailed(
                        "lost the connection to the Docker daemon while the container ran "
                        "(was it restarted?); the container's fate is unknown"
                    ) from None

    def sample_root(self, handle: dict[str, Any]):
        """The container's init process, seen from here (/proc), when the daemon runs
        on this machine: checked by the execution id in its environment."""
        from mldesk.runtimes.base import pid_belongs_to

        container_id = handle.get("container")
        if not container_id:
            return None
        found: dict[str, Any] = {}

        def root():
            pid = found.get("pid")
            if pid and os.path.exists(f"/proc/{pid}"):
                return pid
            info = self.client.api.inspect_container(container_id)
            pid = (info.get("State") or {}).get("Pid") or 0
            exec_id = ((info.get("Config") or {}).get("Labels") or {}).get("mldesk.execution", "")
            if pid and pid_belongs_to(pid, exec_id):
                found["pid"] = pid
                return pid
            return None

        return root

    def stop(self, handle: dict[str, Any], grace: float) -> None:
        docker = _docker()

        container_id = handle.get("container")
        if not container_id:
            return
        try:
            self.client.api.stop(container_id, timeout=max(0, int(round(grace))))
        except docker.errors.NotFound:
            pass

    def cleanup(self, handle: dict[str, Any]) -> None:
        docker = _docker()

        if handle.get("container"):
            try:
                self.client.api.remove_container(handle["container"], force=True)
            except docker.errors.NotFound:
                pass


def body_chunks(res):
    """The raw body of a streaming requests response, as it arrives, many HTTP
    chunks at a time. urllib3 hands out one HTTP chunk per read and Docker sends
    one chunk per log line, so reading through it costs a Python round per line;
    here the chunked framing is undone on whatever the socket buffer holds."""
    fp = res.raw._fp.fp  # http.client's buffered reader over the socket
    if res.headers.get("Transfer-Encoding", "").lower() != "chunked":
        while True:
            data = fp.read1(1 << 20)
            if not data:
                return
            yield data
    buf = b""
    while True:
        data = fp.read1(1 << 20)
        if not data:
            return
        buf = buf + data if buf else data
        out = []
        pos = 0
        while True:
            nl = buf.find(b"\r\n", pos)
            if nl < 0:
                break
            size = int(buf[pos:nl].split(b";", 1)[0], 16)
            if size == 0:
                if out:
                    yield b"".join(out)
                return
            if len(buf) < nl + 4 + size:
                break
            out.append(buf[nl + 2:nl + 2 + size])
            pos = nl + 4 + size
        buf = buf[pos:]
        if out:
            yield b"".join(out)


def copy_frames(chunks, sink: Sink, skip_until: float = 0.0, last: list[float] | None = None) -> None:
    """Demultiplex Docker's log stream (8-byte frame headers, timestamp-prefixed
    payloads) from ``body_chunks`` into ``sink``, batching consecutive frames of
    one stream per read.
    Only the last timestamp of a batch is parsed (it is the batch's record time and
    the resume point), unless frames must be skipped up to ``skip_until``.
    ``last[0]`` is kept at the timestamp of the newest frame handed to ``sink``."""
    unpack_from = _HDR.unpack_from
    buf = b""
    for chunk in chunks:
        buf = buf + chunk if buf else chunk
        n = len(buf)
        pos = 0
        batch: list[bytes] = []
        batch_stream = 0
        ts_at = (0, 0)
        while n - pos >= 8:
            stream, size = unpack_from(buf, pos)
            end = pos + 8 + size
            if end > n:
                break
            space = buf.find(b" ", pos + 8, end)
            if skip_until and parse_ts(buf[pos + 8:space]) <= skip_until:
                pos = end
                continue
            if stream != batch_stream and batch:
                _sink_batch(sink, batch_stream, batch, buf, ts_at, last)
                batch = []
            batch_stream = stream
            ts_at = (pos + 8, space)
            batch.append(buf[space + 1:end])
            pos = end
        if batch:
            _sink_batch(sink, batch_stream, batch, buf, ts_at, last)
        buf = buf[pos:]


def _sink_batch(sink: Sink, stream: int, batch: list[bytes], buf: bytes, ts_at: tuple[int, int],
                last: list[float] | None) -> None:
    ts = parse_ts(buf[ts_at[0]:ts_at[1]])
    sink(logstore.STDERR if stream == 2 else logstore.STDOUT, b"".join(batch), ts)
    if last is not None:
        last[0] = ts


def last_program_ts(log_path) -> float:
    """Timestamp of the last stdout/stderr record in a log (0.0 when none)."""
    with logstore.LogReader(log_path) as reader:
        records, _ = reader.tail(50)
        for rec in reversed(records):
            if rec.stream in (logstore.STDOUT, logstore.STDERR):
                return rec.ts
    return 0.0
