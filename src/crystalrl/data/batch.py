"""Dense padded batches of crystals and their exact conversion to pymatgen and ASE.

At most a few tens of atoms per cell make a padded (B, N) layout cheaper and simpler than
a graph library: every network in the pipeline is a transformer over a set of atoms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields

import numpy as np
import torch


@dataclass
class CrystalBatch:
    """A batch of B crystals padded to N atoms.

    ``atom_types`` holds atomic numbers with 0 at padded positions; ``lengths`` are in Å
    and ``angles`` in degrees (see :meth:`scaled_lengths` and :meth:`angles_rad` for the
    network-facing forms). ``properties`` maps a target name to a (B,) tensor.
    """

    atom_types: torch.Tensor  # (B, N) long
    frac_coords: torch.Tensor  # (B, N, 3)
    mask: torch.Tensor  # (B, N) bool, True at real atoms
    num_atoms: torch.Tensor  # (B,) long
    lengths: torch.Tensor  # (B, 3) Å
    angles: torch.Tensor  # (B, 3) degrees
    properties: dict[str, torch.Tensor] = field(default_factory=dict)
    #: (B,) row of each crystal in its dataset split, where a loader made the batch: lets a
    #: model look up what it precomputed per crystal (the LDM's latents)
    index: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.atom_types.shape[0]

    def to(self, device: torch.device | str) -> CrystalBatch:
        kwargs = {f.name: getattr(self, f.name) for f in fields(self)}
        kwargs = {k: v.to(device) if torch.is_tensor(v) else v for k, v in kwargs.items()}
        kwargs["properties"] = {k: v.to(device) for k, v in self.properties.items()}
        return CrystalBatch(**kwargs)

    def scaled_lengths(self) -> torch.Tensor:
        """Lengths divided by ``num_atoms**(1/3)``: nearly size-independent for the networks."""
        return self.lengths / self.num_atoms.to(self.lengths.dtype).unsqueeze(-1) ** (1 / 3)

    def angles_rad(self) -> torch.Tensor:
        return torch.deg2rad(self.angles)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_arrays(
        cls,
        atom_types: Sequence[np.ndarray],
        frac_coords: Sequence[np.ndarray],
        lengths: np.ndarray,
        angles: np.ndarray,
        properties: dict[str, np.ndarray] | None = None,
        max_atoms: int | None = None,
        dtype: torch.dtype = torch.float64,
        index: Sequence[int] | None = None,
    ) -> CrystalBatch:
        """Pad per-structure arrays into one batch (the collate function of the loaders)."""
        num_atoms = np.array([len(t) for t in atom_types], dtype=np.int64)
        n = int(max_atoms or (num_atoms.max() if len(num_atoms) else 0))
        b = len(atom_types)
        types = np.zeros((b, n), dtype=np.int64)
        coords = np.zeros((b, n, 3), dtype=np.float64)
        for i, (t, x) in enumerate(zip(atom_types, frac_coords, strict=True)):
            types[i, : len(t)] = t
            coords[i, : len(t)] = x
        types_t = torch.from_numpy(types)
        return cls(
            atom_types=types_t,
            frac_coords=torch.from_numpy(coords).to(dtype),
            mask=types_t > 0,
            num_atoms=torch.from_numpy(num_atoms),
            lengths=torch.as_tensor(np.asarray(lengths), dtype=dtype).reshape(b, 3),
            angles=torch.as_tensor(np.asarray(angles), dtype=dtype).reshape(b, 3),
            properties={
                k: torch.as_tensor(np.asarray(v), dtype=dtype)
                for k, v in (properties or {}).items()
            },
            index=None if index is None else torch.as_tensor(np.asarray(index), dtype=torch.long),
        )

    @classmethod
    def from_structures(
        cls, structures: Sequence, dtype: torch.dtype = torch.float64
    ) -> CrystalBatch:
        """A batch from pymatgen ``Structure`` or ASE ``Atoms`` objects."""
        structures = [_as_pymatgen(s) for s in structures]
        return cls.from_arrays(
            [np.array([site.specie.Z for site in s]) for s in structures],
            [s.frac_coords for s in structures],
            np.array([s.lattice.abc for s in structures]).reshape(-1, 3),
            np.array([s.lattice.angles for s in structures]).reshape(-1, 3),
            dtype=dtype,
        )

    # ------------------------------------------------------------------ conversions
    def to_structures(self, min_volume: float = 1e-3) -> list:
        """pymatgen structures; a lattice that cannot exist (or is flat) becomes ``None``."""
        from pymatgen.core import Lattice, Structure

        types = self.atom_types.detach().cpu().numpy()
        coords = self.frac_coords.detach().cpu().double().numpy()
        lengths = self.lengths.detach().cpu().double().numpy()
        angles = self.angles.detach().cpu().double().numpy()
        mask = self.mask.detach().cpu().numpy()
        out = []
        for i in range(len(self)):
            try:
                lattice = Lattice.from_parameters(*lengths[i], *angles[i])
                if not np.isfinite(lattice.volume) or lattice.volume < min_volume:
                    raise ValueError("degenerate lattice")
                out.append(Structure(lattice, types[i][mask[i]].tolist(), coords[i][mask[i]]))
            except Exception:  # impossible angles or a flat cell from a generator
                out.append(None)
        return out

    def to_atoms(self) -> list:
        """ASE ``Atoms`` objects (``None`` where the lattice is invalid)."""
        from pymatgen.io.ase import AseAtomsAdaptor

        return [None if s is None else AseAtomsAdaptor.get_atoms(s) for s in self.to_structures()]


def _as_pymatgen(obj):
    from pymatgen.core import Structure

    if isinstance(obj, Structure):
        return obj
    from pymatgen.io.ase import AseAtomsAdaptor

    return AseAtomsAdaptor.get_structure(obj)


def niggli_or_keep(structure):
    """The Niggli-reduced cell, as the training data were read; a degenerate cell as it is.

    An unreduced cell of the same crystal lands elsewhere in the VAE's latent space, so
    whatever encodes a generated structure reduces it first.
    """
    structure = _as_pymatgen(structure)
    try:
        return structure.get_reduced_structure()
    except Exception:  # a degenerate cell: use it as it is
        return structure
