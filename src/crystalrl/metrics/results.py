"""One batch's metrics as reward components read them: a frozen, typed record.

A reward component names the metrics it needs (``required_metrics``) and reads them from
this record by attribute, so both what a component asks for and what it uses are fields a
reader (and a type checker) can follow, and nothing a component does can change the
values another component sees. Every per-structure metric of the registry has a field of
its own name; a field is ``None`` when its metric was not computed for the batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from crystalrl.reference import Reference


@dataclass(frozen=True)
class MetricResults:
    """Per-structure metric arrays (length B, ``None`` = not computed) and their context."""

    unique: np.ndarray | None = None
    novel: np.ndarray | None = None
    energy: np.ndarray | None = None
    e_above_hull: np.ndarray | None = None
    is_metastable: np.ndarray | None = None
    is_stable: np.ndarray | None = None
    MSUN: np.ndarray | None = None
    SUN: np.ndarray | None = None
    composition_validity: np.ndarray | None = None
    structure_validity: np.ndarray | None = None
    atomic_density: np.ndarray | None = None
    shortest_distance: np.ndarray | None = None
    contact_ratio: np.ndarray | None = None
    physical: np.ndarray | None = None
    #: Reference compounds in each structure's chemical system (subsystems included).
    hull_support: np.ndarray | None = None
    is_supported: np.ndarray | None = None
    MSUN_supported: np.ndarray | None = None
    MSUN_credible: np.ndarray | None = None
    MSUN_deep_below_hull: np.ndarray | None = None
    is_single_element: np.ndarray | None = None
    #: VAE features of the valid structures (rows follow the valid ones, in order).
    features: Mapping[str, torch.Tensor] | None = None
    #: Reduced formula of each structure (``None`` for failed ones).
    formulas: tuple[str | None, ...] = ()
    #: The reference the batch was measured against (novelty, hull), if one was used.
    reference: Reference | None = None
    #: VAE features of the reference, present with ``features``.
    reference_features: Mapping[str, torch.Tensor] | None = None
    #: Batch averages of the per-structure metrics (``avg_unique``, ...), for logging.
    averages: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def metric_names(cls) -> tuple[str, ...]:
        """Metrics this record carries: the names a component may list as required."""
        context = {"formulas", "reference", "reference_features", "averages"}
        return tuple(f.name for f in fields(cls) if f.name not in context)

    @classmethod
    def from_values(cls, values: Mapping[str, Any], **context: Any) -> MetricResults:
        """The record of computed metric ``values`` by name (others are ignored)."""
        names = set(cls.metric_names())
        return cls(**{k: v for k, v in values.items() if k in names}, **context)

    def require(self, name: str) -> Any:
        """A metric's value; an error naming it when the batch did not compute it."""
        value = getattr(self, name)
        if value is None:
            raise ValueError(
                f"metric '{name}' was not computed for this batch: "
                "list it in the reward component's required_metrics"
            )
        return value
