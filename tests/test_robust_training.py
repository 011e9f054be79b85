"""The edit suite, the consistency term and the retrieval measures of the study, on real digits."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # the `train` extra; serving-only installs skip this file
pytestmark = pytest.mark.usefixtures("one_torch_thread")

from lookalike.preprocessing import Preprocessing  # noqa: E402
from training.augment import augment  # noqa: E402
from training.config import COLOUR_EDITS, EDITS, SHARING_EDITS, AugmentConfig, TrainConfig  # noqa: E402
from training.data import Split, load_digits, split_indices  # noqa: E402
from training.losses import consistency_loss  # noqa: E402
from training.retrieval_metrics import copy_detection, mean_average_precision  # noqa: E402
from training.train import train  # noqa: E402

NOTHING = AugmentConfig(p=0.0)
STRONG = AugmentConfig(rotation=30.0, scale=0.3, translate=0.2, crop=0.6, blur=1.5, brightness=0.3, contrast=0.5,
                       jpeg_quality=(10, 20), hue=0.25)  # fmt: skip


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def _batch(digits, n=16) -> torch.Tensor:
    return torch.from_numpy(digits.images[:n])


def test_probability_zero_leaves_images_alone(digits):
    images = _batch(digits)
    edited = augment(images, digits.spec, NOTHING, torch.Generator().manual_seed(0))
    assert torch.allclose(edited, images, atol=1e-6)


@pytest.mark.parametrize("edit", [e for e in EDITS if e not in COLOUR_EDITS])
def test_each_edit_alone_changes_the_image_and_stays_in_range(digits, edit):
    images = _batch(digits)
    edited = augment(images, digits.spec, STRONG.only(edit), torch.Generator().manual_seed(0))
    assert edited.shape == images.shape and edited.dtype == images.dtype
    assert (edited - images).abs().mean() > 0.01, f"{edit} did not change the digits"
    assert edited.min() >= 0.0 and edited.max() <= 1.0, "pixels stay within 0..1 (mean 0, std 1 here)"


def test_only_turns_every_other_edit_off(digits):
    images = _batch(digits)
    for edit in ("blur", "jpeg_quality"):
        alone = augment(images, digits.spec, STRONG.only(edit), torch.Generator().manual_seed(0))
        with_rotation = dataclasses.replace(STRONG.only(edit), rotation=30.0)
        assert not torch.allclose(alone, augment(images, digits.spec, with_rotation, torch.Generator().manual_seed(0)))
    assert torch.equal(augment(images, digits.spec, STRONG.only("hue"), torch.Generator()), images), "grey has no hue"


def test_edits_are_seeded_and_differ_per_image(digits):
    images = _batch(digits).repeat(2, 1, 1, 1)  # the same 16 digits twice
    first = augment(images, digits.spec, AugmentConfig(), torch.Generator().manual_seed(3))
    again = augment(images, digits.spec, AugmentConfig(), torch.Generator().manual_seed(3))
    assert torch.equal(first, again)
    assert not torch.allclose(first[:16], first[16:]), "each image draws its own edits"


def test_colour_edits_apply_to_colour_images_only():
    spec = Preprocessing(height=16, width=16, channels=3, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    rng = np.random.default_rng(0)
    images = torch.from_numpy(((rng.random((4, 3, 16, 16)) - 0.5) / 0.25).astype(np.float32))
    pixels = images * 0.25 + 0.5
    edited = augment(images, spec, STRONG.only("hue"), torch.Generator().manual_seed(0)) * 0.25 + 0.5
    # A hue turn keeps luma (Y of YIQ) but for clipping, and moves colour.
    luma = torch.tensor([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1)
    assert ((pixels * luma).sum(1) - (edited * luma).sum(1)).abs().mean() < 0.03
    assert (edited - pixels).abs().mean() > 0.05
    flip = AugmentConfig(p=0.0, hflip=1.0, grayscale=0.0, sharing=0.0)  # each has its own probability, not p
    assert torch.allclose(augment(images, spec, flip, torch.Generator()), images.flip(-1), atol=1e-6)
    grey = Preprocessing(height=16, width=16, channels=1)
    digit_like = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(augment(digit_like, grey, flip, torch.Generator()), digit_like), "digits are never mirrored"


@pytest.mark.parametrize("edit", ["grayscale", *SHARING_EDITS])
def test_each_resharing_edit_changes_colour_images_only(edit):
    spec = Preprocessing(height=32, width=32, channels=3, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    rng = np.random.default_rng(1)
    smooth = torch.nn.functional.interpolate(torch.from_numpy(rng.random((8, 3, 8, 8)).astype(np.float32)), size=(32, 32))
    images = (smooth - 0.5) / 0.25  # (8, 3, 32, 32), blocks of colour, as preprocessed
    config = AugmentConfig(downscale=0.2, letterbox=0.5, caption=0.3, overlay=0.4).only(edit)
    edited = augment(images, spec, config, torch.Generator().manual_seed(0)) * 0.25 + 0.5
    assert edited.shape == images.shape
    assert edited.min() >= 0.0 and edited.max() <= 1.0, "pixels stay within 0..1"
    changed = (edited - smooth).abs().flatten(1).amax(1)  # (8,)
    assert (changed > 0.1).all(), f"{edit} left some images alone: {changed}"
    if edit == "grayscale":
        assert torch.allclose(edited[:, 0], edited[:, 1], atol=1e-5) and torch.allclose(edited[:, 1], edited[:, 2], atol=1e-5)
    grey = Preprocessing(height=32, width=32, channels=1)
    digit_like = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(augment(digit_like, grey, config, torch.Generator()), digit_like), "colour images only"


def test_consistency_loss_rewards_matching_pairs():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(32, 8, generator=g)
    matched = consistency_loss(z, z + 0.01 * torch.randn(32, 8, generator=g), temperature=0.1)
    shuffled = consistency_loss(z, z[torch.randperm(32, generator=g)], temperature=0.1)
    assert matched < 0.5 < shuffled
    with pytest.raises(AssertionError, match="other images"):
        consistency_loss(z[:1], z[:1], 0.1)


def test_training_with_consistency_is_deterministic_and_logs_both_losses(digits):
    full = split_indices(len(digits))
    split = Split(train=full.train[:96], val=full.val[:32], test=full.test[:20])
    config = TrainConfig(
        model={"conv_channels": [4, 8], "fc_dim": 16, "embedding_dim": 8},
        epochs=1, batch_size=32, consistency=0.5, progress=False, num_threads=1,
    )  # fmt: skip
    first, second = train(digits, split, config), train(digits, split, config)
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a, b)
    entry = first.history[0]
    assert entry["train_loss"] > entry["train_mse"] > 0, "the consistency term adds to the reconstruction MSE"


def test_mean_average_precision_on_a_known_ranking():
    db = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    db_labels = np.array([0, 1, 1, 0])
    query = np.array([[1.0, 0.0]])
    # Ranking by cosine: items 0 (hit), 1 (miss), 3 (hit), 2 (miss): AP = (1/1 + 2/3) / 2.
    assert mean_average_precision(query, [0], db, db_labels) == pytest.approx((1 + 2 / 3) / 2)
    assert mean_average_precision(db, db_labels, db, db_labels) <= 1.0


def test_copy_detection_recall_and_micro_ap():
    db = np.eye(4, dtype=np.float32)
    copies = db[[0, 1, 2]] + np.array([[0, 0, 0, 0.1], [0.5, 0, 0, 0], [0, 0, -0.5, 0.9]], dtype=np.float32)
    found = copy_detection(copies, np.array([0, 1, 2]), db, k=2)
    assert found["recall_at_1"] == pytest.approx(2 / 3)  # the third copy is nearer item 3
    # Pooled top-2 by cosine: .995 hit (q0), .894 hit (q1), .874 miss (q2->3), .486 hit (q2->2), then misses.
    assert found["micro_ap"] == pytest.approx((1 + 1 + 3 / 4) / 3, abs=1e-6)
    perfect = copy_detection(db, np.arange(4), db, k=2)
    assert perfect == {"recall_at_1": 1.0, "micro_ap": 1.0}


def test_copy_recall_counts_ties_for_the_best_score_as_a_coin_toss():
    db = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=np.float32)  # items 0 and 1 are the same
    queries = np.array([[1.0, 0.1], [0.1, 1.0]], dtype=np.float32)
    found = copy_detection(queries, np.array([0, 2]), db, k=2)
    assert found["recall_at_1"] == pytest.approx((0.5 + 1.0) / 2), "item 0 ties with item 1: half a hit"
