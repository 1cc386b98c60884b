"""The ``potential`` config group: which energy model a command builds, and under which
cache key, without loading CHGNet's weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EMT = {"_target_": "ase.calculators.emt.EMT"}


def _compose_evaluate(overrides: list[str]):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from crystalrl.config import CONFIG_DIR

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            return compose(config_name="evaluate", overrides=overrides)
    finally:
        GlobalHydra.instance().clear()


def test_potential_config_group_switches_the_energy_model():
    from pymatgen.core import Lattice, Structure

    from crystalrl.potentials import ASEEnergy, CHGNetEnergy, make_energy_model
    from crystalrl.reference.energy_table import EnergyTable

    cu = Structure(
        Lattice.cubic(3.61), ["Cu"] * 4, [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]
    )
    emt = make_energy_model(_compose_evaluate(["potential=emt"]).potential)
    assert isinstance(emt, ASEEnergy) and type(emt.calculator).__name__ == "EMT"
    energies = emt.energies([cu, cu.copy()])
    assert np.isfinite(energies).all() and abs(energies[0]) < 0.1  # EMT's Cu is its zero
    # the file names the same cache as the inline form the tests' reference uses
    assert emt.key == make_energy_model(EMT).key
    # a one-off calculator without a file: drop the group, add the node
    inline = _compose_evaluate(["~potential", "+potential={_target_: ase.calculators.emt.EMT}"])
    assert make_energy_model(inline.potential).key == emt.key
    # CHGNet stays the default, under the key the shipped energy table was made with
    default = make_energy_model(_compose_evaluate([]).potential)  # built lazily: no weights read
    assert isinstance(default, CHGNetEnergy) and default._model is None
    assert default.key == EnergyTable.load(ROOT / "reference" / "mp_chgnet.npz").potential
    assert default.key == make_energy_model(None).key


def test_an_energy_outside_any_real_crystal_counts_as_failed():
    """SevenNet returns -1e9 or +4e10 eV/atom for overlapping atoms: as numbers they would be
    the most stable crystal ever made, or make a set's mean E_hull read millions of eV/atom;
    as failed energies they are what they are."""
    from crystalrl.potentials.energy_model import (
        MAX_ENERGY_PER_ATOM,
        MIN_ENERGY_PER_ATOM,
        failed_as_nan,
    )

    raw = np.array([-3.2, -14.3, -16.6, -1.1e9, np.inf, np.nan, 0.4, 14.0, 15.5, 3.6e10])
    out = failed_as_nan(raw)
    assert (MIN_ENERGY_PER_ATOM, MAX_ENERGY_PER_ATOM) == (-15.0, 15.0)
    np.testing.assert_array_equal(
        np.isnan(out), [False, False, True, True, True, True, False, False, True, True]
    )
    assert out[[0, 1, 6, 7]] == pytest.approx([-3.2, -14.3, 0.4, 14.0])
    # an arbitrary ASE calculator (EMT: tens of eV/atom for squeezed cells) keeps its highs
    generic = failed_as_nan(raw, highest=np.inf)
    np.testing.assert_array_equal(
        np.isnan(generic), [False, False, True, True, True, True, False, False, False, False]
    )
    assert raw[2] == -16.6  # the caller's array is left alone
