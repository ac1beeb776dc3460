"""The SQLite store shared by every mldesk process (GUI, CLI, supervisors).

WAL mode, a busy timeout and ``BEGIN IMMEDIATE`` for every write make it safe for
several processes at once. The schema version lives in ``PRAGMA user_version`` and
moves forward through ``MIGRATIONS``. Every write bumps a global sequence number
stored on the row it touched, so a watcher can ask "what changed since seq N".
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from enum import Enum, IntEnum
from pathlib import Path
from typing import Any, Iterator

from mldesk.agent.errors import UserError
from mldesk.core.value import Value


class State(str, Enum):
    """An execution's state; members compare equal to the strings stored in the table."""

    QUEUED = "queued"
    PREPARING = "preparing"
    FETCHING = "fetching"
    RUNNING = "running"
    COLLECTING = "collecting"
    FINISHED = "finished"
    FAILED = "failed"
    STOPPED = "stopped"

    def __str__(self) -> str:
        return self.value


class Hidden(IntEnum):
    """``executions.hidden``: a Remove with Undo hides a row before it is deleted."""

    SHOWN = 0
    PENDING_UNDO = 1  # hidden, the Undo window is open
    REMOVING = 2      # being removed for good


ACTIVE_STATES = tuple(s.value for s in (State.QUEUED, State.PREPARING, State.FETCHING, State.RUNNING,
                                        State.COLLECTING))
FINAL_STATES = tuple(s.value for s in (State.FINISHED, State.FAILED, State.STOPPED))
STATES = ACTIVE_STATES + FINAL_STATES

