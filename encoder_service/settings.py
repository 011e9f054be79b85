"""The encoder service's settings: command-line flags, else LOOKALIKE_ENCODER_* variables, else defaults."""

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from lookalike import model_format
from server_toolkit.security import SecuritySettings


class EncoderSettings(SecuritySettings):  # host, TLS, tokens, reflection: docs/security.md
    model_config = SettingsConfigDict(env_prefix="LOOKALIKE_ENCODER_", cli_kebab_case=True, cli_implicit_flags=True)

    port: int = Field(50051, description="TCP port; 0 picks a free one")
    metrics_port: int | None = Field(
        None, description="serve Prometheus metrics at http://host:PORT/metrics (HTTPS under TLS); unset: none; 0 picks a free one"
    )
    model_repository: Path = Field(Path("models"), description="folder of models/<name>/<version>/encoder.onnx")
    default_model: str = Field("", description="model used when a request names none; empty: the first name in the repository")
    keep_versions: int = Field(
        0, ge=0, description="version policy: serve the newest N versions of each model; 0: all (LoadModel/UnloadModel override it per version)"
    )
    serve_versions: dict[str, list[int]] = Field(
        {},
        description='version policy as a list, per model: {"digits": [1, 3]} serves exactly those versions of digits '
        "(keep_versions applies to the models not named); a listed version missing from the repository is shown as failed by ListModels",
    )
    device: Literal["auto", "cpu", "cuda", "tensorrt"] = Field(
        "auto", description="auto uses CUDA only when its libraries load; tensorrt: TensorRT 10 first, then CUDA (needs libnvinfer)"
    )
    tensorrt_engine_cache: Path = Field(
        Path("tensorrt-cache"), description="where TensorRT keeps the engines it builds, per model version (writable; share it between restarts)"
    )
    # Threads and batching: encoder_service/thread_plan.py and docs/operations.md say how they are chosen.
    intra_op_threads: int = Field(0, ge=0, description="ONNX Runtime threads per model; 0: half the cores (1 with a GPU)")
    decode_threads: int = Field(0, ge=0, description="threads decoding images, shared by all models; 0: the cores the model does not use")
    dynamic_batching: bool = Field(True, description="merge concurrent requests into one model run; off: each request runs alone, in its own thread")
    max_model_batch: int = Field(64, ge=1, description="most images in one merged model run (a larger request runs alone, whole)")
    max_queue_delay_ms: float = Field(
        0.0, ge=0, description="how long a model's queue waits for more images after the first arrives; 0: runs what is there at once"
    )
    max_queue_images: int = Field(
        1024, ge=1, description="most images admitted to one model's queue, decoding, waiting or running (QUEUE_FULL past it); at least max_batch_size"
    )
    max_batch_size: int = Field(256, description="most images or embeddings in one request")
    max_image_pixels: int = Field(40_000_000, description="largest image accepted, in pixels (width x height)")
    max_message_bytes: int = Field(64 * 1024 * 1024, description="largest gRPC message accepted or sent")
    max_workers: int = Field(
        40, description="gRPC worker threads; they mostly wait on the decode pool and the model's queue, which bound the CPU work"
    )
    # Limits that shed load, each checked before the work (RESOURCE_EXHAUSTED, retryable); the
    # defaults are for a 2-core, 24 GB machine, and docs/operations.md says why.
    max_concurrent_rpcs: int = Field(
        48, ge=1, description="calls accepted at once, running or waiting for a worker, health checks included; gRPC refuses more"
    )
    max_inflight_bytes: int = Field(
        256 * 1024 * 1024, ge=1, description="bytes of requests being handled at once (SERVER_BUSY past it); at least max_message_bytes"
    )
    max_request_pixels: int = Field(
        1_000_000_000, ge=1, description="most pixels the images of one request may hold in all, by their headers (INVALID_ARGUMENT past it)"
    )
    max_inflight_pixels: int = Field(
        160_000_000, ge=1, description="most pixels being decoded at once, ~4 bytes each (DECODE_BUDGET_EXHAUSTED past it); at least max_image_pixels"
    )
    refresh_seconds: float = Field(10.0, description="how often the repository is scanned for new versions; 0: never")
    grace_seconds: float = Field(
        10.0, description="time in-flight calls get to finish on shutdown; the process ends at most 2 s after it"
    )
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")

    @field_validator("serve_versions")
    @classmethod
    def _versions_that_can_exist(cls, policy: dict[str, list[int]]) -> dict[str, list[int]]:
        """A name or version the repository cannot hold would be listed as missing forever: refused at start."""
        for name, versions in policy.items():
            model_format.check_model_name(name)
            if not versions:
                raise ValueError(f"serve_versions lists no version of {name!r}; leave the model out to serve it by keep_versions")
            for version in versions:
                model_format.check_version(version)
        return {name: sorted(set(versions)) for name, versions in policy.items()}

    @model_validator(mode="after")
    def _limits_fit_the_largest_request(self):
        """A limit below what one allowed request or image needs would refuse it forever as 'busy'."""
        if self.max_inflight_bytes < self.max_message_bytes:
            raise ValueError("max_inflight_bytes must be at least max_message_bytes, or the largest request allowed is never handled")
        if self.max_queue_images < self.max_batch_size:
            raise ValueError("max_queue_images must be at least max_batch_size, or the largest request allowed is never admitted")
        for name in ("max_request_pixels", "max_inflight_pixels"):
            if getattr(self, name) < self.max_image_pixels:
                raise ValueError(f"{name} must be at least max_image_pixels, or the largest image allowed is never decoded")
        return self
