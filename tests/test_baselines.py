"""The baselines on their own: PCA is PCA, the colour histogram is a histogram, raw pixels are pixels."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # the `train` extra; serving-only installs skip this file
pytestmark = pytest.mark.usefixtures("one_torch_thread")

from lookalike.preprocessing import Preprocessing  # noqa: E402
from training.models import build_model, input_settings  # noqa: E402
from training.models.colour_histogram import _srgb_to_lab  # noqa: E402

COLOUR = Preprocessing(height=8, width=8, channels=3, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))


def _normalised(pixels: np.ndarray, spec: Preprocessing) -> torch.Tensor:
    """0..1 pixels (N, C, H, W) -> model inputs under `spec`."""
    mean = np.asarray(spec.mean, np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(spec.std, np.float32).reshape(1, -1, 1, 1)
    return torch.from_numpy(((pixels - mean) / std).astype(np.float32))


def test_pca_projects_on_the_top_principal_axes_and_rebuilds_at_full_rank():
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.normal(size=(50, 1, 4, 4)).astype(np.float32))
    pca = build_model("pca", {"height": 4, "width": 4, "channels": 1, "embedding_dim": 3})
    pca.fit(images)
    flat = images.flatten(1).numpy().astype(np.float64)
    _, _, vh = np.linalg.svd(flat - flat.mean(0), full_matrices=False)
    with torch.no_grad():
        got = pca.encoder(images).numpy()
    want = (flat - flat.mean(0)) @ vh[:3].T
    assert np.allclose(np.abs(got), np.abs(want), atol=1e-4), "components match up to sign"
    assert np.allclose(got.var(0), np.sort(got.var(0))[::-1]), "largest variance first"
    full = build_model("pca", {"height": 4, "width": 4, "channels": 1, "embedding_dim": 16})
    full.fit(images)
    with torch.no_grad():
        assert torch.allclose(full(images), images, atol=1e-4), "all components rebuild the images exactly"


def test_raw_pixels_are_the_image_and_rebuild_it_exactly():
    model = build_model("raw_pixels", {"height": 5, "width": 6, "channels": 3})
    images = torch.rand(2, 3, 5, 6)
    assert model.embedding_dim == 90
    assert torch.equal(model.encoder(images), images.flatten(1)) and torch.equal(model(images), images)


def test_lab_conversion_hits_known_colours():
    rgb = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]).T[None]  # (1, 3, 3 pixels)
    lab = _srgb_to_lab(rgb)[0].T  # (3 pixels, 3)
    assert torch.allclose(lab[0], torch.tensor([100.0, 0.0, 0.0]), atol=0.05)  # white
    assert torch.allclose(lab[1], torch.tensor([0.0, 0.0, 0.0]), atol=0.05)  # black
    assert torch.allclose(lab[2], torch.tensor([53.24, 80.09, 67.20]), atol=0.1)  # sRGB red (published value)


def test_colour_histogram_ignores_layout_and_compares_distributions():
    model = build_model("colour_histogram", input_settings("colour_histogram", COLOUR)).eval()
    assert model.embedding_dim == 8 * 4 * 4 and model.decoder is None
    rng = np.random.default_rng(0)
    pixels = rng.random((1, 3, 8, 8)).astype(np.float32)
    shuffled = pixels.reshape(1, 3, 64)[:, :, rng.permutation(64)].reshape(1, 3, 8, 8)
    reddish = np.clip(pixels + np.array([0.4, -0.2, -0.2], np.float32).reshape(1, 3, 1, 1), 0, 1)
    with torch.no_grad():
        vectors = model.encoder(_normalised(np.concatenate([pixels, shuffled, reddish]), COLOUR))
    assert torch.allclose((vectors**2).sum(1), torch.ones(3), atol=1e-5), "square roots of histograms summing to 1"
    assert torch.allclose(vectors[0], vectors[1], atol=1e-5), "the same colours in another layout"
    bhattacharyya = (vectors[0] * vectors[2]).sum()
    assert bhattacharyya < 0.9, "a colour shift moves the histogram"
    with pytest.raises(AssertionError, match="no decoder"):
        model(_normalised(pixels, COLOUR))


def test_grayscale_histogram_counts_lightness():
    spec = Preprocessing(height=4, width=4, channels=1)
    model = build_model("colour_histogram", input_settings("colour_histogram", spec)).eval()
    black, white = torch.zeros(1, 1, 4, 4), torch.ones(1, 1, 4, 4)
    with torch.no_grad():
        vectors = model.encoder(torch.cat([black, white]))
    assert vectors.shape == (2, 8)
    assert vectors[0, 0] == 1 and vectors[1, -1] == 1, "all mass in the first and the last bin"
