"""The encoder's streaming and model-management RPCs, fuzzed with hypothesis on a real server.

tests/reliability/test_fuzz_rpcs.py holds every answer of both services to errors.proto (OK or a
code a client can act on, a google.rpc.Status with a known lookalike.v1 reason, no server path,
nothing logged at ERROR); this module holds EmbedStream, LoadModel, UnloadModel, GetModel and
ListModels to the same contract (its `Servers`), against a repository with more to get wrong than
one model: two good versions of `tiny`, a damaged version 3, a version 9 that the version policy
lists but the repository lacks, and a foreign encoder (loaded, never unloaded: see
`unloadable_refs`). Load and unload calls run while the repository is rescanned every 50 ms. After each example ListModels must answer and describe
every version; at the end the server must be SERVING and embed once `tiny` v1 is loaded back.

LOOKALIKE_FUZZ_EXAMPLES sets the examples per test (60 by default, as the reliability suite).
"""

from __future__ import annotations

import logging
import sys
import time

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from hypothesis import given
from hypothesis import strategies as st

from encoder_service.server import create_server
from encoder_service.settings import EncoderSettings
from lookalike.v1 import encoder_pb2, images_pb2
from tests.onnx_factory import write_foreign_model, write_linear_model
from tests.reliability import rpc_strategies as requests
from tests.reliability import test_fuzz_rpcs as contract
from tests.reliability.image_corpus import seeds

MODEL, DIMENSION = requests.MODEL, requests.DIMENSION
VERSIONS_LISTED = [1, 2, 3, 9]  # 3 is damaged, 9 is not in the repository
FUZZ = contract.FUZZ


class EncoderUnderFuzz(contract.Servers):
    """The reliability suite's contract for the encoder alone, with streams."""

    def __init__(self, address: str, private_paths: list[str]) -> None:
        super().__init__(address, address, private_paths)  # no search service here: its stub is never called
        # A version that does not load is logged at ERROR as the operator's problem (a damaged file),
        # whoever asked for it; the contract's ERROR check is for a handler's unexpected exception.
        self.errors.addFilter(lambda record: record.getMessage() != "cannot load model")

    def stream(self, messages: list[encoder_pb2.EmbedStreamRequest]) -> list[encoder_pb2.EmbedStreamResponse]:
        """EmbedStream held to the contract: the responses received, in order, before any refusal;
        a refusal names the message it refused ("request" metadata), the first not answered."""
        shown = contract._shown(encoder_pb2.EmbedStreamRequest()) if not messages else "\n".join(map(contract._shown, messages))
        logged = len(self.errors.lines)
        replies = []
        try:
            for reply in self.encoder.EmbedStream(iter(messages), timeout=contract.DEADLINE_SECONDS):
                replies.append(reply)
            code = grpc.StatusCode.OK
        except grpc.RpcError as error:
            code = error.code()
            assert code in contract.ALLOWED, f"EmbedStream answered {code.name}: {error.details()!r}\nrequests: {shown}"
            self._check_details(error, "EmbedStream", shown)
            assert _refused_index(error) == len(replies), f"refusal of message {_refused_index(error)} after {len(replies)} answers"
        self.calls[f"EmbedStream {code.name}"] = self.calls.get(f"EmbedStream {code.name}", 0) + 1
        assert len(self.errors.lines) == logged, f"EmbedStream logged an error\nrequests: {shown}\n{self._log_since(logged)}"
        return replies

    def check_still_serving(self) -> None:
        self.call("LoadModel", encoder_pb2.LoadModelRequest(model=images_pb2.ModelRef(name=MODEL, version=1)))
        health, asked = health_pb2_grpc.HealthStub(self.encoder_channel), health_pb2.HealthCheckRequest(service="lookalike.v1.Encoder")
        deadline = time.monotonic() + 10  # health follows the models at the next rescan
        while health.Check(asked, timeout=10).status != health_pb2.HealthCheckResponse.SERVING:
            assert time.monotonic() < deadline, "the encoder is not SERVING after fuzzing"
            time.sleep(0.05)
        request = encoder_pb2.EmbedRequest(model=images_pb2.ModelRef(name=MODEL, version=1), images=[images_pb2.Image(encoded=seeds()["rgb.png"])])
        assert len(self.encoder.Embed(request, timeout=10).embeddings[0].values) == DIMENSION


