from __future__ import annotations

import pytest
import yaml

from crystalrl.checkpoint_registry import UnknownCheckpointError, load_registry, resolve, sha256_of


@pytest.fixture
def registry(tmp_path):
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"weights")
    reg = tmp_path / "registry.yaml"
    reg.write_text(
        yaml.safe_dump(
            {
                "checkpoints": {
                    "tiny": {"file": "model.ckpt", "sha256": sha256_of(ckpt)},
                    "other": {"file": "missing.ckpt"},
                }
            }
        )
    )
    return reg, ckpt


def test_registered_name_resolves_to_verified_file(registry):
    reg, ckpt = registry
    assert resolve("tiny", reg) == str(ckpt.resolve())


def test_existing_path_passes_through(registry, tmp_path):
    reg, _ = registry
    own = tmp_path / "mine.ckpt"
    own.write_bytes(b"x")
    assert resolve(str(own), reg) == str(own)


def test_unknown_name_lists_known_names(registry):
    reg, _ = registry
    with pytest.raises(UnknownCheckpointError, match=r"Known checkpoints.*other, tiny"):
        resolve("mp_20_nothing", reg)


def test_checksum_mismatch_and_missing_file_are_errors(registry):
    reg, ckpt = registry
    ckpt.write_bytes(b"tampered")
    with pytest.raises(ValueError, match="sha256"):
        resolve("tiny", reg)
    with pytest.raises(FileNotFoundError, match="other"):
        resolve("other", reg)


def test_shipped_registry_entries_verify():
    from crystalrl.checkpoint_registry import load_registry

    for name in load_registry():
        assert resolve(name)


def test_register_writes_a_verifiable_entry(tmp_path):
    from crystalrl.checkpoint_registry import load_registry, register

    reg = tmp_path / "registry.yaml"
    ckpt = tmp_path / "sub" / "m.ckpt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"abc")
    register("m", ckpt, command="python -m x", quality={"match_rate": 0.9}, registry=reg)
    entry = load_registry(reg)["m"]
    assert entry["file"] == "sub/m.ckpt" and entry["quality"] == {"match_rate": 0.9}
    assert resolve("m", reg) == str(ckpt.resolve())
    with pytest.raises(ValueError, match="must live under"):
        register("x", tmp_path.parent / "elsewhere.ckpt", command="c", registry=reg)


@pytest.mark.parametrize("name", sorted(load_registry()))
def test_every_shipped_checkpoint_loads_with_todays_code(name):
    """Checkpoints store their modules' options: today's modules must take all of them
    (when one is removed, ``hub reexport`` rewrites the files that store it)."""
    from crystalrl.ldm.module import load_ldm
    from crystalrl.predictor import load_predictor
    from crystalrl.vae.module import load_vae

    loader = load_vae if name.endswith("_vae") else load_ldm
    if "predictor" in name:
        loader = load_predictor
    module = loader(resolve(name))
    assert not module.training and sum(p.numel() for p in module.parameters()) > 0


def test_hub_command_registers_and_verifies(tmp_path, monkeypatch, capsys):
    from crystalrl.hub import main

    monkeypatch.setenv("CRYSTALRL_REGISTRY", str(tmp_path / "registry.yaml"))
    (tmp_path / "m.ckpt").write_bytes(b"abc")
    assert main(["register", "m", str(tmp_path / "m.ckpt"), "--command", "python -m x"]) == 0
    assert main(["verify"]) == 0
    out = capsys.readouterr().out
    assert "registered m: m.ckpt" in out and "m.ckpt  ok" in out


def test_reexport_rewrites_the_options_keeps_every_tensor_and_only_two_registry_lines(
    tiny_vae_ckpt, tmp_path, monkeypatch
):
    import torch

    from crystalrl.hub import main
    from crystalrl.vae.module import load_vae

    vae = load_vae(tiny_vae_ckpt)
    ckpt = tmp_path / "vae.ckpt"  # fp16, and only the options that differ from the defaults
    state = {k: v.half() for k, v in vae.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"model": dict(vae.hparams.model)}}, ckpt)
    reg = tmp_path / "registry.yaml"
    by_hand = "    notes: >-\n      written by hand: kept as it is\n"
    reg.write_text(
        f"checkpoints:\n  tiny:\n    file: vae.ckpt\n    sha256: {sha256_of(ckpt)}\n"
        f"    size_mb: 99.0\n{by_hand}"
    )
    monkeypatch.setenv("CRYSTALRL_REGISTRY", str(reg))
    assert main(["reexport", "tiny"]) == 0
    after = torch.load(ckpt, weights_only=True)
    assert after["hyper_parameters"] == dict(load_vae(str(ckpt)).hparams)
    assert after["hyper_parameters"]["lr"] == vae.hparams.lr  # a default, now recorded
    assert list(after["state_dict"]) == list(state)
    for name, tensor in state.items():
        assert after["state_dict"][name].dtype == torch.float16
        assert torch.equal(after["state_dict"][name].view(torch.int16), tensor.view(torch.int16))
    assert resolve("tiny", reg) == str(ckpt.resolve())  # the new sha256
    assert load_registry(reg)["tiny"]["size_mb"] == round(ckpt.stat().st_size / 1e6, 2)
    assert reg.read_text().endswith(by_hand)
