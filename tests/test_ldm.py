from __future__ import annotations

import math

import pytest
import torch

from crystalrl.ldm.diffusion import GaussianDiffusion, Sampler, gaussian_kl, gaussian_log_prob
from crystalrl.ldm.exporting import export_ldm
from crystalrl.ldm.module import LDMModule, load_ldm


@pytest.fixture(scope="module")
def ldm(tiny_vae_ckpt) -> LDMModule:
    torch.manual_seed(0)
    return LDMModule(
        vae_ckpt_path=tiny_vae_ckpt, denoiser=dict(hidden_size=64, depth=2, num_heads=4)
    )


def test_diffusion_loss_decreases_on_small_subset(ldm, perov_batch):
    torch.manual_seed(0)
    opt = torch.optim.AdamW(ldm.denoiser.parameters(), lr=1e-3)
    z0 = ldm.encode(perov_batch, sample=False)
    t = torch.randint(0, 1000, (len(perov_batch),))
    noise_seed = torch.Generator().manual_seed(1)
    fixed = torch.randn(z0.shape, generator=noise_seed)

    def eval_loss() -> float:
        with torch.no_grad():
            x_t = ldm.diffusion.q_sample(z0, t, fixed)
            eps = ldm.denoiser(x_t, t, perov_batch.mask)
            return ((eps - fixed) ** 2)[perov_batch.mask].mean().item()

    before = eval_loss()
    for _ in range(80):
        tt = torch.randint(0, 1000, (len(perov_batch),))
        loss = ldm.diffusion.training_losses(ldm.model_fn(), z0, perov_batch.mask, tt)[
            "loss"
        ].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert eval_loss() < 0.8 * before


def test_ddim_eta0_is_deterministic_for_a_fixed_seed(ldm):
    chain = ldm.make_sampler("ddim", 10, eta=0.0)
    counts = torch.tensor([3, 5, 5])
    a, _ = ldm.generate(counts, chain, torch.Generator().manual_seed(7))
    b, _ = ldm.generate(counts, chain, torch.Generator().manual_seed(7))
    assert torch.equal(a.frac_coords, b.frac_coords) and torch.equal(a.atom_types, b.atom_types)
    assert a.num_atoms.tolist() == [3, 5, 5]


@pytest.mark.parametrize("sampler,eta", [("ddim", 1.0), ("ddpm", 1.0)])
def test_trajectory_shapes_and_step_log_density(ldm, sampler, eta):
    steps = 12
    chain = ldm.make_sampler(sampler, steps, eta)
    counts = torch.tensor([2, 5, 4])
    _, traj = ldm.generate(counts, chain, torch.Generator().manual_seed(0), return_trajectory=True)
    b, n, d = 3, 5, ldm.vae.vae.latent_dim
    assert traj["latents"].shape == (b, steps + 1, n, d)
    assert traj["means"].shape == (b, steps, n, d)
    assert traj["stds"].shape == (b, steps, n, d)
    mask = traj["mask"]
    assert (traj["stds"][:, -1] == 0).all() and (traj["stds"][:, :-1] > 0).all()
    for k in range(steps - 1):  # the last step is deterministic (std 0)
        x_next, mean, std = traj["latents"][:, k + 1], traj["means"][:, k], traj["stds"][:, k]
        ours = gaussian_log_prob(x_next, mean, std, mask)
        direct = torch.distributions.Normal(mean, std).log_prob(x_next)
        m = mask.unsqueeze(-1).expand_as(direct)
        expected = torch.stack([direct[i][m[i]].mean() for i in range(b)])
        torch.testing.assert_close(ours, expected)
        # recomputing the step from the recorded latent gives the recorded Gaussian
        i = int(traj["chain_index"][k])
        mean2, std2 = chain.step_distribution(
            ldm.model_fn(use_ema=True), traj["latents"][:, k], i, mask
        )
        torch.testing.assert_close(mean2 * mask.unsqueeze(-1), mean * mask.unsqueeze(-1))


def test_gaussian_kl_matches_torch_and_is_zero_at_the_reference():
    torch.manual_seed(0)
    mean, ref_mean = torch.randn(3, 5, 4), torch.randn(3, 5, 4)
    std, ref_std = torch.rand(3, 1, 1) + 0.1, torch.rand(3, 1, 1) + 0.1
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    ours = gaussian_kl(mean, std, ref_mean, ref_std, mask)
    direct = torch.distributions.kl_divergence(
        torch.distributions.Normal(mean, std.expand_as(mean)),
        torch.distributions.Normal(ref_mean, ref_std.expand_as(mean)),
    )
    m = mask.unsqueeze(-1).expand_as(direct)
    torch.testing.assert_close(ours, torch.stack([direct[i][m[i]].mean() for i in range(3)]))
    # a shared std: the squared mean gap over 2 std^2; the padding atoms never count
    shared = gaussian_kl(mean, std, ref_mean, std, mask)
    gap = ((mean - ref_mean) ** 2 / (2 * std**2))[:, :3].mean(dim=(1, 2))
    assert torch.isclose(shared[0], gap[0])
    assert (gaussian_kl(mean, std, mean.clone(), std, mask) == 0).all()


