"""FindCopies on real servers: the encoder fingerprints, the search service stores, verifies and decides."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

from lookalike.client import ItemToUpsert
from lookalike.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from lookalike.v1 import search_pb2

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "motorcycle", "coins", "brick")


def photo(name: str) -> Image.Image:
    from skimage import data

    array = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
    return Image.fromarray(array).convert("RGB")


def encoded(picture: Image.Image, format: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format=format, **options)
    return buffer.getvalue()


def crop_caption_mirror(picture: Image.Image) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """The edit the issue names, and the crop box: the part of the original the copy shows."""
    w, h = picture.size
    box = (int(0.12 * w), int(0.08 * h), int(0.92 * w), int(0.88 * h))
    cropped = picture.crop(box)
    bar = int(0.18 * cropped.height)
    copy = Image.new("RGB", (cropped.width, cropped.height + bar), "white")
    copy.paste(ImageOps.mirror(cropped), (0, 0))
    ImageDraw.Draw(copy).text((10, cropped.height + bar // 3), "you will not believe this", fill="black")
    return copy, box


def polygon_iou(polygon: list[tuple[float, float]], box: tuple[int, int, int, int], size: tuple[int, int]) -> float:
    region = Image.new("1", size, 0)
    ImageDraw.Draw(region).polygon(polygon, fill=1)
    truth = Image.new("1", size, 0)
    ImageDraw.Draw(truth).rectangle(box, fill=1)
    a, b = np.asarray(region), np.asarray(truth)
    return float((a & b).sum() / (a | b).sum())


@pytest.fixture
def catalogue(search):
    search.create_collection("news", model="tiny", find_copies=True)
    pictures = {name: photo(name) for name in PHOTOS}
    items = [ItemToUpsert(id=name, image=encoded(p), timestamp=1000 + i) for i, (name, p) in enumerate(pictures.items())]
    assert search.upsert("news", items) == len(items)
    return pictures


def test_an_edited_copy_comes_back_first_with_its_verdict_and_region(search, catalogue):
    copy, box = crop_caption_mirror(catalogue["astronaut"])
    found = search.find_copies("news", image=encoded(copy, "JPEG", quality=70), edit_pictures=True)
    first = found.copies[0]
    assert first.id == "astronaut"
    assert first.verdict == search_pb2.VERDICT_EDITED_COPY
    assert first.evidence == search_pb2.EVIDENCE_LOCAL_FEATURES
    assert first.edits.mirrored
    region = [(p.x, p.y) for p in first.region_in_original]
    assert polygon_iou(region, box, catalogue["astronaut"].size) > 0.6
    picture = Image.open(io.BytesIO(first.edit_picture_png))
    assert picture.width > picture.height  # the panels side by side
    assert found.candidates_verified >= 1


def test_an_unrelated_picture_gets_no_copy_verdict(search, catalogue):
    unrelated = photo("camera")  # a photo of the same kind, never indexed
    found = search.find_copies("news", image=encoded(unrelated), include_similar=True)
    assert all(c.verdict == search_pb2.VERDICT_SIMILAR for c in found.copies)


def test_a_hash_hit_is_found_even_when_the_embedding_stage_misses_it(search, encoder, catalogue):
    query = encoded(catalogue["coffee"], "JPEG", quality=90)  # re-encoded: the same picture
    (vector,), model = encoder.embed([query], model="tiny")
    decoys = [ItemToUpsert(id=f"decoy-{i}", vector=vector, model=model) for i in range(20)]  # nearer than the original
    search.upsert("news", decoys)
    found = search.find_copies("news", image=query, candidates=5)
    by_id = {c.id: c for c in found.copies}
    assert "coffee" in by_id, "the hash stage must find what the 5 embedding candidates left out"
    assert by_id["coffee"].verdict == search_pb2.VERDICT_EXACT_COPY
    assert by_id["coffee"].evidence == search_pb2.EVIDENCE_HASH
    assert found.copies[0].id == "coffee"  # the strongest evidence first


def test_copies_come_earliest_first_when_asked_and_by_stored_item(search, catalogue):
    later = encoded(catalogue["chelsea"].resize((256, 200)), "JPEG", quality=80)
    search.upsert("news", [ItemToUpsert(id="chelsea-reshared", image=later, timestamp=5000)])
    found = search.find_copies("news", item_id="chelsea-reshared", earliest_first=True)
    assert [c.id for c in found.copies][:1] == ["chelsea"]
    assert found.copies[0].timestamp == 1001
    got = search.get("news", ["chelsea-reshared"]).items[0]
    assert got.timestamp == 5000 and got.has_fingerprint


def test_find_copies_refuses_clearly(search, catalogue):
    search.create_collection("plain", model="tiny")
    with pytest.raises(FailedPrecondition) as refused:
        search.find_copies("plain", image=encoded(catalogue["rocket"]))
    assert refused.value.reason == "COPIES_NOT_ENABLED"
    with pytest.raises(InvalidArgument) as refused:
        search.find_copies("news", image=encoded(catalogue["rocket"]), candidates=100_000)
    assert [v.field for v in refused.value.field_violations] == ["candidates"]
    with pytest.raises(InvalidArgument) as refused:
        search.find_copies("news", image=b"not a picture")
    assert [v.field for v in refused.value.field_violations] == ["image.encoded"]
    with pytest.raises(InvalidArgument) as refused:
        search.create_collection("vectors-only", dimension=4, find_copies=True)
    assert [v.field for v in refused.value.field_violations] == ["model.name"]


def test_fingerprints_survive_a_restart(search_settings, encoder_address):
    from lookalike.client import SearchClient
    from search_service.server import create_server

    server, port = create_server(search_settings)
    server.start()
    with SearchClient(f"127.0.0.1:{port}") as client:
        client.create_collection("news", model="tiny", find_copies=True)
        client.upsert("news", [ItemToUpsert(id="coffee", image=encoded(photo("coffee")))])
    server.stop(None)  # no snapshot: the log alone must hold the fingerprint
    server, port = create_server(search_settings)
    server.start()
    try:
        with SearchClient(f"127.0.0.1:{port}") as client:
            client.wait_until_serving(10)
            copy, _ = crop_caption_mirror(photo("coffee"))
            found = client.find_copies("news", image=encoded(copy))
            assert [c.id for c in found.copies] == ["coffee"]
            assert client.get_collection("news").find_copies
    finally:
        server.stop(None)


def test_a_collection_decides_with_the_thresholds_it_was_made_with(search):
    strict = {"exact_hash_distance": 0, "edited_inliers": 100_000, "embedding_copy": 0.999, "embedding_similar": 0.5}
    made = search.create_collection("strict", model="tiny", find_copies=True, copy_thresholds=strict)
    assert made.copy_thresholds.edited_inliers == 100_000 and made.copy_thresholds.embedding_copy == pytest.approx(0.999)
    assert search.get_collection("strict").copy_thresholds.embedding_similar == pytest.approx(0.5)
    search.create_collection("strict", model="tiny", find_copies=True, copy_thresholds=strict, allow_existing=True)
    with pytest.raises(AlreadyExists):
        search.create_collection("strict", model="tiny", find_copies=True, copy_thresholds={**strict, "edited_inliers": 16}, allow_existing=True)
    search.upsert("strict", [ItemToUpsert(id="astronaut", image=encoded(photo("astronaut")))])
    copy, _ = crop_caption_mirror(photo("astronaut"))
    found = search.find_copies("strict", image=encoded(copy), include_similar=True)
    assert [c.verdict for c in found.copies] == [search_pb2.VERDICT_SIMILAR], "no copy verdict below 100,000 inliers"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"edited_inliers": 2}, "copy_thresholds.edited_inliers"),
        ({"exact_hash_distance": 65}, "copy_thresholds.exact_hash_distance"),
        ({"embedding_copy": 1.5}, "copy_thresholds.embedding_copy"),
        ({"embedding_copy": 0.7, "embedding_similar": 0.8}, "copy_thresholds.embedding_copy"),
    ],
)
def test_thresholds_out_of_range_are_refused_by_name(search, change, field):
    thresholds = {"exact_hash_distance": 4, "edited_inliers": 16, "embedding_copy": 0.95, "embedding_similar": 0.8, **change}
    with pytest.raises(InvalidArgument) as refused:
        search.create_collection("bad", model="tiny", find_copies=True, copy_thresholds=thresholds)
    assert [v.field for v in refused.value.field_violations] == [field]
    assert refused.value.reason == "VALUE_OUT_OF_RANGE"
    with pytest.raises(InvalidArgument) as refused:
        search.create_collection("bad", model="tiny", copy_thresholds={**thresholds, **{"edited_inliers": 16}})
    assert [v.field for v in refused.value.field_violations] == ["find_copies"]
