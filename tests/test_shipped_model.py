"""The shipped model: fp16 export of a trained checkpoint, predict without --checkpoint, the
model card's evaluation table."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest
import torch

from genesis_rna import shipped_model
from genesis_rna.checkpoint import load_checkpoint, load_model
from genesis_rna.inference import predict_structures
from genesis_rna.pair_metrics import pair_counts, prf
from genesis_rna.predict import main as predict_main
from genesis_rna.structures import read_dot_bracket_fasta
from tests.helpers import REPO, random_rna
from tests.test_evaluate import tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A trained tiny model's checkpoint with its weights spread by seeded noise: one epoch on
    32 sequences leaves every pair probability at the 1% prior (nothing to compare after
    rounding); the noise (and a bias off the prior) gives pair maps from ~0 to ~1, as a trained model has."""
    state = load_checkpoint(tiny_checkpoint(tmp_path_factory))
    gen = torch.Generator().manual_seed(0)
    for name, tensor in state["model"].items():
        if tensor.is_floating_point() and "rotary" not in name:
            tensor += 0.3 * torch.randn(tensor.shape, generator=gen)
    state["model"]["pair_head.out.bias"] += 4.0  # from the 1% prior to about even odds
    path = tmp_path_factory.mktemp("spread") / "model.pt"
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("shipped") / "genesis_rna.pt"
    done = shipped_model.export_model(checkpoint, out)
    return out, done


def test_export_is_half_precision_weights_only_and_smaller(checkpoint, exported):
    path, done = exported
    state = load_checkpoint(path)  # weights_only=True
    full = load_checkpoint(checkpoint)
    params = {n for n, _ in load_model(checkpoint)[0].named_parameters()}
    assert set(state["model"]) == set(full["model"])
    for name, tensor in state["model"].items():
        if name in params:
            assert tensor.dtype == torch.float16, name
            torch.testing.assert_close(tensor.float(), full["model"][name].float(),
                                       rtol=1e-3, atol=1e-4)
        else:  # buffers keep their dtype and values
            assert tensor.dtype == full["model"][name].dtype
            assert torch.equal(tensor, full["model"][name])
    # no training state travels; machine paths are cleared
    assert not {"optimizer", "scheduler", "ast", "rng"} & set(state)
    assert all(state["config"][k] is None for k in shipped_model.PATH_KEYS if k in state["config"])
    assert state["pair_threshold"] == full["pair_threshold"]
    assert state["export"]["precision"] == "fp16" and len(state["export"]["source_sha256"]) == 64
    assert done["bytes"] < checkpoint.stat().st_size
    assert done["parameters"] == sum(p.numel() for p in load_model(checkpoint)[0].parameters())


def test_exported_model_predicts_what_the_fp32_model_predicts(checkpoint, exported):
    rng = random.Random(3)
    seqs = [random_rna(rng, n) for n in (25, 40, 55, 62, 33, 48, 60, 20)]
    loaded = [load_model(path) for path in (checkpoint, exported[0])]
    assert all(next(m.parameters()).dtype == torch.float32 for m, *_ in loaded)  # cast back

    def predict(model, tok, dec, thr):
        return predict_structures(model, seqs, thr, tokenizer=tok, device="cpu",
                                  precision="fp32", min_sep=4, decoder=dec,
                                  keep_pair_probs=True, prob_floor=0.0, progress=False)

    full_preds, half_preds = (predict(m, tok, dec, 0.3) for m, tok, _, _, dec in loaded)
    same, counts = 0, []
    for full, half in zip(full_preds, half_preds, strict=True):
        pf, ph = full.pair_probs, half.pair_probs
        assert (pf[0] == ph[0]).all() and (pf[1] == ph[1]).all()
        assert abs(pf[2] - ph[2]).max() < 2e-2  # fp16 weights: probabilities within rounding
        same += sorted(full.pairs) == sorted(half.pairs)
        counts.append(pair_counts(half.pairs, full.pairs))
        assert sum(a != b for a, b in zip(full.elements, half.elements, strict=True)) <= 2
    # a pair whose probability sits within rounding of the threshold may flip, no more
    assert same >= len(seqs) - 1
    pooled = np.sum(counts, axis=0)
    assert pooled[3] >= 20 and prf(*pooled)[2] >= 0.95  # the fp32 model predicts pairs


