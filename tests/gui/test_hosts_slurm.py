"""The host form's Slurm fields: shown for runtime slurm only, round-trip a profile."""

from __future__ import annotations

from mldesk.core.hosts import HostProfile
from mldesk.ui.hosts_dialog import HostEditDialog


def test_slurm_fields_round_trip(qtbot):
    p = HostProfile.from_url("cluster", "ssh://me@login:22", runtime="slurm", workdir="/shared/me",
                             slurm_partition="gpu", slurm_time="1:00:00", slurm_cpus=4, slurm_mem="8G",
                             slurm_gpus=2, slurm_args=["--qos=debug", "--comment=a b"],
                             env={"PATH": "/opt/slurm/bin:/usr/bin"})
    dlg = HostEditDialog(p)
    qtbot.addWidget(dlg)
    assert not dlg.slurm_box.isHidden()
    assert dlg.build() == p
    dlg.runtime.setCurrentText("docker")
    assert dlg.slurm_box.isHidden()


def test_slurm_fields_hidden_for_other_runtimes_and_bad_env_refused(qtbot):
    dlg = HostEditDialog(HostProfile(name="box", host="box", runtime="process"))
    qtbot.addWidget(dlg)
    assert dlg.slurm_box.isHidden()
    dlg.name.setText("box")
    dlg.url.setText("ssh://me@box")
    dlg.runtime.setCurrentText("slurm")
    assert not dlg.slurm_box.isHidden()
    dlg.env.setText("NOEQUALS")
    import pytest

    from mldesk.core.hosts import HostProfileError

    with pytest.raises(HostProfileError, match="NAME=VALUE"):
        dlg.build()
