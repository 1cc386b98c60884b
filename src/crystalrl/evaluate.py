"""Evaluate generated structures: uniqueness, novelty, stability, validity, diversity.

``python -m crystalrl.evaluate structure_path=DIR_OR_JSON reference_dataset=mp-20
output_file=FILE.csv [--json]`` writes one row per structure and prints the rates
(a rich table, or one JSON object with ``--json``).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
import warnings
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from crystalrl.cli import json_output, run_command
from crystalrl.config import CONFIG_DIR

log = logging.getLogger("crystalrl")

DIVERSITY_METRICS = ("structure_diversity", "composition_diversity")
#: Summary rows: (key, label) in the order they are printed.
SUMMARY_ROWS = (
    ("avg_unique", "unique"),
    ("avg_novel", "novel"),
    ("avg_is_metastable", "metastable (E_hull ≤ threshold)"),
    ("avg_is_stable", "stable (E_hull ≤ 0)"),
    ("avg_MSUN", "MSUN"),
    ("avg_MSUN_supported", "MSUN in supported systems (≥ min_hull_support compounds)"),
    ("avg_MSUN_credible", "credible MSUN (supported, ≥ 2 elements, E_hull ≥ -0.1)"),
    ("avg_SUN", "SUN"),
    ("avg_is_supported", "in supported chemical systems"),
    ("avg_physical", "contact-physical (contact ratio ≥ 0.7)"),
    ("median_shortest_distance", "median shortest distance (Å)"),
    ("median_contact_ratio", "median contact ratio"),
    ("avg_structure_validity", "valid structure (distances > 0.5 Å, volume > 0.1 Å³)"),
    ("avg_composition_validity", "valid composition (SMACT)"),
    ("structure_diversity", "structure diversity"),
    ("composition_diversity", "composition diversity"),
    ("avg_e_above_hull", "mean E_hull (eV/atom)"),
    ("avg_atomic_density", "mean atomic density (atoms/Å³)"),
    # signs of reward hacking
    ("avg_is_single_element", "single-element cells"),
    ("avg_MSUN_deep_below_hull", "MSUN hits below -0.2 eV/atom"),
    ("num_distinct_formulas", "distinct formulas"),
    ("num_distinct_systems", "distinct chemical systems"),
    ("density_vs_reference", "atomic density / reference's"),
)
#: What ``relax=true`` adds below the side-by-side rows: (key, label).
RELAX_ROWS = (
    ("relaxed_mean_displacement", "mean displacement in relaxation (Å)"),
    ("relaxed_mean_energy_change", "mean energy change in relaxation (eV/atom)"),
    ("relaxed_not_converged", "relaxations not converged"),
    ("relaxed_failed", "relaxations failed"),
    ("relaxed_seconds_per_structure", "relaxation seconds per structure"),
)


def _optional(cfg: DictConfig, key: str) -> Any:
    """A config value, or ``None`` when it is missing or its interpolation fails (the
    default ``${hub:mp_20_vae}`` of an installation without the shipped checkpoints)."""
    from omegaconf.errors import InterpolationResolutionError

    try:
        return OmegaConf.select(cfg, key, throw_on_resolution_failure=True)
    except InterpolationResolutionError as exc:
        log.warning("%s does not resolve (%s)", key, exc)
        return None


def potential_spec(cfg: DictConfig) -> dict | None:
    """The ``potential`` node as a plain mapping for :func:`crystalrl.potentials.make_energy_model`.

    ``None`` (CHGNet) when the group was dropped (``~potential``) without a replacement. A
    plain mapping, not an instantiated model, so that equal configs share one cached
    reference in the process and one energy cache on disk.
    """
    node = OmegaConf.select(cfg, "potential")
    return OmegaConf.to_container(node, resolve=True) if node is not None else None


def load_vae_or_none(path: str | None, key: str = "vae_ckpt_path"):
    """The VAE of the feature metrics, or ``None`` when none is configured (``key=null``).

    A configured VAE that does not load is an error, not a warning: metrics silently
    skipped because of a typo in a path look like a finished evaluation.
    """
    if not path:
        return None
    from crystalrl.checkpoint_registry import ChecksumMismatchError, UnreadableCheckpointError
    from crystalrl.vae.module import load_vae

    try:
        return load_vae(str(path), key=key)
    # the checkpoint errors, which name key and path already; kept as their own types
    except (FileNotFoundError, ChecksumMismatchError, UnreadableCheckpointError) as exc:
        raise type(exc)(f"{exc} (or {key}=null to skip the metrics that need a VAE)") from exc


def evaluate_structures(
    structures: list,
    reference: Any,
    metrics: list[str],
    vae: Any = None,
    potential: Any = None,
    hull: dict | None = None,
    metastable_threshold: float = 0.1,
    min_hull_support: int | None = None,
    match_timeout: float = 30.0,
    num_workers: int | None = None,
    data_dir: str | None = None,
    cache_dir: str | None = None,
    progress: bool = True,
):
    """A computed :class:`~crystalrl.metrics.metrics.Metrics` for the structures.

    Feature metrics are dropped with a warning when there is no VAE.
    """
    from crystalrl.metrics.metrics import Metrics

    metrics = list(metrics)
    if vae is None and any(m in metrics for m in DIVERSITY_METRICS):
        warnings.warn(
            "no VAE checkpoint: structure/composition diversity are skipped", stacklevel=2
        )
        metrics = [m for m in metrics if m not in DIVERSITY_METRICS]
    options: dict[str, Any] = {"hull": dict(hull or {})}
    if data_dir:
        options["data_dir"] = str(data_dir)
    if cache_dir:
        options["cache_dir"] = str(cache_dir)
    m = Metrics(
        metrics,
        reference=reference,
        vae=vae,
        potential=potential,
        metastable_threshold=metastable_threshold,
        **({} if min_hull_support is None else {"min_hull_support": int(min_hull_support)}),
        match_timeout=match_timeout,
        num_workers=num_workers,
        progress=progress,
        reference_options=options,
    )
    m.compute(structures)
    return m


def add_predictions(frame, structures: list, predictor: Any, target_name: str, window) -> dict:
    """Predicted property columns (and the fraction inside ``window``) for property runs;
    ``predictor`` is a predictor, or the ``predictor`` key's checkpoint name or path."""
    import torch

    from crystalrl.rewards.components import PredictorReward

    if isinstance(predictor, str):
        from crystalrl.predictor import load_predictor

        predictor = load_predictor(predictor, key="predictor")
    reward = PredictorReward(predictor, target_name)
    reward.setup()
    pred = reward.compute(structures).numpy().astype(np.float64)
    valid = np.array([s is not None for s in structures])
    pred[~valid] = np.nan
    frame[f"pred_{target_name}"] = pred
    out: dict[str, float] = {f"avg_pred_{target_name}": float(np.nanmean(pred))}
    if window is not None:
        lo, hi = (float(x) for x in window)
        inside = valid & (pred >= lo) & (pred <= hi)
        frame["in_window"] = inside
        out["avg_in_window"] = float(torch.as_tensor(inside).float().mean())
    return out


