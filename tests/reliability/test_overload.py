"""Overload: a real encoder process at about twice what it takes on sheds load and stays bounded.

32 callers send 40-megapixel RGB PNGs (130 KB on the wire, 160 MB each once Pillow decodes them)
for 10 s to an encoder started in its own process, so its memory is its own: VmHWM in
/proc/<pid>/status is its peak resident memory. The encoder accepts 16 calls at once
(max_concurrent_rpcs, gRPC refuses the rest) and decodes at most 2 such pictures at once
(max_inflight_pixels 80 MP, DECODE_BUDGET_EXHAUSTED for the rest), and gives freed pictures back
to the system (load_limits.map_large_allocations). Without the limits its 8 workers decoded 8 at
once and it reached 1.36 GB (RELIABILITY.md). The smaller tests below check the per-request pixel
limit and the bytes in flight on an in-process server.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from encoder_service.server import create_server
from encoder_service.settings import EncoderSettings
from lookalike import errors
from lookalike.v1 import encoder_pb2, encoder_pb2_grpc, images_pb2
from tests.conftest import png_bytes
from tests.odd_images import encoded, gradient
from tests.onnx_factory import write_linear_model

ROOT = Path(__file__).resolve().parents[2]
CALLERS = 32  # twice the 16 calls the encoder accepts at once
LOAD_SECONDS = float(os.environ.get("LOOKALIKE_CHAOS_LOAD_SECONDS", "10"))  # `make chaos` loads longer
BACKOFF_SECONDS = (0.05, 1.0)  # a refused caller waits 50 ms, doubling up to 1 s, as errors.proto advises
INFLIGHT_PIXELS = 80_000_000  # two 40-megapixel pictures decoding at once
BYTES_PER_PIXEL = 4  # Pillow keeps RGB as RGBX
SERVE = (
    "from encoder_service.server import serve; from encoder_service.settings import EncoderSettings; "
    "from server_toolkit import logs; settings = EncoderSettings(); logs.configure(settings.log_level); serve(settings)"
)


def rgb_png_40_megapixels() -> bytes:
    """6300x6300 smooth RGB, 39.7 MP (just under the encoder's 40 MP per image): built once and
    kept in the system's tmp, as building it takes a second."""
    path = Path(tempfile.gettempdir()) / "lookalike-test-images" / "rgb-6300x6300.png"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        ramp = Image.linear_gradient("L")
        picture = Image.merge("RGB", [ramp.resize((6300, 6300)), ramp.rotate(90).resize((6300, 6300)), Image.new("L", (6300, 6300), 64)])
        partial = path.with_suffix(f".{os.getpid()}.partial")
        partial.write_bytes(encoded(picture, "PNG"))
        partial.replace(path)
    return path.read_bytes()


class EncoderProcess:
    """`serve()` of the encoder in a child process, configured by LOOKALIKE_ENCODER_* variables, on a free port."""

    def __init__(self, repository: Path, **settings: object) -> None:
        env = {
            **os.environ,
            "LOOKALIKE_ENCODER_HOST": "127.0.0.1",
            "LOOKALIKE_ENCODER_PORT": "0",
            "LOOKALIKE_ENCODER_MODEL_REPOSITORY": str(repository),
            "LOOKALIKE_ENCODER_REFRESH_SECONDS": "0",
            **{f"LOOKALIKE_ENCODER_{name.upper()}": str(value) for name, value in settings.items()},
        }
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVE], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.logs: list[dict] = []
        self._listening = threading.Event()
        self._reader = threading.Thread(target=self._read_logs, daemon=True)
        self._reader.start()
        if not self._listening.wait(30):
            self.process.kill()
            pytest.fail(f"the encoder did not start: {self.logs}")
        self.address = f"127.0.0.1:{self.port}"

    def _read_logs(self) -> None:
        for line in self.process.stdout:
            try:
                entry = json.loads(line)
            except ValueError:
                entry = {"message": line.rstrip()}  # a warning on stderr
            self.logs.append(entry)
            if entry.get("message") == "encoder service listening":
                self.port = entry["port"]
                self._listening.set()

    def memory_mb(self, field: str) -> float:
        """VmRSS (now) or VmHWM (peak) of the process, MB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        raise KeyError(field)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


@pytest.fixture
def models(tmp_path) -> Path:
    write_linear_model(tmp_path / "models")
    return tmp_path / "models"


@pytest.fixture
def encoder_process(models):
    server = EncoderProcess(models, max_inflight_pixels=INFLIGHT_PIXELS, max_concurrent_rpcs=CALLERS // 2)
    yield server
    server.close()


def test_overload_is_shed_at_once_and_memory_stays_bounded(encoder_process):
    picture = rgb_png_40_megapixels()
    request = encoder_pb2.EmbedRequest(images=[images_pb2.Image(encoded=picture)])
    channel = grpc.insecure_channel(encoder_process.address)
    stub = encoder_pb2_grpc.EncoderStub(channel)
    stub.Embed(encoder_pb2.EmbedRequest(images=[images_pb2.Image(encoded=png_bytes(gradient(28, 28)[..., 0]))]), timeout=10)
    baseline = encoder_process.memory_mb("VmRSS")

    outcomes: collections.Counter[str] = collections.Counter()
    refusal_ms: list[float] = []
    served_ms: list[float] = []
    lock = threading.Lock()
    deadline = time.monotonic() + LOAD_SECONDS

    def caller() -> None:
        backoff = BACKOFF_SECONDS[0]
        while time.monotonic() < deadline:
            began = time.monotonic()
            try:
                stub.Embed(request, timeout=60)
                outcome = "OK"
            except grpc.RpcError as rpc_error:
                error = errors.from_rpc_error(rpc_error)
                outcome = f"{error.code.name} {error.reason or '(no reason: gRPC)'}"
            with lock:
                outcomes[outcome] += 1
                (served_ms if outcome == "OK" else refusal_ms).append((time.monotonic() - began) * 1000)
            if outcome == "OK":
                backoff = BACKOFF_SECONDS[0]
            else:
                time.sleep(backoff)
                backoff = min(2 * backoff, BACKOFF_SECONDS[1])

    callers = [threading.Thread(target=caller) for _ in range(CALLERS)]
    for thread in callers:
        thread.start()
    for thread in callers:
        thread.join(LOAD_SECONDS + 80)
    peak = encoder_process.memory_mb("VmHWM")
    channel.close()

    refused = sum(count for outcome, count in outcomes.items() if outcome.startswith("RESOURCE_EXHAUSTED"))
    refusal_ms.sort()
    served_ms.sort()
    # The decode budget's pixels at 4 bytes, a quarter more for the strips converted beside them,
    # and 150 MB for gRPC's buffers (16 calls of 130 KB), the parsed requests and the allocator's slack.
    bound = baseline + INFLIGHT_PIXELS * BYTES_PER_PIXEL * 1.25 / 2**20 + 150
    print(
        f"\noverload: {CALLERS} callers x {LOAD_SECONDS:.0f} s, {sum(outcomes.values())} calls: {dict(outcomes)}; "
        f"served in p50 {_median(served_ms):.0f} ms, max {max(served_ms, default=0):.0f} ms; refused in p50 {_median(refusal_ms):.1f} ms, "
        f"max {max(refusal_ms, default=0):.1f} ms; RSS baseline {baseline:.0f} MB, peak {peak:.0f} MB, bound {bound:.0f} MB"
    )
    assert outcomes["OK"] > 0, f"nothing was served: {dict(outcomes)}"
    assert refused > 0, f"twice the load it takes on, and nothing was refused: {dict(outcomes)}"
    assert set(outcomes) <= {"OK", "RESOURCE_EXHAUSTED DECODE_BUDGET_EXHAUSTED", "RESOURCE_EXHAUSTED (no reason: gRPC)"}, dict(outcomes)
    assert peak < bound, f"peak RSS {peak:.0f} MB over the bound of {bound:.0f} MB (baseline {baseline:.0f} MB)"


@pytest.fixture
def small_encoder(models):
    """start(**settings): an in-process encoder whose requests are at most 1 MB, with 1 MB of them
    handled at once; returns a stub and its channel."""
    servers, channels = [], []

    def start(**settings):
        limits = {"max_message_bytes": 1 << 20, "max_inflight_bytes": 1 << 20, **settings}
        server, port = create_server(EncoderSettings(host="127.0.0.1", port=0, model_repository=models, refresh_seconds=0, **limits))
        server.start()
        servers.append(server)
        channels.append(grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 1 << 20)]))
        return encoder_pb2_grpc.EncoderStub(channels[-1]), channels[-1]

    yield start
    for channel in channels:
        channel.close()
    for server in servers:
        server.stop(None)


def test_a_request_over_the_per_request_pixel_budget_is_invalid_not_busy(small_encoder):
    """Two 40 MP pictures are 79 MP, over a max_request_pixels of 50 MP: retrying never helps,
    so INVALID_ARGUMENT at the request's images, found from the headers before any decode."""
    stub, _ = small_encoder(max_request_pixels=50_000_000)
    picture = images_pb2.Image(encoded=rgb_png_40_megapixels())
    began = time.monotonic()
    with pytest.raises(grpc.RpcError) as refused:
        stub.Embed(encoder_pb2.EmbedRequest(images=[picture, picture]), timeout=30)
    error = errors.from_rpc_error(refused.value)
    assert isinstance(error, errors.InvalidArgument)
    assert error.reason == "BATCH_TOO_MANY_PIXELS"
    assert [v.field for v in error.field_violations] == ["images"]
    assert error.metadata == {"limit": "50000000", "pixels": str(2 * 6300 * 6300)}
    assert time.monotonic() - began < 0.4  # refused from the headers: decoding one picture takes ~0.5 s here
    response = stub.Embed(encoder_pb2.EmbedRequest(images=[picture]), timeout=30)  # one of them is fine
    assert len(response.embeddings) == 1


