"""Held-out evaluation end to end on a tiny trained model and tiny benchmarks."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import RNA

from genesis_rna import thermo
from genesis_rna.errors import ConfigError, InputFileError
from genesis_rna.eval_metrics import aggregate
from genesis_rna.evaluate import evaluate, load_benchmark
from genesis_rna.evaluate import main as evaluate_main
from genesis_rna.structures import parse_dot_bracket
from tests.helpers import random_rna, shared_data
from tests.train_fixtures import TINY_ARGS, make_splits, run_cli


def tiny_checkpoint(factory: pytest.TempPathFactory) -> Path:
    """Train (once per session, shared by the test modules) a tiny model; its max_len is 64."""
    root = factory.getbasetemp() / "tiny_trained_model"
    model = root / "out" / "model.pt"
    if not model.exists():
        data = make_splits(root / "splits", n_train=32, n_val=8)
        r = run_cli(["--data_path", str(data), "--output_dir", str(root / "out"),
                     "--num_epochs", "1", *TINY_ARGS])
        assert r.returncode == 0, r.stderr
    return model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory)


def write_bpseq(path: Path, seq: str, pairs: list[tuple[int, int]]) -> None:
    partner = [0] * len(seq)
    for i, j in pairs:
        partner[i], partner[j] = j + 1, i + 1
    path.write_text("".join(f"{k + 1} {b} {p}\n" for k, (b, p) in enumerate(zip(seq, partner,
                                                                            strict=True))))


@pytest.fixture(scope="module")
def benchmarks(tmp_path_factory) -> dict[str, Path]:
    """A bpseq folder (families 5s and tRNA; structures are ViennaRNA's own MFE, so the
    baseline must score 1) with one 150-nt sequence beyond the model's 62-nt window, and a
    CSV with one unreadable sequence and one with an ambiguity code."""
    root = tmp_path_factory.mktemp("bench")
    rng = random.Random(7)
    folder = root / "bpseq"
    folder.mkdir()
    for name, n in (("5s_a", 40), ("5s_b", 55), ("tRNA_c", 50), ("tRNA_long", 150)):
        seq = random_rna(rng, n)
        write_bpseq(folder / f"{name}.bpseq", seq, parse_dot_bracket(RNA.fold(seq)[0]))
    rows = []
    for k, n in enumerate((30, 45, 35, 25)):
        seq = random_rna(rng, n)
        db = RNA.fold(seq)[0]
        if k == 1:
            seq = seq[:10] + "X" + seq[11:]  # not a nucleotide: listed as not evaluated
        if k == 2:
            seq = seq[:5] + "R" + seq[6:]  # ambiguity code: read as N
        pairs = [[i + 1, j + 1] for i, j in parse_dot_bracket(db)]
        rows.append({"id": f"csv{k}", "sequence": seq, "structure": db,
                     "base_pairs": json.dumps(pairs)})
    csv_path = root / "bench.csv"
    with open(csv_path, "w", newline="") as fh:
        w = csv.DictWriter(fh, ["id", "sequence", "structure", "base_pairs"])
        w.writeheader()
        w.writerows(rows)
    return {"arch": folder, "small": csv_path}


@pytest.fixture(scope="module")
def evaluated(checkpoint, benchmarks, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    test_split = checkpoint.parents[1] / "splits" / "test.parquet"
    summary = evaluate(checkpoint, test_split, benchmarks, out, device="cpu", threads=1,
                       progress=False)
    return out, summary, test_split


def test_outputs_present_and_consistent(evaluated, benchmarks):
    out, summary, _ = evaluated
    names = ["test", "arch", "small"]
    for f in ("summary.json", "summary.tsv", "not_evaluated.tsv"):
        assert (out / f).stat().st_size > 0
    for name in names:
        assert (out / f"per_sequence_{name}.tsv").stat().st_size > 0, name
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left
    loaded = json.loads((out / "summary.json").read_text())
    assert loaded == summary
    assert list(loaded["datasets"]) == names  # order kept (not sorted) in the JSON
    assert list(loaded["datasets"]["arch"]["per_length_bin"]) == ["<=100", "101-200"]

    skipped = pd.read_csv(out / "not_evaluated.tsv", sep="\t")
    for name in names:
        frame = pd.read_csv(out / f"per_sequence_{name}.tsv", sep="\t", keep_default_na=False)
        block = summary["datasets"][name]
        n_skipped = int((skipped["dataset"] == name).sum())
        assert len(frame) == block["n_evaluated"] == block["n_records"] - n_skipped
        assert block["n_not_evaluated"] == n_skipped
        # the summary is the aggregate of the per-sequence rows
        for method in ("model", "vienna", "vienna_mea"):
            # (the TSV holds 6 significant digits)
            for key in ("f1", "mcc", "f1_shift"):
                assert block["all"][method][key] == pytest.approx(
                    frame[f"{method}_{key}"].mean(), rel=1e-5, abs=1e-6)
            tp, n_pred = frame[f"{method}_tp"].sum(), frame[f"{method}_n_pred_pairs"].sum()
            n_true = frame["n_true_pairs"].sum()
            if n_pred and n_true:
                p, r = tp / n_pred, tp / n_true
                assert block["all"][method]["pooled_f1"] == pytest.approx(
                    2 * p * r / (p + r) if p + r else 0.0)
        assert set(block["per_length_bin"]) == set(frame["length_bin"])
    assert skipped.to_dict("records") == [
        {"dataset": "small", "id": "csv1", "length": 45,
         "reason": "sequence cannot be read by the model: illegal character 'X' at position 10"}]
    rows = pd.read_csv(out / "summary.tsv", sep="\t")
    assert {"model_f1", "vienna_f1", "model_pooled_f1", "vienna_mcc"} <= set(rows.columns)
    assert set(rows["breakdown"]) == {"all", "family", "length_bin"}


def test_benchmark_scores_and_families(evaluated):
    out, summary, _ = evaluated
    arch = summary["datasets"]["arch"]
    assert set(arch["per_family"]) == {"5s", "tRNA"}
    assert arch["per_family"]["5s"]["n"] == 2 and arch["per_family"]["tRNA"]["n"] == 2
    # ViennaRNA MFE scored against its own structures: perfect, as a check of the pipeline
    assert arch["all"]["vienna"]["f1"] == 1.0 and arch["all"]["vienna"]["element"]["accuracy"] == 1
    frame = pd.read_csv(out / "per_sequence_arch.tsv", sep="\t")
    long = frame.set_index("id").loc["tRNA_long"]
    assert bool(long["windowed"]) and long["length"] == 150 and long["length_bin"] == "101-200"
    assert arch["n_windowed"] == 1 and frame["windowed"].sum() == 1
    assert 0.0 <= arch["all"]["model"]["f1"] <= 1.0
    small = summary["datasets"]["small"]
    assert small["per_family"] == {} and small["n_evaluated"] == 3
    maj = arch["all"]["majority_class"]
    assert maj["class"] in "EHSBIM" and 0 < maj["accuracy"] < 1


def test_vienna_mea_is_the_nested_mea_of_its_pair_probabilities(evaluated, benchmarks):
    """The MEA baseline's pairs, re-derived from ViennaRNA's own bpp() for each sequence."""
    from genesis_rna.decoding import nested_pairs

    out, summary, _ = evaluated
    assert summary["vienna_mea_threshold"] == 0.5 and "gamma = 1" in summary["baseline"]
    frame = pd.read_csv(out / "per_sequence_arch.tsv", sep="\t").set_index("id")
    records, _ = load_benchmark("arch", benchmarks["arch"])
    for r in records:
        fc = RNA.fold_compound(r.sequence)
        fc.mfe()
        fc.pf()
        bpp = np.array(fc.bpp())
        i, j = np.nonzero(np.triu(bpp[1:, 1:] >= 1e-3, k=4))
        mea = nested_pairs(i, j, bpp[i + 1, j + 1], 0.5)
        assert frame.loc[r.id, "vienna_mea_n_pred_pairs"] == len(mea)


def test_test_split_has_mlm_and_baselines(evaluated):
    _, summary, _ = evaluated
    test = summary["datasets"]["test"]
    mlm = test["mlm"]
    assert 0 <= mlm["model"]["accuracy"] <= 1 and mlm["model"]["perplexity"] > 1
    assert mlm["model"]["n_masked"] == mlm["unigram"]["n_masked"] > 0
    assert 1 < mlm["unigram"]["perplexity"] <= 5  # at most the 5 nucleotide tokens
    assert any("ViennaRNA" in s for s in test["label_source"]) and "by construction" in test["note"]
    # the test labels are ViennaRNA folds: the baseline reproduces them exactly
    assert test["all"]["vienna"]["f1"] == 1.0


def test_mlm_masks_are_fixed(evaluated, checkpoint, tmp_path):
    _, summary, test_split = evaluated
    again = evaluate(checkpoint, test_split, None, tmp_path, device="cpu", baseline=False,
                     progress=False)
    assert again["datasets"]["test"]["mlm"] == summary["datasets"]["test"]["mlm"]
    assert "vienna" not in again["datasets"]["test"]["all"]
    header = (tmp_path / "per_sequence_test.tsv").read_text().splitlines()[0]
    assert "vienna" not in header


def test_cli_caps_and_lists_what_it_leaves_out(checkpoint, benchmarks, tmp_path, capsys,
                                               monkeypatch):
    monkeypatch.setattr(thermo, "PARALLEL_MIN_SECONDS", 0.0)  # fold in 2 processes
    out = tmp_path / "cli"
    cache = tmp_path / "vienna.parquet"
    args = ["--checkpoint", str(checkpoint), "--benchmark", f"arch={benchmarks['arch']}",
            "--out_dir", str(out), "--max_length", "100", "--threads", "2",
            "--baseline_cache", str(cache), "--no-progress"]
    assert evaluate_main(args) == 0
    assert "arch" in capsys.readouterr().out
    # the CLI also draws the plots (genesis_rna.eval_plots) unless --no-plots
    assert (out / "f1_per_family_arch.png").read_bytes()[:4] == b"\x89PNG"
    skipped = pd.read_csv(out / "not_evaluated.tsv", sep="\t")
    assert skipped[["id", "reason"]].values.tolist() == [["tRNA_long", "longer than max_length 100"]]
    first = json.loads((out / "summary.json").read_text())
    assert first["datasets"]["arch"]["n_evaluated"] == 3 and cache.exists()
    assert first["thermo_features_computed"] == 3 and first["vienna_mea_threshold"] == 0.5
    # a rerun reads the ViennaRNA features from the cache and gets the same scores
    assert evaluate_main(args + ["--max_sequences", "2", "--vienna_mea_threshold", "0.3"]) == 0
    second = json.loads((out / "summary.json").read_text())
    assert second["thermo_features_stored"] == 3 and second["thermo_features_computed"] == 0
    assert second["vienna_mea_threshold"] == 0.3 and "command line" in second["baseline"]
    assert second["datasets"]["arch"]["n_evaluated"] == 2
    assert second["datasets"]["arch"]["all"]["vienna"]["f1"] == 1.0
    reasons = pd.read_csv(out / "not_evaluated.tsv", sep="\t")["reason"].tolist()
    assert reasons.count("beyond max_sequences 2") == 1 and len(reasons) == 2


def test_bad_arguments(checkpoint, benchmarks, tmp_path, capsys):
    with pytest.raises(ConfigError, match="reserved"):
        evaluate(checkpoint, None, {"test": benchmarks["small"]}, tmp_path)
    with pytest.raises(ConfigError, match="nothing to evaluate"):
        evaluate(checkpoint, None, {}, tmp_path)
    with pytest.raises(ConfigError, match="window"):
        evaluate(checkpoint, None, benchmarks, tmp_path, window=500)
    with pytest.raises(InputFileError, match="not found"):
        evaluate(tmp_path / "none.pt", None, benchmarks, tmp_path)
    bad = tmp_path / "bad.bpseq"
    bad.write_text("1 A 0\n3 C 0\n")
    assert evaluate_main(["--checkpoint", str(checkpoint), "--benchmark", f"b={bad}",
                          "--out_dir", str(tmp_path / "o"), "--no-progress"]) == 1
    assert f"{bad}:2:" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        evaluate_main(["--checkpoint", str(checkpoint), "--benchmark", "noequals",
                       "--out_dir", str(tmp_path)])


@pytest.mark.realdata
def test_archive_ii_subset_vienna_matches_reference():
    """200 ArchiveII sequences <= 200 nt: the ViennaRNA baseline, scored by this module,
    lands near the reference per-sequence F1 measured on the whole set (0.58)."""
    from genesis_rna.evaluate import score_dataset, vienna_baselines
    from genesis_rna.inference import Prediction
    from genesis_rna.thermo import features_for

    path = shared_data("archiveII_bpseq.tar.gz")
    records, _ = load_benchmark("archiveII", path, max_length=200)
    records = [records[k] for k in np.random.default_rng(0).choice(len(records), 200, False)]
    feats = features_for([r.sequence for r in records], threads=2)
    dummy = [Prediction([], "E" * len(r.sequence), False, 1) for r in records]
    frame, block = score_dataset(records, dummy, vienna_baselines(records, feats, 0.5))
    f1 = block["all"]["vienna"]["f1"]
    assert 0.5 < f1 < 0.75, f1
    assert block["all"]["vienna"]["f1_shift"] >= f1
    assert block["all"]["vienna"] == {**aggregate([]), **block["all"]["vienna"]}
    assert len(frame) == 200 and set(block["per_family"]) <= {
        "5s", "srp", "tRNA", "tmRNA", "RNaseP", "grp1", "telomerase", "16s", "23s", "grp2"}
