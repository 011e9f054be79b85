"""The two stages `lookalike bulk-embed` runs on Ray's workers: decode (tasks) and embed (an actor pool).

Plain functions over numpy batches, without a Ray import, so they are tested and measured like any
code. Decode reads a part's listing and yields its files as model input, `chunk` files at a time
(a part of 224x224 RGB pictures would be gigabytes as one object). A file that cannot be used is a
row with a `reason` instead of pixels, so one bad file never fails its part or the job; the reasons
are the encoder's own (IMAGE_UNDECODABLE, IMAGE_TOO_LARGE...) because the decoding is:
`lookalike.preprocessing`, called exactly as the encoder service calls it, so the vectors are the
ones an EmbedRequest would give. Embed holds one ONNX Runtime session, loaded as the encoder
service loads it (`encoder_service.onnx_model.OnnxModel`: metadata, preprocessing, checks).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from lookalike.preprocessing import DEFAULT_MAX_PIXELS, ImageDecodeError, Preprocessing, preprocess
from lookalike_cli.bulk_parts import part_name

UNREADABLE = "FILE_UNREADABLE"  # not an image problem, so not one of the API's reasons
DEFAULT_MAX_FILE_BYTES = 32 * 1024 * 1024  # what `lookalike index` sends at most per file


def decode_parts(
    batch: dict[str, np.ndarray],
    *,
    listing: str,
    spec: Preprocessing,
    chunk: int,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Iterator[dict[str, np.ndarray]]:
    """The files of each part of `batch["part"]`, `chunk` at a time: their ids, labels, paths and
    mtimes, pixels (N, C, H, W) float32 and `reason`/`message` ("" when the file decoded)."""
    for part in batch["part"]:
        rows = pq.read_table(Path(listing) / part_name(int(part))).to_pydict()
        for start in range(0, len(rows["path"]), chunk):
            paths = rows["path"][start : start + chunk]
            pixels = np.zeros((len(paths), *spec.shape), np.float32)  # a bad file's row stays zero: embed skips it
            timestamps, reasons, messages = [], [], []
            for i, path in enumerate(paths):
                image, timestamp, reason, message = _decode_file(path, spec, max_file_bytes, max_pixels)
                if image is not None:
                    pixels[i] = image
                timestamps.append(timestamp)
                reasons.append(reason)
                messages.append(message)
            yield {
                "part": np.full(len(paths), part, np.int64),
                "id": np.array(rows["id"][start : start + chunk], dtype=object),
                "label": np.array(rows["label"][start : start + chunk], dtype=object),
                "path": np.array(paths, dtype=object),
                "timestamp": np.array(timestamps, np.int64),
                "reason": np.array(reasons, dtype=object),
                "message": np.array(messages, dtype=object),
                "pixels": pixels,
            }


def _decode_file(path: str, spec: Preprocessing, max_file_bytes: int, max_pixels: int) -> tuple[np.ndarray | None, int, str, str]:
    """(model input or None, mtime, reason, message) of one file."""
    try:
        with open(path, "rb") as f:
            status = os.fstat(f.fileno())
            timestamp = int(status.st_mtime)
            if status.st_size > max_file_bytes:
                return None, timestamp, "IMAGE_TOO_LARGE", f"{status.st_size} bytes, over the {max_file_bytes}-byte limit per file"
            data = f.read()
    except OSError as error:
        return None, 0, UNREADABLE, f"cannot read: {error.strerror}"
    try:
        return preprocess(data, spec, max_pixels), timestamp, "", ""
    except ImageDecodeError as error:  # preprocessing's one way to refuse a file
        return None, timestamp, error.reason, error.message


class Embedder:
    """One ONNX Runtime session per actor; rows with a reason get a zero vector, which the driver drops."""

    def __init__(self, version_dir: str, gpu: bool, threads: int, batch_size: int) -> None:
        from encoder_service.execution_providers import CUDA, providers_for
        from encoder_service.onnx_model import OnnxModel

        # Spinning off: the decode tasks beside this actor need the cores it would spin on.
        self.model = OnnxModel(Path(version_dir), providers_for("cuda" if gpu else "cpu"), threads, spinning=False)
        if gpu and self.model.execution_provider != CUDA:  # ONNX Runtime falls back silently: a GPU job must not crawl on CPU
            raise RuntimeError(f"asked for a GPU but ONNX Runtime runs {self.model.execution_provider}")
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        pixels = batch.pop("pixels")
        good = batch["reason"] == ""
        vectors = np.zeros((len(good), self.model.card.embedding_dim), np.float32)
        rows = np.flatnonzero(good)
        for start in range(0, len(rows), self.batch_size):
            run = rows[start : start + self.batch_size]
            vectors[run] = self.model.embed(np.ascontiguousarray(pixels[run]))
        batch["vector"] = vectors
        return batch
