"""Checkpoint -> a published version in the model repository (docs/model-repository.md).

    models/<name>/<version>/encoder.onnx   images (batch, C, H, W) -> embeddings (batch, D)
    models/<name>/<version>/decoder.onnx   embeddings (batch, D) -> images (batch, C, H, W), when
                                           the model has a decoder (a colour histogram has none)

Both files carry `lookalike.preprocessing` and `lookalike.model` metadata, pass onnx.checker,
and match PyTorch in ONNX Runtime on real images before anything is published. Publishing is
one rename of a finished temp dir, so a server scanning the repository never sees half a version.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from lookalike import model_format
from lookalike.model_format import ModelCard
from server_toolkit.durable_files import fsync_directory, fsync_files
from training.checkpoint import Checkpoint, load_checkpoint

log = logging.getLogger(__name__)

# Max abs difference allowed between ONNX Runtime and PyTorch outputs, encoder and decoder alike.
# float32 kernels differ only in summation order (~1e-6 here on outputs of order 1-10);
# 1e-4 leaves room for that yet catches a wrong op, a frozen batch size or a train-mode layer.
PARITY_TOLERANCE = 1e-4
EXPORT_BATCH = 2  # traced batch size; never 1, which torch.export would specialise as a constant
OPSET = 20


class ParityError(RuntimeError):
    """ONNX Runtime's outputs differ from PyTorch's by more than PARITY_TOLERANCE."""


def export(
    checkpoint_path: str | Path,
    repository: str | Path,
    name: str,
    version: int | None = None,
    parity_images: np.ndarray | None = None,
) -> Path:
    """Exports the checkpoint as `repository/name/version/` and returns that directory.

    version=None publishes the next version after the highest published one. An existing version
    is never overwritten: vectors of different models are not comparable. `parity_images`
    (S, C, H, W) are real preprocessed inputs for the parity check; by default the real images
    stored in the checkpoint (a validation sample).
    """
    model_dir = model_format.model_dir(Path(repository), name)  # refuses a bad name before any work
    if version is None:
        version = max(model_format.published_versions(model_dir), default=0) + 1
    final_dir = model_format.version_dir(Path(repository), name, version)
    checkpoint = load_checkpoint(checkpoint_path)
    model_dir.mkdir(parents=True, exist_ok=True)
    if final_dir.exists():
        raise FileExistsError(f"{final_dir} exists; published versions are never overwritten")

    images = checkpoint.sample_images if parity_images is None else np.asarray(parity_images, dtype=np.float32)
    assert images.ndim == 4 and images.shape[1:] == checkpoint.model.input_shape, (
        f"parity images must be (S, {checkpoint.model.input_shape}), got {images.shape}"
    )
    assert len(images) > 0, "parity needs at least one real image"
    if len(images) == EXPORT_BATCH:
        # The check must run at a batch size the exporter never saw, to prove the axis is dynamic.
        images = np.concatenate([images, images[:1]])

    tmp_dir = model_format.temporary_version_dir(model_dir, version)
    tmp_dir.mkdir()
    try:
        encoder, decoder = _to_onnx(checkpoint)
        error = _check_parity(checkpoint.model, encoder, decoder, images)
        metadata = _card(checkpoint, name, version, error).to_metadata()
        for filename, proto in ((model_format.ENCODER_FILE, encoder), (model_format.DECODER_FILE, decoder)):
            if proto is None:
                continue
            onnx.helper.set_model_props(proto, metadata)
            onnx.checker.check_model(proto, full_check=True)
            onnx.save(proto, tmp_dir / filename)
        fsync_files(tmp_dir)  # the files are durable before the rename announces them
        # rename(2) of a directory is atomic, and fails if another export published this version meanwhile.
        os.rename(tmp_dir, final_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    fsync_directory(model_dir)
    log.info("published %s (parity max abs error %.2e)", final_dir, error)
    return final_dir


def _to_onnx(checkpoint: Checkpoint) -> tuple[onnx.ModelProto, onnx.ModelProto | None]:
    model = checkpoint.model.eval()
    images = torch.from_numpy(checkpoint.sample_images[:1]).repeat(EXPORT_BATCH, 1, 1, 1)  # (B, C, H, W)
    with torch.no_grad():
        embeddings = model.encoder(images)  # (B, D)
    encoder = _export_module(model.encoder, images, "images", "embeddings")
    if model.decoder is None:
        return encoder, None
    decoder = _export_module(model.decoder, embeddings, "embeddings", "images")
    return encoder, decoder


def _export_module(module: nn.Module, example: torch.Tensor, input_name: str, output_name: str) -> onnx.ModelProto:
    # The torch.export-based exporter (dynamo=True), chosen explicitly: it is the default since
    # torch 2.9, and the TorchScript one (dynamo=False) is deprecated with a removal notice and
    # emits TracerWarnings on our shape asserts. It needs onnxscript (a `train` extra).
    batch = torch.export.Dim("batch", min=1)
    with _quiet_exporter():
        program = torch.onnx.export(
            module.eval(),
            (example,),
            input_names=[input_name],
            output_names=[output_name],
            dynamic_shapes={_forward_arg(module): {0: batch}},
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    return program.model_proto


def _check_parity(
    model: nn.Module, encoder: onnx.ModelProto, decoder: onnx.ModelProto | None, images: np.ndarray
) -> float:
    """Max abs error of ONNX Runtime (CPU) against PyTorch, encoder and decoder, on `images`."""
    with torch.no_grad():
        want_embeddings = model.encoder(torch.from_numpy(images)).numpy()  # (S, D)
    got_embeddings = _run(encoder, "images", images)
    if decoder is None:
        assert got_embeddings.shape == want_embeddings.shape, "ONNX output shapes differ: the batch axis is not dynamic"
        return _max_error(got_embeddings, want_embeddings)
    with torch.no_grad():
        want_images = model.decoder(torch.from_numpy(want_embeddings)).numpy()  # (S, C, H, W)
    # Feed the decoder PyTorch's embeddings, so its error is measured alone, not compounded.
    got_images = _run(decoder, "embeddings", want_embeddings)
    assert got_embeddings.shape == want_embeddings.shape and got_images.shape == want_images.shape, (
        "ONNX output shapes differ from PyTorch's: the batch axis is not dynamic"
    )
    return max(_max_error(got_embeddings, want_embeddings), _max_error(got_images, want_images))


def _max_error(got: np.ndarray, want: np.ndarray) -> float:
    error = float(np.abs(got - want).max())
    if not error <= PARITY_TOLERANCE:  # also catches NaN
        raise ParityError(f"ONNX Runtime differs from PyTorch by {error:.3e} > {PARITY_TOLERANCE:.0e}")
    return error


def _run(proto: onnx.ModelProto, input_name: str, inputs: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # a handful of images; threads would only add start-up cost
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {input_name: inputs})[0]


def _card(checkpoint: Checkpoint, name: str, version: int, error: float) -> ModelCard:
    return ModelCard(
        name=name,
        version=version,
        architecture=checkpoint.architecture,
        config=checkpoint.model_args,
        embedding_dim=checkpoint.model.embedding_dim,
        metric=checkpoint.metric,
        preprocessing=checkpoint.preprocessing,
        data_hash=checkpoint.data_hash,
        trained_at=checkpoint.trained_at,
        metrics=checkpoint.metrics,
        parity_max_abs_error=error,
    )


def _forward_arg(module: nn.Module) -> str:
    """The name of forward's single tensor argument, which dynamic_shapes is keyed by."""
    import inspect

    params = list(inspect.signature(module.forward).parameters)
    assert len(params) == 1, f"{type(module).__name__}.forward must take exactly one tensor"
    return params[0]


