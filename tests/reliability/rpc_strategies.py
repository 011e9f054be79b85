"""Hypothesis strategies for every request of lookalike.v1.Encoder and lookalike.v1.Search, built
field by field: valid often enough to get past the first check into the code behind it (`mostly`),
invalid in every way a client could manage.

- strings: any Unicode but lone surrogates (protobuf refuses to send them), lengths just under
  and over the byte limits, paths and file names of the data directory;
- numbers: the int32 and int64 extremes, NaN, infinities, 3e38 (finite, but its square is not);
  enums: any int32 (proto3 enums are open);
- images: real small files in every format (image_corpus.py), those files truncated,
  byte-flipped, with size fields overwritten, spliced head to tail, random bytes behind a format's
  magic, decompression bombs; tensors of any shape, with or without as many values;
- oneofs: each choice, or none; batches: a few, or just over the server's limit.

The seeded state they aim at (test_fuzz_rpcs.py makes it): the tiny model, collections of vectors
and of pictures, their item ids and tags.
"""

from __future__ import annotations

import math

from hypothesis import strategies as st

from lookalike.v1 import encoder_pb2, images_pb2, search_pb2
from tests.odd_images import gif_with_oversized_frame, png_bomb
from tests.reliability.image_corpus import pictures, seeds

MODEL = "tiny"  # tests/onnx_factory.py's linear model: 28x28 grey pictures to 16-d embeddings
DIMENSION = 16
COLLECTIONS = ["plain", "dot", "pinned", "copies"]
ITEM_IDS = [f"v{i}" for i in range(6)] + [f"img{i}" for i in range(4)]
TAGS = ["red", "blue", "x" * 256]
# The servers' limits in the fuzzing set-up: small, so requests just over them stay cheap.
ENCODER_BATCH_LIMIT, SEARCH_BATCH_LIMIT, GET_IDS_LIMIT, K_LIMIT, CANDIDATES_LIMIT = 64, 8, 10, 20, 20


def mostly(valid, anything, times: int = 3):
    """`valid` `times` as often as `anything`. (Not one_of(valid, valid, valid, anything): one_of
    keeps one copy of a strategy given several times.)"""
    return st.sampled_from([valid] * times + [anything]).flatmap(lambda strategy: strategy)


_chars = st.characters(exclude_categories=("Cs",))
strings = st.one_of(
    st.text(_chars, max_size=30),
    st.builds(lambda c, n: c * n, _chars, st.sampled_from([128, 129, 255, 256, 257, 511, 512, 513, 2048, 2049, 5000])),
    st.sampled_from(["", " ", ".", "..", "../../etc/passwd", "/tmp", "a/b", "a\\b", "\x00", "CON", "ñ", "🦆", "collection.json", "log"]),
)
valid_names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", fullmatch=True)
names = mostly(st.sampled_from(COLLECTIONS), st.one_of(valid_names, strings))
item_ids = mostly(st.sampled_from(ITEM_IDS), strings, times=2)
tag_lists = st.one_of(
    st.lists(mostly(st.sampled_from(TAGS), strings), max_size=4),
    st.builds(lambda n: [f"t{i}" for i in range(n)], st.sampled_from([64, 65, 200])),
)
INT32, INT64 = 2**31 - 1, 2**63 - 1
int32s = st.one_of(
    st.sampled_from([0, 1, -1, 2, 15, 16, 17, 20, 21, 50, 65536, 65537, INT32, -INT32 - 1]), st.integers(-INT32 - 1, INT32)
)
int64s = st.one_of(st.sampled_from([0, 1, -1, INT64, -INT64 - 1, 2**53, 1_764_000_000_000]), st.integers(-INT64 - 1, INT64))
enums = st.one_of(st.integers(-2, 5), int32s)
floats = st.one_of(st.floats(width=32), st.sampled_from([math.nan, math.inf, -math.inf, 3e38, -3e38, 1e18, 1e-45, 0.0, -0.0]))
values = mostly(
    st.lists(st.floats(-10, 10, width=32), min_size=DIMENSION, max_size=DIMENSION),
    st.one_of(
        st.lists(floats, min_size=DIMENSION, max_size=DIMENSION),
        st.lists(floats, max_size=40),
        st.builds(lambda v, n: [v] * n, floats, st.sampled_from([0, 1, 15, 17, 784, 65537])),
    ),
    times=2,
)
model_refs = mostly(
    st.builds(images_pb2.ModelRef, name=st.just(MODEL), version=st.sampled_from([0, 1])),
    st.builds(images_pb2.ModelRef, name=st.one_of(st.just(MODEL), strings), version=int32s),
)
maybe_model_refs = st.none() | model_refs
embeddings = st.builds(lambda v, model: images_pb2.Embedding(values=v, model=model), values, maybe_model_refs)

# ---------------------------------------------------------------------------------------------
# Pictures: real, damaged, forged.

