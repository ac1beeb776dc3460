"""ml.yaml loading, validation, argv splitting and comment-preserving edits (SPEC 2, 10)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mldesk.core.labconfig import (
    DEFAULT_EXCLUDE,
    DEFAULT_IMAGE,
    ConfigError,
    InputSpec,
    LabConfig,
    Problem,
    add_inputs,
    find_config,
    load_lab_config,
    parse_config,
    remove_input,
    replace_input,
    validate_input_name,
)


def errors_of(text: str) -> list[Problem]:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text))
    problems = info.value.problems
    assert problems and all(p.severity == "error" and p.hint for p in problems)
    return problems


def only_error(text: str) -> Problem:
    (problem,) = errors_of(text)
    return problem


# --- defaults and file discovery -------------------------------------------------------

def test_missing_file_gives_defaults(tmp_path):
    config = load_lab_config(tmp_path)
    assert config == LabConfig()
    assert (config.docker_image_id, config.hardware_type) == (DEFAULT_IMAGE, "cpu")
    assert config.parameters == config.inputs == config.warnings == ()
    assert config.exclude == DEFAULT_EXCLUDE and config.argv() == []


@pytest.mark.parametrize("text", ["", "\n\n", "# just a comment\n", "\ufeff", "---\n", "~\n"])
def test_empty_file_gives_defaults(text):
    config = parse_config(text)
    assert (config.docker_image_id, config.hardware_type, config.parameters, config.inputs) == (
        DEFAULT_IMAGE, "cpu", (), ())


def test_null_values_mean_default():
    config = parse_config("dockerImageId:\nhardwareType:\nparameters:\n# - pass-as: x\ninputs:\nexclude:\n")
    assert config == LabConfig(warnings=())


def test_full_config():
    config = parse_config(textwrap.dedent("""\
        dockerImageId: my/image:1.0
        hardwareType: GPU
        parameters:
          - pass-as: 'inputs/base_image.jpg'
          - pass-as: '--iter=10'
          - pass-as: 3
          - pass-as: 0.5
        inputs:
          - name: mnist.npz
            url: https://example.org/mnist.npz
          - name: local.csv
            url: file:///data/local.csv
        exclude: ['*.ckpt', data]
        """), path="lab/ml.yaml")
    assert config.docker_image_id == "my/image:1.0"
    assert config.hardware_type == "gpu"
    assert config.parameters == ("inputs/base_image.jpg", "--iter=10", "3", "0.5")
    assert config.argv() == ["inputs/base_image.jpg", "--iter=10", "3", "0.5"]
    assert config.inputs == (InputSpec("mnist.npz", "https://example.org/mnist.npz"),
                             InputSpec("local.csv", "file:///data/local.csv"))
    assert config.exclude == ("*.ckpt", "data")
    assert config.path == Path("lab/ml.yaml") and config.warnings == ()


def test_exclude_forms():
    assert parse_config("exclude: '*.log'").exclude == ("*.log",)
    assert parse_config("exclude: []").exclude == ()
    assert parse_config("cli:\n  exclude: ['.*', __pycache__]").exclude == (".*", "__pycache__")
    assert parse_config("exclude: [a]\ncli: {exclude: b}").exclude == ("a", "b")


@pytest.mark.parametrize("name", ["ML.YAML", "Ml.Yaml", "ml.yaml"])
def test_file_name_is_case_insensitive(tmp_path, name):
    (tmp_path / name).write_text("hardwareType: gpu\n")
    assert find_config(tmp_path) == tmp_path / name
    config = load_lab_config(tmp_path)
    assert config.hardware_type == "gpu" and config.path == tmp_path / name


def test_exact_name_preferred_and_directories_ignored(tmp_path):
    (tmp_path / "ML.yaml").mkdir()
    assert find_config(tmp_path) is None
    (tmp_path / "ML.YAML").write_text("hardwareType: cpu\n")
    (tmp_path / "ml.yaml").write_text("hardwareType: gpu\n")
    assert find_config(tmp_path) == tmp_path / "ml.yaml"


def test_bom(tmp_path):
    (tmp_path / "ml.yaml").write_bytes(b"\xef\xbb\xbfhardwareType: gpu\n")
    assert load_lab_config(tmp_path).hardware_type == "gpu"
    (tmp_path / "ml.yaml").write_bytes(b"\xef\xbb\xbfhardwareType: tpu\n")
    with pytest.raises(ConfigError) as info:
        load_lab_config(tmp_path)
    assert (info.value.problems[0].line, info.value.problems[0].column) == (1, 15)


def test_not_utf8(tmp_path):
    (tmp_path / "ml.yaml").write_bytes(b"hardwareType: cpu\nx: \xff\xfe\n")
    with pytest.raises(ConfigError) as info:
        load_lab_config(tmp_path)
    (problem,) = info.value.problems
    assert (problem.line, problem.column) == (2, 4) and "UTF-8" in problem.message


# --- errors, each with line, column and hint ---------------------------------------------

@pytest.mark.parametrize("text, line, column, words", [
    # unparsable YAML: position from the parser's mark
    ("a: b\n  c: d\n", 2, 4, "not valid YAML"),
    ("inputs: [a\nparameters: ]\n", 2, 11, "not valid YAML"),
    ("exclude: *.pyc\n", 1, 11, "not valid YAML"),
    ("hardwareType: cpu\nparameters:\n\t- pass-as: x\n", 3, 1, "not valid YAML"),
    ("a: 1\n---\nb: 2\n", 2, 1, "single document"),
    ("hardwareType: \x01\n", 1, 15, "control characters"),
    ("[" * 2000, 1, 1001, "nesting depth"),
    ("a: \ud800", 1, 1, "could not be read"),  # a lone surrogate cannot even be encoded
    ("!!python/object/apply:os.system [id]\n", 1, 1, "top level must be a mapping"),
    # top level not a mapping
    ("- a\n- b\n", 1, 1, "top level must be a mapping"),
    ("just text\n", 1, 1, "top level must be a mapping"),
    # wrong types
    ("dockerImageId: [a]\n", 1, 16, "dockerImageId must be a string"),
    ("dockerImageId: 12\n", 1, 16, "dockerImageId must be a string"),
    ("dockerImageId: ''\n", 1, 16, "dockerImageId is empty"),
    ("parameters: --iter=10\n", 1, 13, "parameters must be a list"),
    ("parameters: {pass-as: x}\n", 1, 13, "parameters must be a list"),
    ("inputs: data.csv\n", 1, 9, "inputs must be a list"),
    ("exclude: {a: b}\n", 1, 10, "exclude must be a list"),
    ("exclude: [a, [b]]\n", 1, 14, "exclude pattern must be a string"),
    ("exclude: [a, '']\n", 1, 14, "exclude pattern is empty"),
    ("cli: [exclude]\n", 1, 6, "cli must be a mapping"),
    ("hardwareType: tpu\n", 1, 15, "hardwareType must be cpu or gpu"),
    ("hardwareType: true\n", 1, 15, "hardwareType must be a string"),
    # parameters items
    ("parameters:\n  - '--iter=10'\n", 2, 5, "must be a mapping"),
    ("parameters:\n  - pas-as: x\n", 2, 5, "has no pass-as"),
    ("parameters:\n  - pass-as:\n", 2, 13, "pass-as must be a string or a number"),
    ("parameters:\n  - pass-as: [a, b]\n", 2, 14, "pass-as must be a string or a number"),
    ("parameters:\n  - pass-as: yes\n", 2, 14, "pass-as must be a string or a number"),
    ("parameters:\n  - pass-as: \"--name 'unbalanced\"\n", 2, 14, "cannot be split"),
    ("parameters:\n  - pass-as: '--a \"b'\n", 2, 14, "cannot be split"),
    ("parameters:\n  - pass-as: 'trailing\\'\n", 2, 14, "cannot be split"),
    ("parameters:\n  - pass-as: \"a\\0b\"\n", 2, 14, "NUL"),
    # inputs items
    ("inputs:\n  - url: https://e.org/d.npz\n", 2, 5, "has no name"),
    ("inputs:\n  - name: d.npz\n", 2, 5, "has no url"),
    ("inputs:\n  - name: 5\n    url: https://e.org/5\n", 2, 11, "name must be a string"),
    ("inputs:\n  - name: a\n    url: [x]\n", 3, 10, "url must be a string"),
    ("inputs:\n  - data.csv\n", 2, 5, "must be a mapping"),
    ("inputs:\n  - {name: a, url: 'http://e/a'}\n  - {name: a, url: 'http://e/b'}\n", 3, 12,
     "duplicate input name"),
    ("inputs:\n  - name: a\n    url: ftp://e.org/a\n", 3, 10, "unsupported URL scheme 'ftp'"),
    ("inputs:\n  - name: a\n    url: javascript:alert(1)\n", 3, 10, "unsupported URL scheme"),
    ("inputs:\n  - name: a\n    url: 'http://[::1'\n", 3, 10, "not valid"),
    ("inputs:\n  - name: a\n    url: 'https:/path'\n", 3, 10, "has no host"),
    # duplicate keys
    ("hardwareType: cpu\nhardwareType: gpu\n", 2, 1, "duplicate key"),
])
def test_each_error_has_position_and_hint(text, line, column, words):
    problem = only_error(text)
    assert (problem.line, problem.column) == (line, column), problem
    assert words in problem.message, problem


def test_url_without_scheme_suggests_https_or_file():
    problem = only_error("inputs:\n  - name: a.csv\n    url: data/a.csv\n")
    assert "no scheme" in problem.message and "https://" in problem.hint and "file://" in problem.hint


def test_url_schemes_allowed_case_insensitively():
    config = parse_config("inputs:\n  - {name: a, url: 'HTTPS://E.org/a'}\n  - {name: b, url: 'File:///b'}\n"
                          "  - {name: c, url: 'http://e/c'}\n")
    assert [i.name for i in config.inputs] == ["a", "b", "c"]


def test_missing_name_hint_suggests_the_urls_file_name():
    assert "mnist.npz" in only_error("inputs:\n  - url: https://e.org/x/mnist.npz\n").hint


def test_tab_hint():
    assert "tabs" in only_error("parameters:\n\t- pass-as: x\n").hint


def test_many_errors_reported_together_in_file_order():
    text = """\
        dockerImageId: ['x']
        hardwareType: tpu
        parameters:
          - pass-as: "'open"
          - flag: 1
        inputs:
          - name: ../evil
            url: ftp://x
          - name: ok
        exclude: 5
        """
    problems = errors_of(text)
    assert [(p.line, p.column) for p in problems] == [
        (1, 16), (2, 15), (4, 14), (5, 5), (7, 11), (8, 10), (9, 5), (10, 10)]
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text))
    lines = str(info.value).splitlines()
    assert lines == [str(p) for p in problems]
    assert lines[1] == "ml.yaml:2:15: hardwareType must be cpu or gpu, not 'tpu' (use cpu or gpu)"


def test_problem_str():
    assert str(Problem(3, 7, "bad", "fix it", "error")) == "ml.yaml:3:7: bad (fix it)"
    assert str(Problem(1, 1, "odd", "", "warning")) == "ml.yaml:1:1: odd"


# --- input names -----------------------------------------------------------------------

ESCAPING_NAMES = ["../x", "/etc/passwd", "a/b", "..", ".", "a\\b", "..\\x", "a\0b", "", "x/", "a" * 256, "\x85", "a\u2028b", "a\nb", "\x7f",
                  "é" * 128]


@pytest.mark.parametrize("name", ESCAPING_NAMES)
def test_escaping_input_names_are_errors(name):
    assert validate_input_name(name)
    text = yaml.safe_dump({"inputs": [{"name": name, "url": "https://e.org/f"}]})
    problem = only_error(text)
    assert (problem.line, problem.column) == (2, 9)
    assert problem.message == validate_input_name(name)


@pytest.mark.parametrize("name", ["data.csv", "..hidden", ".env", "a b", "日本.txt", "a" * 255, "x..y"])
def test_plain_input_names_are_fine(name):
    assert validate_input_name(name) is None
    assert parse_config(yaml.safe_dump({"inputs": [{"name": name, "url": "file:///f"}]})).inputs[0].name == name


def test_names_differing_only_in_case_warn():
    config = parse_config("inputs:\n  - {name: A.csv, url: 'http://e/a'}\n  - {name: a.csv, url: 'http://e/b'}\n")
    (warning,) = config.warnings
    assert (warning.line, warning.severity) == (3, "warning") and "case" in warning.message


# --- warnings ----------------------------------------------------------------------------

def test_unknown_keys_are_warnings_with_suggestions():
    config = parse_config(textwrap.dedent("""\
        mounts:
          - name: data
        hardwaretype: gpu
        dockerImageID: x
        parameters:
          - pass-as: a
            pass_as: b
        inputs:
          - name: a
            url: http://e/a
            sha256: 00
        cli:
          exclude: [x]
          debug: true
        zzz: 1
        """))
    got = [(w.line, w.column, w.severity) for w in config.warnings]
    assert got == [(1, 1, "warning"), (3, 1, "warning"), (4, 1, "warning"), (7, 5, "warning"),
                   (11, 5, "warning"), (14, 3, "warning"), (15, 1, "warning")]
    hints = [w.hint for w in config.warnings]
    assert "inputs" in hints[0] and "mldesk" in config.warnings[0].message
    assert hints[1] == "did you mean 'hardwareType'?"
    assert hints[2] == "did you mean 'dockerImageId'?"
    assert hints[3] == "did you mean 'pass-as'?"
    assert "known keys" in hints[6]
    assert config.hardware_type == "cpu" and config.docker_image_id == DEFAULT_IMAGE
    assert config.parameters == ("a",) and config.exclude == ("x",)


# --- argv: shell metacharacters reach main.py verbatim, never through a shell -------------

ARGV_CASES = [
    ("; rm -rf ~", [";", "rm", "-rf", "~"]),
    ("$(id)", ["$(id)"]),
    ("`id`", ["`id`"]),
    ("a && b || c", ["a", "&&", "b", "||", "c"]),
    ("x | y", ["x", "|", "y"]),
    ("> out.txt < in.txt 2>&1", [">", "out.txt", "<", "in.txt", "2>&1"]),
    ("\"double quoted\" 'single quoted'", ["double quoted", "single quoted"]),
    ('"escaped \\"quotes\\""', ['escaped "quotes"']),
    ("--text='it'\"'\"'s'", ["--text=it's"]),
    ("it\\'s", ["it's"]),
    ("line1\nline2", ["line1", "line2"]),
    ("'multi\nline'", ["multi\nline"]),
    ("ünïcødé ✓ 日本語 🚀", ["ünïcødé", "✓", "日本語", "🚀"]),
    ("$HOME ${PATH} *.py ~ ?", ["$HOME", "${PATH}", "*.py", "~", "?"]),
    ("#not-a-comment", ["#not-a-comment"]),
    ("--iter=10", ["--iter=10"]),
    ("", []),
    ("  spaced   out  ", ["spaced", "out"]),
    ("'' \"\"", ["", ""]),
]

ECHO_ARGV = "import json, sys\nprint(json.dumps(sys.argv[1:]))\n"


def test_argv_reaches_a_real_process_verbatim(tmp_path):
    pwned = tmp_path / "pwned"
    hostile = [f"$(touch {pwned})", f"; touch {pwned}", f"`touch {pwned}`", f"&& touch {pwned}"]
    text = yaml.safe_dump({"parameters": [{"pass-as": p} for p, _ in ARGV_CASES] + [{"pass-as": h} for h in hostile]},
                          allow_unicode=True)
    config = parse_config(text)
    expected = [word for _, words in ARGV_CASES for word in words]
    assert config.argv()[: len(expected)] == expected
    script = tmp_path / "echo_argv.py"
    script.write_text(ECHO_ARGV)
    result = subprocess.run([sys.executable, str(script), *config.argv()], capture_output=True, text=True,
                            cwd=tmp_path, check=True, env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    assert json.loads(result.stdout) == config.argv()
    assert not pwned.exists()


@pytest.mark.parametrize("pass_as, words", ARGV_CASES)
def test_each_pass_as_splits_like_a_posix_shell(pass_as, words):
    assert parse_config(yaml.safe_dump({"parameters": [{"pass-as": pass_as}]})).argv() == words


# --- writing inputs back -------------------------------------------------------------------

LAB_YAML = """\
# My experiment: do not lose this comment
hardwareType: gpu   # the big card
parameters:
    - pass-as: '--iter=10'
