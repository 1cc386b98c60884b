"""Time GRPO training steps at a given config, and the network work inside them.

``python benchmarks/rl_step.py [--steps 3] experiment=mp_20/rl_dng_cpu [overrides ...]``

Runs :class:`crystalrl.rl.module.RLModule`'s own training steps under a Lightning Trainer,
as ``train_rl`` does but without validation, checkpoints or loggers, and reports for each
step the seconds the module records itself (rollout, decoding, rewards, policy update),
the step's wall time and the process's peak resident memory. Beside them the *network
time*: the seconds the denoisers spent in their forward and backward passes within those
same steps, clocked by hooks on the modules, nothing of the step replaced. ``step_s`` is
rollout + decode + update (the step without its rewards); ``*_over_network`` say how much
of it is work around the network rather than the network itself (1.0: none).

The first step also pays one-off costs (reference data, worker pools) and is reported
apart; the figures are medians over the next ``--steps`` steps, each on its own batch of
prompts (a step's cost grows with the atom counts it draws). The last line is one JSON
object.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
import warnings

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from crystalrl.config import CONFIG_DIR
from crystalrl.rl.module import RLModule
from crystalrl.training import setup_run


class NetworkClock:
    """Seconds inside the denoisers' forward and backward passes, by phase of the step.

    A forward of the policy without gradients belongs to the rollout; the policy's forwards
    with gradients, their backward passes (from the gradient reaching the network's output
    to the last parameter's) and the frozen reference's forwards belong to the update.
    """

    def __init__(self, policy: torch.nn.Module, frozen: torch.nn.Module | None = None):
        self.policy = policy
        self.seconds = {"rollout": 0.0, "update": 0.0}
        self._cuda = next(policy.parameters()).is_cuda
        self._forward_start = 0.0
        self._backward_start = 0.0
        for net in (policy, frozen):
            if net is not None:
                net.register_forward_pre_hook(self._on_forward_start)
                net.register_forward_hook(self._on_forward_end)
        params = [p for p in policy.parameters() if p.requires_grad]
        torch.autograd.graph.register_multi_grad_hook(params, self._on_backward_end)

    def _now(self) -> float:
        if self._cuda:  # the queued kernels belong to the pass that queued them
            torch.cuda.synchronize()
        return time.perf_counter()

    def _on_forward_start(self, module, args) -> None:
        self._forward_start = self._now()

    def _on_forward_end(self, module, args, output: torch.Tensor) -> None:
        rollout = module is self.policy and not torch.is_grad_enabled()
        self.seconds["rollout" if rollout else "update"] += self._now() - self._forward_start
        if output.requires_grad:
            output.register_hook(self._on_backward_start)

    def _on_backward_start(self, grad: torch.Tensor) -> None:
        self._backward_start = self._now()

    def _on_backward_end(self, grads) -> None:
        self.seconds["update"] += self._now() - self._backward_start

    def take(self) -> dict[str, float]:
        """The seconds clocked since the last call, by phase."""
        out, self.seconds = self.seconds, {"rollout": 0.0, "update": 0.0}
        return out


class StepTimes(L.Callback):
    """Each training step's wall time, the module's own timings and the network's."""

    def __init__(self, network: NetworkClock):
        self.network = network
        self.rows: list[dict] = []
        self.first_batch_at: float | None = None
        self._start = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()
        if self.first_batch_at is None:
            self.first_batch_at = self._start
        self.network.take()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        total = time.perf_counter() - self._start
        t, net = pl_module.timings, self.network.take()
        self.rows.append(
            {
                "structures": len(batch) * int(pl_module.rl["num_group_samples"]),
                "rollout_s": t["rollout"],
                "decode_s": t["decode"],
                "rewards_s": t["rewards"],
                "update_s": t["update"],
                "step_s": t["rollout"] + t["decode"] + t["update"],
                "total_s": total,
                "rollout_network_s": net["rollout"],
                "update_network_s": net["update"],
                "step_network_s": net["rollout"] + net["update"],
            }
        )


def run_steps(overrides: list[str], steps: int) -> tuple[RLModule, StepTimes]:
    """``1 + steps`` training steps of the composed ``train_rl`` config."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train_rl", overrides=overrides)
    setup_run(cfg)
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    datamodule = instantiate(cfg.data)
    module = instantiate(cfg.rl_module, _convert_="all")
    clock = StepTimes(NetworkClock(module.ldm.denoiser, module.reference_denoiser))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = instantiate(
            cfg.trainer,
            max_steps=1 + steps,
            max_time=None,
            limit_val_batches=0,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=tmp,
            callbacks=[clock],
            logger=False,
        )
        trainer.fit(module, datamodule=datamodule)
    return module, clock


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="steps timed after the first")
    parser.add_argument("overrides", nargs="*", help="train_rl overrides")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    module, clock = run_steps(args.overrides, args.steps)
    first, measured = clock.rows[0], clock.rows[1:] or clock.rows
    med = {k: statistics.median(r[k] for r in measured) for k in measured[0]}
    report = {
        "config": args.overrides,
        "structures_per_step": int(med.pop("structures")),
        "sampling_steps": module.sampler.num_steps,
        "update_step_batch": module.rl["update_step_batch"],
        "policy_precision": module.rl["policy_precision"],
        "setup_s": round(clock.first_batch_at - start, 2),
        "first_step_s": round(first["total_s"], 2),
        "measured_steps": len(measured),
        **{k: round(v, 3) for k, v in med.items()},
        "rollout_over_network": round(med["rollout_s"] / med["rollout_network_s"], 3),
        "update_over_network": round(med["update_s"] / med["update_network_s"], 3),
        "step_over_network": round(med["step_s"] / med["step_network_s"], 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "threads": torch.get_num_threads(),
    }
    for k, v in report.items():
        print(f"{k:>22}: {v}")
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
