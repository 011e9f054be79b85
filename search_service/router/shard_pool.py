"""The router's calls to its shards: one channel per replica, reads from one replica of each shard,
writes to every replica of the owning shard, each call with what is left of the caller's deadline.

Reads (`fan_out`) pick a replica per shard in turn (round robin) and move to the next replica
when one answers UNAVAILABLE; the calls to all shards are in flight at once (gRPC futures, no
thread per call). Writes (`write_all`) go to every replica of each shard and succeed only when
all of them acknowledged: a write retried after a failure converges, because upserts and deletes
are idempotent.

A shard's refusal that is the caller's fault (INVALID_ARGUMENT, NOT_FOUND, ...) comes back as the
domain error it carried, rebuilt from its google.rpc details, so the caller sees what a single
service would have said. A shard that answers on none of its replicas becomes UNAVAILABLE with
reason SHARD_UNAVAILABLE and the shard's index in the metadata (never an address: the deployment
is not the caller's business); with `allow_partial` the read goes on without it.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping

import grpc

from lookalike import errors
from lookalike.client import new_channel
from lookalike.errors import DeadlineExceeded, LookalikeError, Reason, Unavailable
from lookalike.v1 import search_pb2_grpc

# A shard's UNAVAILABLE with one of these reasons (or none: gRPC's own, the process is gone) means
# the replica is out; another UNAVAILABLE (its encoder is down) is an answer to pass on.
_REPLICA_DOWN = {"", Reason.SHUTTING_DOWN}


class ShardPool:
    def __init__(
        self,
        shards: list[list[str]],
        max_timeout_seconds: float,
        max_message_bytes: int,
        credentials: grpc.ChannelCredentials | None = None,
        token: str | None = None,
    ) -> None:
        self.max_timeout = max_timeout_seconds
        # Reconnect within a second, as the encoder gateway does: a shard restarted (or rescheduled)
        # is used again at once instead of after gRPC's growing backoff. round_robin spreads a
        # dns:/// target that names several pods.
        self._channels = [
            [new_channel(address, credentials, max_message_bytes, token, load_balancing="round_robin", reconnect_seconds=1.0) for address in shard]
            for shard in shards
        ]
        self._stubs = [[search_pb2_grpc.SearchStub(channel) for channel in shard] for shard in self._channels]
        self._turns = [itertools.count() for _ in shards]

    @property
    def count(self) -> int:
        return len(self._stubs)

    def stub(self, shard: int, replica: int) -> search_pb2_grpc.SearchStub:
        return self._stubs[shard][replica]

    def replicas(self, shard: int) -> int:
        return len(self._stubs[shard])

    def deadline(self, time_left: float | None) -> float:
        """The monotonic time by which the shards' calls must be done."""
        if time_left is not None and time_left <= 0:
            raise DeadlineExceeded("the deadline ran out before the shards were called", reason=Reason.DEADLINE_TOO_SHORT)
        return time.monotonic() + min(self.max_timeout, self.max_timeout if time_left is None else time_left)

    def read_each(self, method: str, requests: Mapping[int, object], time_left: float | None) -> dict[int, object]:
        """`requests[shard]` sent to one replica of each of those shards at once, the next replica
        tried when one is down: each shard's answer, or its error (`unavailable` when no replica
        answered)."""
        deadline = self.deadline(time_left)
        first = {shard: next(self._turns[shard]) for shard in requests}
        tried = dict.fromkeys(requests, 0)
        pending = {shard: self._send(method, shard, first[shard], request, deadline) for shard, request in requests.items()}
        outcomes: dict[int, object] = {}
        while pending:
            shard, future = next(iter(pending.items()))
            del pending[shard]
            outcome = _outcome(future, shard)
            tried[shard] += 1
            if is_down(outcome) and tried[shard] < self.replicas(shard) and time.monotonic() < deadline:
                pending[shard] = self._send(method, shard, first[shard] + tried[shard], requests[shard], deadline)
            else:
                outcomes[shard] = outcome
        return outcomes

    def fan_out(
        self, method: str, requests: Mapping[int, object], time_left: float | None, *, allow_partial: bool = False
    ) -> tuple[dict[int, object], list[int]]:
        """`read_each`, its errors raised: (the answers by shard, the shards that were down).
        Without `allow_partial` a shard that is down fails the call; with it, only when no shard
        answered. A refusal (the caller's fault, most often) fails it either way."""
        outcomes = self.read_each(method, requests, time_left)
        answers = {shard: o for shard, o in outcomes.items() if not isinstance(o, LookalikeError)}
        down = sorted(shard for shard, o in outcomes.items() if is_down(o))
        refusals = [o for o in outcomes.values() if isinstance(o, LookalikeError) and not is_down(o)]
        if refusals:
            raise first_fault(refusals)
        if down and (not allow_partial or not answers):
            raise unavailable(down)
        return answers, down

    def call(self, method: str, shard: int, request, time_left: float | None):
        """One shard's answer, from any of its replicas."""
        answers, _ = self.fan_out(method, {shard: request}, time_left)
        return answers[shard]

    def each(self, method: str, calls: Mapping[tuple[int, int], object], time_left: float | None) -> dict[tuple[int, int], object]:
        """`calls[(shard, replica)]` sent to exactly those replicas at once: each one's answer or error."""
        deadline = self.deadline(time_left)
        futures = {key: self._send(method, key[0], key[1], request, deadline) for key, request in calls.items()}
        return {key: _outcome(future, key[0]) for key, future in futures.items()}

    def everywhere(self, requests: Mapping[int, object]) -> dict[tuple[int, int], object]:
        """`requests[shard]` keyed for `each` by every replica of its shard."""
        return {(shard, replica): request for shard, request in requests.items() for replica in range(self.replicas(shard))}

    def write_all(self, method: str, requests: Mapping[int, object], time_left: float | None) -> dict[int, list]:
        """`requests[shard]` sent to every replica of its shard at once; the answers of each
        shard's replicas, once every one acknowledged. A replica that failed fails the call (the
        caller's fault first, then a shard that is down): a retry converges."""
        outcomes = self.each(method, self.everywhere(requests), time_left)
        failures = [o for o in outcomes.values() if isinstance(o, LookalikeError)]
        if failures:
            raise first_fault(failures)
        answers: dict[int, list] = {shard: [] for shard in requests}
        for (shard, _), answer in outcomes.items():
            answers[shard].append(answer)
        return answers

    def close(self) -> None:
        for shard in self._channels:
            for channel in shard:
                channel.close()

    def _send(self, method: str, shard: int, turn: int, request, deadline: float) -> grpc.Future:
        stub = self._stubs[shard][turn % self.replicas(shard)]
        return getattr(stub, method).future(request, timeout=max(0.001, deadline - time.monotonic()))


