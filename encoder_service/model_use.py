"""Which model versions collections use, as their users (search services) report them
(ReportModelUse), so the repository keeps serving them (encoder_service/model_repository.py).

Reports live in memory and expire: each user reports its whole use every minute (and at each
change), a report replaces the same user's last one, and a user that stops reporting (gone,
renamed, partitioned) stops holding versions after its ttl. An encoder that restarts learns its
users again within a minute; meanwhile its version policy alone decides, as before reports existed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence

from lookalike.errors import InvalidArgument, Reason
from lookalike.model_format import is_model_name
from lookalike.v1 import encoder_pb2

Key = tuple[str, int]  # (model name, version)
DEFAULT_TTL_SECONDS = 180  # three reports of a search service, which reports every minute
MAX_TTL_SECONDS = 3600
MAX_USER_CHARS = 256


def requested_uses(request: encoder_pb2.ReportModelUseRequest) -> dict[Key, list[str]]:
    """The versions a report says are in use, with their collections; InvalidArgument naming the field."""
    if not request.user or len(request.user) > MAX_USER_CHARS:
        raise InvalidArgument(f"user must name the reporter in 1 to {MAX_USER_CHARS} characters", reason=Reason.REQUIRED_FIELD_MISSING, field="user")
    if not 0 <= request.ttl_seconds <= MAX_TTL_SECONDS:
        raise InvalidArgument(
            f"ttl_seconds must be from 0 to {MAX_TTL_SECONDS}, got {request.ttl_seconds}", reason=Reason.VALUE_OUT_OF_RANGE, field="ttl_seconds"
        )
    uses: dict[Key, list[str]] = {}
    for i, use in enumerate(request.uses):
        if not is_model_name(use.model.name):
            raise InvalidArgument(f"uses[{i}].model.name {use.model.name!r} is not a model name", reason=Reason.NAME_INVALID, field=f"uses[{i}].model.name")
        if use.model.version < 1:
            raise InvalidArgument(
                f"uses[{i}].model.version must be an exact version, got {use.model.version}", reason=Reason.VALUE_OUT_OF_RANGE, field=f"uses[{i}].model.version"
            )
        uses.setdefault((use.model.name, use.model.version), []).extend(use.collections)
    return uses


class ModelUse:
    """Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reports: dict[str, tuple[float, dict[Key, tuple[str, ...]]]] = {}  # user -> (expires, uses)

    def report(self, user: str, uses: Mapping[Key, Sequence[str]], ttl_seconds: float) -> None:
        with self._lock:
            self._reports[user] = (time.monotonic() + ttl_seconds, {key: tuple(sorted(c)) for key, c in uses.items()})

    def in_use(self) -> dict[Key, list[str]]:
        """Each version in use now, with its users' collections as "user/collection", sorted."""
        now = time.monotonic()
        used: dict[Key, list[str]] = {}
        with self._lock:
            for user, (expires, uses) in list(self._reports.items()):
                if expires < now:
                    del self._reports[user]
                    continue
                for key, collections in uses.items():
                    used.setdefault(key, []).extend(f"{user}/{c}" for c in collections)
        return {key: sorted(names) for key, names in used.items()}
