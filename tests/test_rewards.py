"""Reward components, their aggregation and the batch normalisations, on known values."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from crystalrl.metrics.results import MetricResults
from crystalrl.rewards import (
    CompositionDiversityReward,
    CreativityReward,
    CustomReward,
    EnergyReward,
    NormalizationError,
    PredictorReward,
    ReinforceReward,
    RewardError,
    StructureDiversityReward,
    normalize,
)
from crystalrl.rewards.functions import atomic_density

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------- normalisations
def test_std_normalisation():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    std = math.sqrt(5 / 3)  # unbiased std of 1..4
    expected = (x - 2.5) / (std + 1e-4)
    assert torch.allclose(normalize(x, "std", 1e-4), expected)
    assert torch.equal(normalize(torch.full((5,), 3.0), "std"), torch.zeros(5))


def test_norm_normalisation():
    x = torch.tensor([2.0, 4.0, 6.0])
    assert torch.allclose(normalize(x, "norm", eps=0.0), torch.tensor([0.0, 0.5, 1.0]))
    # range below eps -> zeros
    assert torch.equal(normalize(torch.tensor([1.0, 1.00001]), "norm", 1e-4), torch.zeros(2))


def test_subtract_mean_clip_and_null():
    x = torch.tensor([-3.0, 0.5, 5.5])  # mean 1
    assert torch.allclose(normalize(x, "subtract_mean"), torch.tensor([-4.0, -0.5, 4.5]))
    assert torch.allclose(normalize(x, "clip"), torch.tensor([-1.0, 0.5, 1.0]))
    assert torch.equal(normalize(x, None), x)
    assert torch.equal(normalize(x, "null"), x)


def test_unknown_normalisation_is_a_config_error():
    with pytest.raises(NormalizationError, match="minmax"):
        normalize(torch.ones(3), "minmax")
    with pytest.raises(NormalizationError):
        CustomReward(normalize_fn="zscore")
    with pytest.raises(NormalizationError):
        ReinforceReward([CustomReward()], normalize_fn="rank")


# ---------------------------------------------------------------------- MMD
def _brute_mmd(gen: np.ndarray, ref: np.ndarray) -> float:
    """Unbiased MMD² with the (x·y/d + 1)³ kernel, written out with loops."""
    d = gen.shape[1]

    def k(a, b):
        return (float(np.dot(a, b)) / d + 1.0) ** 3

    m, n = len(gen), len(ref)
    gg = sum(k(gen[i], gen[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    rr = sum(k(ref[i], ref[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    gr = sum(k(gen[i], ref[j]) for i in range(m) for j in range(n)) / (m * n)
    return gg + rr - 2 * gr


def test_mmd_individual_by_hand_one_dimension():
    """gen = {0, 0, 1}, ref = {1}, d = 1: k(0,·) = 1, k(1,1) = 8.
    G = 6, S = (2, 2, 2), T = (1, 1, 8), C = 10 (reference term cancels):
    MMD = 6/6 − 2·10/3 = −17/3; without a 0: 2/2 − 2·9/2 = −8; without the 1: 2/2 − 2·2/2 = −1.
    Rewards: −8 + 17/3 = −7/3 for each 0 and −1 + 17/3 = 14/3 for the 1."""
    from crystalrl.metrics.diversity import mmd_individual

    gen = torch.tensor([[0.0], [0.0], [1.0]])
    ref = torch.tensor([[1.0]])
    r = mmd_individual(gen, ref)
    assert torch.allclose(r, torch.tensor([-7 / 3, -7 / 3, 14 / 3]), atol=1e-5)


def test_mmd_individual_matches_leave_one_out_brute_force():
    from crystalrl.metrics.diversity import mmd_individual

    rng = np.random.default_rng(0)
    gen = rng.normal(size=(5, 3))
    ref = rng.normal(size=(4, 3)) + 0.5
    full = _brute_mmd(gen, ref)
    expected = [_brute_mmd(np.delete(gen, m, 0), ref) - full for m in range(len(gen))]
    got = mmd_individual(torch.tensor(gen), torch.tensor(ref), chunk=3)  # chunked sums too
    assert np.allclose(got.numpy(), expected, atol=1e-5)
    assert torch.equal(mmd_individual(torch.ones(2, 3), torch.ones(4, 3)), torch.zeros(2))


def batch_results(structures=(), reference=None, **values) -> MetricResults:
    """The record a component reads, with the formulas of ``structures``."""
    formulas = tuple(None if s is None else s.composition.reduced_formula for s in structures)
    return MetricResults(formulas=formulas, reference=reference, **values)


def test_diversity_rewards_use_their_feature_and_fill_failed_structures():
    gen = {"structure": torch.tensor([[0.0], [0.0], [1.0]]), "composition": torch.zeros(3, 2)}
    ref = {"structure": torch.tensor([[1.0]]), "composition": torch.zeros(1, 2)}
    metrics = MetricResults(features=gen, reference_features=ref)
    structures = ["a", None, "b", "c"]  # features exist for the valid three only
    r = StructureDiversityReward().compute(structures, metrics)
    assert torch.allclose(r, torch.tensor([-7 / 3, -7 / 3, -7 / 3, 14 / 3]), atol=1e-5)
    assert torch.allclose(CompositionDiversityReward().compute(structures, metrics), torch.zeros(4))


# ---------------------------------------------------------------------- energy
def test_energy_reward_clips_and_counts_nan_as_worst():
    e_hull = np.array([-0.2, 0.0, 0.3, 1.5, np.nan])
    r = EnergyReward().compute([None] * 5, MetricResults(e_above_hull=e_hull))
    assert torch.allclose(r, torch.tensor([0.0, 0.0, -0.3, -1.0, -1.0]))
    # a higher cap ranks what the paper's cap lumps together at -1
    wide = EnergyReward(max_e_above_hull=5.0)
    r = wide.compute([None] * 6, MetricResults(e_above_hull=np.append(e_hull, 7.0)))
    assert torch.allclose(r, torch.tensor([0.0, 0.0, -0.3, -1.5, -5.0, -5.0]))
    with pytest.raises(ValueError, match="max_e_above_hull"):
        EnergyReward(max_e_above_hull=0)


def test_energy_reward_guard_scores_implausibly_low_energies_as_the_cap():
    e_hull = np.array([-2.4, -0.2, -0.1, 0.3, np.nan])
    guarded = EnergyReward(min_e_above_hull=-0.15)
    r = guarded.compute([None] * 5, MetricResults(e_above_hull=e_hull))
    assert torch.allclose(r, torch.tensor([-1.0, -1.0, 0.0, -0.3, -1.0]))
    with pytest.raises(ValueError, match="min_e_above_hull"):
        EnergyReward(min_e_above_hull=0.1)


def test_components_read_only_metrics_the_record_carries():
    """What a component lists as required is a field of MetricResults, and reading one the
    batch did not compute is an error naming it (not a silent default)."""
    components = [
        CreativityReward(),
        EnergyReward(),
        StructureDiversityReward(),
        CompositionDiversityReward(),
    ]
    for c in components:
        assert set(c.required_metrics) <= set(MetricResults.metric_names()), c
    with pytest.raises(ValueError, match="e_above_hull"):
        EnergyReward().compute([None], MetricResults(unique=np.array([True])))
    with pytest.raises(AttributeError):  # frozen: one component cannot alter what others read
        MetricResults().unique = np.array([True])


# ---------------------------------------------------------------------- creativity
class FakeReference:
    def __init__(self, structures):
        self._s = structures
        self.key = "fake"
        self.by_formula: dict[str, list[int]] = {}
        for i, s in enumerate(structures):
            self.by_formula.setdefault(s.composition.reduced_formula, []).append(i)

    def structures(self, indices):
        return [self._s[int(i)] for i in indices]


@pytest.fixture(scope="module")
def val_structures(datasets):
    from pymatgen.core import Structure

    frame = pd.read_csv(datasets / "mp_20" / "val.csv.gz", nrows=8)
    return [Structure.from_str(c, fmt="cif") for c in frame["cif"]]


def _amd_distance(a, b) -> float:
    import amd

    va = amd.AMD(amd.periodicset_from_pymatgen_structure(a), 100)
    vb = amd.AMD(amd.periodicset_from_pymatgen_structure(b), 100)
    return float(amd.AMD_cdist([va], [vb])[0, 0])


def _shifted(structure, distance: float, seed: int = 0):
    """Every atom moved by exactly ``distance`` Å in a random direction."""
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(len(structure), 3))
    v *= distance / np.linalg.norm(v, axis=1, keepdims=True)
    s = structure.copy()
    for i in range(len(s)):
        s.translate_sites([i], v[i], frac_coords=False, to_unit_cell=True)
    return s


def test_creativity_three_branches(val_structures):
    known, new = val_structures[0], val_structures[1]
    near_known = _shifted(known, 0.05)
    near_new = _shifted(new, 0.05)
    reference = FakeReference([known])
    batch = [known, near_known, new, None, near_new]
    results = {
        "unique": np.array([True, False, True, False, False]),
        "novel": np.array([False, False, True, False, True]),
    }
    metrics = batch_results(batch, reference, **results)
    r = CreativityReward().compute(batch, metrics).numpy()
    # unique but not novel: nearest non-zero AMD distance among reference + batch
    expected0 = _amd_distance(known, near_known)
    # novel but not unique: the only same-formula neighbour is its batch twin
    expected4 = _amd_distance(near_new, new)
    assert 0 < expected0 < 1 and 0 < expected4 < 1
    assert r == pytest.approx([expected0, 0.0, 1.0, 0.0, expected4], rel=1e-4, abs=1e-6)


# ---------------------------------------------------------------------- custom / predictor
def test_custom_reward_atomic_density_and_failed_structures(val_structures):
    s = val_structures[:3]
    r = CustomReward().compute([s[0], None, s[1], s[2]])
    density = [len(x) / x.volume for x in s]
    assert r.numpy() == pytest.approx([density[0], min(density), density[1], density[2]], rel=1e-6)
    dotted = CustomReward(fn="crystalrl.rewards.functions.atomic_density", fill_value=-1.0)
    assert dotted.compute([None, s[0]]).tolist() == pytest.approx([-1.0, density[0]], rel=1e-6)
    assert atomic_density(s[:1])[0] == pytest.approx(density[0])


class FakePredictor:
    def predict(self, batch):
        return {"band_gap": batch.num_atoms.float()}  # "band gap" = number of atoms


def test_predictor_reward_target_and_clipping(val_structures):
    s = val_structures[:3]
    n = np.array([len(x) for x in s], dtype=float)
    target = PredictorReward(FakePredictor(), "band_gap", target_value=6.0)
    r = target.compute([s[0], s[1], None, s[2]]).numpy()
    expected = -((n - 6.0) ** 2)
    assert r == pytest.approx([expected[0], expected[1], expected.min(), expected[2]])
    clipped = PredictorReward(FakePredictor(), "band_gap", clip_min=5.0, clip_max=10.0)
    assert clipped.compute(s).numpy() == pytest.approx(np.clip(n, 5, 10))


def test_predictor_reward_loads_a_checkpoint(val_structures, tmp_path):
    from crystalrl.data.batch import CrystalBatch
    from crystalrl.predictor import PredictorModule

    torch.manual_seed(0)
    tiny_vae = {"model": dict(d_model=32, encoder_layers=1, decoder_layers=1, nhead=2)}
    module = PredictorModule(
        target_names=["band_gap"], hidden_size=16, num_layers=1, num_heads=2, vae_hparams=tiny_vae
    ).eval()
    path = tmp_path / "predictor.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    s = val_structures[:3]
    reward = PredictorReward(str(path), "band_gap", target_value=1.0)
    reward.setup()
    batch = CrystalBatch.from_structures([x.get_reduced_structure() for x in s], torch.float32)
    pred = module.predict(batch)["band_gap"].double()
    assert torch.allclose(reward.compute(s).double(), -((pred - 1.0) ** 2), atol=1e-5)


# ---------------------------------------------------------------------- aggregation
def test_aggregator_weights_and_normalises_each_component(val_structures):
    s = val_structures[:4]
    a = CustomReward(fn=lambda xs: [1.0, 2.0, 3.0, 4.0], weight=2.0, name="a")
    b = CustomReward(fn=lambda xs: [10.0, 0.0, 5.0, 5.0], weight=0.5, normalize_fn="norm")
    # no reference is needed (or loaded) when no component uses metrics
    reward = ReinforceReward([a, b], normalize_fn="std", reference_dataset="no-such-dataset")
    out = reward.setup()(s)
    expected = 2.0 * torch.tensor([1.0, 2.0, 3.0, 4.0]) + 0.5 * torch.tensor([1.0, 0.0, 0.5, 0.5])
    assert torch.allclose(out.total, expected, atol=1e-3)
    assert set(out.components) == {"a", "custom"}
    assert torch.equal(out.components["custom"], torch.tensor([10.0, 0.0, 5.0, 5.0]))
    assert reward.normalize_fn == "std" and reward.eps == 1e-4
    # only the watched signs of hacking that need no reference part are computed
    assert reward.metrics.required_parts() == set()
    assert out.metrics["avg_is_single_element"] == 0.0 and "density_vs_reference" not in out.metrics


def test_nan_reward_is_an_error_naming_the_component(val_structures):
    bad = CustomReward(fn=lambda xs: [float("nan")] * len(xs), name="density_gone_wrong")
    reward = ReinforceReward([CustomReward(), bad], reference_dataset=None)
    with pytest.raises(RewardError, match="density_gone_wrong"):
        reward(val_structures[:3])


def test_reward_configs_instantiate_with_the_documented_names():
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    dng = instantiate(OmegaConf.load(ROOT / "configs" / "reward_fn" / "dng.yaml"))
    assert isinstance(dng, ReinforceReward)
    assert dng.names == ["creativity", "energy", "structure_diversity", "composition_diversity"]
    assert [c.weight for c in dng.components] == [1.0, 1.0, 0.1, 1.0]
    assert [c.normalize_fn for c in dng.components] == [None, "norm", "norm", "norm"]
    assert dng.required_metrics == ["unique", "novel", "e_above_hull", "features"]
    density = instantiate(OmegaConf.load(ROOT / "configs" / "reward_fn" / "atomic_density.yaml"))
    assert density.names == ["custom"] and density.required_metrics == []


def test_reward_components_by_name_or_as_a_list():
    by_name = ReinforceReward(
        {"dense": CustomReward(weight=2.0), "energy": None, "b": CustomReward()},
        reference_dataset=None,
    )
    # the keys name the components (logged as train/<key>); None drops one
    assert by_name.names == ["dense", "b"]
    assert [c.name for c in by_name.components] == ["dense", "b"]
    assert [c.weight for c in by_name.components] == [2.0, 1.0]
    as_list = ReinforceReward([CustomReward(), CustomReward()], reference_dataset=None)
    assert as_list.names == ["custom", "custom_2"]
    with pytest.raises(RewardError, match="mapping of name to component or a list"):
        ReinforceReward("creativity", reference_dataset=None)


def test_valid_atomic_density_gives_overlapping_atoms_nothing():
    from pymatgen.core import Lattice, Structure

    from crystalrl.rewards.functions import valid_atomic_density

    good = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    collapsed = Structure(Lattice.cubic(0.4), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert valid_atomic_density([good, collapsed]) == pytest.approx([2 / 64, 0.0])


def test_smact_valid_scores_charge_balance():
    from pymatgen.core import Lattice, Structure

    from crystalrl.rewards.functions import smact_valid

    nacl = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    na_cl3 = Structure(
        Lattice.cubic(5.0),
        ["Na", "Cl", "Cl", "Cl"],
        [[0, 0, 0]] + [[0.5, 0.5, 0.5], [0.5, 0, 0], [0, 0.5, 0]],
    )
    assert smact_valid([nacl, na_cl3]) == [1.0, 0.0]
