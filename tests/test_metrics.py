"""Metrics end to end: both services in their own processes, scraped by a real Prometheus (Debian's
`prometheus`, which `make test` installs), and series read back through its HTTP API."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from lookalike.client import EncoderClient, SearchClient
from lookalike.errors import InvalidArgument
from tests.onnx_factory import write_linear_model

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = shutil.which("prometheus")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(command: list[str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)


def query(prometheus: str, promql: str) -> list[dict]:
    url = f"http://{prometheus}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    with urllib.request.urlopen(url, timeout=5) as answer:
        body = json.load(answer)
    assert body["status"] == "success", body
    return body["data"]["result"]


def value_when_scraped(prometheus: str, promql: str, at_least: float, seconds: float = 30) -> float:
    """The query's single value once it reaches `at_least` (Prometheus scrapes every second)."""
    deadline, found = time.monotonic() + seconds, []
    while time.monotonic() < deadline:
        found = query(prometheus, promql)
        if found and float(found[0]["value"][1]) >= at_least:
            return float(found[0]["value"][1])
        time.sleep(0.25)
    pytest.fail(f"{promql} never reached {at_least}: {found}")


@pytest.mark.skipif(PROMETHEUS is None, reason="Debian's `prometheus` is not installed (`make test` installs it with apt)")
def test_prometheus_scrapes_both_services(tmp_path, digit_pngs):
    write_linear_model(tmp_path / "models")
    encoder_port, search_port, encoder_metrics, search_metrics, prometheus_port = (free_port() for _ in range(5))
    cli = [sys.executable, "-m", "lookalike_cli.main"]
    children = [
        start([*cli, "serve-encoder", "--port", str(encoder_port), "--metrics-port", str(encoder_metrics),
               "--model-repository", str(tmp_path / "models"), "--refresh-seconds", "0"], tmp_path / "encoder.log"),
        start([*cli, "serve-search", "--port", str(search_port), "--metrics-port", str(search_metrics),
               "--data-dir", str(tmp_path / "search"), "--encoder-address", f"127.0.0.1:{encoder_port}"], tmp_path / "search.log"),
    ]
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - {{job_name: encoder, static_configs: [{{targets: ['127.0.0.1:{encoder_metrics}']}}]}}\n"
        f"  - {{job_name: search, static_configs: [{{targets: ['127.0.0.1:{search_metrics}']}}]}}\n"
    )
    children.append(
        start([PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
               f"--web.listen-address=127.0.0.1:{prometheus_port}"], tmp_path / "prometheus.log")
    )
    prometheus = f"127.0.0.1:{prometheus_port}"
    try:
        with EncoderClient(f"127.0.0.1:{encoder_port}", timeout=30) as encoder, SearchClient(f"127.0.0.1:{search_port}", timeout=30) as search:
            encoder.wait_until_serving(60)
            search.wait_until_serving(60)
            for _ in range(3):
                encoder.embed(digit_pngs[:4])
            list(encoder.embed_stream([digit_pngs[:2], digit_pngs[2:4]]))
            with pytest.raises(InvalidArgument):
                encoder.embed([b"junk"])
            search.create_collection("pictures", model="tiny")
            search.search("pictures", image=digit_pngs[0], k=3)  # search, which calls the encoder
            search.search("pictures", vector=np.ones(16, np.float32), model=("tiny", 1), k=3)

        calls = 'grpc_server_handled_total{{job="{job}", grpc_method="{method}", grpc_code="{code}"}}'
        assert value_when_scraped(prometheus, calls.format(job="encoder", method="Embed", code="OK"), 4) >= 4  # 3 + the search's
        assert value_when_scraped(prometheus, calls.format(job="encoder", method="Embed", code="INVALID_ARGUMENT"), 1) == 1
        assert value_when_scraped(prometheus, calls.format(job="encoder", method="EmbedStream", code="OK"), 1) == 1
        assert value_when_scraped(prometheus, calls.format(job="search", method="Search", code="OK"), 2) == 2
        latency = 'grpc_server_handling_seconds_count{job="search", grpc_method="CreateCollection"}'
        assert value_when_scraped(prometheus, latency, 1) == 1
        images = 'sum(lookalike_encoder_batch_size_sum{job="encoder", model="tiny"})'
        assert value_when_scraped(prometheus, images, 17) == 17  # 3 x 4 + 2 x 2 + 1 searched
        provider = 'lookalike_encoder_execution_provider{job="encoder", model="tiny", provider="CPUExecutionProvider"}'
        assert value_when_scraped(prometheus, provider, 1) == 1
        assert value_when_scraped(prometheus, 'lookalike_encoder_decode_seconds_count{job="encoder"}', 17) >= 17
    finally:
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                child.kill()
