"""The parse cache of ml.yaml (``load_lab_config(lab, cache=FILE)``, used by every run):
it gives exactly what a fresh parse gives, parses a changed file again, ignores a
cache it cannot trust, and really skips PyYAML for a text it has seen."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mldesk
from mldesk.core.labconfig import ConfigError, load_lab_config

APP = Path(mldesk.__file__).resolve().parents[1]
REPO = APP.parent

TRICKY = [
    "",
    "# only a comment\n",
    "~\n",
    "dockerImageId: python:3.12-slim\n",
    "\ufeffhardwareType: GPU\r\ngpus: [2, 0]\r\n",  # BOM, CRLF, upper case
    textwrap.dedent("""\
        base: &b
          - pass-as: '--lr=0.1'
        parameters: *b
        dockerImageId: "registry.example.org:5000/team/image:tag"
        hardwareType: cpu
        gpus: 0x1
        network: none
        mounts: [x]
        cli: {exclude: ['*.ckpt', data]}
        exclude: ".*"
        inputs:
          - {name: a.csv, url: 'https://e.org/a.csv'}
          - name: A.csv
            url: file:///tmp/ä b.csv
        metrics:
          patterns:
            - '(?P<key>\\w+) is (?P<value>\\S+)'
            - {regex: 'accuracy (?P<value>[\\d.]+)', key: val/acc}
          replace_defaults: yes
          ignore: [v_num, 'time/*']
          primary: {key: val/acc, goal: MAX}
          colour: red
        unknwn: 1
        """),
    "parameters:\n  - pass-as: 3\n  - pass-as: \"--name='a b' \\u00e9\"\n  - pass-as: 1.5e3\n",
    "hardwareType: gpu\ngpus: 0\nmetrics: {primary: 42}\n",
    "hardwareType: cpu\ngpus: 123456789012345678901234567890\n",
    "exclude: []\ncli: {}\n",
    "? [complex, key]\n: 1\nhardwareType: cpu\n",
    "---\nhardwareType: cpu\n...\n",
]


def labs_in_repo() -> list[Path]:
    return sorted(p.parent for p in REPO.rglob("ml.yaml") if ".git" not in p.parts)


def write(lab: Path, data: str | bytes) -> None:
    lab.mkdir(exist_ok=True)
    path = lab / "ml.yaml"
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))


def assert_same_three_ways(lab: Path, cache: Path) -> None:
    """Fresh, cached on a miss, cached on a hit: equal, field by field."""
    fresh = load_lab_config(lab)
    first = load_lab_config(lab, cache=cache)  # a miss: parsed and stored
    second = load_lab_config(lab, cache=cache)  # a hit
    assert first == fresh and second == fresh
    assert repr(second) == repr(fresh)  # types too: tuples stay tuples, ints ints
    assert type(second.gpus) is type(fresh.gpus)


@pytest.mark.parametrize("text", TRICKY)
def test_cached_equals_fresh_for_tricky_yaml(tmp_path, text):
    write(tmp_path / "lab", text)
    assert_same_three_ways(tmp_path / "lab", tmp_path / "cache.json")


def test_cached_equals_fresh_for_the_labs_in_the_repository(tmp_path):
    labs = labs_in_repo()
    assert len(labs) >= 3  # the templates and the bench labs
    cache = tmp_path / "cache.json"
    for lab in labs:
        assert_same_three_ways(lab, cache)
    assert len(json.loads(cache.read_text())["entries"]) == len({(lab / "ml.yaml").read_bytes() for lab in labs})


def test_the_cache_file_is_owner_only_and_bounded(tmp_path):
    cache = tmp_path / "sub" / "cache.json"
    lab = tmp_path / "lab"
    for i in range(70):
        write(lab, f"parameters:\n  - pass-as: '--i={i}'\n")
        assert load_lab_config(lab, cache=cache).parameters == (f"--i={i}",)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert len(json.loads(cache.read_text())["entries"]) == 64
    assert [p.name for p in cache.parent.iterdir()] == ["cache.json"]  # no temp files left


def test_a_changed_ml_yaml_is_parsed_again(tmp_path):
    lab, cache = tmp_path / "lab", tmp_path / "cache.json"
    write(lab, "dockerImageId: python:3.11\n")
    assert load_lab_config(lab, cache=cache).docker_image_id == "python:3.11"
    write(lab, "dockerImageId: python:3.12\n")  # same size, same second
    assert load_lab_config(lab, cache=cache).docker_image_id == "python:3.12"
    write(lab, "dockerImageId: python:3.11\n")  # back: from the cache, still right
    assert load_lab_config(lab, cache=cache).docker_image_id == "python:3.11"
    write(lab, "hardwareType: tpu\n")  # now broken: the error, not an old result
    with pytest.raises(ConfigError, match="hardwareType must be cpu or gpu"):
        load_lab_config(lab, cache=cache)
    with pytest.raises(ConfigError):  # errors are never cached
        load_lab_config(lab, cache=cache)
    assert len(json.loads(cache.read_text())["entries"]) == 2


def test_path_is_the_labs_own(tmp_path):
    cache = tmp_path / "cache.json"
    write(tmp_path / "a", "hardwareType: gpu\n")
    write(tmp_path / "b", "hardwareType: gpu\n")
    assert load_lab_config(tmp_path / "a", cache=cache).path == tmp_path / "a" / "ml.yaml"
    assert load_lab_config(tmp_path / "b", cache=cache).path == tmp_path / "b" / "ml.yaml"


@pytest.mark.parametrize("content", [
    b"\x00\xff garbage",
    b"",
    b"[1, 2]",
    b'{"version": 1}',
    None,  # the right version, each entry replaced by nonsense
    "other-version",  # a well-formed cache of another mldesk, with wrong results
])
def test_a_corrupt_or_foreign_cache_is_ignored_and_replaced(tmp_path, content):
    lab, cache = tmp_path / "lab", tmp_path / "cache.json"
    write(lab, TRICKY[5])
    fresh = load_lab_config(lab)
    if isinstance(content, bytes):
        cache.write_bytes(content)
    else:
        load_lab_config(lab, cache=cache)
        stored = json.loads(cache.read_text())
        if content is None:
            stored["entries"] = {k: ["nonsense"] for k in stored["entries"]}
        else:
            stored["version"] = content
            for entry in stored["entries"].values():
                entry[0] = "wrong/image"
        cache.write_text(json.dumps(stored))
    assert load_lab_config(lab, cache=cache) == fresh
    assert load_lab_config(lab, cache=cache) == fresh  # and the cache was rewritten right
    assert json.loads(cache.read_text())["entries"]


def test_an_unwritable_cache_only_costs_the_parse(tmp_path):
    lab = tmp_path / "lab"
    write(lab, "hardwareType: gpu\n")
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert load_lab_config(lab, cache=blocker / "cache.json").hardware_type == "gpu"


def test_a_hit_imports_no_yaml(tmp_path):
    """In a fresh interpreter, a text seen before is not parsed: PyYAML is never
    imported, and the result is the fresh one."""
    lab, cache = tmp_path / "lab", tmp_path / "cache.json"
    write(lab, TRICKY[5])
    load_lab_config(lab, cache=cache)
    code = textwrap.dedent(f"""\
        import sys
        from mldesk.core.labconfig import load_lab_config
        config = load_lab_config({str(lab)!r}, cache=__import__("pathlib").Path({str(cache)!r}))
        print("yaml" in sys.modules)
        print(repr(config))
        """)
    env = dict(os.environ, PYTHONPATH=str(APP))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    imported, shown = out.stdout.splitlines()
    assert imported == "False"
    assert shown == repr(load_lab_config(lab))
    # a text not seen before is parsed (and does import yaml)
    write(lab, TRICKY[5] + "# changed\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[0] == "True"


KEYS = st.sampled_from(["dockerImageId", "hardwareType", "gpus", "parameters", "inputs", "exclude", "cli",
                        "metrics", "network", "pass-as", "name", "url", "patterns", "primary", "ignore", "key",
                        "goal", "regex", "replace_defaults"]) | st.text(max_size=6)
LEAVES = (st.none() | st.booleans() | st.integers() | st.text(max_size=12)
          | st.sampled_from(["cpu", "GPU", "none", "min", "a.csv", "https://e.org/f", "(?P<value>x)", "'a b'"]))
TREES = st.recursive(LEAVES, lambda c: st.lists(c, max_size=3) | st.dictionaries(KEYS, c, max_size=3), max_leaves=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(KEYS, TREES, max_size=6))
def test_fuzz_cached_equals_fresh(tmp_path, data):
    lab, cache = tmp_path / "lab", tmp_path / "cache.json"
    write(lab, yaml.safe_dump(data, allow_unicode=True))
    try:
        fresh = load_lab_config(lab)
    except ConfigError as exc:
        with pytest.raises(ConfigError) as again:
            load_lab_config(lab, cache=cache)
        assert again.value.problems == exc.problems
        return
    assert load_lab_config(lab, cache=cache) == fresh
    hit = load_lab_config(lab, cache=cache)
    assert hit == fresh and repr(hit) == repr(fresh)
