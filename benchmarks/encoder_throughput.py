"""Encoder speed: ONNX Runtime alone, preprocessing alone, and Embed over gRPC end to end.

    python -m benchmarks.encoder_throughput --repository demo-output/models --model digits

Needs an exported model (`make demo` makes one). Prints a markdown table for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from training.machine import describe
from encoder_service.execution_providers import providers_for
from encoder_service.model_repository import ModelRepository
from encoder_service.server import create_server
from encoder_service.settings import EncoderSettings
from lookalike.client import EncoderClient
from lookalike.preprocessing import encode_png, preprocess, to_image


def timed(fn, seconds: float) -> tuple[int, float, list[float]]:
    """Calls fn until `seconds` pass; returns (calls, elapsed, per-call latencies in ms)."""
    latencies = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        began = time.perf_counter()
        fn()
        latencies.append((time.perf_counter() - began) * 1000)
    return len(latencies), time.perf_counter() - start, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", type=Path, default=Path("demo-output/models"))
    parser.add_argument("--model", default="digits")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--batch-sizes", default="1,64,256")
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    args = parser.parse_args()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]

    repository = ModelRepository(args.repository, providers_for(args.device))
    repository.refresh()
    model = repository.resolve(args.model)
    spec = model.card.preprocessing
    rng = np.random.default_rng(0)
    tensors = rng.random((max(batch_sizes), *spec.shape), dtype=np.float32)
    pngs = [encode_png(to_image(t, spec)) for t in tensors]
    rows = []
    for batch in batch_sizes:
        calls, elapsed, latencies = timed(lambda: model.embed(tensors[:batch]), args.seconds)
        rows.append(("ONNX Runtime embed", batch, calls * batch / elapsed, np.percentile(latencies, 50), np.percentile(latencies, 99)))
    calls, elapsed, latencies = timed(lambda: preprocess(pngs[0], spec), args.seconds)
    rows.append(("PNG decode + preprocess", 1, calls / elapsed, np.percentile(latencies, 50), np.percentile(latencies, 99)))

    settings = EncoderSettings(host="127.0.0.1", port=0, model_repository=args.repository, device=args.device, refresh_seconds=0)
    server, port = create_server(settings)
    server.start()
    try:
        with EncoderClient(f"127.0.0.1:{port}") as client:
            client.wait_until_serving(30)
            for batch in batch_sizes:
                calls, elapsed, latencies = timed(lambda: client.embed(pngs[:batch], model=args.model), args.seconds)
                rows.append(("gRPC Embed, PNG bytes", batch, calls * batch / elapsed, np.percentile(latencies, 50), np.percentile(latencies, 99)))
    finally:
        server.stop(None)

    print(f"model {model.card.name} v{model.card.version} ({model.card.architecture}, {spec.shape} -> {model.card.embedding_dim}), "
          f"provider {model.execution_provider}; {describe()}")
    print("| what | batch | images/s | p50 ms/call | p99 ms/call |\n| --- | ---: | ---: | ---: | ---: |")
    for what, batch, rate, p50, p99 in rows:
        print(f"| {what} | {batch} | {rate:,.0f} | {p50:.2f} | {p99:.2f} |")


if __name__ == "__main__":
    main()
