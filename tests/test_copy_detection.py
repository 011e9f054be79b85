"""copy_detection: fingerprints, geometric verification, the hash index and the verdicts, on real photos
(scikit-image's bundled ones) edited the way copies are."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw, ImageOps
from skimage import data

from copy_detection.features import MAX_KEYPOINTS, Fingerprint, fingerprint, fingerprint_file, flattened
from copy_detection.hash_index import HashIndex, hamming
from copy_detection.verdict import Decision, Evidence, Thresholds, Verdict, decide
from copy_detection.verification import Match, verify, verify_many
from lookalike.preprocessing import ImageDecodeError

CROP = (60, 40, 420, 380)  # left, top, right, bottom of the astronaut photo (512 x 512)
CAPTION = 60  # pixels of caption bar added above the crop


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.fromarray(data.astronaut())


@pytest.fixture(scope="module")
def original(astronaut) -> Fingerprint:
    return fingerprint(astronaut).stored()


@pytest.fixture(scope="module")
def edited_copy(astronaut) -> Fingerprint:
    """Cropped, a caption bar added on top, mirrored, re-encoded as JPEG: a meme of the photo."""
    crop = astronaut.crop(CROP)
    canvas = Image.new("RGB", (crop.width, crop.height + CAPTION), "white")
    canvas.paste(crop, (0, CAPTION))
    ImageDraw.Draw(canvas).text((20, 15), "when the code finally works", fill="black", font_size=24)
    buffer = io.BytesIO()
    ImageOps.mirror(canvas).save(buffer, format="JPEG", quality=70)
    return fingerprint_file(buffer.getvalue(), mirrored=True)


def _area(polygon: np.ndarray) -> float:
    return cv2.contourArea(cv2.convexHull(polygon.astype(np.float32)))


def _iou(polygon: np.ndarray, box: tuple[int, int, int, int]) -> float:
    left, top, right, bottom = box
    rectangle = np.float32([[left, top], [right, top], [right, bottom], [left, bottom]])
    hull = cv2.convexHull(polygon.astype(np.float32))  # one orientation for both, as intersectConvexConvex needs
    overlap, _ = cv2.intersectConvexConvex(hull, cv2.convexHull(rectangle))
    return overlap / (_area(polygon) + _area(rectangle) - overlap)


def test_an_edited_and_mirrored_copy_verifies_onto_the_right_region(edited_copy, original):
    match = verify(edited_copy, original)
    assert match is not None and match.mirrored
    assert match.inliers >= Thresholds().edited_inliers, match
    assert _iou(match.region_in_original, CROP) > 0.5
    # The query's top-left corner is the mirrored caption's: the crop's right edge, CAPTION above it.
    left, top, right, _ = CROP
    assert np.abs(match.region_in_original[0] - [right, top - CAPTION]).max() < 8, match.region_in_original
    assert np.abs(match.original_in_query[0] - [right, CAPTION - top]).max() < 8, match.original_in_query
    decision = decide(hash_distance=40, match=match, embedding_score=None, featureless=False, thresholds=Thresholds())
    assert decision.verdict == Verdict.EDITED_COPY and decision.evidence == Evidence.LOCAL_FEATURES


def test_an_unrelated_photo_does_not_verify(edited_copy):
    for name in ("chelsea", "coffee", "rocket"):
        match = verify(edited_copy, fingerprint(Image.fromarray(getattr(data, name)())).stored())
        assert match is None or match.inliers < Thresholds().edited_inliers, (name, match)


def test_verify_many_answers_each_candidate_in_order(edited_copy, original):
    unrelated = fingerprint(Image.fromarray(data.chelsea())).stored()
    matches = verify_many(edited_copy, [unrelated, None, original])
    assert len(matches) == 3 and matches[1] is None
    assert matches[2] is not None and matches[2].inliers == verify(edited_copy, original).inliers
    assert verify_many(edited_copy, []) == []


def test_a_featureless_picture_is_featureless():
    digit = Image.new("L", (28, 28), 0)
    ImageDraw.Draw(digit).line((14, 4, 14, 24), fill=255, width=3)
    assert fingerprint(digit).featureless
    assert fingerprint(Image.new("RGB", (300, 200), "white")).featureless
    assert not fingerprint(Image.fromarray(data.astronaut())).featureless


def test_transparency_is_flattened_onto_white():
    cut_out = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    assert flattened(cut_out).getpixel((0, 0)) == (255, 255, 255)
    assert flattened(Image.new("L", (8, 8), 7)).mode == "RGB"


def test_fingerprint_file_refuses_what_is_no_image():
    with pytest.raises(ImageDecodeError):
        fingerprint_file(b"not an image")


def test_fingerprint_round_trips_through_bytes(edited_copy, original):
    for print_ in (original, edited_copy):
        again = Fingerprint.from_bytes(print_.to_bytes())
        header = (again.phash, again.width, again.height, again.thumbnail)
        assert header == (print_.phash, print_.width, print_.height, print_.thumbnail)
        for mine, theirs in ((print_.features, again.features), (print_.mirrored, again.mirrored)):
            assert (mine is None) == (theirs is None)
            if mine is not None:
                assert np.array_equal(mine.keypoints, theirs.keypoints)
                assert np.array_equal(mine.descriptors, theirs.descriptors)
    features_bytes = len(original.to_bytes()) - len(original.thumbnail)
    assert len(original.features) <= MAX_KEYPOINTS and features_bytes <= 32 * 1024
    assert Image.open(io.BytesIO(original.thumbnail)).format == "JPEG"


@pytest.fixture(scope="module")
def small_print() -> bytes:
    picture = Image.new("RGB", (64, 48), "white")
    ImageDraw.Draw(picture).ellipse((8, 8, 40, 40), fill="red", outline="black", width=3)
    return fingerprint(picture, mirrored=True).to_bytes()


def test_every_truncation_is_refused(small_print):
    for length in range(len(small_print)):
        with pytest.raises(ValueError):
            Fingerprint.from_bytes(small_print[:length])
    with pytest.raises(ValueError):
        Fingerprint.from_bytes(small_print + b"\0")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_are_refused_or_read(data_):
    _refused_or_read(data_)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_garbled_fingerprints_are_refused_or_read(small_print, data_):
    garbled = bytearray(small_print)
    for _ in range(data_.draw(st.integers(1, 4))):
        garbled[data_.draw(st.integers(0, len(garbled) - 1))] = data_.draw(st.integers(0, 255))
    _refused_or_read(bytes(garbled))


def _refused_or_read(data_: bytes) -> None:
    try:
        read = Fingerprint.from_bytes(data_)
    except ValueError:
        return
    assert isinstance(read, Fingerprint) and read.width > 0 and read.height > 0


def test_hash_index_finds_the_nearest_hashes_first():
    index = HashIndex()
    index.set("a", 0b0000)
    index.set("b", 0b0111)
    index.set("c", 0b0001)
    index.set("d", (1 << 64) - 1)
    assert index.within(0, max_distance=3, limit=10) == [("a", 0), ("c", 1), ("b", 3)]
    assert index.within(0, max_distance=3, limit=2) == [("a", 0), ("c", 1)]
    index.set("a", 0b1111)  # replaced, not added
    index.remove("c")
    index.remove("never there")
    assert len(index) == 3
    assert index.within(0, max_distance=4, limit=10) == [("b", 3), ("a", 4)]
    assert index.within((1 << 64) - 1, max_distance=0, limit=10) == [("d", 0)]
    assert hamming(0b1010, np.array([0, 0b1010, 0b0101], dtype=np.uint64)).tolist() == [2, 0, 4]


def test_hash_index_grows_past_its_first_allocation():
    index = HashIndex()
    for i in range(3000):
        index.set(str(i), i)
    for i in range(0, 3000, 2):
        index.remove(str(i))
    assert len(index) == 1500
    assert index.within(2999, max_distance=0, limit=5) == [("2999", 0)]


def _match(inliers: int) -> Match:
    identity = np.float64([[1, 0, 0], [0, 1, 0]])
    corners = np.float32([[0, 0], [10, 0], [10, 10], [0, 10]])
    return Match(inliers, inliers + 5, False, identity, corners, corners)


@pytest.mark.parametrize(
    ("hash_distance", "inliers", "embedding", "featureless", "verdict", "evidence"),
    [
        (2, 50, None, False, Verdict.EXACT_COPY, Evidence.HASH),
        (2, None, 0.99, True, Verdict.EXACT_COPY, Evidence.HASH),  # featureless: the embedding agrees
        (30, 50, 0.2, False, Verdict.EDITED_COPY, Evidence.LOCAL_FEATURES),  # geometry beats the embedding
        (30, None, 0.99, True, Verdict.EDITED_COPY, Evidence.EMBEDDING),
        (30, None, 0.99, False, Verdict.SIMILAR, Evidence.EMBEDDING),  # verifiable, yet not verified
        (2, 3, 0.9, False, Verdict.SIMILAR, Evidence.EMBEDDING),  # a hash collision alone is no copy
        (30, 3, 0.1, False, Verdict.UNRELATED, Evidence.EMBEDDING),
        (None, None, None, False, Verdict.UNRELATED, Evidence.LOCAL_FEATURES),
        (1, None, None, True, Verdict.UNRELATED, Evidence.HASH),
    ],
)
def test_decide(hash_distance, inliers, embedding, featureless, verdict, evidence):
    match = None if inliers is None else _match(inliers)
    decision = decide(
        hash_distance=hash_distance, match=match, embedding_score=embedding, featureless=featureless, thresholds=Thresholds()
    )
    assert (decision.verdict, decision.evidence) == (verdict, evidence)


def test_scores_order_the_verdicts():
    thresholds = Thresholds()

    def decided(hash_distance: int, match: Match | None, embedding: float) -> Decision:
        return decide(hash_distance=hash_distance, match=match, embedding_score=embedding, featureless=False, thresholds=thresholds)

    ranked = [
        decided(0, _match(500), 1.0),
        decided(40, _match(1000), 1.0),
        decided(40, _match(thresholds.edited_inliers), 0.0),
        decided(40, None, 1.0),
        decided(40, None, 0.7),
        decided(40, None, -0.5),
    ]
    verdicts = [Verdict.EXACT_COPY, Verdict.EDITED_COPY, Verdict.EDITED_COPY, Verdict.SIMILAR, Verdict.UNRELATED, Verdict.UNRELATED]
    assert [d.verdict for d in ranked] == verdicts
    scores = [d.score for d in ranked]
    assert scores == sorted(scores, reverse=True) and isinstance(ranked[0], Decision)


def test_thresholds_round_trip_through_json_and_refuse_nonsense():
    thresholds = Thresholds(exact_hash_distance=3, edited_inliers=20, embedding_copy=0.9, embedding_similar=0.7)
    assert Thresholds.from_json(thresholds.to_json()) == thresholds
    assert Thresholds.from_json({}) == Thresholds()
    nonsense = ({"edited_inliers": "many"}, {"unknown": 1}, {"edited_inliers": 1.5}, {"embedding_copy": 2.0}, {"edited_inliers": None})
    for fields in nonsense:
        with pytest.raises(ValueError):
            Thresholds.from_json(fields)
