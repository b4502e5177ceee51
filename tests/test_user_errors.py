"""Errors and help a new user meets (issue 14, items 3, 5 and 9): a file that is not a model,
a workflow config typo, trainer --help, and config files written for the replaced trainer."""

from __future__ import annotations

import pickle
import re
import subprocess
import sys

import jsonschema
import pytest
import torch
import torch.nn.functional as F
import yaml

from genesis_rna.checkpoint import load_checkpoint, load_model, save_checkpoint
from genesis_rna.config_check import config_error_message, describe_validation_error
from genesis_rna.data import IGNORE_INDEX
from genesis_rna.errors import ConfigError, InputFileError
from genesis_rna.evaluate import main as evaluate_main
from genesis_rna.losses import BinaryFocalLoss, pair_loss_mask
from genesis_rna.predict import main as predict_main
from genesis_rna.train_config import (
    ALIASES,
    CHOICES,
    TrainConfig,
    build_parser,
    config_from_args,
    load_yaml_config,
)
from tests.train_fixtures import REPO, TINY_ARGS, make_splits, run_cli

SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
DEMO_CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())

# -- item 3a: a file that is not a model ----------------------------------------------------


class _Payload:
    pass


def _not_a_model(tmp_path):
    """name -> a file that torch cannot load as plain data."""
    good = tmp_path / "good.pt"
    torch.save({"w": torch.zeros(4)}, good)
    data = good.read_bytes()
    files = {
        "text": b"id\tsequence\nx\tACGU\n",
        "empty": b"",
        "truncated": data[: len(data) // 2],
        "random": bytes(range(256)) * 4,
        "pickle": pickle.dumps({"a": 1}),
    }
    out = {}
    for name, content in files.items():
        out[name] = tmp_path / f"{name}.pt"
        out[name].write_bytes(content)
    out["object"] = tmp_path / "object.pt"
    torch.save({"x": _Payload()}, out["object"])
    return out


def test_a_file_that_is_not_a_checkpoint_is_named_without_unsafe_advice(tmp_path):
    for name, path in _not_a_model(tmp_path).items():
        with pytest.raises(InputFileError) as info:
            load_checkpoint(path)
        msg = str(info.value)
        assert msg.startswith(f"{path}: is not a Genesis RNA model checkpoint ("), (name, msg)
        assert msg.endswith("it must be a model.pt written by genesis_rna.train_pretrain"), msg
        assert "weights_only" not in msg and "\n" not in msg, msg
    with pytest.raises(InputFileError, match=r"pickled Python object \(.*_Payload\)"):
        load_checkpoint(tmp_path / "object.pt")


def test_load_model_names_what_the_file_lacks(tmp_path):
    plain = tmp_path / "plain.pt"
    torch.save({"a": 1}, plain)
    with pytest.raises(InputFileError, match=r"not a Genesis RNA model checkpoint \(no "
                                             r"'model_config' entry\)"):
        load_model(plain)
    step = tmp_path / "ckpt_step000000010.pt"  # a training checkpoint: no tuned threshold
    save_checkpoint(step, {"model_config": {}, "model": {}, "tokenizer": {}, "config": {}})
    with pytest.raises(InputFileError, match="a training checkpoint without the tuned pair"):
        load_model(step)
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(2), tensor)
    with pytest.raises(InputFileError, match=r"\(it holds a Tensor\)"):
        load_model(tensor)


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and "weights_only" not in err, err
    return lines[0]


