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
    jpeg_quality: tuple[int, int] | None = (30, 90)  # JPEG re-encoding quality range (Pillow); None: never
    hue: float = 0.1  # colour images only: hue rotation, turns of the colour wheel, uniform +-
    hflip: float = 0.5  # colour images only: probability of a mirror image (digits must not be mirrored)

    def __post_init__(self) -> None:
        if self.jpeg_quality is not None:
            self.jpeg_quality = tuple(int(q) for q in self.jpeg_quality)  # JSON in checkpoints makes it a list
        assert 0.0 <= self.p <= 1.0 and 0.0 <= self.hflip <= 1.0, "probabilities lie in [0, 1]"
        assert 0.0 <= self.scale < 1.0, "scale must stay below 1, or a zoom could shrink the image to nothing"
        assert 0.0 < self.crop <= 1.0, "crop is the fraction of each side kept, in (0, 1]"
        assert 0.0 <= self.contrast < 1.0, "contrast below 1 keeps the gain positive"
        low, high = self.jpeg_quality or (1, 1)
        assert 1 <= low <= high <= 95, "JPEG quality is 1..95 in Pillow, low <= high"

    def only(self, edit: str) -> "AugmentConfig":
        """This config's `edit` applied to every image, every other edit off: robustness per edit."""
        assert edit in EDITS, f"edit must be one of {EDITS}"
        neutral = dict(rotation=0.0, scale=0.0, translate=0.0, crop=1.0, blur=0.0, brightness=0.0, contrast=0.0)
        neutral |= dict(jpeg_quality=None, hue=0.0, hflip=0.0)
        kept = {"brightness_contrast": ("brightness", "contrast")}.get(edit, (edit,))
        return AugmentConfig(p=1.0, **{**neutral, **{k: getattr(self, k) for k in kept}, "hflip": float(edit == "hflip")})


EDITS = ("rotation", "scale", "translate", "crop", "blur", "brightness_contrast", "jpeg_quality", "hue", "hflip")
COLOUR_EDITS = ("hue", "hflip")  # never applied to grayscale images


@dataclasses.dataclass
class TrainConfig:
    architecture: str = "conv_fc"  # a key of training.models.ARCHITECTURES
    model: dict[str, Any] = dataclasses.field(default_factory=dict)  # overrides of the architecture's config
    epochs: int = 12  # full passes over the training split; ~110 s for the 3600 digits on 2 CPU cores
    batch_size: int = 64  # images per optimiser step
    lr: float = 2e-3  # peak learning rate of the one-cycle schedule
    weight_decay: float = 1e-4  # AdamW decoupled weight decay
    seed: int = 0  # seeds weights, shuffling, dropout and edits: same seed, same model
    # Robust embeddings: the encoder sees edited copies (augment), the decoder must rebuild the clean
    # image (denoising), and with consistency > 0 two edited copies of one image must land nearer each
    # other than any other image in the batch (training/losses.py). `augment=None` trains a plain autoencoder.
    # Training edits each image more often (p 0.8) than the copy queries of `lookalike eval` (the suite's
    # default 0.5): mAP 0.75 -> 0.78 at the same copy recall, measured on conv_fc.
    augment: AugmentConfig | None = dataclasses.field(default_factory=lambda: AugmentConfig(p=0.8))
    # Measured on the digits with conv_fc, 12 epochs, mAP / copy recall@1 (reports/digits, `lookalike eval`):
    # plain 0.47 / 0.29; edits alone 0.59 / 0.62; consistency 0.05 at temperature 0.5 0.78 / 0.71;
    # 0.5 at 0.1 0.51 / 0.82. A low temperature tells instances apart (copy detection) but scatters
    # each class; 0.5 keeps classes together, which mAP rewards.
    consistency: float = 0.05  # weight of the consistency term next to the reconstruction MSE
    temperature: float = 0.5  # softmax temperature of the consistency term, on cosine similarities
    num_threads: int = 2  # torch intra-op threads; more than the cores only adds contention
    device: str = "cpu"  # "cpu" or "cuda"; the exported ONNX models run anywhere
    progress: bool = True  # tqdm bar per epoch with the running loss

    def __post_init__(self) -> None:
        if isinstance(self.augment, dict):  # read back from a checkpoint's JSON-like dict
            self.augment = AugmentConfig(**self.augment)
        assert self.consistency >= 0.0, "the consistency weight cannot be negative"
        assert self.consistency == 0.0 or self.augment is not None, "consistency compares two edited copies"
        assert self.temperature > 0.0, "temperature divides the similarities"
