"""Judging generated structures, as ``crystalrl.evaluate`` does, for any caller.

The commands (``evaluate``, ``relax``, ``report``) parse their arguments and print; what
they compute lives here, once: :mod:`.structures` (metrics, predictions and relaxed
metrics of a list of structures), :mod:`.relaxed` (relaxing generated structures and the
record of it), :mod:`.sample_sets` (a sample set's table and summary, reusing an
evaluation's CSV) and :mod:`.summary` (the rows people read).
"""

from crystalrl.evaluation.relaxed import relax_generated, relaxation_frame, relaxation_summary
from crystalrl.evaluation.sample_sets import SampleSet, evaluate_samples, find_evaluate_csv
from crystalrl.evaluation.structures import (
    DIVERSITY_METRICS,
    add_predictions,
    add_relaxed,
    evaluate_structures,
    warn_unsupported,
)
from crystalrl.evaluation.summary import (
    RELAX_ROWS,
    SUMMARY_ROWS,
    finite_or_none,
    format_value,
    print_summary,
)

__all__ = [
    "DIVERSITY_METRICS",
    "RELAX_ROWS",
    "SUMMARY_ROWS",
    "SampleSet",
    "add_predictions",
    "add_relaxed",
    "evaluate_samples",
    "evaluate_structures",
    "find_evaluate_csv",
    "finite_or_none",
    "format_value",
    "print_summary",
    "relax_generated",
    "relaxation_frame",
    "relaxation_summary",
    "warn_unsupported",
]
