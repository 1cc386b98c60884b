"""A checkpoint of another stage given to a key is named as such (an LDM checkpoint as
``vae_ckpt_path`` used to fail with ``unexpected keyword argument 'vae_ckpt_path'``)."""

from __future__ import annotations

import pytest
import torch

from crystalrl.checkpoint_kind import checkpoint_kind
from crystalrl.checkpoint_registry import UnreadableCheckpointError


def _save(tmp_path, name: str, hparams: dict, **extra) -> str:
    path = tmp_path / f"{name}.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": hparams, **extra}, path)
    return str(path)


@pytest.mark.parametrize(
    ("ckpt", "kind"),
    [
        ({"hyper_parameters": {"denoiser": {}, "vae_ckpt_path": None}}, "LDM"),
        ({"hyper_parameters": {"model": {}, "loss_weights": {}}}, "VAE"),
        ({"hyper_parameters": {"target_names": ["band_gap"], "vae_ckpt_path": "x"}}, "predictor"),
        ({"hyper_parameters": {"ldm_ckpt_path": "x"}, "ldm_hyper_parameters": {}}, "RL"),
        ({"hyper_parameters": {"lr": 1e-3}}, None),
    ],
)
def test_the_stage_of_a_checkpoint_is_told_by_its_hyper_parameters(ckpt, kind):
    assert checkpoint_kind(ckpt) == kind


def test_an_ldm_checkpoint_as_vae_ckpt_path_is_named(tmp_path):
    from crystalrl.config_values import load_vae_or_none

    ldm = _save(tmp_path, "ldm", {"denoiser": {}, "diffusion": {}, "vae_ckpt_path": None})
    with pytest.raises(UnreadableCheckpointError) as err:
        load_vae_or_none(ldm)
    message = str(err.value)
    assert message.startswith(f"vae_ckpt_path={ldm!r}: {ldm} is an LDM checkpoint")
    assert "takes a VAE checkpoint" in message and "vae_ckpt_path=null" in message
    assert "unexpected keyword" not in message


def test_a_vae_checkpoint_as_an_ldm_is_named(tmp_path):
    from crystalrl.ldm.module import load_ldm

    vae = _save(tmp_path, "vae", {"model": {}, "loss_weights": {}})
    with pytest.raises(UnreadableCheckpointError, match=r"ldm_ckpt_path=.* is a VAE checkpoint"):
        load_ldm(vae, key="ldm_ckpt_path")


def test_an_rl_checkpoint_is_still_an_ldm(tmp_path):
    from crystalrl.checkpoint_kind import check_kind

    rl = {"hyper_parameters": {"ldm_ckpt_path": "x"}, "ldm_hyper_parameters": {}}
    check_kind(rl, ("LDM", "RL"), "unused", "ldm_ckpt_path")  # no error