def test_predict_without_checkpoint_uses_the_shipped_model(exported, tmp_path, monkeypatch):
    fasta = tmp_path / "in.fa"
    fasta.write_text(">a\nGGGGAAACCCCAUAUGGGAAACCC\n>b\nACGUACGUAGCUAGCUAGGAUCC\n")
    monkeypatch.setattr(shipped_model, "SHIPPED_MODEL", exported[0])
    out = tmp_path / "out.fa"
    assert predict_main(["--input", str(fasta), "--output", str(out), "--device", "cpu",
                         "--no-progress"]) == 0
    with_ckpt = tmp_path / "out2.fa"
    assert predict_main(["--checkpoint", str(exported[0]), "--input", str(fasta), "--output",
                         str(with_ckpt), "--device", "cpu", "--no-progress"]) == 0
    records = read_dot_bracket_fasta(out)
    assert [r.id for r in records] == ["a", "b"]
    assert out.read_text() == with_ckpt.read_text()


def test_predict_without_checkpoint_and_no_shipped_model_says_what_to_do(tmp_path, monkeypatch,
                                                                         capsys):
    fasta = tmp_path / "in.fa"
    fasta.write_text(">a\nGGGGAAACCCC\n")
    missing = tmp_path / "models" / "genesis_rna.pt"
    monkeypatch.setattr(shipped_model, "SHIPPED_MODEL", missing)
    assert predict_main(["--input", str(fasta), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert str(missing) in err and "--checkpoint" in err and "shipped_model export" in err


def test_export_refuses_a_training_checkpoint(checkpoint, tmp_path, capsys):
    state = load_checkpoint(checkpoint)
    del state["pair_threshold"]
    partial = tmp_path / "ckpt.pt"
    torch.save(state, partial)
    assert shipped_model.main(["export", "--checkpoint", str(partial), "--output",
                               str(tmp_path / "x.pt")]) == 1
    assert "pair_threshold" in capsys.readouterr().err and not (tmp_path / "x.pt").exists()


def test_evaluation_table_from_models_tsv(tmp_path, capsys):
    tsv = tmp_path / "models.tsv"
    pd.DataFrame([
        {"run": "finetune", "dataset": "archiveII", "n": 10, "model_f1": 0.61, "vienna_f1": 0.58,
         "vienna_mea_f1": 0.6, "model_minus_best_vienna": 0.01},
        {"run": "finetune", "dataset": "vl0", "n": 5, "model_f1": 0.5, "vienna_f1": 0.49,
         "vienna_mea_f1": None, "model_minus_best_vienna": 0.01},
        {"run": "train", "dataset": "vl0", "n": 5, "model_f1": 0.4, "vienna_f1": 0.49,
         "vienna_mea_f1": 0.52, "model_minus_best_vienna": -0.12},
    ]).to_csv(tsv, sep="\t", index=False)
    table = shipped_model.evaluation_table(tsv, "finetune").splitlines()
    assert table[2] == "| archiveII | 10 | 0.610 | 0.580 | 0.600 | 0.010 |"
    assert table[3] == "| vl0 | 5 | 0.500 | 0.490 | - | 0.010 |" and len(table) == 4
    assert shipped_model.main(["table", "--models_tsv", str(tsv), "--run", "scratch"]) == 1
    assert "'scratch'" in capsys.readouterr().err


def test_model_card_template_names_what_a_card_must_say():
    text = shipped_model.MODEL_CARD_TEMPLATE.read_text()
    for needed in ("{{EVALUATION_TABLE}}", "decontaminat", "ViennaRNA MFE", "MEA",
                   "python -m genesis_rna.shipped_model export", "budget"):
        assert needed in text, needed
    assert shipped_model.SHIPPED_DIR == REPO / "resources" / "models"
