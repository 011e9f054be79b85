"""What big pictures cost to become model input, and which colour should fill transparency.

    python -m benchmarks.decode_speed

Decode: a 24-megapixel JPEG, an 8000x8000 PNG and a ~40-megapixel palette PNG with a transparent
colour, each turned into a colour model's 3x64x64 input by the fast path (`preprocess`: JPEG
draft, whole-factor reduce, conversion strip by strip) and by the exact path it replaced (decode
at full size, convert the whole picture, one bilinear resize), side by side. Every measurement
runs in a fresh interpreter, so its peak RSS is its own. The pixel limit is raised to Pillow's
(~89 MP) for the 64-megapixel PNG; the services' default refuses it.

Reducing gap: how close the fast path stays to the exact one when whole-factor shrinking stops
at 2, 3 or 4 times the final size.

Transparency: cut-outs with real alpha (built here, and the PNG icons with alpha under
/usr/share/icons when the machine has them) against what a re-share looks like, the cut-out
flattened onto white (or black) and saved as JPEG; the table gives the mean absolute difference
of the model inputs, in grey levels, with transparency filled black or white.

Prints markdown tables for benchmarks/RESULTS.md and docs/preprocessing.md.
"""

from __future__ import annotations

import io
import itertools
import multiprocessing
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from lookalike import preprocessing
from lookalike.preprocessing import Preprocessing, preprocess, to_model_input
from tests.odd_images import clip_art, cutout, encoded, photo
from training.machine import describe

SPEC = Preprocessing(height=64, width=64, channels=3)
MAX_PIXELS = Image.MAX_IMAGE_PIXELS  # the 8000x8000 PNG is over the services' 40 MP default
REPEATS = 5  # the median is reported: the machine may be shared
ICONS = Path("/usr/share/icons")
MAX_ICONS = 200


def exact_path(data: bytes, spec: Preprocessing) -> np.ndarray:
    """The path before the fast one, kept only here as the reference: the whole picture decoded
    and copied by exif_transpose, converted (palette to RGBA, composited, converted again), then
    one bilinear resize. The files are known to be good, so the header checks are left out."""
    image = Image.open(io.BytesIO(data))
    image.load()
    image = ImageOps.exif_transpose(image)  # a copy of the whole picture, orientation or not
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (spec.background,) * 3 + (255,)), rgba)
    return to_model_input(image.convert(spec.mode).resize((spec.width, spec.height), Image.Resampling.BILINEAR), spec)


def fast_path(data: bytes, spec: Preprocessing) -> np.ndarray:
    return preprocess(data, spec, MAX_PIXELS)


PATHS = {"exact": exact_path, "fast": fast_path}


def measure(path: str, file: Path) -> tuple[float, float, np.ndarray]:
    """In a fresh interpreter: (median seconds per image, peak RSS in MiB, the model input)."""
    data = file.read_bytes()
    seconds = []
    for _ in range(REPEATS):
        began = time.perf_counter()
        tensor = PATHS[path](data, SPEC)
        seconds.append(time.perf_counter() - began)
    return statistics.median(seconds), peak_rss_mib(), tensor


def idle_rss(file: Path) -> float:
    """Peak RSS of a fresh interpreter that imported the same modules and read the file, MiB."""
    file.read_bytes()
    return peak_rss_mib()


def peak_rss_mib() -> float:
    """This process's peak RSS. Not getrusage's ru_maxrss: it survives exec, so a child started
    from a big parent reports the parent's peak; VmHWM starts afresh with each program."""
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024


