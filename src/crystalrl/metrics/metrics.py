"""Named metrics of a set of generated structures, each computed once and shared.

Metrics depend on each other (``MSUN`` needs ``unique``, ``novel`` and ``is_metastable``;
both diversity metrics need the VAE ``features``) and rewards reuse them, so they live in
a registry with declared dependencies: :meth:`Metrics.compute` resolves the graph and
evaluates every needed metric exactly once per call. Each metric also declares which
parts of the reference it uses, so setting up for, say, ``unique`` alone loads nothing.

"Stable" is E_hull ≤ 0 up to ``stable_tolerance`` (1e-5 eV/atom): the potential's energies
are float32, so a structure exactly on the hull, re-evaluated in another cell, lands a few
1e-7 eV/atom to either side of it.

Failed structures (``None``) are neither unique, novel nor valid, have NaN energy and
E_hull, and count in the denominators of every rate.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crystalrl.metrics.reference import Reference, get_reference

log = logging.getLogger("crystalrl")

DEFAULT_METRICS = (
    "unique",
    "novel",
    "e_above_hull",
    "composition_validity",
    "structure_diversity",
    "composition_diversity",
)
#: Reference parts a metric may use; loaded by :meth:`Metrics.setup`.
REFERENCE_PARTS = ("structures", "hull", "energy_model", "vae", "features")


@dataclass(frozen=True)
class MetricSpec:
    name: str
    fn: Callable[[Metrics], Any]
    needs: tuple[str, ...] = ()
    uses: tuple[str, ...] = ()
    implies: tuple[str, ...] = ()  # computed along with it (is_stable with e_above_hull)
    column: bool = True  # a per-structure array that goes in the results table


_REGISTRY: dict[str, MetricSpec] = {}


def register_metric(
    name: str,
    needs: Sequence[str] = (),
    uses: Sequence[str] = (),
    implies: Sequence[str] = (),
    column: bool = True,
):
    """Register ``fn(metrics) -> value`` under ``name``; ``needs`` are computed first."""

    def wrap(fn):
        _REGISTRY[name] = MetricSpec(name, fn, tuple(needs), tuple(uses), tuple(implies), column)
        return fn

    return wrap


def available_metrics() -> list[str]:
    return sorted(_REGISTRY)


class Metrics:
    """Evaluate named metrics of generated structures against a reference.

    ``reference`` is a :class:`Reference`, a reference name (``mp-20``) or a dataset
    folder; ``vae`` (a VAE module) is needed only by the feature-based metrics.
    """

    def __init__(
        self,
        metrics: Sequence[str] | None = None,
        reference: Reference | str | None = "mp-20",
        vae: Any = None,
        potential: Any = None,
        metastable_threshold: float = 0.1,
        stable_tolerance: float = 1e-5,
        match_timeout: float = 30.0,
        num_workers: int | None = None,
        progress: bool = False,
        reference_options: dict | None = None,
    ):
        names = list(metrics) if metrics is not None else list(DEFAULT_METRICS)
        unknown = [n for n in names if n not in _REGISTRY]
        if unknown:
            raise ValueError(
                f"unknown metric(s) {', '.join(unknown)}; available: {', '.join(_REGISTRY)}"
            )
        self.metrics = self._with_derived(names)
        self._reference_arg = reference
        self._reference_options = dict(reference_options or {})
        self._potential = potential
        self.vae = vae
        self.metastable_threshold = metastable_threshold
        self.stable_tolerance = stable_tolerance
        self.match_timeout = match_timeout
        self.num_workers = num_workers
        self.progress = progress
        self.structures: list = []
        self._formulas: list[str | None] | None = None
        self.results: dict[str, Any] = {}
        self.timings: dict[str, float] = {}
        self._ready = False
        self._ref_feature_stats: dict[str, tuple] = {}
        self._ref_features: dict | None = None

    @staticmethod
    def _with_derived(names: list[str]) -> list[str]:
        """Add what a request implies: E_hull -> stability flags; U+N+stability -> (M)SUN."""
        out = list(dict.fromkeys(names))
        for name in list(out):
            for extra in _REGISTRY[name].implies:
                if extra not in out:
                    out.append(extra)
        if {"unique", "novel", "is_metastable"} <= set(out) and "MSUN" not in out:
            out.append("MSUN")
        if {"unique", "novel", "is_stable"} <= set(out) and "SUN" not in out:
            out.append("SUN")
        return out

    # ------------------------------------------------------------------ setup
    def required_parts(self) -> set[str]:
        parts: set[str] = set()
        seen: set[str] = set()

        def visit(name: str) -> None:
            if name in seen:
                return
            seen.add(name)
            spec = _REGISTRY[name]
            parts.update(spec.uses)
            for dep in spec.needs:
                visit(dep)

        for n in self.metrics:
            visit(n)
        return parts

    @property
    def reference(self) -> Reference:
        ref = self._reference_arg
        if not isinstance(ref, Reference):
            if ref is None:
                raise ValueError(f"metrics {self.metrics} need a reference dataset")
            ref = get_reference(
                ref, potential=self._potential, progress=self.progress, **self._reference_options
            )
            self._reference_arg = ref
        return ref

    def setup(self) -> Metrics:
        """Load (or build) every reference part the requested metrics use, once."""
        if self._ready:
            return self
        parts = self.required_parts()
        if ("vae" in parts or "features" in parts) and self.vae is None:
            names = [n for n in self.metrics if "vae" in self._uses_closure(n)]
            raise ValueError(f"metrics {', '.join(names)} need a VAE (vae=...)")
        start = time.perf_counter()
        if "structures" in parts:
            _ = self.reference.by_formula
        if "energy_model" in parts:
            _ = self.reference.energy_model.key
        if "hull" in parts:
            _ = self.reference.hull
        if "features" in parts:
            self._ref_features = self.reference.features(self.vae)
        self.timings["setup"] = time.perf_counter() - start
        self._ready = True
        return self

    def _uses_closure(self, name: str) -> set[str]:
        spec = _REGISTRY[name]
        out = set(spec.uses)
        for dep in spec.needs:
            out |= self._uses_closure(dep)
        return out

    def reference_features(self) -> dict:
        if self._ref_features is None:
            self._ref_features = self.reference.features(self.vae)
        return self._ref_features

    def reference_feature_stats(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        from crystalrl.metrics.diversity import gaussian_stats

        if kind not in self._ref_feature_stats:
            self._ref_feature_stats[kind] = gaussian_stats(self.reference_features()[kind])
        return self._ref_feature_stats[kind]

    # ------------------------------------------------------------------ compute
    def compute(self, structures: Sequence) -> dict[str, Any]:
        """Every requested metric of ``structures`` (pymatgen structures or ``None``)."""
        self.setup()
        self.structures = list(structures)
        self._formulas = None
        self.results = {}
        self.timings = {k: v for k, v in self.timings.items() if k == "setup"}
        for name in self.metrics:
            self.get(name)
        for name, spec in list(_REGISTRY.items()):
            if name in self.results and spec.column:
                self.results[f"avg_{name}"] = _average(self.results[name])
        return self.results

    def get(self, name: str) -> Any:
        """The value of one metric for the current structures, computing it if needed."""
        if name not in self.results:
            spec = _REGISTRY[name]
            for dep in spec.needs:
                self.get(dep)
            start = time.perf_counter()
            self.results[name] = spec.fn(self)
            self.timings[name] = time.perf_counter() - start
        return self.results[name]

    @property
    def valid(self) -> np.ndarray:
        return np.array([s is not None for s in self.structures], dtype=bool)

    @property
    def formulas(self) -> list[str | None]:
        """Reduced formula of each structure (``None`` for failed ones)."""
        if self._formulas is None:
            from crystalrl.metrics.novelty import reduced_formula

            self._formulas = [reduced_formula(s) for s in self.structures]
        return self._formulas

    # ------------------------------------------------------------------ output
    def to_dataframe(self) -> pd.DataFrame:
        """One row per structure: formula and every per-structure metric."""
        columns: dict[str, Any] = {
            "formula": [f or "" for f in self.formulas],
            "valid": self.valid,
        }
        for name in self.metrics:
            if _REGISTRY[name].column and name in self.results:
                columns[name] = self.results[name]
        for name in ("energy",):
            if name in self.results:
                columns[name] = self.results[name]
        return pd.DataFrame(columns)

    def summary(self) -> dict[str, float]:
        """Averages of per-structure metrics and the set-level metrics, as plain floats."""
        out: dict[str, float] = {}
        for name in self.metrics:
            if name not in self.results:
                continue
            value = self.results[name]
            if _REGISTRY[name].column:
                out[f"avg_{name}"] = float(self.results[f"avg_{name}"])
            elif isinstance(value, int | float | np.floating):
                out[name] = float(value)
        out["num_structures"] = len(self.structures)
        out["num_valid_structures"] = int(self.valid.sum())
        return out

    def to_csv(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.to_dataframe().to_csv(path, index_label="index")
        return path


def _average(values: Any) -> float:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0 or np.all(np.isnan(arr)):
        return math.nan
    return float(np.nanmean(arr))


# ====================================================================== the metrics
@register_metric("unique")
def _unique(m: Metrics) -> np.ndarray:
    from crystalrl.metrics.novelty import unique_flags

    return unique_flags(m.structures, m.formulas, m.match_timeout, m.num_workers)


@register_metric("novel", uses=("structures",))
def _novel(m: Metrics) -> np.ndarray:
    from crystalrl.metrics.novelty import novel_flags

    ref = m.reference
    return novel_flags(
        m.structures, ref.structures_with_formula, m.formulas, m.match_timeout, m.num_workers
    )


@register_metric("energy", uses=("energy_model",))
def _energy(m: Metrics) -> np.ndarray:
    """Energy per atom from the reference's potential (the hull's own).

    Collapsed cells get NaN without being passed to the potential (see
    :func:`~crystalrl.metrics.validity.cell_collapsed`); overlapping atoms in a cell of
    normal size are evaluated, and their high energy is what tells the RL stage apart.
    """
    from crystalrl.metrics.validity import cell_collapsed

    valid = np.array([not cell_collapsed(s) for s in m.structures], dtype=bool)
    out = np.full(len(m.structures), np.nan)
    idx = np.flatnonzero(valid)
    if len(idx):
        out[idx] = m.reference.energy_model.energies([m.structures[i] for i in idx])
    return out


@register_metric(
    "e_above_hull", needs=("energy",), uses=("hull",), implies=("is_metastable", "is_stable")
)
def _e_above_hull(m: Metrics) -> np.ndarray:
    hull = m.reference.hull
    comps = [None if s is None else s.composition for s in m.structures]
    return hull.e_above_hull_many(comps, m.results["energy"])


@register_metric("is_metastable", needs=("e_above_hull",))
def _is_metastable(m: Metrics) -> np.ndarray:
    e = m.results["e_above_hull"]
    with np.errstate(invalid="ignore"):
        return np.where(np.isnan(e), False, e <= m.metastable_threshold)


@register_metric("is_stable", needs=("e_above_hull",))
def _is_stable(m: Metrics) -> np.ndarray:
    e = m.results["e_above_hull"]
    with np.errstate(invalid="ignore"):
        return np.where(np.isnan(e), False, e <= m.stable_tolerance)


@register_metric("MSUN", needs=("unique", "novel", "is_metastable"))
def _msun(m: Metrics) -> np.ndarray:
    r = m.results
    return r["unique"] & r["novel"] & r["is_metastable"]


@register_metric("SUN", needs=("unique", "novel", "is_stable"))
def _sun(m: Metrics) -> np.ndarray:
    r = m.results
    return r["unique"] & r["novel"] & r["is_stable"]


@register_metric("composition_validity")
def _composition_validity(m: Metrics) -> np.ndarray:
    from crystalrl.metrics.validity import composition_valid

    return np.array([composition_valid(s) for s in m.structures], dtype=bool)


@register_metric("structure_validity")
def _structure_validity(m: Metrics) -> np.ndarray:
    from crystalrl.metrics.validity import structure_valid

    return np.array([structure_valid(s) for s in m.structures], dtype=bool)


@register_metric("atomic_density")
def _atomic_density(m: Metrics) -> np.ndarray:
    """Atoms per Å³ (NaN for failed structures): the objective of ``rl_custom_reward``."""
    from crystalrl.rewards.functions import atomic_density

    out = np.full(len(m.structures), np.nan)
    idx = np.flatnonzero(m.valid)
    if len(idx):
        out[idx] = atomic_density([m.structures[i] for i in idx])
    return out


@register_metric("geometry", column=False)
def _geometry(m: Metrics) -> dict[str, np.ndarray]:
    """Shortest distance, contact ratio and contact-physical flag of every structure."""
    from crystalrl.metrics.geometry import geometry_arrays

    return geometry_arrays(m.structures)


@register_metric("shortest_distance", needs=("geometry",))
def _shortest_distance(m: Metrics) -> np.ndarray:
    return m.results["geometry"]["shortest_distance"]


@register_metric("contact_ratio", needs=("geometry",))
def _contact_ratio(m: Metrics) -> np.ndarray:
    return m.results["geometry"]["contact_ratio"]


@register_metric(
    "physical",
    needs=("geometry",),
    implies=(
        "median_shortest_distance",
        "median_contact_ratio",
        "shortest_distance",
        "contact_ratio",
    ),
)
def _physical(m: Metrics) -> np.ndarray:
    """Contact ratio ≥ 0.7, as every MP-20 crystal; failed structures are not physical."""
    return m.results["geometry"]["physical"]


@register_metric("median_shortest_distance", needs=("geometry",), column=False)
def _median_shortest_distance(m: Metrics) -> float:
    return _median(m.results["geometry"]["shortest_distance"])


@register_metric("median_contact_ratio", needs=("geometry",), column=False)
def _median_contact_ratio(m: Metrics) -> float:
    return _median(m.results["geometry"]["contact_ratio"])


def _median(values: np.ndarray) -> float:
    return math.nan if np.all(np.isnan(values)) else float(np.nanmedian(values))


# the reference features are loaded with it: whoever needs features compares them with those
@register_metric("features", uses=("vae", "features"), column=False)
def _features(m: Metrics) -> dict:
    """VAE features of the valid structures (rows follow ``np.flatnonzero(valid)``)."""
    import torch

    from crystalrl.vae.features import structure_features

    idx = np.flatnonzero(m.valid)
    if not len(idx):
        d = m.vae.vae.latent_dim, m.vae.vae.d_model
        return {"structure": torch.zeros(0, d[0]), "composition": torch.zeros(0, d[1])}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        feats = structure_features(m.vae, [m.structures[i] for i in idx])
    return {k: v.detach().float().cpu() for k, v in feats.items()}


@register_metric("structure_diversity", needs=("features",), uses=("features",), column=False)
def _structure_diversity(m: Metrics) -> float:
    from crystalrl.metrics.diversity import diversity_score

    return diversity_score(
        m.results["features"]["structure"], m.reference_feature_stats("structure")
    )


@register_metric("composition_diversity", needs=("features",), uses=("features",), column=False)
def _composition_diversity(m: Metrics) -> float:
    from crystalrl.metrics.diversity import diversity_score

    return diversity_score(
        m.results["features"]["composition"], m.reference_feature_stats("composition")
    )
