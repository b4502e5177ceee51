import itertools
import time

import numpy as np
import pytest

from genesis_rna.decoding import (
    candidate_pairs,
    decode_candidates,
    decode_map,
    nested_pairs,
    sparse_candidates,
    tune_threshold,
)


def _crossing(pairs):
    return any(a < c < b < d for (a, b), (c, d) in itertools.combinations(sorted(pairs), 2))


def _brute_force(i, j, p, threshold):
    """Best sum(p - t) over every nested, one-partner subset of the candidates (exhaustive)."""
    cells = [(int(a), int(b), float(q) - threshold) for a, b, q in zip(i, j, p, strict=True)
             if q > threshold]
    best = 0.0
    for r in range(1, len(cells) + 1):
        for subset in itertools.combinations(cells, r):
            bases = [x for a, b, _ in subset for x in (a, b)]
            if len(set(bases)) < len(bases) or _crossing([(a, b) for a, b, _ in subset]):
                continue
            best = max(best, sum(w for _, _, w in subset))
    return best


@pytest.mark.parametrize("seed", range(25))
def test_nested_mea_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(8, 15))
    seq = "".join(rng.choice(list("ACGU"), n))
    probs = rng.random((n, n)) ** 2
    i, j, p = candidate_pairs(probs, seq, 0.05, min_sep=2)
    keep = rng.permutation(len(p))[: 12]  # keep the exhaustive search small
    i, j, p = i[keep], j[keep], p[keep]
    threshold = float(rng.choice([0.05, 0.2, 0.4]))
    got = nested_pairs(i, j, p, threshold)
    pairs = [(a, b) for a, b, _ in got]
    assert not _crossing(pairs)
    bases = [x for ab in pairs for x in ab]
    assert len(set(bases)) == len(bases)
    cand = {(int(a), int(b)): float(q) for a, b, q in zip(i, j, p, strict=True)}
    assert all((a, b) in cand and cand[(a, b)] > threshold and q == cand[(a, b)]
               for a, b, q in got)
    assert sum(q - threshold for _, _, q in got) == pytest.approx(_brute_force(i, j, p, threshold))


def test_mea_refuses_the_crossing_pairs_greedy_takes():
    seq = "GGGGAAAACCCCAAAAGGGGAAAACCCC"
    n = len(seq)
    probs = np.zeros((n, n))
    stem1 = [(k, 11 - k) for k in range(4)]  # hairpin 1: G0-3 with C8-11
    stem2 = [(16 + k, 27 - k) for k in range(4)]  # hairpin 2: G16-19 with C24-27
    knot = [(k, 27 - k) for k in range(4)]  # G0-3 with C24-27: crosses nothing alone ...
    for a, b in stem1 + stem2:
        probs[a, b] = 0.9
    probs[2, 25] = 0.95  # ... but this one cell crosses hairpin 1's stem if taken
    greedy = decode_map(probs, seq, 0.5, "greedy")
    mea = decode_map(probs, seq, 0.5, "mea")
    assert (2, 25) in greedy and _crossing(greedy + [(2, 25)]) is not None
    assert not _crossing(mea)
    assert set(mea) == set(stem1 + stem2)  # 8 x 0.4 beats any structure using (2, 25)
    assert knot  # documented shape


def test_mea_threshold_and_empty_inputs():
    empty = (np.zeros(0, int), np.zeros(0, int), np.zeros(0))
    assert decode_candidates(empty, 0.5, "mea") == []
    i, j, p = np.array([0, 1]), np.array([10, 9]), np.array([0.6, 0.4])
    assert decode_candidates((i, j, p), 0.5, "mea") == [(0, 10)]
    assert decode_candidates((i, j, p), 0.3, "mea") == [(0, 10), (1, 9)]
    assert decode_candidates((i, j, p), 0.7, "mea") == []
    with pytest.raises(ValueError, match="unknown decoder"):
        decode_candidates((i, j, p), 0.5, "viterbi")


def test_tune_threshold_for_mea_recovers_the_generating_structure():
    rng = np.random.default_rng(3)
    cands, truths = [], []
    for _ in range(6):
        n = 60
        seq = "G" * 8 + "".join(rng.choice(list("ACGU"), n - 16)) + "C" * 8
        true = [(k, n - 1 - k) for k in range(8)]
        probs = rng.random((n, n)) * 0.3  # noise below 0.3
        for a, b in true:
            probs[a, b] = 0.8
        cands.append(candidate_pairs(probs, seq, 0.05))
        truths.append(true)
    thr, f1 = tune_threshold(cands, truths, "mea", [0.1, 0.2, 0.35, 0.5, 0.9])
    assert f1 == 1.0 and thr == 0.5  # ties go to the higher threshold


def test_mea_decodes_a_512_nt_map_quickly_enough_for_benchmarks():
    """Not a timing assertion: the decode must simply finish (smoke test of the DP at size)."""
    rng = np.random.default_rng(0)
    n = 512
    seq = "".join(rng.choice(list("ACGU"), n))
    probs = rng.random((n, n)) ** 8
    t0 = time.perf_counter()
    pairs = decode_map(probs, seq, 0.3, "mea")
    assert not _crossing(pairs)
    print(f"512 nt dense-noise map decoded in {time.perf_counter() - t0:.2f} s")


def test_sparse_candidates_match_the_dense_path():
    rng = np.random.default_rng(7)
    seq = "".join(rng.choice(list("ACGU"), 40))
    probs = np.triu(rng.random((40, 40)), 1)
    i, j = np.nonzero(probs >= 0.3)
    dense = candidate_pairs(probs, seq, 0.3)
    sparse = sparse_candidates(seq, i, j, probs[i, j])
    assert [x.tolist() for x in sparse] == [x.tolist() for x in dense]
