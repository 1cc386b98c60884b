"""What a user meets when things go wrong: every error names the config key, the value it
was given and what would have been accepted; bad inputs are counted and explained."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from crystalrl.checkpoint_registry import (
    ChecksumMismatchError,
    UnknownCheckpointError,
    UnreadableCheckpointError,
    sha256_of,
)

EMT = {"_target_": "ase.calculators.emt.EMT"}


# ---------------------------------------------------------------------- checkpoints
def test_missing_ldm_ckpt_path_names_the_key_the_path_and_the_known_names(
    tmp_path, hydra_compose, monkeypatch
):
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    from crystalrl.rl.module import RLModule

    missing = tmp_path / "ckpts" / "my_ldm.ckpt"
    with pytest.raises(UnknownCheckpointError) as info:
        RLModule(ldm_ckpt_path=str(missing))
    message = str(info.value)
    assert "rl_module.ldm_ckpt_path" in message and str(missing) in message
    assert "mp_20_ldm_base" in message and ".ckpt file" in message
    assert isinstance(info.value, FileNotFoundError)  # what torch.load raised before

    # what the command prints: Hydra wraps the error and must still show key and path
    monkeypatch.setenv("CRYSTALRL_DATA_DIR", str(tmp_path))
    cfg = hydra_compose(
        "train_rl", ["experiment=mp_20/rl_dng", f"rl_module.ldm_ckpt_path={missing}"]
    )
    with pytest.raises(InstantiationException) as wrapped:
        instantiate(cfg.rl_module, _convert_="all")
    assert "rl_module.ldm_ckpt_path" in str(wrapped.value) and str(missing) in str(wrapped.value)


def test_missing_vae_ckpt_path_names_the_key_and_the_path(tmp_path):
    from crystalrl.config_values import load_vae_or_none
    from crystalrl.ldm.module import LDMModule

    missing = tmp_path / "vae.ckpt"
    with pytest.raises(UnknownCheckpointError, match="ldm_module.vae_ckpt_path") as info:
        LDMModule(vae_ckpt_path=str(missing))
    assert str(missing) in str(info.value)
    # evaluate: a configured VAE that does not load stops it, and says how to skip instead
    with pytest.raises(FileNotFoundError) as info:
        load_vae_or_none(str(missing))
    assert "vae_ckpt_path=" in str(info.value) and str(missing) in str(info.value)
    assert "vae_ckpt_path=null" in str(info.value)


def test_unknown_registry_name_lists_what_is_registered():
    from crystalrl.ldm.module import load_ldm

    with pytest.raises(UnknownCheckpointError) as info:
        load_ldm("mp_20_ldm", key="ldm_ckpt_path")
    message = str(info.value)
    assert "ldm_ckpt_path='mp_20_ldm'" in message
    assert "Known checkpoints" in message and "mp_20_ldm_base" in message


def test_unknown_predictor_names_its_reward_component_key(tmp_path):
    from crystalrl.rewards.components import PredictorReward

    missing = tmp_path / "predictor.ckpt"
    reward = PredictorReward(str(missing), "band_gap", name="band_gap")
    with pytest.raises(UnknownCheckpointError) as info:
        reward.setup()
    assert "rl_module.reward_fn.components.band_gap.predictor" in str(info.value)
    assert str(missing) in str(info.value) and "mp_bandgap_predictor" in str(info.value)


def test_registry_entry_with_wrong_sha256_is_refused_naming_the_file(
    tmp_path, tiny_vae_ckpt, monkeypatch
):
    from crystalrl.vae.module import load_vae

    file = tmp_path / "tiny.ckpt"
    file.write_bytes(Path(tiny_vae_ckpt).read_bytes())
    registry = tmp_path / "registry.yaml"
    entry = {"file": "tiny.ckpt", "sha256": sha256_of(file)}
    registry.write_text(yaml.safe_dump({"checkpoints": {"tiny": entry}}))
    monkeypatch.setenv("CRYSTALRL_REGISTRY", str(registry))
    assert sum(p.numel() for p in load_vae("tiny").parameters()) > 0
    with open(file, "ab") as fh:  # one byte more: not the registered weights
        fh.write(b"\0")
    with pytest.raises(ChecksumMismatchError) as info:
        load_vae("tiny", key="vae_ckpt_path")
    message = str(info.value)
    assert "vae_ckpt_path='tiny'" in message and str(file) in message and "sha256" in message
    assert isinstance(info.value, ValueError)


def test_checkpoints_load_without_unpickling_arbitrary_objects(tmp_path, tiny_vae_ckpt):
    """weights_only=True: a file holding a Python object of any other class is refused."""
    from crystalrl.vae.module import load_vae

    ckpt = torch.load(tiny_vae_ckpt, weights_only=True)
    ckpt["hyper_parameters"]["extra"] = _NotData()
    path = tmp_path / "pickled.ckpt"
    torch.save(ckpt, path)
    with pytest.raises(UnreadableCheckpointError) as info:
        load_vae(str(path), key="init_weights")
    assert "init_weights=" in str(info.value) and str(path) in str(info.value)


class _NotData:
    """Stands for an object a checkpoint should not hold."""


# ---------------------------------------------------------------------- data and outputs
def test_missing_data_dir_names_the_key_and_the_folder(tmp_path):
    from crystalrl.data.datamodule import CrystalDataModule
    from crystalrl.data.parse import DatasetError

    missing = tmp_path / "datasets" / "mp_20"
    with pytest.raises(DatasetError) as info:
        CrystalDataModule(str(missing)).split("train")
    message = str(info.value)
    assert "data.data_dir" in message and str(missing) in message
    assert "CRYSTALRL_DATA_DIR" in message and "train/val/test" in message


def test_missing_structure_path_names_the_key_and_what_it_may_be(tmp_path):
    from crystalrl.metrics.structures_io import read_structure_input

    missing = tmp_path / "samples.json.gz"
    with pytest.raises(FileNotFoundError) as info:
        read_structure_input(missing)
    message = str(info.value)
    assert "structure_path=" in message and str(missing) in message
    assert "folder of .cif files" in message and "'cif' column" in message


def test_export_path_in_an_uncreatable_folder_stops_training_before_it_starts(tmp_path):
    from omegaconf import OmegaConf

    from crystalrl.training import fit

    blocker = tmp_path / "runs"
    blocker.write_text("a file where a folder should go")
    dst = blocker / "rl" / "model.ckpt"
    cfg = OmegaConf.create({"export_path": str(dst)})
    with pytest.raises(OSError) as info:  # no trainer, module or data needed: checked first
        fit(cfg, module=None, datamodule=None, export=lambda src, dst: dst)
    assert "export_path=" in str(info.value) and str(dst) in str(info.value)


def test_bad_reference_name_names_the_key_and_the_known_names(tmp_path):
    from crystalrl.reference import Reference, ReferenceDatasetError

    with pytest.raises(ReferenceDatasetError) as info:
        Reference("mp20", data_dir=str(tmp_path))
    message = str(info.value)
    assert "reference_dataset='mp20'" in message and "mp-20" in message
    assert "perov-5" in message


# ---------------------------------------------------------------------- bad inputs
@pytest.fixture
def csv_with_bad_rows(perov_small, tmp_path):
    frame = pd.read_csv(perov_small, nrows=8)
    frame.loc[3, "cif"] = "data_broken\n_cell_length_a 4.0\n"
    frame.loc[6, "cif"] = np.nan
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    return path


def test_evaluate_counts_unparseable_rows_in_one_warning_and_a_csv_column(
    csv_with_bad_rows, tmp_path, hydra_compose
):
    from crystalrl.evaluate import main

    out = tmp_path / "metrics.csv"
    cfg = hydra_compose(
        "evaluate",
        [
            f"structure_path={csv_with_bad_rows}",
            "reference_dataset=null",
            "metrics=[atomic_density,structure_validity]",
            f"output_file={out}",
            f"paths.log_dir={tmp_path / 'logs'}",
        ],
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = main(cfg)
    skipped = [str(w.message) for w in caught if "skipped" in str(w.message)]
    assert len(skipped) == 1
    assert "2 of 8 structures skipped" in skipped[0]
    assert "1 unparseable CIF (row 3)" in skipped[0] and "1 empty cif (row 6)" in skipped[0]
    # failed inputs still count as invalid structures in the rates
    assert summary["num_structures"] == 8 and summary["num_valid_structures"] == 6
    assert summary["avg_structure_validity"] == pytest.approx(6 / 8)
    frame = pd.read_csv(out, keep_default_na=False)
    assert list(frame.columns[:2]) == ["name", "skip_reason"]
    assert frame["skip_reason"][3].startswith("unparseable CIF: ")
    assert frame["skip_reason"][6] == "empty cif"
    assert (frame["skip_reason"].drop([3, 6]) == "").all()


def test_energy_failures_are_counted_not_hidden(perov_small, tmp_path, capsys):
    """EMT has no parameters for Fe: its energy is NaN and the summary says so."""
    from pymatgen.core import Lattice, Structure

    from crystalrl.evaluation import print_summary
    from crystalrl.metrics.metrics import Metrics
    from crystalrl.reference import Reference

    folder = tmp_path / "ref"
    folder.mkdir()
    (folder / "train.csv").write_bytes(perov_small.read_bytes())
    reference = Reference(folder, potential=EMT, progress=False)
    fcc = [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    cu = Structure(Lattice.cubic(3.61), ["Cu"] * 4, fcc)
    fe = Structure(Lattice.cubic(2.87), ["Fe", "Fe"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    m = Metrics(["energy"], reference=reference, num_workers=1)
    energy = m.compute([cu, fe, None])["energy"]
    assert np.isfinite(energy[0]) and np.isnan(energy[1:]).all()
    summary = m.summary()
    assert summary["energy_failed"] == 1  # Fe; the failed decode is not an energy failure
    print_summary(summary, "test")
    assert "energy failed" in capsys.readouterr().out


def test_a_bug_in_a_potential_is_not_mistaken_for_a_bad_structure():
    from ase.calculators.calculator import Calculator
    from pymatgen.core import Lattice, Structure

    from crystalrl.potentials import ASEEnergy

    class Broken(Calculator):
        implemented_properties = ("energy",)

        def __init__(self, error):
            super().__init__()
            self.error = error

        def calculate(self, atoms=None, properties=("energy",), system_changes=()):
            raise self.error

    nacl = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    bad_cell = ASEEnergy(Broken(ValueError("atoms too close")), key="broken")
    assert np.isnan(bad_cell.energies([nacl])).all()
    with pytest.raises(TypeError):
        ASEEnergy(Broken(TypeError("a bug")), key="bug").energies([nacl])
