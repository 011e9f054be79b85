"""The versioned model repository: `models/<name>/<version>/` folders, loaded into ONNX Runtime.

`refresh()` loads versions that appeared and drops ones that vanished, building
the new table aside and swapping it in one assignment, so a request in flight
keeps the model it resolved and no request ever sees a half-loaded version.
Each loaded version is served through its own queue (`ModelQueue`, dynamic
batching); a dropped version's queue runs what it holds, then stops.

Which versions (the version policy): for a model named in `serve_versions`,
exactly the versions listed there; for the others all those on disk, or the
newest `keep_versions`; less those an operator unloaded (`unload`, the
UnloadModel RPC) until they are loaded again (`load`). A listed version that is
not on disk is reported with the failures (ListModels), not waited for: the
model's other listed versions serve meanwhile. A version is warmed up (one run at
the largest batch, so ONNX Runtime allocates its buffers) before it is
published. A version that fails to load is recorded with why (`failures`, shown
by ListModels) and retried when its encoder file changes; the versions already
served go on, so a broken new version leaves the previous one serving.

Above the policy: a version that collections use (`ModelUse`, the ReportModelUse
RPC) is served while they use it, whatever the policy says, and `unload` refuses
it (MODEL_IN_USE): unloading it would break those collections' searches by image.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from encoder_service.batching import ModelQueue
from encoder_service.model_use import ModelUse
from encoder_service.onnx_model import OnnxModel
from lookalike import model_format
from lookalike.errors import FailedPrecondition, NotFound, Reason, Unavailable

log = logging.getLogger(__name__)


class ModelRepository:
    def __init__(
        self,
        root: Path,
        providers: list[str],
        queue_for: Callable[[OnnxModel], ModelQueue],
        *,
        intra_op_threads: int = 0,
        default_model: str = "",
        keep_versions: int = 0,
        serve_versions: dict[str, list[int]] | None = None,
        warm_up_batch: int = 1,
        model_use: ModelUse | None = None,
        engine_cache: Path = Path("tensorrt-cache"),
    ) -> None:
        """`queue_for` puts a loaded model behind its queue (the service's batching settings);
        `keep_versions` 0 serves every version, N the newest N of each model; `serve_versions`
        lists the versions to serve of the models it names."""
        self.root = root
        self.providers = providers
        self.queue_for = queue_for
        self.intra_op_threads = intra_op_threads
        self.default_model = default_model
        self.keep_versions = keep_versions
        self.serve_versions = {name: set(versions) for name, versions in (serve_versions or {}).items()}
        self.warm_up_batch = warm_up_batch
        self.model_use = model_use or ModelUse()
        self.engine_cache = engine_cache
        self._models: dict[tuple[str, int], ModelQueue] = {}
        # version -> (mtime of its encoder when loading failed, why, without server paths)
        self._broken: dict[tuple[str, int], tuple[float, str]] = {}
        self._missing: set[tuple[str, int]] = set()  # listed in serve_versions, not on disk at the last scan
        self._unloaded: set[tuple[str, int]] = set()
        self._loaded_by_hand: set[tuple[str, int]] = set()  # kept whatever the policy says
        self._refresh_lock = threading.Lock()

    def refresh(self) -> bool:
        """Rescans the folder; returns True when the set of loaded versions changed."""
        with self._refresh_lock:
            on_disk = set(model_format.scan_repository(self.root))
            listed = {(name, version) for name, versions in self.serve_versions.items() for version in versions}
            self._missing = listed - on_disk
            in_use = self.model_use.in_use().keys() & on_disk
            found = ((self._by_policy(on_disk) | (self._loaded_by_hand & on_disk)) - self._unloaded) | in_use
            current = self._models
            table = {key: model for key, model in current.items() if key in found}
            for key in sorted(found - current.keys()):
                mtime = self._encoder_mtime(key)
                if key in self._broken and self._broken[key][0] == mtime:
                    continue  # already reported; retried once its files change
                try:
                    table[key] = self._load(key, mtime)
                except FailedPrecondition:  # one broken version must not take the others down
                    continue
            return self._publish(table)

    def load(self, name: str, version: int = 0) -> ModelQueue:
        """Serves `name` at `version` (0: the newest in the repository), loading it when needed:
        NotFound without its files, FailedPrecondition (MODEL_LOAD_FAILED) when they do not load."""
        with self._refresh_lock:
            on_disk = sorted(v for n, v in model_format.scan_repository(self.root) if n == name)
            key = (name, version or (on_disk[-1] if on_disk else 0))
            if key[1] not in on_disk:
                raise NotFound(
                    f"the repository has no model {name!r} version {version or '(any)'}; versions there: {on_disk}",
                    reason=Reason.MODEL_NOT_FOUND,
                    field="model",
                    metadata={"model": name, "version": version},
                )
            self._unloaded.discard(key)
            self._loaded_by_hand.add(key)
            if key in self._models:
                return self._models[key]
            queue = self._load(key, self._encoder_mtime(key))
            self._publish({**self._models, key: queue})
            return queue

    def unload(self, name: str, version: int = 0) -> list[tuple[str, int]]:
        """Stops serving `name` at `version` (0: all its versions) until `load`; what was unloaded."""
        with self._refresh_lock:
            gone = sorted(key for key in self._models if key[0] == name and version in (0, key[1]))
            if not gone:
                raise NotFound(
                    f"no version {version} of model {name!r} is served" if version else f"no model named {name!r} is served",
                    reason=Reason.MODEL_NOT_FOUND,
                    field="model",
                    metadata={"model": name, "version": version},
                )
            in_use = self.model_use.in_use()
            for key in gone:
                if key in in_use:
                    raise FailedPrecondition(
                        f"model {key[0]} v{key[1]} is used by {', '.join(in_use[key])}: their searches by image need it",
                        reason=Reason.MODEL_IN_USE,
                        field="model",
                        metadata={"model": key[0], "version": key[1], "used_by": ",".join(in_use[key])},
                    )
            self._unloaded.update(gone)
            self._loaded_by_hand.difference_update(gone)
            self._publish({key: queue for key, queue in self._models.items() if key not in gone})
            log.info("model unloaded", extra={"fields": {"model": name, "versions": [v for _, v in gone]}})
            return gone

    def failures(self) -> dict[tuple[str, int], str]:
        """The versions that failed to load and are not served, and the listed ones missing, with why."""
        models = self._models
        failed = {key: why for key, (_, why) in self._broken.items() if key not in models}
        for key in self._missing - models.keys():
            failed[key] = f"version {key[1]} of {key[0]} is in the version policy (serve_versions) but not in the repository"
        return dict(sorted(failed.items()))

    def _load(self, key: tuple[str, int], mtime: float) -> ModelQueue:
        """The version loaded and warmed up, behind its queue; FailedPrecondition (recorded) when it fails."""
        try:
            model = OnnxModel(
                model_format.version_dir(self.root, *key), self.providers, self.intra_op_threads, spinning=False, engine_cache=self.engine_cache
            )
            model.embed(np.zeros((self.warm_up_batch, *model.card.preprocessing.shape), np.float32))
        except Exception as error:  # anything ONNX Runtime or the metadata raise
            why = str(error).replace(str(self.root.resolve()), "<repository>").replace(str(self.root), "<repository>")
            self._broken[key] = (mtime, why)
            log.error("cannot load model", extra={"fields": {"model": key[0], "version": key[1], "error": str(error)}})
            raise FailedPrecondition(
                f"model {key[0]} v{key[1]} could not be loaded: {why}",
                reason=Reason.MODEL_LOAD_FAILED,
                metadata={"model": key[0], "version": key[1]},
            ) from None
        self._broken.pop(key, None)
        _log_loaded(model)
        return self.queue_for(model)

    def _publish(self, table: dict[tuple[str, int], ModelQueue]) -> bool:
        """Swaps `table` in; closes the queues it drops. Call with the lock held."""
        current, self._models = self._models, table
        for key in current.keys() - table.keys():
            current[key].close()
        return table.keys() != current.keys()

    def _by_policy(self, found) -> set[tuple[str, int]]:
        versions: dict[str, list[int]] = {}
        for name, version in found:
            versions.setdefault(name, []).append(version)
        chosen = set()
        for name, on_disk in versions.items():
            if name in self.serve_versions:
                chosen.update((name, v) for v in on_disk if v in self.serve_versions[name])
            else:  # keep_versions 0 keeps them all: [-0:] is the whole list
                chosen.update((name, v) for v in sorted(on_disk)[-self.keep_versions :])
        return chosen

    def _encoder_mtime(self, key: tuple[str, int]) -> float:
        return (model_format.version_dir(self.root, *key) / model_format.ENCODER_FILE).stat().st_mtime

    def resolve(self, name: str = "", version: int = 0) -> ModelQueue:
        """The queue of model `name` at `version` (its model: `.model`); empty name: the default
        model; version 0: its newest version."""
        models = self._models  # one read: a concurrent refresh swaps the whole table
        if not models:
            # Never the repository path: server paths must not reach clients (server.py logs it).
            raise Unavailable("no model is loaded yet; retry shortly", reason=Reason.MODELS_LOADING)
        name = name or self.default_model or min(n for n, _ in models)
        asked = {"model": name, "version": version}
        if version < 0:
            raise NotFound(
                f"model version must be positive, got {version}",
                reason=Reason.MODEL_NOT_FOUND,
                field="model.version",
                metadata=asked,
            )
        versions = sorted(v for n, v in models if n == name)
        if not versions:
            raise NotFound(
                f"no model named {name!r}; loaded: {sorted({n for n, _ in models})}",
                reason=Reason.MODEL_NOT_FOUND,
                field="model.name",
                metadata=asked,
            )
        if version == 0:
            version = versions[-1]
        if (name, version) not in models:
            raise NotFound(
                f"model {name!r} has no version {version}; loaded versions: {versions}",
                reason=Reason.MODEL_NOT_FOUND,
                field="model.version",
                metadata=asked,
            )
        return models[(name, version)]

    def all(self) -> list[OnnxModel]:
        return [queue.model for _, queue in sorted(self._models.items())]

    def close(self) -> None:
        """Runs what the queues hold and stops their threads; for the end of the process."""
        with self._refresh_lock:
            queues, self._models = self._models, {}
        for queue in queues.values():
            queue.close()


def _log_loaded(model: OnnxModel) -> None:
    """The provider running the model, once per version; a WARNING when it is not the one asked for."""
    fields = {"model": model.card.name, "version": model.card.version, "provider": model.execution_provider}
    if model.execution_provider == model.requested_provider:
        log.info("model loaded", extra={"fields": fields})
    else:  # ONNX Runtime fell back without raising (CUDA's libraries or device failed): say so
        log.warning(
            "model loaded on a fallback provider", extra={"fields": {**fields, "requested_provider": model.requested_provider}}
        )
