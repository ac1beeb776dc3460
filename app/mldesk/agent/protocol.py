"""The agent's wire protocol, defined once for both ends: frames, frame kinds, the log record header.

Standard library only, Python >= 3.8 (shipped to hosts).

Two framings travel on an agent command's stdin/stdout (little endian):

* plain frames ``u32 len | payload`` (``upload``, ``put-input``);
* typed frames ``u8 kind | u32 len | payload`` (the streams of ``follow`` and
  ``outputs``), with the kinds below.

``start`` with follow arguments answers with a ``STARTED`` frame and goes on as
``follow``; ``follow`` asked for the final outputs reads one request line after its
``END`` and sends them as ``outputs`` does (up to ``TOTALS``) on the same channel.

A ``LOG`` frame carries raw records of the execution's log, in the log store's own
format (``LOG_HEADER`` ... data ... ``LOG_TRAILER``), so the app stores them as they
are with the host's timestamps.
"""

from __future__ import annotations

import struct

# follow: the log
LOG = b"L"  # raw log records (one or more, complete)
HEARTBEAT = b"H"  # nothing new, the link is alive
STATUS = b"T"  # the status (JSON) when its state or reason changed (a Slurm job queued/running)
END = b"E"  # the final status (JSON), always last (but for the final outputs, see below)
STARTED = b"B"  # start-and-follow: the start's answer (status JSON), first
SAMPLES = b"R"  # after END, asked for: the last resource samples (raw lines), before the outputs
# outputs: the changed files of outputs/
FILE = b"F"  # a file begins: JSON {path, size, mtime_ns, mode}
DATA = b"D"  # a piece of the current file's content
FILE_END = b"f"  # the current file ends: JSON {ok, size, error}
FOLDER = b"d"  # a folder: JSON {path}
SKIP = b"S"  # a path not sent: JSON {path, reason}
TOTALS = b"Z"  # the totals (JSON), always last

KINDS = (LOG, HEARTBEAT, STATUS, END, STARTED, SAMPLES, FILE, DATA, FILE_END, FOLDER, SKIP, TOTALS)

LENGTH = struct.Struct("<I")
TYPED_HEAD = struct.Struct("<cI")
TYPED_HEAD_SIZE = TYPED_HEAD.size  # 5

# the log store's record: u32 len | u8 stream | f64 ts | u64 lines_before | data | u32 len
LOG_HEADER = struct.Struct("<IBdQ")
LOG_TRAILER = struct.Struct("<I")
LOG_HEADER_SIZE = LOG_HEADER.size  # 21
LOG_OVERHEAD = LOG_HEADER_SIZE + LOG_TRAILER.size  # 25


def frame(payload):
    """A plain frame: ``u32 len | payload``."""
    return LENGTH.pack(len(payload)) + payload


def frame_length(head):
    return LENGTH.unpack(head)[0]


def typed(kind, payload=b""):
    """A typed frame: ``u8 kind | u32 len | payload``."""
    return TYPED_HEAD.pack(kind, len(payload)) + payload


def typed_head(head):
    """(kind, length) of a typed frame's 5-byte head."""
    return TYPED_HEAD.unpack(head)


def log_records(payload):
    """(stream, ts, data) of each complete log record in a ``LOG`` frame's payload."""
    unpack_from = LOG_HEADER.unpack_from
    pos = 0
    n = len(payload)
    while pos < n:
        length, stream, ts, _lines = unpack_from(payload, pos)
        start = pos + LOG_HEADER_SIZE
        yield stream, ts, payload[start:start + length]
        pos = start + length + LOG_TRAILER.size
