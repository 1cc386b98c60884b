"""The energy model a config names: CHGNet by default, any ``_target_`` otherwise.

Commands pick a potential from the ``configs/potential/`` group (``potential=emt``); a new
file there with a ``_target_`` (an :class:`~crystalrl.potentials.EnergyModel` or any ASE
calculator) adds one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from crystalrl.potentials.ase_energy import ASEEnergy
from crystalrl.potentials.chgnet import CHGNetEnergy
from crystalrl.potentials.energy_model import EnergyModel


def make_energy_model(spec: Any = None) -> EnergyModel:
    """An energy model from a config: ``None`` -> CHGNet; a ``_target_`` mapping -> whatever
    it instantiates (an :class:`EnergyModel`, or an ASE calculator that gets wrapped); an
    object -> itself (wrapped when it is an ASE calculator).

    A mapping that instantiates a calculator is keyed by the mapping itself (its JSON), so
    two configs name one cache only when they describe the same calculator."""
    if spec is None:
        return CHGNetEnergy()
    if isinstance(spec, EnergyModel):
        return spec
    key = None
    if _is_mapping(spec):
        from hydra.utils import instantiate
        from omegaconf import OmegaConf

        plain = OmegaConf.to_container(spec, resolve=True) if not isinstance(spec, dict) else spec
        key = "ase:" + json.dumps(plain, sort_keys=True, default=str)
        spec = instantiate(plain, _convert_="all")
        if isinstance(spec, EnergyModel):
            return spec
    from ase.calculators.calculator import BaseCalculator

    if isinstance(spec, BaseCalculator):
        return ASEEnergy(spec, key=key)
    raise TypeError(
        f"cannot use {type(spec).__name__} as a potential: expected an ASE calculator or an "
        "EnergyModel (configure it with _target_)"
    )


def _is_mapping(obj) -> bool:
    if isinstance(obj, Mapping):
        return True
    try:
        from omegaconf import DictConfig

        return isinstance(obj, DictConfig)
    except ImportError:  # pragma: no cover
        return False
