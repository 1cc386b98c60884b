"""Checks of the RL stage's numbers and custom rewards before any work starts.

:class:`~crystalrl.rl.module.RLModule` checks its own GRPO and sampling settings when it is
built; ``train_rl`` checks the whole config (also the batch, the optimizer and each custom
reward's function) before any checkpoint or dataset is read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict
from typing import Any

from crystalrl.checks import (
    SettingError,
    choice_problem,
    number_problem,
    optimizer_problems,
    raise_problems,
    sampling_problems,
)
from crystalrl.rewards.user_function import component_key, resolve_reward_function
from crystalrl.rl.config import GRPOConfig, RolloutConfig


def rl_problems(
    rl: Mapping[str, Any], sampling: Mapping[str, Any], prefix: str = "rl_module"
) -> list[str | None]:
    """Problems of GRPO's ``rl_configs`` and the rollouts' ``sampling_configs``.

    ``num_group_samples`` must be at least 2: the advantages are rewards relative to their
    group, so a group of one has zero advantages and the run would train on nothing.
    """
    r, s = f"{prefix}.rl_configs", f"{prefix}.sampling_configs"
    out = [
        number_problem(
            f"{r}.clip_ratio", rl.get("clip_ratio"), low=0, high=1, low_open=True, high_open=True
        ),
        number_problem(f"{r}.kl_weight", rl.get("kl_weight"), low=0),
        number_problem(f"{r}.entropy_weight", rl.get("entropy_weight"), low=0),
        number_problem(f"{r}.num_group_samples", rl.get("num_group_samples"), integer=True, low=2),
        number_problem(f"{r}.num_inner_batch", rl.get("num_inner_batch"), integer=True, low=1),
        number_problem(f"{r}.max_grad_norm", rl.get("max_grad_norm"), low=0, low_open=True),
        number_problem(
            f"{r}.train_step_fraction", rl.get("train_step_fraction"), low=0, high=1, low_open=True
        ),
        number_problem(f"{r}.update_step_batch", rl.get("update_step_batch"), integer=True, low=0),
        number_problem(
            f"{r}.val_num_group_samples",
            rl.get("val_num_group_samples"),
            integer=True,
            low=1,
            optional=True,
        ),
        choice_problem(f"{r}.group_reward_norm", rl.get("group_reward_norm"), (True, False)),
        choice_problem(f"{r}.kl_reference", rl.get("kl_reference"), ("rollout", "initial")),
        choice_problem(
            f"{r}.policy_precision", str(rl.get("policy_precision")), ("32", "bf16-mixed")
        ),
    ]
    return out + sampling_problems(sampling, s)


def check_rl_config(cfg: Mapping[str, Any]) -> None:
    """Every number of ``train_rl``'s config that shapes the work, before any of it.

    ``cfg`` is the composed config; the module's defaults fill keys it leaves out, so a
    key the user did not write is judged by the value the run would use."""
    module = cfg.get("rl_module") or {}
    rl = {**asdict(GRPOConfig()), **(module.get("rl_configs") or {})}
    sampling = {**asdict(RolloutConfig()), **(module.get("sampling_configs") or {})}
    data = cfg.get("data") or {}
    problems = rl_problems(rl, sampling)
    problems += optimizer_problems(module.get("optimizer"), "rl_module.optimizer")
    problems.append(number_problem("data.batch_size", data.get("batch_size"), integer=True, low=1))
    trainer = cfg.get("trainer") or {}
    if "max_steps" in trainer:
        problems.append(
            number_problem("trainer.max_steps", trainer.get("max_steps"), integer=True, low=1)
        )
    problems += custom_reward_problems((module.get("reward_fn") or {}).get("components"))
    raise_problems(problems, "train_rl")
    rows = int(float(data.get("batch_size") or 1)) * int(float(rl["num_group_samples"]))
    if int(float(rl["num_inner_batch"])) > rows:
        raise SettingError(
            f"rl_module.rl_configs.num_inner_batch={rl['num_inner_batch']!r}: expected an "
            f"integer in [1, {rows}] (data.batch_size × num_group_samples trajectories per "
            "step are split into this many chunks)"
        )


def custom_reward_problems(components: Any) -> list[str | None]:
    """Problems of each custom reward's ``fn``, under the key the user wrote it at.

    The component itself only learns its name after it is built, so its own error could
    name the wrong key; here each entry of the mapping is judged under its own name."""
    if isinstance(components, Mapping):
        named = [(str(k), c) for k, c in components.items()]
    elif isinstance(components, Iterable) and not isinstance(components, str | bytes):
        named = [(str(i), c) for i, c in enumerate(components)]
    else:
        return []
    out: list[str | None] = []
    for name, component in named:
        if not isinstance(component, Mapping):
            continue
        target = str(component.get("_target_") or "")
        if target.rpartition(".")[2] != "CustomReward" or isinstance(component.get("fn"), Mapping):
            continue  # a node is built (and checked) by Hydra with its arguments
        try:
            resolve_reward_function(component.get("fn"), component_key(name))
        except SettingError as exc:
            out.append(str(exc))
    return out
