"""Training loop: MSE reconstruction of clean images from edited ones, an optional consistency term,
seeded, on the CPU by default.

    result = train(load_digits(), split_indices(5000), TrainConfig())
    result.model, result.history, result.metrics
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from training.augment import augment
from training.config import TrainConfig
from training.data import Dataset, Split
from training.losses import consistency_loss
from training.models import Autoencoder, Baseline, build_model, input_settings
from training.retrieval_metrics import precision_at_k

log = logging.getLogger(__name__)

VALIDATION_SEED = 1234  # the edits of the validation images: fixed, so epochs compare on equal terms


@dataclasses.dataclass
class TrainResult:
    model: Autoencoder  # eval mode, on the CPU, weights of the epoch with the lowest val loss
    history: list[dict[str, float]]  # per epoch: epoch, train_loss, train_mse, val_loss, val_mse, lr, seconds
    metrics: dict[str, float]  # final train/val/test MSE, and retrieval precision when labels exist
    seconds: float  # wall-clock training time


def train(data: Dataset, split: Split, config: TrainConfig | None = None) -> TrainResult:
    """Fits an autoencoder on `split.train`, keeps the epoch with the lowest loss on `split.val`.

    Sets torch's thread count to `config.num_threads` for the process.
    """
    config = config or TrainConfig()
    assert len(split.train) > 0 and len(split.val) > 0, "training needs a train and a val split"
    torch.set_num_threads(config.num_threads)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)  # shuffling and edits, separate from weights
    device = torch.device(config.device)

    model = build_model(config.architecture, {**input_settings(config.architecture, data.spec), **config.model})
    model = model.to(device)
    assert model.input_shape == data.spec.shape, (
        f"model input {model.input_shape} differs from the data's preprocessing {data.spec.shape}"
    )
    images = torch.from_numpy(data.images)  # (N, C, H, W), stays on the CPU; batches move to device
    train_images, val_images = images[split.train], images[split.val]
    if isinstance(model, Baseline):
        return _fit_baseline(model, train_images, data, split)

    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = -(-len(train_images) // config.batch_size)
    # One-cycle: a short warm-up then annealing; converges well in the few epochs a CPU run affords.
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch
    )

    history: list[dict[str, float]] = []
    best_val, best_state = float("inf"), None
    started = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        epoch_started = time.perf_counter()
        model.train()
        order = torch.randperm(len(train_images), generator=generator)
        sums = {"loss": 0.0, "mse": 0.0}
        bar = tqdm(
            range(steps_per_epoch), desc=f"epoch {epoch}/{config.epochs}", leave=False, disable=not config.progress
        )
        for step in bar:
            clean = train_images[order[step * config.batch_size : (step + 1) * config.batch_size]]  # (B, C, H, W)
            loss, recon = objective(model, clean, data, config, generator, device)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            sums["loss"] += loss.item() / steps_per_epoch
            sums["mse"] += recon.item() / steps_per_epoch
            bar.set_postfix(loss=f"{sums['loss'] * steps_per_epoch / (step + 1):.4f}")
        val_loss = validation_loss(model, val_images, data, config, device)
        entry = {
            "epoch": epoch,
            "train_loss": sums["loss"],
            "train_mse": sums["mse"],  # of clean targets rebuilt from edited inputs, so above the clean MSE
            "val_loss": val_loss,
            "val_mse": mse(model, val_images, device=device),
            "lr": scheduler.get_last_lr()[0],
            "seconds": time.perf_counter() - epoch_started,
        }
        history.append(entry)
        log.info(
            "epoch %d/%d train_loss %.5f val_loss %.5f val_mse %.5f",
            epoch, config.epochs, entry["train_loss"], val_loss, entry["val_mse"],
        )
        if val_loss < best_val:
            best_val, best_state = val_loss, copy.deepcopy(model.state_dict())
    seconds = time.perf_counter() - started

    model.load_state_dict(best_state)
    model = model.cpu().eval()
    metrics = evaluate(model, data, split)
    metrics["train_seconds"] = seconds
    log.info("trained in %.1fs: %s", seconds, metrics)
    return TrainResult(model=model, history=history, metrics=metrics, seconds=seconds)


def objective(
    model: Autoencoder,
    clean: torch.Tensor,
    data: Dataset,
    config: TrainConfig,
    generator: torch.Generator,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss to minimise, its reconstruction MSE part) for one batch of clean images (B, C, H, W)."""
    B = len(clean)
    if config.augment is None:
        inputs = clean
    else:
        views = 2 if config.consistency > 0 else 1
        inputs = torch.cat([augment(clean, data.spec, config.augment, generator) for _ in range(views)])
    embeddings = model.encoder(inputs.to(device))  # (views * B, D)
    clean = clean.to(device)
    recon = F.mse_loss(model.decoder(embeddings), clean.repeat(len(inputs) // B, 1, 1, 1))
    loss = recon
    if config.augment is not None and config.consistency > 0 and B > 1:  # a lone image has nothing to contrast
        loss = loss + config.consistency * consistency_loss(embeddings[:B], embeddings[B:], config.temperature)
    return loss, recon


@torch.no_grad()
def validation_loss(
    model: Autoencoder, images: torch.Tensor, data: Dataset, config: TrainConfig, device: torch.device, batch_size: int = 256
) -> float:
    """The training objective on held-out images, with the same edits every epoch (a fixed seed)."""
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(VALIDATION_SEED)
    total = 0.0
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        loss, _ = objective(model, batch, data, config, generator, device)
        total += loss.item() * len(batch)
    model.train(was_training)
    return total / len(images)


def _fit_baseline(model: Baseline, train_images: torch.Tensor, data: Dataset, split: Split) -> TrainResult:
    started = time.perf_counter()
    model.cpu().fit(train_images)
    seconds = time.perf_counter() - started
    model.eval()
    metrics = evaluate(model, data, split)
    metrics["train_seconds"] = seconds
    return TrainResult(model=model, history=[], metrics=metrics, seconds=seconds)


@torch.no_grad()
def mse(model: Autoencoder, images: torch.Tensor, batch_size: int = 512, device: torch.device | str = "cpu") -> float:
    """Mean squared reconstruction error per pixel on clean inputs, in eval mode."""
    was_training = model.training
    model.eval()
    total = 0.0
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].to(device)
        total += F.mse_loss(model(batch), batch, reduction="sum").item()
    model.train(was_training)
    return total / images.numel()


@torch.no_grad()
def embed(model: Autoencoder, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Embeddings (N, D) float32 of preprocessed images (N, C, H, W), computed in eval mode on the CPU."""
    model = model.cpu().eval()
    chunks = [model.encoder(torch.from_numpy(images[s : s + batch_size])) for s in range(0, len(images), batch_size)]
    return torch.cat(chunks).numpy()


def evaluate(model: Autoencoder, data: Dataset, split: Split, k: int = 10) -> dict[str, float]:
    """MSE per split (models with a decoder); with labels, also precision@k of test queries against
    train+val, by cosine."""
    images = torch.from_numpy(data.images)
    metrics = {}
    if model.decoder is not None:
        metrics = {f"{name}_mse": mse(model, images[getattr(split, name)]) for name in ("train", "val", "test")}
    if data.labels is not None and len(split.test) > 0:
        vecs = embed(model, data.images)  # (N, D)
        db = split.train_val
        assert k <= len(db), f"precision@{k} needs at least {k} indexed images"
        metrics[f"test_precision_at_{k}"] = precision_at_k(
            vecs[split.test], data.labels[split.test], vecs[db], data.labels[db], k, "cosine"
        )
    return metrics
