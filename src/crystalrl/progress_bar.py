"""A progress bar for long computations outside training, or none at all.

Building a reference or relaxing a thousand samples takes minutes to tens of minutes, so
an interactive command shows its progress; a command printing JSON, a test or a training
run turns it off. (Training runs show Lightning's bar: :mod:`crystalrl.progress`.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class progress_bar:
    """A rich progress bar (or nothing) exposing ``advance(n)`` as the context value."""

    def __init__(self, enabled: bool, description: str, total: int):
        self.enabled, self.description, self.total = enabled, description, total
        self._bar: Any = None

    def __enter__(self) -> Callable[[int], None]:
        if not self.enabled:
            return lambda n=1: None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        self._bar.start()
        task = self._bar.add_task(self.description, total=self.total)
        return lambda n=1: self._bar.advance(task, n)

    def __exit__(self, *exc: Any) -> bool:
        if self._bar is not None:
            self._bar.stop()
        return False
