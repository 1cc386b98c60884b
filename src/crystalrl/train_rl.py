"""Stage 3: fine-tune the LDM with GRPO toward a reward.

``python -m crystalrl.train_rl experiment=mp_20/rl_dng [key=value ...]``, for example
``rl_module.rl_configs.num_group_samples=128 data.batch_size=8``.
"""

from __future__ import annotations

import sys
import warnings

import hydra
from omegaconf import DictConfig

from crystalrl.cli import fails_on_list_onto_mapping, replace_list_overrides
from crystalrl.config import CONFIG_DIR

#: Written as a mapping keyed by name in configs/reward_fn/; the seed wrote a list.
REWARD_COMPONENTS = "rl_module.reward_fn.components"
#: Drops the reward the configs compose, so a config can write a whole one of its own.
WITHOUT_COMPOSED_REWARD = "~reward_fn@rl_module.reward_fn"
LIST_FORM_HINT = f"""
{REWARD_COMPONENTS} is a mapping keyed by component name (configs/reward_fn/dng.yaml),
and a YAML list cannot be merged onto it. Either
  * write the components as a mapping: `energy: {{max_e_above_hull: 10}}` changes one
    component, a new name adds one, `name: null` drops one;
  * keep the list, and add `- override /reward_fn@rl_module.reward_fn: null` to the
    config's defaults list so that its reward_fn (written in full, with `_target_`)
    replaces the composed one;
  * or put the reward_fn in configs/reward_fn/NAME.yaml and select it with
    `reward_fn@rl_module.reward_fn=NAME` (in a defaults list:
    `- override /reward_fn@rl_module.reward_fn: NAME`).
On the command line a list works as it is: {REWARD_COMPONENTS}='[{{_target_: ...}}]'.
"""


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train_rl")
def train(cfg: DictConfig) -> dict:
    from crystalrl.early_stop import stops_cleanly

    with stops_cleanly(cfg.paths.output_dir):
        return run(cfg)


def run(cfg: DictConfig) -> dict:
    """The run, its numbers and training set checked before any model is loaded."""
    from crystalrl.ldm.exporting import export_ldm
    from crystalrl.rl.checks import check_rl_config
    from crystalrl.training import fit, setup_run

    check_rl_config(cfg)
    setup_run(cfg)
    # RLModule.train keeps the LDM in eval mode on purpose (see there)
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    # RLModule steps its optimizer itself, so a checkpoint holds the state after a step,
    # which is what resuming needs; Lightning's 12-line example says how to save the other
    warnings.filterwarnings("ignore", message=r"Using ModelCheckpoint with manual optimization")
    datamodule = hydra.utils.instantiate(cfg.data)
    module = hydra.utils.instantiate(cfg.rl_module, _convert_="all")
    result = fit(cfg, module, datamodule, export=export_ldm)
    return result


def main() -> dict | None:
    """The command: the seed's list form of the reward components still works on the
    command line, and a config that writes it gets told how to instead of a bare merge error."""
    sys.argv = [sys.argv[0], *replace_list_overrides(sys.argv[1:], [REWARD_COMPONENTS])]
    try:
        return train()
    except SystemExit as exc:
        if exc.code and fails_on_list_onto_mapping(
            "train_rl", sys.argv[1:], WITHOUT_COMPOSED_REWARD
        ):
            print(LIST_FORM_HINT, file=sys.stderr)
        raise


def cli() -> None:
    """Console script ``crystalrl-train-rl``; ``python -m crystalrl.train_rl``
    runs it too, so the two never differ."""
    main()


if __name__ == "__main__":
    cli()
