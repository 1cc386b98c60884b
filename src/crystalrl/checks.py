"""Checks of a command's numbers before any work starts.

A bad GRPO, sampling or evaluation setting used to surface as a torch or numpy error
deep inside the first rollout (or, worse, as a run that trains on zero advantages). Each
check here names the config key, the value given and the values accepted; every problem
of a config is reported at once, so one rerun fixes them all.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any


class SettingError(ValueError):
    """One or more config values out of their accepted range; the message lists each."""


def _bound(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '≥'} {low:g}"
    if high is not None:
        return f"{'<' if high_open else '≤'} {high:g}"
    return "finite"


def number_problem(
    key: str,
    value: Any,
    *,
    integer: bool = False,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    optional: bool = False,
) -> str | None:
    """Why ``value`` is not an accepted ``key`` (``None`` when it is).

    Strings that spell a number (``"1e-5"``, which YAML 1.1 leaves a string) are accepted;
    booleans, NaN and infinities never are.
    """
    kind = "an integer" if integer else "a number"
    accepted = f"{kind} {_bound(low, high, low_open, high_open)}"
    if optional:
        accepted += ", or null"
    if value is None:
        return None if optional else f"{key} is not set; expected {accepted}"
    parsed: float | None = None
    if not isinstance(value, bool):
        try:
            parsed = float(value)
        except (TypeError, ValueError):
            parsed = None
    if parsed is None or not math.isfinite(parsed) or (integer and parsed != int(parsed)):
        return f"{key}={value!r}: expected {accepted}"
    below = low is not None and (parsed <= low if low_open else parsed < low)
    above = high is not None and (parsed >= high if high_open else parsed > high)
    if below or above:
        return f"{key}={value!r}: expected {accepted}"
    return None


def choice_problem(key: str, value: Any, choices: Iterable[Any]) -> str | None:
    """Why ``value`` is not one of ``choices`` (``None`` when it is)."""
    choices = list(choices)
    if value in choices:
        return None
    return f"{key}={value!r}: expected one of {', '.join(repr(c) for c in choices)}"


def raise_problems(problems: Iterable[str | None], what: str) -> None:
    """Raise one :class:`SettingError` listing every problem, if there is any."""
    found = [p for p in problems if p]
    if len(found) == 1:
        raise SettingError(f"{found[0]} ({what})")
    if found:
        lines = "\n".join(f"  {p}" for p in found)
        raise SettingError(f"{len(found)} settings of {what} are out of range:\n{lines}")


# ---------------------------------------------------------------------- RL
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


def sampling_problems(sampling: Mapping[str, Any], prefix: str = "") -> list[str | None]:
    """Problems of a sampler's name, step count and DDIM noise ``eta``."""
    p = f"{prefix}." if prefix else ""
    return [
        choice_problem(f"{p}sampler", sampling.get("sampler"), ("ddim", "ddpm")),
        number_problem(f"{p}sampling_steps", sampling.get("sampling_steps"), integer=True, low=1),
        number_problem(f"{p}eta", sampling.get("eta"), low=0, high=1),
    ]


def optimizer_problems(optimizer: Mapping[str, Any] | None, prefix: str) -> list[str | None]:
    """Problems of the learning rate and weight decay, when the optimizer config has them."""
    if not optimizer:
        return []
    out: list[str | None] = []
    if "lr" in optimizer:
        out.append(number_problem(f"{prefix}.lr", optimizer["lr"], low=0, low_open=True))
    if "weight_decay" in optimizer:
        out.append(number_problem(f"{prefix}.weight_decay", optimizer["weight_decay"], low=0))
    return out


def check_rl_config(cfg: Mapping[str, Any]) -> None:
    """Every number of ``train_rl``'s config that shapes the work, before any of it.

    ``cfg`` is the composed config; the module's defaults fill keys it leaves out, so a
    key the user did not write is judged by the value the run would use."""
    from crystalrl.rl.module import DEFAULT_RL_CONFIGS, DEFAULT_SAMPLING

    module = cfg.get("rl_module") or {}
    rl = {**DEFAULT_RL_CONFIGS, **(module.get("rl_configs") or {})}
    sampling = {**DEFAULT_SAMPLING, **(module.get("sampling_configs") or {})}
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
    from crystalrl.rewards.user_function import component_key, resolve_reward_function

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


# ---------------------------------------------------------------------- sample, evaluate
def check_sample_config(cfg: Mapping[str, Any]) -> None:
    """``crystalrl.sample``'s counts and sampler before the model is loaded."""
    problems = [
        number_problem("num_samples", cfg.get("num_samples"), integer=True, low=1),
        number_problem("batch_size", cfg.get("batch_size"), integer=True, low=1),
        number_problem("num_atoms", cfg.get("num_atoms"), integer=True, low=1, optional=True),
        number_problem("seed", cfg.get("seed"), integer=True),
        *sampling_problems(cfg),
    ]
    raise_problems(problems, "sample")


def check_evaluate_config(cfg: Mapping[str, Any]) -> None:
    """``crystalrl.evaluate``'s numbers before any structure is read."""
    problems = [
        number_problem(
            "num_structures", cfg.get("num_structures"), integer=True, low=1, optional=True
        ),
        number_problem("metastable_threshold", cfg.get("metastable_threshold")),
        number_problem(
            "min_hull_support", cfg.get("min_hull_support"), integer=True, low=0, optional=True
        ),
        number_problem("match_timeout", cfg.get("match_timeout"), low=0, low_open=True),
        number_problem("num_workers", cfg.get("num_workers"), integer=True, low=0, optional=True),
    ]
    if cfg.get("relax"):
        options = cfg.get("relax_options") or {}
        problems += [
            number_problem("relax_options.fmax", options.get("fmax"), low=0, low_open=True),
            number_problem(
                "relax_options.max_steps", options.get("max_steps"), integer=True, low=1
            ),
        ]
    window = cfg.get("target_window")
    if window is not None:
        values = list(window) if not isinstance(window, str | int | float) else [window]
        bad = len(values) != 2 or any(number_problem("x", v) for v in values)
        if bad or float(values[0]) > float(values[1]):
            problems.append(
                f"target_window={window!r}: expected [low, high] with low ≤ high, or null"
            )
    raise_problems(problems, "evaluate")
