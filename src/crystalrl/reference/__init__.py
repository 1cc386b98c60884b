"""Reference datasets and what derives from them: structures by formula, energies, hull, features.

Imports data, vae (features), checkpoint_registry and potentials; never metrics or rewards,
which sit above it.
"""

from crystalrl.reference.datasets import (
    REFERENCE_DATASETS,
    ReferenceDatasetError,
    resolve_reference_dir,
)
from crystalrl.reference.reference import Reference, get_reference

__all__ = [
    "REFERENCE_DATASETS",
    "Reference",
    "ReferenceDatasetError",
    "get_reference",
    "resolve_reference_dir",
]