def test_ddim_eta1_matches_ddpm_posterior_std():
    diff = GaussianDiffusion(1000)
    ddim = Sampler(diff, "ddim", 20, eta=1.0)
    s = ddim.schedule
    for i in range(1, 20):
        ac, ac_prev = float(s.alphas_cumprod[i]), float(s.alphas_cumprod_prev[i])
        sigma = math.sqrt((1 - ac_prev) / (1 - ac) * (1 - ac / ac_prev))
        assert sigma**2 == pytest.approx(float(s.posterior_variance[i]), rel=1e-9)


def test_learned_sigma_loss_and_sampling(tiny_vae_ckpt, perov_batch):
    torch.manual_seed(0)
    m = LDMModule(
        vae_ckpt_path=tiny_vae_ckpt,
        denoiser=dict(hidden_size=32, depth=1, num_heads=2),
        diffusion=dict(learn_sigma=True),
    )
    z0 = m.encode(perov_batch)
    losses = m.diffusion.training_losses(m.model_fn(), z0, perov_batch.mask, torch.arange(len(z0)))
    assert torch.isfinite(losses["vb"]).all()
    assert (losses["vb"][1:] >= 0).all()  # a KL; only t = 0 is a (continuous) likelihood
    _, traj = m.generate(torch.tensor([3, 4]), m.make_sampler("ddpm", 5), return_trajectory=True)
    assert traj["stds"].shape == (2, 5, 4, 8)


def test_exported_checkpoint_loads_and_samples(ldm, tmp_path):
    ckpt = tmp_path / "ldm.ckpt"
    torch.save({"state_dict": ldm.state_dict(), "hyper_parameters": dict(ldm.hparams)}, ckpt)
    out = export_ldm(str(ckpt), str(tmp_path / "small.ckpt"))
    loaded = load_ldm(out)
    assert float(loaded.latent_std) == pytest.approx(float(ldm.latent_std))
    assert not any(k.startswith("ema.") for k in torch.load(out, weights_only=False)["state_dict"])
    counts = loaded.sample_num_atoms(6, torch.Generator().manual_seed(0))
    assert set(counts.tolist()) <= {3, 5}  # the stored distribution of the VAE fixture
    batch, _ = loaded.generate(counts, loaded.make_sampler("ddim", 5, 0.0))
    assert len(batch.to_structures()) == 6


def test_export_command_passes_its_arguments_to_export_ldm(ldm, tmp_path, capsys):
    """``python -m crystalrl.ldm.export SRC DST [--fp32]`` in this process: half precision
    unless told otherwise, and one line naming what it wrote."""
    from crystalrl.ldm.export import main

    ckpt = tmp_path / "ldm.ckpt"
    torch.save({"state_dict": ldm.state_dict(), "hyper_parameters": dict(ldm.hparams)}, ckpt)
    half, full = tmp_path / "half.ckpt", tmp_path / "full.ckpt"
    main([str(ckpt), str(half)])
    main([str(ckpt), str(full), "--fp32"])
    assert capsys.readouterr().out.splitlines() == [f"Wrote {half}", f"Wrote {full}"]
    weights = {p: torch.load(p, weights_only=False)["state_dict"] for p in (half, full)}
    name = next(k for k in weights[full] if k.startswith("denoiser.") and "weight" in k)
    assert (weights[half][name].dtype, weights[full][name].dtype) == (torch.float16, torch.float32)
    torch.testing.assert_close(weights[half][name].float(), weights[full][name], atol=1e-2, rtol=0)
    assert float(load_ldm(str(full)).latent_std) == pytest.approx(float(ldm.latent_std))


