"""ExportCollection and ImportCollection messages to backups.py's terms, and back."""

from __future__ import annotations

from collections.abc import Iterator

from lookalike.errors import InvalidArgument, Reason
from lookalike.v1 import search_pb2
from search_service.backups import BackupFacts, OpenBackup


def export_stream(collection: search_pb2.Collection, backup: OpenBackup) -> Iterator[search_pb2.CollectionBackupChunk]:
    """The header, then the snapshot's bytes; closes the backup when done or abandoned."""
    with backup:
        facts = backup.facts
        header = search_pb2.BackupHeader(
            collection=collection, sequence=facts.sequence, items=facts.items, size_bytes=facts.size_bytes, sha256=facts.sha256
        )
        yield search_pb2.CollectionBackupChunk(header=header)
        for chunk in backup.chunks():
            yield search_pb2.CollectionBackupChunk(data=chunk)


def only_request(requests: Iterator[search_pb2.ExportCollectionRequest]) -> search_pb2.ExportCollectionRequest:
    messages = list(requests)  # the client half-closes after its one request
    if len(messages) != 1:
        raise InvalidArgument(
            f"an ExportCollection stream holds one request, not {len(messages)}", reason=Reason.REQUIRED_FIELD_MISSING, field="collection"
        )
    return messages[0]


def first_header(messages: Iterator[search_pb2.ImportCollectionRequest]) -> search_pb2.ImportCollectionHeader:
    first = next(messages, None)
    if first is None or first.WhichOneof("part") != "header":
        raise InvalidArgument(
            "an ImportCollection stream starts with its header (the name and the backup's header)",
            reason=Reason.REQUIRED_FIELD_MISSING,
            field="header",
        )
    if not first.header.HasField("backup") or not first.header.backup.HasField("collection"):
        raise InvalidArgument("header.backup must be the header ExportCollection sent", reason=Reason.REQUIRED_FIELD_MISSING, field="header.backup")
    return first.header


def facts_of(header: search_pb2.BackupHeader) -> BackupFacts:
    return BackupFacts(sequence=header.sequence, items=header.items, size_bytes=header.size_bytes, sha256=header.sha256)


def data_of(messages: Iterator[search_pb2.ImportCollectionRequest]) -> Iterator[bytes]:
    for i, message in enumerate(messages, start=1):
        if message.WhichOneof("part") != "data":
            raise InvalidArgument(
                f"message {i} of the stream is not data: only the first holds the header",
                reason=Reason.BACKUP_DAMAGED,
                field="data",
            )
        yield message.data
