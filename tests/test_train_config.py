"""TrainConfig nests the ModelConfig: flat model keys (as always), a ``model:`` mapping, flags
for every model field, and configs / checkpoints written before the nesting."""

from __future__ import annotations

import pytest
import torch
import yaml

from genesis_rna.checkpoint import load_checkpoint, save_checkpoint
from genesis_rna.errors import ConfigError
from genesis_rna.inference import load_for_inference, predict_structures
from genesis_rna.model import MODEL_SIZES, GenesisRNA, model_config_for
from genesis_rna.train_config import (
    TrainConfig,
    canonical_config,
    config_from_args,
    load_yaml_config,
    semantic_config,
)
from tests.train_fixtures import TINY_ARGS, make_splits

# The config dict main's trainer records (run_config.yaml, model.pt, checkpoints) for a run
# with TINY_ARGS: model keys flat, pair_conv_max_dilation for the dilations.
MAIN_CONFIG = {
    "data_path": "d", "output_dir": "o", "checkpoint_dir": None, "init_from": None,
    "model_size": "tiny", "dropout": 0.1, "pair_conv_layers": 1, "pair_conv_channels": 4,
    "pair_conv_max_dilation": 8, "pair_type_channels": True, "struct_from_pairs": True,
    "max_len": 64, "bucket_multiple": 32, "mask_prob": 0.15, "num_workers": 0,
    "num_epochs": 10, "batch_size": 8, "learning_rate": 0.003, "weight_decay": 0.01,
    "grad_clip": 1.0, "scheduler": "cosine", "warmup_steps": 2, "min_lr_ratio": 0.1,
    "loss_weight_mlm": 1.0, "loss_weight_struct": 0.8, "loss_weight_pair": 1.5,
    "use_focal_loss_for_pairs": True, "focal_alpha": 0.75, "focal_gamma": 2.0,
    "pair_min_sep": 4, "pair_threshold": 0.5, "pair_decoder": "mea", "use_ast": True,
    "ast_target_activation": 0.4, "ast_kp": 2.0, "ast_ki": 0.2, "ast_smoothing": 0.8,
    "mixed_precision": "fp32", "device": "cpu", "seed": 42, "activation_checkpointing": False,
    "threads": 1, "ddp_backend": "auto", "save_every_steps": 500, "resume": True,
    "max_nonfinite_steps": 20, "progress": False, "log_every_s": 60.0,
}


def _tiny(*flags: str) -> TrainConfig:
    return config_from_args(["--data_path", "d", "--output_dir", "o", *TINY_ARGS, *flags])


def test_flat_model_keys_build_the_preset_with_overrides():
    cfg = _tiny()
    assert cfg.model == model_config_for("tiny", max_len=64, pair_conv_layers=1,
                                         pair_conv_channels=4)
    assert config_from_args(["--data_path", "d", "--output_dir", "o"]).model == \
        model_config_for("small")  # the defaults are the old ones


def test_new_model_fields_are_settable_by_flag_and_under_model(tmp_path):
    cfg = _tiny("--pair_dim", "24", "--distance_buckets", "16", "--pair_conv_max_dilation", "2")
    assert (cfg.model.pair_dim, cfg.model.distance_buckets) == (24, 16)
    assert cfg.model.pair_conv_dilations == (1, 2)
    path = tmp_path / "m.yaml"
    path.write_text("model_size: tiny\nmodel:\n  pair_dim: 20\n  pair_conv_dilations: [1, 3]\n")
    cfg = config_from_args(["--config", str(path), "--data_path", "d", "--output_dir", "o"])
    assert (cfg.model.pair_dim, cfg.model.pair_conv_dilations) == (20, (1, 3))
    assert cfg.model.d_model == MODEL_SIZES["tiny"]["d_model"]
    # flags beat the file, the model's keys too
    cfg = config_from_args(["--config", str(path), "--data_path", "d", "--output_dir", "o",
                            "--pair_dim", "12", "--pair_conv_max_dilation", "4"])
    assert (cfg.model.pair_dim, cfg.model.pair_conv_dilations) == (12, (1, 2, 4))


