"""VAE features of every reference structure, the other side of the diversity metrics."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np

from crystalrl.progress_bar import progress_bar


def compute_features(
    vae: Any,
    n: int,
    structures: Callable[[range], list],
    batch_size: int = 512,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """``structure`` and ``composition`` features of the ``n`` structures, read a few
    batches at a time so the whole reference never sits in memory as pymatgen objects."""
    from crystalrl.vae.features import structure_features

    parts: dict[str, list] = defaultdict(list)
    with progress_bar(progress, "VAE features", n) as advance:
        for i in range(0, n, 4 * batch_size):
            idx = range(i, min(n, i + 4 * batch_size))
            # reference cells are already Niggli-reduced when parsed
            f = structure_features(vae, structures(idx), batch_size, niggli=False)
            for k, v in f.items():
                parts[k].append(v.float().cpu().numpy())
            advance(len(idx))
    return {k: np.concatenate(v) for k, v in parts.items()}
