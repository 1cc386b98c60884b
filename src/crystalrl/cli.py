"""Small helpers for the Hydra command-line entry points."""

from __future__ import annotations

import sys


def pop_flag(flag: str) -> bool:
    """Remove a ``--flag`` Hydra would reject from ``sys.argv``; tell whether it was there."""
    if flag in sys.argv[1:]:
        sys.argv = [a for a in sys.argv if a != flag]
        return True
    return False
