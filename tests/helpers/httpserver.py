"""A small threaded HTTP server on 127.0.0.1 for tests, with misbehaving routes.

    with HTTPTestServer() as srv:
        srv.serve("/data.bin", b"..." )              # ETag, Last-Modified, 304, Range
        srv.not_found("/missing")                    # 404 (or srv.status(path, code))
        srv.fail_then_ok("/flaky", data, fails=2)    # 500 for the first 2 requests, then the data
        srv.reset_halfway("/reset", data, times=1)   # half the body, then a TCP reset (RST)
        srv.stall("/stall", data)                    # headers + part of the body, then silence
        srv.slow("/slow", data, chunk=16384, interval=0.05)
        url = srv.url("/data.bin")
        ...
        srv.hits("/data.bin"), srv.requests("/data.bin")[-1].headers

Everything is bounded in time: a stalled response waits at most ``max_stall`` seconds
or until the server stops, whichever is first; ``stop()`` (or leaving the ``with``
block) wakes every stalled handler, closes the socket and joins the handler threads.
As a pytest fixture::

    @pytest.fixture
    def srv():
        with HTTPTestServer() as s:
            yield s
"""

from __future__ import annotations

import hashlib
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["HTTPTestServer", "RequestRecord", "Route"]

# a fixed Last-Modified in the past, so If-Modified-Since comparisons are stable
DEFAULT_MTIME = 1_700_000_000.0


@dataclass
class RequestRecord:
    method: str
    path: str
    headers: dict
    started: float  # time.monotonic()
    finished: float | None = None
    status: int | None = None
    body_bytes: int = 0  # body bytes written (before any reset/stall)


@dataclass
class Route:
    kind: str  # serve | status | fail_then_ok | reset | stall | slow
    data: bytes = b""
    etag: str | None = None
    last_modified: str | None = None
    accept_ranges: bool = True
    content_length: bool = True
    status: int = 200
    fails: int = 0  # fail_then_ok: requests that fail; reset: requests that reset (None = all)
    times: int | None = None
    fraction: float = 0.5
    after: int | None = None  # stall: body bytes sent before stalling
    max_stall: float | None = None
    chunk: int = 64 * 1024
    interval: float = 0.0  # seconds between chunks
    delay: float = 0.0  # status: seconds before answering
    headers: dict = field(default_factory=dict)
    count: int = 0  # requests served on this route


