"""The reward function of the RL stage: a weighted sum of normalised components.

``total = Σ_i weight_i · normalize_i(raw_i)``. The metrics the components need are
computed once per batch by one shared :class:`~crystalrl.metrics.metrics.Metrics` and
the reference data are loaded in :meth:`ReinforceReward.setup`, only the parts those
metrics use: a reward made only of a :class:`CustomReward` loads nothing at all.
``normalize_fn``/``eps`` are what the RL stage applies to the totals within each group
(:func:`crystalrl.rewards.normalize.normalize`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from crystalrl.rewards.components import RewardComponent
from crystalrl.rewards.normalize import check_normalize_fn, normalize


class RewardError(ValueError):
    """A reward that cannot be used: NaN values, a bad component configuration."""


@dataclass
class RewardOutput:
    """What one reward call produced.

    ``total`` (B,) float32; ``components`` the raw reward of each component by name (for
    logging as ``train/<name>``); ``weighted`` each component's contribution to the total;
    ``metrics`` batch averages of the shared metrics (``avg_unique``, ...); ``timings``
    seconds spent per metric and component.
    """

    total: torch.Tensor
    components: dict[str, torch.Tensor] = field(default_factory=dict)
    weighted: dict[str, torch.Tensor] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def _instantiate(component: Any) -> RewardComponent:
    if isinstance(component, RewardComponent):
        return component
    if hasattr(component, "get") and component.get("_target_"):
        from hydra.utils import instantiate

        component = instantiate(component)
        if isinstance(component, RewardComponent):
            return component
    raise RewardError(f"reward components must be RewardComponent objects, got {component!r}")


class ReinforceReward:
    """Weighted, normalised sum of reward components, with shared metrics."""

    def __init__(
        self,
        components: Sequence[Any],
        normalize_fn: str | None = "std",
        eps: float = 1e-4,
        reference_dataset: str | None = "mp-20",
        potential: Any = None,
        match_timeout: float = 30.0,
        num_workers: int | None = None,
        reference_options: dict | None = None,
    ):
        self.components = [_instantiate(c) for c in components]
        if not self.components:
            raise RewardError("a reward needs at least one component")
        self.normalize_fn = check_normalize_fn(normalize_fn)
        self.eps = float(eps)
        self.reference_dataset = reference_dataset
        self.potential = potential
        self.match_timeout = match_timeout
        self.num_workers = num_workers
        self.reference_options = dict(reference_options or {})
        self.names = _unique_names([c.name for c in self.components])
        self.metrics = None
        self.vae = None
        self.device: str | torch.device = "cpu"
        self._ready = False

    def __repr__(self) -> str:
        parts = ", ".join(f"{n}={c!r}" for n, c in zip(self.names, self.components, strict=True))
        return f"ReinforceReward({parts}, normalize_fn={self.normalize_fn!r})"

    @property
    def required_metrics(self) -> list[str]:
        return list(dict.fromkeys(m for c in self.components for m in c.required_metrics))

    def setup(self, vae: Any = None, device: str | torch.device = "cpu") -> ReinforceReward:
        """Load the reference parts the components' metrics use, and each component's own
        resources. Call once before the first batch (it is called lazily otherwise)."""
        from crystalrl.metrics.metrics import Metrics

        self.vae = vae if vae is not None else self.vae
        self.device = device
        needed = self.required_metrics
        if needed:
            self.metrics = Metrics(
                needed,
                reference=self.reference_dataset,
                vae=self.vae,
                potential=self.potential,
                match_timeout=self.match_timeout,
                num_workers=self.num_workers,
                reference_options=self.reference_options,
            ).setup()
        for c in self.components:
            c.setup(vae=self.vae, device=device)
        self._ready = True
        return self

    def normalize(self, rewards: torch.Tensor) -> torch.Tensor:
        """The global normalisation (what the RL stage applies per group)."""
        return normalize(rewards, self.normalize_fn, self.eps)

    def __call__(self, structures: Sequence | Any) -> RewardOutput:
        """Rewards of a batch: pymatgen structures, ``None`` for failed decodes (or a
        :class:`~crystalrl.data.batch.CrystalBatch`)."""
        if hasattr(structures, "to_structures"):
            structures = structures.to_structures()
        structures = list(structures)
        if not self._ready:
            self.setup(self.vae, self.device)
        timings: dict[str, float] = {}
        averages: dict[str, float] = {}
        if self.metrics is not None:
            self.metrics.compute(structures)
            timings.update(
                {f"metric/{k}": v for k, v in self.metrics.timings.items() if k != "setup"}
            )
            averages = {
                k: float(v) for k, v in self.metrics.results.items() if k.startswith("avg_")
            }
        total = torch.zeros(len(structures), dtype=torch.float32)
        raw_out, weighted_out = {}, {}
        for name, component in zip(self.names, self.components, strict=True):
            start = time.perf_counter()
            raw = component.compute(structures, self.metrics)
            timings[f"component/{name}"] = time.perf_counter() - start
            raw = torch.as_tensor(raw, dtype=torch.float32).reshape(-1).cpu()
            if raw.shape[0] != len(structures):
                raise RewardError(
                    f"reward component '{name}' returned {raw.shape[0]} values "
                    f"for {len(structures)} structures"
                )
            if torch.isnan(raw).any():
                raise RewardError(f"reward component '{name}' produced NaN rewards")
            contribution = component.weight * component.normalize(raw)
            if torch.isnan(contribution).any():
                raise RewardError(
                    f"reward component '{name}' is NaN after normalize_fn="
                    f"{component.normalize_fn!r}"
                )
            raw_out[name] = raw
            weighted_out[name] = contribution
            total = total + contribution
        if torch.isnan(total).any():  # only reachable through inf − inf
            bad = [n for n, c in weighted_out.items() if not torch.isfinite(c).all()]
            raise RewardError(f"NaN total reward from component(s) {', '.join(bad) or '?'}")
        return RewardOutput(total, raw_out, weighted_out, averages, timings)


def _unique_names(names: list[str]) -> list[str]:
    """Component names for logging; a repeated name gets a numeric suffix."""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}_{seen[n]}")
    return out
