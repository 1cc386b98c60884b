"""GRPO fine-tuning of the LDM's denoiser toward a reward (stage 3).

One training step rolls out B·G trajectories without gradients, decodes and scores them,
turns rewards into group-relative advantages, then for each of ``num_inner_batch`` chunks
recomputes every denoising step's Gaussian with the current denoiser and follows the
clipped surrogate (:mod:`crystalrl.rl.grpo`), back-propagating step by step so memory does
not grow with T. Only the denoiser is trained; the VAE and any conditioning stay frozen.
The settings and their defaults are in :mod:`crystalrl.rl.config`.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

import lightning as L
import numpy as np
import torch

from crystalrl.checks import raise_problems
from crystalrl.data.batch import CrystalBatch
from crystalrl.ldm.diffusion import gaussian_kl, gaussian_log_prob
from crystalrl.ldm.module import load_ldm
from crystalrl.optimization import build_scheduler
from crystalrl.rewards.reward import RewardFunction, RewardOutput, as_reward_function
from crystalrl.rl.checks import rl_problems
from crystalrl.rl.config import GRPOConfig, OptimizerConfig, RolloutConfig, with_defaults
from crystalrl.rl.grpo import StepLoss, group_advantages, grpo_step_loss
from crystalrl.vae.module import encoder_mismatch, init_args, load_vae

POLICY_PRECISIONS = {"32": None, "bf16-mixed": torch.bfloat16}


class RLModule(L.LightningModule):
    """Holds the policy (the LDM's denoiser), the frozen VAE and the reward function."""

    def __init__(
        self,
        ldm_ckpt_path: str,
        vae_ckpt_path: str | None = None,
        rl_configs: dict[str, Any] | None = None,
        reward_fn: RewardFunction | Callable[..., Any] | None = None,
        sampling_configs: dict[str, Any] | None = None,
        optimizer: Any = None,
        scheduler: Any = None,
        ldm_hparams: dict[str, Any] | None = None,
    ):
        super().__init__()
        # the reward function and optimizer are objects built from the config, not hparams
        hp = {k: v for k, v in init_args(locals()).items() if k not in ("reward_fn", "optimizer")}
        self.save_hyperparameters(hp)
        self.automatic_optimization = False
        self.rl = with_defaults("rl_configs", rl_configs, GRPOConfig())
        self.sampling = with_defaults("sampling_configs", sampling_configs, RolloutConfig())
        self.rl["policy_precision"] = str(self.rl["policy_precision"])
        # before the checkpoints load: a bad number fails in a second, naming its key
        raise_problems(rl_problems(self.rl, self.sampling), "RLModule")
        self.ldm = load_ldm(ldm_ckpt_path, key="rl_module.ldm_ckpt_path")
        if vae_ckpt_path:
            vae = load_vae(vae_ckpt_path, key="rl_module.vae_ckpt_path")
            differs = encoder_mismatch(self.ldm.vae.vae.state_dict(), vae.vae.state_dict())
            if differs:
                raise ValueError(
                    f"rl_module.vae_ckpt_path={vae_ckpt_path} encodes into a different latent "
                    f"space than the VAE the LDM {ldm_ckpt_path} was trained on (first "
                    f"difference: {differs}); pass that VAE (or one with the same encoder), "
                    "or null to keep the LDM's own"
                )
            self.ldm.vae.load_state_dict(vae.state_dict())
        if self.ldm.ema is not None:  # the policy starts from the weights used for sampling
            self.ldm.denoiser.load_state_dict(self.ldm.ema.module.state_dict())
            self.ldm.ema = None
        self.ldm.vae.requires_grad_(False)
        self.hparams.ldm_hparams = dict(self.ldm.hparams)
        # kl_reference=initial: the KL is taken against this frozen copy of the starting
        # denoiser instead of against the rollout policy
        self.reference_denoiser: torch.nn.Module | None = None
        if self.rl["kl_reference"] == "initial":
            self.reference_denoiser = copy.deepcopy(self.ldm.denoiser).requires_grad_(False).eval()
        elif self.rl["kl_reference"] != "rollout":
            raise ValueError("rl_configs.kl_reference must be 'rollout' or 'initial'")
        self.reward_fn: RewardFunction | None = (
            None if reward_fn is None else as_reward_function(reward_fn)
        )
        self.optimizer_factory = optimizer
        self.sampler = self.ldm.make_sampler(
            self.sampling["sampler"], self.sampling["sampling_steps"], self.sampling["eta"]
        )
        self.timings: dict[str, float] = {}

    # ------------------------------------------------------------------ setup
    def setup(self, stage: str) -> None:
        if self.reward_fn is None:
            raise ValueError("rl_module.reward_fn is not set: RL needs a reward")
        if not hasattr(self.reward_fn, "setup"):
            return
        # under DDP the first process builds the reference caches, the others then read them
        distributed = self._trainer is not None and self.trainer.world_size > 1
        if distributed and self.global_rank != 0:
            self.trainer.strategy.barrier()
        self.reward_fn.setup(vae=self.ldm.vae, device="cpu")
        if distributed and self.global_rank == 0:
            self.trainer.strategy.barrier()

    def on_fit_start(self) -> None:
        """Under DDP every process starts from the same seed; its rollouts must not repeat
        the other processes' noise, or the extra groups would be copies."""
        if self.trainer.world_size > 1:
            torch.manual_seed(torch.initial_seed() + 7919 * self.global_rank)

    def train(self, mode: bool = True):
        """The whole LDM stays in eval mode, also while training: the probability ratio of
        GRPO needs the update to evaluate the same function as the rollout did, and the
        denoiser must not change behaviour between the two (it has no dropout today; a
        train-time behaviour added later would break the ratio). Gradients flow in eval
        mode all the same."""
        super().train(mode)
        self.ldm.eval()
        return self

    def configure_optimizers(self):
        params = [p for p in self.ldm.denoiser.parameters() if p.requires_grad]
        opt = (
            self.optimizer_factory(params)
            if self.optimizer_factory is not None
            else torch.optim.AdamW(params, **asdict(OptimizerConfig()))
        )
        sched = build_scheduler(opt, self.hparams.scheduler)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ------------------------------------------------------------------ rollout
    def policy_fn(self, net: torch.nn.Module | None = None) -> Callable:
        """The denoiser call of rollout and update alike. Both must run it at the same
        precision: the GRPO ratio compares their log-probabilities, and a clip of 1e-3
        leaves no room for a precision gap between them."""
        net = net or self.ldm.denoiser
        dtype = POLICY_PRECISIONS[self.rl["policy_precision"]]
        if dtype is None:
            return lambda x, t, mask: net(x, t, mask)

        def call(x: torch.Tensor, t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            with torch.autocast(x.device.type, dtype=dtype):
                out = net(x, t, mask)
            return out.float()

        return call

    @torch.no_grad()
    def rollout(self, batch: CrystalBatch, group_size: int, generator=None) -> dict[str, Any]:
        """B·G trajectories (each item's atom count repeated G times), decoded and scored."""
        counts = batch.num_atoms.repeat_interleave(group_size)
        start = time.perf_counter()
        was_training = self.ldm.denoiser.training
        self.ldm.denoiser.eval()
        crystals, traj = self.ldm.generate(
            counts,
            self.sampler,
            generator=generator,
            return_trajectory=True,
            model_fn=self.policy_fn(),
        )
        self.ldm.denoiser.train(was_training)
        if self.device.type == "cuda":  # charge the queued kernels to the rollout, not decode
            torch.cuda.synchronize(self.device)
        t_roll = time.perf_counter()
        structures = crystals.to_structures()
        t_dec = time.perf_counter()
        if hasattr(self.reward_fn, "group_size"):  # guards that count repeats within a group
            self.reward_fn.group_size = group_size
        out = RewardOutput.of(self.reward_fn(structures))
        t_rew = time.perf_counter()
        self.timings = {
            "rollout": t_roll - start,
            "decode": t_dec - t_roll,
            "rewards": t_rew - t_dec,
        }
        # per metric and component, so a slow reward shows which part stalled (a
        # StructureMatcher bucket that runs into its timeout, a CHGNet graph of a collapsed cell)
        self.timings.update({f"rewards/{k}": v for k, v in out.timings.items()})
        mask = traj["mask"]
        stds = traj["stds"]
        old = torch.stack(
            [
                gaussian_log_prob(
                    traj["latents"][:, k + 1],
                    traj["means"][:, k],
                    stds[:, k].clamp(min=1e-12),
                    mask,
                )
                for k in range(stds.shape[1])
            ],
            1,
        )  # (B·G, T)
        return {
            "traj": traj,
            "old_logp": old,
            "structures": structures,
            "rewards": out.total.float().to(self.device),  # rewards are scored on the CPU
            "components": out.components,
            # batch averages of the reward's shared metrics (avg_MSUN, avg_unique, ...): the
            # paper's success measures, watched during training at no extra cost
            "metrics": out.metrics,
        }

    # ------------------------------------------------------------------ training
    def training_step(self, batch: CrystalBatch, batch_idx: int) -> None:
        g = int(self.rl["num_group_samples"])
        roll = self.rollout(batch, g)
        rewards = roll["rewards"]
        adv = group_advantages(
            rewards,
            g,
            self.reward_fn.normalize_fn,
            float(self.reward_fn.eps),
            bool(self.rl["group_reward_norm"]),
        )
        start = time.perf_counter()
        stats = self.policy_update(roll["traj"], roll["old_logp"], adv)
        self.timings["update"] = time.perf_counter() - start
        sch = self.lr_schedulers()
        if sch is not None:
            sch.step()
        b = len(rewards)
        log = {
            "train/reward": rewards.mean(),
            "train/reward_std": rewards.std() if b > 1 else torch.tensor(0.0),
            "train/advantages": adv.abs().mean(),
            **{f"train/{k}": v for k, v in stats.items()},
            **{
                f"train/{k}": torch.as_tensor(v, dtype=torch.float32).nanmean()
                for k, v in roll["components"].items()
            },
            **{f"train/{k}": float(v) for k, v in roll["metrics"].items()},
            **{f"time/{k}": v for k, v in self.timings.items()},
        }
        # sync_dist: under DDP the logged values are the means over all processes' groups.
        # Plain floats: Lightning puts them on the module's device, where NCCL needs them
        # (the components' means and the update's statistics are CPU tensors)
        log = {k: float(v) for k, v in log.items()}
        self.log_dict(log, batch_size=b, on_step=True, on_epoch=False, sync_dist=True)
        self.log("reward", rewards.mean(), prog_bar=True, batch_size=b, logger=False)
        self.log("kl", stats["kl_div"], prog_bar=True, batch_size=b, logger=False)

    def policy_update(
        self, traj: dict[str, torch.Tensor], old_logp: torch.Tensor, advantages: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Inner mini-batches of the clipped-surrogate update; returns mean statistics."""
        opt = self.optimizers()
        blocks = self.update_blocks(traj["stds"])
        num_steps = sum(len(ks) for ks in blocks)
        n = len(advantages)
        chunks = np.array_split(np.random.permutation(n), int(self.rl["num_inner_batch"]))
        sums = {
            "loss": 0.0,
            "kl_div": 0.0,
            "ratio": 0.0,
            "entropy": 0.0,
            "clip_frac": 0.0,
            "grad_norm": 0.0,
        }
        count = 0
        for c, idx in enumerate(chunks):
            idx = torch.as_tensor(idx)
            opt.zero_grad()
            for ks in blocks:
                out = self._block_loss(traj, old_logp, advantages, idx, ks, num_steps)
                self.manual_backward(out.loss)
                # a block's loss is the sum of its steps' losses, each already divided by T:
                # its statistics (means over the block's rows) are scaled back to those sums
                s = len(ks)
                sums["loss"] += out.loss.item()
                sums["kl_div"] += s * out.kl.mean().item() / num_steps
                sums["ratio"] += s * out.ratio.mean().item() / num_steps
                sums["entropy"] += s * out.entropy.mean().item() / num_steps
                sums["clip_frac"] += s * out.clipped.float().mean().item() / num_steps
            grad_norm = torch.nn.utils.clip_grad_norm_(
                self.ldm.denoiser.parameters(), float(self.rl["max_grad_norm"])
            )
            sums["grad_norm"] += float(grad_norm)
            # one RL step is one Lightning step: only the last chunk advances global_step
            if c == len(chunks) - 1:
                opt.step()
            else:
                opt.optimizer.step()
            count += 1
        return {k: torch.tensor(v / max(count, 1)) for k, v in sums.items()}

    def update_blocks(self, stds: torch.Tensor) -> list[list[int]]:
        """The denoising steps one update trains on (those with std > 0, a random
        ``train_step_fraction`` of them), grouped ``update_step_batch`` at a time into the
        blocks that each take one network call."""
        steps = [k for k in range(stds.shape[1]) if bool((stds[:, k] > 0).all())]  # std 0: skip
        if not steps:
            raise ValueError(
                "no stochastic denoising step to update (all stds are 0): use eta > 0 with ddim"
            )
        frac = float(self.rl["train_step_fraction"])
        if frac < 1.0:
            steps = sorted(random.sample(steps, max(1, round(frac * len(steps)))))
        per_call = int(self.rl["update_step_batch"]) or len(steps)
        return [steps[i : i + per_call] for i in range(0, len(steps), per_call)]

    @staticmethod
    def stacked_pairs(
        traj: dict[str, torch.Tensor], idx: torch.Tensor, ks: list[int]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Denoising steps ``ks`` of trajectories ``idx`` as one batch of n·S rows,
        trajectory-major: the latents before and after each step, their masks and chain
        indices. Indexes the (n, S) pairs without copying whole trajectories."""
        latents, mask = traj["latents"], traj["mask"]
        k = torch.as_tensor(ks)
        rows = idx[:, None]
        x = latents[rows, k].flatten(0, 1)  # (n·S, N, D)
        x_next = latents[rows, k + 1].flatten(0, 1)
        m = mask[idx].repeat_interleave(len(ks), dim=0)
        return x, x_next, m, traj["chain_index"][k].repeat(len(idx))

    def _block_loss(
        self,
        traj: dict[str, torch.Tensor],
        old_logp: torch.Tensor,
        advantages: torch.Tensor,
        idx: torch.Tensor,
        ks: list[int],
        num_steps: int,
    ) -> StepLoss:
        """The summed GRPO loss of denoising steps ``ks`` for trajectories ``idx``, from one
        network call over the (trajectory, step) pairs stacked as one batch.

        :func:`grpo_step_loss` averages over its rows and divides by ``num_steps``; over
        n·S stacked rows that is the mean of the S per-step losses, so S times it is their
        sum, the same loss (and gradient) as S separate calls.
        """
        s = len(ks)
        x, x_next, m, chain = self.stacked_pairs(traj, idx, ks)
        mean, std = self.sampler.step_distribution(self.policy_fn(), x, chain, m)
        new = gaussian_log_prob(x_next, mean, std, m)
        ref_kl = None
        if self.reference_denoiser is not None:
            with torch.no_grad():
                policy = self.policy_fn(self.reference_denoiser)
                ref_mean, ref_std = self.sampler.step_distribution(policy, x, chain, m)
            ref_kl = gaussian_kl(mean, std, ref_mean, ref_std, m)
        out = grpo_step_loss(
            new,
            old_logp[idx[:, None], torch.as_tensor(ks)].flatten(),
            advantages[idx].repeat_interleave(s),
            float(self.rl["clip_ratio"]),
            float(self.rl["kl_weight"]),
            float(self.rl["entropy_weight"]),
            num_steps,
            ref_kl,
        )
        return replace(out, loss=s * out.loss)

    # ------------------------------------------------------------------ validation
    def validation_step(self, batch: CrystalBatch, batch_idx: int) -> None:
        g = int(self.rl["val_num_group_samples"] or self.rl["num_group_samples"])
        # the same noise at every validation, other noise on each DDP process
        gen = torch.Generator().manual_seed(1000 + batch_idx + 7919 * self.global_rank)
        roll = self.rollout(batch, g, generator=gen)
        b = len(roll["rewards"])
        self.log("val/reward", roll["rewards"].mean(), prog_bar=True, batch_size=b, sync_dist=True)
        for k, v in roll["components"].items():
            value = torch.as_tensor(v, dtype=torch.float32).nanmean()
            self.log(f"val/{k}", float(value), batch_size=b, sync_dist=True)
        for k, v in roll["metrics"].items():
            self.log(f"val/{k}", float(v), batch_size=b, sync_dist=True)

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Record the LDM's hyper-parameters: :func:`load_ldm` then reads this file as an LDM."""
        checkpoint["ldm_hyper_parameters"] = dict(self.ldm.hparams)
