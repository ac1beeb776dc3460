"""Fetch an execution's inputs: parallel, cached, atomic, retried (SPEC 4).

Standard library only, Python >= 3.8: this file is also shipped to SSH hosts and run
there by their own ``python3``.

Every input downloads in its own thread into a temporary file ``.NAME.part-XXXX`` in
the destination folder and is renamed to ``NAME`` only once it is complete (and of the
announced size), so a partial file is never seen under an input's name. Connection
errors, stalls (no data for ``timeout`` seconds), short reads and HTTP 5xx/429 are
retried with exponential backoff, resuming with ``Range`` where the server allows
it; other 4xx are not retried. The first input that fails for good cancels the others,
every temporary file is removed and :class:`InputError` is raised.

Cache layout (when ``cache_dir`` is given; ``file://`` inputs are never cached)::

    urls/<sha256(url)>.json        {url, etag, last_modified, sha256, size, ...}
    blobs/<ab>/<sha256>            the content, stored once whatever URL it came from
    blobs/<ab>/<sha256>.stat       {size, mtime_ns, ino} of the blob when it was stored

A cached URL is revalidated with ``If-None-Match`` / ``If-Modified-Since``; a 304
reuses the blob: it is *copied* into the destination (never hard-linked, so a program
that rewrites its input cannot reach the cache) and hashed while copied, and a blob
whose content no longer matches the SHA-256 recorded at download is discarded and
the URL downloaded again. A
server that sends no validators is downloaded again (and deduplicated by content). A
blob whose size or mtime no longer matches its record is discarded too. Every cache file is written to a temporary name and
renamed, so two processes may fetch the same URL at once.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import json
import os
import socket
import stat
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Callable, List, NamedTuple, Optional

from mldesk.agent.fsutil import human_bytes, write_json
from mldesk.agent.errors import UserError

__all__ = ["InputError", "InputsCancelled", "Progress", "fetch_inputs", "validate_name"]

CHUNK = 256 * 1024
PROGRESS_INTERVAL = 0.25  # seconds between on_progress calls per input (state changes always)
MESSAGE_INTERVAL = 2.0  # seconds between "fetching NAME: ..." console lines per input
MAX_BACKOFF = 60.0
USER_AGENT = "mldesk-inputs/1 (+python-urllib)"
SCHEMES = ("http", "https", "file")
_DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
_LOOPBACK = ("localhost", "127.0.0.1", "::1")  # never through a proxy
DEFAULT_MAX_BYTES = 50 * 1024 ** 3  # one input at most (setting input_max_bytes)
DEFAULT_MIN_RATE = 1024.0  # bytes/s averaged over RATE_WINDOW_FACTOR x timeout: slower is stalled
RATE_WINDOW_FACTOR = 4
RESERVE_MAX = 1024 ** 3  # free space an input download never takes: 5% of the disk, at most 1 GiB
SPACE_CHECK_BYTES = 16 << 20  # re-check the free space every so many bytes


# -- public types ---------------------------------------------------------------------

class InputError(UserError):
    """An input that could not be fetched. ``str()``: ``input 'NAME' (URL) failed: CAUSE``."""

    def __init__(self, name: str, url: str, cause: str):
        super().__init__(name, url, cause)
        self.name = name
        self.url = url
        self.cause = cause

    def __str__(self) -> str:
        return "input '%s' (%s) failed: %s" % (self.name, self.url, self.cause)


class InputsCancelled(InputError):
    """Raised when the ``cancel`` event was set before every input was fetched."""


class Progress(NamedTuple):
    name: str
    url: str
    state: str  # connecting | downloading | cached | retrying | done | failed
    done: int
    total: Optional[int]
    rate: float  # bytes per second
    eta: Optional[float]  # seconds
    attempt: int  # 1-based
    message: str


def validate_name(name) -> Optional[str]:
    """Why ``name`` is not a plain file name, or None when it is one (the one check, used
    by ml.yaml validation, the Inputs panel and the agent).

    Control characters and Unicode line/paragraph breaks are refused too: YAML reads
    NEL, LS and PS as line breaks, so such a name could not be written to ml.yaml and
    read back as itself, and no console shows it honestly."""
    if not isinstance(name, str):
        return "input name must be a string"
    if name == "":
        return "input name is empty"
    if name in (".", ".."):
        return "input name %r is not a file name" % name
    if "\x00" in name:
        return "input name contains a NUL character"
    if "/" in name or "\\" in name:
        return "input name %r must be a plain file name, not a path" % name
    for ch in name:
        if ch < " " or "\x7f" <= ch <= "\x9f" or ch in "\u2028\u2029":
            return "input name contains the control character U+%04X" % ord(ch)
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "input name is not valid text"
    if size > 255:
        return "input name is longer than 255 bytes"
    return None


# -- small helpers --------------------------------------------------------------------

def human_seconds(s: float) -> str:
    s = max(0, int(round(s)))
    if s < 60:
        return "%d s" % s
    if s < 3600:
        return "%d min %d s" % (s // 60, s % 60)
    return "%d h %d min" % (s // 3600, (s % 3600) // 60)


def _fmt_timeout(s: float) -> str:
    return "%d s" % s if s == int(s) else "%.1f s" % s


def _fmt_delay(s: float) -> str:
    return "%.1f s" % s if s >= 0.095 or s == 0 else "%.2f s" % s


class _Retryable(Exception):
    """A failure worth another attempt."""

    def __init__(self, cause: str, retry_after: Optional[float] = None):
        super().__init__(cause)
        self.cause = cause
        self.retry_after = retry_after


class _Fatal(Exception):
    """A failure that another attempt will not fix."""

    def __init__(self, cause: str):
        super().__init__(cause)
        self.cause = cause


class _Cancelled(Exception):
    pass


def _describe_os_error(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout):
        return "timed out"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "the server closed the connection without answering"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionAbortedError):
        return "connection aborted"
    if isinstance(exc, BrokenPipeError):
        return "connection closed"
    if isinstance(exc, socket.gaierror):
        return "host not found (%s)" % (exc.strerror or exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    text = str(exc) or type(exc).__name__
    return text


def _describe_url_error(exc: urllib.error.URLError) -> str:
    reason = exc.reason
    if isinstance(reason, BaseException):
        if isinstance(reason, socket.timeout):
            return "timed out while connecting"
        return _describe_os_error(reason)
    return str(reason)


def _part_prefix(name: str) -> str:
    # keep temp names within NAME_MAX (255 bytes) whatever the input's name
    short = name.encode("utf-8")[:180].decode("utf-8", "ignore")
    return "." + short + ".part-"


def _retry_after(headers) -> Optional[float]:
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _shutdown_response(resp) -> None:
    """Wake a thread blocked reading ``resp`` (used on cancel)."""
    sock = None
    try:
        sock = resp.fp.raw._sock  # http.client.HTTPResponse -> BufferedReader -> SocketIO
    except AttributeError:
        pass
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _unlink(path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _copy_new(src: str, dst: str, sha: Optional[str] = None) -> bool:
    """Copy ``src`` to the new name ``dst`` (never a hard link: a program that
    rewrites its input in place must not reach the cache). With ``sha``, the content
    is hashed as it is copied; on a mismatch ``dst`` is removed and False returned."""
    h = hashlib.sha256() if sha else None
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        with open(src, "rb") as f, os.fdopen(fd, "wb") as out:
            for buf in iter(lambda: f.read(1 << 20), b""):
                if h is not None:
                    h.update(buf)
                out.write(buf)
    except BaseException:
        _unlink(dst)
        raise
    if h is not None and h.hexdigest() != sha:
        _unlink(dst)
        return False
    return True


# -- the cache ------------------------------------------------------------------------

class _Cache:
    def __init__(self, root):
        self.root = os.path.abspath(os.fspath(root))
        self.urls = os.path.join(self.root, "urls")
        self.blobs = os.path.join(self.root, "blobs")
        for d in (self.urls, self.blobs):
            os.makedirs(d, exist_ok=True)

    def meta_path(self, url: str) -> str:
        return os.path.join(self.urls, hashlib.sha256(url.encode("utf-8")).hexdigest() + ".json")

    def blob_path(self, sha: str) -> str:
        return os.path.join(self.blobs, sha[:2], sha)

    def lookup(self, url: str) -> Optional[dict]:
        """The record for ``url`` if its blob is intact, else None (and a broken
        record is discarded)."""
        path = self.meta_path(url)
        try:
            with open(path, "r", encoding="utf-8") as f:
                meta = json.load(f)
            sha = meta["sha256"]
            size = int(meta["size"])
            mtime_ns = int(meta["mtime_ns"])
            ino = int(meta.get("ino", 0))
            if meta.get("url") != url or len(sha) != 64:
                raise ValueError("not this URL's record")
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            _unlink(path)
            return None
        blob = self.blob_path(sha)
        try:
            st = os.stat(blob)
        except OSError:
            _unlink(path)
            return None
        if ino and st.st_ino != ino:
            # the blob was discarded and stored again since: this record is stale
            _unlink(path)
            return None
        if st.st_size != size or st.st_mtime_ns != mtime_ns:
            # modified in place through a hard link in some workspace: not trustworthy
            _unlink(blob)
            _unlink(blob + ".stat")
            _unlink(path)
            return None
        meta["blob"] = blob
        return meta

    def discard(self, url: str, blob: str) -> None:
        _unlink(blob)
        _unlink(blob + ".stat")
        _unlink(self.meta_path(url))

    def _read_stat(self, blob: str) -> Optional[tuple]:
        try:
            with open(blob + ".stat", "r", encoding="utf-8") as f:
                d = json.load(f)
            return int(d["size"]), int(d["mtime_ns"]), int(d["ino"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _write_json(self, path: str, data: dict) -> None:
        write_json(path, data)

    def _put_blob(self, src: str, blob: str, replace: bool) -> bool:
        """Make ``blob`` hold a copy of the finished download ``src`` (read-only,
        never sharing an inode with a workspace file), atomically. Unless ``replace``, the first to store a blob wins:
        returns False when another thread or process stored it first."""
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(blob), prefix=".tmp-")
        os.close(fd)
        _unlink(tmp)
        try:
            _copy_new(src, tmp)
            os.chmod(tmp, 0o400)
            st = os.stat(tmp)
            if replace:
                os.replace(tmp, blob)
            else:
                try:
                    os.link(tmp, blob)
                except FileExistsError:
                    return False
        finally:
            _unlink(tmp)
        self._write_json(blob + ".stat", {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino})
        return True

    def _check(self, blob: str, sha: str, size: int) -> str:
        """'ok' when the stored ``blob`` still holds content ``sha``, 'absent' or 'bad'.
        Cheap when its stat
        matches the one recorded when it was stored; otherwise (modified in place, or
        stored a moment ago by another thread or process that has not yet recorded
        it) the content is hashed."""
        deadline = time.monotonic() + 0.5
        while True:
            try:
                st = os.stat(blob)
            except OSError:
                return "absent"
            if st.st_size != size:
                return "bad"
            recorded = self._read_stat(blob)
            if recorded == (st.st_size, st.st_mtime_ns, st.st_ino):
                return "ok"
            if recorded is not None or time.monotonic() > deadline:
                break
            time.sleep(0.02)  # just stored by someone else: its record follows at once
        h = hashlib.sha256()
        try:
            with open(blob, "rb") as f:
                for buf in iter(lambda: f.read(1 << 20), b""):
                    h.update(buf)
            after = os.stat(blob)
        except OSError:
            return "bad"
        if h.hexdigest() != sha or (after.st_mtime_ns, after.st_ino) != (st.st_mtime_ns, st.st_ino):
            return "bad"
        self._write_json(blob + ".stat", {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino})
        return "ok"

    def store(self, url: str, src: str, sha: str, size: int, etag: Optional[str],
              last_modified: Optional[str]) -> str:
        """Put the finished download ``src`` into the cache (once per content) and
        record it for ``url``. Returns the blob's path."""
        blob = self.blob_path(sha)
        os.makedirs(os.path.dirname(blob), exist_ok=True)
        state = self._check(blob, sha, size)
        if state == "absent" and not self._put_blob(src, blob, replace=False):
            state = self._check(blob, sha, size)  # someone else stored it just now
        if state == "bad":
            # changed in place since it was stored: ours is known good
            self._put_blob(src, blob, replace=True)
        st = os.stat(blob)
        meta = {
            "url": url, "etag": etag, "last_modified": last_modified, "sha256": sha,
            "size": size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino, "stored_at": time.time(),
        }
        self._write_json(self.meta_path(url), meta)
        return blob


