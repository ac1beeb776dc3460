"""Settings are checked when set; names refuse invisible and reordering characters."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mldesk.engine.facade import DEFAULT_SETTINGS, Engine, EngineError

APP = str(Path(__file__).resolve().parents[2] / "app")


@pytest.fixture
def eng(mldesk_home):
    e = Engine(mldesk_home)
    yield e
    e.close()


@pytest.mark.parametrize("key, value", [
    ("stop_grace", "abc"), ("stop_grace", -1), ("stop_grace", True), ("local_network", "internet"),
    ("input_timeout", 0), ("input_retries", 2.5), ("keep_workspace", "yes"), ("theme", "neon"),
    ("image_aliases", {"x": "--privileged"}), ("image_aliases", ["a"]), ("max_output_files", -3),
    ("input_max_bytes", "50G"),
])
def test_bad_setting_is_refused(eng, key, value):
    with pytest.raises(EngineError):
        eng.set_setting(key, value)
    assert eng.setting(key) == DEFAULT_SETTINGS[key]


def test_good_settings_are_kept(eng):
    eng.set_setting("stop_grace", 2)
    eng.set_setting("max_output_files", None)
    eng.set_setting("image_aliases", {"mine": "python:3.11-slim"})
    assert eng.setting("stop_grace") == 2 and eng.setting("image_aliases") == {"mine": "python:3.11-slim"}


def test_cli_refuses_stop_grace_abc(mldesk_home):
    env = dict(os.environ, MLDESK_HOME=str(mldesk_home), PYTHONPATH=APP)
    r = subprocess.run([sys.executable, "-m", "mldesk", "settings", "stop_grace", "abc"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "stop_grace" in r.stderr and "'abc'" in r.stderr
    r = subprocess.run([sys.executable, "-m", "mldesk", "settings", "stop_grace"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "10.0"


def test_a_bad_value_stored_earlier_reads_as_the_default(eng):
    eng.store.set_setting("stop_grace", "abc")  # as an older mldesk would have stored it
    assert eng.setting("stop_grace") == DEFAULT_SETTINGS["stop_grace"]


@pytest.mark.parametrize("name", ["a\x7fb", "a\x85b", "a\x9bb", "evil\u202egpj.exe", "x\u2066y", "l\u2028m"])
def test_names_refuse_del_c1_and_bidi(eng, name):
    with pytest.raises(EngineError, match="control characters"):
        eng._check_name(name)


def test_plain_unicode_names_are_fine(eng):
    assert eng._check_name("résumé — 训练 #3") == "résumé — 训练 #3"
