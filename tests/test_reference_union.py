"""A reference made of several datasets, a hull that knows its support, a DFT-anchored hull."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Composition

from crystalrl.reference import Reference, ReferenceDatasetError
from crystalrl.reference.datasets import resolve_reference_dirs
from crystalrl.reference.formation import fit_chemical_potentials
from crystalrl.reference.hull import ReferenceHull


@pytest.fixture(scope="module")
def two_datasets(datasets, tmp_path_factory):
    """A: 20 MP-20 rows (row 5 without its DFT label). B: 5 of A's rows under their own ids,
    3 of them again under new ids (same crystals), and 5 rows A does not have."""
    rows = pd.read_csv(datasets / "mp_20" / "val.csv.gz", nrows=60)
    rows = rows[rows["formation_energy_per_atom"].notna()].head(25).reset_index(drop=True)
    a_dir = tmp_path_factory.mktemp("a")
    b_dir = tmp_path_factory.mktemp("b")
    a = rows.head(20).copy()
    a.loc[5, "formation_energy_per_atom"] = np.nan
    a.to_csv(a_dir / "val.csv", index=False)
    same_id = rows.iloc[0:5]
    renamed = rows.iloc[5:8].copy()
    renamed["material_id"] = [f"other-{i}" for i in range(3)]
    renamed["formation_energy_per_atom"] = [0.123, np.nan, np.nan]
    new = rows.iloc[20:25]
    pd.concat([same_id, renamed, new]).to_csv(b_dir / "val.csv", index=False)
    return a_dir, b_dir, rows


def test_union_keeps_each_material_once_and_carries_labels_over(two_datasets):
    a_dir, b_dir, rows = two_datasets
    ref = Reference(f"{a_dir}+{b_dir}", progress=False)
    assert len(ref) == 25
    assert list(ref.split_files) == [f"{a_dir.name}/val", f"{b_dir.name}/val"]
    assert sorted(set(ref._flat["material_id"])) == sorted(rows["material_id"])
    labels = ref.dft_formation_energies
    # A's row 5 had no label; its duplicate in B (another id, the same crystal) had one
    assert labels[5] == pytest.approx(0.123)
    np.testing.assert_allclose(labels[20:], rows["formation_energy_per_atom"][20:25])
    assert list(ref.datasets[:20]) == [a_dir.name] * 20
    assert list(ref.datasets[20:]) == [b_dir.name] * 5
    # a reference of one folder is unchanged: no rows dropped, labels as in the file
    alone = Reference(b_dir, progress=False)
    assert len(alone) == 13
    assert alone.cache_file("x").name.startswith(f"{b_dir.name}-x-")
    assert ref.cache_file("x").name.startswith(f"{a_dir.name}+{b_dir.name}-x-")


def test_union_names_its_bad_part(datasets):
    with pytest.raises(ReferenceDatasetError, match="part 'mp-21'.*neither a known"):
        resolve_reference_dirs("mp-20+mp-21", datasets)
    with pytest.raises(ReferenceDatasetError, match="empty name"):
        resolve_reference_dirs("mp-20+", datasets)
    with pytest.raises(ReferenceDatasetError, match="the same dataset twice"):
        resolve_reference_dirs("mp-20+mp-20", datasets)
    folders = resolve_reference_dirs("mp-20+mp-bandgap", datasets)
    assert [f.name for f in folders] == ["mp_20", "mp_bandgap"]


def test_unknown_hull_kind_is_an_error(two_datasets):
    a_dir, _, _ = two_datasets
    ref = Reference(a_dir, hull={"kind": "mace"}, potential={"_target_": "x"}, progress=False)
    with pytest.raises(ReferenceDatasetError, match="hull.kind='mace'"):
        _ = ref.hull


# ---------------------------------------------------------------------- hull
MU = {"Na": -1.3, "Cl": -1.8, "K": -1.1}
#: formula -> DFT formation energy per atom (NaN: unlabelled)
ROWS = {
    "Na": 0.0,
    "Cl": 0.0,
    "K": 0.0,
    "NaCl": -2.0,
    "Na2Cl": -1.0,
    "NaCl3": np.nan,
    "KCl": -2.2,
    "K2Cl": -13.0,  # a data error: 12 eV/atom below what the potential says
}
#: the potential's formation energies where they differ from the labels
POTENTIAL_FORMATION = {"NaCl3": -0.9, "K2Cl": -1.1}


def synthetic():
    counts = [Composition(f).as_dict() for f in ROWS]
    counts = [{k: int(v) for k, v in c.items()} for c in counts]
    labels = np.array(list(ROWS.values()))
    formation = np.array([POTENTIAL_FORMATION.get(f, ROWS[f]) for f in ROWS])
    energies = np.array(
        [
            e + sum(n / sum(c.values()) * MU[el] for el, n in c.items())
            for c, e in zip(counts, formation, strict=True)
        ]
    )
    return counts, energies, labels


def test_chemical_potentials_are_recovered_and_outliers_ignored():
    counts, energies, labels = synthetic()
    mu = fit_chemical_potentials(counts, energies, labels)
    assert mu == pytest.approx(MU, abs=1e-9)


def test_dft_anchored_hull_places_potential_energies_on_dft_formation_energies():
    counts, energies, labels = synthetic()
    hull = ReferenceHull.build_dft_anchored(counts, energies, labels)
    assert hull.chemical_potentials == pytest.approx(MU, abs=1e-9)
    nacl = Composition("NaCl")
    e_nacl = -2.0 + 0.5 * MU["Na"] + 0.5 * MU["Cl"]  # potential energy of DFT's NaCl
    assert hull.e_above_hull(nacl, e_nacl + 0.05) == pytest.approx(0.05, abs=1e-9)
    # K2Cl's label (-13 eV/atom) is a data error: the potential's -1.1 stands in, so KCl
    # at its own DFT energy is on the hull, not 10 eV/atom above it
    e_kcl = -2.2 + 0.5 * MU["K"] + 0.5 * MU["Cl"]
    assert hull.e_above_hull(Composition("KCl"), e_kcl) == pytest.approx(0.0, abs=1e-9)
    # an element no reference contains: NaN, and named
    assert np.isnan(hull.e_above_hull(Composition("CsCl"), -3.0))
    assert hull.missing_elements([Composition("CsCl"), None, nacl]) == ["Cs"]


def test_hybrid_hull_never_puts_a_reference_compound_below_it():
    counts, energies, labels = synthetic()
    kcl = list(ROWS).index("KCl")
    energies = energies.copy()
    energies[kcl] -= 0.15  # the potential overbinds KCl by 0.15 eV/atom
    dft = ReferenceHull.build_dft_anchored(counts, energies, labels)
    hybrid = ReferenceHull.build_dft_anchored(counts, energies, labels, lower_envelope=True)
    comps = [Composition(c) for c in counts]
    # mu barely moves (one row of eight is off); against DFT's KCl the overbound one is deep
    assert dft.e_above_hull(comps[kcl], energies[kcl]) < -0.1
    e_hybrid = hybrid.e_above_hull_many(comps, energies)
    assert np.nanmin(e_hybrid) > -1e-9
    # a new composition is still measured against DFT where DFT is lower
    nacl = Composition("NaCl")
    e_nacl = -2.0 + 0.5 * MU["Na"] + 0.5 * MU["Cl"]
    assert hybrid.e_above_hull(nacl, e_nacl + 0.05) == pytest.approx(
        dft.e_above_hull(nacl, e_nacl + 0.05), abs=0.02
    )


def test_support_counts_compounds_of_a_system_and_its_subsystems():
    counts, energies, labels = synthetic()
    hull = ReferenceHull.build(counts, energies)
    comps = [Composition(f) for f in ("NaCl", "NaKCl", "Na", "NaK", "CsCl")]
    # Na-Cl: NaCl, Na2Cl, NaCl3; Na-K-Cl adds KCl, K2Cl; elements and Na-K hold none
    assert list(hull.support_many([*comps, None])) == [3, 5, 0, 0, 0, 0]
    # support survives the cache (pickling)
    import pickle

    again = pickle.loads(pickle.dumps(hull))
    assert list(again.support_many(comps)) == [3, 5, 0, 0, 0]


def test_evaluate_names_the_unsupported_systems(caplog):
    from crystalrl.evaluation import warn_unsupported

    frame = pd.DataFrame(
        {
            "formula": ["CsCl3", "CsCl3", "NaCl", "KCl"],
            "valid": [True, True, True, False],
            "hull_support": [2, 2, 40, 0],
        }
    )
    with caplog.at_level("WARNING", logger="crystalrl"):
        warn_unsupported(frame, 12)
    assert "2 structures lie in chemical systems with fewer than 12" in caplog.text
    assert "Cl-Cs (2 compounds, 2×)" in caplog.text and "Na-Cl" not in caplog.text
    caplog.clear()
    warn_unsupported(frame, 2)
    assert not caplog.text
