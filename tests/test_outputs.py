"""Outputs are checked before the work; sample folders never mix two runs; evaluate counts a
malformed structure as invalid instead of crashing; a command that stops on a user error
prints one message and leaves no empty run folder."""

from __future__ import annotations

import json
import os
import warnings

import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from crystalrl.output_paths import (
    COMPLETE_MARKER,
    PARTIAL_SAMPLES,
    SAMPLES,
    OutputPathError,
    SampleWriter,
    prepare_sample_folder,
    writable_file,
)

NACL = Structure(Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
#: What a NaN lattice looks like in a CIF (pymatgen reads it without complaint).
NAN_CIF = """data_bad
_cell_length_a nan
_cell_length_b 4.0
_cell_length_c 4.0
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'P 1'
loop_
_atom_site_type_symbol
_atom_site_label
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
Na Na0 0 0 0
Cl Cl1 0.5 0.5 0.5
"""


# ---------------------------------------------------------------------- malformed inputs
def test_nan_and_flat_cells_are_skipped_with_a_reason():
    from crystalrl.metrics.structures_io import malformed

    assert malformed(NACL) == ""
    assert Structure.from_str(NAN_CIF, fmt="cif") is not None  # pymatgen accepts it
    assert "not finite" in malformed(Structure.from_str(NAN_CIF, fmt="cif"))
    flat = Structure(Lattice([[4, 0, 0], [0, 4, 0], [4, 4, 0]]), ["Na"], [[0, 0, 0]])
    assert malformed(flat).startswith("degenerate lattice: volume")


def test_evaluate_counts_a_nan_lattice_as_invalid_and_prints_its_summary(
    tmp_path, hydra_compose, capsys
):
    from crystalrl.evaluate import main

    folder = tmp_path / "cifs"
    folder.mkdir()
    for i in range(3):
        NACL.to(filename=str(folder / f"{i}.cif"))
    (folder / "3.cif").write_text(NAN_CIF)
    out = tmp_path / "metrics.csv"
    cfg = hydra_compose(
        "evaluate",
        [
            f"structure_path={folder}",
            "reference_dataset=null",
            "vae_ckpt_path=null",
            "metrics=[unique,structure_validity,atomic_density]",
            f"output_file={out}",
        ],
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = main(cfg)
    assert any("1 degenerate lattice (row 3)" in str(w.message) for w in caught)
    assert summary["num_structures"] == 4 and summary["num_valid_structures"] == 3
    assert summary["avg_structure_validity"] == pytest.approx(3 / 4)
    frame = pd.read_csv(out, keep_default_na=False)
    assert frame["skip_reason"][3] == "degenerate lattice: a lattice vector is not finite"
    assert "structures (valid)" in capsys.readouterr().out


def test_evaluate_refuses_a_negative_num_structures_before_reading(tmp_path):
    from crystalrl.metrics.structures_io import read_structure_input

    with pytest.raises(ValueError, match=r"num_structures=-1: expected an integer ≥ 1"):
        read_structure_input(tmp_path, -1)


def test_unfinished_samples_and_foreign_cifs_are_named(tmp_path):
    from crystalrl.metrics.structures_io import read_structure_input

    writer = SampleWriter(tmp_path)
    writer.add([NACL, None])  # one finished batch, then the run was killed
    with pytest.warns(UserWarning, match="did not finish"):
        read = read_structure_input(tmp_path)
    assert read.structures[0] is not None and read.structures[1] is None
    writer.finish([NACL, None], {"num_samples": 2})
    NACL.to(filename=str(tmp_path / "old_run.cif"))  # a CIF the record does not hold
    with pytest.warns(UserWarning, match=r"the 2 \.cif files beside it are not its own"):
        assert len(read_structure_input(tmp_path).structures) == 2


# ---------------------------------------------------------------------- output folders
def test_sample_writer_writes_each_batch_and_marks_the_end(tmp_path):
    writer = SampleWriter(tmp_path)
    writer.add([NACL, None])
    assert len(list(tmp_path.glob("*.cif"))) == 1
    assert not (tmp_path / SAMPLES).exists() and not (tmp_path / COMPLETE_MARKER).exists()
    lines = (tmp_path / PARTIAL_SAMPLES).read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1]) is None
    writer.add([NACL])
    assert sorted(p.name for p in tmp_path.glob("*.cif")) == [
        "000000_NaCl.cif",
        "000002_NaCl.cif",
    ]
    writer.finish([NACL, None, NACL], {"num_samples": 3})
    assert (tmp_path / SAMPLES).is_file() and not (tmp_path / PARTIAL_SAMPLES).exists()
    assert json.loads((tmp_path / COMPLETE_MARKER).read_text())["num_samples"] == 3


