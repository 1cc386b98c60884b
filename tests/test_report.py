"""The report is one offline page: curves, a summary of each sample set and the crystal grids."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from crystalrl.report import main
from test_plot import _write


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("report") / "rl_run"
    rows = [
        {"step": s, "train/reward": 0.01 * s, "train/kl_div": 1e-4 * (s + 1), "train/custom": s}
        for s in range(12)
    ]
    _write(run, 0, rows)
    return run


@pytest.fixture(scope="module")
def samples(perov_small, tmp_path_factory) -> tuple[Path, Path]:
    """Six real perovskites (one failed decode) as a base and a re-ordered 'tuned' set."""
    from crystalrl.metrics.structures_io import read_structures, write_structures_json

    structures, _ = read_structures(perov_small, limit=6)
    folder = tmp_path_factory.mktemp("samples")
    base = write_structures_json([*structures, None], folder / "base.json")
    tuned = write_structures_json(structures[::-1], folder / "tuned" / "samples.json.gz")
    return base, tuned.parent


def _images(page: str) -> list[str]:
    return re.findall(r'<img[^>]*src="data:image/png;base64,[A-Za-z0-9+/=]+"', page)


def test_report_is_self_contained_with_curves_table_and_grids(run_dir, samples, tmp_path):
    out = tmp_path / "report.html"
    assert main([str(run_dir), "--samples", *map(str, samples), "--output", str(out)]) == 0
    page = out.read_text()
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', page)
    assert page.count("<img") == len(_images(page)) == 3  # curves + one grid per sample set
    for key in ("avg_unique", "avg_structure_validity", "avg_atomic_density", "avg_physical"):
        assert key in page
    assert "<th>base</th><th>tuned</th><th>change</th>" in page
    assert "7 (6)" in page and "6 (6)" in page  # structures (decoded) of each set
    assert "85.7 %" in page and "100.0 %" in page  # the failed decode counts as not unique
    assert "Top 12 crystals by atomic_density" in page


def test_evaluate_csv_next_to_the_samples_is_reused_and_ranks(run_dir, samples, tmp_path):
    from crystalrl.evaluation import evaluate_samples

    tuned = samples[1]
    first = evaluate_samples(tuned, "tuned", ["structure_validity"])
    e_hull = [0.5, 0.05, 2.0, 0.0, 1.0, 0.3]
    csv = first.table[["formula", "valid"]].assign(e_above_hull=e_hull, is_stable=0)
    csv.insert(0, "name", range(len(csv)))
    csv.to_csv(tuned / "metrics.csv", index=False)
    try:
        reread = evaluate_samples(tuned, "tuned", ["structure_validity", "e_above_hull"])
        assert reread.csv == tuned / "metrics.csv"  # not recomputed: no reference, no CHGNet
        assert reread.summary["avg_e_above_hull"] == pytest.approx(sum(e_hull) / 6)
        out = tmp_path / "one.html"
        assert (
            main([str(run_dir), "--samples", str(tuned), "--output", str(out), "--top", "2"]) == 0
        )
        page = out.read_text()
        assert "Top 2 crystals by e_above_hull" in page and len(_images(page)) == 2
        assert "metrics.csv" in page
    finally:
        (tuned / "metrics.csv").unlink()


def test_bad_run_dir_and_rank_column_are_named(run_dir, samples, tmp_path, capsys):
    missing = tmp_path / "no_such_run"
    assert main([str(missing), "--output", str(tmp_path / "r.html")]) == 2
    assert str(missing) in capsys.readouterr().err
    args = [str(run_dir), "--samples", str(samples[1]), "--rank-by", "band_gap"]
    assert main([*args, "--output", str(tmp_path / "r.html")]) == 2
    assert "band_gap" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()


def test_curves_only_without_samples(run_dir, tmp_path):
    out = tmp_path / "curves.html"
    assert main([str(run_dir), "--output", str(out)]) == 0
    page = out.read_text()
    assert len(_images(page)) == 1 and "train/reward" in page
