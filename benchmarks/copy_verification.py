"""Local features for finding copies: copy_detection's RootSIFT against ORB, on edited copies of the
development colour set (icons, emoji and photos: data/colour-set, `make colour-set`).

    python -m benchmarks.copy_verification --pictures 300 --wrong 50

A seeded sample of `--pictures` pictures are the originals. Each edit of copy_detection/copy_edits (and
their mix of three) makes one copy of each; every copy is verified against its own original and
against `--wrong` other originals drawn at random. Per edit and inlier threshold T:

- found: the share of copies whose original has the most inliers of all and at least T;
- false: the share of (copy, wrong original) verifications with at least T inliers.

Also the pHash distances (exact copies are found by hash), the time to fingerprint and to verify,
and the bytes each item stores. ORB lives only here, as the comparison (512 keypoints at a 512-pixel
work side, Hamming distances by cv2.BFMatcher, the same ratio test, RANSAC and scale check).
Prints markdown for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from copy_detection.features import MAX_UPSCALE, MIN_KEYPOINTS, fingerprint, flattened
from copy_detection.hash_index import hamming
from copy_detection.verification import RANSAC_ITERATIONS, RANSAC_WORK_PIXELS, RATIO, SCALE_RANGE, verify_many
from copy_detection import copy_edits
from training.machine import describe

THRESHOLDS = (8, 12, 16, 20, 30)  # inliers
HASH_DISTANCES = (2, 4, 8)  # bits; copy_detection.verdict.Thresholds.exact_hash_distance is one of them
EDITS = (*copy_edits.EDITS, copy_edits.MIX)
ORB_SIDE, ORB_KEYPOINTS = 512, 512


@dataclasses.dataclass
class Tally:
    """Inliers of each copy with its original, and of each copy with its wrong originals."""

    true: list[int] = dataclasses.field(default_factory=list)
    keypoints: list[int] = dataclasses.field(default_factory=list)  # the fewer of the copy's and the original's
    best_wrong: list[int] = dataclasses.field(default_factory=list)
    wrong: list[int] = dataclasses.field(default_factory=list)

    def found(self, threshold: int) -> float:
        true, best_wrong = np.array(self.true), np.array(self.best_wrong)
        return float(np.mean((true >= threshold) & (true > best_wrong)))


def pictures(root: Path, count: int, seed: int) -> list[Image.Image]:
    files = sorted(path for path in root.glob("*/*") if path.suffix.lower() in (".png", ".jpg", ".jpeg"))
    assert len(files) >= count, f"{root} holds {len(files)} pictures, fewer than --pictures {count}"
    return [flattened(Image.open(path)) for path in random.Random(seed).sample(files, count)]


def measure_rootsift(originals: list[Image.Image], wrong: int, seed: int) -> tuple[dict[str, Tally], dict[str, float]]:
    started, cpu = time.perf_counter(), time.process_time()
    stored = [fingerprint(picture).stored() for picture in originals]
    costs = _per_picture(started, cpu, len(originals))
    tallies, verify_ms, verify_cpu_ms, hash_true, hash_wrong, queries_featureless = {}, [], [], {}, [], []
    for edit in EDITS:
        tally = tallies[edit] = Tally()
        rng = np.random.default_rng(seed)
        hash_true[edit] = []
        for i, copy in enumerate(copy_edits.copies(originals, edit, seed)):
            query = fingerprint(copy, mirrored=True)
            queries_featureless.append(query.featureless)
            others = _others(rng, i, len(originals), wrong)
            started, cpu = time.perf_counter(), time.process_time()
            matches = verify_many(query, [stored[i]] + [stored[j] for j in others])
            verify_ms.append((time.perf_counter() - started) * 1000)
            verify_cpu_ms.append((time.process_time() - cpu) * 1000)
            inliers = [0 if match is None else match.inliers for match in matches]
            tally.true.append(inliers[0])
            tally.keypoints.append(min(len(query.features), len(stored[i].features)))
            tally.best_wrong.append(max(inliers[1:]))
            tally.wrong += inliers[1:]
            hashes = np.array([stored[j].phash for j in [i, *others]], dtype=np.uint64)
            distances = hamming(query.phash, hashes)
            hash_true[edit].append(int(distances[0]))
            hash_wrong += distances[1:].tolist()
    feature_bytes = [len(f.to_bytes()) - len(f.thumbnail) for f in stored]
    million = np.random.default_rng(seed).integers(0, 1 << 63, 1_000_000, dtype=np.uint64)
    scans = []
    for _ in range(6):  # the first warms the caches and allocator up
        started = time.perf_counter()
        hamming(stored[0].phash, million)
        scans.append((time.perf_counter() - started) * 1000)
    costs["pHash distances to 1,000,000 hashes, median ms"] = float(np.median(scans[1:]))
    costs |= {
        f"verify_many of {wrong + 1}, mirrored too, p50 ms": float(np.median(verify_ms)),
        f"verify_many of {wrong + 1}, mirrored too, p95 ms": float(np.percentile(verify_ms, 95)),
        f"verify_many of {wrong + 1}, mirrored too, CPU time p50 ms (all threads)": float(np.median(verify_cpu_ms)),
        "stored bytes without thumbnail, mean": float(np.mean(feature_bytes)),
        "stored bytes without thumbnail, max": float(np.max(feature_bytes)),
        "thumbnail bytes, mean": float(np.mean([len(f.thumbnail) for f in stored])),
        "thumbnail bytes, max": float(np.max([len(f.thumbnail) for f in stored])),
        "featureless originals": float(np.mean([f.featureless for f in stored])),
        "featureless copies": float(np.mean(queries_featureless)),
    }
    print_hashes(hash_true, hash_wrong)
    print_by_keypoints(tallies)
    return tallies, costs


def measure_orb(originals: list[Image.Image], wrong: int, seed: int) -> tuple[dict[str, Tally], dict[str, float]]:
    started, cpu = time.perf_counter(), time.process_time()
    stored = [_orb(picture) for picture in originals]
    costs = _per_picture(started, cpu, len(originals))
    tallies, pair_ms, pair_cpu_ms = {}, [], []
    for edit in EDITS:
        tally = tallies[edit] = Tally()
        rng = np.random.default_rng(seed)
        for i, copy in enumerate(copy_edits.copies(originals, edit, seed)):
            query, mirrored = _orb(copy), _orb(copy.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
            others = _others(rng, i, len(originals), wrong)
            started, cpu = time.perf_counter(), time.process_time()
            inliers = [max(_orb_inliers(query, stored[j]), _orb_inliers(mirrored, stored[j])) for j in [i, *others]]
            pair_ms.append((time.perf_counter() - started) * 1000 / len(inliers))
            pair_cpu_ms.append((time.process_time() - cpu) * 1000 / len(inliers))
            tally.true.append(inliers[0])
            tally.best_wrong.append(max(inliers[1:]))
            tally.wrong += inliers[1:]
    costs |= {
        f"{wrong + 1} verifications, mirrored too, p50 per pair x {wrong + 1}, ms": float(np.median(pair_ms)) * (wrong + 1),
        "the same, CPU time (all threads), ms": float(np.median(pair_cpu_ms)) * (wrong + 1),
        "stored bytes without thumbnail, mean": float(np.mean([len(s[0]) * (8 + 32) for s in stored])),
        "stored bytes without thumbnail, max": float(np.max([len(s[0]) * (8 + 32) for s in stored])),
        "featureless originals": float(np.mean([len(s[0]) < MIN_KEYPOINTS for s in stored])),
    }
    return tallies, costs


def _per_picture(started: float, cpu: float, count: int) -> dict[str, float]:
    return {
        "fingerprint ms per picture": (time.perf_counter() - started) * 1000 / count,
        "fingerprint CPU ms per picture (all threads)": (time.process_time() - cpu) * 1000 / count,
    }


def _others(rng: np.random.Generator, i: int, count: int, wrong: int) -> list[int]:
    drawn = rng.choice(count - 1, size=min(wrong, count - 1), replace=False)
    return [int(j) + (j >= i) for j in drawn]  # every index but i


def _orb(picture: Image.Image) -> tuple[np.ndarray, np.ndarray | None, float]:
    """ORB keypoints (work-picture coordinates), descriptors, and the work scale of `picture`."""
    scale = min(ORB_SIDE / max(picture.size), MAX_UPSCALE)
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    gray = cv2.resize(np.asarray(picture.convert("L")), size, interpolation=interpolation)
    keypoints, descriptors = cv2.ORB_create(nfeatures=ORB_KEYPOINTS).detectAndCompute(gray, None)
    return np.float32([k.pt for k in keypoints]).reshape(-1, 2) / np.float32(scale), descriptors, scale


def _orb_inliers(query: tuple, original: tuple) -> int:
    """Inliers of the similarity fitted to ORB matches (mirroring is in the query's features)."""
    (points, descriptors, _), (targets, stored, scale) = query, original
    if descriptors is None or stored is None or len(descriptors) < 2 or len(stored) < 2:
        return 0
    pairs = [p for p in cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(descriptors, stored, k=2) if len(p) == 2]
    good = [first for first, second in pairs if first.distance < RATIO * second.distance]
    if len(good) < 8:
        return 0
    fitted, inlying = cv2.estimateAffinePartial2D(
        points[[m.queryIdx for m in good]],
        targets[[m.trainIdx for m in good]],
        method=cv2.RANSAC,
        ransacReprojThreshold=RANSAC_WORK_PIXELS / scale,
        maxIters=RANSAC_ITERATIONS,
    )
    if fitted is None or not SCALE_RANGE[0] <= np.sqrt(abs(np.linalg.det(fitted[:, :2]))) <= SCALE_RANGE[1]:
        return 0
    return int(inlying.sum())


def print_hashes(true: dict[str, list[int]], wrong: list[int]) -> None:
    print("\npHash distance of each copy to its original, and of the wrong pairs\n")
    print("| edit | median bits | " + " | ".join(f"within {d} bits" for d in HASH_DISTANCES) + " |")
    print("| --- | ---: |" + " ---: |" * len(HASH_DISTANCES))
    for edit, distances in [*true.items(), ("wrong pairs", wrong)]:
        within = " | ".join(f"{np.mean(np.array(distances) <= d):.2%}" for d in HASH_DISTANCES)
        print(f"| {edit} | {np.median(distances):.0f} | {within} |")


def print_by_keypoints(tallies: dict[str, Tally]) -> None:
    """How often a true copy reaches T inliers, by the keypoints of the poorer picture of the pair:
    below some count, a missing match says nothing, which is what `featureless` means."""
    true = np.concatenate([tally.true for tally in tallies.values()])
    keypoints = np.concatenate([tally.keypoints for tally in tallies.values()])
    print("\nTrue copies reaching T inliers, by the fewer keypoints of copy and original (all edits)\n")
    print("| keypoints | copies | " + " | ".join(f"T={t}" for t in THRESHOLDS) + " |")
    print("| --- | ---: |" + " ---: |" * len(THRESHOLDS))
    for low, high in ((0, 8), (8, 16), (16, 24), (24, 32), (32, 48), (48, 64), (64, None)):
        chosen = (keypoints >= low) & (keypoints < (high or np.inf))
        if not chosen.any():
            continue
        reached = " | ".join(f"{np.mean(true[chosen] >= t):.0%}" for t in THRESHOLDS)
        print(f"| {low}-{high - 1 if high else ''} | {chosen.sum()} | {reached} |")


def print_tallies(name: str, tallies: dict[str, Tally], costs: dict[str, float]) -> None:
    print(f"\n{name}: found (original ranked first with >= T inliers), per edit\n")
    print("| edit | median inliers | " + " | ".join(f"T={t}" for t in THRESHOLDS) + " |")
    print("| --- | ---: |" + " ---: |" * len(THRESHOLDS))
    for edit, tally in tallies.items():
        found = " | ".join(f"{tally.found(t):.0%}" for t in THRESHOLDS)
        print(f"| {edit} | {np.median(tally.true):.0f} | {found} |")
    wrong = np.concatenate([tally.wrong for tally in tallies.values()])
    best_wrong = np.concatenate([tally.best_wrong for tally in tallies.values()])
    print("| false, per wrong pair | | " + " | ".join(f"{np.mean(wrong >= t):.2%}" for t in THRESHOLDS) + " |")
    print("| false, copies with any | | " + " | ".join(f"{np.mean(best_wrong >= t):.1%}" for t in THRESHOLDS) + " |")
    print()
    for what, value in costs.items():
        print(f"- {what}: {value:,.3f}" if value < 1 else f"- {what}: {value:,.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data/colour-set"))
    parser.add_argument("--pictures", type=int, default=300)
    parser.add_argument("--wrong", type=int, default=50, help="wrong originals each copy is verified against")
    parser.add_argument("--detectors", default="rootsift,orb")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cv2.setNumThreads(2)
    originals = pictures(args.data, args.pictures, args.seed)
    print(f"{describe()}; {args.pictures} pictures of {args.data}, {args.wrong} wrong originals per copy")
    measures = {"rootsift": measure_rootsift, "orb": measure_orb}
    for name in args.detectors.split(","):
        print_tallies(name, *measures[name](originals, args.wrong, args.seed))


if __name__ == "__main__":
    main()
