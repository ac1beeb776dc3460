"""The supervisor's own log never ends it: on a full disk (/dev/full here) its prints are dropped."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mldesk.engine.supervisor import QuietStream

APP = str(Path(__file__).resolve().parents[2] / "app")
needs_dev_full = pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")


@needs_dev_full
def test_a_print_on_a_full_disk_raises_without_the_wrapper_and_not_with_it():
    raw = open("/dev/full", "w", buffering=1)
    with pytest.raises(OSError):
        print("writing the log failed: ...", file=raw)
    quiet = QuietStream(open("/dev/full", "w", buffering=1))
    for _ in range(1000):
        print("database or disk is full; trying again", file=quiet)
    quiet.flush()
    assert quiet.writable()  # everything else is the wrapped stream's


@needs_dev_full
def test_the_supervisor_entry_point_survives_a_full_log():
    """``main`` prints its usage to stderr and returns 2: with stderr on a full disk it
    still returns 2 (without the wrapper the print raises and the exit status is 1)."""
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-c", "import sys\nfrom mldesk.engine.supervisor import main\n"
                            "code = main([])\nsys.stderr.flush()\nimport os\nos._exit(code)"],
                           env={"PYTHONPATH": APP, "PATH": "/usr/bin:/bin"}, stderr=full, stdout=full)
    assert r.returncode == 2