inputs:
    - name: a.csv   # first input
      url: "https://e.org/a.csv"
dockerImageId: keras_v2-0-x_python_3-1
"""


def test_add_inputs_keeps_comments_order_and_style(tmp_path):
    (tmp_path / "ml.yaml").write_text(LAB_YAML)
    add_inputs(tmp_path, [InputSpec("b.csv", "file:///data/b.csv"), InputSpec("c.npz", "https://e.org/c.npz")])
    assert (tmp_path / "ml.yaml").read_text() == LAB_YAML.replace("dockerImageId", """\
    - name: b.csv
      url: file:///data/b.csv
    - name: c.npz
      url: https://e.org/c.npz
dockerImageId""")
    config = load_lab_config(tmp_path)
    assert [i.name for i in config.inputs] == ["a.csv", "b.csv", "c.npz"]
    assert config.hardware_type == "gpu" and config.parameters == ("--iter=10",)


def test_add_inputs_creates_the_file(tmp_path):
    add_inputs(tmp_path, [InputSpec("d.bin", "https://e.org/d.bin")])
    assert (tmp_path / "ml.yaml").read_text() == "inputs:\n- name: d.bin\n  url: https://e.org/d.bin\n"
    assert load_lab_config(tmp_path).inputs == (InputSpec("d.bin", "https://e.org/d.bin"),)


def test_add_inputs_to_comment_only_and_empty_list_files(tmp_path):
    (tmp_path / "ml.yaml").write_text("# nothing yet\n")
    add_inputs(tmp_path, [InputSpec("d", "http://e/d")])
    assert (tmp_path / "ml.yaml").read_text() == "# nothing yet\ninputs:\n- name: d\n  url: http://e/d\n"
    (tmp_path / "ml.yaml").write_text("# c1\ninputs: []   # none\n\n# c2\nhardwareType: cpu\n")
    add_inputs(tmp_path, [InputSpec("d", "http://e/d")])
    text = (tmp_path / "ml.yaml").read_text()
    assert "# c1" in text and "# c2" in text and "- name: d\n" in text
    assert text.index("inputs") < text.index("hardwareType")
    assert load_lab_config(tmp_path).inputs == (InputSpec("d", "http://e/d"),)


def test_add_inputs_keeps_bom_crlf_and_case_of_file_name(tmp_path):
    (tmp_path / "ML.YAML").write_bytes(b"\xef\xbb\xbf# c\r\ninputs:\r\n- name: a\r\n  url: http://e/a\r\n")
    add_inputs(tmp_path, [InputSpec("b", "http://e/b")])
    assert not (tmp_path / "ml.yaml").exists() or (tmp_path / "ml.yaml").samefile(tmp_path / "ML.YAML")
    assert (tmp_path / "ML.YAML").read_bytes() == (
        b"\xef\xbb\xbf# c\r\ninputs:\r\n- name: a\r\n  url: http://e/a\r\n- name: b\r\n  url: http://e/b\r\n")
    assert [p.name for p in tmp_path.iterdir()] == ["ML.YAML"]


@pytest.mark.parametrize("entries, words", [
    ([InputSpec("a.csv", "https://e.org/other.csv")], "duplicate input name"),
    ([InputSpec("x", "http://e/x"), InputSpec("x", "http://e/y")], "duplicate input name"),
    ([InputSpec("../x", "http://e/x")], "plain file name"),
    ([InputSpec("x", "ftp://e/x")], "unsupported URL scheme"),
])
def test_add_inputs_refuses_bad_entries_and_leaves_the_file(tmp_path, entries, words):
    (tmp_path / "ml.yaml").write_text(LAB_YAML)
    with pytest.raises(ConfigError) as info:
        add_inputs(tmp_path, entries)
    assert words in str(info.value)
    assert (tmp_path / "ml.yaml").read_text() == LAB_YAML


def test_edits_refuse_a_broken_file(tmp_path):
    (tmp_path / "ml.yaml").write_text("hardwareType: [\n")
    with pytest.raises(ConfigError):
        add_inputs(tmp_path, [InputSpec("x", "http://e/x")])
    assert (tmp_path / "ml.yaml").read_text() == "hardwareType: [\n"
    assert [p.name for p in tmp_path.iterdir()] == ["ml.yaml"]


def test_remove_and_replace_input(tmp_path):
    (tmp_path / "ml.yaml").write_text(LAB_YAML)
    add_inputs(tmp_path, [InputSpec("b.csv", "http://e/b")])
    replace_input(tmp_path, "a.csv", InputSpec("z.csv", "file:///z.csv"))
    text = (tmp_path / "ml.yaml").read_text()
    assert "    - name: z.csv   # first input\n      url: \"file:///z.csv\"\n" in text
    remove_input(tmp_path, "b.csv")
    assert (tmp_path / "ml.yaml").read_text() == LAB_YAML.replace("a.csv", "z.csv").replace(
        "https://e.org/z.csv", "file:///z.csv")
    with pytest.raises(ConfigError, match="no input named"):
        remove_input(tmp_path, "nope")
    with pytest.raises(ConfigError, match="duplicate"):
        add_inputs(tmp_path, [InputSpec("b", "http://e/b")]) or replace_input(
            tmp_path, "b", InputSpec("z.csv", "http://e/z"))
    assert load_lab_config(tmp_path).inputs == (InputSpec("z.csv", "file:///z.csv"), InputSpec("b", "http://e/b"))


# --- fuzzing: parse_config returns a LabConfig or raises ConfigError, nothing else -------

KEYS = st.sampled_from(["dockerImageId", "hardwareType", "parameters", "inputs", "exclude", "cli", "mounts",
                        "pass-as", "name", "url"]) | st.text(max_size=8)
LEAVES = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
          | st.sampled_from(["cpu", "GPU", "../x", "https://e.org/f", "file:///f", "'", "a b", ""]))
TREES = st.recursive(LEAVES, lambda children: st.lists(children, max_size=4)
                     | st.dictionaries(KEYS, children, max_size=4), max_leaves=20)


def parses_or_config_error(text: str) -> None:
    try:
        config = parse_config(text)
    except ConfigError as exc:
        assert exc.problems and all(p.line >= 1 and p.column >= 1 and p.severity == "error" for p in exc.problems)
        assert len(str(exc).splitlines()) >= len(exc.problems)
    else:
        assert isinstance(config, LabConfig) and config.hardware_type in ("cpu", "gpu")
        config.argv()


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_fuzz_arbitrary_text(text):
    parses_or_config_error(text)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(KEYS, TREES, max_size=6) | TREES)
def test_fuzz_yaml_structures(data):
    parses_or_config_error(yaml.safe_dump(data, allow_unicode=True))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=30), max_size=6))
def test_fuzz_parameters_split_like_shlex(values):
    import shlex

    try:
        expected = [word for v in values for word in shlex.split(v)]
    except ValueError:
        expected = None
    try:
        config = parse_config(yaml.safe_dump({"parameters": [{"pass-as": v} for v in values]}))
    except ConfigError:
        assert expected is None or any("\0" in v for v in values)
    else:
        assert config.argv() == expected and config.parameters == tuple(values)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.text(min_size=1, max_size=12), st.sampled_from(["http://e/x", "file:///y"])),
                max_size=4))
def test_fuzz_add_inputs_round_trip(pairs):
    entries = [InputSpec(name, url) for name, url in pairs]
    with tempfile.TemporaryDirectory() as lab:
        Path(lab, "ml.yaml").write_text(LAB_YAML)
        bad = any(validate_input_name(e.name) for e in entries) or len({e.name for e in entries} | {"a.csv"}) != (
            len(entries) + 1)
        try:
            add_inputs(lab, entries)
        except ConfigError:
            assert bad
            assert Path(lab, "ml.yaml").read_text() == LAB_YAML
        else:
            assert not bad
            assert load_lab_config(lab).inputs[1:] == tuple(entries)
            assert Path(lab, "ml.yaml").read_text().startswith("# My experiment: do not lose this comment\n")


def test_remove_last_input_keeps_comment_and_stays_valid(tmp_path):
    (tmp_path / "ml.yaml").write_text(
        "# my lab\ninputs:\n  # the labels\n  - name: labels.csv\n    url: https://example.org/labels.csv\n"
        "parameters: []\n")
    remove_input(tmp_path, "labels.csv")
    text = (tmp_path / "ml.yaml").read_text()
    assert "# my lab" in text and "# the labels" in text
    assert load_lab_config(tmp_path).inputs == ()


@pytest.mark.parametrize("name", ["\x85", "a\u2028b", "x\u2029", "tab\there"])
def test_names_yaml_would_rewrite_are_refused_before_writing(tmp_path, name):
    """Validation and the YAML writer agree on every Unicode line break: NEL/LS/PS are
    refused up front instead of being written and read back as other text."""
    (tmp_path / "ml.yaml").write_text(LAB_YAML)
    with pytest.raises(ConfigError, match="control character"):
        add_inputs(tmp_path, [InputSpec(name, "http://e/x")])
    assert (tmp_path / "ml.yaml").read_text() == LAB_YAML
# -- metrics: ----------------------------------------------------------------------
def test_metrics_section():
    from mldesk.core.metrics import MetricsConfig

    cfg = parse_config(textwrap.dedent("""\
        metrics:
          patterns:
            - '(?P<key>\\w+) is (?P<value>\\S+)'
            - {regex: 'accuracy (?P<value>[\\d.]+)', key: val/acc}
          replace_defaults: true
          ignore: [v_num, 'time/*']
          primary: {key: val/acc, goal: max}
        """))
    assert cfg.metrics == MetricsConfig(
        patterns=((r"(?P<key>\w+) is (?P<value>\S+)", None), (r"accuracy (?P<value>[\d.]+)", "val/acc")),
        replace_defaults=True, ignore=("v_num", "time/*"), primary="val/acc", goal="max")
    assert parse_config("metrics: {primary: loss}").metrics == MetricsConfig(primary="loss")
    assert parse_config("parameters: []").metrics == MetricsConfig()


@pytest.mark.parametrize("text,line,column,words", [
    ("metrics: [1]", 1, 10, "must be a mapping"),
    ("metrics:\n  patterns: ['(']", 2, 14, "not a valid regular expression"),
    ("metrics:\n  patterns:\n    - 'a(?P<value>1)'", 3, 7, "(?P<key>"),
    ("metrics:\n  patterns:\n    - '(?P<key>a)'", 3, 7, "(?P<value>"),
    ("metrics:\n  patterns:\n    - {key: acc}", 3, 7, "no regex"),
    ("metrics:\n  replace_defaults: maybe", 2, 21, "true/false"),
    ("metrics:\n  ignore: [[1]]", 2, 12, "pattern must be a string"),
    ("metrics:\n  primary: {key: acc, goal: up}", 2, 29, "min or max"),
    ("metrics:\n  primary: {goal: max}", 2, 12, "no key"),
])
def test_metrics_errors_have_positions(text, line, column, words):
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    problem = info.value.problems[0]
    assert (problem.line, problem.column) == (line, column), str(problem)
    assert words in problem.message and problem.hint


def test_unknown_metrics_key_is_a_warning():
    cfg = parse_config("metrics:\n  primry: loss\n")
    assert "did you mean 'primary'" in str(cfg.warnings[0])




def test_ml_yaml_that_is_a_folder_is_an_error(tmp_path):
    (tmp_path / "ml.yaml").mkdir()
    with pytest.raises(ConfigError, match="is not a file"):
        load_lab_config(tmp_path)


def test_huge_ml_yaml_is_refused_before_parsing(tmp_path):
    import time

    from mldesk.core.labconfig import MAX_CONFIG_BYTES

    (tmp_path / "ml.yaml").write_text("parameters:\n" + "  - pass-as: '--x=1'\n" * (MAX_CONFIG_BYTES // 10))
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match="at most"):
        load_lab_config(tmp_path)
    assert time.monotonic() - t0 < 1.0


def test_parameter_count_is_capped(tmp_path):
    from mldesk.core.labconfig import MAX_PARAMETERS

    (tmp_path / "ml.yaml").write_text("parameters:\n" + "  - pass-as: x\n" * (MAX_PARAMETERS + 1))
    with pytest.raises(ConfigError, match="at most 10000"):
        load_lab_config(tmp_path)


@pytest.mark.parametrize("image", ["--help", "-v", "a b", "img\n--privileged", "UPPER CASE", ""])
def test_image_reference_that_is_not_one_is_an_error(image):
    with pytest.raises(ConfigError):
        parse_config(f"dockerImageId: {image!r}\n")


@pytest.mark.parametrize("image", ["python:3.11-slim", "registry.example.org:5000/team/img:v1",
                                   "keras_v2-0-x_python_3-1", "busybox@sha256:" + "a" * 64])
def test_image_references_that_are_fine(image):
    assert parse_config(f"dockerImageId: '{image}'\n").docker_image_id == image


def test_network_per_lab():
    assert parse_config("network: none\n").network == "none"
    assert parse_config("hardwareType: cpu\n").network is None
    with pytest.raises(ConfigError, match="none, bridge or host"):
        parse_config("network: internet\n")
