"""Training loop: MSE reconstruction, optional denoising, seeded, on CPU by default.

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

from training.augment import corrupt
from training.config import TrainConfig
from training.data import Dataset, Split
from training.models import Autoencoder, build_model
from training.retrieval_metrics import precision_at_k

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainResult:
    model: Autoencoder  # eval mode, on the CPU, weights of the epoch with the lowest val MSE
    history: list[dict[str, float]]  # one entry per epoch: epoch, train_mse, val_mse, lr, seconds
    metrics: dict[str, float]  # final train/val/test MSE, and retrieval precision when labels exist
    seconds: float  # wall-clock training time


def train(data: Dataset, split: Split, config: TrainConfig | None = None) -> TrainResult:
    """Fits an autoencoder on `split.train`, keeps the epoch with the lowest `split.val` MSE.

    Sets torch's thread count to `config.num_threads` for the process.
    """
    config = config or TrainConfig()
    assert len(split.train) > 0 and len(split.val) > 0, "training needs a train and a val split"
    torch.set_num_threads(config.num_threads)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)  # shuffling and corruption, separate from weights
    device = torch.device(config.device)

    C, H, W = data.spec.shape
    overrides = {"height": H, "width": W, "channels": C, **config.model}
    model = build_model(config.architecture, overrides).to(device)
    assert model.input_shape == data.spec.shape, (
        f"model input {model.input_shape} differs from the data's preprocessing {data.spec.shape}"
    )
    images = torch.from_numpy(data.images)  # (N, C, H, W), stays on the CPU; batches move to device
    train_images, val_images = images[split.train], images[split.val]

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
        total, seen = 0.0, 0
        bar = tqdm(
            range(steps_per_epoch), desc=f"epoch {epoch}/{config.epochs}", leave=False, disable=not config.progress
        )
        for step in bar:
            clean = train_images[order[step * config.batch_size : (step + 1) * config.batch_size]]  # (B, C, H, W)
            inputs = corrupt(clean, generator, config.max_shift, config.max_rotation, config.noise_std)
            clean, inputs = clean.to(device), inputs.to(device)
            loss = F.mse_loss(model(inputs), clean)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item() * len(clean)
            seen += len(clean)
            bar.set_postfix(loss=f"{total / seen:.4f}")
        val_mse = mse(model, val_images, device=device)
        entry = {
            "epoch": epoch,
            "train_mse": total / seen,  # on corrupted inputs when denoising, so above the clean train MSE
            "val_mse": val_mse,
            "lr": scheduler.get_last_lr()[0],
            "seconds": time.perf_counter() - epoch_started,
        }
        history.append(entry)
        log.info("epoch %d/%d train_mse %.5f val_mse %.5f", epoch, config.epochs, entry["train_mse"], val_mse)
        if val_mse < best_val:
            best_val, best_state = val_mse, copy.deepcopy(model.state_dict())
    seconds = time.perf_counter() - started

    model.load_state_dict(best_state)
    model = model.cpu().eval()
    metrics = evaluate(model, data, split)
    metrics["train_seconds"] = seconds
    log.info("trained in %.1fs: %s", seconds, metrics)
    return TrainResult(model=model, history=history, metrics=metrics, seconds=seconds)


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
    """MSE per split; with labels, also precision@k of test queries against train+val, by cosine."""
    images = torch.from_numpy(data.images)
    metrics = {f"{name}_mse": mse(model, images[getattr(split, name)]) for name in ("train", "val", "test")}
    if data.labels is not None and len(split.test) > 0:
        vecs = embed(model, data.images)  # (N, D)
        db = split.train_val
        assert k <= len(db), f"precision@{k} needs at least {k} indexed images"
        metrics[f"test_precision_at_{k}"] = precision_at_k(
            vecs[split.test], data.labels[split.test], vecs[db], data.labels[db], k, "cosine"
        )
    return metrics
