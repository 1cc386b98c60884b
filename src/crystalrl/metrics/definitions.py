"""What each named metric computes, registered under its name (see :mod:`.registry`).

"Stable" is E_hull ≤ 0 up to ``stable_tolerance`` (1e-5 eV/atom): the potential's energies
are float32, so a structure exactly on the hull, re-evaluated in another cell, lands a few
1e-7 eV/atom to either side of it.

Failed structures (``None``) are neither unique, novel nor valid, have NaN energy and
E_hull, and count in the denominators of every rate.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

from crystalrl.metrics.registry import nan_median, register_metric

if TYPE_CHECKING:
    from crystalrl.metrics.metrics import Metrics


@register_metric("unique")
def _unique(m: Metrics) -> np.ndarray:
    from crystalrl.metrics.novelty import unique_flags

    return unique_flags(m.structures, m.formulas, m.match_timeout, m.num_workers)


@register_metric("novel", uses=("structures",))
def _novel(m: Metrics) -> np.ndarray:
    from crystalrl.metrics.novelty import novel_flags

    return novel_flags(
        m.structures,
        m.matcher_cells.with_formula,
        m.formulas,
        m.match_timeout,
        m.num_workers,
        reference_reduced=True,
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
    from crystalrl.metrics.density import atomic_density

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
    return nan_median(m.results["geometry"]["shortest_distance"])


@register_metric("median_contact_ratio", needs=("geometry",), column=False)
def _median_contact_ratio(m: Metrics) -> float:
    return nan_median(m.results["geometry"]["contact_ratio"])


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
