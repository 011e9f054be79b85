"""Would the asyncio gRPC server serve Embed faster than the threaded one? Measured in one run.

    python -m benchmarks.encoder_asyncio --repository demo-output/models --model digits

Issue 10 asks to "consider the asyncio gRPC server if it measures faster". Three servers, each in
its own child process, on the same model, settings, cores and clients:

- threaded, as served: `lookalike serve-encoder` with its defaults (the production server: its
  three interceptors for metrics, error mapping and in-flight bytes, its load limits);
- threaded, bare: `grpc.server` with a thread pool of `max_workers` and the production
  `EncoderServicer`, no interceptor;
- asyncio, bare: `grpc.aio.server` with the same servicer's Embed made a coroutine: the same
  checks, reservations, decode pool and batching queue (`EncoderServicer._start` and `_finish`,
  over `encoder_service.server.load_models`), awaiting the decode and model futures on the event
  loop instead of blocking a worker thread on them.

Bare against bare isolates the server model; served against bare threaded is what the
interceptors cost. The bare servers answer only Embed and health, map no errors (every request
here is valid) and watch no cancellation (none is cancelled): an asyncio server for production
would need async twins of server_toolkit's interceptors and a cancellation check that is safe to
call from the decode threads, which this does not build.

Workloads, PNG pictures of the model's size, packed float32 embeddings: 32 clients sending one
image each, as 32 threads with the sync stub (as benchmarks/encoder_throughput.py does) and as 32
coroutines on one asyncio channel (in case the client's own kind of concurrency decides the
figure); and calls of 64 images with 1 and 4 in flight (threads). The clients run in this
process, on the same cores as the server: their CPU per call is shown beside the server's. Every server is measured `--rounds`
times, in alternation (A B C A B C ...), and its median run kept, so a load that comes and goes
for a while favours no server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from benchmarks.encoder_throughput import child_encoder, cpu_seconds, encoder_process, served
from encoder_service.onnx_model import OnnxModel
from encoder_service.server import SERVICE_NAMES, load_models
from encoder_service.servicer import EncoderServicer
from encoder_service.settings import EncoderSettings
from lookalike import model_format
from lookalike.client import message_options, to_image_message
from lookalike.preprocessing import encode_png, to_image
from lookalike.v1 import encoder_pb2, encoder_pb2_grpc, images_pb2
from server_toolkit import grpc_server
from training.machine import describe

PACKED = encoder_pb2.EMBEDDING_ENCODING_PACKED_FLOAT32
SERVERS = ("threaded, as served", "threaded, bare", "asyncio, bare")


class _NeverCancelled:
    """What the decode pool asks between images (`stop_if_cancelled`); the benchmark cancels nothing,
    and an aio context must not be read from the decode threads."""

    def is_active(self) -> bool:
        return True


class AsyncEncoderServicer(EncoderServicer):
    """Embed as a coroutine over the production servicer's steps: `_start` checks the request,
    reserves its room and starts its decoding without waiting; the event loop awaits the decode
    parts and then their model runs; `_finish` then finds every future done and builds the answer."""

    async def Embed(self, request: encoder_pb2.EmbedRequest, context) -> encoder_pb2.EmbedResponse:
        started = self._start(request, _NeverCancelled())
        await _all_done(asyncio.get_running_loop(), started.decoding._parts)
        return self._finish(started, context)


def _all_done(loop: asyncio.AbstractEventLoop, parts: list[futures.Future]) -> asyncio.Future:
    """A future of the loop, done once every decode part and its model run are (a part's future
    gives its run's future): the loop is woken once per call, from the thread that finishes last,
    where awaiting each future would wake it twice per part."""
    done = loop.create_future()
    left, lock = [len(parts)], threading.Lock()

    def finished(_) -> None:
        with lock:
            left[0] -= 1
            last = left[0] == 0
        if last:
            loop.call_soon_threadsafe(done.set_result, None)

    def decoded(part: futures.Future) -> None:
        if part.cancelled() or part.exception() is not None:
            finished(part)  # a bad image: no run; `_finish` raises its error
        else:
            part.result().add_done_callback(finished)

    for part in parts:
        part.add_done_callback(decoded)
    return done


def served_to_coroutines(address: str, pid: int, request: encoder_pb2.EmbedRequest, in_flight: int, seconds: float):
    """As encoder_throughput's `served`, the clients `in_flight` coroutines on one grpc.aio channel:
    (calls/s, latencies in ms, server CPU ms per call)."""

    async def clients() -> tuple[float, list[float]]:
        latencies: list[float] = []
        async with grpc.aio.insecure_channel(address, options=message_options(64 * 1024 * 1024)) as channel:
            stub = encoder_pb2_grpc.EncoderStub(channel)
            deadline = time.perf_counter() + seconds

            async def client() -> None:
                while (began := time.perf_counter()) < deadline:
                    await stub.Embed(request, timeout=30)
                    latencies.append((time.perf_counter() - began) * 1000)

            start = time.perf_counter()
            await asyncio.gather(*(client() for _ in range(in_flight)))
            return len(latencies) / (time.perf_counter() - start), latencies

    before = cpu_seconds(pid)
    rate, latencies = asyncio.run(clients())
    return rate, latencies, (cpu_seconds(pid) - before) * 1000 / len(latencies)


def _settings(repository: Path, port: int) -> EncoderSettings:
    return EncoderSettings(host="127.0.0.1", port=port, model_repository=repository, refresh_seconds=0, log_level="WARNING")


def serve_threaded_bare(settings: EncoderSettings) -> None:
    repository, decoders = load_models(settings)
    server = grpc.server(futures.ThreadPoolExecutor(settings.max_workers), options=message_options(settings.max_message_bytes))
    encoder_pb2_grpc.add_EncoderServicer_to_server(EncoderServicer(repository, settings, decoders), server)
    health = grpc_server.add_health_and_reflection(server, SERVICE_NAMES, reflection_on=False)
    grpc_server.set_serving(health, SERVICE_NAMES, True)
    server.add_insecure_port(f"{settings.host}:{settings.port}")
    server.start()
    server.wait_for_termination()


async def serve_asyncio_bare(settings: EncoderSettings) -> None:
    repository, decoders = load_models(settings)
    server = grpc.aio.server(options=message_options(settings.max_message_bytes))
    encoder_pb2_grpc.add_EncoderServicer_to_server(AsyncEncoderServicer(repository, settings, decoders), server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    for name in ["", *SERVICE_NAMES]:
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    server.add_insecure_port(f"{settings.host}:{settings.port}")
    await server.start()
    await server.wait_for_termination()


def bare_process(repository: Path, kind: str):
    """A bare server (`--serve threaded` or `--serve asyncio` of this module) in a child process: a
    client of it, and its pid."""
    return child_encoder(
        lambda port: [sys.executable, "-m", "benchmarks.encoder_asyncio", "--serve", kind, "--port", str(port), "--repository", str(repository)]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", type=Path, default=Path("demo-output/models"))
    parser.add_argument("--model", default="digits")
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each server, in alternation; the median is shown")
    parser.add_argument("--serve", choices=("threaded", "asyncio"), help=argparse.SUPPRESS)  # the child processes
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve == "threaded":
        return serve_threaded_bare(_settings(args.repository, args.port))
    if args.serve == "asyncio":
        return asyncio.run(serve_asyncio_bare(_settings(args.repository, args.port)))

    load_before = os.getloadavg()[0]
    version = max(v for n, v in model_format.scan_repository(args.repository) if n == args.model)
    spec = OnnxModel(model_format.version_dir(args.repository, args.model, version), ["CPUExecutionProvider"], 1).card.preprocessing
    pictures = [encode_png(to_image(t, spec)) for t in np.random.default_rng(0).random((64, *spec.shape), dtype=np.float32)]
    model = images_pb2.ModelRef(name=args.model)

    def request(images: int) -> encoder_pb2.EmbedRequest:
        return encoder_pb2.EmbedRequest(model=model, images=[to_image_message(p) for p in pictures[:images]], embedding_encoding=PACKED)

    one, sixty_four = request(1), request(64)
    workloads = {
        "32 one-image clients, threads": lambda client, pid: served(client, pid, one, 32, args.seconds),
        "32 one-image clients, asyncio": lambda client, pid: served_to_coroutines(client.address, pid, one, 32, args.seconds),
        "batch 64, 1 in flight": lambda client, pid: served(client, pid, sixty_four, 1, args.seconds),
        "batch 64, 4 in flight": lambda client, pid: served(client, pid, sixty_four, 4, args.seconds),
    }
    starts = {
        SERVERS[0]: lambda: encoder_process(args.repository),
        SERVERS[1]: lambda: bare_process(args.repository, "threaded"),
        SERVERS[2]: lambda: bare_process(args.repository, "asyncio"),
    }
    runs: dict[tuple[str, str], list[tuple[float, list[float], float, float]]] = {}
    for _ in range(args.rounds):
        for server, start in starts.items():
            with start() as (client, pid):
                for workload, measure in workloads.items():
                    began = time.process_time()  # this process's threads: the clients' CPU
                    rate, latencies, cpu_ms = measure(client, pid)
                    client_ms = (time.process_time() - began) * 1000 / len(latencies)
                    images = rate * (64 if workload.startswith("batch 64") else 1)
                    runs.setdefault((server, workload), []).append((images, latencies, cpu_ms, client_ms))
    median = {key: sorted(measured, key=lambda run: run[0])[len(measured) // 2] for key, measured in runs.items()}

    print(f"model {args.model} v{version} ({spec.shape}); {describe()}; "
          f"1-minute load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after; "
          f"median of {args.rounds} runs of {args.seconds:g} s")
    print("| workload | server | images/s: median (each run) | p50 ms/call | p99 ms/call | server CPU ms/call | client CPU ms/call |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for workload in workloads:
        for server in SERVERS:
            rate, latencies, cpu_ms, client_ms = median[server, workload]
            every = ", ".join(f"{run[0]:,.0f}" for run in runs[server, workload])
            p50, p99 = np.percentile(latencies, [50, 99])
            print(f"| {workload} | {server} | {rate:,.0f} ({every}) | {p50:.2f} | {p99:.2f} | {cpu_ms:.2f} | {client_ms:.2f} |")
    for workload in workloads:
        threaded, bare, aio = (median[server, workload][0] for server in SERVERS)
        print(f"{workload}: asyncio bare / threaded as served {aio / threaded:.0%}, asyncio bare / threaded bare {aio / bare:.0%}")


if __name__ == "__main__":
    main()
