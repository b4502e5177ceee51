"""Inference (batching, windows, order) on a random tiny model; the predict CLI on a trained one."""

from __future__ import annotations

import random

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from genesis_rna.decoding import canonical_mask
from genesis_rna.inference import length_batches, predict_structures, window_starts
from genesis_rna.model import GenesisRNA, model_config_for
from genesis_rna.predict import main as predict_main
from genesis_rna.predict import read_fasta
from genesis_rna.structures import read_dot_bracket_fasta
from genesis_rna.tokenization import Tokenizer
from tests.helpers import random_rna
from tests.test_evaluate import tiny_checkpoint


@pytest.fixture(scope="module")
def model() -> GenesisRNA:
    torch.manual_seed(0)
    m = GenesisRNA(model_config_for("tiny", max_len=64, dropout=0.0, pair_conv_layers=1,
                                    pair_conv_channels=4))
    return m.eval()


def probs_dict(pred) -> dict[tuple[int, int], float]:
    i, j, p = pred.pair_probs
    return {(int(a), int(b)): float(q) for a, b, q in zip(i, j, p, strict=True)}


def test_window_starts_cover_the_sequence():
    assert window_starts(50, 62) == [0]
    assert window_starts(100, 62) == [0, 31, 38]
    for length, window in ((100, 62), (61, 20), (1000, 510), (21, 20)):
        starts = window_starts(length, window)
        covered = np.zeros(length, int)
        for s in starts:
            covered[s : s + window] += 1
        assert covered.min() >= 1 and starts[-1] + window == length


