"""Scalars ("metrics") read from what a program prints: parser, incremental scanner,
per-execution storage and the read API. Standard library only, no Qt.

What is a metric (the default patterns, SPEC 12)
------------------------------------------------
Each *line* of stdout and stderr is looked at separately (mldesk's own stage stream
never is), after ANSI escapes are removed and after ``\\r`` handling: a line that was
redrawn with ``\\r`` counts once, as the text after its last ``\\r`` (its final state).

- ``key: value`` and ``key: value (step N)`` (Guild AI's defaults), as whole lines and
  as pairs inside a line (Keras: ``... - loss: 0.4123 - accuracy: 0.8125``). The colon
  must be followed by whitespace.
- ``'key': value`` and ``"key": value`` (Python dict reprs such as HuggingFace
  Trainer's ``{'loss': 0.5, 'learning_rate': 5e-05, 'epoch': 1.0}``, and JSON lines).
- ``key=value`` pairs anywhere on a line (``train/loss=0.2``, tqdm/Lightning postfixes
  ``[..., train_loss=0.53, val_acc=0.81]``); spaces around ``=`` are allowed.

A key starts with a letter or ``_`` at the start of the line or after whitespace or one
of ``[({,;|:``, and goes on with printable ASCII other than whitespace and
``"'(),:;<=>[]{|}`` (so ``/`` and ``.`` are allowed: ``train/loss``, ``val.acc``; a
key never ends with ``:``). A value is a float (``0.5``, ``-1e-3``, ``5.``, ``nan``,
``inf``, ``-Infinity``) and must end at whitespace, the end of the line, one of
``,;)]}|`` or a sentence's final ``.``. Hence ``12:30:01``, ``http://host:8080/``,
``cuda:0``, ``100%`` and ``5ms/step`` are never metrics. Within one line a key counts
once (its first value).

Steps: an explicit ``step``, ``global_step``, ``iteration``, ``iter`` or ``epoch``
number on the same line (any case, ``Epoch 2:``, ``step=10``, ``'epoch': 1.0``;
``(step N)`` after a pair applies to that pair); when a line holds several, the finest
wins (step, then iteration, then epoch). A line that holds a step but no metric (Keras'
``Epoch 3/10``, Guild's ``step: 3``) sets the step of the lines that follow it until
the next such line. Otherwise a value's step is its key's own count, **starting at
1** (the first ``loss`` is step 1). The step words themselves are never metrics.

Users may add patterns, replace the defaults, ignore keys and name a primary metric
in ml.yaml (``metrics:``, see ``MetricsConfig`` and the README).

Storage
-------
``executions/<id>/metrics.jsonl`` holds one JSON array per value, in order:
``["loss", 3, 0.51, 1764400000.25]`` (key, step, value, wall time of the log record
the line ended in); ``metrics.cursor.json`` says how far the log has been scanned
(a log offset at a record boundary, the partial line of each stream, the per-key
counts, the size of metrics.jsonl that goes with it). Scanning resumes exactly
there, so the log is never read twice; ``metrics.lock`` (flock) keeps one scanner per
execution. While an execution runs, ``follow`` (a low-priority child process of its
supervisor) keeps the file up to date; ``read_metrics`` brings it up to date itself
when nobody else is scanning, so logs stored before metrics existed are scanned once,
on the first request, and cached.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows: one scanner is not enforced
    fcntl = None  # type: ignore[assignment]

from mldesk.agent import logstore
from mldesk.core.metricsconfig import (  # noqa: F401 - defined there (ml.yaml's side), used and re-exported here
    MetricsConfig, MetricsConfigError, compile_pattern, default_goal,
)

__all__ = [
    "MetricsConfig",
    "MetricsConfigError",
    "parse_line",
    "Scanner",
    "catch_up",
    "follow",
    "read_metrics",
    "summarize",
    "MAX_LINE",
]

MAX_LINE = 1 << 20  # longer lines are skipped
MAX_USER_LINE = 10_000  # user patterns only look at lines up to this many characters
METRICS_FILE = "metrics.jsonl"
CURSOR_FILE = "metrics.cursor.json"
LOCK_FILE = "metrics.lock"
STEP_WORDS = ("step", "global_step", "iteration", "iter", "epoch")
_STEP_RANK = {"step": 0, "global_step": 0, "iteration": 1, "iter": 1, "epoch": 2}
_SCANNED = (logstore.STDOUT, logstore.STDERR)

# -- the default patterns (bytes regexes; linear: see the module tests) ---------------
_START = rb"(?:^|(?<=[\s\[({,;|:]))"
_KEY = rb"[_a-zA-Z][!#-&*+\-./0-9?-Z\\^-z~]*+"  # printable ASCII minus whitespace and "'(),:;<=>[]{|}
_VALUE = rb"[-+]?+(?:(?:\d++(?:\.\d*+)?+|\.\d++)(?:[eE][-+]?+\d++)?+|(?i:nan|inf(?:inity)?+))"
_END = rb"(?=\.?+(?![^\s,;)\]}|]))"
_PAIR_RE = re.compile(
    _START
    + rb"(?:(?P<q>['\"])(?P<qkey>" + _KEY + rb")(?P=q)[ \t]*:[ \t]*(?P<qval>" + _VALUE + rb")" + _END
    + rb"|(?P<ckey>" + _KEY + rb"):[ \t]++(?P<cval>" + _VALUE + rb")" + _END
    + rb"(?:[ \t]++\((?i:step)[ \t]++(?P<cstep>\d++)\))?+"
    + rb"|(?P<ekey>" + _KEY + rb")[ \t]*+=[ \t]*+(?P<eval>" + _VALUE + rb")" + _END + rb")"
)
_STEP_RE = re.compile(
    rb"(?<![\w/.\-])(?i:(global_step|step|iteration|iter|epoch))['\"]?+[ \t]*+[:=]?+[ \t]*+"
    rb"(\d++(?:\.\d++)?+)(?![\w.])"
)
_ANSI_RE = re.compile(rb"\x1b(?:\[[0-?]*+[ -/]*+[@-~]|\][^\x07\x1b]*+(?:\x07|\x1b\\)?+|[@-Z\\-_])")
_STEP_KEYS = frozenset(w.encode() for w in STEP_WORDS)


def _num(b: bytes):
    """A step number: int when whole."""
    v = float(b)
    return int(v) if v.is_integer() and abs(v) < 1 << 53 else v


def strip_ansi(line: bytes) -> bytes:
    return _ANSI_RE.sub(b"", line) if b"\x1b" in line else line


def final_state(line: bytes) -> bytes:
    """What a line redrawn with ``\\r`` finally shows: the text after its last ``\\r``
    (a trailing ``\\r``, as in ``\\r\\n`` line ends, is ignored)."""
    if b"\r" not in line:
        return line
    stripped = line.rstrip(b"\r")
    return stripped[stripped.rfind(b"\r") + 1 :]


def line_step(line: bytes):
    """The explicit step of a (clean) line, or None."""
    low = line.lower()
    if b"ep" not in low and b"ter" not in low:  # step, epoch, iter(ation)
        return None
    best = None
    for m in _STEP_RE.finditer(line):
        rank = _STEP_RANK[m.group(1).lower().decode()]
        if best is None or rank < best[0]:
            best = (rank, m.group(2))
            if rank == 0:
                break
    return None if best is None else _num(best[1])


def parse_line(line: bytes, config: Optional[MetricsConfig] = None, _user=None):
    """``(step or None, [(key, value, step-or-None), ...])`` for one clean line
    (no ``\\n``; ANSI and ``\\r`` already handled). Never raises on any input."""
    found: List[Tuple[str, float, object]] = []
    user = _user if _user is not None else _compile_user(config)
    user_keys = set()
    if user and len(line) <= MAX_USER_LINE:
        text = line.decode("utf-8", "replace")
        for rx, fixed in user:
            for m in rx.finditer(text):
                key = fixed or m.group("key")
                try:
                    value = float(m.group("value"))
                except (TypeError, ValueError):
                    continue
                if not key or key in user_keys:
                    continue
                step = None
                if "step" in rx.groupindex and m.group("step"):
                    try:
                        step = _num(m.group("step"))
                    except ValueError:
                        step = None
                user_keys.add(key)
                found.append((key, value, step))
    if not (config is not None and config.replace_defaults) and (b":" in line or b"=" in line):
        seen = set()
        for _q, qkey, qval, ckey, cval, cstep, ekey, evalue in _PAIR_RE.findall(line):
            if ekey:
                kb, vb = ekey, evalue
            elif ckey:
                kb, vb = ckey, cval
            else:
                kb, vb = qkey, qval
            if kb in seen or kb.lower() in _STEP_KEYS:
                continue
            seen.add(kb)
            key = kb.decode("ascii")
            if key in user_keys:
                continue
            found.append((key, float(vb), int(cstep) if cstep else None))
    return line_step(line), found


def _compile_user(config: Optional[MetricsConfig]):
    if config is None or not config.patterns:
        return ()
    out = []
    for regex, key in config.patterns:
        try:
            out.append((compile_pattern(regex, key), key))
        except MetricsConfigError:
            continue  # labconfig reported it; never fail a scan over it
    return tuple(out)


class Scanner:
    """Turns log records into metric points, incrementally.

    ``feed(stream, data, ts)`` returns the points of the lines the data completed;
    ``flush()`` those of partial last lines (when the log is complete). The state
    (``state()`` / ``Scanner(config, state)``) is JSON-able, so a scan can resume
    exactly where it stopped.
    """

    def __init__(self, config: Optional[MetricsConfig] = None, state: Optional[dict] = None):
        self.config = config or MetricsConfig()
        self._user = _compile_user(self.config)
        self._ignore = tuple(self.config.ignore)
        self._ignored: Dict[str, bool] = {}
        self.pending: Dict[int, bytes] = {s: b"" for s in _SCANNED}
        self.skipping: Dict[int, bool] = {s: False for s in _SCANNED}
        self.counts: Dict[str, int] = {}
        self.sticky = None  # step set by a step-only line
        if state:
            for s in _SCANNED:
                self.pending[s] = base64.b64decode(state.get("pending", {}).get(str(s), ""))
                self.skipping[s] = bool(state.get("skipping", {}).get(str(s), False))
            self.counts = dict(state.get("counts", {}))
            self.sticky = state.get("sticky")

    def state(self) -> dict:
        return {
            "pending": {str(s): base64.b64encode(self.pending[s]).decode() for s in _SCANNED},
            "skipping": {str(s): self.skipping[s] for s in _SCANNED},
            "counts": self.counts,
            "sticky": self.sticky,
        }

    def _is_ignored(self, key: str) -> bool:
        r = self._ignored.get(key)
        if r is None:
            r = any(fnmatch.fnmatchcase(key, p) for p in self._ignore)
            self._ignored[key] = r
        return r

    def feed(self, stream: int, data: bytes, ts: float) -> list:
        """Points ``(key, step, value, ts)`` of the lines this data completes."""
        if stream not in self.pending or not data:
            return []
        out: list = []
        pend = self.pending[stream]
        nl = data.rfind(b"\n")
        if nl < 0:
            self._keep(stream, pend + data if pend else data)
            return out
        body = pend + data[:nl] if pend else data[:nl]
        lines = body.split(b"\n")
        if self.skipping[stream]:
            lines[0] = b""
            self.skipping[stream] = False
        rest = data[nl + 1 :]
        self.pending[stream] = b""
        if rest:
            self._keep(stream, rest)
        line_fn = self._line
        if self._user:
            for line in lines:
                if line:
                    line_fn(line, ts, out)
            return out
        # A line with no ':' or '=' (and nothing to clean) holds no pair: only the
        # step of the last such line with one matters (the sticky step of the lines
        # after it), so a run of them is looked at from its end, lazily. A flood of
        # plain lines costs one cheap test each instead of a step search each.
        if b":" not in body and b"=" not in body and b"\r" not in body and b"\x1b" not in body:
            self._sticky_from(lines, 0, len(lines))  # all plain (a flood of print lines)
            return out
        plain_from = -1
        for i, line in enumerate(lines):
            if not line:
                continue
            if b":" not in line and b"=" not in line and b"\r" not in line and b"\x1b" not in line:
                if plain_from < 0:
                    plain_from = i
                continue
            if plain_from >= 0:
                self._sticky_from(lines, plain_from, i)
                plain_from = -1
            line_fn(line, ts, out)
        if plain_from >= 0:
            self._sticky_from(lines, plain_from, len(lines))
        return out

    def _sticky_from(self, lines: list, start: int, end: int) -> None:
        """The sticky step after the plain lines ``lines[start:end]``: what ``_line``
        would leave after each in turn (the last step found; unchanged if none)."""
        for j in range(end - 1, start - 1, -1):
            line = lines[j]
            if not line or len(line) > MAX_LINE:
                continue
            step = line_step(line)
            if step is not None:
                self.sticky = step
                return

    def _keep(self, stream: int, pend: bytes) -> None:
        if b"\r" in pend:  # only the final state of a redrawn line matters
            stripped = pend.rstrip(b"\r")
            cut = stripped.rfind(b"\r")
            if cut > 0:
                pend = pend[cut:]
        if len(pend) > MAX_LINE or self.skipping[stream]:
            self.skipping[stream] = True
            pend = b""
        self.pending[stream] = pend

    def flush(self, ts: Optional[float] = None) -> list:
        """The points of the partial last lines (the log is complete)."""
        out: list = []
        for s in _SCANNED:
            pend, self.pending[s] = self.pending[s], b""
            skip, self.skipping[s] = self.skipping[s], False
            if pend and not skip:
                self._line(pend, time.time() if ts is None else ts, out)
        return out

    def _line(self, line: bytes, ts: float, out: list) -> None:
        if len(line) > MAX_LINE:
            return
        if b"\r" in line:
            line = final_state(line)
        if b"\x1b" in line:
            line = _ANSI_RE.sub(b"", line)
        if not self._user and b":" not in line and b"=" not in line:
            step = line_step(line)  # no pair possible; only a step-only line matters
            if step is not None:
                self.sticky = step
            return
        try:
            step, found = parse_line(line, self.config, self._user)
        except Exception:  # noqa: BLE001 - a scan never fails over one line
            return
        if not found:
            if step is not None:
                self.sticky = step
            return
        counts = self.counts
        for key, value, own in found:
            if self._ignore and self._is_ignored(key):
                continue
            n = counts.get(key, 0) + 1
            counts[key] = n
            s = own if own is not None else step if step is not None else self.sticky if self.sticky is not None else n
            out.append((key, s, value, ts))


# -- progress (the sidebar's "epoch 3/10 · 56%") -----------------------------------------
_PROG_OF = re.compile(rb"(?<![\w/.\-])(?i:(epoch|step|iteration|iter))['\"]?+[ \t]*+[:=]?+[ \t]*+(\d++)[ \t]*+/[ \t]*+(\d++)")
_PROG_PCT = re.compile(rb"(?<![\d.])(\d{1,3}(?:\.\d+)?+)[ \t]?%")
_PROG_FRAC = re.compile(rb"(?<![\w/.])(\d++)/(\d++)(?![\w/.])")


def progress_text(line: bytes) -> Optional[str]:
    """A short progress read-out of one output line, or None: ``epoch 3/10 · 56%``
    (Keras' ``Epoch 3/10``, tqdm/Lightning's ``Epoch 2:  56%|###   | 18/32``,
    Keras' ``18/32 [=====>....]``)."""
    if len(line) > 10_000:
        return None
    line = strip_ansi(final_state(line.rstrip(b"\n")))
    parts = []
    m = _PROG_OF.search(line)
    if m:
        parts.append("%s %s/%s" % (m.group(1).decode().lower(), m.group(2).decode(), m.group(3).decode()))
    else:
        m2 = _STEP_RE.search(line)
        if m2:
            parts.append("%s %s" % (m2.group(1).decode().lower(), m2.group(2).decode()))
    pct = _PROG_PCT.search(line)
    if pct and float(pct.group(1)) <= 100:
        parts.append(pct.group(1).decode() + "%")
    else:
        for f in _PROG_FRAC.finditer(line):
            done, total = int(f.group(1)), int(f.group(2))
            if m and f.start() == m.start(2):
                continue
            if 0 < total and done <= total:
                parts.append(f"{100 * done // total}%")
                break
    return " · ".join(parts) if parts else None


# -- storage --------------------------------------------------------------------------
def _paths(exec_dir: Path):
    return exec_dir / METRICS_FILE, exec_dir / CURSOR_FILE, exec_dir / LOCK_FILE


def _lock(exec_dir: Path, blocking: bool) -> Optional[int]:
    """Take the scanner lock; None when another process holds it (non-blocking)."""
    fd = os.open(exec_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    if fcntl is None:
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _load_cursor(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            d = json.loads(f.read())
        if isinstance(d, dict) and d.get("version") == 1:
            return d
    except (OSError, ValueError):
        pass
    return {}


def _save_cursor(path: Path, cursor: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(cursor, f)
    os.replace(tmp, path)


_KEY_JSON: Dict[str, str] = {}


def _jnum(v) -> str:
    """A number as Python's json module writes it (NaN, Infinity, -Infinity)."""
    if v != v:
        return "NaN"
    if v in (math.inf, -math.inf):
        return "Infinity" if v > 0 else "-Infinity"
    return repr(v)


def _dump(points: list) -> bytes:
    """JSON lines ``[key, step, value, time]`` (hand-made: json.dumps per point is
    the scanner's biggest cost)."""
    keys = _KEY_JSON
    out = []
    append = out.append
    for key, step, value, ts in points:
        kj = keys.get(key)
        if kj is None:
            kj = keys[key] = json.dumps(key)
        if value - value == 0 and step - step == 0:  # finite: repr is JSON
            append("[%s,%r,%r,%r]\n" % (kj, step, value, ts))
        else:
            append("[%s,%s,%s,%r]\n" % (kj, _jnum(step), _jnum(value), ts))
    return "".join(out).encode()


def catch_up(exec_dir, config: Optional[MetricsConfig] = None, *, final: bool = False,
             max_bytes: Optional[int] = None) -> int:
    """Scan the log from the cursor to its end, appending to metrics.jsonl (the caller
    holds the lock). ``final``: the log is complete, so partial last lines count too.
    Returns the number of log bytes scanned."""
    exec_dir = Path(exec_dir)
    mpath, cpath, _ = _paths(exec_dir)
    cursor = _load_cursor(cpath)
    offset = int(cursor.get("offset", 0))
    size = int(cursor.get("metrics_size", 0))
    scanner = Scanner(config, cursor.get("scanner"))
    fd = os.open(mpath, os.O_RDWR | os.O_CREAT, 0o644)
    scanned = 0
    try:
        if os.fstat(fd).st_size != size:
            os.ftruncate(fd, size)  # a scanner died between writing values and the cursor
        os.lseek(fd, size, os.SEEK_SET)
        reader = logstore.LogReader(exec_dir / "log.bin")
        try:
            while True:
                records, nxt = reader.read_from(offset)
                if not records:
                    break
                points: list = []
                for r in records:
                    if r.stream != logstore.MLDESK:
                        points.extend(scanner.feed(r.stream, r.data, r.ts))
                scanned += nxt - offset
                offset = nxt
                if points:
                    size += _write_all(fd, _dump(points))
                _save_cursor(cpath, {"version": 1, "offset": offset, "metrics_size": size,
                                     "scanner": scanner.state(), "final": False})
                if max_bytes is not None and scanned >= max_bytes:
                    return scanned
        finally:
            reader.close()
        if final and (any(scanner.pending.values()) or any(scanner.skipping.values())):
            last_ts = time.time()
            points = scanner.flush(last_ts)
            if points:
                size += _write_all(fd, _dump(points))
            _save_cursor(cpath, {"version": 1, "offset": offset, "metrics_size": size,
                                 "scanner": scanner.state(), "final": True})
    finally:
        os.close(fd)
    return scanned


def _write_all(fd: int, data: bytes) -> int:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
    return len(data)


def update(exec_dir, config: Optional[MetricsConfig] = None, *, final: bool = False, wait: bool = False) -> bool:
    """Bring metrics.jsonl up to date unless another process is scanning (then False;
    with ``wait`` wait for it, then finish what it left)."""
    exec_dir = Path(exec_dir)
    if not exec_dir.is_dir():
        return False
    try:
        fd = _lock(exec_dir, blocking=wait)
    except OSError:
        return False
    if fd is None:
        return False
    try:
        catch_up(exec_dir, config, final=final)
    except (OSError, logstore.LogCorrupt):
        return False
    finally:
        os.close(fd)
    return True


def read_points(exec_dir) -> List[list]:
    """Every stored point ``[key, step, value, time]`` in order (complete lines only)."""
    mpath = Path(exec_dir) / METRICS_FILE
    try:
        with open(mpath, "rb") as f:
            data = f.read()
    except OSError:
        return []
    end = data.rfind(b"\n") + 1
    if not end:
        return []
    try:  # one parse for the whole file
        out = json.loads(b"[" + data[: end - 1].replace(b"\n", b",") + b"]")
        if all(isinstance(p, list) and len(p) == 4 for p in out):
            return out
    except ValueError:
        pass
    out = []
    loads = json.loads
    for line in data[:end].splitlines():
        try:
            p = loads(line)
        except ValueError:
            continue
        if isinstance(p, list) and len(p) == 4:
            out.append(p)
    return out


def read_points_from(exec_dir, offset: int = 0) -> Tuple[List[list], int]:
    """The points stored after byte ``offset`` of metrics.jsonl (complete lines only)
    and the offset to go on from: a live chart reads only what is new."""
    mpath = Path(exec_dir) / METRICS_FILE
    try:
        with open(mpath, "rb") as f:
            if f.seek(0, os.SEEK_END) < offset:  # rewritten (a scanner died mid-write): start over
                offset = 0
            f.seek(offset)
            data = f.read()
    except OSError:
        return [], offset
    end = data.rfind(b"\n") + 1
    if not end:
        return [], offset
    try:
        out = json.loads(b"[" + data[: end - 1].replace(b"\n", b",") + b"]")
    except ValueError:
        out = []
        for line in data[:end].splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return [p for p in out if isinstance(p, list) and len(p) == 4], offset + end


def read_metrics(exec_dir, config: Optional[MetricsConfig] = None, *, final: bool = False,
                 wait: bool = False) -> Dict[str, List[Tuple[object, float, float]]]:
    """``{key: [(step, value, time), ...]}`` in the order printed. Scans what the log
    holds beyond the stored cursor first when no other process is scanning (``final``:
    the execution ended, so its partial last lines count too; ``wait``: wait for a
    scanner that is still busy, so the result is complete)."""
    update(exec_dir, config, final=final, wait=wait)
    out: Dict[str, List[Tuple[object, float, float]]] = {}
    for key, step, value, ts in read_points(exec_dir):
        out.setdefault(key, []).append((step, value, ts))
    return out


def summarize(points: Iterable[Tuple[object, float, float]]) -> dict:
    """``{"last", "min", "max", "count"}`` of one key's points (nan ignored by min/max)."""
    last = mn = mx = None
    count = 0
    for _step, value, _ts in points:
        count += 1
        last = value
        if isinstance(value, float) and math.isnan(value):
            continue
        if mn is None or value < mn:
            mn = value
        if mx is None or value > mx:
            mx = value
    return {"last": last, "min": mn, "max": mx, "count": count}


# -- following a live log (the supervisor's child) ---------------------------------------
POLL = 0.2


def follow(exec_dir, config: Optional[MetricsConfig] = None, control=None) -> int:
    """Keep metrics.jsonl up to date while the log grows, until ``control`` (a binary
    file: the supervisor's pipe) reaches EOF. A ``F`` read from it first means the log
    is complete. Runs at low priority: it lags behind a flood of output rather than
    slow the ingest down."""
    import selectors

    exec_dir = Path(exec_dir)
    try:
        now = os.nice(0)
        if now < 10:
            os.nice(10 - now)
    except (AttributeError, OSError):
        pass
    try:
        fd = _lock(exec_dir, blocking=True)
    except OSError:  # the execution was removed meanwhile
        return 0
    final = False
    try:
        sel = None
        if control is not None:
            sel = selectors.DefaultSelector()
            sel.register(control, selectors.EVENT_READ)
        while True:
            catch_up(exec_dir, config)
            if sel is None:
                time.sleep(POLL)
                continue
            if sel.select(POLL):
                data = os.read(control.fileno(), 64)
                if b"F" in data:
                    final = True
                if not data or final:
                    break
        catch_up(exec_dir, config, final=final)
    except (OSError, logstore.LogCorrupt) as exc:  # removed meanwhile, or a damaged log
        print(f"metrics scanner of {exec_dir.name}: {exc}", file=sys.stderr)
        return 1
    finally:
        os.close(fd)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m mldesk.core.metrics follow EXEC_DIR`` with the config (JSON) on
    the first line of stdin and the control pipe after it."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != "follow":
        print("usage: python -m mldesk.core.metrics follow EXEC_DIR", file=sys.stderr)
        return 2
    stdin = sys.stdin.buffer
    line = b""
    while not line.endswith(b"\n"):
        c = os.read(stdin.fileno(), 1)
        if not c:
            break
        line += c
    try:
        config = MetricsConfig.from_dict(json.loads(line or b"{}"))
    except ValueError:
        config = MetricsConfig()
    return follow(argv[1], config, stdin)


if __name__ == "__main__":
    raise SystemExit(main())