def test_run_config_reads_back_as_the_same_config(tmp_path):
    cfg = _tiny("--pair_dim", "24", "--no-use_ast")
    path = tmp_path / "run_config.yaml"
    path.write_text(yaml.safe_dump({**cfg.to_dict(), "resolved": {"device_used": "cpu"}},
                                   sort_keys=False))
    again = config_from_args(["--config", str(path)])
    assert again == cfg
    # --model_size on the command line replaces the file's preset sizes, keeps the rest
    small = config_from_args(["--config", str(path), "--model_size", "small"])
    assert small.model.d_model == MODEL_SIZES["small"]["d_model"]
    assert (small.model.max_len, small.model.pair_conv_layers) == (64, 1)


@pytest.mark.parametrize("text, key", [
    ("model:\n  pair_dimm: 3\n", "model.pair_dimm"),
    ("model:\n  pair_dim: wide\n", "model.pair_dim"),
    ("model:\n  pair_dim:\n", "model.pair_dim"),
    ("model: 5\n", "model"),
    ("model:\n  vocab_size: 12\n", "model.vocab_size"),
    ("model:\n  pair_conv_dilations: [1, true]\n", "model.pair_conv_dilations"),
    ("dropout: 0.1\nmodel:\n  dropout: 0.2\n", "dropout"),
    ("pair_conv_max_dilation: 4\nmodel:\n  pair_conv_dilations: [1, 2]\n",
     "pair_conv_max_dilation"),
    ("pair_dim: 0\n", "pair_dim"),
    ("n_heads: 3\n", "n_heads"),
    ("max_len: 4\n", "max_len"),
    ("pair_conv_max_dilation: 3\n", "pair_conv_max_dilation"),
])
def test_model_key_errors_name_the_key(tmp_path, text, key):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        TrainConfig(**{**load_yaml_config(path), "data_path": "d", "output_dir": "o"})
    assert info.value.key == key, str(info.value)
    assert "\n" not in str(info.value)


def test_main_config_dict_reads_as_todays_config():
    cfg = _tiny()
    assert canonical_config(MAIN_CONFIG) == cfg.to_dict()
    assert semantic_config(MAIN_CONFIG) == semantic_config(cfg.to_dict())
    changed = {**MAIN_CONFIG, "pair_conv_channels": 8}
    assert semantic_config(changed) != semantic_config(cfg.to_dict())


def _main_state(trainer, config: dict) -> dict:
    """A training checkpoint as main writes it: today's state with main's config dict."""
    state = trainer.state_dict()
    state["config"] = dict(config)
    assert "model" not in state["config"]
    return state


def test_checkpoint_in_mains_format_resumes_and_loads_for_inference(tmp_path):
    from genesis_rna.train_pretrain import Trainer

    data = make_splits(tmp_path / "d", n_train=8, n_val=4)
    config = {**MAIN_CONFIG, "data_path": str(data), "output_dir": str(tmp_path / "o")}
    threads = torch.get_num_threads()
    try:
        trainer = Trainer(_tiny("--data_path", str(data), "--output_dir", str(tmp_path / "o")))
    finally:
        torch.set_num_threads(threads)
    path = tmp_path / "ckpt_step000000003.pt"
    save_checkpoint(path, _main_state(trainer, config))
    state = load_checkpoint(path)
    assert trainer._mismatch(path, state) is None  # resumes
    trainer.load_state_dict(state)
    other = _main_state(trainer, {**config, "pair_conv_channels": 8})
    reason = trainer._mismatch(path, other)
    assert reason is not None and "model.pair_conv_channels" in reason
    # a finished model.pt in main's form: inference reads it
    model_pt = tmp_path / "model.pt"
    save_checkpoint(model_pt, {**_main_state(trainer, config), "pair_threshold": 0.3,
                               "pair_decoder": "mea"})
    loaded = load_for_inference(model_pt, device="cpu")
    assert loaded.config == config and loaded.threshold == 0.3
    assert loaded.model.config == trainer.model_config
    assert isinstance(loaded.model, GenesisRNA)
    (pred,) = predict_structures(loaded.model, ["GGGGAAACCCCAGGGAAACCCU"], loaded.threshold,
                                 tokenizer=loaded.tokenizer)
    assert len(pred.elements) == 22
