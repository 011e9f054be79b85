"""Training loop: MSE reconstruction of clean images from edited ones, an optional consistency term,
seeded, on the CPU by default.

    result = train(load_digits(), split_indices(5000), TrainConfig())
    result.model, result.history, result.metrics

Batches are made from the dataset's uint8 pixels as they are needed (`Dataset.batch`), so memory
is bounded by the batch size, not by the collection. After every epoch `on_epoch` receives the whole
`TrainingState` (weights, optimizer, schedule, RNG states, history): saved, it lets `resume` go on
exactly where training stopped, as if it never had.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from training.augment import augment
from training.config import TrainConfig
from training.data import Dataset, Split
from training.losses import consistency_loss
from training.models import Autoencoder, Baseline, build_model, input_settings
from training.progress import Phase
from training.retrieval_metrics import precision_at_k

log = logging.getLogger(__name__)

VALIDATION_SEED = 1234  # the edits of the validation images: fixed, so epochs compare on equal terms
EVAL_BATCH = 512  # images per forward pass when measuring, no gradients kept
# Test images that query the train+val images for precision@k: a prefix of the shuffled test split,
# so the score costs seconds at a million images; all 1000 of the digits' test images are used.
EVAL_QUERIES = 2000
RANK_QUERIES = 128  # queries ranked at a time: each holds a (q, N) score and index matrix, 1 GB at 1024 x 80k


@dataclasses.dataclass
class TrainingState:
    """Where training stands after `epoch` epochs: what resuming needs to go on exactly."""

    epoch: int  # epochs done
    history: list[dict[str, float]]  # one entry per epoch done
    best_val: float  # lowest validation loss so far
    best_weights: dict[str, torch.Tensor]  # state_dict of the epoch with that loss: the model to keep
    model: dict[str, torch.Tensor]  # state_dict after `epoch`: where training goes on from
    optimizer: dict  # AdamW state (moments, step counts)
    scheduler: dict  # one-cycle schedule state
    generator: torch.Tensor  # state of the generator of shuffling and edits
    torch_rng: torch.Tensor  # state of torch's global generator (dropout)

    def to_dict(self) -> dict:
        """Plain types and tensors, for a checkpoint read with weights_only=True."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "TrainingState":
        return cls(**d)

    @property
    def best_epoch(self) -> int:
        return min(self.history, key=lambda entry: entry["val_loss"])["epoch"]


@dataclasses.dataclass
class TrainResult:
    model: Autoencoder  # eval mode, on the CPU, weights of the epoch with the lowest val loss
    history: list[dict[str, float]]  # per epoch: epoch, train_loss, train_mse, val_loss, val_mse, lr, seconds
    metrics: dict[str, float]  # final train/val/test MSE, and retrieval precision when labels exist
    seconds: float  # wall-clock time of this call
    state: TrainingState | None = None  # after the last epoch, to train on later (None for baselines)


