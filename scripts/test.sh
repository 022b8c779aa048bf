#!/usr/bin/env bash
# The one test command (README and CI): set up, lint, type-check, run the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
# The layout's contracts ([tool.importlinter] in pyproject.toml); --no-cache: nothing left in the tree.
.venv/bin/lint-imports --no-cache
# pytest exits 5 when it collected no tests; set -e makes that a failure.
.venv/bin/python -m pytest -m "not slow" -q "$@"
