"""Host profiles for the front ends: list, add, remove, build from a form, and the host
test, which returns a :class:`HostReport` that the CLI prints and the dialog shows.

The errors a host can cause are re-exported here (``HostError`` and its kinds) so that
front ends catch them without reaching below the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from mldesk.core.hosts import (  # noqa: F401 - value types and errors, exported to front ends
    DEFAULT_WORKDIR, NETWORKS, RUNTIMES, HostError, HostKeyChanged, HostKeyError, HostKeyUnknown,
    HostProfile, HostProfileError, keyring_problem, load_profile, no_keyring_message,
)
from mldesk.core.units import human_bytes

AskHostKey = Callable[[str, str, str], bool]
AskSecret = Callable[[str, str], "str | None"]


@dataclass
class HostReport:
    """What a host test found: who we are there, how the key was trusted, and the probe."""

    name: str
    address: str
    login: str
    host_key: str
    trust: str  # "known" or "accepted"
    info: dict[str, Any] = field(default_factory=dict)
    runtime: str = "docker"
    wants_gpus: bool = False

    @property
    def warnings(self) -> list[str]:
        out = []
        if self.runtime == "docker" and not self.info.get("docker"):
            out.append(f"{self.name} uses the docker runtime but Docker is not available there "
                       f"(mldesk hosts add {self.name} ... --runtime process, or start Docker there)")
        if self.wants_gpus and not self.info.get("gpus"):
            out.append(f"{self.name} is set up for GPUs but nvidia-smi found none")
        slurm = self.info.get("slurm")
        if self.runtime == "slurm" and slurm is not None:
            if slurm.get("error"):
                out.append(f"{self.name} uses the slurm runtime but {slurm['error']}")
            elif (slurm.get("shared") or {}).get("ok") is False:
                out.append(slurm["shared"].get("error") or "the work folder is not shared with the compute nodes")
            elif (slurm.get("shared") or {}).get("ok") is None and slurm.get("shared"):
                out.append(slurm["shared"].get("error") or "sharing of the work folder is unchecked")
        return out

    def lines(self) -> list[str]:
        info = self.info
        docker = info.get("docker")
        gpus = info.get("gpus") or []
        no_gpu = "none (" + str(info.get("gpu_error") or "nvidia-smi found none") + ")"
        out = [
            f"host {self.name}: {self.address} (logged in with {self.login})",
            f"  host key  {self.host_key} ({'accepted now' if self.trust == 'accepted' else 'known'})",
            f"  OS        {info.get('os')} ({info.get('kernel')})",
            f"  Python    {info.get('python')} ({info.get('python_exe')})",
            f"  Docker    {docker if docker else 'not available: ' + str(info.get('docker_error'))}",
            f"  GPUs      {', '.join(gpus) if gpus else no_gpu}",
            f"  Disk      {human_bytes(info.get('disk_free') or 0)} free in {info.get('disk_path')}",
            f"  Work dir  {info.get('workdir')}",
        ]
        slurm = info.get("slurm")
        if slurm and not slurm.get("error"):
            for part in slurm.get("partitions") or []:
                out.append(f"  Partition {part['name']}{' (default)' if part.get('default') else ''}: "
                           f"{part.get('avail')}, {part.get('nodes')} node(s) {part.get('state')}, "
                           f"GRES {part.get('gres')}, time limit {part.get('timelimit')}")
            config = slurm.get("config") or {}
            out.append(f"  Slurm     {config.get('SLURM_VERSION', '?')}: KillWait {config.get('KillWait', '?')}, "
                       f"MinJobAge {config.get('MinJobAge', '?')}, accounting "
                       f"{config.get('AccountingStorageType', '?')}")
            shared = slurm.get("shared") or {}
            if shared.get("ok"):
                out.append(f"  Shared    yes: test job {shared.get('job')} wrote into the work folder")
        return out + [f"warning: {w}" for w in self.warnings]

    def text(self) -> str:
        return "\n".join(self.lines())

    def to_json(self) -> dict[str, Any]:
        return dict(self.info, host=self.name, address=self.address, host_key=self.host_key, login=self.login)


class Hosts:
    """The engine's host door (``engine.hosts``)."""

    def __init__(self, engine):
        self._engine = engine

    def profiles(self) -> dict[str, dict[str, Any]]:
        """Every saved profile, by name, as stored (plain dicts)."""
        return self._engine.store.hosts()

    def get(self, name: str) -> HostProfile | None:
        cfg = self._engine.store.get_host(name)
        return None if cfg is None else load_profile(cfg)

    def exists(self, name: str) -> bool:
        return self._engine.store.get_host(name) is not None

    def save(self, profile: HostProfile, old_name: str | None = None) -> None:
        """Save (or replace) a profile; ``old_name``: the name it had (a rename)."""
        if old_name and old_name != profile.name:
            self._engine.store.delete_host(old_name)
        self._engine.store.put_host(profile.name, profile.to_dict())

    def remove(self, name: str) -> bool:
        if name == "local":
            raise HostProfileError("'local' is this computer; it cannot be removed")
        return self._engine.store.delete_host(name)

    @property
    def known_hosts_file(self):
        return self._engine.layout.known_hosts

    def connect(self, profile: HostProfile, *, accept_fingerprint: str | None = None,
                ask_host_key: AskHostKey | None = None, ask_secret: AskSecret | None = None):
        """Log in to ``profile`` (host-key policy applied); the caller closes it."""
        from mldesk.runtimes.ssh import transport

        return transport.connect(profile, known_hosts=self.known_hosts_file, accept_fingerprint=accept_fingerprint,
                                 ask_host_key=ask_host_key, ask_secret=ask_secret)

    def check_login(self, profile: HostProfile, **kw) -> tuple[str, str]:
        """Connect and log out again; returns (host key fingerprint, trust)."""
        conn = self.connect(profile, **kw)
        conn.close()
        return conn.host_key, conn.trust

    def test(self, name: str, *, accept_fingerprint: str | None = None,
             ask_host_key: AskHostKey | None = None, ask_secret: AskSecret | None = None,
             slurm_shared_check: bool = True) -> HostReport:
        """Connect to the saved host ``name`` and probe it (blocking: run it off the UI
        thread). Raises ``HostError`` (and its kinds) for what the user can fix. A Slurm
        host also reports its cluster and, with ``slurm_shared_check``, runs a tiny job
        to see that the work folder is shared with the compute nodes."""
        from mldesk.runtimes.ssh import runtime as ssh

        profile = self.get(name)
        if profile is None:
            raise HostProfileError(f"unknown host '{name}' (see `mldesk hosts ls`)")
        conn = self.connect(profile, accept_fingerprint=accept_fingerprint, ask_host_key=ask_host_key,
                            ask_secret=ask_secret)
        try:
            info = ssh.probe(conn)
            if profile.runtime == "slurm":
                info["slurm"] = ssh.slurm_info(conn, profile.slurm_settings(), shared_check=slurm_shared_check)
        finally:
            conn.close()
        # what the probe found replaces the profile's GPU flag for the GPU queue
        import time

        self._engine.store.set_setting(f"host_probe:{name}", {
            "t": time.time(), "gpus": [{"index": g["index"], "name": g.get("name")}
                                       for g in info.get("gpu_devices") or []]})
        return HostReport(name=name, address=conn.endpoint.label, login=conn.login, host_key=conn.host_key,
                          trust=conn.trust, info=info, runtime=profile.runtime, wants_gpus=bool(profile.gpus))
