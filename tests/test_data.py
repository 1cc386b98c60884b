from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Structure

from crystalrl.data.batch import CrystalBatch
from crystalrl.data.datamodule import (
    CrystalDataModule,
    CrystalDataset,
    collate,
    num_atoms_distribution,
)
from crystalrl.data.parse import DatasetError, read_split
from crystalrl.data.summary import main as summary_main


def _mp20_rows(datasets, n=40) -> pd.DataFrame:
    return pd.read_csv(datasets / "mp_20" / "val.csv.gz", nrows=n)


def test_round_trip_cif_batch_structure(datasets, tmp_path):
    """CIF -> parsed arrays -> padded batch -> Structure keeps lattice and sites to 1e-6."""
    frame = _mp20_rows(datasets)
    path = tmp_path / "val.csv"
    frame.to_csv(path, index=False)
    split = read_split(path, niggli=False, num_workers=1)
    assert len(split) == len(frame)
    ds = CrystalDataset(split)
    batch = collate([ds[i] for i in range(len(ds))], dtype=__import__("torch").float64)
    assert batch.atom_types.shape == (len(frame), int(split.num_atoms.max()))
    assert batch.mask.sum().item() == split.num_atoms.sum()
    for cif, back, atoms in zip(frame["cif"], batch.to_structures(), batch.to_atoms(), strict=True):
        ref = Structure.from_str(cif, fmt="cif")
        np.testing.assert_allclose(back.lattice.abc, ref.lattice.abc, atol=1e-6)
        np.testing.assert_allclose(back.lattice.angles, ref.lattice.angles, atol=1e-6)
        assert [s.specie.symbol for s in back] == [s.specie.symbol for s in ref]
        np.testing.assert_allclose(back.frac_coords, ref.frac_coords, atol=1e-6)
        np.testing.assert_allclose(atoms.cell.cellpar(), ref.lattice.parameters, atol=1e-6)
        assert atoms.get_chemical_formula() == ref.to_ase_atoms().get_chemical_formula()
    again = CrystalBatch.from_structures(batch.to_structures())
    np.testing.assert_allclose(again.frac_coords.numpy(), batch.frac_coords.numpy(), atol=1e-9)


def test_niggli_reduction_keeps_the_crystal(datasets, tmp_path):
    from pymatgen.analysis.structure_matcher import StructureMatcher

    frame = _mp20_rows(datasets, 10)
    path = tmp_path / "val.csv"
    frame.to_csv(path, index=False)
    reduced = read_split(path, niggli=True, num_workers=1).to_structures()
    matcher = StructureMatcher()
    for cif, s in zip(frame["cif"], reduced, strict=True):
        ref = Structure.from_str(cif, fmt="cif")
        assert matcher.fit(ref, s)
        assert s.volume == pytest.approx(ref.volume, rel=1e-6)


def test_malformed_rows_are_skipped_and_counted(datasets, tmp_path):
    frame = _mp20_rows(datasets, 6)
    big = Structure.from_str(frame["cif"][0], fmt="cif")
    big.make_supercell([3, 3, 3])
    singular = frame["cif"][1].replace("_cell_length_a", "_cell_length_a   0.0\n#", 1)
    bad = pd.DataFrame({"cif": ["this is not a cif", big.to(fmt="cif"), singular, None]})
    path = tmp_path / "broken.csv"
    pd.concat([frame, bad], ignore_index=True).to_csv(path, index=False)
    with pytest.warns(UserWarning, match=r"skipped 4 rows") as record:
        split = read_split(path, max_atoms=20, niggli=False, num_workers=1)
    assert len(split) == 6
    message = str(record[0].message)
    assert str(path) in message
    assert "more than 20 atoms" in message
    assert sum(split.skipped.values()) == 4
    assert split.row_index.tolist() == list(range(6))


def test_missing_file_and_missing_cif_column_name_the_file(tmp_path):
    with pytest.raises(DatasetError, match="nope.csv"):
        read_split(tmp_path / "nope.csv")
    path = tmp_path / "nocif.csv"
    pd.DataFrame({"material_id": ["a"], "structure": ["x"]}).to_csv(path, index=False)
    with pytest.raises(DatasetError, match=r"nocif.csv has no 'cif' column"):
        read_split(path)
    with pytest.raises(DatasetError, match="train.csv"):
        CrystalDataModule(str(tmp_path)).split("train")


def test_cache_gives_identical_arrays_and_tracks_the_file(perov_small, tmp_path):
    path = tmp_path / "small.csv"  # a copy: the change below must not reach other tests
    path.write_bytes(perov_small.read_bytes())
    first = read_split(path, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 1
    second = read_split(path, cache_dir=tmp_path)
    np.testing.assert_array_equal(first.frac_coords, second.frac_coords)
    np.testing.assert_array_equal(first.atom_types, second.atom_types)
    # a changed file is a different cache entry, never a stale hit
    frame = pd.read_csv(path).iloc[:10]
    frame.to_csv(path, index=False)
    assert len(read_split(path, cache_dir=tmp_path)) == 10
    assert len(list(tmp_path.glob("*.npz"))) == 2


def test_num_atoms_distribution_and_targets(datasets, tmp_path):
    frame = _mp20_rows(datasets, 50)
    path = tmp_path / "train.csv"
    frame.to_csv(path, index=False)
    for name in ("val", "test"):
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
    dm = CrystalDataModule(str(tmp_path), batch_size=8, target_names=["band_gap"])
    dist = dm.num_atoms_distribution()
    assert len(dist) == 21 and sum(dist) == pytest.approx(1.0)
    expected = np.bincount(
        frame["cif"].map(lambda c: len(Structure.from_str(c, fmt="cif"))), minlength=21
    ) / len(frame)
    # rows without a band gap are dropped when it is a target
    labelled = frame["band_gap"].notna().sum()
    assert len(dm.split("train")) == labelled
    assert num_atoms_distribution(read_split(path), 20) == pytest.approx(expected.tolist())
    batch = next(iter(dm.train_dataloader()))
    assert batch.properties["band_gap"].shape == (8,)
    with pytest.raises(KeyError, match="no column"):
        CrystalDataModule(str(tmp_path), target_names=["nonexistent"]).dataset("train")


@pytest.mark.slow
def test_summary_json_counts(datasets, capsys):
    """The whole of perov_5 (19 000 rows, half a minute to parse)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert summary_main([str(datasets / "perov_5"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [out["splits"][s]["read"] for s in ("train", "val", "test")] == [11356, 3787, 3785]
    assert out["splits"]["train"]["skipped"] == 0
    assert out["splits"]["train"]["num_atoms_histogram"] == {"5": 11356}


def test_summary_json_counts_a_small_dataset(perov_small_dir, capsys):
    """The same command on 64 rows per split, for the fast tier; cells over --max-atoms
    are counted as skipped with their reason, not read."""
    assert summary_main([str(perov_small_dir), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [out["splits"][s]["read"] for s in ("train", "val", "test")] == [64, 64, 64]
    assert out["splits"]["train"]["skipped"] == 0
    assert out["splits"]["train"]["num_atoms_histogram"] == {"5": 64}
    assert summary_main([str(perov_small_dir), "--json", "--max-atoms", "4"]) == 0
    small = json.loads(capsys.readouterr().out)["splits"]["val"]
    assert small["read"] == 0 and small["skipped"] == 64
    assert sum(small["skipped_reasons"].values()) == 64


def test_summary_missing_dataset_is_an_error(tmp_path, capsys):
    assert summary_main([str(tmp_path)]) == 2
    assert "train.csv" in capsys.readouterr().err
