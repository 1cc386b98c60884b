"""Reading generated structures (crystalrl.metrics.structures_io) from a JSON list, a
sampler's folder and a folder of CIF files, failures kept in place."""

from __future__ import annotations


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
