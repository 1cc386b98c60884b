"""Generate crystals with a trained (or RL-tuned) LDM.

``python -m crystalrl.sample ldm_ckpt_path='${hub:mp_20_ldm_base}' num_samples=1000 \
    batch_size=500 output_dir=out/ sampler=ddim sampling_steps=50``

Writes one CIF per structure and ``samples.json.gz`` (a JSON list of pymatgen structure
dicts, what ``crystalrl.evaluate`` reads). A structure the VAE decodes to an impossible
lattice is recorded as ``null`` in the JSON and has no CIF.
"""

from __future__ import annotations

import time
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from crystalrl.config import CONFIG_DIR
from crystalrl.metrics.structures_io import write_structures_json


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
) -> list:
    """pymatgen structures (None where decoding failed), drawn in batches."""
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
            structures += batch.to_structures()
    return structures


def write_structures(structures: list, output_dir: str | Path, write_cifs: bool = True) -> Path:
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if write_cifs:
        for i, s in enumerate(structures):
            if s is not None:
                s.to(filename=str(out / f"{i:06d}_{s.composition.reduced_formula}.cif"))
    return write_structures_json(structures, out / "samples.json.gz")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="sample")
def main(cfg: DictConfig) -> str:
    from crystalrl.ldm.module import load_ldm

    if cfg.num_threads:
        torch.set_num_threads(int(cfg.num_threads))
    ldm = load_ldm(cfg.ldm_ckpt_path, key="ldm_ckpt_path")
    start = time.perf_counter()
    structures = generate_structures(
        ldm,
        cfg.num_samples,
        cfg.batch_size,
        cfg.sampler,
        cfg.sampling_steps,
        cfg.eta,
        cfg.num_atoms,
        cfg.seed,
        cfg.use_ema,
    )
    elapsed = time.perf_counter() - start
    path = write_structures(structures, cfg.output_dir, cfg.write_cifs)
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
