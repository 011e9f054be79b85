"""Reindex: a collection's items embedded again by another model version into a new collection, in
the background, while the live one keeps serving; then the migration report, then (if asked and
the policy passes) the alias switch. docs/model-upgrades.md tells the story; this is the machine.

One operation is one `Reindex`, a thread, around a mirror from the live collection to the new one
(search_service/mirror.py), which follows the live collection's writes (search_service/item_writes.py):
a write acknowledged during the reindex is in both. The copy itself is passes of the mirror's
`sync` over every live id, until a pass finds nothing to change. Nothing remembers how far a pass
got: after a restart (or kill -9) the operation starts a pass again, and the items that already
agree cost a comparison, not an embedding.

After the switch a second mirror runs the other way, from the new collection back into the old one
(embedded by the old version), and the first one goes on: the two collections stay in agreement
whichever one the alias points at, so a rollback loses no write. Both mirrors live as long as both
collections do (they are set up again at start); deleting the old collection ends them.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from lookalike.errors import AlreadyExists, FailedPrecondition, InvalidArgument, LookalikeError, NotFound, Reason
from lookalike.v1 import images_pb2
from search_service import migration_report
from search_service.collection import Collection, CollectionSpec
from search_service.collection_store import CollectionStore
from search_service.encoder_gateway import EncoderGateway
from search_service.item_writes import ItemWrites
from search_service.mirror import Mirror
from search_service.operations import CANCELLED, FAILED, PREFIX, RUNNING, SUCCEEDED, OperationRecord, OperationStore
from search_service.settings import SearchSettings

log = logging.getLogger(__name__)

BATCH = 64  # items embedded per encoder call
PAGE = 10_000  # ids listed at a time
SHOWN_WITHOUT_SOURCE = 20  # ids_without_source kept in the record


class _Stop(Exception):
    """The server is stopping: the operation stays running on disk and resumes at the next start."""


class _Cancel(Exception):
    pass


class Reindex:
    def __init__(self, record: OperationRecord, store: CollectionStore, writes: ItemWrites, records: OperationStore, encoder: EncoderGateway, settings: SearchSettings) -> None:
        self.record, self.store, self.writes, self.records, self.encoder = record, store, writes, records, encoder
        self.settings = settings
        self._lock = threading.Lock()  # both mirrors' and the switch's
        self.forward = Mirror(store, encoder, record.source, record.target, self._lock, settings.encoder_timeout_seconds)
        self.backward = Mirror(store, encoder, record.target, record.source, self._lock, settings.encoder_timeout_seconds)
        self._cancelled = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"reindex-{record.id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def follow(self) -> None:
        """The mirrors of a finished operation, set up again after a restart."""
        self.writes.follow(self.record.source, self.forward)
        if self.record.switched:
            self.writes.follow(self.record.target, self.backward)

    def cancel(self) -> None:
        self._cancelled.set()

    def stop(self) -> None:
        self._stopping.set()
        self.wait(30)

    def wait(self, seconds: float) -> None:
        if self._thread.is_alive():
            self._thread.join(seconds)

    # --- the operation ---

    def _run(self) -> None:
        record = self.record
        try:
            self._prepare()
            self.writes.follow(record.source, self.forward)
            first = True
            while True:
                record.phase = "copying" if first else "catching up"
                changed = self._pass()
                if not changed and not first:
                    break
                first = False
            self._measure_and_switch()
            record.state, record.phase = SUCCEEDED, "done"
        except _Stop:
            return
        except _Cancel:
            self.writes.unfollow(record.source, self.forward)
            record.state, record.phase = CANCELLED, "done"
            try:
                self.store.delete(record.target)
            except LookalikeError:
                pass
        except LookalikeError as error:
            self.writes.unfollow(record.source, self.forward)
            record.state, record.error_message, record.error_reason = FAILED, error.message, error.reason
        except Exception as error:  # a bug: the operation fails, the server goes on
            log.exception("reindex failed", extra={"fields": {"operation": record.id}})
            self.writes.unfollow(record.source, self.forward)
            record.state, record.error_message, record.error_reason = FAILED, f"an unexpected {type(error).__name__}", "INTERNAL"
        self._save()

    def _prepare(self) -> None:
        """Both collections must still be there (StartReindex checked the rest, which cannot change)."""
        self.store.get(self.record.source)
        self.store.get(self.record.target)
        self._save()

    def _pass(self) -> int:
        """One `sync` of every live id, at most images_per_second; how many items it changed."""
        record, source = self.record, self.store.get(self.record.source)
        ids = _all_ids(source)
        record.items_total = len(ids)
        changed, last_save, began = 0, 0.0, time.monotonic()
        for start in range(0, len(ids), BATCH):
            if self._stopping.is_set():
                raise _Stop
            if self._cancelled.is_set():
                raise _Cancel
            changed += self.forward.sync(ids[start : start + BATCH])
            record.items_copied = len(ids) if start + BATCH >= len(ids) else start + BATCH
            record.items_without_source = len(self.forward.without_source)
            ahead = changed / record.images_per_second - (time.monotonic() - began)
            if ahead > 0:  # bounded load on the encoder: its searches come first
                self._stopping.wait(ahead)
            if time.monotonic() - last_save > 1.0:
                self._save()
                last_save = time.monotonic()
        record.items_copied = len(ids)
        record.items_without_source = len(self.forward.without_source)
        record.ids_without_source = sorted(self.forward.without_source)[:SHOWN_WITHOUT_SOURCE]
        self._save()
        return changed

    def _measure_and_switch(self) -> None:
        record = self.record
        record.phase = "measuring"
        self._save()
        # Not under the mirrors' lock: measuring embeds every sampled picture's edits with both
        # versions, which can take longer than a client waits for a write the lock would hold up.
        # A write meanwhile moves a few sampled items; `measure` leaves out any that went.
        report = self._report()
        record.report = report.to_json()
        self.records.save_picture(record, migration_report.picture(report))
        if not record.switch_alias:
            return
        ok, why = migration_report.passes(report, record.require_no_worse_copy_recall, record.max_copy_recall_drop)
        if not ok:
            record.switch_refused = why
            return
        record.phase = "switching"
        self._save()
        with self._lock:  # no write is half-copied while the alias moves
            self.writes.follow(record.target, self.backward)  # first: a write through the moved alias is never missed
            try:
                alias = next((a for a in self.store.aliases() if a.name == record.switch_alias), None)
                if alias is None:
                    self.store.create_alias(record.switch_alias, record.target)
                elif alias.collection != record.target:  # after a restart in this phase it may have moved already
                    self.store.switch_alias(record.switch_alias, record.target, expected_collection=record.source)
            except BaseException:
                self.writes.unfollow(record.target, self.backward)
                raise
        record.switched = True

    def _report(self) -> migration_report.MigrationReport:
        record = self.record
        source, target = self.store.get(record.source), self.store.get(record.target)
        kept = self.store.sources_of(source.spec.name)
        candidates = _all_ids(target)
        rng = np.random.default_rng(migration_report.SEED)
        sample = sorted(rng.choice(candidates, min(record.report_sample, len(candidates)), replace=False).tolist()) if candidates else []
        pictures = {i: picture for i in sample if (picture := kept.read(i)) is not None}
        before_ref = images_pb2.ModelRef(name=source.spec.model_name, version=source.spec.model_version)
        after_ref = images_pb2.ModelRef(name=record.model_name, version=record.model_version)
        return migration_report.measure(source, target, pictures, self._embedder(before_ref), self._embedder(after_ref), record.label_prefix)

    def _embedder(self, ref: images_pb2.ModelRef):
        def embed(pictures: list[bytes]) -> np.ndarray:
            rows = []
            for start in range(0, len(pictures), BATCH):
                images = [images_pb2.Image(encoded=p) for p in pictures[start : start + BATCH]]
                vectors, _ = self.encoder.embed(ref, images, [f"copies[{n}]" for n in range(len(images))], self.settings.encoder_timeout_seconds)
                rows.append(vectors)
            return np.concatenate(rows)

        return embed

    def _save(self) -> None:
        self.records.save(self.record)


def _all_ids(collection: Collection) -> list[str]:
    ids, token = [], ""
    while True:
        items, token = collection.list_items(None, (), PAGE, token)
        ids += [item.id for item in items]
        if not token:
            return ids


class Reindexer:
    """The search service's operations: start, get, list, cancel; resumes running ones at start."""

    def __init__(self, store: CollectionStore, writes: ItemWrites, encoder: EncoderGateway, settings: SearchSettings) -> None:
        self.store, self.writes, self.encoder, self.settings = store, writes, encoder, settings
        self.records = OperationStore(settings.data_dir, fsync=settings.fsync)
        self._lock = threading.Lock()
        self._runs: dict[str, Reindex] = {}
        self._records: dict[str, OperationRecord] = {r.id: r for r in self.records.load_all()}

    def resume(self) -> None:
        """Running operations go on; finished ones whose two collections both exist mirror again."""
        names = {info.spec.name for info in self.store.list()}
        for record in self._records.values():
            if record.state == RUNNING:
                log.info("resuming reindex", extra={"fields": {"operation": record.id, "source": record.source, "target": record.target}})
                self._launch(record)
            elif record.state == SUCCEEDED and {record.source, record.target} <= names:
                run = Reindex(record, self.store, self.writes, self.records, self.encoder, self.settings)
                self._runs[record.id] = run
                run.follow()

    def start(self, record: OperationRecord, dimension: int) -> OperationRecord:
        """Creates the new collection (`dimension`: the new version's), records the operation and
        starts it. Everything a request can get wrong is raised here, before anything runs."""
        with self._lock:
            for other in self._records.values():
                if other.state == RUNNING and other.source == record.source:
                    raise FailedPrecondition(
                        f"{other.name} is reindexing collection '{record.source}' already",
                        reason=Reason.REINDEX_RUNNING,
                        metadata={"operation": other.name},
                    )
            source = self.store.get(record.source).spec
            if self.store.sources_of(source.name) is None:
                raise FailedPrecondition(
                    f"collection '{source.name}' keeps no sources: create it with keep_sources to reindex it",
                    reason=Reason.SOURCES_NOT_KEPT,
                    field="collection",
                    metadata={"collection": source.name},
                )
            spec = CollectionSpec(record.target, dimension, source.metric, record.model_name, record.model_version, source.copy_thresholds, keep_sources=True)
            try:
                self.store.create(spec)
            except (AlreadyExists, InvalidArgument) as error:  # named by the request's field
                raise type(error)(error.message, reason=error.reason, field="target_collection", metadata=error.metadata) from None
            self.records.save(record)
            self._records[record.id] = record
            self._launch(record)
        return record

    def get(self, name: str) -> OperationRecord:
        record = self._records.get(name.removeprefix(PREFIX)) if name.startswith(PREFIX) else None
        if record is None:
            raise NotFound(f"operation {name!r} not found", reason=Reason.OPERATION_NOT_FOUND, field="name", metadata={"operation": name})
        return record

    def all(self) -> list[OperationRecord]:
        return sorted(self._records.values(), key=lambda r: r.started_at_unix_ms, reverse=True)

    def cancel(self, name: str) -> OperationRecord:
        record = self.get(name)
        run = self._runs.get(record.id)
        if run is not None and not record.done:
            run.cancel()
            run.wait(60)
        return record

    def picture(self, record: OperationRecord) -> bytes:
        return self.records.picture(record)

    def stop(self) -> None:
        for run in list(self._runs.values()):
            run.stop()

    def _launch(self, record: OperationRecord) -> None:
        run = Reindex(record, self.store, self.writes, self.records, self.encoder, self.settings)
        self._runs[record.id] = run
        run.start()
