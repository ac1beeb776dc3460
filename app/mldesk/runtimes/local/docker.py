"""The ``docker`` runtime: the lab's code in a detached container, run by the agent's runner.

The runner (``mldesk.agent.runner``, the same code SSH hosts run) creates the container
with mldesk's hardening (tini as PID 1, all capabilities dropped, no-new-privileges,
a private /tmp, the configured network; the workspace bind-mounted at /workspace),
attaches to its raw output (byte-exact, partial lines live) and keeps its log, from
which the supervisor copies (``runtimes.local.runner``). The runner and this module
talk to the daemon with the agent's tiny Engine API client (``agent.dockerapi``);
docker-py is imported only to pull a missing image, for its progress events
(docs/ARCHITECTURE.md, "Runners and Docker clients").
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from mldesk.agent import containers, dockerapi
from mldesk.runtimes.base import ExecutionFailed, RunContext, RuntimeUnavailable
from mldesk.runtimes.handles import DockerHandle
from mldesk.runtimes.local.runner import RunnerRuntime


WORKDIR = "/workspace"


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


class DockerRuntime(RunnerRuntime):
    name = "docker"
    handle_type = DockerHandle

    def __init__(self, client=None) -> None:
        super().__init__()
        self._client = client  # docker-py, for pulls (created when one is needed)
        self.api = dockerapi.DockerAPI()

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
        if not dockerapi.supported():
            try:
                self.client.ping()
            except RuntimeUnavailable as exc:
                return str(exc)
            except Exception as exc:  # noqa: BLE001 - any transport error means "not answering"
                return (f"the Docker daemon does not answer ({_docker_error_text(exc)}); start it or use "
                        "--runtime process")
            return None
        if not self.api.ping(timeout=5.0):
            return (f"the Docker daemon does not answer at {dockerapi.docker_host()}; start it or use "
                    "--runtime process")
        return None

    # -- image ----------------------------------------------------------------
    def prepare(self, ctx: RunContext) -> None:
        reason = self.available()
        if reason:
            raise ExecutionFailed(reason)
        image = ctx.image
        if dockerapi.supported():
            try:
                if self.api.image_exists(image):
                    return
            except (dockerapi.DockerError, dockerapi.DockerUnavailable) as exc:
                raise ExecutionFailed(f"cannot inspect image {image}: {exc}") from None
        else:
            docker = _docker()
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
                    progress = f"pulling {image}: {done / 1e6:.1f} MB / {total / 1e6:.1f} MB"
                    ctx.message(progress)
                    ctx.set_note(progress)  # shown on the execution's row while it pulls
                    last = now
        except docker.errors.DockerException as exc:
            raise ExecutionFailed(
                f"image {image} is not on this machine and could not be pulled "
                f"({_docker_error_text(exc)}); build or load it (docker build / docker load), "
                "or choose another image in ml.yaml or in the image alias table"
            ) from None
        finally:
            ctx.set_note(None)
        ctx.message(f"pulled {image}")

    # -- running (the runner) -----------------------------------------------------
    def _stream_legacy(self, ctx: RunContext, handle: DockerHandle) -> int:
        """A container started by an mldesk without local runners (an upgrade while it
        ran): wait for it to end and take its exit code; its output meanwhile stays in
        Docker's own log (``docker logs``)."""
        cid = handle.container
        if not cid:
            return super()._stream_legacy(ctx, handle)
        ctx.message("this execution was started by an earlier mldesk; waiting for its container to end "
                    f"(its output from now on is in `docker logs {cid[:12]}`)")
        while True:
            try:
                info = self.api.inspect(cid)
            except (dockerapi.DockerError, dockerapi.DockerUnavailable, OSError) as exc:
                raise ExecutionFailed(f"lost the container of this execution: {exc}") from None
            if info is None:
                raise ExecutionFailed("the container of this execution is gone (removed, or the Docker "
                                      "daemon lost it)")
            state = info.get("State") or {}
            if not state.get("Running"):
                return int(state.get("ExitCode", 1))
            time.sleep(0.5)

    def stop(self, handle: DockerHandle, grace: float) -> None:
        if handle.legacy and handle.container:
            import threading

            threading.Thread(target=containers.stop_container, args=(handle.container, grace), daemon=True).start()
            return
        super().stop(handle, grace)

    def cleanup(self, handle: DockerHandle) -> None:
        if handle.legacy and handle.container:
            containers.remove_container(handle.container)
            return
        super().cleanup(handle)

    def spec(self, ctx: RunContext) -> dict[str, Any]:
        return {"image": ctx.image, "network": ctx.network, "gpus": ctx.hardware == "gpu",
                # the GPU queue's choice: exactly these (a device request with device ids);
                # None: no queue in between, all of them when hardwareType is gpu
                "gpu_ids": ctx.options.gpu_ids,
                "docker_wait": float(ctx.options.docker_wait)}

    def container_config(self, ctx: RunContext) -> dict[str, Any]:
        """The Engine API's container config the runner creates this execution's
        container with (``containers.container_config``: hardening, mount, env, GPUs)."""
        spec = dict(self.spec(ctx), exec_id=ctx.exec_id, argv=list(ctx.argv), env=ctx.program_env(),
                    container_name=f"mldesk-{ctx.exec_id}")
        return containers.container_config(spec, str(ctx.workspace))

    def sample_root(self, handle: DockerHandle):
        """The container's init process, seen from here (/proc), when the daemon runs
        on this machine: checked by the execution id in its environment."""
        from mldesk.runtimes.base import pid_belongs_to

        container_id = handle.container
        if not container_id:
            return None
        found: dict[str, Any] = {}

        def root():
            pid = found.get("pid")
            if pid and os.path.exists(f"/proc/{pid}"):
                return pid
            if dockerapi.supported():
                try:
                    info = self.api.inspect(container_id) or {}
                except (dockerapi.DockerError, dockerapi.DockerUnavailable, OSError):
                    return None
            else:
                info = self.client.api.inspect_container(container_id)
            pid = (info.get("State") or {}).get("Pid") or 0
            exec_id = ((info.get("Config") or {}).get("Labels") or {}).get(containers.CONTAINER_LABEL, "")
            if pid and pid_belongs_to(pid, exec_id):
                found["pid"] = pid
                return pid
            return None

        return root


__all__ = ["DockerRuntime"]