def test_bytes_in_flight_over_the_budget_are_refused_but_health_still_answers(small_encoder):
    """A 0.6 MB request that takes seconds holds 0.6 MB of the 1 MB budget: a second one at the
    same time is refused (SERVER_BUSY) before it is parsed; health checks are not counted."""
    stub, channel = small_encoder()
    slow = encoder_pb2.EmbedRequest(images=[images_pb2.Image(encoded=_four_megapixels())] * 40)
    assert 0.5 * 2**20 < slow.ByteSize() < 2**20
    first = stub.Embed.future(slow, timeout=60)
    time.sleep(0.3)  # the first is being decoded (40 pictures of 4 MP: over a second)
    with pytest.raises(grpc.RpcError) as refused:
        stub.Embed(slow, timeout=10)
    error = errors.from_rpc_error(refused.value)
    assert (error.code, error.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "SERVER_BUSY")
    assert error.metadata["limit"] == str(2**20)
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert len(first.result().embeddings) == 40  # the accepted one is served in full


def _median(values: list[float]) -> float:
    return values[len(values) // 2] if values else 0.0


def _four_megapixels() -> bytes:
    """2000x2000 smooth RGB: 15 KB of PNG, 40 ms to decode here."""
    ramp = Image.linear_gradient("L")
    channels = [ramp.resize((2000, 2000)), ramp.rotate(90).resize((2000, 2000)), Image.new("L", (2000, 2000), 64)]
    return encoded(Image.merge("RGB", channels), "PNG")
