"""Evaluate generated structures: uniqueness, novelty, stability, validity, diversity.

``python -m crystalrl.evaluate structure_path=DIR_OR_JSON reference_dataset=mp-20
output_file=FILE.csv [--json]`` writes one row per structure and prints the rates
(a rich table, or one JSON object with ``--json``).
"""

from __future__ import annotations

import json
import time
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from crystalrl.cli import json_output, run_command
from crystalrl.config import CONFIG_DIR
from crystalrl.config_values import (
    load_vae_or_none,
    optional,
    potential_file,
    potential_spec,
)
from crystalrl.evaluation import (
    DIVERSITY_METRICS,
    add_predictions,
    add_relaxed,
    evaluate_structures,
    finite_or_none,
    print_summary,
    warn_unsupported,
)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate")
def main(cfg: DictConfig) -> dict:
    from crystalrl.checks import check_evaluate_config
    from crystalrl.metrics.structures_io import read_structure_input
    from crystalrl.output_paths import writable_file

    check_evaluate_config(cfg)  # numbers and the output path before any work
    if cfg.reference_dataset:  # a missing dataset stops here, before any model loads
        from crystalrl.early_stop import reference_found

        reference_found(str(cfg.reference_dataset), cfg.paths.data_dir, cfg.paths.output_dir)
    if cfg.output_file:
        writable_file(cfg.output_file, "output_file")
    start = time.perf_counter()
    inputs = read_structure_input(cfg.structure_path, cfg.num_structures)
    structures, names = inputs.structures, inputs.names
    vae = None
    if any(m in cfg.metrics for m in DIVERSITY_METRICS):
        vae = load_vae_or_none(optional(cfg, "vae_ckpt_path"))
    potential = potential_spec(cfg)
    m = evaluate_structures(
        structures,
        reference=str(cfg.reference_dataset),
        metrics=list(cfg.metrics),
        vae=vae,
        potential=potential,
        hull=OmegaConf.to_container(cfg.hull, resolve=True),
        metastable_threshold=cfg.metastable_threshold,
        min_hull_support=cfg.min_hull_support,
        match_timeout=cfg.match_timeout,
        num_workers=cfg.num_workers,
        data_dir=cfg.paths.data_dir,
        cache_dir=cfg.paths.cache_dir,
        progress=not json_output(),
    )
    frame = m.to_dataframe()
    warn_unsupported(frame, m.min_hull_support)
    frame.insert(0, "name", names)
    frame.insert(1, "skip_reason", inputs.reasons)  # why an input is None ("" if read)
    summary: dict[str, Any] = m.summary()
    if cfg.relax:
        options = OmegaConf.to_container(cfg.relax_options, resolve=True)
        relax_model = None
        if cfg.get("relax_with"):
            from crystalrl.potentials import make_energy_model

            relax_model = make_energy_model(potential_file(cfg.relax_with))
        add_relaxed(frame, summary, m, options, not json_output(), relax_model)
    if cfg.predictor:
        summary.update(
            add_predictions(frame, structures, cfg.predictor, cfg.target_name, cfg.target_window)
        )
    if cfg.output_file:
        from pathlib import Path

        out = Path(cfg.output_file)
        out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out, index=False)
        summary["output_file"] = str(out)
    summary["seconds"] = round(time.perf_counter() - start, 2)
    summary = {k: finite_or_none(v) for k, v in summary.items()}
    summary["seconds_by_metric"] = {k: round(v, 2) for k, v in m.timings.items() if v >= 0.01}
    if json_output():
        print(json.dumps(summary))
    else:
        print_summary(summary, f"{cfg.structure_path} vs {cfg.reference_dataset}")
        if cfg.output_file:
            print(f"per-structure results: {cfg.output_file}")
    return summary


def cli() -> None:
    """Console script ``crystalrl-evaluate``; ``python -m crystalrl.evaluate``
    runs it too, so the two never differ."""
    run_command(main)


if __name__ == "__main__":
    cli()
