import json

import pandas as pd
import pytest

from genesis_rna.compare_models import main, write_comparison
from genesis_rna.errors import InputFileError


def _summary(path, f1_model, f1_vienna, decoder="mea"):
    block = {"all": {"n": 10,
                     "model": {"f1": f1_model, "f1_shift": f1_model + 0.01, "precision": 0.5,
                               "recall": 0.4, "element": {"accuracy": 0.7},
                               "element_from_pairs": {"accuracy": 0.6}},
                     "vienna": {"f1": f1_vienna, "element": {"accuracy": 0.8}},
                     "vienna_mea": {"f1": f1_vienna + 0.05}}}
    path.write_text(json.dumps({"pair_decoder": decoder, "pair_threshold": 0.3,
                                "datasets": {"test": {**block, "mlm": {"model": {"accuracy": 0.4}}},
                                             "vl0": block}}))
    return path


def test_models_side_by_side(tmp_path):
    a = _summary(tmp_path / "a.json", 0.4, 0.5)
    b = _summary(tmp_path / "b.json", 0.6, 0.5)
    frame = write_comparison({"train": a, "finetune": b}, tmp_path / "models.tsv")
    back = pd.read_csv(tmp_path / "models.tsv", sep="\t")
    assert list(back["run"]) == ["train", "train", "finetune", "finetune"]
    assert list(back["dataset"]) == ["test", "vl0", "test", "vl0"]
    assert back["model_minus_vienna"].round(4).tolist() == [-0.1, -0.1, 0.1, 0.1]
    # against the better ViennaRNA mode (here its MEA structure)
    assert back["vienna_mea_f1"].round(4).tolist() == [0.55] * 4
    assert back["model_minus_best_vienna"].round(4).tolist() == [-0.15, -0.15, 0.05, 0.05]
    assert back.loc[0, "mlm_accuracy"] == 0.4 and pd.isna(back.loc[1, "mlm_accuracy"])
    assert (back["model_pairs_element_accuracy"] == 0.6).all()
    assert len(frame) == 4
    assert list(back["best_vienna"]) == ["vienna_mea"] * 4


def test_best_vienna_includes_further_parameter_sets(tmp_path):
    a = _summary(tmp_path / "a.json", 0.6, 0.5)
    summary = json.loads(a.read_text())
    summary["datasets"]["vl0"] = json.loads(json.dumps(summary["datasets"]["vl0"]))
    summary["datasets"]["vl0"]["all"]["vienna_mea_langdon2018"] = {"f1": 0.7}
    a.write_text(json.dumps(summary))
    back = write_comparison({"finetune": a}, tmp_path / "models.tsv").set_index("dataset")
    assert back.loc["vl0", "best_vienna"] == "vienna_mea_langdon2018"
    assert back.loc["vl0", "model_minus_best_vienna"] == pytest.approx(-0.1)
    assert back.loc["test", "best_vienna"] == "vienna_mea"


def test_bad_summary_is_named(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(InputFileError, match="bad.json"):
        write_comparison({"x": bad}, tmp_path / "o.tsv")
    assert main(["--summary", f"x={bad}", "--out", str(tmp_path / "o.tsv")]) == 1
    assert "error:" in capsys.readouterr().err
