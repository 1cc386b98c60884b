"""Shared fixtures: the real datasets (small slices of them) and a private parse cache."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    return Path(os.environ.get("CRYSTALRL_DATA_DIR", ROOT.parent / "shared" / "datasets"))


@pytest.fixture
def hydra_compose():
    """Compose a command's config as the command would, with a clean Hydra state."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from crystalrl.config import CONFIG_DIR

    GlobalHydra.instance().clear()

    def _compose(name: str, overrides: list[str]):
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            return compose(config_name=name, overrides=overrides)

    yield _compose
    GlobalHydra.instance().clear()


@pytest.fixture(scope="session")
def datasets() -> Path:
    """The datasets folder; only tests that read data ask for it (and fail without it)."""
    path = data_dir()
    if not (path / "perov_5").is_dir():
        pytest.fail(f"datasets not found at {path}; set CRYSTALRL_DATA_DIR")
    return path


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Tests parse into their own cache so they exercise parsing, not a user's cache."""
    cache = tmp_path_factory.mktemp("cache")
    old = os.environ.get("CRYSTALRL_CACHE_DIR")
    os.environ["CRYSTALRL_CACHE_DIR"] = str(cache)
    os.environ.setdefault("CRYSTALRL_DATA_DIR", str(data_dir()))
    yield cache
    if old is None:
        os.environ.pop("CRYSTALRL_CACHE_DIR", None)
    else:
        os.environ["CRYSTALRL_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def perov_small(datasets, tmp_path_factory):
    """The first 64 rows of perov_5 val as a CSV file of its own (parses in a second)."""
    import pandas as pd

    frame = pd.read_csv(datasets / "perov_5" / "val.csv.gz", nrows=64)
    path = tmp_path_factory.mktemp("perov") / "small.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def perov_small_dir(perov_small, tmp_path_factory) -> Path:
    """A dataset folder whose three splits are :func:`perov_small`: a command that reads a
    whole dataset parses it in a second rather than the half minute of perov_5's."""
    import shutil

    folder = tmp_path_factory.mktemp("perov_small")
    for split in ("train", "val", "test"):
        shutil.copy(perov_small, folder / f"{split}.csv")
    return folder


@pytest.fixture(scope="session")
def perov_batch(perov_small):
    """The 64 perov_5 structures as one float32 batch."""
    from crystalrl.data.datamodule import CrystalDataset, collate
    from crystalrl.data.parse import read_split

    ds = CrystalDataset(read_split(perov_small))
    return collate([ds[i] for i in range(len(ds))])


@pytest.fixture(scope="session")
def tiny_vae_ckpt(tmp_path_factory):
    """An untrained small VAE saved in the exported-checkpoint format."""
    import torch

    from crystalrl.vae.module import VAEModule

    torch.manual_seed(0)
    vae = VAEModule(
        model=dict(d_model=32, encoder_layers=1, decoder_layers=1, nhead=2),
        num_atoms_distribution=[0, 0, 0, 0.5, 0, 0.5],
    )
    path = tmp_path_factory.mktemp("vae") / "tiny_vae.ckpt"
    torch.save({"state_dict": vae.state_dict(), "hyper_parameters": dict(vae.hparams)}, path)
    return str(path)


#: ASE's EMT knows these elements: the MP-20 rows made of them form a reference EMT can judge.
EMT_ELEMENTS = {"Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt"}
EMT = {"_target_": "ase.calculators.emt.EMT"}
#: EMT is not CHGNet: its energies cannot be anchored on DFT, so the hull is its own
EMT_HULL = {"kind": "potential", "relax_steps": 20}


@pytest.fixture(scope="session")
def emt_dataset(datasets, tmp_path_factory) -> Path:
    """The MP-20 rows made only of EMT's elements (about 100), in CDVAE layout."""
    import pandas as pd

    folder = tmp_path_factory.mktemp("emt_mp20")
    for split in ("train", "val", "test"):
        frame = pd.read_csv(datasets / "mp_20" / f"{split}.csv.gz")
        keep = frame["elements"].map(lambda e: set(ast.literal_eval(e)) <= EMT_ELEMENTS)
        frame[keep].to_csv(folder / f"{split}.csv", index=False)
    return folder


@pytest.fixture(scope="session")
def emt_reference(emt_dataset):
    """A reference over :func:`emt_dataset` with EMT energies and hull (seconds to build)."""
    from crystalrl.reference import Reference

    return Reference(emt_dataset, potential=EMT, hull=EMT_HULL, progress=False)


@pytest.fixture(scope="session")
def emt_val(emt_dataset):
    """The val rows of :func:`emt_dataset` as structures (read once: tests copy before changing)."""
    from crystalrl.metrics.structures_io import read_structures

    structures, names = read_structures(emt_dataset / "val.csv")
    return structures


@pytest.fixture(scope="session")
def tiny_vae_path(tmp_path_factory) -> Path:
    """An untrained small VAE without a num-atoms distribution: enough for diversity features."""
    import torch

    from crystalrl.vae.module import VAEModule

    torch.manual_seed(0)
    m = VAEModule(model=dict(d_model=32, encoder_layers=1, decoder_layers=1, nhead=2))
    path = tmp_path_factory.mktemp("vae") / "tiny.ckpt"
    torch.save({"state_dict": m.state_dict(), "hyper_parameters": dict(m.hparams)}, path)
    return path
