"""Encoder speed in one run: the raw path (decode + ONNX Runtime, no service) against the service.

    python -m benchmarks.encoder_throughput --repository demo-output/models --model digits \
        --checkpoint demo-output/digits.pt
    python -m benchmarks.encoder_throughput --device cuda ...   # on a GPU, with the `gpu` extra

Needs an exported model (`make demo` makes one). Rows, all on the same model, device and cores:
- ONNX Runtime alone, preprocessed tensors, batch 1/16/64, `--threads` intra-op threads;
- PyTorch eager on the same model (its checkpoint, `--checkpoint`), same batches and threads,
  under `torch.inference_mode`, embeddings back in host memory as ONNX Runtime gives them;
- decode + preprocess alone, PNG and JPEG, one image at a time;
- raw decode + ONNX Runtime at batch 64: decode 64 files, stack, one run, in one thread; before
  and after the service, the faster of the two being the reference the service's bars are
  ratios of;
- the service (`lookalike serve-encoder`, a child process with its default settings), PNG and
  JPEG at batch 1/16/64, packed float32 embeddings, with 1 call in flight and with 4;
- 32 concurrent one-image clients, with dynamic batching on and off (`--no-dynamic-batching`).
The load comes from this process, on the same cores as the server: the service's figures
include sharing the machine with its clients, which the raw path does not. Prints a markdown
table and the ratios for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from encoder_service.execution_providers import providers_for
from encoder_service.onnx_model import OnnxModel
from lookalike import model_format
from lookalike.client import EncoderClient, to_image_message
from lookalike.preprocessing import encode_png, preprocess, to_image
from lookalike.v1 import encoder_pb2, images_pb2
from training.machine import describe

PACKED = encoder_pb2.EMBEDDING_ENCODING_PACKED_FLOAT32


def timed(fn, seconds: float) -> tuple[float, list[float]]:
    """Calls fn until `seconds` pass; returns (calls per second, per-call latencies in ms)."""
    latencies = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        began = time.perf_counter()
        fn()
        latencies.append((time.perf_counter() - began) * 1000)
    return len(latencies) / (time.perf_counter() - start), latencies


def concurrent(stub, request: encoder_pb2.EmbedRequest, in_flight: int, seconds: float) -> tuple[float, list[float]]:
    """`in_flight` client threads, each sending `request` again as soon as its answer arrives;
    (calls per second, per-call latencies in ms). A failed call fails the benchmark."""
    latencies: list[list[float]] = [[] for _ in range(in_flight)]
    errors: list[BaseException] = []
    deadline = time.perf_counter() + seconds

    def client(mine: list[float]) -> None:
        try:
            while (began := time.perf_counter()) < deadline:
                stub.Embed(request, timeout=30)
                mine.append((time.perf_counter() - began) * 1000)
        except BaseException as error:
            errors.append(error)

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(mine,)) for mine in latencies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    merged = [ms for mine in latencies for ms in mine]
    return len(merged) / (time.perf_counter() - start), merged


def pytorch_eager(checkpoint: Path, device: str, threads: int):
    """The checkpoint's encoder as a function of (B, C, H, W) float32 arrays, in PyTorch eager mode.

    Imported here, not at the top: torch is the `train` extra, and the rest of this benchmark runs
    with the `server` extra alone."""
    import torch

    from training.checkpoint import load_checkpoint

    torch.set_num_threads(threads)
    torch_device = torch.device("cpu" if device == "cpu" else "cuda")
    encoder = load_checkpoint(checkpoint).model.encoder.to(torch_device).eval()

    def embed(images: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return encoder(torch.from_numpy(images).to(torch_device)).cpu().numpy()  # .cpu() waits for the GPU

    return embed


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def served(client: EncoderClient, pid: int, request: encoder_pb2.EmbedRequest, in_flight: int, seconds: float):
    """`concurrent` against the service, with the server process's CPU per call: (calls/s, latencies, CPU ms per call)."""
    before = cpu_seconds(pid)
    began = time.perf_counter()
    rate, latencies = concurrent(client.stub, request, in_flight, seconds)
    calls = rate * (time.perf_counter() - began)
    return rate, latencies, (cpu_seconds(pid) - before) * 1000 / calls


