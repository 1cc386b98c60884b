"""Named metrics of a set of generated structures, each computed once and shared.

:class:`Metrics` evaluates the requested metrics of the registry (:mod:`.registry`, filled
by :mod:`.definitions`) against a reference, resolving their dependencies so each is
computed exactly once per batch, and loads only the reference parts they use. Reward
components read a batch's values as a :class:`~crystalrl.metrics.results.MetricResults`
(:meth:`Metrics.snapshot`); evaluation reads the table and the summary.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

import crystalrl.metrics.definitions  # noqa: F401  (fills the registry)
from crystalrl.gc_pause import collector_paused
from crystalrl.metrics.registry import REGISTRY, nan_mean
from crystalrl.metrics.results import MetricResults
from crystalrl.reference import Reference, get_reference
from crystalrl.reference.datasets import DEFAULT_REFERENCE
from crystalrl.reference.hull import MIN_HULL_SUPPORT

if TYPE_CHECKING:
    from crystalrl.metrics.matcher_cells import MatcherCells

log = logging.getLogger("crystalrl")

DEFAULT_METRICS = (
    "unique",
    "novel",
    "e_above_hull",
    "composition_validity",
    "structure_diversity",
    "composition_diversity",
)


class Metrics:
    """Evaluate named metrics of generated structures against a reference.

    ``reference`` is a :class:`Reference`, a reference name (``mp-20``) or a dataset
    folder; ``vae`` (a VAE module) is needed only by the feature-based metrics.
    """

    def __init__(
        self,
        metrics: Sequence[str] | None = None,
        reference: Reference | str | None = DEFAULT_REFERENCE,
        vae: Any = None,
        potential: Any = None,
        metastable_threshold: float = 0.1,
        stable_tolerance: float = 1e-5,
        min_hull_support: int = MIN_HULL_SUPPORT,
        match_timeout: float = 30.0,
        num_workers: int | None = None,
        progress: bool = False,
        reference_options: dict | None = None,
    ):
        names = list(metrics) if metrics is not None else list(DEFAULT_METRICS)
        unknown = [n for n in names if n not in REGISTRY]
        if unknown:
            raise ValueError(
                f"unknown metric(s) {', '.join(unknown)}; available: {', '.join(REGISTRY)}"
            )
        self.metrics = self._with_derived(names)
        self._reference_arg = reference
        self._reference_options = dict(reference_options or {})
        self._potential = potential
        self.vae = vae
        self.metastable_threshold = metastable_threshold
        self.stable_tolerance = stable_tolerance
        if not (isinstance(min_hull_support, int) and min_hull_support >= 0):
            raise ValueError(f"min_hull_support must be an integer >= 0, got {min_hull_support!r}")
        self.min_hull_support = min_hull_support
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
        self._matcher_cells: MatcherCells | None = None

    @staticmethod
    def _with_derived(names: list[str]) -> list[str]:
        """Add what a request implies: E_hull -> stability flags; U+N+stability -> (M)SUN."""
        out = list(dict.fromkeys(names))
        for name in list(out):
            for extra in REGISTRY[name].implies:
                if extra not in out:
                    out.append(extra)
        if {"unique", "novel", "is_metastable"} <= set(out) and "MSUN" not in out:
            out.append("MSUN")
        if {"unique", "novel", "is_stable"} <= set(out) and "SUN" not in out:
            out.append("SUN")
        if {"MSUN", "hull_support"} <= set(out):
            extra = ("is_supported", "MSUN_supported", "MSUN_credible", "MSUN_deep_below_hull")
            out += [n for n in extra if n not in out]
        return out

    # ------------------------------------------------------------------ setup
    def required_parts(self) -> set[str]:
        parts: set[str] = set()
        seen: set[str] = set()

        def visit(name: str) -> None:
            if name in seen:
                return
            seen.add(name)
            spec = REGISTRY[name]
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
        from crystalrl.metrics.cold_start import PART_CACHES, announce_uncached

        if PART_CACHES.keys() & set(parts):  # a first run on an empty cache says why it is slow
            announce_uncached(self.reference, parts, log)
        start = time.perf_counter()
        if "structures" in parts:
            _ = self.reference.by_formula
            _ = self.matcher_cells
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
        spec = REGISTRY[name]
        out = set(spec.uses)
        for dep in spec.needs:
            out |= self._uses_closure(dep)
        return out

    @property
    def matcher_cells(self) -> MatcherCells:
        """The reference in StructureMatcher's cells, for novelty (built once, then cached)."""
        if self._matcher_cells is None:
            from crystalrl.metrics.matcher_cells import MatcherCells

            self._matcher_cells = MatcherCells(self.reference, self.num_workers)
        return self._matcher_cells

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
        with collector_paused():
            for name in self.metrics:
                self.get(name)
        for name, spec in list(REGISTRY.items()):
            if name in self.results and spec.column:
                self.results[f"avg_{name}"] = nan_mean(self.results[name])
        return self.results

    def get(self, name: str) -> Any:
        """The value of one metric for the current structures, computing it if needed."""
        if name not in self.results:
            spec = REGISTRY[name]
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

    def snapshot(self) -> MetricResults:
        """The current batch's values as the typed, read-only record reward components read.

        Holds only what was computed: the reference is included when a metric used it, the
        reference features when the batch's ``features`` were computed.
        """
        ref = self._reference_arg if isinstance(self._reference_arg, Reference) else None
        features = "features" in self.results
        return MetricResults.from_values(
            self.results,
            formulas=tuple(self.formulas),
            reference=ref,
            reference_features=self.reference_features() if features else None,
            averages={
                k: float(v)
                for k, v in self.results.items()
                if k.startswith("avg_")
                or (k in REGISTRY and not REGISTRY[k].column and isinstance(v, int | float))
            },
        )

    # ------------------------------------------------------------------ output
    def to_dataframe(self) -> pd.DataFrame:
        """One row per structure: formula and every per-structure metric."""
        columns: dict[str, Any] = {
            "formula": [f or "" for f in self.formulas],
            "valid": self.valid,
        }
        for name in self.metrics:
            if REGISTRY[name].column and name in self.results:
                columns[name] = self.results[name]
        for name in ("energy",):
            if name in self.results:
                columns[name] = self.results[name]
        return pd.DataFrame(columns)

    def summary(self) -> dict[str, float]:
        """Averages of per-structure metrics, the set-level metrics and counts of structures
        (all, decoded, without energy)."""
        out: dict[str, float] = {}
        for name in self.metrics:
            if name not in self.results:
                continue
            value = self.results[name]
            if REGISTRY[name].column:
                out[f"avg_{name}"] = float(self.results[f"avg_{name}"])
            elif isinstance(value, int | float | np.floating):
                out[name] = float(value)
        out["num_structures"] = len(self.structures)
        out["num_valid_structures"] = int(self.valid.sum())
        if "energy" in self.results:
            # decoded structures without an energy: the potential failed on them (or the
            # cell was collapsed); they count as unstable, and a count that grows says so
            failed = self.valid & np.isnan(np.asarray(self.results["energy"], dtype=np.float64))
            out["energy_failed"] = int(failed.sum())
        return out

    def to_csv(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.to_dataframe().to_csv(path, index_label="index")
        return path
