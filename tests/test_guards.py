"""Reward guards: each on cells with a known answer, and how a reward applies them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from crystalrl.metrics.results import MetricResults
from crystalrl.rewards.guards import (
    CellSanityGuard,
    CompositionOccurrenceGuard,
    DeepBelowHullGuard,
    HullSupportGuard,
    SingleElementGuard,
    apply_guards,
)


def rocksalt(a: float = 5.6, species=("Na", "Cl")) -> Structure:
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(a), list(species), [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


def bcc(symbol: str = "Fe", a: float = 2.87) -> Structure:
    return Structure(Lattice.cubic(a), [symbol] * 2, [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_single_element_cells_are_failed_and_failed_decodes_left_alone():
    keep = SingleElementGuard().keep([bcc(), rocksalt(), None], MetricResults())
    assert list(keep) == [0.0, 1.0, 1.0]


def test_deep_below_hull_and_support_read_their_metrics():
    e = np.array([-0.3, -0.05, 0.4, np.nan])
    keep = DeepBelowHullGuard(-0.1).keep([None] * 4, MetricResults(e_above_hull=e))
    assert list(keep) == [0.0, 1.0, 1.0, 1.0]
    support = np.array([0, 11, 12, 40])
    keep = HullSupportGuard(12).keep([None] * 4, MetricResults(hull_support=support))
    assert list(keep) == [0.0, 0.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="min_e_above_hull must be < 0"):
        DeepBelowHullGuard(0.1)
    with pytest.raises(ValueError, match="min_support"):
        HullSupportGuard(-1)


def test_cell_sanity_bounds_lengths_and_density():
    ok = rocksalt()  # 8 atoms in 175.6 Å^3: 0.046 atoms/Å^3
    inflated = rocksalt(12.0)  # 0.0046 atoms/Å^3, below MP-20's 0.1 % quantile
    long = Structure(Lattice.tetragonal(3.0, 45.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    keep = CellSanityGuard().keep([ok, inflated, long, None], MetricResults())
    assert list(keep) == [1.0, 0.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="min_length < max_length"):
        CellSanityGuard(min_length=5, max_length=4)


def test_composition_repeats_lose_reward_within_their_group():
    guard = CompositionOccurrenceGuard(free=3, zero_at=6)
    nacl, kcl = rocksalt(), rocksalt(6.3, ("K", "Cl"))
    group = [nacl] * 7 + [kcl]
    keep = guard.keep(group * 2, MetricResults(), group_size=8)
    # copies 1-3 keep all, the 4th 2/3, the 5th 1/3, the 6th and 7th none; per group
    expected = [1, 1, 1, 2 / 3, 1 / 3, 0, 0, 1]
    np.testing.assert_allclose(keep, expected * 2)
    # without groups the batch is one group: the second group's copies all lose
    assert guard.keep(group * 2, MetricResults())[8:15].max() == 0.0


def test_guards_move_a_total_to_the_batch_worst():
    total = np.array([2.0, -1.0, 0.5])
    np.testing.assert_allclose(apply_guards(total, np.array([0.0, 1.0, 0.5])), [-1.0, -1.0, -0.25])


def test_reward_applies_guards_and_logs_how_many_it_guarded():
    from crystalrl.rewards.components import CustomReward
    from crystalrl.rewards.reward import ReinforceReward

    reward = ReinforceReward(
        {"density": CustomReward(fn=lambda s: [len(x) / x.volume for x in s])},
        reference_dataset=None,
        guards={"single_element": {"_target_": "crystalrl.rewards.guards.SingleElementGuard"}},
    )
    structures = [bcc("Fe", 2.0), rocksalt(), rocksalt(6.0)]  # the densest is one element
    out = reward(structures)
    raw = out.components["density"]
    assert int(torch.argmax(raw)) == 0
    assert out.total[0] == pytest.approx(float(out.total.min()))
    assert out.total[1] > out.total[2] > out.total[0] - 1e-6
    assert out.metrics["guarded_single_element"] == pytest.approx(1 / 3)
    # the watched signs of hacking come with every reward, reference or not
    assert out.metrics["avg_is_single_element"] == pytest.approx(1 / 3)
    assert out.metrics["num_distinct_formulas"] == 2.0


def test_a_guard_that_is_not_a_guard_is_named():
    from crystalrl.rewards.components import CustomReward
    from crystalrl.rewards.reward import ReinforceReward, RewardError

    with pytest.raises(RewardError, match="reward guard 'oops'"):
        ReinforceReward({"c": CustomReward()}, reference_dataset=None, guards={"oops": 3})
