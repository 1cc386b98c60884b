"""Torch datasets and the Lightning data module over parsed splits."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from crystalrl.data.batch import CrystalBatch
from crystalrl.data.parse import ParsedSplit, find_split_file, read_split


class CrystalDataset(Dataset):
    """Index access to one :class:`ParsedSplit`; items are collated by :func:`collate`."""

    def __init__(self, split: ParsedSplit, target_names: list[str] | None = None):
        self.split = split
        self.offsets = split.offsets
        self.target_names = list(target_names or [])
        missing = [t for t in self.target_names if t not in split.properties]
        if missing:
            raise KeyError(
                f"{split.source}: no column {missing} for property targets "
                f"(numeric columns: {sorted(split.properties)})"
            )

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> dict:
        s = self.split
        sl = slice(self.offsets[i], self.offsets[i + 1])
        return {
            "index": i,
            "atom_types": s.atom_types[sl],
            "frac_coords": s.frac_coords[sl],
            "lengths": s.lengths[i],
            "angles": s.angles[i],
            "properties": {t: s.properties[t][i] for t in self.target_names},
        }


def collate(items: list[dict], dtype: torch.dtype = torch.float32) -> CrystalBatch:
    names = items[0]["properties"].keys() if items else []
    return CrystalBatch.from_arrays(
        [it["atom_types"] for it in items],
        [it["frac_coords"] for it in items],
        np.stack([it["lengths"] for it in items]),
        np.stack([it["angles"] for it in items]),
        properties={n: np.array([it["properties"][n] for it in items]) for n in names},
        dtype=dtype,
        index=[it["index"] for it in items] if items and "index" in items[0] else None,
    )


def num_atoms_distribution(split: ParsedSplit, max_atoms: int) -> list[float]:
    """Probability of each atom count 0..max_atoms in a split; stored with every model."""
    counts = np.bincount(split.num_atoms, minlength=max_atoms + 1)[: max_atoms + 1]
    return (counts / max(counts.sum(), 1)).tolist()


class CrystalDataModule(L.LightningDataModule):
    """Loads a CDVAE-layout dataset folder; splits are parsed lazily and cached on disk."""

    def __init__(
        self,
        data_dir: str,
        batch_size: int = 256,
        eval_batch_size: int | None = None,
        max_atoms: int = 20,
        niggli: bool = True,
        target_names: list[str] | None = None,
        drop_missing_targets: bool = True,
        num_workers: int = 0,
        parse_workers: int | None = None,
        cache_dir: str | None = None,
        limit_train: int | None = None,
        limit_eval: int | None = None,
        dataset_type: str | None = None,
    ):
        super().__init__()
        self.data_dir = Path(data_dir)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.max_atoms = max_atoms
        self.niggli = niggli
        self.target_names = list(target_names or [])
        self.drop_missing_targets = drop_missing_targets
        self.num_workers = num_workers
        self.parse_workers = parse_workers
        self.cache_dir = cache_dir
        self.limits = {"train": limit_train, "val": limit_eval, "test": limit_eval}
        self.dataset_type = dataset_type or self.data_dir.name
        self._splits: dict[str, ParsedSplit] = {}

    def split(self, name: str) -> ParsedSplit:
        if name not in self._splits:
            parsed = read_split(
                find_split_file(self.data_dir, name, key="data.data_dir"),
                max_atoms=self.max_atoms,
                niggli=self.niggli,
                num_workers=self.parse_workers,
                cache_dir=self.cache_dir,
            )
            if self.target_names and self.drop_missing_targets:
                ok = np.all(
                    [
                        np.isfinite(parsed.properties[t])
                        for t in self.target_names
                        if t in parsed.properties
                    ],
                    axis=0,
                )
                if not np.all(ok):
                    parsed = parsed.subset(np.flatnonzero(ok))
            limit = self.limits.get(name)
            if limit is not None and limit < len(parsed):
                parsed = parsed.subset(np.arange(limit))
            self._splits[name] = parsed
        return self._splits[name]

    def dataset(self, name: str) -> CrystalDataset:
        return CrystalDataset(self.split(name), self.target_names)

    def num_atoms_distribution(self) -> list[float]:
        return num_atoms_distribution(self.split("train"), self.max_atoms)

    def _loader(self, name: str, shuffle: bool, batch_size: int) -> DataLoader:
        return DataLoader(
            self.dataset(name),
            batch_size=batch_size,
            shuffle=shuffle,
            collate_fn=collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True, self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False, self.eval_batch_size)