def test_export_pairs_the_denoiser_with_a_finetuned_decoder_only(ldm, tiny_vae_ckpt, tmp_path):
    from crystalrl.vae.module import load_vae

    ckpt = tmp_path / "ldm.ckpt"
    torch.save({"state_dict": ldm.state_dict(), "hyper_parameters": dict(ldm.hparams)}, ckpt)
    vae = load_vae(tiny_vae_ckpt)
    with torch.no_grad():
        vae.vae.coord_head.weight.add_(1.0)  # a "fine-tuned" decoder
    decoder = tmp_path / "decoder.ckpt"
    torch.save({"state_dict": vae.state_dict(), "hyper_parameters": dict(vae.hparams)}, decoder)
    loaded = load_ldm(export_ldm(str(ckpt), str(tmp_path / "paired.ckpt"), vae=str(decoder)))
    assert torch.allclose(loaded.vae.vae.coord_head.weight, vae.vae.coord_head.weight, atol=1e-2)
    with torch.no_grad():
        vae.vae.to_posterior.weight.add_(1.0)  # a different latent space
    torch.save({"state_dict": vae.state_dict(), "hyper_parameters": dict(vae.hparams)}, decoder)
    with pytest.raises(ValueError, match="encoder differs"):
        export_ldm(str(ckpt), str(tmp_path / "bad.ckpt"), vae=str(decoder))


def test_train_ldm_starts_from_init_weights(
    tiny_vae_ckpt, perov_small_dir, tmp_path, hydra_compose, capsys
):
    """The command's run in this process on the composed config, on 64 perov_5 rows: what
    is tested is which weights training starts from, not the process or the data."""
    from crystalrl.train_ldm import main

    torch.manual_seed(0)
    src = LDMModule(  # the tokens and pair bias of the default ldm_module config, tiny
        vae_ckpt_path=tiny_vae_ckpt,
        denoiser=dict(hidden_size=32, depth=1, num_heads=2, pair_freqs=4, pair_rbf=16),
        position_scale=1.5,
        lattice_scale=1.0,
        precompute_latents=True,
    )
    torch.nn.init.normal_(src.denoiser.final_layer.linear.weight, std=0.1)
    src.latent_std.fill_(0.37)
    src.ema.module.load_state_dict(src.denoiser.state_dict())
    raw = tmp_path / "src.ckpt"
    torch.save({"state_dict": src.state_dict(), "hyper_parameters": dict(src.hparams)}, raw)
    init = export_ldm(str(raw), str(tmp_path / "init.ckpt"), half=False)
    out = tmp_path / "out.ckpt"
    # num_threads stays null: here it would set the threads of the whole test session
    cfg = hydra_compose(
        "train_ldm",
        [
            "data=perov_5",
            f"data.data_dir={perov_small_dir}",
            "data.limit_train=32",
            "data.limit_eval=16",
            "data.batch_size=16",
            f"ldm_module.vae_ckpt_path={tiny_vae_ckpt}",
            "ldm_module.denoiser.hidden_size=32",
            "ldm_module.denoiser.depth=1",
            "ldm_module.denoiser.num_heads=2",
            "ldm_module.lr=0.0",
            "trainer.max_steps=1",
            "trainer.max_epochs=-1",
            "logger=csv",
            f"paths.log_dir={tmp_path}",
            "callbacks.progress_bar=null",
            f"init_weights={init}",
            f"export_path={out}",
        ],
    )
    main(cfg)
    assert f"Initialised from {init}" in capsys.readouterr().out
    again = load_ldm(str(out))
    assert float(again.latent_std) == pytest.approx(0.37)  # not re-measured on the new data
    w = again.denoiser.final_layer.linear.weight
    assert torch.allclose(w, src.denoiser.final_layer.linear.weight, atol=1e-3)


# ---------------------------------------------------------------------- position channels
@pytest.fixture(scope="module")
def pos_ldm(tiny_vae_ckpt) -> LDMModule:
    torch.manual_seed(0)
    return LDMModule(
        vae_ckpt_path=tiny_vae_ckpt,
        denoiser=dict(hidden_size=32, depth=2, num_heads=2, pair_freqs=3, pair_rbf=8),
        position_scale=1.5,
        lattice_scale=1.0,
        precompute_latents=True,
    )


def test_position_and_lattice_channels_decode_to_the_encoded_crystal(pos_ldm, perov_batch):
    tokens = pos_ldm.encode(perov_batch, sample=False)
    assert tokens.shape[-1] == pos_ldm.vae.vae.latent_dim + 12 == pos_ldm.token_dim
    decoded = pos_ldm.decode(tokens, perov_batch.mask)
    d = decoded.frac_coords.float() - perov_batch.frac_coords
    d = (d - torch.round(d))[perov_batch.mask]
    assert d.abs().max() < 1e-5
    torch.testing.assert_close(decoded.lengths.float(), perov_batch.lengths, rtol=1e-5, atol=0)
    torch.testing.assert_close(decoded.angles.float(), perov_batch.angles, rtol=1e-5, atol=0)
    # the elements still come from the VAE latent alone
    plain = pos_ldm.vae.vae.reconstruct(perov_batch)
    assert torch.equal(decoded.atom_types, plain.atom_types)


