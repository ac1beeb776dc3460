"""The window's imports: ``mldesk.ui`` reaches the rest of mldesk only through ``mldesk.engine``."""

from __future__ import annotations

import ast
from pathlib import Path

import mldesk.ui

UI = Path(mldesk.ui.__file__).parent
ALLOWED = ("mldesk.ui", "mldesk.engine", "mldesk.resources")


def forbidden_imports(source: str) -> list[str]:
    """The ``mldesk.*`` modules ``source`` imports that are not the engine or the UI."""
    bad = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] if node.module != "mldesk" else [f"mldesk.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if (name == "mldesk" or name.startswith("mldesk.")) and name != "mldesk" and \
                    not any(name == a or name.startswith(a + ".") for a in ALLOWED):
                bad.append(name)
    return bad


def test_the_checker_catches_a_violation():
    assert forbidden_imports("from mldesk.core import labconfig\nimport mldesk.agent.logstore\n"
                             "def f():\n    from mldesk import runtimes\n") == [
        "mldesk.core", "mldesk.agent.logstore", "mldesk.runtimes"]
    assert forbidden_imports("from mldesk.engine import labs\nfrom mldesk.ui.qt import QtCore\n") == []


def test_ui_imports_only_the_engine():
    found = {p.name: forbidden_imports(p.read_text()) for p in sorted(UI.glob("*.py"))}
    assert {k: v for k, v in found.items() if v} == {}


def test_every_ui_module_says_what_it_owns():
    for p in sorted(UI.glob("*.py")):
        doc = ast.get_docstring(ast.parse(p.read_text()))
        assert doc and doc.strip(), f"{p.name} has no docstring"
