"""Atomic density (atoms per Å³): a metric, and the objective of the custom-reward example.

It lives with the metrics so that ``metrics`` never imports ``rewards``; the reward
functions in :mod:`crystalrl.rewards.functions` use it from here.
"""

from __future__ import annotations

from collections.abc import Sequence


def atomic_density(structures: Sequence) -> list[float]:
    """Atoms per Å³: rewards denser packing (the atomic-density tutorial's objective)."""
    return [len(s) / s.lattice.volume for s in structures]
