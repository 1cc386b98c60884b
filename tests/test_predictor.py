from __future__ import annotations

import pandas as pd
import pytest
import torch

from crystalrl.data.datamodule import CrystalDataModule
from crystalrl.predictor import PredictorModule, load_predictor


@pytest.fixture(scope="module")
def bandgap_dm(datasets, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bandgap")
    for split in ("train", "val", "test"):
        pd.read_csv(datasets / "mp_bandgap" / f"{split}.csv.gz", nrows=96).to_csv(
            folder / f"{split}.csv", index=False
        )
    return CrystalDataModule(str(folder), batch_size=32, target_names=["band_gap"])


def test_predictor_learns_and_predicts_in_target_units(bandgap_dm, tiny_vae_ckpt, tmp_path):
    torch.manual_seed(0)
    gaps = bandgap_dm.split("train").properties["band_gap"]
    module = PredictorModule(
        vae_ckpt_path=tiny_vae_ckpt,
        target_names=["band_gap"],
        target_mean=[float(gaps.mean())],
        target_std=[float(gaps.std())],
        hidden_size=32,
        num_layers=1,
        num_heads=2,
        dropout=0.0,
    )
    frozen = [p.clone() for p in module.vae.parameters()]
    batch = next(iter(bandgap_dm.train_dataloader()))
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=3e-3)
    module.train()
    losses = []
    for _ in range(60):
        loss = torch.nn.functional.l1_loss(module(batch), module._targets(batch))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert all(torch.equal(a, b) for a, b in zip(frozen, module.vae.parameters(), strict=True))
    pred = module.predict(batch)["band_gap"]
    assert pred.shape == (32,)
    # in eV: the error of a fitted batch is small against the spread of the gaps
    assert (pred - batch.properties["band_gap"]).abs().mean() < 0.5 * gaps.std()
    path = tmp_path / "p.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    again = load_predictor(str(path))
    torch.testing.assert_close(
        again.predict(batch)["band_gap"], module.eval().predict(batch)["band_gap"]
    )


def test_missing_target_is_a_clear_error(bandgap_dm, tiny_vae_ckpt):
    module = PredictorModule(
        vae_ckpt_path=tiny_vae_ckpt,
        target_names=["formation_energy"],
        hidden_size=16,
        num_layers=1,
        num_heads=2,
    )
    batch = next(iter(bandgap_dm.train_dataloader()))
    with pytest.raises(KeyError, match="formation_energy"):
        module._targets(batch)


def test_train_predictor_command_trains_exports_and_tests(
    bandgap_dm, tiny_vae_ckpt, tmp_path, hydra_compose, capsys
):
    """The command in this process for two steps: the target's mean and spread are measured
    on the training split and stored, the export loads, and the test split is scored."""
    import numpy as np

    from crystalrl.train_predictor import main

    export = tmp_path / "predictor.ckpt"
    cfg = hydra_compose(
        "train_predictor",
        [
            f"data.data_dir={bandgap_dm.data_dir}",
            "data.target_names=[band_gap]",
            "data.batch_size=32",
            f"predictor_module.vae_ckpt_path={tiny_vae_ckpt}",
            "predictor_module.hidden_size=32",
            "predictor_module.num_layers=1",
            "predictor_module.num_heads=2",
            "trainer.max_steps=2",
            "trainer.max_epochs=-1",
            "logger=csv",
            f"paths.log_dir={tmp_path}",
            "callbacks.progress_bar=null",
            f"export_path={export}",
        ],
    )
    result = main(cfg)
    assert result["global_step"] == 2
    gaps = bandgap_dm.split("train").properties["band_gap"]
    loaded = load_predictor(str(export))
    assert loaded.hparams.target_mean == pytest.approx([float(np.mean(gaps))], rel=1e-5)
    assert loaded.hparams.target_std == pytest.approx([float(np.std(gaps))], rel=1e-5)
    assert result["test"] and all(np.isfinite(v) for v in result["test"].values())
    assert capsys.readouterr().out.count("Test: {") == 1
