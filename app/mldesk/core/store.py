"""The SQLite store shared by every mldesk process (GUI, CLI, supervisors).

WAL mode, a busy timeout and ``BEGIN IMMEDIATE`` for every write make it safe for
several processes at once. The schema version lives in ``PRAGMA user_version`` and
moves forward through ``MIGRATIONS``. Every write bumps a global sequence number
stored on the row it touched, so a watcher can ask "what changed since seq N".
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import string
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from enum import Enum, IntEnum
from pathlib import Path
from typing import Any, Iterator

from mldesk.agent.errors import UserError


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
    # 4: the user's consent for a lab to read a local file outside it (file:// inputs)
    """
    CREATE TABLE input_consents (
        lab TEXT NOT NULL, path TEXT NOT NULL, granted_at REAL NOT NULL, PRIMARY KEY (lab, path)
    );
    """,
]


class StoreError(UserError):
    """A user-facing store problem (unknown id, ambiguous prefix...)."""


@dataclass
class Execution:
    id: str
    name: str
    lab: str
    host: str
    runtime: str
    image: str | None
    hardware: str
    state: str
    exit_code: int | None
    reason: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    snapshot: str
    argv: list[str] = field(default_factory=list)
    inputs: list[dict] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    handle: dict[str, Any] = field(default_factory=dict)
    supervisor_pid: int | None = None
    stop_requested_at: float | None = None
    hidden: int = Hidden.SHOWN
    seq: int = 0
    hidden_at: float | None = None
    note: str | None = None

    JSON_COLUMNS = ("argv", "inputs", "options", "handle")

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    def public(self) -> dict[str, Any]:
        """The fields shown by ``--json`` output."""
        d = asdict(self)
        for key in ("handle", "supervisor_pid", "seq", "hidden", "hidden_at", "options"):
            d.pop(key)
        return d

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "Execution":
        d = dict(row)
        for key in cls.JSON_COLUMNS:
            d[key] = json.loads(d[key])
        return cls(**d)


_COLUMNS = [f.name for f in fields(Execution)]
_ID_ALPHABET = string.digits + string.ascii_lowercase


def new_execution_id(now: float | None = None) -> str:
    """Sortable by start time, unique across hosts: ``20261125-134501-k3f9q``."""
    now = time.time() if now is None else now
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    return stamp + "-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(5))


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
            values = asdict(ex)
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
            conn.execute(
                "INSERT OR REPLACE INTO tombstones VALUES (?, ?)", (exec_id, self._next_seq(conn))
            )

    def list(self, *, lab: str | None = None, include_hidden: bool = False, states: tuple[str, ...] | None = None) -> list[Execution]:
        sql = "SELECT * FROM executions WHERE 1=1"
        args: list[Any] = []
        if lab is not None:
            sql += " AND lab = ?"
            args.append(lab)
        if not include_hidden:
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

    # -- lab backups (the lab's files before a restart overwrote them) -------
    def add_lab_backup(self, snapshot: str, lab: str, reason: str) -> None:
        with self.write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO lab_backups VALUES (?, ?, ?, ?)", (snapshot, lab, time.time(), reason)
            )

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
