"""What each named metric computes, registered under its name (see :mod:`.registry`).

"Stable" is E_hull ≤ 0 up to ``stable_tolerance`` (1e-5 eV/atom): the potential's energies
are float32, so a structure exactly on the hull, re-evaluated in another cell, lands a few
1e-7 eV/atom to either side of it.

Failed structures (``None``) are neither unique, novel nor valid, have NaN energy and
E_hull, and count in the denominators of every rate.
"""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING

import numpy as np

from crystalrl.metrics.registry import nan_median, register_metric

if TYPE_CHECKING:
    from crystalrl.metrics.metrics import Metrics

log = logging.getLogger("crystalrl")
#: E_hull (eV/atom) below which an MSUN hit is not credible: further below a DFT-anchored
#: hull than CHGNet's formation-energy error on left-out reference crystals allows
#: (``benchmarks/hull_accuracy.py``), as OMatGRPO treats E_hull < -0.1 as an error.
CREDIBLE_MIN_E_ABOVE_HULL = -0.1
#: E_hull (eV/atom) below which an MSUN hit is counted as a sign of reward hacking.
DEEP_BELOW_HULL = -0.2
#: Element sets already warned about (an RL run would repeat the warning every step).
_WARNED: set[tuple[str, ...]] = set()


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
    "e_above_hull",
    needs=("energy",),
    uses=("hull",),
    implies=("is_metastable", "is_stable", "hull_support"),
)
def _e_above_hull(m: Metrics) -> np.ndarray:
    hull = m.reference.hull
    comps = [None if s is None else s.composition for s in m.structures]
    missing = hull.missing_elements(comps)
    if missing and tuple(missing) not in _WARNED:
        _WARNED.add(tuple(missing))
        log.warning(
            "no compound of reference %s contains %s: E_hull of structures with them is NaN "
            "(counted as failed)",
            m.reference.name,
            ", ".join(missing),
        )
    return hull.e_above_hull_many(comps, m.results["energy"])


@register_metric("hull_support", uses=("hull",))
def _hull_support(m: Metrics) -> np.ndarray:
    """Reference compounds in each structure's chemical system and its subsystems: how much
    the hull knows where the structure lies (:class:`crystalrl.reference.hull.ReferenceHull`)."""
    comps = [None if s is None else s.composition for s in m.structures]
    return m.reference.hull.support_many(comps)


@register_metric("is_supported", needs=("hull_support",))
def _is_supported(m: Metrics) -> np.ndarray:
    return np.asarray(m.results["hull_support"]) >= m.min_hull_support


@register_metric("MSUN_supported", needs=("MSUN", "is_supported"))
def _msun_supported(m: Metrics) -> np.ndarray:
    """MSUN hits in chemical systems the hull knows (≥ ``min_hull_support`` compounds)."""
    return m.results["MSUN"] & m.results["is_supported"]


@register_metric("MSUN_credible", needs=("MSUN_supported", "e_above_hull", "is_single_element"))
def _msun_credible(m: Metrics) -> np.ndarray:
    """MSUN hits a materials scientist would look at twice: in a supported system, with
    two or more elements (a one-element cell repacks a known element), and not deeper
    below the hull than the potential's and the reference's errors allow."""
    e = np.asarray(m.results["e_above_hull"], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        plausible = e >= CREDIBLE_MIN_E_ABOVE_HULL
    # an MSUN hit is a decoded structure, so "not one element" means two or more
    return m.results["MSUN_supported"] & ~m.results["is_single_element"] & plausible


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


# ---------------------------------------------------------------- signs of reward hacking
# A policy that games its reward leaves marks a materials scientist checks first: cells of
# one element (repacked known elements), hits far below the hull (the potential or the
# reference is wrong there), chemistry that narrows to a few systems, cells that inflate.


@register_metric("is_single_element")
def _is_single_element(m: Metrics) -> np.ndarray:
    return np.array(
        [s is not None and len(s.composition.elements) == 1 for s in m.structures], dtype=bool
    )


@register_metric("MSUN_deep_below_hull", needs=("MSUN", "e_above_hull"))
def _msun_deep_below_hull(m: Metrics) -> np.ndarray:
    """MSUN hits more than DEEP_BELOW_HULL eV/atom below the hull: errors, not discoveries."""
    e = np.asarray(m.results["e_above_hull"], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return m.results["MSUN"] & (e < DEEP_BELOW_HULL)


@register_metric("num_distinct_formulas", column=False)
def _num_distinct_formulas(m: Metrics) -> float:
    return float(len({f for f in m.formulas if f}))


@register_metric("num_distinct_systems", column=False)
def _num_distinct_systems(m: Metrics) -> float:
    return float(
        len({frozenset(map(str, s.composition.elements)) for s in m.structures if s is not None})
    )


# "cells": the reference's parsed cells only, read when first asked for (no part to build)
@register_metric("density_vs_reference", needs=("atomic_density",), uses=("cells",), column=False)
def _density_vs_reference(m: Metrics) -> float:
    """Mean atomic density over the reference's: below 1, the cells inflate."""
    from crystalrl.metrics.registry import nan_mean

    return nan_mean(m.results["atomic_density"]) / m.reference.mean_atomic_density


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
