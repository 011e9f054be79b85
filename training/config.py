"""Training settings, torch-free: the CLI builds its --help from these defaults without importing torch."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass
class AugmentConfig:
    """The edit suite (training/augment.py): each edit is drawn per image and applied with probability p.

    The defaults are edits a copy of a digit or photo survives while staying recognisable; `lookalike
    eval` makes its copy-detection queries with these same settings and a fixed seed.
    """

    p: float = 0.5  # probability of each edit below, independently
    rotation: float = 15.0  # degrees, uniform in [-rotation, rotation]
    scale: float = 0.15  # zoom factor uniform in [1 - scale, 1 + scale]
    translate: float = 0.1  # shift, fraction of the side, uniform per axis
    crop: float = 0.8  # a crop keeps at least this fraction of each side, resized back to full size
    blur: float = 1.0  # Gaussian blur sigma up to this many pixels
    brightness: float = 0.2  # added to 0..1 pixels, uniform in [-brightness, brightness]
    contrast: float = 0.3  # gain uniform in [1 - contrast, 1 + contrast], around the image's mean grey
    jpeg_quality: tuple[int, int] = (30, 90)  # JPEG re-encoding quality range (Pillow)
    hue: float = 0.1  # colour images only: hue rotation, turns of the colour wheel, uniform +-
    hflip: float = 0.5  # colour images only: probability of a mirror image (digits must not be mirrored)

    def __post_init__(self) -> None:
        self.jpeg_quality = tuple(int(q) for q in self.jpeg_quality)  # JSON in checkpoints makes it a list
        assert 0.0 <= self.p <= 1.0 and 0.0 <= self.hflip <= 1.0, "probabilities lie in [0, 1]"
        assert 0.0 <= self.scale < 1.0, "scale must stay below 1, or a zoom could shrink the image to nothing"
        assert 0.0 < self.crop <= 1.0, "crop is the fraction of each side kept, in (0, 1]"
        assert 0.0 <= self.contrast < 1.0, "contrast below 1 keeps the gain positive"
        low, high = self.jpeg_quality
        assert 1 <= low <= high <= 95, "JPEG quality is 1..95 in Pillow, low <= high"


@dataclasses.dataclass
class TrainConfig:
    architecture: str = "conv_fc"  # a key of training.models.ARCHITECTURES
    model: dict[str, Any] = dataclasses.field(default_factory=dict)  # overrides of the architecture's config
    epochs: int = 20  # full passes over the training split
    batch_size: int = 64  # images per optimiser step
    lr: float = 2e-3  # peak learning rate of the one-cycle schedule
    weight_decay: float = 1e-4  # AdamW decoupled weight decay
    seed: int = 0  # seeds weights, shuffling, dropout and edits: same seed, same model
    # Robust embeddings: the encoder sees edited copies (augment), the decoder must rebuild the clean
    # image (denoising), and with consistency > 0 two edited copies of one image must land nearer each
    # other than any other image in the batch (training/losses.py). `augment=None` trains a plain autoencoder.
    augment: AugmentConfig | None = dataclasses.field(default_factory=AugmentConfig)
    consistency: float = 0.0  # weight of the consistency term next to the reconstruction MSE
    temperature: float = 0.1  # softmax temperature of the consistency term, on cosine similarities
    num_threads: int = 2  # torch intra-op threads; more than the cores only adds contention
    device: str = "cpu"  # "cpu" or "cuda"; the exported ONNX models run anywhere
    progress: bool = True  # tqdm bar per epoch with the running loss

    def __post_init__(self) -> None:
        if isinstance(self.augment, dict):  # read back from a checkpoint's JSON-like dict
            self.augment = AugmentConfig(**self.augment)
        assert self.consistency >= 0.0, "the consistency weight cannot be negative"
        assert self.consistency == 0.0 or self.augment is not None, "consistency compares two edited copies"
        assert self.temperature > 0.0, "temperature divides the similarities"
