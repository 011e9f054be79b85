"""Search at scale, side by side in one run: this service's index in process and through gRPC,
ScaNN called directly, hnswlib, faiss IVF and numpy exact, on the same vectors and queries.

    python -m benchmarks.search_scale --items 100000 --dimension 64
    pip install -e '.[bench]'   # hnswlib and faiss-cpu: the baselines only, never the server

Vectors: clustered, cosine, hard enough that probing one cluster is not enough (the run prints
faiss IVF's recall at one probe to show it). Queries: fresh points of the same distribution.
recall@10 is against numpy's exact answer. Each baseline is tuned to the smallest setting
reaching the recall the service's index reached (hnswlib's ef, faiss' nprobe), and ScaNN
directly gets the service's own tuned leaves and training sample, in ScaNN's usual
configuration (2 dimensions a hashing block, float32 reordering of the smallest depth of 20,
40, 80, ... that reaches the service's recall): what the service costs around it.
Figures: queries/s one at a time in one thread (median of 3 passes), batched (all cores), build
time, resident memory per vector against the raw float32 vector (after, and the peak during
the build), and for the service: the longest upsert while its rebuilds ran, and search p99
during a background rebuild against p99 without. Each index is built and measured in a process
of its own (so one's memory cannot hide in another's freed pages), one after the other, on the
same seeded vectors and the same exact answers; then `side_by_side` times the service and ScaNN
alternately in one process, for the share of ScaNN's speed that load on a shared machine cannot
skew. Prints markdown for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
import numpy as np

from lookalike.v1 import images_pb2, search_pb2, search_pb2_grpc
from search_service.collection import CollectionSpec
from search_service.collection_store import CollectionStore
from search_service.server import create_server
from search_service.settings import SearchSettings
from search_service.vector_index import IndexPolicy
from training.machine import describe

K = 10
_REORDER_LADDER = (20, 40, 80, 160, 320)  # ScaNN's float32 reordering depths tried, the service's standard configuration


def clustered(centres: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Points spread about as wide as the distance between centres: neighbours cross clusters."""
    return centres[rng.integers(0, len(centres), n)] + 0.9 * rng.normal(size=(n, centres.shape[1])).astype(np.float32)


