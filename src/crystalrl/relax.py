"""Relax generated crystals with a machine-learned potential before judging them.

``python -m crystalrl.relax structure_path=DIR_OR_JSON output_dir=DIR [potential=emt]
[fmax=0.05] [max_steps=300] [relax_cell=true] [--json]``

Generated crystals sit near, not at, a minimum of the potential, so their single-point
energies overstate how far above the hull they are; MatterGen-style evaluations relax
them first. This writes the relaxed structures where ``crystalrl.evaluate`` reads them
(``samples.json.gz``, failed relaxations as ``null`` so that rates still count them, and
one CIF each) and ``relaxation.csv`` with what the relaxation did to each structure.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from crystalrl.cli import json_output, report, run_command
from crystalrl.config import CONFIG_DIR
from crystalrl.config_values import potential_spec
from crystalrl.evaluation.relaxed import relax_generated, relaxation_frame, relaxation_summary


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="relax")
def main(cfg: DictConfig) -> dict:
    from crystalrl.metrics.structures_io import read_structures, write_structures
    from crystalrl.potentials import make_energy_model

    start = time.perf_counter()
    structures, names = read_structures(cfg.structure_path, cfg.num_structures)
    model = make_energy_model(potential_spec(cfg))
    results = relax_generated(
        structures,
        model,
        not json_output(),
        fmax=float(cfg.fmax),
        max_steps=int(cfg.max_steps),
        relax_cell=bool(cfg.relax_cell),
    )
    out = Path(cfg.output_dir)
    write_structures([r.structure for r in results], out, cfg.write_cifs)
    relaxation_frame(results, names).to_csv(out / "relaxation.csv", index=False)
    summary: dict[str, Any] = {
        "num_structures": len(structures),
        "potential": model.key,
        **relaxation_summary(results),
        "seconds": round(time.perf_counter() - start, 2),
        "output_dir": str(out),
    }
    report(summary, f"relaxation of {cfg.structure_path}", _format)
    return summary


def _format(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def cli() -> None:
    """The ``crystalrl-relax`` console script: exactly what ``python -m crystalrl.relax``
    does (``--json`` included)."""
    run_command(main)


if __name__ == "__main__":
    cli()
