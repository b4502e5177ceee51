"""The design of earlier Genesis RNA versions, kept as a throughput baseline (``bench train``).

Not used for training. It reproduces what made those versions slow, with the same dimensions
as this package's model sizes so the comparison is per nucleotide of the same model class:

- post-LN encoder layers built on ``nn.MultiheadAttention``, learned absolute position
  embeddings (so every batch is padded to ``max_len``: the position table has that length);
- an MLM head dense -> GELU -> LayerNorm -> vocabulary, a linear structure head;
- a bilinear pair head: two ``d_model`` projections, one [T, T] matmul, a learned scale;
- trained in fp32 on batches padded to ``max_len`` (512).

Its outputs use this package's keys, so ``losses.MultiTaskLoss`` trains it unchanged.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from genesis_rna.model import ModelConfig


class _PostLNLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attn = nn.MultiheadAttention(cfg.d_model, cfg.n_heads, dropout=cfg.dropout,
                                          batch_first=True)
        self.ff = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(),
                                nn.Linear(cfg.d_ff, cfg.d_model))
        self.norm1, self.norm2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.drop1, self.drop2 = nn.Dropout(cfg.dropout), nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        a, _ = self.attn(x, x, x, key_padding_mask=padding, need_weights=False)
        x = self.norm1(x + self.drop1(a))
        return self.norm2(x + self.drop2(self.ff(x)))


class PaddedBaseline(nn.Module):
    """Encoder + three heads of the earlier design; forward(tokens, attention_mask) -> dict."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.d_model
        self.max_len = cfg.max_len
        self.tok = nn.Embedding(cfg.vocab_size, d)
        self.pos = nn.Embedding(cfg.max_len, d)
        self.embed_norm = nn.LayerNorm(d)
        self.drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(_PostLNLayer(cfg) for _ in range(cfg.n_layers))
        self.final_norm = nn.LayerNorm(d)
        self.mlm_head = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.LayerNorm(d),
                                      nn.Linear(d, cfg.vocab_size))
        self.struct_head = nn.Sequential(nn.Dropout(0.1), nn.Linear(d, cfg.n_struct_classes))
        self.left = nn.Linear(d, d, bias=False)
        self.right = nn.Linear(d, d, bias=False)
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, tokens: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        b, t = tokens.shape
        if t != self.max_len:
            raise ValueError(f"this design trains on batches padded to {self.max_len}, got {t}")
        x = self.tok(tokens) + self.pos(torch.arange(t, device=tokens.device))[None]
        x = self.drop(self.embed_norm(x))
        for layer in self.layers:
            x = layer(x, ~attention_mask)
        h = self.final_norm(x)
        pair = (self.left(h) @ self.right(h).transpose(1, 2)) * self.scale  # [B, T, T]
        return {"mlm_logits": self.mlm_head(h), "struct_logits": self.struct_head(h),
                "pair_logits": pair, "hidden": h}
