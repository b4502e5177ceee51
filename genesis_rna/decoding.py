"""Decoding: a pair-probability map -> a secondary structure (one home for this idea).

Training (per-epoch metrics, threshold tuning), evaluation and ``predict`` all decode here.

1. Candidates: cells of the upper triangle with |i - j| >= min_sep whose bases can pair
   canonically (AU, GC, GU) and whose probability reaches a floor (``candidate_pairs`` on a
   numpy map, ``batch_candidates`` on a batch of logits, filtered on the device).
2. A decoder picks a structure among the candidates above the threshold ``t``:
   - ``mea`` (default): the nested structure (no crossing pairs, one partner per base) that
     maximizes sum(p_ij - t) over its pairs, found exactly by a Nussinov-style dynamic
     programme. This is the gamma-centroid estimator of Hamada et al. (Bioinformatics 2009),
     maximum expected accuracy with gain (gamma + 1) p_ij - 1 per pair, t = 1 / (gamma + 1).
   - ``greedy``: accept candidates in descending probability, at most one partner per base;
     pairs may cross, so it can express pseudoknots (and produces spurious crossings).
   The threshold is tuned on validation for the decoder in use (``tune_threshold``) and
   stored in the checkpoint with the decoder's name.

The DP runs over anti-diagonals with numpy: S[a, b] = max(S[a+1, b-1] + w_ab,
max_k S[a, k] + S[k+1, b]); both halves of the bifurcation are contiguous slices of two
layouts of S (by start and by end), so each diagonal is one vectorized max. Positions that
have no candidate above the threshold can never pair and are dropped before the DP, which
keeps it far below the sequence length for confident maps.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

from genesis_rna.pair_metrics import Pair, pair_counts, prf
from genesis_rna.tokenization import CANONICAL_PAIRS, VOCAB

DECODERS = ("mea", "greedy")
DEFAULT_DECODER = "mea"
# thresholds tried on validation per decoder (the DP costs more than a greedy pass, so a
# coarser grid); the lowest is also the candidate floor (see the trainer's TUNE_MIN_PROB)
# MEA's optimum often lies at low thresholds (nesting already rejects most weak cells), so
# its grid reaches down to 0.02
TUNE_THRESHOLDS = {"greedy": tuple(np.round(np.arange(0.05, 0.951, 0.025), 4).tolist()),
                   "mea": (0.02, 0.03, 0.05, 0.075, 0.1,
                           *np.round(np.arange(0.15, 0.951, 0.05), 4).tolist())}

Candidates = tuple[np.ndarray, np.ndarray, np.ndarray]  # i, j (0-based, i < j), p


def check_decoder(decoder: str) -> str:
    if decoder not in DECODERS:
        raise ValueError(f"unknown decoder {decoder!r}; choose from {DECODERS}")
    return decoder


def canonical_mask(sequence: str) -> np.ndarray:
    """[n, n] bool: bases i and j can form an AU, GC or GU pair."""
    s = np.frombuffer(sequence.encode("ascii"), dtype=np.uint8)
    out = np.zeros((len(s), len(s)), dtype=bool)
    for a, b in CANONICAL_PAIRS:
        out |= (s[:, None] == ord(a)) & (s[None, :] == ord(b))
    return out


def candidate_pairs(probs: np.ndarray, sequence: str, min_prob: float, min_sep: int = 4,
                    canonical_only: bool = True) -> Candidates:
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


def sparse_candidates(sequence: str, i: np.ndarray, j: np.ndarray, p: np.ndarray,
                      min_sep: int = 4) -> Candidates:
    """``candidate_pairs`` for sparse probabilities (i < j, p), e.g. ``Prediction.pair_probs``."""
    i, j = np.asarray(i, np.int64), np.asarray(j, np.int64)
    s = np.frombuffer(sequence.encode("ascii"), dtype=np.uint8)
    ok = (j - i) >= min_sep
    canon = np.zeros(len(i), dtype=bool)
    for a, b in CANONICAL_PAIRS:
        canon |= (s[i] == ord(a)) & (s[j] == ord(b))
    ok &= canon
    return i[ok], j[ok], np.asarray(p, np.float64)[ok]


def batch_candidates(pair_logits: torch.Tensor, seq_tokens: torch.Tensor,
                     nucleotide_mask: torch.Tensor, min_prob: float, min_sep: int = 4
                     ) -> list[Candidates]:
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


def nested_pairs(i: np.ndarray, j: np.ndarray, p: np.ndarray,
                 threshold: float) -> list[tuple[int, int, float]]:
    """The nested structure maximizing sum(p - threshold) over its pairs (exact DP).

    Only candidates with p > threshold can contribute; the result has no crossing pairs and
    at most one partner per base. Candidates are assumed distinct cells (i < j).
    """
    keep = p > threshold
    i, j, p = np.asarray(i)[keep], np.asarray(j)[keep], np.asarray(p, np.float64)[keep]
    if len(p) == 0:
        return []
    pos, inv = np.unique(np.concatenate([i, j]), return_inverse=True)
    a_of, b_of = inv[: len(i)], inv[len(i):]
    m = len(pos)
    prob = np.zeros((m, m))
    prob[a_of, b_of] = p
    w = np.full((m, m), -np.inf)
    w[a_of, b_of] = p - threshold
    # by_start[a, d] = S[a, a + d]; by_end[b, d] = S[b - d, b]; row a+1 at d-2 is S[a+1, b-1]
    by_start = np.zeros((m + 1, m))
    by_end = np.zeros((m, m))
    for d in range(1, m):
        n = m - d
        # bifurcation: S[a, a + k] + S[a + k + 1, b] for k = 0..d-1 (by_end read backwards)
        best = (by_start[:n, :d] + by_end[d:, d - 1 :: -1]).max(axis=1)
        pair = np.diagonal(w, d) + (by_start[1 : n + 1, d - 2] if d >= 2 else 0.0)
        np.maximum(best, pair, out=best)
        by_start[:n, d] = best
        by_end[d:, d] = best

    def score(x: int, y: int) -> float:
        return 0.0 if y <= x else by_start[x, y - x]

    out: list[tuple[int, int, float]] = []
    stack = [(0, m - 1)]
    while stack:
        x, y = stack.pop()
        if y <= x:
            continue
        s = score(x, y)
        if w[x, y] > -np.inf and s == score(x + 1, y - 1) + w[x, y]:
            out.append((int(pos[x]), int(pos[y]), float(prob[x, y])))
            stack.append((x + 1, y - 1))
            continue
        d = y - x
        split = by_start[x, :d] + by_end[y, :d][::-1]
        k = x + int(np.argmax(split))
        stack += [(x, k), (k + 1, y)]
    return sorted(out)


def decode_candidates(cands: Candidates, threshold: float,
                      decoder: str = DEFAULT_DECODER) -> list[Pair]:
    """Sorted pairs (i < j) chosen by ``decoder`` among candidates above ``threshold``."""
    i, j, p = cands
    if check_decoder(decoder) == "greedy":
        chosen = greedy_pairs(i, j, p, threshold)
    else:
        chosen = nested_pairs(i, j, p, threshold)
    return sorted((a, b) for a, b, _ in chosen)


def decode_map(probs: np.ndarray, sequence: str, threshold: float, decoder: str = DEFAULT_DECODER,
               min_sep: int = 4, canonical_only: bool = True) -> list[Pair]:
    """Probability map [n, n] (or larger, padded) -> sorted list of predicted pairs (i < j)."""
    cands = candidate_pairs(probs, sequence, threshold, min_sep, canonical_only)
    return decode_candidates(cands, threshold, decoder)


def tune_threshold(candidates: Sequence[Candidates], true_pairs: Sequence[Iterable[Pair]],
                   decoder: str = DEFAULT_DECODER,
                   thresholds: Sequence[float] | None = None) -> tuple[float, float]:
    """Threshold maximizing the per-sequence mean F1 of ``decoder``'s structures.

    ``candidates`` per sequence come from ``candidate_pairs`` at the lowest threshold tried.
    Returns (best threshold, its mean F1); ties go to the higher threshold.
    """
    check_decoder(decoder)
    thresholds = sorted(TUNE_THRESHOLDS[decoder] if thresholds is None else thresholds)
    sums = np.zeros(len(thresholds))
    for (i, j, p), true in zip(candidates, true_pairs, strict=True):
        true_set = list(true)
        if decoder == "greedy":  # one pass: a higher threshold keeps a prefix
            accepted = greedy_pairs(i, j, p, thresholds[0])
            for k, t in enumerate(thresholds):
                pred = [(a, b) for a, b, q in accepted if q >= t]
                sums[k] += prf(*pair_counts(pred, true_set))[2]
        else:
            for k, t in enumerate(thresholds):
                pred = [(a, b) for a, b, _ in nested_pairs(i, j, p, t)]
                sums[k] += prf(*pair_counts(pred, true_set))[2]
    means = sums / max(len(true_pairs), 1)
    best = int(len(thresholds) - 1 - np.argmax(means[::-1]))
    return float(thresholds[best]), float(means[best])
