"""The reward function of the RL stage: a weighted sum of normalised components.

``total = Σ_i weight_i · normalize_i(raw_i)``. The metrics the components need are
computed once per batch by one shared :class:`~crystalrl.metrics.metrics.Metrics` and
the reference data are loaded in :meth:`ReinforceReward.setup`, only the parts those
metrics use: a reward made only of a :class:`CustomReward` loads nothing at all.
``normalize_fn``/``eps`` are what the RL stage applies to the totals within each group
(:func:`crystalrl.rewards.normalize.normalize`).

:class:`RewardFunction` is all the RL stage relies on, so a reward need not be a
:class:`ReinforceReward`; :func:`as_reward_function` lets a plain function stand in.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from crystalrl.gc_pause import collector_paused
from crystalrl.metrics.results import MetricResults
from crystalrl.reference.datasets import DEFAULT_REFERENCE
from crystalrl.rewards.components import RewardComponent
from crystalrl.rewards.guards import RewardGuard, apply_guards
from crystalrl.rewards.normalize import check_normalize_fn

#: Signs of reward hacking computed beside every reward and logged with it
#: (``train/avg_is_single_element``, ``val/num_distinct_formulas``, ...).
WATCH_METRICS = (
    "is_single_element",
    "num_distinct_formulas",
    "num_distinct_systems",
    "atomic_density",
    "density_vs_reference",
)


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

    @classmethod
    def of(cls, value: Any) -> RewardOutput:
        """Whatever a reward callable returned, as the one type the RL stage reads.

        Accepts a :class:`RewardOutput`, any object with a ``total`` and optionally the
        other fields (a namespace a user's reward class builds), or the totals alone (a
        tensor or a sequence of numbers, what a plain function returns).
        """
        if isinstance(value, RewardOutput):
            return value
        if hasattr(value, "total"):
            parts = {f.name: getattr(value, f.name) for f in fields(cls) if hasattr(value, f.name)}
            out = cls(**{k: v for k, v in parts.items() if v is not None})
        else:
            out = cls(total=value)
        out.total = torch.as_tensor(out.total, dtype=torch.float32).reshape(-1)
        out.components, out.weighted = dict(out.components), dict(out.weighted)
        out.metrics, out.timings = dict(out.metrics), dict(out.timings)
        return out


@runtime_checkable
class RewardFunction(Protocol):
    """What the RL stage needs of a reward.

    Called on a batch of structures (``None`` for failed decodes), it returns their
    rewards (read through :meth:`RewardOutput.of`); ``normalize_fn`` and ``eps`` are how
    the RL stage turns those totals into advantages within each group. A
    ``setup(vae=..., device=...)`` method, if present, is called once before training with
    the frozen VAE.
    """

    normalize_fn: str | None
    eps: float

    def __call__(self, structures: Sequence) -> RewardOutput: ...


class FunctionReward:
    """A callable without the :class:`RewardFunction` attributes used as the reward.

    Its return value is read by :meth:`RewardOutput.of`; advantages are normalised with
    ``std`` unless the callable says otherwise, as before the contract was written down.
    """

    def __init__(self, fn: Callable, normalize_fn: str | None = "std", eps: float = 1e-4):
        self.fn = fn
        self.normalize_fn = check_normalize_fn(normalize_fn)
        self.eps = float(eps)

    def __repr__(self) -> str:
        return f"FunctionReward({self.fn!r}, normalize_fn={self.normalize_fn!r})"

    def setup(self, vae: Any = None, device: str | torch.device = "cpu") -> None:
        if callable(setup := getattr(self.fn, "setup", None)):
            setup(vae=vae, device=device)

    def __call__(self, structures: Sequence) -> RewardOutput:
        return RewardOutput.of(self.fn(structures))


def as_reward_function(reward: Any) -> RewardFunction:
    """``reward`` itself when it meets :class:`RewardFunction`, else a plain callable wrapped."""
    if isinstance(reward, RewardFunction):
        return reward
    if callable(reward):
        return FunctionReward(
            reward, getattr(reward, "normalize_fn", "std"), getattr(reward, "eps", 1e-4)
        )
    raise RewardError(f"the reward function must be callable on structures, got {reward!r}")


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
    """Weighted, normalised sum of reward components, with shared metrics.

    ``components`` is a mapping from name to component (what the configs write, so that
    one component can be changed by name: ``components.energy.max_e_above_hull=10``; a
    ``None`` entry drops that component) or a list, whose components are named by their
    ``name``. The names are the keys of :attr:`RewardOutput.components`, logged as
    ``train/<name>``.
    """

    def __init__(
        self,
        components: Mapping[str, Any] | Sequence[Any],
        normalize_fn: str | None = "std",
        eps: float = 1e-4,
        reference_dataset: str | None = DEFAULT_REFERENCE,
        potential: Any = None,
        match_timeout: float = 30.0,
        num_workers: int | None = None,
        reference_options: dict | None = None,
        guards: Mapping[str, Any] | None = None,
        watch_metrics: Sequence[str] | None = WATCH_METRICS,
    ):
        self.components, self.names = _named_components(components)
        self.guards = _named_guards(guards)
        #: metrics computed beside the reward only to be logged (signs of reward hacking)
        self.watch_metrics = tuple(watch_metrics or ())
        #: size of the groups the batch is made of (set by the RL stage before each call)
        self.group_size: int | None = None
        if not self.components:
            raise RewardError("a reward needs at least one component")
        self.normalize_fn = check_normalize_fn(normalize_fn)
        self.eps = float(eps)
        self.reference_dataset = reference_dataset
        self.potential = potential
        self.match_timeout = match_timeout
        self.num_workers = num_workers
        self.reference_options = dict(reference_options or {})
        self.metrics = None
        self.vae = None
        self.device: str | torch.device = "cpu"
        self._ready = False

    def __repr__(self) -> str:
        parts = ", ".join(f"{n}={c!r}" for n, c in zip(self.names, self.components, strict=True))
        return f"ReinforceReward({parts}, normalize_fn={self.normalize_fn!r})"

    @property
    def required_metrics(self) -> list[str]:
        parts = [*self.components, *self.guards.values()]
        return list(dict.fromkeys(m for c in parts for m in c.required_metrics))

    def _metrics_to_compute(self) -> list[str]:
        """What the components and guards read, and the watched signs of hacking that the
        loaded reference parts allow (a custom reward without a reference loads none)."""
        needed = self.required_metrics
        watch = [m for m in self.watch_metrics if not _needs_reference(m)]
        if self.reference_dataset is not None and needed:
            watch = list(self.watch_metrics)
            if "e_above_hull" in needed:
                watch.append("is_supported")
        return list(dict.fromkeys(needed + watch))

    def setup(self, vae: Any = None, device: str | torch.device = "cpu") -> ReinforceReward:
        """Load the reference parts the components' metrics use, and each component's own
        resources. Call once before the first batch (it is called lazily otherwise)."""
        from crystalrl.metrics.metrics import Metrics

        self.vae = vae if vae is not None else self.vae
        self.device = device
        needed = self._metrics_to_compute()
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

    def __call__(self, structures: Sequence | Any) -> RewardOutput:
        """Rewards of a batch: pymatgen structures, ``None`` for failed decodes (or a
        :class:`~crystalrl.data.batch.CrystalBatch`)."""
        if hasattr(structures, "to_structures"):
            structures = structures.to_structures()
        structures = list(structures)
        if not self._ready:
            self.setup(self.vae, self.device)
        with collector_paused():
            return self._score(structures)

    def _score(self, structures: list) -> RewardOutput:
        timings: dict[str, float] = {}
        results = MetricResults()
        if self.metrics is not None:
            self.metrics.compute(structures)
            timings.update(
                {f"metric/{k}": v for k, v in self.metrics.timings.items() if k != "setup"}
            )
            results = self.metrics.snapshot()
        averages = dict(results.averages)
        total = torch.zeros(len(structures), dtype=torch.float32)
        raw_out, weighted_out = {}, {}
        for name, component in zip(self.names, self.components, strict=True):
            start = time.perf_counter()
            raw = component.compute(structures, results)
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
        if self.guards:
            keep = np.ones(len(structures))
            for name, guard in self.guards.items():
                factor = np.clip(guard.keep(structures, results, self.group_size), 0.0, 1.0)
                averages[f"guarded_{name}"] = float(np.mean(factor < 1)) if len(factor) else 0.0
                keep = keep * factor
            total = torch.as_tensor(apply_guards(total.numpy(), keep), dtype=torch.float32)
        return RewardOutput(total, raw_out, weighted_out, averages, timings)


def _named_guards(guards: Mapping[str, Any] | None) -> dict[str, RewardGuard]:
    """The guards by name (a ``None`` entry switches one off), instantiated from configs."""
    if guards is None:
        return {}
    if not isinstance(guards, Mapping):
        raise RewardError(f"reward guards must be a mapping of name to guard, got {guards!r}")
    out = {}
    for name, guard in guards.items():
        if guard is None:
            continue
        if hasattr(guard, "get") and guard.get("_target_"):
            from hydra.utils import instantiate

            guard = instantiate(guard)
        if not isinstance(guard, RewardGuard):
            raise RewardError(
                f"reward guard {name!r} must be a RewardGuard (crystalrl.rewards.guards), "
                f"got {guard!r}"
            )
        out[str(name)] = guard
    return out


def _needs_reference(metric: str) -> bool:
    from crystalrl.metrics.registry import REGISTRY

    return bool(REGISTRY[metric].uses)


def _named_components(
    components: Mapping[str, Any] | Sequence[Any],
) -> tuple[list[RewardComponent], list[str]]:
    """The components in order and their logging names."""
    if isinstance(components, Mapping):
        named = [(str(k), _instantiate(c)) for k, c in components.items() if c is not None]
        for name, component in named:
            component.name = name  # the key names it, also where the component is used alone
        return [c for _, c in named], [n for n, _ in named]
    if isinstance(components, str | bytes) or not isinstance(components, Sequence):
        raise RewardError(
            f"reward components must be a mapping of name to component or a list, "
            f"got {components!r}"
        )
    built = [_instantiate(c) for c in components]
    return built, _unique_names([c.name for c in built])


def _unique_names(names: list[str]) -> list[str]:
    """Component names for logging; a repeated name gets a numeric suffix."""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}_{seen[n]}")
    return out
