#!/usr/bin/env bash
# The demo (README): set up, then look at the chapter's sample models.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
pi=$PWD/.venv/bin/paraminspect
run() {
  printf '\n$ paraminspect %s\n' "$*"
  local status=0
  "$pi" "$@" || status=$?
  [ "$status" -eq 0 ] || printf '[exit %s]\n' "$status"
}
run tree sample_models/rgnet.pt --depth 3
run tree sample_models/rgnet.pt --modules
run shapes sample_models/tied.pt
run tree sample_models/trainer_checkpoint.pt --depth 2
run get sample_models/rgnet.pt '[0][1][0].bias'
run stats sample_models/mlp.pt
run diff sample_models/tied.pt sample_models/tied.safetensors
run scan sample_models/trainer_checkpoint.pt --unsafe-only
# Edits write to a scratch directory, never into sample_models/.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
run set sample_models/mlp.pt 2.bias 0 -o "$scratch/mlp0.pt"
run diff sample_models/mlp.pt "$scratch/mlp0.pt"
run convert sample_models/tied.pt "$scratch/tied.safetensors"
run cast sample_models/mlp.pt --dtype bfloat16 -o "$scratch/mlp_bf16.safetensors"
run diff sample_models/mlp.pt "$scratch/mlp_bf16.safetensors"
# This round: how far each tensor moved, file metadata, a weights lockfile, value policies.
run diff sample_models/mlp.pt "$scratch/mlp_bf16.safetensors" --metrics --sort-by rel_l2 --format markdown
run set-meta sample_models/mlp.safetensors note "fine-tuned on run 7" -o "$scratch/mlp_noted.safetensors"
run meta "$scratch/mlp_noted.safetensors"
run hash sample_models/mlp.safetensors
"$pi" hash sample_models/mlp.safetensors --format json > "$scratch/mlp.lock.json"  # a lockfile
run diff "$scratch/mlp.lock.json" sample_models/mlp.pt
run check sample_models/mlp.pt --finite --max-abs 10 --no-all-zero