# Loggers of the exporter and its optimiser: at INFO they report every pass ("Removed 23 unused
# nodes"), and "torchvision is not installed" at WARNING, none of which is about our model.
_NOISY_LOGGERS = {
    "torch.onnx._internal.exporter._registration": logging.ERROR,
    "onnxscript": logging.WARNING,
    "onnx_ir": logging.WARNING,
}


@contextlib.contextmanager
def _quiet_exporter():
    """Silences the exporter's noise that says nothing about our model (torch 2.13, onnxscript 0.7)."""
    loggers = {logging.getLogger(name): level for name, level in _NOISY_LOGGERS.items()}
    saved = {logger: logger.level for logger in loggers}
    try:
        for logger, level in loggers.items():
            logger.setLevel(max(level, logger.getEffectiveLevel()))
        with warnings.catch_warnings():
            # torch's own pytree deprecation inside torch.export, not actionable here.
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*", category=FutureWarning)
            # nn.LSTM under torch.export: its own internals (flat weights, size checks), not our code;
            # the parity check proves the exported LSTMs right.
            warnings.filterwarnings("ignore", message=r".*_flat_weights.*were assigned during export.*")
            warnings.filterwarnings("ignore", message=r"_check_is_size will be removed.*", category=FutureWarning)
            yield
    finally:
        for logger, level in saved.items():
            logger.setLevel(level)
