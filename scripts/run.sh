#!/usr/bin/env bash
# Set up .venv and run the main job on the shipped defaults and checkpoints.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup_venv.sh
export CRYSTALRL_DATA_DIR="${CRYSTALRL_DATA_DIR:-$root/../shared/datasets}"
# Until the RL stage ships, the main job is the best stage there is: reconstruct MP-20
# test crystals with the shipped VAE and report the StructureMatcher match rate.
.venv/bin/python -m crystalrl.evaluate_vae vae_ckpt_path='${hub:mp_20_vae}' split=test num_structures=200 "$@"
