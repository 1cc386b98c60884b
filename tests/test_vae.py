from __future__ import annotations

import torch
from pymatgen.analysis.structure_matcher import StructureMatcher

from crystalrl.checkpoint_io import export_checkpoint, load_module
from crystalrl.vae.features import batch_features, structure_features
from crystalrl.vae.model import vae_loss, wrapped_diff
from crystalrl.vae.module import DEFAULT_LOSS_WEIGHTS, VAEModule, augment, load_vae


def _train(module: VAEModule, batch, steps: int, lr: float = 2e-3) -> list[float]:
    opt = torch.optim.AdamW(module.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        out = module.vae(batch)
        loss = vae_loss(out, batch, DEFAULT_LOSS_WEIGHTS)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_loss_decreases_on_perov_subset(perov_batch):
    torch.manual_seed(0)
    module = VAEModule(model=dict(d_model=64, encoder_layers=2, decoder_layers=2, nhead=4))
    losses = _train(module, perov_batch, 60)
    assert sum(losses[-5:]) / 5 < 0.3 * sum(losses[:5]) / 5


def test_trained_tiny_model_reproduces_a_training_structure(perov_batch, tmp_path):
    torch.manual_seed(0)
    batch = perov_batch
    first = type(batch)(
        **{
            k: getattr(batch, k)[:4]
            for k in ("atom_types", "frac_coords", "mask", "num_atoms", "lengths", "angles")
        }
    )
    module = VAEModule(model=dict(d_model=64, encoder_layers=2, decoder_layers=2, nhead=4))
    _train(module, first, 200, lr=3e-3)
    module.eval()
    # through an exported half-precision checkpoint, as shipped models are
    ckpt = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, ckpt)
    loaded = load_vae(export_checkpoint(str(ckpt), str(tmp_path / "exported.ckpt")))
    rec = loaded.vae.reconstruct(first)
    originals = first.to_structures()
    matcher = StructureMatcher()
    assert rec.atom_types.equal(first.atom_types)
    assert matcher.fit(originals[0], rec.to_structures()[0])


def test_features_have_documented_shapes_and_are_deterministic(perov_batch, tiny_vae_ckpt):
    vae = load_vae(tiny_vae_ckpt)
    vae.train()  # features must not depend on the module's mode
    f1 = batch_features(vae, perov_batch)
    f2 = batch_features(vae, perov_batch)
    assert f1["structure"].shape == (len(perov_batch), 8)
    assert f1["composition"].shape == (len(perov_batch), 32)
    assert torch.equal(f1["structure"], f2["structure"])
    assert torch.equal(f1["composition"], f2["composition"])
    assert vae.training  # the mode is restored
    structs = perov_batch.to_structures()[:10]
    f3 = structure_features(vae, structs, batch_size=3)
    f4 = structure_features(vae, structs, batch_size=10)
    torch.testing.assert_close(f3["structure"], f4["structure"])
    assert f3["composition"].shape == (10, 32)


def test_augmentation_keeps_the_crystal(perov_batch):
    torch.manual_seed(0)
    inp, target = augment(perov_batch, translate=True, permute_axes=True, coord_noise=0.0)
    matcher = StructureMatcher()
    for a, b in zip(perov_batch.to_structures()[:8], target.to_structures()[:8], strict=True):
        assert matcher.fit(a, b)
    assert not torch.equal(inp.frac_coords, perov_batch.frac_coords)


def test_wrapped_coordinate_error_is_periodic():
    a = torch.tensor([0.99, 0.01, 0.5])
    b = torch.tensor([0.01, 0.99, 0.5])
    torch.testing.assert_close(wrapped_diff(a, b), torch.tensor([-0.02, 0.02, 0.0]))


def test_load_module_round_trips_lightning_checkpoint(tiny_vae_ckpt):
    vae = load_module(VAEModule, tiny_vae_ckpt)
    assert vae.vae.latent_dim == 8 and not vae.training


def test_evaluate_vae_command_reconstructs_the_first_structures_of_the_split(
    tiny_vae_ckpt, perov_small_dir, hydra_compose
):
    """The command in this process on a composed config, over two batches; an untrained
    VAE, so the figures are only checked for what they must be whatever the model."""
    from crystalrl.evaluate_vae import main

    args = [
        "data=perov_5",
        f"data.data_dir={perov_small_dir}",
        f"vae_ckpt_path={tiny_vae_ckpt}",
        "split=val",
        "batch_size=5",
        "num_workers=0",
    ]
    result = main(hydra_compose("evaluate_vae", [*args, "num_structures=8"]))
    assert (result["num_structures"], result["split"]) == (8, "val")
    assert result["checkpoint"] == tiny_vae_ckpt
    assert 0 <= result["match_rate"] <= 1
    assert 0 <= result["all_types_correct"] <= result["type_accuracy"] <= 1
    assert result["frac_coord_rmse"] > 0 and result["lengths_mae_angstrom"] > 0
    # asked for more than the split holds: all of it
    assert main(hydra_compose("evaluate_vae", args))["num_structures"] == 64
