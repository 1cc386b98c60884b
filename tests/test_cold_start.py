"""The first use of a reference on an empty cache says, in one line, what it builds, about
how long that takes and that it is cached afterwards; a cached reference says nothing."""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from crystalrl.metrics.cold_start import uncached_parts


@pytest.fixture
def tiny_reference_dir(datasets, tmp_path):
    folder = tmp_path / "tiny_perov"
    folder.mkdir()
    for split in ("train", "val", "test"):
        frame = pd.read_csv(datasets / "perov_5" / "val.csv.gz", nrows=12)
        frame.to_csv(folder / f"{split}.csv", index=False)
    return folder


def _novelty(folder, cache):
    from crystalrl.metrics.metrics import Metrics
    from crystalrl.reference import Reference

    reference = Reference(folder, cache_dir=cache, progress=False)
    return reference, Metrics(["novel"], reference=reference, num_workers=1)


def test_the_first_build_is_announced_once(tiny_reference_dir, tmp_path, caplog):
    cache = tmp_path / "cache"
    reference, metrics = _novelty(tiny_reference_dir, cache)
    assert uncached_parts(reference, ["structures", "vae"]) == ["structures"]
    with caplog.at_level(logging.INFO, logger="crystalrl"):
        metrics.setup()
    lines = [r.getMessage() for r in caplog.records if "once" in r.getMessage()]
    first = [line for line in lines if line.startswith("building the")]
    assert len(first) == 1, lines
    assert "structures for novelty" in first[0] and "few minutes" in first[0]
    assert f"cached in {reference.cache_dir} afterwards" in first[0]

    caplog.clear()
    reference, metrics = _novelty(tiny_reference_dir, cache)
    assert uncached_parts(reference, ["structures"]) == []
    with caplog.at_level(logging.INFO, logger="crystalrl"):
        metrics.setup()
    assert not [r for r in caplog.records if r.getMessage().startswith("building the")]
