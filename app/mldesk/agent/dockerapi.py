"""A tiny Docker Engine API client (stdlib only): what a runner needs to run one container.

Standard library only, Python >= 3.8 (shipped to hosts). It speaks HTTP/1.1 to the
daemon's socket (``DOCKER_HOST`` ``unix://`` or ``tcp://``, else
``/var/run/docker.sock``): create, attach (the raw multiplexed stream, byte-exact),
start, inspect, wait, stop, remove, ping, image inspect. Each call costs well under a
millisecond, where one ``docker`` CLI call costs ~25 ms and importing docker-py
~0.4 s (bench/README.md, P1). Image pulls stay with docker-py (progress) locally and
with the ``docker`` CLI on hosts.
"""

from __future__ import annotations

import http.client
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


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        http.client.HTTPConnection.__init__(self, "localhost", timeout=timeout)
        self._path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class DockerAPI(object):
    def __init__(self, host=None, timeout=60.0):
        self.host = host or docker_host()
        self.timeout = timeout

    def _connection(self, timeout):
        host = self.host
        if host.startswith("unix://"):
            return _UnixConnection(host[len("unix://"):], timeout)
        if host.startswith("tcp://"):
            hostport = host[len("tcp://"):].rstrip("/")
            return http.client.HTTPConnection(hostport, timeout=timeout)
        raise DockerUnavailable("DOCKER_HOST %s is not supported by mldesk's Docker client" % host)

    def request(self, method, path, query=None, body=None, timeout=None):
        """(status, body bytes) of one API call; DockerUnavailable when the daemon
        cannot be reached."""
        url = path + ("?" + urlencode(query) if query else "")
        conn = self._connection(self.timeout if timeout is None else timeout)
        headers = {"Host": "docker"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        try:
            try:
                conn.request(method, url, body=data, headers=headers)
                res = conn.getresponse()
                return res.status, res.read()
            except (ConnectionError, FileNotFoundError, http.client.RemoteDisconnected,
                    http.client.IncompleteRead) as exc:
                raise DockerUnavailable(str(exc) or type(exc).__name__)
            except OSError as exc:
                if isinstance(exc, socket.timeout):
                    raise
                raise DockerUnavailable(exc.strerror or str(exc))
        finally:
            conn.close()

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
        conn = self._connection(self.timeout)
        try:
            conn.connect()
        except OSError as exc:
            raise DockerUnavailable(exc.strerror or str(exc))
        sock = conn.sock
        sock.sendall(("POST /containers/%s/attach?%s HTTP/1.1\r\nHost: docker\r\n"
                      "Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n" % (cid, query)).encode())
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
