#!/usr/bin/env bash
# Same RL run, two settings: does an option change what GRPO achieves, and how long it takes?
#
#   benchmarks/rl_custom_reward_ab.sh "SEEDS" OVERRIDE_A OVERRIDE_B
#   e.g. benchmarks/rl_custom_reward_ab.sh "0 1" rl_module.rl_configs.policy_precision=32 \
#        rl_module.rl_configs.policy_precision=bf16-mixed
#
# For each seed and setting: the 60-step experiment=rl_custom_reward run (wall seconds),
# then 256 DDIM-50 samples of its checkpoint and their mean atomic density and structural
# validity; one line per run, then the base model's line for the gain. Runs one at a time
# (two torch jobs on a small CPU slow each other many times over). Needs CRYSTALRL_DATA_DIR.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py=.venv/bin/python
seeds="$1"
shift
out=out/rl_custom_reward_ab
mkdir -p "$out"

density() {  # samples dir -> "density validity"
  $py -m crystalrl.evaluate structure_path="$1" reference_dataset=null \
    'metrics=[atomic_density,structure_validity]' --json 2>/dev/null |
    $py -c 'import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); print(round(d["avg_atomic_density"], 4), round(d["avg_structure_validity"], 3))'
}

sample() {  # checkpoint, output dir
  $py -m crystalrl.sample ldm_ckpt_path="$1" num_samples=256 batch_size=256 sampler=ddim \
    sampling_steps=50 seed=0 output_dir="$2" >/dev/null 2>&1
}

printf '%-55s %5s %9s %8s %8s\n' setting seed wall_s density valid
for seed in $seeds; do
  for setting in "$@"; do
    tag="$(echo "$setting" | tr -c 'A-Za-z0-9_.-' '_')_s$seed"
    rm -rf "logs/train_rl/ab_$tag"  # a fresh run, not a resumed one
    start=$(date +%s.%N)
    $py -m crystalrl.train_rl experiment=rl_custom_reward run_name="ab_$tag" seed="$seed" \
      callbacks.progress_bar=null "$setting" >"$out/$tag.log" 2>&1
    wall=$(echo "$(date +%s.%N) - $start" | bc)
    sample "logs/train_rl/ab_$tag/rl_custom_reward.ckpt" "$out/$tag"
    printf '%-55s %5s %9.1f %8s %8s\n' "$setting" "$seed" "$wall" $(density "$out/$tag")
  done
done
sample '${hub:mp_20_ldm_base}' "$out/base"
printf '%-55s %5s %9s %8s %8s\n' base - - $(density "$out/base")
