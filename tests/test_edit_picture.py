"""The edit picture: copies made here with known edits and their exact transforms, read back as numbers
(the summary) and as a picture (layout, colours). Thumbnails go through JPEG, as fingerprints store them."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps
from skimage import data

from copy_detection import edit_picture as ep

IDENTITY = np.array([[1.0, 0, 0], [0, 1, 0]])


def thumbnail(picture: Image.Image, side: int = 192) -> Image.Image:
    small = picture.copy()
    small.thumbnail((side, side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=80)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def compare(copy: Image.Image, original: Image.Image, copy_to_original: np.ndarray) -> ep.EditSummary:
    return ep.summarise(thumbnail(copy), thumbnail(original), copy.size, original.size, copy_to_original)


@pytest.fixture(scope="module")
def original() -> Image.Image:
    return Image.fromarray(data.astronaut())  # 512 x 512


def cropped_mirrored_captioned(original: Image.Image) -> tuple[Image.Image, np.ndarray, float]:
    """80 % of each side from inside the picture, mirrored, a white caption bar below: the copy, its exact
    copy -> original transform, and the bar's share of the copy."""
    left, top, side, bar = 64, 40, 410, 80
    copy = ImageOps.mirror(original.crop((left, top, left + side, top + side)))
    captioned = Image.new("RGB", (side, side + bar), (255, 255, 255))
    captioned.paste(copy, (0, 0))
    font = ImageFont.load_default(size=40)
    ImageDraw.Draw(captioned).text((side / 2, side + bar / 2), "monday mood", fill=(0, 0, 0), font=font, anchor="mm")
    # The mirror sends x to side - x; the bar's rows map below the crop, onto the original's own pixels.
    return captioned, np.array([[-1.0, 0, left + side], [0, 1, top]]), bar / (side + bar)


def test_crop_caption_and_mirror_are_read_back(original):
    copy, to_original, bar_share = cropped_mirrored_captioned(original)
    summary = compare(copy, original, to_original)
    assert summary.mirrored
    assert summary.cropped_to == pytest.approx((410 / 512) ** 2, abs=0.03)
    assert summary.added_fraction == pytest.approx(bar_share, abs=0.05)
    assert summary.changed_fraction < 0.02 and summary.recoloured_fraction < 0.02
    assert summary.rotation_degrees == pytest.approx(0, abs=0.01) and summary.scale == pytest.approx(1)
    assert "mirrored" in summary.describe() and "shows 64% of the original" in summary.describe()


def test_an_untouched_smaller_copy_shows_no_edit(original):
    copy = original.resize((300, 300), Image.Resampling.LANCZOS)
    summary = compare(copy, original, np.array([[512 / 300, 0, 0], [0, 512 / 300, 0]]))
    assert summary.cropped_to == pytest.approx(1, abs=0.01) and not summary.mirrored
    assert summary.scale == pytest.approx(300 / 512)
    assert summary.added_fraction < 0.01 and summary.changed_fraction < 0.01 and summary.recoloured_fraction < 0.01


def test_brightness_and_contrast_are_not_changes(original):
    copy = ImageEnhance.Contrast(ImageEnhance.Brightness(original).enhance(1.2)).enhance(0.85)
    summary = compare(copy, original, IDENTITY)
    assert summary.changed_fraction < 0.02 and summary.recoloured_fraction < 0.02


def test_a_grayscale_copy_is_recoloured_not_changed(original):
    summary = compare(original.convert("L").convert("RGB"), original, IDENTITY)
    assert summary.recoloured_fraction > 0.25  # the suit, the face, the flag: everything that had colour
    assert summary.changed_fraction < 0.02


def test_rotation_and_logo(original):
    turn = cv2.getRotationMatrix2D((256, 256), 8, 1.0)  # anticlockwise on screen, as OpenCV documents
    copy = Image.fromarray(cv2.warpAffine(np.asarray(original), turn, (512, 512), borderValue=(255, 255, 255)))
    ImageDraw.Draw(copy).rounded_rectangle((340, 420, 490, 480), radius=15, fill=(20, 160, 60))
    summary = compare(copy, original, cv2.invertAffineTransform(turn))
    assert summary.rotation_degrees == pytest.approx(8, abs=0.01) and not summary.mirrored
    assert "rotated 8° anticlockwise" in summary.describe()
    assert 0.03 < summary.added_fraction < 0.1  # the white corners
    assert summary.changed_fraction == pytest.approx(150 * 60 / 512**2, abs=0.015)


def test_letterboxed_copy_adds_the_bars(original):
    frame = Image.new("RGB", (640, 360), (0, 0, 0))
    frame.paste(original.resize((360, 360)), (140, 0))
    summary = compare(frame, original, np.array([[512 / 360, 0, -140 * 512 / 360], [0, 512 / 360, 0]]))
    assert summary.added_fraction == pytest.approx(280 / 640, abs=0.03)
    assert summary.cropped_to == pytest.approx(1, abs=0.01) and summary.changed_fraction < 0.02


def test_png_layout_and_colours(original):
    copy, to_original, _ = cropped_mirrored_captioned(original)
    small_copy, small_original = thumbnail(copy), thumbnail(original)
    png = ep.edit_picture_png(small_copy, small_original, copy.size, original.size, to_original)
    figure = Image.open(io.BytesIO(png))
    assert figure.format == "PNG" and figure.mode == "RGB"
    copy_width = round(small_copy.width * ep.PANEL_HEIGHT / small_copy.height)
    assert figure.size == (ep.MARGIN + (ep.PANEL_HEIGHT + ep.MARGIN) + 2 * (copy_width + ep.MARGIN),
                           ep.TITLE_HEIGHT + ep.PANEL_HEIGHT + ep.LEGEND_HEIGHT + ep.MARGIN)
    pixels = np.asarray(figure).astype(int)
    third = ep.MARGIN + ep.PANEL_HEIGHT + ep.MARGIN + copy_width + ep.MARGIN
    red, green, blue = pixels[ep.TITLE_HEIGHT + ep.PANEL_HEIGHT - 5, third + 5]  # inside the caption bar
    assert blue > red + 60 and blue > green + 30, "the caption bar is tinted as added"
    outline = pixels[ep.TITLE_HEIGHT + ep.PANEL_HEIGHT // 2, ep.MARGIN + 30:ep.MARGIN + 35]  # the crop's left side
    assert any(r > 200 and g > 180 and b < 90 for r, g, b in outline), "the copy's part of the original is outlined"


def test_a_slightly_misfitted_transform_changes_nothing(original):
    """RANSAC's fit is off by a pixel or two and a fraction of a percent; that is no edit."""
    copy, to_original, _ = cropped_mirrored_captioned(original)
    misfit = np.vstack([to_original, [0, 0, 1]]) @ np.vstack([cv2.getRotationMatrix2D((205, 245), 0, 1.01), [0, 0, 1]])
    misfit[:2, 2] += (3, -3)
    summary = compare(copy, original, misfit[:2])
    assert summary.changed_fraction < 0.01 and summary.recoloured_fraction < 0.01