def _etag_for(data: bytes) -> str:
    return '"%s"' % hashlib.sha256(data).hexdigest()[:16]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, format, *args):  # noqa: A002 - quiet
        pass

    def do_GET(self):
        self._handle(head=False)

    def do_HEAD(self):
        self._handle(head=True)

    # -- plumbing
    def _handle(self, head: bool) -> None:
        owner = self.server.owner
        path = self.path.split("?", 1)[0]
        rec = RequestRecord(self.command, path, {k: v for k, v in self.headers.items()}, time.monotonic())
        self._rec = rec
        with owner._lock:
            owner._log.setdefault(path, []).append(rec)
            route = owner._routes.get(path)
            if route is not None:
                route.count += 1
                n = route.count
        try:
            if route is None:
                self._simple(404, b"no such route\n")
            else:
                self._dispatch(route, n, head)
        except (ConnectionError, BrokenPipeError, socket.timeout, OSError):
            pass
        finally:
            rec.finished = time.monotonic()
            self.close_connection = True

    def _simple(self, code: int, body: bytes, headers: dict | None = None) -> None:
        self._rec.status = code
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
            self._rec.body_bytes += len(body)

    def _dispatch(self, route: Route, n: int, head: bool) -> None:
        kind = route.kind
        if kind == "status":
            if route.delay and self.server.owner._stop.wait(route.delay):
                return
            self._simple(route.status, route.data or (b"status %d\n" % route.status), route.headers)
            return
        if kind == "fail_then_ok" and n <= route.fails:
            self._simple(route.status, b"temporary failure\n", route.headers)
            return
        if kind == "reset" and (route.times is None or n <= route.times):
            self._send_body(route, head, reset_after_fraction=route.fraction)
            return
        if kind == "stall":
            self._send_body(route, head, stall=True)
            return
        if kind == "endless":
            self._send_endless(route)
            return
        self._send_body(route, head)

    def _send_endless(self, route: Route) -> None:
        """A body that never ends (no Content-Length): ``chunk`` bytes every
        ``interval`` seconds until the client goes or the server stops."""
        self._rec.status = 200
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        stop = self.server.owner._stop
        piece = b"\0" * route.chunk
        try:
            while not stop.is_set():
                self.wfile.write(piece)
                self._rec.body_bytes += len(piece)
                if route.interval and stop.wait(route.interval):
                    return
        except OSError:
            return

    def _not_modified(self, route: Route) -> bool:
        inm = self.headers.get("If-None-Match")
        if inm is not None:
            if route.etag is None:
                return False
            tags = [t.strip() for t in inm.split(",")]
            return "*" in tags or route.etag in tags
        ims = self.headers.get("If-Modified-Since")
        if ims and route.last_modified:
            try:
                return parsedate_to_datetime(ims) >= parsedate_to_datetime(route.last_modified)
            except (TypeError, ValueError):
                return False
        return False

    def _range_start(self, route: Route) -> int | None:
        rng = self.headers.get("Range")
        if not rng or not route.accept_ranges or not route.content_length:
            return None
        if_range = self.headers.get("If-Range")
        if if_range is not None and if_range not in (route.etag, route.last_modified):
            return None
        if not rng.startswith("bytes=") or "," in rng:
            return None
        first, _, last = rng[6:].partition("-")
        if not first.isdigit() or last:
            return None
        start = int(first)
        return start if start < len(route.data) else None

    def _send_body(self, route: Route, head: bool, *, reset_after_fraction: float | None = None,
                   stall: bool = False) -> None:
        data = route.data
        validators = {}
        if route.etag:
            validators["ETag"] = route.etag
        if route.last_modified:
            validators["Last-Modified"] = route.last_modified
        if self._not_modified(route):
            self._rec.status = 304
            self.send_response(304)
            for k, v in validators.items():
                self.send_header(k, v)
            self.send_header("Connection", "close")
            self.end_headers()
            return
        start = self._range_start(route)
        body = data if start is None else data[start:]
        code = 200 if start is None else 206
        self._rec.status = code
        self.send_response(code)
        for k, v in validators.items():
            self.send_header(k, v)
        for k, v in route.headers.items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/octet-stream")
        if route.accept_ranges and route.content_length:
            self.send_header("Accept-Ranges", "bytes")
        if route.content_length:
            self.send_header("Content-Length", str(len(body)))
        if start is not None:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        if head:
            return
        limit = len(body)
        if reset_after_fraction is not None:
            limit = int(len(body) * reset_after_fraction)
        elif stall:
            limit = route.after if route.after is not None else len(body) // 2
        sent = 0
        stop = self.server.owner._stop
        while sent < limit:
            piece = body[sent:min(limit, sent + route.chunk)]
            self.wfile.write(piece)
            sent += len(piece)
            self._rec.body_bytes = sent
            if route.interval and sent < limit and stop.wait(route.interval):
                return
        self.wfile.flush()
        if reset_after_fraction is not None:
            time.sleep(0.05)  # let the client read what was sent before the RST drops it
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        elif stall:
            bound = route.max_stall if route.max_stall is not None else self.server.owner.max_stall
            stop.wait(bound)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: "HTTPTestServer"

    def process_request(self, request, client_address):
        t = threading.Thread(target=self.process_request_thread, args=(request, client_address),
                             daemon=True, name="httptest-handler")
        with self.owner._lock:
            self.owner._threads = [x for x in self.owner._threads if x.is_alive()]
            self.owner._threads.append(t)
        t.start()

    def handle_error(self, request, client_address):  # quiet: resets are the point of some routes
        pass


