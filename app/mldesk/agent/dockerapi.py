"""A tiny Docker Engine API client (stdlib only): what a runner needs to run one container.

Standard library only, Python >= 3.8 (shipped to hosts). It speaks plain HTTP to the
daemon's socket (``DOCKER_HOST`` ``unix://`` or ``tcp://``, else
``/var/run/docker.sock``): create, attach (the raw multiplexed stream, byte-exact),
start, inspect, wait, stop, remove, ping, image inspect. Each call costs well under a
millisecond, where one ``docker`` CLI call costs ~25 ms and importing docker-py
~0.4 s (bench/README.md, P1). Image pulls stay with docker-py (progress) locally and
with the ``docker`` CLI on hosts.
"""

from __future__ import annotations

import json
import os
import socket
import struct
from urllib.parse import quote, urlencode

STDOUT, STDERR = 1, 2
FRAME_HEAD = struct.Struct(">BxxxI")  # the attach/logs stream of a container without TTY


class DockerUnavailable(Exception):
    """The daemon does not answer (not running, socket missing, connection refused)."""


class DockerError(Exception):
    """The daemon answered with an error."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def docker_host():
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def supported():
    """Can this client reach the daemon the ``docker`` CLI would (no ssh://, no
    contexts)? Only the address is checked, not whether the daemon answers."""
    if os.environ.get("DOCKER_CONTEXT"):
        return False
    host = docker_host()
    return host.startswith("unix://") or host.startswith("tcp://") and not os.environ.get("DOCKER_TLS_VERIFY")


def _dechunk(body):
    out = []
    pos = 0
    while True:
        nl = body.find(b"\r\n", pos)
        if nl < 0:
            break
        size = int(body[pos:nl].split(b";", 1)[0] or b"0", 16)
        if size == 0:
            break
        out.append(body[nl + 2:nl + 2 + size])
        pos = nl + 4 + size
    return b"".join(out)


class DockerAPI(object):
    """One short connection per call (HTTP/1.0: the daemon closes it after the
    answer), no http.client: importing it (and email) costs more than the calls."""

    def __init__(self, host=None, timeout=60.0):
        self.host = host or docker_host()
        self.timeout = timeout

    def _connect(self, timeout):
        host = self.host
        try:
            if host.startswith("unix://"):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(timeout)
                try:
                    sock.connect(host[len("unix://"):])
                except BaseException:
                    sock.close()
                    raise
                return sock
            if host.startswith("tcp://"):
                h, _, port = host[len("tcp://"):].rstrip("/").rpartition(":")
                return socket.create_connection((h, int(port)), timeout=timeout)
        except socket.timeout:
            raise DockerUnavailable("the Docker daemon did not answer within %g s" % timeout)
        except OSError as exc:
            raise DockerUnavailable(exc.strerror or str(exc))
        raise DockerUnavailable("DOCKER_HOST %s is not supported by mldesk's Docker client" % host)

    def request(self, method, path, query=None, body=None, timeout=None):
        """(status, body bytes) of one API call; DockerUnavailable when the daemon
        cannot be reached or breaks the connection."""
        url = path + ("?" + urlencode(query) if query else "")
        data = json.dumps(body).encode("utf-8") if body is not None else b""
        head = "%s %s HTTP/1.0\r\nHost: docker\r\nContent-Length: %d\r\n" % (method, url, len(data))
        if body is not None:
            head += "Content-Type: application/json\r\n"
        sock = self._connect(self.timeout if timeout is None else timeout)
        chunks = []
        try:
            sock.sendall(head.encode("ascii") + b"\r\n" + data)
            while True:
                chunk = sock.recv(1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
        except socket.timeout:
            raise
        except OSError as exc:
            raise DockerUnavailable(exc.strerror or str(exc))
        finally:
            sock.close()
        raw = b"".join(chunks)
        head_b, sep, payload = raw.partition(b"\r\n\r\n")
        if not sep:
            raise DockerUnavailable("the Docker daemon closed the connection without answering")
        lines = head_b.split(b"\r\n")
        try:
            status = int(lines[0].split(b" ", 2)[1])
        except (IndexError, ValueError):
            raise DockerUnavailable("the Docker daemon answered something unexpected: %r" % lines[0][:80])
        if any(l.lower().startswith(b"transfer-encoding:") and b"chunked" in l.lower() for l in lines[1:]):
            payload = _dechunk(payload)
        return status, payload

    def call(self, method, path, query=None, body=None, timeout=None, ok=(200, 201, 204, 304)):
        status, data = self.request(method, path, query, body, timeout)
        if status not in ok:
            message = data.decode("utf-8", "replace").strip()
            try:
                message = json.loads(message).get("message") or message
            except (ValueError, AttributeError):
                pass
            raise DockerError(status, message)
        if data and data[:1] in (b"{", b"["):
            return json.loads(data.decode("utf-8"))
        return None

    # -- the calls --------------------------------------------------------------------------
    def ping(self, timeout=2.0):
        try:
            status, _ = self.request("GET", "/_ping", timeout=timeout)
        except (DockerUnavailable, OSError):
            return False
        return status == 200

    def image_exists(self, name):
        try:
            self.call("GET", "/images/%s/json" % quote(name, safe=""))
            return True
        except DockerError as exc:
            if exc.status == 404:
                return False
            raise

    def create(self, name, config):
        return self.call("POST", "/containers/create", {"name": name}, config)["Id"]

    def start(self, cid):
        self.call("POST", "/containers/%s/start" % cid)

    def inspect(self, cid):
        """The container's details, or None when it does not exist."""
        try:
            return self.call("GET", "/containers/%s/json" % cid)
        except DockerError as exc:
            if exc.status == 404:
                return None
            raise

    def wait(self, cid, timeout=None):
        return int(self.call("POST", "/containers/%s/wait" % cid, timeout=timeout)["StatusCode"])

    def stop(self, cid, grace):
        try:
            self.call("POST", "/containers/%s/stop" % cid, {"t": max(0, int(round(grace)))},
                      timeout=max(0, grace) + 60)
        except DockerError as exc:
            if exc.status != 404:
                raise

    def remove(self, cid):
        try:
            self.call("DELETE", "/containers/%s" % cid, {"force": 1, "v": 1})
        except DockerError as exc:
            if exc.status != 404:
                raise

    def attach(self, cid, logs=False):
        """The container's output as a socket (hijacked connection): the multiplexed
        stream (``FRAME_HEAD`` + data) from now on (with ``logs``: from the start,
        as the log driver kept it). Returns (socket, bytes already read past the
        response head)."""
        query = urlencode({"stream": 1, "stdout": 1, "stderr": 1, "logs": int(bool(logs))})
        sock = self._connect(self.timeout)
        try:
            sock.sendall(("POST /containers/%s/attach?%s HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\n"
                          "Upgrade: tcp\r\nContent-Length: 0\r\n\r\n" % (cid, query)).encode())
        except OSError as exc:
            sock.close()
            raise DockerUnavailable(exc.strerror or str(exc))
        head = b""
        while b"\r\n\r\n" not in head:
            try:
                chunk = sock.recv(65536)
            except OSError as exc:
                sock.close()
                raise DockerUnavailable(exc.strerror or str(exc))
            if not chunk:
                sock.close()
                raise DockerUnavailable("the daemon closed the connection while attaching")
            head += chunk
        head, rest = head.split(b"\r\n\r\n", 1)
        status = int(head.split(b" ", 2)[1])
        if status not in (101, 200):
            sock.close()
            raise DockerError(status, rest.decode("utf-8", "replace").strip() or "attach failed")
        sock.settimeout(None)
        return sock, rest


__all__ = ["DockerAPI", "DockerError", "DockerUnavailable", "FRAME_HEAD", "supported"]
