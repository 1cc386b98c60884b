"""The GRPO loss on known tensors, and one real RL step on a tiny model."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from crystalrl.rl.grpo import group_advantages, grpo_step_loss


def test_equal_log_probs_give_ratio_one_and_zero_kl():
    logp = torch.tensor([-1.3, 0.2, -5.0, 2.0])
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5])
    out = grpo_step_loss(logp, logp.clone(), adv, 0.2, 1.0, 0.0, num_steps=1)
    torch.testing.assert_close(out.ratio, torch.ones(4))
    torch.testing.assert_close(out.kl, torch.zeros(4))
    # with ratio 1 the loss is −mean(A)
    assert out.loss.item() == pytest.approx(-adv.mean().item())


def test_clipping_bounds_the_surrogate():
    old = torch.zeros(4)
    new = torch.log(torch.tensor([2.0, 2.0, 0.5, 0.5]))  # ratios 2, 2, 0.5, 0.5
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0])
    out = grpo_step_loss(
        new, old, adv, clip_ratio=0.1, kl_weight=0.0, entropy_weight=0.0, num_steps=1
    )
    # surrogate = min(r·A, clip(r)·A): 1.1, −2, 0.5, −0.9
    expected = -torch.tensor([1.1, -2.0, 0.5, -0.9]).mean()
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert out.clipped.tolist() == [True, False, False, True]
    # gradients flow only where the unclipped branch is the minimum
    new = new.clone().requires_grad_(True)
    grpo_step_loss(new, old, adv, 0.1, 0.0, 0.0, 1).loss.backward()
    assert new.grad[0] == 0 and new.grad[3] == 0 and new.grad[1] != 0 and new.grad[2] != 0


def test_k3_kl_matches_its_formula_and_is_nonnegative():
    old = torch.tensor([0.0, 0.0, 1.0])
    new = torch.tensor([0.5, -0.5, 0.0])
    out = grpo_step_loss(
        new, old, torch.zeros(3), 0.2, kl_weight=2.0, entropy_weight=0.0, num_steps=4
    )
    d = old - new
    torch.testing.assert_close(out.kl, torch.exp(d) - 1 - d)
    assert (out.kl >= 0).all()
    assert out.loss.item() == pytest.approx((2.0 * out.kl).mean().item() / 4)


def test_entropy_term_lowers_the_loss_of_low_log_probs():
    old = torch.zeros(2)
    new = torch.tensor([-1.0, -1.0])
    base = grpo_step_loss(new, old, torch.zeros(2), 0.2, 0.0, 0.0, 1).loss
    with_h = grpo_step_loss(new, old, torch.zeros(2), 0.2, 0.0, 0.5, 1).loss
    assert with_h.item() == pytest.approx(base.item() - 0.5 * 1.0)


def test_group_normalisation_gives_zero_mean_advantages_per_group():
    rewards = torch.tensor([1.0, 2.0, 3.0, 4.0, 10.0, 10.0, 10.0, 14.0])
    adv = group_advantages(rewards, group_size=4, normalize_fn="std", eps=1e-4)
    groups = adv.view(2, 4)
    torch.testing.assert_close(groups.mean(1), torch.zeros(2), atol=1e-6, rtol=0)
    torch.testing.assert_close(groups.std(1), torch.ones(2), atol=1e-3, rtol=0)
    # without group normalisation the whole batch is one group
    flat = group_advantages(rewards, 4, "std", 1e-4, group_reward_norm=False)
    assert flat[:4].mean() < 0 < flat[4:].mean()
    with pytest.raises(ValueError, match="groups of 3"):
        group_advantages(rewards, 3)


def test_constant_group_gives_zero_advantages():
    adv = group_advantages(torch.tensor([0.5, 0.5, 0.5, 1.0, 2.0, 3.0]), 3, "std", 1e-4)
    assert adv[:3].abs().max() == 0


class DensityReward:
    """A stand-in reward with the ReinforceReward interface: atoms per Å³."""

    normalize_fn = "std"
    eps = 1e-4

    def __call__(self, structures):
        vals = [len(s) / s.volume if s is not None else 0.0 for s in structures]
        total = torch.tensor(vals, dtype=torch.float32)
        return SimpleNamespace(
            total=total,
            components={"density": total},
            timings={"component/density": 0.25},
            metrics={"avg_unique": 0.5},
        )


def _tiny_rl(tiny_vae_ckpt, tmp_path, channels: dict, **rl_configs):
    """An RLModule over a one-block DiT whose output depends on its weights."""
    from crystalrl.ldm.exporting import export_ldm
    from crystalrl.ldm.module import LDMModule
    from crystalrl.rl.module import RLModule

    torch.manual_seed(0)
    pair = dict(pair_freqs=2, pair_rbf=4) if channels else {}
    ldm = LDMModule(
        vae_ckpt_path=tiny_vae_ckpt,
        denoiser=dict(hidden_size=32, depth=1, num_heads=2, **pair),
        **channels,
    )
    # give the final layer weights so the policy's output depends on its parameters
    torch.nn.init.normal_(ldm.denoiser.final_layer.linear.weight, std=0.1)
    ldm.ema.module.load_state_dict(ldm.denoiser.state_dict())
    raw = tmp_path / "ldm.ckpt"
    torch.save({"state_dict": ldm.state_dict(), "hyper_parameters": dict(ldm.hparams)}, raw)
    return RLModule(
        ldm_ckpt_path=export_ldm(str(raw), str(tmp_path / "ldm_small.ckpt"), half=False),
        rl_configs=dict(num_group_samples=4, num_inner_batch=2, **rl_configs),
        reward_fn=DensityReward(),
        sampling_configs=dict(sampling_steps=6),
        optimizer=lambda p: torch.optim.SGD(p, lr=1e-2),
    )


def _first_two(batch):
    return type(batch)(
        **{
            k: getattr(batch, k)[:2]
            for k in ("atom_types", "frac_coords", "mask", "num_atoms", "lengths", "angles")
        }
    )


CHANNELS = pytest.mark.parametrize(
    "channels",
    [{}, dict(position_scale=1.5, lattice_scale=1.0, precompute_latents=True)],
    ids=["latent", "latent+position+lattice"],
)


@CHANNELS
def test_one_rl_step_updates_the_policy_and_skips_zero_std_steps(
    tiny_vae_ckpt, tmp_path, perov_batch, channels
):
    from crystalrl.ldm.module import load_ldm

    rl = _tiny_rl(tiny_vae_ckpt, tmp_path, channels, clip_ratio=0.2)
    opt = rl.configure_optimizers()["optimizer"]
    rl.optimizers = lambda: SimpleNamespace(zero_grad=opt.zero_grad, step=opt.step, optimizer=opt)
    rl.manual_backward = lambda loss: loss.backward()
    counts_batch = _first_two(perov_batch)
    assert rl.reward_fn.normalize_fn == "std" and rl.reference_denoiser is None
    roll = rl.rollout(counts_batch, 4)
    assert roll["old_logp"].shape == (8, 6)
    assert len(roll["structures"]) == 8
    # the reward's own split of its time is logged beside the rollout's
    assert rl.timings["rewards/component/density"] == 0.25 and rl.timings["rollout"] > 0
    assert roll["metrics"] == {"avg_unique": 0.5}  # logged as train/avg_unique
    before = [p.detach().clone() for p in rl.ldm.denoiser.parameters()]
    adv = group_advantages(roll["rewards"], 4)
    stats = rl.policy_update(roll["traj"], roll["old_logp"], adv)
    # the first chunk is evaluated with the rollout policy itself: ratio exactly 1 there
    assert torch.isfinite(stats["loss"]) and stats["ratio"] > 0
    changed = any(
        not torch.equal(a, b) for a, b in zip(before, rl.ldm.denoiser.parameters(), strict=True)
    )
    assert changed
    # an RL checkpoint loads wherever an LDM checkpoint does
    ckpt = {"state_dict": rl.state_dict(), "hyper_parameters": dict(rl.hparams)}
    rl.on_save_checkpoint(ckpt)
    torch.save(ckpt, tmp_path / "rl.ckpt")
    again = load_ldm(str(tmp_path / "rl.ckpt"))
    for a, b in zip(again.denoiser.parameters(), rl.ldm.denoiser.parameters(), strict=True):
        torch.testing.assert_close(a, b)


@CHANNELS
@pytest.mark.parametrize("kl_reference", ["rollout", "initial"])
def test_batched_update_gives_the_step_by_step_gradients(
    tiny_vae_ckpt, tmp_path, perov_batch, channels, kl_reference
):
    rl = _tiny_rl(tiny_vae_ckpt, tmp_path, channels, kl_reference=kl_reference)
    roll = rl.rollout(_first_two(perov_batch), 4)
    adv = group_advantages(roll["rewards"], 4)
    # move the policy off the rollout's weights, so ratios and KL are not trivially 1 and 0
    with torch.no_grad():
        for p in rl.ldm.denoiser.parameters():
            p.add_(0.01 * torch.randn_like(p))
    # in float64 the two orders of summation agree to ~1e-12: what is compared is the math
    rl.ldm.denoiser.double()
    if rl.reference_denoiser is not None:
        rl.reference_denoiser.double()
    traj = {k: v.double() if v.is_floating_point() else v for k, v in roll["traj"].items()}
    old_logp, adv = roll["old_logp"].double(), adv.double()
    idx = torch.arange(len(adv))
    stds = roll["traj"]["stds"]
    steps = [k for k in range(stds.shape[1]) if bool((stds[:, k] > 0).all())]

    def gradients(per_call: int) -> list[torch.Tensor]:
        rl.ldm.denoiser.zero_grad()
        for i in range(0, len(steps), per_call):
            ks = steps[i : i + per_call]
            rl._block_loss(traj, old_logp, adv, idx, ks, len(steps)).loss.backward()
        return [p.grad.clone() for p in rl.ldm.denoiser.parameters()]

    one_by_one = gradients(1)
    assert any(g.abs().sum() > 0 for g in one_by_one)
    for per_call in (2, len(steps)):
        for a, b in zip(gradients(per_call), one_by_one, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-8)


def test_kl_to_the_initial_model_pulls_a_drifted_policy_back(tiny_vae_ckpt, tmp_path, perov_batch):
    """With zero advantages the loss is the KL to the frozen start alone: a few gradient
    steps from a drifted policy must shrink it (the k3 estimate at rollout samples grew)."""
    rl = _tiny_rl(tiny_vae_ckpt, tmp_path, {}, kl_reference="initial")
    torch.manual_seed(1)
    with torch.no_grad():
        for p in rl.ldm.denoiser.parameters():
            p.add_(0.02 * torch.randn_like(p))
    roll = rl.rollout(_first_two(perov_batch), 4)  # samples of the drifted policy, as in training
    stds = roll["traj"]["stds"]
    steps = [k for k in range(stds.shape[1]) if bool((stds[:, k] > 0).all())]
    idx, adv = torch.arange(len(roll["rewards"])), torch.zeros(len(roll["rewards"]))
    params = list(rl.ldm.denoiser.parameters())
    opt = torch.optim.SGD(params, lr=0.02)

    def kl_loss():
        return rl._block_loss(roll["traj"], roll["old_logp"], adv, idx, steps, len(steps))

    first = kl_loss()
    assert first.kl.mean() > 0
    for _ in range(10):  # clipped as training clips (max_grad_norm)
        opt.zero_grad()
        kl_loss().loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
    assert kl_loss().kl.mean() < 0.5 * first.kl.mean()


def test_bf16_policy_recomputes_the_rollout_log_probs(tiny_vae_ckpt, tmp_path, perov_batch):
    """Rollout and update call the denoiser at the same precision, so before any update
    the recomputed log-probabilities are the recorded ones (GRPO ratio 1), and bf16 is
    really used: full precision gives other values."""
    from crystalrl.ldm.diffusion import gaussian_log_prob

    channels = dict(position_scale=1.5, lattice_scale=1.0, precompute_latents=True)
    rl = _tiny_rl(tiny_vae_ckpt, tmp_path, channels, policy_precision="bf16-mixed")
    roll = rl.rollout(_first_two(perov_batch), 4)
    traj, mask = roll["traj"], roll["traj"]["mask"]

    def log_probs(model_fn) -> torch.Tensor:
        with torch.no_grad():
            out = []
            for k, i in enumerate(traj["chain_index"][:-1]):  # the last step has std 0
                x = traj["latents"][:, k]
                mean, std = rl.sampler.step_distribution(model_fn, x, int(i), mask)
                out.append(gaussian_log_prob(traj["latents"][:, k + 1], mean, std, mask))
            return torch.stack(out, 1)

    recorded = roll["old_logp"][:, :-1]
    torch.testing.assert_close(log_probs(rl.policy_fn()), recorded, rtol=0, atol=1e-5)
    full = log_probs(rl.ldm.model_fn())
    assert (full - recorded).abs().max() > 1e-4


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_step_distribution_per_row_indices_match_one_index(tiny_vae_ckpt, sampler):
    from crystalrl.ldm.module import LDMModule

    torch.manual_seed(0)
    ldm = LDMModule(
        vae_ckpt_path=tiny_vae_ckpt, denoiser=dict(hidden_size=32, depth=1, num_heads=2)
    )
    torch.nn.init.normal_(ldm.denoiser.final_layer.linear.weight, std=0.1)
    s = ldm.make_sampler(sampler, 5, 1.0)
    x, mask = torch.randn(3, 4, ldm.token_dim), torch.ones(3, 4, dtype=torch.bool)
    net = lambda x, t, m: ldm.denoiser(x, t, m)  # noqa: E731
    for i in range(5):
        mean, std = s.step_distribution(net, x, i, mask)
        rows = torch.tensor([i, 0, i]) if i else torch.zeros(3, dtype=torch.long)
        bmean, bstd = s.step_distribution(net, x, rows, mask)
        torch.testing.assert_close(bmean[[0, 2]], mean[[0, 2]])
        torch.testing.assert_close(bstd[[0, 2]], std[[0, 2]].expand_as(bstd[[0, 2]]))
        assert float(bstd[1].max()) == 0.0  # row at the final step


def test_rl_refuses_a_vae_from_another_latent_space(tiny_vae_ckpt, tmp_path):
    from crystalrl.ldm.exporting import export_ldm
    from crystalrl.ldm.module import LDMModule
    from crystalrl.rl.module import RLModule
    from crystalrl.vae.module import VAEModule, encoder_mismatch, load_vae

    torch.manual_seed(0)
    ldm = LDMModule(
        vae_ckpt_path=tiny_vae_ckpt, denoiser=dict(hidden_size=32, depth=1, num_heads=2)
    )
    raw = tmp_path / "ldm.ckpt"
    torch.save({"state_dict": ldm.state_dict(), "hyper_parameters": dict(ldm.hparams)}, raw)
    ldm_path = export_ldm(str(raw), str(tmp_path / "ldm_small.ckpt"), half=False)
    vae = load_vae(tiny_vae_ckpt)
    # a decoder fine-tuned on a frozen encoder keeps the latent space; a new encoder does not
    decoder_tuned = load_vae(tiny_vae_ckpt)
    torch.nn.init.normal_(next(decoder_tuned.vae.decoder.parameters()), std=0.1)
    assert encoder_mismatch(vae.vae.state_dict(), decoder_tuned.vae.state_dict()) is None
    other = VAEModule(**{k: v for k, v in vae.hparams.items()})
    assert encoder_mismatch(vae.vae.state_dict(), other.vae.state_dict()) is not None
    other_path = tmp_path / "other_vae.ckpt"
    torch.save(
        {"state_dict": other.state_dict(), "hyper_parameters": dict(other.hparams)}, other_path
    )
    RLModule(ldm_ckpt_path=ldm_path, vae_ckpt_path=tiny_vae_ckpt)  # its own VAE: accepted
    with pytest.raises(ValueError, match="other_vae.ckpt encodes into a different latent space"):
        RLModule(ldm_ckpt_path=ldm_path, vae_ckpt_path=str(other_path))


def _tiny_ldm_path(tiny_vae_ckpt, tmp_path) -> str:
    from crystalrl.ldm.exporting import export_ldm
    from crystalrl.ldm.module import LDMModule

    torch.manual_seed(0)
    ldm = LDMModule(
        vae_ckpt_path=tiny_vae_ckpt, denoiser=dict(hidden_size=32, depth=1, num_heads=2)
    )
    raw = tmp_path / "ldm.ckpt"
    torch.save({"state_dict": ldm.state_dict(), "hyper_parameters": dict(ldm.hparams)}, raw)
    return export_ldm(str(raw), str(tmp_path / "ldm_small.ckpt"), half=False)


def test_unknown_sampling_and_rl_keys_are_refused_by_name(tiny_vae_ckpt, tmp_path):
    from crystalrl.rl.module import RLModule

    path = _tiny_ldm_path(tiny_vae_ckpt, tmp_path)
    with pytest.raises(KeyError, match=r"sampling_configs keys \['cfg_scale'\].*eta.*sampler"):
        RLModule(ldm_ckpt_path=path, sampling_configs=dict(sampling_steps=5, cfg_scale=2.0))
    with pytest.raises(KeyError, match=r"rl_configs keys \['kl_wieght'\].*kl_weight"):
        RLModule(ldm_ckpt_path=path, rl_configs=dict(kl_wieght=1.0))
    with pytest.raises(ValueError, match=r"policy_precision='16'.*'32', 'bf16-mixed'"):
        RLModule(ldm_ckpt_path=path, rl_configs=dict(policy_precision=16))
    rl = RLModule(ldm_ckpt_path=path, rl_configs=dict(kl_reference="initial"))
    assert rl.reference_denoiser is not None and rl.reference_denoiser is not rl.ldm.denoiser
    assert not any(p.requires_grad for p in rl.reference_denoiser.parameters())


def test_the_reward_contract_and_a_plain_function_as_reward():
    from crystalrl.rewards import CustomReward, ReinforceReward
    from crystalrl.rewards.reward import (
        FunctionReward,
        RewardFunction,
        RewardOutput,
        as_reward_function,
    )

    # a reward with the attributes is used as it is, whatever its class
    stand_in = DensityReward()
    assert isinstance(stand_in, RewardFunction) and as_reward_function(stand_in) is stand_in
    shipped = ReinforceReward([CustomReward()], normalize_fn="clip", reference_dataset=None)
    assert isinstance(shipped, RewardFunction) and as_reward_function(shipped) is shipped

    # a plain function: its values are the totals, advantages normalised with std
    def plain(structures):
        return [float(len(s)) for s in structures]

    wrapped = as_reward_function(plain)
    assert isinstance(wrapped, FunctionReward) and isinstance(wrapped, RewardFunction)
    assert (wrapped.normalize_fn, wrapped.eps) == ("std", 1e-4)
    out = wrapped(["ab", "abc"])
    assert isinstance(out, RewardOutput) and torch.equal(out.total, torch.tensor([2.0, 3.0]))
    assert out.components == {} and out.metrics == {} and out.timings == {}
    # a namespace with the output's fields reads as one
    ns = stand_in([])
    assert RewardOutput.of(ns).timings == {"component/density": 0.25}
    with pytest.raises(ValueError, match="callable"):
        as_reward_function("not a reward")
