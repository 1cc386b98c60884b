#!/usr/bin/env bash
# Set up .venv and run the main job on the shipped defaults and checkpoints.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup_venv.sh
export CRYSTALRL_DATA_DIR="${CRYSTALRL_DATA_DIR:-$root/../shared/datasets}"
# The main job: GRPO fine-tuning of the shipped mp_20_ldm_base toward a user reward
# (atomic density of valid crystals; needs no reference data), a few minutes on 2 cores.
# Extra arguments are Hydra overrides, e.g. scripts/run.sh trainer.max_steps=20
.venv/bin/python -m crystalrl.train_rl experiment=rl_custom_reward "$@"
