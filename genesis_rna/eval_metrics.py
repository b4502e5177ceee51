"""Evaluation metrics built on ``pair_metrics``: MCC, per-sequence score rows, their
aggregation (per-sequence mean and pooled), grouping by family and length bin, element-label
scores and the trivial baselines (majority structure class, unigram nucleotide frequencies).

Pure numpy and plain Python; inputs are never modified. Conventions follow ``pair_metrics``:
pairs are 0-based ``(i, j)``, scored over the upper triangle of real positions, and a sequence
with neither predicted nor true pairs scores P = R = F1 = MCC = 1.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence

import numpy as np

from genesis_rna.pair_metrics import Pair, pair_counts, prf, structure_accuracy, structure_macro_f1
from genesis_rna.tokenization import STRUCTURE_CLASSES

# Upper edges (inclusive) of the length bins; the last bin is open-ended.
LENGTH_BIN_EDGES: tuple[int, ...] = (100, 200, 400, 800)

# Per-sequence pair scores that are averaged, and the counts that are pooled.
MEAN_KEYS = ("precision", "recall", "f1", "precision_shift", "recall_shift", "f1_shift", "mcc")
COUNT_KEYS = ("tp", "n_pred_pairs", "n_true_pairs", "tp_shift_pred", "tp_shift_true", "n_cells")

_ELEMENT_LUT = np.full(256, 255, dtype=np.uint8)
for _k, _c in enumerate(STRUCTURE_CLASSES):
    _ELEMENT_LUT[ord(_c)] = _k


def length_bin_labels(edges: Sequence[int] = LENGTH_BIN_EDGES) -> list[str]:
    """Bin names in order, e.g. ``<=100``, ``101-200``, ..., ``>800``."""
    labels = [f"<={edges[0]}"]
    labels += [f"{lo + 1}-{hi}" for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    return labels + [f">{edges[-1]}"]


def length_bin(length: int, edges: Sequence[int] = LENGTH_BIN_EDGES) -> str:
    """Name of the bin holding ``length`` (bins are closed on the right: 100 is in ``<=100``)."""
    return length_bin_labels(edges)[int(np.searchsorted(np.asarray(edges), length, side="left"))]


def n_pair_cells(length: int) -> int:
    """Cells of the strict upper triangle: every (i, j) with i < j that could be a pair."""
    return length * (length - 1) // 2


def mcc(tp: int, n_pred: int, n_true: int, n_cells: int) -> float:
    """Matthews correlation of predicted vs true pairs over ``n_cells`` candidate cells.

    TN is every cell that is neither predicted nor true. Empty prediction and empty truth
    scores 1 (as F1 does here); an undefined ratio otherwise (a zero margin) scores 0.
    """
    if n_pred == 0 and n_true == 0:
        return 1.0
    fp, fn = n_pred - tp, n_true - tp
    tn = n_cells - tp - fp - fn
    if min(fp, fn, tn, tp) < 0:
        raise ValueError(f"inconsistent counts tp={tp} pred={n_pred} true={n_true} cells={n_cells}")
    denom = math.sqrt(float(tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return (tp * tn - fp * fn) / denom if denom > 0 else 0.0


def score_pairs(pred: Iterable[Pair], true: Iterable[Pair], length: int) -> dict[str, float]:
    """One sequence: counts (for pooling) and P/R/F1 exact and with a one-position shift, MCC.

    All true pairs count, including non-canonical and pseudoknotted ones, as curated.
    """
    pred, true = list(pred), list(true)
    exact = pair_counts(pred, true)
    shift = pair_counts(pred, true, allow_shift=True)
    p, r, f = prf(*exact)
    ps, rs, fs = prf(*shift)
    cells = n_pair_cells(length)
    return {
        "tp": exact[0], "n_pred_pairs": exact[1], "n_true_pairs": exact[3],
        "tp_shift_pred": shift[0], "tp_shift_true": shift[2], "n_cells": cells,
        "precision": p, "recall": r, "f1": f,
        "precision_shift": ps, "recall_shift": rs, "f1_shift": fs,
        "mcc": mcc(exact[0], exact[1], exact[3], cells),
    }


def aggregate(scores: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Per-sequence means (what papers report) and pooled values (sums of counts) of rows from
    ``score_pairs``. An empty group gives n = 0 and NaN scores."""
    n = len(scores)
    out: dict[str, float] = {"n": n}
    if n == 0:
        for key in MEAN_KEYS:
            out[key] = out[f"pooled_{key}"] = float("nan")
        return out
    for key in MEAN_KEYS:
        out[key] = float(np.mean([s[key] for s in scores]))
    tot = {k: int(sum(int(s[k]) for s in scores)) for k in COUNT_KEYS}
    pe = prf(tot["tp"], tot["n_pred_pairs"], tot["tp"], tot["n_true_pairs"])
    ps = prf(tot["tp_shift_pred"], tot["n_pred_pairs"], tot["tp_shift_true"], tot["n_true_pairs"])
    for name, e, s in zip(("precision", "recall", "f1"), pe, ps, strict=True):
        out[f"pooled_{name}"] = e
        out[f"pooled_{name}_shift"] = s
    out["pooled_mcc"] = mcc(tot["tp"], tot["n_pred_pairs"], tot["n_true_pairs"], tot["n_cells"])
    return out


