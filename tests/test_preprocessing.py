"""The shared preprocessing: formats, modes, orientation, limits, and never a crash on junk."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from PIL import Image

from lookalike.preprocessing import ImageDecodeError, Preprocessing, decode, preprocess, to_image, to_model_input


def encoded(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "GIF"])
def test_every_supported_format_decodes_to_the_model_shape(fmt):
    image = Image.fromarray((np.random.default_rng(0).random((40, 30, 3)) * 255).astype(np.uint8))
    tensor = preprocess(encoded(image, fmt), Preprocessing(height=28, width=28, channels=3))
    assert tensor.shape == (3, 28, 28) and tensor.dtype == np.float32
    assert 0.0 <= tensor.min() and tensor.max() <= 1.0


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F"])
def test_every_mode_converts_to_grayscale_and_rgb(mode):
    image = Image.new(mode, (20, 10))
    for channels in (1, 3):
        tensor = to_model_input(image, Preprocessing(height=8, width=8, channels=channels))
        assert tensor.shape == (channels, 8, 8)
        assert np.isfinite(tensor).all()


def test_exif_orientation_is_applied():
    image = Image.new("L", (40, 20), 0)
    image.paste(255, (0, 0, 20, 20))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view"
    decoded = decode(encoded(image, "JPEG", exif=exif.tobytes()))
    assert decoded.size == (20, 40)
    pixels = np.asarray(decoded)
    assert pixels[:15].mean() > 200 and pixels[-15:].mean() < 50  # the white half now on top


def test_transparency_is_composited_onto_the_background():
    image = Image.new("RGBA", (4, 4), (255, 255, 255, 0))
    assert to_model_input(image, Preprocessing(height=4, width=4)).max() == 0.0
    assert to_model_input(image, Preprocessing(height=4, width=4, background=255)).min() == 1.0


def test_pad_keeps_the_aspect_ratio():
    image = Image.new("L", (40, 20), 255)
    tensor = to_model_input(image, Preprocessing(height=20, width=20, resize="pad"))
    assert tensor[0, 0].max() == 0.0 and tensor[0, 10].min() == 1.0  # black bars above, image in the middle


def test_pixel_limit_is_checked_before_decoding():
    big = encoded(Image.new("L", (3000, 2000)), "PNG")
    with pytest.raises(ImageDecodeError, match="3000x2000 = 6000000 pixels, over the limit of 1000000"):
        decode(big, max_pixels=1_000_000)


def test_normalisation_round_trips_through_to_image():
    spec = Preprocessing(height=6, width=5, channels=3, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    image = Image.fromarray((np.random.default_rng(1).random((6, 5, 3)) * 255).astype(np.uint8))
    assert np.array_equal(np.asarray(to_image(to_model_input(image, spec), spec)), np.asarray(image))


def test_spec_round_trips_through_json():
    spec = Preprocessing(height=64, width=48, channels=3, resize="pad", mean=(0.1, 0.2, 0.3), std=(1.0, 2.0, 3.0))
    assert Preprocessing.from_json(spec.to_json()) == spec


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_either_decode_or_raise_image_decode_error(data):
    try:
        tensor = preprocess(data, Preprocessing())
    except ImageDecodeError:
        return
    assert tensor.shape == (1, 28, 28)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["PNG", "JPEG", "GIF", "BMP", "WEBP"]), st.integers(0, 2000), st.integers(1, 64))
def test_damaged_real_files_never_escape_as_other_errors(fmt, cut, flip):
    data = bytearray(encoded(Image.new("RGB", (32, 32), (200, 10, 10)), fmt))
    cut = min(cut, len(data) - 1)
    data[cut] ^= flip
    try:
        preprocess(bytes(data[: max(cut, 1) * 2]), Preprocessing())
    except ImageDecodeError:
        pass
