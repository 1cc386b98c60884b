"""SevenNet, the second potential: its batched single points and forces must be the ones its
own ASE calculator gives one structure at a time, and a structure it cannot take is NaN
(a failed energy), never an exception."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.ase import AseAtomsAdaptor

from crystalrl.potentials import SevenNetEnergy, make_energy_model

pytestmark = pytest.mark.slow  # loads SevenNet-0 (~10 s on a CPU)


@pytest.fixture(scope="module")
def sevennet() -> SevenNetEnergy:
    return SevenNetEnergy(batch_size=4)


@pytest.fixture(scope="module")
def crystals(datasets) -> list[Structure]:
    frame = pd.read_csv(datasets / "mp_20" / "val.csv.gz", nrows=12)
    return [Structure.from_str(cif, fmt="cif") for cif in frame["cif"]]


def test_batched_energies_and_forces_are_the_calculators(sevennet, crystals):
    energies = sevennet.energies(crystals)  # three batches of 4
    atoms = [AseAtomsAdaptor.get_atoms(s) for s in crystals[:5]]
    batch = sevennet.evaluate_batch(atoms)
    calculator = sevennet.ase_calculator()
    for s, a, e, (total, forces, stress) in zip(crystals, atoms, energies, batch, strict=False):
        a = a.copy()
        a.calc = calculator
        assert e == pytest.approx(a.get_potential_energy() / len(s), abs=1e-5)
        assert total == pytest.approx(a.get_potential_energy(), abs=1e-4)
        np.testing.assert_allclose(forces, a.get_forces(), atol=1e-4)
        np.testing.assert_allclose(stress, a.get_stress(), atol=1e-5)
    assert np.isfinite(energies).all() and (energies < 0).all()


def test_a_structure_sevennet_cannot_take_is_nan_and_spoils_nothing(sevennet, crystals):
    isolated = Structure(Lattice.cubic(20.0), ["Na"], [[0, 0, 0]])  # no neighbour in 5 Å
    energies = sevennet.energies([crystals[0], isolated, None, crystals[1]])
    assert np.isnan(energies[1]) and np.isnan(energies[2])
    assert energies[[0, 3]] == pytest.approx(sevennet.energies(crystals[:2]), abs=1e-6)


def test_the_potential_config_group_makes_it_with_its_own_cache_key():
    from omegaconf import OmegaConf

    from crystalrl.config import CONFIG_DIR

    model = make_energy_model(OmegaConf.load(f"{CONFIG_DIR}/potential/sevennet.yaml"))
    assert isinstance(model, SevenNetEnergy)
    assert model.key == "sevennet-7net-0"


def test_the_shipped_sevennet_table_is_sevennets_and_is_reused(sevennet, datasets, tmp_path):
    """reference/mp_sevennet.npz spares a first SevenNet evaluation 20 minutes of reference
    energies: its rows must be SevenNet's, and a reference must take them instead of
    recomputing."""
    from pathlib import Path

    from crystalrl.reference import Reference
    from crystalrl.reference.energy_table import EnergyTable

    frame = pd.read_csv(datasets / "mp_20" / "val.csv.gz", nrows=3)
    frame.to_csv(tmp_path / "val.csv", index=False)
    shipped = EnergyTable.load(Path(__file__).parents[1] / "reference" / "mp_sevennet.npz")
    assert shipped.potential == sevennet.key
    lookup = dict(zip(shipped.material_id, shipped.energy_per_atom, strict=True))
    expected = np.array([lookup[m] for m in frame["material_id"]])
    structures = [Structure.from_str(c, fmt="cif") for c in frame["cif"]]
    assert sevennet.energies(structures) == pytest.approx(expected, abs=2e-4)

    class Refuses(SevenNetEnergy):
        def energies(self, *args, **kwargs):
            raise AssertionError("recomputed a shipped energy")

    ref = Reference(tmp_path, potential=Refuses(), cache_dir=tmp_path / "cache", progress=False)
    assert ref.energies == pytest.approx(expected, abs=1e-6)
