"""The search service's settings: command-line flags, else LOOKALIKE_SEARCH_* variables, else defaults."""

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SearchSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOOKALIKE_SEARCH_", cli_kebab_case=True, cli_implicit_flags=True)

    host: str = Field("[::]", description="address to listen on")
    port: int = Field(50052, description="TCP port; 0 picks a free one")
    data_dir: Path = Field(Path("data/search"), description="where collections keep their logs and snapshots")
    encoder_address: str = Field("localhost:50051", description="the encoder service, for searches and upserts by image")
    encoder_timeout_seconds: float = Field(
        30.0, description="longest a call to the encoder service may take; a call gets less when its caller's deadline is nearer"
    )
    fsync: bool = Field(True, description="fsync the write-ahead log before acknowledging a write")
    snapshot_every: int = Field(10_000, description="write a snapshot after this many logged writes")
    max_batch_size: int = Field(256, description="most items in one upsert")
    max_k: int = Field(1000, description="most neighbours one search returns")
    max_message_bytes: int = Field(64 * 1024 * 1024, description="largest gRPC message accepted or sent")
    max_workers: int = Field(8, description="gRPC worker threads")
    grace_seconds: float = Field(10.0, description="time in-flight calls get to finish on shutdown")
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")