def jpeg(image: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@contextlib.contextmanager
def child_encoder(command: Callable[[int], list[str]]):
    """The encoder server `command(port)` starts, in a child process on a free port: a client of
    it, and its pid. Stopped with SIGTERM at the end."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    child = subprocess.Popen(command(port), stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        with EncoderClient(f"127.0.0.1:{port}") as client:
            client.wait_until_serving(60)
            yield client, child.pid
    finally:
        child.send_signal(signal.SIGTERM)
        child.wait(30)


def encoder_process(repository: Path, *flags: str):
    """`lookalike serve-encoder` in a child process (child_encoder)."""
    return child_encoder(
        lambda port: [sys.executable, "-m", "lookalike_cli.main", "serve-encoder", "--port", str(port), "--refresh-seconds", "0",
                      "--model-repository", str(repository), "--log-level", "WARNING", *flags]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", type=Path, default=Path("demo-output/models"))
    parser.add_argument("--model", default="digits")
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--server-flags", default="", help="extra flags for the service, e.g. '--max-queue-delay-ms 1'")
    parser.add_argument("--device", choices=("cpu", "cuda", "tensorrt"), default="cpu", help="for ONNX Runtime, PyTorch and the service")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="intra-op threads of ONNX Runtime and PyTorch alone")
    parser.add_argument("--checkpoint", type=Path, help="the model's training checkpoint: adds PyTorch eager rows (needs torch)")
    args = parser.parse_args()
    flags = ["--device", args.device, *args.server_flags.split()]
    load_before = os.getloadavg()[0]

    version = max(v for n, v in model_format.scan_repository(args.repository) if n == args.model)
    model = OnnxModel(model_format.version_dir(args.repository, args.model, version), providers_for(args.device), args.threads)
    spec = model.card.preprocessing
    tensors = np.random.default_rng(0).random((64, *spec.shape), dtype=np.float32)
    files = {"PNG": [encode_png(to_image(t, spec)) for t in tensors], "JPEG": [jpeg(to_image(t, spec)) for t in tensors]}
    rows: list[tuple[str, int, float, list[float], float | None]] = []

    def row(what: str, images_per_call: int, measured: tuple) -> float:
        rate, latencies, *server_cpu = measured
        rows.append((what, images_per_call, rate * images_per_call, latencies, server_cpu[0] if server_cpu else None))
        return rate * images_per_call

    for batch in (1, 16, 64):
        row(f"ONNX Runtime alone, {model.execution_provider}", batch, timed(lambda: model.embed(tensors[:batch]), args.seconds))
    if args.checkpoint:
        eager = pytorch_eager(args.checkpoint, args.device, args.threads)
        # Same model, not bit-equal: a GPU's PyTorch computes convolutions in TF32 by default.
        ours, theirs = eager(tensors[:4]), model.embed(tensors[:4])
        agreement = np.sum(ours * theirs, 1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
        assert agreement.min() > 0.999, f"the checkpoint is not the exported model (cosine {agreement.min():.4f})"
        for batch in (1, 16, 64):
            row(f"PyTorch eager, {args.device}", batch, timed(lambda: eager(tensors[:batch]), args.seconds))
    for kind, data in files.items():
        row(f"decode + preprocess alone, {kind}", 1, timed(lambda: preprocess(data[0], spec), args.seconds))
    def raw_path(when: str) -> dict[str, float]:
        return {
            kind: row(f"raw decode + ONNX Runtime, {kind}, {when}", 64, timed(lambda: model.embed(np.stack([preprocess(f, spec) for f in data])), args.seconds))
            for kind, data in files.items()
        }

    # Measured before and after the service, and the faster taken: a load that came and went
    # while the service ran must not flatter the service's ratios.
    raw_before = raw_path("before the service")

    service = {}
    with encoder_process(args.repository, *flags) as (client, pid):
        info = client.get_model(args.model)
        for kind, data in files.items():
            for batch in (1, 16, 64):
                request = encoder_pb2.EmbedRequest(
                    model=images_pb2.ModelRef(name=args.model), images=[to_image_message(f) for f in data[:batch]], embedding_encoding=PACKED
                )
                for in_flight in (1, 4):
                    label = f"service, {kind}, {in_flight} call{'s' if in_flight > 1 else ''} in flight"
                    service[kind, batch, in_flight] = row(label, batch, served(client, pid, request, in_flight, args.seconds))
        one_image = encoder_pb2.EmbedRequest(model=images_pb2.ModelRef(name=args.model), images=[to_image_message(files["PNG"][0])], embedding_encoding=PACKED)
        batched = row("service, PNG, 32 one-image clients, batching on", 1, served(client, pid, one_image, 32, args.seconds))
    with encoder_process(args.repository, "--no-dynamic-batching", *flags) as (client, pid):
        unbatched = row("service, PNG, 32 one-image clients, batching off", 1, served(client, pid, one_image, 32, args.seconds))

    raw_after = raw_path("after the service")
    raw = {kind: max(raw_before[kind], raw_after[kind]) for kind in files}

    print(f"model {model.card.name} v{model.card.version} ({model.card.architecture}, {spec.shape} -> {model.card.embedding_dim}), "
          f"{args.threads} threads alone, service provider {info.execution_provider}; {describe()}; "
          f"1-minute load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    print("| what | images per call | images/s | p50 ms/call | p99 ms/call | server CPU ms/call |\n| --- | ---: | ---: | ---: | ---: | ---: |")
    for what, batch, rate, latencies, server_cpu in rows:
        cpu = "" if server_cpu is None else f"{server_cpu:.2f}"
        print(f"| {what} | {batch} | {rate:,.0f} | {np.percentile(latencies, 50):.2f} | {np.percentile(latencies, 99):.2f} | {cpu} |")
    print()
    for kind in files:
        for in_flight in (1, 4):
            print(f"service batch 64 {kind}, {in_flight} in flight / raw decode + ORT batch 64 {kind}: "
                  f"{service[kind, 64, in_flight] / raw[kind]:.0%} (bar: 85%)")
    print(f"32 one-image clients, batching on / raw decode + ORT batch 64 PNG: {batched / raw['PNG']:.0%} (bar: 40%)")
    print(f"32 one-image clients, batching on / off: {batched / unbatched:.1f}x (bar: 3x)")


if __name__ == "__main__":
    main()
