"""Validity of generated crystals: structural (distances, volume) and compositional (SMACT).

Uses the ICSD 2024 oxidation-state set, as the benchmarks we compare with do. SMACT
enumerates oxidation-state combinations, which can be slow for large stoichiometries,
so results are memoised by reduced formula, and a formula with more than
:data:`MAX_SMACT_ELEMENTS` distinct elements counts as invalid without being enumerated:
the number of oxidation-state combinations grows exponentially with the element count
(a 12-element formula from an untrained model takes minutes and gigabytes), while no
MP-20, perov-5 or carbon-24 structure has more than 7 elements.
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np

#: Formulas with more distinct elements than this are not enumerated (counted invalid).
MAX_SMACT_ELEMENTS = 8


@lru_cache(maxsize=65536)
def _valid_formula(formula: str) -> bool:
    from pymatgen.core import Composition
    from smact.screening import smact_validity

    try:
        comp = Composition(formula)
        if len(comp.elements) > MAX_SMACT_ELEMENTS:
            return False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return bool(smact_validity(comp, oxidation_states_set="icsd24"))
    except Exception:  # elements SMACT has no data for
        return False


def composition_valid(structure_or_composition) -> bool:
    """SMACT validity of a structure's (or a composition's) formula; ``None`` is invalid."""
    if structure_or_composition is None:
        return False
    comp = getattr(structure_or_composition, "composition", structure_or_composition)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            formula = comp.reduced_formula
    except Exception:
        return False
    return _valid_formula(formula)


def cell_collapsed(
    structure, min_volume_per_atom: float = 1.0, min_lattice_vector: float = 0.5
) -> bool:
    """A cell too small for a potential: under ``min_volume_per_atom`` Å³ per atom (the
    densest crystals have about 5) or with a lattice vector under ``min_lattice_vector`` Å.
    Such cells put thousands of images inside a potential's cutoff, so building their
    graph takes minutes and gigabytes; ``None`` counts as collapsed."""
    if structure is None:
        return True
    try:
        if not structure.volume / len(structure) >= min_volume_per_atom:
            return True
        return not min(structure.lattice.get_lll_reduced_lattice().abc) >= min_lattice_vector
    except Exception:
        return True


def structure_valid(structure, min_distance: float = 0.5, min_volume: float = 0.1) -> bool:
    """CDVAE's structural validity: every interatomic distance (periodic images included)
    above ``min_distance`` Å and a cell volume above ``min_volume`` Å³.

    An atom's distance to its own images is the shortest lattice vector, which the
    LLL-reduced basis gives; the minimum-image distance matrix covers the other pairs.
    """
    if structure is None:
        return False
    try:
        if not structure.volume > min_volume:
            return False
        if not min(structure.lattice.get_lll_reduced_lattice().abc) > min_distance:
            return False
        if len(structure) == 1:
            return True
        dist = structure.distance_matrix
    except Exception:
        return False
    n = len(structure)
    off_diagonal = dist[~np.eye(n, dtype=bool)]
    return bool(off_diagonal.min() > min_distance)
