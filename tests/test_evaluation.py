"""The evaluate command and its library (crystalrl.evaluation) on real MP-20 rows, with
EMT standing in for CHGNet: the summary, the per-structure CSV and the signs of reward
hacking."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Composition

HULL = {"kind": "potential", "relax_steps": 20}  # as the emt_reference fixture builds it


def test_evaluate_command_json(
    emt_reference, emt_dataset, tiny_vae_path, tmp_path, hydra_compose, monkeypatch, capfd
):
    """``--json`` prints the summary as one JSON object on stdout, beside the CSV. Run in
    this process on the composed config; the command as a process of its own is tested
    in test_outputs.py."""
    from crystalrl import cli
    from crystalrl.evaluate import main

    _ = emt_reference.hull  # build the cache the command will find
    out_csv = tmp_path / "metrics.csv"
    cfg = hydra_compose(
        "evaluate",
        [
            f"structure_path={emt_dataset / 'val.csv'}",
            f"reference_dataset={emt_dataset}",
            f"output_file={out_csv}",
            f"vae_ckpt_path={tiny_vae_path}",
            "potential=emt",
            f"hull.relax_steps={HULL['relax_steps']}",
            f"hull.kind={HULL['kind']}",
            "num_workers=2",
            f"paths.log_dir={tmp_path / 'logs'}",
        ],
    )
    # the flag is read from the command line as the console script reads it; the setattr
    # only makes sure later tests get their tables back
    monkeypatch.setattr(cli, "_JSON_OUTPUT", False)
    monkeypatch.setattr(sys, "argv", ["crystalrl-evaluate", "--json"])
    with pytest.raises(SystemExit) as exited:
        cli.run_command(lambda: main(cfg))
    assert exited.value.code == 0 and sys.argv == ["crystalrl-evaluate"]
    summary = json.loads(capfd.readouterr().out)
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