def add_relaxed(frame, summary: dict, m: Any, options: dict, progress: bool = True) -> None:
    """Relax the structures of ``m`` (a computed ``Metrics``) and add the same metrics of
    the relaxed structures as ``relaxed_*`` columns of ``frame`` and keys of ``summary``.

    Relaxation uses the potential of the hull (the reference's ``energy_model``), and the
    relaxed E_hull comes from that model's single point of each relaxed cell, computed as
    the reference energies were: relaxed and single-point figures mix no potentials.
    Uniqueness and novelty are re-judged on the relaxed cells against the same reference.
    A failed relaxation is a failed structure in the relaxed rates.
    """
    from crystalrl.relax import relax_generated, relaxation_frame, relaxation_summary

    reference, n = m.reference, len(m.structures)
    results = relax_generated(m.structures, reference.energy_model, progress, **options)
    relaxed = copy.copy(m)  # the same metrics, settings and loaded reference; own results
    relaxed.compute([r.structure for r in results])
    for name, column in relaxed.to_dataframe().items():
        if name != "formula":
            frame[f"relaxed_{name}"] = column.to_numpy()
    record = relaxation_frame(results, [""] * n)
    for name in ("steps", "converged", "displacement", "seconds", "error"):
        frame[f"relaxed_{name}"] = record[name].to_numpy()
    values = {k: v for k, v in relaxed.summary().items() if k != "num_structures"}
    summary.update({f"relaxed_{k}": v for k, v in values.items()})
    summary.update({f"relaxed_{k}": v for k, v in relaxation_summary(results).items()})


def warn_unsupported(frame, min_hull_support: int) -> None:
    """Name the chemical systems whose E_hull the reference barely supports: a hit there may
    be a known compound the reference lacks rather than a discovery."""
    if "hull_support" not in frame:
        return
    low = frame[frame["valid"] & (frame["hull_support"] < min_hull_support)]
    if not len(low):
        return
    from pymatgen.core import Composition

    systems = low["formula"].map(lambda f: "-".join(sorted(str(e) for e in Composition(f))))
    counts = systems.value_counts()
    support = dict(zip(systems, low["hull_support"], strict=True))
    top = ", ".join(f"{s} ({support[s]} compounds, {n}×)" for s, n in counts.head(5).items())
    log.warning(
        "%d structures lie in chemical systems with fewer than %d reference compounds "
        "(min_hull_support); their E_hull is weakly supported. Most frequent: %s",
        len(low),
        min_hull_support,
        top,
    )


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _format_value(key: str, v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if key.startswith("avg_") and key not in ("avg_e_above_hull", "avg_atomic_density"):
        return f"{100 * v:.1f} %"
    if key.startswith("num_"):
        return f"{v:.0f}"
    return f"{v:.4f}"


def print_summary(summary: dict, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    relaxed = any(k.startswith("relaxed_") for k in summary)
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("single point" if relaxed else "value", justify="right")
    if relaxed:
        table.add_column("relaxed", justify="right")
    for key, label in SUMMARY_ROWS:
        if key in summary:
            row = [label, _format_value(key, summary[key])]
            if relaxed:
                row.append(_format_value(key, summary.get(f"relaxed_{key}")))
            table.add_row(*row)
    for key, label in RELAX_ROWS:
        if key in summary:
            v = summary[key]
            text = str(v) if isinstance(v, int) else _format_value(key, v)
            table.add_row(label, "", text)
    for key in sorted(summary):
        if key.startswith("avg_pred_") or key == "avg_in_window":
            table.add_row(key, f"{summary[key]:.4f}")
    counts = f"{summary['num_structures']} ({summary['num_valid_structures']})"
    table.add_row("structures (valid)", counts)
    if summary.get("energy_failed") is not None:
        table.add_row("energy failed (decoded, no energy)", str(summary["energy_failed"]))
    Console().print(table)


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
        vae = load_vae_or_none(_optional(cfg, "vae_ckpt_path"))
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
        add_relaxed(frame, summary, m, options, progress=not json_output())
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
    summary = {k: _clean(v) for k, v in summary.items()}
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
