"""Has a denoiser learned where atoms go? Probes that judge an LDM on real crystals.

The geometry of samples (:mod:`crystalrl.metrics.geometry`) mixes what the denoiser
learned with what the sampler and the decoder do. These probes put the question to the
denoiser alone, on real crystals, each beside a reference that knows no geometry:

* :func:`moved_atom_distances`: one atom of each crystal displaced, the crystal encoded,
  noised to step t and replaced by the denoiser's x0-prediction, then decoded: how far (Å,
  minimum image) the atom ends from its true site, beside decoding the noisy latent as it
  is. A denoiser that knows geometry pulls the atom back.
* :func:`eps_gap`: the denoiser's ε-MSE on the same crystals with their atoms placed at
  random (:func:`~crystalrl.metrics.geometry.random_placement`) minus that on the real
  ones, at equal noise. A denoiser that knows where atoms go errs less on real crystals:
  the gap is positive.
* :func:`renoise_and_denoise`: real latents noised to step t0 and denoised again by DDIM
  (η = 0): the error to the clean latent, and the crystals decoded from it. Generated
  crystals can only be as physical as the last denoising steps are precise; this
  separates the denoiser from the decoder.

Every probe judges the LDM's EMA denoiser (what sampling uses) unless ``model_fn`` names
another denoiser call (an RL policy's, an oracle in the tests).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from crystalrl.data.batch import CrystalBatch
from crystalrl.metrics.geometry import random_placement

if TYPE_CHECKING:
    from crystalrl.ldm.module import LDMModule

ModelFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

#: Timesteps of the moved-atom probe: little noise, where a denoiser must be precise.
MOVE_STEPS = (5, 20, 50)
#: Timesteps of the ε-gap: enough noise that positions are uncertain, not yet erased.
GAP_STEPS = (50, 100, 200)
#: How far (Å) the moved-atom probe displaces its atom: about a fifth of a bond.
DISPLACEMENT = 0.5
#: Timesteps the re-noised latents start from, and the DDIM chain that denoises them (a
#: step every ~10 timesteps of a 1,000-step schedule).
START_STEPS = (50, 100, 200, 400, 800)
CHAIN_STEPS = 100


@dataclass(frozen=True)
class Recovery:
    """Real latents noised to ``t0`` and denoised again (:func:`renoise_and_denoise`)."""

    t0: int
    #: Standard deviation of the noise at ``t0``, in units of the latents' std.
    noise_std: float
    #: RMS error to the clean latent over the real atoms' channels (latent std units).
    latent_error: float
    #: The crystals decoded from the denoised latents (``None`` for impossible cells).
    structures: list


def _denoiser(ldm: LDMModule, model_fn: ModelFn | None) -> ModelFn:
    return model_fn or ldm.model_fn(use_ema=True)


def _batch(structures: Sequence, ldm: LDMModule) -> CrystalBatch:
    return CrystalBatch.from_structures(structures, dtype=torch.float32).to(ldm.device)


def displace_first_atom(structures: Sequence, distance: float, rng: np.random.Generator) -> list:
    """Copies with the first atom moved ``distance`` Å in a random direction."""
    out = []
    for s in structures:
        v = rng.normal(size=3)
        s = s.copy()
        s.translate_sites([0], distance * v / np.linalg.norm(v), frac_coords=False)
        out.append(s)
    return out


def first_site_distances(structures: Sequence, frac_coords: np.ndarray) -> np.ndarray:
    """Minimum-image distance (Å) from each structure's first site to ``frac_coords[i]``
    (fractional coordinates in that structure's cell)."""
    d = np.asarray(frac_coords, dtype=np.float64) - np.array([s.frac_coords[0] for s in structures])
    d -= np.round(d)
    return np.array(
        [
            np.linalg.norm(s.lattice.get_cartesian_coords(x))
            for s, x in zip(structures, d, strict=True)
        ]
    )


@torch.no_grad()
def moved_atom_distances(
    ldm: LDMModule,
    structures: Sequence,
    steps: Sequence[int] = MOVE_STEPS,
    displacement: float = DISPLACEMENT,
    seed: int = 0,
    model_fn: ModelFn | None = None,
) -> dict[int, dict[str, float]]:
    """Mean distance (Å) of the moved atom from its true site at each timestep, after the
    x0-prediction (``denoised``) and without it (``noisy``). Crystals of one atom (which
    has no site to return to but its own images) and failed structures are left out."""
    net = _denoiser(ldm, model_fn)
    originals = [s for s in structures if s is not None and len(s) > 1]
    moved = displace_first_atom(originals, displacement, np.random.default_rng(seed))
    batch = _batch(moved, ldm)
    mask = batch.mask
    z0 = ldm.encode(batch, sample=False)
    g = torch.Generator().manual_seed(seed)
    out = {}
    for t_val in steps:
        t = torch.full((len(batch),), int(t_val), device=z0.device)
        noise = torch.randn(z0.shape, generator=g).to(z0)
        x_t = ldm.diffusion.q_sample(z0, t, noise) * mask.unsqueeze(-1)
        eps = net(x_t, t, mask)[..., : x_t.shape[-1]]
        x0 = ldm.diffusion.predict_x0(x_t, t, eps) * mask.unsqueeze(-1)
        row = {}
        for name, z in (("denoised", x0), ("noisy", x_t)):
            frac = ldm.decode(z, mask).frac_coords[:, 0].double().cpu().numpy()
            row[name] = float(first_site_distances(originals, frac).mean())
        out[int(t_val)] = row
    return out


@torch.no_grad()
def eps_mse(
    ldm: LDMModule,
    batch: CrystalBatch,
    steps: Sequence[int],
    seed: int = 0,
    model_fn: ModelFn | None = None,
) -> dict[int, float]:
    """The denoiser's mean ε-MSE on ``batch`` (posterior-mean latents) at each timestep.

    The noise is drawn afresh from ``seed`` at every timestep, so batches of the same
    shape see the same noise; the global random state is left as it was.
    """
    net = _denoiser(ldm, model_fn)
    z0 = ldm.encode(batch, sample=False)
    out = {}
    for t_val in steps:
        t = torch.full((len(batch),), int(t_val), device=z0.device)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            losses = ldm.diffusion.training_losses(net, z0, batch.mask, t)
        out[int(t_val)] = float(losses["mse"].mean())
    return out


def eps_gap(
    ldm: LDMModule,
    structures: Sequence,
    steps: Sequence[int] = GAP_STEPS,
    seed: int = 0,
    model_fn: ModelFn | None = None,
) -> dict[int, float]:
    """ε-MSE with atoms placed at random minus ε-MSE on the real crystals, per timestep,
    with the same noise for both (failed structures are left out)."""
    real = [s for s in structures if s is not None]
    fake = random_placement(real, np.random.default_rng(seed))
    on_real = eps_mse(ldm, _batch(real, ldm), steps, seed, model_fn)
    on_fake = eps_mse(ldm, _batch(fake, ldm), steps, seed, model_fn)
    return {t: on_fake[t] - on_real[t] for t in on_real}


@torch.no_grad()
def renoise_and_denoise(
    ldm: LDMModule,
    batch: CrystalBatch,
    starts: Sequence[int] = START_STEPS,
    chain_steps: int = CHAIN_STEPS,
    seed: int = 0,
    model_fn: ModelFn | None = None,
) -> list[Recovery]:
    """For each start: the batch's latents noised to the chain step nearest to it and
    denoised by DDIM (η = 0, ``chain_steps`` steps over the whole schedule)."""
    net = _denoiser(ldm, model_fn)
    batch = batch.to(ldm.device)
    z0, mask = ldm.encode(batch, sample=False), batch.mask
    m = mask.unsqueeze(-1)
    sampler = ldm.make_sampler("ddim", chain_steps, eta=0.0)
    chain_t = sampler.schedule.timesteps
    g = torch.Generator().manual_seed(seed)
    out = []
    for start in starts:
        i0 = int((chain_t - start).abs().argmin())
        t0 = int(chain_t[i0])
        noise = torch.randn(z0.shape, generator=g).to(z0)
        x = ldm.diffusion.q_sample(z0, torch.full((len(z0),), t0, device=z0.device), noise) * m
        for i in reversed(range(i0 + 1)):
            x, _ = sampler.step_distribution(net, x, i, mask)  # η = 0: the mean is the step
            x = x * m
        out.append(
            Recovery(
                t0=t0,
                noise_std=float(ldm.diffusion.sqrt_one_minus_ac[t0]),
                latent_error=float(((x - z0)[mask] ** 2).mean().sqrt()),
                structures=ldm.decode(x, mask).to_structures(),
            )
        )
    return out
