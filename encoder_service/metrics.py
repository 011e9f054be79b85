"""The encoder's own Prometheus metrics, beside the per-call ones every server has (server_toolkit/metrics.py).

Per model version (labels `model`, `version`):
- `lookalike_encoder_queue_seconds`: how long an array of decoded images waited for its model run
- `lookalike_encoder_inference_seconds`: one ONNX Runtime run
- `lookalike_encoder_batch_size`: images per run; above 1 when dynamic batching merged requests
- `lookalike_encoder_queue_images`: images admitted (decoding, queued or running) against max_queue_images
- `lookalike_encoder_execution_provider`: 1, labelled with the `provider` actually running and the
  one `requested` first; `lookalike_encoder_provider_fallback` is 1 when they differ (CUDA asked
  for, CPU running), the series to alert on
And for the process: `lookalike_encoder_decode_seconds`, decoding and preprocessing one image.
"""

from __future__ import annotations

import prometheus_client

from encoder_service.onnx_model import OnnxModel
from server_toolkit.load_limits import Budget

_MODEL = ("model", "version")
_SECONDS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)

QUEUE_SECONDS = prometheus_client.Histogram(
    "lookalike_encoder_queue_seconds", "Time decoded images waited in their model's queue for a run.", _MODEL, buckets=_SECONDS
)
INFERENCE_SECONDS = prometheus_client.Histogram(
    "lookalike_encoder_inference_seconds", "Time of one ONNX Runtime run of a model's encoder.", _MODEL, buckets=_SECONDS
)
BATCH_SIZE = prometheus_client.Histogram(
    "lookalike_encoder_batch_size", "Images per model run.", _MODEL, buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
)
QUEUE_IMAGES = prometheus_client.Gauge(
    "lookalike_encoder_queue_images", "Images admitted to a model's queue (decoding, waiting or running) and not yet answered.", _MODEL
)
EXECUTION_PROVIDER = prometheus_client.Gauge(
    "lookalike_encoder_execution_provider",
    "1 per loaded model version, labelled with the ONNX Runtime provider running it and the one requested first.",
    (*_MODEL, "provider", "requested"),
)
PROVIDER_FALLBACK = prometheus_client.Gauge(
    "lookalike_encoder_provider_fallback", "1 when a model version runs on another provider than the one requested first.", _MODEL
)
DECODE_SECONDS = prometheus_client.Histogram(
    "lookalike_encoder_decode_seconds", "Time to decode and preprocess one encoded image.", buckets=_SECONDS
)


class ModelMetrics:
    """One model version's series; `remove()` drops them when the version is unloaded."""

    def __init__(self, model: OnnxModel, queue_room: Budget) -> None:
        self._labels = (model.card.name, str(model.card.version))
        self._provider_labels = (*self._labels, model.execution_provider, model.requested_provider)
        self.queue_seconds = QUEUE_SECONDS.labels(*self._labels)
        self.inference_seconds = INFERENCE_SECONDS.labels(*self._labels)
        self.batch_size = BATCH_SIZE.labels(*self._labels)
        QUEUE_IMAGES.labels(*self._labels).set_function(lambda: queue_room.used)
        EXECUTION_PROVIDER.labels(*self._provider_labels).set(1)
        PROVIDER_FALLBACK.labels(*self._labels).set(int(model.execution_provider != model.requested_provider))

    def remove(self) -> None:
        for metric in (QUEUE_SECONDS, INFERENCE_SECONDS, BATCH_SIZE, QUEUE_IMAGES, PROVIDER_FALLBACK):
            _remove(metric, self._labels)
        _remove(EXECUTION_PROVIDER, self._provider_labels)


def _remove(metric, labels: tuple[str, ...]) -> None:
    try:
        metric.remove(*labels)
    except KeyError:  # already gone: a version loaded twice in one process (tests) shares its series
        pass
