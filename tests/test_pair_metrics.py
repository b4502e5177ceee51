import numpy as np
import pytest
import torch

from genesis_rna.decoding import (
    batch_candidates,
    candidate_pairs,
    decode_map,
    greedy_pairs,
    tune_threshold,
)
from genesis_rna.pair_metrics import (
    PairMetrics,
    pair_counts,
    prf,
    structure_accuracy,
    structure_macro_f1,
)
from genesis_rna.tokenization import Tokenizer


def _scores(pred, true, allow_shift=False):
    return prf(*pair_counts(pred, true, allow_shift))


def test_postprocess_canonical_min_sep_one_partner():
    seq = "GGGAAAUCCCA"  # 11 nt
    p = np.zeros((11, 11))
    p[0, 9] = 0.9  # G-C ok
    p[0, 8] = 0.8  # G-C but base 0 taken -> dropped
    p[1, 8] = 0.7  # G-C ok
    p[2, 6] = 0.95  # G-U wobble, j - i = 4 ok
    p[3, 5] = 0.99  # A-A? not canonical and too close
    p[4, 10] = 0.6  # A-A not canonical
    p[2, 7] = 0.4  # below threshold
    assert decode_map(p, seq, 0.5, "greedy") == [(0, 9), (1, 8), (2, 6)]
    # only the upper triangle is read
    assert decode_map(p.T, seq, 0.5, "greedy") == []
    assert decode_map(p, seq, 0.5, "greedy", canonical_only=False) == [(0, 9), (1, 8), (2, 6),
                                                                    (4, 10)]


def test_hand_worked_scores():
    true = [(0, 20), (1, 19), (2, 18), (5, 12)]
    pred = [(0, 20), (1, 19), (3, 18), (6, 30)]
    p, r, f = _scores(pred, true)
    assert (p, r, f) == (0.5, 0.5, 0.5)
    p, r, f = _scores(pred, true, allow_shift=True)  # (3,18) is (2,18) shifted by one
    assert (p, r) == (0.75, 0.75)
    assert _scores([], []) == (1.0, 1.0, 1.0)
    assert _scores([(0, 9)], []) == (0.0, 0.0, 0.0)
    assert _scores([], [(0, 9)]) == (0.0, 0.0, 0.0)
    p, r, f = _scores([(0, 20)], true)
    assert (p, r) == (1.0, 0.25) and f == pytest.approx(0.4)


def test_metrics_accumulator_mean_and_pooled():
    m = PairMetrics()
    m.update([(0, 10)], [(0, 10)])  # perfect
    m.update([(0, 10), (1, 9), (2, 8)], [(0, 10), (3, 7), (4, 6), (5, 20)])  # P 1/3, R 1/4
    res = m.result()
    assert res["precision"] == pytest.approx((1 + 1 / 3) / 2)
    assert res["recall"] == pytest.approx((1 + 1 / 4) / 2)
    assert res["pooled_precision"] == pytest.approx(2 / 4)
    assert res["pooled_recall"] == pytest.approx(2 / 5)


def test_greedy_prefix_and_threshold_tuning():
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGU"), 40)) for _ in range(5)]
    probs = [rng.random((40, 40)) ** 4 for _ in seqs]
    truths = [decode_map(p, s, 0.6, "greedy") for p, s in zip(probs, seqs, strict=True)]
    cands = [candidate_pairs(p, s, 0.05) for p, s in zip(probs, seqs, strict=True)]
    full = greedy_pairs(*cands[0], 0.05)
    assert [(a, b) for a, b, q in full if q >= 0.6] == sorted(
        truths[0], key=lambda ab: -probs[0][ab])
    thr, f1 = tune_threshold(cands, truths, "greedy", [0.3, 0.45, 0.6, 0.8])
    assert thr == 0.6 and f1 == 1.0


def test_batch_candidates_matches_numpy_path():
    tok = Tokenizer()
    seqs = ["GGGAAAUCCCA", "ACGUACGUACGUAC"]
    width = 16
    seq_tokens = torch.zeros(2, width, dtype=torch.long)
    nm = torch.zeros(2, width, dtype=torch.bool)
    rng = np.random.default_rng(1)
    logits = torch.tensor(rng.normal(size=(2, width, width)), dtype=torch.float32)
    logits = (logits + logits.transpose(1, 2)) / 2
    for k, s in enumerate(seqs):
        ids = tok.encode(s)
        seq_tokens[k, : len(ids)] = torch.tensor(ids)
        nm[k, 1 : len(s) + 1] = True
    got = batch_candidates(logits, seq_tokens, nm, 0.5)
    for k, s in enumerate(seqs):
        n = len(s)
        probs = torch.sigmoid(logits[k, 1 : n + 1, 1 : n + 1]).numpy()
        i, j, p = candidate_pairs(probs, s, 0.5)
        gi, gj, gp = got[k]
        assert sorted(zip(gi.tolist(), gj.tolist(), strict=True)) == sorted(
            zip(i.tolist(), j.tolist(), strict=True))


def test_structure_metrics():
    true = np.array([0, 0, 2, 2, 1, 1, 2, 2])
    pred = np.array([0, 2, 2, 2, 1, 0, 2, 2])
    assert structure_accuracy(pred, true) == 0.75
    # F1 per class: E 2*1/(2+1+1)=0.5, H 2/(2+0+1)=2/3, S 2*4/(8+1+0)=8/9
    assert structure_macro_f1(pred, true) == pytest.approx((0.5 + 2 / 3 + 8 / 9) / 3)
