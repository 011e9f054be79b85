"""`lookalike eval`: the study runs end to end in quick mode and writes a report people can read."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")  # the `train` extra; serving-only installs skip this file

from lookalike_cli.main import main  # noqa: E402
from training.study_plan import plan  # noqa: E402
from training.data import DIGITS_SPEC  # noqa: E402
from training.models import ARCHITECTURES, BASELINES  # noqa: E402

ROWS = ["raw_pixels", "pca-32", "colour_histogram", "conv_fc", "conv_fc-plain", "conv_fc-16", "pca-16"]


def test_the_plan_covers_every_architecture_and_baseline():
    rows = plan(DIGITS_SPEC)
    assert set(ARCHITECTURES) | set(BASELINES) == {row.architecture for row in rows}
    assert len({row.name for row in rows}) == len(rows), "row names are model names: unique"
    assert all(row.train.epochs >= 10 for row in rows if row.architecture in ARCHITECTURES)


def test_quick_eval_writes_the_report_and_reuses_checkpoints(tmp_path, capsys):
    args = ["eval", "--quick", "--reports", str(tmp_path), "--threads", "1", "--no-progress", "--only", *ROWS]
    assert main(args) == 0
    report = tmp_path / "digits-quick"
    readme = (report / "README.md").read_text()
    for row in ROWS:
        assert f"| {row} |" in readme
    for picture in ("reconstructions", "loss_curves", "retrieval", "copy_detection", "embedding_size"):
        assert (report / f"{picture}.png").stat().st_size > 1000, f"{picture}.png is missing or empty"
        assert f"]({picture}.png)" in readme
    results = json.loads((report / "results.json").read_text())
    assert results["run"]["command"].startswith("lookalike eval --quick")
    rows = {row["name"]: row for row in results["rows"]}
    assert rows["raw_pixels"]["embedding_dim"] == 784 and rows["raw_pixels"]["test_mse"] == 0
    for row in rows.values():
        assert 0 < row["map"] <= 1 and 0 <= row["copy_recall_at_1"] <= 1 and row["images_per_second"] > 0
    assert rows["pca-32"]["test_mse"] < rows["pca-16"]["test_mse"], "more components rebuild better"
    checkpoint = report / "checkpoints" / "conv_fc.pt"
    written = checkpoint.stat().st_mtime_ns
    capsys.readouterr()
    assert main([*args[:-len(ROWS)], "conv_fc"]) == 0
    assert checkpoint.stat().st_mtime_ns == written, "a matching checkpoint is reused, not retrained"
    assert "conv_fc" in capsys.readouterr().out
    assert "1 of 1 models reused" in (report / "README.md").read_text()


def test_an_unknown_row_is_named_in_the_error(tmp_path):
    with pytest.raises(SystemExit, match="no study rows named \\['nonsense'\\]"):
        main(["eval", "--quick", "--reports", str(tmp_path), "--no-progress", "--only", "nonsense"])
