"""Who can reach a server: the address it listens on, TLS and mutual TLS, and what the defaults refuse.

A server listens on loopback unless told otherwise. On any other address anyone on the network can
call it, so it needs TLS (else images and tokens travel in clear) and tokens (else anyone can
delete a catalogue). Without both it refuses to start, unless `allow_insecure` says the operator
means it (a private network, a test bench), which is logged as a WARNING at every start. Loopback
without either stays open, as the demo and the tests run. See docs/security.md.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

import grpc
from pydantic import Field, model_validator
from pydantic_settings import BaseSettings

log = logging.getLogger(__name__)


class SecuritySettings(BaseSettings):
    """The settings both services share; each service's settings class inherits them with its own env prefix."""

    host: str = Field("127.0.0.1", description="address to listen on; any but loopback needs TLS and a tokens file (or allow_insecure)")
    tls_cert_file: Path | None = Field(None, description="server certificate chain, PEM; with tls_key_file, turns TLS on")
    tls_key_file: Path | None = Field(None, description="private key of tls_cert_file, PEM")
    tls_client_ca_file: Path | None = Field(
        None, description="CA of the client certificates, PEM; set: mutual TLS, a client without a certificate it signed is refused"
    )
    tokens_file: Path | None = Field(
        None,
        description="one '<sha256 hex of a token> <read|write|admin>' line per token (`lookalike token new`); set: every call but health needs a token",
    )
    health_port: int | None = Field(
        None,
        description="also serve grpc.health.v1 alone, in plaintext, on this port: for Kubernetes' gRPC probes, which speak no TLS; unset: none",
    )
    reflection: bool = Field(True, description="serve gRPC reflection, from which grpcurl and other generic clients learn the API")
    allow_insecure: bool = Field(False, description="listen on a non-loopback address without TLS or tokens anyway (logged as a WARNING)")

    @model_validator(mode="after")
    def _tls_files_agree(self):
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_client_ca_file (mutual TLS) needs TLS: set tls_cert_file and tls_key_file too")
        return self


class InsecureSettings(ValueError):
    """The settings would expose a server on the network without TLS or without tokens."""


def is_loopback(host: str) -> bool:
    name = host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def check_exposure(settings: SecuritySettings) -> None:
    """Raises InsecureSettings for a non-loopback host without TLS or tokens; warns instead under allow_insecure."""
    missing = [name for name, file in (("TLS", settings.tls_cert_file), ("a tokens file", settings.tokens_file)) if file is None]
    if not missing or is_loopback(settings.host):
        return
    exposure = f"listening on {settings.host} without {' or '.join(missing)} lets anyone who can reach it read, write and delete"
    if not settings.allow_insecure:
        raise InsecureSettings(
            f"refusing to start: {exposure}. Listen on 127.0.0.1, or set tls_cert_file, tls_key_file and tokens_file "
            "(docs/security.md), or set allow_insecure to accept the risk."
        )
    log.warning(f"INSECURE: {exposure}; starting anyway because allow_insecure is set", extra={"fields": {"host": settings.host}})


def server_credentials(settings: SecuritySettings) -> grpc.ServerCredentials | None:
    """TLS (mutual with a client CA) from the settings' files; None for plaintext."""
    if settings.tls_cert_file is None:
        return None
    client_ca = settings.tls_client_ca_file.read_bytes() if settings.tls_client_ca_file is not None else None
    return grpc.ssl_server_credentials(
        [(settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )
