"""Reference data, metrics and the evaluate command on real MP-20 rows.

The reference here is the MP-20 rows made only of Al, Cu, Ag, Au, Ni, Pd and Pt, so that
ASE's EMT potential (milliseconds per structure) stands in for CHGNet; one test runs
CHGNet itself on three structures against the shipped energy table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from pymatgen.core import Composition

from crystalrl.reference import Reference

ROOT = Path(__file__).resolve().parents[1]
EMT = {"_target_": "ase.calculators.emt.EMT"}
HULL = {"kind": "potential", "relax_steps": 20}  # as the emt_reference fixture builds it


def displaced(structure, distance: float, seed: int = 0):
    """Every atom moved by exactly ``distance`` Å in a random direction."""
    return structure.copy().perturb(distance, min_distance=None, seed=seed)


@pytest.fixture(scope="module")
def emt_val(emt_dataset):
    from crystalrl.metrics.structures_io import read_structures

    structures, names = read_structures(emt_dataset / "val.csv")
    return structures


@pytest.fixture(scope="module")
def tiny_vae_path(tmp_path_factory) -> Path:
    from crystalrl.vae.module import VAEModule

    torch.manual_seed(0)
    m = VAEModule(model=dict(d_model=32, encoder_layers=1, decoder_layers=1, nhead=2))
    path = tmp_path_factory.mktemp("vae") / "tiny.ckpt"
    torch.save({"state_dict": m.state_dict(), "hyper_parameters": dict(m.hparams)}, path)
    return path


# ---------------------------------------------------------------------- reference
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


def test_unknown_reference_name_is_an_error_listing_known_ones():
    from crystalrl.reference import ReferenceDatasetError

    with pytest.raises(ReferenceDatasetError, match="mp-20"):
        Reference("mp-21")
    assert issubclass(ReferenceDatasetError, ValueError)


# ---------------------------------------------------------------------- potentials
def _compose_evaluate(overrides: list[str]):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from crystalrl.config import CONFIG_DIR

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            return compose(config_name="evaluate", overrides=overrides)
    finally:
        GlobalHydra.instance().clear()


def test_potential_config_group_switches_the_energy_model():
    from pymatgen.core import Lattice, Structure

    from crystalrl.potentials import ASEEnergy, CHGNetEnergy, make_energy_model
    from crystalrl.reference.energy_table import EnergyTable

    cu = Structure(
        Lattice.cubic(3.61), ["Cu"] * 4, [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]
    )
    emt = make_energy_model(_compose_evaluate(["potential=emt"]).potential)
    assert isinstance(emt, ASEEnergy) and type(emt.calculator).__name__ == "EMT"
    energies = emt.energies([cu, cu.copy()])
    assert np.isfinite(energies).all() and abs(energies[0]) < 0.1  # EMT's Cu is its zero
    # the file names the same cache as the inline form the tests' reference uses
    assert emt.key == make_energy_model(EMT).key
    # a one-off calculator without a file: drop the group, add the node
    inline = _compose_evaluate(["~potential", "+potential={_target_: ase.calculators.emt.EMT}"])
    assert make_energy_model(inline.potential).key == emt.key
    # CHGNet stays the default, under the key the shipped energy table was made with
    default = make_energy_model(_compose_evaluate([]).potential)  # built lazily: no weights read
    assert isinstance(default, CHGNetEnergy) and default._model is None
    assert default.key == EnergyTable.load(ROOT / "reference" / "mp_chgnet.npz").potential
    assert default.key == make_energy_model(None).key


# ---------------------------------------------------------------------- metrics
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


def test_matcher_cells_give_the_answers_of_plain_fit(emt_reference, emt_val):
    """Reducing each cell once and skipping the per-pair reduction must not change a match:
    a 2x supercell still matches its primitive cell, a displaced copy still does, another
    formula does not; and the reference's cached cells are the matcher's own reduction."""
    from crystalrl.metrics.matching import fit, matcher, reduced_cell

    sm = matcher()
    a, b = emt_val[0], next(s for s in emt_val if s.composition != emt_val[0].composition)
    pairs = [(a, a.copy().make_supercell([2, 1, 1])), (a, displaced(a, 0.05)), (a, b)]
    plain = [fit(sm, x, y) for x, y in pairs]
    assert plain == [True, True, False]
    assert [fit(sm, reduced_cell(x), reduced_cell(y), reduced=True) for x, y in pairs] == plain
    # skipping the reduction of unreduced cells is what the reduced cells are for
    assert not fit(sm, pairs[0][0], pairs[0][1], reduced=True)
    assert reduced_cell(None) is None

    from crystalrl.metrics.matcher_cells import MatcherCells

    formula = "CuAu"
    cached = MatcherCells(emt_reference, num_workers=2).with_formula(formula)
    direct = [reduced_cell(s) for s in emt_reference.structures_with_formula(formula)]
    assert len(cached) == len(direct) >= 2
    for c, d in zip(cached, direct, strict=True):
        assert np.allclose(c.lattice.matrix, d.lattice.matrix)
        assert np.allclose(c.frac_coords, d.frac_coords) and c.species == d.species


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


def test_composition_validity_and_frechet_distance():
    from pymatgen.core import Composition

    from crystalrl.metrics.diversity import diversity_score, frechet_distance, gaussian_stats
    from crystalrl.metrics.validity import composition_valid

    assert composition_valid(Composition("NaCl")) and composition_valid(Composition("Fe2O3"))
    assert not composition_valid(Composition("NaCl2")) and not composition_valid(None)
    # a = {-1, 1}: mean 0, var 2; b = {-1, 3}: mean 1, var 8 -> FD = 1 + 2 + 8 - 2*4 = 3
    a, b = torch.tensor([[-1.0], [1.0]]), torch.tensor([[-1.0], [3.0]])
    assert frechet_distance(gaussian_stats(a), gaussian_stats(b)) == pytest.approx(3.0)
    assert diversity_score(a, gaussian_stats(b)) == pytest.approx(0.25)
    assert frechet_distance(gaussian_stats(b), gaussian_stats(b)) == pytest.approx(0.0, abs=1e-9)


def test_read_structures_from_json_folder_and_csv(emt_val, tmp_path):
    from crystalrl.metrics.structures_io import read_structures, write_structures_json

    batch = emt_val[:3] + [None]
    path = write_structures_json(batch, tmp_path / "samples.json.gz")
    back, names = read_structures(path)
    assert names == ["0", "1", "2", "3"] and back[3] is None
    (tmp_path / "0.cif").write_text(batch[0].to(fmt="cif"))
    assert len(read_structures(tmp_path)[0]) == 4  # a sampler's folder: its JSON, failures too
    assert all(x == y for x, y in zip(back[:3], batch[:3], strict=True))
    folder = tmp_path / "cifs"
    folder.mkdir()
    for i, s in enumerate(emt_val[:3]):
        s.to(filename=str(folder / f"sample_{i + 8}.cif"))
    (folder / "sample_20.cif").write_text("not a cif")
    structures, names = read_structures(folder)
    assert names == ["sample_8", "sample_9", "sample_10", "sample_20"]
    assert structures[3] is None and structures[0].composition == emt_val[0].composition


# ---------------------------------------------------------------------- rewards on real data
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


# ---------------------------------------------------------------------- commands
def test_evaluate_command_json(emt_reference, emt_dataset, tiny_vae_path, tmp_path):
    _ = emt_reference.hull  # build the cache the command will find
    out_csv = tmp_path / "metrics.csv"
    cmd = [
        sys.executable, "-m", "crystalrl.evaluate",
        f"structure_path={emt_dataset / 'val.csv'}",
        f"reference_dataset={emt_dataset}",
        f"output_file={out_csv}",
        f"vae_ckpt_path={tiny_vae_path}",
        "potential=emt",
        f"hull.relax_steps={HULL['relax_steps']}",
        f"hull.kind={HULL['kind']}",
        "num_workers=2",
        f"paths.log_dir={tmp_path / 'logs'}",
        "--json",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    n = len(pd.read_csv(emt_dataset / "val.csv"))
    for key in (
        "avg_unique", "avg_novel", "avg_is_metastable", "avg_is_stable", "avg_MSUN", "avg_SUN",
        "avg_composition_validity", "structure_diversity", "composition_diversity",
    ):  # fmt: skip
        assert key in summary, key
    assert summary["num_structures"] == n and summary["avg_novel"] == 0.0
    assert 0 < summary["structure_diversity"] <= 1
    # real crystals: all contact-physical, atoms about 2.5 Å apart
    assert summary["avg_physical"] == 1.0 and 2.0 < summary["median_shortest_distance"] < 3.2
    frame = pd.read_csv(out_csv)
    assert len(frame) == n and {"name", "novel", "e_above_hull", "MSUN"} <= set(frame.columns)
    assert {"shortest_distance", "contact_ratio", "physical"} <= set(frame.columns)
    # the hull's support of every structure, and MSUN restricted to supported systems
    assert {"hull_support", "is_supported", "MSUN_supported", "MSUN_credible"} <= set(frame)
    assert (frame["hull_support"] >= 0).all()
    assert (frame["MSUN_supported"] <= frame["MSUN"]).all()
    assert summary["avg_MSUN_supported"] <= summary["avg_MSUN"]
    # the signs of reward hacking: reference crystals are the reference's own density
    assert summary["num_distinct_formulas"] == frame["formula"].nunique()
    assert summary["avg_is_single_element"] == pytest.approx(
        np.mean([len(Composition(f)) == 1 for f in frame["formula"]])
    )
    assert 0.5 < summary["density_vs_reference"] < 2.0


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


def test_evaluate_without_a_vae_skips_diversity(emt_reference, emt_val):
    from crystalrl.evaluation import evaluate_structures

    with pytest.warns(UserWarning, match="diversity"):
        m = evaluate_structures(
            emt_val[:3],
            reference=emt_reference,
            metrics=["unique", "structure_diversity", "composition_diversity"],
            vae=None,
            num_workers=0,
            progress=False,
        )
    assert "structure_diversity" not in m.summary() and "avg_unique" in m.summary()


def test_structure_validity_distances_and_volume():
    from pymatgen.core import Lattice, Structure

    from crystalrl.metrics.validity import structure_valid

    good = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert structure_valid(good)
    close = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.1, 0, 0]])  # 0.4 Å
    assert not structure_valid(close)
    # periodic images count: a 0.45 Å cell edge puts an atom 0.45 Å from its own image
    assert not structure_valid(Structure(Lattice.tetragonal(0.45, 5.0), ["H"], [[0, 0, 0]]))
    assert structure_valid(Structure(Lattice.tetragonal(2.0, 5.0), ["H"], [[0, 0, 0]]))
    assert not structure_valid(None)
    # with several atoms the self-image distance hides in the shortest lattice vector of a
    # sheared cell: a 0.3 Å vector c = (0.3, 0, 0) disguised as (4.3, 0, 0.1) - (4, 0, 0.1)
    sheared = Lattice([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [4.3, 0.0, 0.1]])
    two = Structure(sheared, ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert min(two.lattice.abc) > 0.5 and not structure_valid(two)


def test_many_element_formula_is_invalid_without_enumeration():
    import time

    from pymatgen.core import Composition

    from crystalrl.metrics.validity import MAX_SMACT_ELEMENTS, composition_valid

    # 12 elements: SMACT's oxidation-state enumeration would take minutes and gigabytes
    formula = Composition("LiNaKRbCsMgCaSrBaFClBrI2O3")
    assert len(formula.elements) > MAX_SMACT_ELEMENTS
    start = time.perf_counter()
    assert not composition_valid(formula)
    assert time.perf_counter() - start < 5.0
    assert composition_valid(Composition("Li2NaKMgCaSrO5"))  # 7 elements are still checked


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


def test_worker_pool_finishes_under_a_parent_that_ignores_sigterm():
    """A training process (Lightning) handles SIGTERM without exiting; forked matcher
    workers must not inherit that, or terminating their pool hangs the RL step."""
    import subprocess
    import sys

    code = (
        "import signal; signal.signal(signal.SIGTERM, lambda *a: None)\n"
        "from crystalrl.metrics.parallel import map_with_timeout\n"
        "print(map_with_timeout(abs, [-1, -2, -3], num_workers=2))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[1, 2, 3]"


def _sleep_if_negative(item: tuple[int, str]) -> int:
    import os
    import time

    x, folder = item
    if x < 0:
        Path(folder, "stuck.pid").write_text(str(os.getpid()))
        time.sleep(60)
    return 2 * x


def test_worker_pool_gives_the_stuck_item_the_default_and_the_rest_their_results(tmp_path):
    import os

    from crystalrl.metrics.parallel import map_with_timeout

    items = [(x, str(tmp_path)) for x in [1, 2, -1, 3, 4, 5, 6, 7, 8, 9]]
    done = []  # chunks of three: the stuck item shares one
    out = map_with_timeout(
        _sleep_if_negative,
        items,
        timeout=2.0,
        num_workers=1,
        default="timeout",
        progress=done.append,
    )
    assert out == [2, 4, "timeout", 6, 8, 10, 12, 14, 16, 18]
    assert sum(done) == len(items)
    with pytest.raises(ProcessLookupError):  # the stuck worker was killed with its pool
        os.kill(int((tmp_path / "stuck.pid").read_text()), 0)


def _fail_on_zero(x: int) -> int:
    import time

    if x == 0:
        raise ValueError("bad item")
    time.sleep(0.5)
    return x


def test_worker_pool_after_an_error_serves_the_next_call_fresh():
    from crystalrl.metrics.parallel import map_with_timeout

    with pytest.raises(ValueError, match="bad item"):
        map_with_timeout(_fail_on_zero, range(40), num_workers=2)
    # the failed call's chunks (10 s of work) must not sit ahead of this call's
    assert map_with_timeout(abs, [-1, -2], timeout=5.0, num_workers=2, default="x") == [1, 2]


def _collector_enabled(_: int) -> bool:
    import gc

    return gc.isenabled()


def test_worker_pool_forked_while_scoring_collects_garbage():
    from crystalrl.gc_pause import collector_paused
    from crystalrl.metrics.parallel import map_with_timeout

    with collector_paused():  # a reward forks the pool here; its workers live on
        assert map_with_timeout(_collector_enabled, [0, 1, 2], num_workers=3) == [True] * 3


def test_collector_paused_restores_the_callers_collector_state():
    import gc

    from crystalrl.gc_pause import collector_paused

    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():  # nested: the outer pause owns the collector
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()  # a caller that manages the collector itself keeps it off
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_reduced_cells_of_different_sizes_miss_without_calling_pymatgen(monkeypatch):
    from pymatgen.core import Lattice, Structure

    from crystalrl.metrics.matching import fit, matcher, reduced_cell

    sm = matcher()
    rocksalt = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0] * 3, [0.5] * 3]
    )
    distorted = rocksalt.copy()
    distorted.translate_sites([0], [0.1, 0.0, 0.0])  # its conventional cell is now primitive
    a, b = reduced_cell(rocksalt, sm), reduced_cell(distorted, sm)
    assert (len(a), len(b)) == (2, 8)
    assert not sm.fit(a, b, skip_structure_reduction=True)  # pymatgen's answer
    assert fit(sm, a, reduced_cell(rocksalt.copy(), sm), reduced=True)  # same size: still fitted
    monkeypatch.setattr(type(sm), "fit", lambda *a, **k: pytest.fail("pymatgen was called"))
    assert not fit(sm, a, b, reduced=True)
