"""Base-pair and structure metrics, following the field's conventions (see DESIGN.md).

Pure numpy on pair lists and label arrays (plus one torch helper that pulls candidate pairs
off the device), so training, evaluation and benchmarks share one implementation.

Post-processing turns a pair-probability map into a structure: keep cells above the threshold
in the upper triangle with |i - j| >= min_sep whose bases can pair canonically (AU, GC, GU),
then accept them greedily in descending probability, at most one partner per base.

Per-sequence conventions for empty sets: no predicted and no true pairs scores P = R = F1 = 1;
predicting pairs where there are none, or none where there are some, scores 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

from genesis_rna.tokenization import CANONICAL_PAIRS, VOCAB

Pair = tuple[int, int]


def canonical_mask(sequence: str) -> np.ndarray:
    """[n, n] bool: bases i and j can form an AU, GC or GU pair."""
    s = np.frombuffer(sequence.encode("ascii"), dtype=np.uint8)
    out = np.zeros((len(s), len(s)), dtype=bool)
    for a, b in CANONICAL_PAIRS:
        out |= (s[:, None] == ord(a)) & (s[None, :] == ord(b))
    return out


def candidate_pairs(probs: np.ndarray, sequence: str, min_prob: float, min_sep: int = 4,
                    canonical_only: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cells (i < j, j - i >= min_sep, canonical) with prob >= min_prob: arrays i, j, p."""
    n = len(sequence)
    if probs.shape[0] < n or probs.shape[1] < n:
        raise ValueError(f"probability map {probs.shape} smaller than sequence length {n}")
    p = probs[:n, :n]
    ok = np.triu(np.ones((n, n), dtype=bool), k=min_sep) & (p >= min_prob)
    if canonical_only:
        ok &= canonical_mask(sequence)
    i, j = np.nonzero(ok)
    return i, j, p[i, j].astype(np.float64)


def greedy_pairs(i: np.ndarray, j: np.ndarray, p: np.ndarray,
                 threshold: float = 0.0) -> list[tuple[int, int, float]]:
    """Accept candidates in descending probability, at most one partner per base.

    Ties break by (i, j) so the result is deterministic. Because acceptance depends only on
    higher-probability candidates, the result at a higher threshold is the prefix of this one:
    ``tune_threshold`` relies on that.
    """
    order = np.lexsort((j, i, -p))
    used: set[int] = set()
    out = []
    for k in order:
        if p[k] < threshold:
            break
        a, b = int(i[k]), int(j[k])
        if a in used or b in used:
            continue
        used.update((a, b))
        out.append((a, b, float(p[k])))
    return out


def postprocess_pairs(probs: np.ndarray, sequence: str, threshold: float, min_sep: int = 4,
                      canonical_only: bool = True) -> list[Pair]:
    """Probability map [n, n] (or larger, padded) -> sorted list of predicted pairs (i < j)."""
    i, j, p = candidate_pairs(probs, sequence, threshold, min_sep, canonical_only)
    return sorted((a, b) for a, b, _ in greedy_pairs(i, j, p, threshold))


def _matched(pairs: Iterable[Pair], reference: set[Pair], allow_shift: bool) -> int:
    hits = 0
    for a, b in pairs:
        if (a, b) in reference:
            hits += 1
        elif allow_shift and any(
            q in reference for q in ((a - 1, b), (a + 1, b), (a, b - 1), (a, b + 1))
        ):
            hits += 1
    return hits


def pair_counts(pred: Iterable[Pair], true: Iterable[Pair], allow_shift: bool = False
                ) -> tuple[int, int, int, int]:
    """(matched predictions, #pred, matched references, #true). Pairs are normalized to i < j.

    With ``allow_shift`` a pair also matches when one of its ends is off by one position
    (the usual "one-position shift" convention).
    """
    p = {(min(a, b), max(a, b)) for a, b in pred}
    t = {(min(a, b), max(a, b)) for a, b in true}
    return _matched(p, t, allow_shift), len(p), _matched(t, p, allow_shift), len(t)


def prf(tp_pred: int, n_pred: int, tp_true: int, n_true: int) -> tuple[float, float, float]:
    """Precision, recall, F1 with the empty-set conventions of this module."""
    if n_pred == 0 and n_true == 0:
        return 1.0, 1.0, 1.0
    precision = tp_pred / n_pred if n_pred else 0.0
    recall = tp_true / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return precision, recall, f1


def pair_scores(pred: Iterable[Pair], true: Iterable[Pair], allow_shift: bool = False
                ) -> tuple[float, float, float]:
    return prf(*pair_counts(pred, true, allow_shift))


