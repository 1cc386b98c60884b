"""How physical a crystal's geometry is: its shortest interatomic distance and contact ratio.

Structural validity (every distance above 0.5 Å) passes crystals whose atoms sit far closer
than any real solid allows, so it cannot tell a model that learned where atoms go from one
that places them at random. The contact ratio can: the shortest pair distance divided by
the sum of the two atoms' radii (pymatgen's ``atomic_radius``), periodic images included.
Every MP-20 crystal has a ratio of at least 0.7 (median 0.95); atoms placed uniformly at
random in the same cells give a median of about 0.4 (:func:`random_placement`, the
baseline that knows cells and elements but no geometry). A crystal with ratio ≥
:data:`PHYSICAL_CONTACT_RATIO` counts as contact-physical.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

#: Contact ratio from which a crystal counts as physical (every MP-20 crystal reaches it).
PHYSICAL_CONTACT_RATIO = 0.7
#: Neighbours are searched within this radius (Å); a crystal with none has NaN figures.
SEARCH_RADIUS = 6.0
#: Radius (Å) for the few elements pymatgen has no ``atomic_radius`` for.
FALLBACK_RADIUS = 1.5


@dataclass(frozen=True)
class Geometry:
    """Shortest pair distance (Å) and the contact ratio of that closest-by-radius pair."""

    shortest_distance: float
    contact_ratio: float

    @property
    def physical(self) -> bool:
        return bool(self.contact_ratio >= PHYSICAL_CONTACT_RATIO)


@lru_cache(maxsize=128)
def atomic_radius(z: int) -> float:
    from pymatgen.core import Element

    r = Element.from_Z(int(z)).atomic_radius
    return float(r) if r is not None else FALLBACK_RADIUS


def geometry(structure) -> Geometry:
    """The :class:`Geometry` of a pymatgen structure (NaN for ``None`` or no neighbours).

    Pairs come from pymatgen's periodic neighbour list, so an atom's distance to its own
    images counts, as it must in one-atom cells.
    """
    nan = Geometry(math.nan, math.nan)
    if structure is None:
        return nan
    try:
        centers, points, _, dist = structure.get_neighbor_list(SEARCH_RADIUS)
    except (ValueError, MemoryError):  # a degenerate cell
        return nan
    keep = dist > 1e-8  # an atom is not its own neighbour
    if not keep.any():
        return nan
    centers, points, dist = centers[keep], points[keep], dist[keep]
    z = np.array([site.specie.Z for site in structure])
    radii = np.array([atomic_radius(int(x)) for x in z])
    ratio = dist / (radii[centers] + radii[points])
    return Geometry(float(dist.min()), float(ratio.min()))


def geometry_arrays(structures) -> dict[str, np.ndarray]:
    """Per-structure ``shortest_distance``, ``contact_ratio`` and ``physical`` arrays."""
    geoms = [geometry(s) for s in structures]
    return {
        "shortest_distance": np.array([g.shortest_distance for g in geoms]),
        "contact_ratio": np.array([g.contact_ratio for g in geoms]),
        "physical": np.array([g.physical for g in geoms], dtype=bool),
    }


def random_placement(structures: list, rng: np.random.Generator) -> list:
    """The same cells and elements with every atom placed uniformly at random.

    What a model that learned compositions and lattices but not where atoms go would
    produce: the baseline beside which a model's geometry (and a denoiser's error on real
    crystals, :func:`crystalrl.ldm.probes.eps_gap`) is judged. ``None`` stays ``None``.
    """
    from pymatgen.core import Structure

    return [
        None if s is None else Structure(s.lattice, s.species, rng.random((len(s), 3)))
        for s in structures
    ]
