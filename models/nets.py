"""The two sequence networks. Both read ``(batch, sequence, features)`` and return two numbers
per row: the logit of an up move and the standardized expected forward return."""

from __future__ import annotations

import torch
from torch import nn

from config.schemas.model import ModelSettings


class LSTMNet(nn.Module):
    """Stacked LSTM; the last step's hidden state feeds both heads."""

    def __init__(self, n_features: int, hidden_size: int, num_layers: int, dropout: float) -> None:
        super().__init__()
        self.lstm = nn.LSTM(n_features, hidden_size, num_layers, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden_size, 2))

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        out, _ = self.lstm(x)  # padding is a zero vector before a symbol's first bar
        return self.head(out[:, -1])


class TransformerNet(nn.Module):
    """Pre-norm Transformer encoder over the window with learned positions; the last bar's
    token feeds both heads. Padded steps are masked out of attention."""

    def __init__(self, n_features: int, sequence_length: int, d_model: int, n_heads: int, n_layers: int,
                 dim_feedforward: int, dropout: float) -> None:
        super().__init__()
        self.embed = nn.Linear(n_features, d_model)
        self.position = nn.Parameter(torch.zeros(1, sequence_length, d_model))
        nn.init.normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(d_model, n_heads, dim_feedforward, dropout, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, 2)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.encoder(self.embed(x) + self.position[:, -x.shape[1]:], src_key_padding_mask=pad_mask)
        return self.head(self.norm(h[:, -1]))


def build_net(family: str, n_features: int, cfg: ModelSettings) -> nn.Module:
    """The network for ``family`` ("lstm" or "transformer") with the configured sizes."""
    if family == "lstm":
        c = cfg.lstm
        return LSTMNet(n_features, c.hidden_size, c.num_layers, c.dropout)
    if family == "transformer":
        t = cfg.transformer  # d_model % n_heads == 0 is checked when the config loads
        return TransformerNet(n_features, cfg.sequence_length, t.d_model, t.n_heads, t.n_layers,
                              t.dim_feedforward, t.dropout)
    raise ValueError(f"unknown sequence family {family!r}")
