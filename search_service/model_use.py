"""Tells the encoder which model versions this service's collections hold vectors of, so it keeps
serving them (the encoder's ReportModelUse; encoder_service/model_use.py): every `every_seconds`
(the first one period after start), and at once after a collection is created or deleted (`poke`). A report lasts three periods on the
encoder, so a search service that is gone stops holding versions there.

Best effort: an encoder that cannot be reached is logged once until it answers again; its version
policy alone decides meanwhile, as it did before reports existed.
"""

from __future__ import annotations

import logging
import threading

import grpc

from search_service.collection_store import CollectionStore
from search_service.encoder_gateway import EncoderGateway

log = logging.getLogger(__name__)


class ModelUseReporter:
    def __init__(self, store: CollectionStore, encoder: EncoderGateway, user: str, every_seconds: float = 60.0) -> None:
        self.store, self.encoder, self.user, self.every = store, encoder, user, every_seconds
        self._poked = threading.Event()
        self._stopping = threading.Event()
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="model-use", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def poke(self) -> None:
        """Report now (a collection came or went)."""
        self._poked.set()

    def stop(self) -> None:
        self._stopping.set()
        self._poked.set()
        self._thread.join(10)

    def uses(self) -> dict[tuple[str, int], list[str]]:
        uses: dict[tuple[str, int], list[str]] = {}
        for info in self.store.list():
            spec = info.spec
            if spec.model_name and spec.model_version:
                uses.setdefault((spec.model_name, spec.model_version), []).append(spec.name)
        return uses

    def report(self) -> None:
        try:
            missing = self.encoder.report_model_use(self.user, self.uses(), ttl_seconds=int(3 * self.every))
        except grpc.RpcError as error:
            if not self._failing:
                log.warning("cannot tell the encoder which models are in use; retrying", extra={"fields": {"error": error.code().name}})
            self._failing = True
            return
        self._failing = False
        for ref in missing:
            log.error("a model version in use is not served by the encoder", extra={"fields": {"model": ref.name, "version": ref.version}})

    def _run(self) -> None:
        # Waits before the first report: a call at start, before the encoder is up, would leave the
        # shared channel in reconnect backoff just when the first clients arrive. Until the first
        # report (a period, or the first create or delete) the encoder's own policy decides.
        while True:
            self._poked.wait(self.every)
            self._poked.clear()
            if self._stopping.is_set():
                return
            self.report()