def test_length_batches_respect_the_cell_budget():
    rng = random.Random(1)
    lengths = [rng.randint(1, 500) for _ in range(200)]
    batches = length_batches(lengths, 512, 2**18, 64)
    assert sorted(k for b in batches for k in b) == list(range(200))
    for b in batches:
        width = -(-(max(lengths[k] for k in b) + 2) // 32) * 32
        assert len(b) == 1 or len(b) * min(width, 512) ** 2 <= 2**18
        assert len(b) <= 64


def test_order_restored_and_batching_does_not_change_results(model):
    rng = random.Random(2)
    seqs = [random_rna(rng, n) for n in (55, 12, 40, 8, 60, 33)]
    together = predict_structures(model, seqs, 0.5, keep_pair_probs=True, prob_floor=0.0)
    for s, pred in zip(seqs, together, strict=True):
        alone = predict_structures(model, [s], 0.5, keep_pair_probs=True, prob_floor=0.0)[0]
        assert len(pred.elements) == len(s) and not pred.windowed
        assert pred.elements == alone.elements
        np.testing.assert_allclose(pred.pair_probs[2], alone.pair_probs[2], atol=1e-5)
        assert len(pred.pair_probs[0]) == len(s) * (len(s) - 1) // 2


def test_long_sequence_is_windowed_and_probabilities_averaged(model):
    seq = random_rna(random.Random(3), 60)
    # window 20, stride 10: windows start at 0, 10, 20, 30, 40
    pred = predict_structures(model, [seq], 0.5, window=20, keep_pair_probs=True,
                              prob_floor=1e-30)[0]
    assert pred.windowed and pred.n_windows == 5 and len(pred.elements) == 60
    probs = probs_dict(pred)
    shared = {(i, j) for i in range(60) for j in range(i + 1, 60) if j // 10 - i // 10 <= 1}
    assert set(probs) == shared  # pairs in no common window get probability 0
    w0, w1 = (predict_structures(model, [seq[s : s + 20]], 0.5, keep_pair_probs=True,
                                 prob_floor=0.0)[0] for s in (0, 10))
    p0, p1 = probs_dict(w0), probs_dict(w1)
    assert probs[(0, 5)] == pytest.approx(p0[(0, 5)], abs=1e-6)  # only in window 0
    assert probs[(12, 15)] == pytest.approx((p0[(12, 15)] + p1[(2, 5)]) / 2, abs=1e-6)
    # a sequence longer than the model's limit (64 - 2) is windowed by default, never dropped
    long = random_rna(random.Random(4), 150)
    preds = predict_structures(model, [long, seq], 0.1)
    assert preds[0].windowed and preds[0].n_windows == len(window_starts(150, 62))
    assert not preds[1].windowed
    canon = canonical_mask(long)
    assert all(canon[i, j] and j - i >= 4 for i, j in preds[0].pairs)
    used = [k for p in preds[0].pairs for k in p]
    assert len(used) == len(set(used))


def test_inputs_normalized_and_bad_ones_refused(model):
    preds = predict_structures(model, ["acgtRacgtacgt", ""], 0.5, precision="bf16")
    assert len(preds[0].elements) == 13 and preds[1].pairs == [] and preds[1].elements == ""
    with pytest.raises(ValueError, match="sequence 1"):
        predict_structures(model, ["ACGU", "AC-GU"], 0.5)
    with pytest.raises(ValueError, match="window"):
        predict_structures(model, ["ACGU"], 0.5, window=100)
    with pytest.raises(ValueError, match="vocabulary"):
        predict_structures(model, ["ACGU"], 0.5,
                           tokenizer=Tokenizer(("<pad>", "<mask>", "<cls>", "<sep>", "A")))


# ------------------------------------------------------------------------------------------
# CLI on a trained tiny model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory)


def test_predict_cli_writes_dot_bracket_fasta(checkpoint, tmp_path):
    rng = random.Random(5)
    long = random_rna(rng, 150)
    fasta = tmp_path / "in.fa"
    fasta.write_text(f">a first\nacgtacgtggggaaaacccc\n\n>b\n{long[:70]}\n{long[70:]}\n"
                     f">c\n{random_rna(rng, 30)}RY\n")
    out, probs = tmp_path / "out.fa", tmp_path / "probs.parquet"
    rc = predict_main(["--checkpoint", str(checkpoint), "--input", str(fasta), "--output",
                       str(out), "--pair_probs", str(probs), "--no-progress"])
    assert rc == 0
    recs = list(read_dot_bracket_fasta(out))
    assert [r.id for r in recs] == ["a", "b", "c"]
    assert recs[0].sequence == "ACGUACGUGGGGAAAACCCC" and recs[1].sequence == long
    assert recs[2].sequence.endswith("NN")
    for r in recs:
        canon = canonical_mask(r.sequence)
        assert all(canon[i, j] and j - i >= 4 for i, j in r.pairs)
    table = pq.read_table(probs).to_pydict()
    assert set(table) == {"index", "id", "i", "j", "prob"}
    assert set(table["id"]) <= {"a", "b", "c"}
    assert all(i < j for i, j in zip(table["i"], table["j"], strict=True))
    assert all(0.01 <= p <= 1 for p in table["prob"])
    # npz: plain arrays, no pickle; a strict threshold predicts no more pairs than the tuned one
    npz, out2 = tmp_path / "probs.npz", tmp_path / "out2.fa"
    assert predict_main(["--checkpoint", str(checkpoint), "--input", str(fasta), "--output",
                         str(out2), "--pair_probs", str(npz), "--threshold", "0.999",
                         "--no-progress"]) == 0
    with np.load(npz, allow_pickle=False) as z:
        assert len(z["i"]) == len(table["i"]) and z["id"].dtype.kind == "U"
    strict = list(read_dot_bracket_fasta(out2))
    assert all(len(s.pairs) <= len(r.pairs) for s, r in zip(strict, recs, strict=True))


def test_predict_decoders_nested_by_default_greedy_on_request(checkpoint, tmp_path):
    """The default (the checkpoint's mea) writes nested '()' structures only; --decoder greedy
    at a low threshold may cross and then uses further bracket pages."""
    rng = random.Random(11)
    fasta = tmp_path / "in.fa"
    fasta.write_text("".join(f">s{k}\n{random_rna(rng, 120)}\n" for k in range(6)))
    outs = {}
    for decoder in ("mea", "greedy"):
        out = tmp_path / f"{decoder}.fa"
        args = ["--checkpoint", str(checkpoint), "--input", str(fasta), "--output", str(out),
                "--threshold", "0.005", "--no-progress"]
        if decoder == "greedy":
            args += ["--decoder", "greedy"]
        assert predict_main(args) == 0
        outs[decoder] = out.read_text().splitlines()[2::3]
    assert all(set(db) <= set("().") for db in outs["mea"])
    assert any(set(db) - set("().") for db in outs["greedy"])  # crossing pairs: more pages


def test_predict_cli_to_stdout(checkpoint, tmp_path, capsys):
    fasta = tmp_path / "in.fa"
    fasta.write_text(">x\nGGGGAAAACCCCAAAAGGGGAAAACCCC\n")
    assert predict_main(["--checkpoint", str(checkpoint), "--input", str(fasta),
                         "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ">x" and len(lines[2]) == len(lines[1]) == 28


@pytest.mark.parametrize("text, line, what", [
    ("ACGU\n>x\nACGU\n", 1, "expected a '>' header"),
    (">x\nACGU\n>y\nAC-GU\n", 3, "gap"),
    (">x\nACGU\n>z\nAC1GU\n", 3, "illegal character"),
    ("", None, "no FASTA records"),
    (">x\nAC\x00GU\n", 2, "binary"),
])
def test_bad_fasta_names_file_and_line(tmp_path, capsys, checkpoint, text, line, what):
    fasta = tmp_path / "bad.fa"
    fasta.write_text(text)
    rc = predict_main(["--checkpoint", str(checkpoint), "--input", str(fasta), "--output",
                       str(tmp_path / "o.fa"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and what in err
    assert f"{fasta}:{line}:" in err if line else str(fasta) in err
    assert not (tmp_path / "o.fa").exists()


def test_missing_input_and_bad_probs_name(tmp_path, checkpoint, capsys):
    assert predict_main(["--checkpoint", str(checkpoint), "--input", str(tmp_path / "no.fa"),
                         "--no-progress"]) == 1
    assert "no.fa" in capsys.readouterr().err
    fasta = tmp_path / "in.fa"
    fasta.write_text(">x\nACGU\n")
    assert predict_main(["--checkpoint", str(checkpoint), "--input", str(fasta),
                         "--pair_probs", str(tmp_path / "p.pkl"), "--no-progress"]) == 1
    assert "pair_probs" in capsys.readouterr().err
    assert [r.id for r in read_fasta(fasta)] == ["x"]
