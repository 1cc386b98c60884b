"""The metrics of generated structures (crystalrl.metrics.Metrics) on real MP-20 rows:
novelty and uniqueness against the reference, energies above its hull, the signs of
reward hacking, and the typed results rewards read.

The reference is the MP-20 rows made only of EMT's elements (conftest), so that ASE's EMT
potential (milliseconds per structure) stands in for CHGNet.
"""

from __future__ import annotations

import numpy as np
import pytest


def displaced(structure, distance: float, seed: int = 0):
    """Every atom moved by exactly ``distance`` Å in a random direction."""
    return structure.copy().perturb(distance, min_distance=None, seed=seed)


def test_reference_members_are_not_novel_and_displaced_ones_are(emt_reference, emt_val):
    from crystalrl.metrics.metrics import Metrics

    val = [s for s in emt_val if len(s) >= 4][:6]  # 2-atom cells move by half as much
    # StructureMatcher's site tolerance is 0.3 of the free length (V/N)^(1/3) (about 0.8 Å
    # here): displacements of 0.6 of it make a new structure, 0.05 Å does not
    far = [displaced(s, 0.6 * (s.volume / len(s)) ** (1 / 3), seed=i) for i, s in enumerate(val)]
    near = [displaced(s, 0.05, seed=i) for i, s in enumerate(val)]
    m = Metrics(["novel", "e_above_hull"], reference=emt_reference, num_workers=2)
    r = m.compute(val + far + near)
    n = len(val)
    assert not r["novel"][:n].any()  # they are in the reference
    assert r["novel"][n : 2 * n].all()
    assert not r["novel"][2 * n :].any()
    e = r["e_above_hull"]
    assert (e[n : 2 * n] > e[:n]).all()
    assert r["avg_novel"] == pytest.approx(n / (3 * n))


def test_unique_first_of_group_and_failed_structures(emt_reference, emt_val):
    from crystalrl.metrics.metrics import Metrics

    a, b = emt_val[0], emt_val[1]
    batch = [a, b, a.copy(), None, displaced(a, 0.01), b.copy()]
    m = Metrics(
        ["unique", "novel", "e_above_hull", "composition_validity"],
        reference=emt_reference,
        num_workers=2,
    )
    r = m.compute(batch)
    assert r["unique"].tolist() == [True, True, False, False, False, False]
    assert r["novel"][3] == False  # noqa: E712  (numpy bool)
    assert np.isnan(r["e_above_hull"][3]) and not r["is_metastable"][3]
    assert not r["composition_validity"][3]
    assert r["avg_unique"] == pytest.approx(2 / 6)  # failed structures count in the rate
    assert {"MSUN", "SUN", "is_stable"} <= set(m.metrics)
    frame = m.to_dataframe()
    assert len(frame) == 6 and not frame["valid"][3]


def test_metric_values_of_hacking_signs_on_known_cells(emt_reference):
    from pymatgen.core import Lattice, Structure

    from crystalrl.metrics.metrics import Metrics

    cu = Structure(
        Lattice.cubic(3.6), ["Cu"] * 4, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    )
    cuau = Structure(Lattice.cubic(3.0), ["Cu", "Au"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    m = Metrics(
        ["is_single_element", "num_distinct_formulas", "num_distinct_systems", "hull_support"],
        reference=emt_reference,
    )
    r = m.compute([cu, cuau, cuau.copy(), None])
    assert list(r["is_single_element"]) == [True, False, False, False]
    assert r["num_distinct_formulas"] == 2 and r["num_distinct_systems"] == 2
    # Cu alone holds no compound; Cu-Au holds every Cu-Au compound of the reference
    cuau_rows = sum(set(c) == {"Cu", "Au"} for c in emt_reference.element_counts())
    assert list(r["hull_support"]) == [0, cuau_rows, cuau_rows, 0] and cuau_rows > 0


def test_collapsed_cells_get_no_energy(emt_reference, emt_val):
    from pymatgen.core import Lattice, Structure

    from crystalrl.metrics.metrics import Metrics
    from crystalrl.metrics.validity import cell_collapsed

    collapsed = Structure(Lattice.cubic(0.3), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    overlapping = emt_val[0].copy()  # two atoms 0.3 Å apart in a cell of normal size
    overlapping.replace(
        1, overlapping[1].species, overlapping[0].coords + [0.3, 0, 0], coords_are_cartesian=True
    )
    assert cell_collapsed(collapsed) and not cell_collapsed(overlapping)
    m = Metrics(["e_above_hull"], reference=emt_reference, num_workers=1)
    r = m.compute([emt_val[0], collapsed, overlapping])
    assert np.isfinite(r["energy"][0]) and np.isnan(r["energy"][1])
    assert r["e_above_hull"][2] > r["e_above_hull"][0]  # evaluated, and high
    assert not r["is_metastable"][1]


def test_every_per_structure_metric_reaches_rewards_as_a_typed_field(emt_reference, emt_val):
    from crystalrl.metrics.metrics import Metrics
    from crystalrl.metrics.registry import REGISTRY
    from crystalrl.metrics.results import MetricResults

    columns = {name for name, spec in REGISTRY.items() if spec.column}
    assert columns | {"features"} == set(MetricResults.metric_names())
    m = Metrics(["unique", "novel", "e_above_hull"], reference=emt_reference, num_workers=1)
    r = m.compute(emt_val[:2] + [None])
    snap = m.snapshot()
    assert snap.unique is r["unique"] and snap.e_above_hull is r["e_above_hull"]
    assert snap.reference is emt_reference and snap.features is None
    assert snap.formulas[:2] == tuple(s.composition.reduced_formula for s in emt_val[:2])
    assert snap.formulas[2] is None and snap.averages["avg_unique"] == r["avg_unique"]


def test_atomic_density_metric_needs_no_reference():
    from pymatgen.core import Lattice, Structure

    from crystalrl.metrics.metrics import Metrics

    nacl = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    r = Metrics(["atomic_density"], reference=None).compute([nacl, None])
    assert r["atomic_density"][0] == pytest.approx(2 / 64) and np.isnan(r["atomic_density"][1])
    assert r["avg_atomic_density"] == pytest.approx(2 / 64)
