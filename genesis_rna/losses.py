"""Multi-task loss: MLM cross-entropy + structure cross-entropy + binary focal loss on pairs
(or plain binary cross-entropy: ``use_focal_loss_for_pairs: false``).

Every term sees real positions only: MLM at masked nucleotides, structure at nucleotides,
pairs over the upper triangle of nucleotide x nucleotide cells with |i - j| >= min_sep. Padding
and CLS/SEP never contribute. Each term also comes per sample, for the AST loss memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from genesis_rna.data import IGNORE_INDEX, dense_pair_target


def pair_loss_mask(nucleotide_mask: torch.Tensor, min_sep: int = 4) -> torch.Tensor:
    """[B, T] nucleotide mask -> [B, T, T] cells (i, j) with both nucleotides and j - i >= min_sep."""
    t = nucleotide_mask.shape[1]
    pos = torch.arange(t, device=nucleotide_mask.device)
    upper = (pos[None, :] - pos[:, None]) >= min_sep  # [T, T]
    return nucleotide_mask[:, :, None] & nucleotide_mask[:, None, :] & upper[None]


class BinaryFocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017) for the very sparse pair map.

    loss = -alpha_t (1 - p_t)^gamma log p_t, with alpha_t = alpha for pairs and 1 - alpha for
    non-pairs. Each sample's loss is the sum over its valid cells divided by its length L. Pairs
    grow as L (about 0.3 L in structured RNA) while cells grow as L^2, and once the easy
    non-pairs are learned (the focal term shrinks them towards 0) the loss is carried by the
    pairs: per nucleotide it is then the same at every length. A mean over cells would instead
    shrink every pair's weight as 1/L^2 and the whole pair signal as 1/L (0.005 at L = 100 next
    to an MLM loss of 1.3: measured, the pair head then barely learned). The batch loss is the
    mean over samples that have at least one valid cell.

    ``focal=False`` gives plain binary cross-entropy (alpha_t = 1, gamma = 0: every cell
    weighted alike; alpha = 0.5 would halve it) with the same per-sample sum / L, so the
    two losses are on comparable scales.
    """

    def __init__(self, alpha: float = 0.75, gamma: float = 2.0, min_sep: int = 4,
                 focal: bool = True):
        super().__init__()
        self.alpha, self.gamma, self.min_sep, self.focal = alpha, gamma, min_sep, focal

    def per_sample(self, logits: torch.Tensor, target: torch.Tensor,
                   nucleotide_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (loss [B], valid cell count [B])."""
        valid = pair_loss_mask(nucleotide_mask, self.min_sep)
        x = logits.float()
        y = target.to(x.dtype)
        log_p = F.logsigmoid(x)
        log_not_p = F.logsigmoid(-x)
        log_pt = y * log_p + (1 - y) * log_not_p
        if self.focal:
            pt = log_pt.exp()
            alpha_t = y * self.alpha + (1 - y) * (1 - self.alpha)
            cell = -alpha_t * (1 - pt).pow(self.gamma) * log_pt
        else:
            cell = -log_pt
        cell = torch.where(valid, cell, torch.zeros_like(cell))
        count = valid.sum(dim=(1, 2))
        length = nucleotide_mask.sum(1).to(cell.dtype)
        return cell.sum(dim=(1, 2)) / length.clamp(min=1), count

    def forward(self, logits, target, nucleotide_mask) -> torch.Tensor:
        loss, count = self.per_sample(logits, target, nucleotide_mask)
        has = count > 0
        return loss[has].mean() if has.any() else loss.sum() * 0.0


def _per_sample_ce(logits: torch.Tensor, labels: torch.Tensor):
    """Token CE summed per sample and token counts per sample (ignoring -100)."""
    b, t, c = logits.shape
    ce = F.cross_entropy(logits.float().reshape(b * t, c), labels.reshape(b * t),
                         ignore_index=IGNORE_INDEX, reduction="none").view(b, t)
    return ce.sum(1), (labels != IGNORE_INDEX).sum(1)


@dataclass
class LossOutput:
    total: torch.Tensor  # scalar, differentiable
    mlm: torch.Tensor  # scalar: mean CE over all masked tokens in the batch
    struct: torch.Tensor  # scalar: mean CE over all nucleotides in the batch
    pair: torch.Tensor  # scalar: mean over samples of per-sample focal (or BCE) loss
    per_sample: torch.Tensor  # [B] weighted per-sample total (detached), for AST


class MultiTaskLoss(nn.Module):
    def __init__(self, w_mlm: float = 1.0, w_struct: float = 0.8, w_pair: float = 1.5,
                 focal_alpha: float = 0.75, focal_gamma: float = 2.0, min_sep: int = 4,
                 use_focal: bool = True):
        super().__init__()
        self.w_mlm, self.w_struct, self.w_pair = w_mlm, w_struct, w_pair
        self.pair_loss = BinaryFocalLoss(focal_alpha, focal_gamma, min_sep, focal=use_focal)

    def forward(self, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> LossOutput:
        mlm_sum, mlm_n = _per_sample_ce(out["mlm_logits"], batch["mlm_labels"])
        st_sum, st_n = _per_sample_ce(out["struct_logits"], batch["struct_labels"])
        pair_ps, pair_n = self.pair_loss.per_sample(
            out["pair_logits"], dense_pair_target(batch), batch["nucleotide_mask"])
        mlm = mlm_sum.sum() / mlm_n.sum().clamp(min=1)
        struct = st_sum.sum() / st_n.sum().clamp(min=1)
        has = pair_n > 0
        pair = pair_ps[has].mean() if has.any() else pair_ps.sum() * 0.0
        total = self.w_mlm * mlm + self.w_struct * struct + self.w_pair * pair
        per_sample = (self.w_mlm * mlm_sum / mlm_n.clamp(min=1)
                      + self.w_struct * st_sum / st_n.clamp(min=1) + self.w_pair * pair_ps)
        return LossOutput(total, mlm, struct, pair, per_sample.detach())
