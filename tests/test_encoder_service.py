"""The encoder service over a real socket: embeddings, errors, health, hot reload."""

from __future__ import annotations

import time

import grpc
import numpy as np
import onnxruntime
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from encoder_service.server import create_server
from encoder_service.settings import EncoderSettings
from lookalike.client import EncoderClient
from lookalike.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted, Unavailable, from_rpc_error
from lookalike.preprocessing import Preprocessing, preprocess
from lookalike.v1 import encoder_pb2, encoder_pb2_grpc, images_pb2
from tests.conftest import png_bytes
from tests.onnx_factory import write_foreign_model, write_linear_model


def test_embed_matches_onnx_runtime_on_the_shared_preprocessing(encoder, model_repository, digit_pngs):
    embeddings, model = encoder.embed(digit_pngs[:5])
    assert embeddings.shape == (5, 16)
    assert (model.name, model.version) == ("tiny", 1)
    session = onnxruntime.InferenceSession(str(model_repository / "tiny/1/encoder.onnx"), providers=["CPUExecutionProvider"])
    batch = np.stack([preprocess(data, Preprocessing()) for data in digit_pngs[:5]])
    np.testing.assert_allclose(embeddings, session.run(None, {"images": batch})[0], rtol=1e-5, atol=1e-6)


def test_tensor_input_gives_the_same_embedding_as_the_encoded_file(encoder, digit_pngs):
    from_file, _ = encoder.embed(digit_pngs[:1])
    from_tensor, _ = encoder.embed([preprocess(digit_pngs[0], Preprocessing())])
    np.testing.assert_allclose(from_file, from_tensor, rtol=1e-6)


def test_get_model_describes_the_model_and_its_provider(encoder):
    info = encoder.get_model()
    assert (info.channels, info.height, info.width, info.embedding_dim) == (1, 28, 28, 16)
    assert info.metric == images_pb2.METRIC_COSINE
    assert info.execution_provider == "CPUExecutionProvider"
    assert info.has_decoder
    assert Preprocessing.from_json(info.preprocessing_json) == Preprocessing()


def test_reconstruct_returns_png_images_of_the_input_size(encoder, digit_pngs):
    from PIL import Image
    import io

    embeddings, _ = encoder.embed(digit_pngs[:3])
    pngs = encoder.reconstruct(embeddings)
    assert len(pngs) == 3
    assert Image.open(io.BytesIO(pngs[0])).size == (28, 28)


@pytest.mark.parametrize(
    "image, field, reason, expected",
    [
        (b"", "images[1].encoded", "IMAGE_EMPTY", "empty image"),
        (b"definitely not an image", "images[1].encoded", "IMAGE_UNDECODABLE", "not a recognisable image"),
        (b"\x00\x00\x00\x18ftypheic" + bytes(40), "images[1].encoded", "IMAGE_FORMAT_UNSUPPORTED", "HEIC images are not supported"),
        (np.zeros((3, 28, 28), np.float32), "images[1].tensor.shape", "TENSOR_SHAPE_MISMATCH", "tensor shape [3, 28, 28] does not match"),
    ],
)
def test_bad_images_are_invalid_argument_naming_the_field_and_reason(encoder, digit_pngs, image, field, reason, expected):
    with pytest.raises(InvalidArgument) as raised:
        encoder.embed([digit_pngs[0], image])
    error = raised.value
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and error.reason == reason
    assert [(v.field, v.reason) for v in error.field_violations] == [(field, reason)]
    assert expected in error.field_violations[0].description and error.message.startswith(f"{field}: ")
    assert encoder.embed(digit_pngs[:1])[0].shape == (1, 16)  # still serving


def test_every_bad_image_of_a_batch_is_named_at_once(encoder, digit_pngs):
    with pytest.raises(InvalidArgument) as raised:
        encoder.embed([b"", digit_pngs[0], b"junk", digit_pngs[1], digit_pngs[2][:60]])
    violations = raised.value.field_violations
    assert [(v.field, v.reason) for v in violations] == [
        ("images[0].encoded", "IMAGE_EMPTY"),
        ("images[2].encoded", "IMAGE_UNDECODABLE"),
        ("images[4].encoded", "IMAGE_UNDECODABLE"),
    ]
    assert raised.value.message.startswith("3 fields are invalid")


