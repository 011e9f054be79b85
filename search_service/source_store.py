"""Kept sources: the picture behind each item of a `keep_sources` collection, so a reindex can
embed the collection again with another model version without the client (docs/model-upgrades.md).

Under the collection's directory, `sources/`:
- `objects/ab/ab12...`: each distinct picture once, named by the SHA-256 of its encoded bytes, so
  a catalogue that repeats a picture (or an upsert retried) stores it once;
- `index.log`: which picture each item has, one JSON line `["id", "sha256"]` per change, appended
  in order; `""` for an item that has none (deleted, or upserted as a vector, or larger than
  max_bytes), so a later image upsert and a later vector upsert of one id resolve to the last.

Write order gives crash safety: the pictures are written (and fsynced) before the lines that name
them, and the lines before the collection logs the write (search_service/item_writes.py), so every
item the log acknowledged has its picture. A crash can leave a line for a write the collection
never logged; a reindex then re-embeds the item from a picture the client was never told was
taken, which a retry of that write would have sent anyway. A torn last line is cut at start.

The index is compacted (rewritten with one line per item that has a picture, and pictures nobody
names removed) when it opens with more than twice as many lines as items plus 1,000.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from server_toolkit.durable_files import create_directories, create_file, fsync_directory, write_atomically

DIRECTORY = "sources"
INDEX = "index.log"


class SourceStore:
    """Thread-safe."""

    def __init__(self, collection_dir: Path, *, fsync: bool, max_bytes: int) -> None:
        self._root = Path(collection_dir) / DIRECTORY
        self._objects = self._root / "objects"
        self._fsync, self.max_bytes = fsync, max_bytes
        self._lock = threading.Lock()
        create_directories(self._objects)
        self._digests, lines = self._replay()
        if lines > 2 * len(self._digests) + 1000:
            self._compact()

    def keep(self, ids: Sequence[str], pictures: Sequence[bytes | None]) -> list[bool]:
        """Records each item's picture (None: none); durable when it returns. Whether each was kept."""
        digests = []
        for picture in pictures:
            if picture is None or len(picture) > self.max_bytes:
                digests.append("")
                continue
            digest = hashlib.sha256(picture).hexdigest()
            path = self._object(digest)
            if not path.exists():  # the same picture again: stored once
                create_directories(path.parent)
                write_atomically(path, lambda f, data=picture: f.write(data), fsync=self._fsync)
            digests.append(digest)
        self._append(ids, digests)
        return [bool(d) for d in digests]

    def forget(self, ids: Sequence[str]) -> None:
        """The items have no picture any more (deleted, or replaced by a vector)."""
        if ids:
            self._append(ids, [""] * len(ids))

    def digest(self, item_id: str) -> str:
        """SHA-256 of the item's picture; "" when it has none."""
        return self._digests.get(item_id, "")

    def read(self, item_id: str) -> bytes | None:
        digest = self._digests.get(item_id, "")
        return self._object(digest).read_bytes() if digest else None

    def _object(self, digest: str) -> Path:
        return self._objects / digest[:2] / digest

    def _append(self, ids: Sequence[str], digests: Sequence[str]) -> None:
        text = "".join(json.dumps([i, d]) + "\n" for i, d in zip(ids, digests, strict=True)).encode("utf-8")
        with self._lock:
            fd = create_file(self._root / INDEX, os.O_WRONLY | os.O_APPEND)
            try:
                os.write(fd, text)
                if self._fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            for i, d in zip(ids, digests):
                if d:
                    self._digests[i] = d
                else:
                    self._digests.pop(i, None)

    def _replay(self) -> tuple[dict[str, str], int]:
        """The index's last word on each item, and its line count; cuts a torn last line."""
        path = self._root / INDEX
        if not path.exists():
            return {}, 0
        data = path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):  # a line the crash tore: its write was never acknowledged
            os.truncate(path, end)
        digests: dict[str, str] = {}
        lines = data[:end].splitlines()
        for line in lines:
            item_id, digest = json.loads(line)
            if digest:
                digests[item_id] = digest
            else:
                digests.pop(item_id, None)
        return digests, len(lines)

    def _compact(self) -> None:
        text = "".join(json.dumps([i, d]) + "\n" for i, d in sorted(self._digests.items())).encode("utf-8")
        write_atomically(self._root / INDEX, lambda f: f.write(text), fsync=self._fsync)
        named = set(self._digests.values())
        for folder in self._objects.iterdir():
            for path in folder.iterdir():
                if path.name not in named:
                    path.unlink()
        if self._fsync:
            fsync_directory(self._objects)