# -- one input ------------------------------------------------------------------------

class _Fetch:
    """Fetches one input; run in a worker thread."""

    def __init__(self, job: "_Job", name: str, url: str):
        self.job = job
        self.name = name
        self.url = url
        self.final = os.path.join(job.dest, name)
        self.part: Optional[str] = None
        self.state = ""
        self.done = 0
        self.total: Optional[int] = None
        self.attempt = 1
        self.attempts = job.retries + 1
        self.samples: List[tuple] = []
        self.last_progress = 0.0
        self.last_message = 0.0
        self.started = time.monotonic()
        self.hasher = None  # type: Optional[object]
        self.resume_ok = False
        self.validator = None  # type: Optional[tuple]

    # -- reporting
    def rate(self) -> float:
        now = time.monotonic()
        self.samples.append((now, self.done))
        while len(self.samples) > 2 and now - self.samples[0][0] > 5.0:
            self.samples.pop(0)
        t0, d0 = self.samples[0]
        if now - t0 < 0.05:
            return 0.0
        return max(0.0, (self.done - d0) / (now - t0))

    def report(self, state: str, message: str = "", force: bool = False) -> None:
        now = time.monotonic()
        changed = state != self.state
        self.state = state
        if not (changed or force) and now - self.last_progress < PROGRESS_INTERVAL:
            return
        self.last_progress = now
        rate = self.rate()
        eta = None
        if self.total is not None and rate > 0:
            eta = max(0.0, (self.total - self.done) / rate)
        if state == "downloading" and now - self.last_message >= MESSAGE_INTERVAL \
                and now - self.started >= MESSAGE_INTERVAL:
            self.last_message = now
            line = "fetching %s: %s" % (self.name, human_bytes(self.done))
            if self.total is not None:
                line += " / %s" % human_bytes(self.total)
            line += ", %s/s" % human_bytes(rate)
            if eta is not None:
                line += ", ETA %s" % human_seconds(eta)
            self.job.message(line)
        self.job.progress(Progress(self.name, self.url, state, self.done, self.total, rate, eta,
                                   self.attempt, message))

    # -- the attempt loop
    def run(self) -> Path:
        try:
            return self._run()
        except BaseException:
            self.discard_part()
            raise

    def discard_part(self) -> None:
        if self.part is not None:
            _unlink(self.part)
            self.part = None

    def new_part(self):
        self.discard_part()
        fd, path = tempfile.mkstemp(dir=self.job.dest, prefix=_part_prefix(self.name))
        self.part = path
        self.job.track(path)
        try:
            os.chmod(path, 0o644)  # mkstemp makes it 0600; an input is an ordinary file
        except OSError:
            pass
        return os.fdopen(fd, "wb")

    def _run(self) -> Path:
        scheme = urllib.parse.urlsplit(self.url).scheme.lower()
        if scheme == "file":
            self.report("connecting")
            return self.fetch_file()
        while True:
            self.job.check()
            try:
                return self.fetch_http()
            except _Retryable as exc:
                self.job.check()  # failures caused by a cancel are not worth a message
                if self.attempt >= self.attempts:
                    tries = "after %d attempts" % self.attempts if self.attempts > 1 else ""
                    cause = exc.cause + ("; gave up " + tries if tries else "")
                    self.report("failed", cause)
                    raise InputError(self.name, self.url, cause) from None
                delay = min(MAX_BACKOFF, self.job.backoff * (2 ** (self.attempt - 1)))
                if exc.retry_after is not None:
                    delay = min(MAX_BACKOFF, max(delay, exc.retry_after))
                self.attempt += 1
                self.job.message("retrying %s in %s (attempt %d/%d): %s" % (
                    self.name, _fmt_delay(delay), self.attempt, self.attempts, exc.cause))
                self.report("retrying", exc.cause)
                if self.job.stop.wait(delay):
                    self.job.check()
            except _Fatal as exc:
                self.report("failed", exc.cause)
                raise InputError(self.name, self.url, exc.cause) from None

    # -- file://
    def fetch_file(self) -> Path:
        parts = urllib.parse.urlsplit(self.url)
        if parts.netloc not in ("", "localhost"):
            self.report("failed", "file URLs on other machines are not supported")
            raise InputError(self.name, self.url, "file URLs on other machines (%s) are not supported"
                             % parts.netloc)
        if os.name == "nt":
            path = urllib.request.url2pathname(parts.path)  # unquotes, handles /C:/...
        else:
            path = urllib.parse.unquote(parts.path)
        self.local_path = path
        try:
            src = open(path, "rb")
        except FileNotFoundError:
            cause = "file not found: %s" % path
        except IsADirectoryError:
            cause = "is a folder, not a file: %s" % path
        except PermissionError:
            cause = "permission denied: %s" % path
        except OSError as exc:
            cause = "cannot read %s: %s" % (path, _describe_os_error(exc))
        else:
            try:
                with src:
                    st = os.fstat(src.fileno())
                    if stat.S_ISDIR(st.st_mode):
                        raise _Fatal("is a folder, not a file: %s" % path)
                    if not stat.S_ISREG(st.st_mode):  # /dev/zero, a FIFO: no end to wait for
                        raise _Fatal("is not a regular file (a device, pipe or socket): %s" % path)
                    self.total = st.st_size
                    self.done = 0
                    self.job.check_size(self.name, self.total, 0, announced=False)
                    self.bounds = _Bounds(self, 0, rate=False)
                    self.report("downloading")
                    with self.new_part() as out:
                        while True:
                            self.job.check()
                            buf = src.read(min(CHUNK, self.total + 1 - self.done))
                            if not buf:
                                break
                            out.write(buf)
                            self.done += len(buf)
                            if self.done > self.total:
                                raise _Fatal("grew while it was read: %s" % path)
                            self.bounds.check(self.done)
                            self.report("downloading")
                return self.install_part(None)
            except _Fatal as exc:
                cause = exc.cause
            except _Retryable as exc:
                cause = exc.cause
            except OSError as exc:
                if exc.errno in _DISK_FULL:
                    cause = "disk full while writing %s: free space on %s" % (self.name, self.job.dest)
                else:
                    cause = "cannot copy %s: %s" % (path, _describe_os_error(exc))
        self.report("failed", cause)
        raise InputError(self.name, self.url, cause)

    # -- http(s)://
    def fetch_http(self) -> Path:
        job = self.job
        cached = job.cache.lookup(self.url) if job.cache is not None else None
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        offset = 0
        resuming = self.part is not None and self.resume_ok and self.validator and self.done > 0
        if resuming:
            cached = None  # mid-way through a new version: the cached one is not wanted
        if cached is not None:
            if cached.get("etag"):
                headers["If-None-Match"] = cached["etag"]
            if cached.get("last_modified"):
                headers["If-Modified-Since"] = cached["last_modified"]
            if len(headers) == 2:
                cached = None  # no validators: download again
        if resuming:
            offset = self.done
            headers["Range"] = "bytes=%d-" % offset
            headers["If-Range"] = self.validator[1]
        if offset == 0:
            self.done = 0
        self.report("connecting")
        req = urllib.request.Request(self.url, headers=headers)
        host = (urllib.parse.urlsplit(self.url).hostname or "").lower()
        opener = job.direct_opener if host in _LOOPBACK else job.opener
        try:
            resp = opener.open(req, timeout=job.timeout)
        except urllib.error.HTTPError as exc:
            try:
                exc.close()
            except Exception:
                pass
            if exc.code == 304 and cached is not None:
                return self.use_cached(cached)
            cause = "HTTP %d %s" % (exc.code, exc.reason or http.client.responses.get(exc.code, ""))
            cause = cause.strip()
            if exc.code >= 500 or exc.code in (408, 425, 429):
                raise _Retryable(cause, _retry_after(exc.headers))
            if exc.code == 416 and offset:
                self.discard_part()
                self.resume_ok = False
                raise _Retryable("server refused to resume (HTTP 416)")
            raise _Fatal(cause)
        except urllib.error.URLError as exc:
            reason = exc.reason
            if type(reason).__name__ == "SSLCertVerificationError":
                raise _Fatal("TLS certificate verification failed: %s" % getattr(reason, "verify_message", reason))
            if isinstance(reason, (OSError, socket.timeout)) or "timed out" in str(reason):
                raise _Retryable(_describe_url_error(exc))
            raise _Fatal(_describe_url_error(exc))
        except (OSError, http.client.HTTPException) as exc:
            if isinstance(exc, socket.timeout):
                raise _Retryable("no response for %s (timed out)" % _fmt_timeout(job.timeout))
            raise _Retryable(_describe_os_error(exc))
        except ValueError as exc:
            raise _Fatal(str(exc))
        job.register(self, resp)
        try:
            return self.read_body(resp, offset, cached)
        finally:
            job.unregister(self)
            try:
                resp.close()
            except Exception:
                pass

    def read_body(self, resp, offset: int, cached: Optional[dict]) -> Path:
        job = self.job
        status = resp.status if hasattr(resp, "status") else resp.getcode()
        h = resp.headers
        etag = h.get("ETag")
        last_modified = h.get("Last-Modified")
        length = h.get("Content-Length")
        try:
            length = int(length) if length is not None else None
            if length is not None and length < 0:
                length = None
        except ValueError:
            length = None
        if status == 206:
            start = _content_range_start(h.get("Content-Range"))
            if not offset or start != offset:
                self.resume_ok = False  # not what we asked for: start over next time
                self.discard_part()
                raise _Retryable("server sent an unexpected range (%s)" % h.get("Content-Range"))
            mode = "ab"
        else:
            offset = 0
            mode = None
        self.total = (offset + length) if length is not None else None
        if self.total is not None:
            self.job.check_size(self.name, self.total, self.done if mode else 0, announced=True)
        validator = ("etag", etag) if etag and not etag.startswith("W/") else (
            ("date", last_modified) if last_modified else None)
        self.resume_ok = (h.get("Accept-Ranges", "").strip().lower() == "bytes") and validator is not None
        self.validator = validator
        if mode is None:
            out = self.new_part()
            self.done = 0
            self.hasher = hashlib.sha256() if job.cache is not None else None
        else:
            out = open(self.part, "ab")
            self.done = offset
        self.bounds = _Bounds(self, self.done)
        self.report("downloading")
        read = getattr(resp, "read1", None) or resp.read
        try:
            with out:
                while True:
                    job.check()
                    try:
                        buf = read(CHUNK)
                    except socket.timeout:
                        raise _Retryable("no data for %s (stalled)%s" % (
                            _fmt_timeout(job.timeout), self._after()))
                    except http.client.IncompleteRead as exc:
                        if exc.partial:
                            out.write(exc.partial)
                            self._account(exc.partial)
                        raise _Retryable("connection closed%s" % self._after())
                    except (OSError, http.client.HTTPException, ValueError) as exc:
                        if job.stop.is_set():
                            raise _Cancelled()
                        raise _Retryable("%s%s" % (_describe_os_error(exc), self._after()))
                    if not buf:
                        break
                    if self.total is not None and self.done + len(buf) > self.total:
                        self.discard_part()
                        raise _Fatal("the server sent more than the %s it announced" % human_bytes(self.total))
                    out.write(buf)
                    self._account(buf)
                    self.bounds.check(self.done)
                    self.report("downloading")
            job.check()  # a cancel shuts the socket down, which reads as an early end
        except OSError as exc:  # writing
            if exc.errno in _DISK_FULL:
                self.discard_part()
                raise _Fatal("disk full while writing %s: free space on %s" % (self.name, job.dest))
            raise _Fatal("cannot write %s: %s" % (self.name, _describe_os_error(exc)))
        if self.total is not None and self.done != self.total:
            if self.done > self.total:
                self.discard_part()
                raise _Retryable("received more data than announced (%s of %s)" % (
                    human_bytes(self.done), human_bytes(self.total)))
            raise _Retryable("connection closed%s" % self._after())
        sha = self.hasher.hexdigest() if self.hasher is not None else None
        if job.cache is not None and sha is not None:
            try:
                job.cache.store(self.url, self.part, sha, self.done, etag, last_modified)
            except OSError as exc:
                job.message("%s: not cached (%s)" % (self.name, _describe_os_error(exc)))
        return self.install_part(None)

    def _account(self, buf: bytes) -> None:
        self.done += len(buf)
        if self.hasher is not None:
            self.hasher.update(buf)

    def _after(self) -> str:
        if self.done <= 0:
            return ""
        if self.total is not None:
            return " after %s of %s" % (human_bytes(self.done), human_bytes(self.total))
        return " after %s" % human_bytes(self.done)

    def use_cached(self, meta: dict) -> Path:
        how = "ETag matched" if meta.get("etag") else "not modified since %s" % meta.get("last_modified")
        self.discard_part()
        fd, tmp = tempfile.mkstemp(dir=self.job.dest, prefix=_part_prefix(self.name))
        os.close(fd)
        os.unlink(tmp)
        self.part = tmp
        self.job.track(tmp)
        try:
            intact = _copy_new(meta["blob"], tmp, meta["sha256"])
        except FileNotFoundError:
            self.part = None
            raise _Retryable("cached copy vanished")
        except OSError as exc:
            if exc.errno in _DISK_FULL:
                raise _Fatal("disk full while writing %s: free space on %s" % (self.name, self.job.dest))
            raise _Fatal("cannot use the cached copy: %s" % _describe_os_error(exc))
        if not intact:
            # the content no longer hashes to what was downloaded: never use it
            self.job.untrack(tmp)
            self.part = None
            self.job.cache.discard(self.url, meta["blob"])
            self.job.message("%s: the cached copy was damaged; downloading it again" % self.name)
            return self.fetch_http()
        self.done = self.total = int(meta["size"])
        path = self.install_part("cached")
        self.job.message("%s: cached (%s)" % (self.name, how))
        return path

    def install_part(self, final_state: Optional[str]) -> Path:
        """Rename the finished temp file to the input's name (unless cancelled)."""
        job = self.job
        if os.path.dirname(os.path.abspath(self.final)) != job.dest:
            raise _Fatal("the name would leave the inputs folder")
        with job.lock:
            if job.stop.is_set():
                raise _Cancelled()
            try:
                os.replace(self.part, self.final)
            except IsADirectoryError:
                raise _Fatal("a folder named %s is in the way" % self.name)
            except OSError as exc:
                raise _Fatal("cannot rename into place: %s" % _describe_os_error(exc))
            job.untrack(self.part)
            self.part = None
        elapsed = time.monotonic() - self.started
        state = final_state or "done"
        if state == "done":
            avg = self.done / elapsed if elapsed > 0 else 0.0
            local = getattr(self, "local_path", None)
            if local is not None:  # always named: the user sees which local files a lab read
                self.job.message("read local file %s as %s: %s" % (local, self.name, human_bytes(self.done)))
            else:
                self.job.message("fetched %s: %s in %s (%s/s)" % (
                    self.name, human_bytes(self.done), human_seconds(elapsed), human_bytes(avg)))
        self.report(state, force=True)
        return Path(job.dest_given) / self.name


