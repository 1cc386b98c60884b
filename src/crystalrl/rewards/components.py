"""Reward components: one objective each, combined by ``ReinforceReward``.

A component turns a batch of generated structures into one raw reward per structure
(higher = better). It names the shared metrics it needs (``required_metrics``) so the
aggregator computes each of them once per batch, and reads them as fields of a
:class:`~crystalrl.metrics.results.MetricResults`. It must never fail on a bad
structure: a ``None`` (failed decode) or a structure the potential cannot handle gets the
component's worst value.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from crystalrl.metrics.results import MetricResults
from crystalrl.rewards.normalize import check_normalize_fn, normalize


class RewardComponent:
    """Base class: weight, per-component normalisation, metrics it needs, a logging name."""

    #: Key under which the raw reward is logged (``train/<name>``).
    name: str = "reward"
    #: Fields of :class:`MetricResults` computed (once per batch) before ``compute``.
    required_metrics: tuple[str, ...] = ()

    def __init__(
        self,
        weight: float = 1.0,
        normalize_fn: str | None = None,
        eps: float = 1e-4,
        name: str | None = None,
    ):
        self.weight = float(weight)
        self.normalize_fn = check_normalize_fn(normalize_fn)
        self.eps = float(eps)
        if name:
            self.name = name

    def __repr__(self) -> str:
        return f"{type(self).__name__}(weight={self.weight}, normalize_fn={self.normalize_fn!r})"

    def setup(self, vae: Any = None, device: str | torch.device = "cpu") -> None:
        """Load what the component needs beyond shared metrics (a predictor, say)."""

    def compute(self, structures: Sequence, metrics: MetricResults | None = None) -> torch.Tensor:
        """Raw reward per structure, float32, shape (len(structures),), no NaN."""
        raise NotImplementedError

    def normalize(self, raw: torch.Tensor) -> torch.Tensor:
        return normalize(raw, self.normalize_fn, self.eps)


def fill_invalid(values: np.ndarray, valid: np.ndarray, fill: float | None = None) -> torch.Tensor:
    """Values of valid structures, and ``fill`` (default: the batch's worst) elsewhere."""
    values = np.asarray(values, dtype=np.float64)
    out = np.empty(len(valid), dtype=np.float64)
    out[valid] = values
    if fill is None:
        good = values[np.isfinite(values)] if len(values) else values
        fill = float(good.min()) if len(good) else 0.0
    out[~valid] = fill
    return torch.as_tensor(out, dtype=torch.float32)


def _valid_mask(structures: Sequence) -> np.ndarray:
    return np.array([s is not None for s in structures], dtype=bool)


# ====================================================================== custom
def _resolve_function(fn: Any, key: str = "rl_module.reward_fn.components.custom.fn") -> Callable:
    """A function, a dotted path to a function or to a no-argument class, or a node with
    ``_target_``: see :func:`crystalrl.rewards.user_function.resolve_reward_function`."""
    from crystalrl.rewards.user_function import resolve_reward_function

    return resolve_reward_function(fn, key)


class CustomReward(RewardComponent):
    """A user function of the structures: ``fn(list[Structure]) -> one number each``.

    ``fn`` is a callable, a dotted path (``mypkg.rewards.band_count``; a class named so is
    instantiated without arguments) or a config node ``{_target_: mypkg.rewards.Band,
    threshold: 1}``; the default is the shipped example
    :func:`crystalrl.rewards.functions.atomic_density`. The function sees only the valid
    structures; failed ones get ``fill_value`` (default: the batch minimum).
    """

    name = "custom"

    def __init__(
        self,
        fn: Any = None,
        weight: float = 1.0,
        normalize_fn: str | None = None,
        eps: float = 1e-4,
        fill_value: float | None = None,
        name: str | None = None,
    ):
        super().__init__(weight, normalize_fn, eps, name)
        from crystalrl.rewards.user_function import component_key

        self.fn = _resolve_function(fn, component_key(self.name))
        self.fill_value = fill_value

    def compute(self, structures: Sequence, metrics: MetricResults | None = None) -> torch.Tensor:
        valid = _valid_mask(structures)
        good = [s for s in structures if s is not None]
        values = self.fn(good) if good else []
        values = np.asarray(torch.as_tensor(values, dtype=torch.float64).reshape(-1))
        if len(values) != len(good):
            raise ValueError(
                f"custom reward function returned {len(values)} values for {len(good)} structures"
            )
        return fill_invalid(values, valid, self.fill_value)


# ====================================================================== built-in
class CreativityReward(RewardComponent):
    """Unique and novel: 1; neither: 0; one of the two: the distance to the nearest
    same-formula structure (smallest non-zero AMD distance, k=100, among reference + batch),
    a graded signal for "almost new"."""

    name = "creativity"
    required_metrics = ("unique", "novel")

    def __init__(
        self,
        weight: float = 1.0,
        normalize_fn: str | None = None,
        eps: float = 1e-4,
        k: int = 100,
        name: str | None = None,
    ):
        super().__init__(weight, normalize_fn, eps, name)
        from crystalrl.metrics.amd_distance import AMDCache

        self.k = k
        self._reference_amds = AMDCache(k)

    def compute(self, structures: Sequence, metrics: MetricResults | None = None) -> torch.Tensor:
        from crystalrl.metrics.amd_distance import amd_vector, nearest_nonzero_distance

        results = metrics or MetricResults()
        unique = np.asarray(results.require("unique"), dtype=bool)
        novel = np.asarray(results.require("novel"), dtype=bool)
        formulas = results.formulas
        rewards = np.where(unique & novel, 1.0, 0.0)
        partial = np.flatnonzero(unique ^ novel)
        if len(partial):
            reference = results.require("reference")
            batch_amds: dict[int, np.ndarray | None] = {}
            by_formula: dict[str, list[int]] = {}
            for j, f in enumerate(formulas):
                if f is not None:
                    by_formula.setdefault(f, []).append(j)
            for i in partial:
                f = formulas[i]
                others = []
                for r in reference.by_formula.get(f, []):
                    key, r = (reference.key, int(r)), int(r)
                    load = lambda r=r: reference.structures([r])[0]  # noqa: E731
                    others.append(self._reference_amds.get(key, load))
                for j in by_formula.get(f, []):
                    if j not in batch_amds:
                        batch_amds[j] = amd_vector(structures[j], self.k)
                    others.append(batch_amds[j])
                if i not in batch_amds:
                    batch_amds[i] = amd_vector(structures[i], self.k)
                rewards[i] = nearest_nonzero_distance(batch_amds[i], others)
        return torch.as_tensor(rewards, dtype=torch.float32)


class EnergyReward(RewardComponent):
    """−clip(E_hull, 0, max_e_above_hull) eV/atom: lower energy above the hull is better; a
    failed or NaN energy counts as the cap.

    The paper's cap is 1 eV/atom, which suits a base model whose samples mostly lie within
    1 eV/atom of the hull. When nearly all of a group lies above the cap, every member gets
    the same −cap and the component gives GRPO no direction; a higher cap restores a
    ranking among them (the cost: a sample 5 eV/atom above the hull weighs as much against
    one at 4 as one at 1 does against one at 0).

    ``relax`` (``{max_steps: 20, fmax: 0.1}``, keys of :func:`crystalrl.potentials.relax`;
    default off) takes E_hull after a short relaxation, as MatInvent does: a sample a few
    FIRE steps from a low minimum is rewarded for that minimum, not for its exact
    coordinates. The relaxation runs on the hull's own potential and its final energy is
    placed on the same hull, so no potentials mix; a structure whose relaxation fails keeps
    its single-point E_hull. It costs about ``max_steps`` force evaluations per structure.

    ``min_e_above_hull`` (eV/atom, e.g. -0.2; default off) is a guard against reward hacking:
    an E_hull below it is scored as the cap, like a failed energy. A novel crystal far
    below the Materials Project hull is almost always the potential misjudging an odd cell
    (a one-formula Cs-Cl cell, a fluoride at -2.4 eV/atom), not a discovery, and without the
    guard GRPO learns to make such cells.
    """

    name = "energy"
    #: With ``relax`` the single-point E_hull is still computed: it carries the reference
    #: (hull and potential) to the component and stands in where a relaxation fails.
    required_metrics = ("e_above_hull",)
    RELAX_OPTIONS = frozenset({"max_steps", "fmax", "relax_cell"})

    def __init__(
        self,
        weight: float = 1.0,
        normalize_fn: str | None = None,
        eps: float = 1e-4,
        max_e_above_hull: float = 1.0,
        name: str | None = None,
        relax: Mapping[str, Any] | None = None,
        min_e_above_hull: float | None = None,
    ):
        super().__init__(weight, normalize_fn, eps, name)
        if not max_e_above_hull > 0:
            raise ValueError(f"EnergyReward max_e_above_hull must be > 0, got {max_e_above_hull}")
        if min_e_above_hull is not None and not min_e_above_hull < 0:
            raise ValueError(
                f"EnergyReward min_e_above_hull must be < 0 (or null: off), got {min_e_above_hull}"
            )
        self.cap = float(max_e_above_hull)
        self.floor = None if min_e_above_hull is None else float(min_e_above_hull)
        self.relax = dict(relax) if relax is not None else None
        unknown = set(self.relax or {}) - self.RELAX_OPTIONS
        if unknown:
            raise ValueError(
                f"EnergyReward relax has unknown option(s) {sorted(unknown)}; "
                f"expected some of {sorted(self.RELAX_OPTIONS)}"
            )

    def compute(self, structures: Sequence, metrics: MetricResults | None = None) -> torch.Tensor:
        results = metrics or MetricResults()
        e_hull = np.asarray(results.require("e_above_hull"), dtype=np.float64)
        if self.relax is not None:
            e_hull = self.relaxed_e_above_hull(structures, results.require("reference"), e_hull)
        e = torch.as_tensor(e_hull)
        if self.floor is not None:
            e = torch.where(e < self.floor, torch.full_like(e, self.cap), e)
        e = e.nan_to_num(nan=self.cap, posinf=self.cap, neginf=0.0)
        return -e.clamp(0.0, self.cap).float()

    def relaxed_e_above_hull(
        self, structures: Sequence, reference: Any, single_point: np.ndarray
    ) -> np.ndarray:
        """E_hull of each structure after ``relax``; ``single_point`` where that fails."""
        from crystalrl.metrics.validity import cell_collapsed
        from crystalrl.potentials import relax

        done = relax(structures, reference.energy_model, skip=cell_collapsed, **self.relax)
        tried = [r for r in done if r.attempted]
        if tried and all(r.failed for r in tried):
            warnings.warn(
                f"EnergyReward: every relaxation failed ({tried[0].error}); "
                "the reward falls back to single-point energies",
                RuntimeWarning,
                stacklevel=2,
            )
        compositions = [None if r.failed else r.structure.composition for r in done]
        energies = np.array([r.energy_per_atom for r in done], dtype=np.float64)
        relaxed = reference.hull.e_above_hull_many(compositions, energies)
        return np.where(np.isnan(relaxed), single_point, relaxed)


class _DiversityReward(RewardComponent):
    """Each structure's individual MMD contribution (polynomial kernel, degree 3) of its
    VAE feature against the reference features: MMD(batch without it) − MMD(batch)."""

    required_metrics = ("features",)
    feature: str = ""

    def compute(self, structures: Sequence, metrics: MetricResults | None = None) -> torch.Tensor:
        from crystalrl.metrics.diversity import mmd_individual

        results = metrics or MetricResults()
        valid = _valid_mask(structures)
        gen = results.require("features")[self.feature]
        ref = results.require("reference_features")[self.feature]
        values = mmd_individual(gen, ref).double().numpy() if len(gen) else np.zeros(0)
        return fill_invalid(values, valid)


class StructureDiversityReward(_DiversityReward):
    name = "structure_diversity"
    feature = "structure"


class CompositionDiversityReward(_DiversityReward):
    name = "composition_diversity"
    feature = "composition"


class PredictorReward(RewardComponent):
    """A property predicted by a surrogate model: the prediction clipped to
    [clip_min, clip_max], or −(prediction − target_value)² when a target is given.

    ``predictor`` is any object with ``predict(batch) -> {name: tensor}`` (a
    :class:`~crystalrl.data.batch.CrystalBatch` in), or a checkpoint path / registry name
    loaded in :meth:`setup`. Cells are Niggli-reduced first (``niggli``), as the training
    data were. Failed structures get the batch's worst reward.
    """

    name = "predictor"

    def __init__(
        self,
        predictor: Any,
        target_name: str,
        target_value: float | None = None,
        clip_min: float | None = None,
        clip_max: float | None = None,
        weight: float = 1.0,
        normalize_fn: str | None = None,
        eps: float = 1e-4,
        batch_size: int = 512,
        niggli: bool = True,
        name: str | None = None,
    ):
        super().__init__(weight, normalize_fn, eps, name)
        self.predictor = predictor
        self.niggli = niggli
        self.target_name = target_name
        self.target_value = target_value
        self.clip_min = clip_min
        self.clip_max = clip_max
        self.batch_size = batch_size
        self.device: str | torch.device = "cpu"

    def setup(self, vae: Any = None, device: str | torch.device = "cpu") -> None:
        self.device = device
        if isinstance(self.predictor, str):
            from crystalrl.predictor import load_predictor

            # the config key of the reward components a training run composes
            key = f"rl_module.reward_fn.components.{self.name}.predictor"
            self.predictor = load_predictor(self.predictor, map_location=str(device), key=key)
        if hasattr(self.predictor, "eval"):
            self.predictor.eval()

    @torch.no_grad()
    def compute(self, structures: Sequence, metrics: MetricResults | None = None) -> torch.Tensor:
        from crystalrl.data.batch import CrystalBatch, niggli_or_keep

        if isinstance(self.predictor, str):
            self.setup(device=self.device)
        valid = _valid_mask(structures)
        good = [s for s in structures if s is not None]
        if self.niggli:
            good = [niggli_or_keep(s) for s in good]
        preds = []
        for i in range(0, len(good), self.batch_size):
            batch = CrystalBatch.from_structures(good[i : i + self.batch_size], torch.float32)
            out = self.predictor.predict(batch.to(self.device))
            preds.append(torch.as_tensor(out[self.target_name]).detach().double().cpu().view(-1))
        pred = torch.cat(preds) if preds else torch.zeros(0, dtype=torch.float64)
        if self.clip_min is not None or self.clip_max is not None:
            pred = pred.clamp(min=self.clip_min, max=self.clip_max)
        reward = -((pred - self.target_value) ** 2) if self.target_value is not None else pred
        return fill_invalid(reward.numpy(), valid)