def in_fresh_interpreter(function, *args):
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def decode_table(folder: Path) -> list[str]:
    files = {
        "JPEG 6000x4000 (24 MP), quality 90": ("photo.jpg", lambda: encoded(photo(6000, 4000), "JPEG", quality=90)),
        "PNG 8000x8000 (64 MP), RGB": ("photo.png", lambda: encoded(photo(8000, 8000), "PNG", compress_level=6)),
        "PNG 6300x6300 (39.7 MP), palette + transparency": ("clip_art.png", lambda: clip_art(6300, 6300)),
    }
    rows = [
        "| image | file | path | ms per image | peak RSS MiB | mean abs difference to exact, grey levels |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for label, (name, build) in files.items():
        file = folder / name
        file.write_bytes(build())
        size = f"{file.stat().st_size / 2**20:.1f} MiB"
        rows.append(f"| {label} | {size} | (imports + file read only) | | {in_fresh_interpreter(idle_rss, file):,.0f} | |")
        results = {path: in_fresh_interpreter(measure, path, file) for path in PATHS}
        for path, (seconds, rss, tensor) in results.items():
            difference = np.abs(tensor - results["exact"][2]).mean() * 255
            rows.append(f"| {label} | {size} | {path} | {seconds * 1000:,.0f} | {rss:,.0f} | {difference:.2f} |")
    return rows


def gap_table() -> list[str]:
    """How close the fast path stays to the exact one as REDUCING_GAP varies, on a grainy photo
    whose texture is near the model input's pixel size (the hard case for box averages)."""
    image = photo(4000, 3000)
    files = {"JPEG": encoded(image, "JPEG", quality=90), "PNG": encoded(image, "PNG", compress_level=1)}
    specs = {"3x64x64": SPEC, "1x28x28": Preprocessing()}
    gaps = (2, 3, 4)
    rows = ["| file | input | " + " | ".join(f"gap {gap}" for gap in gaps) + " |", "| --- | --- |" + " ---: |" * len(gaps)]
    chosen = preprocessing.REDUCING_GAP
    try:
        for (kind, data), (name, spec) in itertools.product(files.items(), specs.items()):
            exact = exact_path(data, spec)
            cells = []
            for gap in gaps:
                preprocessing.REDUCING_GAP = gap  # read at each call
                seconds = []
                for _ in range(REPEATS):
                    began = time.perf_counter()
                    tensor = fast_path(data, spec)
                    seconds.append(time.perf_counter() - began)
                cells.append(f"{np.abs(tensor - exact).mean() * 255:.2f} ({statistics.median(seconds) * 1000:.0f} ms)")
            rows.append(f"| {kind} 4000x3000 | {name} | " + " | ".join(cells) + " |")
    finally:
        preprocessing.REDUCING_GAP = chosen
    return rows


def cutouts() -> list[Image.Image]:
    """Built cut-outs of light, dark and saturated objects."""
    colours = [(200, 40, 40), (40, 90, 200), (240, 240, 235), (25, 25, 30), (230, 190, 40), (120, 120, 120)]
    return [cutout(96, colour, seed) for seed, colour in enumerate(colours)]


def icons() -> list[Image.Image]:
    """PNG icons with real alpha from /usr/share/icons (none when the folder is missing): 32 px
    or more, with 5-95 % of their pixels fully transparent; up to MAX_ICONS, evenly spread."""
    found = []
    for file in sorted(ICONS.rglob("*.png")):
        with Image.open(file) as image:
            if min(image.size) < 32 or not (image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info):
                continue
            rgba = image.convert("RGBA")
        transparent = (np.asarray(rgba)[..., 3] == 0).mean()
        if 0.05 <= transparent <= 0.95:
            found.append(rgba)
    step = max(1, len(found) // MAX_ICONS)
    return found[::step][:MAX_ICONS]


def reshared(image: Image.Image, backdrop: int) -> bytes:
    """What a re-share of a cut-out looks like: flattened onto `backdrop`, saved as JPEG."""
    flat = Image.alpha_composite(Image.new("RGBA", image.size, (backdrop,) * 3 + (255,)), image).convert("RGB")
    return encoded(flat, "JPEG", quality=85)


def transparency_table() -> list[str]:
    sets = {"built cut-outs": cutouts(), "icons from /usr/share/icons": icons()}
    rows = ["| cut-outs | transparency filled | vs re-share on white | vs re-share on black |", "| --- | --- | ---: | ---: |"]
    for label, images in sets.items():
        if not images:
            continue
        for fill, name in ((0, "black (0)"), (255, "white (255)")):
            spec = Preprocessing(height=64, width=64, channels=3, background=fill)
            differences = {backdrop: [] for backdrop in (255, 0)}
            for image in images:
                original = preprocess(encoded(image, "PNG"), spec)
                for backdrop, found in differences.items():
                    found.append(np.abs(original - preprocess(reshared(image, backdrop), spec)).mean() * 255)
            rows.append(f"| {label} ({len(images)}) | {name} | {np.mean(differences[255]):.1f} | {np.mean(differences[0]):.1f} |")
    return rows


def main() -> None:
    print(f"### Decode + preprocess to {SPEC.channels}x{SPEC.height}x{SPEC.width} ({describe()})\n")
    print("`python -m benchmarks.decode_speed`\n")
    with tempfile.TemporaryDirectory() as folder:
        print("\n".join(decode_table(Path(folder))))
    print(f"\n### Fast vs exact as the reducing gap varies (chosen: {preprocessing.REDUCING_GAP}), mean abs difference in grey levels (median time per image)\n")
    print("\n".join(gap_table()))
    print("\n### Transparency: model inputs of a cut-out vs its re-shared JPEG, mean abs difference in grey levels\n")
    print("\n".join(transparency_table()))


if __name__ == "__main__":
    main()
