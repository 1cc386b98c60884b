"""The best checkpoint of a run, kept once across resumes.

A resumed run restores its checkpoint callback's record of the best file from
``last.ckpt``. That record can be older than the folder: ``last.ckpt`` is written at the
end of a step, before that step's validation saves a new ``best-*.ckpt``, and a run
killed between the two resumes with a record that does not know the newer best. Lightning
only ever deletes the files its record names, so the unknown one stayed, and a second
``best-step=*.ckpt`` appeared beside it at the next improvement.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

log = logging.getLogger("crystalrl")


class OneBestCheckpoint(ModelCheckpoint):
    """:class:`ModelCheckpoint` that, when a run starts, takes the files of its own name
    pattern in its folder into its record: a file saved at or before the step the run
    resumes from is ranked by the score saved in it; one saved after it belongs to the
    steps being run again and is removed. The folder then holds ``save_top_k`` of them."""

    @property
    def state_key(self) -> str:
        # the key Lightning's own class saves under, so that runs from before this class
        # resume with their record, and their best files are read
        return super().state_key.replace(type(self).__qualname__, "ModelCheckpoint", 1)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        # a fresh start leaves earlier files alone: only a resume makes them its own
        if trainer.ckpt_path and trainer.is_global_zero:
            self.adopt_files(trainer.global_step, trainer.ckpt_path)

    def _own_files(self) -> list[Path]:
        """Files in ``dirpath`` written by this callback's ``filename`` pattern."""
        prefix = str(self.filename or "").split("{")[0]
        if not prefix or not self.dirpath or not Path(self.dirpath).is_dir():
            return []  # without a literal prefix another callback's files could match
        return sorted(Path(self.dirpath).glob(f"{prefix}*{self.FILE_EXTENSION}"))

    def adopt_files(self, step: int, resumed_from: str | None = None) -> None:
        """Bring the record in line with the folder; ``step`` is the step the run starts at,
        and the checkpoint it resumed from, ``resumed_from``, is never touched."""
        if self.monitor is None or self.save_top_k < 1:
            return
        keep = {str(Path(resumed_from).absolute())} if resumed_from else set()
        known = {str(Path(p).absolute()) for p in self.best_k_models}
        for file in self._own_files():
            path = str(file.absolute())
            if path in known or path in keep:
                continue
            saved_step, score = self._step_and_score(file)
            if saved_step is not None and saved_step > step:
                log.info(
                    "removing %s: saved after step %d, which this run resumes from", file, step
                )
                file.unlink(missing_ok=True)
            elif score is None:
                log.warning("%s holds no %s score; left as it is", file, self.monitor)
            else:
                self.best_k_models[str(file)] = score
        self._keep_top_k(keep)

    def _step_and_score(self, file: Path) -> tuple[int | None, torch.Tensor | None]:
        """The step a file was saved at and the score this callback saved in it."""
        try:
            ckpt: dict[str, Any] = torch.load(
                file, map_location="cpu", weights_only=True, mmap=True
            )
        except Exception:  # a file cut short by the kill that made it an orphan
            return None, None
        state = (ckpt.get("callbacks") or {}).get(self.state_key) or {}
        score, step = state.get("current_score"), ckpt.get("global_step")
        step = None if step is None else int(step)
        return step, (None if score is None else torch.as_tensor(score))

    def _keep_top_k(self, keep: set[str]) -> None:
        """Drop all but the ``save_top_k`` best of the record, and their files; forget
        recorded files that are gone (the run was killed after removing one)."""
        for path in [p for p in self.best_k_models if not Path(p).is_file()]:
            self.best_k_models.pop(path)
        ranked = sorted(
            self.best_k_models,
            key=lambda p: float(self.best_k_models[p]),
            reverse=self.mode == "max",
        )
        for path in ranked[self.save_top_k :]:
            self.best_k_models.pop(path)
            if str(Path(path).absolute()) not in keep:
                Path(path).unlink(missing_ok=True)
        kept = ranked[: self.save_top_k]
        self.best_model_path = kept[0] if kept else ""
        self.best_model_score = self.best_k_models[kept[0]] if kept else None
        if len(kept) == self.save_top_k:
            self.kth_best_model_path, self.kth_value = kept[-1], self.best_k_models[kept[-1]]
        else:  # not full: the next score enters whatever it is
            self.kth_best_model_path = ""
            self.kth_value = torch.tensor(-torch.inf if self.mode == "max" else torch.inf)
