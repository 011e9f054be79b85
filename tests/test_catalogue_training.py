"""Training at catalogue scale, on a small messy colour catalogue made in tmp_path: bad files are
skipped with their reasons, decoding runs in processes into a cache a second load reuses, the CLI
says one line per phase, and an interrupted run leaves a checkpoint that --resume goes on from."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")  # the `train` extra; serving-only installs skip this file
pytestmark = pytest.mark.usefixtures("one_torch_thread")

import training.parallel_decode  # noqa: E402
import training.train  # noqa: E402
from lookalike.preprocessing import Preprocessing, preprocess  # noqa: E402
from lookalike_cli.main import main  # noqa: E402
from tests import odd_images  # noqa: E402
from training.checkpoint import load_checkpoint  # noqa: E402
from training.config import LoadConfig  # noqa: E402
from training.data import load_folder  # noqa: E402
from training.pipeline import partial_path  # noqa: E402

SPEC = Preprocessing(height=16, width=16, channels=3, resize="pad")
GOOD_ODD = {  # odd but usable: each must load
    "cmyk.jpg": odd_images.cmyk_jpeg,
    "sixteen_bit.png": odd_images.png_16_bit,
    "palette_transparent.png": odd_images.palette_with_transparency,
    "grey_alpha.png": odd_images.la_png,
    "exif_rotated.jpg": odd_images.exif_rotated_jpeg,
}
BAD = {  # file name -> what its skip reason says
    "bomb.png": "pixels",
    "oversized_frame.gif": "pixels",
    "truncated.png": "truncated",
    "truncated.jpg": "truncated",
    "notes.txt": "not a recognisable image",
}
TINY_MODEL = ["--model-arg", "conv_channels=[4,8]", "--model-arg", "fc_dim=16", "--embedding-dim", "8"]


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    """3 topic folders of 10 small colour pictures in several modes and sizes, plus odd and broken files."""
    root = tmp_path_factory.mktemp("catalogue")
    rng = np.random.default_rng(0)
    for topic, colour in (("shoes", (200, 40, 40)), ("lamps", (40, 200, 40)), ("cups", (40, 40, 200))):
        (root / topic).mkdir()
        for i in range(10):
            height, width = rng.integers(12, 40, size=2)
            pixels = np.clip(rng.normal(colour, 30, size=(height, width, 3)), 0, 255).astype(np.uint8)
            image = Image.fromarray(pixels, "RGB")
            mode = ("RGB", "RGBA", "P")[i % 3]
            image = image.convert(mode) if mode != "P" else image.quantize(16)
            image.save(root / topic / f"{i}.png")
    for i, (name, make) in enumerate(GOOD_ODD.items()):
        (root / ("shoes", "lamps", "cups")[i % 3] / name).write_bytes(make())
    broken = root / "broken"
    broken.mkdir()
    (broken / "bomb.png").write_bytes(odd_images.png_bomb())
    (broken / "oversized_frame.gif").write_bytes(odd_images.gif_with_oversized_frame())
    (broken / "truncated.png").write_bytes(odd_images.truncated(odd_images.png_16_bit()))
    (broken / "truncated.jpg").write_bytes(odd_images.truncated(odd_images.cmyk_jpeg()))
    (broken / "notes.txt").write_text("not an image")
    (root / ".DS_Store").write_bytes(b"\0\0")  # hidden: not part of the collection, not a skip
    return root


def _load(root, cache_dir, workers=1):
    return load_folder(root, SPEC, LoadConfig(cache_dir=cache_dir, workers=workers, chunk=4, progress=False))


def test_good_files_load_as_the_encoder_service_sees_them_and_bad_ones_are_skipped(catalogue, tmp_path):
    data = _load(catalogue, tmp_path / "cache")
    assert len(data) == 30 + len(GOOD_ODD)
    assert set(data.labels) == {"shoes", "lamps", "cups"}
    assert {p.rsplit("/", 1)[-1] for p in data.paths} >= set(GOOD_ODD)
    reasons = {path.rsplit("/", 1)[-1]: reason for path, reason in data.skipped}
    assert set(reasons) == set(BAD)
    for name, says in BAD.items():
        assert says in reasons[name], (name, reasons[name])
    for i, path in enumerate(data.paths):  # bit for bit what the encoder service makes of the same file
        with open(path, "rb") as f:
            assert np.array_equal(data.images[i], preprocess(f.read(), SPEC)), path
    rows = np.random.default_rng(0).integers(0, len(data), 50)  # unordered, with repeats, as batches are
    assert np.array_equal(data.batch(rows), np.stack([data.images[i] for i in rows]))


def test_parallel_load_equals_serial_and_a_second_load_decodes_nothing(catalogue, tmp_path, monkeypatch, capsys):
    serial = _load(catalogue, tmp_path / "serial")
    parallel = _load(catalogue, tmp_path / "parallel", workers=2)
    assert np.array_equal(parallel.pixels[:], serial.pixels[:])
    assert (parallel.paths, parallel.labels.tolist(), parallel.skipped) == (serial.paths, serial.labels.tolist(), serial.skipped)
    assert "decoded 35, skipped 5" in capsys.readouterr().out

    shards = sorted((tmp_path / "parallel").rglob("shard-*"))
    decoded = []
    monkeypatch.setattr(training.parallel_decode, "decode", lambda *a, **k: decoded.append(1))
    again = _load(catalogue, tmp_path / "parallel")
    assert decoded == [] and sorted((tmp_path / "parallel").rglob("shard-*")) == shards  # nothing decoded, nothing written
    assert np.array_equal(again.pixels[:], serial.pixels[:]) and again.skipped == serial.skipped
    assert re.search(r"^loading: 40 files, cached 40, decoded 0, skipped 5, [\d.]+ s$", capsys.readouterr().out, re.M)


def test_a_damaged_cache_shard_is_left_out_and_its_images_decoded_again(catalogue, tmp_path, capsys):
    first = _load(catalogue, tmp_path / "cache")
    pixels = first.pixels[:]  # a copy: `first` reads its rows from the file damaged next
    (shard,) = (tmp_path / "cache").rglob("shard-*.u8")
    shard.write_bytes(shard.read_bytes()[:-1])  # e.g. a disk that filled up under another tool
    again = _load(catalogue, tmp_path / "cache")
    assert np.array_equal(again.pixels[:], pixels) and again.skipped == first.skipped
    assert capsys.readouterr().out.splitlines()[-1].startswith("loading: 40 files, cached 0, decoded 35, skipped 5")


def test_an_error_escaping_the_decode_path_skips_that_file_only(catalogue, tmp_path, monkeypatch):
    real_decode = training.parallel_decode.decode

    def decode(data, *args, **kwargs):
        if data == odd_images.cmyk_jpeg():
            raise Image.DecompressionBombError("not an OSError, and not wrapped")
        return real_decode(data, *args, **kwargs)

    monkeypatch.setattr(training.parallel_decode, "decode", decode)
    data = _load(catalogue, tmp_path / "cache")
    reasons = {path.rsplit("/", 1)[-1]: reason for path, reason in data.skipped}
    assert reasons["cmyk.jpg"] == "DecompressionBombError: not an OSError, and not wrapped"
    assert len(data) == 30 + len(GOOD_ODD) - 1
    monkeypatch.setattr(training.parallel_decode, "decode", real_decode)
    assert "cmyk.jpg" in {p.rsplit("/", 1)[-1] for p in _load(catalogue, tmp_path / "cache").paths}, "retried, not cached"


def _train(catalogue, tmp_path, out, *extra):
    args = ["train", "--data", str(catalogue), "--no-progress", "--batch-size", "8", "--threads", "1", *TINY_MODEL]
    return main([*args, "--cache-dir", str(tmp_path / "cache"), "--workers", "2", "--out", str(out), *extra])


def test_train_prints_one_line_per_phase_and_writes_a_checkpoint(catalogue, tmp_path, capsys):
    out = tmp_path / "catalogue.pt"
    assert _train(catalogue, tmp_path, out, "--epochs", "1") == 0
    lines = capsys.readouterr().out.splitlines()
    for phase in ("loading: ", "epoch 1/1: ", "evaluation: "):
        assert len([line for line in lines if line.startswith(phase)]) == 1, (phase, lines)
    assert any(line.startswith("loading: 40 files, cached 0, decoded 35, skipped 5, ") for line in lines), lines
    skip_file = out.with_suffix(".skipped.tsv")
    assert f"skipped 5 files that are not usable images; each with its reason in {skip_file}" in lines
    listed = dict(line.split("\t") for line in skip_file.read_text().splitlines())
    assert {path.rsplit("/", 1)[-1] for path in listed} == set(BAD) and all(listed.values())

    checkpoint = load_checkpoint(out)
    # A folder's defaults: colour, 64 px, letterboxed, transparency on white.
    assert checkpoint.preprocessing == Preprocessing(height=64, width=64, channels=3, resize="pad", background=255)
    assert len(checkpoint.history) == 1 and checkpoint.training_state["epoch"] == 1
    assert not partial_path(out).exists(), "the finished checkpoint replaces the partial one"


def test_ctrl_c_leaves_the_best_epoch_and_resume_goes_on_as_if_never_stopped(catalogue, tmp_path, monkeypatch, capsys):
    straight = tmp_path / "straight.pt"
    assert _train(catalogue, tmp_path, straight, "--epochs", "2") == 0

    out = tmp_path / "interrupted.pt"
    real_validation_loss, calls = training.train.validation_loss, []

    def validation_loss(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C during epoch 2
        return real_validation_loss(*args, **kwargs)

    monkeypatch.setattr(training.train, "validation_loss", validation_loss)
    with pytest.raises(SystemExit) as exited:
        _train(catalogue, tmp_path, out, "--epochs", "2")
    assert exited.value.code == 130
    said = capsys.readouterr().out
    assert f"interrupted after epoch 1: checkpoint of epoch 1 (lowest val loss so far) at {partial_path(out)}" in said
    assert not out.exists()
    left = load_checkpoint(partial_path(out))  # usable as it is: weights, preprocessing, history
    assert len(left.history) == 1 and left.training_state["epoch"] == 1

    monkeypatch.setattr(training.train, "validation_loss", real_validation_loss)
    assert _train(catalogue, tmp_path, out, "--epochs", "2", "--resume") == 0
    assert "epoch 1/2" not in capsys.readouterr().out, "epoch 1 is not trained again"
    resumed, reference = load_checkpoint(out), load_checkpoint(straight)
    assert [h["epoch"] for h in resumed.history] == [1, 2] and resumed.history[0] == left.history[0]
    for name, weights in reference.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], weights), f"{name} differs from an uninterrupted run"
    assert not partial_path(out).exists()

    # A finished run trains on for more epochs; the history is kept.
    assert _train(catalogue, tmp_path, out, "--epochs", "3", "--resume") == 0
    longer = load_checkpoint(out)
    assert [h["epoch"] for h in longer.history] == [1, 2, 3] and longer.history[:2] == resumed.history
    with pytest.raises(SystemExit, match="3 epochs done already"):
        _train(catalogue, tmp_path, out, "--epochs", "3", "--resume")
    with pytest.raises(SystemExit, match="other settings: lr"):
        _train(catalogue, tmp_path, out, "--epochs", "4", "--resume", "--lr", "0.01")
