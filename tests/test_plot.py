"""The plot command reads a resumed run's CSV pieces in order and writes a PNG."""

from pathlib import Path

import pandas as pd

from crystalrl.plot import main
from crystalrl.reporting.curves import read_metrics


def _write(run: Path, version: int, rows: list[dict]) -> None:
    folder = run / "csv" / f"version_{version}"
    folder.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(folder / "metrics.csv", index=False)


def test_resumed_pieces_merge_in_version_order(tmp_path: Path) -> None:
    run = tmp_path / "rl_run"
    _write(run, 2, [{"step": s, "train/reward": 0.1 * s, "train/kl_div": 1e-4} for s in range(6)])
    # version_10 resumed at step 5 (re-logged) and went on; its value of step 5 wins
    _write(run, 10, [{"step": s, "train/reward": 1.0 + s, "train/kl_div": 1e-4} for s in (5, 6)])
    frame = read_metrics(run)
    assert frame["step"].tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert frame.set_index("step").loc[5, "train/reward"] == 6.0
    out = tmp_path / "reward.png"
    assert main([str(run), "--output", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_logs_are_reported(tmp_path: Path, capsys) -> None:
    assert main([str(tmp_path)]) == 2
    assert "no metrics.csv" in capsys.readouterr().err
