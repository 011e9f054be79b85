"""The versioned model repository: `models/<name>/<version>/` folders, loaded into ONNX Runtime.

`refresh()` loads versions that appeared and drops ones that vanished, building
the new table aside and swapping it in one assignment, so a request in flight
keeps the model it resolved and no request ever sees a half-loaded version.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from encoder_service.onnx_model import OnnxModel
from lookalike import model_format
from lookalike.errors import NotFound, Reason, Unavailable

log = logging.getLogger(__name__)


class ModelRepository:
    def __init__(self, root: Path, providers: list[str], intra_op_threads: int = 0, default_model: str = "") -> None:
        self.root = root
        self.providers = providers
        self.intra_op_threads = intra_op_threads
        self.default_model = default_model
        self._models: dict[tuple[str, int], OnnxModel] = {}
        self._broken: dict[tuple[str, int], float] = {}  # version -> mtime of its encoder when loading failed
        self._refresh_lock = threading.Lock()

    def refresh(self) -> bool:
        """Rescans the folder; returns True when the set of loaded versions changed."""
        with self._refresh_lock:
            found = set(model_format.scan_repository(self.root))
            current = self._models
            table = {key: model for key, model in current.items() if key in found}
            for key in sorted(found - current.keys()):
                version_dir = model_format.version_dir(self.root, *key)
                mtime = (version_dir / model_format.ENCODER_FILE).stat().st_mtime
                if self._broken.get(key) == mtime:
                    continue  # already reported; retried once its files change
                try:
                    table[key] = OnnxModel(version_dir, self.providers, self.intra_op_threads)
                except Exception as error:  # one broken version must not take the others down
                    self._broken[key] = mtime
                    log.error("cannot load model", extra={"fields": {"model": key[0], "version": key[1], "error": str(error)}})
                    continue
                log.info(
                    "model loaded",
                    extra={"fields": {"model": key[0], "version": key[1], "provider": table[key].execution_provider}},
                )
            changed = table.keys() != current.keys()
            self._models = table
            return changed

    def resolve(self, name: str = "", version: int = 0) -> OnnxModel:
        """The model `name` at `version`; empty name: the default model; version 0: its newest version."""
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
        return [model for _, model in sorted(self._models.items())]