class HTTPTestServer:
    """Threaded HTTP/1.1 server on 127.0.0.1:<free port>; a context manager."""

    __test__ = False  # not a pytest test class

    def __init__(self, *, max_stall: float = 10.0, host: str = "127.0.0.1"):
        self.max_stall = max_stall
        self.host = host
        self._lock = threading.Lock()
        self._routes: dict[str, Route] = {}
        self._log: dict[str, list[RequestRecord]] = {}
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle
    def start(self) -> "HTTPTestServer":
        if self._server is not None:
            return self
        self._stop.clear()
        self._server = _Server((self.host, 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True, name="httptest-server")
        self._thread.start()
        return self

    def stop(self, join_timeout: float = 5.0) -> None:
        if self._server is None:
            return
        self._stop.set()  # wakes stalled and slow handlers
        self._server.shutdown()
        self._server.server_close()
        deadline = time.monotonic() + join_timeout
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        self._server = None
        self._thread = None

    def __enter__(self) -> "HTTPTestServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return "http://%s:%d" % (self.host, self.port)

    def url(self, path: str) -> str:
        return self.base_url + path

    # -- routes
    def _add(self, path: str, route: Route) -> str:
        if not path.startswith("/"):
            path = "/" + path
        with self._lock:
            self._routes[path] = route
        return self.url(path) if self._server is not None else path

    def serve(self, path: str, data: bytes, *, etag: bool | str | None = True,
              last_modified: bool | str | None = True, accept_ranges: bool = True,
              content_length: bool = True, headers: dict | None = None) -> str:
        """Serve ``data`` with validators (304 on a match) and Range support.
        Returns the route's URL."""
        return self._add(path, self._route("serve", data, etag, last_modified, accept_ranges,
                                           content_length, headers))

    def status(self, path: str, code: int, body: bytes = b"", headers: dict | None = None,
               delay: float = 0.0) -> str:
        """Answer ``code`` (after ``delay`` seconds) with ``body``."""
        return self._add(path, Route("status", data=body, status=code, headers=dict(headers or {}),
                                     delay=delay))

    def not_found(self, path: str) -> str:
        return self.status(path, 404, b"not found\n")

    def fail_then_ok(self, path: str, data: bytes, fails: int = 2, status: int = 500,
                     headers: dict | None = None, **kw) -> str:
        """``status`` for the first ``fails`` requests (with ``headers``, e.g. Retry-After),
        then ``data`` like :meth:`serve`."""
        route = self._route("fail_then_ok", data, kw.get("etag", True), kw.get("last_modified", True),
                            kw.get("accept_ranges", True), True, None)
        route.fails, route.status, route.headers = fails, status, dict(headers or {})
        return self._add(path, route)

    def reset_halfway(self, path: str, data: bytes, times: int | None = None, fraction: float = 0.5,
                      accept_ranges: bool = True) -> str:
        """Send ``fraction`` of the body then reset the connection (SO_LINGER 0), for the
        first ``times`` requests (every request when None), then serve normally."""
        route = self._route("reset", data, True, True, accept_ranges, True, None)
        route.times, route.fraction = times, fraction
        return self._add(path, route)

    def stall(self, path: str, data: bytes, after: int | None = None, max_stall: float | None = None) -> str:
        """Send the headers and ``after`` bytes (half by default), then nothing until
        ``max_stall`` seconds pass or the server stops."""
        route = self._route("stall", data, True, True, False, True, None)
        route.after, route.max_stall = after, max_stall
        return self._add(path, route)

    def slow(self, path: str, data: bytes, chunk: int = 16 * 1024, interval: float = 0.05, **kw) -> str:
        """Serve ``data`` ``chunk`` bytes at a time, ``interval`` seconds apart."""
        route = self._route("slow", data, kw.get("etag", True), kw.get("last_modified", True),
                            kw.get("accept_ranges", True), kw.get("content_length", True), None)
        route.chunk, route.interval = chunk, interval
        return self._add(path, route)

    def endless(self, path: str, chunk: int = 64 * 1024, interval: float = 0.0) -> str:
        """A body without Content-Length that never ends."""
        route = self._route("endless", b"", False, False, False, False, None)
        route.chunk, route.interval = chunk, interval
        return self._add(path, route)

    def set_data(self, path: str, data: bytes, last_modified: float | None = None) -> None:
        """Change a route's content (its ETag and Last-Modified change with it)."""
        with self._lock:
            route = self._routes[path]
            route.data = data
            if route.etag is not None:
                route.etag = _etag_for(data)
            if route.last_modified is not None:
                route.last_modified = formatdate(last_modified or time.time(), usegmt=True)

    @staticmethod
    def _route(kind, data, etag, last_modified, accept_ranges, content_length, headers) -> Route:
        if etag is True:
            etag = _etag_for(data)
        elif etag is False:
            etag = None
        if last_modified is True:
            last_modified = formatdate(DEFAULT_MTIME, usegmt=True)
        elif last_modified is False:
            last_modified = None
        return Route(kind, data=bytes(data), etag=etag, last_modified=last_modified,
                     accept_ranges=accept_ranges, content_length=content_length,
                     headers=dict(headers or {}))

    # -- what happened
    def hits(self, path: str) -> int:
        with self._lock:
            return len(self._log.get(path, []))

    def requests(self, path: str) -> list[RequestRecord]:
        with self._lock:
            return list(self._log.get(path, []))

    def finished_requests(self, path: str, timeout: float = 2.0) -> list[RequestRecord]:
        """The requests for ``path`` once their handlers are done (the client may have
        read the whole response a moment before the handler records that it finished)."""
        deadline = time.monotonic() + timeout
        while True:
            recs = self.requests(path)
            if all(r.finished is not None for r in recs) or time.monotonic() > deadline:
                return recs
            time.sleep(0.01)

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()
