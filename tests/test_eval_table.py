"""benchmarks/eval_table.py: evaluate summaries side by side, headline beside gaming signs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "eval_table.py"


def eval_table():
    spec = importlib.util.spec_from_file_location("eval_table", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rows_come_from_each_summary_and_relaxed_selects_the_relaxed_keys(tmp_path):
    plain = {"avg_MSUN": 0.044, "num_distinct_formulas": 978.0, "relaxed_avg_MSUN": 0.2}
    relaxed = {"avg_MSUN": 0.031, "composition_diversity": 0.2081, "relaxed_avg_MSUN": 0.35}
    # evaluate prints log lines before its JSON line; the last JSON line is the summary
    (tmp_path / "a.json").write_text("a log line\n" + json.dumps(plain) + "\n")
    (tmp_path / "b.json").write_text(json.dumps(relaxed))
    args = [f"plain={tmp_path / 'a.json'}", f"relax={tmp_path / 'b.json'}"]
    lines = eval_table().main(args).splitlines()
    assert lines[0] == "| | plain | relax |"
    assert "| MSUN | 4.4 % | 3.1 % |" in lines
    assert "| *distinct formulas* | 978 | – |" in lines
    assert "| *composition diversity* | – | 0.208 |" in lines
    assert "| MSUN | 20.0 % | 35.0 % |" in eval_table().main([*args, "--relaxed"]).splitlines()


def test_a_file_without_a_summary_is_named(tmp_path):
    (tmp_path / "empty.json").write_text("no json here\n")
    with pytest.raises(SystemExit, match="empty.json: no JSON line"):
        eval_table().main([f"x={tmp_path / 'empty.json'}"])


def test_a_nested_summary_is_picked_by_its_keys(tmp_path):
    shipped = {"default_reference": {"seed_0": {"avg_MSUN": 0.022}}}
    (tmp_path / "base.json").write_text(json.dumps(shipped, indent=1))
    arg = f"base={tmp_path / 'base.json'}#default_reference.seed_0"
    assert "| MSUN | 2.2 % |" in eval_table().main([arg]).splitlines()
    with pytest.raises(SystemExit, match="no key 'seed_1'"):
        eval_table().main([f"base={tmp_path / 'base.json'}#default_reference.seed_1"])
