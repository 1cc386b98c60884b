"""Checks of a command's numbers before any work starts.

Unchecked, a bad GRPO, sampling or evaluation setting surfaces as a torch or numpy error
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
