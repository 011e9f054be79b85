"""Bearer tokens and per-method permissions: the one authentication interceptor.

A caller sends `authorization: Bearer <token>` metadata. The server keeps only each token's
SHA-256, in the tokens file (one `<sha256 hex> <permission>` line per token, appended by
`lookalike token new`), so the file gives no token away. A token is 256 random bits, so a plain
hash suffices: no salt or stretching is needed against guessing. A presented token's hash is
compared with every entry by `hmac.compare_digest`, so the time a check takes says nothing about
how close a guess came. Neither a token nor its hash is ever logged, and a malformed line of the
file is reported by its number, never quoted (it may be a token pasted by mistake).

Permissions are ordered, read < write < admin; a token grants its own and those below it. Each
service gives every one of its methods a permission (`method_permissions` refuses a table that
leaves one out), and a method no table names needs admin. Health stays open, for load balancers
and orchestrators; so does reflection, which describes the public API and can be turned off.

Refusals are the `lookalike.errors` exceptions `Unauthenticated` and `PermissionDenied`, raised
in the handler: the interceptor comes after `ErrorMappingInterceptor` in the server's list, so
the one error mapping sends them as statuses with their details.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path

import grpc

from lookalike.errors import PermissionDenied, Reason, Unauthenticated
from server_toolkit import rpc_handlers

TOKEN_BYTES = 32  # 256 random bits: beyond guessing, so an unsalted hash is safe to keep
OPEN_METHOD_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")  # reflection: v1alpha and v1
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
_BEARER = "bearer "  # the scheme is case-insensitive (RFC 6750 section 2.1)


class Permission(enum.IntEnum):
    READ = 1
    WRITE = 2  # and read
    ADMIN = 3  # and write, read

    def __str__(self) -> str:
        return self.name.lower()


def method_permissions(
    service, *, read: Iterable[str] = (), write: Iterable[str] = (), admin: Iterable[str] = ()
) -> dict[str, Permission]:
    """{"/lookalike.v1.Search/Upsert": Permission.WRITE, ...} for `service`, a ServiceDescriptor.

    Every method must be named exactly once, so a new RPC cannot ship without a permission.
    """
    table: dict[str, Permission] = {}
    for permission, names in ((Permission.READ, read), (Permission.WRITE, write), (Permission.ADMIN, admin)):
        for name in names:
            assert name not in table, f"{service.full_name}.{name} is given two permissions"
            table[name] = permission
    methods = {method.name: method for method in service.methods}
    assert table.keys() == methods.keys(), f"give every method of {service.full_name} one permission: {sorted(table.keys() ^ methods.keys())}"
    assert all(m.client_streaming == m.server_streaming for m in methods.values()), "the interceptors wrap unary and bidirectional calls only"
    return {f"/{service.full_name}/{name}": permission for name, permission in table.items()}


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenTable:
    """The tokens a server accepts, as (sha256 hex, permission) pairs from its tokens file."""

    def __init__(self, entries: Mapping[str, Permission]) -> None:
        self._entries = list(entries.items())

    @classmethod
    def load(cls, path: Path) -> TokenTable:
        """Parses the tokens file: `<sha256 hex> <read|write|admin>` lines, blank lines and `#` comments."""
        entries: dict[str, Permission] = {}
        for number, line in enumerate(path.read_text().splitlines(), 1):
            fields = line.split("#", 1)[0].split()
            if not fields:
                continue
            if len(fields) != 2 or not _SHA256_HEX.fullmatch(fields[0]) or fields[1].upper() not in Permission.__members__:
                raise ValueError(f"{path}, line {number}: expected '<sha256 hex of a token> <read|write|admin>'")
            digest = fields[0].lower()
            if digest in entries:
                raise ValueError(f"{path}, line {number}: this token is listed already")
            entries[digest] = Permission[fields[1].upper()]
        return cls(entries)

    def __len__(self) -> int:
        return len(self._entries)

    def permission_of(self, token: str) -> Permission | None:
        presented = hash_token(token)
        granted = None
        for digest, permission in self._entries:  # all of them, no early exit: the time taken tells nothing
            if hmac.compare_digest(digest, presented):
                granted = permission
        return granted


def add_token(tokens_file: Path, permission: Permission) -> str:
    """A new random token granting `permission`: its hash is appended to `tokens_file` (made when
    missing), and the token is returned, to be shown once; it is stored nowhere."""
    existing = tokens_file.read_bytes() if tokens_file.exists() else b""
    if existing:
        TokenTable.load(tokens_file)  # refuse to append to a file the servers would refuse
    token = secrets.token_urlsafe(TOKEN_BYTES)
    separator = b"\n" if existing and not existing.endswith(b"\n") else b""
    with open(tokens_file, "ab") as f:
        f.write(separator + f"{hash_token(token)} {permission}\n".encode())
    return token


class AuthInterceptor(grpc.ServerInterceptor):
    """Lets a call through when its bearer token grants the method's permission; refuses it otherwise."""

    def __init__(self, tokens: TokenTable, permissions: Mapping[str, Permission]) -> None:
        self.tokens, self.permissions = tokens, permissions

    def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        refusal = None
        if not method.startswith(OPEN_METHOD_PREFIXES):
            refusal = self._refusal(method, handler_call_details.invocation_metadata or ())
        if refusal is None:
            return continuation(handler_call_details)

        def refuse(request_or_requests, context):
            raise refusal

        # Of the method's shape (unary or streaming, as method_permissions checks; unary for a
        # method the server lacks), and a refused request is never parsed.
        handler = continuation(handler_call_details)
        if rpc_handlers.shape(handler) is None:
            return grpc.unary_unary_rpc_method_handler(refuse)
        return rpc_handlers.rebuilt(handler, refuse, parse=False)

    def _refusal(self, method: str, metadata) -> Unauthenticated | PermissionDenied | None:
        header = next((value for key, value in metadata if key == "authorization"), "")
        token = header[len(_BEARER) :].strip() if header.lower().startswith(_BEARER) else ""
        if not token:
            return Unauthenticated(f"{method} needs a token: send 'authorization: Bearer <token>' metadata", reason=Reason.TOKEN_MISSING)
        granted = self.tokens.permission_of(token)
        if granted is None:
            return Unauthenticated("the bearer token is not one this server knows", reason=Reason.TOKEN_INVALID)
        required = self.permissions.get(method, Permission.ADMIN)  # a method no table names: admins only
        if granted < required:
            return PermissionDenied(
                f"{method} needs the {required} permission; the token grants {granted}",
                reason=Reason.PERMISSION_DENIED,
                metadata={"method": method, "required": required, "granted": granted},
            )
        return None
