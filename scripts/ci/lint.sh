#!/usr/bin/env bash
# Static checks: the import-linter contracts (pyproject: the floors, front ends only
# through the engine, Qt only in the UI, the agent stdlib-only), byte-compiling the app,
# and bash syntax of our scripts.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

echo "[lint] import-linter"
# PYTHONPATH too, so the contract is checked even before `pip install -e`.
PYTHONPATH=app${PYTHONPATH:+:$PYTHONPATH} .venv/bin/lint-imports --no-cache
echo "[lint] compileall app"
.venv/bin/python -m compileall -q app
echo "[lint] bash -n"
for f in scripts/*.sh scripts/ci/*.sh .ci/run; do
  [[ -f $f ]] && bash -n "$f"
done
echo "[lint] ok"
