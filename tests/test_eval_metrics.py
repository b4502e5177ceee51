"""Evaluation metrics against hand-worked examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from genesis_rna.decoding import DECODERS, decode_map
from genesis_rna.eval_metrics import (
    aggregate,
    element_scores,
    length_bin,
    length_bin_labels,
    majority_class_scores,
    mcc,
    mlm_summary,
    n_pair_cells,
    score_pairs,
    unigram_scores,
)
from genesis_rna.structures import parse_dot_bracket


def test_mcc_on_a_small_matrix():
    # L = 6 -> 15 upper-triangle cells. true {(0,5),(1,4)}, pred {(0,5),(2,4)}:
    # TP 1, FP 1, FN 1, TN 12 -> (1*12 - 1*1) / sqrt(2*2*13*13) = 11/26
    assert n_pair_cells(6) == 15
    s = score_pairs([(0, 5), (2, 4)], [(0, 5), (1, 4)], 6)
    assert (s["tp"], s["n_pred_pairs"], s["n_true_pairs"], s["n_cells"]) == (1, 2, 2, 15)
    assert s["mcc"] == pytest.approx(11 / 26)
    assert s["precision"] == s["recall"] == s["f1"] == pytest.approx(0.5)
    # by brute force over the matrix
    pred = np.zeros((6, 6), bool)
    true = np.zeros((6, 6), bool)
    pred[[0, 2], [5, 4]] = True
    true[[0, 1], [5, 4]] = True
    iu = np.triu_indices(6, 1)
    p, t = pred[iu], true[iu]
    assert s["mcc"] == pytest.approx(np.corrcoef(p, t)[0, 1])
    assert mcc(0, 0, 0, 10) == 1.0  # nothing to find, nothing predicted
    assert mcc(0, 3, 0, 10) == 0.0  # a zero margin (no true pairs) is undefined -> 0
    assert mcc(2, 2, 2, 10) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        mcc(3, 2, 2, 10)


def test_empty_structures():
    both = score_pairs([], [], 10)
    assert both["f1"] == both["mcc"] == both["f1_shift"] == 1.0
    only_true = score_pairs([], [(0, 9)], 10)
    assert only_true["f1"] == only_true["recall"] == only_true["mcc"] == 0.0
    only_pred = score_pairs([(0, 9)], [], 10)
    assert only_pred["f1"] == only_pred["precision"] == 0.0
    # pooled: the empty sequence adds nothing to the counts
    agg = aggregate([both, score_pairs([(0, 9)], [(0, 9)], 10)])
    assert agg["f1"] == 1.0 and agg["pooled_f1"] == 1.0
    assert math.isnan(aggregate([])["f1"]) and aggregate([])["n"] == 0


def test_pseudoknot_pairs_all_count():
    # an H-type pseudoknot: ((..[[..))..]]
    true = parse_dot_bracket("((..[[..))..]]")
    assert true == [(0, 9), (1, 8), (4, 13), (5, 12)]
    nested_only = [(0, 9), (1, 8)]
    s = score_pairs(nested_only, true, 14)
    assert s["precision"] == 1.0 and s["recall"] == 0.5 and s["f1"] == pytest.approx(2 / 3)


def test_shift_tolerance():
    true = [(2, 20), (3, 19)]
    pred = [(2, 21), (5, 19), (3, 19)]  # one shifted by 1, one by 2 (not tolerated), one exact
    s = score_pairs(pred, true, 30)
    assert s["tp"] == 1 and s["precision"] == pytest.approx(1 / 3) and s["recall"] == 0.5
    assert s["tp_shift_pred"] == 2 and s["tp_shift_true"] == 2
    assert s["precision_shift"] == pytest.approx(2 / 3) and s["recall_shift"] == 1.0
    assert s["f1_shift"] == pytest.approx(0.8)


@pytest.mark.parametrize("decoder", DECODERS)
def test_one_partner_rule_in_postprocessing_then_scoring(decoder):
    seq = "GGGGAAAACCCC"
    probs = np.zeros((12, 12))
    # base 0 wants both 11 (0.9) and 10 (0.8); base 1 wants 10 (0.7)
    for (i, j), p in {(0, 11): 0.9, (0, 10): 0.8, (1, 10): 0.7, (2, 9): 0.6}.items():
        probs[i, j] = probs[j, i] = p
    pred = decode_map(probs, seq, 0.5, decoder)
    assert pred == [(0, 11), (1, 10), (2, 9)]
    s = score_pairs(pred, [(0, 11), (1, 10), (2, 9), (3, 8)], 12)
    assert s["precision"] == 1.0 and s["recall"] == 0.75
    assert not np.any(probs != probs.T)  # the caller's array is untouched


def test_mean_vs_pooled():
    a = score_pairs([(0, 9)], [(0, 9)], 10)  # F1 1 with 1 true pair
    b = score_pairs([], [(0, 19), (1, 18), (2, 17)], 20)  # F1 0 with 3 true pairs
    rows = [a, b]
    inputs = [dict(r) for r in rows]
    agg = aggregate(rows)
    assert agg["f1"] == 0.5  # per-sequence mean
    assert agg["pooled_precision"] == 1.0 and agg["pooled_recall"] == 0.25
    assert agg["pooled_f1"] == pytest.approx(0.4)
    assert rows == inputs  # not mutated


def test_length_bins():
    assert length_bin_labels() == ["<=100", "101-200", "201-400", "401-800", ">800"]
    assert [length_bin(n) for n in (1, 100, 101, 200, 400, 401, 800, 801, 3000)] == [
        "<=100", "<=100", "101-200", "101-200", "201-400", "401-800", "401-800", ">800", ">800"]


def test_element_scores_and_majority_baseline():
    true = ["SSHHSS", "EEES"]
    pred = ["SSHHSS", "EESS"]
    s = element_scores(pred, true)
    assert s["accuracy"] == pytest.approx(9 / 10) and s["n_positions"] == 10
    # classes E (tp 2, fn 1): 4/5; H (tp 2): 1; S (tp 5, fp 1): 10/11; B, I, M absent
    assert s["macro_f1"] == pytest.approx((0.8 + 1 + 10 / 11) / 3)
    maj = majority_class_scores(true)
    assert maj["class"] == "S" and maj["accuracy"] == pytest.approx(5 / 10)
    assert maj["macro_f1"] == pytest.approx((2 * 5 / (2 * 5 + 5)) / 3)  # S only; E, H score 0
    assert majority_class_scores(["EESS"])["class"] == "E"  # ties: first in EHSBIM order
    with pytest.raises(ValueError):
        element_scores(["SS"], ["SSS"])
    with pytest.raises(ValueError):
        element_scores(["SX"], ["SS"])


def test_mlm_and_unigram():
    assert mlm_summary(0.0, 3, 3)["perplexity"] == 1.0
    assert math.isnan(mlm_summary(0.0, 0, 0)["accuracy"])
    freq = np.array([0, 0, 0, 0, 2, 1, 1, 0, 0])  # A twice as frequent as C, G; no U
    u = unigram_scores(freq, np.array([4, 5, 6, 4]))
    assert u["accuracy"] == 0.5
    assert u["perplexity"] == pytest.approx(math.exp(-(2 * math.log(0.5) + 2 * math.log(0.25)) / 4))
