"""What the reference's parsed cells give without a potential: element counts, reduced
formulas, atomic density. Shared by the index, the union's de-duplication and the hull."""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from crystalrl.data.parse import ParsedSplit


def element_counts(parts: Iterable[ParsedSplit]) -> list[dict[str, int]]:
    """Element counts of every cell of the parsed splits, in order (not reduced: hull
    entries need total energies)."""
    from pymatgen.core import Element

    symbols: dict[int, str] = {}
    out = []
    for part in parts:
        offsets = part.offsets
        for i in range(len(part)):
            counts = Counter(int(z) for z in part.atom_types[offsets[i] : offsets[i + 1]])
            for z in counts:
                if z not in symbols:
                    symbols[z] = Element.from_Z(z).symbol
            out.append({symbols[z]: n for z, n in counts.items()})
    return out


def reduced_formulas(counts: Sequence[dict[str, int]]) -> list[str]:
    from pymatgen.core import Composition

    with warnings.catch_warnings():  # noble gases have no electronegativity: harmless
        warnings.simplefilter("ignore")
        return [Composition(c).reduced_formula for c in counts]


def mean_atomic_density(parts: Iterable[ParsedSplit]) -> float:
    """Mean atoms per Å³ over the cells, from their lengths and angles."""
    densities = []
    for part in parts:
        a, b, c = part.lengths.T
        cos = np.cos(np.radians(part.angles))
        root = np.sqrt(1 - (cos**2).sum(axis=1) + 2 * cos[:, 0] * cos[:, 1] * cos[:, 2])
        densities.append(part.num_atoms / (a * b * c * root))
    return float(np.mean(np.concatenate(densities)))