def test_a_folder_with_earlier_samples_is_refused_unless_overwrite(tmp_path):
    folder = tmp_path / "out"
    (folder / ".hydra").mkdir(parents=True)  # Hydra's own files do not count
    (folder / "sample.log").write_text("")
    assert prepare_sample_folder(folder) == folder
    writer = SampleWriter(folder)
    writer.add([NACL] * 3)
    writer.finish([NACL] * 3, {})
    with pytest.raises(OutputPathError) as info:
        prepare_sample_folder(folder)
    message = str(info.value)
    assert f"output_dir={str(folder)!r}" in message and "3 .cif files" in message
    assert "overwrite=true" in message
    prepare_sample_folder(folder, overwrite=True)
    assert not list(folder.glob("*.cif")) and not (folder / SAMPLES).exists()
    assert (folder / "sample.log").exists()
    (folder / "notes.txt").write_text("mine")  # never removed, so refused either way
    with pytest.raises(OutputPathError, match="not empty"):
        prepare_sample_folder(folder, overwrite=True)
    assert (folder / "notes.txt").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_paths_are_refused_naming_the_key(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(OutputPathError, match=r"output_file=.*not writable"):
            writable_file(locked / "metrics.csv", "output_file")
        with pytest.raises(OutputPathError, match=r"output_dir=.*not writable"):
            prepare_sample_folder(locked)
    finally:
        locked.chmod(0o755)


def test_an_output_file_under_a_file_is_refused_before_evaluating(tmp_path, hydra_compose):
    from crystalrl.evaluate import main

    blocker = tmp_path / "file"
    blocker.write_text("")
    cfg = hydra_compose(
        "evaluate",
        [f"structure_path={tmp_path / 'missing'}", f"output_file={blocker / 'm.csv'}"],
    )
    # the output is judged first: the missing input would raise FileNotFoundError
    with pytest.raises(OutputPathError, match="output_file="):
        main(cfg)


# ---------------------------------------------------------------------- stopping early
def test_a_user_error_removes_the_empty_run_folder_and_prints_one_line(tmp_path):
    from crystalrl.data.parse import DatasetError
    from crystalrl.early_stop import stops_cleanly

    run = tmp_path / "train_rl" / "x"
    (run / ".hydra").mkdir(parents=True)
    (run / "train_rl.log").write_text("")
    with pytest.raises(SystemExit) as info, stops_cleanly(run):
        raise DatasetError("data.data_dir='data/mp_20': no such folder")
    assert str(info.value.code) == "Error: data.data_dir='data/mp_20': no such folder"
    assert not run.exists()
    # a folder with results stays, and a bug keeps its traceback
    (run / "checkpoints").mkdir(parents=True)
    with pytest.raises(ZeroDivisionError), stops_cleanly(run):
        raise ZeroDivisionError
    assert run.exists()


def test_train_stops_before_loading_a_model_without_datasets(tmp_path, hydra_compose, monkeypatch):
    """No CRYSTALRL_DATA_DIR and no ./data: the message names the variable and the folder."""
    from crystalrl import train_rl

    monkeypatch.delenv("CRYSTALRL_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    cfg = hydra_compose(
        "train_rl",
        [
            "experiment=rl_custom_reward",
            f"paths.log_dir={tmp_path / 'logs'}",
            "rl_module.ldm_ckpt_path=/nowhere/ldm.ckpt",
        ],  # would fail if it were loaded
    )
    run = tmp_path / "logs" / "train_rl" / "rl_custom_reward"
    (run / ".hydra").mkdir(parents=True)
    with pytest.raises(SystemExit) as info:
        train_rl.train(cfg)
    message = str(info.value.code)
    assert message.startswith("Error: data.data_dir='data/mp_20'")
    assert "CRYSTALRL_DATA_DIR" in message and "now unset" in message
    assert str(tmp_path / "data" / "mp_20") in message
    assert not run.exists()


def test_an_empty_csv_is_refused_naming_the_key_and_the_file(tmp_path):
    from crystalrl.metrics.structures_io import read_structure_input

    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ValueError, match=r"structure_path=.*empty\.csv.*as CSV"):
        read_structure_input(empty)