MIGRATIONS: list[str] = [
    # 1: initial schema
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    INSERT INTO meta VALUES ('seq', 0);
    CREATE TABLE executions (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        lab TEXT NOT NULL,
        host TEXT NOT NULL DEFAULT 'local',
        runtime TEXT NOT NULL,
        image TEXT,
        hardware TEXT NOT NULL DEFAULT 'cpu',
        state TEXT NOT NULL,
        exit_code INTEGER,
        reason TEXT,
        created_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        snapshot TEXT NOT NULL,
        argv TEXT NOT NULL DEFAULT '[]',
        inputs TEXT NOT NULL DEFAULT '[]',
        options TEXT NOT NULL DEFAULT '{}',
        handle TEXT NOT NULL DEFAULT '{}',
        supervisor_pid INTEGER,
        stop_requested_at REAL,
        hidden INTEGER NOT NULL DEFAULT 0,
        seq INTEGER NOT NULL
    );
    CREATE INDEX executions_seq ON executions(seq);
    CREATE INDEX executions_lab ON executions(lab);
    CREATE TABLE tombstones (id TEXT PRIMARY KEY, seq INTEGER NOT NULL);
    CREATE TABLE hosts (name TEXT PRIMARY KEY, config TEXT NOT NULL, seq INTEGER NOT NULL);
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE lab_backups (
        snapshot TEXT NOT NULL, lab TEXT NOT NULL, created_at REAL NOT NULL,
        reason TEXT NOT NULL, PRIMARY KEY (snapshot, lab, created_at)
    );
    CREATE TABLE recent_labs (path TEXT PRIMARY KEY, opened_at REAL NOT NULL);
    """,
    # 2: when an execution was hidden (a GUI's Remove with Undo), to tell a pending
    # undo from one whose window died with the app
    """
    ALTER TABLE executions ADD COLUMN hidden_at REAL;
    """,
    # 3: a transient status line set by the runtime ("reconnecting to gpu1 (attempt 3)")
    """
    ALTER TABLE executions ADD COLUMN note TEXT;
    """,
    # 4: parameter overrides of a "Run with..." ({flag name: value}) and the sweep an
    # execution is a trial of
    """
    ALTER TABLE executions ADD COLUMN overrides TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE executions ADD COLUMN sweep TEXT;
    CREATE INDEX executions_sweep ON executions(sweep);
    """,
    # 5: leases: which execution holds which GPU of a host (gpu >= 0), and a slot row
    # (gpu = -1) for every execution let through the queue. Taken in the one write
    # transaction that lets an execution leave `queued` (Store.claim_start); released
    # (released_at set, the row kept so an ended execution still says which GPUs it
    # had) in the transaction that makes it final. The partial unique index makes a
    # second holder of one GPU impossible, whichever process asks.
    """
    CREATE TABLE gpu_leases (
        exec_id TEXT NOT NULL,
        host TEXT NOT NULL,
        gpu INTEGER NOT NULL,
        taken_at REAL NOT NULL,
        released_at REAL,
        PRIMARY KEY (exec_id, gpu)
    );
    CREATE UNIQUE INDEX gpu_leases_held ON gpu_leases(host, gpu) WHERE released_at IS NULL AND gpu >= 0;
    """,
    # 6: the user's consent for a lab to read a local file outside it (file:// inputs)
    """
    CREATE TABLE input_consents (
        lab TEXT NOT NULL, path TEXT NOT NULL, granted_at REAL NOT NULL, PRIMARY KEY (lab, path)
    );
    """,
]


class StoreError(UserError):
    """A user-facing store problem (unknown id, ambiguous prefix...)."""


RUNNING_STATES = ("preparing", "fetching", "running", "collecting")
SLOT = -1  # the lease row of a slot (max parallel), not of a GPU


class StartClaim(Value):
    """The answer of ``Store.claim_start``: go (with these GPUs), wait (why), or
    never (``impossible``: the request cannot be met on this host)."""

    _fields = __slots__ = ("ok", "reason", "gpus", "impossible")

    def __init__(self, ok: bool, reason: str | None = None, gpus: list[int] | None = None,
                 impossible: bool = False):
        self.ok = ok
        self.reason = reason
        self.gpus = [] if gpus is None else gpus
        self.impossible = impossible


def gpu_request(value: Any) -> int | list[int]:
    """A GPU request as stored in an execution's options: a count or indices."""
    if value is None or value is False:
        return 0
    if isinstance(value, bool):
        return 1
    if isinstance(value, int):
        return max(0, value)
    if isinstance(value, (list, tuple)):
        return sorted({int(v) for v in value})
    return 0


def _gpu_word(n: int) -> str:
    return "GPU" if n == 1 else "GPUs"


class Execution(Value):
    """One row of ``executions`` (the fields are its columns)."""

    _fields = __slots__ = (
        "id", "name", "lab", "host", "runtime", "image", "hardware", "state", "exit_code", "reason",
        "created_at", "started_at", "finished_at", "snapshot", "argv", "inputs", "options", "handle",
        "supervisor_pid", "stop_requested_at", "hidden", "seq", "hidden_at", "note", "overrides", "sweep",
    )

    def __init__(
        self,
        id: str,
        name: str,
        lab: str,
        host: str,
        runtime: str,
        image: str | None,
        hardware: str,
        state: str,
        exit_code: int | None,
        reason: str | None,
        created_at: float,
        started_at: float | None,
        finished_at: float | None,
        snapshot: str,
        argv: list[str] | None = None,  # None: []
        inputs: list[dict] | None = None,  # None: []
        options: dict[str, Any] | None = None,  # None: {}
        handle: dict[str, Any] | None = None,  # None: {}
        supervisor_pid: int | None = None,
        stop_requested_at: float | None = None,
        hidden: int = Hidden.SHOWN,
        seq: int = 0,
        hidden_at: float | None = None,
        note: str | None = None,
        overrides: dict[str, str] | None = None,  # None: {}
        sweep: str | None = None,
    ):
        self.id = id
        self.name = name
        self.lab = lab
        self.host = host
        self.runtime = runtime
        self.image = image
        self.hardware = hardware
        self.state = state
        self.exit_code = exit_code
        self.reason = reason
        self.created_at = created_at
        self.started_at = started_at
        self.finished_at = finished_at
        self.snapshot = snapshot
        self.argv = [] if argv is None else argv
        self.inputs = [] if inputs is None else inputs
        self.options = {} if options is None else options
        self.handle = {} if handle is None else handle
        self.supervisor_pid = supervisor_pid
        self.stop_requested_at = stop_requested_at
        self.hidden = hidden
        self.seq = seq
        self.hidden_at = hidden_at
        self.note = note
        self.overrides = {} if overrides is None else overrides
        self.sweep = sweep

    JSON_COLUMNS = ("argv", "inputs", "options", "handle", "overrides")

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    def public(self) -> dict[str, Any]:
        """The fields shown by ``--json`` output (its lists and dicts are the
        execution's own: the callers print it)."""
        d = self.to_dict()
        if (self.handle or {}).get("slurm_job"):
            d["slurm_job"] = str(self.handle["slurm_job"])
        for key in ("handle", "supervisor_pid", "seq", "hidden", "hidden_at", "options"):
            d.pop(key)
        return d

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "Execution":
        d = dict(row)
        for key in cls.JSON_COLUMNS:
            d[key] = json.loads(d[key])
        return cls(**d)


_COLUMNS = list(Execution._fields)
_ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"  # (no `import string`: ~0.8 ms of every start)


def new_execution_id(now: float | None = None) -> str:
    """Sortable by start time, unique across hosts: ``20261125-134501-k3f9q``."""
    now = time.time() if now is None else now
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    out = ""
    while len(out) < 5:  # uniform: bytes >= 252 (7 x 36) are drawn again
        out += "".join(_ID_ALPHABET[b % 36] for b in os.urandom(8) if b < 252)
    return stamp + "-" + out[:5]


class Store:
    """One connection per Store object; one Store per thread (or guard it yourself)."""

    def __init__(self, path: Path | str, *, timeout: float = 30.0):
        self.path = Path(path)
        self.timeout = timeout
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.path.exists():  # owner-only from the start (-wal/-shm inherit it)
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        self._lock = threading.RLock()
        self.conn = sqlite3.connect(
            str(self.path), timeout=timeout, isolation_level=None, check_same_thread=False
        )
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA busy_timeout = %d" % int(timeout * 1000))
        mode = self.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":  # pragma: no cover - e.g. a network file system
            raise StoreError(f"cannot enable WAL on {self.path} (got {mode})")
        self.conn.execute("PRAGMA synchronous = NORMAL")
        self._migrate()

    # -- plumbing ---------------------------------------------------------
    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE: takes the write lock up front)."""
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            try:
                self.conn.execute("COMMIT")
            except BaseException:  # e.g. a full disk: never leave the transaction open
                try:
                    self.conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                raise

    @contextmanager
    def brief(self, timeout: float = 1.0) -> Iterator[None]:
        """Writes inside wait at most ``timeout`` seconds for a busy store (for
        status updates that must not hold anything up)."""
        with self._lock:
            self.conn.execute("PRAGMA busy_timeout = %d" % int(timeout * 1000))
            try:
                yield
            finally:
                self.conn.execute("PRAGMA busy_timeout = %d" % int(self.timeout * 1000))

    def _next_seq(self, conn: sqlite3.Connection) -> int:
        conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'seq'")
        return conn.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()[0]

    def _migrate(self) -> None:
        with self._lock:  # up to date (every open but the first of a new version): no write lock
            if self.conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS):
                return
        with self.write() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise StoreError(
                    f"{self.path} was written by a newer mldesk (schema {version}); "
                    "upgrade mldesk to open it"
                )
            for number in range(version, len(MIGRATIONS)):
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number + 1}")

    def data_version(self) -> int:
        """Changes whenever another connection commits (cheap change detection)."""
        with self._lock:
            return self.conn.execute("PRAGMA data_version").fetchone()[0]

    def seq(self) -> int:
        with self._lock:
            return self.conn.execute("SELECT value FROM meta WHERE key='seq'").fetchone()[0]

    # -- executions --------------------------------------------------------
    def insert_execution(self, ex: Execution) -> Execution:
        with self.write() as conn:
            ex.seq = self._next_seq(conn)
            values = ex.to_dict()  # (the JSON columns are replaced by their text)
            for key in Execution.JSON_COLUMNS:
                values[key] = json.dumps(values[key])
            conn.execute(
                f"INSERT INTO executions ({', '.join(_COLUMNS)}) VALUES "
                f"({', '.join(':' + c for c in _COLUMNS)})",
                values,
            )
        return ex

    def get(self, exec_id: str) -> Execution | None:
        with self._lock:
            row = self.conn.execute("SELECT * FROM executions WHERE id = ?", (exec_id,)).fetchone()
        return Execution.from_row(row) if row else None

    def update(self, exec_id: str, *, only_if_state: tuple[str, ...] | None = None, **changes: Any) -> Execution | None:
        """Update columns of one execution; returns the new row, or None when
        ``only_if_state`` was given and the row was not in one of those states."""
        for key in Execution.JSON_COLUMNS:
            if key in changes:
                changes[key] = json.dumps(changes[key])
        with self.write() as conn:
            row = conn.execute("SELECT state FROM executions WHERE id = ?", (exec_id,)).fetchone()
            if row is None:
                raise StoreError(f"no execution {exec_id}")
            if only_if_state is not None and row["state"] not in only_if_state:
                return None
            changes["seq"] = self._next_seq(conn)
            sets = ", ".join(f"{k} = :{k}" for k in changes)
            conn.execute(f"UPDATE executions SET {sets} WHERE id = :_id", {**changes, "_id": exec_id})
            if changes.get("state") in FINAL_STATES:  # its GPUs are free in the same commit
                conn.execute("UPDATE gpu_leases SET released_at = ? WHERE exec_id = ? AND released_at IS NULL",
                             (time.time(), exec_id))
        return self.get(exec_id)

    def claim_removal(self, exec_id: str) -> bool:
        """Mark a final execution as being removed; False when it is active, already
        being removed by someone else, or gone."""
        with self.write() as conn:
            seq = self._next_seq(conn)
            return conn.execute(
                f"UPDATE executions SET hidden = {int(Hidden.REMOVING)}, hidden_at = ?, seq = ? WHERE id = ? AND hidden != {int(Hidden.REMOVING)} "
                f"AND state IN ({','.join('?' * len(FINAL_STATES))})",
                (time.time(), seq, exec_id, *FINAL_STATES)).rowcount == 1

    def delete_execution(self, exec_id: str) -> None:
        with self.write() as conn:
            conn.execute("DELETE FROM executions WHERE id = ?", (exec_id,))
            conn.execute("DELETE FROM gpu_leases WHERE exec_id = ?", (exec_id,))
            conn.execute(
                "INSERT OR REPLACE INTO tombstones VALUES (?, ?)", (exec_id, self._next_seq(conn))
            )

    def list(self, *, lab: str | None = None, include_hidden: bool = False, states: tuple[str, ...] | None = None,
             sweep: str | None = None, hidden_only: bool = False) -> list[Execution]:
        """Executions, newest first: the visible ones, all with ``include_hidden``,
        only the hidden ones with ``hidden_only``."""
        sql = "SELECT * FROM executions WHERE 1=1"
        args: list[Any] = []
        if sweep is not None:
            sql += " AND sweep = ?"
            args.append(sweep)
        if lab is not None:
            sql += " AND lab = ?"
            args.append(lab)
        if hidden_only:
            sql += " AND hidden != 0"
        elif not include_hidden:
            sql += " AND hidden = 0"
        if states:
            sql += f" AND state IN ({','.join('?' * len(states))})"
            args.extend(states)
        sql += " ORDER BY created_at DESC, id DESC"
        with self._lock:
            return [Execution.from_row(r) for r in self.conn.execute(sql, args)]

    def list_page(self, lab: str, limit: int, before: tuple[float, str] | None = None) -> list[Execution]:
        """The visible executions of ``lab``, newest first (the order of ``list``), at
        most ``limit``, all older than ``before`` (a ``(created_at, id)`` key) if given."""
        sql = "SELECT * FROM executions WHERE lab = ? AND hidden = 0"
        args: list[Any] = [lab]
        if before is not None:
            sql += " AND (created_at < ? OR (created_at = ? AND id < ?))"
            args += [before[0], before[0], before[1]]
        sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
        args.append(int(limit))
        with self._lock:
            return [Execution.from_row(r) for r in self.conn.execute(sql, args).fetchall()]

    def queue_position(self, host: str, exec_id: str) -> tuple[int, int]:
        """(executions busy on ``host`` other than ``exec_id``, queued ones ahead of it),
        read in one write transaction so racing supervisors agree."""
        with self.write() as conn:
            busy = conn.execute(
                "SELECT COUNT(*) FROM executions WHERE host = ? AND id != ? AND state IN "
                "('preparing','fetching','running','collecting')", (host, exec_id)).fetchone()[0]
            ahead = conn.execute(
                "SELECT COUNT(*) FROM executions WHERE host = ? AND state = 'queued' AND id < ?",
                (host, exec_id)).fetchone()[0]
        return busy, ahead

    def count(self, lab: str) -> int:
        """How many visible executions ``lab`` has."""
        with self._lock:
            return self.conn.execute(
                "SELECT COUNT(*) FROM executions WHERE lab = ? AND hidden = 0", (lab,)).fetchone()[0]

    def sweep_ids(self, prefix: str = "") -> list[str]:
        """The sweep ids that start with ``prefix``, sorted."""
        with self._lock:
            return [r[0] for r in self.conn.execute(
                "SELECT DISTINCT sweep FROM executions WHERE sweep IS NOT NULL AND substr(sweep, 1, ?) = ? "
                "ORDER BY sweep", (len(prefix), prefix))]

    def changes_since(self, seq: int) -> tuple[list[Execution], list[str], int]:
        """Rows changed and ids deleted after ``seq``, and the current seq."""
        with self._lock:
            self.conn.execute("BEGIN")
            try:
                now = self.conn.execute("SELECT value FROM meta WHERE key='seq'").fetchone()[0]
                rows = [Execution.from_row(r) for r in self.conn.execute(
                    "SELECT * FROM executions WHERE seq > ? ORDER BY seq", (seq,))]
                gone = [r[0] for r in self.conn.execute(
                    "SELECT id FROM tombstones WHERE seq > ?", (seq,))]
            finally:
                self.conn.execute("COMMIT")
        return rows, gone, now

    def resolve(self, ref: str, *, include_hidden: bool = False) -> Execution:
        """An execution by id, unique id prefix, or name."""
        ref = ref.strip()
        if not ref:
            raise StoreError("empty execution id")
        ex = self.get(ref)
        if ex is not None:
            return ex
        hidden = "" if include_hidden else " AND hidden = 0"
        with self._lock:
            escaped = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            rows = self.conn.execute(
                f"SELECT * FROM executions WHERE id LIKE ? ESCAPE '\\'{hidden} ORDER BY id", (escaped + "%",)
            ).fetchall()
            if not rows:
                rows = self.conn.execute(
                    f"SELECT * FROM executions WHERE name = ?{hidden} ORDER BY id", (ref,)
                ).fetchall()
        if len(rows) == 1:
            return Execution.from_row(rows[0])
        if not rows:
            raise StoreError(f"no execution matches '{ref}' (see `mldesk ls`)")
        ids = ", ".join(r["id"] for r in rows[:5]) + (" ..." if len(rows) > 5 else "")
        raise StoreError(f"'{ref}' matches {len(rows)} executions ({ids}); give more of the id")

    def snapshots_in_use(self) -> set[str]:
        with self._lock:
            used = {r[0] for r in self.conn.execute("SELECT DISTINCT snapshot FROM executions")}
            used |= {r[0] for r in self.conn.execute("SELECT DISTINCT snapshot FROM lab_backups")}
        return used

    # -- the queue: slots and GPU leases -----------------------------------------
    def claim_start(self, exec_id: str, *, max_parallel: int = 0, gpus: Any = None,
                    host_gpus: list[int] | tuple[int, ...] = ()) -> StartClaim:
        """May ``exec_id`` leave ``queued`` now? In ONE ``BEGIN IMMEDIATE`` transaction:
        release leases whose execution ended or is gone, check the host's
        ``max_parallel`` slots and GPUs (first come, first served in the order the
        executions were created), take the GPUs and move the execution to
        ``preparing`` (clearing its queued reason) -- or mark it ``queued`` with the
        reason it waits. ``gpus``: a count or a list of indices; ``host_gpus``: the
        indices the host has. An execution already holding GPUs (a resumed supervisor)
        goes on with them."""
        want = gpu_request(gpus)
        host_gpus = sorted({int(g) for g in host_gpus})
        count = len(want) if isinstance(want, list) else want
        with self.write() as conn:
            me = conn.execute("SELECT host, state, created_at FROM executions WHERE id = ?", (exec_id,)).fetchone()
            if me is None or me["state"] not in ACTIVE_STATES:
                return StartClaim(False, "the execution ended or was removed", impossible=True)
            host, now = me["host"], time.time()
            self._release_stale(conn, host, now)
            mine = [r[0] for r in conn.execute(
                "SELECT gpu FROM gpu_leases WHERE exec_id = ? AND released_at IS NULL ORDER BY gpu", (exec_id,))]
            if mine:  # let through before (a resumed supervisor): go on with what it has
                self._leave_queue(conn, exec_id, me["state"])
                return StartClaim(True, None, [g for g in mine if g >= 0])
            if isinstance(want, list):
                missing = [g for g in want if g not in host_gpus]
                if missing:
                    return StartClaim(False, f"{host} has no GPU {', '.join(map(str, missing))} "
                                             f"(it has {len(host_gpus)} {_gpu_word(len(host_gpus))})", impossible=True)
            elif count > len(host_gpus):
                return StartClaim(False, f"asks for {count} {_gpu_word(count)} but {host} has "
                                         f"{len(host_gpus)}", impossible=True)
            order = (me["created_at"], exec_id)
            others = [r for r in conn.execute(
                f"SELECT id, state, created_at, options FROM executions WHERE host = ? AND id != ? "
                f"AND state IN ({','.join('?' * len(ACTIVE_STATES))})", (host, exec_id, *ACTIVE_STATES))]
            held, holders = {}, set()
            for r in conn.execute("SELECT gpu, exec_id FROM gpu_leases WHERE host = ? AND released_at IS NULL",
                                  (host,)):
                holders.add(r["exec_id"])
                if r["gpu"] >= 0:
                    held[r["gpu"]] = r["exec_id"]
            earlier = [r for r in others if (r["created_at"], r["id"]) < order]
            reason = None
            if max_parallel and max_parallel > 0:
                # busy: let through (a lease row), past preparing (started before leases
                # existed), or created earlier and not yet checked (it goes first)
                busy = sum(1 for r in others if r["state"] in RUNNING_STATES and (
                    r["id"] in holders or r["state"] != "preparing" or (r["created_at"], r["id"]) < order))
                ahead = sum(1 for r in earlier if r["state"] == "queued")
                if busy + ahead >= max_parallel:
                    reason = (f"waiting for a free slot on {host} ({busy} of {max_parallel} running"
                              + (f", {ahead} queued before it)" if ahead else ")"))
            if reason is None and count:
                free = [g for g in host_gpus if g not in held]
                # an earlier execution still waiting for GPUs goes first
                waiting = [r for r in earlier if r["id"] not in holders and r["state"] in ("queued", "preparing")
                           and gpu_request(json.loads(r["options"]).get("gpus"))]
                if isinstance(want, list):
                    ok = all(g in free for g in want) and not waiting
                    pick = want
                else:
                    ok = len(free) >= count and not waiting
                    pick = free[:count]
                if not ok:
                    busy_n = len([g for g in host_gpus if g in held])
                    what = (f"GPU {', '.join(map(str, want))}" if isinstance(want, list)
                            else f"{count} free {_gpu_word(count)}")
                    reason = f"waiting for {what} on {host} ({busy_n} of {len(host_gpus)} busy)"
                    if waiting and (len(free) >= count if not isinstance(want, list) else all(g in free for g in want)):
                        reason = (f"waiting for {what} on {host} ({len(waiting)} earlier "
                                  f"execution{'s' if len(waiting) != 1 else ''} first)")
                else:
                    conn.executemany("INSERT OR REPLACE INTO gpu_leases VALUES (?, ?, ?, ?, NULL)",
                                     [(exec_id, host, g, now) for g in [SLOT, *pick]])
                    self._leave_queue(conn, exec_id, me["state"])
                    return StartClaim(True, None, list(pick))
            if reason is not None:
                row = conn.execute("SELECT reason FROM executions WHERE id = ?", (exec_id,)).fetchone()
                if me["state"] != "queued" or row["reason"] != reason:
                    conn.execute("UPDATE executions SET state = 'queued', reason = ?, seq = ? WHERE id = ?",
                                 (reason, self._next_seq(conn), exec_id))
                return StartClaim(False, reason)
            conn.execute("INSERT OR REPLACE INTO gpu_leases VALUES (?, ?, ?, ?, NULL)", (exec_id, host, SLOT, now))
            self._leave_queue(conn, exec_id, me["state"])
            return StartClaim(True, None, [])

    def _leave_queue(self, conn: sqlite3.Connection, exec_id: str, state: str) -> None:
        if state == "queued":
            conn.execute("UPDATE executions SET state = 'preparing', reason = NULL, seq = ? WHERE id = ?",
                         (self._next_seq(conn), exec_id))

    def _release_stale(self, conn: sqlite3.Connection, host: str, now: float) -> None:
        """Leases of executions that ended (or were removed) without releasing them."""
        conn.execute(
            f"UPDATE gpu_leases SET released_at = ? WHERE host = ? AND released_at IS NULL AND exec_id NOT IN "
            f"(SELECT id FROM executions WHERE state IN ({','.join('?' * len(ACTIVE_STATES))}))",
            (now, host, *ACTIVE_STATES))

    def release_gpus(self, exec_id: str) -> None:
        with self.write() as conn:
            conn.execute("UPDATE gpu_leases SET released_at = ? WHERE exec_id = ? AND released_at IS NULL",
                         (time.time(), exec_id))

    def gpus_of(self, exec_id: str) -> list[int]:
        """The GPU indices ``exec_id`` holds, or held once it has ended."""
        with self._lock:
            return [r[0] for r in self.conn.execute(
                "SELECT gpu FROM gpu_leases WHERE exec_id = ? AND gpu >= 0 ORDER BY gpu", (exec_id,))]

    def gpu_leases(self, host: str | None = None) -> dict[str, dict[int, str]]:
        """Held leases: ``{host: {gpu: exec_id}}`` (leases of ended executions left out)."""
        sql = ("SELECT l.host, l.gpu, l.exec_id FROM gpu_leases l JOIN executions e ON e.id = l.exec_id "
               f"WHERE l.released_at IS NULL AND l.gpu >= 0 AND e.state IN ({','.join('?' * len(ACTIVE_STATES))})")
        args: list[Any] = list(ACTIVE_STATES)
        if host is not None:
            sql += " AND l.host = ?"
            args.append(host)
        out: dict[str, dict[int, str]] = {}
        with self._lock:
            for r in self.conn.execute(sql, args):
                out.setdefault(r[0], {})[r[1]] = r[2]
        return out

    # -- lab backups (the lab's files before a restart overwrote them) -------
    def add_lab_backup(self, snapshot: str, lab: str, reason: str) -> None:
        with self.write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO lab_backups VALUES (?, ?, ?, ?)", (snapshot, lab, time.time(), reason)
            )

    def all_lab_backups(self) -> list[dict]:
        with self._lock:
            return [dict(r) for r in self.conn.execute("SELECT * FROM lab_backups ORDER BY created_at DESC")]

    def lab_backups(self, lab: str) -> list[dict]:
        with self._lock:
            return [dict(r) for r in self.conn.execute(
                "SELECT * FROM lab_backups WHERE lab = ? ORDER BY created_at DESC", (lab,))]

    # -- consents for local-file inputs outside a lab ---------------------------
    def add_input_consents(self, lab: str, paths: list[str]) -> None:
        with self.write() as conn:
            now = time.time()
            conn.executemany("INSERT OR REPLACE INTO input_consents VALUES (?, ?, ?)",
                             [(lab, p, now) for p in paths])

    def input_consents(self, lab: str) -> set[str]:
        with self._lock:
            return {r[0] for r in self.conn.execute("SELECT path FROM input_consents WHERE lab = ?", (lab,))}

    def remove_input_consents(self, lab: str) -> None:
        with self.write() as conn:
            conn.execute("DELETE FROM input_consents WHERE lab = ?", (lab,))

    # -- hosts ------------------------------------------------------------
    def put_host(self, name: str, config: dict) -> None:
        with self.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO hosts VALUES (?, ?, ?)", (name, json.dumps(config), self._next_seq(conn))
            )

    def get_host(self, name: str) -> dict | None:
        with self._lock:
            row = self.conn.execute("SELECT config FROM hosts WHERE name = ?", (name,)).fetchone()
        return json.loads(row[0]) if row else None

    def hosts(self) -> dict[str, dict]:
        with self._lock:
            return {r[0]: json.loads(r[1]) for r in self.conn.execute("SELECT name, config FROM hosts ORDER BY name")}

    def delete_host(self, name: str) -> bool:
        with self.write() as conn:
            return conn.execute("DELETE FROM hosts WHERE name = ?", (name,)).rowcount > 0

    # -- settings ----------------------------------------------------------
    def get_setting(self, key: str, default: Any = None) -> Any:
        with self._lock:
            row = self.conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_setting(self, key: str, value: Any) -> None:
        with self.write() as conn:
            conn.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", (key, json.dumps(value)))

    # -- recent labs -------------------------------------------------------
    def touch_recent_lab(self, path: str) -> None:
        with self.write() as conn:
            conn.execute("INSERT OR REPLACE INTO recent_labs VALUES (?, ?)", (path, time.time()))

    def recent_labs(self, limit: int = 10) -> list[str]:
        with self._lock:
            return [r[0] for r in self.conn.execute(
                "SELECT path FROM recent_labs ORDER BY opened_at DESC LIMIT ?", (limit,))]
