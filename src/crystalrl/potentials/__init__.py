"""Machine-learned potentials: single-point energies (CHGNet by default, any ASE calculator)
and the one relaxation routine built on them.

Energy models (:mod:`.energy_model`, :mod:`.chgnet`, :mod:`.ase_energy`,
:mod:`.from_config`) and relaxation (:mod:`.relaxation`, :mod:`.relax_result`) are apart:
relaxation drives an energy model's forces, and nothing of the energy models needs
relaxation. The package sits below ``reference`` and ``metrics`` and imports nothing of
crystalrl but :mod:`crystalrl.gc_pause`. Configs name ``crystalrl.potentials.CHGNetEnergy``.
"""

from crystalrl.potentials.ase_energy import ASEEnergy
from crystalrl.potentials.chgnet import CHGNetEnergy
from crystalrl.potentials.energy_model import POTENTIAL_ERRORS, EnergyModel
from crystalrl.potentials.from_config import make_energy_model
from crystalrl.potentials.relax_result import RelaxResult, mean_displacement
from crystalrl.potentials.relaxation import relax
from crystalrl.potentials.sevennet import SevenNetEnergy

__all__ = [
    "POTENTIAL_ERRORS",
    "ASEEnergy",
    "CHGNetEnergy",
    "EnergyModel",
    "RelaxResult",
    "SevenNetEnergy",
    "make_energy_model",
    "mean_displacement",
    "relax",
]
