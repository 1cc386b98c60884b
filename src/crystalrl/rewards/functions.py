"""Example reward functions for :class:`~crystalrl.rewards.components.CustomReward`.

A custom reward function takes the list of (valid) pymatgen structures of a batch and
returns one number per structure, higher = better.
"""

from __future__ import annotations

from collections.abc import Sequence

from crystalrl.metrics.density import atomic_density

__all__ = ["atomic_density", "smact_valid", "valid_atomic_density"]


def valid_atomic_density(structures: Sequence) -> list[float]:
    """Atoms per Å³ of structurally valid crystals (every distance > 0.5 Å), 0 otherwise.

    Plain density is maximised by collapsing the cell: within 60 GRPO steps at lr 1e-4
    the mean density of ``mp_20_ldm_base`` samples went from 0.05 to 55 atoms/Å³, atoms on
    top of each other. Zero reward for overlapping atoms closes that shortcut.
    """
    from crystalrl.metrics.validity import structure_valid

    return [len(s) / s.lattice.volume if structure_valid(s) else 0.0 for s in structures]


def smact_valid(structures: Sequence) -> list[float]:
    """1 for a SMACT-valid formula (charge-balanced with known oxidation states), else 0.

    A guard for property rewards: toward a 3 eV band gap the policy drifts to formulas
    no oxidation states can balance (SMACT validity 77 % -> 58 % in 450 steps from the
    shipped base), which the band-gap predictor scores but chemistry rules out.
    """
    from crystalrl.metrics.validity import composition_valid

    return [1.0 if composition_valid(s) else 0.0 for s in structures]
