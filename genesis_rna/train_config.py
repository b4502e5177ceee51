"""Training configuration: one typed dataclass, YAML loading, command-line overrides.

Precedence: dataclass defaults < YAML file (``--config``) < flags given on the command line.
Every argparse flag defaults to None, so a flag that was not typed cannot mask the file's
value, and a flag that was typed always wins (the replaced project silently ignored flags
whenever a config file was given).

The replaced Genesis RNA trainer's documented key names are accepted as aliases (ALIASES), in
files and as flags; the resolved config (run_config.yaml, model.pt) holds the canonical names.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import types
import typing
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import yaml

from genesis_rna.ast_controller import SELECTIONS as AST_SELECTIONS
from genesis_rna.decoding import DECODERS
from genesis_rna.errors import ConfigError
from genesis_rna.model import MODEL_SIZES, ModelConfig
from genesis_rna.runtime import DDP_BACKENDS, DEVICES, PRECISIONS
from genesis_rna.schedule import SCHEDULERS
from genesis_rna.tasks import TASKS
from genesis_rna.tokenization import STRUCTURE_CLASSES, VOCAB

RESOLVED_SECTION = "resolved"


@dataclass
class TrainConfig:
    # One-line descriptions of every field: HELP below (the source of --help).
    # paths
    data_path: str | None = None
    output_dir: str | None = None
    checkpoint_dir: str | None = None
    # fine-tuning (weights only; max_len and dropout may differ from the pretrained model's)
    init_from: str | None = None
    # model: the model_size preset, with any model keys (MODEL_KEYS) set over it. Given as a
    # mapping (what the loaders pass), it becomes the ModelConfig in __post_init__.
    model_size: str = "small"
    model: ModelConfig | dict | None = None
    # data
    bucket_multiple: int = 32
    mask_prob: float = 0.15
    num_workers: int = 0
    # optimization
    num_epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 2e-4
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    scheduler: str = "cosine"
    warmup_steps: int = 500
    min_lr_ratio: float = 0.1
    # losses
    loss_weight_mlm: float = 1.0
    loss_weight_struct: float = 0.8
    loss_weight_pair: float = 1.5
    use_focal_loss_for_pairs: bool = True
    focal_alpha: float = 0.75
    focal_gamma: float = 2.0
    pair_min_sep: int = 4
    pair_threshold: float = 0.5
    pair_decoder: str = "mea"
    # adaptive sparse training
    use_ast: bool = True
    ast_target_activation: float = 0.4
    ast_kp: float = 2.0
    ast_ki: float = 0.2
    ast_smoothing: float = 0.8
    ast_selection: str = "threshold"
    ast_importance_mix: float = 0.2
    # runtime
    mixed_precision: str = "bf16"
    device: str = "auto"
    seed: int = 42
    activation_checkpointing: bool = False
    max_step_cells: int = 0
    threads: int | None = None
    ddp_backend: str = "auto"
    save_every_steps: int = 500
    resume: bool = True
    max_nonfinite_steps: int = 20
    progress: bool = True
    log_every_s: float = 60.0

    def __post_init__(self) -> None:
        if self.model_size not in MODEL_SIZES:
            raise ConfigError("model_size", f"unknown size {self.model_size!r}; "
                              f"choose from {sorted(MODEL_SIZES)}")
        if not isinstance(self.model, ModelConfig):
            self.model = build_model_config(self.model_size, self.model or {})
        positive = ("bucket_multiple", "num_epochs", "batch_size", "save_every_steps",
                    "max_nonfinite_steps")
        for key in positive:
            if getattr(self, key) <= 0:
                raise ConfigError(key, f"must be positive, got {getattr(self, key)}")
        non_negative = ("num_workers", "max_step_cells", "warmup_steps", "weight_decay",
                        "grad_clip", *(task.weight_key for task in TASKS), "focal_gamma",
                        "pair_min_sep", "ast_kp", "ast_ki")
        for key in non_negative:
            if getattr(self, key) < 0:
                raise ConfigError(key, f"must not be negative, got {getattr(self, key)}")
        if self.threads is not None and self.threads <= 0:
            raise ConfigError("threads", f"must be positive, got {self.threads}")
        if self.learning_rate <= 0:
            raise ConfigError("learning_rate", f"must be positive, got {self.learning_rate}")
        for key in ("mask_prob", "focal_alpha", "min_lr_ratio", "ast_smoothing"):
            v = getattr(self, key)
            if not 0 <= v <= 1:
                raise ConfigError(key, f"must be in [0, 1], got {v}")
        if not 0 < self.mask_prob:
            raise ConfigError("mask_prob", "must be positive (MLM needs masked positions)")
        if not 0 < self.pair_threshold < 1:
            raise ConfigError("pair_threshold", f"must be in (0, 1), got {self.pair_threshold}")
        if not 0 < self.ast_target_activation <= 1:
            raise ConfigError("ast_target_activation",
                              f"must be in (0, 1], got {self.ast_target_activation}")
        if self.ast_selection not in AST_SELECTIONS:
            raise ConfigError("ast_selection", f"{self.ast_selection!r} not in {AST_SELECTIONS}")
        if not 0 < self.ast_importance_mix <= 1:
            raise ConfigError("ast_importance_mix",
                              f"must be in (0, 1], got {self.ast_importance_mix}")
        if self.scheduler not in SCHEDULERS:
            raise ConfigError("scheduler", f"unknown scheduler {self.scheduler!r}; "
                              f"choose from {list(SCHEDULERS)}")
        if self.mixed_precision not in PRECISIONS:
            raise ConfigError("mixed_precision", f"{self.mixed_precision!r} not in {PRECISIONS}")
        if self.pair_decoder not in DECODERS:
            raise ConfigError("pair_decoder", f"{self.pair_decoder!r} not in {DECODERS}")
        if self.device not in DEVICES:
            raise ConfigError("device", f"{self.device!r} not in {DEVICES}")
        if self.ddp_backend not in DDP_BACKENDS:
            raise ConfigError("ddp_backend", f"{self.ddp_backend!r} not in {DDP_BACKENDS}")
        if self.device == "cpu" and self.mixed_precision == "fp16":
            raise ConfigError("mixed_precision",
                              "fp16 needs CUDA (GradScaler); with device 'cpu' use bf16 or fp32")

    def loss_weights(self) -> dict[str, float]:
        """Task name -> its loss weight (the ``loss_weight_<task>`` keys)."""
        return {task.name: getattr(self, task.weight_key) for task in TASKS}

    def resolved_checkpoint_dir(self) -> Path:
        if self.checkpoint_dir:
            return Path(self.checkpoint_dir)
        if not self.output_dir:
            raise ConfigError("output_dir", "is required")
        return Path(self.output_dir) / "checkpoints"

    def resolved_threads(self, processes_per_node: int = 1) -> int:
        """Threads per process: the setting, else the cores shared among this node's ranks."""
        return self.threads or max(1, len(os.sched_getaffinity(0)) // processes_per_node)

    def to_dict(self) -> dict:
        """The resolved config (run_config.yaml, checkpoints): the full model under "model"."""
        return asdict(self)


# Model keys a run may set: ModelConfig's fields (vocab_size and n_struct_classes follow the
# tokenizer), flat (flags and top-level keys, as always) or under a "model:" mapping, plus the
# shorthand pair_conv_max_dilation for pair_conv_dilations 1, 2, 4, ... up to it (which is
# set as a list under "model:" only, as run_config.yaml records it).
MODEL_FIXED = {"vocab_size": len(VOCAB), "n_struct_classes": len(STRUCTURE_CLASSES)}
MODEL_FIELDS = tuple(f.name for f in fields(ModelConfig))
MODEL_FLAGS = (*(k for k in MODEL_FIELDS if k not in MODEL_FIXED and k != "pair_conv_dilations"),
               "pair_conv_max_dilation")
MODEL_KEYS = (*MODEL_FIELDS, "pair_conv_max_dilation")
# a flag --model_size replaces the file's values of the keys its preset sets
PRESET_KEYS = frozenset(k for preset in MODEL_SIZES.values() for k in preset)


def _model_hint(key: str) -> type:
    return int if key == "pair_conv_max_dilation" else typing.get_type_hints(ModelConfig)[key]


def build_model_config(size: str, overrides: dict) -> ModelConfig:
    """The ``size`` preset with ``overrides`` (MODEL_KEYS -> values) set over it."""
    if not isinstance(overrides, dict):
        raise ConfigError("model", f"must be a mapping of model keys (e.g. pair_dim: 32), got "
                          f"{overrides!r}")
    values = {**MODEL_SIZES[size], **overrides}
    unknown = sorted(str(k) for k in set(values) - set(MODEL_KEYS))
    if unknown:
        raise ConfigError(f"model.{unknown[0]}", f"unknown model key(s) {unknown}; the model "
                          f"keys are {list(MODEL_KEYS)}")
    if "pair_conv_max_dilation" in values:
        d = values.pop("pair_conv_max_dilation")
        if "pair_conv_dilations" in values:
            raise ConfigError("pair_conv_max_dilation", "given together with "
                              "model.pair_conv_dilations; keep one")
        if d < 1 or d & (d - 1):
            raise ConfigError("pair_conv_max_dilation",
                              f"must be a power of 2 (1, 2, 4, ...), got {d}")
        values["pair_conv_dilations"] = tuple(2 ** k for k in range(d.bit_length()))
    for key, fixed in MODEL_FIXED.items():
        if values.get(key, fixed) != fixed:
            raise ConfigError(f"model.{key}", f"is fixed by the tokenizer at {fixed}, got "
                              f"{values[key]!r}")
    return ModelConfig(**values)


# The one-line description of each field: the source of --help (choices and default are added).
HELP = {
    "data_path": "folder with train.parquet and val.parquet, or with packed train/ and val/ "
                 "folders (pack_split; tables are packed into output_dir/packed_data) (required)",
    "output_dir": "receives model.pt, training_metrics.csv, run_config.yaml (required)",
    "checkpoint_dir": "folder of the step checkpoints; unset: <output_dir>/checkpoints",
    "init_from": "fine-tune: start from this model.pt's weights only (fresh optimizer, schedule, "
                 "AST); the architecture keys must match it",
    "model_size": "transformer preset (width, layers, heads; see genesis_rna.model.MODEL_SIZES); "
                  "the model keys below override it",
    "bucket_multiple": "batch widths are rounded up to a multiple of this (the CPU configs use "
                       "8: pair maps grow as width^2, so padding is costly; 32 means fewer shapes)",
    "mask_prob": "fraction of nucleotides masked for the MLM loss",
    "num_workers": "data-loader worker processes (0 = load in the training process)",
    "num_epochs": "passes over the train split",
    "batch_size": "sequences per step and process (under torchrun the global batch is this x "
                  "processes)",
    "learning_rate": "peak AdamW learning rate, reached after the warmup",
    "weight_decay": "AdamW weight decay of weight matrices (biases and norms get none)",
    "grad_clip": "gradients are clipped to this global norm",
    "scheduler": "learning-rate schedule after the warmup",
    "warmup_steps": "optimizer steps of linear warmup from 0 to learning_rate",
    "min_lr_ratio": "the schedule's final learning rate, as a fraction of learning_rate",
    "loss_weight_mlm": "weight of the masked-nucleotide loss; 0 freezes that head",
    "loss_weight_struct": "weight of the per-nucleotide structure loss; 0 freezes that head",
    "loss_weight_pair": "weight of the pair-map loss; 0 freezes that head",
    "use_focal_loss_for_pairs": "pair loss: focal loss, or plain binary cross-entropy "
                                "(--no-use_focal_loss_for_pairs; then focal_* are unused)",
    "focal_alpha": "focal-loss weight of pair cells (non-pair cells get 1 - alpha)",
    "focal_gamma": "focal-loss exponent: down-weights cells already predicted well (0 = none)",
    "pair_min_sep": "|i - j| below this is never a pair (loss, metrics, post-processing)",
    "pair_threshold": "pair-probability cut of the per-epoch metrics (the final one is tuned on "
                      "val)",
    "pair_decoder": "probabilities -> structure: mea (nested) or greedy (may cross)",
    "use_ast": "adaptive sparse training: each step trains only the drawn samples of highest "
               "remembered loss",
    "ast_target_activation": "AST: fraction of the drawn samples trained per step",
    "ast_kp": "AST threshold controller: proportional gain",
    "ast_ki": "AST threshold controller: integral gain",
    "ast_smoothing": "AST: EMA factor of the measured activation rate",
    "ast_selection": "AST: threshold (train the samples above the controller's threshold, "
                     "weight 1) or importance (draw as many, with probability ~ significance, "
                     "loss weighted by 1 / probability: an unbiased gradient)",
    "ast_importance_mix": "AST importance selection: uniform share of the draw probabilities "
                          "(every sample keeps probability >= mix / candidates)",
    "mixed_precision": "autocast precision (fp16 needs CUDA)",
    "device": "where to train; auto = CUDA when available, else CPU",
    "seed": "random seed (initialization, data order, masking)",
    "activation_checkpointing": "recompute pair-map activations in backward (less memory, same "
                                "numbers)",
    "max_step_cells": "most pair-map cells (rows x width^2) one forward/backward holds: a wider "
                      "batch runs as micro-batches whose gradients add up to the same step "
                      "(bounds peak memory whatever the lengths; 0 = never split)",
    "threads": "torch intra-op threads per process; unset: cores / processes",
    "ddp_backend": "under torchrun: auto = nccl on CUDA, gloo on CPU",
    "save_every_steps": "checkpoint every this many optimizer steps (and at each epoch end)",
    "resume": "continue from the newest matching checkpoint (--no-resume: start over)",
    "max_nonfinite_steps": "abort after this many consecutive non-finite steps",
    "progress": "tqdm progress bar",
    "log_every_s": "without the bar: a progress line (step, ETA, loss, ...) this often",
}

# The model keys' flags (ModelConfig fields; also settable under "model:" in the file).
MODEL_HELP = {
    "d_model": "transformer width",
    "n_layers": "transformer layers",
    "n_heads": "attention heads (d_model / n_heads must be even)",
    "d_ff": "feed-forward width",
    "dropout": "dropout probability",
    "max_len": "tokens per sequence incl. CLS and SEP; longer sequences are cropped",
    "pair_dim": "per-position features that build the pair map",
    "pair_conv_layers": "residual 3x3 conv layers refining the pair map (0 = none)",
    "pair_conv_channels": "channels of the pair-map convs",
    "pair_conv_max_dilation": "conv dilations cycle 1, 2, 4, ... up to this (power of 2)",
    "distance_buckets": "log-spaced buckets of |i - j| embedded in the pair map",
    "pair_type_channels": "pair map starts with learned (nucleotide_i, nucleotide_j) channels",
    "struct_from_pairs": "structure head also reads the pair map pooled per position",
    "thermo_features": "pair head reads ViennaRNA pair probabilities and MFE pairs (the thermo "
                       "stage's features, packed with the data) as input channels; a model "
                       "without them loads into one with them via --init_from (new layers at zero)",
    "thermo_parameter_sets": "with thermo_features: how many ViennaRNA parameter sets' pair "
                             "probabilities the pair head reads (1 = Turner 2004; 2 adds "
                             "Andronescu 2007; 3 also Langdon 2018); the thermo stage must have "
                             "computed at least this many (thermo.parameter_sets)",
}
MODEL_DEFAULTS = {**{f.name: f.default for f in fields(ModelConfig)}, "pair_conv_max_dilation":
                  max(ModelConfig.__dataclass_fields__["pair_conv_dilations"].default)}

# Fields with a fixed set of values (listed in --help; __post_init__ enforces them).
CHOICES = {"model_size": tuple(MODEL_SIZES), "scheduler": tuple(SCHEDULERS),
           "pair_decoder": tuple(DECODERS), "mixed_precision": PRECISIONS, "device": DEVICES,
           "ddp_backend": DDP_BACKENDS, "ast_selection": AST_SELECTIONS}

# The replaced Genesis RNA trainer's documented names -> ours. Its other documented keys
# (min_lr_ratio, use_focal_loss_for_pairs, focal_alpha, focal_gamma) have the same names here.
ALIASES = {"lr_scheduler_type": "scheduler", "mlm_loss_weight": "loss_weight_mlm",
           "structure_loss_weight": "loss_weight_struct", "pair_loss_weight": "loss_weight_pair"}

# Keys that change how a run is executed but not what it computes: a checkpoint or a finished
# model made under other values of these is still the same run.
RUNTIME_KEYS = frozenset({"data_path", "output_dir", "checkpoint_dir", "num_workers", "threads",
                          "save_every_steps", "resume", "progress", "ddp_backend",
                          "activation_checkpointing", "max_step_cells", "log_every_s"})


def semantic_config(cfg: dict) -> dict:
    """The part of a config dict that determines the trained weights (for resume matching).
    ``cfg`` in any form a run has written (see ``canonical_config``)."""
    return {k: v for k, v in canonical_config(cfg).items() if k not in RUNTIME_KEYS}


def canonical_config(cfg: dict) -> dict:
    """A recorded config dict in today's form: a checkpoint written before the model was
    nested holds the model keys flat (model_size, dropout, max_len, pair_conv_*), and the
    same run reads back as the same dict."""
    return TrainConfig(**config_values(cfg, "the checkpoint's config")).to_dict()


def _train_fields() -> dict[str, dataclasses.Field]:
    return {f.name: f for f in fields(TrainConfig) if f.name != "model"}


def _field_type(f: dataclasses.Field) -> type:
    hints = typing.get_type_hints(TrainConfig)
    t = hints[f.name]
    if isinstance(t, types.UnionType):  # "X | None"
        t = next(a for a in typing.get_args(t) if a is not type(None))
    return t


def _typed(key: str, hint, val, where: str):
    """``val`` checked against ``hint`` (ints pass as floats; a list as a tuple of ints);
    errors name ``key`` as the file spells it."""
    if typing.get_origin(hint) is tuple:
        if not (isinstance(val, list | tuple) and val
                and all(isinstance(x, int) and not isinstance(x, bool) for x in val)):
            raise ConfigError(key, f"expected a list of integers, got {val!r} in {where}")
        return tuple(val)
    t = hint
    if t is float and isinstance(val, int) and not isinstance(val, bool):
        val = float(val)
    if not isinstance(val, t) or (t is int and isinstance(val, bool)):
        raise ConfigError(key, f"expected {t.__name__}, got {val!r} in {where}")
    return val


def config_values(data: dict, where: str) -> dict:
    """TrainConfig keyword arguments from a flat mapping of keys (a config file, or a run's
    recorded config); unknown keys and wrong types raise ConfigError naming them as spelled.
    Aliases (ALIASES) come back under the canonical name; model keys, flat or under "model:",
    come back under "model" (a key given both ways, or under both names, is an error)."""
    # A run's run_config.yaml can be passed back as --config: its "resolved" section is a
    # record of what the run used (device, precision, sizes), not a setting.
    data = {k: v for k, v in data.items() if k != RESOLVED_SECTION}
    nested = data.pop("model", None)
    if nested is not None and not isinstance(nested, dict):
        raise ConfigError("model", f"must be a mapping of model keys (e.g. pair_dim: 32), got "
                          f"{nested!r} in {where}")
    known = _train_fields()
    unknown = sorted(str(k) for k in set(data) - set(known) - set(ALIASES) - set(MODEL_FLAGS))
    if unknown:
        raise ConfigError(unknown[0], f"unknown key(s) {unknown} in {where}")
    for alias, canonical in ALIASES.items():
        if alias in data and canonical in data:
            raise ConfigError(canonical, f"given twice in {where}: as '{canonical}' and as its "
                              f"alias '{alias}'; keep one")
    out, model = {}, {}
    for key, val in data.items():
        name = ALIASES.get(key, key)  # errors name the key as the file spells it
        if val is None:
            # only "X | None" fields may be left empty in the file
            hint = typing.get_type_hints(TrainConfig).get(name)
            if not (isinstance(hint, types.UnionType) and type(None) in typing.get_args(hint)):
                raise ConfigError(key, f"needs a value in {where}")
            out[name] = None
        elif name in MODEL_FLAGS:
            model[name] = _typed(key, _model_hint(name), val, where)
        else:
            out[name] = _typed(key, _field_type(known[name]), val, where)
    for key, val in (nested or {}).items():
        spelled = f"model.{key}"
        if key not in MODEL_KEYS:
            raise ConfigError(spelled, f"unknown model key in {where}; the model keys are "
                              f"{list(MODEL_KEYS)}")
        if key in model:
            raise ConfigError(key, f"given twice in {where}: as '{key}' and as '{spelled}'; "
                              "keep one")
        if val is None:
            raise ConfigError(spelled, f"needs a value in {where}")
        model[key] = _typed(spelled, _model_hint(key), val, where)
    if model:
        out["model"] = model
    return out


def load_yaml_config(path: str | Path) -> dict:
    """Read a YAML mapping into TrainConfig keyword arguments (see ``config_values``)."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
    except FileNotFoundError:
        raise ConfigError("config", f"file not found: {path}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError("config", f"{path} is not valid YAML text: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError("config", f"{path} must hold a mapping of keys to values")
    return config_values(data, str(path))


def _add_flag(parser: argparse.ArgumentParser, name: str, t: type, help_text: str) -> None:
    help_text = help_text.replace("%", "%%")  # argparse formats help with %
    if t is bool:
        parser.add_argument(f"--{name}", action=argparse.BooleanOptionalAction, default=None,
                            help=help_text)
    else:
        parser.add_argument(f"--{name}", type=t, default=None, help=help_text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m genesis_rna.train_pretrain",
        description="Pretrain the Genesis RNA multi-task model. Flags override --config.",
    )
    parser.add_argument("--config", help="YAML file with any of the options below (the same "
                        "names as keys, e.g. batch_size: 16; model keys also under model:)")
    aliases_of = {canonical: alias for alias, canonical in ALIASES.items()}
    for f in _train_fields().values():
        t = _field_type(f)
        notes = []
        if f.name in CHOICES:
            notes.append("choices: " + ", ".join(CHOICES[f.name]))
        if f.default is not None:
            notes.append(f"default: {f.default}")
        if f.name in aliases_of:
            notes.append(f"alias: {aliases_of[f.name]}")
        _add_flag(parser, f.name, t, HELP[f.name] + (f" ({'; '.join(notes)})" if notes else ""))
        if f.name in aliases_of:  # a separate dest, so giving both spellings can be refused
            alias = aliases_of[f.name]
            parser.add_argument(f"--{alias}", dest=alias, type=t, default=None,
                                help=f"same as --{f.name} (the replaced trainer's name)")
    for key in MODEL_FLAGS:
        default = ("from model_size" if key in PRESET_KEYS
                   else f"default: {MODEL_DEFAULTS[key]}")
        _add_flag(parser, key, _model_hint(key), f"model: {MODEL_HELP[key]} ({default})")
    return parser


def config_from_args(argv: list[str] | None = None) -> TrainConfig:
    args = build_parser().parse_args(argv)
    values: dict = load_yaml_config(args.config) if args.config else {}
    model = values.pop("model", {})
    for alias, canonical in ALIASES.items():
        if getattr(args, alias) is not None:
            if getattr(args, canonical) is not None:
                raise ConfigError(canonical, f"given twice on the command line: as --{canonical} "
                                  f"and as its alias --{alias}; keep one")
            setattr(args, canonical, getattr(args, alias))
    for name in _train_fields():
        v = getattr(args, name)
        if v is not None:
            values[name] = v
    if args.model_size is not None:  # the flag's preset beats the file's sizes
        model = {k: v for k, v in model.items() if k not in PRESET_KEYS}
    for key in MODEL_FLAGS:
        v = getattr(args, key)
        if v is not None:
            model[key] = v
            if key == "pair_conv_max_dilation":  # the flag beats the file's list
                model.pop("pair_conv_dilations", None)
    cfg = TrainConfig(**values, model=model)
    for key in ("data_path", "output_dir"):
        if not getattr(cfg, key):
            raise ConfigError(key, "is required (--" + key + " or in the config file)")
    return cfg
