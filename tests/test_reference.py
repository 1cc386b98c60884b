"""The reference set on real MP-20 rows: its formula groups, cached energies, convex hull,
the shipped CHGNet energy table and its names.

The rows are those made only of EMT's elements (conftest), so that ASE's EMT potential
(milliseconds per structure) stands in for CHGNet; one slow test runs CHGNet itself on
three structures against the shipped energy table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crystalrl.reference import Reference

ROOT = Path(__file__).resolve().parents[1]
EMT = {"_target_": "ase.calculators.emt.EMT"}
HULL = {"kind": "potential", "relax_steps": 20}  # as the emt_reference fixture builds it


def test_reference_groups_structures_and_caches_energies(emt_reference, emt_dataset, monkeypatch):
    from crystalrl.potentials import ASEEnergy

    ref = emt_reference
    assert len(ref) == sum(len(pd.read_csv(emt_dataset / f"{s}.csv")) for s in ref.split_files)
    assert len(ref.by_formula["CuAu"]) >= 2  # CuAu occurs in more than one split
    assert all(s.composition.reduced_formula == "CuAu" for s in ref.structures_with_formula("CuAu"))
    energies = ref.energies
    assert np.isfinite(energies).all()
    # a second reference object over the same files reads the cached table
    monkeypatch.setattr(ASEEnergy, "energies", lambda *a, **k: pytest.fail("recomputed"))
    again = Reference(emt_dataset, potential=EMT, hull=HULL, progress=False)
    assert np.array_equal(again.energies, energies)


def test_hull_matches_a_full_phase_diagram_and_covers_new_systems(emt_reference):
    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
    from pymatgen.core import Composition

    ref = emt_reference
    hull = ref.hull
    # Al and Pt have no pure-element structure in these rows: relaxed prototypes stand in
    assert hull.elemental["Al"][1] in {"fcc", "bcc", "hcp", "sc", "diamond"}
    assert hull.elemental["Cu"][1] == "reference"
    entries = [
        PDEntry(Composition(c), e * sum(c.values()))
        for c, e in zip(ref.element_counts(), ref.energies, strict=True)
    ]
    entries += [
        PDEntry(Composition(el), e) for el, (e, src) in hull.elemental.items() if src != "reference"
    ]
    full = PhaseDiagram(entries)
    rng = np.random.default_rng(0)
    queries = ["CuAu", "Al3Ni", "AgNiPt", "AlCuAgAuNiPdPt", "Pt", "Cu2AuPd"]
    for formula in queries:
        comp = Composition(formula)
        e = full.get_hull_energy_per_atom(comp) + rng.uniform(-0.05, 0.2)
        expected = full.get_e_above_hull(
            PDEntry(comp, e * comp.num_atoms), allow_negative=True, check_stable=False
        )
        assert hull.e_above_hull(comp, e) == pytest.approx(expected, abs=1e-6), formula
    # a batch is one linear programme: every answer is still the phase diagram's
    elements = sorted(hull.elements)
    comps = [
        Composition(
            dict(zip(rng.choice(elements, k, replace=False), rng.integers(1, 5, k), strict=True))
        )
        for k in rng.integers(1, 5, 40)
    ]
    energies = np.array([full.get_hull_energy_per_atom(c) for c in comps]) + rng.normal(0, 0.2, 40)
    energies[3] = np.nan
    batch = hull.e_above_hull_many([*comps, Composition("FeCu")], np.append(energies, -3.0))
    expected = [
        full.get_e_above_hull(PDEntry(c, e * c.num_atoms), allow_negative=True, check_stable=False)
        for c, e in zip(comps, energies, strict=True)
    ]
    expected[3] = np.nan
    np.testing.assert_allclose(batch, [*expected, np.nan], atol=1e-9)
    e_ref = hull.e_above_hull_many([Composition(c) for c in ref.element_counts()], ref.energies)
    assert (e_ref >= -1e-6).all() and (np.abs(e_ref) < 1e-6).any()
    assert np.isnan(hull.e_above_hull(Composition("FeCu"), -3.0))  # Fe is not in the reference
    assert np.isnan(hull.e_above_hull(Composition("Cu"), float("nan")))


@pytest.mark.slow
def test_shipped_chgnet_table_is_reused_and_matches_chgnet(datasets, tmp_path, monkeypatch):
    from crystalrl.potentials import CHGNetEnergy
    from crystalrl.reference.energy_table import EnergyTable

    frame = pd.read_csv(datasets / "mp_20" / "val.csv.gz", nrows=3)
    frame.to_csv(tmp_path / "val.csv", index=False)
    shipped = EnergyTable.load(ROOT / "reference" / "mp_chgnet.npz")
    lookup = dict(zip(shipped.material_id, shipped.energy_per_atom, strict=True))
    expected = np.array([lookup[m] for m in frame["material_id"]])

    # CHGNet itself agrees with the committed table (cells differ: Niggli vs as written)
    from pymatgen.core import Structure

    structures = [Structure.from_str(c, fmt="cif") for c in frame["cif"]]
    computed = CHGNetEnergy(batch_size=3).energies(structures)
    assert computed == pytest.approx(expected, abs=2e-4)

    monkeypatch.setattr(CHGNetEnergy, "energies", lambda *a, **k: pytest.fail("recomputed"))
    ref = Reference(tmp_path, progress=False)
    assert ref.energy_model.key == shipped.potential
    assert ref.energies == pytest.approx(expected, abs=1e-6)


def test_build_reference_command_reports_the_cached_reference(
    emt_reference, emt_dataset, tiny_vae_path, hydra_compose, monkeypatch
):
    """The command in this process on a reference already built: it reports what the cache
    holds and computes no energy again."""
    from crystalrl.build_reference import main
    from crystalrl.potentials import ASEEnergy

    _ = emt_reference.hull  # the command finds the energies and the hull cached
    monkeypatch.setattr(ASEEnergy, "energies", lambda *a, **k: pytest.fail("recomputed"))
    cfg = hydra_compose(
        "build_reference",
        [
            f"reference_dataset={emt_dataset}",
            "potential=emt",
            f"hull.kind={HULL['kind']}",
            f"hull.relax_steps={HULL['relax_steps']}",
            f"vae_ckpt_path={tiny_vae_path}",
        ],
    )
    result = main(cfg)
    assert result["num_structures"] == len(emt_reference)
    assert result["potential"] == emt_reference.energy_model.key
    assert result["num_failed_energies"] == 0 and result["hull_kind"] == "potential"
    assert result["num_stable_entries"] == len(emt_reference.hull.stable_entries)
    # Al has no pure-element row: a relaxed prototype stands in; Cu has its own
    assert "Al" in result["elemental_prototypes"] and "Cu" not in result["elemental_prototypes"]
    assert result["feature_dims"] and all(d > 0 for d in result["feature_dims"].values())


def test_unknown_reference_name_is_an_error_listing_known_ones():
    from crystalrl.reference import ReferenceDatasetError

    with pytest.raises(ReferenceDatasetError, match="mp-20"):
        Reference("mp-21")
    assert issubclass(ReferenceDatasetError, ValueError)
