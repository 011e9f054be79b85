"""The search service's settings: command-line flags, else LOOKALIKE_SEARCH_* variables, else defaults."""

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from server_toolkit.security import SecuritySettings


class SearchSettings(SecuritySettings):  # host, TLS, tokens, reflection: docs/security.md
    model_config = SettingsConfigDict(env_prefix="LOOKALIKE_SEARCH_", cli_kebab_case=True, cli_implicit_flags=True)

    port: int = Field(50052, description="TCP port; 0 picks a free one")
    mode: Literal["single", "router"] = Field(
        "single",
        description="single: serve the collections of data_dir; router: serve one logical collection set spread over --shards (docs/sharding.md)",
    )
    shards: str = Field(
        "",
        description="router mode: the shard services, shards separated by ',' and each shard's replicas by '|' "
        "(e.g. 'a0:50052|a1:50052,b0:50052'); an address is host:port or a gRPC target such as dns:///name:port",
    )
    shard_tls_ca_file: Path | None = Field(None, description="router mode: CA of the shards' certificates, PEM; set: TLS to the shards")
    shard_tls_cert_file: Path | None = Field(None, description="router mode: this router's client certificate for the shards' mutual TLS, PEM")
    shard_tls_key_file: Path | None = Field(None, description="router mode: private key of shard_tls_cert_file, PEM")
    shard_token_file: Path | None = Field(
        None, description="router mode: file holding the token the router sends to every shard (an admin token: it creates collections)"
    )
    shard_timeout_seconds: float = Field(
        30.0, gt=0, description="router mode: longest a call to a shard may take; a call gets less when its caller's deadline is nearer"
    )
    metrics_port: int | None = Field(
        None, description="serve Prometheus metrics at http://host:PORT/metrics (HTTPS under TLS); unset: none; 0 picks a free one"
    )
    data_dir: Path = Field(Path("data/search"), description="where collections keep their logs and snapshots")
    encoder_address: str = Field("localhost:50051", description="the encoder service, for searches and upserts by image")
    encoder_timeout_seconds: float = Field(
        30.0, description="longest a call to the encoder service may take; a call gets less when its caller's deadline is nearer"
    )
    encoder_tls_ca_file: Path | None = Field(None, description="CA of the encoder service's certificate, PEM; set: TLS to the encoder")
    encoder_tls_cert_file: Path | None = Field(None, description="this service's client certificate for the encoder's mutual TLS, PEM")
    encoder_tls_key_file: Path | None = Field(None, description="private key of encoder_tls_cert_file, PEM")
    encoder_token_file: Path | None = Field(
        None, description="file holding the token this service sends to the encoder (a read token); a file keeps it out of `ps` and the environment"
    )
    instance_name: str = Field("", description="this service's name in the encoder's used_by lists (ListModels); empty: search@<hostname>:<port>")
    model_use_report_seconds: float = Field(
        60.0, gt=0, description="how often the encoder is told which model versions the collections use (it keeps serving them)"
    )
    fsync: bool = Field(True, description="fsync the write-ahead log before acknowledging a write")
    snapshot_every: int = Field(10_000, description="write a snapshot after this many logged writes")
    max_batch_size: int = Field(256, description="most items in one upsert (or one UpsertStream message), most searches in one SearchBatch")
    max_stream_record_items: int = Field(
        4096, ge=1, description="most items of an UpsertStream written as one log record (one fsync); messages are answered once written"
    )
    recall_target: float = Field(
        0.97,
        ge=0.5,
        le=1.0,
        description="recall@10 a tree index is tuned to at each (re)build, measured on a held-out sample of the collection's own vectors (docs/search-storage.md)",
    )
    brute_force_below: int = Field(20_000, ge=1, description="collections smaller than this are searched by ScaNN brute force (exact); a tuned tree from there on")
    rebuild_threads: int = Field(
        1, ge=0, description="ScaNN training threads of a background index rebuild (0: all cores); one leaves the other cores to searches"
    )
    max_kept_source_bytes: int = Field(
        8 * 1024 * 1024, ge=1, description="largest image a keep_sources collection keeps for re-embedding (a larger one keeps none)"
    )
    reindex_images_per_second: float = Field(
        500.0, gt=0, description="most images a reindex sends the encoder per second, unless its request asks for fewer or more"
    )
    max_k: int = Field(1000, description="most neighbours one search returns")
    max_get_ids: int = Field(1000, ge=1, description="most ids one Get may ask for (the reply holds a vector for each)")
    copy_candidates: int = Field(50, ge=1, description="nearest items by embedding that FindCopies verifies when the request leaves it to the server")
    max_copy_candidates: int = Field(200, ge=1, description="most embedding candidates one FindCopies may ask to verify (each costs about 0.2 ms)")
    max_message_bytes: int = Field(64 * 1024 * 1024, description="largest gRPC message accepted or sent")
    max_workers: int = Field(8, description="gRPC worker threads")
    # Limits that shed load (RESOURCE_EXHAUSTED, retryable); docs/operations.md says why these defaults.
    max_concurrent_rpcs: int = Field(
        64, ge=1, description="calls accepted at once, running or waiting for a worker, health checks included; gRPC refuses more"
    )
    max_inflight_bytes: int = Field(
        256 * 1024 * 1024, ge=1, description="bytes of requests being handled at once (SERVER_BUSY past it); at least max_message_bytes"
    )
    grace_seconds: float = Field(
        10.0, description="time in-flight calls get to finish on shutdown; the process ends at most 2 s after it, then snapshots"
    )
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")

    @model_validator(mode="after")
    def _limits_fit_the_largest_request(self):
        if self.max_inflight_bytes < self.max_message_bytes:
            raise ValueError("max_inflight_bytes must be at least max_message_bytes, or the largest request allowed is never handled")
        return self

    @model_validator(mode="after")
    def _router_has_shards(self):
        if self.mode == "router":
            self.shard_addresses()  # refuses a malformed list at start, not at the first call
        return self

    def shard_addresses(self) -> list[list[str]]:
        """`shards` parsed: one list of replica addresses per shard, in shard order."""
        shards = [[address.strip() for address in shard.split("|")] for shard in self.shards.split(",")] if self.shards.strip() else []
        if not shards or any(not address for shard in shards for address in shard):
            raise ValueError(f"router mode needs shards as 'A0|A1,B0|B1' (no empty address), got {self.shards!r}")
        return shards

    def encoder_token(self) -> str | None:
        """The token of encoder_token_file, read at start; None without one."""
        return _token(self.encoder_token_file, "encoder_token_file")

    def shard_token(self) -> str | None:
        """The token of shard_token_file, read at start; None without one."""
        return _token(self.shard_token_file, "shard_token_file")


def _token(path: Path | None, name: str) -> str | None:
    if path is None:
        return None
    token = path.read_text().strip()
    if not token:
        raise ValueError(f"{name} {path} is empty")
    return token