def test_sample_writes_marks_and_refuses_to_mix_runs(tiny_vae_ckpt, tmp_path, hydra_compose):
    import torch

    from crystalrl.ldm.exporting import export_ldm
    from crystalrl.ldm.module import LDMModule
    from crystalrl.sample import run

    torch.manual_seed(0)
    ldm = LDMModule(
        vae_ckpt_path=tiny_vae_ckpt, denoiser=dict(hidden_size=32, depth=1, num_heads=2)
    )
    raw = tmp_path / "ldm.ckpt"
    torch.save({"state_dict": ldm.state_dict(), "hyper_parameters": dict(ldm.hparams)}, raw)
    path = export_ldm(str(raw), str(tmp_path / "ldm_small.ckpt"), half=False)
    out = tmp_path / "samples"
    args = [
        f"ldm_ckpt_path={path}",
        "num_samples=3",
        "batch_size=2",
        "sampling_steps=2",
        f"output_dir={out}",
        "num_atoms=4",
    ]
    run(hydra_compose("sample", args))
    record = json.loads((out / COMPLETE_MARKER).read_text())
    assert record["num_samples"] == 3 and record["sampling_steps"] == 2
    assert (out / SAMPLES).is_file() and not (out / PARTIAL_SAMPLES).exists()
    with pytest.raises(OutputPathError, match="overwrite=true"):
        run(hydra_compose("sample", args))
    run(hydra_compose("sample", [*args, "num_samples=1", "overwrite=true"]))
    assert json.loads((out / COMPLETE_MARKER).read_text())["num_samples"] == 1
    assert len(list(out.glob("*.cif"))) <= 1


@pytest.mark.slow
def test_evaluate_stops_before_loading_a_model_without_datasets(tmp_path, monkeypatch):
    """No CRYSTALRL_DATA_DIR and no ./data: one line naming the variable and the folder
    looked in, before the VAE (a path that would fail to load) or any structure is read.
    A process of its own: what a user sees is its exit status and the last line on stderr."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "CRYSTALRL_DATA_DIR"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "crystalrl.evaluate",
            f"structure_path={tmp_path / 'missing'}",  # would fail if it were read
            "vae_ckpt_path=/nowhere/vae.ckpt",  # would fail if it were loaded
            f"paths.log_dir={tmp_path / 'logs'}",
            "run_name=r",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("Error: reference_dataset='mp-20+mp-bandgap'"), lines
    assert "CRYSTALRL_DATA_DIR is now unset" in lines[-1]
    assert f"looked in {tmp_path / 'data'}" in lines[-1]
    assert "Traceback" not in done.stderr and "vae.ckpt" not in done.stderr
    assert not (tmp_path / "logs" / "evaluate" / "r").exists()  # no empty run folder