SEEDS = list(seeds().values())
PICTURES = list(pictures().values())
REFUSED = [png_bomb(10_000, 10_000), gif_with_oversized_frame()]  # a few KB each, headers of 100 MP and 900 MP
MAGIC = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"GIF87a", b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"BM", b"II*\x00"]


@st.composite
def damaged_files(draw) -> bytes:
    """A seed with one to five damages a disk, a network or an editor could do."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 5))):
        at = draw(st.integers(0, max(0, len(data) - 1)))
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "overwrite", "repeat"]))
        if kind == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "overwrite":  # a size field as often as anything else
            data[at : at + 4] = draw(st.sampled_from([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\x00\x01"]))
        elif kind == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 64))] * draw(st.integers(2, 8))
    return bytes(data)


@st.composite
def spliced_files(draw) -> bytes:
    """The head of one file on the tail of another, often of another format."""
    first, second = draw(st.sampled_from(SEEDS)), draw(st.sampled_from(SEEDS))
    return first[: draw(st.integers(0, len(first)))] + second[draw(st.integers(0, len(second))) :]


image_bytes = st.one_of(
    st.sampled_from(SEEDS),
    damaged_files(),
    spliced_files(),
    st.builds(lambda magic, rest: magic + rest, st.sampled_from(MAGIC), st.binary(max_size=200)),
    st.binary(max_size=300),
    st.sampled_from(REFUSED),
)


@st.composite
def tensors(draw) -> images_pb2.Tensor:
    shape = draw(
        st.one_of(
            st.sampled_from([[1, 28, 28], [1, 28, 28], [28, 28], [1, 1, 28, 28], [3, 28, 28], [1, 28, 27], [], [0, 28, 28], [-1, 28, 28]]),
            st.lists(st.integers(-2, 30), max_size=4),
            st.lists(int32s, max_size=5),
        )
    )
    count = math.prod(shape) if shape else 0
    if 0 <= count <= 4096 and draw(st.integers(0, 3)):  # as many values as the shape says, mostly
        pixels = st.lists(st.floats(0, 1, width=32), min_size=count, max_size=count)
        tensor_values = draw(mostly(pixels, st.builds(lambda v: [v] * count, floats)))
    else:
        tensor_values = draw(st.lists(floats, max_size=50))
    return images_pb2.Tensor(shape=shape, values=tensor_values)


@st.composite
def any_images(draw) -> images_pb2.Image:
    source = draw(st.sampled_from(["encoded", "encoded", "encoded", "tensor", None]))
    if source == "encoded":
        return images_pb2.Image(encoded=draw(image_bytes))
    if source == "tensor":
        return images_pb2.Image(tensor=draw(tensors()))
    return images_pb2.Image()


valid_tensors = st.lists(st.floats(0, 1, width=32), min_size=784, max_size=784).map(lambda v: images_pb2.Tensor(shape=[1, 28, 28], values=v))
valid_images = st.one_of(
    st.sampled_from(PICTURES).map(lambda data: images_pb2.Image(encoded=data)), valid_tensors.map(lambda t: images_pb2.Image(tensor=t))
)
images = mostly(valid_images, any_images(), times=2)


def batches(element, limit: int):
    """Mostly a few; sometimes just over the server's limit (copies of one element: cheap to build)."""
    return mostly(st.lists(element, max_size=4), st.builds(lambda one, extra: [one] * (limit + extra), element, st.integers(1, 3)))


filters = st.builds(
    search_pb2.Filter,
    all_of=st.lists(mostly(st.sampled_from(TAGS), strings), max_size=3),
    any_of=st.lists(mostly(st.sampled_from(TAGS), strings), max_size=3),
    none_of=st.lists(mostly(st.sampled_from(TAGS), strings), max_size=3),
)
ks = mostly(st.integers(1, K_LIMIT + 1), int32s)

# ---------------------------------------------------------------------------------------------
# One strategy per request type.


def _set(message, field: str, value):
    """Sets a message or scalar field (a oneof's choice among them); None leaves it unset."""
    if value is None:
        return message
    if isinstance(value, (str, bytes, int, float)):
        setattr(message, field, value)
    else:
        getattr(message, field).CopyFrom(value)
    return message


@st.composite
def oneof(draw, message, choices: dict):
    """`message` with one of `choices` (field name -> strategy) set, or none of them."""
    field = draw(st.sampled_from([*choices, None]))
    return _set(message, field, draw(choices[field])) if field else message


@st.composite
def embed_requests(draw) -> encoder_pb2.EmbedRequest:
    request = encoder_pb2.EmbedRequest(images=draw(batches(images, ENCODER_BATCH_LIMIT)), fingerprints=draw(mostly(st.integers(0, 2), enums)))
    return _set(request, "model", draw(maybe_model_refs))


@st.composite
def reconstruct_requests(draw) -> encoder_pb2.ReconstructRequest:
    request = encoder_pb2.ReconstructRequest(embeddings=draw(batches(embeddings, ENCODER_BATCH_LIMIT)))
    return _set(request, "model", draw(maybe_model_refs))


get_model_requests = st.builds(lambda model: _set(encoder_pb2.GetModelRequest(), "model", model), maybe_model_refs)


