"""Coverage-guided fuzzing of the one image decoder with atheris (libFuzzer for Python).

The contract (lookalike/preprocessing.py): whatever the bytes, `decode` returns a loaded picture
and `preprocess` a finite float32 array of the spec's shape, or either raises ImageDecodeError,
and nothing else, within bounded time and memory. Each input goes through `decode` at full size
and `preprocess` with two specs (grey 28x28 stretched; RGB 64x48 letterboxed, where a JPEG
drafts differently). Pillow's Python plugins and lookalike are instrumented, so mutations that
reach new branches of a format's parser are kept.

    python -m tests.reliability.fuzz_decoder CORPUS_DIR [libFuzzer flags, e.g. -max_total_time=20]

A seed corpus (tests/reliability/image_corpus.py) is written into CORPUS_DIR when it is empty.
Any other exception, a time-out (-timeout) or memory past -rss_limit_mb stops the run with a
crash-*, timeout-* or oom-* file, as libFuzzer does. test_fuzz_decoder.py runs it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["PIL", "lookalike.preprocessing"]):
    from PIL import Image

    Image.init()  # imports every format plugin now, inside the instrumented block
    from lookalike.preprocessing import ImageDecodeError, Preprocessing, decode, preprocess

import numpy as np

from server_toolkit.load_limits import map_large_allocations

SPECS = (Preprocessing(), Preprocessing(height=48, width=64, channels=3, resize="pad"))


def test_one_input(data: bytes) -> None:
    try:
        image = decode(data)
        assert image.width > 0 and image.height > 0, f"decode returned a {image.size} picture"
    except ImageDecodeError:
        pass
    for spec in SPECS:
        try:
            pixels = preprocess(data, spec)
        except ImageDecodeError:
            continue
        assert pixels.dtype == np.float32 and pixels.shape == spec.shape, f"got {pixels.dtype} {pixels.shape} for {spec.shape}"
        assert np.isfinite(pixels).all(), "non-finite model input"



def write_seeds(corpus: Path) -> None:
    from tests.reliability.image_corpus import seeds

    corpus.mkdir(parents=True, exist_ok=True)
    if not any(corpus.iterdir()):
        for name, data in seeds().items():
            (corpus / name).write_bytes(data)


def main() -> None:
    map_large_allocations()  # as the encoder does: a freed picture goes back to the system, so RSS is what one input costs
    corpora = [arg for arg in sys.argv[1:] if not arg.startswith("-")]
    for corpus in corpora[:1]:  # the first is where libFuzzer keeps what it finds (a file: one input to replay)
        if not Path(corpus).is_file():
            write_seeds(Path(corpus))
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
