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

import functools
import os
import select
import threading
import time
from pathlib import Path
from typing import Any, Callable

from mldesk.agent import logstore
from mldesk.core import labconfig
from mldesk.core import params as params_mod
from mldesk.core.paths import Layout
from mldesk.core.runopts import RunOptions
from mldesk.core.snapshots import SnapshotStore
from mldesk.core.store import (
    ACTIVE_STATES, FINAL_STATES, Execution, Hidden, Store, StoreError, gpu_request, new_execution_id,
)
from mldesk.engine.errors import EngineError  # noqa: F401 - re-exported (the front ends' name for it)
from mldesk.engine.events import Event
from mldesk.engine.experiments import ExperimentsMixin
from mldesk.engine.resources import ResourcesMixin
from mldesk.engine.watcher import WatcherMixin

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
    "input_max_bytes": 50 * 1024 ** 3,  # one input at most; bigger ones fail before they fill the disk
    "input_min_rate": 1024,  # bytes/s over 4 x input_timeout; slower downloads count as stalled
    "keep_workspace": False,
    "max_output_files": None,
    "max_output_file_bytes": None,
    "max_output_bytes": None,
    "undo_seconds": 5.0,
    "theme": "system",
}

NAME_MAX = 100

# characters a name may not hold: C0 and C1 controls, DEL, and the bidirectional
# overrides/isolates/marks that make text display in another order than it is stored
_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def _bad_name_char(c: str) -> bool:
    o = ord(c)
    return o < 32 or 0x7F <= o <= 0x9F or c in _BIDI or c in "\u2028\u2029"


