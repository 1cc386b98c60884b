"""Structure matching (crystalrl.metrics.matching): each cell reduced once, the matcher's
answers unchanged, and cells that cannot match rejected without calling pymatgen."""

from __future__ import annotations

import numpy as np
import pytest


def displaced(structure, distance: float, seed: int = 0):
    """Every atom moved by exactly ``distance`` Å in a random direction."""
    return structure.copy().perturb(distance, min_distance=None, seed=seed)


def test_matcher_cells_give_the_answers_of_plain_fit(emt_reference, emt_val):
    """Reducing each cell once and skipping the per-pair reduction must not change a match:
    a 2x supercell still matches its primitive cell, a displaced copy still does, another
    formula does not; and the reference's cached cells are the matcher's own reduction."""
    from crystalrl.metrics.matching import fit, matcher, reduced_cell

    sm = matcher()
    a, b = emt_val[0], next(s for s in emt_val if s.composition != emt_val[0].composition)
    pairs = [(a, a.copy().make_supercell([2, 1, 1])), (a, displaced(a, 0.05)), (a, b)]
    plain = [fit(sm, x, y) for x, y in pairs]
    assert plain == [True, True, False]
    assert [fit(sm, reduced_cell(x), reduced_cell(y), reduced=True) for x, y in pairs] == plain
    # skipping the reduction of unreduced cells is what the reduced cells are for
    assert not fit(sm, pairs[0][0], pairs[0][1], reduced=True)
    assert reduced_cell(None) is None

    from crystalrl.metrics.matcher_cells import MatcherCells

    formula = "CuAu"
    cached = MatcherCells(emt_reference, num_workers=2).with_formula(formula)
    direct = [reduced_cell(s) for s in emt_reference.structures_with_formula(formula)]
    assert len(cached) == len(direct) >= 2
    for c, d in zip(cached, direct, strict=True):
        assert np.allclose(c.lattice.matrix, d.lattice.matrix)
        assert np.allclose(c.frac_coords, d.frac_coords) and c.species == d.species


def test_reduced_cells_of_different_sizes_miss_without_calling_pymatgen(monkeypatch):
    from pymatgen.core import Lattice, Structure

    from crystalrl.metrics.matching import fit, matcher, reduced_cell

    sm = matcher()
    rocksalt = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0] * 3, [0.5] * 3]
    )
    distorted = rocksalt.copy()
    distorted.translate_sites([0], [0.1, 0.0, 0.0])  # its conventional cell is now primitive
    a, b = reduced_cell(rocksalt, sm), reduced_cell(distorted, sm)
    assert (len(a), len(b)) == (2, 8)
    assert not sm.fit(a, b, skip_structure_reduction=True)  # pymatgen's answer
    assert fit(sm, a, reduced_cell(rocksalt.copy(), sm), reduced=True)  # same size: still fitted
    monkeypatch.setattr(type(sm), "fit", lambda *a, **k: pytest.fail("pymatgen was called"))
    assert not fit(sm, a, b, reduced=True)