def train(
    data: Dataset,
    split: Split,
    config: TrainConfig | None = None,
    *,
    resume: TrainingState | None = None,
    on_epoch: Callable[[Autoencoder, TrainingState], None] | None = None,
) -> TrainResult:
    """Fits an autoencoder on `split.train`, keeps the epoch with the lowest loss on `split.val`.

    `resume` goes on from a saved state up to `config.epochs`: with the epoch count it was started
    with, the result equals an uninterrupted run's; with more epochs, the one-cycle schedule is
    stretched to the new length and taken up at the step reached. `on_epoch` gets the model and the
    state after every epoch (e.g. to save them). Prints one line per epoch (training/progress.py).
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
    if isinstance(model, Baseline):
        return _fit_baseline(model, data, split, config)

    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = -(-len(split.train) // config.batch_size)
    # One-cycle: a short warm-up then annealing; converges well in the few epochs a CPU run affords.
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch
    )
    history: list[dict[str, float]] = []
    best_val, best_state = float("inf"), None
    if resume is not None:
        assert resume.epoch < config.epochs, f"already trained {resume.epoch} epochs, asked for {config.epochs}"
        model.load_state_dict(resume.model)
        optimizer.load_state_dict(resume.optimizer)
        if resume.scheduler["total_steps"] == scheduler.total_steps:
            scheduler.load_state_dict(resume.scheduler)
        else:  # another epoch count: the same schedule, stretched, at the step reached
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()": on purpose here
                for _ in range(resume.epoch * steps_per_epoch):
                    scheduler.step()
        generator.set_state(resume.generator)
        torch.set_rng_state(resume.torch_rng)
        history, best_val, best_state = list(resume.history), resume.best_val, resume.best_weights
    state = resume

    started = time.perf_counter()
    for epoch in range(len(history) + 1, config.epochs + 1):
        name = f"epoch {epoch}/{config.epochs}"
        with Phase(name, total=steps_per_epoch, unit="batch", progress=config.progress) as phase:
            model.train()
            order = split.train[torch.randperm(len(split.train), generator=generator).numpy()]  # (n_train,)
            sums = {"loss": 0.0, "mse": 0.0}
            for step in range(steps_per_epoch):
                rows = order[step * config.batch_size : (step + 1) * config.batch_size]
                clean = torch.from_numpy(data.batch(rows))  # (B, C, H, W)
                loss, recon = objective(model, clean, data, config, generator, device)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                sums["loss"] += loss.item() / steps_per_epoch
                sums["mse"] += recon.item() / steps_per_epoch
                phase.update(1, loss=f"{sums['loss'] * steps_per_epoch / (step + 1):.4f}")
            val_loss = validation_loss(model, data, split.val, config, device)
            entry = {
                "epoch": epoch,
                "train_loss": sums["loss"],
                "train_mse": sums["mse"],  # of clean targets rebuilt from edited inputs, so above the clean MSE
                "val_loss": val_loss,
                "val_mse": mse(model, data, split.val, device),
                "lr": scheduler.get_last_lr()[0],
                "seconds": phase.seconds,
            }
            phase.finish(f"{name}: train_loss {entry['train_loss']:.5f}, val_loss {val_loss:.5f}, val_mse {entry['val_mse']:.5f}")
        history.append(entry)
        if val_loss < best_val:
            best_val, best_state = val_loss, copy.deepcopy(model.state_dict())
        state = TrainingState(
            epoch=epoch,
            history=list(history),  # a snapshot: later epochs append to `history`
            best_val=best_val,
            best_weights=best_state,
            model=model.state_dict(),
            optimizer=optimizer.state_dict(),
            scheduler=scheduler.state_dict(),
            generator=generator.get_state(),
            torch_rng=torch.get_rng_state(),
        )
        if on_epoch is not None:
            on_epoch(model, state)
    seconds = time.perf_counter() - started

    model.load_state_dict(best_state)
    model = model.cpu().eval()
    metrics = evaluate(model, data, split, progress=config.progress)
    metrics["train_seconds"] = sum(entry["seconds"] for entry in history)  # every epoch, also those before a resume
    log.info("trained in %.1fs: %s", seconds, metrics)
    return TrainResult(model=model, history=history, metrics=metrics, seconds=seconds, state=state)


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
    model: Autoencoder, data: Dataset, indices: np.ndarray, config: TrainConfig, device: torch.device, batch_size: int = 256
) -> float:
    """The training objective on held-out images, with the same edits every epoch (a fixed seed)."""
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(VALIDATION_SEED)
    total = 0.0
    for start in range(0, len(indices), batch_size):
        batch = torch.from_numpy(data.batch(indices[start : start + batch_size]))  # (B, C, H, W)
        loss, _ = objective(model, batch, data, config, generator, device)
        total += loss.item() * len(batch)
    model.train(was_training)
    return total / len(indices)


def _fit_baseline(model: Baseline, data: Dataset, split: Split, config: TrainConfig) -> TrainResult:
    started = time.perf_counter()
    # Baselines fit on every training image at once (PCA's SVD): sized for study sets, not catalogues.
    model.cpu().fit(torch.from_numpy(data.batch(split.train)))
    seconds = time.perf_counter() - started
    model.eval()
    metrics = evaluate(model, data, split, progress=config.progress)
    metrics["train_seconds"] = seconds
    return TrainResult(model=model, history=[], metrics=metrics, seconds=seconds)


@torch.no_grad()
def mse(
    model: Autoencoder,
    data: Dataset,
    indices: np.ndarray,
    device: torch.device | str = "cpu",
    on_batch: Callable[[int], None] | None = None,
) -> float:
    """Mean squared reconstruction error per pixel of the images `indices` on clean inputs, in eval mode."""
    if len(indices) == 0:
        return float("nan")
    was_training = model.training
    model.eval()
    total = 0.0
    for start in range(0, len(indices), EVAL_BATCH):
        batch = torch.from_numpy(data.batch(indices[start : start + EVAL_BATCH])).to(device)  # (B, C, H, W)
        total += F.mse_loss(model(batch), batch, reduction="sum").item()
        if on_batch is not None:
            on_batch(len(batch))
    model.train(was_training)
    return total / (len(indices) * int(np.prod(data.spec.shape)))


@torch.no_grad()
def embed(
    model: Autoencoder, data: Dataset, indices: np.ndarray, on_batch: Callable[[int], None] | None = None
) -> np.ndarray:
    """Embeddings (len(indices), D) float32 of the images `indices`, computed in eval mode on the CPU."""
    model = model.cpu().eval()
    chunks = []
    for start in range(0, len(indices), EVAL_BATCH):
        chunks.append(model.encoder(torch.from_numpy(data.batch(indices[start : start + EVAL_BATCH]))))
        if on_batch is not None:
            on_batch(len(chunks[-1]))
    return torch.cat(chunks).numpy()


def evaluate(model: Autoencoder, data: Dataset, split: Split, k: int = 10, progress: bool = False) -> dict[str, float]:
    """MSE per split (models with a decoder); with labels, also precision@k of test queries (the
    first EVAL_QUERIES) against train+val, by cosine. Prints one line when done."""
    names = ("train", "val", "test") if model.decoder is not None else ()
    queries, db = split.test[:EVAL_QUERIES], split.train_val
    ranked = data.labels is not None and len(queries) > 0
    total = sum(len(getattr(split, name)) for name in names) + (len(queries) + len(db) if ranked else 0)
    with Phase("evaluating", total=total, unit="img", progress=progress) as phase:
        metrics = {f"{name}_mse": mse(model, data, getattr(split, name), on_batch=phase.update) for name in names}
        if ranked:
            assert k <= len(db), f"precision@{k} needs at least {k} indexed images"
            query_vecs, db_vecs = embed(model, data, queries, phase.update), embed(model, data, db, phase.update)
            hits = 0.0
            for start in range(0, len(queries), RANK_QUERIES):
                part = queries[start : start + RANK_QUERIES]
                vecs = query_vecs[start : start + RANK_QUERIES]
                hits += len(part) * precision_at_k(vecs, data.labels[part], db_vecs, data.labels[db], k, "cosine")
            metrics[f"test_precision_at_{k}"] = hits / len(queries)
        ranking = f", precision@{k} of {len(queries)} queries among {len(db)}" if ranked else ""
        phase.finish(f"evaluation: MSE of {sum(len(getattr(split, name)) for name in names)} images{ranking}")
    return metrics
