"""Relax generated structures and record what the relaxation did to each.

Generated crystals sit near, not at, a minimum of the potential, so their single-point
energies overstate how far above the hull they are; MatterGen-style evaluations relax
them first. ``crystalrl.relax`` writes the relaxed structures and this record;
``crystalrl.evaluate relax=true`` judges them beside the single-point ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

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
    from crystalrl.progress_bar import progress_bar

    with progress_bar(show_progress, f"relaxing ({model.key})", len(structures)) as advance:
        return relax(structures, model, progress=advance, skip=cell_collapsed, **options)
