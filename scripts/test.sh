#!/usr/bin/env bash
# The one test command (README and CI): set up, lint, type-check, run the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
# pytest exits 5 when it collected no tests; set -e makes that a failure.
.venv/bin/python -m pytest -m "not slow" -q "$@"
