"""The decode pool: a request's images decoded in parallel, each part queued for its model run as
soon as it is ready, so decoding overlaps inference.

A request's images are cut into parts of at most PART_IMAGES; each part is one task of the pool
(decode_threads threads, encoder_service/thread_plan.py), which decodes and preprocesses its
images and submits the stacked array to the model's queue (encoder_service/batching.py). While
the batching thread runs part 1, the pool decodes part 2; parts of different requests meet in the
queue and share runs. All decoding of the service happens here, so decode_threads bounds it,
whatever the number of gRPC workers. `Decoding.embeddings()` gives the rows back in request
order.

Every bad image of a request is reported at once (`inputs.each`), whatever part it was in. A
part stops at its next image once the call is cancelled; a failed request cancels its parts not
yet started and waits for those running, so the room it holds in the queue and the decode budget
is released only when nothing of it runs any more.
"""

from __future__ import annotations

import math
import time
from concurrent import futures

import numpy as np

from encoder_service import inputs, metrics
from encoder_service.batching import ModelQueue
from lookalike import preprocessing
from lookalike.errors import InvalidArgument, LookalikeError, Reason
from lookalike.v1 import images_pb2
from server_toolkit.grpc_server import stop_if_cancelled

# Small enough that a batch of 64 is decoded in 4 parts whose runs overlap the next part's
# decoding; large enough that a part's run (and the queue's handling of it) is worth its cost.
PART_IMAGES = 16


class DecodePool:
    def __init__(self, threads: int, max_image_pixels: int) -> None:
        self.threads = threads
        self.max_image_pixels = max_image_pixels
        self._pool = futures.ThreadPoolExecutor(threads, thread_name_prefix="decode")

    def start(self, images, queue: ModelQueue, context) -> Decoding:
        """Starts decoding `images` (a request's Image messages) into `queue`; returns at once."""
        size = min(PART_IMAGES, math.ceil(len(images) / self.threads))
        parts = [
            self._pool.submit(self._decode_part, start, images[start : start + size], queue, context)
            for start in range(0, len(images), size)
        ]
        return Decoding(parts)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _decode_part(self, start: int, images, queue: ModelQueue, context) -> futures.Future:
        spec = queue.model.card.preprocessing
        rows = inputs.each("images", images, lambda image: self._model_input(image, spec, context), start=start)
        return queue.submit(np.stack(rows))

    def _model_input(self, image: images_pb2.Image, spec: preprocessing.Preprocessing, context) -> np.ndarray:
        stop_if_cancelled(context)  # a batch of big pictures takes seconds: not for a caller that is gone
        source = image.WhichOneof("source")
        if source == "encoded":
            began = time.perf_counter()
            try:
                return preprocessing.preprocess(image.encoded, spec, self.max_image_pixels)
            except LookalikeError as error:
                raise error.at("encoded") from None
            finally:
                metrics.DECODE_SECONDS.observe(time.perf_counter() - began)
        if source == "tensor":
            return inputs.tensor(image.tensor, spec.shape)
        raise InvalidArgument("neither encoded bytes nor a tensor", reason=Reason.REQUIRED_FIELD_MISSING, field="")


class Decoding:
    """The parts of one request on their way through the pool and the model's queue."""

    def __init__(self, parts: list[futures.Future]) -> None:
        self._parts = parts

    def embeddings(self) -> np.ndarray:
        """(N, D) embeddings in request order; InvalidArgument naming every bad image of the request."""
        try:
            queued, failures = [], []
            for part in self._parts:
                try:
                    queued.append(part.result())
                except InvalidArgument as error:
                    failures.append(error)
            if failures:
                raise InvalidArgument.from_violations([v for f in failures for v in f.field_violations], failures[0].metadata)
            rows = [run.result() for run in queued]
        except BaseException:
            self.abandon()
            raise
        return rows[0] if len(rows) == 1 else np.concatenate(rows)

    def abandon(self) -> None:
        """Cancels the parts not started and waits for the ones decoding and their model runs."""
        for part in self._parts:
            part.cancel()
        futures.wait(self._parts)
        futures.wait([part.result() for part in self._parts if not part.cancelled() and part.exception() is None])
