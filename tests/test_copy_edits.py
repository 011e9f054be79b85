"""The held-out copy edits of `lookalike eval`: valid pictures of plausible size, seeded mixes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from copy_detection.copy_edits import EDITS, MIX, copies, edited, flattened, mixed


def _picture(mode: str = "RGB", size: tuple[int, int] = (48, 40)) -> Image.Image:
    """A small picture with structure in it: a red disc and a blue bar on a gradient."""
    gradient = np.linspace(0, 255, size[0], dtype=np.uint8)[None, :, None].repeat(size[1], 0).repeat(3, 2)
    picture = Image.fromarray(gradient, "RGB")
    draw = ImageDraw.Draw(picture)
    draw.ellipse((4, 4, 24, 24), fill=(220, 30, 30))
    draw.rectangle((28, 10, 44, 34), fill=(20, 40, 200))
    return picture.convert(mode)


@pytest.mark.parametrize("edit", [*EDITS, MIX])
@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P"])
def test_each_edit_gives_a_valid_picture_of_plausible_size(edit, mode):
    original = _picture(mode)
    copy = next(copies([original], edit, seed=0))
    assert copy.mode == "RGB"
    copy.load()
    width, height = copy.size
    assert 0.2 * original.width <= width <= 2.5 * original.width, f"{edit}: width {width}"
    assert 0.2 * original.height <= height <= 2.5 * original.height, f"{edit}: height {height}"
    assert np.asarray(copy).std() > 5, f"{edit} left a blank picture"


@pytest.mark.parametrize("edit", EDITS)
def test_each_edit_changes_the_picture(edit):
    original = _picture()
    copy = edited(original, edit, np.random.default_rng(0))
    same_size = copy.size == original.size
    assert not same_size or not np.array_equal(np.asarray(copy), np.asarray(original)), f"{edit} changed nothing"


def test_mixes_are_reproducible_and_differ_by_seed_and_picture():
    originals = [_picture(), _picture(size=(40, 48))]
    first = [np.asarray(c) for c in copies(originals, MIX, seed=7)]
    again = [np.asarray(c) for c in copies(originals, MIX, seed=7)]
    other = [np.asarray(c) for c in copies(originals, MIX, seed=8)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(a.shape == b.shape and np.array_equal(a, b) for a, b in zip(first, other))


def test_a_mix_applies_three_different_edits_in_order(monkeypatch):
    import copy_detection.copy_edits as copy_edits

    for seed in range(5):
        applied = []

        def recorder(name, edit):
            return lambda picture, rng, config: (applied.append(name), edit(picture, rng, config))[1]

        monkeypatch.setattr(copy_edits, "EDITS", {name: recorder(name, edit) for name, edit in EDITS.items()})
        mixed(_picture(), np.random.default_rng(seed))
        assert len(set(applied)) == 3, applied
        assert applied == sorted(applied, key=list(EDITS).index), "framing first, re-encoding last"


def test_transparency_is_flattened_on_white():
    cut_out = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    assert np.asarray(flattened(cut_out)).min() == 255