def group_indices(keys: Sequence[Hashable], order: Sequence[Hashable] | None = None
                  ) -> dict[Hashable, list[int]]:
    """Row indices per key; keys listed in ``order`` first (in that order, empty ones omitted),
    the rest sorted by name."""
    groups: dict[Hashable, list[int]] = {}
    for k, key in enumerate(keys):
        groups.setdefault(key, []).append(k)
    ordered = [k for k in (order or []) if k in groups]
    ordered += sorted((k for k in groups if k not in set(ordered)), key=str)
    return {k: groups[k] for k in ordered}


def element_ids(labels: str) -> np.ndarray:
    """``EHSBIM`` string -> uint8 class ids (ValueError on any other letter)."""
    ids = _ELEMENT_LUT[np.frombuffer(labels.encode("ascii"), dtype=np.uint8)]
    if (ids == 255).any():
        bad = labels[int(np.argmax(ids == 255))]
        raise ValueError(f"element label {bad!r} not in {STRUCTURE_CLASSES}")
    return ids


def element_scores(pred: Sequence[str], true: Sequence[str]) -> dict[str, float]:
    """Accuracy and macro-F1 of per-position element labels, pooled over all positions of all
    sequences (strings of ``EHSBIM``, one per sequence, lengths matching)."""
    if len(pred) != len(true):
        raise ValueError(f"{len(pred)} predicted label strings for {len(true)} sequences")
    for k, (p, t) in enumerate(zip(pred, true, strict=True)):
        if len(p) != len(t):
            raise ValueError(f"sequence {k}: {len(p)} predicted labels for {len(t)} positions")
    if not true:
        return {"accuracy": float("nan"), "macro_f1": float("nan"), "n_positions": 0}
    p = element_ids("".join(pred))
    t = element_ids("".join(true))
    return {"accuracy": structure_accuracy(p, t),
            "macro_f1": structure_macro_f1(p, t, len(STRUCTURE_CLASSES)),
            "n_positions": len(t)}


def majority_class(true: Sequence[str]) -> str:
    """Most frequent element class over all positions (ties: first in ``EHSBIM`` order)."""
    counts = np.bincount(element_ids("".join(true)), minlength=len(STRUCTURE_CLASSES))
    return STRUCTURE_CLASSES[int(np.argmax(counts))]


def majority_class_scores(true: Sequence[str]) -> dict[str, float | str]:
    """Trivial baseline: label every position with the data set's own majority class (an
    optimistic prior, since it is read off the very labels it is scored against)."""
    if not true:
        return {"class": "", **element_scores([], [])}
    cls = majority_class(true)
    return {"class": cls, **element_scores([cls * len(t) for t in true], true)}


def mlm_summary(nll_sum: float, n_correct: int, n_masked: int) -> dict[str, float]:
    """Accuracy and perplexity (exp of the mean negative log-likelihood) at masked positions."""
    if n_masked == 0:
        return {"accuracy": float("nan"), "perplexity": float("nan"), "n_masked": 0}
    return {"accuracy": n_correct / n_masked, "perplexity": math.exp(nll_sum / n_masked),
            "n_masked": n_masked}


def unigram_scores(frequencies: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Trivial MLM baseline: predict every masked token from fixed token frequencies.

    ``frequencies`` [V] (need not be normalized), ``targets`` token ids at masked positions.
    Accuracy is that of always guessing the most frequent token.
    """
    freq = np.asarray(frequencies, dtype=np.float64)
    if freq.sum() <= 0:
        raise ValueError("unigram frequencies are all zero")
    q = freq / freq.sum()
    t = np.asarray(targets, dtype=np.int64)
    with np.errstate(divide="ignore"):
        nll = float(-np.log(q[t]).sum())
    return mlm_summary(nll, int((t == int(np.argmax(q))).sum()), len(t))
