"""The floors hold: the import-linter contracts pass on the tree, and each one fails
when a deliberate violation is planted in a copy of the package."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app" / "mldesk"
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(app_root: Path, config: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(app_root))
    return subprocess.run([str(LINT), "--no-cache", str(config)], cwd=app_root.parent,
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory):
    """A copy of app/mldesk and pyproject.toml that a test may break."""
    base = tmp_path_factory.mktemp("arch")
    shutil.copytree(APP, base / "app" / "mldesk", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", base / "pyproject.toml")
    return base


def test_contracts_hold_on_the_tree():
    proc = _lint(ROOT / "app", ROOT / "pyproject.toml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the report lists the floors, top to bottom (the layers contract's name)
    report = " ".join(proc.stdout.split())
    assert ("floors: launcher > smoke > ui | cli > engine > runtimes > core | templates | resources > agent KEPT"
            in report), report
    assert "4 kept, 0 broken" in proc.stdout


# (file to plant in, line to add, the contract that must break)
VIOLATIONS = [
    ("agent/logstore.py", "import mldesk.core.store", "floors"),
    ("core/paths.py", "import mldesk.engine.facade", "floors"),
    ("runtimes/base.py", "from mldesk.engine import facade", "floors"),
    ("ui/fmt.py", "import mldesk.cli.main", "floors"),
    ("cli/common.py", "import mldesk.ui", "floors"),
    ("cli/common.py", "from mldesk.core import snapshots", "front ends reach lower floors only"),
    ("core/store.py", "import PySide6.QtCore", "Qt (PySide6"),
    ("engine/queries.py", "import qasync", "Qt (PySide6"),
    ("agent/inputs.py", "import yaml", "standard library only"),
]


@pytest.mark.parametrize("rel,line,contract", VIOLATIONS, ids=[f"{v[0]}:{v[1]}" for v in VIOLATIONS])
def test_a_planted_violation_breaks_its_contract(tree_copy, rel, line, contract):
    path = tree_copy / "app" / "mldesk" / rel
    original = path.read_text()
    try:
        path.write_text(original + f"\n{line}  # planted by test_architecture\n")
        proc = _lint(tree_copy / "app", tree_copy / "pyproject.toml")
    finally:
        path.write_text(original)
    assert proc.returncode != 0, proc.stdout
    broken = proc.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, proc.stdout
    assert "planted" not in original


def test_every_module_opens_with_a_docstring():
    """Each module says in its first line what it owns (docs/ARCHITECTURE.md)."""
    missing = []
    for path in sorted(APP.rglob("*.py")):
        if "templates" in path.relative_to(APP).parts[:1]:
            continue  # lab templates are user code
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        if not doc or not doc.strip():
            missing.append(str(path.relative_to(APP)))
    assert not missing, f"modules without a docstring: {missing}"
