"""Elemental reference energies from the potential: relaxed one-element prototypes.

A hull needs an entry for every element it contains; an element with no pure-element
reference structure gets the lowest energy of its relaxed simple prototypes
(see :mod:`crystalrl.reference.hull`).
"""

from __future__ import annotations

import math

import numpy as np

from crystalrl.potentials import EnergyModel, relax

PROTOTYPES = ("fcc", "bcc", "hcp", "sc", "diamond")


def elemental_prototypes(symbol: str) -> dict:
    """Simple one-element crystals of ``symbol`` with a plausible nearest-neighbour distance."""
    from ase.build import bulk
    from pymatgen.core import Element
    from pymatgen.io.ase import AseAtomsAdaptor

    el = Element(symbol)
    radius = None
    for attr in ("metallic_radius", "atomic_radius", "atomic_radius_calculated"):
        try:
            value = getattr(el, attr)
        except (AttributeError, ValueError, KeyError):  # pymatgen has no such data for it
            value = None
        if value is not None and float(value) > 0:
            radius = float(value)
            break
    d = 2.0 * (radius or 1.4)
    cells = {
        "fcc": bulk(symbol, "fcc", a=d * math.sqrt(2)),
        "bcc": bulk(symbol, "bcc", a=2 * d / math.sqrt(3)),
        "hcp": bulk(symbol, "hcp", a=d, c=d * math.sqrt(8 / 3)),
        "sc": bulk(symbol, "sc", a=d),
        "diamond": bulk(symbol, "diamond", a=4 * d / math.sqrt(3)),
    }
    return {name: AseAtomsAdaptor.get_structure(atoms) for name, atoms in cells.items()}


def prototype_energy(
    symbol: str, energy_model: EnergyModel, steps: int = 300, fmax: float = 0.05
) -> tuple[float, str]:
    """Lowest energy per atom over relaxed prototypes of an element, and which prototype.

    A prototype whose relaxation fails (or a potential without forces) keeps its built
    geometry; the energy is the single point of the relaxed cell, computed as the
    reference energies are."""
    prototypes = elemental_prototypes(symbol)
    names, structures = list(prototypes), list(prototypes.values())
    if steps > 0:
        try:
            done = relax(structures, energy_model, fmax=fmax, max_steps=steps)
        except NotImplementedError:  # no ASE calculator: the prototypes as built
            done = []
        for i, result in enumerate(done):
            if not result.failed:
                structures[i] = result.structure
    best, best_name = math.nan, ""
    for name, e in zip(names, energy_model.energies(structures), strict=True):
        if np.isfinite(e) and not (e >= best):
            best, best_name = float(e), name
    return best, best_name
