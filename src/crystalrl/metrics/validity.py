"""Composition validity: charge neutrality and electronegativity ordering (SMACT).

Uses the ICSD 2024 oxidation-state set, as the benchmarks we compare with do. SMACT
enumerates oxidation-state combinations, which can be slow for large stoichiometries,
so results are memoised by reduced formula.
"""

from __future__ import annotations

import warnings
from functools import lru_cache


@lru_cache(maxsize=65536)
def _valid_formula(formula: str) -> bool:
    from pymatgen.core import Composition
    from smact.screening import smact_validity

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return bool(smact_validity(Composition(formula), oxidation_states_set="icsd24"))
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
