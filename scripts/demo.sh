#!/usr/bin/env bash
# The demo (README): set up, then look at the chapter's sample models.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
pi=.venv/bin/paraminspect
run() { printf '\n$ paraminspect %s\n' "$*"; "$pi" "$@"; }
run tree sample_models/rgnet.pt
run shapes sample_models/tied.pt
run tree sample_models/tied.safetensors
run tree sample_models/trainer_checkpoint.pt --depth 2
run shapes sample_models/mlp.safetensors --format json