def unavailable(shards: list[int]) -> Unavailable:
    """The error of shards that answered on none of their replicas."""
    listed = ", ".join(str(s) for s in shards)
    return Unavailable(
        f"shard {listed} of the search service answers on none of its replicas; retry, or search with allow_partial",
        reason=Reason.SHARD_UNAVAILABLE,
        metadata={"shard": shards[0], "shards": listed},
    )


def translated(failure: grpc.RpcError, shard: int) -> LookalikeError:
    """A shard's failed call in the router's terms: its domain error, or `unavailable` when the
    replica is down."""
    error = errors.from_rpc_error(failure)
    if error.code == grpc.StatusCode.UNAVAILABLE and error.reason in _REPLICA_DOWN:
        return unavailable([shard])
    error.shard = shard  # for the router, not the wire: whose request's fields the error names
    return error


def is_down(outcome: object) -> bool:
    return isinstance(outcome, LookalikeError) and outcome.reason == Reason.SHARD_UNAVAILABLE


def first_fault(refusals: list[LookalikeError]) -> LookalikeError:
    """Of several shards' refusals, the one to report: the caller's own fault before any other
    (it fails again on retry; the others may not). Shards that are down are named together."""
    callers = [e for e in refusals if e.code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION)]
    if callers:
        return callers[0]
    if all(is_down(e) for e in refusals):
        return unavailable(sorted({int(e.metadata["shard"]) for e in refusals}))
    return next(e for e in refusals if not is_down(e))


def _outcome(future: grpc.Future, shard: int) -> object:
    try:
        return future.result()
    except grpc.RpcError as failure:
        return translated(failure, shard)
