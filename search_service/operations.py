"""Long-running operations' records, in `<data_dir>/operations/`: what a reindex was asked, where it
is, and what it found, so GetOperation answers after a restart and a running one resumes.

One JSON file per operation (`<id>.json`), rewritten atomically (server_toolkit/durable_files.py)
at each step, and its migration report's picture beside it (`<id>.png`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import uuid
from pathlib import Path

from server_toolkit.durable_files import create_directories, remove_temporary_files, write_atomically

log = logging.getLogger(__name__)

RUNNING, SUCCEEDED, FAILED, CANCELLED = "running", "succeeded", "failed", "cancelled"
PREFIX = "operations/"  # of an operation's name in the API


@dataclasses.dataclass
class OperationRecord:
    source: str  # the live collection
    target: str  # the new collection
    model_name: str
    model_version: int  # 0 until the encoder says which version "newest" is
    switch_alias: str = ""
    require_no_worse_copy_recall: bool = False
    max_copy_recall_drop: float = 0.0
    report_sample: int = 200
    label_prefix: str = ""
    images_per_second: float = 500.0
    id: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex[:16])
    state: str = RUNNING
    phase: str = "starting"  # starting, copying, catching up, measuring, switching, done
    items_total: int = 0
    items_copied: int = 0
    items_without_source: int = 0
    ids_without_source: list[str] = dataclasses.field(default_factory=list)
    report: dict | None = None  # migration_report.MigrationReport.to_json(), without its picture
    switched: bool = False
    switch_refused: str = ""
    error_message: str = ""
    error_reason: str = ""
    started_at_unix_ms: int = dataclasses.field(default_factory=lambda: int(time.time() * 1000))
    updated_at_unix_ms: int = 0

    @property
    def name(self) -> str:
        return PREFIX + self.id

    @property
    def done(self) -> bool:
        return self.state != RUNNING


class OperationStore:
    """Not thread-safe: each record is written by its own operation's thread."""

    def __init__(self, data_dir: Path, *, fsync: bool = True) -> None:
        self._root = Path(data_dir) / "operations"
        self._fsync = fsync
        create_directories(self._root)
        remove_temporary_files(self._root)

    def save(self, record: OperationRecord) -> None:
        record.updated_at_unix_ms = int(time.time() * 1000)
        text = (json.dumps(dataclasses.asdict(record), indent=2) + "\n").encode("utf-8")
        write_atomically(self._root / f"{record.id}.json", lambda f: f.write(text), fsync=self._fsync)

    def save_picture(self, record: OperationRecord, png: bytes) -> None:
        write_atomically(self._root / f"{record.id}.png", lambda f: f.write(png), fsync=self._fsync)

    def picture(self, record: OperationRecord) -> bytes:
        path = self._root / f"{record.id}.png"
        return path.read_bytes() if path.exists() else b""

    def load_all(self) -> list[OperationRecord]:
        """Every record; one that cannot be read is logged and skipped: the server starts anyway."""
        records = []
        for path in sorted(self._root.glob("*.json")):
            try:
                records.append(OperationRecord(**json.loads(path.read_bytes())))
            except (OSError, ValueError, TypeError) as error:
                log.error("operation record unreadable, skipped", extra={"fields": {"file": path.name, "error": str(error)}})
        return records
