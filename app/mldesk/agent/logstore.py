"""The append-only execution log: framed records, read forwards and backwards.

Standard library only, Python >= 3.8: this file is also shipped to SSH hosts and run
there by their own ``python3``.

Format (little endian), one record after the other, nothing else in the file::

    u32 len | u8 stream | f64 ts | u64 lines_before | data (len bytes) | u32 len

``stream`` is 1 stdout, 2 stderr, 3 mldesk (stage messages); ``ts`` is the Unix time
the data arrived; ``lines_before`` is the number of ``b"\\n"`` in the data of all
earlier records (all streams), so the total line count is O(1). The trailing length
makes reading backwards possible, so the last N lines cost O(N) whatever the size of
the log. Records never hold empty data, nor more than ``MAX_DATA`` bytes.

Lines are those of the concatenated data of all records (all streams): a line may
span records; a final line without ``\\n`` still counts as a line.

One writer appends (the supervisor holds the execution's writer lock); any number
of readers, in any process, may read meanwhile. The writer writes each record with
one ``os.write``; a reader only ever returns complete records (both length fields
present and equal), so it never sees half a record. A writer that died mid-record
leaves a torn tail: readers ignore it and the next writer truncates it.
"""

from __future__ import annotations

import os
import selectors
import threading
import time
from typing import IO, Callable, Iterator, List, NamedTuple, Optional, Tuple

from mldesk.agent import protocol as _protocol

__all__ = [
    "STDOUT",
    "STDERR",
    "MLDESK",
    "STREAMS",
    "MAX_DATA",
    "Record",
    "LogCorrupt",
    "LogWriter",
    "LogReader",
    "write_program_output",
]

STDOUT, STDERR, MLDESK = 1, 2, 3
STREAMS = (STDOUT, STDERR, MLDESK)

# the record layout is part of the wire protocol (``follow`` sends records as they are)
_HEADER = _protocol.LOG_HEADER  # len, stream, ts, lines_before
_TRAILER = _protocol.LOG_TRAILER
HEADER_SIZE = _protocol.LOG_HEADER_SIZE  # 21
OVERHEAD = _protocol.LOG_OVERHEAD  # 25
MAX_DATA = 1 << 20  # the most data one record holds
MAX_RECORD = MAX_DATA + OVERHEAD

_BLOCK = 128 << 10  # read size for head/tail/scans
_NL = b"\n"

_HAVE_PREAD = hasattr(os, "pread")
_O_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation


class Record(NamedTuple):
    stream: int
    ts: float
    data: bytes
    offset: int  # file offset of the record's header
    end: int  # file offset just after the record


class LogCorrupt(Exception):
    """The log holds something that is not a record (before its last complete one)."""

    def __init__(self, path: str, offset: int, reason: str):
        super().__init__("%s: corrupt log record at offset %d: %s" % (path, offset, reason))
        self.path = path
        self.offset = offset
        self.reason = reason


def _plausible(length: int, stream: int) -> bool:
    return 0 < length <= MAX_DATA and stream in STREAMS


class _File:
    """A file descriptor with positional reads (os.pread, or seek+read on Windows)."""

    def __init__(self, fd: int):
        self.fd = fd
        self.bytes_read = 0
        self.reads = 0
        self._lock = None if _HAVE_PREAD else threading.Lock()

    def pread(self, n: int, off: int) -> bytes:
        """Up to ``n`` bytes at ``off`` (fewer only at end of file)."""
        if n <= 0:
            return b""
        if self._lock is None:
            b = os.pread(self.fd, n, off)
            if len(b) < n and b:  # short read (network file systems): finish it
                parts = [b]
                got = len(b)
                while got < n:
                    more = os.pread(self.fd, n - got, off + got)
                    if not more:
                        break
                    parts.append(more)
                    got += len(more)
                b = b"".join(parts)
        else:
            with self._lock:
                os.lseek(self.fd, off, os.SEEK_SET)
                parts = []
                got = 0
                while got < n:
                    more = os.read(self.fd, n - got)
                    if not more:
                        break
                    parts.append(more)
                    got += len(more)
                b = b"".join(parts)
        self.reads += 1
        self.bytes_read += len(b)
        return b

    def fsize(self) -> int:
        return os.fstat(self.fd).st_size


