"""Collections and aliases across shards: every change goes to every replica of every shard.

A change that failed midway (a shard down) leaves some shards changed and others not; retrying
the same call completes it. A create or delete that some replicas had done already counts as done
there (a create only once the existing collection is checked to have the requested settings), and
fails the way a single service fails only when every replica had done it before: a create that
finds the collection everywhere is ALREADY_EXISTS, as it is on one service. Version 0 of a model
is pinned by shard 0 first, so every shard pins the same version.

Descriptions come from every shard: GetCollection adds up the sizes and index counts; a
collection missing on some shards is FAILED_PRECONDITION (SHARDS_INCONSISTENT), naming them.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc

from lookalike.errors import FailedPrecondition, LookalikeError, Reason
from lookalike.v1 import search_pb2
from search_service.router.shard_pool import ShardPool, first_fault

Key = tuple[int, int]  # (shard, replica)


class Admin:
    def __init__(self, pool: ShardPool) -> None:
        self.pool = pool

    def create_collection(self, request: search_pb2.CreateCollectionRequest, time_left: float | None) -> search_pb2.Collection:
        first = self.pool.each("CreateCollection", self.pool.everywhere({0: request}), time_left)
        existing = self._settle(first, request, time_left)
        pinned = _pinned(request, next((o for o in first.values() if isinstance(o, search_pb2.Collection)), existing))
        rest = self.pool.each("CreateCollection", self.pool.everywhere(dict.fromkeys(range(1, self.pool.count), pinned)), time_left)
        self._settle(rest, pinned, time_left)
        outcomes = {**first, **rest}
        if all(_exists(o) for o in outcomes.values()):
            raise next(iter(outcomes.values()))  # nothing to create anywhere: the retry of a create that was done
        return self.get_collection(search_pb2.GetCollectionRequest(name=request.name), time_left)

    def delete_collection(self, request: search_pb2.DeleteCollectionRequest, time_left: float | None) -> search_pb2.DeleteCollectionResponse:
        self._everywhere("DeleteCollection", request, time_left, done_before=lambda e: e.code == grpc.StatusCode.NOT_FOUND)
        return search_pb2.DeleteCollectionResponse()

    def create_alias(self, request: search_pb2.CreateAliasRequest, time_left: float | None) -> search_pb2.Alias:
        return self._everywhere("CreateAlias", request, time_left)[0]

    def switch_alias(self, request: search_pb2.SwitchAliasRequest, time_left: float | None) -> search_pb2.Alias:
        def switched_before(error: LookalikeError) -> bool:
            return error.reason == Reason.ALIAS_MOVED and error.metadata.get("collection") == request.collection

        answers = self._everywhere("SwitchAlias", request, time_left, done_before=switched_before)
        if answers:
            return answers[0]
        return next(a for a in self.list_aliases(search_pb2.ListAliasesRequest(), time_left).aliases if a.name == request.name)

    def delete_alias(self, request: search_pb2.DeleteAliasRequest, time_left: float | None) -> search_pb2.DeleteAliasResponse:
        self._everywhere("DeleteAlias", request, time_left, done_before=lambda e: e.code == grpc.StatusCode.NOT_FOUND)
        return search_pb2.DeleteAliasResponse()

    def get_collection(self, request: search_pb2.GetCollectionRequest, time_left: float | None) -> search_pb2.Collection:
        outcomes = self.pool.read_each("GetCollection", dict.fromkeys(range(self.pool.count), request), time_left)
        missing = sorted(s for s, o in outcomes.items() if isinstance(o, LookalikeError) and o.code == grpc.StatusCode.NOT_FOUND)
        failures = [o for o in outcomes.values() if isinstance(o, LookalikeError)]
        if missing and len(failures) < self.pool.count:  # some shard has it
            raise _inconsistent(f"collection {request.name!r}", missing, "CreateCollection or DeleteCollection")
        if failures:
            raise first_fault(failures)
        return _summed([outcomes[s] for s in sorted(outcomes)])

    def list_collections(self, request, time_left: float | None) -> search_pb2.ListCollectionsResponse:
        answers, _ = self.pool.fan_out("ListCollections", dict.fromkeys(range(self.pool.count), request), time_left)
        by_name: dict[str, dict[int, search_pb2.Collection]] = {}
        for shard, answer in answers.items():
            for collection in answer.collections:
                by_name.setdefault(collection.name, {})[shard] = collection
        listed = []
        for name in sorted(by_name):
            shards = by_name[name]
            merged = _summed([shards[s] for s in sorted(shards)])
            missing = [s for s in range(self.pool.count) if s not in shards]
            if missing:  # listed, so an operator sees it and retries its create or delete
                merged.state = search_pb2.Collection.STATE_DAMAGED
                merged.state_reason = f"missing on shards {', '.join(map(str, missing))}: retry its CreateCollection or DeleteCollection"
            listed.append(merged)
        return search_pb2.ListCollectionsResponse(collections=listed)

    def list_aliases(self, request, time_left: float | None) -> search_pb2.ListAliasesResponse:
        """Shard 0's table (the first that answers): every change goes to every shard alike."""
        answers, _ = self.pool.fan_out("ListAliases", dict.fromkeys(range(self.pool.count), request), time_left, allow_partial=True)
        return answers[min(answers)]

    def _everywhere(self, method: str, request, time_left, done_before: Callable[[LookalikeError], bool] = lambda e: False) -> list:
        """`request` on every replica of every shard: the answers (shard 0's first). A replica
        that `done_before` says had done it counts as done, unless all had: then the call fails
        as on a single service."""
        outcomes = self.pool.each(method, self.pool.everywhere(dict.fromkeys(range(self.pool.count), request)), time_left)
        failures = [o for o in outcomes.values() if isinstance(o, LookalikeError)]
        unexpected = [f for f in failures if not done_before(f)]
        if unexpected:
            raise first_fault(unexpected)
        if failures and len(failures) == len(outcomes):
            raise failures[0]
        return [outcomes[key] for key in sorted(outcomes) if not isinstance(outcomes[key], LookalikeError)]

    def _settle(self, outcomes: dict[Key, object], request: search_pb2.CreateCollectionRequest, time_left) -> search_pb2.Collection | None:
        """Checks the replicas where the collection existed have the requested settings (a create
        with allow_existing, which fails if not); raises any other failure. One such description."""
        failures = [o for o in outcomes.values() if isinstance(o, LookalikeError) and not _exists(o)]
        if failures:
            raise first_fault(failures)
        existed = [key for key, o in outcomes.items() if _exists(o)]
        if not existed:
            return None
        check = search_pb2.CreateCollectionRequest()
        check.CopyFrom(request)
        check.allow_existing = True
        checked = self.pool.each("CreateCollection", dict.fromkeys(existed, check), time_left)
        failures = [o for o in checked.values() if isinstance(o, LookalikeError)]
        if failures:
            raise first_fault(failures)
        return next(iter(checked.values()))