def rss_mib() -> tuple[float, float]:
    """(resident now, peak since the last reset), MiB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux)


class Measured:
    """Build time and memory of whatever runs inside the `with`."""

    def __enter__(self):
        reset_peak()
        self.before, _ = rss_mib()
        self.began = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.began
        now, peak = rss_mib()
        self.after_mib, self.peak_mib = now - self.before, peak - self.before


def recall(found: list[list[int]], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[:K]) & set(t.tolist())) / K for f, t in zip(found, truth)]))


def single_rate(search, queries: np.ndarray) -> tuple[float, list[list[int]]]:
    """Median queries/s of 3 passes, one query at a time, and the answers of the last."""
    rates, found = [], []
    for _ in range(3):
        began = time.perf_counter()
        found = [search(q) for q in queries]
        rates.append(len(queries) / (time.perf_counter() - began))
    return statistics.median(rates), found


def batch_rate(search_all, queries: np.ndarray) -> float:
    rates = []
    for _ in range(3):
        began = time.perf_counter()
        search_all(queries)
        rates.append(len(queries) / (time.perf_counter() - began))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--dimension", type=int, default=64)
    parser.add_argument("--queries", type=int, default=2_000)
    parser.add_argument("--clusters", type=int, default=1_000)
    parser.add_argument("--skip", nargs="*", default=[], choices=list(_RUNS), help="indexes to leave out")
    parser.add_argument("--only", choices=list(_RUNS), help=argparse.SUPPRESS)  # a child: one index
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)  # the parent's folder: truth, data dir
    parser.add_argument("--target", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only:
        print(json.dumps(_RUNS[args.only](args, _Data(args))))
        return
    work = Path(tempfile.mkdtemp(prefix="search-scale-"))
    data = _Data(args)
    np.save(work / "truth.npy", np.concatenate([_top(block, data.unit) for block in np.array_split(data.unit_queries, max(1, len(data.unit_queries) // 100))]))
    results: dict[str, dict] = {}
    for name in [n for n in _RUNS if n not in args.skip]:
        target = results.get("service", {}).get("recall", 0.95)
        command = [sys.executable, "-m", "benchmarks.search_scale", "--only", name, "--work", str(work), "--target", str(target)]
        command += ["--items", str(args.items), "--dimension", str(args.dimension), "--queries", str(args.queries), "--clusters", str(args.clusters)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
        (work / f"{name}.json").write_text(json.dumps(results[name]))
    raw_mib = args.items * args.dimension * 4 / 2**20
    print(
        f"{args.items:,} x {args.dimension} clustered ({args.clusters} centres), cosine, k={K}, {args.queries} queries; "
        f"{describe()}; load average at the end {os.getloadavg()[0]:.1f}"
    )
    print(f"raw vectors {raw_mib:,.1f} MiB. Memory: resident MiB the index added per raw MiB, after its build and at the peak during it.")
    print("| index | setting | recall@10 | queries/s, 1 thread | queries/s, batched | build s | memory after | memory peak |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, r in results.items():
        if "single" not in r:
            continue  # notes only (side_by_side)
        memory = f"{r['after_mib'] / raw_mib:.2f}x | {r['peak_mib'] / raw_mib:.2f}x" if "after_mib" in r else "| "
        print(f"| {r['label']} | {r['setting']} | {r['recall']:.3f} | {r['single']:,.0f} | {r['batched']:,.0f} | {r['seconds']:.1f} | {memory} |")
    for r in results.values():
        for line in r.get("notes", []):
            print(line)
    shutil.rmtree(work)


def _top(queries: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """The exact K nearest rows of `unit` to each query (unordered): 100 queries at a time keeps
    the score matrix at 100 x n."""
    return np.argpartition(-(queries @ unit.T), K, axis=1)[:, :K]


class _Data:
    """The seeded vectors and queries, the same in every process."""

    def __init__(self, args) -> None:
        rng = np.random.default_rng(0)
        centres = rng.normal(size=(args.clusters, args.dimension)).astype(np.float32)
        self.centres = centres
        self.vectors = clustered(centres, args.items, rng)
        self.queries = clustered(centres, args.queries, np.random.default_rng(1))  # fresh points of the same clusters
        self.unit = self.vectors / np.linalg.norm(self.vectors, axis=1, keepdims=True)
        self.unit_queries = (self.queries / np.linalg.norm(self.queries, axis=1, keepdims=True)).astype(np.float32)
        self.truth = np.load(args.work / "truth.npy") if args.work and (args.work / "truth.npy").exists() else None
        self.n, self.d = self.vectors.shape


def _numpy(args, data: _Data) -> dict:
    unit = data.unit
    rate, _ = single_rate(lambda q: np.argpartition(-(unit @ q), K)[:K], data.unit_queries[:200])
    batched = batch_rate(lambda qs: [_top(block, unit) for block in np.array_split(qs, max(1, len(qs) // 100))], data.unit_queries)
    return {"label": "numpy exact", "setting": "", "recall": 1.0, "single": rate, "batched": batched, "seconds": 0.0, "after_mib": data.n * data.d * 4 / 2**20, "peak_mib": data.n * data.d * 4 / 2**20}


def _service(args, data: _Data) -> dict:
    n, longest_upsert = data.n, 0.0
    with Measured() as built:
        store = CollectionStore(args.work / "service", fsync=True, index_policy=IndexPolicy())
        store.create(CollectionSpec("bench", data.d, "cosine"))
        collection = store.get("bench")
        for start in range(0, n, 4096):
            ids = [f"i{i}" for i in range(start, min(n, start + 4096))]  # per batch, as a client sends them
            began = time.perf_counter()
            collection.upsert(ids, data.vectors[start : start + 4096])
            longest_upsert = max(longest_upsert, time.perf_counter() - began)
        collection.wait_for_index()
    info = collection.info().index
    rate, _ = single_rate(lambda q: collection.search(q, K), data.queries)  # hits with ids, as a caller gets them
    found = [[int(h.id[1:]) for h in collection.search(q, K)] for q in data.queries]
    batched = batch_rate(lambda qs: collection.search_batch(list(qs), K), data.queries)

    def latencies(seconds: float) -> list[float]:
        out, stop = [], time.perf_counter() + seconds
        while time.perf_counter() < stop:
            began = time.perf_counter()
            collection.search(data.queries[len(out) % len(data.queries)], K)
            out.append((time.perf_counter() - began) * 1000)
        return out

    def during_rebuild() -> list[float]:
        found = []
        while collection.info().index.rebuilding:
            found += latencies(0.2)
        return found

    quiet_p99 = float(np.percentile(latencies(3.0), 99))
    extra = clustered(data.centres, max(2_048, n // 8) + 1, np.random.default_rng(2))  # n / 8: deleting them passes the dead threshold too
    with Measured() as grown:
        began = time.perf_counter()
        collection.upsert([f"x{i}" for i in range(len(extra))], extra)  # past the tail threshold: a rebuild starts
        upsert_during = time.perf_counter() - began
        during = during_rebuild()  # the new items are scanned exactly until it ends
    with Measured() as shrunk:
        collection.delete([f"x{i}" for i in range(len(extra))])  # past the dead threshold: a rebuild that compacts
        during_delete = during_rebuild()
        collection.wait_for_index()
    store.close()
    raw_mib = n * data.d * 4 / 2**20
    return {
        "label": "service index, in process",
        "setting": f"{info.kind}, {info.leaves_to_search}/{info.num_leaves} leaves, reorder {info.reorder}, estimated recall {info.estimated_recall:.3f}",
        "recall": recall(found, data.truth),
        "single": rate,
        "batched": batched,
        "seconds": built.seconds,
        "after_mib": built.after_mib,
        "peak_mib": built.peak_mib,
        "leaves": info.leaves_to_search,
        "num_leaves": info.num_leaves,
        "reorder": info.reorder,
        "notes": [
            f"Service ingest (batches of 4096, fsynced, rebuilds in the background): longest upsert {longest_upsert:.2f} s; "
            f"an upsert of {len(extra):,} items that started a rebuild returned in {upsert_during:.2f} s. "
            f"Search p99 {quiet_p99:.3f} ms without a rebuild; {_p99(during)} during the rebuild that upsert started "
            f"({len(during):,} searches, which also scanned its items exactly); {_p99(during_delete)} during the rebuild "
            f"that deleting them started ({len(during_delete):,} searches, no such tail). Peak resident memory (all the "
            f"service's, as in the table) during the first rebuild {(grown.before + grown.peak_mib - built.before) / raw_mib:.2f}x, "
            f"during the second (compacting) {(shrunk.before + shrunk.peak_mib - built.before) / raw_mib:.2f}x the raw vectors "
            f"of the {n:,} items."
        ],
    }


def _p99(latencies_ms: list[float]) -> str:
    return f"{np.percentile(latencies_ms, 99):.3f} ms" if latencies_ms else "none (no search ran)"


def _scann(args, data: _Data) -> dict:
    from scann.scann_ops.py import scann_ops_pybind

    service = json.loads((args.work / "service.json").read_text())
    with Measured() as built:
        builder = scann_ops_pybind.builder(data.unit, K, "dot_product").tree(
            num_leaves=service["num_leaves"],
            num_leaves_to_search=service["leaves"],
            training_sample_size=min(data.n, max(100_000, 125 * service["num_leaves"])),  # as the service trains
            spherical=True,
        )
        scann = builder.score_ah(2, anisotropic_quantization_threshold=0.2).reorder(_REORDER_LADDER[-1]).build()
    for reorder in _REORDER_LADDER:
        if recall(scann.search_batched(data.unit_queries, K, reorder)[0].tolist(), data.truth) >= args.target:
            break
    rate, found = single_rate(lambda q: scann.search(q, K, reorder)[0].tolist(), data.unit_queries)
    batched = batch_rate(lambda qs: scann.search_batched_parallel(qs, K, reorder), data.unit_queries)
    setting = f"the service's leaves, float32 reordering of {reorder}"
    return {"label": "ScaNN directly", "setting": setting, "recall": recall(found, data.truth), "single": rate, "batched": batched, "seconds": built.seconds, "after_mib": built.after_mib, "peak_mib": built.peak_mib}


def _side_by_side(args, data: _Data) -> dict:
    """The service and ScaNN directly in one process, timed alternately, 5 rounds of every query
    one at a time: a neighbour's load then falls on both alike, which separate processes run
    minutes apart do not give (the share moved from 35 to 73 % between such runs)."""
    from scann.scann_ops.py import scann_ops_pybind

    store = CollectionStore(args.work / "side-by-side", fsync=False, index_policy=IndexPolicy())
    store.create(CollectionSpec("bench", data.d, "cosine"))
    collection = store.get("bench")
    for start in range(0, data.n, 4096):
        collection.upsert([f"i{i}" for i in range(start, min(data.n, start + 4096))], data.vectors[start : start + 4096])
    collection.wait_for_index()
    info = collection.info().index
    service_recall = recall([[int(h.id[1:]) for h in collection.search(q, K)] for q in data.queries], data.truth)
    builder = scann_ops_pybind.builder(data.unit, K, "dot_product").tree(
        num_leaves=info.num_leaves,
        num_leaves_to_search=info.leaves_to_search,
        training_sample_size=min(data.n, max(100_000, 125 * info.num_leaves)),
        spherical=True,
    )
    scann = builder.score_ah(2, anisotropic_quantization_threshold=0.2).reorder(_REORDER_LADDER[-1]).build()
    recalls = {depth: recall(scann.search_batched(data.unit_queries, K, depth)[0].tolist(), data.truth) for depth in _REORDER_LADDER}
    reorder = next((depth for depth in _REORDER_LADDER if recalls[depth] >= service_recall), _REORDER_LADDER[-1])
    below = max((depth for depth in _REORDER_LADDER if depth < reorder), default=None)
    timed = {"service": [], "scann": [], "scann_below": []}
    for _ in range(5):
        for name, search in (
            ("service", lambda q: collection.search(q, K)),
            ("scann", lambda q: scann.search(q, K, reorder)),
            ("scann_below", lambda q: scann.search(q, K, below or reorder)),
        ):
            began = time.perf_counter()
            for q in data.unit_queries if name != "service" else data.queries:
                search(q)
            timed[name].append(len(data.queries) / (time.perf_counter() - began))
    store.close()
    service, same, lower = (statistics.median(timed[name]) for name in ("service", "scann", "scann_below"))
    note = (
        f"Side by side in one process, alternately, 5 rounds (medians, queries/s one at a time): the service {service:,.0f} "
        f"at recall {service_recall:.3f} ({min(timed['service']):,.0f}-{max(timed['service']):,.0f}); ScaNN directly with "
        f"float32 reordering of {reorder}, the smallest reaching it (recall {recalls[reorder]:.3f}), {same:,.0f} "
        f"({min(timed['scann']):,.0f}-{max(timed['scann']):,.0f}): **{service / same:.0%} of ScaNN at the same recall**"
    )
    if below is not None:
        note += f"; at reorder {below} (recall {recalls[below]:.3f}, below the service's) {lower:,.0f}: {service / lower:.0%}"
    return {"notes": [note + "."]}


def _hnswlib(args, data: _Data) -> dict:
    import hnswlib

    with Measured() as built:
        index = hnswlib.Index(space="ip", dim=data.d)
        index.init_index(max_elements=data.n, M=16, ef_construction=200)
        index.add_items(data.unit, num_threads=os.cpu_count())
    index.set_num_threads(1)
    for ef in (10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512):
        index.set_ef(ef)
        if recall(index.knn_query(data.unit_queries, k=K)[0].tolist(), data.truth) >= args.target:
            break
    rate, found = single_rate(lambda q: index.knn_query(q, k=K)[0][0].tolist(), data.unit_queries)
    index.set_num_threads(os.cpu_count())
    batched = batch_rate(lambda qs: index.knn_query(qs, k=K), data.unit_queries)
    return {"label": "hnswlib", "setting": f"M 16, ef_construction 200, ef {ef}", "recall": recall(found, data.truth), "single": rate, "batched": batched, "seconds": built.seconds, "after_mib": built.after_mib, "peak_mib": built.peak_mib}


def _faiss(args, data: _Data) -> dict:
    import faiss

    nlist = max(16, int(4 * np.sqrt(data.n)))
    with Measured() as built:
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(data.d), data.d, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.train(data.unit[np.random.default_rng(3).choice(data.n, min(data.n, 100_000), replace=False)])
        ivf.add(data.unit)
    ivf.nprobe = 1
    one_probe = recall(ivf.search(data.unit_queries, K)[1].tolist(), data.truth)
    for nprobe in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128):
        ivf.nprobe = nprobe
        if recall(ivf.search(data.unit_queries, K)[1].tolist(), data.truth) >= args.target:
            break
    faiss.omp_set_num_threads(1)
    rate, found = single_rate(lambda q: ivf.search(q[None], K)[1][0].tolist(), data.unit_queries)
    faiss.omp_set_num_threads(os.cpu_count())
    batched = batch_rate(lambda qs: ivf.search(qs, K), data.unit_queries)
    setting = f"{nlist} lists, nprobe {nprobe} (1 probe: recall {one_probe:.3f})"
    return {"label": "faiss IVF flat", "setting": setting, "recall": recall(found, data.truth), "single": rate, "batched": batched, "seconds": built.seconds, "after_mib": built.after_mib, "peak_mib": built.peak_mib}


def _grpc(args, data: _Data) -> dict:
    """The service's collection, loaded by a server from what _service left on disk."""
    settings = SearchSettings(host="127.0.0.1", port=0, data_dir=args.work / "service", encoder_address="127.0.0.1:1", max_concurrent_rpcs=256)
    with Measured() as loaded:
        server, port = create_server(settings)  # loads the collection: snapshot, then an index build
        server.start()
    position = {f"i{i}": i for i in range(data.n)}
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        requests = [search_pb2.SearchRequest(collection="bench", k=K, vector=images_pb2.Embedding(values=q.tolist())) for q in data.queries]
        rate, found = single_rate(lambda r: [position[n.id] for n in stub.Search(r).neighbors], requests)
        batched = batch_rate(
            lambda rs: [stub.SearchBatch(search_pb2.SearchBatchRequest(searches=list(rs[i : i + 256]))) for i in range(0, len(rs), 256)],
            requests,
        )
        clients, latencies_ms, lock = 8, [], threading.Lock()

        def client(offset: int) -> None:
            mine = []
            for r in requests[offset::clients]:
                began = time.perf_counter()
                stub.Search(r)
                mine.append((time.perf_counter() - began) * 1000)
            with lock:
                latencies_ms.extend(mine)

        began = time.perf_counter()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - began
    server.stop(None)
    note = (
        f"Through gRPC, {clients} client threads on one channel (vectors, no encoder): {len(requests) / elapsed:,.0f} queries/s, "
        f"p50 {np.percentile(latencies_ms, 50):.2f} ms, p99 {np.percentile(latencies_ms, 99):.2f} ms. "
        f"Build s for gRPC: the server's start (snapshot load and index build)."
    )
    return {"label": "service through gRPC", "setting": "1 client; batches of 256", "recall": recall(found, data.truth), "single": rate, "batched": batched, "seconds": loaded.seconds, "notes": [note]}


_RUNS = {"numpy": _numpy, "service": _service, "scann": _scann, "hnswlib": _hnswlib, "faiss": _faiss, "grpc": _grpc, "side_by_side": _side_by_side}


if __name__ == "__main__":
    main()
