"""The paper's de-novo-generation reward on real MP-20 rows, EMT standing in for CHGNet:
every component scores a batch that holds a failed structure."""

from __future__ import annotations

import torch

EMT = {"_target_": "ase.calculators.emt.EMT"}
HULL = {"kind": "potential", "relax_steps": 20}  # as the emt_reference fixture builds it


def displaced(structure, distance: float, seed: int = 0):
    """Every atom moved by exactly ``distance`` Å in a random direction."""
    return structure.copy().perturb(distance, min_distance=None, seed=seed)


def test_dng_reward_on_a_batch_with_a_failed_structure(emt_reference, emt_val, tiny_vae_path):
    from crystalrl.rewards import (
        CompositionDiversityReward,
        CreativityReward,
        EnergyReward,
        ReinforceReward,
        StructureDiversityReward,
    )
    from crystalrl.vae.module import load_vae

    reward = ReinforceReward(
        [
            CreativityReward(),
            EnergyReward(normalize_fn="norm"),
            StructureDiversityReward(weight=0.1, normalize_fn="norm"),
            CompositionDiversityReward(normalize_fn="norm"),
        ],
        reference_dataset=str(emt_reference.dataset_dir),
        potential=EMT,
        num_workers=2,
        reference_options={"hull": HULL},
    ).setup(vae=load_vae(str(tiny_vae_path)))
    batch = [displaced(s, 1.0, seed=i) for i, s in enumerate(emt_val[:5])] + [None]
    out = reward(batch)
    assert out.total.shape == (6,) and torch.isfinite(out.total).all()
    assert out.components["creativity"][-1] == 0.0 and out.components["energy"][-1] == -1.0
    assert set(out.components) == {
        "creativity",
        "energy",
        "structure_diversity",
        "composition_diversity",
    }
    assert "avg_novel" in out.metrics and "metric/energy" in out.timings
