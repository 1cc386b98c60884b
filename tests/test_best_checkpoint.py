"""One best-*.ckpt after a resume: ``last.ckpt`` is written before the same step's
validation saves a best file, so a run stopped between the two resumed with a record that
did not know that file, and a second best file stayed beside the next one."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel

from crystalrl.best_checkpoint import OneBestCheckpoint


class _Improving(BoringModel):
    """Validation score = the step: every validation is a new best."""

    def validation_step(self, batch, batch_idx):
        out = super().validation_step(batch, batch_idx)
        self.log("val/reward", float(self.global_step))
        return out


def _fit(folder, best: ModelCheckpoint, max_steps: int, ckpt_path=None) -> None:
    last = ModelCheckpoint(dirpath=folder, filename="last", every_n_train_steps=2)
    trainer = L.Trainer(
        max_steps=max_steps,
        max_epochs=-1,
        val_check_interval=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        callbacks=[best, last],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(_Improving(), ckpt_path=ckpt_path)


def _best(cls, folder) -> ModelCheckpoint:
    return cls(dirpath=folder, filename="best-{step:05d}", monitor="val/reward", mode="max")


@pytest.mark.parametrize(("cls", "left"), [(ModelCheckpoint, 2), (OneBestCheckpoint, 1)])
def test_a_resume_past_an_unrecorded_best_keeps_one_best_file(tmp_path, cls, left):
    torch.manual_seed(0)
    _fit(tmp_path, _best(cls, tmp_path), max_steps=2)  # last.ckpt at 2 predates best at 2
    assert sorted(p.name for p in tmp_path.glob("best-*")) == ["best-step=00002.ckpt"]
    best = _best(cls, tmp_path)
    _fit(tmp_path, best, max_steps=6, ckpt_path=str(tmp_path / "last.ckpt"))
    files = sorted(p.name for p in tmp_path.glob("best-*"))
    assert len(files) == left, files  # Lightning's own class leaves step 2's file behind
    assert files[-1] == "best-step=00006.ckpt" and best.best_model_path.endswith(files[-1])


def _saved(path, step: int, score: float, key: str) -> None:
    torch.save(
        {"global_step": step, "callbacks": {key: {"current_score": torch.tensor(score)}}}, path
    )


def test_files_from_steps_being_rerun_are_removed_and_earlier_ones_ranked(tmp_path):
    cb = _best(OneBestCheckpoint, tmp_path)
    assert cb.state_key.startswith("ModelCheckpoint{")  # earlier runs' records still load
    recorded = tmp_path / "best-step=00004.ckpt"
    _saved(recorded, 4, 0.5, cb.state_key)
    cb.best_k_models = {str(recorded): torch.tensor(0.5)}
    _saved(tmp_path / "best-step=00006.ckpt", 6, 0.7, cb.state_key)  # before step 6: better
    _saved(tmp_path / "best-step=00009.ckpt", 9, 0.9, cb.state_key)  # after the resume point
    (tmp_path / "last.ckpt").write_bytes(b"")  # not of the pattern: never touched
    cb.adopt_files(step=8, resumed_from=str(tmp_path / "last.ckpt"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best-step=00006.ckpt", "last.ckpt"]
    assert cb.best_model_path == str(tmp_path / "best-step=00006.ckpt")
    assert float(cb.best_model_score) == pytest.approx(0.7)
    assert cb.kth_best_model_path == cb.best_model_path


def test_a_recorded_file_that_is_gone_is_forgotten(tmp_path):
    cb = _best(OneBestCheckpoint, tmp_path)
    cb.best_k_models = {str(tmp_path / "best-step=00002.ckpt"): torch.tensor(0.5)}
    cb.adopt_files(step=4)
    assert cb.best_k_models == {} and cb.best_model_path == ""
