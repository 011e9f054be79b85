"""`lookalike eval` measures the whole copy pipeline (candidates, verification, verdicts), calibrates its
thresholds on one half of the queries and reports them, with the figures of the other half."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

pytest.importorskip("torch")  # the `train` extra; serving-only installs skip this file

from copy_detection.verdict import Thresholds  # noqa: E402
from lookalike_cli.main import main  # noqa: E402
from copy_detection.copy_edits import MIX  # noqa: E402


def _folder_of_scenes(root, labels=("warm", "cool"), per_label=30):
    """Busy colour pictures (corners for local features to hold on to), in two labels."""
    rng = np.random.default_rng(3)
    for label in labels:
        (root / label).mkdir(parents=True)
        for i in range(per_label):
            base = (200, 120, 60) if label == "warm" else (60, 120, 200)
            picture = Image.new("RGB", (96, 80), tuple(int(c) for c in rng.integers(0, 256, 3)))
            draw = ImageDraw.Draw(picture)
            for _ in range(12):
                x, y = (int(v) for v in rng.integers(0, 80, 2))
                w, h = (int(v) for v in rng.integers(6, 24, 2))
                colour = tuple(int(np.clip(c + rng.integers(-60, 61), 0, 255)) for c in base)
                (draw.rectangle if rng.integers(2) else draw.ellipse)((x, y, x + w, y + h), fill=colour, outline=(0, 0, 0))
            picture.save(root / label / f"{i}.png")
    return root


def test_eval_measures_the_copy_pipeline_and_reports_calibrated_thresholds(tmp_path):
    folder = _folder_of_scenes(tmp_path / "scenes")
    reports = tmp_path / "reports"
    args = ["eval", "--quick", "--data", str(folder), "--reports", str(reports), "--threads", "1", "--no-progress"]
    assert main([*args, "--only", "colour_histogram", "phash", "--copies-model", "colour_histogram", "--copy-candidates", "8"]) == 0
    report = reports / "scenes-quick"
    readme = (report / "README.md").read_text()
    assert "## Finding copies: the pipeline" in readme and "**colour_histogram** as the embedding" in readme
    assert f"| {MIX} |" in readme and "| copy-verdict precision |" in readme
    assert (report / "copy_verdicts.png").stat().st_size > 1000 and "](copy_verdicts.png)" in readme
    found = json.loads((report / "results.json").read_text())["copy_pipeline"]
    assert found["model"] == "colour_histogram" and found["candidates"] == 8
    thresholds = Thresholds.from_json(found["thresholds"])  # what the service's defaults are set from
    assert thresholds.to_json() == found["thresholds"]
    written = json.loads((report / "copy_thresholds" / "colour_histogram.json").read_text())
    assert written == found["thresholds"], "the file `lookalike index --copy-thresholds` reads holds the calibrated ones"
    reported, by_edit = found["reported"], found["by_edit"]
    assert reported["copy_queries"] > 0 and reported["non_copy_queries"] > 0
    for measures in (reported, *(by_edit[e] for e in by_edit if e != "none")):
        assert 0 <= measures["recall_at_1"] <= measures["candidate_recall"] <= 1, "the answer is one of the candidates"
        assert 0 <= measures["copy_recall"] <= measures["recall_at_1"]
    assert reported["verify_ms_p50"] > 0 and reported["candidates_p50"] >= 8
    assert by_edit["none"]["copy_queries"] == 0, "unedited pictures that are not indexed are non-copies only"
    at_defaults = found["by_edit_at_default_thresholds"]
    assert at_defaults.keys() == by_edit.keys() and "| R@1 at defaults |" in readme
    assert by_edit["rotation"]["candidate_recall"] >= 0.5, "a slightly turned busy picture is among the candidates"


def test_a_copies_model_that_is_not_run_or_not_a_model_is_refused(tmp_path):
    folder = _folder_of_scenes(tmp_path / "scenes", per_label=10)
    args = ["eval", "--quick", "--data", str(folder), "--reports", str(tmp_path), "--no-progress", "--only", "phash"]
    with pytest.raises(SystemExit, match="--copies-model conv_fc is not among the rows run"):
        main([*args, "--copies-model", "conv_fc"])
    with pytest.raises(SystemExit, match="--copies-model phash is not an embedding model"):
        main([*args, "--copies-model", "phash"])


def _query(source, candidates, inliers, edit="crop", picture=9):
    """A query's evidence by hand: `inliers` per candidate (0: verification found no fit)."""
    from copy_detection.verification import Match
    from training.copy_pipeline import Query

    corners = np.zeros((4, 2), np.float32)
    matches = [Match(n, n, False, np.eye(2, 3), corners, corners) if n else None for n in inliers]
    count = len(candidates)
    return Query(
        edit=edit, picture=picture, source=source, calibration=True, candidates=np.array(candidates),
        hash_distances=np.full(count, 30), embedding_scores=np.full(count, 0.5, np.float32),
        featureless=np.zeros(count, bool), matches=matches, verify_ms=1.0, fingerprint_ms=1.0,
        embedding_won=0.0, hash_won=0.0,
    )


def test_copy_verdicts_are_counted_against_the_original_and_the_non_copies():
    from types import SimpleNamespace

    from training.copy_calibration import calibrate, false_copies, measure

    queries = [
        _query(0, [0, 1], [50, 0]),  # a copy found: its original, 50 inliers
        _query(1, [1, 2], [0, 40]),  # a copy taken for a copy of another picture (40 inliers)
        _query(-1, [0], [30], edit="none", picture=7),  # a non-copy taken for a copy (30 inliers)
        _query(-1, [2], [0], edit="none"),  # a non-copy left alone
    ]
    loose = measure(queries, Thresholds(edited_inliers=12))
    assert (loose["copy_recall"], loose["copy_precision"]) == (0.5, 1 / 3)
    assert (loose["false_copy_rate"], loose["wrong_copy_rate"], loose["recall_at_1"]) == (0.5, 0.5, 0.5)
    chosen = calibrate(queries, Thresholds())
    assert 40 < chosen.edited_inliers <= 50, "the loosest threshold at full precision that keeps the true copy"
    strict = measure(queries, chosen)
    assert (strict["copy_recall"], strict["copy_precision"], strict["false_copy_rate"]) == (0.5, 1.0, 0.0)
    study = SimpleNamespace(
        dataset=SimpleNamespace(paths=[f"/data/label/{i}.png" for i in range(10)]), split=SimpleNamespace(train_val=np.arange(3))
    )
    assert false_copies(queries, Thresholds(edited_inliers=12), study) == [
        {"query": "label/7.png", "taken_for_a_copy_of": "label/0.png", "edits": ["none"], "inliers": 30}
    ]
