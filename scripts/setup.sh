#!/usr/bin/env bash
# Create .venv (if needed) and install paraminspect with its dev extra.
# Idempotent and quick when nothing changed: a stamp records what was installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
stamp=.venv/.paraminspect-installed
want=$(cat pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing paraminspect[dev] into .venv (torch pinned to 2.13.0, CPU)" >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
  echo "$want" > "$stamp"
fi
# Byte-compile the package: an editable install leaves it as source, and where
# PYTHONDONTWRITEBYTECODE is set every run would compile ~50 modules again
# (about 20 ms of each command's start-up). Only changed files are recompiled.
.venv/bin/python -m compileall -q paraminspect >/dev/null
