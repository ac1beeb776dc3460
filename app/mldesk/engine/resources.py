"""The engine's GPUs and resources: which GPUs a host has, the queue's GPU checks, samples
and summaries of an execution's CPU/memory/GPU use, and host status (``ResourcesMixin``)."""

from __future__ import annotations

from typing import Any

from mldesk.core.store import ACTIVE_STATES
from mldesk.engine.errors import EngineError


class ResourcesMixin:
    """Mixed into :class:`mldesk.engine.facade.Engine` (uses its store, layout, profiles)."""

    # -- GPUs and resources ----------------------------------------------------------
    def host_gpu_indices(self, host: str, *, needed: bool = True) -> list[int]:
        """The nvidia-smi indices of ``host``'s GPUs. Local: asked now (only where an
        nvidia-smi exists). SSH hosts: from the last probe (``mldesk hosts test`` or
        ``hosts status``), probed now when GPUs are ``needed`` and none is known."""
        if host == "local":
            from mldesk.agent.fsutil import which

            if not which("nvidia-smi"):
                return []
            from mldesk.agent import resources

            return [g["index"] for g in resources.list_gpus()]
        cached = self.store.get_setting(f"host_probe:{host}")
        if cached is None and needed:
            status = self._probe_host(host)
            if not status["reachable"]:
                raise EngineError(f"cannot tell which GPUs {host} has: {status.get('error')}")
            cached = self.store.get_setting(f"host_probe:{host}")
        return [g["index"] for g in (cached or {}).get("gpus", [])]

    def _check_gpu_request(self, host: str, want: int | list[int], host_gpus: list[int]) -> None:
        if isinstance(want, list):
            missing = [g for g in want if g not in host_gpus]
            if missing:
                have = (f"it has {len(host_gpus)}: {', '.join(map(str, host_gpus))}" if host_gpus
                        else "it has none (nvidia-smi found no GPU)")
                raise EngineError(f"GPU {', '.join(map(str, missing))} asked for, but {host} has no such GPU "
                                  f"({have}); nothing was started")
        elif want > len(host_gpus):
            raise EngineError(f"{want} GPU{'s' if want != 1 else ''} asked for, but {host} has "
                              f"{len(host_gpus) or 'no'} GPU{'s' if len(host_gpus) != 1 else ''}"
                              f"{'' if host_gpus else ' (nvidia-smi found none)'}; nothing was started "
                              f"(ask for fewer with gpus/hardwareType in ml.yaml or --gpus, or use another host)")

    def gpus_of(self, ref: str) -> list[int]:
        """The GPU indices the execution holds, or held once it has ended."""
        return self.store.gpus_of(self.get(ref).id)

    def resource_samples(self, ref: str) -> list[dict]:
        from mldesk.agent import resources

        return resources.read_samples(str(self.layout.resources_path(self.get(ref).id)))[0]

    def stats(self, ref: str) -> dict[str, Any]:
        """``{"cpu_percent": [[t, v]...], "rss_bytes": [...], "gpu": {"0": {"util_percent":
        [...], "mem_used_bytes": [...], ...}}}`` of an execution, running or ended."""
        from mldesk.agent import resources

        return resources.series(self.resource_samples(ref))

    def resource_summary(self, ref: str) -> dict[str, Any]:
        """Peak memory, mean CPU and mean GPU utilisation over the samples."""
        from mldesk.agent import resources

        return resources.summary(self.resource_samples(ref))

    def host_status(self, name: str | None = None) -> list[dict[str, Any]]:
        """For each host (or the one named): ``{"name", "reachable", "gpus": [{"index",
        "name", "memory_total_bytes", "memory_used_bytes", "util_percent"}], "running"}``.
        SSH hosts are probed now, in parallel (blocking: call it off a UI thread)."""
        from concurrent.futures import ThreadPoolExecutor

        names = list(self.hosts())
        if name is not None:
            if name not in names:
                raise EngineError(f"unknown host '{name}' (see `mldesk hosts ls`)")
            names = [name]
        with ThreadPoolExecutor(max_workers=max(1, min(8, len(names)))) as pool:
            return list(pool.map(self._probe_host, names))

    def _probe_host(self, name: str) -> dict[str, Any]:
        from mldesk.agent import resources

        running = len([ex for ex in self.store.list(states=ACTIVE_STATES)
                       if ex.host == name and ex.state != "queued"])
        leases = self.store.gpu_leases(name).get(name, {})
        out: dict[str, Any] = {"name": name, "reachable": True, "gpus": [], "running": running}
        try:
            if name == "local":
                devices = resources.query_gpus()
            else:
                info = self.profiles.test(name, slurm_shared_check=False)  # caches the GPUs it found
                devices = info.info.get("gpu_devices") or []
                if info.info.get("slurm"):  # a Slurm login node: the cluster's partitions (GRES)
                    out["slurm"] = info.info["slurm"]
        except Exception as exc:  # noqa: BLE001 - unreachable is an answer, not an error
            out.update(reachable=False, error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            return out
        keys = ("index", "name", "memory_total_bytes", "memory_used_bytes", "util_percent")
        out["gpus"] = [dict({k: g.get(k) for k in keys}, held_by=leases.get(g["index"])) for g in devices]
        return out
