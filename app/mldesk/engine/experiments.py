"""The engine's experiments: parameters, metrics (live and stored), progress lines, the
compare table and code/parameter diffs (``ExperimentsMixin``). The metrics scanner and
the compare helpers are imported on use: `mldesk run` needs neither."""

from __future__ import annotations

import time
from pathlib import Path

from mldesk.agent import logstore
from mldesk.core import labconfig
from mldesk.core.metricsconfig import MetricsConfig, default_goal
from mldesk.core import params as params_mod
from mldesk.core.runopts import RunOptions
from mldesk.core.store import Execution
from mldesk.engine.errors import EngineError


class ExperimentsMixin:
    """Mixed into :class:`mldesk.engine.facade.Engine` (uses its store, layout, snapshots)."""

    # -- sweep dispatch ---------------------------------------------------------------
    @staticmethod
    def trial_options(options: RunOptions, *, runtime: str, sweep: str | None,
                      count: int) -> list[RunOptions]:
        """The options of each of ``count`` trials. On a Slurm host the trials of a sweep
        are ONE job array: each gets ``slurm_array`` (sweep id, its index, the number of
        trials, K = the host's max parallel or 0), the agents on the login node submit
        them together (``--array=0-(N-1)%K``, see ``mldesk.agent.slurm.ArrayRendezvous``)
        and Slurm, not mldesk's queue, keeps K of them running."""
        if runtime != "slurm" or sweep is None or count < 2:
            return [options] * count
        parallel = int(options.max_parallel or 0)
        return [options.replace(slurm_array={"id": sweep, "index": i, "size": count, "parallel": parallel})
                for i in range(count)]

    # -- parameters, metrics, compare, diff -----------------------------------------
    def resolve_sweep(self, ref: str) -> str:
        """A sweep id from the id or a unique prefix of it."""
        ref = ref.strip()
        ids = self.store.sweep_ids(ref)
        if ref in ids:
            return ref
        if not ids or not ref:
            raise EngineError(f"no sweep matches '{ref}' (see `mldesk ls`)")
        if len(ids) > 1:
            raise EngineError(f"'{ref}' matches {len(ids)} sweeps ({', '.join(ids[:5])}); give more of the id")
        return ids[0]

    def params(self, ex: Execution) -> dict[str, str]:
        """The resolved parameters of an execution: ``{flag name: value}``."""
        return params_mod.params(ex.argv)

    def metrics_config(self, ex: Execution) -> MetricsConfig:
        return MetricsConfig.from_dict(RunOptions.from_json(ex.options).metrics)

    def metrics(self, ref: str | Execution, key: str | None = None) -> dict[str, list[tuple]]:
        """``{key: [(step, value, time), ...]}`` of an execution, in the order printed.
        Scanned as the log is stored; a log stored before (or without) a scanner is
        scanned once, here, and cached. For a finished execution this waits until its
        scanner is done, so the result is complete."""
        from mldesk.core import metrics as metrics_mod

        ex = ref if isinstance(ref, Execution) else self.get(ref)
        exec_dir = self.layout.execution_dir(ex.id)
        data = metrics_mod.read_metrics(exec_dir, self.metrics_config(ex), final=ex.final, wait=ex.final)
        if key is not None:
            return {key: data[key]} if key in data else {}
        return data

    def metrics_since(self, ref: str | Execution, offset: int = 0) -> tuple[list[list], int]:
        """Points ``[key, step, value, time]`` stored after ``offset`` (0: all) and the
        offset to pass next time: what a live chart polls."""
        from mldesk.core import metrics as metrics_mod

        ex = ref if isinstance(ref, Execution) else self.get(ref)
        exec_dir = self.layout.execution_dir(ex.id)
        metrics_mod.update(exec_dir, self.metrics_config(ex), final=ex.final)  # no-op while a scanner runs
        return metrics_mod.read_points_from(exec_dir, offset)

    def metrics_summary(self, ref: str | Execution) -> dict[str, dict]:
        """``{key: {"last", "min", "max", "count"}}``."""
        from mldesk.core import metrics as metrics_mod

        return {k: metrics_mod.summarize(v) for k, v in self.metrics(ref).items()}

    def progress_line(self, ref: str | Execution) -> str | None:
        """A short progress read-out of a running execution's latest output
        (``epoch 3/10 · 56%``), or None."""
        from mldesk.core import metrics as metrics_mod

        ex = ref if isinstance(ref, Execution) else self.get(ref)
        if ex.final:
            return None
        with self.log_reader(ex.id) as reader:
            records, _ = reader.tail(20, streams=(logstore.STDOUT, logstore.STDERR))
        for stream in (logstore.STDERR, logstore.STDOUT):  # progress bars mostly go to stderr
            data = b"".join(r.data for r in records if r.stream == stream)
            for line in reversed(data.split(b"\n")[-20:]):
                text = metrics_mod.progress_text(line)
                if text:
                    return text
        return None

    def primary_metric(self, ref: str | Execution) -> dict | None:
        """The ml.yaml's ``metrics.primary`` of an execution with its latest and best
        values: ``{"key", "goal", "last", "best"}`` (None when ml.yaml names none)."""
        from mldesk.core import metrics as metrics_mod

        ex = ref if isinstance(ref, Execution) else self.get(ref)
        cfg = self.metrics_config(ex)
        if not cfg.primary:
            return None
        s = self.metrics(ex, key=cfg.primary)
        summary = metrics_mod.summarize(s.get(cfg.primary, []))
        goal = "min" if cfg.lower_is_better else "max"
        return {"key": cfg.primary, "goal": goal, "last": summary["last"], "best": summary[goal]}

    def compare(self, refs: list[str]) -> list[dict]:
        """One row per execution: id, name, state, host, runtime, duration (seconds or
        None), params, overrides, sweep, metrics (summaries), primary (key, goal)."""
        rows = []
        for ref in refs:
            ex = ref if isinstance(ref, Execution) else self.get(ref)
            cfg = self.metrics_config(ex)
            duration = (ex.finished_at or time.time()) - ex.started_at if ex.started_at else None
            rows.append({
                "id": ex.id, "name": ex.name, "state": ex.state, "host": ex.host, "runtime": ex.runtime,
                "duration": duration, "params": self.params(ex), "overrides": ex.overrides, "sweep": ex.sweep,
                "metrics": self.metrics_summary(ex),
                "primary": {"key": cfg.primary, "goal": cfg.goal or (default_goal(cfg.primary)
                                                                     if cfg.primary else None)},
            })
        return rows

    def diff(self, a: str, b: str | None = None) -> dict:
        """Parameters and code of execution ``a`` against execution ``b`` or, without
        ``b``, the current lab of ``a``: ``{"a", "b", "params": [(name, va, vb)],
        "files": [{"path", "status", "diff"}]}`` (ml.yaml first among the files)."""
        from mldesk.core import compare as compare_mod

        ea = self.get(a)
        with self.snapshots.hold():
            if b is None:
                lab = Path(ea.lab)
                if not lab.is_dir():
                    raise EngineError(f"the lab {lab} of {ea.id} does not exist any more; give a second execution")
                snap_b = self.snapshots.create(lab, self.snapshot_exclude(ea)).id
                label_b = str(lab)
                try:
                    params_b = self.lab_params(lab)
                except labconfig.ConfigError:
                    params_b = {}
            else:
                eb = self.get(b)
                snap_b, label_b, params_b = eb.snapshot, eb.id, self.params(eb)
            files = compare_mod.diff_files(
                self.snapshots.manifest(ea.snapshot), self.snapshots.manifest(snap_b),
                lambda rel: self.snapshots.read_file(ea.snapshot, rel),
                lambda rel: self.snapshots.read_file(snap_b, rel),
                label_a=ea.id, label_b=label_b if b is not None else "lab")
        return {"a": ea.id, "b": label_b, "params": compare_mod.diff_params(self.params(ea), params_b),
                "files": files}