class PairMetrics:
    """Accumulates per-sequence means and pooled precision/recall/F1, exact and shifted."""

    def __init__(self) -> None:
        self.n = 0
        self.sums = {k: np.zeros(3) for k in ("exact", "shift")}
        self.pooled = {k: np.zeros(4, dtype=np.int64) for k in ("exact", "shift")}

    def update(self, pred: Iterable[Pair], true: Iterable[Pair]) -> tuple[float, float, float]:
        pred, true = list(pred), list(true)
        self.n += 1
        exact = None
        for key, shift in (("exact", False), ("shift", True)):
            counts = pair_counts(pred, true, shift)
            self.pooled[key] += counts
            scores = prf(*counts)
            self.sums[key] += scores
            exact = exact or scores
        return exact

    def result(self) -> dict[str, float]:
        out: dict[str, float] = {"n_sequences": float(self.n)}
        for key in ("exact", "shift"):
            suffix = "" if key == "exact" else "_shift"
            mean = self.sums[key] / max(self.n, 1)
            pooled = prf(*self.pooled[key]) if self.n else (0.0, 0.0, 0.0)
            for name, m, p in zip(("precision", "recall", "f1"), mean, pooled, strict=True):
                out[f"{name}{suffix}"] = float(m)
                out[f"pooled_{name}{suffix}"] = float(p)
        return out


def tune_threshold(candidates: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
                   true_pairs: Sequence[Iterable[Pair]],
                   thresholds: Sequence[float] | None = None) -> tuple[float, float]:
    """Threshold maximizing the per-sequence mean F1 after post-processing.

    ``candidates`` per sequence come from ``candidate_pairs`` at the lowest threshold tried.
    Returns (best threshold, its mean F1); ties go to the higher threshold.
    """
    if thresholds is None:
        thresholds = np.round(np.arange(0.05, 0.951, 0.025), 4).tolist()
    thresholds = sorted(thresholds)
    sums = np.zeros(len(thresholds))
    for (i, j, p), true in zip(candidates, true_pairs, strict=True):
        accepted = greedy_pairs(i, j, p, thresholds[0])
        true_set = list(true)
        for k, t in enumerate(thresholds):
            sums[k] += prf(*pair_counts([(a, b) for a, b, q in accepted if q >= t], true_set))[2]
    means = sums / max(len(true_pairs), 1)
    best = int(len(thresholds) - 1 - np.argmax(means[::-1]))
    return float(thresholds[best]), float(means[best])


def batch_candidates(pair_logits: torch.Tensor, seq_tokens: torch.Tensor,
                     nucleotide_mask: torch.Tensor, min_prob: float, min_sep: int = 4
                     ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Candidate pairs per sample from a batch of logits, filtered on the device.

    Only the cells above ``min_prob`` that pass the masks leave the device. Indices are in
    nucleotide coordinates (token position - 1, since CLS sits at 0).
    """
    b, t, _ = pair_logits.shape
    pos = torch.arange(t, device=pair_logits.device)
    upper = (pos[None, :] - pos[:, None]) >= min_sep
    table = torch.zeros(len(VOCAB), len(VOCAB), dtype=torch.bool, device=pair_logits.device)
    for x, y in CANONICAL_PAIRS:
        table[VOCAB.index(x), VOCAB.index(y)] = True
    canon = table[seq_tokens[:, :, None], seq_tokens[:, None, :]]  # [B, T, T]
    thr = float(np.log(min_prob / (1 - min_prob))) if 0 < min_prob < 1 else -float("inf")
    ok = (canon & upper[None] & nucleotide_mask[:, :, None] & nucleotide_mask[:, None, :]
          & (pair_logits.float() >= thr))
    bi, ii, jj = torch.nonzero(ok, as_tuple=True)
    probs = torch.sigmoid(pair_logits.float()[bi, ii, jj])
    bi, ii, jj, probs = (x.cpu().numpy() for x in (bi, ii, jj, probs))
    out = []
    for k in range(b):
        sel = bi == k
        out.append((ii[sel] - 1, jj[sel] - 1, probs[sel].astype(np.float64)))
    return out


def structure_accuracy(pred: np.ndarray, true: np.ndarray) -> float:
    """Fraction of positions labelled correctly; callers pass real positions only."""
    pred, true = np.asarray(pred), np.asarray(true)
    return float((pred == true).mean()) if len(true) else 0.0


def structure_macro_f1(pred: np.ndarray, true: np.ndarray, n_classes: int = 6) -> float:
    """Mean F1 over the classes present in ``true`` or ``pred`` (S and E dominate accuracy)."""
    pred, true = np.asarray(pred), np.asarray(true)
    f1s = []
    for c in range(n_classes):
        tp = int(((pred == c) & (true == c)).sum())
        fp = int(((pred == c) & (true != c)).sum())
        fn = int(((pred != c) & (true == c)).sum())
        if tp + fp + fn == 0:
            continue
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s)) if f1s else 0.0
