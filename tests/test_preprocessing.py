"""The shared preprocessing: formats, modes, orientation, limits, and never a crash on junk."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from PIL import Image

from lookalike.preprocessing import ImageDecodeError, Preprocessing, decode, preprocess, to_image, to_model_input
from tests import odd_images


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


def exact_model_input(data: bytes, spec: Preprocessing) -> np.ndarray:
    """The reference the fast path must stay close to, in plain Pillow: the whole picture decoded,
    composited onto the background and converted, then one bilinear resize or ImageOps.pad."""
    from PIL import ImageOps

    rgba = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGBA")
    backdrop = Image.new("RGBA", rgba.size, (spec.background,) * 3 + (255,))
    whole = Image.alpha_composite(backdrop, rgba).convert(spec.mode)
    if spec.resize == "pad":
        fill = spec.background if spec.channels == 1 else (spec.background,) * 3
        return to_model_input(ImageOps.pad(whole, (spec.width, spec.height), Image.Resampling.BILINEAR, color=fill), spec)
    return to_model_input(whole.resize((spec.width, spec.height), Image.Resampling.BILINEAR), spec)


BIG_FILES = {  # what each exercises
    "JPEG (draft)": lambda: odd_images.encoded(odd_images.photo(2400, 1600), "JPEG", quality=90),
    "PNG (reduce)": lambda: odd_images.encoded(odd_images.photo(2400, 1600), "PNG", compress_level=1),
    "palette PNG with transparency (strips)": lambda: odd_images.clip_art(2400, 1600),
}


@pytest.mark.parametrize("name", list(BIG_FILES))
@pytest.mark.parametrize(
    "spec",
    [Preprocessing(height=64, width=64, channels=3), Preprocessing(), Preprocessing(height=48, width=64, channels=3, resize="pad")],
    ids=["rgb-64", "gray-28", "rgb-pad"],
)
def test_the_fast_path_stays_close_to_the_exact_one(name, spec):
    data = BIG_FILES[name]()
    difference = np.abs(preprocess(data, spec) - exact_model_input(data, spec)).mean() * 255
    assert difference < 1.0, f"{name}: {difference:.2f} grey levels from the exact path"


def test_a_big_jpeg_decodes_at_a_reduced_scale_but_large_enough():
    data = odd_images.encoded(odd_images.photo(2400, 1600), "JPEG", quality=90)
    spec = Preprocessing(height=64, width=64, channels=3)
    assert decode(data).size == (2400, 1600)
    width, height = decode(data, spec=spec).size
    assert (width, height) == (300, 200)  # 1/8: still over 3x what the 64x64 resize keeps (192)


@pytest.mark.parametrize("height, width, decoded", [(400, 64, (800, 1200)), (64, 400, (1600, 2400))], ids=["tall", "wide"])
def test_drafting_a_turned_photo_keeps_enough_pixels_along_each_axis(height, width, decoded):
    stored = odd_images.photo(1600, 2400).transpose(Image.Transpose.ROTATE_90)  # 2400x1600, on its side
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to view: 1600x2400
    data = odd_images.encoded(stored, "JPEG", quality=90, exif=exif.tobytes())
    spec = Preprocessing(height=height, width=width, channels=3)
    # The smallest DCT scale that leaves 3x the input along each axis of the upright picture:
    # 1/2 for the tall input, 1/1 for the wide one (1/2 would leave 800 < 1200 pixels across).
    assert decode(data, spec=spec).size == decoded
    assert np.abs(preprocess(data, spec) - exact_model_input(data, spec)).mean() * 255 < 1.0


@pytest.mark.parametrize("channels, backdrop", [(3, 255), (1, 0)])
def test_transparency_defaults_to_white_for_colour_and_black_for_grayscale(channels, backdrop):
    spec = Preprocessing(channels=channels)
    assert spec.background == backdrop
    assert json.loads(spec.to_json())["background"] == backdrop  # stored explicitly in every model
    nothing = Image.new("RGBA", (4, 4), (30, 200, 90, 0))  # fully transparent, with junk colour
    assert np.all(to_model_input(nothing, spec) == backdrop / 255)


def test_specs_written_before_the_white_default_read_back_unchanged():
    old = '{"background": 0, "channels": 3, "height": 64, "mean": [0.0], "resize": "pad", "std": [1.0], "width": 64}'
    assert Preprocessing.from_json(old).background == 0


def test_a_cutout_is_closest_to_its_reshared_copy_with_the_default_fill():
    """The rule, measured on one cut-out (docs/preprocessing.md has it on 200 icons): a copy
    flattened onto white and saved as JPEG, as re-shares are, looks like the white fill."""
    cutout = odd_images.cutout(96)
    copy = Image.alpha_composite(Image.new("RGBA", cutout.size, (255, 255, 255, 255)), cutout).convert("RGB")
    reshared = odd_images.encoded(copy, "JPEG", quality=85)
    original = odd_images.encoded(cutout, "PNG")
    white, black = Preprocessing(height=64, width=64, channels=3), Preprocessing(height=64, width=64, channels=3, background=0)
    assert np.abs(preprocess(original, white) - preprocess(reshared, white)).mean() < 0.02
    assert np.abs(preprocess(original, black) - preprocess(reshared, black)).mean() > 0.3


def test_odd_but_valid_pictures_keep_their_content():
    rgb = Preprocessing(height=64, width=96, channels=3)
    want = odd_images.gradient().astype(np.float32).transpose(2, 0, 1) / 255  # (3, 64, 96)
    assert np.abs(preprocess(odd_images.cmyk_jpeg(), rgb) - want).mean() < 0.03  # CMYK back to RGB
    assert np.abs(preprocess(odd_images.exif_rotated_jpeg(), rgb) - want).mean() < 0.03  # turned upright
    wide = preprocess(odd_images.png_16_bit(), Preprocessing(height=64, width=96))[0]
    assert np.abs(wide - want[0]).max() < 0.01  # 16 bits scaled down, not saturated
    disc = preprocess(odd_images.palette_with_transparency(), Preprocessing(height=64, width=64, channels=3))
    assert disc[:, 32, 32].tolist() == [1.0, 0.0, 0.0] and disc[:, 0, 0].tolist() == [1.0, 1.0, 1.0]  # red on white
    square = preprocess(odd_images.la_png(), Preprocessing(height=64, width=64))[0]
    assert square[32, 32] == pytest.approx(128 / 255) and square[0, 0] == 0.0  # grey on the grayscale black


@pytest.mark.parametrize("name", list(odd_images.REFUSED))
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow's own, at open; the file is refused
def test_odd_files_are_refused_with_their_reason(name):
    build, reason = odd_images.REFUSED[name]
    data = build()
    for spec in (None, Preprocessing(channels=3)):  # with the spec, a JPEG is drafted: same verdict
        with pytest.raises(ImageDecodeError) as raised:
            decode(data, spec=spec)
        assert raised.value.reason == reason


def test_pillow_bomb_warnings_are_refused_even_when_the_process_makes_them_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(ImageDecodeError) as raised:
            decode(odd_images.png_bomb(10_000, 10_000))
    assert raised.value.reason == "IMAGE_TOO_LARGE" and raised.value.metadata == {"limit": "40000000"}
    assert "over the limit of 40000000 pixels" in raised.value.message


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_the_pixel_limit_never_exceeds_pillows_own():
    with pytest.raises(ImageDecodeError) as raised:
        decode(odd_images.png_bomb(10_000, 10_000), max_pixels=10**9)
    assert raised.value.reason == "IMAGE_TOO_LARGE" and raised.value.metadata == {"limit": str(Image.MAX_IMAGE_PIXELS)}


def test_a_gif_frame_beyond_its_screen_grows_the_picture():
    assert decode(odd_images.gif_frame_beyond_screen()).size == (64, 48)


def test_a_pillow_warning_in_a_server_process_is_a_json_log_line_without_paths():
    # In a process of its own: logs.configure sets up the process, as a server's main does.
    script = (
        "from server_toolkit import logs; logs.configure()\n"
        "from lookalike.preprocessing import ImageDecodeError, decode\n"
        "from tests import odd_images\n"
        "try:\n"
        "    decode(odd_images.png_bomb(10_000, 10_000), max_pixels=10**9)\n"
        "except ImageDecodeError as refused:\n"
        "    print(refused.reason)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[1])
    assert done.returncode == 0 and not done.stderr, done.stderr  # before: Pillow's warning, raw, with a path
    lines = done.stdout.splitlines()
    assert lines[-1] == "IMAGE_TOO_LARGE"
    (warning,) = [json.loads(line) for line in lines[:-1]]
    assert (warning["severity"], warning["logger"], warning["category"]) == ("WARNING", "py.warnings", "DecompressionBombWarning")
    assert "could be decompression bomb" in warning["message"] and "/" not in warning["message"]
