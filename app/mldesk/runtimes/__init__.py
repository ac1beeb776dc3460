"""Runtimes: how a host runs an execution's code (see ``base.Runtime``).

Import cost matters (the CLI starts for every command), so each runtime module is
imported only when it is asked for.
"""

from __future__ import annotations

import os
import socket

from mldesk.runtimes.base import Runtime, RuntimeUnavailable

NAMES = ("docker", "process")


def get_runtime(name: str) -> Runtime:
    if name == "process":
        from mldesk.runtimes.local.process import ProcessRuntime

        return ProcessRuntime()
    if name == "docker":
        from mldesk.runtimes.local.docker import DockerRuntime

        return DockerRuntime()
    if name == "ssh":
        from mldesk.runtimes.ssh.runtime import SshRuntime

        return SshRuntime()
    raise RuntimeUnavailable(f"unknown runtime '{name}' (choose one of: {', '.join(NAMES)})")


def docker_answers(timeout: float = 1.0) -> bool:
    """Does a Docker daemon answer on DOCKER_HOST (or the default socket)?
    A raw ``GET /_ping`` so that the check costs no docker-py import."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        if host.startswith("unix://"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(host[len("unix://"):])
        elif host.startswith("tcp://"):
            hostport = host[len("tcp://"):].rstrip("/")
            h, _, p = hostport.rpartition(":")
            sock = socket.create_connection((h, int(p)), timeout=timeout)
        else:
            return False
        with sock:
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            reply = sock.recv(64)
        return reply.startswith(b"HTTP/1.") and b" 200 " in reply[:16]
    except (OSError, ValueError):
        return False


def default_local_runtime() -> str:
    """``docker`` when a daemon answers, else the embedded ``process`` runtime."""
    return "docker" if docker_answers() else "process"
