"""Every registered architecture: shapes at two image sizes, a training step, and an ONNX export.

Tiny configs keep each case to about a second on 2 cores; they take the same code paths as the defaults.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # the `train` extra; serving-only installs skip this file
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from lookalike.preprocessing import Preprocessing  # noqa: E402
from training.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from training.export import EXPORT_BATCH, PARITY_TOLERANCE, export  # noqa: E402
from training.models import ARCHITECTURES, build_model  # noqa: E402

EMBEDDING_DIM = 12  # not any architecture's default (64)
CONV = {"conv_channels": [4, 8]}
RECURRENT = {"hidden_size": 16}
TINY = {
    "conv_fc": {**CONV, "fc_dim": 16},
    "conv_fc_transpose": {**CONV, "fc_dim": 16},
    "conv_upsample": CONV,
    "conv_transpose": CONV,
    "fc": {"hidden_dims": [32, 16], "batch_norm": True},  # batch norm off by default: cover it here
    "lstm": {**RECURRENT, "bidirectional": True},  # unidirectional by default: cover the other here
    "lstm_attention": {**RECURRENT, "attention_dim": 8},
}
NAMES = sorted(ARCHITECTURES)


def tiny(name: str, height: int = 28, width: int = 28, channels: int = 1) -> dict:
    # An architecture added later without a TINY entry still gets tested, at its default sizes.
    return {"height": height, "width": width, "channels": channels, "embedding_dim": EMBEDDING_DIM, **TINY.get(name, {})}


@pytest.fixture(autouse=True)
def _few_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # CI boxes have 2 cores; tests must not fight each other for them
    yield
    torch.set_num_threads(threads)


def _images(batch: int, channels: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """Smooth blobs in [0, 1], closer to real images than uniform noise, so a few steps can fit them."""
    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    centres = torch.rand(batch, channels, 2, generator=g) * 1.2 - 0.6  # (B, C, 2)
    dist = (ys - centres[..., 0, None, None]) ** 2 + (xs - centres[..., 1, None, None]) ** 2  # (B, C, H, W)
    return torch.exp(-dist / 0.1)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("height,width,channels", [(28, 28, 1), (64, 64, 3)])
def test_forward_shapes(name, height, width, channels):
    model = build_model(name, tiny(name, height, width, channels)).eval()
    assert model.architecture == name and model.input_shape == (channels, height, width)
    images = torch.rand(3, channels, height, width)
    with torch.no_grad():
        embeddings = model.encoder(images)
        assert embeddings.shape == (3, EMBEDDING_DIM)
        assert model.decoder(embeddings).shape == (3, channels, height, width)
    with pytest.raises(AssertionError, match="expected images"):
        model.encoder(torch.rand(3, channels, height + 1, width))


@pytest.mark.parametrize("name", NAMES)
def test_training_steps_lower_the_loss_on_a_fixed_batch(name):
    torch.manual_seed(0)
    model = build_model(name, tiny(name)).train()
    batch = _images(16, 1, 28, 28)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss = torch.nn.functional.mse_loss(model(batch), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], f"{name}: MSE went {losses[0]:.4f} -> {losses[-1]:.4f}"


@pytest.mark.parametrize("name", NAMES)
def test_export_matches_pytorch_at_another_batch_size(name, tmp_path):
    torch.manual_seed(0)
    model = build_model(name, tiny(name)).eval()
    spec = Preprocessing(height=28, width=28, channels=1)
    sample = _images(4, 1, 28, 28).numpy()
    checkpoint = save_checkpoint(tmp_path / "c.pt", model, spec, "0" * 64, sample)
    assert load_checkpoint(checkpoint).architecture == name  # the registry rebuilds it from the file
    version_dir = export(checkpoint, tmp_path / "models", name)  # checker + parity at S=4 inside

    batch = 5
    assert batch != EXPORT_BATCH
    images = _images(batch, 1, 28, 28, seed=1).numpy()
    with torch.no_grad():
        want = model.encoder(torch.from_numpy(images)).numpy()  # (S, D)
        want_images = model.decoder(torch.from_numpy(want)).numpy()  # (S, C, H, W)
    sessions = {}
    for file in ("encoder", "decoder"):
        proto = onnx.load(version_dir / f"{file}.onnx")
        onnx.checker.check_model(proto, full_check=True)
        sessions[file] = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    embeddings = sessions["encoder"].run(None, {"images": images})[0]
    decoded = sessions["decoder"].run(None, {"embeddings": want})[0]
    assert embeddings.shape == (batch, EMBEDDING_DIM) and decoded.shape == images.shape
    assert np.abs(embeddings - want).max() <= PARITY_TOLERANCE
    assert np.abs(decoded - want_images).max() <= PARITY_TOLERANCE