@st.composite
def create_collection_requests(draw) -> search_pb2.CreateCollectionRequest:
    request = search_pb2.CreateCollectionRequest(
        name=draw(mostly(valid_names, names, times=2)),
        dimension=draw(mostly(st.sampled_from([0, 0, DIMENSION, 1, 2, 65536]), int32s)),
        metric=draw(mostly(st.integers(0, 3), enums)),
        allow_existing=draw(st.booleans()),
        find_copies=draw(st.booleans()),
    )
    return _set(request, "model", draw(maybe_model_refs))


get_collection_requests = st.builds(search_pb2.GetCollectionRequest, name=names)
delete_collection_requests = st.builds(search_pb2.DeleteCollectionRequest, name=names, allow_missing=st.booleans())
create_alias_requests = st.builds(search_pb2.CreateAliasRequest, name=names, collection=names)
switch_alias_requests = st.builds(search_pb2.SwitchAliasRequest, name=names, collection=names, expected_collection=names)
delete_alias_requests = st.builds(search_pb2.DeleteAliasRequest, name=names, allow_missing=st.booleans())
operation_names = st.one_of(strings, st.builds(lambda s: f"operations/{s}", strings))
get_operation_requests = st.builds(search_pb2.GetOperationRequest, name=operation_names)
cancel_operation_requests = st.builds(search_pb2.CancelOperationRequest, name=operation_names)
start_reindex_requests = st.builds(
    search_pb2.StartReindexRequest,
    collection=names,
    model=model_refs,
    target_collection=st.one_of(st.just(""), names),
    switch_alias=st.one_of(st.just(""), names),
    policy=st.builds(search_pb2.MigrationPolicy, require_no_worse_copy_recall=st.booleans(), max_copy_recall_drop=st.floats(width=32)),
    report_sample=st.integers(-(2**31), 2**31 - 1),
    label_prefix=strings,
    max_images_per_second=st.floats(width=32),
)


@st.composite
def items(draw) -> search_pb2.Item:
    item = search_pb2.Item(
        id=draw(mostly(st.one_of(st.sampled_from(ITEM_IDS), valid_names), strings)),
        tags=draw(mostly(st.lists(st.sampled_from(TAGS), max_size=2), tag_lists)),
        uri=draw(mostly(st.sampled_from(["", "s3://bucket/key.jpg"]), strings)),
        timestamp=draw(mostly(st.integers(0, 2**40), int64s)),
    )
    return draw(oneof(item, {"vector": embeddings, "image": images}))


@st.composite
def valid_items(draw, collection: str) -> search_pb2.Item:
    """An item `collection` takes: a vector (of the model where it pins one), or a picture where it has a model."""
    item = search_pb2.Item(id=draw(st.one_of(st.sampled_from(ITEM_IDS), valid_names)), tags=draw(st.lists(st.sampled_from(TAGS), max_size=2)))
    if collection in ("pinned", "copies") and draw(st.booleans()):
        return _set(item, "image", draw(valid_images))
    vector = draw(st.lists(st.floats(-10, 10, width=32).filter(lambda x: abs(x) > 1e-3), min_size=DIMENSION, max_size=DIMENSION))
    return _set(item, "vector", images_pb2.Embedding(values=vector, model=images_pb2.ModelRef(name=MODEL, version=1)))


@st.composite
def upsert_requests(draw) -> search_pb2.UpsertRequest:
    collection = draw(names)
    unique = {"unique_by": lambda item: item.id}  # a repeated id refuses the whole batch
    valid = st.lists(valid_items(collection), min_size=1, max_size=4, **unique)
    return search_pb2.UpsertRequest(collection=collection, items=draw(mostly(valid, batches(items(), SEARCH_BATCH_LIMIT), times=2)))


delete_requests = st.builds(search_pb2.DeleteRequest, collection=names, ids=batches(item_ids, SEARCH_BATCH_LIMIT))
get_requests = st.builds(search_pb2.GetRequest, collection=names, ids=batches(item_ids, GET_IDS_LIMIT))


@st.composite
def search_requests(draw) -> search_pb2.SearchRequest:
    request = search_pb2.SearchRequest(collection=draw(names), k=draw(ks), filter=draw(filters))
    return draw(oneof(request, {"vector": embeddings, "image": images, "item_id": item_ids}))


@st.composite
def find_copies_requests(draw) -> search_pb2.FindCopiesRequest:
    request = search_pb2.FindCopiesRequest(
        collection=draw(mostly(st.just("copies"), names, times=2)),  # the one that keeps fingerprints
        k=draw(st.one_of(st.just(0), ks)),
        candidates=draw(mostly(st.integers(0, CANDIDATES_LIMIT + 1), int32s)),
        filter=draw(filters),
        include_similar=draw(st.booleans()),
        edit_pictures=draw(st.booleans()),
        order=draw(mostly(st.integers(0, 1), enums)),
    )
    return draw(oneof(request, {"image": images, "item_id": item_ids}))
