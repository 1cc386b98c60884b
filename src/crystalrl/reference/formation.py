"""Formation energies from a potential's energies: per-element chemical potentials fitted
on reference rows that carry a DFT formation energy.

A potential's total energies and DFT formation energies differ by a linear function of
composition (the elements' reference energies, and corrections such as MP2020's that the
potential learned and the elemental references lack). Fitting that function on thousands
of labelled rows places the potential's energies on the DFT scale more faithfully than
the potential's own elemental crystals would.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: A DFT label further than this (eV/atom) from the potential's formation energy is taken
#: for a data error (the band-gap set holds Li3Fe2SbO6 at -13.6 eV/atom) and not used.
MAX_LABEL_RESIDUAL = 1.0


def _fractions(element_counts: Sequence[dict[str, int]]) -> tuple[list[str], np.ndarray]:
    """Elements and the atomic-fraction matrix (rows × elements) of element counts."""
    elements = sorted({el for c in element_counts for el in c})
    col = {el: j for j, el in enumerate(elements)}
    x = np.zeros((len(element_counts), len(elements)))
    for i, c in enumerate(element_counts):
        total = sum(c.values())
        for el, n in c.items():
            x[i, col[el]] = n / total
    return elements, x


def fit_chemical_potentials(
    element_counts: Sequence[dict[str, int]], energies: np.ndarray, dft_formation: np.ndarray
) -> dict[str, float]:
    """Per-element μ with energy − Σ x_el μ_el ≈ DFT formation energy, by least squares
    over the rows that carry both; rows further than MAX_LABEL_RESIDUAL from the fit are
    dropped and the fit repeated until the kept rows settle. Elements of no kept row get
    no μ."""
    ok = np.isfinite(energies) & np.isfinite(dft_formation)
    rows = [c for c, k in zip(element_counts, ok, strict=True) if k]
    elements, x = _fractions(rows)
    y = energies[ok] - dft_formation[ok]
    keep = np.ones(len(y), dtype=bool)
    for _ in range(5):
        mu = np.linalg.lstsq(x[keep], y[keep], rcond=None)[0]
        again = np.abs(x @ mu - y) <= MAX_LABEL_RESIDUAL
        if (again == keep).all():
            break
        keep = again
    present = x[keep].sum(axis=0) > 0
    return {el: float(m) for el, m, p in zip(elements, mu, present, strict=True) if p}


def formation_energies(
    element_counts: Sequence[dict[str, int]], energies: np.ndarray, mu: dict[str, float]
) -> np.ndarray:
    """energy − Σ x_el μ_el per row; NaN where an element has no μ."""
    out = np.full(len(element_counts), np.nan)
    for i, (c, e) in enumerate(zip(element_counts, energies, strict=True)):
        if np.isfinite(e) and all(el in mu for el in c):
            total = sum(c.values())
            out[i] = e - sum(n / total * mu[el] for el, n in c.items())
    return out
