"""StartReindex requests to operation records, and records to the API's Operation messages."""

from __future__ import annotations

import math

from lookalike.errors import FailedPrecondition, InvalidArgument, Reason
from lookalike.model_format import is_model_name
from lookalike.v1 import images_pb2, search_pb2
from search_service import migration_report
from search_service.collection_store import CollectionStore
from search_service.operations import CANCELLED, FAILED, RUNNING, SUCCEEDED, OperationRecord
from search_service.settings import SearchSettings

DEFAULT_SAMPLE = 200
MAX_SAMPLE = 5_000

_STATE = {
    RUNNING: search_pb2.Operation.STATE_RUNNING,
    SUCCEEDED: search_pb2.Operation.STATE_SUCCEEDED,
    FAILED: search_pb2.Operation.STATE_FAILED,
    CANCELLED: search_pb2.Operation.STATE_CANCELLED,
}


def record_of(request: search_pb2.StartReindexRequest, store: CollectionStore, settings: SearchSettings) -> OperationRecord:
    """The operation a request asks for, its fields checked; the target is named later if left empty."""
    source = store.get(request.collection).spec.name  # an alias's collection
    if not request.model.name or not is_model_name(request.model.name):
        raise InvalidArgument("model.name must name the model version to re-embed with", reason=Reason.REQUIRED_FIELD_MISSING, field="model.name")
    if request.model.version < 0:
        raise InvalidArgument(f"model.version must be 0 or positive, got {request.model.version}", reason=Reason.VALUE_OUT_OF_RANGE, field="model.version")
    if request.switch_alias:
        alias = next((a for a in store.aliases() if a.name == request.switch_alias), None)
        if alias is not None and alias.collection != source:
            raise FailedPrecondition(
                f"alias '{alias.name}' points at '{alias.collection}', not at the collection being reindexed, '{source}'",
                reason=Reason.ALIAS_MOVED,
                field="switch_alias",
                metadata={"alias": alias.name, "collection": alias.collection},
            )
    drop = request.policy.max_copy_recall_drop
    if not (math.isfinite(drop) and 0 <= drop <= 1):
        raise InvalidArgument(f"policy.max_copy_recall_drop must be from 0 to 1, got {drop}", reason=Reason.VALUE_OUT_OF_RANGE, field="policy.max_copy_recall_drop")
    if not 0 <= request.report_sample <= MAX_SAMPLE:
        raise InvalidArgument(
            f"report_sample must be from 0 to {MAX_SAMPLE}, got {request.report_sample}", reason=Reason.VALUE_OUT_OF_RANGE, field="report_sample"
        )
    rate = request.max_images_per_second
    if not (math.isfinite(rate) and rate >= 0):
        raise InvalidArgument(f"max_images_per_second must be 0 or positive, got {rate}", reason=Reason.VALUE_OUT_OF_RANGE, field="max_images_per_second")
    return OperationRecord(
        source=source,
        target=request.target_collection,
        model_name=request.model.name,
        model_version=request.model.version,
        switch_alias=request.switch_alias,
        require_no_worse_copy_recall=request.policy.require_no_worse_copy_recall,
        max_copy_recall_drop=drop,
        report_sample=request.report_sample or DEFAULT_SAMPLE,
        label_prefix=request.label_prefix,
        images_per_second=rate or settings.reindex_images_per_second,
    )


def operation(record: OperationRecord, png: bytes = b"") -> search_pb2.Operation:
    message = search_pb2.Operation(
        name=record.name,
        state=_STATE[record.state],
        done=record.done,
        source_collection=record.source,
        target_collection=record.target,
        model=images_pb2.ModelRef(name=record.model_name, version=record.model_version),
        phase=record.phase,
        items_total=record.items_total,
        items_copied=record.items_copied,
        items_without_source=record.items_without_source,
        ids_without_source=record.ids_without_source,
        switch_alias=record.switch_alias,
        switched=record.switched,
        switch_refused=record.switch_refused,
        error_message=record.error_message,
        error_reason=record.error_reason,
        started_at_unix_ms=record.started_at_unix_ms,
        updated_at_unix_ms=record.updated_at_unix_ms,
    )
    if record.report is not None:
        report = migration_report.MigrationReport.from_json(record.report)
        passed, _ = migration_report.passes(report, record.require_no_worse_copy_recall, record.max_copy_recall_drop)
        message.report.CopyFrom(
            search_pb2.MigrationReport(
                sample_size=report.sample_size,
                neighbour_overlap_at_10=report.neighbour_overlap_at_10,
                before=_figures(report.before),
                after=_figures(report.after),
                edits=report.edits,
                table=migration_report.table(report),
                png=png,
                passes_policy=passed,
            )
        )
    return message


def _figures(figures: migration_report.ModelFigures) -> search_pb2.ModelFigures:
    message = search_pb2.ModelFigures(
        model=images_pb2.ModelRef(name=figures.model_name, version=figures.model_version),
        copy_recall_at_1=figures.copy_recall_at_1,
        copy_recall_by_edit=figures.copy_recall_by_edit,
        nearest_score_percentiles=figures.nearest_score_percentiles,
    )
    if figures.precision_at_10 is not None:
        message.precision_at_10 = figures.precision_at_10
    return message
