"""The sums behind one metrics row (train or val) of an epoch: losses per task, accuracies,
post-processed pair metrics, nucleotides and time.

Plain numbers, so they travel in checkpoints. Under DDP each rank holds the sums over its own
samples (loss values as its shares of the global batch losses, see ``rank_sync.rank_share``);
``reduced`` adds them up, so the row equals a single process's.
"""

from __future__ import annotations

import torch

from genesis_rna.data import IGNORE_INDEX
from genesis_rna.decoding import batch_candidates, decode_candidates
from genesis_rna.distributed import Distributed
from genesis_rna.metrics_logger import renamed
from genesis_rna.pair_metrics import PairMetrics
from genesis_rna.tasks import LOSS_COLUMNS

LOSS_KEYS = ("loss", *LOSS_COLUMNS)


def true_pairs(batch: dict) -> list[list[tuple[int, int]]]:
    """Reference pairs per sample in nucleotide coordinates, from the sparse pair index."""
    out: list[list[tuple[int, int]]] = [[] for _ in range(len(batch["tokens"]))]
    for k, i, j in batch["pair_index"].tolist():
        out[k].append((i - 1, j - 1))
    return out


class EpochStats:
    """Sums behind one metrics row; ``row`` turns them into the CSV's values."""

    KEYS = ("steps", *LOSS_KEYS, "mlm_correct", "mlm_total", "struct_correct", "struct_total",
            "tokens", "compute_s", "nonfinite", "pair_n", "pair_p", "pair_r", "pair_f1")
    # the same on every rank (all ranks step together): not summed
    SHARED = ("steps", "nonfinite")

    def __init__(self, state: dict | None = None):
        self.v = {k: 0.0 for k in self.KEYS}
        if state:
            state = renamed(state)  # a checkpoint written before the columns were renamed
            self.v.update({k: float(state[k]) for k in self.KEYS})

    def state(self) -> dict:
        return dict(self.v)

    def vector(self) -> torch.Tensor:
        return torch.tensor([self.v[k] for k in self.KEYS], dtype=torch.float64)

    def reduced(self, dist: Distributed) -> EpochStats:
        """Sums over all ranks; compute time is the slowest rank's (ranks wait for each other)."""
        if not dist.enabled:
            return self
        summed = dist.all_reduce(self.vector())
        slowest = dist.all_reduce(torch.tensor([self.v["compute_s"]]), op="max")
        out = EpochStats(dict(zip(self.KEYS, summed.tolist(), strict=True)))
        for k in self.SHARED:
            out.v[k] = self.v[k]
        out.v["compute_s"] = float(slowest[0])
        return out

    def finite_steps(self) -> float:
        """Steps whose losses were added (at least 1, so means of an empty epoch are 0)."""
        return max(self.v["steps"] - self.v["nonfinite"], 1)

    def add_batch(self, out: dict, losses: dict[str, float], batch: dict, pair_threshold: float,
                  min_sep: int, decoder: str, new_step: bool = True) -> None:
        """Add one batch, or one micro-batch of a step (``new_step`` False for all but the
        first: ``losses`` are then its shares of the step's losses, which add up)."""
        v = self.v
        v["steps"] += new_step
        for k in LOSS_KEYS:
            v[k] += losses[k]
        mlm_lab = batch["mlm_labels"]
        m = mlm_lab != IGNORE_INDEX
        v["mlm_correct"] += float((out["mlm_logits"].argmax(-1)[m] == mlm_lab[m]).sum())
        v["mlm_total"] += float(m.sum())
        st = batch["struct_labels"]
        s = st != IGNORE_INDEX
        v["struct_correct"] += float((out["struct_logits"].argmax(-1)[s] == st[s]).sum())
        v["struct_total"] += float(s.sum())
        v["tokens"] += float(batch["lengths"].sum())
        cands = batch_candidates(out["pair_logits"].detach(), batch["seq_tokens"],
                                 batch["nucleotide_mask"], pair_threshold, min_sep)
        truth = true_pairs(batch)
        pm = PairMetrics()
        for c, true in zip(cands, truth, strict=True):
            pm.update(decode_candidates(c, pair_threshold, decoder), true)
        r = pm.result()
        v["pair_n"] += pm.n
        v["pair_p"] += r["precision"] * pm.n
        v["pair_r"] += r["recall"] * pm.n
        v["pair_f1"] += r["f1"] * pm.n

    def row(self) -> dict:
        v = self.v
        steps = self.finite_steps()
        n = max(v["pair_n"], 1)
        return {
            **{k: v[k] / steps for k in LOSS_KEYS},
            "mlm_accuracy": v["mlm_correct"] / max(v["mlm_total"], 1),
            "structure_accuracy": v["struct_correct"] / max(v["struct_total"], 1),
            "pair_precision": v["pair_p"] / n, "pair_recall": v["pair_r"] / n,
            "pair_f1": v["pair_f1"] / n,
            "tokens_per_s": v["tokens"] / v["compute_s"] if v["compute_s"] > 0 else 0.0,
            "epoch_time_s": v["compute_s"],
        }