def test_pair_bias_distances_are_the_crystals(pos_ldm):
    from pymatgen.core import Lattice, Structure

    from crystalrl.data.batch import CrystalBatch

    s = Structure(Lattice.from_parameters(4.0, 5.0, 6.0, 85, 92, 95), ["Na", "Cl", "Cl"],
                  [[0, 0, 0], [0.4, 0.1, 0.2], [0.8, 0.7, 0.3]])  # fmt: skip
    batch = CrystalBatch.from_structures([s], dtype=torch.float32)
    tokens = pos_ldm.encode(batch, sample=False)
    bias = pos_ldm.denoiser.pair_bias
    delta, _ = bias.offsets(tokens[..., -12:-6])
    rbf = bias.distance_rbf(delta, tokens[..., -6:], batch.mask)
    expected = torch.tensor(s.distance_matrix, dtype=torch.float32).unsqueeze(-1)
    want = torch.exp(-(((expected - bias.rbf_centers) / bias.rbf_width) ** 2))
    torch.testing.assert_close(rbf[0], want, atol=1e-4, rtol=0)


def test_pair_bias_starts_at_zero_and_sees_only_relative_positions(pos_ldm, perov_batch):
    tokens = pos_ldm.encode(perov_batch, sample=False)
    pos, c = tokens[..., -12:-6], torch.randn(len(tokens), 32)
    bias = pos_ldm.denoiser.pair_bias
    assert bias(pos, c, tokens[..., -6:], perov_batch.mask).abs().max() == 0  # plain DiT
    trained = type(bias)(3, 32, 2, 2)
    torch.nn.init.normal_(trained.out[-1].weight)
    shifted = perov_batch.frac_coords + torch.tensor([0.3, -0.2, 0.45])
    from crystalrl.ldm.tokens import position_channels

    moved = position_channels(shifted, 1.5)
    torch.testing.assert_close(trained(pos, c), trained(moved, c), atol=1e-4, rtol=1e-4)
    far = position_channels(perov_batch.frac_coords * 0.5, 1.5)  # other distances
    assert (trained(pos, c) - trained(far, c)).abs().max() > 1e-2


def test_precomputed_latents_are_the_encoders(pos_ldm, perov_small, perov_batch):
    from crystalrl.data.datamodule import CrystalDataset, collate
    from crystalrl.data.parse import read_split

    ds = CrystalDataset(read_split(perov_small))
    cached = pos_ldm.encode_split(ds, batch_size=16)
    tokens = pos_ldm.encode(perov_batch, sample=False)
    d = pos_ldm.content_dim
    torch.testing.assert_close(cached[:, : tokens.shape[1]], tokens[..., :d])
    batch = collate([ds[i] for i in (5, 2, 9)])
    assert batch.index.tolist() == [5, 2, 9]


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_position_token_ldm_learns_on_cached_latents(tiny_vae_ckpt, perov_small):
    from crystalrl.data.datamodule import CrystalDataset, collate
    from crystalrl.data.parse import read_split

    torch.manual_seed(0)
    m = LDMModule(
        vae_ckpt_path=tiny_vae_ckpt,
        denoiser=dict(hidden_size=64, depth=2, num_heads=4, pair_freqs=2),
        position_scale=1.5,
        precompute_latents=True,
    )
    ds = CrystalDataset(read_split(perov_small))
    m._train_latents = m.encode_split(ds)
    batch = collate([ds[i] for i in range(len(ds))])
    opt = torch.optim.AdamW(m.denoiser.parameters(), lr=1e-3)
    t = torch.randint(0, 1000, (len(batch),), generator=torch.Generator().manual_seed(1))
    x0 = m.encode(batch, sample=False)

    def eval_loss() -> float:
        torch.manual_seed(2)
        with torch.no_grad():
            return m.diffusion.training_losses(m.model_fn(), x0, batch.mask, t)["mse"].mean().item()

    before = eval_loss()
    for _ in range(60):
        loss = m.training_step(batch, 0)  # translated positions, cached latents
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert eval_loss() < 0.8 * before


def test_precomputed_latents_without_position_tokens_cannot_translate(tiny_vae_ckpt):
    with pytest.raises(ValueError, match="position_scale"):
        LDMModule(vae_ckpt_path=tiny_vae_ckpt, precompute_latents=True, translate=True)
