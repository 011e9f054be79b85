"""Every collection of the search service, under `<data_dir>/collections/<name>/`.

Creating writes the new collection's `collection.json` and its high-water mark (restoring a
backup: also its snapshot, backups.py) in a hidden staging directory and renames it into place; deleting renames the directory to a hidden name
before removing it. Either way a crash leaves a whole collection or none, and hidden leftovers
are removed on the next start. Directories are created 0700 and files 0600, whatever the umask.

A collection that fails to load (a corrupt log or snapshot, a log that ends before its
high-water mark) is not served and not silently emptied: it is logged (with its path and the
exception), reported by `failed()`, listed by `list()` and `describe()` as DAMAGED with a reason
that names files but never a server path, and every call that uses it raises
FailedPrecondition (COLLECTION_DAMAGED) until an operator repairs or deletes it.

Aliases (search_service/aliases.py) live beside the collections, in `<data_dir>/aliases.json`;
`get` and `describe` take an alias for the collection it points at, so every call that names a
collection takes one. Alias and collection names are one namespace, and a collection cannot be
deleted while an alias points at it.

`collection.json` format 2 carries a CRC32 and says the collection keeps a high-water mark, so
a missing mark is damage. Format 1 (collections made before marks) is upgraded at load: a mark
is started at what the log holds, then the spec is rewritten as format 2.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

from lookalike.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    LookalikeError,
    NotFound,
    Reason,
    Unavailable,
)
from copy_detection.verdict import Thresholds
from lookalike.model_format import is_model_name
from search_service import high_water_mark
from search_service.aliases import Alias, AliasTable
from search_service.backups import OpenBackup, open_backup
from search_service.source_store import SourceStore
from search_service.collection import DAMAGED, METRICS, Collection, CollectionInfo, CollectionSpec
from search_service.vector_index import IndexPolicy
from server_toolkit.durable_files import create_directories, fsync_directory, json_checksum, write_atomically

logger = logging.getLogger(__name__)

MAX_DIMENSION = 65_536
SPEC_FILE = "collection.json"
SPEC_FORMAT = 2  # 1: before high-water marks and the checksum; still read, and upgraded
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", re.ASCII)  # Collection.name in search.proto


def validate_spec(spec: CollectionSpec) -> None:
    """InvalidArgument naming what is wrong with a spec to create, at its field in the request."""
    if not isinstance(spec.name, str) or not _NAME.fullmatch(spec.name):
        raise InvalidArgument(
            f"collection name {spec.name!r} is invalid: use 1 to 128 letters, digits, '_', '-' and '.', "
            "starting with a letter or digit",
            reason=Reason.NAME_INVALID,
            field="name",
        )
    dimension = spec.dimension
    if isinstance(dimension, bool) or not isinstance(dimension, int) or not 1 <= dimension <= MAX_DIMENSION:
        raise InvalidArgument(
            f"dimension must be an integer from 1 to {MAX_DIMENSION}, got {spec.dimension!r}",
            reason=Reason.DIMENSION_INVALID,
            field="dimension",
            metadata={"limit": MAX_DIMENSION},
        )
    if spec.metric not in METRICS:
        raise InvalidArgument(
            f"metric must be one of {', '.join(METRICS)}, got {spec.metric!r}",
            reason=Reason.METRIC_INVALID,
            field="metric",
        )
    if not isinstance(spec.model_name, str) or (spec.model_name and not is_model_name(spec.model_name)):
        raise InvalidArgument(
            f"model name {spec.model_name!r} is invalid: use 1 to 128 letters, digits, '_', '-' and '.', "
            "starting with a letter or digit",
            reason=Reason.NAME_INVALID,
            field="model.name",
        )
    if isinstance(spec.model_version, bool) or not isinstance(spec.model_version, int) or spec.model_version < 0:
        raise InvalidArgument(
            f"model version must be a non-negative integer, got {spec.model_version!r}",
            reason=Reason.NAME_INVALID,  # errors.proto has no reason of its own for a version
            field="model.version",
        )
    if spec.find_copies and not spec.model_name:
        raise InvalidArgument(
            "find_copies needs a model: fingerprints are taken from the images the model embeds, and a "
            "collection without one takes vectors only",
            reason=Reason.REQUIRED_FIELD_MISSING,
            field="model.name",
        )


class SpecUnreadable(FailedPrecondition):
    """collection.json is missing, unreadable or invalid; the message names no path."""


def _spec_to_json(spec: CollectionSpec) -> bytes:
    document = {
        "format": SPEC_FORMAT,
        "name": spec.name,
        "dimension": spec.dimension,
        "metric": spec.metric,
        "model": {"name": spec.model_name, "version": spec.model_version},
    }
    if spec.copy_thresholds is not None:
        document["copy_thresholds"] = spec.copy_thresholds.to_json()
    if spec.keep_sources:  # absent otherwise: collection.json stays as it was for collections without
        document["keep_sources"] = True
    document["crc32"] = json_checksum(document)
    return (json.dumps(document, indent=2) + "\n").encode("utf-8")


def _read_spec(directory: Path) -> tuple[CollectionSpec, int]:
    """(the spec in `directory`, its format); SpecUnreadable with a path-free reason otherwise."""
    try:
        document = json.loads((directory / SPEC_FILE).read_bytes())
        if not isinstance(document, dict) or document.get("format") not in (1, SPEC_FORMAT):
            raise ValueError(f"unknown format {document.get('format') if isinstance(document, dict) else None!r}")
        if document["format"] >= 2 and document.pop("crc32", None) != json_checksum(document):
            raise ValueError("checksum mismatch")
        spec = CollectionSpec(
            name=document["name"],
            dimension=document["dimension"],
            metric=document["metric"],
            model_name=document["model"]["name"],
            model_version=document["model"]["version"],
            copy_thresholds=Thresholds.from_json(document["copy_thresholds"]) if "copy_thresholds" in document else None,
            keep_sources=document.get("keep_sources", False) is True,
        )
        validate_spec(spec)
    except OSError as e:  # its text names the path
        problem, cause = e.strerror or type(e).__name__, e
    except InvalidArgument as e:
        problem, cause = e.message, e
    except (ValueError, KeyError, TypeError) as e:  # json.JSONDecodeError is a ValueError
        problem, cause = f"{type(e).__name__}: {e}", e
    else:
        if spec.name != directory.name:
            problem, cause = f"it names the collection {spec.name!r}", None
        else:
            return spec, document["format"]
    raise SpecUnreadable(
        f"collection '{directory.name}': {SPEC_FILE} is unreadable ({problem})",
        reason=Reason.COLLECTION_DAMAGED,
        metadata={"collection": directory.name},
    ) from cause


@dataclasses.dataclass(frozen=True)
class _Refused:
    """A collection that could not be loaded."""

    spec: CollectionSpec | None  # None when collection.json itself is unreadable
    log_text: str  # for the server log: may name paths
    reason: str  # for clients: no server path


class CollectionStore:
    """Thread-safe. `get` is cheap (a dict lookup under a lock held only briefly)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        fsync: bool = True,
        snapshot_every: int = 10_000,
        index_policy: IndexPolicy | None = None,
        max_source_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        """Loads every collection under data_dir/collections/: its latest snapshot plus log replay."""
        if snapshot_every < 1:
            raise ValueError("snapshot_every must be at least 1")
        self._root = Path(data_dir) / "collections"
        self._fsync = fsync
        self._snapshot_every = snapshot_every
        self._policy = index_policy or IndexPolicy()
        self._max_source_bytes = max_source_bytes
        self._lock = threading.Lock()
        self._collections: dict[str, Collection] = {}
        self._sources: dict[str, SourceStore] = {}  # the collections that keep sources
        self._watchers: list[Callable[[], None]] = []  # told after a collection is created or deleted
        self._failed: dict[str, _Refused] = {}  # the collections that could not be loaded
        self._closed = False
        create_directories(self._root)
        self._aliases = AliasTable(Path(data_dir), fsync=fsync)
        for path in sorted(self._root.iterdir()):
            if path.name.startswith((".creating-", ".deleted-")):
                logger.info("removing %s, left by an interrupted create or delete", path)
                shutil.rmtree(path, ignore_errors=True)
            elif path.name.startswith(".") or not path.is_dir():
                logger.warning("ignoring %s: not a collection directory", path)
            else:
                self._load(path)
        logger.info(
            "collection store at %s: %d collections loaded, %d failed",
            self._root,
            len(self._collections),
            len(self._failed),
        )

    def create(self, spec: CollectionSpec) -> CollectionInfo:
        validate_spec(spec)
        return self._install(spec, lambda staging: high_water_mark.create(staging, fsync=self._fsync))

    def restore(self, spec: CollectionSpec, fill: Callable[[Path], None]) -> CollectionInfo:
        """A collection made from a backup: `fill(staging)` writes and checks its snapshot and
        high-water mark in a staging directory, outside the store's lock (it may take long); the
        directory becomes the collection only if it returns."""
        validate_spec(spec)
        with self._lock:  # refuse a taken name before the backup's bytes are sent
            self._check_name_free(spec.name)
        return self._install(spec, fill)

    def backup(self, name: str) -> OpenBackup:
        """A fresh snapshot of the collection (or the one an alias points at), held open for sending."""
        collection = self.get(name)
        return open_backup(collection, self._root / collection.spec.name)

    def _install(self, spec: CollectionSpec, fill: Callable[[Path], None]) -> CollectionInfo:
        staging = self._root / f".creating-{spec.name}-{uuid.uuid4().hex}"
        create_directories(staging)
        try:
            write_atomically(staging / SPEC_FILE, lambda f: f.write(_spec_to_json(spec)), fsync=self._fsync)
            fill(staging)
            with self._lock:  # the name is taken from here on: the directory exists
                self._check_open()
                self._check_name_free(spec.name)
                path = self._root / spec.name
                os.rename(staging, path)
                if self._fsync:
                    fsync_directory(self._root)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        try:
            collection = self._open(path, spec)  # a restored one builds its index: not under the lock
        except BaseException:
            doomed = self._root / f".deleted-{spec.name}-{uuid.uuid4().hex}"
            os.rename(path, doomed)
            shutil.rmtree(doomed, ignore_errors=True)
            raise
        with self._lock:
            self._collections[spec.name] = collection
        logger.info("created collection %r: %s, dimension %d, %d items", spec.name, spec.metric, spec.dimension, collection.info().size)
        self._tell_watchers()
        return collection.info()

    def get(self, name: str) -> Collection:
        """The collection of that name, or the one the alias of that name points at."""
        with self._lock:
            self._check_open()
            name = self._resolve(name)
            collection = self._collections.get(name)
            if collection is not None:
                return collection
            refused = self._failed.get(name)
            if refused is not None:
                raise FailedPrecondition(
                    f"collection '{name}' is damaged: its files could not be loaded ({refused.reason}); "
                    "an operator must repair or delete it, see the server log",
                    reason=Reason.COLLECTION_DAMAGED,
                    metadata={"collection": name},
                )
            raise _not_found(name)

    def sources_of(self, name: str) -> SourceStore | None:
        """The kept pictures of the collection (its own name, not an alias's); None when it keeps none."""
        return self._sources.get(name)

    def describe(self, name: str) -> CollectionInfo:
        """The collection's info, READY or DAMAGED; NotFound when there is none."""
        with self._lock:
            self._check_open()
            name = self._resolve(name)
            collection = self._collections.get(name)
            if collection is not None:
                return collection.info()
            if name in self._failed:
                return self._refused_info(name)
            raise _not_found(name)

    def list(self) -> list[CollectionInfo]:
        """Every collection, sorted by name: those that could not be loaded too, as DAMAGED."""
        with self._lock:  # held while asking each collection: a delete cannot drop one meanwhile
            self._check_open()
            infos = [collection.info() for collection in self._collections.values()]
            infos += [self._refused_info(name) for name in self._failed]
        return sorted(infos, key=lambda info: info.spec.name)

    def failed(self) -> dict[str, str]:
        """The collections that could not be loaded, with why (for the server log: may hold paths)."""
        with self._lock:
            return {name: refused.log_text for name, refused in self._failed.items()}

    def delete(self, name: str) -> None:
        """Deletes the collection and its files (a collection that failed to load, too); never
        through an alias, nor while an alias points at it."""
        with self._lock:
            self._check_open()
            alias = self._aliases.get(name)
            if alias is not None:
                raise FailedPrecondition(
                    f"'{name}' is an alias of collection '{alias.collection}': delete the alias with DeleteAlias, "
                    "or the collection by its own name",
                    reason=Reason.ALIAS_EXISTS,
                    metadata={"alias": name},
                )
            pointing = self._aliases.pointing_at(name)
            if pointing:
                raise FailedPrecondition(
                    f"collection '{name}' cannot be deleted while aliases point at it: {', '.join(pointing)}",
                    reason=Reason.COLLECTION_HAS_ALIASES,
                    metadata={"collection": name, "aliases": ",".join(pointing)},
                )
            collection = self._collections.pop(name, None)
            if collection is None and self._failed.pop(name, None) is None:
                raise _not_found(name)
            if collection is not None:
                collection.drop()
            self._sources.pop(name, None)
            doomed = self._root / f".deleted-{name}-{uuid.uuid4().hex}"
            os.rename(self._root / name, doomed)
            if self._fsync:
                fsync_directory(self._root)
            shutil.rmtree(doomed, ignore_errors=True)  # leftovers are removed on the next start
            logger.info("deleted collection %r", name)
        self._tell_watchers()

    def watch(self, callback: Callable[[], None]) -> None:
        """`callback()` after every create and delete (outside the store's lock)."""
        self._watchers.append(callback)

    def create_alias(self, name: str, collection: str) -> Alias:
        """A new alias; a retried create of the same alias and collection returns it again."""
        with self._lock:
            self._check_open()
            existing = self._aliases.get(name)
            if existing is not None and existing.collection == collection:
                return existing
            if not isinstance(name, str) or not _NAME.fullmatch(name):
                raise InvalidArgument(
                    f"alias name {name!r} is invalid: use 1 to 128 letters, digits, '_', '-' and '.', starting with a letter or digit",
                    reason=Reason.NAME_INVALID,
                    field="name",
                )
            if existing is not None or name in self._collections or name in self._failed:
                what = f"an alias of '{existing.collection}'" if existing else "a collection"
                raise AlreadyExists(f"the name '{name}' is taken by {what}", reason=Reason.ALIAS_EXISTS, field="name", metadata={"alias": name})
            self._check_collection(collection)
            alias = self._aliases.put(name, collection)
            logger.info("alias %r -> collection %r created", name, collection)
            return alias

    def switch_alias(self, name: str, collection: str, expected_collection: str = "") -> Alias:
        """Points the alias at `collection`, atomically and durably; ALIAS_MOVED when it does not
        point at `expected_collection` (if given)."""
        with self._lock:
            self._check_open()
            alias = self._aliases.get(name)
            if alias is None:
                raise _alias_not_found(name)
            if expected_collection and alias.collection != expected_collection:
                raise FailedPrecondition(
                    f"alias '{name}' points at '{alias.collection}', not at '{expected_collection}'",
                    reason=Reason.ALIAS_MOVED,
                    field="expected_collection",
                    metadata={"alias": name, "collection": alias.collection},
                )
            self._check_collection(collection)
            switched = self._aliases.put(name, collection)
            logger.info("alias %r switched from collection %r to %r", name, alias.collection, collection)
            return switched

    def delete_alias(self, name: str) -> None:
        with self._lock:
            self._check_open()
            if self._aliases.get(name) is None:
                raise _alias_not_found(name)
            self._aliases.remove(name)
            logger.info("alias %r deleted", name)

    def aliases(self) -> list[Alias]:
        with self._lock:
            return self._aliases.all()

    def close(self) -> None:
        """Snapshots every collection and closes its log; the store is unusable afterwards."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            collections = list(self._collections.values())
        for collection in collections:
            collection.close()

    # --- internals ---

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable(
                "the collection store is closed: the server is shutting down", reason=Reason.SHUTTING_DOWN
            )

    def _tell_watchers(self) -> None:
        for callback in self._watchers:
            callback()

    def _resolve(self, name: str) -> str:
        alias = self._aliases.get(name)
        return name if alias is None else alias.collection

    def _check_not_an_alias(self, name: str) -> None:
        alias = self._aliases.get(name)
        if alias is not None:
            raise AlreadyExists(
                f"the name '{name}' is taken by an alias of '{alias.collection}'",
                reason=Reason.ALIAS_EXISTS,
                field="name",
                metadata={"alias": name},
            )

    def _check_name_free(self, name: str) -> None:
        self._check_not_an_alias(name)
        if name in self._collections or name in self._failed or (self._root / name).exists():
            raise AlreadyExists(
                f"collection '{name}' already exists",
                reason=Reason.COLLECTION_EXISTS,
                metadata={"collection": name},
            )

    def _check_collection(self, name: str) -> None:
        """An alias's target: a collection (a damaged one too), not another alias."""
        if name not in self._collections and name not in self._failed:
            hint = f" ('{name}' is an alias: name the collection it points at)" if self._aliases.get(name) else ""
            raise NotFound(
                f"collection '{name}' not found{hint}", reason=Reason.COLLECTION_NOT_FOUND, field="collection", metadata={"collection": name}
            )

    def _open(self, path: Path, spec: CollectionSpec) -> Collection:
        sources = SourceStore(path, fsync=self._fsync, max_bytes=self._max_source_bytes) if spec.keep_sources else None
        collection = Collection(path, spec, fsync=self._fsync, snapshot_every=self._snapshot_every, policy=self._policy)
        if sources is not None:
            self._sources[spec.name] = sources
        return collection

    def _refused_info(self, name: str) -> CollectionInfo:
        refused = self._failed[name]
        spec = refused.spec or CollectionSpec(name, 0, "")
        return CollectionInfo(spec, 0, DAMAGED, refused.reason)

    def _load(self, path: Path) -> None:
        spec = None
        try:
            spec, spec_format = _read_spec(path)
            if spec_format < SPEC_FORMAT and not high_water_mark.exists(path):
                logger.warning(
                    "collection %r has no high-water mark (it predates them): starting one at what its log holds",
                    spec.name,
                )
                high_water_mark.create(path, fsync=self._fsync)
            self._collections[spec.name] = self._open(path, spec)
            if spec_format < SPEC_FORMAT:  # from now on a missing mark is damage
                write_atomically(path / SPEC_FILE, lambda f: f.write(_spec_to_json(spec)), fsync=self._fsync)
        except Exception as e:  # one bad collection must not keep the others from being served
            logger.exception(
                "collection %r at %s could not be loaded; it is not served until repaired or deleted", path.name, path
            )
            cause = f" (from {type(e.__cause__).__name__}: {e.__cause__})" if e.__cause__ is not None else ""
            self._failed[path.name] = _Refused(spec, f"{type(e).__name__}: {e}{cause}", self._reason_for_clients(e))

    def _reason_for_clients(self, error: Exception) -> str:
        """Why a collection could not be loaded, in words that may reach a client: no server path."""
        if isinstance(error, LookalikeError):
            reason = error.message  # ours name files, never directories
        elif isinstance(error, OSError):
            name = f"{Path(error.filename).name}: " if error.filename else ""
            reason = f"{name}{error.strerror or type(error).__name__}"
        else:
            reason = f"an unexpected {type(error).__name__} while loading"
        return reason.replace(str(self._root.parent), "<data_dir>")  # in case a path slipped in anyway


def _alias_not_found(name: str) -> NotFound:
    return NotFound(f"alias '{name}' not found", reason=Reason.ALIAS_NOT_FOUND, field="name", metadata={"alias": name})


def _not_found(name: str) -> NotFound:
    return NotFound(f"collection '{name}' not found", reason=Reason.COLLECTION_NOT_FOUND, metadata={"collection": name})