def test_predict_and_evaluate_print_one_line_for_a_non_model(tmp_path, capsys):
    bad = _not_a_model(tmp_path)["text"]
    fasta = tmp_path / "in.fa"
    fasta.write_text(">a\nACGUACGUACGU\n")
    assert predict_main(["--checkpoint", str(bad), "--input", str(fasta), "--device", "cpu"]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "not a Genesis RNA model checkpoint" in line and str(bad) in line
    assert evaluate_main(["--checkpoint", str(bad), "--test", str(tmp_path / "t.parquet"),
                          "--out_dir", str(tmp_path / "ev"), "--device", "cpu"]) == 1
    assert "not a Genesis RNA model checkpoint" in _one_error_line(capsys.readouterr().err)


def test_trainer_init_from_a_non_model_is_one_error_line(tmp_path):
    data = make_splits(tmp_path / "d", n_train=8, n_val=4)
    bad = _not_a_model(tmp_path)["random"]
    r = run_cli(["--data_path", str(data), "--output_dir", str(tmp_path / "o"), "--num_epochs",
                 "1", *TINY_ARGS, "--init_from", str(bad)])
    assert r.returncode == 1
    assert "not a Genesis RNA model" in _one_error_line(r.stderr)


# -- item 3b/3c: workflow config errors ------------------------------------------------------


def _schema_error(config: dict) -> str:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    assert error is not None
    return describe_validation_error(error)


def _demo_with(section: str, **values) -> dict:
    return {**DEMO_CONFIG, section: {**DEMO_CONFIG[section], **values}}


def test_config_typo_is_one_line_with_the_valid_keys():
    assert _schema_error(_demo_with("annotate", shardz=2)) == (
        "config error: unknown key 'annotate.shardz'; valid keys under 'annotate': "
        "shards, threads")
    assert _schema_error({**DEMO_CONFIG, "trian": {}}) == (
        "config error: unknown key 'trian'; valid keys: " + ", ".join(SCHEMA["properties"]))
    assert _schema_error(_demo_with("annotate", shards="two")) == (
        "config error: 'annotate.shards' = 'two': 'two' is not of type 'integer'")
    nested = {**DEMO_CONFIG, "corpus": {"rnacentral": {"release": 25, "fiel": "x"}}}
    assert _schema_error(nested).startswith(
        "config error: unknown key 'corpus.rnacentral.fiel'; valid keys under "
        "'corpus.rnacentral': release, file")


def test_config_error_message_finds_the_schema_error_behind_a_wrapper():
    validator = jsonschema.Draft202012Validator(SCHEMA)
    try:
        try:
            validator.validate(_demo_with("split", val_fraction="a lot"))
        except jsonschema.ValidationError as exc:
            raise RuntimeError("Error validating config file.\n" + str(exc)) from None
    except RuntimeError as wrapped:
        assert config_error_message(wrapped) == str(wrapped)  # "from None": nothing behind it
    try:
        try:
            validator.validate(_demo_with("split", val_fraction="a lot"))
        except jsonschema.ValidationError as exc:
            raise RuntimeError("Error validating config file.") from exc
    except RuntimeError as wrapped:
        assert config_error_message(wrapped) == (
            "config error: 'split.val_fraction' = 'a lot': 'a lot' is not of type 'number'")


# validation keywords of the schema's draft, plus the annotations it may carry
_KEYWORDS = set(jsonschema.Draft202012Validator.VALIDATORS) | {
    "$schema", "$id", "$defs", "$comment", "title", "description", "default", "examples",
    "deprecated", "readOnly", "writeOnly"}


def test_schema_holds_only_schema_keywords():
    """A description split across lines once became a key ('e.g. 25: null')."""
    def walk(node, where):
        if isinstance(node, dict):
            for key, value in node.items():
                if where and where[-1] in ("properties", "patternProperties"):
                    walk(value, [*where, key])
                    continue
                assert key in _KEYWORDS, f"{'.'.join(map(str, where))}: stray key {key!r}"
                walk(value, [*where, key])
        elif isinstance(node, list):
            for k, value in enumerate(node):
                walk(value, [*where, k])
    walk(SCHEMA, [])
    release = SCHEMA["properties"]["corpus"]["properties"]["rnacentral"]["properties"]["release"]
    assert "e.g. 25" in release["description"]


@pytest.mark.slow
def test_workflow_config_typo_prints_one_short_line(tmp_path):
    from tests.workflow_utils import copy_workflow, snakemake, write_config

    copy_workflow(tmp_path)
    write_config(tmp_path, {"annotate": {"shardz": 2}})
    proc = snakemake(tmp_path, "-n", "--configfile=test_config.yaml", check=False)
    out = proc.stderr + proc.stdout
    assert proc.returncode != 0
    assert ("config error: unknown key 'annotate.shardz'; valid keys under 'annotate': "
            "shards, threads") in out
    assert "Failed validating" not in out and "additionalProperties" not in out, out
    assert len([line for line in out.splitlines() if line.strip()]) < 15, out
    assert not (tmp_path / "results").exists()


# -- item 5: trainer --help ------------------------------------------------------------------


def test_every_trainer_flag_has_a_description_choices_and_default():
    r = subprocess.run([sys.executable, "-m", "genesis_rna.train_pretrain", "--help"], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    parser = build_parser()
    defaults = {f.name: f.default for f in TrainConfig.__dataclass_fields__.values()}
    for action in parser._actions:
        if action.dest == "help":
            continue
        flag = action.option_strings[0]
        assert flag in r.stdout
        text = re.sub(r"\s*\([^()]*\)$", "", action.help or "")  # without "(choices...; default)"
        assert len(text.split()) >= 2, f"{flag} has no description: {action.help!r}"
        if action.dest in CHOICES:
            assert "choices: " + ", ".join(CHOICES[action.dest]) in action.help, flag
        if defaults.get(action.dest) is not None:
            assert f"default: {defaults[action.dest]}" in action.help, flag
    for key, values in CHOICES.items():  # the listed choices are the accepted ones
        for value in values:
            extra = {"mixed_precision": "bf16"} if key == "device" else {}
            TrainConfig(**{key: value, **extra})


# -- item 9: the replaced trainer's config files ---------------------------------------------

OLD_PROJECT_CONFIG = """\
lr_scheduler_type: cosine
min_lr_ratio: 0.1
use_focal_loss_for_pairs: true
focal_alpha: 0.75
focal_gamma: 2.0
mlm_loss_weight: 1.0
structure_loss_weight: 0.8
pair_loss_weight: 1.5
"""


def _cfg(tmp_path, text: str, *flags: str) -> TrainConfig:
    path = tmp_path / "old.yaml"
    path.write_text(text)
    return config_from_args(["--config", str(path), "--data_path", "x", "--output_dir", "y",
                             *flags])


def test_old_trainer_config_file_resolves_to_canonical_keys(tmp_path):
    cfg = _cfg(tmp_path, OLD_PROJECT_CONFIG.replace("structure_loss_weight: 0.8",
                                                    "structure_loss_weight: 0.6")
               .replace("lr_scheduler_type: cosine", "lr_scheduler_type: linear"))
    assert (cfg.scheduler, cfg.min_lr_ratio, cfg.use_focal_loss_for_pairs) == ("linear", 0.1, True)
    assert (cfg.focal_alpha, cfg.focal_gamma) == (0.75, 2.0)
    assert (cfg.loss_weight_mlm, cfg.loss_weight_struct, cfg.loss_weight_pair) == (1.0, 0.6, 1.5)
    written = cfg.to_dict()  # what run_config.yaml and model.pt record
    assert not set(ALIASES) & set(written)
    assert written["scheduler"] == "linear" and written["loss_weight_struct"] == 0.6
    off = _cfg(tmp_path, OLD_PROJECT_CONFIG.replace("pairs: true", "pairs: false"))
    assert off.use_focal_loss_for_pairs is False
    # flags beat the file, under either spelling
    cfg = _cfg(tmp_path, OLD_PROJECT_CONFIG, "--pair_loss_weight", "2", "--scheduler", "constant")
    assert (cfg.loss_weight_pair, cfg.scheduler) == (2.0, "constant")


def test_both_spellings_of_a_key_are_refused_naming_both(tmp_path):
    with pytest.raises(ConfigError, match=r"'loss_weight_mlm'.*as 'loss_weight_mlm' and as its "
                                          r"alias 'mlm_loss_weight'"):
        _cfg(tmp_path, OLD_PROJECT_CONFIG + "loss_weight_mlm: 2.0\n")
    with pytest.raises(ConfigError, match=r"--scheduler and as its alias --lr_scheduler_type"):
        _cfg(tmp_path, "", "--scheduler", "linear", "--lr_scheduler_type", "cosine")
    # a bad value is named as the file spells the key
    path = tmp_path / "bad.yaml"
    path.write_text("structure_loss_weight: heavy\n")
    with pytest.raises(ConfigError, match=r"config key 'structure_loss_weight': expected float"):
        load_yaml_config(path)


def test_t4_config_uses_the_old_names_and_loads():
    path = REPO / "config" / "train_t4_optimized.yaml"
    keys = set(yaml.safe_load(path.read_text()))
    assert {"lr_scheduler_type", "mlm_loss_weight", "structure_loss_weight", "pair_loss_weight",
            "use_focal_loss_for_pairs"} <= keys
    assert not keys & {"scheduler", "loss_weight_mlm", "loss_weight_struct", "loss_weight_pair"}
    cfg = config_from_args(["--config", str(path), "--data_path", "x", "--output_dir", "y"])
    assert (cfg.scheduler, cfg.loss_weight_pair, cfg.mixed_precision) == ("cosine", 1.5, "fp16")


def _pair_batch():
    torch.manual_seed(3)
    b, t = 2, 12
    logits = torch.randn(b, t, t) * 2
    target = torch.zeros(b, t, t, dtype=torch.bool)
    target[0, 1, 7] = target[0, 7, 1] = target[0, 2, 9] = target[0, 9, 2] = True
    target[1, 1, 6] = target[1, 6, 1] = True
    mask = torch.zeros(b, t, dtype=torch.bool)
    mask[0, 1:11] = True  # 10 nucleotides
    mask[1, 1:8] = True  # 7 nucleotides
    return logits, target, mask


def test_plain_bce_pair_loss_is_bce_summed_over_valid_cells_per_length():
    logits, target, mask = _pair_batch()
    valid = pair_loss_mask(mask, 4)
    bce = F.binary_cross_entropy_with_logits(logits, target.float(), reduction="none")
    expected = (bce * valid).sum(dim=(1, 2)) / mask.sum(1)
    got, count = BinaryFocalLoss(0.75, 2.0, 4, focal=False).per_sample(logits, target, mask)
    assert torch.allclose(got, expected, rtol=1e-6)
    assert torch.equal(count, valid.sum(dim=(1, 2)))
    focal, _ = BinaryFocalLoss(0.75, 2.0, 4).per_sample(logits, target, mask)
    assert not torch.allclose(focal, expected)  # the switch does change the loss


def test_use_focal_loss_for_pairs_false_reaches_the_trainers_loss(tmp_path):
    """The trainer builds its loss from the config: the switch turns its pair term into BCE."""
    from genesis_rna.train_pretrain import Trainer

    data = make_splits(tmp_path / "d", n_train=8, n_val=4)
    threads = torch.get_num_threads()
    try:
        trainer = Trainer(config_from_args([
            "--data_path", str(data), "--output_dir", str(tmp_path / "o"), *TINY_ARGS,
            "--no-use_focal_loss_for_pairs"]))
    finally:
        torch.set_num_threads(threads)
    logits, target, mask = _pair_batch()
    b, t = mask.shape
    rows, i, j = torch.nonzero(torch.triu(target)).unbind(1)
    batch = {"tokens": torch.zeros(b, t, dtype=torch.long),
             "pair_index": torch.stack([rows, i, j], 1), "nucleotide_mask": mask,
             "mlm_labels": torch.full((b, t), IGNORE_INDEX),
             "struct_labels": torch.full((b, t), IGNORE_INDEX)}
    out = {"mlm_logits": torch.zeros(b, t, 9), "struct_logits": torch.zeros(b, t, 6),
           "pair_logits": logits}
    loss = trainer.criterion(out, batch)
    valid = pair_loss_mask(mask, trainer.cfg.pair_min_sep)
    bce = F.binary_cross_entropy_with_logits(logits, target.float(), reduction="none")
    expected = ((bce * valid).sum(dim=(1, 2)) / mask.sum(1)).mean()
    assert float(loss.value("pair")) == pytest.approx(float(expected), rel=1e-6)
