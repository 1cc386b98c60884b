"""The on-disk cache of reference data: content keys and atomic writes.

Every derived part of a reference (index, energies, hull, VAE features) is stored under
``$CRYSTALRL_CACHE_DIR/reference/`` with a key made from the content of its inputs, so a
changed input is a rebuild and an unchanged one never is. Files are written to a temporary
name and renamed, so a killed build never leaves a half-written file that a later run
would trust.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from crystalrl.data.parse import default_cache_dir


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder reference parts are cached in (below the parse cache by default)."""
    return Path(cache_dir or default_cache_dir()) / "reference"


def digest(*parts: Any) -> str:
    """A short content key of the parts' string forms (file hashes, options, versions)."""
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:20]


def weights_key(module: Any) -> str:
    """A content hash of a torch module's weights (float32), to key cached features.

    Hashing the loaded weights rather than a file means a VAE handed over in memory (as the
    RL stage does) and the checkpoint file it was loaded from share one key.
    """
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        t = tensor.detach().cpu()
        t = t.float() if t.is_floating_point() else t
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def load_pickle(path: Path) -> Any:
    with open(path, "rb") as fh:
        return pickle.load(fh)


def save_pickle(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)
