"""The image decoder under coverage-guided fuzzing (fuzz_decoder.py, atheris) for a bounded time.

`make test` runs it for LOOKALIKE_FUZZ_SECONDS (20 s by default, 11,000 to 16,000 inputs on 2
busy cores); `make chaos` for 240 s. A failure names the file libFuzzer wrote (crash-*, timeout-*,
oom-*): its bytes are the input, replayed by `python -m tests.reliability.fuzz_decoder FILE`.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lookalike.preprocessing import ImageDecodeError, Preprocessing, preprocess

ROOT = Path(__file__).resolve().parents[2]
SECONDS = int(os.environ.get("LOOKALIKE_FUZZ_SECONDS", "20"))
INPUT_TIMEOUT_SECONDS = 20  # one input: a 40 MP picture, the largest allowed, decodes in about 2 s
RSS_LIMIT_MB = 1024  # the process, Python and Pillow included; one 40 MP picture is 160 MB as RGBA


def test_every_input_decodes_or_is_refused_as_an_image_error(tmp_path):
    pytest.importorskip("atheris", reason="atheris (the dev extra, Linux x86-64) fuzzes the decoder")
    command = [
        sys.executable, "-m", "tests.reliability.fuzz_decoder", str(tmp_path / "corpus"),
        f"-max_total_time={SECONDS}", f"-timeout={INPUT_TIMEOUT_SECONDS}", f"-rss_limit_mb={RSS_LIMIT_MB}",
        f"-artifact_prefix={tmp_path}/", "-print_final_stats=1", "-print_pcs=0",
    ]  # fmt: skip
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=SECONDS + 120)
    output = run.stdout + run.stderr
    crashes = sorted(tmp_path.glob("crash-*")) + sorted(tmp_path.glob("timeout-*")) + sorted(tmp_path.glob("oom-*"))
    assert run.returncode == 0 and not crashes, f"the decoder broke its contract on {crashes}:\n{output[-6000:]}"
    executed = int(re.search(r"stat::number_of_executed_units: (\d+)", output).group(1))
    peak = int(re.search(r"stat::peak_rss_mb: +(\d+)", output).group(1))
    slowest = int(re.search(r"stat::slowest_unit_time_sec: +(\d+)", output).group(1))
    corpus = len(list((tmp_path / "corpus").iterdir()))
    print(f"\ndecoder fuzzing: {executed} inputs in {SECONDS} s, slowest {slowest} s, peak RSS {peak} MB, corpus {corpus} files")
    assert executed > 100, "the fuzzer barely ran"


def rle8_bmp(width: int, height: int) -> bytes:
    """A valid 8-bit RLE BMP: in each row one pixel, then end-of-line (the decoder pads the rest)."""
    palette = bytes((0, 0, 0, 0, 255, 255, 255, 0))
    data = b"\x01\x01\x00\x00" * height + b"\x00\x01"  # one pixel of colour 1, end of line; end of bitmap
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(data), 2835, 2835, 2, 0)
    offset = 14 + len(info) + len(palette)
    return b"BM" + struct.pack("<IHHI", offset + len(data), 0, 0, offset) + info + palette + data


def test_a_tiny_rle_bmp_costs_no_more_than_a_big_png():
    picture = rle8_bmp(2_000_000, 10)  # 20 MP in 104 bytes: took 4 s before RLE BMPs were capped at 1 MP
    began = time.monotonic()
    try:
        preprocess(picture, Preprocessing())
    except ImageDecodeError:
        pass
    assert time.monotonic() - began < 1.5, f"{time.monotonic() - began:.1f} s for {len(picture)} bytes"  # a 20 MP RGB PNG: 0.3 s
