"""Image files -> uint8 pixels in worker processes; no file, however broken, stops the load.

Each file is read, hashed (its key in the decoded-image cache) and, unless the cache holds that
key already, decoded with the one preprocessing (`lookalike.preprocessing.decode` given the spec,
then `training.pixels.to_pixels`), as the encoder service's `preprocess` does. The per-file boundary catches every exception: `ImageDecodeError`
is the decode path's refusal (a property of the bytes, so the cache keeps it); anything else that
escapes Pillow or numpy (a plugin's bug, MemoryError on a huge frame) fails that file for this run,
reported with its type, and the load goes on.

Files go to the workers in chunks (one round trip per chunk, not per file), with a bounded number
of chunks in flight, so results stream back as they finish and memory stays flat however many
files there are. One worker decodes in this process with the very same code.
"""

from __future__ import annotations

import dataclasses
import itertools
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import numpy as np

from lookalike.preprocessing import ImageDecodeError, Preprocessing, decode
from training.image_cache import content_key
from training.pixels import to_pixels

CHUNKS_IN_FLIGHT = 2  # per worker: one being decoded, one queued, so no worker waits for the next

CACHED, DECODED, REFUSED, FAILED = "cached", "decoded", "refused", "failed"


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What became of one file."""

    status: str  # CACHED (its key is known, not decoded), DECODED, REFUSED (ImageDecodeError) or FAILED
    key: str | None  # content key; None when the file could not be read
    pixels: np.ndarray | None = None  # (H, W, C) uint8, when DECODED
    reason: str = ""  # why a REFUSED or FAILED file is not usable


@dataclasses.dataclass(frozen=True)
class Decoder:
    """Decodes lists of files; picklable, so each worker process gets a copy once, at start."""

    spec: Preprocessing
    known: frozenset[str] = frozenset()  # content keys the cache holds already: not decoded again

    def __call__(self, paths: list[str]) -> list[Outcome]:
        return [self.one(path) for path in paths]

    def one(self, path: str) -> Outcome:
        try:
            data = Path(path).read_bytes()
        except OSError as error:
            return Outcome(FAILED, None, reason=f"cannot read: {error.strerror or error}")
        key = content_key(data)
        if key in self.known:
            return Outcome(CACHED, key)
        try:
            # Given the spec, decode shrinks a JPEG while decoding it, as `preprocess` does when serving.
            return Outcome(DECODED, key, to_pixels(decode(data, spec=self.spec), self.spec))
        except ImageDecodeError as error:
            return Outcome(REFUSED, key, reason=str(error))
        except Exception as error:  # noqa: BLE001 - the per-file boundary: one bad file never ends the run
            return Outcome(FAILED, key, reason=f"{type(error).__name__}: {error}")


def decode_files(paths: list[str], decoder: Decoder, workers: int, chunk: int) -> Iterator[tuple[int, list[Outcome]]]:
    """Yields (position in `paths` of a chunk's first file, the chunk's outcomes) as chunks finish."""
    assert workers >= 1 and chunk >= 1, "at least one worker and one file per chunk"
    chunks = ((start, paths[start : start + chunk]) for start in range(0, len(paths), chunk))
    if workers == 1:
        for start, part in chunks:
            yield start, decoder(part)
        return
    # forkserver, not fork: a worker forked from a trainer would inherit torch's thread pools and
    # whatever locks other threads held at that instant (https://docs.python.org/3/library/multiprocessing.html#contexts-and-start-methods).
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])  # imported once by the server, not again by every worker
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(decoder,))
    try:
        running = {}
        for start, part in itertools.islice(chunks, CHUNKS_IN_FLIGHT * workers):
            running[pool.submit(_decode_in_worker, part)] = start
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                yield running.pop(future), future.result()
            for start, part in itertools.islice(chunks, len(done)):
                running[pool.submit(_decode_in_worker, part)] = start
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # Ctrl-C or an error: drop queued chunks, end the workers


_decoder: Decoder | None = None  # each worker process's copy, set once by _start_worker


def _start_worker(decoder: Decoder) -> None:
    global _decoder
    _decoder = decoder


def _decode_in_worker(paths: list[str]) -> list[Outcome]:
    return _decoder(paths)
