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
from lookalike.preprocessing import Preprocessing, preprocess
from lookalike.v1 import images_pb2
from tests.conftest import png_bytes
from tests.onnx_factory import write_linear_model


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
    "image, expected",
    [
        (b"", "images[1]: empty image"),
        (b"definitely not an image", "images[1]: not a recognisable image"),
        (b"\x00\x00\x00\x18ftypheic" + bytes(40), "images[1]: HEIC images are not supported"),
        (np.zeros((3, 28, 28), np.float32), "images[1]: tensor shape [3, 28, 28] does not match"),
    ],
)
def test_bad_images_are_invalid_argument_naming_the_image(encoder, digit_pngs, image, expected):
    with pytest.raises(grpc.RpcError) as raised:
        encoder.embed([digit_pngs[0], image])
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert expected in raised.value.details()
    assert encoder.embed(digit_pngs[:1])[0].shape == (1, 16)  # still serving


def test_truncated_and_oversized_images_are_refused(encoder, digit_pngs):
    with pytest.raises(grpc.RpcError) as truncated:
        encoder.embed([digit_pngs[0][:60]])
    assert truncated.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    huge = png_bytes(np.zeros((7000, 6000), np.uint8))  # 42 MP of black compresses to a few kB
    with pytest.raises(grpc.RpcError) as oversized:
        encoder.embed([huge])
    assert oversized.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "over the limit of 40000000" in oversized.value.details()


def test_limits_and_unknown_models(encoder, digit_pngs):
    with pytest.raises(grpc.RpcError) as too_many:
        encoder.embed(digit_pngs[:65])
    assert too_many.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    with pytest.raises(grpc.RpcError) as unknown:
        encoder.embed(digit_pngs[:1], model="nope")
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as wrong_width:
        encoder.reconstruct(np.zeros((1, 3), np.float32))
    assert wrong_width.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_message_over_the_limit_is_resource_exhausted(model_repository):
    settings = EncoderSettings(host="127.0.0.1", port=0, model_repository=model_repository, refresh_seconds=0, max_message_bytes=1024)
    server, port = create_server(settings)
    server.start()
    try:
        with EncoderClient(f"127.0.0.1:{port}", timeout=10) as client:
            with pytest.raises(grpc.RpcError) as raised:
                client.embed([bytes(4096)])
            assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
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
                with pytest.raises(grpc.RpcError) as raised:
                    client.embed(digit_pngs[:1])
                assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
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
