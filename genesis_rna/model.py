"""Genesis RNA multi-task transformer, in one file (nanoGPT style).

Pre-LN transformer encoder with rotary position embeddings (relative positions, so a cropped
window or extra padding does not change what a position means) and attention with a
key-padding mask (``scaled_dot_product_attention`` on CUDA, plain matmul-softmax-matmul on CPU,
where it is faster at these shapes). Three heads:
- MLM: logits over the vocabulary at every position;
- structure: logits over the 6 bpRNA classes (E H S B I M) at every position;
- pair: symmetric logits [B, T, T]. Each position is projected to ``pair_dim`` features; a
  pair (i, j) gets the symmetric features a_i * a_j and a_i + a_j (mapped to channels without
  building the full feature map) plus an embedding of the
  log-bucketed distance |i - j|; a small residual stack of 3x3 convolutions then refines the
  whole map (stems are diagonals in that map, which convolutions see and a bilinear form
  does not). Cells outside real tokens are zeroed after every layer so padding never leaks.
  With ``thermo_features`` the pair head also reads ViennaRNA's view of the sequence
  (``thermo``: [B, 2, T, T], partition-function pair probabilities and MFE pairs, see
  ``genesis_rna.thermo``) as input channels of the map and as a direct term of the logits.
  Both new layers start at zero, so a model trained without them (``load_pretrained``) gives
  the same output until fine-tuning moves them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from genesis_rna.errors import ConfigError
from genesis_rna.tokenization import STRUCTURE_CLASSES, VOCAB


@dataclass
class ModelConfig:
    vocab_size: int = len(VOCAB)
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    d_ff: int = 1024
    dropout: float = 0.1
    max_len: int = 512  # tokens including CLS and SEP (RoPE itself has no length limit)
    n_struct_classes: int = len(STRUCTURE_CLASSES)
    pair_dim: int = 32
    pair_conv_layers: int = 4
    pair_conv_channels: int = 16
    pair_conv_dilations: tuple[int, ...] = (1, 2, 4, 8)  # cycled over the conv layers
    distance_buckets: int = 32
    pair_type_channels: bool = True  # learned channels for the nucleotide pair (i, j)
    struct_from_pairs: bool = True  # structure head also reads the pair map, pooled per row
    thermo_features: bool = False  # pair head reads ViennaRNA pair probabilities + MFE pairs
    # ... under this many of folding.PARAMETER_SETS (Turner 2004, Andronescu 2007, Langdon 2018)
    thermo_parameter_sets: int = 1

    def __post_init__(self) -> None:
        # ConfigError (a ValueError) names the field: the trainer's config keys are these names
        for key in ("d_model", "n_layers", "n_heads", "d_ff", "pair_dim", "pair_conv_channels",
                    "distance_buckets", "vocab_size", "n_struct_classes"):
            if getattr(self, key) <= 0:
                raise ConfigError(key, f"must be positive, got {getattr(self, key)}")
        if self.pair_conv_layers < 0:
            raise ConfigError("pair_conv_layers", f"must not be negative, got {self.pair_conv_layers}")
        if self.max_len < 8:
            raise ConfigError("max_len", f"must be at least 8 tokens, got {self.max_len}")
        if not 0 <= self.dropout <= 1:
            raise ConfigError("dropout", f"must be in [0, 1], got {self.dropout}")
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ConfigError("n_heads", f"d_model / n_heads must be an even integer (RoPE "
                              f"rotates pairs), got {self.d_model} / {self.n_heads}")
        from genesis_rna.folding import PARAMETER_SETS

        if not 1 <= self.thermo_parameter_sets <= len(PARAMETER_SETS):
            raise ConfigError("thermo_parameter_sets", f"must be 1..{len(PARAMETER_SETS)} "
                              f"({', '.join(PARAMETER_SETS)}), got {self.thermo_parameter_sets}")
        self.pair_conv_dilations = tuple(int(d) for d in self.pair_conv_dilations)
        if not self.pair_conv_dilations or min(self.pair_conv_dilations) < 1:
            raise ConfigError("pair_conv_dilations",
                              "must be a non-empty list of integers >= 1")

    def to_dict(self) -> dict:
        return asdict(self)


MODEL_SIZES: dict[str, dict] = {
    "tiny": dict(d_model=64, n_layers=2, n_heads=2, d_ff=256, pair_dim=16),
    "small": dict(d_model=256, n_layers=4, n_heads=4, d_ff=1024, pair_dim=32),
    "base": dict(d_model=512, n_layers=8, n_heads=8, d_ff=2048, pair_dim=48),
    "large": dict(d_model=768, n_layers=12, n_heads=12, d_ff=3072, pair_dim=64),
}


def model_config_for(size: str, **overrides) -> ModelConfig:
    if size not in MODEL_SIZES:
        raise ValueError(f"unknown model size {size!r}; choose from {sorted(MODEL_SIZES)}")
    return ModelConfig(**{**MODEL_SIZES[size], **overrides})


def rotary_tables(length: int, head_dim: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    inv = 1.0 / (10000 ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    ang = torch.arange(length, device=device, dtype=torch.float32)[:, None] * inv[None, :]  # [T, hd/2]
    return ang.cos().to(dtype), ang.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # x: [B, H, T, hd]; rotate (even, odd) feature pairs by position-dependent angles
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return out.flatten(-2)


def dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Training-mode dropout. On CPU the keep mask comes from ``torch.rand`` (one vectorized
    pass), which made dropout forward+backward ~40% faster than ``F.dropout`` (its
    ``bernoulli_`` draws: 18% of a small-model training step, 2 threads); CUDA keeps the fused
    kernel. The same distribution: each element kept with probability 1 - p, scaled 1/(1 - p)."""
    if p == 0:
        return x
    if x.is_cuda or p >= 1:
        return F.dropout(x, p, training=True)
    keep = (torch.rand(x.shape, device=x.device) >= p).to(x.dtype)
    return x * (keep * (1.0 / (1.0 - p)))


