"""The images built by deploy/build.sh, run for real: both containers, secured as in production.

`make deploy-test` builds the images and runs this file. It is not part of `make test`: it needs a
docker daemon and root (debootstrap), and a cold build takes minutes (deploy/README.md has the figures).
Without LOOKALIKE_DEPLOY_TEST=1 every test here is skipped.

What runs: a private docker network where the search container reaches the encoder by its name
(`encoder`, as in deploy/docker-compose.yml and the development certificate); both containers as
uid 10001 with a read-only root filesystem, no capabilities and no new privileges, listening on [::]
inside, which the servers accept only with TLS and a tokens file; ports published on 127.0.0.1 only.
The test talks to them over loopback with the Python client: TLS verified against a fresh CA,
bearer tokens made by `lookalike token new`.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lookalike.client import EncoderClient, ItemToUpsert, SearchClient, tls_credentials

pytestmark = pytest.mark.skipif(
    os.environ.get("LOOKALIKE_DEPLOY_TEST") != "1", reason="needs docker and the images: make deploy-test"
)

ROOT = Path(__file__).resolve().parents[2]
TAG = os.environ.get("LOOKALIKE_IMAGE_TAG", "dev")
MODELS = Path(os.environ.get("LOOKALIKE_MODELS", ROOT / "demo-output" / "models"))
SERVICE_UID = 10001  # the images' user (deploy/Dockerfile)


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], check=check, capture_output=True, text=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def new_token(permission: str, tokens_file: Path) -> str:
    command = [sys.executable, "-m", "lookalike_cli.main", "token", "new", "--permission", permission]
    out = subprocess.run([*command, "--tokens-file", str(tokens_file)], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def secrets(tmp_path_factory) -> dict:
    """A CA, a server certificate (localhost, encoder, search), a tokens file and three tokens."""
    certs = tmp_path_factory.mktemp("certs")
    subprocess.run([str(ROOT / "tools" / "make_certs.sh"), str(certs)], check=True, capture_output=True)
    tokens_file = certs / "tokens"
    (certs / "search-to-encoder.token").write_text(new_token("read", tokens_file))
    (certs / "router-to-shards.token").write_text(new_token("admin", tokens_file))  # the router creates collections on its shards
    admin = new_token("admin", tokens_file)
    # The containers run as uid 10001 and the keys are readable by their owner only: as root, give
    # them to that user; as anyone else, the containers run as you (as the compose file does).
    user = []
    if os.getuid() == 0:
        for path in [certs, *certs.iterdir()]:
            os.chown(path, SERVICE_UID, SERVICE_UID)
    else:
        user = ["--user", f"{os.getuid()}:{os.getgid()}"]
    certs.chmod(0o755)
    return {"dir": certs, "admin": admin, "user": user}


@pytest.fixture(scope="module")
def containers(secrets):
    """Starts the encoder and the search container; yields their loopback addresses."""
    assert (MODELS / "digits").is_dir(), f"no digits model in {MODELS}: run `make demo` first"
    run_id = uuid.uuid4().hex[:8]
    network = f"lookalike-test-{run_id}"
    names = {name: f"lookalike-{name}-{run_id}" for name in ("encoder", "search", "router")}
    ports = {name: free_port() for name in ("encoder", "search", "router", "router-health")}
    hardening = ["--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
    certs = ["--volume", f"{secrets['dir']}:/certs:ro"]
    tls = lambda prefix: [  # noqa: E731
        "--env", f"{prefix}_HOST=[::]",
        "--env", f"{prefix}_TLS_CERT_FILE=/certs/server.pem",
        "--env", f"{prefix}_TLS_KEY_FILE=/certs/server-key.pem",
        "--env", f"{prefix}_TOKENS_FILE=/certs/tokens",
    ]
    docker("network", "create", network)
    try:
        docker(
            "run", "--detach", "--name", names["encoder"], "--network", network, "--network-alias", "encoder",
            *secrets["user"], *hardening, *certs, *tls("LOOKALIKE_ENCODER"),
            "--volume", f"{MODELS}:/models:ro",
            "--env", "LOOKALIKE_ENCODER_INTRA_OP_THREADS=1",
            "--publish", f"127.0.0.1:{ports['encoder']}:50051",
            f"lookalike/encoder:{TAG}",
        )
        docker(
            "run", "--detach", "--name", names["search"], "--network", network, "--network-alias", "search",
            *secrets["user"], *hardening, *certs, *tls("LOOKALIKE_SEARCH"),
            "--tmpfs", f"/data:uid={SERVICE_UID},gid={SERVICE_UID},mode=0750" if not secrets["user"] else "/data",
            "--env", "LOOKALIKE_SEARCH_ENCODER_ADDRESS=encoder:50051",
            "--env", "LOOKALIKE_SEARCH_ENCODER_TLS_CA_FILE=/certs/ca.pem",
            "--env", "LOOKALIKE_SEARCH_ENCODER_TOKEN_FILE=/certs/search-to-encoder.token",
            "--publish", f"127.0.0.1:{ports['search']}:50052",
            f"lookalike/search:{TAG}",
        )
        # The search image in router mode, with the search container as its one shard, and the
        # plaintext health port that Kubernetes' probes use (deploy/k8s).
        docker(
            "run", "--detach", "--name", names["router"], "--network", network,
            *secrets["user"], *hardening, *certs, *tls("LOOKALIKE_SEARCH"),
            "--env", "LOOKALIKE_SEARCH_MODE=router",
            "--env", "LOOKALIKE_SEARCH_SHARDS=search:50052",
            "--env", "LOOKALIKE_SEARCH_SHARD_TLS_CA_FILE=/certs/ca.pem",
            "--env", "LOOKALIKE_SEARCH_SHARD_TOKEN_FILE=/certs/router-to-shards.token",
            "--env", "LOOKALIKE_SEARCH_ENCODER_ADDRESS=encoder:50051",
            "--env", "LOOKALIKE_SEARCH_ENCODER_TLS_CA_FILE=/certs/ca.pem",
            "--env", "LOOKALIKE_SEARCH_ENCODER_TOKEN_FILE=/certs/search-to-encoder.token",
            "--env", "LOOKALIKE_SEARCH_HEALTH_PORT=50062",
            "--publish", f"127.0.0.1:{ports['router']}:50052",
            "--publish", f"127.0.0.1:{ports['router-health']}:50062",
            f"lookalike/search:{TAG}",
        )
        yield {name: f"localhost:{port}" for name, port in ports.items()}
    finally:
        for name in names.values():
            logs = docker("logs", "--tail", "30", name, check=False)
            print(f"--- {name}\n{logs.stdout}{logs.stderr}")
            docker("rm", "--force", name, check=False)
        docker("network", "rm", network, check=False)


@pytest.fixture(scope="module")
def clients(containers, secrets):
    credentials = tls_credentials(str(secrets["dir"] / "ca.pem"))
    with (
        EncoderClient(containers["encoder"], credentials=credentials, token=secrets["admin"]) as encoder,
        SearchClient(containers["search"], credentials=credentials, token=secrets["admin"]) as search,
    ):
        # Health needs no token; it turns SERVING once the model (encoder) or the collections (search) are loaded.
        encoder.wait_until_serving(60)
        search.wait_until_serving(60)
        yield encoder, search


def test_images_run_as_the_service_user_on_a_read_only_root():
    for image in (f"lookalike/encoder:{TAG}", f"lookalike/search:{TAG}"):
        config = docker("image", "inspect", "--format", "{{.Config.User}} {{json .Config.Entrypoint}}", image).stdout
        user, entrypoint = config.strip().split(" ", 1)
        assert user == f"{SERVICE_UID}:{SERVICE_UID}"
        assert entrypoint.startswith('["python","-m","lookalike_cli.main","serve-'), "exec form: SIGTERM reaches the server"


def test_embed_over_tls_with_a_token(clients):
    encoder, _ = clients
    images = [png(np.random.default_rng(seed).integers(0, 256, (28, 28))) for seed in range(3)]
    embedded = encoder.embed(images)
    assert embedded.vectors.shape[0] == 3 and embedded.vectors.dtype == np.float32
    assert embedded.model.name == "digits"


def test_search_by_image_through_the_search_container(clients):
    _, search = clients
    rng = np.random.default_rng(0)
    images = {f"img-{i}": png(rng.integers(0, 256, (28, 28))) for i in range(8)}
    search.create_collection("deploy-check", allow_existing=True)
    # By image: the search container embeds them through its own TLS + token channel to the encoder.
    upserted = search.upsert("deploy-check", [ItemToUpsert(id=id_, image=data) for id_, data in images.items()])
    assert upserted == len(images)
    results = search.search("deploy-check", image=images["img-3"], k=3)
    assert results[0].id == "img-3"
    assert len(results) == 3


def test_a_call_without_a_token_is_refused(containers, secrets):
    from lookalike.errors import Unauthenticated

    credentials = tls_credentials(str(secrets["dir"] / "ca.pem"))
    with SearchClient(containers["search"], credentials=credentials) as anonymous:
        with pytest.raises(Unauthenticated):
            anonymous.list_collections()



def test_the_router_container_routes_to_its_shard_and_answers_plaintext_probes(clients, containers, secrets):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    _, shard = clients
    credentials = tls_credentials(str(secrets["dir"] / "ca.pem"))
    with SearchClient(containers["router"], credentials=credentials, token=secrets["admin"]) as router:
        router.wait_until_serving(60)
        rng = np.random.default_rng(1)
        images = {f"routed-{i}": png(rng.integers(0, 256, (28, 28))) for i in range(6)}
        router.create_collection("routed", allow_existing=True)
        assert router.upsert("routed", [ItemToUpsert(id=id_, image=data) for id_, data in images.items()]) == len(images)
        assert router.search("routed", image=images["routed-2"], k=3)[0].id == "routed-2"
        assert shard.get_collection("routed").size == len(images), "the router wrote to its shard"
    import grpc

    with grpc.insecure_channel(containers["router-health"]) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