def test_the_rich_status_reaches_a_raw_grpc_client(encoder_address):
    """What any language's client sees: google.rpc.Status details in the trailers."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    with grpc.insecure_channel(encoder_address) as channel:
        stub = encoder_pb2_grpc.EncoderStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            stub.Embed(encoder_pb2.EmbedRequest(images=[images_pb2.Image(encoded=b"")]), timeout=10)
    status = rpc_status.from_call(raised.value)
    info, bad_request = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
    assert status.details[0].Unpack(info) and status.details[1].Unpack(bad_request)
    assert (info.domain, info.reason) == ("lookalike.v1", "IMAGE_EMPTY")
    assert [(v.field, v.reason) for v in bad_request.field_violations] == [("images[0].encoded", "IMAGE_EMPTY")]


def test_truncated_and_oversized_images_are_refused(encoder, digit_pngs):
    with pytest.raises(InvalidArgument) as truncated:
        encoder.embed([digit_pngs[0][:60]])
    assert truncated.value.reason == "IMAGE_UNDECODABLE"
    huge = png_bytes(np.zeros((7000, 6000), np.uint8))  # 42 MP of black compresses to a few kB
    with pytest.raises(InvalidArgument) as oversized:
        encoder.embed([huge])
    assert oversized.value.reason == "IMAGE_TOO_LARGE" and oversized.value.metadata == {"limit": "40000000"}
    assert "over the limit of 40000000" in oversized.value.message


def test_limits_are_invalid_argument_and_unknown_models_not_found(encoder, digit_pngs):
    with pytest.raises(InvalidArgument) as too_many:
        encoder.embed(digit_pngs[:65])
    assert too_many.value.reason == "BATCH_TOO_LARGE" and too_many.value.metadata == {"limit": "64"}
    assert [v.field for v in too_many.value.field_violations] == ["images"]
    with pytest.raises(NotFound) as unknown:
        encoder.embed(digit_pngs[:1], model="nope")
    assert unknown.value.reason == "MODEL_NOT_FOUND"
    with pytest.raises(InvalidArgument) as wrong_width:
        encoder.reconstruct(np.zeros((1, 3), np.float32))
    assert [(v.field, v.reason) for v in wrong_width.value.field_violations] == [("embeddings[0].values", "DIMENSION_MISMATCH")]


def test_reconstruct_refuses_an_embedding_of_another_model(encoder, digit_pngs):
    request = encoder_pb2.ReconstructRequest(
        embeddings=[images_pb2.Embedding(values=[0.0] * 16, model=images_pb2.ModelRef(name="tiny", version=7))]
    )
    with pytest.raises(grpc.RpcError) as raised:
        encoder.stub.Reconstruct(request, timeout=10)
    error = from_rpc_error(raised.value)
    assert isinstance(error, FailedPrecondition) and error.reason == "MODEL_MISMATCH"
    assert error.field_violations[0].field == "embeddings[0].model"


def test_message_over_the_limit_is_resource_exhausted(model_repository):
    settings = EncoderSettings(host="127.0.0.1", port=0, model_repository=model_repository, refresh_seconds=0, max_message_bytes=1024)
    server, port = create_server(settings)
    server.start()
    try:
        with EncoderClient(f"127.0.0.1:{port}", timeout=10) as client:
            with pytest.raises(ResourceExhausted) as raised:
                client.embed([bytes(4096)])
            assert raised.value.reason == ""  # gRPC's own refusal: no details
    finally:
        server.stop(None)


def test_health_is_not_serving_without_models_and_serving_once_one_appears(tmp_path, digit_pngs):
    repository = tmp_path / "models"
    settings = EncoderSettings(host="127.0.0.1", port=0, model_repository=repository, refresh_seconds=0.1)
    server, port = create_server(settings)
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest(service="lookalike.v1.Encoder")
            assert health.Check(request, timeout=5).status == health_pb2.HealthCheckResponse.NOT_SERVING
            with EncoderClient(f"127.0.0.1:{port}") as client:
                with pytest.raises(Unavailable) as raised:
                    client.embed(digit_pngs[:1])
                assert raised.value.reason == "MODELS_LOADING" and str(repository) not in raised.value.message
                write_linear_model(repository)
                client.wait_until_serving(10)
                assert client.embed(digit_pngs[:1])[1].version == 1
    finally:
        server.stop(None)


def test_a_new_version_is_picked_up_while_requests_keep_succeeding(encoder, model_repository, digit_pngs):
    assert encoder.embed(digit_pngs[:1])[1].version == 1
    write_linear_model(model_repository, version=2, seed=1)
    deadline = time.monotonic() + 10
    versions = set()
    while time.monotonic() < deadline and 2 not in versions:
        versions.add(encoder.embed(digit_pngs[:2])[1].version)  # every call must succeed meanwhile
    assert 2 in versions
    assert encoder.embed(digit_pngs[:1], version=1)[1].version == 1  # the old version stays addressable


def test_a_foreign_encoder_is_served_from_its_flat_metadata(tmp_path):
    """An ONNX encoder from elsewhere (input `pixel_values`, two outputs, ImageNet normalisation, no
    decoder) gives what numpy computes from the pixels: the metadata reached the preprocessing."""
    repository = tmp_path / "models"
    weights = write_foreign_model(repository)
    server, port = create_server(EncoderSettings(host="127.0.0.1", port=0, model_repository=repository, refresh_seconds=0))
    server.start()
    try:
        with EncoderClient(f"127.0.0.1:{port}", timeout=10) as client:
            client.wait_until_serving(10)
            info = client.get_model()
            assert (info.channels, info.height, info.width, info.embedding_dim) == (3, 32, 32, 16)
            assert (info.architecture, info.has_decoder, info.metric) == ("onnx", False, images_pb2.METRIC_COSINE)

            pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)  # the input size: no resize
            odd_size = png_bytes(np.random.default_rng(1).integers(0, 256, (50, 40, 3), dtype=np.uint8))
            embeddings, model = client.embed([png_bytes(pixels), odd_size])
            assert (model.name, model.version) == ("foreign", 1)

            mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
            normalised = (pixels / 255.0 - mean) / std  # (H, W, 3)
            np.testing.assert_allclose(embeddings[0], normalised.mean(axis=(0, 1)) @ weights, rtol=1e-4, atol=1e-5)
            # Another size goes through the one preprocessing, with the spec the metadata made.
            resized = preprocess(odd_size, Preprocessing.from_json(info.preprocessing_json))  # (3, 32, 32)
            np.testing.assert_allclose(embeddings[1], resized.mean(axis=(1, 2)) @ weights, rtol=1e-4, atol=1e-5)
    finally:
        server.stop(None)