class Dropout(nn.Module):
    """``nn.Dropout`` through ``dropout`` (same p, same train/eval switch, no parameters)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p) if self.training else x


def matmul_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor,
                     dropout_p: float) -> torch.Tensor:
    """softmax(q k^T / sqrt(hd)) v with a boolean key mask, as three plain ops.

    ``scaled_dot_product_attention`` computes the same, but on CPU at this model's shapes
    (T <= 512, head dim 64) its kernels are slower: forward+backward of one small-model layer
    (batch 32, T 128, bf16, dropout 0.1) took 66 ms against 36 ms here, 96 against 19 without
    dropout (one thread). So CPU runs use this and CUDA uses SDPA's fused kernels.
    """
    scores = (q @ k.transpose(-1, -2)) * (q.shape[-1] ** -0.5)  # [B, H, T, T]
    # softmax accumulates in fp32 inside the kernel for bf16/fp16 input and rounds once, as
    # .float() -> softmax -> .to(bf16) would, but keeps a half-size output for backward
    attn = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    if dropout_p:
        attn = dropout(attn, dropout_p)
    return attn @ v


class SelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.dropout = cfg.dropout
        self.resid_drop = Dropout(cfg.dropout)

    def forward(self, x, key_mask, cos, sin):
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)  # each [B, T, D]
        q, k, v = (z.view(b, t, self.n_heads, d // self.n_heads).transpose(1, 2) for z in (q, k, v))
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)  # [B, H, T, hd]
        mask = key_mask[:, None, None, :]  # [B, 1, 1, T] True = attend
        p = self.dropout if self.training else 0.0
        if q.is_cuda:  # fused flash / memory-efficient kernels
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        else:
            y = matmul_attention(q, k, v, mask, p)
        y = y.transpose(1, 2).reshape(b, t, d)
        return self.resid_drop(self.proj(y))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = SelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(), nn.Linear(cfg.d_ff, cfg.d_model),
            Dropout(cfg.dropout),
        )

    def forward(self, x, key_mask, cos, sin):
        x = x + self.attn(self.ln1(x), key_mask, cos, sin)
        return x + self.mlp(self.ln2(x))


PAIR_PRIOR = 0.01  # initial pair probability of every cell
# Thermodynamic input channels per cell: the pair probability p, its log scaled to [0, 1]
# over the stored range (1 + log10(p) / 3 for p >= 1e-3, else 0: the evidence of weak pairs
# is in orders of magnitude) and the MFE pair indicator; then p and log p under each further
# parameter set (thermo_parameter_sets).
THERMO_CHANNELS = 3
# The thermodynamic layers start at zero (the loaded model's output unchanged) and are
# multiplied by this gain, which scales their effective Adam step the same way: at a
# fine-tune learning rate of 5e-4, unscaled weights would need thousands of steps to move a
# logit by the several units that separate p = 0.01 from p = 0.9.
THERMO_GAIN = 10.0


def thermo_channel_count(parameter_sets: int) -> int:
    return THERMO_CHANNELS + 2 * (parameter_sets - 1)


def thermo_channels(thermo: torch.Tensor) -> torch.Tensor:
    """[B, 1 + S, T, T] (pair probability, MFE pair, pair probabilities under further parameter
    sets) -> [B, thermo_channel_count(S), T, T] input channels (p, log p, MFE, p', log p', ...)."""
    p = torch.cat([thermo[:, :1], thermo[:, 2:]], 1)
    logp = torch.where(p > 0, 1 + torch.log10(p.clamp(min=1e-3)) / 3, torch.zeros_like(p))
    first = [p[:, :1], logp[:, :1], thermo[:, 1:2]]
    rest = torch.stack([p[:, 1:], logp[:, 1:]], 2).flatten(1, 2)  # p', log p' per set
    return torch.cat([*first, rest], 1)


def _conv_layer(conv: nn.Conv2d, x: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
    # (x + conv(gelu x)) * cell in one pass over the map: x is already zero outside the cells
    return torch.addcmul(x, conv(F.gelu(x)), cell)


def _out_layer(out: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    return out(F.gelu(x))


class PairHead(nn.Module):
    """Symmetric pair logits from pairwise features, refined by a residual 2D conv stack."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        p, c = cfg.pair_dim, cfg.pair_conv_channels
        self.buckets = cfg.distance_buckets
        self.proj = nn.Linear(cfg.d_model, p)
        self.dist = nn.Embedding(cfg.distance_buckets, c)
        # 1x1 map of the features [a_i * a_j, a_i + a_j] to C channels, factorized so that the
        # [B, 2P, T, T] feature tensor is never built: W_prod (a_i * a_j) is a bilinear form
        # per channel (one batched matmul) and W_sum (a_i + a_j) = W_sum a_i + W_sum a_j.
        self.w_prod = nn.Parameter(torch.randn(c, p) * 0.02)
        self.w_sum = nn.Linear(p, c)
        # (token_i, token_j) -> C channels: complementarity is given, not learned from scratch
        self.vocab = cfg.vocab_size
        self.pair_type = (nn.Parameter(torch.randn(c, cfg.vocab_size, cfg.vocab_size) * 0.02)
                          if cfg.pair_type_channels else None)
        dil = cfg.pair_conv_dilations
        self.convs = nn.ModuleList(
            nn.Conv2d(c, c, kernel_size=3, padding=dil[k % len(dil)], dilation=dil[k % len(dil)])
            for k in range(cfg.pair_conv_layers)
        )
        self.out = nn.Conv2d(c, 1, kernel_size=1)
        # thermodynamic features: into the map's channels (the convs refine them with the
        # context) and straight into the logits; zero at the start (see THERMO_GAIN)
        self.thermo_in = self.thermo_out = None
        self.thermo_parameter_sets = cfg.thermo_parameter_sets
        if cfg.thermo_features:
            k = thermo_channel_count(cfg.thermo_parameter_sets)
            self.thermo_in = nn.Conv2d(k, c, kernel_size=1)
            self.thermo_out = nn.Conv2d(k, 1, kernel_size=1)
            for layer in (self.thermo_in, self.thermo_out):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
        # start from the pair prior (Lin et al. 2017): p = 0.01 everywhere instead of 0.5, so
        # early training is not spent pushing the ~99% non-pair cells down
        nn.init.constant_(self.out.bias, -math.log((1 - PAIR_PRIOR) / PAIR_PRIOR))
        # recompute each conv layer in backward instead of keeping its activations: the
        # [B, C, T, T] maps dominate training memory (a runtime choice, same results)
        self.checkpointing = False

    def distance_bucket(self, t: int, device) -> torch.Tensor:
        d = torch.arange(t, device=device)
        d = (d[None, :] - d[:, None]).abs().float()  # [T, T]
        # exact for short distances, log-spaced for long ones
        half = self.buckets // 2
        log_b = half + (torch.log(d.clamp(min=1) / half) / math.log(1024 / half) * half).long()
        return torch.where(d < half, d.long(), log_b.clamp(max=self.buckets - 1))

    def forward(self, h: torch.Tensor, tokens: torch.Tensor, key_mask: torch.Tensor,
                thermo: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Symmetric logits [B, T, T] and the refined pair features [B, C, T, T].
        ``thermo`` [B, 1 + S, T, T]: required when the head reads thermodynamic features."""
        b, t, _ = h.shape
        a = self.proj(h)  # [B, T, P]
        c = self.w_prod.shape[0]
        # Every input channel of cell (i, j) is one dot product of a row for i and a row for j:
        #   sum_p W[c,p] a_ip a_jp + s_ci + s_cj + E_c[tok_i, tok_j]
        #   = [W_c * a_i, s_ci, 1, onehot_i E_c] . [a_j, 1, s_cj, onehot_j]
        # so the whole map is one batched matmul (K = P + 2 + V) that writes each cell once,
        # instead of a pass per term; rows of padding are zero, so are their cells.
        real = key_mask[:, None, :, None].to(a.dtype)  # [B, 1, T, 1]
        s = self.w_sum(a).transpose(1, 2)[..., None]  # [B, C, T, 1]
        ones = torch.ones_like(s)
        left = [a[:, None] * self.w_prod[None, :, None, :].to(a.dtype), s, ones]  # [B, C, T, *]
        right = [a[:, None].expand(b, c, t, -1), ones, s]
        if self.pair_type is not None:
            one_hot = F.one_hot(tokens, self.vocab).to(a.dtype)  # [B, T, V]
            left.append(one_hot[:, None] @ self.pair_type[None].to(a.dtype))  # [B, C, T, V]
            right.append(one_hot[:, None].expand(b, c, t, -1))
        x = (torch.cat(left, -1) * real) @ (torch.cat(right, -1) * real).transpose(-1, -2)
        cell = (key_mask[:, :, None] & key_mask[:, None, :])[:, None].to(x.dtype)  # [B,1,T,T]
        dist = self.dist(self.distance_bucket(t, h.device)).permute(2, 0, 1)[None].to(x.dtype)
        x = torch.addcmul(x, dist, cell)  # [B, C, T, T], zero outside the cells
        direct = None
        if self.thermo_in is not None:
            want = 1 + self.thermo_parameter_sets
            if thermo is None or thermo.shape[1:] != (want, t, t):
                raise ValueError("this model reads thermodynamic features (thermo_features): "
                                 f"pass thermo [B, {want}, {t}, {t}]")
            feats = thermo_channels(thermo.to(x.dtype))
            x = torch.addcmul(x, self.thermo_in(feats), cell, value=THERMO_GAIN)
            direct = THERMO_GAIN * self.thermo_out(feats)[:, 0]  # [B, T, T]
        if not x.is_cuda:  # oneDNN's convolutions skip a layout reorder per call on NHWC:
            # measured 2.6% off a small-model fp32 step on CPU (not measured on CUDA)
            x = x.contiguous(memory_format=torch.channels_last)
            cell = cell.contiguous(memory_format=torch.channels_last)
        for conv in self.convs:
            if self.checkpointing and torch.is_grad_enabled():
                x = checkpoint(_conv_layer, conv, x, cell, use_reentrant=False)
            else:
                x = _conv_layer(conv, x, cell)
        if self.checkpointing and torch.is_grad_enabled():  # keeps only x, already kept
            logits = checkpoint(_out_layer, self.out, x, use_reentrant=False)[:, 0]
        else:
            logits = _out_layer(self.out, x)[:, 0]  # [B, T, T]
        if direct is not None:
            logits = logits + direct
        return 0.5 * (logits + logits.transpose(1, 2)), x  # logits exactly symmetric


def pool_pair_rows(x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
    """Per position i: mean and max of the pair features x[:, :, i, j] over real j -> [B, T, 2C]."""
    n = key_mask.sum(1).clamp(min=1).to(x.dtype)[:, None, None]  # [B, 1, 1]
    mean = x.sum(-1) / n  # cells outside real tokens are zero
    # + 0 / -inf rather than masked_fill: one pass over the map instead of a copy and a fill;
    # max(dim) rather than amax: its backward keeps the argmax indices [B, C, T], not the map
    off = torch.zeros(key_mask.shape, dtype=x.dtype, device=x.device).masked_fill(~key_mask, float("-inf"))
    peak = (x + off[:, None, None, :]).max(-1).values
    peak = torch.where(key_mask[:, None, :], peak, torch.zeros_like(peak))
    return torch.cat([mean, peak], 1).transpose(1, 2)


class GenesisRNA(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.drop = Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.mlm_head = nn.Linear(cfg.d_model, cfg.vocab_size)
        # element classes are a function of the pairing: with struct_from_pairs the head also
        # reads each position's row of the refined pair map (pooled), not only its embedding
        pooled = 2 * cfg.pair_conv_channels if cfg.struct_from_pairs else 0
        self.struct_head = nn.Sequential(
            nn.Linear(cfg.d_model + pooled, cfg.d_model), nn.GELU(),
            nn.Linear(cfg.d_model, cfg.n_struct_classes),
        ) if cfg.struct_from_pairs else nn.Linear(cfg.d_model, cfg.n_struct_classes)
        self.pair_head = PairHead(cfg)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def load_pretrained(self, state: dict) -> list[str]:
        """Load the weights of a model of the same architecture, or of one without
        thermodynamic features into this one with them (those layers keep their zero start,
        so the output is the loaded model's). Returns the names of the weights left fresh."""
        result = self.load_state_dict(state, strict=False)
        fresh = [k for k in result.missing_keys if k.startswith("pair_head.thermo_")]
        other = sorted(set(result.missing_keys) - set(fresh)) + sorted(result.unexpected_keys)
        if other:
            raise ConfigError("init_from", f"weights do not fit this model: {other[:6]}")
        return fresh

    def forward(self, tokens: torch.Tensor, attention_mask: torch.Tensor,
                thermo: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """tokens [B, T] long, attention_mask [B, T] bool (True = real token incl. CLS/SEP),
        thermo [B, 1 + S, T, T] (pair probabilities, MFE pairs, further sets; ``data.thermo_maps``) when the
        model reads thermodynamic features.

        Returns mlm_logits [B, T, V], struct_logits [B, T, 6], pair_logits [B, T, T] and
        hidden [B, T, D]. Padding positions hold meaningless values: mask them downstream.
        """
        b, t = tokens.shape
        x = self.drop(self.embed(tokens))  # [B, T, D]
        hd = self.config.d_model // self.config.n_heads
        cos, sin = rotary_tables(t, hd, tokens.device, x.dtype)
        for block in self.blocks:
            x = block(x, attention_mask, cos, sin)
        h = self.ln_f(x)
        pair_logits, pair_features = self.pair_head(h, tokens, attention_mask, thermo)
        struct_in = h
        if self.config.struct_from_pairs:
            struct_in = torch.cat([h, pool_pair_rows(pair_features, attention_mask).to(h.dtype)], -1)
        return {
            "mlm_logits": self.mlm_head(h),
            "struct_logits": self.struct_head(struct_in),
            "pair_logits": pair_logits,
            "hidden": h,
        }

    @torch.no_grad()
    def predict(self, tokens: torch.Tensor, attention_mask: torch.Tensor,
                thermo: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Probabilities in fp32: pair_probs [B, T, T], struct_probs [B, T, 6], mlm_probs."""
        was_training = self.training
        self.eval()
        out = self(tokens, attention_mask, thermo)
        self.train(was_training)
        return {
            "pair_probs": torch.sigmoid(out["pair_logits"].float()),
            "struct_probs": torch.softmax(out["struct_logits"].float(), -1),
            "mlm_probs": torch.softmax(out["mlm_logits"].float(), -1),
        }
