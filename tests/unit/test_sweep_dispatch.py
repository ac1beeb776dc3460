"""Sweep dispatch: on a Slurm host a sweep's trials are one job array (each trial's
RunOptions.slurm_array); elsewhere, or for one trial, they are plain executions."""

from __future__ import annotations

from mldesk.core.runopts import RunOptions
from mldesk.engine.experiments import ExperimentsMixin


def test_slurm_sweep_trials_are_one_array_with_the_hosts_limit():
    base = RunOptions(max_parallel=2)
    opts = ExperimentsMixin.trial_options(base, runtime="slurm", sweep="sw1", count=4)
    assert [o.slurm_array for o in opts] == [{"id": "sw1", "index": i, "size": 4, "parallel": 2} for i in range(4)]
    assert all(o.replace(slurm_array=None) == base for o in opts)
    unlimited = ExperimentsMixin.trial_options(RunOptions(max_parallel=0), runtime="slurm", sweep="sw1", count=2)
    assert [o.slurm_array["parallel"] for o in unlimited] == [0, 0]


def test_no_array_off_slurm_for_one_trial_or_without_a_sweep():
    base = RunOptions(max_parallel=2)
    for runtime, sweep, count in (("process", "sw1", 4), ("docker", "sw1", 4), ("slurm", "sw1", 1),
                                  ("slurm", None, 1)):
        opts = ExperimentsMixin.trial_options(base, runtime=runtime, sweep=sweep, count=count)
        assert len(opts) == count and all(o.slurm_array is None for o in opts)
