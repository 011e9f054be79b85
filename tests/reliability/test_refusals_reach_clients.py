"""Refusals the RPC fuzzing found not reaching their callers as the status errors.proto promises.

1. A refusal that echoes long strings or lists many bad items outgrew the trailers: gRPC clients
   drop a reply whose metadata passes 8 KiB (at random up to 16 KiB, then always), so the caller
   got RESOURCE_EXHAUSTED "Stream removed" without details, a code it may retry, for a request
   that never passes. 256 wrong-sized vectors (a full batch): 26 KB of trailers; a 2,000-character
   collection name: 20 KB. server_toolkit/error_mapping.py now cuts them to fit.
2. Bytes that are not a request message (a truncated field, invalid UTF-8 in a string, as a C++
   client sends it) got INTERNAL and a traceback at ERROR in the server log; now INVALID_ARGUMENT
   REQUEST_MALFORMED (server_toolkit/load_limits.py parses them).
3. An image given as a tensor, upserted into a collection with find_copies: the encoder makes no
   fingerprint from a tensor (b""), and the search service answered INTERNAL ENCODER_FAILED "the
   encoder service sent a malformed fingerprint"; now the item is stored without a fingerprint
   (FindCopies still refuses a tensor query as INVALID_ARGUMENT at image.encoded).
"""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from lookalike.v1 import encoder_pb2, encoder_pb2_grpc, images_pb2, search_pb2, search_pb2_grpc

TRAILER_BUDGET_BYTES = 8 * 1024  # gRPC C-core's default soft limit on a reply's metadata


def refusal(call, request) -> tuple[grpc.RpcError, error_details_pb2.ErrorInfo, error_details_pb2.BadRequest]:
    with pytest.raises(grpc.RpcError) as raised:
        call(request, timeout=10)
    status = rpc_status.from_call(raised.value)
    assert status is not None, f"{raised.value.code().name} without details: {raised.value.details()}"
    info, bad_request = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
    for detail in status.details:
        detail.Unpack(info) or detail.Unpack(bad_request)
    trailers = sum(len(key) + len(value) for key, value in raised.value.trailing_metadata())
    assert trailers < TRAILER_BUDGET_BYTES / 2, f"{trailers} bytes of trailers"
    return raised.value, info, bad_request


def test_a_full_batch_of_bad_items_is_refused_with_its_details(search_address):
    with grpc.insecure_channel(search_address) as channel:
        search = search_pb2_grpc.SearchStub(channel)
        search.CreateCollection(search_pb2.CreateCollectionRequest(name="things", dimension=4), timeout=10)
        items = [search_pb2.Item(id=f"item-{i}", vector=images_pb2.Embedding(values=[1, 2, 3])) for i in range(256)]
        error, info, bad_request = refusal(search.Upsert, search_pb2.UpsertRequest(collection="things", items=items))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and info.reason == "DIMENSION_MISMATCH"
    listed = len(bad_request.field_violations)
    assert 10 <= listed < 256 and bad_request.field_violations[0].field == "items[0].vector"
    assert error.details().endswith(f"({256 - listed} more fields at fault are not listed)")


@pytest.mark.parametrize("name", ["x" * 5000, "é" * 2000, "🦆" * 1000])
def test_a_long_name_is_refused_with_its_details(search_address, encoder_address, name):
    with grpc.insecure_channel(search_address) as search_channel, grpc.insecure_channel(encoder_address) as encoder_channel:
        search, encoder = search_pb2_grpc.SearchStub(search_channel), encoder_pb2_grpc.EncoderStub(encoder_channel)
        error, info, _ = refusal(search.GetCollection, search_pb2.GetCollectionRequest(name=name))
        assert (error.code(), info.reason) == (grpc.StatusCode.NOT_FOUND, "COLLECTION_NOT_FOUND")
        assert len(error.details().encode()) < 400 and error.details().startswith("collection '" + name[:10])
        error, info, _ = refusal(search.CreateCollection, search_pb2.CreateCollectionRequest(name=name, dimension=2))
        assert (error.code(), info.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "NAME_INVALID")
        error, info, _ = refusal(encoder.GetModel, encoder_pb2.GetModelRequest(model=images_pb2.ModelRef(name=name)))
        assert (error.code(), info.reason) == (grpc.StatusCode.NOT_FOUND, "MODEL_NOT_FOUND")


MALFORMED = {
    "a truncated field": b"\x0a\x05ab",  # field 1, 5 bytes announced, 2 sent
    "invalid UTF-8 in a string": b"\x0a\x02\xc3\x28",  # field 1 (a name), a broken 2-byte sequence
    "a varint that never ends": b"\x10" + b"\xff" * 11,
}


@pytest.mark.parametrize("malformed", MALFORMED.values(), ids=MALFORMED.keys())
def test_bytes_that_are_not_a_request_are_invalid_argument(search_address, encoder_address, malformed):
    for address, method in ((encoder_address, "/lookalike.v1.Encoder/GetModel"), (search_address, "/lookalike.v1.Search/GetCollection")):
        with grpc.insecure_channel(address) as channel:
            with pytest.raises(grpc.RpcError) as raised:
                channel.unary_unary(method)(malformed, timeout=10)  # no serializer: the bytes as they are
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, f"{method}: {raised.value.code().name} {raised.value.details()}"


def test_a_tensor_upserted_into_a_find_copies_collection_is_not_internal(search_address):
    tensor = images_pb2.Image(tensor=images_pb2.Tensor(shape=[1, 28, 28], values=[0.5] * 784))
    with grpc.insecure_channel(search_address) as channel:
        search = search_pb2_grpc.SearchStub(channel)
        search.CreateCollection(search_pb2.CreateCollectionRequest(name="copies", model=images_pb2.ModelRef(name="tiny"), find_copies=True), timeout=10)
        try:
            search.Upsert(search_pb2.UpsertRequest(collection="copies", items=[search_pb2.Item(id="a", image=tensor)]), timeout=10)
        except grpc.RpcError as error:  # refused like FindCopies refuses a tensor, or stored without a fingerprint
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, f"{error.code().name}: {error.details()}"
