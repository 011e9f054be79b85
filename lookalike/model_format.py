"""The model repository format, the one definition: training writes it, the encoder service reads it.

    <repository>/<name>/<version>/encoder.onnx   required
    <repository>/<name>/<version>/decoder.onnx   optional: Reconstruct works only when present

A name is 1 to 128 letters, digits, '_', '-' and '.', starting with a letter or digit, so a
folder starting with '.' is never a model or a version: the exporter builds each version in
`.tmp-<version>-<random>/` beside the published ones and renames it into place when complete.
A version is a positive integer written without leading zeros ("01" is not version 1, so two
folders can never claim one version). Both ONNX files carry the same `metadata_props`, a
`ModelCard` (see `ModelCard.to_metadata`). An encoder made elsewhere (any ONNX image encoder with
NCHW float input) carries instead the few flat keys of `FOREIGN_KEYS`, which say how to feed it
and what it gives (`ModelCard.from_foreign_metadata`); `read_card` takes either. Torch-, onnx- and
onnxruntime-free: the exporter, the encoder service and the tests all import it. See
docs/model-repository.md.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from lookalike.preprocessing import RESIZE_MODES, Preprocessing
from lookalike.v1 import images_pb2

ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"

# Model names: what ModelRef.name documents. No leading '.', '_' or '-': hidden and temp folders start so.
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", re.ASCII)
VERSION = re.compile(r"[1-9][0-9]{0,9}", re.ASCII)
MAX_VERSION = 2**31 - 1  # ModelRef.version is an int32: a higher version could not be asked for

PREPROCESSING_KEY = "lookalike.preprocessing"  # Preprocessing.to_json()
MODEL_KEY = "lookalike.model"  # JSON of the ModelCard's other fields

# An encoder not made by `lookalike export`: flat keys, each one plain value, so any tool that edits
# ONNX metadata_props (onnx.helper.set_model_props, a few lines of Python) can describe a model.
CHANNELS_KEY = "lookalike.channels"  # 1 (grayscale) or 3 (RGB)
HEIGHT_KEY = "lookalike.height"  # model input height, pixels
WIDTH_KEY = "lookalike.width"  # model input width, pixels
MEAN_KEY = "lookalike.mean"  # "0.485,0.456,0.406": subtracted per channel from pixels scaled to 0..1
STD_KEY = "lookalike.std"  # "0.229,0.224,0.225": divides per channel after the mean
EMBEDDING_DIM_KEY = "lookalike.embedding_dim"  # length of the vectors the output gives
FOREIGN_KEYS = (CHANNELS_KEY, HEIGHT_KEY, WIDTH_KEY, MEAN_KEY, STD_KEY, EMBEDDING_DIM_KEY)
# Optional, with their defaults: how search compares the vectors, how pictures of another shape
# fit the input, the fill behind transparency and padding, which output is the embedding (needed
# only when the graph has several), and the name ModelInfo shows.
METRIC_KEY, RESIZE_KEY, BACKGROUND_KEY = "lookalike.metric", "lookalike.resize", "lookalike.background"
OUTPUT_KEY, ARCHITECTURE_KEY = "lookalike.output", "lookalike.architecture"
FOREIGN_ARCHITECTURE = "onnx"  # ModelInfo.architecture of a foreign encoder that names none
# Larger than any image encoder's input: such a value is a typo ("224224"), and a warm-up batch of
# 64 at 4096 x 4096 x 3 is already 12 GB of float32.
MAX_INPUT_SIDE = 4096

METRICS = ("cosine", "dot_product", "squared_l2")
METRIC_ENUM = {
    "cosine": images_pb2.METRIC_COSINE,
    "dot_product": images_pb2.METRIC_DOT_PRODUCT,
    "squared_l2": images_pb2.METRIC_SQUARED_L2,
}
METRIC_NAME = {enum: name for name, enum in METRIC_ENUM.items()}


def is_model_name(name: str) -> bool:
    return isinstance(name, str) and MODEL_NAME.fullmatch(name) is not None


def check_model_name(name: str) -> str:
    """`name`, or ValueError when it breaks the rules (a name like "../x" would escape the repository)."""
    if not is_model_name(name):
        raise ValueError(
            f"model name {name!r} must be 1 to 128 letters, digits, '_', '-' or '.', starting with a letter or digit"
        )
    return name


def check_version(version: int) -> int:
    """`version`, or ValueError when it is not an integer in 1..MAX_VERSION."""
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= MAX_VERSION:
        raise ValueError(f"version must be a positive integer up to {MAX_VERSION}, got {version!r}")
    return version


def version_of(folder_name: str) -> int | None:
    """The version a folder of that name publishes, or None when it is not a version folder."""
    if VERSION.fullmatch(folder_name) is None or int(folder_name) > MAX_VERSION:
        return None
    return int(folder_name)


def model_dir(repository: Path, name: str) -> Path:
    return Path(repository) / check_model_name(name)


def version_dir(repository: Path, name: str, version: int) -> Path:
    return model_dir(repository, name) / str(check_version(version))


def temporary_version_dir(model_dir: Path, version: int) -> Path:
    """Where the exporter builds `version` before renaming it into place: hidden, so never served."""
    return model_dir / f".tmp-{version}-{secrets.token_hex(4)}"


def published_versions(model_dir: Path) -> list[int]:
    """The versions under a model folder, lowest first: version folders holding an encoder."""
    if not model_dir.is_dir():
        return []
    found = ((version_of(child.name), child) for child in model_dir.iterdir())
    return sorted(version for version, child in found if version is not None and (child / ENCODER_FILE).is_file())


def scan_repository(repository: Path) -> Iterator[tuple[str, int]]:
    """(name, version) of every published version; folders that break the rules are skipped."""
    if not repository.is_dir():
        return
    for child in sorted(repository.iterdir()):
        if is_model_name(child.name):
            for version in published_versions(child):
                yield child.name, version


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """What a published version says about itself, in its files' `metadata_props`."""

    name: str  # the folder's: a copied or renamed folder serves under its new address
    version: int
    architecture: str  # a key of training.models.ARCHITECTURES; a foreign encoder's own name, or "onnx"
    config: dict[str, Any]  # the architecture's config dataclass, as a dict
    embedding_dim: int  # length of the vectors the encoder gives
    metric: str  # one of METRICS: how search should compare the vectors
    preprocessing: Preprocessing  # exactly what training did to the images
    data_hash: str  # sha256 of the preprocessed training data
    trained_at: str  # ISO 8601, UTC
    metrics: dict[str, float]  # e.g. {"test_mse": 0.01}
    parity_max_abs_error: float | None  # ONNX Runtime against PyTorch at export; None: not measured (foreign)
    output: str = ""  # the graph output that holds the embeddings; "": the graph's only output

    def __post_init__(self) -> None:
        check_model_name(self.name)
        check_version(self.version)
        if self.metric not in METRICS:
            raise ValueError(f"unknown metric {self.metric!r}; the metrics are {', '.join(METRICS)}")
        if isinstance(self.embedding_dim, bool) or not isinstance(self.embedding_dim, int) or self.embedding_dim < 1:
            raise ValueError(f"embedding_dim must be a positive integer, got {self.embedding_dim!r}")

    def to_metadata(self) -> dict[str, str]:
        """The `metadata_props` of the version's ONNX files."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "preprocessing"}
        return {PREPROCESSING_KEY: self.preprocessing.to_json(), MODEL_KEY: json.dumps(fields)}

    @classmethod
    def from_metadata(cls, props: Mapping[str, str], name: str, version: int) -> ModelCard:
        """The card of the version at `name`/`version`; ValueError naming what is missing or wrong.

        Keys this code does not know are ignored, so an older server reads a newer exporter's files.
        """
        missing = sorted({PREPROCESSING_KEY, MODEL_KEY} - props.keys())
        if missing:
            raise ValueError(f"metadata lacks {missing}; export the model with `lookalike export`")
        try:
            preprocessing = Preprocessing.from_json(props[PREPROCESSING_KEY])
        except (ValueError, TypeError, KeyError, AssertionError) as error:
            raise ValueError(f"metadata {PREPROCESSING_KEY!r} is not a preprocessing spec: {error}") from None
        try:
            fields = json.loads(props[MODEL_KEY])
        except ValueError as error:
            raise ValueError(f"metadata {MODEL_KEY!r} is not JSON: {error}") from None
        if not isinstance(fields, dict):
            raise ValueError(f"metadata {MODEL_KEY!r} must be a JSON object")
        optional = {f.name for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
        wanted = {f.name for f in dataclasses.fields(cls)} - {"name", "version", "preprocessing"}
        missing = sorted(wanted - optional - fields.keys())
        if missing:
            raise ValueError(f"metadata {MODEL_KEY!r} lacks {missing}")
        known = {key: fields[key] for key in wanted & fields.keys()}
        return cls(name=name, version=version, preprocessing=preprocessing, **known)

    @classmethod
    def from_foreign_metadata(cls, props: Mapping[str, str], name: str, version: int) -> ModelCard:
        """The card of an encoder made elsewhere, from the `FOREIGN_KEYS` (and the optional keys);
        ValueError naming the key that is missing or wrong."""
        missing = [key for key in FOREIGN_KEYS if key not in props]
        if missing:
            raise ValueError(
                f"metadata lacks {missing}: an ONNX encoder not made by `lookalike export` must name its input size, "
                "channels, normalisation and embedding size (docs/model-repository.md)"
            )
        if props[CHANNELS_KEY].strip() not in ("1", "3"):
            raise ValueError(f"metadata {CHANNELS_KEY!r} must be 1 (grayscale) or 3 (RGB), got {props[CHANNELS_KEY]!r}")
        channels = int(props[CHANNELS_KEY])
        metric = props.get(METRIC_KEY, "cosine")
        if metric not in METRICS:
            raise ValueError(f"metadata {METRIC_KEY!r} must be one of {', '.join(METRICS)}, got {metric!r}")
        resize = props.get(RESIZE_KEY, "stretch")
        if resize not in RESIZE_MODES:
            raise ValueError(f"metadata {RESIZE_KEY!r} must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
        spec = {
            "channels": channels,
            "height": _integer(props, HEIGHT_KEY, 1, MAX_INPUT_SIDE),
            "width": _integer(props, WIDTH_KEY, 1, MAX_INPUT_SIDE),
            "mean": _per_channel(props, MEAN_KEY, channels, positive=False),
            "std": _per_channel(props, STD_KEY, channels, positive=True),
            "resize": resize,
        }
        if BACKGROUND_KEY in props:
            spec["background"] = _integer(props, BACKGROUND_KEY, 0, 255)
        return cls(
            name=name,
            version=version,
            architecture=props.get(ARCHITECTURE_KEY) or FOREIGN_ARCHITECTURE,
            config={},
            embedding_dim=_integer(props, EMBEDDING_DIM_KEY, 1, 2**31 - 1),
            metric=metric,
            preprocessing=Preprocessing(**spec),  # every field checked above, so its asserts cannot fire
            data_hash="",
            trained_at="",
            metrics={},
            parity_max_abs_error=None,
            output=props.get(OUTPUT_KEY, ""),
        )


def read_card(props: Mapping[str, str], name: str, version: int) -> ModelCard:
    """The card of an encoder's `metadata_props`: our export's when it carries one (either of its
    keys), else a foreign encoder's. ValueError naming what is missing or wrong."""
    if MODEL_KEY in props or PREPROCESSING_KEY in props:
        return ModelCard.from_metadata(props, name, version)
    return ModelCard.from_foreign_metadata(props, name, version)


def _integer(props: Mapping[str, str], key: str, low: int, high: int) -> int:
    text = props[key].strip()
    if not re.fullmatch(r"[0-9]{1,10}", text, re.ASCII) or not low <= int(text) <= high:
        raise ValueError(f"metadata {key!r} must be an integer from {low} to {high}, got {props[key]!r}")
    return int(text)


def _per_channel(props: Mapping[str, str], key: str, channels: int, *, positive: bool) -> tuple[float, ...]:
    """Comma-separated numbers, one for every channel or one for all."""
    try:
        values = tuple(float(part) for part in props[key].split(","))
    except ValueError:
        values = ()
    counts = "1" if channels == 1 else f"1 or {channels}"
    if len(values) not in (1, channels) or not all(map(math.isfinite, values)) or (positive and min(values) <= 0):
        kind = "positive numbers" if positive else "numbers"
        raise ValueError(f"metadata {key!r} must be {counts} comma-separated {kind} (one per channel), got {props[key]!r}")
    return values
