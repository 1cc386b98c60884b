"""Relaxation (crystalrl.potentials.relax), the relax command, evaluate relax=true and the
relaxed energy reward, with ASE's EMT on a few small crystals (milliseconds each)."""

from __future__ import annotations

import gzip
import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from pymatgen.core import Lattice, Structure

from crystalrl.config import CONFIG_DIR
from crystalrl.potentials import mean_displacement, relax

EMT = {"_target_": "ase.calculators.emt.EMT"}
HULL = {"kind": "potential", "relax_steps": 20}  # as the emt_reference fixture builds it
A_CU = 3.61  # Å, near EMT's Cu lattice constant (3.59)


def cu_fcc(a: float = A_CU) -> Structure:
    frac = [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    return Structure(Lattice.cubic(a), ["Cu"] * 4, frac)


def displaced(structure: Structure, distance: float, seed: int = 0) -> Structure:
    return structure.copy().perturb(distance, min_distance=None, seed=seed)


def _compose(name: str, overrides: list[str]):
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            return compose(config_name=name, overrides=overrides)
    finally:
        GlobalHydra.instance().clear()


@pytest.fixture(scope="module")
def emt_val(emt_dataset) -> list:
    from crystalrl.metrics.structures_io import read_structures

    structures, _ = read_structures(emt_dataset / "val.csv")
    return [s for s in structures if len(s) >= 4][:4]


# ---------------------------------------------------------------------- the API
def test_relaxation_returns_a_displaced_atom_and_relaxes_a_strained_cell():
    ideal = cu_fcc()
    moved = ideal.copy()
    moved.translate_sites([1], [0.2 / A_CU, 0, 0])  # 0.2 Å off its site
    strained = ideal.copy()
    strained.apply_strain([0.04, -0.02, 0.01])
    results = relax([moved, strained], EMT, fmax=0.01)
    for r in results:
        assert not r.failed and r.error is None and r.converged and 0 < r.steps < 300
        assert r.energy_per_atom < r.initial_energy_per_atom and r.seconds > 0
    back, unstrained = results[0], results[1]
    assert 0.05 < back.displacement < 0.2
    # relative to its neighbour at the origin, the atom is back on its fcc site
    s = back.structure
    offset = s[1].coords - s[0].coords
    a = s.lattice.a
    assert np.allclose(offset, [a / 2, a / 2, 0], atol=0.01)
    # the strain is gone (a cubic cell at EMT's Cu lattice constant) and, being a strain,
    # moved no atom relative to the lattice
    assert np.allclose(unstrained.structure.lattice.abc, 3.59, atol=0.01)
    assert np.allclose(unstrained.structure.lattice.angles, 90, atol=0.1)
    assert unstrained.displacement < 1e-6
    # without the cell, only the atom moves
    fixed = relax([moved], EMT, fmax=0.01, relax_cell=False)[0]
    assert fixed.converged and np.allclose(fixed.structure.lattice.abc, A_CU)


def test_failed_inputs_are_records_not_exceptions():
    huge = cu_fcc(50.0)  # stands in for a cell a caller does not hand to the potential
    ok, none, skipped = relax([cu_fcc(), None, huge], EMT, skip=lambda s: s.lattice.a > 10)
    assert not ok.failed
    assert none.failed and none.error == "no structure" and np.isnan(none.energy_per_atom)
    assert skipped.failed and skipped.error == "skipped"
    # a potential that cannot handle an element fails that structure only
    odd = Structure(Lattice.cubic(3.0), ["U"], [[0, 0, 0]])
    bad, good = relax([odd, cu_fcc()], EMT, max_steps=5)
    assert bad.failed and bad.error and not good.failed


def test_displacement_is_minimum_image_in_the_final_cell():
    cell = np.diag([4.0, 5.0, 6.0])
    before = np.array([[0.99, 0.5, 0.5], [0.1, 0.2, 0.3]])
    after = np.array([[0.01, 0.5, 0.5], [0.1, 0.2, 0.3]])  # 0.08 Å across the boundary
    assert mean_displacement(before, after, cell) == pytest.approx(0.04)
    assert mean_displacement(before, before, 1.1 * cell) == 0.0  # a strain alone


# ---------------------------------------------------------------------- the command
def test_relax_command_writes_structures_csv_and_summary(tmp_path, capsys):
    from crystalrl.metrics.structures_io import write_structures_json
    from crystalrl.relax import main

    inputs = write_structures_json(
        [displaced(cu_fcc(), 0.1, seed=0), None, displaced(cu_fcc(), 0.1, seed=1)],
        tmp_path / "in.json.gz",
    )
    out = tmp_path / "relaxed"
    cfg = _compose(
        "relax",
        [f"structure_path={inputs}", f"output_dir={out}", "potential=emt", "fmax=0.02"],
    )
    summary = main(cfg)
    assert summary["num_structures"] == 3 and summary["failed"] == 1
    assert summary["not_converged"] == 0 and summary["mean_energy_change"] < 0
    frame = pd.read_csv(out / "relaxation.csv", dtype={"name": str})
    assert list(frame["name"]) == ["0", "1", "2"] and frame["error"].fillna("")[1] != ""
    assert (frame["energy_after"][[0, 2]] < frame["energy_before"][[0, 2]]).all()
    with gzip.open(out / "samples.json.gz", "rt") as fh:
        saved = json.load(fh)
    assert saved[1] is None and Structure.from_dict(saved[0]).composition.reduced_formula == "Cu"
    assert len(list(out.glob("*.cif"))) == 2
    assert "relaxation of" in capsys.readouterr().out


# ---------------------------------------------------------------------- evaluate relax=true
def test_evaluate_relax_true_reports_relaxed_figures(emt_reference, emt_dataset, emt_val, tmp_path):
    from crystalrl.evaluate import main
    from crystalrl.metrics.structures_io import write_structures_json

    _ = emt_reference.hull  # build the cache the command will find
    batch = [displaced(s, 0.15, seed=i) for i, s in enumerate(emt_val[:3])] + [None]
    inputs = write_structures_json(batch, tmp_path / "samples.json.gz")
    out_csv = tmp_path / "metrics.csv"
    cfg = _compose(
        "evaluate",
        [
            f"structure_path={inputs}",
            f"reference_dataset={emt_dataset}",
            f"output_file={out_csv}",
            "metrics=[unique,novel,e_above_hull]",
            "vae_ckpt_path=null",
            "potential=emt",
            f"hull.relax_steps={HULL['relax_steps']}",
            f"hull.kind={HULL['kind']}",
            "num_workers=1",
            "relax=true",
            "relax_with=emt",  # a file of configs/potential/: relaxes, the judge scores
            "relax_options.fmax=0.02",
        ],
    )
    summary = main(cfg)
    assert summary["relaxed_with"] == summary["judged_by"] == emt_reference.energy_model.key
    for key in ("avg_e_above_hull", "avg_is_metastable", "avg_MSUN", "avg_unique", "avg_novel"):
        assert f"relaxed_{key}" in summary, key
    assert summary["relaxed_avg_e_above_hull"] < summary["avg_e_above_hull"]
    assert summary["relaxed_failed"] == 1 and summary["relaxed_num_valid_structures"] == 3
    assert summary["relaxed_not_converged"] == 0 and summary["relaxed_mean_displacement"] > 0
    assert summary["relaxed_seconds_per_structure"] > 0
    frame = pd.read_csv(out_csv)
    assert {"relaxed_e_above_hull", "relaxed_MSUN", "relaxed_displacement"} <= set(frame.columns)
    assert (frame["relaxed_energy"][:3] < frame["energy"][:3]).all()


def test_relax_with_an_unknown_potential_names_the_option_and_the_known_files():
    from crystalrl.config_values import potential_file

    with pytest.raises(ValueError, match=r"relax_with='mace'.*chgnet, emt, sevennet"):
        potential_file("mace")


# ---------------------------------------------------------------------- the reward
def test_energy_reward_after_relaxation_is_at_least_the_single_point_one(emt_reference, emt_val):
    from crystalrl.metrics.metrics import Metrics
    from crystalrl.rewards import EnergyReward

    batch = [displaced(s, 0.2, seed=i) for i, s in enumerate(emt_val[:3])] + [None]
    m = Metrics(["e_above_hull"], reference=emt_reference, num_workers=1)
    m.compute(batch)
    results = m.snapshot()
    single = EnergyReward(max_e_above_hull=10).compute(batch, results)
    relaxed_reward = EnergyReward(max_e_above_hull=10, relax={"max_steps": 20, "fmax": 0.05})
    relaxed = relaxed_reward.compute(batch, results)
    assert torch.all(relaxed >= single - 1e-6) and torch.any(relaxed > single + 1e-3)
    assert relaxed[-1] == single[-1] == -10.0  # a failed structure keeps the worst value
    with pytest.raises(ValueError, match="steps"):
        EnergyReward(relax={"steps": 20})


def test_reward_relax_option_is_set_on_the_command_line(monkeypatch, tmp_path):
    from hydra.utils import instantiate

    monkeypatch.setenv("CRYSTALRL_DATA_DIR", str(tmp_path))
    key = "rl_module.reward_fn.components.energy"
    cfg = _compose("train_rl", ["experiment=mp_20/rl_dng", f"{key}.relax={{max_steps: 20}}"])
    energy = instantiate(cfg.rl_module.reward_fn.components.energy)
    assert energy.relax == {"max_steps": 20}
    default = _compose("train_rl", ["experiment=mp_20/rl_dng"])
    assert instantiate(default.rl_module.reward_fn.components.energy).relax is None


def test_energy_reward_warns_when_every_relaxation_fails(emt_reference, emt_val, monkeypatch):
    """A reward whose relaxations all fail falls back to single points; it must say so,
    since a relaxed-energy run would otherwise be a single-point run under another name."""
    import crystalrl.potentials
    from crystalrl.metrics.metrics import Metrics
    from crystalrl.potentials import RelaxResult
    from crystalrl.rewards import EnergyReward

    batch = [displaced(s, 0.2, seed=i) for i, s in enumerate(emt_val[:2])]
    m = Metrics(["e_above_hull"], reference=emt_reference, num_workers=1)
    m.compute(batch)
    results = m.snapshot()
    single = EnergyReward(max_e_above_hull=10).compute(batch, results)
    reward = EnergyReward(max_e_above_hull=10, relax={"max_steps": 5, "fmax": 0.05})
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert not torch.equal(reward.compute(batch, results), single)

    def failing(structures, *args, **kwargs):
        return [RelaxResult(error="RuntimeError: no grad") for _ in structures]

    monkeypatch.setattr(crystalrl.potentials, "relax", failing)
    with pytest.warns(RuntimeWarning, match=r"every relaxation failed \(RuntimeError: no grad"):
        fallen_back = reward.compute(batch, results)
    assert torch.equal(fallen_back, single)
