"""Any ASE calculator as an energy model, keyed by its class and parameters."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from crystalrl.potentials.energy_model import POTENTIAL_ERRORS, EnergyModel, failed_as_nan


class ASEEnergy(EnergyModel):
    """Any ASE calculator, one structure at a time."""

    def __init__(self, calculator: Any, key: str | None = None):
        self.calculator = calculator
        self.key = key or _calculator_key(calculator)

    def energies(
        self, structures: Sequence, progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        from pymatgen.io.ase import AseAtomsAdaptor

        out = np.full(len(structures), np.nan)
        for i, s in enumerate(structures):
            if s is not None:
                try:
                    atoms = AseAtomsAdaptor.get_atoms(s)
                    atoms.calc = self.calculator
                    out[i] = float(atoms.get_potential_energy()) / len(atoms)
                except POTENTIAL_ERRORS:
                    pass
            if progress:
                progress(1)
        return failed_as_nan(out, highest=math.inf)  # see MAX_ENERGY_PER_ATOM

    def ase_calculator(self) -> Any:
        return self.calculator


def _calculator_key(calculator) -> str:
    cls = type(calculator)
    params = getattr(calculator, "parameters", {}) or {}
    try:
        params = json.dumps(dict(params), sort_keys=True, default=str)
    except TypeError:
        params = repr(params)
    return f"ase:{cls.__module__}.{cls.__qualname__}:{params}"
