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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pandas as pd
from omegaconf import DictConfig

from crystalrl.cli import json_output, report, run_command
from crystalrl.config import CONFIG_DIR
from crystalrl.potentials import EnergyModel, RelaxResult


def relaxation_frame(results: Sequence[RelaxResult], names: Sequence[str]) -> pd.DataFrame:
    """One row per structure: energies before and after (eV/atom), steps, convergence,
    mean displacement (Å), seconds and why a relaxation failed."""
    return pd.DataFrame(
        {
            "name": list(names),
            "formula": [
                r.structure.composition.reduced_formula if r.structure else "" for r in results
            ],
            "energy_before": [r.initial_energy_per_atom for r in results],
            "energy_after": [r.energy_per_atom for r in results],
            "steps": [r.steps for r in results],
            "converged": [r.converged for r in results],
            "displacement": [r.displacement for r in results],
            "seconds": [round(r.seconds, 3) for r in results],
            "error": [r.error or "" for r in results],
        }
    )


def relaxation_summary(results: Sequence[RelaxResult]) -> dict[str, Any]:
    """Counts and means over the structures that relaxed (failed ones only count)."""
    done = [r for r in results if not r.failed]

    def mean(values: list[float]) -> float | None:
        arr = np.asarray(values, dtype=np.float64)
        arr = arr[np.isfinite(arr)]
        return float(arr.mean()) if arr.size else None

    seconds = sum(r.seconds for r in results)
    return {
        "failed": len(results) - len(done),
        "not_converged": sum(not r.converged for r in done),
        "mean_energy_change": mean([r.energy_per_atom - r.initial_energy_per_atom for r in done]),
        "mean_displacement": mean([r.displacement for r in done]),
        "mean_steps": mean([r.steps for r in done]),
        "seconds_per_structure": seconds / len(results) if results else None,
    }


def relax_generated(
    structures: Sequence, model: EnergyModel, show_progress: bool, **options: Any
) -> list[RelaxResult]:
    """:func:`crystalrl.potentials.relax` of generated structures, with a progress bar:
    collapsed cells are failed records without reaching the potential, which can spend
    minutes and gigabytes on one."""
    from crystalrl.metrics.validity import cell_collapsed
    from crystalrl.potentials import relax
    from crystalrl.reference.progress import progress_bar

    with progress_bar(show_progress, f"relaxing ({model.key})", len(structures)) as advance:
        return relax(structures, model, progress=advance, skip=cell_collapsed, **options)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="relax")
def main(cfg: DictConfig) -> dict:
    from crystalrl.evaluate import potential_spec
    from crystalrl.metrics.structures_io import read_structures
    from crystalrl.potentials import make_energy_model
    from crystalrl.sample import write_structures

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