class _Window:
    """A cache of one block of the file, so neighbouring small reads cost one pread.

    ``get(off, n)`` returns bytes [off, off+n) (the caller keeps within ``limit``).
    On a miss it reads a block that starts at ``off`` (forwards) or ends at
    ``off + n`` (backwards), at least ``n`` bytes and ``block`` bytes when possible.
    """

    __slots__ = ("f", "limit", "buf", "start", "backward")

    def __init__(self, f: _File, limit: int, backward: bool):
        self.f = f
        self.limit = limit
        self.buf = b""
        self.start = 0
        self.backward = backward

    def get(self, off: int, n: int, block: int = 0) -> bytes:
        rel = off - self.start
        if rel >= 0 and rel + n <= len(self.buf):
            return self.buf[rel : rel + n]
        size = max(n, block or _BLOCK)
        if self.backward:
            lo = max(0, off + n - size)
            hi = off + n
        else:
            lo = off
            hi = min(self.limit, off + size)
        self.buf = self.f.pread(hi - lo, lo)
        self.start = lo
        rel = off - lo
        return self.buf[rel : rel + n]

    def upto(self, off: int, stop: int) -> int:
        """Where a chunk read forwards from ``off`` (up to ``stop``) should end: the
        end of the cached block if it holds ``off``, else one block on."""
        cached_end = self.start + len(self.buf)
        if self.start <= off < cached_end:
            return min(stop, cached_end)
        return min(stop, off + _BLOCK)

    def downto(self, off: int, stop: int) -> int:
        """Where a chunk read backwards from ``off`` (down to ``stop``) should start."""
        if self.start < off <= self.start + len(self.buf):
            return max(stop, self.start)
        return max(stop, off - _BLOCK)


_NOT_END, _LAST_OK, _CHAIN_OK = 0, 1, 2


def _end_state(f: _File, end: int) -> int:
    """Is ``end`` the end of a complete record? ``_NOT_END``: no; ``_LAST_OK``: the
    record ending there is whole (both lengths agree); ``_CHAIN_OK``: so is the one
    before it (or there is none). Bytes cut in the middle of a record being written
    are very unlikely to pass as one record and, in practice, never as two."""
    if end < OVERHEAD:
        return _NOT_END
    tb = f.pread(4, end - 4)
    if len(tb) < 4:
        return _NOT_END
    (length,) = _TRAILER.unpack(tb)
    if not 0 < length <= MAX_DATA:
        return _NOT_END
    start = end - OVERHEAD - length
    if start < 0:
        return _NOT_END
    if start >= 4:
        b = f.pread(4 + HEADER_SIZE, start - 4)
        hb = b[4:]
    else:
        b = b""
        hb = f.pread(HEADER_SIZE, start)
    if len(hb) < HEADER_SIZE:
        return _NOT_END
    hlen, stream, _ts, lines = _HEADER.unpack(hb)
    if hlen != length or stream not in STREAMS:
        return _NOT_END
    if start == 0:
        return _CHAIN_OK
    if start < OVERHEAD:
        return _LAST_OK
    (plen,) = _TRAILER.unpack_from(b, 0)
    pstart = start - OVERHEAD - plen
    if not 0 < plen <= MAX_DATA or pstart < 0:
        return _LAST_OK
    pb = f.pread(HEADER_SIZE, pstart)
    if len(pb) < HEADER_SIZE:
        return _LAST_OK
    qlen, qstream, _qts, qlines = _HEADER.unpack(pb)
    if qlen == plen and qstream in STREAMS and qlines <= lines:
        return _CHAIN_OK
    return _LAST_OK