def _refused_index(error: grpc.RpcError) -> int:
    info = error_details_pb2.ErrorInfo()
    for detail in rpc_status.from_call(error).details:
        if detail.Unpack(info):
            return int(info.metadata["request"])
    raise AssertionError("a refusal without ErrorInfo")  # _check_details has already failed on it


@pytest.fixture
def encoder(tmp_path):
    root = tmp_path / "models"
    write_linear_model(root, name=MODEL, version=1)
    write_linear_model(root, name=MODEL, version=2, seed=1)
    (root / MODEL / "3").mkdir()
    (root / MODEL / "3" / "encoder.onnx").write_bytes(b"not an ONNX file")
    write_foreign_model(root, name="foreign", version=1)
    settings = EncoderSettings(
        host="127.0.0.1",
        port=0,
        model_repository=root,
        refresh_seconds=0.05,
        max_batch_size=requests.ENCODER_BATCH_LIMIT,
        serve_versions={MODEL: VERSIONS_LISTED},
    )
    server, port = create_server(settings)
    server.start()
    fuzzed = EncoderUnderFuzz(f"127.0.0.1:{port}", [str(tmp_path), str(contract.ROOT), sys.prefix])
    logging.getLogger().addHandler(fuzzed.errors)
    yield fuzzed
    try:
        fuzzed.check_still_serving()
        print(f"\n{contract.EXAMPLES} examples: " + ", ".join(f"{key} {count}" for key, count in sorted(fuzzed.calls.items())))
    finally:
        logging.getLogger().removeHandler(fuzzed.errors)
        fuzzed.close()
        server.stop(None)


names = requests.mostly(st.sampled_from([MODEL, "foreign"]), st.one_of(requests.valid_names, requests.strings))
versions = requests.mostly(st.sampled_from([0, *VERSIONS_LISTED]), requests.int32s)
refs = st.builds(images_pb2.ModelRef, name=names, version=versions)
maybe_refs = st.none() | refs


def _with_model(message, ref):
    return requests._set(message, "model", ref)


# The foreign encoder is never unloaded, so a model is always served: with none, every call is
# UNAVAILABLE (MODELS_LOADING) by design, and the contract (rightly) allows that code nowhere.
unloadable_refs = st.none() | refs.filter(lambda ref: ref.name != "foreign")
actions = st.one_of(
    st.builds(lambda ref: ("LoadModel", _with_model(encoder_pb2.LoadModelRequest(), ref)), maybe_refs),
    st.builds(lambda ref: ("UnloadModel", _with_model(encoder_pb2.UnloadModelRequest(), ref)), unloadable_refs),
    st.builds(lambda ref: ("GetModel", _with_model(encoder_pb2.GetModelRequest(), ref)), maybe_refs),
)


@FUZZ
@given(steps=st.lists(actions, min_size=1, max_size=6))
def test_load_unload_and_get_model(encoder, steps):
    for name, request in steps:
        reply = encoder.call(name, request)
        if name == "LoadModel" and reply is not None:
            assert reply.model.state == encoder_pb2.MODEL_STATE_SERVING and reply.model.model.version > 0
        if name == "UnloadModel" and reply is not None:
            assert reply.unloaded and all(ref.name == request.model.name for ref in reply.unloaded)
    listed = encoder.call("ListModels", encoder_pb2.ListModelsRequest()).models
    states = {(m.model.name, m.model.version): m for m in listed}
    assert states[MODEL, 3].state == states[MODEL, 9].state == encoder_pb2.MODEL_STATE_FAILED  # never served, always said why
    assert all(m.state_message for m in listed if m.state == encoder_pb2.MODEL_STATE_FAILED)
    assert all(m.embedding_dim > 0 for m in listed if m.state == encoder_pb2.MODEL_STATE_SERVING)


@FUZZ
@given(messages=st.lists(requests.embed_requests().map(lambda r: encoder_pb2.EmbedStreamRequest(request=r)), max_size=4))
def test_embed_stream(encoder, messages):
    for sent, reply in zip(messages, encoder.stream(messages)):
        assert len(reply.response.embeddings) == len(sent.request.images)
        assert all(len(e.values) == DIMENSION for e in reply.response.embeddings)
