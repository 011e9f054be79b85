"""`lookalike index FOLDER`: every image file under a folder into a collection, over UpsertStream.

Files go to the search service as encoded bytes, so the encoder service's one preprocessing
decides what is usable. They go in batches on a bidirectional UpsertStream, which takes the next
batch without waiting for the last one's answer and writes up to `stream_items` items as one log
record (one fsync), where a unary call per batch would wait a round trip and an fsync each time.
A stream carries at most `stream_items` items and `stream_bytes` of files, so a failure resends
at most that much, the files held in memory stay bounded, and a stream's deadline (the client's,
doubled at each retry) means something. What can go wrong, and what happens then:
- Bad files: a file that cannot be read or is over `max_file_bytes` is reported failed at once;
  a file the encoder cannot read comes back as its item's failure in the batch's answer, with its
  reason, and the rest of the batch is written. Bad files never stop or hang the run.
- A batch over the service's message size (RESOURCE_EXHAUSTED from gRPC itself, without a
  reason): the stream ends, the largest batch not yet answered is split in halves, as
  errors.proto advises, and the following batches are kept under half its size; a single file
  over the limit fails alone.
- A passing failure (UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED): the batches not yet
  answered (the server wrote none of them) are sent again on a new stream after each of
  `retry_delays`, the deadline doubling each time (every write is idempotent).
- Anything else, or a passing failure that outlasts the retries: the run stops, and the report
  keeps its accounting: what was indexed, skipped and failed, why it stopped, and every file
  left unanswered or unsent, so `--skip-existing` resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from lookalike.client import ItemToUpsert, SearchClient
from lookalike.errors import DeadlineExceeded, LookalikeError, ResourceExhausted, Unavailable
from lookalike.v1 import errors_pb2
from training.progress import Phase

TRANSIENT = (Unavailable, ResourceExhausted, DeadlineExceeded)


@dataclasses.dataclass
class IndexReport:
    indexed: int = 0
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (path, why)
    failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (path, reason)
    stopped: str = ""  # why the run stopped before the last file; empty when it went through
    left: list[str] = dataclasses.field(default_factory=list)  # files not written because it stopped

    def summary(self) -> str:
        lines = [f"indexed {self.indexed}, skipped {len(self.skipped)}, failed {len(self.failed)}"]
        lines += [f"  failed  {path}: {reason}" for path, reason in self.failed]
        if self.stopped:
            lines.append(f"stopped: {self.stopped}; {len(self.left)} files left")
        return "\n".join(lines)


@dataclasses.dataclass
class Batch:
    """One message of a stream: the files and their items, in order."""

    entries: list[tuple[Path, ItemToUpsert]] = dataclasses.field(default_factory=list)
    size: int = 0  # bytes of its files (of its vectors, for items that carry vectors)

    @staticmethod
    def of(entries: list[tuple[Path, ItemToUpsert]]) -> Batch:
        return Batch(entries, sum(len(item.image) if item.image is not None else 4 * len(item.vector) for _, item in entries))

    def add(self, path: Path, item: ItemToUpsert, size: int) -> None:
        self.entries.append((path, item))
        self.size += size

    def halves(self) -> list[Batch]:
        middle = len(self.entries) // 2
        return [Batch.of(part) for part in (self.entries[:middle], self.entries[middle:])]


def list_files(root: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """Every regular file under root, sorted; hidden files and folders are skipped (and returned as such)."""
    files, skipped = [], []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            if path.is_file():
                skipped.append((str(path), "hidden file"))
            continue
        if path.is_file():
            files.append(path)
    return files, skipped


def backoff(retries: int) -> tuple[float, ...]:
    """Seconds to wait before each of `retries` retries: 1, 2, 4, ..."""
    return tuple(2.0**attempt for attempt in range(retries))


def index_folder(
    client: SearchClient,
    collection: str,
    root: Path,
    *,
    batch_size: int = 64,
    batch_bytes: int = 16 * 1024 * 1024,
    stream_items: int = 4096,
    stream_bytes: int = 64 * 1024 * 1024,
    max_file_bytes: int = 32 * 1024 * 1024,
    tags: tuple[str, ...] = (),
    folder_tags: bool = True,
    skip_existing: bool = False,
    retry_delays: Sequence[float] = backoff(3),
    progress: bool = True,
) -> IndexReport:
    """Indexes root/**; item ids are paths relative to root, uris absolute paths, tags `folder:<subfolder>`.

    `stream_items` defaults to the server's `max_stream_record_items`: one stream, one write."""
    report = IndexReport()
    files, report.skipped = list_files(root)
    with Phase(f"indexing {root}", total=len(files), unit="img", progress=progress) as phase:
        sender = Sender(client, collection, report, phase, retry_delays, batch_bytes)
        reader = _Reader(files, root, sender, batch_size, max_file_bytes, tags, folder_tags)
        stream: list[Batch] = []  # batches for the next stream, not sent yet
        for batch in reader:
            try:
                batch = sender.not_indexed(batch) if skip_existing else batch
            except LookalikeError as error:  # the lookup failed, past its retries
                report.stopped = _describe(error)
                report.left += [str(path) for path in _paths(stream) + reader.unsent(batch)]
                return report
            items, size = sum(len(b.entries) for b in stream), sum(b.size for b in stream)
            if stream and (items + len(batch.entries) > stream_items or size + batch.size > stream_bytes):
                if not sender.send(stream):
                    report.left += [str(path) for path in reader.unsent(batch)]
                    return report
                stream = []
            if batch.entries:
                stream.append(batch)
        if stream and not sender.send(stream):
            return report
        phase.finish(f"indexing {root}: {len(files)} files, {report.indexed} indexed")
    return report


class _Reader:
    """The folder's files as batches of items, read in order; a file that cannot be read, or is
    over the size limit, is reported failed on the way and left out."""

    def __init__(self, files: list[Path], root: Path, sender: Sender, batch_size: int, max_file_bytes: int, tags, folder_tags: bool) -> None:
        self.files, self.root, self.sender = files, root, sender
        self.batch_size, self.max_file_bytes = batch_size, max_file_bytes
        self.tags, self.folder_tags = tags, folder_tags
        self.position = 0  # the next file to read

    def __iter__(self) -> Iterator[Batch]:
        batch = Batch()
        while self.position < len(self.files):
            path = self.files[self.position]
            data = self._read(path)
            if data is not None:
                # batch_bytes is the sender's: a message found too large lowers it mid-run
                if batch.entries and (len(batch.entries) >= self.batch_size or batch.size + len(data) > self.sender.batch_bytes):
                    yield batch
                    batch = Batch()
                batch.add(path, self._item(path, data), len(data))
            self.position += 1
        if batch.entries:
            yield batch

    def unsent(self, batch: Batch) -> list[Path]:
        """The files of `batch`, the last one yielded, and every file not in a batch yet."""
        return _paths([batch]) + self.files[self.position :]

    def _read(self, path: Path) -> bytes | None:
        """The file's bytes; None, reported failed, when it cannot be read or is over the limit."""
        try:
            data = path.read_bytes()
        except OSError as error:
            self.sender.fail_file(path, f"cannot read: {error.strerror}")
            return None
        if len(data) > self.max_file_bytes:
            self.sender.fail_file(path, f"{len(data)} bytes, over the {self.max_file_bytes}-byte limit per file")
            return None
        return data

    def _item(self, path: Path, data: bytes) -> ItemToUpsert:
        item_tags = list(self.tags)
        if self.folder_tags and path.parent != self.root:
            item_tags.append(f"folder:{path.parent.relative_to(self.root).as_posix()}")
        return ItemToUpsert(
            id=path.relative_to(self.root).as_posix(),
            image=data,
            tags=item_tags,
            uri=str(path.resolve()),
            timestamp=int(path.stat().st_mtime),  # the file's age: the best "first seen" a folder knows
        )


@dataclasses.dataclass
class Sender:
    client: SearchClient
    collection: str
    report: IndexReport
    phase: Phase
    retry_delays: Sequence[float]
    batch_bytes: int  # lowered when the service refuses a message as too large

    def send(self, stream: list[Batch]) -> bool:
        """Writes the batches, over one stream, or more after a failure; False when the run must
        stop, with why and the files of the batches not answered in the report."""
        todo = list(stream)  # not answered yet, in order
        retries = iter(self.retry_delays)
        timeout = self.client.timeout
        while todo:
            try:
                self._stream(todo, timeout)
            except LookalikeError as error:
                if _too_large_a_message(error):
                    self._split_largest(todo, error)
                    continue
                delay = next(retries, None)
                if not isinstance(error, TRANSIENT) or delay is None:
                    self.report.stopped = _describe(error)
                    self.report.left += [str(path) for path in _paths(todo)]
                    return False
                time.sleep(delay)
                timeout *= 2  # it may have run out on a slow server
        return True

    def not_indexed(self, batch: Batch) -> Batch:
        """`batch` without the items the collection holds already, reported skipped."""
        ids = [item.id for _, item in batch.entries]
        existing = {item.id for item in self._call(lambda timeout: self.client.get(self.collection, ids, timeout=timeout)).items}
        self.report.skipped += [(str(path), "already indexed") for path, item in batch.entries if item.id in existing]
        self.phase.update(len(existing))
        kept = [(path, item) for path, item in batch.entries if item.id not in existing]
        return Batch.of(kept)

    def fail_file(self, path: Path, reason: str) -> None:
        self.report.failed.append((str(path), reason))
        self.phase.update()

    def _stream(self, todo: list[Batch], timeout: float) -> None:
        """One UpsertStream of the batches of `todo`, each dropped from it once answered."""
        sent = list(todo)  # the stream's messages: an answer's request_index is a position here
        answers = self.client.upsert_stream(self.collection, [[item for _, item in b.entries] for b in sent], timeout=timeout)
        for answer in answers:
            batch = sent[answer.request_index]
            for failure in answer.failures:
                path, _ = batch.entries[failure.item_index]
                self.report.failed.append((str(path), f"{_reason_name(failure.reason)}: {failure.message}"))
            self.report.indexed += answer.upserted
            self.phase.update(len(batch.entries))
            todo.remove(batch)

    def _split_largest(self, todo: list[Batch], error: LookalikeError) -> None:
        """Some batch of `todo` was over the message limit: the largest is split in halves (a single
        file fails alone), and the batches read from now on stay under half its size."""
        largest = max(range(len(todo)), key=lambda i: todo[i].size)
        batch = todo[largest]
        if len(batch.entries) == 1:
            [(path, _)] = todo.pop(largest).entries
            self.fail_file(path, f"over the service's message size limit: {error.message}")
            return
        todo[largest : largest + 1] = batch.halves()
        self.batch_bytes = min(self.batch_bytes, max(1, batch.size // 2))

    def _call(self, call: Callable[[float], object]):
        """call(timeout), retried after each of retry_delays on a passing failure, the deadline
        doubled each time (it may have run out on a slow server)."""
        timeout = self.client.timeout
        for delay in self.retry_delays:
            try:
                return call(timeout)
            except TRANSIENT:
                pass
            time.sleep(delay)
            timeout *= 2
        return call(timeout)


def _paths(batches: list[Batch]) -> list[Path]:
    return [path for batch in batches for path, _ in batch.entries]


def _too_large_a_message(error: LookalikeError) -> bool:
    """gRPC's own refusal of a message over the size limit: RESOURCE_EXHAUSTED without details."""
    return isinstance(error, ResourceExhausted) and not error.reason


def _describe(error: LookalikeError) -> str:
    reason = f" {error.reason}" if error.reason else ""
    return f"{error.code.name}{reason}: {error.message}"


def _reason_name(reason: int) -> str:
    """The reason's name; its number when this client predates it."""
    return errors_pb2.ErrorReason.Name(reason) if reason in errors_pb2.ErrorReason.values() else str(reason)
