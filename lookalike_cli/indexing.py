"""`lookalike index FOLDER`: every image file under a folder into a collection, by batches.

Files go to the search service as encoded bytes, so the encoder service's one
preprocessing decides what is usable. A batch that the service refuses for bad
files (INVALID_ARGUMENT with a field violation `items[i].image...` for each) is
resent without them, and each is reported with its reason: bad files never stop
or hang the run.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tqdm import tqdm

from lookalike.client import ItemToUpsert, SearchClient
from lookalike.errors import InvalidArgument, field_index

@dataclasses.dataclass
class IndexReport:
    indexed: int = 0
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (path, why)
    failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (path, reason)

    def summary(self) -> str:
        lines = [f"indexed {self.indexed}, skipped {len(self.skipped)}, failed {len(self.failed)}"]
        lines += [f"  failed  {path}: {reason}" for path, reason in self.failed]
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
    progress: bool = True,
) -> IndexReport:
    """Indexes root/**; item ids are paths relative to root, uris absolute paths, tags `folder:<subfolder>`."""
    report = IndexReport()
    files, report.skipped = list_files(root)
    batch: list[tuple[Path, ItemToUpsert]] = []
    size = 0
    with tqdm(total=len(files), unit="img", desc=f"indexing {root}", disable=not progress) as bar:
        for path in files:
            item_id = path.relative_to(root).as_posix()
            try:
                data = path.read_bytes()
            except OSError as error:
                report.failed.append((str(path), f"cannot read: {error.strerror}"))
                bar.update()
                continue
            if len(data) > max_file_bytes:
                report.failed.append((str(path), f"{len(data)} bytes, over the {max_file_bytes}-byte limit per file"))
                bar.update()
                continue
            item_tags = list(tags)
            if folder_tags and path.parent != root:
                item_tags.append(f"folder:{path.parent.relative_to(root).as_posix()}")
            if batch and (len(batch) >= batch_size or size + len(data) > batch_bytes):
                _send(client, collection, batch, report, skip_existing, bar)
                batch, size = [], 0
            batch.append((path, ItemToUpsert(id=item_id, image=data, tags=item_tags, uri=str(path.resolve()))))
            size += len(data)
        if batch:
            _send(client, collection, batch, report, skip_existing, bar)
    return report


def _send(client, collection, batch, report: IndexReport, skip_existing: bool, bar) -> None:
    todo = list(batch)
    if skip_existing:
        existing = {item.id for item in client.get(collection, [item.id for _, item in todo]).items}
        report.skipped += [(str(path), "already indexed") for path, item in todo if item.id in existing]
        bar.update(len(existing))
        todo = [(path, item) for path, item in todo if item.id not in existing]
    while todo:
        try:
            report.indexed += client.upsert(collection, [item for _, item in todo])
            bar.update(len(todo))
            return
        except InvalidArgument as error:
            bad = _bad_images(error, len(todo))
            if not bad:
                raise
            for index in sorted(bad, reverse=True):
                path, _ = todo.pop(index)
                report.failed.append((str(path), bad[index]))
            bar.update(len(bad))


def _bad_images(error: InvalidArgument, batch_size: int) -> dict[int, str]:
    """{index in the batch: why} for each image the error names; empty when it names other fields."""
    bad = {}
    for violation in error.field_violations:
        found = field_index(violation.field, "items")
        if found is None or not found[1].startswith(".image") or found[0] >= batch_size:
            return {}
        bad[found[0]] = f"{violation.reason}: {violation.description}"
    return bad
