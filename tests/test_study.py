"""`lookalike eval`: the study runs end to end in quick mode and writes a report people can read."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

pytest.importorskip("torch")  # the `train` extra; serving-only installs skip this file

from lookalike_cli.main import main  # noqa: E402
from training.study_plan import plan  # noqa: E402
from training.data import DIGITS_SPEC  # noqa: E402
from training.models import ARCHITECTURES, BASELINES  # noqa: E402
from training.reference_tools import TOOLS  # noqa: E402

ROWS = ["raw_pixels", "pca-32", "colour_histogram", "phash", "conv_fc", "conv_fc-plain", "conv_fc-16", "pca-16"]
PICTURES = ("reconstructions", "loss_curves", "retrieval", "copy_detection", "copy_recall_by_edit", "embedding_size")


def test_the_plan_covers_every_architecture_baseline_and_tool():
    rows = plan(DIGITS_SPEC)
    assert set(ARCHITECTURES) | set(BASELINES) | set(TOOLS) == {row.architecture for row in rows}
    assert len({row.name for row in rows}) == len(rows), "row names are model names: unique"
    assert all(row.train.epochs >= 10 for row in rows if row.architecture in ARCHITECTURES)


def test_quick_eval_writes_the_report_and_reuses_checkpoints(tmp_path, capsys):
    args = ["eval", "--quick", "--reports", str(tmp_path), "--threads", "1", "--no-progress", "--only", *ROWS]
    assert main(args) == 0
    report = tmp_path / "digits-quick"
    readme = (report / "README.md").read_text()
    for row in ROWS:
        assert f"| {row} |" in readme
    for picture in PICTURES:
        assert (report / f"{picture}.png").stat().st_size > 1000, f"{picture}.png is missing or empty"
        assert f"]({picture}.png)" in readme
    results = json.loads((report / "results.json").read_text())
    assert results["run"]["command"].startswith("lookalike eval --quick")
    rows = {row["name"]: row for row in results["rows"]}
    assert rows["raw_pixels"]["embedding_dim"] == 784 and rows["raw_pixels"]["test_mse"] == 0
    for row in rows.values():
        assert 0 < row["map"] <= 1 and 0 <= row["copy_recall_at_1"] <= 1 and 0 <= row["copy_recall_at_1.crop"] <= 1
    assert rows["raw_pixels"]["self_recall_at_1"] == 1, "an unedited digit is its own nearest neighbour"
    assert rows["phash"]["embedding_dim"] == 64 and "images_per_second" not in rows["phash"], "no ONNX model to time"
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


def _folder_of_pictures(root, labels=("discs", "bars", "rings"), per_label=40):
    """Small colour pictures in sub-folders: a shape per label, each in its own colour and place."""
    rng = np.random.default_rng(0)
    for label in labels:
        (root / label).mkdir(parents=True)
        for i in range(per_label):
            picture = Image.new("RGBA", (40, 32), (0, 0, 0, 0) if i % 2 else tuple(rng.integers(0, 256, 3)) + (255,))
            draw = ImageDraw.Draw(picture)
            x, y = rng.integers(0, 16, 2)
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            if label == "discs":
                draw.ellipse((x, y, x + 20, y + 16), fill=colour)
            elif label == "bars":
                draw.rectangle((x, y, x + 8, y + 16), fill=colour)
            else:
                draw.ellipse((x, y, x + 20, y + 16), outline=colour, width=3)
            picture.save(root / label / f"{i}.png")
    return root


def test_eval_on_a_folder_of_colour_pictures_sets_models_against_the_tools(tmp_path):
    folder = _folder_of_pictures(tmp_path / "shapes")
    rows = ["colour_histogram", "phash", "thumbnail-32", "conv_fc"]
    args = ["eval", "--quick", "--data", str(folder), "--reports", str(tmp_path / "reports"), "--threads", "1"]
    assert main([*args, "--no-progress", "--only", *rows]) == 0
    report = tmp_path / "reports" / "shapes-quick"
    readme = (report / "README.md").read_text()
    assert "120 pictures in 3 labels, as 64x64 RGB" in readme
    assert "## against the tools people use" in readme and "| copy R@1, mix of three |" in readme
    results = {row["name"]: row for row in json.loads((report / "results.json").read_text())["rows"]}
    for row in results.values():
        for edit in ("crop", "letterbox", "mix of three"):
            key = "copy_recall_at_1" if edit == "mix of three" else f"copy_recall_at_1.{edit}"
            assert 0 <= row[key] <= 1
        assert 0.9 <= row["self_recall_at_1"] <= 1
    assert results["thumbnail-32"]["embedding_dim"] == 32 * 32 * 3


def test_phash_vectors_rank_by_hamming_distance():
    import imagehash

    from lookalike.preprocessing import Preprocessing

    spec = Preprocessing(height=64, width=64, channels=3)
    pictures = list(_pictures())
    vectors = np.stack([TOOLS["phash"].vector(p, spec) for p in pictures])  # (6, 64) of +-1
    hashes = [imagehash.phash(p) for p in pictures]
    cosine = vectors @ vectors.T / 64
    hamming = np.array([[a - b for b in hashes] for a in hashes])
    assert np.allclose(cosine, 1 - 2 * hamming / 64)


def _pictures():
    rng = np.random.default_rng(1)
    for _ in range(6):
        picture = Image.new("RGB", (40, 32), tuple(int(c) for c in rng.integers(0, 256, 3)))
        x, y = rng.integers(0, 16, 2)
        ImageDraw.Draw(picture).ellipse((x, y, x + 20, y + 16), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
        yield picture
