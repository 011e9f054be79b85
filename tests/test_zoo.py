"""Every registered architecture: shapes at two image sizes, a training step; every architecture
and baseline: an ONNX export that matches PyTorch, served by the encoder service and searchable.

Tiny configs keep each case to about a second on 2 cores; they take the same code paths as the defaults.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # the `train` extra; serving-only installs skip this file
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

from lookalike.preprocessing import Preprocessing  # noqa: E402
from training.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from training.export import EXPORT_BATCH, PARITY_TOLERANCE, export  # noqa: E402
from training.models import ARCHITECTURES, BASELINES, MODELS, build_model  # noqa: E402

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
    "pca": {},
    "raw_pixels": {},
    "colour_histogram": {"lightness_bins": 6},
}
NAMES = sorted(ARCHITECTURES)
SIZED = set(ARCHITECTURES) | {"pca"}  # the models whose embedding size is a setting


def tiny(name: str, height: int = 28, width: int = 28, channels: int = 1) -> dict:
    # An architecture added later without a TINY entry still gets tested, at its default sizes.
    size = {"embedding_dim": EMBEDDING_DIM} if name in SIZED else {}
    return {"height": height, "width": width, "channels": channels, **size, **TINY.get(name, {})}


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


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    """Every architecture and baseline, tiny, exported to one model repository as `<name>/1`."""
    root = tmp_path_factory.mktemp("zoo")
    spec = Preprocessing(height=28, width=28, channels=1)
    models = {}
    for name in sorted(MODELS):
        torch.manual_seed(0)
        model = build_model(name, tiny(name))
        if name in BASELINES:
            model.fit(_images(64, 1, 28, 28, seed=2))
        model.eval()
        checkpoint = save_checkpoint(root / f"{name}.pt", model, spec, "0" * 64, _images(4, 1, 28, 28).numpy())
        assert load_checkpoint(checkpoint).architecture == name  # the registry rebuilds it from the file
        export(checkpoint, root / "models", name)  # checker + parity at S=4 inside
        models[name] = model
    return root / "models", models


@pytest.mark.parametrize("name", sorted(MODELS))
def test_export_matches_pytorch_at_another_batch_size(name, repository):
    root, models = repository
    model, version_dir = models[name], root / name / "1"
    batch = 5
    assert batch != EXPORT_BATCH
    images = _images(batch, 1, 28, 28, seed=1).numpy()
    with torch.no_grad():
        want = model.encoder(torch.from_numpy(images)).numpy()  # (S, D)
    encoder = _session(version_dir / "encoder.onnx")
    embeddings = encoder.run(None, {"images": images})[0]
    assert embeddings.shape == (batch, model.embedding_dim)
    assert np.abs(embeddings - want).max() <= PARITY_TOLERANCE
    if model.decoder is None:
        assert not (version_dir / "decoder.onnx").exists()
        return
    with torch.no_grad():
        want_images = model.decoder(torch.from_numpy(want)).numpy()  # (S, C, H, W)
    decoded = _session(version_dir / "decoder.onnx").run(None, {"embeddings": want})[0]
    assert decoded.shape == images.shape
    assert np.abs(decoded - want_images).max() <= PARITY_TOLERANCE


def _session(path):
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def test_every_model_serves_through_the_encoder_service_and_is_searchable(repository, digit_pngs, tmp_path):
    from encoder_service.server import create_server as create_encoder_server
    from encoder_service.settings import EncoderSettings
    from lookalike.client import EncoderClient, ItemToUpsert, SearchClient
    from lookalike.errors import FailedPrecondition
    from search_service.server import create_server as create_search_server
    from search_service.settings import SearchSettings

    root, models = repository
    encoder_server, encoder_port = create_encoder_server(
        EncoderSettings(host="127.0.0.1", port=0, model_repository=root, default_model="conv_fc")
    )
    encoder_server.start()
    encoder_address = f"127.0.0.1:{encoder_port}"
    search_server, search_port = create_search_server(
        SearchSettings(host="127.0.0.1", port=0, data_dir=tmp_path / "search", encoder_address=encoder_address)
    )
    search_server.start()
    pngs = digit_pngs[:24]
    try:
        with EncoderClient(encoder_address, timeout=30) as encoder, SearchClient(f"127.0.0.1:{search_port}", timeout=30) as search:
            encoder.wait_until_serving(30)
            search.wait_until_serving(30)
            served = {info.model.name for info in encoder.list_models()}
            assert served == set(MODELS), f"not served: {set(MODELS) - served}"
            for name, model in models.items():
                vectors, ref = encoder.embed(pngs[:3], model=name)
                assert vectors.shape == (3, model.embedding_dim) and ref.name == name and ref.version == 1
                if model.decoder is None:
                    with pytest.raises(FailedPrecondition) as refused:
                        encoder.reconstruct(vectors, model=name)
                    assert refused.value.reason == "MODEL_HAS_NO_DECODER"
                else:
                    assert len(encoder.reconstruct(vectors, model=name)) == 3
                search.create_collection(name, model=name)
                search.upsert(name, [ItemToUpsert(id=str(i), image=png) for i, png in enumerate(pngs)])
                best = search.search(name, image=pngs[7], k=3)
                assert best[0].id == "7", f"{name}: an indexed image does not find itself first"
    finally:
        search_server.stop(None)
        encoder_server.stop(None)
