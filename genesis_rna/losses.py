"""Multi-task loss: MLM cross-entropy + structure cross-entropy + binary focal loss on pairs
(or plain binary cross-entropy: ``use_focal_loss_for_pairs: false``).

Every term sees real positions only: MLM at masked nucleotides, structure at nucleotides,
pairs over the upper triangle of nucleotide x nucleotide cells with |i - j| >= min_sep. Padding
and CLS/SEP never contribute. Each term also comes per sample, for the AST loss memory.

Every term is a per-sample sum over its units divided by the batch's units (``batch_mean``),
so under DDP each rank's share of the global batch loss follows from the unit counts alone
(``MultiTaskLoss.counts``, ``rank_sync.rank_share``). A new head's loss is one entry in
``MultiTaskLoss.terms``: an object with ``units(batch)`` and ``sums(out, batch)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from genesis_rna.data import IGNORE_INDEX, dense_pair_target
from genesis_rna.tasks import LOSS_COLUMN, TASK_NAMES


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

    def sample_units(self, nucleotide_mask: torch.Tensor) -> torch.Tensor:
        """[B] 1 for samples with at least one valid cell, else 0: the batch loss is the mean
        over those samples."""
        return pair_loss_mask(nucleotide_mask, self.min_sep).flatten(1).any(1).float()

    def forward(self, logits, target, nucleotide_mask) -> torch.Tensor:
        loss, _ = self.per_sample(logits, target, nucleotide_mask)
        return batch_mean(loss, self.sample_units(nucleotide_mask))


def batch_mean(sums: torch.Tensor, units: torch.Tensor,
               weight: torch.Tensor | None = None) -> torch.Tensor:
    """A term's batch value: its per-sample sums [B] over the batch's units (masked tokens,
    labelled nucleotides, samples with a pair cell). 0 for a batch without units, still in
    the graph, so backward (and DDP's gradient all-reduce) runs the same on every batch.
    ``weight`` [B]: sample b's sums and units both count w_b times (sum(w s) / sum(w u));
    a weighted denominator may be below 1, so only an empty one is replaced."""
    if weight is None:
        return sums.sum() / units.sum().clamp(min=1)
    den = (units * weight).sum()
    return (sums * weight).sum() / torch.where(den > 0, den, torch.ones_like(den))


class TokenCrossEntropy:
    """Cross-entropy of a per-token head at labelled tokens; units: labelled tokens."""

    def __init__(self, logits_key: str, labels_key: str):
        self.logits_key, self.labels_key = logits_key, labels_key

    def units(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return (batch[self.labels_key] != IGNORE_INDEX).sum(1)

    def sums(self, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits, labels = out[self.logits_key], batch[self.labels_key]
        b, t, c = logits.shape
        ce = F.cross_entropy(logits.float().reshape(b * t, c), labels.reshape(b * t),
                             ignore_index=IGNORE_INDEX, reduction="none").view(b, t)
        return ce.sum(1)


class PairMapLoss:
    """The pair head's focal (or BCE) loss; units: samples with at least one valid cell."""

    def __init__(self, loss: BinaryFocalLoss):
        self.loss = loss

    def units(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.loss.sample_units(batch["nucleotide_mask"])

    def sums(self, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        loss, _ = self.loss.per_sample(out["pair_logits"], dense_pair_target(batch),
                                       batch["nucleotide_mask"])
        return loss


@dataclass
class LossTerm:
    name: str  # the task (genesis_rna.tasks)
    weight: float
    value: torch.Tensor  # scalar, differentiable: the batch mean (batch_mean)
    count: torch.Tensor  # scalar: the mean's denominator, the batch's (weighted) units
    sums: torch.Tensor  # [B] per-sample sums (detached)
    units: torch.Tensor  # [B] per-sample units


@dataclass
class LossOutput:
    total: torch.Tensor  # scalar, differentiable: sum of weight x value over the terms
    terms: tuple[LossTerm, ...]  # one per task, in TASKS order
    per_sample: torch.Tensor  # [B] weighted per-sample total (detached), for AST

    def value(self, name: str) -> torch.Tensor:
        return next(t.value for t in self.terms if t.name == name)

    def values(self) -> dict[str, float]:
        """The logged loss values: ``loss`` (the total) and each term's metrics column
        (``tasks.LOSS_COLUMN``)."""
        return {"loss": float(self.total.detach()),
                **{LOSS_COLUMN[t.name]: float(t.value.detach()) for t in self.terms}}


DEFAULT_WEIGHTS = {"mlm": 1.0, "struct": 0.8, "pair": 1.5}


class MultiTaskLoss(nn.Module):
    """Weighted sum of one term per task. ``weights``: task name -> weight, every task named
    (unset: DEFAULT_WEIGHTS)."""

    def __init__(self, *, weights: Mapping[str, float] | None = None, focal_alpha: float = 0.75,
                 focal_gamma: float = 2.0, min_sep: int = 4, use_focal: bool = True):
        super().__init__()
        self.weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
        if set(self.weights) != set(TASK_NAMES):
            raise ValueError(f"loss weights for {sorted(self.weights)}; the tasks are "
                             f"{list(TASK_NAMES)}")
        self.pair_loss = BinaryFocalLoss(focal_alpha, focal_gamma, min_sep, focal=use_focal)
        # one entry per task (genesis_rna.tasks), in its order
        self.terms = {"mlm": TokenCrossEntropy("mlm_logits", "mlm_labels"),
                      "struct": TokenCrossEntropy("struct_logits", "struct_labels"),
                      "pair": PairMapLoss(self.pair_loss)}
        assert tuple(self.terms) == TASK_NAMES, (tuple(self.terms), TASK_NAMES)

    def counts(self, batch: dict[str, torch.Tensor],
               sample_weight: torch.Tensor | None = None) -> torch.Tensor:
        """[tasks] float64 CPU: each term's units in the batch (weighted by ``sample_weight``
        like ``forward``), from the batch alone (under DDP they are summed over ranks before
        the forward, see rank_sync.rank_share)."""
        if sample_weight is None:
            return torch.stack([term.units(batch).sum() for term in self.terms.values()]
                               ).to(torch.float64).cpu()
        w = sample_weight.to(torch.float64)
        return torch.stack([(term.units(batch).to(torch.float64) * w).sum()
                            for term in self.terms.values()]).cpu()

    def forward(self, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor],
                sample_weight: torch.Tensor | None = None) -> LossOutput:
        """``sample_weight`` [B] (AST importance selection): sample b counts ``w_b`` times in
        every term, its sums and its units alike, so a term is sum(w s) / sum(w u): the ratio
        estimate of the term over the batch the samples were drawn from. None: all weigh 1
        (the same numbers as without it). ``per_sample`` stays unweighted (AST's memory)."""
        terms = []
        for name, term in self.terms.items():
            sums, units = term.sums(out, batch), term.units(batch)
            if sample_weight is None:
                value, count = batch_mean(sums, units), units.sum()
            else:
                w = sample_weight.to(sums.device, sums.dtype)
                value, count = batch_mean(sums, units, w), (units * w).sum()
            terms.append(LossTerm(name, self.weights[name], value, count, sums.detach(), units))
        total = sum(t.weight * t.value for t in terms)
        per_sample = sum(t.weight * t.sums / t.units.clamp(min=1) for t in terms)
        return LossOutput(total, tuple(terms), per_sample)