def _number(value: Any, what: str, *, integer: bool = False, minimum: float = 0,
            maximum: float | None = None, none_ok: bool = False) -> Any:
    if value is None and none_ok:
        return None
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value != value:
        kind = "a whole number" if integer else "a number"
        raise EngineError(f"{what} must be {kind}" + (" or null" if none_ok else "") + f", not {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and at most {maximum:g}" if maximum is not None else ""
        raise EngineError(f"{what} must be at least {minimum:g}{upper}, not {value!r}")
    return value


def _image_aliases(value: Any) -> dict:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise EngineError('image_aliases must be a mapping of names to images, like {"my-alias": "python:3.11"}')
    for alias, image in value.items():
        problem = labconfig.image_problem(image)
        if problem:
            raise EngineError(f"image alias {alias!r}: {problem}")
    return value


def _choice(value: Any, what: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise EngineError(f"{what} must be one of {', '.join(choices)}, not {value!r}")
    return value


# every setting is checked when it is set: a bad value must never break every run later
SETTING_CHECKS: dict[str, Callable[[Any], Any]] = {
    "image_aliases": _image_aliases,
    "stop_grace": lambda v: _number(v, "stop_grace (seconds)", maximum=86400),
    "local_network": lambda v: _choice(v, "local_network", ("bridge", "none", "host")),
    "local_max_parallel": lambda v: _number(v, "local_max_parallel", integer=True, maximum=10_000),
    "input_timeout": lambda v: _number(v, "input_timeout (seconds)", minimum=0.1, maximum=86400),
    "input_retries": lambda v: _number(v, "input_retries", integer=True, maximum=100),
    "input_max_bytes": lambda v: _number(v, "input_max_bytes", integer=True, minimum=1),
    "input_min_rate": lambda v: _number(v, "input_min_rate (bytes per second)"),
    "keep_workspace": lambda v: v if isinstance(v, bool) else (_ for _ in ()).throw(
        EngineError(f"keep_workspace must be true or false, not {v!r}")),
    "max_output_files": lambda v: _number(v, "max_output_files", integer=True, none_ok=True),
    "max_output_file_bytes": lambda v: _number(v, "max_output_file_bytes", integer=True, none_ok=True),
    "max_output_bytes": lambda v: _number(v, "max_output_bytes", integer=True, none_ok=True),
    "undo_seconds": lambda v: _number(v, "undo_seconds", maximum=3600),
    "theme": lambda v: _choice(v, "theme", ("system", "light", "dark")),
}




class LocalInputsNeedConsent(EngineError):
    """ml.yaml lists ``file://`` inputs outside the lab that the user has not allowed
    yet (``paths``); nothing was started. The window asks; the CLI names them."""

    def __init__(self, lab: Path, paths: list[str]):
        self.lab = lab
        self.paths = paths
        shown = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
        super().__init__(
            f"ml.yaml asks to read {len(paths)} local file(s) outside the lab: {shown}; nothing was started. "
            "If you trust this lab with them, run again with --allow-local-inputs "
            "(asked once per lab and file)")

    def __str__(self) -> str:
        return self.args[0]


class Engine(ExperimentsMixin, ResourcesMixin, WatcherMixin):
    """The facade: every command and query of the front ends (experiments, resources
    and the event watcher come from the mixins in experiments.py, resources.py, watcher.py)."""

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
        self._ended: dict[str, int] = {}  # exec_id -> pipe that ends with its forked supervisor's outcome

    @functools.cached_property
    def profiles(self):
        """Host profiles: list, save, remove, test (imported on first use: most
        commands, `mldesk run` on this machine among them, never need it)."""
        from mldesk.engine.hosts import Hosts

        return Hosts(self)

    def close(self) -> None:
        self.stop_watching()
        self.store.close()

    # -- settings ------------------------------------------------------------
    def setting(self, key: str) -> Any:
        value = self.store.get_setting(key, DEFAULT_SETTINGS.get(key))
        check = SETTING_CHECKS.get(key)
        if check is not None and value != DEFAULT_SETTINGS.get(key):
            try:
                check(value)
            except EngineError:  # stored by an older mldesk that did not check: the default
                return DEFAULT_SETTINGS.get(key)
        return value

    def set_setting(self, key: str, value: Any) -> None:
        if key not in DEFAULT_SETTINGS:
            raise EngineError(f"unknown setting '{key}' (known: {', '.join(sorted(DEFAULT_SETTINGS))})")
        check = SETTING_CHECKS.get(key)
        if check is not None:
            value = check(value)
        self.store.set_setting(key, value)

    def resolve_image(self, image_id: str) -> str:
        return (self.setting("image_aliases") or {}).get(image_id, image_id)

    # -- queries ---------------------------------------------------------------
    def get(self, ref: str) -> Execution:
        try:
            return self.store.resolve(ref)
        except StoreError as exc:
            raise EngineError(str(exc)) from None

    def lookup(self, exec_id: str) -> Execution | None:
        """The execution with exactly this id, or None (removed); hidden ones too."""
        return self.store.get(exec_id)

    def log_path(self, exec_id: str) -> Path:
        return self.layout.log_path(exec_id)

    def code_manifest(self, ref: str) -> dict[str, list]:
        """The files of an execution's snapshot: {path: [sha256 or "link", size or target, mode]}."""
        return self.snapshots.manifest(self.get(ref).snapshot)

    def list(self, lab: str | Path | None = None, *, sweep: str | None = None) -> list[Execution]:
        return self.store.list(lab=str(Path(lab).resolve()) if lab else None, sweep=sweep)

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
    # -- consent for local files outside the lab ------------------------------
    def local_inputs_outside(self, lab: str | Path, config=None) -> list[str]:
        """The ``file://`` inputs of ``lab`` that resolve outside it (real paths)."""
        from urllib.parse import unquote, urlsplit

        lab = Path(lab).expanduser().resolve()
        config = config or labconfig.load_lab_config(lab)
        out = []
        for spec in config.inputs:
            parts = urlsplit(spec.url)
            if parts.scheme.lower() != "file":
                continue
            real = Path(os.path.realpath(unquote(parts.path)))
            if real != lab and lab not in real.parents:
                out.append(str(real))
        return out

    def local_inputs_needing_consent(self, lab: str | Path, config=None) -> list[str]:
        """Those of :meth:`local_inputs_outside` the user has not allowed for this lab."""
        lab = Path(lab).expanduser().resolve()
        allowed = self.store.input_consents(str(lab))
        return [p for p in self.local_inputs_outside(lab, config) if p not in allowed]

    def allow_local_inputs(self, lab: str | Path, paths: list[str]) -> None:
        """Record the user's consent for ``lab`` to read ``paths`` (the window's
        "Allow" and ``mldesk run --allow-local-inputs``)."""
        self.store.add_input_consents(str(Path(lab).expanduser().resolve()), list(paths))

    def run(self, lab: str | Path, *, host: str = "local", runtime: str | None = None,
            name: str | None = None, overrides: dict[str, str] | None = None,
            gpus: int | list[int] | tuple[int, ...] | None = None,
            allow_local_inputs: bool = False) -> Execution:
        """Snapshot ``lab`` and start an execution of it; returns at once.
        Raises :class:`LocalInputsNeedConsent` when ml.yaml lists local files outside
        the lab the user has not allowed (unless ``allow_local_inputs``).
        ``overrides`` (``{flag name: value}``) replace pass-as values for this execution
        only; an unknown name is an error and nothing is started. ``gpus`` (a count or
        nvidia-smi indices) overrides ml.yaml's ``gpus``; more than the host has is an
        error and nothing is started."""
        return self._start(lab, host=host, runtime=runtime, name=name, trials=[dict(overrides or {})],
                           gpus=gpus, allow_local_inputs=allow_local_inputs)[0]

    def run_sweep(self, lab: str | Path, sweeps: list[str], *, host: str = "local", runtime: str | None = None,
                  name: str | None = None, overrides: dict[str, str] | None = None,
                  max_trials: int | None = None, random: int | None = None,
                  gpus: int | list[int] | tuple[int, ...] | None = None,
                  allow_local_inputs: bool = False) -> tuple[str, list[Execution]]:
        """Start one execution per trial of a sweep (``["lr=[0.1,0.01]", "epochs=1:3"]``,
        grammar in mldesk.core.params), all of one snapshot, through the host's queue.
        Returns (sweep id, executions)."""
        try:
            axes = [params_mod.parse_sweep(spec) for spec in sweeps]
            trials = params_mod.trials(axes, random=random, max_trials=max_trials)
        except params_mod.ParamError as exc:
            raise EngineError(str(exc)) from None
        if not trials:
            raise EngineError("the sweep has no trials")
        base = dict(overrides or {})
        sweep_id = new_execution_id()
        executions = self._start(lab, host=host, runtime=runtime, name=name,
                                 trials=[{**base, **t} for t in trials], sweep=sweep_id, gpus=gpus,
                                 allow_local_inputs=allow_local_inputs)
        return sweep_id, executions

    def sweep_preview(self, sweeps: list[str], *, max_trials: int | None = None,
                      random: int | None = None) -> tuple[int, int]:
        """(size of the grid, number of trials that would start)."""
        try:
            axes = [params_mod.parse_sweep(spec) for spec in sweeps]
        except params_mod.ParamError as exc:
            raise EngineError(str(exc)) from None
        total = params_mod.grid_size(axes)
        n = total if random is None else min(total, random)
        return total, n if max_trials is None else min(n, max_trials)

    def lab_params(self, lab: str | Path) -> dict[str, str]:
        """The lab's parameters as ``{flag name: value}`` (from its ml.yaml)."""
        return params_mod.params(labconfig.load_lab_config(Path(lab).expanduser().resolve()).argv())

    def _start(self, lab: str | Path, *, host: str, runtime: str | None, name: str | None,
               trials: list[dict[str, str]], sweep: str | None = None,
               gpus: int | list[int] | tuple[int, ...] | None = None,
               allow_local_inputs: bool = False) -> list[Execution]:
        from mldesk import runtimes

        lab = Path(lab).expanduser().resolve()
        if not lab.is_dir():
            raise EngineError(f"lab folder {lab} does not exist")
        if not (lab / "main.py").is_file():
            raise EngineError(f"{lab} has no main.py: a lab needs one (mldesk init {lab} creates a lab)")
        # ConfigError lists every problem; an unchanged ml.yaml comes from the cache (no YAML parse)
        config = labconfig.load_lab_config(lab, cache=self.layout.config_cache)
        outside = self.local_inputs_needing_consent(lab, config)
        if outside:
            if not allow_local_inputs:
                raise LocalInputsNeedConsent(lab, outside)
            self.allow_local_inputs(lab, outside)
        base_argv = config.argv()
        try:
            argvs = [params_mod.apply_overrides(base_argv, t) if t else list(base_argv) for t in trials]
        except params_mod.ParamError as exc:
            raise EngineError(f"{exc}; nothing was started") from None
        if runtime == "slurm" and host != "local":
            cfg = self.store.get_host(host)
            if cfg is not None and cfg.get("runtime") != "slurm":
                raise EngineError(f"the slurm runtime needs a Slurm host; {host} is not one "
                                  f"(mldesk hosts add NAME ... --runtime slurm)")
        elif runtime is not None and runtime not in runtimes.NAMES:
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
        if config.network:  # the lab's own choice (ml.yaml network:) wins
            network = config.network
        image = self.resolve_image(config.docker_image_id) if runtime == "docker" else None
        if image is not None and labconfig.image_problem(image):
            raise EngineError(f"image {labconfig.image_problem(image)}: fix dockerImageId in ml.yaml "
                              "or the image alias table (mldesk settings image_aliases)")
        name = self._check_name(name) if name is not None else None
        want = gpu_request(config.gpus if gpus is None else gpus)
        slurm_gpus = 0
        if runtime == "slurm":
            # the cluster's GPUs are Slurm's to hand out (--gres=gpu:N), not mldesk's queue's
            if isinstance(want, list):
                raise EngineError(f"{host} is a Slurm cluster: ask for a number of GPUs (gpus: N or --gpus N), "
                                  "Slurm picks which; nothing was started")
            slurm_gpus, want, host_gpus = int(want or 0), 0, []
        else:
            host_gpus = self.host_gpu_indices(host, needed=bool(want))
            self._check_gpu_request(host, want, host_gpus)
        hardware = "gpu" if (want or slurm_gpus) else ("cpu" if gpus is not None else config.hardware_type)
        options = RunOptions(
            gpus=want,
            slurm_gpus=slurm_gpus,
            host_gpus=host_gpus,
            grace=float(grace),
            network=network,
            max_parallel=max_parallel,
            host_profile=profile,
            input_timeout=self.setting("input_timeout"),
            input_retries=self.setting("input_retries"),
            input_max_bytes=self.setting("input_max_bytes"),
            input_min_rate=self.setting("input_min_rate"),
            keep_workspace=self.setting("keep_workspace"),
            max_output_files=self.setting("max_output_files"),
            max_output_file_bytes=self.setting("max_output_file_bytes"),
            max_output_bytes=self.setting("max_output_bytes"),
            metrics=config.metrics.to_dict(),
        )
        per_trial = self.trial_options(options, runtime=runtime, sweep=sweep, count=len(trials))
        # trials of a sweep wait in the host's queue from the start when it has a limit
        # (not those of a Slurm job array: Slurm keeps its limit)
        state = "queued" if sweep is not None and int(max_parallel or 0) > 0 and \
            not per_trial[0].slurm_array else "preparing"
        created: list[Execution] = []
        with self.snapshots.hold():
            try:
                snap = self.snapshots.create(lab, config.exclude)
            except OSError as exc:
                raise EngineError(f"could not snapshot {lab}: {exc}") from None
            for trial, argv, trial_options in zip(trials, argvs, per_trial):
                now = time.time()
                exec_id = new_execution_id(now)
                while any(e.id == exec_id for e in created):
                    exec_id = new_execution_id(now)
                changed = params_mod.describe(trial)
                if name and changed and sweep is not None:
                    ex_name = self._check_name(f"{name} {changed}"[:NAME_MAX])
                else:
                    ex_name = name or (changed[:NAME_MAX].strip() if changed else f"#{exec_id}")
                ex = Execution(
                    id=exec_id, name=ex_name, lab=str(lab), host=host, runtime=runtime,
                    image=image,
                    hardware=hardware, state=state, exit_code=None, reason=None,
                    created_at=now, started_at=None, finished_at=None, snapshot=snap.id,
                    argv=argv, inputs=[{"name": i.name, "url": i.url} for i in config.inputs],
                    options=trial_options.to_json(), overrides=dict(trial), sweep=sweep,
                )
                self.layout.execution_dir(exec_id).mkdir(mode=0o700, parents=True, exist_ok=True)
                self.store.insert_execution(ex)
                created.append(ex)
        self.store.touch_recent_lab(str(lab))
        for ex in created:
            self._spawn(ex.id)
        return created

    def _spawn(self, exec_id: str) -> None:
        from mldesk.engine import supervisor

        if self.fork_supervisors and self._watcher is None:
            self.store.close()  # no SQLite connection may cross a fork
            try:
                ended = supervisor.spawn(self.layout, exec_id, fork=True)
            finally:
                self.store = Store(self.layout.db)
            if ended is not None:
                old = self._ended.pop(exec_id, None)
                if old is not None:
                    os.close(old)
                self._ended[exec_id] = ended
        else:
            supervisor.spawn(self.layout, exec_id)

    def wait_for_change(self, exec_id: str, timeout: float) -> None:
        """Sleep up to ``timeout`` seconds, waking at once when the supervisor this
        engine forked for ``exec_id`` has written to the log or recorded the final
        state (or died), so a follower shows new output and the end without a poll
        interval's delay."""
        fd = self._ended.get(exec_id)
        if fd is None:
            time.sleep(timeout)
            return
        ready, _, _ = select.select([fd], [], [], timeout)
        if ready:
            try:
                data = os.read(fd, 1 << 16)  # drain the supervisor's pokes
            except BlockingIOError:
                return
            if not data:  # EOF: from now on the store tells
                os.close(self._ended.pop(exec_id))

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
                runtime: str | None = None, allow_local_inputs: bool = False) -> tuple[Execution, str | None]:
        """Make the lab equal to the execution's snapshot, then run it where it ran
        (or on ``host`` / ``runtime`` when given). Returns (new execution, id of the
        backup snapshot of the lab's previous files, or None when the lab already
        equalled the snapshot)."""
        ex = self.get(ref)
        lab = Path(ex.lab)
        if host is None:
            host, runtime = ex.host, runtime or ex.runtime
        backup = self.restore_code(ex.id, lab)
        return self.run(lab, host=host, runtime=runtime, name=name, overrides=ex.overrides or None,
                        allow_local_inputs=allow_local_inputs), backup

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
        backup (its id returned; None when nothing had to change). All or nothing;
        excluded paths (``.venv``, ``inputs``, ``outputs``, dotfiles, the lab's and the
        snapshot's exclude globs) are never touched."""
        ex = self.get(ref)
        return self._restore_snapshot(ex.snapshot, Path(lab or ex.lab),
                                      f"lab files before restoring the code of {ex.id}")

    def _restore_snapshot(self, snapshot: str, lab: Path, reason: str) -> str | None:
        from mldesk.core.snapshots import SnapshotError, excluded_path

        lab = Path(lab).expanduser().resolve()
        lab.mkdir(parents=True, exist_ok=True)
        exclude = self.restore_exclude(snapshot, lab)
        with self.snapshots.hold():
            wanted = {r: e for r, e in self.snapshots.manifest(snapshot).items() if not excluded_path(r, exclude)}
            current = self.snapshots.create(lab, exclude)
            if self.snapshots.manifest(current.id) == wanted:
                return None
            self.store.add_lab_backup(current.id, str(lab), reason)
            try:
                self.snapshots.restore(snapshot, lab, exclude, backup=current.id)
            except SnapshotError as exc:
                raise EngineError(str(exc)) from None
        return current.id

    def restore_exclude(self, snapshot: str, lab: Path) -> tuple[str, ...]:
        """What a restore never touches: the defaults (dotfiles, .venv, inputs,
        outputs, __pycache__), the snapshot's exclude and the lab's current one."""
        from types import SimpleNamespace

        patterns = list(labconfig.DEFAULT_EXCLUDE) + list(self.snapshot_exclude(SimpleNamespace(snapshot=snapshot)))
        try:
            patterns += list(labconfig.load_lab_config(lab).exclude)
        except (labconfig.ConfigError, OSError):
            pass
        return tuple(dict.fromkeys(patterns))

    # -- backups of a lab's files (kept whenever a restore replaced them) ---------
    def backups(self, lab: str | Path | None = None) -> list[dict]:
        """Every backup, newest first: {snapshot, lab, created_at, reason, kept}."""
        rows = self.store.lab_backups(str(Path(lab).expanduser().resolve())) if lab else self.store.all_lab_backups()
        return [dict(r, kept=self.snapshots.exists(r["snapshot"])) for r in rows]

    def restore_backup(self, ref: str, lab: str | Path | None = None) -> tuple[dict, str | None]:
        """Bring a lab's files back from a backup (its snapshot id or a unique prefix,
        optionally narrowed to ``lab``), keeping the current files as a new backup.
        Returns (the backup restored, the new backup's id or None)."""
        ref = ref.strip().lower()
        rows = [b for b in self.backups(lab) if b["snapshot"].startswith(ref)] if ref else []
        pairs = {(b["snapshot"], b["lab"]): b for b in rows}
        if not pairs:
            raise EngineError(f"no backup matches '{ref}' (see `mldesk backups`)")
        if len(pairs) > 1:
            listed = ", ".join(f"{s[:12]} ({lab_})" for s, lab_ in list(pairs)[:5])
            raise EngineError(f"'{ref}' matches {len(pairs)} backups ({listed}); give more of the id or the lab")
        backup = next(iter(pairs.values()))
        if not backup["kept"]:
            raise EngineError(f"the files of backup {backup['snapshot']} are no longer kept")
        new = self._restore_snapshot(backup["snapshot"], Path(backup["lab"]),
                                     f"lab files before bringing back backup {backup['snapshot']}")
        return backup, new

    # -- rename / remove -------------------------------------------------------
    def _check_name(self, name: str) -> str:
        name = name.strip()
        if not name:
            raise EngineError("a name cannot be empty")
        if len(name) > NAME_MAX:
            raise EngineError(f"a name can have at most {NAME_MAX} characters (this one has {len(name)})")
        if any(_bad_name_char(c) for c in name):
            raise EngineError("a name cannot contain control characters, line breaks or "
                              "text-direction overrides")
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
            self.store.update(ex.id, hidden=Hidden.PENDING_UNDO, hidden_at=time.time(), only_if_state=FINAL_STATES)
        except StoreError:
            raise EngineError(f"execution {ex.id} was removed meanwhile") from None
        return ex

    def unhide(self, exec_id: str) -> None:
        self.store.update(exec_id, hidden=Hidden.SHOWN, hidden_at=None)

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
        from mldesk.engine import supervisor

        # a supervisor records the outcome first and cleans up after it (the runner's
        # files, the container, the workspace): let it finish before the folder goes
        deadline = time.monotonic() + 30
        while supervisor.is_supervised(self.layout, exec_id) and time.monotonic() < deadline:
            time.sleep(0.05)
        import shutil

        shutil.rmtree(self.layout.execution_dir(exec_id), ignore_errors=True)
        self.store.delete_execution(exec_id)
        self.gc()

    def gc(self) -> tuple[int, int]:
        return self.snapshots.gc(self.store.snapshots_in_use)

    # -- code and outputs ----------------------------------------------------------
    def _export_forbidden(self, ex: Execution) -> list[tuple[Path, str]]:
        return [(self.layout.execution_dir(ex.id), f"execution {ex.id}'s own folder"),
                (self.layout.root, "mldesk's data folder")]

    def export_code(self, ref: str, dest: Path | str, *, overwrite: bool = False) -> Path:
        """Write an execution's code into ``dest`` (see ``mldesk.core.export``: new
        names only, a conflict stops it before anything is written)."""
        from mldesk.core import export

        ex = self.get(ref)
        try:
            dest = export.check_destination(Path(dest), self._export_forbidden(ex))
            entries = self.snapshots.export_entries(ex.snapshot)
            export.export_tree(entries, dest, overwrite=overwrite)
        except export.ExportError as exc:
            raise EngineError(str(exc)) from None
        return dest

    def export_outputs(self, ref: str, dest: Path | str, *, overwrite: bool = False) -> tuple[int, int]:
        """Copy an execution's collected outputs into ``dest`` (same rules as
        :meth:`export_code`). Returns (files, bytes)."""
        from mldesk.core import export

        ex = self.get(ref)
        src = self.layout.outputs(ex.id)
        try:
            dest = export.check_destination(Path(dest), self._export_forbidden(ex))
            if not src.is_dir():
                return 0, 0
            result = export.export_tree(export.tree_entries(src), dest, overwrite=overwrite)
        except export.ExportError as exc:
            raise EngineError(str(exc)) from None
        return result.files, result.bytes

    # -- reattach -------------------------------------------------------------
    def recover(self) -> list[str]:
        """At start-up: finish interrupted purges, show hidden-but-not-removed
        executions again (their undo window died with the app), and start a
        supervisor for every active execution that has none."""
        stale = time.time() - 60.0  # far longer than any undo window or purge
        # (the hidden rows only: every CLI command starts here, whatever the history's size)
        for ex in self.store.list(hidden_only=True):
            if not ex.hidden or (ex.hidden_at or 0) > stale:
                continue
            if ex.hidden == Hidden.REMOVING:
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
        if supervisor.apply_outcome(self.layout, self.store, exec_id):
            return False  # its supervisor ended it while the store was unavailable
        self._spawn(exec_id)
        return True
