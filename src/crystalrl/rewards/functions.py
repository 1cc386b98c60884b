"""Example reward functions for :class:`~crystalrl.rewards.components.CustomReward`.

A custom reward function takes the list of (valid) pymatgen structures of a batch and
returns one number per structure, higher = better.
"""

from __future__ import annotations

from collections.abc import Sequence


def atomic_density(structures: Sequence) -> list[float]:
    """Atoms per Å³: rewards denser packing (the atomic-density tutorial's objective)."""
    return [len(s) / s.lattice.volume for s in structures]
