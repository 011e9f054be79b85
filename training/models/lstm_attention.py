"""Recurrent with attention: the encoder attention-pools its per-row states into the embedding.

Encoder: rows as timesteps (see lstm) -> (Bi)LSTM -> ReLU -> additive attention pooling: each
timestep's state is scored against one learned query, a softmax over the H timesteps weighs them,
and their weighted sum -> dropout -> Linear -> embedding. Unlike lstm's final state, every row
can contribute directly, which is the design's answer to squeezing a long sequence through one state.
Decoder: lstm's, unchanged — the embedding repeated over H timesteps into an LSTM.

The decoder deliberately does NOT attend to the encoder's per-timestep states, as a seq2seq
attention decoder would: it would then copy the image through those states around the embedding,
reconstruct well, and leave the embedding — the only thing search ever sees — untrained.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from training.models.autoencoder import Autoencoder
from training.models.lstm import Decoder, LSTMConfig, make_lstm, to_rows


@dataclasses.dataclass
class LSTMAttentionConfig(LSTMConfig):
    # height, width, channels, embedding_dim, hidden_size, num_layers, dropout: as in LSTMConfig
    bidirectional: bool = True  # encoder only: each timestep's state sees the rows above and below
    attention_dim: int = 64  # size of the space where timesteps are scored against the query

    def __post_init__(self) -> None:
        super().__post_init__()
        assert self.attention_dim > 0, "attention_dim must be positive"


class AttentionPool(nn.Module):
    """(B, T, F) -> (B, F): a softmax over T of score_t = query . tanh(W x_t + b), then the weighted sum."""

    def __init__(self, features: int, attention_dim: int) -> None:
        super().__init__()
        self.key = nn.Linear(features, attention_dim)
        self.query = nn.Parameter(torch.randn(attention_dim) / math.sqrt(attention_dim))  # learned, one for all

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        scores = torch.tanh(self.key(states)) @ self.query  # (B, T)
        weights = torch.softmax(scores, dim=1)  # (B, T), sums to 1 over the timesteps
        return (weights.unsqueeze(2) * states).sum(dim=1)  # (B, F)


class Encoder(nn.Module):
    def __init__(self, config: LSTMAttentionConfig) -> None:
        super().__init__()
        self.input_shape = (config.channels, config.height, config.width)
        features = (2 if config.bidirectional else 1) * config.hidden_size
        self.lstm = make_lstm(config.width * config.channels, config, config.bidirectional)
        self.act = nn.ReLU()
        self.pool = AttentionPool(features, config.attention_dim)
        self.dropout = nn.Dropout(config.dropout)
        self.to_embedding = nn.Linear(features, config.embedding_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        assert tuple(images.shape[1:]) == self.input_shape, (
            f"expected images (B, {', '.join(map(str, self.input_shape))}), got {tuple(images.shape)}: "
            "preprocess with the model's Preprocessing spec"
        )
        states, _ = self.lstm(to_rows(images))  # (B, H, dirs * hidden)
        pooled = self.pool(self.act(states))  # (B, dirs * hidden)
        return self.to_embedding(self.dropout(pooled))  # (B, D)


class LSTMAttentionAutoencoder(Autoencoder):
    architecture = "lstm_attention"

    def __init__(self, config: LSTMAttentionConfig) -> None:
        super().__init__(config)
        self.encoder = Encoder(config)
        # The embedding alone: no attention over the encoder's states here (see the module docstring).
        self.decoder = Decoder(config)
