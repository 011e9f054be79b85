"""Training settings, torch-free: the CLI builds its --help from these defaults without importing torch."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any


@dataclasses.dataclass
class AugmentConfig:
    """The edit suite (training/augment.py): each edit is drawn per image and applied with probability p.

    The defaults are edits a copy of a digit or photo survives while staying recognisable. `lookalike
    eval` measures copy detection with its own held-out edits (copy_detection/copy_edits.py): of the same
    kinds, but other code and parameters, so it measures generalisation, not memorised edits.
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
    # Edits of re-shared pictures, colour images only. Each of the next four is applied with probability
    # `sharing` instead of p: a copy seldom shows all of them at once. 0 (1 for the fractions kept) turns one off.
    sharing: float = 0.3  # probability of each of downscale, letterbox, caption and overlay
    downscale: float = 0.3  # a small copy: keeps a fraction in [downscale, 1] of the side, scaled back up
    letterbox: float = 0.55  # keeps a fraction in [letterbox, 1] of each side, anywhere, borders of one colour
    caption: float = 0.3  # a bar up to this fraction of the height, one colour with glyph-like marks
    overlay: float = 0.35  # a watermark patch up to this fraction of each side, one colour, partly transparent
    grayscale: float = 0.2  # colour images only: probability of a grey copy

    def __post_init__(self) -> None:
        if self.jpeg_quality is not None:
            self.jpeg_quality = tuple(int(q) for q in self.jpeg_quality)  # JSON in checkpoints makes it a list
        for probability in (self.p, self.hflip, self.sharing, self.grayscale):
            assert 0.0 <= probability <= 1.0, "probabilities lie in [0, 1]"
        assert 0.0 < self.downscale <= 1.0 and 0.0 < self.letterbox <= 1.0, "fractions kept lie in (0, 1]"
        assert 0.0 <= self.caption < 1.0 and 0.0 <= self.overlay < 1.0, "a bar or patch covers less than the image"
        assert 0.0 <= self.scale < 1.0, "scale must stay below 1, or a zoom could shrink the image to nothing"
        assert 0.0 < self.crop <= 1.0, "crop is the fraction of each side kept, in (0, 1]"
        assert 0.0 <= self.contrast < 1.0, "contrast below 1 keeps the gain positive"
        low, high = self.jpeg_quality or (1, 1)
        assert 1 <= low <= high <= 95, "JPEG quality is 1..95 in Pillow, low <= high"

    def only(self, edit: str) -> "AugmentConfig":
        """This config's `edit` applied to every image, every other edit off: robustness per edit."""
        assert edit in EDITS, f"edit must be one of {EDITS}"
        neutral = dict(rotation=0.0, scale=0.0, translate=0.0, crop=1.0, blur=0.0, brightness=0.0, contrast=0.0)
        neutral |= dict(jpeg_quality=None, hue=0.0, downscale=1.0, letterbox=1.0, caption=0.0, overlay=0.0)
        kept = {"brightness_contrast": ("brightness", "contrast")}.get(edit, (edit,))
        always = dict(hflip=float(edit == "hflip"), grayscale=float(edit == "grayscale"), sharing=float(edit in SHARING_EDITS))
        return AugmentConfig(p=1.0, **{**neutral, **{k: getattr(self, k) for k in kept}, **always})


SHARING_EDITS = ("downscale", "letterbox", "caption", "overlay")  # each applied with probability `sharing`
EDITS = ("rotation", "scale", "translate", "crop", "blur", "brightness_contrast", "jpeg_quality", "hue", "hflip",
         "grayscale", *SHARING_EDITS)  # fmt: skip
COLOUR_EDITS = ("hue", "hflip", "grayscale", *SHARING_EDITS)  # never applied to grayscale images


def default_cache_dir() -> Path:
    """$LOOKALIKE_CACHE_DIR, else $XDG_CACHE_HOME/lookalike, else ~/.cache/lookalike."""
    if os.environ.get("LOOKALIKE_CACHE_DIR"):
        return Path(os.environ["LOOKALIKE_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lookalike"


@dataclasses.dataclass
class LoadConfig:
    """How a folder of images is loaded (training.data.load_folder)."""

    # Decoded uint8 images keyed by file content and preprocessing (training/image_cache.py): a later
    # run over the same files decodes nothing. ~12 KB per 64x64 RGB image: 12 GB for a million.
    cache_dir: Path = dataclasses.field(default_factory=default_cache_dir)
    workers: int = dataclasses.field(default_factory=lambda: os.cpu_count() or 1)  # decoding processes; 1: in this one
    chunk: int = 32  # files per task sent to a worker: amortises the round trip, keeps the bar moving
    progress: bool = True  # a bar with an ETA on a terminal; a summary line either way

    def __post_init__(self) -> None:
        self.cache_dir = Path(self.cache_dir)
        assert self.workers >= 1 and self.chunk >= 1, "at least one worker and one file per chunk"


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
    # Training edits each image more often (p 0.8) than the suite's default 0.5: on the digits, mAP
    # 0.75 -> 0.78 at the same copy recall, measured on conv_fc.
    augment: AugmentConfig | None = dataclasses.field(default_factory=lambda: AugmentConfig(p=0.8))
    # Measured on the digits with conv_fc, 12 epochs, mAP / copy recall@1 (reports/digits, `lookalike eval`):
    # plain 0.47 / 0.29; edits alone 0.59 / 0.62; consistency 0.05 at temperature 0.5 0.78 / 0.71;
    # 0.5 at 0.1 0.51 / 0.82. A low temperature tells instances apart (copy detection) but scatters
    # each class; 0.5 keeps classes together, which mAP rewards.
    consistency: float = 0.05  # weight of the consistency term next to the reconstruction MSE
    temperature: float = 0.5  # softmax temperature of the consistency term, on cosine similarities
    num_threads: int = 2  # torch intra-op threads; more than the cores only adds contention
    device: str = "cpu"  # "cpu" or "cuda"; the exported ONNX models run anywhere
    progress: bool = True  # a bar per epoch with the running loss and ETA on a terminal; a line per epoch either way

    def __post_init__(self) -> None:
        if isinstance(self.augment, dict):  # read back from a checkpoint's JSON-like dict
            self.augment = AugmentConfig(**self.augment)
        assert self.consistency >= 0.0, "the consistency weight cannot be negative"
        assert self.consistency == 0.0 or self.augment is not None, "consistency compares two edited copies"
        assert self.temperature > 0.0, "temperature divides the similarities"
