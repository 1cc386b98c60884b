"""Evaluate a list of generated structures: the metrics, predicted properties and the same
metrics of their relaxed cells, as one per-structure frame and one summary.

What ``crystalrl.evaluate`` computes, here so that other commands and scripts judge
structures the same way without running the command.
"""

from __future__ import annotations

import copy
import logging
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from crystalrl.potentials import EnergyModel

log = logging.getLogger("crystalrl")

DIVERSITY_METRICS = ("structure_diversity", "composition_diversity")


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


def add_relaxed(
    frame,
    summary: dict,
    m: Any,
    options: dict,
    progress: bool = True,
    relax_model: EnergyModel | None = None,
) -> None:
    """Relax the structures of ``m`` (a computed ``Metrics``) and add the same metrics of
    the relaxed structures as ``relaxed_*`` columns of ``frame`` and keys of ``summary``.

    Relaxation uses ``relax_model``, by default the potential of the hull (the reference's
    ``energy_model``); the relaxed E_hull is always the hull potential's single point of
    each relaxed cell, computed as the reference energies were. A ``relax_model`` apart
    from the hull's lets one potential relax and another judge, so that a structure
    that exploits the first is not praised by it.
    Uniqueness and novelty are re-judged on the relaxed cells against the same reference.
    A failed relaxation is a failed structure in the relaxed rates.
    """
    from crystalrl.evaluation.relaxed import (
        relax_generated,
        relaxation_frame,
        relaxation_summary,
    )

    reference, n = m.reference, len(m.structures)
    model = relax_model if relax_model is not None else reference.energy_model
    results = relax_generated(m.structures, model, progress, **options)
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
    summary["relaxed_with"] = model.key
    summary["judged_by"] = reference.energy_model.key


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
