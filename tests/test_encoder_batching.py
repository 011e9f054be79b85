"""The encoder at full speed, over real sockets: dynamic batching, its bounded queue, graceful
shutdown, packed tensors and embeddings, the streaming Embed, and a CUDA fallback made visible."""

from __future__ import annotations

import threading
import time

import grpc
import numpy as np
import pytest
from prometheus_client import REGISTRY

from encoder_service import execution_providers
from encoder_service.server import create_server
from encoder_service.settings import EncoderSettings
from lookalike.client import EncoderClient
from lookalike.errors import InvalidArgument, ResourceExhausted
from lookalike.preprocessing import Preprocessing, preprocess
from lookalike.v1 import encoder_pb2, images_pb2
from tests.conftest import png_bytes
from tests.onnx_factory import write_linear_model


@pytest.fixture
def start_encoder(tmp_path):
    """start(name, **settings): an encoder serving a fresh linear model `name` (its own metric
    series), started on port 0; returns a client. Stopped at the end of the test."""
    servers, clients = [], []

    def start(name: str, **settings) -> EncoderClient:
        repository = tmp_path / f"models-{name}"
        write_linear_model(repository, name=name)
        server, port = create_server(
            EncoderSettings(host="127.0.0.1", port=0, model_repository=repository, refresh_seconds=0, **settings)
        )
        server.start()
        servers.append(server)
        clients.append(EncoderClient(f"127.0.0.1:{port}", timeout=30))
        clients[-1].wait_until_serving(10)
        return clients[-1]

    yield start
    for client in clients:
        client.close()
    for server in servers:
        server.stop(None)


