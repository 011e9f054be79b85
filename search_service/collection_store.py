"""Every collection of the search service, under `<data_dir>/collections/<name>/`.

Creating writes the new collection's `collection.json` in a hidden staging directory and
renames it into place; deleting renames the directory to a hidden name before removing it.
Either way a crash leaves a whole collection or none, and hidden leftovers are removed on
the next start. A collection that fails to load (a corrupt log or snapshot) is not served
and not silently emptied: it is logged (with its path and the exception), reported by
`failed()`, and every call naming it raises FailedPrecondition (COLLECTION_DAMAGED) until an
operator repairs or deletes it. Clients never see why in detail: the exception text can hold
the server's paths, and the server log has it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
import uuid
from pathlib import Path

from lookalike.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Reason, Unavailable
from lookalike.model_format import is_model_name
from search_service.collection import METRICS, Collection, CollectionInfo, CollectionSpec
from search_service.vector_index import IndexPolicy
from server_toolkit.durable_files import fsync_directory, write_atomically

logger = logging.getLogger(__name__)

MAX_DIMENSION = 65_536
SPEC_FILE = "collection.json"
SPEC_FORMAT = 1
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


def _spec_to_json(spec: CollectionSpec) -> bytes:
    document = {
        "format": SPEC_FORMAT,
        "name": spec.name,
        "dimension": spec.dimension,
        "metric": spec.metric,
        "model": {"name": spec.model_name, "version": spec.model_version},
    }
    return (json.dumps(document, indent=2) + "\n").encode("utf-8")


def _spec_from_json(data: bytes) -> CollectionSpec:
    document = json.loads(data)
    if document.get("format") != SPEC_FORMAT:
        raise ValueError(f"unknown {SPEC_FILE} format {document.get('format')!r}")
    spec = CollectionSpec(
        name=document["name"],
        dimension=document["dimension"],
        metric=document["metric"],
        model_name=document["model"]["name"],
        model_version=document["model"]["version"],
    )
    validate_spec(spec)
    return spec


class CollectionStore:
    """Thread-safe. `get` is cheap (a dict lookup under a lock held only briefly)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        fsync: bool = True,
        snapshot_every: int = 10_000,
        index_policy: IndexPolicy | None = None,
    ) -> None:
        """Loads every collection under data_dir/collections/: its latest snapshot plus log replay."""
        if snapshot_every < 1:
            raise ValueError("snapshot_every must be at least 1")
        self._root = Path(data_dir) / "collections"
        self._fsync = fsync
        self._snapshot_every = snapshot_every
        self._policy = index_policy or IndexPolicy()
        self._lock = threading.Lock()
        self._collections: dict[str, Collection] = {}
        self._failed: dict[str, str] = {}  # name -> why it could not be loaded
        self._closed = False
        self._root.mkdir(parents=True, exist_ok=True)
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
        with self._lock:
            self._check_open()
            path = self._root / spec.name
            if spec.name in self._collections or spec.name in self._failed or path.exists():
                raise AlreadyExists(
                    f"collection '{spec.name}' already exists",
                    reason=Reason.COLLECTION_EXISTS,
                    metadata={"collection": spec.name},
                )
            staging = self._root / f".creating-{spec.name}-{uuid.uuid4().hex}"
            staging.mkdir()
            try:
                write_atomically(staging / SPEC_FILE, lambda f: f.write(_spec_to_json(spec)), fsync=self._fsync)
                os.rename(staging, path)
                if self._fsync:
                    fsync_directory(self._root)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            collection = self._open(path, spec)
            self._collections[spec.name] = collection
            logger.info("created collection %r: %s, dimension %d", spec.name, spec.metric, spec.dimension)
            return collection.info()

    def get(self, name: str) -> Collection:
        with self._lock:
            self._check_open()
            collection = self._collections.get(name)
            if collection is not None:
                return collection
            if name in self._failed:
                raise FailedPrecondition(
                    f"collection '{name}' is damaged: its files could not be loaded; see the server log",
                    reason=Reason.COLLECTION_DAMAGED,
                    metadata={"collection": name},
                )
            raise _not_found(name)

    def list(self) -> list[CollectionInfo]:
        """Every loaded collection, sorted by name."""
        with self._lock:
            self._check_open()
            return [self._collections[name].info() for name in sorted(self._collections)]

    def failed(self) -> dict[str, str]:
        """The collections that could not be loaded, with why (for the server log: may hold paths)."""
        with self._lock:
            return dict(self._failed)

    def delete(self, name: str) -> None:
        """Deletes the collection and its files (a collection that failed to load, too)."""
        with self._lock:
            self._check_open()
            collection = self._collections.pop(name, None)
            if collection is None and self._failed.pop(name, None) is None:
                raise _not_found(name)
            if collection is not None:
                collection.drop()
            doomed = self._root / f".deleted-{name}-{uuid.uuid4().hex}"
            os.rename(self._root / name, doomed)
            if self._fsync:
                fsync_directory(self._root)
            shutil.rmtree(doomed, ignore_errors=True)  # leftovers are removed on the next start
            logger.info("deleted collection %r", name)

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

    def _open(self, path: Path, spec: CollectionSpec) -> Collection:
        return Collection(
            path, spec, fsync=self._fsync, snapshot_every=self._snapshot_every, policy=self._policy
        )

    def _load(self, path: Path) -> None:
        try:
            spec = _spec_from_json((path / SPEC_FILE).read_bytes())
            if spec.name != path.name:
                raise ValueError(f"{SPEC_FILE} names the collection {spec.name!r}")
            self._collections[spec.name] = self._open(path, spec)
        except Exception as e:  # one bad collection must not keep the others from being served
            logger.exception(
                "collection %r at %s could not be loaded; it is not served until repaired or deleted", path.name, path
            )
            self._failed[path.name] = f"{type(e).__name__}: {e}"


def _not_found(name: str) -> NotFound:
    return NotFound(f"collection '{name}' not found", reason=Reason.COLLECTION_NOT_FOUND, metadata={"collection": name})
