"""Reindex operations across shards: one operation on every replica of every shard, reported as one.

StartReindex goes to every replica (each re-embeds its own kept sources into its own new
collection). The router keeps no state, so its operation's name carries the replicas' operation
names: "operations/sharded-" and the base64 of a JSON object from "shard.replica" to the name.
ListOperations groups the replicas' operations by what they do (source, target, model): those of
one StartReindex. The state is the replicas' together: FAILED if any failed, else CANCELLED if
any was cancelled, SUCCEEDED when all succeeded, RUNNING otherwise; done only when all are done.
Counts add up the first replica of each shard (the others hold the same items); the report
shown is shard 0's. A reindex through a router never switches an alias itself (switch_alias is
refused): every replica would judge its own report, and the shards could end up answering from
different versions. The caller switches with SwitchAlias, which goes to every shard.
"""

from __future__ import annotations

import base64
import binascii
import json

from lookalike.errors import LookalikeError, NotFound, Reason, Unimplemented
from lookalike.v1 import search_pb2
from search_service.operations import PREFIX
from search_service.router.shard_pool import ShardPool, first_fault

SHARDED = PREFIX + "sharded-"
_ORDER = [
    search_pb2.Operation.STATE_FAILED,
    search_pb2.Operation.STATE_CANCELLED,
    search_pb2.Operation.STATE_RUNNING,
    search_pb2.Operation.STATE_SUCCEEDED,
]


class Operations:
    def __init__(self, pool: ShardPool) -> None:
        self.pool = pool

    def start(self, request: search_pb2.StartReindexRequest, time_left: float | None) -> search_pb2.Operation:
        if request.switch_alias:
            # Each replica would judge its own report and switch on its own: some shards, or one
            # replica of a shard, could answer from the new version while the others do not.
            raise Unimplemented(
                "a router does not switch the alias at the end of a reindex: start it without switch_alias, read its "
                "report (GetOperation), then SwitchAlias, which the router applies on every shard",
                reason=Reason.ROUTER_UNSUPPORTED,
                field="switch_alias",
                metadata={"option": "switch_alias"},
            )
        outcomes = self.pool.each("StartReindex", self.pool.everywhere(dict.fromkeys(range(self.pool.count), request)), time_left)
        failures = [o for o in outcomes.values() if isinstance(o, LookalikeError)]
        if failures:  # the replicas that started go on; a retry finds REINDEX_RUNNING there
            raise first_fault(failures)
        return combined(outcomes)

    def get(self, request: search_pb2.GetOperationRequest, time_left: float | None) -> search_pb2.Operation:
        return combined(self._each("GetOperation", _members(request.name, self.pool.count), time_left))

    def cancel(self, request: search_pb2.CancelOperationRequest, time_left: float | None) -> search_pb2.Operation:
        return combined(self._each("CancelOperation", _members(request.name, self.pool.count), time_left))

    def list(self, request, time_left: float | None) -> search_pb2.ListOperationsResponse:
        keys = self.pool.everywhere(dict.fromkeys(range(self.pool.count), request))
        outcomes = self.pool.each("ListOperations", keys, time_left)
        failures = [o for o in outcomes.values() if isinstance(o, LookalikeError)]
        if failures:
            raise first_fault(failures)
        groups: dict[tuple, dict[tuple[int, int], search_pb2.Operation]] = {}
        for key, answer in outcomes.items():
            for operation in answer.operations:
                what = (operation.source_collection, operation.target_collection, operation.model.name, operation.model.version)
                groups.setdefault(what, {})[key] = operation
        operations = [combined(group) for group in groups.values()]
        operations.sort(key=lambda o: o.started_at_unix_ms, reverse=True)
        return search_pb2.ListOperationsResponse(operations=operations)

    def _each(self, method: str, members: dict[tuple[int, int], str], time_left) -> dict[tuple[int, int], search_pb2.Operation]:
        requests = {key: getattr(search_pb2, method + "Request")(name=name) for key, name in members.items()}
        outcomes = self.pool.each(method, requests, time_left)
        failures = [o for o in outcomes.values() if isinstance(o, LookalikeError)]
        if failures:
            raise first_fault(failures)
        return outcomes


def combined(members: dict[tuple[int, int], search_pb2.Operation]) -> search_pb2.Operation:
    keys = sorted(members)
    first = members[keys[0]]
    leaders = list({shard: members[(shard, replica)] for shard, replica in reversed(keys)}.values())  # each shard's first replica
    operation = search_pb2.Operation()
    operation.CopyFrom(first)
    operation.name = SHARDED + base64.urlsafe_b64encode(
        json.dumps({f"{s}.{r}": members[(s, r)].name for s, r in keys}, separators=(",", ":")).encode()
    ).decode("ascii")
    states = {m.state for m in members.values()}
    operation.state = next(state for state in _ORDER if state in states)
    operation.done = all(m.done for m in members.values())
    running = [m for m in members.values() if not m.done]
    operation.phase = running[0].phase if running else first.phase
    operation.items_total = sum(m.items_total for m in leaders)
    operation.items_copied = sum(m.items_copied for m in leaders)
    operation.items_without_source = sum(m.items_without_source for m in leaders)
    del operation.ids_without_source[:]
    operation.ids_without_source.extend([i for m in leaders for i in m.ids_without_source][:100])
    operation.switched = all(m.switched for m in members.values())
    operation.switch_refused = next((m.switch_refused for m in members.values() if m.switch_refused), "")
    failed = next((m for m in members.values() if m.state == search_pb2.Operation.STATE_FAILED), None)
    operation.error_message = failed.error_message if failed else ""
    operation.error_reason = failed.error_reason if failed else ""
    operation.started_at_unix_ms = min(m.started_at_unix_ms for m in members.values())
    operation.updated_at_unix_ms = max(m.updated_at_unix_ms for m in members.values())
    return operation


def _members(name: str, shards: int) -> dict[tuple[int, int], str]:
    """The replicas' operation names a router operation's name carries (of this deployment's shards)."""
    try:
        if not name.startswith(SHARDED):
            raise ValueError(name)
        document = json.loads(base64.urlsafe_b64decode(name[len(SHARDED) :].encode("ascii")))
        members = {}
        for key, value in document.items():
            shard, replica = key.split(".")
            members[(int(shard), int(replica))] = str(value)
        if not members or any(not 0 <= shard < shards for shard, _ in members):
            raise ValueError(name)
        return members
    except (ValueError, TypeError, AttributeError, binascii.Error, UnicodeError):
        raise NotFound(f"no operation {name!r}", reason=Reason.OPERATION_NOT_FOUND, field="name", metadata={"operation": name}) from None
