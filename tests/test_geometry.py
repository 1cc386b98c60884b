"""Geometry metrics: shortest distance and contact ratio with known values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from crystalrl.metrics.geometry import PHYSICAL_CONTACT_RATIO, atomic_radius, geometry


@pytest.fixture(scope="module")
def mp20_val_structures(datasets, tmp_path_factory) -> list:
    """The first 100 MP-20 val crystals, Niggli-reduced as the data layer reads them."""
    import pandas as pd

    from crystalrl.data.datamodule import CrystalDataset, collate
    from crystalrl.data.parse import read_split

    path = tmp_path_factory.mktemp("mp20") / "val.csv"
    pd.read_csv(datasets / "mp_20" / "val.csv.gz", nrows=100).to_csv(path, index=False)
    ds = CrystalDataset(read_split(path))
    return collate([ds[i] for i in range(len(ds))]).to_structures()


def rock_salt(a: float = 5.64) -> Structure:
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


def test_rock_salt_has_its_textbook_distance_and_is_physical():
    g = geometry(rock_salt())
    assert g.shortest_distance == pytest.approx(2.82, abs=1e-6)
    assert g.contact_ratio == pytest.approx(2.82 / (atomic_radius(11) + atomic_radius(17)))
    assert g.physical


def test_overlapping_atoms_are_not_physical():
    s = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0, 0, 0], [0.1, 0, 0]])
    g = geometry(s)
    assert g.shortest_distance == pytest.approx(0.5)
    assert g.contact_ratio < PHYSICAL_CONTACT_RATIO and not g.physical


def test_one_atom_cell_counts_its_own_images():
    g = geometry(Structure(Lattice.cubic(1.5), ["Cu"], [[0, 0, 0]]))
    assert g.shortest_distance == pytest.approx(1.5)
    assert g.contact_ratio == pytest.approx(1.5 / (2 * atomic_radius(29)))


def test_failed_structure_has_nan_figures():
    g = geometry(None)
    assert math.isnan(g.shortest_distance) and not g.physical


def test_random_placement_keeps_cells_and_elements():
    from crystalrl.metrics.geometry import random_placement

    s = rock_salt()
    out = random_placement([s, None], np.random.default_rng(0))
    assert out[1] is None
    assert out[0].lattice == s.lattice and out[0].species == s.species
    assert not np.allclose(out[0].frac_coords, s.frac_coords)
    assert ((out[0].frac_coords >= 0) & (out[0].frac_coords < 1)).all()


def test_random_placement_is_less_physical_than_real_crystals(mp20_val_structures):
    from crystalrl.metrics.geometry import geometry_arrays, random_placement

    real = geometry_arrays(mp20_val_structures)
    rand = geometry_arrays(random_placement(mp20_val_structures, np.random.default_rng(0)))
    assert real["physical"].mean() == 1.0
    assert rand["physical"].mean() < 0.5
    assert np.median(rand["shortest_distance"]) < np.median(real["shortest_distance"]) - 0.5
