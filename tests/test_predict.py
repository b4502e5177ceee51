"""Inference (batching, windows, order) on a random tiny model; the predict CLI on a trained one."""

from __future__ import annotations

import random

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from genesis_rna.benchmarks import iter_benchmark_records, sniff_format
from genesis_rna.decoding import canonical_mask
from genesis_rna.inference import length_batches, predict_structures, window_starts
from genesis_rna.model import GenesisRNA, model_config_for
from genesis_rna.predict import main as predict_main
from genesis_rna.predict_io import read_inputs, safe_file_names
from genesis_rna.structures import (
    pairs_to_dot_bracket,
    read_bpseq,
    read_ct,
    read_dot_bracket_fasta,
)
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
        # each structure line: the dot-bracket, then the energy as RNAfold prints it
        outs[decoder] = [line.split()[0] for line in out.read_text().splitlines()[2::3]]
    assert all(set(db) <= set("().") for db in outs["mea"])
    assert any(set(db) - set("().") for db in outs["greedy"])  # crossing pairs: more pages


def test_predict_cli_to_stdout(checkpoint, tmp_path, capsys):
    fasta = tmp_path / "in.fa"
    fasta.write_text(">x\nGGGGAAAACCCCAAAAGGGGAAAACCCC\n")
    assert predict_main(["--checkpoint", str(checkpoint), "--input", str(fasta),
                         "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ">x" and len(lines[2].split()[0]) == len(lines[1]) == 28


@pytest.mark.parametrize("text, line, what, strict", [
    ("ACGU\n>x\nACGU\n", 1, "expected a '>' header", False),
    (">x\nACGU\n>y\nAC-GU\n", 3, "gap", True),
    (">x\nACGU\n>z\nAC1GU\n", 3, "illegal character", True),
    ("", None, "no FASTA records", False),
    (">x\nAC\x00GU\n", 2, "binary", False),
    (">x\n\n>y\nAC-GU\n", None, "no record could be folded", False),
])
def test_bad_fasta_names_file_and_line(tmp_path, capsys, checkpoint, text, line, what, strict):
    """Faults of the file, a bad record under --strict, or no usable record: exit 1, no output."""
    fasta = tmp_path / "bad.fa"
    fasta.write_text(text)
    rc = predict_main(["--checkpoint", str(checkpoint), "--input", str(fasta), "--output",
                       str(tmp_path / "o.fa"), "--no-progress", *(["--strict"] if strict else [])])
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
    assert [r.id for r in read_inputs(fasta)[0]] == ["x"]


# ------------------------------------------------------------------------------------------
# Batches that survive a bad record, output formats, energies, drawings


def _fold(checkpoint, *args: str) -> int:
    return predict_main(["--checkpoint", str(checkpoint), "--no-progress", *args])


def test_good_records_are_folded_and_bad_ones_listed(checkpoint, tmp_path, capsys):
    rng = random.Random(7)
    good = {f"g{k}": random_rna(rng, 40 + 10 * k) for k in range(3)}
    fasta = tmp_path / "mixed.fa"
    fasta.write_text(f">g0\n{good['g0']}\n>empty\n\n>g1\n{good['g1']}\n>gap x\nAC-GU\n"
                     f">\nACGU\n>g2\n{good['g2']}\n>g0\n{good['g0']}\n")
    out, rejected = tmp_path / "out.fa", tmp_path / "rejected.tsv"
    assert _fold(checkpoint, "--input", str(fasta), "--output", str(out),
                 "--rejected", str(rejected)) == 0
    err = capsys.readouterr().err
    recs = list(read_dot_bracket_fasta(out))
    assert [r.id for r in recs] == ["g0", "g1", "g2", "g0"]
    assert [r.sequence for r in recs] == [good["g0"], good["g1"], good["g2"], good["g0"]]
    rows = [line.split("\t") for line in rejected.read_text().splitlines()]
    assert rows == [["id", "line", "reason"], ["empty", "3", "empty sequence"],
                    ["gap", "7", "gap characters ('-' at position 3); ungap the input"],
                    ["", "9", "header without an id"]]
    assert "3 record(s) of" in err and "empty (line 3): empty sequence" in err
    assert "4 sequences, 3 skipped" in err
    assert "warning: id 'g0' occurs 2 times (header lines 1, 13)" in err
    # --strict refuses the same file, naming the first bad record, and writes nothing
    assert _fold(checkpoint, "--input", str(fasta), "--output", str(tmp_path / "s.fa"),
                 "--strict") == 1
    assert f"{fasta}:3: record 'empty': empty sequence" in capsys.readouterr().err
    assert not (tmp_path / "s.fa").exists()


@pytest.fixture(scope="module")
def folded(checkpoint, tmp_path_factory):
    """One FASTA of awkward ids folded into dbn, a ct folder, one .ct file and a bpseq folder."""
    tmp = tmp_path_factory.mktemp("formats")
    rng = random.Random(3)
    ids = ["tRNA-Phe/1-76", "a b|c", "../up", "A", "a"]
    seqs = [random_rna(rng, 50 + 7 * k) for k in range(len(ids))]
    fasta = tmp / "in.fas"
    fasta.write_text("".join(f">{i}\n{s}\n" for i, s in zip(ids, seqs, strict=True)))
    outs = {"dbn": tmp / "out.dbn", "ct": tmp / "ct", "ct_file": tmp / "all.ct",
            "bpseq": tmp / "bpseq"}
    for key, out in outs.items():
        fmt = key.removesuffix("_file")
        assert _fold(checkpoint, "--input", str(fasta), "--output", str(out), "--format",
                     fmt, "--threshold", "0.005") == 0, key
    return ids, seqs, outs


def test_ct_and_bpseq_round_trip_through_our_readers(folded):
    ids, seqs, outs = folded
    reference = list(read_dot_bracket_fasta(outs["dbn"]))
    assert [r.id for r in reference] == [i.split()[0] for i in ids]
    assert sum(len(r.pairs) for r in reference) > 0  # something to compare
    names = safe_file_names([r.id for r in reference])
    assert names == ["tRNA-Phe_1-76", "a", "_up", "A_2", "a_3"]  # distinct, also ignoring case
    for fmt, read in (("ct", read_ct), ("bpseq", read_bpseq)):
        index = [line.split("\t") for line in (outs[fmt] / "index.tsv").read_text().splitlines()]
        assert index[0] == ["id", "file", "length", "energy"]
        for ref, (rid, file, length, _) in zip(reference, index[1:], strict=True):
            assert rid == ref.id and int(length) == len(ref.sequence)
            assert "/" not in file and (outs[fmt] / file).parent == outs[fmt]
            (back,) = read(outs[fmt] / file)
            assert back.sequence == ref.sequence and back.pairs == ref.pairs, (fmt, rid)
        assert sniff_format(outs[fmt]) == ("bpseq_archive" if fmt == "bpseq" else "ct_folder")
    together = read_ct(outs["ct_file"])
    assert [(r.sequence, r.pairs) for r in together] == [(r.sequence, r.pairs) for r in reference]
    assert [(r.sequence, r.pairs) for r in iter_benchmark_records(outs["ct_file"])] == [
        (r.sequence, r.pairs) for r in reference]


def test_energies_are_viennas_eval_structure(folded):
    import RNA

    _, _, outs = folded
    lines = outs["dbn"].read_text().splitlines()
    energies = []
    for header, seq, struct in zip(lines[::3], lines[1::3], lines[2::3], strict=True):
        db, energy = struct.split(" ", 1)
        assert energy.startswith("(") and energy.endswith(")")
        expected = RNA.fold_compound(seq).eval_structure(db)
        assert float(energy.strip("()")) == pytest.approx(expected, abs=0.005), header
        energies.append(expected)
    index = [line.split("\t") for line in (outs["ct"] / "index.tsv").read_text().splitlines()[1:]]
    assert [float(e) for *_, e in index] == pytest.approx(energies, abs=0.005)
    first_ct = (outs["ct"] / index[0][1]).read_text().splitlines()[0]
    assert f"ENERGY = {energies[0]:.2f}" in first_ct


def test_bad_format_and_output_pairs_are_refused_before_folding(checkpoint, tmp_path, capsys):
    fasta = tmp_path / "in.fa"
    fasta.write_text(">x\nGGGGAAAACCCC\n")
    assert _fold(checkpoint, "--input", str(fasta), "--format", "ct") == 1
    assert "give --output" in capsys.readouterr().err
    assert _fold(checkpoint, "--input", str(fasta), "--format", "bpseq", "--output",
                 str(tmp_path / "x.bpseq")) == 1
    assert "one structure per file" in capsys.readouterr().err
    assert not (tmp_path / "x.bpseq").exists()


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", path
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_draw_writes_an_svg_and_a_dot_plot_per_sequence(checkpoint, tmp_path):
    import xml.etree.ElementTree as ET

    from genesis_rna.drawing import DOT_PLOT_PIXELS

    rng = random.Random(9)
    seqs = {"s/1": random_rna(rng, 60), "s 2": random_rna(rng, 90)}
    fasta = tmp_path / "in.fa"
    fasta.write_text("".join(f">{i}\n{s}\n" for i, s in seqs.items()))
    out, draw = tmp_path / "out.fa", tmp_path / "draw"
    assert _fold(checkpoint, "--input", str(fasta), "--output", str(out), "--draw", str(draw),
                 "--threshold", "0.005") == 0
    preds = {r.id: r for r in read_dot_bracket_fasta(out)}
    index = [line.split("\t") for line in (draw / "index.tsv").read_text().splitlines()]
    assert index[0] == ["id", "svg", "dotplot"] and [r[0] for r in index[1:]] == ["s/1", "s"]
    for rid, svg, png in index[1:]:
        root = ET.parse(draw / svg).getroot()
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        # ViennaRNA draws one line per base pair and the bases as text
        ns = {"s": "http://www.w3.org/2000/svg"}
        pairs = root.findall(".//s:line[@class='basepairs']", ns)
        letters = root.findall(".//s:text[@class='nucleotide']", ns)
        assert len(pairs) == len(preds[rid].pairs)
        assert "".join(t.text for t in letters) == preds[rid].sequence
        assert _png_size(draw / png) == (DOT_PLOT_PIXELS, DOT_PLOT_PIXELS)
    assert sorted(p.name for p in draw.iterdir()) == sorted(
        ["index.tsv", *(r[1] for r in index[1:]), *(r[2] for r in index[1:])])


def test_inputs_are_read_by_content_whatever_their_name(tmp_path):
    seq = "GGGGAAAACCCCAUGGCUAGC"
    db = "((((....)))).(....)."
    db = db + "." * (len(seq) - len(db))
    files = {
        "x.fas": f">a\n{seq}\n",
        "x.fna": f">a\n{seq}\n",
        "x.dbn": f">a\n{seq}\n{db} (-3.10)\n",
        "x.dot": f">a\n{seq}\n{db}\n",
        "x.db": f">a\n{seq}\n{db}\n",
        "x.txt": f">a\n{seq[:10]}\n{seq[10:]}\n{db}\n",
        "x.bpseq.txt": "\n".join(f"{k + 1} {b} 0" for k, b in enumerate(seq)) + "\n",
        "x.csv.txt": f"id,sequence,structure\na,{seq},{db}\n",
    }
    kinds = {}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        kinds[name] = sniff_format(tmp_path / name)
        records, rejected = read_inputs(tmp_path / name)
        assert [(r.sequence, rejected) for r in records] == [(seq, [])], name
    assert kinds == {"x.fas": "fasta", "x.fna": "fasta", "x.dbn": "dot_bracket_fasta",
                     "x.dot": "dot_bracket_fasta", "x.db": "dot_bracket_fasta",
                     "x.txt": "dot_bracket_fasta", "x.bpseq.txt": "bpseq", "x.csv.txt": "csv"}
    assert pairs_to_dot_bracket(next(iter_benchmark_records(tmp_path / "x.dbn")).pairs,
                                len(seq)) == db
