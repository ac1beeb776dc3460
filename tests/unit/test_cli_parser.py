"""The CLI parses a command line that starts with a command's name with that
command's parser alone (``build_parser(only=NAME)``): the same result, the same help
and the same errors as the whole parser gives."""

from __future__ import annotations

import argparse
import contextlib
import io

import pytest

from mldesk.cli.main import build_parser


def commands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def outcome(parser: argparse.ArgumentParser, argv: list[str]):
    """(namespace without the functions, exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code, ns = None, None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            ns = parser.parse_args(argv)
        except SystemExit as exc:
            code = exc.code
    if ns is not None:
        ns = {k: (v.__name__ if callable(v) else v) for k, v in vars(ns).items()}
    return ns, code, out.getvalue(), err.getvalue()


def test_every_command_has_its_own_parser_with_the_same_help():
    names = commands()
    assert {"run", "ls", "logs", "hosts", "metrics", "settings", "open"} <= set(names)
    for name, full in names.items():
        alone = build_parser(only=name)
        assert alone is not None, name
        assert outcome(alone, [name, "--help"]) == outcome(build_parser(), [name, "--help"])
        assert outcome(alone, [name, "--help"])[2] == full.format_help()


@pytest.mark.parametrize("argv", [
    ["run"],
    ["run", "lab", "--runtime", "docker", "-d", "--gpus", "0,2", "--name", "x", "--json"],
    ["run", "lab", "--runtime", "kubernetes"],
    ["run", "lab", "--bogus"],
    ["run", "lab", "--set", "lr=0.1", "--sweep", "a=[1,2]"],
    ["restart", "abc", "--detach"],
    ["ls", "--json", "--lab", "l"],
    ["logs", "x", "-f", "--tail", "3"],
    ["logs", "x", "--tail", "many"],
    ["stats", "x", "--json", "--csv"],
    ["hosts", "ls", "--json"],
    ["hosts", "add", "gpu1", "ssh://u@h:22", "--runtime", "slurm"],
    ["hosts"],
    ["metrics", "x", "--key", "loss"],
    ["compare", "--sweep", "s"],
    ["diff", "a", "b", "--code"],
    ["stop", "a", "b", "--no-wait"],
    ["settings", "stop_grace", "3"],
    ["open"],
    ["init", "d", "--template", "xor"],
])
def test_same_result_and_errors_as_the_whole_parser(argv):
    alone = build_parser(only=argv[0])
    assert alone is not None
    assert outcome(alone, argv) == outcome(build_parser(), argv)


def test_anything_else_takes_the_whole_parser():
    assert build_parser(only="runn") is None
    assert build_parser(only="") is None
    # and main() then reports it as the whole parser does
    from mldesk.cli.main import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exc:
        main(["runn", "lab"])
    assert exc.value.code == 2 and "invalid choice: 'runn'" in err.getvalue() and "'run'" in err.getvalue()
