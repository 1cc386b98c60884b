"""Validity of structures and compositions (crystalrl.metrics.validity), and the Fréchet
distance the diversity metrics are built on."""

from __future__ import annotations

import pytest
import torch


def test_composition_validity_and_frechet_distance():
    from pymatgen.core import Composition

    from crystalrl.metrics.diversity import diversity_score, frechet_distance, gaussian_stats
    from crystalrl.metrics.validity import composition_valid

    assert composition_valid(Composition("NaCl")) and composition_valid(Composition("Fe2O3"))
    assert not composition_valid(Composition("NaCl2")) and not composition_valid(None)
    # a = {-1, 1}: mean 0, var 2; b = {-1, 3}: mean 1, var 8 -> FD = 1 + 2 + 8 - 2*4 = 3
    a, b = torch.tensor([[-1.0], [1.0]]), torch.tensor([[-1.0], [3.0]])
    assert frechet_distance(gaussian_stats(a), gaussian_stats(b)) == pytest.approx(3.0)
    assert diversity_score(a, gaussian_stats(b)) == pytest.approx(0.25)
    assert frechet_distance(gaussian_stats(b), gaussian_stats(b)) == pytest.approx(0.0, abs=1e-9)


def test_structure_validity_distances_and_volume():
    from pymatgen.core import Lattice, Structure

    from crystalrl.metrics.validity import structure_valid

    good = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert structure_valid(good)
    close = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.1, 0, 0]])  # 0.4 Å
    assert not structure_valid(close)
    # periodic images count: a 0.45 Å cell edge puts an atom 0.45 Å from its own image
    assert not structure_valid(Structure(Lattice.tetragonal(0.45, 5.0), ["H"], [[0, 0, 0]]))
    assert structure_valid(Structure(Lattice.tetragonal(2.0, 5.0), ["H"], [[0, 0, 0]]))
    assert not structure_valid(None)
    # with several atoms the self-image distance hides in the shortest lattice vector of a
    # sheared cell: a 0.3 Å vector c = (0.3, 0, 0) disguised as (4.3, 0, 0.1) - (4, 0, 0.1)
    sheared = Lattice([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [4.3, 0.0, 0.1]])
    two = Structure(sheared, ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert min(two.lattice.abc) > 0.5 and not structure_valid(two)


def test_many_element_formula_is_invalid_without_enumeration():
    import time

    from pymatgen.core import Composition

    from crystalrl.metrics.validity import MAX_SMACT_ELEMENTS, composition_valid

    # 12 elements: SMACT's oxidation-state enumeration would take minutes and gigabytes
    formula = Composition("LiNaKRbCsMgCaSrBaFClBrI2O3")
    assert len(formula.elements) > MAX_SMACT_ELEMENTS
    start = time.perf_counter()
    assert not composition_valid(formula)
    assert time.perf_counter() - start < 5.0
    assert composition_valid(Composition("Li2NaKMgCaSrO5"))  # 7 elements are still checked
