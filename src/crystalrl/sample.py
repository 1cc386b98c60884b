"""Generate crystals with a trained (or RL-tuned) LDM.

``python -m crystalrl.sample ldm_ckpt_path='${hub:mp_20_ldm_base}' num_samples=1000 \
    batch_size=500 output_dir=out/ sampler=ddim sampling_steps=50``

Writes one CIF per structure and ``samples.json.gz`` (a JSON list of pymatgen structure
dicts, what ``crystalrl.evaluate`` reads). A structure the VAE decodes to an impossible
lattice is recorded as ``null`` in the JSON and has no CIF. Each batch is written as it
finishes, so an interrupted run keeps its finished batches (``samples.partial.jsonl``);
``samples.json.gz`` and ``complete.json`` appear when all are done. A folder that holds
earlier samples is refused unless ``overwrite=true``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import hydra
import torch
from omegaconf import DictConfig

from crystalrl.config import CONFIG_DIR


def generate_structures(
    ldm,
    num_samples: int,
    batch_size: int,
    sampler: str = "ddim",
    sampling_steps: int = 50,
    eta: float = 1.0,
    num_atoms: int | None = None,
    seed: int = 0,
    use_ema: bool = True,
    show_progress: bool = True,
    on_batch: Callable[[list], None] | None = None,
) -> list:
    """pymatgen structures (None where decoding failed), drawn in batches; ``on_batch``
    gets each finished batch (to write it before the next one starts)."""
    from rich.progress import Progress

    gen = torch.Generator().manual_seed(seed)
    chain = ldm.make_sampler(sampler, sampling_steps, eta)
    structures: list = []
    with Progress(disable=not show_progress, transient=False) as bar:
        task = bar.add_task("sampling", total=num_samples * chain.num_steps)
        while len(structures) < num_samples:
            n = min(batch_size, num_samples - len(structures))
            counts = (
                torch.full((n,), num_atoms, dtype=torch.long)
                if num_atoms
                else ldm.sample_num_atoms(n, gen)
            )
            batch, _ = ldm.generate(
                counts,
                chain,
                gen,
                use_ema=use_ema,
                progress=lambda k, n=n: bar.advance(task, k * n),
            )
            done = batch.to_structures()
            if on_batch is not None:
                on_batch(done)
            structures += done
    return structures


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="sample")
def main(cfg: DictConfig) -> str:
    from crystalrl.early_stop import stops_cleanly

    with stops_cleanly(None):
        return run(cfg)


def run(cfg: DictConfig) -> str:
    """The command's work, its settings and output folder checked before the model loads."""
    from crystalrl.checks import check_sample_config
    from crystalrl.ldm.module import load_ldm
    from crystalrl.output_paths import SampleWriter, prepare_sample_folder

    check_sample_config(cfg)
    folder = prepare_sample_folder(cfg.output_dir, bool(cfg.get("overwrite", False)))
    if cfg.num_threads:
        torch.set_num_threads(int(cfg.num_threads))
    ldm = load_ldm(cfg.ldm_ckpt_path, key="ldm_ckpt_path")
    writer = SampleWriter(folder, cfg.write_cifs)
    start = time.perf_counter()
    structures = generate_structures(
        ldm,
        int(cfg.num_samples),
        int(cfg.batch_size),
        cfg.sampler,
        int(cfg.sampling_steps),
        float(cfg.eta),
        cfg.num_atoms,
        int(cfg.seed),
        cfg.use_ema,
        on_batch=writer.add,
    )
    elapsed = time.perf_counter() - start
    record = {
        "num_samples": len(structures),
        "failed": sum(s is None for s in structures),
        "ldm_ckpt_path": str(cfg.ldm_ckpt_path),
        "sampler": cfg.sampler,
        "sampling_steps": int(cfg.sampling_steps),
        "eta": float(cfg.eta),
        "seed": int(cfg.seed),
        "seconds": round(elapsed, 2),
    }
    path = writer.finish(structures, record)
    failed = sum(s is None for s in structures)
    print(
        f"Wrote {len(structures) - failed} structures to {cfg.output_dir} ({path.name}); "
        f"{failed} failed to decode"
    )
    print(
        f"Sampling speed: {len(structures) / elapsed:.1f} structures/s "
        f"({cfg.sampler}, {cfg.sampling_steps} steps, {elapsed:.1f} s)"
    )
    return str(path)


def cli() -> None:
    """Console script ``crystalrl-sample``; ``python -m crystalrl.sample``
    runs it too, so the two never differ."""
    main()


if __name__ == "__main__":
    cli()
