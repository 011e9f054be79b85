"""Losses beyond reconstruction: the consistency term that makes embeddings robust to edits."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def consistency_loss(first: torch.Tensor, second: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent (SimCLR, https://arxiv.org/abs/2002.05709) on the embeddings themselves.

    first[i] and second[i] embed two edited copies of image i, (B, D) each. Every embedding must
    pick its partner out of the other 2B - 2 in the batch by cosine similarity. Applied to the search
    vector directly, with no projection head, because cosine on that vector is what search ranks by.
    """
    assert first.shape == second.shape and first.ndim == 2, "two (B, D) batches of partner embeddings"
    B = len(first)
    assert B > 1, "the term needs other images in the batch to contrast with"
    z = F.normalize(torch.cat([first, second]), dim=1)  # (2B, D), unit length
    similarity = z @ z.T / temperature  # (2B, 2B)
    similarity = similarity.masked_fill(torch.eye(2 * B, dtype=torch.bool, device=z.device), float("-inf"))
    partner = torch.cat([torch.arange(B, 2 * B), torch.arange(0, B)]).to(z.device)  # (2B,)
    return F.cross_entropy(similarity, partner)
