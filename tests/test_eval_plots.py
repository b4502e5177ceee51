"""Evaluation plots are drawn from the files the evaluate stage wrote, never by the stage."""

from __future__ import annotations

import random
import shutil

import pytest
import RNA

from genesis_rna.errors import InputFileError
from genesis_rna.eval_plots import main as eval_plots_main
from genesis_rna.eval_plots import plot_evaluation
from genesis_rna.evaluate import evaluate
from genesis_rna.structures import parse_dot_bracket
from tests.helpers import random_rna
from tests.test_evaluate import tiny_checkpoint, write_bpseq


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory):
    """An evaluation folder of the tiny model: the test split and a two-family bpseq set."""
    checkpoint = tiny_checkpoint(tmp_path_factory)
    root = tmp_path_factory.mktemp("eval_plots")
    folder = root / "bpseq"
    folder.mkdir()
    rng = random.Random(11)
    for name, n in (("5s_a", 40), ("5s_b", 55), ("tRNA_c", 50)):
        seq = random_rna(rng, n)
        write_bpseq(folder / f"{name}.bpseq", seq, parse_dot_bracket(RNA.fold(seq)[0]))
    out = root / "evaluation"
    summary = evaluate(checkpoint, checkpoint.parents[1] / "splits" / "test.parquet",
                       {"arch": folder}, out, device="cpu", threads=1, progress=False)
    return out, summary


def test_plots_are_drawn_from_the_written_files(evaluation):
    out, summary = evaluation
    assert not list(out.glob("*.png"))  # the stage itself draws nothing
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    written = plot_evaluation(out)
    assert [p.name for p in written] == [f"{kind}_{name}.png" for name in ("test", "arch")
                                         for kind in ("f1_per_family", "f1_vs_length",
                                                      "gallery")]
    for path in written:
        assert path.parent == out and path.read_bytes()[:4] == b"\x89PNG", path
    # the evaluation's own files are read, not rewritten, and no temp files are left
    assert {name: (out / name).read_bytes() for name in before} == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    # the test split's labels are ViennaRNA folds (the plots say so); the benchmark's are not
    assert summary["datasets"]["test"]["labels_from_baseline"] is True
    assert summary["datasets"]["arch"]["labels_from_baseline"] is False


def test_missing_or_bad_inputs_name_the_file(evaluation, tmp_path, capsys):
    out, _ = evaluation
    with pytest.raises(InputFileError, match="summary.json"):
        plot_evaluation(tmp_path)
    partial = tmp_path / "partial"
    shutil.copytree(out, partial)
    (partial / "per_sequence_arch.tsv").unlink()
    with pytest.raises(InputFileError, match="per_sequence_arch.tsv"):
        plot_evaluation(partial)
    (partial / "summary.json").write_text("{not json")
    assert eval_plots_main(["--eval_dir", str(partial)]) == 1
    assert "summary.json" in capsys.readouterr().err