def _exists(outcome: object) -> bool:
    return isinstance(outcome, LookalikeError) and outcome.reason == Reason.COLLECTION_EXISTS


def _pinned(request: search_pb2.CreateCollectionRequest, created: search_pb2.Collection) -> search_pb2.CreateCollectionRequest:
    """The create for the other shards: shard 0's model version, dimension and metric, exactly."""
    pinned = search_pb2.CreateCollectionRequest()
    pinned.CopyFrom(request)
    pinned.dimension = created.dimension
    pinned.metric = created.metric
    if created.model.name:
        pinned.model.CopyFrom(created.model)
    return pinned


def _summed(shards: list[search_pb2.Collection]) -> search_pb2.Collection:
    """One collection's description from its shards': sizes and index counts added up, the lowest
    estimated recall, shard 0's settings and index kind; damaged if any shard's copy is."""
    merged = search_pb2.Collection()
    merged.CopyFrom(shards[0])
    merged.size = sum(c.size for c in shards)
    if all(c.HasField("index") for c in shards):
        merged.index.indexed = sum(c.index.indexed for c in shards)
        merged.index.pending = sum(c.index.pending for c in shards)
        merged.index.rebuilding = any(c.index.rebuilding for c in shards)
        merged.index.estimated_recall = min(c.index.estimated_recall for c in shards)
    damaged = [(s, c) for s, c in enumerate(shards) if c.state == search_pb2.Collection.STATE_DAMAGED]
    if damaged:
        merged.state = search_pb2.Collection.STATE_DAMAGED
        merged.state_reason = "; ".join(f"shard {s}: {c.state_reason}" for s, c in damaged)
    return merged


def _inconsistent(what: str, missing: list[int], retry: str) -> FailedPrecondition:
    listed = ", ".join(map(str, missing))
    return FailedPrecondition(
        f"{what} is missing on shards {listed} (a change that failed midway): retry its {retry}",
        reason=Reason.SHARDS_INCONSISTENT,
        metadata={"missing_on": listed},
    )
