"""Files that survive a crash: the one home of fsync, atomic writes and numbered files.

The search service's log, snapshots and collection specs, the exporter's model versions and
the trainer's checkpoints all write through here, so the rules live in one place: a file is
written under a temporary name, fsynced, renamed over its final name, and its directory
fsynced, so a reader sees the old file or the new one, never a mix, and a rename that was
reported done is still done after a power cut.

Permissions are explicit, not whatever the process umask leaves: files are created 0600 and
directories 0700 (owner only: collections, checkpoints and caches hold a catalogue's data)
unless the caller asks for another mode, as the trainer does for checkpoints it shares.
"""

from __future__ import annotations

import json
import os
import re
import uuid
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

TEMPORARY_SUFFIX = ".tmp"  # with a leading '.', the names of half-written files; removed on start
PRIVATE_FILE = 0o600  # the default mode of files created here: read and written by the owner only
PRIVATE_DIRECTORY = 0o700


def create_file(path: Path, flags: int, mode: int = PRIVATE_FILE) -> int:
    """os.open with O_CREAT and exactly `mode`, whatever the umask; returns the descriptor."""
    fd = os.open(path, flags | os.O_CREAT, mode)
    try:
        os.fchmod(fd, mode)  # the umask can only have removed bits; this also adds what was asked
    except BaseException:
        os.close(fd)
        raise
    return fd


def create_directories(path: Path, mode: int = PRIVATE_DIRECTORY) -> None:
    """Creates `path` and its missing parents, each with exactly `mode`; existing ones are left as they are."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, mode)
        except FileExistsError:  # made meanwhile by someone else: theirs to set
            continue
        os.chmod(directory, mode)


def fsync_directory(path: Path) -> None:
    """Makes a file's creation, rename or removal in `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_files(directory: Path) -> None:
    """fsyncs every regular file directly in `directory`, then the directory itself."""
    for child in directory.iterdir():
        if child.is_file():
            with open(child, "rb") as f:
                os.fsync(f.fileno())
    fsync_directory(directory)


def temporary_name(path: Path) -> Path:
    """A hidden sibling of `path` that no other writer picks, ending in TEMPORARY_SUFFIX."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}{TEMPORARY_SUFFIX}")


def write_atomically(
    path: Path, write: Callable[[BinaryIO], None], *, fsync: bool = True, mode: int = PRIVATE_FILE
) -> None:
    """Writes a file so that a crash leaves either the old content or the new, never a mix.
    `mode` sets the permissions exactly (default 0600, whatever the umask)."""
    temporary = temporary_name(path)
    try:
        with os.fdopen(create_file(temporary, os.O_WRONLY | os.O_EXCL, mode), "wb") as f:
            write(f)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if fsync:
        fsync_directory(path.parent)


def remove_temporary_files(directory: Path) -> list[Path]:
    """Deletes what interrupted atomic writes left in `directory`; returns what it removed."""
    removed = []
    for path in directory.iterdir():
        if path.name.startswith(".") and path.name.endswith(TEMPORARY_SUFFIX) and path.is_file():
            path.unlink()
            removed.append(path)
    return removed


def numbered_files(directory: Path, pattern: re.Pattern) -> list[tuple[int, Path]]:
    """(number, path) of every file whose name fully matches `pattern` (one digit group), lowest first."""
    found = []
    for path in directory.iterdir():
        match = pattern.fullmatch(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def json_checksum(document: dict) -> int:
    """CRC32 of `document` as canonical JSON: the checksum of the small JSON files that must not be
    read half-right (collection.json, aliases.json), stored beside the other keys as "crc32"."""
    return zlib.crc32(json.dumps(document, sort_keys=True, separators=(",", ":")).encode("utf-8"))