class _Bounds:
    """The running checks of one download: the size limit, the free space (every
    SPACE_CHECK_BYTES) and, for network downloads, a minimum rate: less than
    ``min_rate`` bytes/s averaged over RATE_WINDOW_FACTOR x timeout is a stall."""

    def __init__(self, fetch: "_Fetch", start: int, rate: bool = True):
        self.fetch = fetch
        self.job = fetch.job
        space = self.job.free_bytes()
        # often enough that the reserve cannot be written full between two checks
        self.space_step = max(CHUNK, min(SPACE_CHECK_BYTES, space[1] // 2)) if space else SPACE_CHECK_BYTES
        self.next_space = start + self.space_step
        self.rate = rate and self.job.min_rate > 0
        self.window = RATE_WINDOW_FACTOR * self.job.timeout
        self.t0 = time.monotonic()
        self.d0 = start

    def check(self, done: int) -> None:
        job = self.job
        if job.max_bytes is not None and done > job.max_bytes:
            self.fetch.discard_part()
            raise _Fatal("over the limit of %s per input (setting input_max_bytes)" % human_bytes(job.max_bytes))
        if done >= self.next_space:
            self.next_space = done + self.space_step
            space = job.free_bytes()
            if space is not None and space[0] < space[1]:
                self.fetch.discard_part()
                raise _Fatal("the disk of %s is almost full (%s free, %s kept in reserve); stopped after %s"
                             % (job.dest, human_bytes(space[0]), human_bytes(space[1]), human_bytes(done)))
        if self.rate:
            elapsed = time.monotonic() - self.t0
            if elapsed >= self.window:
                rate = (done - self.d0) / elapsed
                if rate < job.min_rate:
                    raise _Retryable("stalled: %s/s over the last %s (at least %s/s is needed)%s" % (
                        human_bytes(rate), _fmt_timeout(self.window), human_bytes(job.min_rate),
                        self.fetch._after()))
                self.t0, self.d0 = time.monotonic(), done


def _content_range_start(value: Optional[str]) -> Optional[int]:
    # "bytes 100-199/200"
    if not value:
        return None
    try:
        unit, rest = value.strip().split(None, 1)
        if unit.lower() != "bytes":
            return None
        return int(rest.split("-", 1)[0])
    except (ValueError, IndexError):
        return None


# -- the whole set --------------------------------------------------------------------

class _Job:
    def __init__(self, dest: str, dest_given, cache: Optional[_Cache], on_progress, on_message,
                 timeout: float, retries: int, backoff: float, cancel,
                 max_bytes: Optional[int] = DEFAULT_MAX_BYTES, min_rate: float = DEFAULT_MIN_RATE):
        self.max_bytes = max_bytes
        self.min_rate = float(min_rate or 0.0)
        self.dest = dest
        self.dest_given = dest_given
        self.cache = cache
        self.on_progress = on_progress
        self.on_message = on_message
        self.timeout = timeout
        self.retries = max(0, int(retries))
        self.backoff = max(0.0, float(backoff))
        self.cancel = cancel
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.parts = set()
        self.responses = {}
        self.opener = urllib.request.build_opener()  # honours http(s)_proxy / no_proxy
        self.direct_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def check(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            self.halt()
        if self.stop.is_set():
            raise _Cancelled()

    def free_bytes(self) -> Optional[tuple]:
        """(bytes free to us, the reserve kept free) on the inputs' disk."""
        try:
            st = os.statvfs(self.dest)
        except (OSError, AttributeError):
            return None
        total = st.f_blocks * st.f_frsize
        return st.f_bavail * st.f_frsize, min(RESERVE_MAX, total // 20)

    def check_size(self, name: str, size: int, have: int, announced: bool) -> None:
        """Fail early for an input over the limit or over the free space."""
        what = "announced size" if announced else "size"
        if self.max_bytes is not None and size > self.max_bytes:
            raise _Fatal("its %s, %s, is over the limit of %s per input (setting input_max_bytes)"
                         % (what, human_bytes(size), human_bytes(self.max_bytes)))
        space = self.free_bytes()
        if space is not None and size - have > space[0] - space[1]:
            raise _Fatal("not enough free space on %s for its %s of %s (%s free, %s kept in reserve)"
                         % (self.dest, what, human_bytes(size), human_bytes(space[0]), human_bytes(space[1])))

    def halt(self) -> None:
        with self.lock:
            self.stop.set()
            responses = list(self.responses.values())
        for resp in responses:
            _shutdown_response(resp)

    def register(self, fetch: _Fetch, resp) -> None:
        with self.lock:
            self.responses[id(fetch)] = resp
            stopped = self.stop.is_set()
        if stopped:
            _shutdown_response(resp)

    def unregister(self, fetch: _Fetch) -> None:
        with self.lock:
            self.responses.pop(id(fetch), None)

    def track(self, path: str) -> None:
        with self.lock:
            self.parts.add(path)

    def untrack(self, path: str) -> None:
        self.parts.discard(path)

    def progress(self, p: Progress) -> None:
        if self.on_progress is not None:
            try:
                self.on_progress(p)
            except Exception:
                pass

    def message(self, line: str) -> None:
        if self.on_message is not None:
            try:
                self.on_message(line)
            except Exception:
                pass


def _normalise(specs) -> List[tuple]:
    out = []
    for spec in specs:
        if isinstance(spec, (tuple, list)) and len(spec) == 2:
            name, url = spec
        elif isinstance(spec, dict):
            name, url = spec.get("name"), spec.get("url")
        else:
            name, url = getattr(spec, "name", None), getattr(spec, "url", None)
        out.append((name, url))
    return out


def fetch_inputs(specs, dest_dir, *, cache_dir=None, on_progress: Optional[Callable] = None,
                 on_message: Optional[Callable] = None, timeout: float = 30.0, retries: int = 4,
                 backoff: float = 0.5, max_workers: int = 4, cancel=None,
                 max_bytes: Optional[int] = DEFAULT_MAX_BYTES,
                 min_rate: float = DEFAULT_MIN_RATE) -> List[Path]:
    """Fetch every input of ``specs`` into ``dest_dir/NAME``; see the module doc.

    Returns the paths in the order of ``specs``. Raises :class:`InputError` (the first
    input that failed for good) or :class:`InputsCancelled` (``cancel`` was set)."""
    items = _normalise(specs)
    seen = set()
    for name, url in items:
        problem = validate_name(name)
        if problem is not None:
            raise InputError(str(name), str(url), "invalid name: " + problem)
        if name in seen:
            raise InputError(name, str(url), "another input has the same name")
        seen.add(name)
        if not isinstance(url, str) or not url:
            raise InputError(name, str(url), "the URL is empty")
        scheme = urllib.parse.urlsplit(url).scheme.lower()
        if scheme not in SCHEMES:
            raise InputError(name, url, "unsupported URL scheme %r (use http, https or file)"
                             % (scheme or url))
    if not items:
        return []
    dest_given = os.fspath(dest_dir)
    os.makedirs(dest_given, exist_ok=True)
    dest = os.path.realpath(dest_given)
    # leftovers of a killed earlier fetch into this folder
    prefixes = tuple(_part_prefix(n) for n, _ in items)
    try:
        for entry in os.scandir(dest):
            if entry.name.startswith(prefixes) and entry.is_file(follow_symlinks=False):
                _unlink(entry.path)
    except OSError:
        pass
    cache = None
    if cache_dir is not None and any(urllib.parse.urlsplit(u).scheme.lower() != "file" for _, u in items):
        try:
            cache = _Cache(cache_dir)
        except OSError as exc:
            if on_message is not None:
                on_message("input cache unavailable (%s): downloading without it" % _describe_os_error(exc))
    job = _Job(dest, dest_given, cache, on_progress, on_message, float(timeout), retries, backoff, cancel,
               max_bytes=max_bytes, min_rate=min_rate)
    fetches = [_Fetch(job, name, url) for name, url in items]
    first_error = []  # type: List[BaseException]
    errors_lock = threading.Lock()

    def work(f: _Fetch):
        try:
            return f.run()
        except _Cancelled:
            f.report("failed", "cancelled")
            return None
        except InputError as exc:
            with errors_lock:
                if not first_error:
                    first_error.append(exc)
            job.halt()
            return None
        except _Fatal as exc:
            with errors_lock:
                if not first_error:
                    first_error.append(InputError(f.name, f.url, exc.cause))
            f.report("failed", exc.cause)
            job.halt()
            return None
        except BaseException as exc:  # a bug: still fail cleanly
            with errors_lock:
                if not first_error:
                    first_error.append(InputError(f.name, f.url, "%s: %s" % (type(exc).__name__, exc)))
            f.report("failed", str(exc))
            job.halt()
            return None

    workers = max(1, min(int(max_workers or 1), len(fetches)))
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mldesk-input")
    futures = []
    try:
        futures = [pool.submit(work, f) for f in fetches]
        pending = set(futures)
        while pending:
            if cancel is not None and cancel.is_set():
                job.halt()
            _done, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
    except BaseException:
        job.halt()
        raise
    finally:
        pool.shutdown(wait=True)
        if job.stop.is_set() or first_error:
            with job.lock:
                leftovers = list(job.parts)
                job.parts.clear()
            for p in leftovers:
                _unlink(p)
    if first_error:
        raise first_error[0]
    results = [fu.result() for fu in futures]
    missing = [f for f, r in zip(fetches, results) if r is None]
    if missing:
        raise InputsCancelled(missing[0].name, missing[0].url, "cancelled")
    return results


if __name__ == "__main__":  # pragma: no cover - used on remote hosts
    # python3 inputs.py DEST [CACHE] < specs.json   ([[name, url], ...])
    _specs = json.load(sys.stdin)
    _dest = sys.argv[1]
    _cache = sys.argv[2] if len(sys.argv) > 2 else None

    def _print(line):
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    try:
        fetch_inputs(_specs, _dest, cache_dir=_cache, on_message=_print)
    except InputError as _exc:
        sys.stderr.write(str(_exc) + "\n")
        sys.exit(1)
