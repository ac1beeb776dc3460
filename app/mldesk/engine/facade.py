"""The one facade the CLI and the GUI use.

Commands (``run``, ``stop``, ``restart``, ``rename``, ``hide``/``unhide``, ``remove``)
act on the store and return at once; executions themselves are owned by detached
supervisors. ``subscribe`` + ``start_watching`` deliver events from a watcher thread:

- ``Event(EventKind.ADDED, id, execution)``        a new (or un-hidden) execution
- ``Event(EventKind.CHANGED, id, execution)``      state or any other field changed
- ``Event(EventKind.RENAMED, id, execution)``
- ``Event(EventKind.REMOVED, id)``                 removed or hidden (pending undo)
- ``Event(EventKind.LOG, id, records=[...], offset=N)``  new log records of a followed execution
- ``Event(EventKind.PROGRESS, id, progress={...})``  input downloads of a fetching execution
  (see :mod:`mldesk.engine.events`)

Listeners are called from the watcher thread; a GUI marshals them to its own thread.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable

from mldesk.agent import logstore
from mldesk.agent.errors import UserError
from mldesk.core import labconfig
from mldesk.core.paths import Layout
from mldesk.core.snapshots import SnapshotStore
from mldesk.core.store import ACTIVE_STATES, FINAL_STATES, Execution, Store, StoreError, new_execution_id
from mldesk.engine.events import Event, EventKind, ProgressFeed

# The four MachineLabs image ids resolve through this (user-editable) table.
DEFAULT_IMAGE_ALIASES = {
    "keras_v2-0-x_python_3-1": "tensorflow/tensorflow:2.15.0",
    "keras_v2-0-x_python_2-1": "tensorflow/tensorflow:1.15.5",
    "tensorflow_v1-4-x-gpu_python_3-1": "tensorflow/tensorflow:1.15.5-gpu-py3",
    "tensorflow_v1-4-x-gpu_python_2-1": "tensorflow/tensorflow:1.15.5-gpu",
}

DEFAULT_SETTINGS: dict[str, Any] = {
    "image_aliases": DEFAULT_IMAGE_ALIASES,
    "stop_grace": 10.0,          # seconds between SIGTERM and SIGKILL
    "local_network": "bridge",   # docker network of local containers: bridge | none | host
    "local_max_parallel": 0,     # 0 = no limit; more executions wait as "queued"
    "input_timeout": 30.0,       # seconds without data before a download counts as stalled
    "input_retries": 4,
    "keep_workspace": False,
    "max_output_files": None,
    "max_output_file_bytes": None,
    "max_output_bytes": None,
    "undo_seconds": 5.0,
    "theme": "system",
}

NAME_MAX = 100


class EngineError(UserError):
    """A user-facing error: the message says what happened and what to do."""


class Engine:
    def __init__(self, home: Path | str | None = None):
        self.layout = Layout(Path(home) if home else None)
        self.store = Store(self.layout.db)
        self.snapshots = SnapshotStore(self.layout.blobs, self.layout.snapshots)
        self._listeners: list[Callable[[Event], None]] = []
        self._follow: dict[str, int] = {}
        self._follow_lock = threading.Lock()
        self._watcher: threading.Thread | None = None
        self._stop_watch = threading.Event()
        # set by the single-threaded CLI: start supervisors by forking (fast start)
        self.fork_supervisors = False
        from mldesk.engine.hosts import Hosts

        self.profiles = Hosts(self)  # host profiles: list, save, remove, test

    def close(self) -> None:
        self.stop_watching()
        self.store.close()

    # -- settings ------------------------------------------------------------
    def setting(self, key: str) -> Any:
        return self.store.get_setting(key, DEFAULT_SETTINGS.get(key))

    def set_setting(self, key: str, value: Any) -> None:
        if key not in DEFAULT_SETTINGS:
            raise EngineError(f"unknown setting '{key}' (known: {', '.join(sorted(DEFAULT_SETTINGS))})")
        self.store.set_setting(key, value)

    def resolve_image(self, image_id: str) -> str:
        return (self.setting("image_aliases") or {}).get(image_id, image_id)

    # -- queries ---------------------------------------------------------------
    def get(self, ref: str) -> Execution:
        try:
            return self.store.resolve(ref)
        except StoreError as exc:
            raise EngineError(str(exc)) from None

    def list(self, lab: str | Path | None = None) -> list[Execution]:
        return self.store.list(lab=str(Path(lab).resolve()) if lab else None)

    def log_reader(self, exec_id: str) -> logstore.LogReader:
        return logstore.LogReader(self.layout.log_path(exec_id))

    def outputs_dir(self, exec_id: str) -> Path:
        return self.layout.outputs(exec_id)

    def input_progress(self, exec_id: str) -> dict:
        import json

        try:
            return json.loads(self.layout.progress_path(exec_id).read_text())
        except (OSError, ValueError):
            return {}

    def hosts(self) -> dict[str, dict]:
        hosts = {"local": {"name": "local", "runtime": "auto", "description": "this computer"}}
        hosts.update(self.store.hosts())
        return hosts

    # -- run -----------------------------------------------------------------
    def run(self, lab: str | Path, *, host: str = "local", runtime: str | None = None,
            name: str | None = None) -> Execution:
        """Snapshot ``lab`` and start an execution of it; returns at once."""
        from mldesk import runtimes

        lab = Path(lab).expanduser().resolve()
        if not lab.is_dir():
            raise EngineError(f"lab folder {lab} does not exist")
        if not (lab / "main.py").is_file():
            raise EngineError(f"{lab} has no main.py: a lab needs one (mldesk init {lab} creates a lab)")
        config = labconfig.load_lab_config(lab)  # ConfigError lists every problem
        if runtime is not None and runtime not in runtimes.NAMES:
            raise EngineError(f"unknown runtime '{runtime}' (choose docker or process)")
        profile: dict[str, Any] | None = None
        if host == "local":
            runtime = runtime or runtimes.default_local_runtime()
            if runtime == "docker" and not runtimes.docker_answers():
                raise EngineError(
                    "the Docker daemon is not running (or not reachable at DOCKER_HOST): start it "
                    "(e.g. `sudo systemctl start docker`) or run with --runtime process"
                )
            grace, network, max_parallel = (
                self.setting("stop_grace"), self.setting("local_network"), self.setting("local_max_parallel"))
        else:
            profile = self.store.get_host(host)
            if profile is None:
                raise EngineError(f"unknown host '{host}' (see `mldesk hosts ls`, add one with `mldesk hosts add`)")
            runtime = runtime or profile.get("runtime", "docker")
            grace = profile.get("stop_grace") or self.setting("stop_grace")
            network = profile.get("network") or "bridge"
            max_parallel = profile.get("max_parallel") or 0
        name = self._check_name(name) if name is not None else None
        options = {
            "grace": float(grace),
            "network": network,
            "max_parallel": max_parallel,
            "host_profile": profile,
            "input_timeout": self.setting("input_timeout"),
            "input_retries": self.setting("input_retries"),
            "keep_workspace": self.setting("keep_workspace"),
            "max_output_files": self.setting("max_output_files"),
            "max_output_file_bytes": self.setting("max_output_file_bytes"),
            "max_output_bytes": self.setting("max_output_bytes"),
        }
        with self.snapshots.hold():
            try:
                snap = self.snapshots.create(lab, config.exclude)
            except OSError as exc:
                raise EngineError(f"could not snapshot {lab}: {exc}") from None
            now = time.time()
            exec_id = new_execution_id(now)
            ex = Execution(
                id=exec_id, name=name or f"#{exec_id}", lab=str(lab), host=host, runtime=runtime,
                image=self.resolve_image(config.docker_image_id) if runtime == "docker" else None,
                hardware=config.hardware_type, state="preparing", exit_code=None, reason=None,
                created_at=now, started_at=None, finished_at=None, snapshot=snap.id,
                argv=config.argv(), inputs=[{"name": i.name, "url": i.url} for i in config.inputs],
                options=options,
            )
            self.layout.execution_dir(exec_id).mkdir(parents=True, exist_ok=True)
            self.store.insert_execution(ex)
        self.store.touch_recent_lab(str(lab))
        self._spawn(exec_id)
        return ex

    def _spawn(self, exec_id: str) -> None:
        from mldesk.engine import supervisor

        if self.fork_supervisors and self._watcher is None:
            self.store.close()  # no SQLite connection may cross a fork
            try:
                supervisor.spawn(self.layout, exec_id, fork=True)
            finally:
                self.store = Store(self.layout.db)
        else:
            supervisor.spawn(self.layout, exec_id)

    # -- stop / restart ------------------------------------------------------
    def stop(self, ref: str) -> Execution:
        """Ask for a stop. The supervisor sends SIGTERM, then SIGKILL after the grace
        period; when no supervisor is alive this process does it."""
        from mldesk.engine import supervisor

        ex = self.get(ref)
        if ex.final:
            return ex
        try:
            updated = self.store.update(ex.id, stop_requested_at=time.time(), only_if_state=ACTIVE_STATES)
        except StoreError:
            raise EngineError(f"execution {ex.id} was removed meanwhile") from None
        if updated is None:
            return self.store.get(ex.id) or ex
        if not supervisor.is_supervised(self.layout, ex.id):
            self.reattach_one(ex.id)
        return updated

    def restart(self, ref: str, *, name: str | None = None, host: str | None = None,
                runtime: str | None = None) -> tuple[Execution, str | None]:
        """Make the lab equal to the execution's snapshot, then run it where it ran
        (or on ``host`` / ``runtime`` when given). Returns (new execution, id of the
        backup snapshot of the lab's previous files, or None when the lab already
        equalled the snapshot)."""
        ex = self.get(ref)
        lab = Path(ex.lab)
        if host is None:
            host, runtime = ex.host, runtime or ex.runtime
        backup = self.restore_code(ex.id, lab)
        return self.run(lab, host=host, runtime=runtime, name=name), backup

    def snapshot_exclude(self, ex: Execution) -> tuple[str, ...]:
        try:
            text = self.snapshots.read_file(ex.snapshot, "ml.yaml").decode("utf-8", "replace")
        except Exception:  # noqa: BLE001 - no ml.yaml in the snapshot: defaults
            return tuple(labconfig.DEFAULT_EXCLUDE)
        try:
            return tuple(labconfig.parse_config(text).exclude)
        except labconfig.ConfigError:
            return tuple(labconfig.DEFAULT_EXCLUDE)

    def lab_differs(self, ref: str) -> bool:
        ex = self.get(ref)
        lab = Path(ex.lab)
        if not lab.is_dir():
            return True
        with self.snapshots.hold():
            return self.snapshots.create(lab, self.snapshot_exclude(ex)).id != ex.snapshot

    def restore_code(self, ref: str, lab: Path | None = None) -> str | None:
        """Restore an execution's code into its lab, keeping the current files as a
        recoverable snapshot (returned; None when nothing had to change)."""
        ex = self.get(ref)
        lab = Path(lab or ex.lab)
        exclude = self.snapshot_exclude(ex)
        lab.mkdir(parents=True, exist_ok=True)
        with self.snapshots.hold():
            current = self.snapshots.create(lab, exclude)
            if current.id == ex.snapshot:
                return None
            self.store.add_lab_backup(current.id, str(lab), f"lab files before restoring the code of {ex.id}")
            self.snapshots.restore(ex.snapshot, lab, exclude)
        return current.id

    # -- rename / remove -------------------------------------------------------
    def _check_name(self, name: str) -> str:
        name = name.strip()
        if not name:
            raise EngineError("a name cannot be empty")
        if len(name) > NAME_MAX:
            raise EngineError(f"a name can have at most {NAME_MAX} characters (this one has {len(name)})")
        if any(ord(c) < 32 for c in name):
            raise EngineError("a name cannot contain control characters or line breaks")
        return name

    def rename(self, ref: str, name: str) -> Execution:
        ex = self.get(ref)
        try:
            return self.store.update(ex.id, name=self._check_name(name))
        except StoreError:
            raise EngineError(f"execution {ex.id} was removed meanwhile") from None

    def hide(self, ref: str) -> Execution:
        """Hide a finished execution at once (the GUI's Remove with Undo)."""
        ex = self.get(ref)
        if ex.active:
            raise EngineError(f"execution {ex.id} is {ex.state}; stop it first")
        try:
            self.store.update(ex.id, hidden=1, hidden_at=time.time(), only_if_state=FINAL_STATES)
        except StoreError:
            raise EngineError(f"execution {ex.id} was removed meanwhile") from None
        return ex

    def unhide(self, exec_id: str) -> None:
        self.store.update(exec_id, hidden=0, hidden_at=None)

    def remove(self, ref: str) -> Execution:
        """Delete an execution's record, log, workspace and outputs, then GC blobs."""
        try:
            ex = self.store.resolve(ref, include_hidden=True)
        except StoreError as exc:
            raise EngineError(str(exc)) from None
        if ex.active:
            raise EngineError(f"execution {ex.id} is {ex.state}; stop it first (mldesk stop {ex.id})")
        if not self.store.claim_removal(ex.id):
            raise EngineError(f"execution {ex.id} is being removed or was removed meanwhile")
        self._purge(ex.id)
        return ex

    def _purge(self, exec_id: str) -> None:
        shutil.rmtree(self.layout.execution_dir(exec_id), ignore_errors=True)
        self.store.delete_execution(exec_id)
        self.gc()

    def gc(self) -> tuple[int, int]:
        return self.snapshots.gc(self.store.snapshots_in_use)

    # -- code and outputs ----------------------------------------------------------
    def export_code(self, ref: str, dest: Path | str) -> Path:
        ex = self.get(ref)
        dest = Path(dest)
        self.snapshots.materialize(ex.snapshot, dest)
        return dest

    def export_outputs(self, ref: str, dest: Path | str) -> tuple[int, int]:
        from mldesk.agent import outputs

        ex = self.get(ref)
        src = self.layout.outputs(ex.id)
        if not src.is_dir():
            return 0, 0
        result = outputs.collect_outputs(src, Path(dest), incremental=False)
        return result.files, result.bytes

    # -- reattach -------------------------------------------------------------
    def recover(self) -> list[str]:
        """At start-up: finish interrupted purges, show hidden-but-not-removed
        executions again (their undo window died with the app), and start a
        supervisor for every active execution that has none."""
        stale = time.time() - 60.0  # far longer than any undo window or purge
        for ex in self.store.list(include_hidden=True):
            if not ex.hidden or (ex.hidden_at or 0) > stale:
                continue
            if ex.hidden == 2:
                self._purge(ex.id)
            else:
                self.unhide(ex.id)
        return self.reattach()

    def reattach(self) -> list[str]:
        started = []
        for ex in self.store.list(states=ACTIVE_STATES):
            if self.reattach_one(ex.id):
                started.append(ex.id)
        return started

    def reattach_one(self, exec_id: str) -> bool:
        from mldesk.engine import supervisor

        ex = self.store.get(exec_id)
        if ex is None or ex.final or supervisor.is_supervised(self.layout, exec_id):
            return False
        self._spawn(exec_id)
        return True

    # -- events ---------------------------------------------------------------
    def subscribe(self, listener: Callable[[Event], None]) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener: Callable[[Event], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def follow(self, exec_id: str, offset: int = 0) -> None:
        """Deliver ``log`` events for ``exec_id`` from byte ``offset`` on."""
        with self._follow_lock:
            self._follow[exec_id] = offset

    def unfollow(self, exec_id: str) -> None:
        with self._follow_lock:
            self._follow.pop(exec_id, None)

    def _emit(self, event: Event) -> None:
        for listener in list(self._listeners):
            listener(event)

    def start_watching(self, interval: float = 0.1) -> None:
        if self._watcher is not None:
            return
        self._stop_watch.clear()
        self._watcher = threading.Thread(target=self._watch, args=(interval,), name="mldesk-watch", daemon=True)
        self._watcher.start()

    def stop_watching(self) -> None:
        if self._watcher is None:
            return
        self._stop_watch.set()
        self._watcher.join(5)
        self._watcher = None

    def _watch(self, interval: float) -> None:
        import logging

        store = Store(self.layout.db)
        log = logging.getLogger("mldesk.engine")
        known: dict[str, Execution] = {ex.id: ex for ex in store.list()}
        seq = store.seq()
        version = None
        readers: dict[str, logstore.LogReader] = {}
        last_reattach = 0.0
        progress = ProgressFeed(self.layout.progress_path, self._emit)
        try:
            while not self._stop_watch.is_set():
                try:
                    # every writer is another connection, so data_version sees them all
                    now_version = store.data_version()
                    if now_version != version:
                        version = now_version
                        rows, gone, seq = store.changes_since(seq)
                        self._diff(known, rows, gone)
                    self._pump_logs(readers)
                    progress.poll(ex.id for ex in known.values() if ex.state == "fetching")
                    if time.monotonic() - last_reattach > 2.0:
                        last_reattach = time.monotonic()
                        self.reattach()
                except Exception:  # noqa: BLE001 - keep watching; the error is logged
                    log.exception("watcher iteration failed")
                self._stop_watch.wait(interval)
        finally:
            for reader in readers.values():
                reader.close()
            store.close()

    def _diff(self, known: dict[str, Execution], rows: list[Execution], gone: list[str]) -> None:
        for ex in rows:
            old = known.get(ex.id)
            if ex.hidden:
                if old is not None:
                    del known[ex.id]
                    self._emit(Event(EventKind.REMOVED, ex.id))
                continue
            known[ex.id] = ex
            if old is None:
                self._emit(Event(EventKind.ADDED, ex.id, ex))
            elif old.name != ex.name:
                self._emit(Event(EventKind.RENAMED, ex.id, ex))
            else:
                self._emit(Event(EventKind.CHANGED, ex.id, ex))
        for exec_id in gone:
            if known.pop(exec_id, None) is not None:
                self._emit(Event(EventKind.REMOVED, exec_id))

    def _pump_logs(self, readers: dict[str, logstore.LogReader]) -> None:
        with self._follow_lock:
            follows = dict(self._follow)
        for exec_id in list(readers):
            if exec_id not in follows:
                readers.pop(exec_id).close()
        for exec_id, offset in follows.items():
            reader = readers.get(exec_id)
            if reader is None:
                reader = readers[exec_id] = self.log_reader(exec_id)
            records, new_offset = reader.read_from(offset)
            if records:
                with self._follow_lock:
                    if self._follow.get(exec_id) == offset:
                        self._follow[exec_id] = new_offset
                    else:
                        continue  # re-followed meanwhile from another offset
                self._emit(Event(EventKind.LOG, exec_id, records=records, offset=new_offset))