def _scan_end(f: _File, start: int, limit: int) -> int:
    """Walk the records forwards from ``start`` (a record boundary): the end of the
    last complete, well-formed one before ``limit``."""
    pos = start
    win = _Window(f, limit, backward=False)
    while pos + OVERHEAD <= limit:
        length, stream, _ts, _lines = _HEADER.unpack(win.get(pos, HEADER_SIZE))
        if not _plausible(length, stream):
            break
        end = pos + OVERHEAD + length
        if end > limit:
            break
        # Small records: one block holds many; big ones: read just trailer + next header.
        tb = win.get(end - 4, 4, 0 if length < 4096 else 4 + HEADER_SIZE)
        if _TRAILER.unpack(tb)[0] != length:
            break
        pos = end
    return pos


def _last_record_lines(f: _File, end: int, path: str) -> Tuple[int, bool]:
    """(newlines up to ``end``, whether the data up to ``end`` ends with a newline);
    ``end`` must be the end of a complete record."""
    if end <= 0:
        return 0, True
    (length,) = _TRAILER.unpack(f.pread(4, end - 4))
    start = end - OVERHEAD - length
    rec = f.pread(OVERHEAD + length, start)
    hlen, _stream, _ts, lines = _HEADER.unpack_from(rec, 0)
    if hlen != length or len(rec) != OVERHEAD + length:
        raise LogCorrupt(path, start, "leading length %d != trailing length %d" % (hlen, length))
    data = rec[HEADER_SIZE : HEADER_SIZE + length]
    return lines + data.count(_NL), data.endswith(_NL)


