"""The encoder service's settings: command-line flags, else LOOKALIKE_ENCODER_* variables, else defaults."""

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from server_toolkit.security import SecuritySettings


class EncoderSettings(SecuritySettings):  # host, TLS, tokens, reflection: docs/security.md
    model_config = SettingsConfigDict(env_prefix="LOOKALIKE_ENCODER_", cli_kebab_case=True, cli_implicit_flags=True)

    port: int = Field(50051, description="TCP port; 0 picks a free one")
    model_repository: Path = Field(Path("models"), description="folder of models/<name>/<version>/encoder.onnx")
    default_model: str = Field("", description="model used when a request names none; empty: the first name in the repository")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto uses CUDA only when its libraries load")
    intra_op_threads: int = Field(0, description="ONNX Runtime threads per session; 0: one per physical core")
    max_batch_size: int = Field(256, description="most images or embeddings in one request")
    max_image_pixels: int = Field(40_000_000, description="largest image accepted, in pixels (width x height)")
    max_message_bytes: int = Field(64 * 1024 * 1024, description="largest gRPC message accepted or sent")
    max_workers: int = Field(8, description="gRPC worker threads")
    refresh_seconds: float = Field(10.0, description="how often the repository is scanned for new versions; 0: never")
    grace_seconds: float = Field(10.0, description="time in-flight calls get to finish on shutdown")
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")
