"""`lookalike index FOLDER`: every image file under a folder into a collection, by batches.

Files go to the search service as encoded bytes, so the encoder service's one
preprocessing decides what is usable. What can go wrong, and what happens then:
- Bad files: the service refuses the batch with INVALID_ARGUMENT and a field violation
  `items[i].image...` for each; they are reported failed with their reason and the rest is
  resent. Bad files never stop or hang the run.
- A batch over the service's message size (RESOURCE_EXHAUSTED from gRPC itself, without a
  reason): it is split in halves, as errors.proto advises; a single file over it fails alone.
- A passing failure (UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED): the call is retried
  after each of `retry_delays`, the deadline doubling each time (every write is idempotent).
- Anything else, or a passing failure that outlasts the retries: the run stops, and the report
  keeps its accounting: what was indexed, skipped and failed, why it stopped, and every file
  left unsent, so `--skip-existing` resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm import tqdm

from lookalike.client import ItemToUpsert, SearchClient
from lookalike.errors import DeadlineExceeded, InvalidArgument, LookalikeError, ResourceExhausted, Unavailable, field_index

TRANSIENT = (Unavailable, ResourceExhausted, DeadlineExceeded)

Batch = list[tuple[Path, ItemToUpsert]]


@dataclasses.dataclass
class IndexReport:
    indexed: int = 0
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (path, why)
    failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (path, reason)
    stopped: str = ""  # why the run stopped before the last file; empty when it went through
    left: list[str] = dataclasses.field(default_factory=list)  # files not sent because it stopped

    def summary(self) -> str:
        lines = [f"indexed {self.indexed}, skipped {len(self.skipped)}, failed {len(self.failed)}"]
        lines += [f"  failed  {path}: {reason}" for path, reason in self.failed]
        if self.stopped:
            lines.append(f"stopped: {self.stopped}; {len(self.left)} files left")
        return "\n".join(lines)


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
    max_file_bytes: int = 32 * 1024 * 1024,
    tags: tuple[str, ...] = (),
    folder_tags: bool = True,
    skip_existing: bool = False,
    retry_delays: Sequence[float] = backoff(3),
    progress: bool = True,
) -> IndexReport:
    """Indexes root/**; item ids are paths relative to root, uris absolute paths, tags `folder:<subfolder>`."""
    report = IndexReport()
    files, report.skipped = list_files(root)
    with tqdm(total=len(files), unit="img", desc=f"indexing {root}", disable=not progress) as bar:
        sender = _Sender(client, collection, report, bar, skip_existing, retry_delays)
        batch: Batch = []
        size = 0
        for position, path in enumerate(files):
            data = _read(path, max_file_bytes, report, bar)
            if data is None:
                continue
            if batch and (len(batch) >= batch_size or size + len(data) > batch_bytes):
                if not sender.send(batch):
                    report.left += [str(rest) for rest in files[position:]]
                    return report
                batch, size = [], 0
            batch.append((path, _item(path, root, data, tags, folder_tags)))
            size += len(data)
        if batch:
            sender.send(batch)
    return report


def _read(path: Path, max_file_bytes: int, report: IndexReport, bar: tqdm) -> bytes | None:
    """The file's bytes; None, reported failed, when it cannot be read or is over the limit."""
    try:
        data = path.read_bytes()
    except OSError as error:
        report.failed.append((str(path), f"cannot read: {error.strerror}"))
        bar.update()
        return None
    if len(data) > max_file_bytes:
        report.failed.append((str(path), f"{len(data)} bytes, over the {max_file_bytes}-byte limit per file"))
        bar.update()
        return None
    return data


def _item(path: Path, root: Path, data: bytes, tags: tuple[str, ...], folder_tags: bool) -> ItemToUpsert:
    item_tags = list(tags)
    if folder_tags and path.parent != root:
        item_tags.append(f"folder:{path.parent.relative_to(root).as_posix()}")
    return ItemToUpsert(
        id=path.relative_to(root).as_posix(),
        image=data,
        tags=item_tags,
        uri=str(path.resolve()),
        timestamp=int(path.stat().st_mtime),  # the file's age: the best "first seen" a folder knows
    )


@dataclasses.dataclass
class _Sender:
    client: SearchClient
    collection: str
    report: IndexReport
    bar: tqdm
    skip_existing: bool
    retry_delays: Sequence[float]

    def send(self, batch: Batch) -> bool:
        """Indexes the batch; False when the run must stop, with why and what was left unsent in the report."""
        pending = [list(batch)]  # parts still to send, in order: a part too large for one message is split
        while pending:
            todo = pending.pop(0)
            try:
                self._send_part(todo)
            except LookalikeError as error:
                if not _too_large_a_message(error):
                    self.report.stopped = _describe(error)
                    self.report.left = [str(path) for part in (todo, *pending) for path, _ in part]
                    return False
                if len(todo) > 1:
                    pending[:0] = [todo[: len(todo) // 2], todo[len(todo) // 2 :]]
                else:
                    self._fail(todo, {0: f"over the service's message size limit: {error.message}"})
        return True

    def _send_part(self, todo: Batch) -> None:
        """Upserts `todo`, dropping from it what is done (sent, skipped or failed): on an error
        that stops the run, what remains in it was not sent."""
        if self.skip_existing:
            ids = [item.id for _, item in todo]
            existing = {item.id for item in self._call(lambda timeout: self.client.get(self.collection, ids, timeout=timeout)).items}
            self.report.skipped += [(str(path), "already indexed") for path, item in todo if item.id in existing]
            self.bar.update(len(existing))
            todo[:] = [(path, item) for path, item in todo if item.id not in existing]
        while todo:
            items = [item for _, item in todo]
            try:
                self.report.indexed += self._call(lambda timeout: self.client.upsert(self.collection, items, timeout=timeout))
            except InvalidArgument as error:
                bad = _bad_images(error, len(todo))
                if not bad:
                    raise
                self._fail(todo, bad)
            else:
                self.bar.update(len(todo))
                todo.clear()

    def _call(self, call: Callable[[float], object]):
        """call(timeout), retried after each of retry_delays on a passing failure, the deadline
        doubled each time (it may have run out on a slow server). Not a message over the size
        limit: that one fails again as it is."""
        timeout = self.client.timeout
        for delay in self.retry_delays:
            try:
                return call(timeout)
            except TRANSIENT as error:
                if _too_large_a_message(error):
                    raise
            time.sleep(delay)
            timeout *= 2
        return call(timeout)

    def _fail(self, todo: Batch, bad: dict[int, str]) -> None:
        """Reports the entries of `todo` at the indices of `bad` failed, and drops them from it."""
        for index in sorted(bad, reverse=True):
            path, _ = todo.pop(index)
            self.report.failed.append((str(path), bad[index]))
        self.bar.update(len(bad))


def _too_large_a_message(error: LookalikeError) -> bool:
    """gRPC's own refusal of a message over the size limit: RESOURCE_EXHAUSTED without details."""
    return isinstance(error, ResourceExhausted) and not error.reason


def _describe(error: LookalikeError) -> str:
    reason = f" {error.reason}" if error.reason else ""
    return f"{error.code.name}{reason}: {error.message}"


def _bad_images(error: InvalidArgument, batch_size: int) -> dict[int, str]:
    """{index in the batch: why} for each image the error names; empty when it names other fields."""
    bad = {}
    for violation in error.field_violations:
        found = field_index(violation.field, "items")
        if found is None or not found[1].startswith(".image") or found[0] >= batch_size:
            return {}
        bad[found[0]] = f"{violation.reason}: {violation.description}"
    return bad