class LogWriter:
    """Appends records to a log file (creating it). Only one writer per file.

    ``write`` is thread-safe; every record is written with a single ``os.write``
    (so readers see it appear at once as far as the OS allows; they check both length
    fields anyway). Nothing is buffered in the process: ``flush`` has nothing to do,
    ``sync`` (or ``fsync=True``, after every record) makes the data durable.
    """

    def __init__(self, path, *, fsync: bool = False):
        self.path = os.fspath(path)
        self._fsync = fsync
        self._lock = threading.Lock()
        self._closed = True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | _O_BINARY, 0o600)
        try:
            self._f = _File(fd)
            self._size, self._nl, self._ends_nl = self._recover()
        except BaseException:
            os.close(fd)
            raise
        self._closed = False

    def _recover(self) -> Tuple[int, int, bool]:
        f = self._f
        fsize = f.fsize()
        if fsize == 0:
            return 0, 0, True
        if _end_state(f, fsize) != _NOT_END:
            # (If only the last record checks out, the one before is damaged: keep
            # it all, readers will report it.)
            end = fsize
        else:
            end = _scan_end(f, 0, fsize)
            torn = fsize - end
            if torn > MAX_RECORD and f.pread(min(torn, 1 << 26), end).strip(b"\0"):
                # More than one record's worth of non-zero bytes after the last good
                # record: that is damage, not a write cut short; don't throw it away.
                raise LogCorrupt(
                    self.path,
                    end,
                    "%d bytes after the last complete record are not records" % torn,
                )
            os.ftruncate(f.fd, end)
            if self._fsync:
                os.fsync(f.fd)
        nl, ends_nl = _last_record_lines(f, end, self.path)
        return end, nl, ends_nl

    @property
    def size(self) -> int:
        """The end offset of the last record written."""
        return self._size

    @property
    def lines(self) -> int:
        """Total number of lines (a final line without newline counts)."""
        return self._nl + (0 if self._ends_nl else 1)

    def write(self, stream: int, data: bytes, ts: Optional[float] = None) -> int:
        """Append ``data`` (split into records of at most ``MAX_DATA`` bytes) to
        ``stream``; returns the new end offset. Empty data writes nothing."""
        if stream not in STREAMS:
            raise ValueError("unknown log stream %r" % (stream,))
        if not isinstance(data, bytes):
            data = bytes(data)
        if not data:
            return self._size
        if ts is None:
            ts = time.time()
        with self._lock:
            if self._closed:
                raise ValueError("write to a closed LogWriter")
            n = len(data)
            if n <= MAX_DATA:
                self._append(stream, ts, data)
            else:
                i = 0
                while i < n:
                    j = i + MAX_DATA
                    if j < n:
                        # Prefer to cut after a newline, so records hold whole lines.
                        cut = data.rfind(_NL, i + MAX_DATA // 2, j)
                        if cut >= 0:
                            j = cut + 1
                    else:
                        j = n
                    self._append(stream, ts, data[i:j])
                    i = j
            return self._size

    def _append(self, stream: int, ts: float, data: bytes) -> None:
        length = len(data)
        rec = b"".join(
            (_HEADER.pack(length, stream, ts, self._nl), data, _TRAILER.pack(length))
        )
        fd = self._f.fd
        written = os.write(fd, rec)
        if written != len(rec):
            # A short write (disk full, ...): finish it, or take the piece back.
            view = memoryview(rec)
            try:
                while written < len(rec):
                    n = os.write(fd, view[written:])
                    if n <= 0:
                        raise OSError("short write to %s" % self.path)
                    written += n
            except BaseException:
                try:
                    os.ftruncate(fd, self._size)
                except OSError:
                    pass
                raise
        self._size += len(rec)
        self._nl += data.count(_NL)
        self._ends_nl = data.endswith(_NL)
        if self._fsync:
            os.fsync(fd)

    def message(self, text: str) -> int:
        """A stage message on the MLDESK stream (a newline is added if missing)."""
        if not text.endswith("\n"):
            text += "\n"
        return self.write(MLDESK, text.encode("utf-8", "replace"))

    def flush(self) -> None:
        """Nothing is buffered in the process: every ``write`` went to the OS."""

    def sync(self) -> None:
        """Make what was written durable (fsync)."""
        with self._lock:
            if not self._closed:
                os.fsync(self._f.fd)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                os.close(self._f.fd)

    def __enter__(self) -> "LogWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class LogReader:
    """Reads a log, possibly while a writer (in any process) appends to it.

    The file need not exist yet: until it does the log is empty. Only complete
    records are ever returned. ``bytes_read`` counts the bytes read from the file.
    """

    #: how long ``size()`` waits for a writer to finish a half-written record before
    #: it treats the tail as torn (its writer died) and finds the end by scanning.
    TORN_WAIT = 0.05

    def __init__(self, path):
        self.path = os.fspath(path)
        self._f: Optional[_File] = None
        self._end_cache = (-1, 0)  # (file size, end of last complete record)
        self._known = 0  # a record boundary known to be good
        self._lines_cache = (-1, 0)  # (end, total lines)
        self._open()

    # -- plumbing ---------------------------------------------------------------

    def _open(self) -> Optional[_File]:
        if self._f is None:
            try:
                fd = os.open(self.path, os.O_RDONLY | _O_BINARY)
            except FileNotFoundError:
                return None
            self._f = _File(fd)
        return self._f

    @property
    def bytes_read(self) -> int:
        return self._f.bytes_read if self._f is not None else 0

    @property
    def reads(self) -> int:
        return self._f.reads if self._f is not None else 0

    def close(self) -> None:
        f, self._f = self._f, None
        if f is not None:
            os.close(f.fd)

    def __enter__(self) -> "LogReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def _corrupt(self, offset: int, reason: str) -> LogCorrupt:
        return LogCorrupt(self.path, offset, reason)

    # -- size and line count ------------------------------------------------------

    def size(self) -> int:
        """The end offset of the last complete record."""
        f = self._open()
        if f is None:
            return 0
        fsize = f.fsize()
        if fsize == self._end_cache[0]:
            return self._end_cache[1]
        if fsize == 0:
            return 0
        state = _CHAIN_OK if fsize == self._known else _end_state(f, fsize)
        if state == _CHAIN_OK:
            end = fsize
        else:
            # The file ends inside a record: a writer is writing it right now (wait a
            # moment for it to finish) or died while writing it (then scan for the
            # end). Or the record before the last one is damaged: once the size
            # holds still, take the end as it is and let reading report the damage.
            end = -1
            deadline = time.monotonic() + self.TORN_WAIT
            while time.monotonic() < deadline:
                time.sleep(0.0005)
                now = f.fsize()
                if now != fsize:
                    fsize = now
                    state = _end_state(f, fsize)
                    if state == _CHAIN_OK:
                        end = fsize
                        break
            if end < 0:
                if state == _LAST_OK:
                    end = fsize
                else:
                    known = self._known if self._known <= fsize else 0
                    end = _scan_end(f, known, fsize)
        self._end_cache = (fsize, end)
        if end > self._known:
            self._known = end
        return end

    def total_lines(self) -> int:
        """Number of lines in the log (a final line without newline counts). O(1):
        the last record's ``lines_before`` plus the newlines in its data."""
        end = self.size()
        if end == 0:
            return 0
        if self._lines_cache[0] != end:
            nl, ends_nl = _last_record_lines(self._f, end, self.path)
            self._lines_cache = (end, nl + (0 if ends_nl else 1))
        return self._lines_cache[1]

    # -- forwards -----------------------------------------------------------------

    def read_from(self, offset: int, max_bytes: int = 4 << 20) -> Tuple[List[Record], int]:
        """The complete records from ``offset`` (a record boundary) on, about
        ``max_bytes`` of them (at least one when there is one), and the offset after
        them. Stops before a record that is not completely written yet."""
        f = self._open()
        if f is None:
            return [], offset
        fsize = f.fsize()
        if offset >= fsize:
            return [], offset
        buf = f.pread(min(fsize - offset, max(max_bytes, OVERHEAD)), offset)
        records: List[Record] = []
        append = records.append
        unpack_header = _HEADER.unpack_from
        unpack_trailer = _TRAILER.unpack_from
        pos = 0
        n = len(buf)
        reread = False
        while pos + OVERHEAD <= n:
            length, stream, ts, _lines = unpack_header(buf, pos)
            end = pos + OVERHEAD + length
            if not (0 < length <= MAX_DATA and stream in STREAMS):
                if self._torn_at(offset + pos):
                    break
                raise self._corrupt(offset + pos, "bad header (len %d, stream %d)" % (length, stream))
            if end > n:
                if not records and not reread and offset + end <= fsize:
                    # The first record is bigger than max_bytes: read it whole.
                    buf = f.pread(end - pos, offset + pos)
                    offset += pos
                    pos, n = 0, len(buf)
                    reread = True
                    continue
                break
            if unpack_trailer(buf, end - 4)[0] != length:
                if self._torn_at(offset + pos):
                    break
                raise self._corrupt(
                    offset + pos,
                    "trailing length %d != leading length %d"
                    % (unpack_trailer(buf, end - 4)[0], length),
                )
            append(Record(stream, ts, buf[pos + HEADER_SIZE : end - 4], offset + pos, offset + end))
            pos = end
        nxt = offset + pos
        if nxt > self._known:
            self._known = nxt
        return records, nxt

    def _torn_at(self, offset: int) -> bool:
        """A bad record at ``offset``: is it a torn tail (at or after the end of the
        last complete record) rather than damage?"""
        self._end_cache = (-1, 0)
        return offset >= self.size()

    def iter_records(self, offset: int = 0) -> Iterator[Record]:
        """All complete records from ``offset`` on, a batch at a time."""
        while True:
            records, nxt = self.read_from(offset)
            if not records:
                return
            for r in records:
                yield r
            offset = nxt

    def head(self, n_lines: int, streams: Optional[Tuple[int, ...]] = None) -> Tuple[List[Record], int]:
        """Records holding the first ``n_lines`` lines; the last one is cut just after
        the n-th line. Also the end offset of the last record read (to go on from).
        With ``streams``, only records of those streams are counted and returned."""
        if n_lines <= 0:
            return [], 0
        limit = self.size()
        if limit == 0:
            return [], 0
        f = self._f
        win = _Window(f, limit, backward=False)
        need = n_lines
        out: List[Record] = []
        pos = 0
        while pos < limit:
            length, stream, ts, _lines = _HEADER.unpack(win.get(pos, HEADER_SIZE))
            end = pos + OVERHEAD + length
            if not _plausible(length, stream) or end > limit:
                raise self._corrupt(pos, "bad header (len %d, stream %d)" % (length, stream))
            if streams is not None and stream not in streams:
                pos = end
                continue
            p = pos + HEADER_SIZE
            dend = end - 4
            parts = []
            found = False
            while p < dend:
                q = win.upto(p, dend)
                chunk = win.get(p, q - p)
                c = chunk.count(_NL)
                if c >= need:
                    i = -1
                    for _ in range(need):
                        i = chunk.find(_NL, i + 1)
                    parts.append(chunk[: i + 1])
                    found = True
                    break
                need -= c
                parts.append(chunk)
                p = q
            if not found:
                (tl,) = _TRAILER.unpack(win.get(dend, 4))
                if tl != length:
                    raise self._corrupt(pos, "trailing length %d != leading length %d" % (tl, length))
            data = parts[0] if len(parts) == 1 else b"".join(parts)
            out.append(Record(stream, ts, data, pos, end))
            pos = end
            if found:
                break
        return out, pos

    # -- backwards ----------------------------------------------------------------

    def tail(self, n_lines: int, streams: Optional[Tuple[int, ...]] = None) -> Tuple[List[Record], int]:
        """Records holding the last ``n_lines`` lines, the first one cut to start at
        a line start; also the offset where the first returned record starts.
        Reads backwards from the end: O(n_lines), not O(size of the log).
        With ``streams``, only records of those streams are counted and returned."""
        end = self.size()
        if n_lines <= 0 or end == 0:
            return [], end
        f = self._f
        win = _Window(f, end, backward=True)
        need = -1  # newlines to pass, counted from the end
        rev: List[Record] = []
        pos = end
        found = False
        while pos > 0 and not found:
            (length,) = _TRAILER.unpack(win.get(pos - 4, 4))
            start = pos - OVERHEAD - length
            if not 0 < length <= MAX_DATA or start < 0:
                raise self._corrupt(pos - 4, "bad trailing length %d" % length)
            dstart = start + HEADER_SIZE
            if streams is not None and _HEADER.unpack(win.get(start, HEADER_SIZE))[1] not in streams:
                pos = start
                continue
            p = pos - 4
            if need < 0:
                last = win.get(p - 1, 1)
                need = n_lines + (1 if last == _NL else 0)
            parts = []
            while p > dstart:
                q = win.downto(p, dstart)
                chunk = win.get(q, p - q)
                c = chunk.count(_NL)
                if c >= need:
                    i = len(chunk)
                    for _ in range(need):
                        i = chunk.rfind(_NL, 0, i)
                    parts.append(chunk[i + 1 :])
                    found = True
                    break
                need -= c
                parts.append(chunk)
                p = q
            # Found here: the header alone; else the whole block before it (the next
            # record back is likely in it).
            hb = win.get(start, HEADER_SIZE, HEADER_SIZE if found else 0)
            hlen, stream, ts, _lines = _HEADER.unpack(hb)
            if hlen != length or stream not in STREAMS:
                raise self._corrupt(
                    start, "leading length %d / stream %d do not match trailing length %d"
                    % (hlen, stream, length)
                )
            parts.reverse()
            data = parts[0] if len(parts) == 1 else b"".join(parts)
            if data:
                rev.append(Record(stream, ts, data, start, pos))
            pos = start
        rev.reverse()
        return rev, (rev[0].offset if rev else end)


def tail_start(reader: "LogReader", n_lines: int, streams: Optional[Tuple[int, ...]] = None) -> Tuple[int, int]:
    """Where the last ``n_lines`` lines (of ``streams``) begin: (offset of the
    record, bytes of its data to skip). Like ``LogReader.tail`` but it keeps nothing,
    so a last line of any length costs bounded memory."""
    end = reader.size()
    if n_lines <= 0 or end == 0:
        return end, 0
    f = reader._f  # noqa: SLF001 - the same module
    win = _Window(f, end, backward=True)
    need = -1
    pos = end
    first = (end, 0)
    while pos > 0:
        (length,) = _TRAILER.unpack(win.get(pos - 4, 4))
        start = pos - OVERHEAD - length
        if not 0 < length <= MAX_DATA or start < 0:
            raise reader._corrupt(pos - 4, "bad trailing length %d" % length)  # noqa: SLF001
        dstart = start + HEADER_SIZE
        if streams is not None and _HEADER.unpack(win.get(start, HEADER_SIZE))[1] not in streams:
            pos = start
            continue
        p = pos - 4
        if need < 0:
            need = n_lines + (1 if win.get(p - 1, 1) == _NL else 0)
        while p > dstart:
            q = win.downto(p, dstart)
            chunk = win.get(q, p - q)
            c = chunk.count(_NL)
            if c >= need:
                i = len(chunk)
                for _ in range(need):
                    i = chunk.rfind(_NL, 0, i)
                return start, q + i + 1 - dstart
            need -= c
            p = q
        first = (start, 0)
        pos = start
    return first


def write_tail(reader: "LogReader", out_binary_file: IO[bytes], n_lines: int,
               streams: Tuple[int, ...] = (STDOUT, STDERR)) -> int:
    """Write the last ``n_lines`` lines of ``streams`` to a binary file, streaming
    (bounded memory whatever the lines' length); returns the bytes written."""
    offset, skip = tail_start(reader, n_lines, streams)
    total = 0
    while True:
        records, nxt = reader.read_from(offset)
        if not records:
            return total
        for r in records:
            if r.stream not in streams:
                continue
            data = r.data
            if skip:
                data, skip = data[skip:], 0
            out_binary_file.write(data)
            total += len(data)
        offset = nxt


def write_program_output(
    reader: LogReader,
    out_binary_file: IO[bytes],
    *,
    include_mldesk: bool = False,
    offset: int = 0,
) -> int:
    """Write the raw output of the program (stdout and stderr, in the order it came,
    and the MLDESK messages if asked) to a binary file; returns the bytes written."""
    wanted = (STDOUT, STDERR, MLDESK) if include_mldesk else (STDOUT, STDERR)
    total = 0
    while True:
        records, nxt = reader.read_from(offset)
        if not records:
            return total
        chunk = b"".join([r.data for r in records if r.stream in wanted])
        if chunk:
            out_binary_file.write(chunk)
            total += len(chunk)
        offset = nxt

# -- capturing a program's output ---------------------------------------------------
# Used by the local process runtime and by the remote agent on SSH hosts alike.
PUMP_READ = 1 << 16
PARTIAL_FLUSH = 0.05  # seconds a line without "\n" waits before it is stored anyway
LINE_FLUSH = 0.01  # seconds complete lines wait for more (one record for many writes)
BATCH = 1 << 16  # pending bytes that are stored at once, without waiting
DRAIN = 0.5  # after the program exited, pipes quiet this long are done with


class Batcher(object):
    """Turns a program's writes (of two streams, in arrival order) into few records:
    complete lines are stored within LINE_FLUSH seconds (or at once when BATCH bytes
    are pending), a partial line (a progress bar redrawn with "\\r") after
    PARTIAL_FLUSH seconds; when the other stream writes, the complete lines pending
    are stored first, so the order of the two streams' lines is kept. After LINE_FLUSH
    seconds with nothing stored, a complete line is stored at once (a program's first
    line, or one after a pause, shows without the wait; a burst is batched after it)."""

    def __init__(self, sink):
        self.sink = sink
        self.pending = {STDOUT: b"", STDERR: b""}
        self.parts = {STDOUT: [], STDERR: []}
        self.size = {STDOUT: 0, STDERR: 0}
        self.since = {STDOUT: 0.0, STDERR: 0.0}
        self.has_nl = {STDOUT: False, STDERR: False}
        self.stored = None  # when something was last stored (monotonic)

    def add(self, stream, data, now):
        if not data:
            return
        other = STDERR if stream == STDOUT else STDOUT
        if self.has_nl[other]:
            self._flush(other, complete_only=True)
        if not self.size[stream]:
            self.since[stream] = now
        self.parts[stream].append(data)
        self.size[stream] += len(data)
        if not self.has_nl[stream] and b"\n" in data:
            self.has_nl[stream] = True
        if self.size[stream] >= BATCH:
            if self.has_nl[stream]:
                self._flush(stream, complete_only=True)
            elif self.size[stream] >= MAX_DATA:  # one very long line: store it in pieces
                self._flush(stream, complete_only=False)
        elif self.has_nl[stream] and (self.stored is None or now - self.stored >= LINE_FLUSH):
            self._flush(stream, complete_only=True)  # the first line after a quiet spell

    def _flush(self, stream, complete_only):
        parts = self.parts[stream]
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        cut = data.rfind(b"\n") + 1 if complete_only else len(data)
        if cut:
            self.sink(stream, data[:cut])
            self.stored = time.monotonic()
        rest = data[cut:]
        self.parts[stream] = [rest] if rest else []
        self.size[stream] = len(rest)
        self.has_nl[stream] = False
        if rest and cut:
            self.since[stream] = time.monotonic()

    def timeout(self, now):
        """Seconds until something pending is due (None: nothing pending)."""
        due = None
        for stream in (STDOUT, STDERR):
            if self.size[stream]:
                at = self.since[stream] + (LINE_FLUSH if self.has_nl[stream] else PARTIAL_FLUSH)
                due = at if due is None else min(due, at)
        return None if due is None else max(0.0, due - now)

    def tick(self, now):
        for stream in (STDOUT, STDERR):
            if self.size[stream]:
                if self.has_nl[stream] and now - self.since[stream] >= LINE_FLUSH:
                    self._flush(stream, complete_only=True)
                if self.size[stream] and not self.has_nl[stream] and now - self.since[stream] >= PARTIAL_FLUSH:
                    self._flush(stream, complete_only=False)

    def close(self):
        for stream in (STDOUT, STDERR):
            if self.size[stream]:
                self._flush(stream, complete_only=False)


def pump(out, err, sink: Callable[..., object], proc=None) -> None:
    """Copy a program's stdout and stderr pipes into ``sink`` in arrival order until
    both are closed, or, when ``proc`` has exited, until they stay quiet for DRAIN
    seconds (a background child of the program may hold them open forever).
    Writes are batched into records by :class:`Batcher`."""
    sel = selectors.DefaultSelector()
    batch = Batcher(sink)
    for f, stream in ((out, STDOUT), (err, STDERR)):
        os.set_blocking(f.fileno(), False)
        _grow_pipe(f.fileno())
        sel.register(f, selectors.EVENT_READ, stream)
    open_count = 2
    exited_at = None
    while open_count:
        timeout = batch.timeout(time.monotonic())
        if proc is not None:
            timeout = 0.25 if timeout is None else min(timeout, 0.25)
        ready = sel.select(timeout)
        if proc is not None:
            if exited_at is None and proc.poll() is not None:
                exited_at = time.monotonic()
            # quiet for DRAIN after the exit, or still written to by a child 4x that long
            if exited_at is not None and time.monotonic() - exited_at > (DRAIN if not ready else 4 * DRAIN):
                break
        now = time.monotonic()
        got = 0
        for key, _ in ready:
            try:
                chunk = os.read(key.fileobj.fileno(), PUMP_READ)
            except BlockingIOError:
                continue
            if not chunk:
                sel.unregister(key.fileobj)
                open_count -= 1
                continue
            got += len(chunk)
            batch.add(key.data, chunk, now)
        batch.tick(time.monotonic())
        if 0 < got < PUMP_READ // 2 and open_count == 2:
            # output is trickling in (a program that flushes every line): let it
            # collect in the pipe for a moment instead of waking for every write,
            # which would cost both processes a context switch per line
            time.sleep(STREAM_PAUSE)
    batch.close()
    sel.close()


STREAM_PAUSE = 0.005


def _grow_pipe(fd):
    """A larger pipe (Linux: up to 1 MiB unprivileged) holds the output that arrives
    while the pump pauses, so the program never waits for it."""
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except (ImportError, OSError, ValueError):
        pass
