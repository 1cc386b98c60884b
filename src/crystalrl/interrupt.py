"""Stopping a training run by a signal without losing its last steps.

Lightning's own handling of Ctrl-C raises ``KeyboardInterrupt`` wherever the run happens
to be, often in the middle of a GRPO update whose inner chunks have already changed the
weights without advancing the step count: a checkpoint saved there would not resume
cleanly, so Lightning saves none. Here the first Ctrl-C only asks the run to stop; the
step in progress finishes and :func:`crystalrl.training.fit` then saves ``last.ckpt`` at a
step boundary. A second Ctrl-C interrupts at once, as before.

SIGTERM already stops Lightning at a step boundary (it raises ``SIGTERMException`` after
the step); :class:`StopOnSignal` saves ``last.ckpt`` there before the run exits.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException

#: Exit status of a run stopped by a signal, as shells report it (128 + signal number).
EXIT_STATUS = {"SIGINT": 130, "SIGTERM": 143}


class StopOnSignal(L.Callback):
    """Turn the first SIGINT into a stop after the current step; save on SIGTERM.

    ``stopped_by`` names the signal that stopped the run (``None`` when it ran to its end).
    """

    def __init__(self, last_path: str | Path):
        self.last_path = Path(last_path)
        self.stopped_by: str | None = None
        self._requested = False
        self._previous: Any = None

    # -------------------------------------------------------------- SIGINT
    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self._requested:  # the second Ctrl-C: stop now, as without this callback
            self.restore()
            raise KeyboardInterrupt
        self._requested = True
        print(
            "\nStopping after the current step and saving last.ckpt "
            "(Ctrl-C again to stop at once, without saving)",
            flush=True,
        )

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # signal handlers can only be set from the main thread (not in a notebook's worker)
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)

    def restore(self) -> None:
        """Put back the SIGINT handler that was there before the run."""
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        # under DDP every process must stop at the same step, whichever got the signal
        stop = trainer.strategy.reduce_boolean_decision(self._requested, all=False)
        if stop:
            self.stopped_by = "SIGINT"
            trainer.should_stop = True

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.restore()

    # -------------------------------------------------------------- SIGTERM
    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self.restore()
        if isinstance(exception, SIGTERMException):
            self.stopped_by = "SIGTERM"
            trainer.save_checkpoint(self.last_path)
            if trainer.is_global_zero:
                print(
                    f"Received SIGTERM: saved {self.last_path} at step {trainer.global_step}; "
                    "rerun the same command to resume",
                    flush=True,
                )
