"""The tools people use today to find copies, as reference rows of `lookalike eval`.

    vector = TOOLS["phash"].vector(picture, spec)   # (64,), compared by cosine

They work on the decoded pictures (not on model inputs), as the tools do, after the same mode
conversion and transparency fill as the models' preprocessing, so every row sees the same pixels:

- phash: the `imagehash` package's perceptual hash (64 bits), what de-duplication tools ship. Its bits
  become +-1, so cosine = 1 - 2 * Hamming distance / 64 and ranking by cosine is ranking by Hamming.
- thumbnail-32: the raw pixels of a 32x32 RGB thumbnail, 0..1, compared by cosine.

The colour histogram, the third tool, is a model (training/models/colour_histogram.py): it exports to
ONNX and is served like the autoencoders.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
from PIL import Image

from lookalike.preprocessing import Preprocessing, to_image, to_model_input

THUMBNAIL = Preprocessing(height=32, width=32, channels=3)  # 0..1 pixels: mean 0, std 1


@dataclasses.dataclass(frozen=True)
class Tool:
    name: str
    dim: int  # length of the vector
    note: str  # for the report
    vector: Callable[[Image.Image, Preprocessing], np.ndarray]  # a picture, the models' spec -> (dim,) float32, cosine


def _phash(picture: Image.Image, spec: Preprocessing) -> np.ndarray:
    import imagehash  # training-only dependency (the `train` extra), imported where needed

    bits = imagehash.phash(_as_model_sees(picture, spec)).hash.reshape(-1)  # (64,) bool
    return np.where(bits, 1.0, -1.0).astype(np.float32)


def _thumbnail(picture: Image.Image, spec: Preprocessing) -> np.ndarray:
    thumbnail = dataclasses.replace(THUMBNAIL, background=spec.background, resize=spec.resize)
    return to_model_input(picture, thumbnail).reshape(-1)  # (3072,)


def _as_model_sees(picture: Image.Image, spec: Preprocessing) -> Image.Image:
    """The picture at its own size, in RGB, with transparency filled as the models' preprocessing fills it."""
    own_size = Preprocessing(height=picture.height, width=picture.width, channels=3, background=spec.background)
    return to_image(to_model_input(picture, own_size), own_size)


TOOLS = {
    tool.name: tool
    for tool in (
        Tool("phash", 64, "imagehash pHash, 64 bits, ranked by Hamming distance", _phash),
        Tool("thumbnail-32", 3072, "32x32 RGB thumbnail, raw pixels, cosine", _thumbnail),
    )
}
