"""Batched relaxation (crystalrl.potentials.relaxation.relax_batched): the same FIRE as the
serial path with one potential call per step for the whole batch. EMT makes the comparison
exact and fast; CHGNet on real MP-20 crystals is the slow check of the path the commands
take."""

from __future__ import annotations

import numpy as np
import pytest
from ase.calculators.emt import EMT
from pymatgen.core import Lattice, Structure

from crystalrl.potentials import EnergyModel, relax
from crystalrl.potentials.relaxation import relax_batched, relax_serial, serial_evaluate


def cu_fcc(a: float = 3.61) -> Structure:
    frac = [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    return Structure(Lattice.cubic(a), ["Cu"] * 4, frac)


def copper_set() -> list[Structure]:
    """Displaced and strained Cu cells that need 20-40 FIRE steps each."""
    strained = cu_fcc(3.7)
    strained.apply_strain([0.04, -0.02, 0.01])
    return [cu_fcc().perturb(0.1, seed=i) for i in range(3)] + [strained]


class CountingEvaluate:
    """A batch evaluator over EMT that records how many structures each call got."""

    def __init__(self):
        self.inner = serial_evaluate(EMT())
        self.sizes: list[int] = []

    def __call__(self, atoms_list):
        self.sizes.append(len(atoms_list))
        return self.inner(atoms_list)


@pytest.mark.parametrize("relax_cell", [True, False])
def test_batched_fire_takes_exactly_the_serial_steps(relax_cell):
    structures = copper_set()
    serial = [relax_serial(s, EMT(), 0.01, 300, relax_cell) for s in structures]
    batched = relax_batched(
        structures, serial_evaluate(EMT()), fmax=0.01, relax_cell=relax_cell, batch_size=2
    )
    for a, b in zip(serial, batched, strict=True):
        assert a.converged and b.converged and a.steps == b.steps
        assert b.energy_per_atom == pytest.approx(a.energy_per_atom, abs=1e-10)
        assert b.initial_energy_per_atom == pytest.approx(a.initial_energy_per_atom, abs=1e-12)
        assert b.displacement == pytest.approx(a.displacement, abs=1e-9)
        assert np.allclose(a.structure.lattice.matrix, b.structure.lattice.matrix, atol=1e-9)
        assert np.allclose(a.structure.cart_coords, b.structure.cart_coords, atol=1e-9)
    assert sum(r.steps for r in batched) > 60  # (a strain alone gives no force on an atom)


def test_converged_structures_leave_the_batch_and_queued_ones_take_their_place():
    done = relax_serial(cu_fcc().perturb(0.1, seed=0), EMT(), 0.01, 300, True).structure
    structures = [done, *copper_set()]
    evaluate = CountingEvaluate()
    results = relax_batched(structures, evaluate, fmax=0.01, batch_size=3)
    assert results[0].converged and results[0].steps == 0  # converged before any step
    # the first call holds a full batch; the converged cell's place goes to the queue's
    # next structure, then the batch shrinks as the others converge
    assert evaluate.sizes[:2] == [3, 3] and max(evaluate.sizes) == 3
    assert evaluate.sizes[-1] < 3 and evaluate.sizes == sorted(evaluate.sizes, reverse=True)
    # one evaluation per structure before the first step and one after each step
    assert sum(evaluate.sizes) == sum(r.steps + 1 for r in results)
    assert sum(r.seconds for r in results) > 0


def test_the_step_limit_is_the_serial_one():
    structures = copper_set()[:2]
    evaluate = CountingEvaluate()
    batched = relax_batched(structures, evaluate, fmax=1e-6, max_steps=3)
    serial = [relax_serial(s, EMT(), 1e-6, 3, True) for s in structures]
    assert evaluate.sizes == [2, 2, 2, 2]
    for a, b in zip(serial, batched, strict=True):
        assert not b.failed and not b.converged and a.steps == b.steps == 3
        assert b.energy_per_atom == pytest.approx(a.energy_per_atom, abs=1e-12)


def test_a_failure_fails_its_own_structure_only():
    uranium = Structure(Lattice.cubic(3.0), ["U"], [[0, 0, 0]])
    huge = cu_fcc(50.0)
    structures = [cu_fcc().perturb(0.1, seed=0), None, uranium, huge]
    results = relax_batched(
        structures, serial_evaluate(EMT()), fmax=0.01, skip=lambda s: s.lattice.a > 10
    )
    ok, none, bad, skipped = results
    assert not ok.failed and ok.converged
    assert none.error == "no structure" and skipped.error == "skipped"
    assert bad.failed and "EMT" in bad.error and np.isnan(bad.energy_per_atom)

    calls = []

    def nan_forces(atoms_list):  # the first structure's first forces are NaN
        out = serial_evaluate(EMT())(atoms_list)
        if not calls:
            e, f, s = out[0]
            out[0] = (e, np.full_like(f, np.nan), s)
        calls.append(len(atoms_list))
        return out

    poisoned, fine = relax_batched(copper_set()[:2], nan_forces, fmax=0.01)
    assert poisoned.failed and "FloatingPointError" in poisoned.error
    assert not fine.failed and fine.converged


class BatchedEMT(EnergyModel):
    """An energy model that says it predicts batches, as CHGNet does."""

    key = "batched-emt"
    batched_forces = True
    batch_size = 8

    def __init__(self):
        self.evaluate = CountingEvaluate()

    def evaluate_batch(self, atoms_list):
        return self.evaluate(atoms_list)


def test_relax_steps_a_batched_potential_together():
    model = BatchedEMT()
    structures = copper_set()
    results = relax(structures, model, fmax=0.01)
    assert model.evaluate.sizes[0] == len(structures)
    assert all(r.converged for r in results)
    serial = relax(structures, {"_target_": "ase.calculators.emt.EMT"}, fmax=0.01)
    assert [r.steps for r in results] == [r.steps for r in serial]


@pytest.mark.slow
def test_chgnet_batched_and_serial_relaxations_agree_on_real_crystals(datasets):
    """Three small MP-20 crystals, displaced: CHGNet in one batch against CHGNet's ASE
    calculator one at a time. Float32 batches sum in another order, so the paths agree to
    a tolerance, not bit for bit."""
    import pandas as pd

    from crystalrl.potentials import CHGNetEnergy

    frame = pd.read_csv(datasets / "mp_20" / "val.csv.gz", nrows=50)
    crystals = [Structure.from_str(cif, fmt="cif") for cif in frame["cif"]]
    small = [s for s in crystals if len(s) <= 8][:3]
    picked = [s.copy().perturb(0.1, seed=i) for i, s in enumerate(small)]
    model = CHGNetEnergy()
    batched = relax(picked, model, fmax=0.05, max_steps=150)
    calculator = model.ase_calculator()
    serial = [relax_serial(s, calculator, 0.05, 150, True) for s in picked]
    for a, b in zip(serial, batched, strict=True):
        assert not a.failed and not b.failed and a.converged == b.converged
        assert b.initial_energy_per_atom == pytest.approx(a.initial_energy_per_atom, abs=1e-5)
        assert b.energy_per_atom == pytest.approx(a.energy_per_atom, abs=2e-3)
        assert b.energy_per_atom < b.initial_energy_per_atom


def test_the_remembering_cell_filter_gives_ase_filter_values_without_logm(monkeypatch):
    """After FIRE has set the coordinates, the batched path's filter answers positions and
    the Fréchet cell gradient from memory; they must be ASE's own values, to rounding."""
    import scipy.linalg
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE
    from pymatgen.io.ase import AseAtomsAdaptor

    from crystalrl.potentials.cell_filter import remembering_frechet_filter

    atoms = AseAtomsAdaptor.get_atoms(copper_set()[-1].perturb(0.05, seed=3))
    atoms.calc = EMT()
    remembering = remembering_frechet_filter(atoms)
    optimizer = FIRE(remembering, logfile=None)
    for _ in range(5):
        optimizer.step()  # strains the cell away from the identity deformation
    ase_filter = FrechetCellFilter(atoms)
    ase_filter.orig_cell = remembering.orig_cell
    ase_filter._utility.orig_cell = remembering._utility.orig_cell
    expected_x, expected_forces = ase_filter.get_positions(), ase_filter.get_forces()
    assert abs(expected_x[-3:]).max() > 1e-3  # a real strain, not the identity

    calls = []
    monkeypatch.setattr(scipy.linalg, "logm", lambda *a: calls.append(a))
    np.testing.assert_allclose(remembering.get_positions(), expected_x, atol=1e-12)
    np.testing.assert_allclose(remembering.get_forces(), expected_forces, atol=1e-10)
    assert not calls  # answered from memory
    monkeypatch.undo()

    atoms.positions[0] += 0.01  # moved by other means: ASE's own path again
    moved = FrechetCellFilter(atoms)
    moved._utility.orig_cell = remembering._utility.orig_cell
    np.testing.assert_allclose(remembering.get_positions(), moved.get_positions(), atol=1e-12)


@pytest.mark.parametrize("grad_off", ["no_grad", "inference_mode"])
@pytest.mark.parametrize("potential", ["chgnet", "sevennet"])
def test_a_relaxation_under_no_grad_still_gets_forces(potential, grad_off):
    """The RL rollout scores its samples inside ``torch.no_grad()`` and Lightning validates
    inside ``torch.inference_mode()``; forces are gradients, so a relaxation there must
    switch autograd back on, and weights first loaded there must still take gradients,
    rather than fail every structure (which the reward would silently replace by single
    points)."""
    import torch

    from crystalrl.potentials import CHGNetEnergy, SevenNetEnergy

    model = CHGNetEnergy() if potential == "chgnet" else SevenNetEnergy()
    structures = [cu_fcc(3.7).perturb(0.1, seed=0), cu_fcc(3.5).perturb(0.1, seed=1)]
    with torch.inference_mode():  # weights first loaded where Lightning validates
        assert np.isfinite(model.energies(structures)).all()
    with getattr(torch, grad_off)():
        results = relax(structures, model, fmax=0.01, max_steps=3)
    assert [r.error for r in results] == [None, None]
    assert all(r.steps == 3 and r.energy_per_atom < r.initial_energy_per_atom for r in results)
