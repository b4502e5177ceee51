"""Base-pair and structure metrics, following the field's conventions (see DESIGN.md).

Pure numpy on pair lists and label arrays, so training, evaluation and benchmarks share one
implementation. Turning pair probabilities into a structure is ``genesis_rna.decoding``.

Per-sequence conventions for empty sets: no predicted and no true pairs scores P = R = F1 = 1;
predicting pairs where there are none, or none where there are some, scores 0.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

Pair = tuple[int, int]


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