def sample(metric: str, name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(metric, {"model": name, "version": "1", **labels}) or 0.0


def at_the_same_time(count: int, call) -> list:
    """call(i) from `count` threads released together; their results (or exceptions), in order."""
    results: list = [None] * count
    barrier = threading.Barrier(count)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = call(i)
        except Exception as error:
            results[i] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def wait_for(condition, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_concurrent_requests_are_merged_into_one_model_run(start_encoder, digit_pngs):
    client = start_encoder("merged", max_queue_delay_ms=50)
    runs_before = sample("lookalike_encoder_batch_size_count", "merged")
    results = at_the_same_time(16, lambda i: client.embed([digit_pngs[i]]).vectors)

    runs = sample("lookalike_encoder_batch_size_count", "merged") - runs_before
    images = sample("lookalike_encoder_batch_size_sum", "merged")
    single_runs = sample("lookalike_encoder_batch_size_bucket", "merged", le="1.0")
    assert images == 16 and runs < 16, f"16 one-image calls in {runs:.0f} model runs"
    assert single_runs < runs, "no model run held more than one image"
    # Each caller got its own row back.
    np.testing.assert_allclose(np.concatenate(results), client.embed(digit_pngs[:16]).vectors, rtol=1e-5, atol=1e-6)


def test_a_full_queue_answers_resource_exhausted_and_the_server_recovers(start_encoder, digit_pngs):
    client = start_encoder("full", max_batch_size=8, max_queue_images=8, decode_threads=1)
    noise = np.random.default_rng(0).integers(0, 256, (1500, 1500), dtype=np.uint8)
    slow = [png_bytes(noise)] * 8  # 8 pictures of 2.25 MP that compress badly: decoding takes a while
    outcome = {}
    filler = threading.Thread(target=lambda: outcome.setdefault("filler", client.embed(slow).vectors.shape))
    filler.start()
    wait_for(lambda: sample("lookalike_encoder_queue_images", "full") == 8)
    with pytest.raises(ResourceExhausted) as refused:
        client.embed(digit_pngs[:1])
    assert refused.value.reason == "QUEUE_FULL" and refused.value.metadata["limit"] == "8"
    filler.join(60)
    assert outcome["filler"] == (8, 16)
    assert client.embed(digit_pngs[:1]).vectors.shape == (1, 16)  # room again


def test_graceful_shutdown_finishes_the_calls_in_flight(tmp_path, digit_pngs):
    repository = tmp_path / "models"
    write_linear_model(repository, name="draining")
    # Calls wait up to half a second in the queue for company: they are in flight when the stop comes.
    server, port = create_server(
        EncoderSettings(host="127.0.0.1", port=0, model_repository=repository, refresh_seconds=0, max_queue_delay_ms=500)
    )
    server.start()
    with EncoderClient(f"127.0.0.1:{port}", timeout=30) as client:
        client.wait_until_serving(10)
        calls = [client.stub.Embed.future(encoder_pb2.EmbedRequest(images=[images_pb2.Image(encoded=png)]), timeout=30) for png in digit_pngs[:6]]
        wait_for(lambda: sample("lookalike_encoder_queue_images", "draining") == 6)
        stopped = server.stop(grace=10)
        assert all(len(call.result().embeddings) == 1 for call in calls)
        assert stopped.wait(10)
        with pytest.raises(grpc.RpcError) as refused:
            client.stub.Embed(encoder_pb2.EmbedRequest(images=[images_pb2.Image(encoded=digit_pngs[0])]), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_packed_tensors_and_embeddings_equal_repeated_floats(encoder, digit_pngs):
    tensor = preprocess(digit_pngs[0], Preprocessing())
    as_floats = encoder_pb2.EmbedRequest(images=[images_pb2.Image(tensor=images_pb2.Tensor(shape=tensor.shape, values=tensor.ravel()))])
    floats = encoder.stub.Embed(as_floats, timeout=10)
    packed = encoder.embed([tensor]).vectors  # the client packs both ways
    assert floats.embedding_dim == 16 and not floats.packed_embeddings
    np.testing.assert_array_equal(packed[0], np.asarray(floats.embeddings[0].values, np.float32))

    def refusal(tensor_message: images_pb2.Tensor) -> tuple[str, str]:
        request = encoder_pb2.EmbedRequest(images=[images_pb2.Image(tensor=tensor_message)])
        with pytest.raises(grpc.RpcError) as raised:
            encoder.stub.Embed(request, timeout=10)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        from lookalike.errors import from_rpc_error

        violation = from_rpc_error(raised.value).field_violations[0]
        return violation.field, violation.reason

    both = images_pb2.Tensor(shape=tensor.shape, values=tensor.ravel(), packed_values=tensor.tobytes())
    assert refusal(both) == ("images[0].tensor.packed_values", "VALUE_OUT_OF_RANGE")
    short = images_pb2.Tensor(shape=tensor.shape, packed_values=tensor.tobytes()[:-2])
    assert refusal(short) == ("images[0].tensor.packed_values", "TENSOR_SHAPE_MISMATCH")
    nan = images_pb2.Tensor(shape=tensor.shape, packed_values=np.full(tensor.shape, np.nan, "<f4").tobytes())
    assert refusal(nan) == ("images[0].tensor.packed_values", "VALUES_NOT_FINITE")


def test_a_stream_of_10k_images_comes_back_in_order(encoder, digit_pngs):
    scales = np.arange(1, 10_001, dtype=np.float32) / 10_000  # image i is all scales[i]: its embedding is scales[i] x one vector
    ones = np.ones((1, 28, 28), np.float32)
    batches = [[ones * scale for scale in scales[start : start + 50]] for start in range(0, len(scales), 50)]
    base = encoder.embed([ones]).vectors[0]

    embedded = list(encoder.embed_stream(batches))
    assert len(embedded) == 200 and all(e.model.version == 1 for e in embedded)
    vectors = np.concatenate([e.vectors for e in embedded])
    np.testing.assert_allclose(vectors, scales[:, None] * base, rtol=1e-4, atol=1e-5)
    # Encoded files take the same way as in Embed.
    (files,) = encoder.embed_stream([digit_pngs[:5]])
    np.testing.assert_allclose(files.vectors, encoder.embed(digit_pngs[:5]).vectors, rtol=1e-6)


def test_a_bad_batch_ends_the_stream_after_the_ones_before_it(encoder, digit_pngs):
    batches = [digit_pngs[:2], digit_pngs[2:4], [digit_pngs[4], b"junk"], digit_pngs[6:8]]
    received = []
    with pytest.raises(InvalidArgument) as raised:
        for embedded in encoder.embed_stream(batches):
            received.append(embedded.vectors.shape)
    assert received == [(2, 16), (2, 16)]
    assert raised.value.metadata["request"] == "2"
    assert [(v.field, v.reason) for v in raised.value.field_violations] == [("images[1].encoded", "IMAGE_UNDECODABLE")]


def test_a_device_that_cannot_run_here_is_refused_with_why_and_auto_says_it_runs_on_cpu(tmp_path, caplog):
    # No mock: this machine has no GPU driver (libcuda.so.1), whatever onnxruntime build it has.
    repository = tmp_path / "models"
    write_linear_model(repository, name="nogpu")
    caplog.set_level("INFO", logger=execution_providers.__name__)
    missing = execution_providers.cuda_missing()
    assert missing, "a GPU machine: this test is for one without"
    with pytest.raises(execution_providers.DeviceUnavailable) as refused:
        create_server(EncoderSettings(host="127.0.0.1", port=0, model_repository=repository, device="cuda"))
    assert str(refused.value) == f"device=cuda but CUDA cannot run here: {missing}"
    assert not [r for r in caplog.records if "running on CPU" in r.getMessage()], "no fallback is announced before a refusal"
    assert execution_providers.providers_for("auto") == [execution_providers.CPU]
    assert [r.fields["reason"] for r in caplog.records if r.getMessage() == "CUDA not usable, running on CPU"] == [missing]


def test_a_cuda_request_that_falls_back_to_cpu_is_visible(monkeypatch, tmp_path, caplog):
    # The one mock: this machine has no GPU, so the CUDA libraries are said to load. ONNX Runtime
    # then really tries CUDA, fails, and falls back to CPU, as it does on a host with a broken driver.
    monkeypatch.setattr(execution_providers, "cuda_missing", lambda: "")
    repository = tmp_path / "models"
    write_linear_model(repository, name="fallback")
    server, port = create_server(EncoderSettings(host="127.0.0.1", port=0, model_repository=repository, refresh_seconds=0))
    server.start()
    try:
        with EncoderClient(f"127.0.0.1:{port}") as client:
            info = client.get_model("fallback")
        assert (info.execution_provider, info.requested_execution_provider) == ("CPUExecutionProvider", "CUDAExecutionProvider")
        assert sample("lookalike_encoder_provider_fallback", "fallback") == 1
        labels = {"provider": "CPUExecutionProvider", "requested": "CUDAExecutionProvider"}
        assert sample("lookalike_encoder_execution_provider", "fallback", **labels) == 1
        warnings = [r for r in caplog.records if r.getMessage() == "model loaded on a fallback provider"]
        assert len(warnings) == 1 and warnings[0].fields["requested_provider"] == "CUDAExecutionProvider"
    finally:
        server.stop(None)


class ShapeRecorder:
    """A real model that notes the shape of every run: the CUDA behaviour this stands in for
    (encoder_service/batching.py) cannot run on a machine without a GPU."""

    def __init__(self, model) -> None:
        self.model, self.shapes = model, []
        self.card, self.execution_provider, self.requested_provider = model.card, model.execution_provider, model.requested_provider

    def embed(self, images: np.ndarray) -> np.ndarray:
        self.shapes.append(images.shape)
        return self.model.embed(images)


@pytest.mark.parametrize("enabled", [True, False])
def test_fixed_shape_runs_pad_and_split_to_the_batch_and_give_the_same_embeddings(tmp_path, enabled):
    from encoder_service.batching import ModelQueue
    from encoder_service.onnx_model import OnnxModel
    from lookalike import model_format

    write_linear_model(tmp_path, name="linear")
    model = ShapeRecorder(OnnxModel(model_format.version_dir(tmp_path, "linear", 1), ["CPUExecutionProvider"]))
    queue = ModelQueue(model, enabled=enabled, max_batch=8, max_delay_seconds=0, max_images=64, fixed_shape=True)
    assert ModelQueue(model, enabled=False, max_batch=8, max_delay_seconds=0, max_images=64).fixed_shape is False, "a CPU model runs by the row"
    try:
        rows = np.random.default_rng(0).random((19, *model.card.preprocessing.shape), dtype=np.float32)
        for n in (1, 5, 8, 19):
            assert np.allclose(queue.submit(rows[:n]).result(10), model.model.embed(rows[:n]), atol=1e-6)
        assert [shape[0] for shape in model.shapes] == [8, 8, 8, 8, 8, 8], "1, 5 and 8 rows in one run each, 19 in three"
    finally:
        queue.close()


def test_tensorrt_is_asked_for_first_and_a_fallback_is_visible(monkeypatch, tmp_path):
    # As for CUDA above: this machine has neither, so both libraries are said to load; ONNX Runtime
    # really tries TensorRT and CUDA, fails, and runs on CPU, which GetModel and the metric show.
    repository = tmp_path / "models"
    write_linear_model(repository, name="trt")
    with pytest.raises(RuntimeError, match="libnvinfer"):
        create_server(EncoderSettings(host="127.0.0.1", port=0, model_repository=repository, device="tensorrt"))
    monkeypatch.setattr(execution_providers, "cuda_missing", lambda: "")
    monkeypatch.setattr(execution_providers, "tensorrt_loadable", lambda: True)
    server, port = create_server(
        EncoderSettings(host="127.0.0.1", port=0, model_repository=repository, refresh_seconds=0, device="tensorrt", tensorrt_engine_cache=tmp_path / "engines")
    )
    server.start()
    try:
        with EncoderClient(f"127.0.0.1:{port}") as client:
            info = client.get_model("trt")
        assert (info.execution_provider, info.requested_execution_provider) == ("CPUExecutionProvider", "TensorrtExecutionProvider")
        assert sample("lookalike_encoder_provider_fallback", "trt") == 1
    finally:
        server.stop(None)
