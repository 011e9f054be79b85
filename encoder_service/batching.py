"""Dynamic batching: one queue per loaded model version, whose thread merges what callers send into
one ONNX Runtime run.

A model run has a fixed cost (~50 µs on 2 cores for the digits model) and then costs little per
image, so 32 callers sending one image each are served best by one run of 32. Each model version
gets a `ModelQueue`: callers `submit` their decoded (n, C, H, W) arrays and wait for their rows of
the result; the queue's thread takes the oldest arrays, as many as fit in `max_batch` images, and
runs them together. When fewer wait, it waits up to `max_delay` after the oldest one arrived for
more (0: it runs at once what is there; while a run goes on, the next batch gathers anyway). An
array larger than `max_batch` runs alone, whole.

The queue is bounded: `admitted(n)` reserves room for a request's images before they are
decoded, and holds it until their embeddings are back, so decoding, waiting and running images
all count against `max_images`. A request that does not fit is refused at once with
RESOURCE_EXHAUSTED (QUEUE_FULL), retryable, instead of the queue growing with its callers.

With batching off (`enabled=False`) each array runs in its caller's thread, as before this queue
existed: the benchmarks compare the two (benchmarks/RESULTS.md).

On a GPU every run has one shape, (max_batch, C, H, W): the rows are padded with zeros and a larger
array is cut into runs of max_batch. ONNX Runtime's CUDA convolutions set themselves up again
whenever the input shape differs from their previous run (measured on an H200 with the digits
model: 0.1-0.2 ms a run at a fixed shape, 20 ms a run when the batch size changes from run to run,
which merged batches do all the time), while padding a run to 64 rows costs a few tenths of a
millisecond there. On a CPU a run costs by the row, so the shape follows the batch.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from concurrent.futures import Future

import numpy as np

from encoder_service import metrics
from encoder_service.execution_providers import CPU
from encoder_service.onnx_model import OnnxModel
from lookalike.errors import Reason
from server_toolkit.load_limits import Budget

log = logging.getLogger(__name__)


class _Job:
    __slots__ = ("inputs", "future", "queued_at")

    def __init__(self, inputs: np.ndarray) -> None:
        self.inputs = inputs
        self.future: Future[np.ndarray] = Future()
        self.queued_at = time.perf_counter()


class ModelQueue:
    """The queue and batching thread in front of one model version (see the module docstring)."""

    def __init__(
        self, model: OnnxModel, *, enabled: bool, max_batch: int, max_delay_seconds: float, max_images: int, fixed_shape: bool | None = None
    ) -> None:
        """`fixed_shape`: every run padded to max_batch rows (see the module docstring); None: on a GPU only."""
        self.model = model
        self.enabled, self.max_batch, self.max_delay = enabled, max_batch, max_delay_seconds
        self.fixed_shape = model.execution_provider != CPU if fixed_shape is None else fixed_shape
        self.room = Budget(max_images, unit="images", setting="max_queue_images", reason=Reason.QUEUE_FULL)
        self._metrics = metrics.ModelMetrics(model, self.room)
        self._jobs: collections.deque[_Job] = collections.deque()
        self._queued = 0  # images in _jobs
        self._changed = threading.Condition()
        self._closing = False
        card = model.card
        self._thread = threading.Thread(target=self._run, name=f"batch-{card.name}-{card.version}", daemon=True)
        if enabled:
            self._thread.start()

    def admitted(self, images: int) -> contextlib.AbstractContextManager[None]:
        """Room for `images` until the block ends; ResourceExhausted (QUEUE_FULL) at once without it."""
        return self.room.reserved(images)

    def submit(self, inputs: np.ndarray) -> Future[np.ndarray]:
        """Queues (n, C, H, W) float32 inputs; the future gives their (n, D) embeddings."""
        job = _Job(inputs)
        if not self.enabled:
            self._execute([job])
            return job.future
        with self._changed:
            if self._closing:  # a request that resolved this version just before it was unloaded
                run_now = True
            else:
                run_now = False
                self._jobs.append(job)
                self._queued += len(inputs)
                self._changed.notify()
        if run_now:
            self._execute([job])
        return job.future

    def close(self) -> None:
        """Runs what is queued, then ends the thread; later submissions run in their callers' threads."""
        with self._changed:
            self._closing = True
            self._changed.notify()
        if self._thread.is_alive():
            self._thread.join()
        self._metrics.remove()

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._execute(batch)

    def _next_batch(self) -> list[_Job] | None:
        with self._changed:
            while not self._jobs:
                if self._closing:
                    return None
                self._changed.wait()
            deadline = self._jobs[0].queued_at + self.max_delay
            while self._queued < self.max_batch and not self._closing:
                left = deadline - time.perf_counter()
                if left <= 0 or not self._changed.wait(left):
                    break
            batch = [self._jobs.popleft()]
            size = len(batch[0].inputs)
            while self._jobs and size + len(self._jobs[0].inputs) <= self.max_batch:
                job = self._jobs.popleft()
                batch.append(job)
                size += len(job.inputs)
            self._queued -= size
            return batch

    def _execute(self, batch: list[_Job]) -> None:
        started = time.perf_counter()
        for job in batch:
            self._metrics.queue_seconds.observe(started - job.queued_at)
        inputs = batch[0].inputs if len(batch) == 1 else np.concatenate([job.inputs for job in batch])
        try:
            embeddings = self._embed(inputs)  # (B, D)
        except Exception as error:  # every caller of the batch gets it; the queue goes on
            log.exception("model run failed", extra={"fields": {"model": self.model.card.name, "images": len(inputs)}})
            for job in batch:
                job.future.set_exception(error)
            return
        self._metrics.inference_seconds.observe(time.perf_counter() - started)
        self._metrics.batch_size.observe(len(inputs))
        at = 0
        for job in batch:
            job.future.set_result(embeddings[at : at + len(job.inputs)])
            at += len(job.inputs)


    def _embed(self, inputs: np.ndarray) -> np.ndarray:
        if not self.fixed_shape:
            return self.model.embed(inputs)
        runs = []
        for start in range(0, len(inputs), self.max_batch):
            rows = inputs[start : start + self.max_batch]
            padded = np.zeros((self.max_batch, *rows.shape[1:]), np.float32)
            padded[: len(rows)] = rows
            runs.append(self.model.embed(padded)[: len(rows)])
        return runs[0] if len(runs) == 1 else np.concatenate(runs)
